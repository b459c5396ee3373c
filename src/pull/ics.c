/* ICS feeds (ics.h): a feed is first scanned line by line here (unfolding,
 * syntax, BEGIN/END nesting, limits), so that every error can name the line
 * it is on; only then is the unfolded text handed to libical, whose own
 * complaints (X-LIC-ERROR properties) are traced back to a line by their
 * text. A feed with any error yields no instance at all, so a bad download
 * never cancels the events of the good one before it.
 *
 * libical's builtin time zones come from the system's zoneinfo files
 * (/usr/share/zoneinfo): nothing is downloaded. Its zone cache is not
 * thread-safe, so every libical call here holds ical_lock. */
#include "pull/ics.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <libical/ical.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pull/pull_int.h"
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/json.h"
#include "effect/curl.h"

#define MAX_DEPTH 8          /* BEGIN nesting: VCALENDAR > VEVENT > VALARM is 3 */
#define MAX_UID 512          /* bytes of a UID */
#define MAX_TEXT 16384       /* bytes kept of a DESCRIPTION (and any text field) */
#define MAX_ATTENDEES 256    /* per VEVENT */
#define MAX_EXDATES 4096     /* per VEVENT */
#define MAX_FEED_STEPS 1000000 /* RRULE iterations in one feed (about 1.5 s): past it, an error */
#define MAX_HORIZON_DAYS 3660
#define DAY_MS 86400000LL
#define TZ_PREFIX "/freeassociation.sourceforge.net/"

static pthread_mutex_t ical_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- the line scan ---- */

typedef struct Open {
    char name[32];
    int line;
} Open;

typedef struct Scan {
    Buf text;          /* unfolded logical lines, each ending in '\n' */
    size_t *off;       /* logical line i starts at text.ptr + off[i] */
    int *no;           /* ... and at this physical line (1-based) */
    size_t n, cap;
    size_t *ev_first;  /* logical lines of each VEVENT's BEGIN and END */
    size_t *ev_last;
    size_t nev, evcap;
    Open stack[MAX_DEPTH];
    int depth;
    bool calendar;     /* a VCALENDAR began */
    size_t max_events;
} Scan;

static void scan_done(Scan *sc)
{
    buf_done(&sc->text);
    free(sc->off);
    free(sc->no);
    free(sc->ev_first);
    free(sc->ev_last);
}

static const char *line_at(const Scan *sc, size_t i, size_t *ret_len)
{
    const char *s = sc->text.ptr + sc->off[i];
    const char *nl = strchr(s, '\n');
    *ret_len = (size_t)(nl - s);
    return s;
}

/* The name of a content line (letters, digits, '-'): its length, or 0. */
static size_t name_len(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && (isalnum((unsigned char)s[i]) || s[i] == '-'))
        i++;
    return i;
}

static bool is_name(const char *s, size_t len, const char *name)
{
    return strlen(name) == len && !strncasecmp(s, name, len);
}

/* Checks one logical line and adds it to the scan. */
static int scan_line(Scan *sc, const char *s, size_t len, int no, Err *err)
{
    if (len == 0)
        return 0; /* blank lines are tolerated and dropped */
    size_t nl = name_len(s, len);
    if (nl == 0 || nl == len || (s[nl] != ':' && s[nl] != ';'))
        return err_set(err, ERR_INVAL, "line %d: expected NAME:value, got '%.40s'", no, s);
    size_t colon = nl;
    bool quoted = false;
    for (; colon < len; colon++) {
        if (s[colon] == '"')
            quoted = !quoted;
        else if (s[colon] == ':' && !quoted)
            break;
    }
    if (colon == len)
        return err_set(err, ERR_INVAL, "line %d: property %.*s has no value (no ':')", no,
                       (int)(nl < 40 ? nl : 40), s);
    const char *val = s + colon + 1;
    size_t vlen = len - colon - 1;
    while (vlen && (val[vlen - 1] == ' ' || val[vlen - 1] == '\t'))
        vlen--;
    if (is_name(s, nl, "BEGIN")) {
        if (vlen == 0 || vlen >= sizeof sc->stack[0].name || name_len(val, vlen) != vlen)
            return err_set(err, ERR_INVAL, "line %d: BEGIN of a bad component name '%.40s'", no,
                           val);
        if (sc->depth == 0) {
            if (!is_name(val, vlen, "VCALENDAR"))
                return err_set(err, ERR_INVAL, "line %d: expected BEGIN:VCALENDAR, got BEGIN:%.*s",
                               no, (int)vlen, val);
            if (sc->calendar)
                return err_set(err, ERR_INVAL,
                               "line %d: a second VCALENDAR (one calendar per feed)", no);
            sc->calendar = true;
        }
        if (sc->depth == MAX_DEPTH)
            return err_set(err, ERR_INVAL, "line %d: components nested deeper than %d", no,
                           MAX_DEPTH);
        if (is_name(val, vlen, "VEVENT")) {
            if (sc->depth != 1)
                return err_set(err, ERR_INVAL, "line %d: VEVENT inside %s (line %d)", no,
                               sc->stack[sc->depth - 1].name, sc->stack[sc->depth - 1].line);
            if (sc->nev == sc->max_events)
                return err_set(err, ERR_TOOBIG, "line %d: more than %zu VEVENTs in the feed", no,
                               sc->max_events);
            if (sc->nev == sc->evcap) {
                sc->evcap = sc->evcap ? sc->evcap * 2 : 64;
                sc->ev_first = xrealloc(sc->ev_first, sc->evcap * sizeof *sc->ev_first);
                sc->ev_last = xrealloc(sc->ev_last, sc->evcap * sizeof *sc->ev_last);
            }
            sc->ev_first[sc->nev] = sc->n;
            sc->ev_last[sc->nev] = sc->n;
            sc->nev++;
        }
        Open *o = &sc->stack[sc->depth++];
        for (size_t i = 0; i < vlen; i++)
            o->name[i] = (char)toupper((unsigned char)val[i]);
        o->name[vlen] = '\0';
        o->line = no;
    } else if (is_name(s, nl, "END")) {
        if (sc->depth == 0)
            return err_set(err, ERR_INVAL, "line %d: END:%.*s without a BEGIN", no,
                           (int)(vlen < 40 ? vlen : 40), val);
        Open *o = &sc->stack[sc->depth - 1];
        if (!is_name(val, vlen, o->name))
            return err_set(err, ERR_INVAL, "line %d: END:%.*s does not close BEGIN:%s (line %d)",
                           no, (int)(vlen < 40 ? vlen : 40), val, o->name, o->line);
        if (sc->depth == 2 && !strcmp(o->name, "VEVENT"))
            sc->ev_last[sc->nev - 1] = sc->n;
        sc->depth--;
    } else if (sc->depth == 0) {
        return err_set(err, ERR_INVAL, "line %d: %.*s outside BEGIN:VCALENDAR ... END:VCALENDAR",
                       no, (int)(nl < 40 ? nl : 40), s);
    }
    if (sc->n == sc->cap) {
        sc->cap = sc->cap ? sc->cap * 2 : 256;
        sc->off = xrealloc(sc->off, sc->cap * sizeof *sc->off);
        sc->no = xrealloc(sc->no, sc->cap * sizeof *sc->no);
    }
    sc->off[sc->n] = sc->text.len;
    sc->no[sc->n] = no;
    sc->n++;
    if (buf_append(&sc->text, s, len) < 0 || buf_putc(&sc->text, '\n') < 0)
        return err_set(err, ERR_TOOBIG, "line %d: the feed is too large", no);
    return 0;
}

/* Unfolds text into logical lines and checks them (RFC 5545 3.1: a line
 * beginning with a space or a tab continues the one before). */
static int scan(const char *text, size_t len, Scan *sc, Err *err)
{
    buf_init(&sc->text, len + 2);
    Buf cur;
    buf_init(&cur, 0);
    int rc = 0, cur_no = 0, no = 0;
    size_t pos = 0;
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3))
        pos = 3; /* a UTF-8 byte order mark */
    while (pos < len) {
        const char *s = text + pos;
        const char *e = memchr(s, '\n', len - pos);
        size_t l = e ? (size_t)(e - s) : len - pos;
        pos += l + (e ? 1 : 0);
        no++;
        if (l && s[l - 1] == '\r')
            l--;
        if (memchr(s, '\0', l)) {
            rc = err_set(err, ERR_INVAL, "line %d: a NUL byte", no);
            goto out;
        }
        if (l && (s[0] == ' ' || s[0] == '\t')) {
            if (!cur_no) {
                rc = err_set(err, ERR_INVAL, "line %d: a folded line that continues nothing", no);
                goto out;
            }
            if ((rc = buf_append(&cur, s + 1, l - 1)) < 0)
                goto out;
            continue;
        }
        if (cur_no && (rc = scan_line(sc, buf_cstr(&cur), cur.len, cur_no, err)) < 0)
            goto out;
        buf_clear(&cur);
        cur_no = no;
        if ((rc = buf_append(&cur, s, l)) < 0)
            goto out;
    }
    if (cur_no && (rc = scan_line(sc, buf_cstr(&cur), cur.len, cur_no, err)) < 0)
        goto out;
    if (!sc->calendar)
        rc = err_set(err, ERR_INVAL, "line %d: no BEGIN:VCALENDAR in the feed", no ? no : 1);
    else if (sc->depth > 0)
        rc = err_set(err, ERR_INVAL, "line %d: BEGIN:%s (line %d) is never closed", no,
                     sc->stack[sc->depth - 1].name, sc->stack[sc->depth - 1].line);
out:
    buf_done(&cur);
    return rc;
}

/* The physical line of the first logical line in [first, last] that holds
 * needle (or, when needle is empty or absent, of first). */
static int find_line(const Scan *sc, size_t first, size_t last, const char *needle)
{
    size_t nlen = needle ? strlen(needle) : 0;
    for (size_t i = first; nlen && i <= last && i < sc->n; i++) {
        size_t l;
        const char *s = line_at(sc, i, &l);
        if (memmem(s, l, needle, nlen))
            return sc->no[i];
    }
    return first < sc->n ? sc->no[first] : 1;
}

/* The physical line of the nth property called name in [first, last]. */
static int prop_line(const Scan *sc, size_t first, size_t last, const char *name, int nth)
{
    size_t n = strlen(name);
    for (size_t i = first; i <= last && i < sc->n; i++) {
        size_t l;
        const char *s = line_at(sc, i, &l);
        if (l > n && !strncasecmp(s, name, n) && (s[n] == ':' || s[n] == ';') && nth-- == 0)
            return sc->no[i];
    }
    return first < sc->n ? sc->no[first] : 1;
}

/* ---- libical's own errors ---- */

/* An unknown property name is no error: RFC 5545 (3.8.8.2) has a reader
 * ignore what it does not know, and feeds carry vendors' names. */
static bool xlic_ignorable(icalproperty *p, const char *msg)
{
    icalparameter *t = icalproperty_get_first_parameter(p, ICAL_XLICERRORTYPE_PARAMETER);
    return t && icalparameter_get_xlicerrortype(t) == ICAL_XLICERRORTYPE_PROPERTYPARSEERROR &&
           msg && strstr(msg, "property name");
}

/* The first X-LIC-ERROR of c (and, when deep, of its sub-components but
 * alarms, which Bureau does not read), as an error naming the line in
 * [first, last] that holds the text it quotes. */
static int xlic_error(const Scan *sc, icalcomponent *c, size_t first, size_t last, bool deep,
                      Err *err)
{
    for (icalproperty *p = icalcomponent_get_first_property(c, ICAL_XLICERROR_PROPERTY); p;
         p = icalcomponent_get_next_property(c, ICAL_XLICERROR_PROPERTY)) {
        const char *msg = icalproperty_get_xlicerror(p);
        if (xlic_ignorable(p, msg))
            continue;
        if (!msg)
            msg = "unreadable property";
        char text[256], needle[128] = "";
        snprintf(text, sizeof text, "%s", msg);
        for (char *q = text; *q; q++)
            if (*q == '\n' || *q == '\r')
                *q = ' ';
        const char *colon = strstr(text, ": ");
        for (const char *q = colon; q; q = strstr(q + 2, ": "))
            colon = q;
        if (colon) {
            snprintf(needle, sizeof needle, "%s", colon + 2);
            size_t nl = strlen(needle);
            while (nl && needle[nl - 1] == ' ')
                needle[--nl] = '\0';
        }
        core_utf8_sanitize(text);
        return err_set(err, ERR_INVAL, "line %d: %s", find_line(sc, first, last, needle), text);
    }
    for (icalcomponent *k = deep ? icalcomponent_get_first_component(c, ICAL_ANY_COMPONENT) : NULL;
         k; k = icalcomponent_get_next_component(c, ICAL_ANY_COMPONENT)) {
        if (icalcomponent_isa(k) == ICAL_VALARM_COMPONENT)
            continue;
        int rc = xlic_error(sc, k, first, last, true, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- times ---- */

typedef struct When {
    int64_t ms;  /* UTC; a date: its UTC midnight */
    bool date;
} When;

typedef struct Ctx {
    const Scan *sc;
    icalcomponent *cal;
    size_t first, last; /* the VEVENT's logical lines */
} Ctx;

/* IANA names are letters, digits and "_+-" separated by single '/', never
 * ".." or a leading '/': they become a path under the zoneinfo directory. */
static bool zone_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || s[0] == '/' || s[n - 1] == '/')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!(isalnum(ch) || ch == '_' || ch == '+' || ch == '-' || ch == '/'))
            return false;
        if (ch == '/' && s[i + 1] == '/')
            return false;
    }
    return true;
}

/* The zone named by p's TZID: a VTIMEZONE of the feed, else a zone of the
 * system's zoneinfo. NULL (and *ret_tzid NULL) when p has no TZID. */
static int zone_of(const Ctx *cx, icalproperty *p, const char *pname, int nth,
                   icaltimezone **ret, const char **ret_tzid, Err *err)
{
    *ret = NULL;
    *ret_tzid = NULL;
    icalparameter *tp = icalproperty_get_first_parameter(p, ICAL_TZID_PARAMETER);
    const char *tzid = tp ? icalparameter_get_tzid(tp) : NULL;
    if (!tzid || !*tzid)
        return 0;
    icaltimezone *z = icalcomponent_get_timezone(cx->cal, tzid);
    if (!z) {
        const char *loc = !strncmp(tzid, TZ_PREFIX, strlen(TZ_PREFIX)) ? tzid + strlen(TZ_PREFIX)
                                                                        : tzid;
        if (!strcasecmp(loc, "UTC") || !strcasecmp(loc, "GMT") || !strcasecmp(loc, "Etc/UTC"))
            z = icaltimezone_get_utc_timezone();
        else if (zone_name_ok(loc)) {
            z = icaltimezone_get_builtin_timezone(loc);
            if (z && !icaltimezone_get_component(z))
                z = NULL; /* a name whose zoneinfo file is unreadable */
        }
    }
    if (!z)
        return err_set(err, ERR_INVAL,
                       "line %d: %s: unknown time zone '%.64s' (no VTIMEZONE for it in the feed,"
                       " and not a zone of the system's zoneinfo)",
                       prop_line(cx->sc, cx->first, cx->last, pname, nth), pname, tzid);
    *ret = z;
    *ret_tzid = tzid;
    return 0;
}

static int64_t date_ms(int y, int m, int d)
{
    return core_days_from_civil(y, m, d) * DAY_MS;
}

/* t (in zone z, NULL: UTC or floating, taken as UTC) as UTC ms. */
static int when_of(struct icaltimetype t, icaltimezone *z, When *w)
{
    if (icaltime_is_null_time(t) || !icaltime_is_valid_time(t) || t.year < 1900 ||
        t.year > 2500 || t.month < 1 || t.month > 12 || t.day < 1 || t.day > 31)
        return -1;
    if (t.is_date) {
        w->ms = date_ms(t.year, t.month, t.day);
        w->date = true;
        return 0;
    }
    if (z && !icaltime_is_utc(t)) {
        t.zone = z;
        t = icaltime_convert_to_zone(t, icaltimezone_get_utc_timezone());
    }
    w->ms = (int64_t)icaltime_as_timet(t) * 1000;
    w->date = false;
    return 0;
}

/* The time of property p (its value t), TZID resolved. */
static int prop_when(const Ctx *cx, icalproperty *p, struct icaltimetype t, const char *pname,
                     int nth, When *w, const char **ret_tzid, Err *err)
{
    icaltimezone *z;
    const char *tzid;
    int rc = zone_of(cx, p, pname, nth, &z, &tzid, err);
    if (rc < 0)
        return rc;
    if (when_of(t, z, w) < 0)
        return err_set(err, ERR_INVAL, "line %d: %s: not a valid date or date-time",
                       prop_line(cx->sc, cx->first, cx->last, pname, nth), pname);
    if (ret_tzid)
        *ret_tzid = tzid;
    return 0;
}

static void format_when(int64_t ms, bool date, char out[CORE_TIME_LEN + 1])
{
    if (!date) {
        core_time_format(ms, out);
        return;
    }
    int64_t y;
    int m, d;
    int64_t days = ms >= 0 ? ms / DAY_MS : -((-ms + DAY_MS - 1) / DAY_MS);
    core_civil_from_days(days, &y, &m, &d);
    snprintf(out, CORE_TIME_LEN + 1, "%04d-%02d-%02d", (int)y, m, d);
}

/* ---- instances ---- */

typedef struct Item {
    char *uid;
    char rid[CORE_TIME_LEN + 1]; /* "" for a single event */
    int64_t start_ms, end_ms;
    int64_t sequence;
    int64_t modified_ms;         /* LAST-MODIFIED, 0 when absent */
    bool canceled;
    json_t *data;
    char digest[CORE_SHA256_HEX + 1];
} Item;

typedef struct Items {
    Item *v;
    size_t n, cap;
    char **uids; /* every VEVENT's UID, sorted after the parse */
    size_t nuids;
} Items;

static void items_done(Items *it)
{
    for (size_t i = 0; i < it->n; i++) {
        free(it->v[i].uid);
        json_decref(it->v[i].data);
    }
    free(it->v);
    for (size_t i = 0; i < it->nuids; i++)
        free(it->uids[i]);
    free(it->uids);
    memset(it, 0, sizeof *it);
}

static int item_cmp(const void *a, const void *b)
{
    const Item *x = a, *y = b;
    int c = strcmp(x->uid, y->uid);
    return c ? c : strcmp(x->rid, y->rid);
}

/* item_cmp, then the version: the greatest comes last. */
static int item_order(const void *a, const void *b)
{
    const Item *x = a, *y = b;
    int c = item_cmp(a, b);
    if (c)
        return c;
    if (x->sequence != y->sequence)
        return x->sequence < y->sequence ? -1 : 1;
    if (x->modified_ms != y->modified_ms)
        return x->modified_ms < y->modified_ms ? -1 : 1;
    return strcmp(x->digest, y->digest);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *const tracked[] = { "summary",  "description", "start",     "end",
                                       "all_day",  "tzid",        "location",  "status",
                                       "organizer", "attendees",  NULL };

void ics_event_digest(const json_t *data, char out[CORE_SHA256_HEX + 1])
{
    json_t *o = json_object();
    for (int i = 0; tracked[i]; i++) {
        json_t *v = json_object_get(data, tracked[i]);
        if (v)
            json_object_set(o, tracked[i], v);
    }
    Buf b;
    buf_init(&b, 0);
    core_json_canonical(o, &b);
    core_sha256_hex(buf_cstr(&b), b.len, out);
    buf_done(&b);
    json_decref(o);
}

/* A text field: capped, valid UTF-8. */
static json_t *text_json(const char *s)
{
    size_t n = strnlen(s, MAX_TEXT);
    char *t = xstrndup(s, n);
    core_utf8_sanitize(t);
    json_t *v = json_string(t);
    free(t);
    return v ? v : json_string("");
}

static void set_text(json_t *o, const char *k, const char *v)
{
    if (v && *v)
        json_object_set_new(o, k, text_json(v));
}

/* "mailto:Ann@X.com" -> "ann@x.com" into out; false when not an address. */
static bool cal_address(const char *v, char out[255])
{
    if (!v)
        return false;
    while (*v == ' ')
        v++;
    if (!strncasecmp(v, "mailto:", 7))
        v += 7;
    size_t n = strlen(v);
    while (n && v[n - 1] == ' ')
        n--;
    if (n < 3 || n > 254)
        return false;
    int at = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c <= ' ' || c >= 0x7f || c == '<' || c == '>' || c == ',' || c == '"' || c == ':')
            return false;
        at += c == '@';
        out[i] = (char)tolower(c);
    }
    out[n] = '\0';
    return at == 1 && out[0] != '@' && out[n - 1] != '@';
}

static char *param(icalproperty *p, const char *name)
{
    char *v = icalproperty_get_parameter_as_string_r(p, name);
    if (!v)
        return NULL;
    for (char *q = v; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    return v;
}

/* {email, name?, role?, status?} of an ORGANIZER or ATTENDEE; NULL when it
 * has no email address (a room given as a URN, say). */
static json_t *party(icalproperty *p, bool attendee)
{
    char email[255];
    const char *v = icalproperty_get_value_as_string(p);
    if (!cal_address(v, email))
        return NULL;
    json_t *o = json_pack("{s:s}", "email", email);
    icalparameter *cn = icalproperty_get_first_parameter(p, ICAL_CN_PARAMETER);
    if (cn && icalparameter_get_cn(cn)) {
        const char *name = icalparameter_get_cn(cn);
        if (strnlen(name, 257) <= 256)
            set_text(o, "name", name);
    }
    if (attendee) {
        char *role = param(p, "ROLE"), *st = param(p, "PARTSTAT");
        if (role && *role && strlen(role) <= 64)
            json_object_set_new(o, "role", text_json(role));
        if (st && *st && strlen(st) <= 64)
            json_object_set_new(o, "status", text_json(st));
        icalmemory_free_buffer(role);
        icalmemory_free_buffer(st);
    }
    return o;
}

static const char *status_name(icalproperty_status s)
{
    switch (s) {
    case ICAL_STATUS_TENTATIVE:
        return "tentative";
    case ICAL_STATUS_CONFIRMED:
        return "confirmed";
    case ICAL_STATUS_CANCELLED:
        return "cancelled";
    default:
        return NULL;
    }
}

/* What one VEVENT says, before it is placed in time. */
typedef struct Vevent {
    const char *uid;
    When start, end;     /* the DTSTART instance */
    int64_t dur_ms;
    const char *tzid;
    bool has_rid;
    When rid;
    bool recurring;      /* RRULE or RDATE */
    bool canceled;
    int64_t sequence, modified_ms;
    json_t *base;        /* data without start, end, recurrence_id */
} Vevent;

static int vevent_read(const Ctx *cx, icalcomponent *ev, Vevent *v, Err *err)
{
    memset(v, 0, sizeof *v);
    int begin = cx->sc->no[cx->first];
    const char *uid = icalcomponent_get_uid(ev);
    if (!uid || !*uid)
        return err_set(err, ERR_INVAL, "line %d: VEVENT without a UID", begin);
    if (strlen(uid) > MAX_UID || !core_utf8_valid(uid, strlen(uid), NULL))
        return err_set(err, ERR_INVAL, "line %d: UID longer than %d bytes or not UTF-8",
                       prop_line(cx->sc, cx->first, cx->last, "UID", 0), MAX_UID);
    v->uid = uid;
    icalproperty *ds = icalcomponent_get_first_property(ev, ICAL_DTSTART_PROPERTY);
    if (!ds)
        return err_set(err, ERR_INVAL, "line %d: VEVENT %.64s without a DTSTART", begin, uid);
    int rc = prop_when(cx, ds, icalproperty_get_dtstart(ds), "DTSTART", 0, &v->start, &v->tzid,
                       err);
    if (rc < 0)
        return rc;
    icalproperty *de = icalcomponent_get_first_property(ev, ICAL_DTEND_PROPERTY);
    icalproperty *du = icalcomponent_get_first_property(ev, ICAL_DURATION_PROPERTY);
    if (de) {
        if ((rc = prop_when(cx, de, icalproperty_get_dtend(de), "DTEND", 0, &v->end, NULL,
                            err)) < 0)
            return rc;
    } else if (du) {
        v->end = v->start;
        v->end.ms += (int64_t)icaldurationtype_as_int(icalproperty_get_duration(du)) * 1000;
    } else {
        v->end = v->start;
        if (v->start.date)
            v->end.ms += DAY_MS;
    }
    if (v->end.ms < v->start.ms)
        return err_set(err, ERR_INVAL, "line %d: VEVENT %.64s ends before it starts",
                       prop_line(cx->sc, cx->first, cx->last, de ? "DTEND" : "DURATION", 0), uid);
    v->dur_ms = v->end.ms - v->start.ms;
    icalproperty *rp = icalcomponent_get_first_property(ev, ICAL_RECURRENCEID_PROPERTY);
    if (rp) {
        if ((rc = prop_when(cx, rp, icalproperty_get_recurrenceid(rp), "RECURRENCE-ID", 0,
                            &v->rid, NULL, err)) < 0)
            return rc;
        v->has_rid = true;
    }
    v->recurring = icalcomponent_get_first_property(ev, ICAL_RRULE_PROPERTY) ||
                   icalcomponent_get_first_property(ev, ICAL_RDATE_PROPERTY);
    icalproperty *sp = icalcomponent_get_first_property(ev, ICAL_STATUS_PROPERTY);
    const char *status = sp ? status_name(icalproperty_get_status(sp)) : NULL;
    v->canceled = status && !strcmp(status, "cancelled");
    icalproperty *q = icalcomponent_get_first_property(ev, ICAL_SEQUENCE_PROPERTY);
    v->sequence = q ? icalproperty_get_sequence(q) : 0;
    if (v->sequence < 0)
        v->sequence = 0;
    icalproperty *lm = icalcomponent_get_first_property(ev, ICAL_LASTMODIFIED_PROPERTY);
    When lmw;
    if (lm && when_of(icalproperty_get_lastmodified(lm), NULL, &lmw) == 0)
        v->modified_ms = lmw.ms;

    json_t *d = json_object();
    json_object_set_new(d, "uid", json_string(uid));
    const char *summary = icalcomponent_get_summary(ev);
    json_object_set_new(d, "summary", text_json(summary ? summary : ""));
    set_text(d, "description", icalcomponent_get_description(ev));
    set_text(d, "location", icalcomponent_get_location(ev));
    if (status)
        json_object_set_new(d, "status", json_string(status));
    if (v->tzid)
        set_text(d, "tzid", v->tzid);
    json_object_set_new(d, "all_day", json_boolean(v->start.date));
    json_object_set_new(d, "sequence", json_integer(v->sequence));
    if (v->modified_ms) {
        char t[CORE_TIME_LEN + 1];
        core_time_format(v->modified_ms, t);
        json_object_set_new(d, "last_modified", json_string(t));
    }
    icalproperty *op = icalcomponent_get_first_property(ev, ICAL_ORGANIZER_PROPERTY);
    json_t *org = op ? party(op, false) : NULL;
    if (org)
        json_object_set_new(d, "organizer", org);
    json_t *att = json_array();
    for (icalproperty *a = icalcomponent_get_first_property(ev, ICAL_ATTENDEE_PROPERTY);
         a && json_array_size(att) < MAX_ATTENDEES;
         a = icalcomponent_get_next_property(ev, ICAL_ATTENDEE_PROPERTY)) {
        json_t *o = party(a, true);
        if (o)
            json_array_append_new(att, o);
    }
    json_object_set_new(d, "attendees", att);
    v->base = d;
    return 0;
}

static Item *item_add(Items *it, const Vevent *v, When start, int64_t end_ms, const When *rid,
                      size_t max_total, Err *err)
{
    if (it->n == max_total) {
        err_set(err, ERR_TOOBIG, "more than %zu event instances in the window", max_total);
        return NULL;
    }
    if (it->n == it->cap) {
        it->cap = it->cap ? it->cap * 2 : 64;
        it->v = xrealloc(it->v, it->cap * sizeof *it->v);
    }
    Item *x = &it->v[it->n++];
    memset(x, 0, sizeof *x);
    x->uid = xstrdup(v->uid);
    if (rid)
        format_when(rid->ms, rid->date, x->rid);
    x->start_ms = start.ms;
    x->end_ms = end_ms;
    x->sequence = v->sequence;
    x->modified_ms = v->modified_ms;
    x->canceled = v->canceled;
    x->data = json_deep_copy(v->base);
    char s[CORE_TIME_LEN + 1], e[CORE_TIME_LEN + 1];
    format_when(start.ms, start.date, s);
    format_when(end_ms, start.date, e);
    json_object_set_new(x->data, "start", json_string(s));
    json_object_set_new(x->data, "end", json_string(e));
    if (rid) {
        json_object_set_new(x->data, "recurrence_id", json_string(x->rid));
        json_object_set_new(x->data, "recurring", json_true());
    }
    ics_event_digest(x->data, x->digest);
    return x;
}

typedef struct Window {
    int64_t from, to;
    size_t max_occurrences, max_instances;
    int64_t steps_left; /* RRULE iterations the feed may still take */
} Window;

static bool overlaps(const Window *w, int64_t start, int64_t end)
{
    return start < w->to && (end > w->from || (end == start && start >= w->from));
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Whether (uid, rid) is an override given in the feed (items sorted). */
static bool overridden(const Item *ov, size_t n, const char *uid, const char *rid)
{
    Item key = { .uid = (char *)uid };
    snprintf(key.rid, sizeof key.rid, "%s", rid);
    return n && bsearch(&key, ov, n, sizeof *ov, item_cmp) != NULL;
}

/* Expands a recurring master into its instances in the window, minus its
 * EXDATEs and the instances an override replaces. */
static int expand(const Ctx *cx, icalcomponent *ev, const Vevent *v, Window *w,
                  const Item *ov, size_t nov, Items *out, Err *err)
{
    int64_t *ex = NULL;
    size_t nex = 0;
    int rc = 0, nth = 0;
    for (icalproperty *p = icalcomponent_get_first_property(ev, ICAL_EXDATE_PROPERTY);
         p && nex < MAX_EXDATES; p = icalcomponent_get_next_property(ev, ICAL_EXDATE_PROPERTY)) {
        When x;
        if ((rc = prop_when(cx, p, icalproperty_get_exdate(p), "EXDATE", nth++, &x, NULL, err)) < 0)
            goto out;
        ex = xrealloc(ex, (nex + 1) * sizeof *ex);
        ex[nex++] = x.ms;
    }
    if (nex)
        qsort(ex, nex, sizeof *ex, cmp_i64);

    /* the instance starts, in the order found; duplicates dropped below */
    int64_t *starts = NULL;
    size_t ns = 0, cap = 0;
#define ADD_START(ms)                                                         \
    do {                                                                      \
        if (ns == cap) {                                                      \
            cap = cap ? cap * 2 : 32;                                         \
            starts = xrealloc(starts, cap * sizeof *starts);                  \
        }                                                                     \
        starts[ns++] = (ms);                                                  \
    } while (0)

    icalproperty *ds = icalcomponent_get_first_property(ev, ICAL_DTSTART_PROPERTY);
    struct icaltimetype t0 = icalproperty_get_dtstart(ds);
    icaltimezone *z0;
    const char *tz0;
    if ((rc = zone_of(cx, ds, "DTSTART", 0, &z0, &tz0, err)) < 0)
        goto out_starts;
    if (z0 && !t0.is_date && !icaltime_is_utc(t0))
        t0.zone = z0;
    bool any_rrule = false;
    nth = 0;
    for (icalproperty *p = icalcomponent_get_first_property(ev, ICAL_RRULE_PROPERTY); p;
         p = icalcomponent_get_next_property(ev, ICAL_RRULE_PROPERTY), nth++) {
        any_rrule = true;
        struct icalrecurrencetype r = icalproperty_get_rrule(p);
        if (r.freq == ICAL_NO_RECURRENCE) {
            rc = err_set(err, ERR_INVAL, "line %d: RRULE without a valid FREQ",
                         prop_line(cx->sc, cx->first, cx->last, "RRULE", nth));
            goto out_starts;
        }
        icalrecur_iterator *ri = icalrecur_iterator_new(r, t0);
        if (!ri) {
            rc = err_set(err, ERR_INVAL, "line %d: RRULE cannot be expanded from this DTSTART",
                         prop_line(cx->sc, cx->first, cx->last, "RRULE", nth));
            goto out_starts;
        }
        /* a rule without COUNT can start at the window instead of DTSTART: a
         * series begun years ago costs nothing to reach today */
        if (!r.count && v->start.ms < w->from - v->dur_ms - 2 * DAY_MS) {
            /* a day early: the instances before the window are skipped below,
             * and no zone offset or edge of set_start can lose the first one */
            icaltimezone *zs = t0.is_date ? NULL : z0 ? z0 : icaltimezone_get_utc_timezone();
            struct icaltimetype from = icaltime_from_timet_with_zone(
                (time_t)((w->from - v->dur_ms - DAY_MS) / 1000), t0.is_date, zs);
            if (!t0.is_date && !z0 && !icaltime_is_utc(t0))
                from.zone = NULL; /* floating, read as UTC */
            (void)icalrecur_iterator_set_start(ri, from); /* on failure: from DTSTART */
        }
        size_t in_window = 0;
        while (in_window < w->max_occurrences) {
            if (--w->steps_left < 0) {
                icalrecur_iterator_free(ri);
                rc = err_set(err, ERR_TOOBIG,
                             "line %d: the feed's recurrence rules need more than %d steps to"
                             " reach the window",
                             prop_line(cx->sc, cx->first, cx->last, "RRULE", nth), MAX_FEED_STEPS);
                goto out_starts;
            }
            struct icaltimetype o = icalrecur_iterator_next(ri);
            if (icaltime_is_null_time(o))
                break;
            if (z0 && !o.is_date && !icaltime_is_utc(o))
                o.zone = z0;
            When wo;
            if (when_of(o, z0, &wo) < 0 || wo.ms >= w->to)
                break;
            if (overlaps(w, wo.ms, wo.ms + v->dur_ms)) {
                ADD_START(wo.ms);
                in_window++;
            }
        }
        icalrecur_iterator_free(ri);
    }
    if (!any_rrule && overlaps(w, v->start.ms, v->end.ms))
        ADD_START(v->start.ms); /* RDATEs alone: DTSTART is the first instance */
    nth = 0;
    for (icalproperty *p = icalcomponent_get_first_property(ev, ICAL_RDATE_PROPERTY); p;
         p = icalcomponent_get_next_property(ev, ICAL_RDATE_PROPERTY), nth++) {
        struct icaldatetimeperiodtype dp = icalproperty_get_rdate(p);
        struct icaltimetype t = icaltime_is_null_time(dp.time) ? dp.period.start : dp.time;
        When x;
        if ((rc = prop_when(cx, p, t, "RDATE", nth, &x, NULL, err)) < 0)
            goto out_starts;
        if (overlaps(w, x.ms, x.ms + v->dur_ms) && ns < 4 * w->max_occurrences)
            ADD_START(x.ms);
    }
#undef ADD_START
    if (ns)
        qsort(starts, ns, sizeof *starts, cmp_i64);
    size_t kept = 0;
    for (size_t i = 0; i < ns && kept < w->max_occurrences; i++) {
        if (i && starts[i] == starts[i - 1])
            continue;
        if (nex && bsearch(&starts[i], ex, nex, sizeof *ex, cmp_i64))
            continue;
        When s = { starts[i], v->start.date }, rid = s;
        char rs[CORE_TIME_LEN + 1];
        format_when(rid.ms, rid.date, rs);
        if (overridden(ov, nov, v->uid, rs))
            continue;
        if (!item_add(out, v, s, s.ms + v->dur_ms, &rid, w->max_instances, err)) {
            rc = err->code;
            goto out_starts;
        }
        kept++;
    }
out_starts:
    free(starts);
out:
    free(ex);
    return rc;
}

static Window window_of(const IcsOptions *o, int64_t now_ms)
{
    return (Window){ .from = now_ms - (int64_t)o->past_days * DAY_MS,
                     .to = now_ms + (int64_t)o->horizon_days * DAY_MS,
                     .max_occurrences = o->max_occurrences,
                     .max_instances = ICS_MAX_INSTANCES,
                     .steps_left = MAX_FEED_STEPS };
}

typedef struct Parsed {
    Items items;
    size_t vevents;
} Parsed;

static void opts_fill(const IcsOptions *in, IcsOptions *o)
{
    *o = in ? *in : (IcsOptions){ 0 };
    if (o->horizon_days <= 0)
        o->horizon_days = ICS_DEFAULT_HORIZON_DAYS;
    if (o->horizon_days > MAX_HORIZON_DAYS)
        o->horizon_days = MAX_HORIZON_DAYS;
    if (o->past_days == 0)
        o->past_days = ICS_DEFAULT_PAST_DAYS;
    if (o->past_days < 0)
        o->past_days = 0;
    if (o->past_days > MAX_HORIZON_DAYS)
        o->past_days = MAX_HORIZON_DAYS;
    if (!o->max_bytes)
        o->max_bytes = ICS_MAX_BYTES;
    if (!o->max_events)
        o->max_events = ICS_MAX_EVENTS;
    if (!o->max_occurrences)
        o->max_occurrences = ICS_MAX_OCCURRENCES;
}

/* Scans and parses a feed into its instances: singles and overrides
 * whatever their time (the diff decides), recurring series expanded over
 * the window. Nothing is returned on error. Caller holds ical_lock. */
static int parse_feed(const char *text, size_t len, const IcsOptions *o, int64_t now_ms,
                      Parsed *ret, Err *err)
{
    if (len > o->max_bytes)
        return err_set(err, ERR_TOOBIG, "feed of %zu bytes: larger than the limit of %zu", len,
                       o->max_bytes);
    Scan sc = { .max_events = o->max_events };
    Items it = { 0 };
    icalcomponent *cal = NULL;
    Vevent *vs = NULL;
    int rc = scan(text, len, &sc, err);
    if (rc < 0)
        goto out;
    cal = icalparser_parse_string(buf_cstr(&sc.text));
    if (!cal || icalcomponent_isa(cal) != ICAL_VCALENDAR_COMPONENT) {
        rc = err_set(err, ERR_INVAL, "line 1: libical could not read the calendar");
        goto out;
    }
    /* errors outside events first, then each event's in its own lines */
    size_t k = 0;
    if ((rc = xlic_error(&sc, cal, 0, sc.n - 1, false, err)) < 0)
        goto out;
    vs = xcalloc(sc.nev ? sc.nev : 1, sizeof *vs);
    size_t nvs = 0;
    for (icalcomponent *c = icalcomponent_get_first_component(cal, ICAL_ANY_COMPONENT); c;
         c = icalcomponent_get_next_component(cal, ICAL_ANY_COMPONENT)) {
        bool is_ev = icalcomponent_isa(c) == ICAL_VEVENT_COMPONENT;
        if (is_ev && k >= sc.nev) {
            rc = err_set(err, ERR_INTERNAL, "libical found more VEVENTs than the scan");
            goto out;
        }
        size_t first = is_ev ? sc.ev_first[k] : 0, last = is_ev ? sc.ev_last[k] : sc.n - 1;
        if ((rc = xlic_error(&sc, c, first, last, true, err)) < 0)
            goto out;
        if (!is_ev)
            continue;
        Ctx cx = { .sc = &sc, .cal = cal, .first = first, .last = last };
        if ((rc = vevent_read(&cx, c, &vs[nvs], err)) < 0)
            goto out;
        nvs++;
        k++;
    }
    Window w = window_of(o, now_ms);
    /* singles and overrides first: the expansion skips what they replace */
    for (size_t i = 0; i < nvs; i++) {
        const Vevent *v = &vs[i];
        if (v->recurring && !v->has_rid)
            continue;
        if (!item_add(&it, v, v->start, v->end.ms, v->has_rid ? &v->rid : NULL, w.max_instances,
                      err)) {
            rc = err->code;
            goto out;
        }
    }
    size_t nov = it.n;
    Item *ov = xmalloc((nov ? nov : 1) * sizeof *ov);
    if (nov) {
        qsort(it.v, nov, sizeof *it.v, item_cmp);
        memcpy(ov, it.v, nov * sizeof *ov); /* shallow: a sorted index for bsearch */
    }
    size_t vi = 0;
    for (icalcomponent *c = icalcomponent_get_first_component(cal, ICAL_VEVENT_COMPONENT);
         c && rc == 0; c = icalcomponent_get_next_component(cal, ICAL_VEVENT_COMPONENT), vi++) {
        const Vevent *v = &vs[vi];
        if (!v->recurring || v->has_rid)
            continue;
        Ctx cx = { .sc = &sc, .cal = cal, .first = sc.ev_first[vi], .last = sc.ev_last[vi] };
        rc = expand(&cx, c, v, &w, ov, nov, &it, err);
    }
    free(ov);
    if (rc < 0)
        goto out;
    /* one instance per (uid, rid): the highest SEQUENCE, then LAST-MODIFIED,
     * then digest, so that the same feed always keeps the same one */
    if (it.n)
        qsort(it.v, it.n, sizeof *it.v, item_order);
    size_t keep = 0;
    for (size_t i = 0; i < it.n; i++) {
        if (keep && !item_cmp(&it.v[keep - 1], &it.v[i])) {
            Item *a = &it.v[keep - 1], *b = &it.v[i];
            if (item_order(a, b) < 0) {
                Item t = *a;
                *a = *b;
                *b = t;
            }
            free(b->uid);
            json_decref(b->data);
            continue;
        }
        it.v[keep++] = it.v[i];
    }
    it.n = keep;
    it.uids = xcalloc(nvs ? nvs : 1, sizeof *it.uids);
    for (size_t i = 0; i < nvs; i++)
        it.uids[it.nuids++] = xstrdup(vs[i].uid);
    if (it.nuids)
        qsort(it.uids, it.nuids, sizeof *it.uids, str_cmp);
    ret->vevents = nvs;
    ret->items = it;
    memset(&it, 0, sizeof it);
out:
    if (vs)
        for (size_t i = 0; i < sc.nev; i++)
            json_decref(vs[i].base);
    free(vs);
    items_done(&it);
    if (cal)
        icalcomponent_free(cal);
    scan_done(&sc);
    return rc;
}

int ics_check(const char *ics_text, size_t len, const IcsOptions *opts, size_t *ret_vevents,
              Err *err)
{
    IcsOptions o;
    opts_fill(opts, &o);
    Parsed p = { 0 };
    pthread_mutex_lock(&ical_lock);
    int rc = parse_feed(ics_text, len, &o, core_time_now_ms(), &p, err);
    pthread_mutex_unlock(&ical_lock);
    if (rc == 0 && ret_vevents)
        *ret_vevents = p.vevents;
    items_done(&p.items);
    return rc;
}

/* ---- the diff ---- */

void ics_changes_done(IcsChanges *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        ledger_event_free(c->events[i]);
    free(c->events);
    memset(c, 0, sizeof *c);
}

/* A row of the projection. */
typedef struct Row {
    bool found;
    int64_t revision, sequence;
    char digest[CORE_SHA256_HEX + 1];
    bool canceled;
    json_t *data;
} Row;

static int row_get(Store *rd, const char *source, const char *uid, const char *rid, Row *r,
                   Err *err)
{
    memset(r, 0, sizeof *r);
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT revision, sequence, digest, canceled, data FROM calendar_events"
                           " WHERE source = ?1 AND uid = ?2 AND recurrence_id = ?3",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, source, strlen(source));
    store_bind_text(st, 2, uid, strlen(uid));
    store_bind_text(st, 3, rid, strlen(rid));
    if ((rc = store_step(st, err)) == STORE_ROW) {
        r->found = true;
        r->revision = store_col_int(st, 0);
        r->sequence = store_col_int(st, 1);
        const char *d = store_col_text(st, 2, NULL);
        snprintf(r->digest, sizeof r->digest, "%s", d ? d : "");
        r->canceled = store_col_int(st, 3) != 0;
        size_t len;
        const char *data = store_col_text(st, 4, &len);
        r->data = data ? json_loadb(data, len, 0, NULL) : NULL;
        if (!r->data)
            r->data = json_object();
    }
    store_stmt_done(st);
    return rc < 0 ? rc : 0;
}

static void push(IcsChanges *c, Event *ev)
{
    c->events = xrealloc(c->events, (c->n + 1) * sizeof *c->events);
    c->events[c->n++] = ev;
}

/* Builds one event. The key hashes everything that makes this change this
 * change: a re-poll of the same state derives the same key. */
static int make_event(IcsChanges *c, const char *kind, const char *source, const char *uid,
                      const char *rid, int64_t revision, int64_t sequence, const char *digest,
                      int64_t occurred_ms, json_t *data, Err *err)
{
    char type[48], occurred[CORE_TIME_LEN + 1], hex[CORE_SHA256_HEX + 1], key[8 + sizeof hex];
    snprintf(type, sizeof type, "calendar.event.%s", kind);
    Buf k;
    buf_init(&k, 0);
    buf_printf(&k, "calendar\x1f%s\x1f%s\x1f%s\x1f%s\x1f%lld\x1f%lld\x1f%s", source, uid, rid,
               kind, (long long)revision, (long long)sequence, digest);
    core_sha256_hex(buf_cstr(&k), k.len, hex);
    buf_done(&k);
    snprintf(key, sizeof key, "ics:%s", hex);
    core_time_format(occurred_ms, occurred);
    json_t *obj = json_pack("{s:s, s:s, s:s, s:s, s:O}", "type", type, "source", source,
                            "occurred_at", occurred, "idempotency_key", key, "data", data);
    Event *ev = NULL;
    int rc = obj ? ledger_event_from_json(obj, NULL, &ev, err)
                 : err_set(err, ERR_INTERNAL, "calendar event: bad arguments");
    json_decref(obj);
    if (rc < 0)
        return err_wrap(err, "calendar event '%.64s'", uid);
    push(c, ev);
    if (!strcmp(kind, "created"))
        c->created++;
    else if (!strcmp(kind, "updated"))
        c->updated++;
    else
        c->canceled++;
    return 0;
}

/* data.changes and data.previous: the tracked fields that differ. */
static size_t changes_of(const json_t *old, json_t *data)
{
    json_t *changes = json_array(), *prev = json_object();
    for (int i = 0; tracked[i]; i++) {
        json_t *a = json_object_get(old, tracked[i]), *b = json_object_get(data, tracked[i]);
        if ((!a && !b) || (a && b && json_equal(a, b)))
            continue;
        json_array_append_new(changes, json_string(tracked[i]));
        json_object_set(prev, tracked[i], a ? a : json_null());
    }
    size_t n = json_array_size(changes);
    json_object_set_new(data, "changes", changes);
    json_object_set_new(data, "previous", prev);
    return n;
}

static int diff_item(Store *rd, const char *source, const Item *x, const Window *w,
                     int64_t now_ms, IcsChanges *c, Err *err)
{
    Row r;
    int rc = row_get(rd, source, x->uid, x->rid, &r, err);
    if (rc < 0)
        return rc;
    int64_t when = x->modified_ms ? x->modified_ms : now_ms;
    json_t *d = json_deep_copy(x->data);
    if (!r.found || r.canceled) {
        /* new (only in the window), or back after a cancellation */
        if (!x->canceled && (r.found || overlaps(w, x->start_ms, x->end_ms))) {
            if (r.found)
                json_object_set_new(d, "reinstated", json_true());
            rc = make_event(c, "created", source, x->uid, x->rid, r.revision, x->sequence,
                            x->digest, when, d, err);
        }
    } else if (x->canceled) {
        json_object_set_new(d, "reason", json_string("cancelled"));
        rc = make_event(c, "canceled", source, x->uid, x->rid, r.revision, x->sequence,
                        x->digest, when, d, err);
    } else if (strcmp(r.digest, x->digest) || x->sequence > r.sequence) {
        changes_of(r.data, d);
        rc = make_event(c, "updated", source, x->uid, x->rid, r.revision, x->sequence, x->digest,
                        when, d, err);
    }
    json_decref(d);
    json_decref(r.data);
    return rc;
}

static bool has_uid(const Items *it, const char *uid)
{
    return it->nuids && bsearch(&uid, it->uids, it->nuids, sizeof *it->uids, str_cmp) != NULL;
}

/* Known, live instances overlapping the window that the feed no longer
 * has. An occurrence past the window's end whose series is still in the
 * feed is not gone: the window just does not reach it now. */
static int diff_removed(Store *rd, const char *source, const Items *it, const Window *w,
                        int64_t now_ms, IcsChanges *c, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT uid, recurrence_id, start_ms, revision, sequence, digest, data"
                           " FROM calendar_events WHERE source = ?1 AND canceled = 0"
                           " AND end_ms >= ?2 ORDER BY uid, recurrence_id",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, source, strlen(source));
    store_bind_int(st, 2, w->from);
    while ((rc = store_step(st, err)) == STORE_ROW) {
        const char *uid = store_col_text(st, 0, NULL), *rid = store_col_text(st, 1, NULL);
        if (!uid || !rid)
            continue;
        Item key = { .uid = (char *)uid };
        snprintf(key.rid, sizeof key.rid, "%s", rid);
        if (it->n && bsearch(&key, it->v, it->n, sizeof *it->v, item_cmp))
            continue;
        bool present = has_uid(it, uid);
        if (*rid && present && store_col_int(st, 2) >= w->to)
            continue;
        size_t len;
        const char *data = store_col_text(st, 6, &len);
        json_t *d = data ? json_loadb(data, len, 0, NULL) : NULL;
        if (!d)
            continue; /* a row not written by a calendar event: nothing to say */
        json_object_set_new(d, "reason", json_string("removed"));
        const char *dg = store_col_text(st, 5, NULL);
        rc = make_event(c, "canceled", source, uid, rid, store_col_int(st, 3),
                        store_col_int(st, 4), dg ? dg : "", now_ms, d, err);
        json_decref(d);
        if (rc < 0)
            break;
    }
    store_stmt_done(st);
    return rc < 0 ? rc : 0;
}

int ics_poll_diff_opts(Store *rd, const char *source, const char *ics_text, size_t len,
                       const IcsOptions *opts, int64_t now_ms, IcsChanges *out, Err *err)
{
    IcsOptions o;
    opts_fill(opts, &o);
    Parsed p = { 0 };
    IcsChanges c = { 0 };
    pthread_mutex_lock(&ical_lock);
    int rc = parse_feed(ics_text, len, &o, now_ms, &p, err);
    pthread_mutex_unlock(&ical_lock);
    if (rc < 0)
        return rc;
    Window w = window_of(&o, now_ms);
    bool tx = !store_in_tx(rd);
    if (tx && (rc = store_begin_read(rd, err)) < 0)
        goto out;
    for (size_t i = 0; i < p.items.n && rc == 0; i++)
        rc = diff_item(rd, source, &p.items.v[i], &w, now_ms, &c, err);
    if (rc == 0)
        rc = diff_removed(rd, source, &p.items, &w, now_ms, &c, err);
    /* A feed without a single VEVENT whose diff would cancel everything
     * known is far more often a broken export or a server glitch than an
     * emptied calendar: refused, unless the connector allows it. */
    if (rc == 0 && p.vevents == 0 && c.n > 0 && !o.allow_empty)
        rc = err_set(err, ERR_INVAL,
                     "the feed has no VEVENT, which would cancel all %zu known events in the"
                     " window; nothing changed (allow_empty: true accepts an empty calendar)",
                     c.n);
    if (tx) {
        Err ignored = { 0 };
        if (store_commit(rd, &ignored) < 0)
            store_rollback(rd);
    }
out:
    c.vevents = p.vevents;
    c.instances = p.items.n;
    items_done(&p.items);
    if (rc < 0) {
        ics_changes_done(&c);
        return rc;
    }
    *out = c;
    return 0;
}

int ics_poll_diff(Store *rd, const char *source, const char *ics_text, size_t len,
                  int horizon_days, int64_t now_ms, IcsChanges *out, Err *err)
{
    IcsOptions o = { .horizon_days = horizon_days };
    return ics_poll_diff_opts(rd, source, ics_text, len, &o, now_ms, out, err);
}

/* ---- fetching ---- */

void ics_fetched_done(IcsFetched *f)
{
    if (!f)
        return;
    free(f->body);
    free(f->etag);
    free(f->last_modified);
    memset(f, 0, sizeof *f);
}

static char *dup_or_null(const char *s)
{
    return s && *s ? xstrdup(s) : NULL;
}

static int fetch_file(const char *path, const char *etag, size_t max, IcsFetched *ret, Err *err)
{
    /* O_NONBLOCK: a FIFO must not hang the poll (it is refused below) */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return err_set(err, ERR_IO, "open %s: %s", path, strerror(errno));
    struct stat st;
    int rc = 0;
    char *body = NULL;
    if (fstat(fd, &st) < 0) {
        rc = err_set(err, ERR_IO, "stat %s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = err_set(err, ERR_IO, "%s: not a regular file", path);
        goto out;
    }
    char tag[96], lm[CORE_TIME_LEN + 1];
    snprintf(tag, sizeof tag, "\"file-%lld-%lld.%09ld\"", (long long)st.st_size,
             (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
    core_time_format((int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000, lm);
    if (etag && !strcmp(etag, tag)) {
        *ret = (IcsFetched){ .etag = xstrdup(tag), .last_modified = xstrdup(lm),
                             .not_modified = true };
        goto out;
    }
    if ((uint64_t)st.st_size > max) {
        rc = err_set(err, ERR_TOOBIG, "%s: %lld bytes, larger than the limit of %zu", path,
                     (long long)st.st_size, max);
        goto out;
    }
    body = xmalloc(max + 1 < (size_t)st.st_size + 1 ? max + 1 : (size_t)st.st_size + 1);
    size_t cap = (size_t)st.st_size, len = 0;
    for (;;) { /* the file may have grown since fstat: read to EOF, within the cap */
        if (len == cap) {
            if (cap == max) {
                char extra;
                ssize_t n = read(fd, &extra, 1);
                if (n > 0) {
                    rc = err_set(err, ERR_TOOBIG, "%s: larger than the limit of %zu", path, max);
                    goto out;
                }
                break;
            }
            cap = cap * 2 + 4096 < max ? cap * 2 + 4096 : max;
            body = xrealloc(body, cap + 1);
        }
        ssize_t n = read(fd, body + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = err_set(err, ERR_IO, "read %s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    body[len] = '\0';
    *ret = (IcsFetched){ .body = body, .len = len, .etag = xstrdup(tag),
                         .last_modified = xstrdup(lm) };
    body = NULL;
out:
    free(body);
    close(fd);
    return rc;
}

typedef struct Http {
    Buf body;
    char etag[257];
    char last_modified[129];
} Http;

static size_t on_body(char *p, size_t size, size_t n, void *ctx)
{
    Http *h = ctx;
    return buf_append(&h->body, p, size * n) < 0 ? 0 : size * n;
}

/* Keeps the ETag and Last-Modified headers of the last response. */
static size_t on_header(char *p, size_t size, size_t n, void *ctx)
{
    Http *h = ctx;
    size_t len = size * n;
    if (len >= 5 && !strncmp(p, "HTTP/", 5)) { /* a new response (after a redirect) */
        h->etag[0] = h->last_modified[0] = '\0';
        return len;
    }
    const char *colon = memchr(p, ':', len);
    if (!colon)
        return len;
    size_t nl = (size_t)(colon - p);
    const char *v = colon + 1, *e = p + len;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
        e--;
    size_t vl = (size_t)(e - v);
    char *dst = NULL;
    size_t cap = 0;
    if (nl == 4 && !strncasecmp(p, "etag", 4)) {
        dst = h->etag;
        cap = sizeof h->etag;
    } else if (nl == 13 && !strncasecmp(p, "last-modified", 13)) {
        dst = h->last_modified;
        cap = sizeof h->last_modified;
    }
    if (dst && vl < cap) { /* a longer one is not kept: the next fetch is unconditional */
        memcpy(dst, v, vl);
        dst[vl] = '\0';
    }
    return len;
}

/* "https://host" of url (never its path or query), for messages. */
static void url_origin(const char *url, char out[160])
{
    snprintf(out, 160, "(a bad URL)");
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
        snprintf(out, 160, "%s://%.120s", scheme, host);
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
}

static bool header_value_ok(const char *s)
{
    size_t n = strnlen(s, 257);
    if (n == 0 || n > 256)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < ' ' || s[i] == 0x7f)
            return false;
    return true;
}

static int fetch_http(const char *url, const char *etag, const char *last_modified, size_t max,
                      int timeout_ms, IcsFetched *ret, Err *err)
{
    char origin[160], errbuf[CURL_ERROR_SIZE] = "";
    url_origin(url, origin);
    int rc = effect_curl_init();
    if (rc < 0)
        return err_set(err, rc, "GET %s: libcurl could not initialise", origin);
    CURL *c = curl_easy_init();
    if (!c)
        return err_set(err, ERR_INTERNAL, "GET %s: libcurl could not start a transfer", origin);
    Http h = { 0 };
    buf_init(&h.body, max);
    struct curl_slist *hdrs = NULL;
    char line[300];
    if (etag && header_value_ok(etag)) {
        snprintf(line, sizeof line, "If-None-Match: %s", etag);
        hdrs = curl_slist_append(hdrs, line);
    }
    if (last_modified && header_value_ok(last_modified)) {
        snprintf(line, sizeof line, "If-Modified-Since: %s", last_modified);
        hdrs = curl_slist_append(hdrs, line);
    }
    hdrs = curl_slist_append(hdrs, "Accept: text/calendar, */*;q=0.5");
    CURLcode cc = CURLE_OK;
#define SET(opt, val)                                                          \
    do {                                                                       \
        if (cc == CURLE_OK)                                                    \
            cc = curl_easy_setopt(c, (opt), (val));                            \
    } while (0)
    SET(CURLOPT_ERRORBUFFER, errbuf);
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 1L);
    SET(CURLOPT_MAXREDIRS, 5L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout_ms < 10000 ? timeout_ms : 10000));
    SET(CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_NETRC, (long)CURL_NETRC_IGNORED);
    SET(CURLOPT_USERAGENT, "bureau/" BUREAU_VERSION);
    SET(CURLOPT_ACCEPT_ENCODING, ""); /* whatever libcurl can decode; the cap is on the decoded body */
    SET(CURLOPT_HTTPHEADER, hdrs);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, &h);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, &h);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max);
#undef SET
    if (cc != CURLE_OK) {
        rc = err_set(err, ERR_INTERNAL, "GET %s: %s", origin, curl_easy_strerror(cc));
        goto out;
    }
    cc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (cc == CURLE_WRITE_ERROR || cc == CURLE_FILESIZE_EXCEEDED) {
        rc = err_set(err, ERR_TOOBIG, "GET %s: the feed is larger than the limit of %zu bytes",
                     origin, max);
        goto out;
    }
    if (cc == CURLE_OPERATION_TIMEDOUT) {
        rc = err_set(err, ERR_TIMEOUT, "GET %s: no answer within %d ms", origin, timeout_ms);
        goto out;
    }
    if (cc != CURLE_OK) {
        rc = err_set(err, ERR_IO, "GET %s: %s", origin, errbuf[0] ? errbuf : curl_easy_strerror(cc));
        goto out;
    }
    if (status == 304) {
        *ret = (IcsFetched){ .not_modified = true, .http_status = status,
                             .etag = dup_or_null(h.etag[0] ? h.etag : etag),
                             .last_modified = dup_or_null(h.last_modified[0] ? h.last_modified
                                                                             : last_modified) };
        goto out;
    }
    if (status != 200) {
        rc = err_set(err, ERR_IO, "GET %s: HTTP %ld", origin, status);
        goto out;
    }
    *ret = (IcsFetched){ .len = h.body.len, .http_status = status,
                         .etag = dup_or_null(h.etag), .last_modified = dup_or_null(h.last_modified) };
    ret->body = buf_steal(&h.body);
out:
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    buf_done(&h.body);
    return rc;
}

int ics_fetch(const char *url_or_path, const char *etag, const char *last_modified,
              size_t max_bytes, int timeout_ms, IcsFetched *ret, Err *err)
{
    if (!url_or_path || !*url_or_path)
        return err_set(err, ERR_INVAL, "ics: no url or path");
    size_t max = max_bytes ? max_bytes : ICS_MAX_BYTES;
    int tmo = timeout_ms > 0 ? timeout_ms : ICS_FETCH_TIMEOUT_MS;
    if (!strncasecmp(url_or_path, "http://", 7) || !strncasecmp(url_or_path, "https://", 8))
        return fetch_http(url_or_path, etag, last_modified, max, tmo, ret, err);
    const char *sep = strstr(url_or_path, "://");
    if (sep && !strncasecmp(url_or_path, "file://", 7))
        return fetch_file(url_or_path + 7, etag, max, ret, err);
    if (sep && (size_t)(sep - url_or_path) < 16 && memchr(url_or_path, '/', (size_t)(sep - url_or_path)) == NULL)
        return err_set(err, ERR_INVAL, "ics: unsupported URL scheme '%.*s' (http, https or a path)",
                       (int)(sep - url_or_path), url_or_path);
    return fetch_file(url_or_path, etag, max, ret, err);
}

/* ---- the connector (kind: ics), run by the pull runtime ---- */

#define ICS_REVALIDATE_MS ((int64_t)24 * 3600 * 1000)

/* One poll: fetch the feed with the cursor's validators (a 304 or an
 * unchanged file is nothing to do, except that once a day the feed is read
 * again without them, since the window moves with time), diff it against
 * the calendar projection, and append the changes with the new cursor
 * {etag, last_modified, parsed_at} in one append. A feed that does not
 * parse changes nothing: the cursor stays and the error is the poll's. */
int pull__ics_poll(const PullCtx *x, int64_t *ret_appended, Err *err)
{
    const ConnectorConfig *c = x->c;
    *ret_appended = 0;
    json_t *cursor = NULL;
    int64_t cursor_seq = 0;
    int rc = pull__cursor_get(x->rd, c->name, &cursor, &cursor_seq, err);
    if (rc < 0)
        return rc;
    int64_t now = core_time_now_ms();
    int64_t parsed_at = json_integer_value(json_object_get(cursor, "parsed_at"));
    bool revalidate = now - parsed_at >= ICS_REVALIDATE_MS;
    const char *etag = revalidate ? NULL : json_string_value(json_object_get(cursor, "etag"));
    const char *lm = revalidate ? NULL : json_string_value(json_object_get(cursor, "last_modified"));
    IcsFetched fetched = { 0 };
    rc = ics_fetch(c->url ? c->url : c->path, etag, lm, 0, ICS_FETCH_TIMEOUT_MS, &fetched, err);
    if (rc < 0 || fetched.not_modified) {
        ics_fetched_done(&fetched);
        json_decref(cursor);
        return rc < 0 ? rc : 0;
    }
    IcsChanges ch = { 0 };
    IcsOptions o = { .horizon_days = c->horizon_days, .allow_empty = c->allow_empty };
    rc = ics_poll_diff_opts(x->rd, c->source, fetched.body, fetched.len, &o, now, &ch, err);
    if (rc == 0) {
        json_t *next = json_pack("{s:s?, s:s?, s:I}", "etag", fetched.etag, "last_modified",
                                 fetched.last_modified, "parsed_at", (json_int_t)now);
        rc = pull__append_batch(x->opts->ledger, c, ch.events, ch.n, next, &cursor_seq,
                                ret_appended, err);
        ch.n = 0; /* the events went to the ledger */
        json_decref(next);
    }
    ics_changes_done(&ch);
    ics_fetched_done(&fetched);
    json_decref(cursor);
    return rc;
}
