/* Unit tests of the ICS module (src/pull/ics.c) and the calendar projection:
 * recurrence with exceptions, time zones across DST, updates, cancellations,
 * malformed feeds, idempotency and replay, and fetching a file or a feed
 * over HTTP from a loopback server with ETag / 304. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "helpers.h"
#include "ledger/ledger.h"
#include "ledger/projection.h"
#include "memory/identity.h"
#include "pull/ics.h"

#define SRC "ics:test"

static char *dir;
static Config cfg;
static Ledger *led;
static Store *rd;

/* 2026-12-01T00:00:00Z: "now" in every poll unless said otherwise. */
static const int64_t NOW = 1796083200000LL;

static void setup(void)
{
    dir = test_tmpdir();
    core_config_defaults(&cfg);
    cfg.durability_normal = true;
    log_set_level(LOG_ERROR);
    ledger_projections_builtin();
    memory_projections_register();
    ics_projections_register();
    Err e = { 0 };
    cr_assert_eq(ledger_db_prepare(dir, &cfg, true, &e), 0, "%s", e.msg);
    LedgerOptions o = { .config = &cfg };
    cr_assert_eq(ledger_open(dir, &o, &led, &e), 0, "%s", e.msg);
    cr_assert_eq(ledger_reader_open(led, &rd, &e), 0, "%s", e.msg);
}

static void teardown(void)
{
    store_close(rd);
    ledger_close(led);
    test_rmdir(dir);
}

TestSuite(ics, .init = setup, .fini = teardown);

static char *slurp(const char *name, size_t *ret_len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tests/data/ics/%s", TEST_SRC_DIR, name);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "open %s", path);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    *ret_len = n;
    return strdup(buf);
}

/* Polls text and returns the changes (the caller appends or frees them). */
static IcsChanges poll_at(const char *text, int horizon, int64_t now)
{
    IcsChanges c = { 0 };
    Err e = { 0 };
    cr_assert_eq(ics_poll_diff(rd, SRC, text, strlen(text), horizon, now, &c, &e), 0, "%s",
                 e.msg);
    return c;
}

/* Appends c's events; returns how many were new (not duplicates). */
static size_t append(IcsChanges *c)
{
    size_t n = c->n, fresh = 0;
    if (!n) {
        ics_changes_done(c);
        return 0;
    }
    LedgerAppendResult *res = calloc(n, sizeof *res);
    Err e = { 0 };
    cr_assert_eq(ledger_append(led, c->events, n, res, &e), 0, "%s", e.msg);
    c->n = 0;
    ics_changes_done(c);
    for (size_t i = 0; i < n; i++)
        fresh += !res[i].duplicate;
    free(res);
    return fresh;
}

static size_t poll_append(const char *text, int horizon, int64_t now)
{
    IcsChanges c = poll_at(text, horizon, now);
    return append(&c);
}

static int64_t scalar(const char *sql, const char *arg)
{
    int64_t v = -1;
    Err e = { 0 };
    cr_assert_eq(store_query_int(rd, sql, arg, -1, &v, &e), 0, "%s: %s", sql, e.msg);
    return v;
}

/* The text of one column of the first row of sql (?1 = arg); caller frees. */
static char *text_of(const char *sql, const char *arg)
{
    StoreStmt *st;
    Err e = { 0 };
    cr_assert_eq(store_prepare(rd, sql, &st, &e), 0, "%s", e.msg);
    store_bind_text(st, 1, arg, strlen(arg));
    char *v = NULL;
    if (store_step(st, &e) == STORE_ROW) {
        const char *t = store_col_text(st, 0, NULL);
        v = t ? strdup(t) : NULL;
    }
    store_stmt_done(st);
    return v;
}

static json_t *data_of(const Event *ev)
{
    json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
    cr_assert(d);
    return d;
}

static const char *s_of(const json_t *d, const char *k)
{
    const char *v = json_string_value(json_object_get(d, k));
    return v ? v : "";
}

Test(ics, recurrence_with_exdate_and_a_moved_instance)
{
    size_t len;
    char *text = slurp("0001-recurring.ics", &len);
    IcsChanges c = poll_at(text, 90, NOW);
    /* weekly from Dec 2 up to the horizon (Mar 1): 13, minus the EXDATE;
     * Dec 16 is the override; plus the all-day holiday */
    cr_assert_eq(c.vevents, 3);
    cr_assert_eq(c.created, 13, "%zu", c.created);
    cr_assert_eq(c.n, 13);
    bool moved = false, holiday = false;
    for (size_t i = 0; i < c.n; i++) {
        json_t *d = data_of(c.events[i]);
        cr_assert_str_eq(c.events[i]->type, "calendar.event.created");
        cr_assert_str_neq(s_of(d, "recurrence_id"), "2026-12-09T09:00:00.000Z");
        cr_assert_str_neq(s_of(d, "start"), "2026-12-09T09:00:00.000Z");
        if (!strcmp(s_of(d, "recurrence_id"), "2026-12-16T09:00:00.000Z")) {
            moved = true;
            cr_assert_str_eq(s_of(d, "start"), "2026-12-16T14:00:00.000Z");
            cr_assert_str_eq(s_of(d, "location"), "Room 2");
            cr_assert_str_eq(s_of(d, "tzid"), "Europe/Berlin");
        }
        if (!strcmp(s_of(d, "uid"), "weekly-1@example.com") &&
            !strcmp(s_of(d, "recurrence_id"), "2026-12-02T09:00:00.000Z")) {
            cr_assert_str_eq(s_of(d, "start"), "2026-12-02T09:00:00.000Z");
            cr_assert_str_eq(s_of(d, "end"), "2026-12-02T10:00:00.000Z");
            const json_t *org = json_object_get(d, "organizer");
            cr_assert_str_eq(s_of(org, "email"), "olivia@example.com");
            cr_assert_str_eq(s_of(org, "name"), "Olivia Owner");
            const json_t *att = json_object_get(d, "attendees");
            cr_assert_eq(json_array_size(att), 2, "the room has no address");
            const json_t *ann = json_array_get(att, 0);
            cr_assert_str_eq(s_of(ann, "email"), "ann@acme.io");
            cr_assert_str_eq(s_of(ann, "role"), "req-participant");
            cr_assert_str_eq(s_of(ann, "status"), "accepted");
            cr_assert_str_eq(s_of(json_array_get(att, 1), "status"), "needs-action");
        }
        if (!strcmp(s_of(d, "uid"), "holiday-1@example.com")) {
            holiday = true;
            cr_assert(json_is_true(json_object_get(d, "all_day")));
            cr_assert_str_eq(s_of(d, "start"), "2026-12-24");
            cr_assert_str_eq(s_of(d, "end"), "2026-12-27");
            cr_assert_null(json_object_get(d, "recurrence_id"));
        }
        json_decref(d);
    }
    cr_assert(moved && holiday);
    cr_assert_eq(append(&c), 13);
    cr_assert_eq(scalar("SELECT count(*) FROM calendar_events WHERE source = ?1", SRC), 13);
    /* the memory layer found the people from their addresses */
    cr_assert_eq(scalar("SELECT count(*) FROM identities WHERE kind = 'email' AND value = ?1",
                        "ann@acme.io"), 1);
    cr_assert_eq(scalar("SELECT count(*) FROM identities WHERE kind = 'email' AND value = ?1",
                        "olivia@example.com"), 1);
    free(text);
}

Test(ics, time_zones_from_vtimezone_and_zoneinfo_across_dst)
{
    size_t len;
    char *text = slurp("0002-zones.ics", &len);
    cr_assert_eq(poll_append(text, 150, NOW), 6);
    static const struct { const char *sql_arg, *start; } want[] = {
        /* Office Time: +01:00 until Mar 28 2027 02:00 local, then +02:00 */
        { "standup@example.com|2027-03-26T08:00:00.000Z", "2027-03-26T08:00:00.000Z" },
        { "standup@example.com|2027-03-27T08:00:00.000Z", "2027-03-27T08:00:00.000Z" },
        { "standup@example.com|2027-03-28T07:00:00.000Z", "2027-03-28T07:00:00.000Z" },
        { "standup@example.com|2027-03-29T07:00:00.000Z", "2027-03-29T07:00:00.000Z" },
        /* America/New_York: EST until Mar 14 2027, then EDT */
        { "ny-call@example.com|2027-03-08T14:00:00.000Z", "2027-03-08T14:00:00.000Z" },
        { "ny-call@example.com|2027-03-15T13:00:00.000Z", "2027-03-15T13:00:00.000Z" },
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char *start = text_of("SELECT start FROM calendar_events"
                              " WHERE uid || '|' || recurrence_id = ?1",
                              want[i].sql_arg);
        cr_assert_not_null(start, "%s missing", want[i].sql_arg);
        cr_assert_str_eq(start, want[i].start);
        free(start);
    }
    char *end = text_of("SELECT \"end\" FROM calendar_events WHERE uid || '|' || recurrence_id = ?1",
                        "standup@example.com|2027-03-28T07:00:00.000Z");
    cr_assert_str_eq(end, "2027-03-28T07:15:00.000Z");
    free(end);
    char *data = text_of("SELECT data FROM calendar_events WHERE uid = ?1", "ny-call@example.com");
    cr_assert(strstr(data, "\"tzid\":\"America/New_York\""), "%s", data);
    free(data);
    free(text);
}

static const char *V1 =
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n"
    "BEGIN:VEVENT\r\nUID:u1\r\nDTSTART:20261210T100000Z\r\nDTEND:20261210T110000Z\r\n"
    "SUMMARY:Kickoff\r\nLOCATION:Office A\r\nSEQUENCE:0\r\n"
    "ATTENDEE;CN=Ann:mailto:ann@acme.io\r\nEND:VEVENT\r\n"
    "BEGIN:VEVENT\r\nUID:u2\r\nDTSTART:20261211T100000Z\r\nDTEND:20261211T110000Z\r\n"
    "SUMMARY:Demo\r\nEND:VEVENT\r\n"
    "END:VCALENDAR\r\n";

Test(ics, sequence_bump_is_an_update_naming_what_changed)
{
    cr_assert_eq(poll_append(V1, 90, NOW), 2);
    const char *v2 =
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n"
        "BEGIN:VEVENT\r\nUID:u1\r\nDTSTART:20261210T140000Z\r\nDTEND:20261210T150000Z\r\n"
        "SUMMARY:Kickoff\r\nLOCATION:Office B\r\nSEQUENCE:1\r\n"
        "LAST-MODIFIED:20261201T080000Z\r\n"
        "ATTENDEE;CN=Ann:mailto:ann@acme.io\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nUID:u2\r\nDTSTART:20261211T100000Z\r\nDTEND:20261211T110000Z\r\n"
        "SUMMARY:Demo\r\nEND:VEVENT\r\n"
        "END:VCALENDAR\r\n";
    IcsChanges c = poll_at(v2, 90, NOW + 3600000);
    cr_assert_eq(c.n, 1);
    cr_assert_eq(c.updated, 1);
    cr_assert_str_eq(c.events[0]->type, "calendar.event.updated");
    cr_assert_str_eq(c.events[0]->occurred_at, "2026-12-01T08:00:00.000Z");
    json_t *d = data_of(c.events[0]);
    char *changes = json_dumps(json_object_get(d, "changes"), JSON_COMPACT);
    cr_assert_str_eq(changes, "[\"start\",\"end\",\"location\"]");
    free(changes);
    const json_t *prev = json_object_get(d, "previous");
    cr_assert_str_eq(s_of(prev, "location"), "Office A");
    cr_assert_str_eq(s_of(prev, "start"), "2026-12-10T10:00:00.000Z");
    cr_assert_str_eq(s_of(d, "location"), "Office B");
    cr_assert_eq(json_integer_value(json_object_get(d, "sequence")), 1);
    json_decref(d);
    cr_assert_eq(append(&c), 1);
    cr_assert_eq(scalar("SELECT sequence FROM calendar_events WHERE uid = ?1", "u1"), 1);
    cr_assert_eq(poll_at(v2, 90, NOW).n, 0, "nothing more to say");

    /* a feed that never bumps SEQUENCE: the digest still sees the change */
    char *v3 = strdup(v2);
    char *demo = strstr(v3, "SUMMARY:Demo");
    memcpy(demo, "SUMMARY:Dem0", 12);
    c = poll_at(v3, 90, NOW);
    cr_assert_eq(c.updated, 1);
    d = data_of(c.events[0]);
    cr_assert_str_eq(s_of(d, "uid"), "u2");
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(d, "changes"), 0)),
                     "summary");
    json_decref(d);
    cr_assert_eq(append(&c), 1);
    free(v3);
}

Test(ics, cancelled_status_and_removal_from_the_feed)
{
    cr_assert_eq(poll_append(V1, 90, NOW), 2);
    const char *v2 =
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n"
        "BEGIN:VEVENT\r\nUID:u1\r\nDTSTART:20261210T100000Z\r\nDTEND:20261210T110000Z\r\n"
        "SUMMARY:Kickoff\r\nLOCATION:Office A\r\nSEQUENCE:1\r\nSTATUS:CANCELLED\r\n"
        "ATTENDEE;CN=Ann:mailto:ann@acme.io\r\nEND:VEVENT\r\n"
        "END:VCALENDAR\r\n";
    IcsChanges c = poll_at(v2, 90, NOW);
    cr_assert_eq(c.n, 2);
    cr_assert_eq(c.canceled, 2);
    json_t *a = data_of(c.events[0]), *b = data_of(c.events[1]);
    cr_assert_str_eq(s_of(a, "uid"), "u1");
    cr_assert_str_eq(s_of(a, "reason"), "cancelled");
    cr_assert_str_eq(s_of(b, "uid"), "u2");
    cr_assert_str_eq(s_of(b, "reason"), "removed");
    cr_assert_str_eq(s_of(b, "summary"), "Demo", "the last known state is told");
    json_decref(a);
    json_decref(b);
    cr_assert_eq(append(&c), 2);
    cr_assert_eq(scalar("SELECT count(*) FROM calendar_events WHERE canceled = 1 AND source = ?1",
                        SRC), 2);
    cr_assert_eq(poll_append(v2, 90, NOW), 0, "a re-poll says nothing");
    /* the removed one comes back: created again, with a new key */
    cr_assert_eq(poll_append(V1, 90, NOW), 2, "u2 reinstated, u1 no longer cancelled");
    cr_assert_eq(scalar("SELECT count(*) FROM calendar_events WHERE canceled = 0 AND source = ?1",
                        SRC), 2);
}

Test(ics, an_empty_feed_cancels_nothing_unless_allowed)
{
    cr_assert_eq(poll_append(V1, 90, NOW), 2);
    int64_t head = ledger_head_seq(led);
    const char *empty = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n"
                        "END:VCALENDAR\r\n";
    IcsChanges c = { 0 };
    Err e = { 0 };
    cr_assert_eq(ics_poll_diff(rd, SRC, empty, strlen(empty), 90, NOW, &c, &e), ERR_INVAL);
    cr_assert(strstr(e.msg, "no VEVENT, which would cancel all 2 known events"), "%s", e.msg);
    cr_assert_eq(c.n, 0);
    cr_assert_eq(ledger_head_seq(led), head);
    /* one event left in the feed is an ordinary removal of the other */
    const char *one = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n"
                      "BEGIN:VEVENT\r\nUID:u1\r\nDTSTART:20261210T100000Z\r\n"
                      "DTEND:20261210T110000Z\r\nSUMMARY:Kickoff\r\nLOCATION:Office A\r\n"
                      "ATTENDEE;CN=Ann:mailto:ann@acme.io\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    IcsChanges r = poll_at(one, 90, NOW);
    cr_assert_eq(r.canceled, 1);
    cr_assert_eq(append(&r), 1);
    /* the operator says an empty calendar is real */
    IcsOptions allow = { .horizon_days = 90, .allow_empty = true };
    cr_assert_eq(ics_poll_diff_opts(rd, SRC, empty, strlen(empty), &allow, NOW, &c, &e), 0,
                 "%s", e.msg);
    cr_assert_eq(c.canceled, 1);
    cr_assert_eq(append(&c), 1);
    cr_assert_eq(scalar("SELECT count(*) FROM calendar_events WHERE canceled = 0 AND source = ?1",
                        SRC), 0);
    /* and with nothing left to cancel, an empty feed is no error */
    cr_assert_eq(poll_at(empty, 90, NOW).n, 0);
}

/* Polls a bad feed: the error names the line, nothing is returned. */
static void bad(const char *text, const char *want)
{
    IcsChanges c = { 0 };
    Err e = { 0 };
    int rc = ics_poll_diff(rd, SRC, text, strlen(text), 90, NOW, &c, &e);
    cr_assert(rc < 0, "accepted: %s", text);
    cr_assert(strstr(e.msg, want), "'%s' does not say '%s'", e.msg, want);
    cr_assert_eq(c.n, 0);
    cr_assert_null(c.events);
}

Test(ics, malformed_feed_names_the_line_and_changes_nothing)
{
    cr_assert_eq(poll_append(V1, 90, NOW), 2);
    int64_t head = ledger_head_seq(led);
    /* libical's own complaint, traced to its line */
    bad("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n"
        "BEGIN:VEVENT\r\nUID:u1\r\nDTSTART:20261210T100000Z\r\n"
        "DTEND:2026121XT110000Z\r\nSUMMARY:Kickoff\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        "line 7: ");
    /* a line that is no property */
    bad("BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nUID:u1\nthis is not ical\n"
        "DTSTART:20261210T100000Z\nEND:VEVENT\nEND:VCALENDAR\n",
        "line 5: expected NAME:value");
    /* a folded line keeps the number of the line it starts on */
    bad("BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nUID:u1\nDESCRIPTION:a long\n  text\n"
        "DTSTART;TZID=Nowhere/Land:20261210T100000\nEND:VEVENT\nEND:VCALENDAR\n",
        "line 7: DTSTART: unknown time zone 'Nowhere/Land'");
    bad("BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nUID:u1\nDTSTART:20261210T100000Z\n"
        "END:VCALENDAR\n",
        "line 6: END:VCALENDAR does not close BEGIN:VEVENT (line 3)");
    bad("BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nUID:u1\nDTSTART:20261210T100000Z\nEND:VEVENT\n",
        "BEGIN:VCALENDAR (line 1) is never closed");
    bad("BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nSUMMARY:x\nDTSTART:20261210T100000Z\n"
        "END:VEVENT\nEND:VCALENDAR\n",
        "line 3: VEVENT without a UID");
    bad("BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:u9\nDTSTART;TZID=../../../etc/passwd:20261210T100000\n"
        "END:VEVENT\nEND:VCALENDAR\n",
        "line 4: DTSTART: unknown time zone");
    bad("", "no BEGIN:VCALENDAR");
    /* too large */
    IcsOptions small = { .max_bytes = 64 };
    IcsChanges c = { 0 };
    Err e = { 0 };
    cr_assert_eq(ics_poll_diff_opts(rd, SRC, V1, strlen(V1), &small, NOW, &c, &e), ERR_TOOBIG);
    IcsOptions few = { .max_events = 1 };
    cr_assert_eq(ics_poll_diff_opts(rd, SRC, V1, strlen(V1), &few, NOW, &c, &e), ERR_TOOBIG);
    cr_assert(strstr(e.msg, "line 13: more than 1 VEVENTs"), "%s", e.msg);

    /* the good state is untouched: nothing appended, the good feed is current */
    cr_assert_eq(ledger_head_seq(led), head);
    cr_assert_eq(scalar("SELECT count(*) FROM calendar_events WHERE canceled = 0 AND source = ?1",
                        SRC), 2);
    cr_assert_eq(poll_at(V1, 90, NOW).n, 0);
}

Test(ics, the_same_feed_twice_adds_nothing_and_replay_rebuilds_the_same_state)
{
    size_t len;
    char *text = slurp("0001-recurring.ics", &len);
    /* two pollers that both saw the empty state derive the same keys */
    IcsChanges a = poll_at(text, 90, NOW), b = poll_at(text, 90, NOW);
    cr_assert_eq(a.n, b.n);
    for (size_t i = 0; i < a.n; i++)
        cr_assert_str_eq(a.events[i]->idempotency_key, b.events[i]->idempotency_key);
    cr_assert_eq(append(&a), 13);
    cr_assert_eq(append(&b), 0, "every event of the second batch is a duplicate");
    cr_assert_eq(poll_append(text, 90, NOW), 0);
    /* a day later: the window moved, nothing in the feed changed */
    cr_assert_eq(poll_append(text, 90, NOW + 86400000LL), 0);
    cr_assert_eq(poll_append(V1, 90, NOW), 2 + 13, "V1 is new, the rest is gone");

    ReplayCheck res[16];
    size_t n = 0;
    Err e = { 0 };
    cr_assert_eq(ledger_replay_check(rd, "calendar", res, 16, &n, &e), 0, "%s", e.msg);
    cr_assert_eq(n, 1);
    cr_assert(res[0].equal, "%s != %s", res[0].live, res[0].rebuilt);
    int64_t events = 0;
    char before[CORE_SHA256_HEX + 1], after[CORE_SHA256_HEX + 1];
    const Projection *p = ledger_projection_find("calendar");
    cr_assert_not_null(p);
    cr_assert_eq(ledger_projection_digest(rd, p, before, &e), 0, "%s", e.msg);
    cr_assert_eq(ledger_replay(rd, "calendar", true, &events, &e), 0, "%s", e.msg);
    cr_assert_eq(ledger_projection_digest(rd, p, after, &e), 0, "%s", e.msg);
    cr_assert_str_eq(before, after);
    cr_assert_eq(poll_at(V1, 90, NOW).n, 0, "the rebuilt state is current");
    free(text);
}

Test(ics, check_reports_the_number_of_events)
{
    size_t n = 0;
    Err e = { 0 };
    cr_assert_eq(ics_check(V1, strlen(V1), NULL, &n, &e), 0, "%s", e.msg);
    cr_assert_eq(n, 2);
}

Test(ics, fetch_a_file_with_not_modified)
{
    char path[512];
    snprintf(path, sizeof path, "%s/feed.ics", dir);
    FILE *f = fopen(path, "w");
    fputs(V1, f);
    fclose(f);
    IcsFetched a = { 0 }, b = { 0 }, c = { 0 };
    Err e = { 0 };
    cr_assert_eq(ics_fetch(path, NULL, NULL, 0, 0, &a, &e), 0, "%s", e.msg);
    cr_assert_not(a.not_modified);
    cr_assert_eq(a.len, strlen(V1));
    cr_assert_str_eq(a.body, V1);
    cr_assert_not_null(a.etag);
    cr_assert_eq(ics_fetch(path, a.etag, a.last_modified, 0, 0, &b, &e), 0, "%s", e.msg);
    cr_assert(b.not_modified);
    cr_assert_null(b.body);
    cr_assert_str_eq(b.etag, a.etag);
    f = fopen(path, "a");
    fputs("\r\n", f); /* a different size: a different validator whatever the clock */
    fclose(f);
    cr_assert_eq(ics_fetch(path, a.etag, a.last_modified, 0, 0, &c, &e), 0, "%s", e.msg);
    cr_assert_not(c.not_modified);
    cr_assert_eq(c.len, strlen(V1) + 2);
    cr_assert_str_neq(c.etag, a.etag);
    ics_fetched_done(&a);
    ics_fetched_done(&b);
    ics_fetched_done(&c);
    IcsFetched d = { 0 };
    cr_assert_eq(ics_fetch(path, NULL, NULL, 16, 0, &d, &e), ERR_TOOBIG);
    cr_assert_eq(ics_fetch("/nonexistent/feed.ics", NULL, NULL, 0, 0, &d, &e), ERR_IO);
    cr_assert_eq(ics_fetch("ftp://example.com/x.ics", NULL, NULL, 0, 0, &d, &e), ERR_INVAL);
}

/* A one-thread HTTP server on 127.0.0.1 that serves V1 with ETag "v1" and
 * answers 304 to If-None-Match: "v1"; it serves `requests` requests. */
typedef struct Server {
    int fd;
    int port;
    int requests;
    int saw_conditional;
} Server;

static void *serve(void *arg)
{
    Server *s = arg;
    for (int i = 0; i < s->requests; i++) {
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            break;
        char req[4096];
        size_t n = 0;
        while (n < sizeof req - 1) {
            ssize_t r = read(c, req + n, sizeof req - 1 - n);
            if (r <= 0)
                break;
            n += (size_t)r;
            req[n] = '\0';
            if (strstr(req, "\r\n\r\n"))
                break;
        }
        req[n] = '\0';
        char out[4096];
        int len;
        if (strstr(req, "If-None-Match: \"v1\"")) {
            s->saw_conditional++;
            len = snprintf(out, sizeof out,
                           "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n");
        } else {
            len = snprintf(out, sizeof out,
                           "HTTP/1.1 200 OK\r\nContent-Type: text/calendar\r\nETag: \"v1\"\r\n"
                           "Last-Modified: Tue, 01 Dec 2026 08:00:00 GMT\r\n"
                           "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                           strlen(V1), V1);
        }
        cr_assert(write(c, out, (size_t)len) == len);
        close(c);
    }
    return NULL;
}

Test(ics, fetch_over_http_with_etag_and_304)
{
    /* the socket listens before the thread starts: no wait for readiness */
    Server s = { .requests = 2 };
    s.fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(s.fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    cr_assert_eq(bind(s.fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(s.fd, 4), 0);
    socklen_t al = sizeof a;
    cr_assert_eq(getsockname(s.fd, (struct sockaddr *)&a, &al), 0);
    s.port = ntohs(a.sin_port);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, serve, &s), 0);

    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/private/secret-token/basic.ics", s.port);
    IcsFetched f1 = { 0 }, f2 = { 0 };
    Err e = { 0 };
    cr_assert_eq(ics_fetch(url, NULL, NULL, 0, 5000, &f1, &e), 0, "%s", e.msg);
    cr_assert_eq(f1.http_status, 200);
    cr_assert_str_eq(f1.body, V1);
    cr_assert_str_eq(f1.etag, "\"v1\"");
    cr_assert_str_eq(f1.last_modified, "Tue, 01 Dec 2026 08:00:00 GMT");
    cr_assert_eq(ics_fetch(url, f1.etag, f1.last_modified, 0, 5000, &f2, &e), 0, "%s", e.msg);
    cr_assert(f2.not_modified);
    cr_assert_eq(f2.http_status, 304);
    cr_assert_null(f2.body);
    cr_assert_str_eq(f2.etag, "\"v1\"");
    pthread_join(t, NULL);
    cr_assert_eq(s.saw_conditional, 1);
    /* the fetched body goes straight into a poll */
    IcsChanges c = poll_at(f1.body, 90, NOW);
    cr_assert_eq(append(&c), 2);
    ics_fetched_done(&f1);
    ics_fetched_done(&f2);

    /* nobody listens any more: an error naming the host, not the secret path */
    close(s.fd);
    IcsFetched f3 = { 0 };
    cr_assert_eq(ics_fetch(url, NULL, NULL, 0, 2000, &f3, &e), ERR_IO);
    cr_assert(strstr(e.msg, "http://127.0.0.1"), "%s", e.msg);
    cr_assert_null(strstr(e.msg, "secret-token"), "%s", e.msg);
}

Test(ics, a_series_edited_later_cancels_and_moves_its_instances)
{
    size_t len;
    char *text = slurp("0001-recurring.ics", &len);
    cr_assert_eq(poll_append(text, 90, NOW), 13);
    /* the organizer drops Dec 23 and moves Dec 30 to the afternoon */
    Buf b;
    buf_init(&b, 0);
    const char *ex = "EXDATE;TZID=Europe/Berlin:20261209T100000\r\n";
    const char *at = strstr(text, ex);
    cr_assert_not_null(at);
    buf_append(&b, text, (size_t)(at - text) + strlen(ex));
    buf_puts(&b, "EXDATE;TZID=Europe/Berlin:20261223T100000\r\n");
    const char *rest = at + strlen(ex);
    const char *end = strstr(rest, "END:VCALENDAR");
    buf_append(&b, rest, (size_t)(end - rest));
    buf_puts(&b, "BEGIN:VEVENT\r\nUID:weekly-1@example.com\r\n"
                 "RECURRENCE-ID;TZID=Europe/Berlin:20261230T100000\r\n"
                 "DTSTART;TZID=Europe/Berlin:20261230T160000\r\n"
                 "DTEND;TZID=Europe/Berlin:20261230T170000\r\n"
                 "SUMMARY:Weekly review with ACME\r\nLOCATION:Room 1\r\n"
                 "ORGANIZER;CN=Olivia Owner:mailto:Olivia@Example.com\r\n"
                 "ATTENDEE;CN=Ann Smith;ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED:MAILTO:Ann@Acme.io\r\n"
                 "ATTENDEE;ROLE=OPT-PARTICIPANT;PARTSTAT=NEEDS-ACTION:mailto:bob@acme.io\r\n"
                 "SEQUENCE:1\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n");
    IcsChanges c = poll_at(buf_cstr(&b), 90, NOW);
    cr_assert_eq(c.n, 2, "%zu", c.n);
    json_t *up = data_of(c.events[0]), *gone = data_of(c.events[1]);
    cr_assert_str_eq(c.events[0]->type, "calendar.event.updated");
    cr_assert_str_eq(s_of(up, "recurrence_id"), "2026-12-30T09:00:00.000Z");
    cr_assert_str_eq(s_of(up, "start"), "2026-12-30T15:00:00.000Z");
    char *changes = json_dumps(json_object_get(up, "changes"), JSON_COMPACT);
    cr_assert_str_eq(changes, "[\"start\",\"end\"]");
    free(changes);
    cr_assert_str_eq(c.events[1]->type, "calendar.event.canceled");
    cr_assert_str_eq(s_of(gone, "recurrence_id"), "2026-12-23T09:00:00.000Z");
    cr_assert_str_eq(s_of(gone, "reason"), "removed");
    json_decref(up);
    json_decref(gone);
    cr_assert_eq(append(&c), 2);
    cr_assert_eq(poll_append(buf_cstr(&b), 90, NOW), 0);
    buf_done(&b);
    free(text);
}

Test(ics, unknown_properties_and_alarms_do_not_fail_a_feed)
{
    const char *feed =
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nX-WR-CALNAME:Work\r\n"
        "REFRESH-INTERVAL;VALUE=DURATION:P1D\r\n"
        "BEGIN:VEVENT\r\nUID:a\r\nDTSTART:20261202T100000Z\r\nDTEND:20261202T103000Z\r\n"
        "VENDORTHING:whatever\r\nSUMMARY;LANGUAGE=en:Hello\r\n"
        "ATTENDEE;ROLE=CHAIR;PARTSTAT=X-SOMETHING:mailto:c@d.io\r\n"
        "BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT15M\r\nEND:VALARM\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n";
    IcsChanges c = poll_at(feed, 90, NOW);
    cr_assert_eq(c.created, 1);
    json_t *d = data_of(c.events[0]);
    cr_assert_str_eq(s_of(d, "summary"), "Hello");
    cr_assert_str_eq(s_of(json_array_get(json_object_get(d, "attendees"), 0), "role"), "chair");
    json_decref(d);
    cr_assert_eq(append(&c), 1);
}

Test(ics, runaway_recurrence_is_bounded)
{
    /* every second since 1990, counted: the window is never reached within
     * the feed's budget of steps */
    const char *feed = "BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nUID:r\n"
                       "DTSTART:19900101T000000Z\nRRULE:FREQ=SECONDLY;COUNT=2000000000\n"
                       "SUMMARY:x\nEND:VEVENT\nEND:VCALENDAR\n";
    IcsChanges c = { 0 };
    Err e = { 0 };
    cr_assert_eq(ics_poll_diff(rd, SRC, feed, strlen(feed), 90, NOW, &c, &e), ERR_TOOBIG);
    cr_assert(strstr(e.msg, "line 6: "), "%s", e.msg);
    /* without COUNT the iteration starts at the window: cheap, and bounded
     * by the cap per series */
    const char *since = "BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nUID:h\n"
                        "DTSTART;TZID=Europe/Berlin:20000101T090000\nRRULE:FREQ=HOURLY\n"
                        "SUMMARY:x\nEND:VEVENT\nEND:VCALENDAR\n";
    cr_assert_eq(ics_poll_diff(rd, SRC, since, strlen(since), 90, NOW, &c, &e), 0, "%s", e.msg);
    cr_assert_eq(c.created, ICS_MAX_OCCURRENCES);
    json_t *d = data_of(c.events[0]);
    cr_assert_str_eq(s_of(d, "start"), "2026-11-01T00:00:00.000Z", "30 days back, on the hour: %s", s_of(d, "start"));
    json_decref(d);
    ics_changes_done(&c);
    /* an RRULE stops at its own cap per series: 1000 a day for one in the window */
    const char *busy = "BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nUID:m\n"
                       "DTSTART:20261201T000000Z\nRRULE:FREQ=MINUTELY\nSUMMARY:x\n"
                       "END:VEVENT\nEND:VCALENDAR\n";
    IcsOptions o = { .max_occurrences = 50 };
    cr_assert_eq(ics_poll_diff_opts(rd, SRC, busy, strlen(busy), &o, NOW, &c, &e), 0, "%s", e.msg);
    cr_assert_eq(c.created, 50);
    ics_changes_done(&c);
}

Test(ics, a_uid_given_twice_keeps_the_highest_sequence)
{
    const char *feed =
        "BEGIN:VCALENDAR\nVERSION:2.0\n"
        "BEGIN:VEVENT\nUID:d\nDTSTART:20261202T100000Z\nSEQUENCE:2\nSUMMARY:new\nEND:VEVENT\n"
        "BEGIN:VEVENT\nUID:d\nDTSTART:20261202T100000Z\nSEQUENCE:1\nSUMMARY:old\nEND:VEVENT\n"
        "END:VCALENDAR\n";
    IcsChanges c = poll_at(feed, 90, NOW);
    cr_assert_eq(c.n, 1);
    json_t *d = data_of(c.events[0]);
    cr_assert_str_eq(s_of(d, "summary"), "new");
    json_decref(d);
    cr_assert_eq(append(&c), 1);
    cr_assert_eq(poll_at(feed, 90, NOW).n, 0);
}
