/* Cron schedules (flow_cron.h): five-field expressions parsed into bit sets,
 * and firing times found by walking the wall-clock minutes of the schedule's
 * timezone and mapping each matching minute to UTC. Key invariant: that
 * local -> UTC map never decreases (a skipped time maps to the end of the gap,
 * a repeated time to its first occurrence), so the first matching minute
 * whose instant is past the bound is the next firing, and the last one not
 * past it is the previous firing. libical's builtin timezone cache is not
 * thread-safe: every libical call in this file holds ical_lock. */
#include "flow/flow_cron.h"

#include <libical/ical.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"

#define DAY_S 86400
#define CRON_YEARS_AHEAD 5   /* flow_cron_next gives up after this */
#define CRON_DAYS_BACK 366   /* flow_cron_prev looks back this far */

/* ---- Parsing ---------------------------------------------------------- */

static const char *const month_names[] = { "jan", "feb", "mar", "apr", "may", "jun",
                                           "jul", "aug", "sep", "oct", "nov", "dec" };
static const char *const wday_names[] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat" };

typedef struct Field {
    const char *name;
    int min, max;  /* values accepted in the expression */
    int star_max;  /* the top of `*` and of `N/step` */
    const char *const *names; /* names[i] stands for min + i */
    int nnames;
} Field;

/* Day-of-week accepts 7 for Sunday, but `*` and `N/step` stop at Saturday so
 * that `*\/3` is Sun, Wed, Sat and `1/3` is Mon, Thu. */
static const Field fields[5] = {
    { "minute", 0, 59, 59, NULL, 0 },
    { "hour", 0, 23, 23, NULL, 0 },
    { "day-of-month", 1, 31, 31, NULL, 0 },
    { "month", 1, 12, 12, month_names, 12 },
    { "day-of-week", 0, 7, 6, wday_names, 7 },
};

static const struct {
    const char *name, *expansion;
} macros[] = {
    { "@yearly", "0 0 1 1 *" },   { "@annually", "0 0 1 1 *" }, { "@monthly", "0 0 1 * *" },
    { "@weekly", "0 0 * * 0" },   { "@daily", "0 0 * * *" },    { "@midnight", "0 0 * * *" },
    { "@hourly", "0 * * * *" },
};

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static bool is_alpha(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static bool is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Parse state of one field: s[0..len) is the field, col0 its 0-based offset
 * in the expression (for *ret_col). */
typedef struct FieldIn {
    const Field *f;
    const char *s;
    size_t len, col0;
    int *ret_col;
} FieldIn;

static int field_err(const FieldIn *in, size_t pos, Err *err, const char *what)
{
    if (in->ret_col)
        *in->ret_col = (int)(in->col0 + pos + 1);
    return err_set(err, ERR_INVAL, "%s: %s", in->f->name, what);
}

/* A number or (in month and day-of-week) a name at *pos, within the field's
 * range. */
static int value_parse(const FieldIn *in, size_t *pos, int *ret, Err *err)
{
    const Field *f = in->f;
    size_t start = *pos, i = start;
    char msg[128];
    if (i < in->len && is_digit(in->s[i])) {
        long v = 0;
        while (i < in->len && is_digit(in->s[i])) {
            if (v < 100000) /* saturate: anything this big is out of range anyway */
                v = v * 10 + (in->s[i] - '0');
            i++;
        }
        if (v < f->min || v > f->max) {
            int n = (int)(i - start > 16 ? 16 : i - start);
            snprintf(msg, sizeof msg, "%.*s is out of range %d-%d", n, in->s + start, f->min,
                     f->max);
            return field_err(in, start, err, msg);
        }
        *pos = i;
        *ret = (int)v;
        return 0;
    }
    if (i < in->len && is_alpha(in->s[i])) {
        while (i < in->len && is_alpha(in->s[i]))
            i++;
        size_t n = i - start;
        for (int k = 0; k < f->nnames && n == 3; k++) {
            if (strncasecmp(in->s + start, f->names[k], 3) == 0) {
                *pos = i;
                *ret = f->min + k;
                return 0;
            }
        }
        int shown = (int)(n > 16 ? 16 : n);
        if (f->names)
            snprintf(msg, sizeof msg, "unknown name '%.*s' (expected %s..%s)", shown,
                     in->s + start, f->names[0], f->names[f->nnames - 1]);
        else
            snprintf(msg, sizeof msg, "'%.*s' is not a number", shown, in->s + start);
        return field_err(in, start, err, msg);
    }
    if (i >= in->len)
        return field_err(in, i, err, "a value is missing");
    unsigned char ch = (unsigned char)in->s[i];
    if (ch > 0x20 && ch < 0x7f)
        snprintf(msg, sizeof msg, "unexpected '%c'", ch);
    else
        snprintf(msg, sizeof msg, "unexpected byte 0x%02x", ch);
    return field_err(in, i, err, msg);
}

/* One field: comma-separated items, each `*`, N or N-M, optionally /STEP.
 * Sets bit v of *ret_bits for every value v (day-of-week 7 still as bit 7)
 * and *ret_star when an item is `*` (possibly with a step), which is what
 * makes a day field unrestricted for the Vixie day rule. */
static int field_parse(const FieldIn *in, uint64_t *ret_bits, bool *ret_star, Err *err)
{
    const Field *f = in->f;
    uint64_t bits = 0;
    bool star = false;
    size_t pos = 0;
    int rc;
    for (;;) {
        size_t item = pos;
        if (pos >= in->len || in->s[pos] == ',') /* point at the comma */
            return field_err(in, pos < in->len || pos == 0 ? pos : pos - 1, err,
                             "empty list item");
        int lo, hi;
        if (in->s[pos] == '*') {
            pos++;
            lo = f->min;
            hi = f->star_max;
            star = true;
        } else {
            if ((rc = value_parse(in, &pos, &lo, err)) < 0)
                return rc;
            hi = lo;
            if (pos < in->len && in->s[pos] == '-') {
                pos++;
                if ((rc = value_parse(in, &pos, &hi, err)) < 0)
                    return rc;
                if (hi < lo) {
                    char msg[96];
                    snprintf(msg, sizeof msg, "range %d-%d is reversed", lo, hi);
                    return field_err(in, item, err, msg);
                }
            } else if (pos < in->len && in->s[pos] == '/') {
                hi = f->star_max > lo ? f->star_max : lo; /* N/step: N to the top */
            }
        }
        int step = 1;
        if (pos < in->len && in->s[pos] == '/') {
            pos++;
            size_t start = pos;
            long v = 0;
            while (pos < in->len && is_digit(in->s[pos])) {
                if (v < 100000)
                    v = v * 10 + (in->s[pos] - '0');
                pos++;
            }
            if (pos == start)
                return field_err(in, start, err, "a step (a number) must follow '/'");
            if (v == 0)
                return field_err(in, start, err, "step 0 is not allowed (at least 1)");
            step = (int)v;
        }
        if (pos < in->len && in->s[pos] != ',') {
            char msg[64];
            unsigned char ch = (unsigned char)in->s[pos];
            if (ch > 0x20 && ch < 0x7f)
                snprintf(msg, sizeof msg, "unexpected '%c'", ch);
            else
                snprintf(msg, sizeof msg, "unexpected byte 0x%02x", ch);
            return field_err(in, pos, err, msg);
        }
        for (int v = lo; v <= hi; v += step)
            bits |= (uint64_t)1 << v;
        if (pos >= in->len)
            break;
        pos++; /* the comma */
    }
    *ret_bits = bits;
    *ret_star = star;
    return 0;
}

/* Validates a timezone name before libical turns it into a file path: IANA
 * names are letters, digits and _ + - separated by '/', never "..". */
static bool tz_name_ok(const char *tz, size_t len)
{
    if (len == 0 || tz[0] == '/' || tz[len - 1] == '/')
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = tz[i];
        if (!(is_alpha(ch) || is_digit(ch) || ch == '_' || ch == '+' || ch == '-' || ch == '/'))
            return false;
        if (ch == '/' && tz[i + 1] == '/')
            return false;
    }
    return true;
}

static bool tz_is_utc(const char *tz)
{
    return !tz || !tz[0] || strcasecmp(tz, "UTC") == 0;
}

/* ---- Timezones (libical) ---------------------------------------------- */

/* libical keeps every builtin timezone it loads in a process-wide cache that
 * is not thread-safe; the cache stays reachable until exit, so
 * LeakSanitizer does not report it and nothing frees it here. */
static pthread_mutex_t ical_lock = PTHREAD_MUTEX_INITIALIZER;

/* The zone for tz, NULL for UTC. Caller holds ical_lock. */
static int zone_get(const char *tz, icaltimezone **ret, Err *err)
{
    if (tz_is_utc(tz)) {
        *ret = NULL;
        return 0;
    }
    size_t len = strnlen(tz, FLOW_TZ_MAX);
    if (len >= FLOW_TZ_MAX)
        return err_set(err, ERR_INVAL, "timezone: name longer than %d bytes", FLOW_TZ_MAX - 1);
    if (!tz_name_ok(tz, len))
        return err_set(err, ERR_INVAL, "timezone: '%s' is not an IANA timezone name", tz);
    icaltimezone *z = icaltimezone_get_builtin_timezone(tz);
    /* The component is loaded on first use; a name whose data cannot be
     * read has none, and its offsets would silently be 0. */
    if (!z || !icaltimezone_get_component(z))
        return err_set(err, ERR_INVAL, "timezone: unknown timezone '%s'", tz);
    *ret = z;
    return 0;
}

/* Seconds east of UTC in force at the instant utc_s. Caller holds ical_lock. */
static int zone_offset(icaltimezone *z, int64_t utc_s)
{
    if (!z)
        return 0;
    struct icaltimetype tt =
        icaltime_from_timet_with_zone((time_t)utc_s, 0, icaltimezone_get_utc_timezone());
    int is_daylight;
    return icaltimezone_get_utc_offset_of_utc_time(z, &tt, &is_daylight);
}

/* The instant of the wall-clock time local_s (seconds since 1970-01-01T00:00
 * of the local calendar). A repeated time gives its first occurrence; a
 * skipped one gives the instant the clocks jumped, the first instant after
 * the gap. Assumes at most one offset change within a day either side, which
 * holds for every zone in current tzdata. */
static int64_t local_to_utc(icaltimezone *z, int64_t local_s)
{
    if (!z)
        return local_s;
    int oa = zone_offset(z, local_s - DAY_S), ob = zone_offset(z, local_s + DAY_S);
    int64_t ua = local_s - oa, ub = local_s - ob;
    bool va = zone_offset(z, ua) == oa;
    bool vb = oa == ob ? va : zone_offset(z, ub) == ob;
    if (va && vb)
        return ua < ub ? ua : ub;
    if (va)
        return ua;
    if (vb)
        return ub;
    /* In the gap: the offset changes between the two candidates; find the
     * first second of the new offset. */
    int64_t lo = ua < ub ? ua : ub, hi = ua < ub ? ub : ua;
    int olo = zone_offset(z, lo);
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (zone_offset(z, mid) == olo)
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}

/* ---- Wall-clock calendar ---------------------------------------------- */


static int64_t floor_div(int64_t a, int64_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

static int days_in_month(int64_t y, int m)
{
    static const int dim[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    if (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))
        return 29;
    return dim[m - 1];
}

/* A wall-clock minute. */
typedef struct Local {
    int64_t y;
    int mo, d, h, mi;
} Local;

static Local local_from_seconds(int64_t s)
{
    Local t;
    int64_t days = floor_div(s, DAY_S);
    int sod = (int)(s - days * DAY_S);
    core_civil_from_days(days, &t.y, &t.mo, &t.d);
    t.h = sod / 3600;
    t.mi = sod / 60 % 60;
    return t;
}

static int64_t local_seconds(const Local *t)
{
    return core_days_from_civil(t->y, t->mo, t->d) * DAY_S + t->h * 3600 + t->mi * 60;
}

/* Advances to 00:00 of the next day, or back to 23:59 of the previous one. */
static void day_next(Local *t)
{
    t->h = t->mi = 0;
    if (++t->d > days_in_month(t->y, t->mo)) {
        t->d = 1;
        if (++t->mo > 12) {
            t->mo = 1;
            t->y++;
        }
    }
}

static void day_prev(Local *t)
{
    t->h = 23;
    t->mi = 59;
    if (--t->d < 1) {
        if (--t->mo < 1) {
            t->mo = 12;
            t->y--;
        }
        t->d = days_in_month(t->y, t->mo);
    }
}

/* The schedule with bits outside each field's range cleared, so that a
 * hand-built FlowCron cannot produce an impossible minute. */
static FlowCron cron_masked(const FlowCron *c)
{
    FlowCron m = *c;
    m.minutes &= ((uint64_t)1 << 60) - 1;
    m.hours &= ((uint32_t)1 << 24) - 1;
    m.mdays &= 0xfffffffeu;
    m.months &= 0x1ffe;
    m.wdays &= 0x7f;
    return m;
}

/* Vixie cron: when either day field is `*` both must match (one always
 * does); when both are restricted, either may. */
static bool day_matches(const FlowCron *c, const Local *t)
{
    int wday = (int)((core_days_from_civil(t->y, t->mo, t->d) % 7 + 11) % 7); /* 1970-01-01: Thu */
    bool dom = c->mdays >> t->d & 1, dow = c->wdays >> wday & 1;
    return c->mday_star || c->wday_star ? dom && dow : dom || dow;
}

/* Moves *t forward to the first matching minute at or after it; false when
 * none is found before the end of max_year. */
static bool local_next_match(const FlowCron *c, Local *t, int64_t max_year)
{
    for (;;) {
        if (t->y > max_year)
            return false;
        if (!(c->months >> t->mo & 1)) {
            t->d = days_in_month(t->y, t->mo);
            day_next(t);
            continue;
        }
        if (!day_matches(c, t)) {
            day_next(t);
            continue;
        }
        uint32_t hours = c->hours >> t->h;
        if (!hours) {
            day_next(t);
            continue;
        }
        if (hours & 1) {
            uint64_t mins = c->minutes >> t->mi;
            if (mins) {
                t->mi += __builtin_ctzll(mins);
                return true;
            }
            hours &= ~(uint32_t)1; /* no minute left in this hour */
            if (!hours) {
                day_next(t);
                continue;
            }
        }
        t->h += __builtin_ctz(hours);
        t->mi = 0;
    }
}

/* Moves *t back to the last matching minute at or before it; false when
 * none is found on or after the day min_days (days since 1970-01-01). */
static bool local_prev_match(const FlowCron *c, Local *t, int64_t min_days)
{
    for (;;) {
        if (core_days_from_civil(t->y, t->mo, t->d) < min_days)
            return false;
        if (!(c->months >> t->mo & 1)) {
            t->d = 1;
            day_prev(t);
            continue;
        }
        if (!day_matches(c, t)) {
            day_prev(t);
            continue;
        }
        uint32_t hours = c->hours & (((uint32_t)2 << t->h) - 1);
        if (!hours) {
            day_prev(t);
            continue;
        }
        if (hours >> t->h & 1) {
            uint64_t mins = c->minutes & (((uint64_t)2 << t->mi) - 1);
            if (mins) {
                t->mi = 63 - __builtin_clzll(mins);
                return true;
            }
            hours &= ~((uint32_t)1 << t->h);
            if (!hours) {
                day_prev(t);
                continue;
            }
        }
        t->h = 31 - __builtin_clz(hours);
        t->mi = 59;
    }
}

/* ---- Public ----------------------------------------------------------- */

int flow_cron_parse(const char *expr, const char *tz, FlowCron *ret, int *ret_col, Err *err)
{
    FlowCron c;
    memset(&c, 0, sizeof c);
    size_t len = strnlen(expr, FLOW_CRON_EXPR_MAX + 1);
    if (len > FLOW_CRON_EXPR_MAX) {
        if (ret_col)
            *ret_col = FLOW_CRON_EXPR_MAX + 1;
        return err_set(err, ERR_INVAL, "cron expression longer than %d bytes",
                       FLOW_CRON_EXPR_MAX);
    }
    size_t b = 0, e = len;
    while (b < e && (is_blank(expr[b]) || expr[b] == '\n' || expr[b] == '\r'))
        b++;
    while (e > b && (is_blank(expr[e - 1]) || expr[e - 1] == '\n' || expr[e - 1] == '\r'))
        e--;
    if (b == e) {
        if (ret_col)
            *ret_col = 1;
        return err_set(err, ERR_INVAL, "cron expression is empty");
    }

    const char *src = expr;
    if (expr[b] == '@') {
        size_t n = b;
        while (n < e && !is_blank(expr[n]))
            n++;
        if (n < e) {
            size_t junk = n;
            while (is_blank(expr[junk]))
                junk++;
            if (ret_col)
                *ret_col = (int)(junk + 1);
            return err_set(err, ERR_INVAL, "unexpected text after '%.*s'", (int)(n - b),
                           expr + b);
        }
        const char *expansion = NULL;
        for (size_t k = 0; k < sizeof macros / sizeof macros[0]; k++)
            if (strlen(macros[k].name) == n - b &&
                strncasecmp(expr + b, macros[k].name, n - b) == 0)
                expansion = macros[k].expansion;
        if (!expansion) {
            if (ret_col)
                *ret_col = (int)(b + 1);
            int shown = (int)(n - b > 32 ? 32 : n - b);
            return err_set(err, ERR_INVAL,
                           "unknown macro '%.*s' (expected @yearly, @annually, @monthly, "
                           "@weekly, @daily, @midnight or @hourly)",
                           shown, expr + b);
        }
        src = expansion; /* an expansion has no errors, so no columns */
        b = 0;
        e = strlen(expansion);
    }

    size_t starts[5], ends[5];
    int nfields = 0;
    size_t i = b;
    while (i < e) {
        while (i < e && is_blank(src[i]))
            i++;
        if (i >= e)
            break;
        if (nfields == 5) {
            if (ret_col)
                *ret_col = (int)(i + 1);
            return err_set(err, ERR_INVAL,
                           "too many fields: expected 5 (minute hour day-of-month month "
                           "day-of-week)");
        }
        starts[nfields] = i;
        while (i < e && !is_blank(src[i]))
            i++;
        ends[nfields++] = i;
    }
    if (nfields < 5) {
        if (ret_col)
            *ret_col = (int)(e + 1);
        return err_set(err, ERR_INVAL,
                       "%d field%s, expected 5 (minute hour day-of-month month day-of-week): "
                       "%s is missing",
                       nfields, nfields == 1 ? "" : "s", fields[nfields].name);
    }

    uint64_t bits[5];
    bool star[5];
    for (int k = 0; k < 5; k++) {
        FieldIn in = { &fields[k], src + starts[k], ends[k] - starts[k], starts[k],
                       src == expr ? ret_col : NULL };
        int rc = field_parse(&in, &bits[k], &star[k], err);
        if (rc < 0)
            return rc;
    }
    c.minutes = bits[0];
    c.hours = (uint32_t)bits[1];
    c.mdays = (uint32_t)bits[2];
    c.months = (uint16_t)bits[3];
    c.wdays = (uint8_t)((bits[4] | bits[4] >> 7) & 0x7f); /* 7 is Sunday */
    c.mday_star = star[2];
    c.wday_star = star[4];

    if (tz_is_utc(tz)) {
        snprintf(c.tz, sizeof c.tz, "UTC");
    } else {
        pthread_mutex_lock(&ical_lock);
        icaltimezone *z;
        int rc = zone_get(tz, &z, err);
        pthread_mutex_unlock(&ical_lock);
        if (rc < 0) {
            if (ret_col)
                *ret_col = 0;
            return rc;
        }
        snprintf(c.tz, sizeof c.tz, "%s", tz);
    }
    *ret = c;
    return 0;
}

/* Instants outside years 1971..9000 are refused: nothing in Bureau needs
 * them, and the bound keeps every computation far from overflow. */
static bool instant_ok(int64_t ms)
{
    return ms >= 365LL * DAY_S * 1000 && ms < core_days_from_civil(9000, 1, 1) * DAY_S * 1000;
}

int flow_cron_next(const FlowCron *cron, int64_t after_ms, int64_t *ret_ms, Err *err)
{
    char when[CORE_TIME_LEN + 1];
    if (!instant_ok(after_ms))
        return err_set(err, ERR_INVAL, "cron: time %lld ms is out of range", (long long)after_ms);
    FlowCron c = cron_masked(cron);
    int64_t after_s = floor_div(after_ms, 1000);
    int rc = 0;
    pthread_mutex_lock(&ical_lock);
    icaltimezone *z;
    if ((rc = zone_get(c.tz, &z, err)) < 0)
        goto out;
    /* Every minute before the local time of after_ms maps to an instant at
     * or before after_ms, so the walk starts at that minute. */
    Local t = local_from_seconds(floor_div(after_s + zone_offset(z, after_s), 60) * 60);
    int64_t max_year = t.y + CRON_YEARS_AHEAD;
    for (;;) {
        if (!local_next_match(&c, &t, max_year)) {
            core_time_format(after_ms, when);
            rc = err_set(err, ERR_NOTFOUND, "cron: the schedule does not fire in the %d years after %s",
                         CRON_YEARS_AHEAD, when);
            goto out;
        }
        int64_t u = local_to_utc(z, local_seconds(&t));
        if (u > after_s) { /* u * 1000 > after_ms, as u is whole seconds */
            *ret_ms = u * 1000;
            goto out;
        }
        /* Only a minute inside a repeated hour or a DST gap gets here. */
        if (++t.mi == 60) {
            t.mi = 0;
            if (++t.h == 24)
                day_next(&t);
        }
    }
out:
    pthread_mutex_unlock(&ical_lock);
    return rc;
}

int flow_cron_prev(const FlowCron *cron, int64_t at_ms, int64_t *ret_ms, Err *err)
{
    char when[CORE_TIME_LEN + 1];
    if (!instant_ok(at_ms))
        return err_set(err, ERR_INVAL, "cron: time %lld ms is out of range", (long long)at_ms);
    FlowCron c = cron_masked(cron);
    int64_t at_s = floor_div(at_ms, 1000);
    int64_t lower_ms = at_ms - (int64_t)CRON_DAYS_BACK * DAY_S * 1000;
    int rc = 0;
    pthread_mutex_lock(&ical_lock);
    icaltimezone *z;
    if ((rc = zone_get(c.tz, &z, err)) < 0)
        goto out;
    /* A minute later than at_ms plus the largest offset of the last day
     * maps past at_ms; a repeated hour needs that larger offset. */
    int o1 = zone_offset(z, at_s), o2 = zone_offset(z, at_s - DAY_S);
    Local t = local_from_seconds(floor_div(at_s + (o1 > o2 ? o1 : o2), 60) * 60);
    int64_t min_days = core_days_from_civil(t.y, t.mo, t.d) - CRON_DAYS_BACK - 2;
    for (;;) {
        if (!local_prev_match(&c, &t, min_days))
            break;
        int64_t u = local_to_utc(z, local_seconds(&t));
        if (u <= at_s) { /* u * 1000 <= at_ms */
            if (u * 1000 < lower_ms)
                break;
            *ret_ms = u * 1000;
            goto out;
        }
        if (--t.mi < 0) {
            t.mi = 59;
            if (--t.h < 0)
                day_prev(&t);
        }
    }
    core_time_format(at_ms, when);
    rc = err_set(err, ERR_NOTFOUND, "cron: the schedule did not fire in the %d days up to %s",
                 CRON_DAYS_BACK, when);
out:
    pthread_mutex_unlock(&ical_lock);
    return rc;
}
