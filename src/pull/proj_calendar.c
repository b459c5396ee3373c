/* The "calendar" projection (migrations/sqlite/0009_calendar.sql): the last
 * known state of each calendar event instance, per (source, uid,
 * recurrence_id), which ics_poll_diff() compares a feed against.
 *
 * A pure function of the calendar.event.* events: created and updated store
 * the instance as live, canceled stores it as canceled; every event bumps the
 * row's revision, which the diff folds into its idempotency keys so that a
 * later change never collides with an earlier one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/json.h"
#include "ledger/projection.h"
#include "pull/ics.h"

static const char *const tables[] = { "calendar_events", NULL };

/* RFC 3339, or a date (YYYY-MM-DD, its UTC midnight); 0 when neither. */
static int64_t when_ms(const char *s)
{
    int64_t ms = 0;
    if (!s)
        return 0;
    size_t n = strlen(s);
    if (n == 10 && s[4] == '-' && s[7] == '-') {
        int y, m, d;
        if (sscanf(s, "%4d-%2d-%2d", &y, &m, &d) == 3 && m >= 1 && m <= 12 && d >= 1 && d <= 31)
            return core_days_from_civil(y, m, d) * 86400000LL;
        return 0;
    }
    return core_time_parse(s, n, &ms) == 0 ? ms : 0;
}

static int apply(Store *tx, const Event *ev, Err *err)
{
    if (strncmp(ev->type, "calendar.event.", 15))
        return 0;
    const char *kind = ev->type + 15;
    bool canceled = !strcmp(kind, "canceled");
    if (!canceled && strcmp(kind, "created") && strcmp(kind, "updated"))
        return 0;
    json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (!d)
        return 0;
    const char *uid = json_string_value(json_object_get(d, "uid"));
    const char *rid = json_string_value(json_object_get(d, "recurrence_id"));
    const char *start = json_string_value(json_object_get(d, "start"));
    const char *end = json_string_value(json_object_get(d, "end"));
    int rc = 0;
    if (!uid || !start || !end)
        goto out;
    char digest[CORE_SHA256_HEX + 1];
    ics_event_digest(d, digest);
    json_t *seqv = json_object_get(d, "sequence");
    int64_t sequence = json_is_integer(seqv) ? (int64_t)json_integer_value(seqv) : 0;
    const char *lm = json_string_value(json_object_get(d, "last_modified"));
    /* the state, not what this event said about the change */
    json_object_del(d, "changes");
    json_object_del(d, "previous");
    json_object_del(d, "reason");
    json_object_del(d, "reinstated");
    Buf b;
    buf_init(&b, 0);
    core_json_canonical(d, &b);
    rc = store_execf(tx, err,
                     "INSERT INTO calendar_events(source, uid, recurrence_id, sequence,"
                     " last_modified, digest, canceled, start, \"end\", start_ms, end_ms,"
                     " revision, data, seq)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1, ?12, ?13)"
                     " ON CONFLICT(source, uid, recurrence_id) DO UPDATE SET sequence = ?4,"
                     " last_modified = ?5, digest = ?6, canceled = ?7, start = ?8, \"end\" = ?9,"
                     " start_ms = ?10, end_ms = ?11, revision = revision + 1, data = ?12,"
                     " seq = ?13",
                     "sssississiisi", ev->source, uid, rid ? rid : "", sequence, lm, digest,
                     (int64_t)canceled, start, end, when_ms(start), when_ms(end), buf_cstr(&b),
                     ev->seq);
    buf_done(&b);
out:
    json_decref(d);
    return rc;
}

static const Projection calendar_projection = {
    .name = "calendar",
    .version = 1,
    .tables = tables,
    .apply = apply,
};

void ics_projections_register(void)
{
    ledger_projection_register(&calendar_projection);
}
