/* Unit tests: cron schedules (flow/flow_cron.h). Expected firing times are
 * worked out by hand and written as RFC 3339 UTC text; the calendar facts
 * they rest on are noted next to them (2026-01-01 is a Thursday; Berlin
 * switches at 01:00Z on 2026-03-29 and 2026-10-25; New York at 07:00Z on
 * 2026-03-08 and 06:00Z on 2026-11-01). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "flow/flow_cron.h"

static int64_t ts(const char *s)
{
    int64_t ms = 0;
    cr_assert_eq(core_time_parse(s, strlen(s), &ms), 0, "bad time literal %s", s);
    return ms;
}

static FlowCron cron(const char *expr, const char *tz)
{
    FlowCron c;
    Err err = { 0 };
    int col = -1;
    int rc = flow_cron_parse(expr, tz, &c, &col, &err);
    cr_assert_eq(rc, 0, "'%s': %s (column %d)", expr, err.msg, col);
    return c;
}

static void expect_next(const char *expr, const char *tz, const char *after, const char *want)
{
    FlowCron c = cron(expr, tz);
    Err err = { 0 };
    int64_t got = 0;
    int rc = flow_cron_next(&c, ts(after), &got, &err);
    cr_assert_eq(rc, 0, "next('%s' %s, %s): %s", expr, tz ? tz : "UTC", after, err.msg);
    char g[CORE_TIME_LEN + 1], w[CORE_TIME_LEN + 1];
    core_time_format(got, g);
    core_time_format(ts(want), w);
    cr_assert_str_eq(g, w, "next('%s' %s, %s)", expr, tz ? tz : "UTC", after);
}

static void expect_prev(const char *expr, const char *tz, const char *at, const char *want)
{
    FlowCron c = cron(expr, tz);
    Err err = { 0 };
    int64_t got = 0;
    int rc = flow_cron_prev(&c, ts(at), &got, &err);
    cr_assert_eq(rc, 0, "prev('%s' %s, %s): %s", expr, tz ? tz : "UTC", at, err.msg);
    char g[CORE_TIME_LEN + 1], w[CORE_TIME_LEN + 1];
    core_time_format(got, g);
    core_time_format(ts(want), w);
    cr_assert_str_eq(g, w, "prev('%s' %s, %s)", expr, tz ? tz : "UTC", at);
}

/* A chain of next() calls from start: each want is the firing after the
 * previous one. */
static void expect_chain(const char *expr, const char *tz, const char *start,
                         const char *const *wants, size_t n)
{
    const char *after = start;
    for (size_t i = 0; i < n; i++) {
        expect_next(expr, tz, after, wants[i]);
        after = wants[i];
    }
}

static void expect_parse_err(const char *expr, const char *tz, int want_col, const char *want_msg)
{
    FlowCron c;
    memset(&c, 0xab, sizeof c);
    FlowCron before = c;
    Err err = { 0 };
    int col = -1;
    int rc = flow_cron_parse(expr, tz, &c, &col, &err);
    cr_assert_eq(rc, ERR_INVAL, "'%s' parsed (rc %d)", expr, rc);
    cr_assert_eq(err.code, ERR_INVAL);
    cr_assert(strstr(err.msg, want_msg), "'%s': message '%s' lacks '%s'", expr, err.msg,
              want_msg);
    cr_assert_eq(col, want_col, "'%s': column %d, want %d (%s)", expr, col, want_col, err.msg);
    cr_assert(memcmp(&c, &before, sizeof c) == 0, "'%s': output written on failure", expr);
}

/* ---- Parsing ---------------------------------------------------------- */

Test(flow_cron_parse, field_count)
{
    expect_parse_err("0 0 * *", NULL, 8, "day-of-week is missing");
    expect_parse_err("0", NULL, 2, "hour is missing");
    expect_parse_err("0 0 * * * *", NULL, 11, "too many fields");
    expect_parse_err("0 0 * * * 2026", NULL, 11, "too many fields");
    expect_parse_err("", NULL, 1, "empty");
    expect_parse_err("  \t ", NULL, 1, "empty");
}

Test(flow_cron_parse, out_of_range)
{
    expect_parse_err("60 * * * *", NULL, 1, "minute: 60 is out of range 0-59");
    expect_parse_err("0 24 * * *", NULL, 3, "hour: 24 is out of range 0-23");
    expect_parse_err("0 0 32 * *", NULL, 5, "day-of-month: 32 is out of range 1-31");
    expect_parse_err("0 0 0 * *", NULL, 5, "day-of-month: 0 is out of range 1-31");
    expect_parse_err("0 0 * 13 *", NULL, 7, "month: 13 is out of range 1-12");
    expect_parse_err("0 0 * * 8", NULL, 9, "day-of-week: 8 is out of range 0-7");
    expect_parse_err("0 0 1,5-40 * *", NULL, 9, "day-of-month: 40 is out of range");
    expect_parse_err("99999999999999999999 * * * *", NULL, 1, "minute:");
}

Test(flow_cron_parse, bad_names)
{
    expect_parse_err("0 0 * foo *", NULL, 7, "month: unknown name 'foo'");
    expect_parse_err("0 0 * * mon-fry", NULL, 13, "day-of-week: unknown name 'fry'");
    expect_parse_err("0 0 * * monday", NULL, 9, "day-of-week: unknown name 'monday'");
    expect_parse_err("0 0 * mon *", NULL, 7, "month: unknown name 'mon'");
    expect_parse_err("0 0 * * jan", NULL, 9, "day-of-week: unknown name 'jan'");
    expect_parse_err("a * * * *", NULL, 1, "minute: 'a' is not a number");
    expect_parse_err("0 0 jan * *", NULL, 5, "day-of-month: 'jan' is not a number");
}

Test(flow_cron_parse, ranges_and_steps)
{
    expect_parse_err("0 10-5 * * *", NULL, 3, "hour: range 10-5 is reversed");
    expect_parse_err("0 0 * * sat-sun", NULL, 9, "day-of-week: range 6-0 is reversed");
    expect_parse_err("*/0 * * * *", NULL, 3, "minute: step 0");
    expect_parse_err("0 0 1-31/0 * *", NULL, 10, "day-of-month: step 0");
    expect_parse_err("*/ * * * *", NULL, 3, "minute: a step");
    expect_parse_err("*/x * * * *", NULL, 3, "minute: a step");
    expect_parse_err("5- * * * *", NULL, 3, "minute: a value is missing");
    expect_parse_err("-5 * * * *", NULL, 1, "minute: unexpected '-'");
}

Test(flow_cron_parse, lists_and_junk)
{
    expect_parse_err("1,,2 * * * *", NULL, 3, "minute: empty list item");
    expect_parse_err(",1 * * * *", NULL, 1, "minute: empty list item");
    expect_parse_err("0 1, * * *", NULL, 4, "hour: empty list item");
    expect_parse_err("5x * * * *", NULL, 2, "minute: unexpected 'x'");
    expect_parse_err("0 0 * * 1#2", NULL, 10, "day-of-week: unexpected '#'");
    expect_parse_err("0 0 * * 1/2x", NULL, 12, "day-of-week: unexpected 'x'");
    expect_parse_err("0 0 1L * *", NULL, 6, "day-of-month: unexpected 'L'");
    expect_parse_err("0 0 * *\x01 *", NULL, 8, "month: unexpected byte 0x01");
    expect_parse_err("*-5 * * * *", NULL, 2, "minute: unexpected '-'");
}

Test(flow_cron_parse, macros_errors)
{
    expect_parse_err("@reboot", NULL, 1, "unknown macro '@reboot'");
    expect_parse_err("@day", NULL, 1, "unknown macro");
    expect_parse_err("  @daily x", NULL, 10, "unexpected text after '@daily'");
    expect_parse_err("@daily 0", NULL, 8, "unexpected text");
}

Test(flow_cron_parse, length_limit)
{
    char expr[FLOW_CRON_EXPR_MAX + 50];
    memset(expr, '1', sizeof expr - 1);
    expr[sizeof expr - 1] = '\0';
    expect_parse_err(expr, NULL, FLOW_CRON_EXPR_MAX + 1, "longer than 256 bytes");
    /* A long but valid list is accepted up to the limit. */
    char ok[FLOW_CRON_EXPR_MAX + 1];
    size_t n = 0;
    n += (size_t)snprintf(ok + n, sizeof ok - n, "0");
    while (n + 2 < FLOW_CRON_EXPR_MAX - 8)
        n += (size_t)snprintf(ok + n, sizeof ok - n, ",0");
    snprintf(ok + n, sizeof ok - n, " 0 * * *");
    cr_assert_leq(strlen(ok), FLOW_CRON_EXPR_MAX);
    FlowCron c = cron(ok, NULL);
    cr_assert_eq(c.minutes, 1);
}

Test(flow_cron_parse, timezone_errors)
{
    expect_parse_err("0 0 * * *", "Mars/Olympus_Mons", 0, "unknown timezone 'Mars/Olympus_Mons'");
    expect_parse_err("0 0 * * *", "../../etc/passwd", 0, "not an IANA timezone name");
    expect_parse_err("0 0 * * *", "/usr/share/zoneinfo/UTC", 0, "not an IANA timezone name");
    expect_parse_err("0 0 * * *", "Europe", 0, "unknown timezone 'Europe'");
    expect_parse_err("0 0 * * *",
                     "Europe/Berlin_Europe/Berlin_Europe/Berlin_Europe/Berlin_Europe/Berlin", 0,
                     "longer than 63 bytes");
    /* The expression is checked first, with its column. */
    expect_parse_err("0 0 * * 9", "Mars/Olympus_Mons", 9, "day-of-week");
}

Test(flow_cron_parse, syntax)
{
    FlowCron c = cron("*/15 10-20/5 5/15 JAN,Mar,12 Mon-fri", NULL);
    cr_assert_eq(c.minutes, 1ull << 0 | 1ull << 15 | 1ull << 30 | 1ull << 45);
    cr_assert_eq(c.hours, 1u << 10 | 1u << 15 | 1u << 20);
    cr_assert_eq(c.mdays, 1u << 5 | 1u << 20);
    cr_assert_eq(c.months, 1u << 1 | 1u << 3 | 1u << 12);
    cr_assert_eq(c.wdays, 0x3e); /* Monday..Friday */
    cr_assert(!c.mday_star && !c.wday_star);
    cr_assert_str_eq(c.tz, "UTC");

    cr_assert_eq(cron("10-50/20 * * * *", NULL).minutes, 1ull << 10 | 1ull << 30 | 1ull << 50);
    cr_assert_eq(cron("5/15 * * * *", NULL).minutes,
                 1ull << 5 | 1ull << 20 | 1ull << 35 | 1ull << 50);
    cr_assert_eq(cron("* * * * *", NULL).minutes, (1ull << 60) - 1);
    cr_assert_eq(cron("0 * * * *", NULL).hours, (1u << 24) - 1);
    cr_assert_eq(cron("0 0 * * *", NULL).mdays, 0xfffffffeu);
    cr_assert_eq(cron("0 0 * * *", NULL).months, 0x1ffe);
    cr_assert_eq(cron("1,2,3-4,59 0 * * *", NULL).minutes,
                 1ull << 1 | 1ull << 2 | 1ull << 3 | 1ull << 4 | 1ull << 59);
    cr_assert_eq(cron("0 0 1-31/10 * *", NULL).mdays, 1u << 1 | 1u << 11 | 1u << 21 | 1u << 31);
    cr_assert_eq(cron("0 0 * jan-mar,OCT-dec/2 *", NULL).months,
                 1u << 1 | 1u << 2 | 1u << 3 | 1u << 10 | 1u << 12);
    cr_assert_eq(cron("  0\t0  *  * *  ", NULL).minutes, 1);
}

Test(flow_cron_parse, weekdays)
{
    cr_assert_eq(cron("0 0 * * 0", NULL).wdays, 0x01);
    cr_assert_eq(cron("0 0 * * 7", NULL).wdays, 0x01); /* 7 is Sunday too */
    cr_assert_eq(cron("0 0 * * SUN", NULL).wdays, 0x01);
    cr_assert_eq(cron("0 0 * * 5-7", NULL).wdays, 0x61); /* Fri, Sat, Sun */
    cr_assert_eq(cron("0 0 * * 0-7", NULL).wdays, 0x7f);
    cr_assert_eq(cron("0 0 * * */3", NULL).wdays, 0x49); /* Sun, Wed, Sat */
    cr_assert_eq(cron("0 0 * * 1/3", NULL).wdays, 0x12); /* Mon, Thu */
    cr_assert_eq(cron("0 0 * * sat,sun", NULL).wdays, 0x41);
    cr_assert_eq(cron("0 0 * * *", NULL).wdays, 0x7f);
}

Test(flow_cron_parse, day_field_stars)
{
    FlowCron c = cron("0 0 1,15 * *", NULL);
    cr_assert(!c.mday_star && c.wday_star);
    c = cron("0 0 * * mon", NULL);
    cr_assert(c.mday_star && !c.wday_star);
    c = cron("0 0 */2 * 5", NULL); /* `*` with a step still counts as `*` */
    cr_assert(c.mday_star && !c.wday_star);
    c = cron("0 0 1-31 * 0-7", NULL); /* full ranges are restrictions */
    cr_assert(!c.mday_star && !c.wday_star);
}

static bool cron_eq(FlowCron a, FlowCron b)
{
    return a.minutes == b.minutes && a.hours == b.hours && a.mdays == b.mdays &&
           a.months == b.months && a.wdays == b.wdays && a.mday_star == b.mday_star &&
           a.wday_star == b.wday_star && strcmp(a.tz, b.tz) == 0;
}

Test(flow_cron_parse, macros)
{
    cr_assert(cron_eq(cron("@yearly", NULL), cron("0 0 1 1 *", NULL)));
    cr_assert(cron_eq(cron("@annually", NULL), cron("0 0 1 1 *", NULL)));
    cr_assert(cron_eq(cron("@monthly", NULL), cron("0 0 1 * *", NULL)));
    cr_assert(cron_eq(cron("@weekly", NULL), cron("0 0 * * 0", NULL)));
    cr_assert(cron_eq(cron("@daily", NULL), cron("0 0 * * *", NULL)));
    cr_assert(cron_eq(cron("@midnight", NULL), cron("0 0 * * *", NULL)));
    cr_assert(cron_eq(cron("@hourly", NULL), cron("0 * * * *", NULL)));
    cr_assert(cron_eq(cron(" @HOURLY\t", NULL), cron("0 * * * *", NULL)));
    FlowCron y = cron("@yearly", NULL);
    cr_assert_eq(y.minutes, 1);
    cr_assert_eq(y.hours, 1);
    cr_assert_eq(y.mdays, 1u << 1);
    cr_assert_eq(y.months, 1u << 1);
    cr_assert(!y.mday_star && y.wday_star);
}

Test(flow_cron_parse, timezones)
{
    cr_assert_str_eq(cron("0 0 * * *", NULL).tz, "UTC");
    cr_assert_str_eq(cron("0 0 * * *", "").tz, "UTC");
    cr_assert_str_eq(cron("0 0 * * *", "utc").tz, "UTC");
    cr_assert_str_eq(cron("0 0 * * *", "Europe/Berlin").tz, "Europe/Berlin");
    cr_assert_str_eq(cron("0 0 * * *", "America/New_York").tz, "America/New_York");
    cr_assert_str_eq(cron("0 0 * * *", "America/Argentina/Buenos_Aires").tz,
                     "America/Argentina/Buenos_Aires");
}

/* ---- Next and prev in UTC --------------------------------------------- */

Test(flow_cron_utc, strictly_after_and_at_or_before)
{
    expect_next("0 12 * * *", NULL, "2026-01-31T11:59:59.999Z", "2026-01-31T12:00:00Z");
    expect_next("0 12 * * *", NULL, "2026-01-31T12:00:00Z", "2026-02-01T12:00:00Z");
    expect_next("0 12 * * *", NULL, "2026-01-31T12:00:00.001Z", "2026-02-01T12:00:00Z");
    expect_prev("0 12 * * *", NULL, "2026-01-31T12:00:00Z", "2026-01-31T12:00:00Z");
    expect_prev("0 12 * * *", NULL, "2026-01-31T12:00:00.500Z", "2026-01-31T12:00:00Z");
    expect_prev("0 12 * * *", NULL, "2026-01-31T11:59:59.999Z", "2026-01-30T12:00:00Z");
    expect_next("* * * * *", NULL, "2026-05-05T10:20:30.500Z", "2026-05-05T10:21:00Z");
    expect_prev("* * * * *", NULL, "2026-05-05T10:20:30.500Z", "2026-05-05T10:20:00Z");
    expect_next("* * * * *", NULL, "2026-05-05T10:20:00Z", "2026-05-05T10:21:00Z");
    expect_prev("* * * * *", NULL, "2026-05-05T10:20:00Z", "2026-05-05T10:20:00Z");
}

Test(flow_cron_utc, month_and_year_ends)
{
    expect_next("0 0 1 * *", NULL, "2026-12-31T23:59:59.999Z", "2027-01-01T00:00:00Z");
    expect_prev("0 0 1 * *", NULL, "2026-12-31T23:59:59.999Z", "2026-12-01T00:00:00Z");
    expect_prev("59 23 31 12 *", NULL, "2027-01-01T00:00:00Z", "2026-12-31T23:59:00Z");
    expect_next("59 23 31 12 *", NULL, "2026-12-31T23:59:00Z", "2027-12-31T23:59:00Z");
    /* April has 30 days: the 31st next falls in May. */
    expect_next("30 * 31 * *", NULL, "2026-04-01T00:00:00Z", "2026-05-31T00:30:00Z");
    expect_prev("30 * 31 * *", NULL, "2026-05-01T00:00:00Z", "2026-03-31T23:30:00Z");
    expect_next("0 0 30 * *", NULL, "2026-01-30T00:00:00Z", "2026-03-30T00:00:00Z");
    expect_next("15 10 * * *", NULL, "2026-02-28T23:00:00Z", "2026-03-01T10:15:00Z");
    expect_prev("45 23 * * *", NULL, "2026-03-01T00:10:00Z", "2026-02-28T23:45:00Z");
    expect_next("@yearly", NULL, "2026-06-15T00:00:00Z", "2027-01-01T00:00:00Z");
    expect_prev("@yearly", NULL, "2026-06-15T00:00:00Z", "2026-01-01T00:00:00Z");
    expect_next("@monthly", NULL, "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z");
    expect_next("@hourly", NULL, "2026-12-31T23:00:00Z", "2027-01-01T00:00:00Z");
    expect_next("@weekly", NULL, "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z");
}

Test(flow_cron_utc, steps_lists_names)
{
    const char *const a[] = { "2026-01-01T00:10:00Z", "2026-01-01T00:30:00Z",
                              "2026-01-01T00:50:00Z", "2026-01-01T01:10:00Z" };
    expect_chain("10-50/20 * * * *", NULL, "2026-01-01T00:00:00Z", a, 4);
    const char *const b[] = { "2026-01-01T00:05:00Z", "2026-01-01T00:20:00Z",
                              "2026-01-01T00:35:00Z", "2026-01-01T00:50:00Z",
                              "2026-01-01T01:05:00Z" };
    expect_chain("5/15 * * * *", NULL, "2026-01-01T00:00:00Z", b, 5);
    const char *const q[] = { "2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z",
                              "2026-01-01T00:45:00Z", "2026-01-01T01:00:00Z" };
    expect_chain("*/15 * * * *", NULL, "2026-01-01T00:00:00Z", q, 4);
    expect_next("0 0 1 jun,DEC *", NULL, "2026-06-01T00:00:00Z", "2026-12-01T00:00:00Z");
    /* 2026-01-01 is a Thursday: Sunday is the 4th, Saturday the 3rd. */
    expect_next("0 0 * * 7", NULL, "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z");
    expect_next("0 0 * * sun", NULL, "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z");
    expect_next("0 0 * * 6-7", NULL, "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z");
    const char *const wk[] = { "2026-01-02T09:00:00Z", "2026-01-05T09:00:00Z",
                               "2026-01-06T09:00:00Z" };
    expect_chain("0 9 * * mon-fri", NULL, "2026-01-01T09:00:00Z", wk, 3);
    expect_prev("0 9 * * mon-fri", NULL, "2026-01-05T08:59:00Z", "2026-01-02T09:00:00Z");
    expect_next("0 0 1 */3 *", NULL, "2026-01-01T00:00:00Z", "2026-04-01T00:00:00Z");
}

Test(flow_cron_utc, vixie_day_rule)
{
    /* Both day fields restricted: the 13th OR a Friday. Fridays in January
     * 2026 are the 2nd, 9th, 16th; the 13th is a Tuesday. */
    const char *const v[] = { "2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z",
                              "2026-01-13T00:00:00Z", "2026-01-16T00:00:00Z" };
    expect_chain("0 0 13 * 5", NULL, "2026-01-01T00:00:00Z", v, 4);
    expect_prev("0 0 13 * 5", NULL, "2026-01-15T00:00:00Z", "2026-01-13T00:00:00Z");
    expect_prev("0 0 13 * fri", NULL, "2026-01-12T00:00:00Z", "2026-01-09T00:00:00Z");
    /* One field `*` (with a step): both must match, so odd days that are
     * Fridays; the 2nd is even, the 9th odd. */
    expect_next("0 0 */2 * 5", NULL, "2026-01-01T00:00:00Z", "2026-01-09T00:00:00Z");
    /* Day-of-month `*`: only Fridays. */
    expect_next("0 0 * * 5", NULL, "2026-01-09T00:00:00Z", "2026-01-16T00:00:00Z");
}

Test(flow_cron_utc, leap_day)
{
    expect_next("0 0 29 2 *", NULL, "2026-03-01T00:00:00Z", "2028-02-29T00:00:00Z");
    expect_next("0 0 29 2 *", NULL, "2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z");
    expect_prev("0 0 29 2 *", NULL, "2028-03-01T00:00:00Z", "2028-02-29T00:00:00Z");
    expect_prev("0 0 29 2 *", NULL, "2028-02-29T00:00:00Z", "2028-02-29T00:00:00Z");
    /* 2024-02-29 is more than 366 days before 2026-03-01. */
    FlowCron c = cron("0 0 29 2 *", NULL);
    Err err = { 0 };
    int64_t got = 42;
    cr_assert_eq(flow_cron_prev(&c, ts("2026-03-01T00:00:00Z"), &got, &err), ERR_NOTFOUND);
    cr_assert_eq(got, 42, "output written on failure");
    cr_assert(strstr(err.msg, "366 days"), "%s", err.msg);
}

Test(flow_cron_utc, never_fires)
{
    const char *const never[] = { "0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *" };
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++) {
        FlowCron c = cron(never[i], NULL);
        Err err = { 0 };
        int64_t got = 42;
        cr_assert_eq(flow_cron_next(&c, ts("2026-01-01T00:00:00Z"), &got, &err), ERR_NOTFOUND,
                     "%s", never[i]);
        cr_assert_eq(got, 42);
        cr_assert(strstr(err.msg, "5 years"), "%s", err.msg);
        cr_assert_eq(flow_cron_prev(&c, ts("2026-01-01T00:00:00Z"), &got, &err), ERR_NOTFOUND);
    }
}

Test(flow_cron_utc, prev_window)
{
    /* 2025-06-01 is 365 days before 2026-06-01: within the window. */
    expect_prev("0 0 1 6 *", NULL, "2026-05-31T23:59:00Z", "2025-06-01T00:00:00Z");
    expect_prev("0 0 1 6 *", NULL, "2026-06-01T00:00:00Z", "2026-06-01T00:00:00Z");
    /* 2028-02-29 + 366 days is 2029-03-01T00:00Z: the window includes its
     * start, and a millisecond later the firing is out of it. */
    expect_prev("0 0 29 2 *", NULL, "2029-02-28T23:59:00Z", "2028-02-29T00:00:00Z");
    expect_prev("0 0 29 2 *", NULL, "2029-03-01T00:00:00Z", "2028-02-29T00:00:00Z");
    FlowCron c = cron("0 0 29 2 *", NULL);
    Err err = { 0 };
    int64_t got;
    cr_assert_eq(flow_cron_prev(&c, ts("2029-03-01T00:00:00.001Z"), &got, &err), ERR_NOTFOUND);
}

Test(flow_cron_utc, bad_instants)
{
    FlowCron c = cron("* * * * *", NULL);
    Err err = { 0 };
    int64_t got;
    cr_assert_eq(flow_cron_next(&c, INT64_MAX, &got, &err), ERR_INVAL);
    cr_assert_eq(flow_cron_prev(&c, INT64_MIN, &got, &err), ERR_INVAL);
    /* A hand-built schedule with bits out of range is masked, not trusted. */
    FlowCron h = c;
    h.minutes = ~0ull;
    h.hours = ~0u;
    h.mdays = ~0u;
    h.months = 0xffff;
    h.wdays = 0xff;
    cr_assert_eq(flow_cron_next(&h, ts("2026-01-01T23:59:30Z"), &got, &err), 0);
    cr_assert_eq(got, ts("2026-01-02T00:00:00Z"));
    FlowCron z;
    memset(&z, 0, sizeof z);
    cr_assert_eq(flow_cron_next(&z, ts("2026-01-01T00:00:00Z"), &got, &err), ERR_NOTFOUND);
    snprintf(z.tz, sizeof z.tz, "No/Such_Zone");
    cr_assert_eq(flow_cron_next(&c, ts("2026-01-01T00:00:00Z"), &got, &err), 0);
    h.minutes = 1;
    snprintf(h.tz, sizeof h.tz, "No/Such_Zone");
    cr_assert_eq(flow_cron_next(&h, ts("2026-01-01T00:00:00Z"), &got, &err), ERR_INVAL);
    cr_assert(strstr(err.msg, "No/Such_Zone"), "%s", err.msg);
}

/* ---- Timezones and DST ------------------------------------------------ */

Test(flow_cron_tz, berlin_ordinary)
{
    /* CET is UTC+1 in winter, CEST UTC+2 in summer. 2026-01-02 is a Friday,
     * 2026-07-01 a Wednesday. */
    expect_next("0 9 * * 1-5", "Europe/Berlin", "2026-01-02T08:00:00Z", "2026-01-05T08:00:00Z");
    expect_next("0 9 * * 1-5", "Europe/Berlin", "2026-07-01T00:00:00Z", "2026-07-01T07:00:00Z");
    expect_prev("0 9 * * 1-5", "Europe/Berlin", "2026-07-01T07:00:00Z", "2026-07-01T07:00:00Z");
    /* Local midnight of New Year is 23:00Z the day before. */
    expect_next("@yearly", "Europe/Berlin", "2026-06-01T00:00:00Z", "2026-12-31T23:00:00Z");
    expect_prev("@yearly", "Europe/Berlin", "2026-06-01T00:00:00Z", "2025-12-31T23:00:00Z");
    expect_next("0 0 1 * *", "Europe/Berlin", "2026-12-31T22:59:59Z", "2026-12-31T23:00:00Z");
}

Test(flow_cron_tz, berlin_spring_forward)
{
    /* 2026-03-29: at 01:00Z clocks go from 02:00 CET to 03:00 CEST, so
     * 02:30 does not exist that day and fires at 01:00Z (03:00 local). */
    const char *const s[] = { "2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z",
                              "2026-03-30T00:30:00Z" };
    expect_chain("30 2 * * *", "Europe/Berlin", "2026-03-28T00:00:00Z", s, 3);
    expect_prev("30 2 * * *", "Europe/Berlin", "2026-03-29T01:00:00Z", "2026-03-29T01:00:00Z");
    expect_prev("30 2 * * *", "Europe/Berlin", "2026-03-29T00:59:59Z", "2026-03-28T01:30:00Z");
    expect_prev("30 2 * * *", "Europe/Berlin", "2026-03-30T00:29:00Z", "2026-03-29T01:00:00Z");
    /* 03:00 CEST is the same instant: one firing. */
    expect_next("0 3 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z");
    /* Every quarter hour: 01:45 CET, then 02:00-02:45 (skipped) and 03:00
     * all fire once at 01:00Z, then 03:15 CEST. */
    const char *const q[] = { "2026-03-29T00:45:00Z", "2026-03-29T01:00:00Z",
                              "2026-03-29T01:15:00Z" };
    expect_chain("*/15 * * * *", "Europe/Berlin", "2026-03-29T00:30:00Z", q, 3);
    expect_prev("*/15 * * * *", "Europe/Berlin", "2026-03-29T01:14:59Z", "2026-03-29T01:00:00Z");
}

Test(flow_cron_tz, berlin_fall_back)
{
    /* 2026-10-25: at 01:00Z clocks go from 03:00 CEST back to 02:00 CET, so
     * 02:00-02:59 happen twice (00:00Z-00:59Z and 01:00Z-01:59Z); each local
     * time fires once, at its first occurrence. */
    const char *const s[] = { "2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z",
                              "2026-10-26T01:30:00Z" };
    expect_chain("30 2 * * *", "Europe/Berlin", "2026-10-23T12:00:00Z", s, 3);
    expect_next("0 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", "2026-10-25T00:00:00Z");
    expect_next("0 2 * * *", "Europe/Berlin", "2026-10-25T00:00:00Z", "2026-10-26T01:00:00Z");
    /* At 02:10 CET (01:10Z) the 02:30 of that day already fired, at 00:30Z. */
    expect_prev("30 2 * * *", "Europe/Berlin", "2026-10-25T01:10:00Z", "2026-10-25T00:30:00Z");
    expect_prev("30 2 * * *", "Europe/Berlin", "2026-10-25T01:45:00Z", "2026-10-25T00:30:00Z");
    expect_prev("30 2 * * *", "Europe/Berlin", "2026-10-25T00:29:59Z", "2026-10-24T00:30:00Z");
    /* Hourly: 02:00 CEST (00:00Z) fires, its repeat at 01:00Z does not,
     * 03:00 CET is 02:00Z. */
    const char *const h[] = { "2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z",
                              "2026-10-25T03:00:00Z" };
    expect_chain("0 * * * *", "Europe/Berlin", "2026-10-24T23:30:00Z", h, 3);
    expect_prev("0 * * * *", "Europe/Berlin", "2026-10-25T01:59:00Z", "2026-10-25T00:00:00Z");
    /* 01:00 CEST and 04:00 CET are unambiguous. */
    expect_next("0 1 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", "2026-10-24T23:00:00Z");
    expect_next("0 4 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", "2026-10-25T03:00:00Z");
}

Test(flow_cron_tz, new_york)
{
    /* EST is UTC-5, EDT UTC-4. 2026-03-08 at 07:00Z: 02:00 EST -> 03:00
     * EDT. 2026-11-01 at 06:00Z: 02:00 EDT -> 01:00 EST. */
    const char *const s[] = { "2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z",
                              "2026-03-09T06:30:00Z" };
    expect_chain("30 2 * * *", "America/New_York", "2026-03-07T00:00:00Z", s, 3);
    expect_next("0 0 * * *", "America/New_York", "2026-03-08T00:00:00Z", "2026-03-08T05:00:00Z");
    expect_next("0 0 * * *", "America/New_York", "2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z");
    expect_prev("0 2 * * *", "America/New_York", "2026-03-08T07:00:00Z", "2026-03-08T07:00:00Z");
    expect_prev("0 2 * * *", "America/New_York", "2026-03-08T06:59:59Z", "2026-03-07T07:00:00Z");

    const char *const f[] = { "2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z",
                              "2026-11-02T06:30:00Z" };
    expect_chain("30 1 * * *", "America/New_York", "2026-10-31T00:00:00Z", f, 3);
    expect_prev("30 1 * * *", "America/New_York", "2026-11-01T06:45:00Z", "2026-11-01T05:30:00Z");
    expect_prev("30 1 * * *", "America/New_York", "2026-11-01T06:10:00Z", "2026-11-01T05:30:00Z");
    /* 02:30 exists once on 2026-11-01 (EST, 07:30Z). */
    expect_next("30 2 * * *", "America/New_York", "2026-11-01T00:00:00Z", "2026-11-01T07:30:00Z");
    /* Weekdays at 09:00: Friday 2026-10-30 EDT, Monday 2026-11-02 EST. */
    expect_next("0 9 * * mon-fri", "America/New_York", "2026-10-30T13:00:00Z",
                "2026-11-02T14:00:00Z");
}

/* libical's timezone cache is shared: concurrent callers must agree. */
static void *thread_run(void *arg)
{
    const char *tz = arg;
    FlowCron c;
    Err err = { 0 };
    if (flow_cron_parse("30 2 * * *", tz, &c, NULL, &err) < 0)
        return (void *)1;
    int64_t t = 1774656000000; /* 2026-03-28T00:00:00Z */
    for (int i = 0; i < 400; i++) {
        int64_t next;
        if (flow_cron_next(&c, t, &next, &err) < 0 || next <= t)
            return (void *)1;
        t = next;
    }
    return NULL;
}

Test(flow_cron_tz, threads)
{
    const char *tzs[] = { "Europe/Berlin", "America/New_York", "Asia/Tokyo",
                          "Australia/Sydney" };
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, thread_run, (void *)tzs[i]), 0);
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(th[i], &r);
        cr_assert_null(r, "thread %d (%s) failed", i, tzs[i]);
    }
    cr_assert_eq(ts("2026-03-28T00:00:00Z"), 1774656000000);
}

/* An independent oracle: walk UTC minutes with the C library's reading of
 * tzdata (TZ is per process, and Criterion runs each test in its own). A
 * minute u fires when its wall-clock time matches and did not occur in the
 * previous three hours (first occurrence), or when the clocks jumped forward
 * at u over a matching wall-clock minute. */
static bool oracle_matches(const FlowCron *c, time_t local)
{
    struct tm tm;
    gmtime_r(&local, &tm);
    if (!(c->minutes >> tm.tm_min & 1) || !(c->hours >> tm.tm_hour & 1) ||
        !(c->months >> (tm.tm_mon + 1) & 1))
        return false;
    bool dom = c->mdays >> tm.tm_mday & 1, dow = c->wdays >> tm.tm_wday & 1;
    return c->mday_star || c->wday_star ? dom && dow : dom || dow;
}

static time_t oracle_local(time_t u)
{
    struct tm tm;
    localtime_r(&u, &tm);
    return u + tm.tm_gmtoff;
}

static bool oracle_fires(const FlowCron *c, time_t u)
{
    time_t l = oracle_local(u), before = oracle_local(u - 60);
    for (time_t x = before + 60; x < l; x += 60)
        if (oracle_matches(c, x))
            return true;
    if (!oracle_matches(c, l))
        return false;
    for (time_t k = 60; k <= 3 * 3600; k += 60)
        if (oracle_local(u - k) == l)
            return false;
    return true;
}

static void oracle_compare(const char *tz, const time_t *switches, size_t nswitches)
{
    static const char *const exprs[] = { "*/15 * * * *", "30 2 * * *", "0 * * * *",
                                         "*/7 1-3 * * *", "0 1,2,3 * * *", "59 1 * * *" };
    setenv("TZ", tz, 1);
    tzset();
    unsigned seed = 12345;
    for (size_t e = 0; e < sizeof exprs / sizeof exprs[0]; e++) {
        FlowCron c = cron(exprs[e], tz);
        for (size_t s = 0; s < nswitches; s++) {
            for (int k = 0; k < 25; k++) {
                seed = seed * 1103515245 + 12345;
                int64_t ms = ((int64_t)switches[s] - 6 * 3600) * 1000 +
                             (int64_t)(seed >> 8) % (12 * 3600 * 1000);
                Err err = { 0 };
                int64_t got;
                time_t u = (time_t)(ms / 1000) / 60 * 60;
                while (!((int64_t)u * 1000 > ms && oracle_fires(&c, u)))
                    u += 60;
                cr_assert_eq(flow_cron_next(&c, ms, &got, &err), 0, "%s", err.msg);
                cr_assert_eq(got, (int64_t)u * 1000, "next('%s' %s, %lld)", exprs[e], tz,
                             (long long)ms);
                u = (time_t)(ms / 1000) / 60 * 60 + 60;
                while (!((int64_t)u * 1000 <= ms && oracle_fires(&c, u)))
                    u -= 60;
                cr_assert_eq(flow_cron_prev(&c, ms, &got, &err), 0, "%s", err.msg);
                cr_assert_eq(got, (int64_t)u * 1000, "prev('%s' %s, %lld)", exprs[e], tz,
                             (long long)ms);
            }
        }
    }
}

Test(flow_cron_tz, berlin_agrees_with_libc)
{
    const time_t sw[] = { 1774746000, 1792890000 }; /* 2026-03-29, 2026-10-25 01:00Z */
    oracle_compare("Europe/Berlin", sw, 2);
}

Test(flow_cron_tz, new_york_agrees_with_libc)
{
    const time_t sw[] = { 1772953200, 1793512800 }; /* 2026-03-08 07:00Z, 2026-11-01 06:00Z */
    oracle_compare("America/New_York", sw, 2);
}
