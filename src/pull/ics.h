/* ICS calendar feeds: fetching a feed (http/https or a file), parsing it with
 * libical, and diffing it against the "calendar" projection into the
 * calendar.event.created / .updated / .canceled events to append.
 *
 * The invariant: the events ics_poll_diff() returns, once appended, bring the
 * projection to the feed's state, and a second call on the same feed returns
 * none. Each event carries an idempotency key derived from (source, uid,
 * recurrence id, kind, the row's revision, sequence, digest), so a re-poll
 * that races an append, or a replay, stores nothing twice. A feed that does
 * not parse produces an error naming its line and no events at all.
 *
 * A connector's poll is:
 *
 *     IcsFetched f = {0};
 *     if (ics_fetch(url, cursor_etag, cursor_lm, 0, 0, &f, err) < 0) -> back off
 *     if (!f.not_modified) {
 *         IcsChanges c = {0};
 *         if (ics_poll_diff(rd, "ics:NAME", f.body, f.len, horizon_days,
 *                           core_time_now_ms(), &c, err) < 0) -> record the error,
 *             keep the old cursor (so the feed is parsed again next time)
 *         append c.events[0..c.n) with the new cursor (f.etag, f.last_modified)
 *             in one transaction; the append takes the events: set c.n = 0
 *         ics_changes_done(&c);
 *     }
 *     ics_fetched_done(&f);
 *
 * The window moves with now_ms: poll on a schedule even when the feed is not
 * modified, at least daily, or new occurrences of a series are only created
 * when the feed itself changes. (A not-modified answer has no body: keep the
 * last body, or fetch without validators once a day.)
 *
 * Thread-safety: every function may run on any thread; libical's time zone
 * cache is shared (and locked) by libical itself. */
#ifndef BUREAU_PULL_ICS_H
#define BUREAU_PULL_ICS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/crypto.h"
#include "core/err.h"
#include "ledger/event.h"
#include "store/store.h"

#define ICS_MAX_BYTES ((size_t)16 << 20)   /* a feed (file or HTTP body) */
#define ICS_MAX_EVENTS 10000               /* VEVENTs in one feed */
#define ICS_MAX_OCCURRENCES 1000           /* instances of one series in the window */
#define ICS_MAX_INSTANCES 50000            /* instances of all events in the window */
#define ICS_DEFAULT_HORIZON_DAYS 90
#define ICS_DEFAULT_PAST_DAYS 30
#define ICS_FETCH_TIMEOUT_MS 30000

typedef struct IcsOptions {
    int horizon_days;       /* the window reaches this far ahead of now; 0 = 90 */
    int past_days;          /* ... and this far back; 0 = 30, < 0 = none */
    size_t max_bytes;       /* 0 = ICS_MAX_BYTES */
    size_t max_events;      /* 0 = ICS_MAX_EVENTS */
    size_t max_occurrences; /* 0 = ICS_MAX_OCCURRENCES */
    bool allow_empty;       /* a feed without any VEVENT may cancel every known
                             * instance; else such a feed is refused (ERR_INPUT)
                             * while live instances are known in the window */
} IcsOptions;

/* The events one poll produced, in a stable order (by uid, then recurrence
 * id; removals last). events[i] are owned by the IcsChanges until given to
 * ledger_append(), which takes them: set n = 0 after handing them over. */
typedef struct IcsChanges {
    Event **events;
    size_t n;
    size_t created, updated, canceled; /* how many of each kind */
    size_t vevents;                    /* VEVENTs in the feed */
    size_t instances;                  /* instances considered (singles + occurrences) */
} IcsChanges;

/* Frees the events still held (events[0..n)) and the array. */
void ics_changes_done(IcsChanges *c);

/* Parses ics_text[0..len) (need not be NUL-terminated) and compares it with
 * the state of `source` in the calendar projection read on rd (a reader
 * connection; the reads run in one read transaction unless rd is already in
 * one). Fills *out (zeroed by the caller) with the events to append:
 *
 *  - calendar.event.created: an instance not known before (or known as
 *    canceled and back in the feed) that overlaps the window
 *    [now - past_days, now + horizon_days]; recurring events (RRULE, RDATE,
 *    EXDATE, RECURRENCE-ID overrides) are expanded into instances in it;
 *  - calendar.event.updated: a known instance whose SEQUENCE grew or whose
 *    tracked fields changed; data.changes names the fields, data.previous
 *    holds their old values (the new ones are the event's own fields);
 *  - calendar.event.canceled: STATUS:CANCELLED (data.reason "cancelled"), or
 *    a known instance in the window that is gone from the feed ("removed").
 *
 * The events have no subject: the memory layer resolves the organizer's and
 * attendees' addresses (data.organizer.email, data.attendees[].email).
 * Errors: ERR_TOOBIG (a limit), ERR_INVAL naming the feed's line ("line 12:
 * ..."), or for a feed without any VEVENT that would cancel known instances
 * (unless opts->allow_empty), ERR_STORE. On error *out is left empty. horizon_days <= 0 means 90. */
int ics_poll_diff(Store *rd, const char *source, const char *ics_text, size_t len,
                  int horizon_days, int64_t now_ms, IcsChanges *out, Err *err);
/* The same with every option (opts may be NULL: defaults). */
int ics_poll_diff_opts(Store *rd, const char *source, const char *ics_text, size_t len,
                       const IcsOptions *opts, int64_t now_ms, IcsChanges *out, Err *err);

/* Parses and validates a feed without a database: the number of VEVENTs in
 * *ret_vevents, or the same errors as ics_poll_diff(). */
int ics_check(const char *ics_text, size_t len, const IcsOptions *opts, size_t *ret_vevents,
              Err *err);

/* The digest of the fields Bureau tracks in a calendar event's data
 * (summary, description, start, end, all_day, tzid, location, status,
 * organizer, attendees): SHA-256 hex of their canonical JSON. The projection
 * and the diff use it alike. */
void ics_event_digest(const json_t *data, char out[CORE_SHA256_HEX + 1]);

/* What ics_fetch() got. body is NUL-terminated (len bytes before the NUL)
 * and NULL when not_modified. etag and last_modified are the validators to
 * pass to the next call (either may be NULL); on not_modified they are the
 * ones given. All are owned by the struct. */
typedef struct IcsFetched {
    char *body;
    size_t len;
    char *etag;
    char *last_modified;
    bool not_modified;
    long http_status; /* 0 for a file */
} IcsFetched;

/* Fetches a feed: an http:// or https:// URL through libcurl (TLS
 * verification on, redirects to http/https followed up to 5 times, the
 * body capped at max_bytes, conditional on If-None-Match: etag and
 * If-Modified-Since: last_modified when given), or a local file path (its
 * size and mtime make the etag; not_modified when they equal the given
 * one). max_bytes 0 = ICS_MAX_BYTES; timeout_ms 0 = ICS_FETCH_TIMEOUT_MS.
 * Errors: ERR_IO (connection, HTTP status other than 200 and 304, file),
 * ERR_TOOBIG, ERR_TIMEOUT, ERR_INVAL (an unsupported URL). Messages name the
 * host of a URL but never its path or query, which may hold a secret token.
 * *ret (zeroed by the caller) is written only on success. */
int ics_fetch(const char *url_or_path, const char *etag, const char *last_modified,
              size_t max_bytes, int timeout_ms, IcsFetched *ret, Err *err);
void ics_fetched_done(IcsFetched *f);

/* Registers the "calendar" projection (proj_calendar.c); pull_projections_register()
 * calls it. Idempotent. */
void ics_projections_register(void);

#endif
