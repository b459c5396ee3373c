/* Rule-based extraction of emails, phone numbers, amounts of money, dates,
 * links and the sender's name and company from a message. Hand-written
 * scanners, one pass each, in a fixed order (links and emails, money,
 * dates, phones); each marks the bytes it took so that a later scanner never
 * reads the same characters again (a date is not a phone number, an amount
 * is not a date). Everything is linear in the text, cut at LOCAL_MAX_TEXT. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/json.h"
#include "model/local.h"
#include "model/local/local_int.h"

#define MAX_ITEMS 64 /* per kind: a message listing more is not a message */
#define DAY_MS    INT64_C(86400000)

typedef struct X {
    const char *s;
    size_t len;
    unsigned char *taken;
    int64_t today; /* days since 1970-01-01, UTC */
    json_t *emails, *phones, *money, *dates, *urls;
} X;

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_alnum(char c) { return is_digit(c) || is_alpha(c); }
static bool is_blank(char c) { return c == ' ' || c == '\t'; }

static bool free_span(const X *x, size_t a, size_t b)
{
    for (size_t i = a; i < b; i++)
        if (x->taken[i])
            return false;
    return true;
}

static void take(X *x, size_t a, size_t b)
{
    memset(x->taken + a, 1, b - a);
}

/* Appends a string (only valid UTF-8, and once) to array. */
static void add_unique(json_t *arr, const char *s, size_t n)
{
    if (json_array_size(arr) >= MAX_ITEMS || !core_utf8_valid(s, n, NULL))
        return;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        if (json_string_length(v) == n && strncasecmp(json_string_value(v), s, n) == 0)
            return;
    }
    json_array_append_new(arr, json_stringn(s, n));
}

/* Whether s[i..) starts with word w (ASCII, any case), not followed by a
 * letter. */
static bool word_at(const X *x, size_t i, const char *w)
{
    size_t n = strlen(w);
    if (i + n > x->len || strncasecmp(x->s + i, w, n) != 0)
        return false;
    return i + n == x->len || !is_alpha(x->s[i + n]);
}

static bool boundary_before(const X *x, size_t i)
{
    return i == 0 || !is_alnum(x->s[i - 1]);
}

static size_t skip_blanks(const X *x, size_t i)
{
    while (i < x->len && is_blank(x->s[i]))
        i++;
    return i;
}

/* ---- emails and links ---------------------------------------------------- */

static bool email_local_char(char c)
{
    return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-' || c == '\'';
}

static void scan_emails(X *x)
{
    for (size_t at = 0; at < x->len; at++) {
        if (x->s[at] != '@')
            continue;
        size_t a = at;
        while (a > 0 && email_local_char(x->s[a - 1]))
            a--;
        while (a < at && (x->s[a] == '.' || x->s[a] == '\''))
            a++;
        size_t b = at + 1;
        while (b < x->len && (is_alnum(x->s[b]) || x->s[b] == '.' || x->s[b] == '-'))
            b++;
        while (b > at + 1 && (x->s[b - 1] == '.' || x->s[b - 1] == '-'))
            b--;
        if (a == at || b == at + 1)
            continue;
        /* The domain needs a dot and a top-level label of two letters or more. */
        size_t dot = b;
        while (dot > at + 1 && x->s[dot - 1] != '.')
            dot--;
        if (dot == at + 1 || b - dot < 2)
            continue;
        bool tld_ok = true;
        for (size_t i = dot; i < b; i++)
            tld_ok &= is_alpha(x->s[i]);
        if (!tld_ok || !free_span(x, a, b))
            continue;
        add_unique(x->emails, x->s + a, b - a);
        take(x, a, b);
        at = b;
    }
}

static void scan_urls(X *x)
{
    for (size_t i = 0; i < x->len; i++) {
        size_t skip = 0;
        if (i + 8 <= x->len && strncasecmp(x->s + i, "https://", 8) == 0)
            skip = 8;
        else if (i + 7 <= x->len && strncasecmp(x->s + i, "http://", 7) == 0)
            skip = 7;
        else if (i + 4 <= x->len && strncasecmp(x->s + i, "www.", 4) == 0 &&
                 (i == 0 || (!is_alnum(x->s[i - 1]) && x->s[i - 1] != '.' && x->s[i - 1] != '/' &&
                             x->s[i - 1] != '@')))
            skip = 4;
        if (!skip || (skip != 4 && !boundary_before(x, i)))
            continue;
        size_t b = i + skip;
        int parens = 0;
        while (b < x->len) {
            unsigned char c = (unsigned char)x->s[b];
            if (c <= ' ' || c >= 0x80 || c == '<' || c == '>' || c == '"' || c == '`')
                break;
            if (c == '(')
                parens++;
            if (c == ')' && parens-- == 0)
                break;
            b++;
        }
        while (b > i + skip && strchr(".,;:!?'*]", x->s[b - 1]))
            b--;
        if (b == i + skip || (skip == 4 && !memchr(x->s + i + 4, '.', b - i - 4)))
            continue;
        if (!free_span(x, i, b))
            continue;
        add_unique(x->urls, x->s + i, b - i);
        take(x, i, b);
        i = b;
    }
}

/* ---- money --------------------------------------------------------------- */

typedef struct Currency {
    const char *token; /* as written */
    const char *code;
    bool word;         /* a word: needs boundaries, any case */
} Currency;

static const Currency CURRENCIES[] = {
    { "US$", "USD", false }, { "CA$", "CAD", false }, { "AU$", "AUD", false },
    { "C$", "CAD", false },  { "A$", "AUD", false },  { "$", "USD", false },
    { "\xE2\x82\xAC", "EUR", false }, { "\xC2\xA3", "GBP", false },
    { "\xC2\xA5", "JPY", false }, { "\xE2\x82\xB9", "INR", false },
    { "USD", "USD", true }, { "EUR", "EUR", true }, { "GBP", "GBP", true },
    { "CHF", "CHF", true }, { "CAD", "CAD", true }, { "AUD", "AUD", true },
    { "JPY", "JPY", true }, { "SEK", "SEK", true }, { "NOK", "NOK", true },
    { "DKK", "DKK", true }, { "PLN", "PLN", true }, { "INR", "INR", true },
    { "NZD", "NZD", true }, { "dollars", "USD", true }, { "dollar", "USD", true },
    { "bucks", "USD", true }, { "euros", "EUR", true }, { "euro", "EUR", true },
    { "pounds", "GBP", true }, { "francs", "CHF", true },
};

/* The currency written at s[i..), its length in *ret_n. */
static const Currency *currency_at(const X *x, size_t i, size_t *ret_n)
{
    for (size_t k = 0; k < sizeof CURRENCIES / sizeof CURRENCIES[0]; k++) {
        const Currency *c = &CURRENCIES[k];
        size_t n = strlen(c->token);
        if (i + n > x->len)
            continue;
        if (c->word) {
            if (strncasecmp(x->s + i, c->token, n) != 0 || !boundary_before(x, i) ||
                (i + n < x->len && is_alpha(x->s[i + n])))
                continue;
        } else {
            if (memcmp(x->s + i, c->token, n) != 0)
                continue;
            if (n == 2 && i > 0 && is_alpha(x->s[i - 1]))
                continue; /* "ABC$" is not C$ */
        }
        *ret_n = n;
        return c;
    }
    return NULL;
}

typedef struct Amount {
    int64_t units;    /* whole part */
    int frac;         /* hundredths */
    int64_t mult;     /* 1, 1000 (k) or 1000000 (m) */
    size_t end;
} Amount;

/* A thousands separator: ',', '.', '\'' or a (no-break) space. Returns its
 * length in bytes at s[i], or 0. */
static size_t sep_at(const X *x, size_t i)
{
    char c = x->s[i];
    if (c == ',' || c == '.' || c == '\'' || c == ' ')
        return 1;
    if (i + 1 < x->len && (unsigned char)c == 0xC2 && (unsigned char)x->s[i + 1] == 0xA0)
        return 2;
    return 0;
}

/* Parses a number at s[i] ("1,200.50", "1.200,50", "1'200", "2.5k"). */
static bool parse_amount(const X *x, size_t i, Amount *ret)
{
    if (i >= x->len || !is_digit(x->s[i]))
        return false;
    /* Digit groups and the separators between them. */
    size_t gstart[12], glen[12];
    char gsep[12];
    int ng = 0;
    size_t p = i;
    for (;;) {
        size_t a = p;
        while (p < x->len && is_digit(x->s[p]))
            p++;
        gstart[ng] = a;
        glen[ng] = p - a;
        ng++;
        if (ng == 12 || p >= x->len)
            break;
        size_t sl = sep_at(x, p);
        if (!sl || p + sl >= x->len || !is_digit(x->s[p + sl]))
            break;
        /* A space only separates thousands: exactly three digits after it. */
        if (sl == 2 || x->s[p] == ' ') {
            size_t q = p + sl, d = 0;
            while (q < x->len && is_digit(x->s[q]))
                q++, d++;
            if (d != 3)
                break;
        }
        gsep[ng] = sl == 2 ? ' ' : x->s[p];
        p += sl;
    }
    if (glen[0] > 12)
        return false;
    /* The decimal separator, if any: the last '.' or ',' when it is followed
     * by one or two digits, or when both '.' and ',' appear. */
    int dec = -1;
    if (ng > 1) {
        char last = gsep[ng - 1];
        bool other = false;
        for (int g = 1; g < ng - 1; g++)
            other |= gsep[g] != last && gsep[g] != ' ' && gsep[g] != '\'';
        if ((last == '.' || last == ',') && (glen[ng - 1] <= 2 || (other && glen[ng - 1] <= 2)))
            dec = ng - 1;
    }
    int nint = dec >= 0 ? dec : ng;
    /* Thousands groups have three digits; stop before the first that doesn't. */
    for (int g = 1; g < nint; g++) {
        if (glen[g] != 3 || glen[0] > 3) {
            nint = g;
            dec = -1;
            if (gsep[g] == '.' || gsep[g] == ',') {
                /* "12.5.2027" and the like: not an amount we can read. */
                return false;
            }
            break;
        }
    }
    int64_t units = 0;
    for (int g = 0; g < nint; g++)
        for (size_t k = 0; k < glen[g]; k++) {
            if (units > INT64_C(99999999999999))
                return false;
            units = units * 10 + (x->s[gstart[g] + k] - '0');
        }
    int frac = 0;
    size_t end = gstart[nint - 1] + glen[nint - 1];
    if (dec >= 0) {
        frac = (x->s[gstart[dec]] - '0') * 10;
        if (glen[dec] == 2)
            frac += x->s[gstart[dec] + 1] - '0';
        end = gstart[dec] + glen[dec];
    }
    int64_t mult = 1;
    if (end < x->len && (x->s[end] == 'k' || x->s[end] == 'K' || x->s[end] == 'm' ||
                         x->s[end] == 'M') &&
        (end + 1 == x->len || !is_alpha(x->s[end + 1]))) {
        mult = (x->s[end] == 'k' || x->s[end] == 'K') ? 1000 : 1000000;
        end++;
    }
    ret->units = units;
    ret->frac = frac;
    ret->mult = mult;
    ret->end = end;
    return true;
}

static void add_money(X *x, const Amount *a, const char *code, size_t from, size_t to)
{
    if (json_array_size(x->money) >= MAX_ITEMS)
        return;
    int64_t minor = strcmp(code, "JPY") == 0 ? a->units * a->mult
                                              : (a->units * 100 + a->frac) * a->mult;
    json_array_append_new(x->money, json_pack("{s:I, s:s, s:s#}", "amount_minor", (json_int_t)minor,
                                              "currency", code, "text", x->s + from, to - from));
    take(x, from, to);
}

static void scan_money(X *x)
{
    for (size_t i = 0; i < x->len; i++) {
        if (x->taken[i])
            continue;
        size_t cn;
        const Currency *c = currency_at(x, i, &cn);
        Amount a;
        if (c && !(c->word && (strcmp(c->code, c->token) != 0 && c->token[0] >= 'a'))) {
            /* A currency before the number: "$1,200", "EUR 300", "€ 45". */
            size_t p = skip_blanks(x, i + cn);
            if (p - (i + cn) <= 1 && parse_amount(x, p, &a) && free_span(x, i, a.end) &&
                (a.end == x->len || !is_alnum(x->s[a.end]))) {
                add_money(x, &a, c->code, i, a.end);
                i = a.end - 1;
                continue;
            }
        }
        if (!is_digit(x->s[i]) || !boundary_before(x, i) ||
            (i > 0 && (x->s[i - 1] == '.' || x->s[i - 1] == ',')))
            continue;
        if (!parse_amount(x, i, &a)) {
            while (i + 1 < x->len && is_alnum(x->s[i + 1]))
                i++;
            continue;
        }
        /* A currency after the number: "1.200,50 €", "2k EUR", "300 dollars". */
        size_t p = skip_blanks(x, a.end);
        if (p - a.end <= 1 && p < x->len && (c = currency_at(x, p, &cn)) != NULL &&
            free_span(x, i, p + cn)) {
            add_money(x, &a, c->code, i, p + cn);
            i = p + cn - 1;
            continue;
        }
        i = a.end > i ? a.end - 1 : i;
    }
}

/* ---- dates --------------------------------------------------------------- */

static const char *const MONTHS[12][3] = {
    { "january", "jan", NULL },   { "february", "feb", NULL }, { "march", "mar", NULL },
    { "april", "apr", NULL },     { "may", NULL, NULL },       { "june", "jun", NULL },
    { "july", "jul", NULL },      { "august", "aug", NULL },   { "september", "sept", "sep" },
    { "october", "oct", NULL },   { "november", "nov", NULL }, { "december", "dec", NULL },
};

static const char *const WEEKDAYS[7] = {
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
};

/* The month (1-12) named at s[i..) and the name's length (with a '.' after
 * an abbreviation), or 0. */
static int month_at(const X *x, size_t i, size_t *ret_n)
{
    if (!boundary_before(x, i))
        return 0;
    for (int m = 0; m < 12; m++)
        for (int k = 0; k < 3 && MONTHS[m][k]; k++) {
            if (!word_at(x, i, MONTHS[m][k]))
                continue;
            size_t n = strlen(MONTHS[m][k]);
            if (m == 4 && x->s[i] != 'M')
                continue; /* "may" the verb */
            if (k > 0 && i + n < x->len && x->s[i + n] == '.')
                n++;
            *ret_n = n;
            return m + 1;
        }
    return 0;
}

/* A weekday's full name at s[i..): 0 (Monday) to 6, or -1. Abbreviations
 * are left alone: "On Mon, 29 Mar" heads a quoted reply, not a plan. */
static int weekday_at(const X *x, size_t i, size_t *ret_n)
{
    if (!boundary_before(x, i))
        return -1;
    for (int d = 0; d < 7; d++)
        if (word_at(x, i, WEEKDAYS[d])) {
            *ret_n = strlen(WEEKDAYS[d]);
            return d;
        }
    return -1;
}

static int days_in_month(int64_t y, int m)
{
    static const int dm[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

static bool valid_date(int64_t y, int m, int d)
{
    return y >= 1900 && y <= 2200 && m >= 1 && m <= 12 && d >= 1 && d <= days_in_month(y, m);
}

static void add_date_days(X *x, int64_t days, size_t from, size_t to)
{
    if (json_array_size(x->dates) >= MAX_ITEMS)
        return;
    int64_t y;
    int m, d;
    core_civil_from_days(days, &y, &m, &d);
    char buf[16];
    snprintf(buf, sizeof buf, "%04d-%02d-%02d", (int)y, m, d);
    json_array_append_new(x->dates, json_pack("{s:s, s:s#}", "date", buf, "text", x->s + from,
                                              to - from));
    take(x, from, to);
}

/* A date written without a year: the year that puts it closest to today. */
static int64_t nearest_year(const X *x, int m, int d)
{
    int64_t y;
    int tm, td;
    core_civil_from_days(x->today, &y, &tm, &td);
    int64_t best = -1, best_dist = INT64_MAX;
    for (int64_t cy = y - 1; cy <= y + 1; cy++) {
        if (!valid_date(cy, m, d))
            continue;
        int64_t dist = llabs(core_days_from_civil(cy, m, d) - x->today);
        if (dist < best_dist) {
            best_dist = dist;
            best = cy;
        }
    }
    return best;
}

/* Reads 1..max digits at s[i] (not followed by another digit). */
static int read_int(const X *x, size_t i, int max, size_t *ret_end)
{
    int v = 0, n = 0;
    while (i < x->len && is_digit(x->s[i]) && n < max) {
        v = v * 10 + (x->s[i] - '0');
        i++;
        n++;
    }
    if (n == 0 || (i < x->len && is_digit(x->s[i])))
        return -1;
    *ret_end = i;
    return v;
}

static size_t skip_ordinal(const X *x, size_t i)
{
    static const char *const suf[] = { "st", "nd", "rd", "th" };
    for (int k = 0; k < 4; k++)
        if (i + 2 <= x->len && strncasecmp(x->s + i, suf[k], 2) == 0 &&
            (i + 2 == x->len || !is_alpha(x->s[i + 2])))
            return i + 2;
    return i;
}

/* An optional ", 2027" or " 2027" at s[i]: the year, or -1. */
static int year_after(const X *x, size_t i, size_t *ret_end)
{
    size_t p = i;
    if (p < x->len && x->s[p] == ',')
        p++;
    p = skip_blanks(x, p);
    if (p == i || p >= x->len || !is_digit(x->s[p]))
        return -1;
    size_t e;
    int y = read_int(x, p, 4, &e);
    if (y < 1900 || e - p != 4 || (e < x->len && is_alpha(x->s[e])))
        return -1;
    *ret_end = e;
    return y;
}

static bool date_numeric(X *x, size_t i)
{
    if (!is_digit(x->s[i]) || !boundary_before(x, i) ||
        (i > 0 && (x->s[i - 1] == '/' || x->s[i - 1] == '-' || x->s[i - 1] == '.')))
        return false;
    size_t e1, e2, e3;
    int a = read_int(x, i, 4, &e1);
    if (a < 0 || e1 >= x->len)
        return false;
    char sep = x->s[e1];
    if (sep != '-' && sep != '/' && sep != '.')
        return false;
    int b = read_int(x, e1 + 1, 2, &e2);
    if (b < 0 || e2 >= x->len || x->s[e2] != sep)
        return false;
    int c = read_int(x, e2 + 1, 4, &e3);
    if (c < 0 || (e3 < x->len && (is_alnum(x->s[e3]) ||
                                  ((x->s[e3] == sep || x->s[e3] == '.') && e3 + 1 < x->len &&
                                   is_digit(x->s[e3 + 1])))))
        return false;
    int64_t y;
    int m, d;
    if (e1 - i == 4) { /* ISO 2027-03-12, or 2027/03/12 */
        y = a; m = b; d = c;
        if (e3 - e2 - 1 > 2)
            return false;
    } else {
        if (e1 - i > 2 || (e3 - e2 - 1 != 4 && e3 - e2 - 1 != 2))
            return false;
        y = e3 - e2 - 1 == 2 ? 2000 + c : c;
        /* Day first, unless only the US reading is a date (03/25/2027). */
        if (a <= 12 && b > 12) {
            m = a; d = b;
        } else {
            d = a; m = b;
        }
    }
    if (!valid_date(y, m, d))
        return false;
    add_date_days(x, core_days_from_civil(y, m, d), i, e3);
    return true;
}

static bool date_named(X *x, size_t i)
{
    size_t n, e, ye;
    int m, d, y;
    if (is_digit(x->s[i]) && boundary_before(x, i)) {
        /* 12 March 2027, 12th of March, 3 Dec. */
        d = read_int(x, i, 2, &e);
        if (d < 1)
            return false;
        size_t p = skip_blanks(x, skip_ordinal(x, e));
        if (p == e && p < x->len && x->s[p] != '-')
            return false;
        if (p < x->len && x->s[p] == '-')
            p++; /* 12-Mar-2027 */
        if (word_at(x, p, "of"))
            p = skip_blanks(x, p + 2);
        if ((m = month_at(x, p, &n)) == 0)
            return false;
        e = p + n;
        size_t q = e;
        if (q < x->len && x->s[q] == '-')
            q++;
        if (q < x->len && is_digit(x->s[q]) && q > e) {
            y = read_int(x, q, 4, &ye);
            if (y < 1900 || ye - q != 4)
                y = -1;
        } else {
            y = year_after(x, e, &ye);
        }
        if (y > 0)
            e = ye;
    } else if ((m = month_at(x, i, &n)) != 0) {
        /* March 12, 2027; March 12th; Mar 3. */
        size_t p = skip_blanks(x, i + n);
        if (p == i + n || p >= x->len || !is_digit(x->s[p]))
            return false;
        d = read_int(x, p, 2, &e);
        if (d < 1 || (e < x->len && (x->s[e] == ':' || is_digit(x->s[e]) ||
                                     (x->s[e] == '.' && e + 1 < x->len && is_digit(x->s[e + 1])))))
            return false;
        e = skip_ordinal(x, e);
        if (e < x->len && is_alpha(x->s[e]))
            return false;
        y = year_after(x, e, &ye);
        if (y > 0)
            e = ye;
    } else {
        return false;
    }
    if (y < 0)
        y = (int)nearest_year(x, m, d);
    if (y < 0 || !valid_date(y, m, d))
        return false;
    add_date_days(x, core_days_from_civil(y, m, d), i, e);
    return true;
}

static int number_word(const X *x, size_t i, size_t *ret_end)
{
    static const char *const words[] = { "a", "an", "one", "two", "three", "four", "five", "six",
                                         "seven", "eight", "nine", "ten", "eleven", "twelve" };
    static const int values[] = { 1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
    if (is_digit(x->s[i])) {
        int v = read_int(x, i, 3, ret_end);
        return v > 0 ? v : -1;
    }
    for (size_t k = 0; k < sizeof words / sizeof words[0]; k++)
        if (word_at(x, i, words[k])) {
            *ret_end = i + strlen(words[k]);
            return values[k];
        }
    return -1;
}

static int64_t add_months(int64_t days, int months)
{
    int64_t y;
    int m, d;
    core_civil_from_days(days, &y, &m, &d);
    int64_t idx = y * 12 + (m - 1) + months;
    y = idx / 12;
    m = (int)(idx % 12) + 1;
    if (d > days_in_month(y, m))
        d = days_in_month(y, m);
    return core_days_from_civil(y, m, d);
}

static bool date_relative(X *x, size_t i)
{
    if (!is_alpha(x->s[i]) || !boundary_before(x, i))
        return false;
    int64_t t = x->today;
    int wd = (int)(((t + 3) % 7 + 7) % 7); /* 0 = Monday; 1970-01-01 was a Thursday */
    size_t n;
    if (word_at(x, i, "day after tomorrow")) {
        add_date_days(x, t + 2, i, i + 18);
        return true;
    }
    if (word_at(x, i, "today") || word_at(x, i, "tonight")) {
        add_date_days(x, t, i, i + (x->s[i + 2] == 'd' || x->s[i + 2] == 'D' ? 5 : 7));
        return true;
    }
    if (word_at(x, i, "tomorrow")) {
        add_date_days(x, t + 1, i, i + 8);
        return true;
    }
    if (word_at(x, i, "yesterday")) {
        add_date_days(x, t - 1, i, i + 9);
        return true;
    }
    if (word_at(x, i, "end of the month") || word_at(x, i, "end of month")) {
        size_t len = word_at(x, i, "end of month") ? 12 : 16;
        int64_t y;
        int m, d;
        core_civil_from_days(t, &y, &m, &d);
        add_date_days(x, core_days_from_civil(y, m, days_in_month(y, m)), i, i + len);
        return true;
    }
    if (word_at(x, i, "next") || word_at(x, i, "this") || word_at(x, i, "coming") ||
        word_at(x, i, "on") || word_at(x, i, "by")) {
        size_t w = word_at(x, i, "coming") ? 6 : word_at(x, i, "on") || word_at(x, i, "by") ? 2 : 4;
        bool next = word_at(x, i, "next");
        size_t p = skip_blanks(x, i + w);
        if (p == i + w)
            return false;
        if (next && word_at(x, p, "week")) {
            add_date_days(x, t + (7 - wd), i, p + 4); /* Monday of next week */
            return true;
        }
        if (next && word_at(x, p, "month")) {
            int64_t y;
            int m, d;
            core_civil_from_days(add_months(t, 1), &y, &m, &d);
            add_date_days(x, core_days_from_civil(y, m, 1), i, p + 5);
            return true;
        }
        int target = weekday_at(x, p, &n);
        if (target < 0)
            return false;
        /* "next Friday": the first Friday after today; "this/on/by Friday":
         * the first one from today on. */
        int ahead = ((target - wd) % 7 + 7) % 7;
        if (next && ahead == 0)
            ahead = 7;
        add_date_days(x, t + ahead, i, p + n);
        return true;
    }
    if (word_at(x, i, "in") || word_at(x, i, "within")) {
        size_t p = skip_blanks(x, i + (x->s[i + 1] == 'n' || x->s[i + 1] == 'N' ? 2 : 6));
        size_t e;
        int k = p < x->len ? number_word(x, p, &e) : -1;
        if (k < 0)
            return false;
        size_t q = skip_blanks(x, e);
        if (q == e)
            return false;
        static const struct { const char *w; int days, months; } units[] = {
            { "days", 1, 0 }, { "day", 1, 0 }, { "weeks", 7, 0 }, { "week", 7, 0 },
            { "months", 0, 1 }, { "month", 0, 1 },
        };
        for (size_t u = 0; u < sizeof units / sizeof units[0]; u++)
            if (word_at(x, q, units[u].w)) {
                int64_t day = units[u].months ? add_months(t, k * units[u].months)
                                              : t + (int64_t)k * units[u].days;
                add_date_days(x, day, i, q + strlen(units[u].w));
                return true;
            }
    }
    return false;
}

static void scan_dates(X *x)
{
    for (size_t i = 0; i < x->len; i++) {
        if (x->taken[i])
            continue;
        if (date_numeric(x, i) || date_named(x, i) || date_relative(x, i))
            while (i + 1 < x->len && x->taken[i + 1])
                i++;
    }
}

/* ---- phones -------------------------------------------------------------- */

static bool phone_cue_before(const X *x, size_t i)
{
    static const char *const cues[] = { "tel", "phone", "ph", "mobile", "mob", "cell", "call",
                                        "whatsapp", "fax", "t", "m", "p", "tél", "tlf" };
    size_t a = i, lim = i > 24 ? i - 24 : 0;
    while (a > lim && x->s[a - 1] != '\n')
        a--;
    for (size_t p = a; p < i; p++) {
        if (!boundary_before(x, p))
            continue;
        for (size_t k = 0; k < sizeof cues / sizeof cues[0]; k++) {
            size_t n = strlen(cues[k]);
            if (p + n <= i && strncasecmp(x->s + p, cues[k], n) == 0 &&
                (p + n == x->len || !is_alpha(x->s[p + n]))) {
                if (n == 1 && !(p + 1 < x->len && x->s[p + 1] == ':'))
                    continue; /* "T:" and "M:", not any lone letter */
                return true;
            }
        }
    }
    return false;
}

static void scan_phones(X *x)
{
    for (size_t i = 0; i < x->len; i++) {
        char c = x->s[i];
        if (x->taken[i] || !(is_digit(c) || c == '+' || c == '('))
            continue;
        if (i > 0 && (is_alnum(x->s[i - 1]) || strchr("#$-/.,+", x->s[i - 1]))) {
            while (i + 1 < x->len && (is_alnum(x->s[i + 1])))
                i++;
            continue;
        }
        if ((c == '+' || c == '(') && !(i + 1 < x->len && is_digit(x->s[i + 1])))
            continue;
        size_t b = i + 1, ndig = is_digit(c), nsep = 0;
        bool paren = c == '(';
        char digits[24];
        size_t nd = 0;
        if (is_digit(c))
            digits[nd++] = c;
        while (b < x->len && !x->taken[b]) {
            char ch = x->s[b];
            if (is_digit(ch)) {
                if (nd < sizeof digits)
                    digits[nd++] = ch;
                ndig++;
                b++;
                continue;
            }
            /* "(0)" after a country code is the trunk prefix: drop it. */
            if (ch == '(' && b + 2 < x->len && x->s[b + 1] == '0' && x->s[b + 2] == ')' &&
                c == '+') {
                b += 3;
                continue;
            }
            bool sep = ch == ' ' || ch == '-' || ch == '.' || ch == '(' || ch == ')';
            if (!sep || b + 1 >= x->len)
                break;
            char nx = x->s[b + 1];
            if (ch == ')' && (nx == ' ' || nx == '-') && b + 2 < x->len && is_digit(x->s[b + 2])) {
                b += 2;
                nsep++;
                continue;
            }
            if (!is_digit(nx) && !(ch == ' ' && nx == '('))
                break;
            if (ch == '(')
                paren = true;
            nsep++;
            b++;
        }
        while (b > i && !is_digit(x->s[b - 1]))
            b--;
        size_t end = b;
        if (end < x->len && (is_alpha(x->s[end]) || x->s[end] == '@')) {
            i = end;
            continue;
        }
        if (ndig < 7 || ndig > 15 || nd != ndig) {
            i = end > i ? end - 1 : i;
            continue;
        }
        bool ok = c == '+' || paren || phone_cue_before(x, i) ||
                  (nsep >= 2 && ndig >= 9) || (nsep >= 1 && ndig >= 10 && digits[0] == '0') ||
                  (nd >= 10 && digits[0] == '0' && digits[1] == '0');
        if (!ok) {
            i = end > i ? end - 1 : i;
            continue;
        }
        char out[24];
        size_t on = 0;
        if (c == '+') {
            out[on++] = '+';
            memcpy(out + on, digits, nd);
            on += nd;
        } else if (nd >= 10 && digits[0] == '0' && digits[1] == '0') {
            out[on++] = '+';
            memcpy(out + on, digits + 2, nd - 2);
            on += nd - 2;
        } else if (nd == 10 && digits[0] >= '2' && digits[3] >= '2' && (paren || nsep >= 2)) {
            /* North American numbering: (415) 555-0132, 415-555-0132. */
            memcpy(out, "+1", 2);
            memcpy(out + 2, digits, nd);
            on = 2 + nd;
        } else if (nd == 11 && digits[0] == '1' && digits[1] >= '2' && digits[4] >= '2' &&
                   nsep >= 2) {
            out[on++] = '+';
            memcpy(out + on, digits, nd);
            on += nd;
        } else {
            memcpy(out, digits, nd); /* the country can't be told */
            on = nd;
        }
        add_unique(x->phones, out, on);
        take(x, i, end);
        i = end - 1;
    }
}

/* ---- signature: name and company ------------------------------------------ */

static const char *const VALEDICTIONS[] = {
    "best", "best regards", "best wishes", "kind regards", "kindest regards", "regards",
    "warm regards", "warmest regards", "warm wishes", "many thanks", "thanks", "thank you",
    "thanks again", "thanks so much", "thanks a lot", "thanks in advance", "thx", "cheers",
    "sincerely", "yours sincerely", "sincerely yours", "yours truly", "yours", "all the best",
    "talk soon", "speak soon", "take care", "with thanks", "greetings", "love", "hugs",
    "mit freundlichen grüßen", "viele grüße", "liebe grüße", "beste grüße", "lg",
    "cordialement", "bien à vous", "bien cordialement", "merci", "saludos", "un saludo",
    "groeten", "met vriendelijke groet", "ciao", "a presto", "--", "—", "-",
};

static const char *const COMPANY_SUFFIXES[] = {
    "Ltd", "Ltd.", "Limited", "GmbH", "Inc", "Inc.", "LLC", "L.L.C.", "SARL", "SAS", "S.A.",
    "SA", "BV", "B.V.", "NV", "N.V.", "AG", "PLC", "plc", "LLP", "Pty", "Oy", "AB", "ApS",
    "KG", "UG", "Srl", "S.r.l.", "S.L.", "Corp", "Corp.", "Corporation", "Co.", "OÜ", "AS",
};

static const char *const TITLE_WORDS[] = {
    "founder", "co-founder", "cofounder", "ceo", "cto", "cfo", "coo", "director", "manager",
    "head", "owner", "partner", "consultant", "designer", "developer", "engineer", "lead",
    "officer", "president", "vp", "marketing", "sales", "coordinator", "assistant",
    "specialist", "producer", "editor", "principal", "account", "operations", "procurement",
    "recruiter", "analyst", "architect", "chief", "executive", "associate", "administrator",
};

typedef struct Line {
    const char *p;
    size_t n;
} Line;

static Line trim(const char *p, size_t n)
{
    while (n && (is_blank(*p) || *p == '\r'))
        p++, n--;
    while (n && (is_blank(p[n - 1]) || p[n - 1] == '\r'))
        n--;
    return (Line){ p, n };
}

/* The valediction that line starts with: the length of it (with the
 * punctuation after it), 0 when it is not one. A valediction is the whole
 * line, or is followed by ", Name" / " - Name". */
static size_t valediction(Line l)
{
    size_t best = 0;
    for (size_t k = 0; k < sizeof VALEDICTIONS / sizeof VALEDICTIONS[0]; k++) {
        size_t n = strlen(VALEDICTIONS[k]);
        if (n > l.n || strncasecmp(l.p, VALEDICTIONS[k], n) != 0)
            continue;
        /* strncasecmp folds ASCII only; UTF-8 bytes compare exactly. */
        size_t e = n;
        while (e < l.n && (l.p[e] == ',' || l.p[e] == '!' || l.p[e] == '.'))
            e++;
        if (e < l.n && is_alpha(l.p[e]) && e == n)
            continue; /* "Bestellung", "Thanksgiving" */
        if (e != l.n && !(e < l.n && (l.p[e] == ' ' || l.p[e] == ',')))
            continue;
        if (e != l.n) {
            /* Anything after must read as a name: ", Anna" or " Anna". */
            Line rest = trim(l.p + e, l.n - e);
            if (rest.n == 0 || rest.n > 40 || !isupper((unsigned char)rest.p[0]))
                continue;
            if (l.p[n] != ',' && l.p[n] != ' ')
                continue;
        }
        if (n > best)
            best = e;
    }
    return best;
}

static bool is_upper_start(const char *p, size_t n)
{
    if (n == 0)
        return false;
    unsigned char c = (unsigned char)p[0];
    if (c >= 'A' && c <= 'Z')
        return true;
    /* Latin-1 and Latin Extended-A capitals: À-Þ, and the even ones of Ā-ž. */
    if (c == 0xC3 && n > 1 && (unsigned char)p[1] >= 0x80 && (unsigned char)p[1] <= 0x9E)
        return true;
    if ((c == 0xC4 || c == 0xC5) && n > 1)
        return true;
    return false;
}

static bool looks_like_name(Line l)
{
    if (l.n == 0 || l.n > 48 || !core_utf8_valid(l.p, l.n, NULL))
        return false;
    static const char *const particles[] = { "van", "de", "von", "der", "da", "di", "le",
                                             "la", "du", "del", "bin", "den", "ter" };
    int words = 0;
    size_t i = 0;
    while (i < l.n) {
        while (i < l.n && l.p[i] == ' ')
            i++;
        size_t a = i;
        while (i < l.n && l.p[i] != ' ')
            i++;
        if (i == a)
            break;
        words++;
        bool particle = false;
        for (size_t k = 0; k < sizeof particles / sizeof particles[0]; k++)
            if (strlen(particles[k]) == i - a && strncmp(particles[k], l.p + a, i - a) == 0)
                particle = true;
        if (!(particle && words > 1) && !is_upper_start(l.p + a, i - a))
            return false;
        for (size_t k = a; k < i; k++) {
            unsigned char ch = (unsigned char)l.p[k];
            if (!(is_alpha((char)ch) || ch >= 0x80 || ch == '-' || ch == '\'' || ch == '.'))
                return false;
        }
    }
    if (words < 1 || words > 4)
        return false;
    /* A lone word that is a title, a company or a greeting is not a name. */
    for (size_t k = 0; k < sizeof COMPANY_SUFFIXES / sizeof COMPANY_SUFFIXES[0]; k++) {
        size_t n = strlen(COMPANY_SUFFIXES[k]);
        if (l.n >= n && strncmp(l.p + l.n - n, COMPANY_SUFFIXES[k], n) == 0 &&
            (l.n == n || l.p[l.n - n - 1] == ' '))
            return false;
    }
    return true;
}

static bool has_word_ci(Line l, const char *const *list, size_t count)
{
    size_t i = 0;
    while (i < l.n) {
        while (i < l.n && !is_alpha(l.p[i]))
            i++;
        size_t a = i;
        while (i < l.n && (is_alpha(l.p[i]) || l.p[i] == '-'))
            i++;
        for (size_t k = 0; k < count; k++)
            if (strlen(list[k]) == i - a && strncasecmp(list[k], l.p + a, i - a) == 0)
                return true;
    }
    return false;
}

/* Whether l ends with a company suffix ("Acme Ltd", "Acme, Inc."); the
 * suffix must be a word of its own. */
static bool has_suffix(Line l)
{
    size_t i = 0;
    while (i < l.n) {
        while (i < l.n && (l.p[i] == ' ' || l.p[i] == ','))
            i++;
        size_t a = i;
        while (i < l.n && l.p[i] != ' ' && l.p[i] != ',')
            i++;
        for (size_t k = 0; k < sizeof COMPANY_SUFFIXES / sizeof COMPANY_SUFFIXES[0]; k++)
            if (strlen(COMPANY_SUFFIXES[k]) == i - a &&
                strncmp(COMPANY_SUFFIXES[k], l.p + a, i - a) == 0 && a > 0)
                return true;
    }
    return false;
}

/* Splits l at the first separator of a signature line ("|", " at ", " @ ",
 * " - ", " – ", " · ", ", "); returns false when there is none. */
static bool split_sig(Line l, Line *left, Line *right)
{
    static const char *const seps[] = { " | ", "|", " at ", " @ ", " - ", " \xE2\x80\x93 ",
                                        " \xE2\x80\x94 ", " \xC2\xB7 ", " \xE2\x80\xA2 ", ", " };
    for (size_t k = 0; k < sizeof seps / sizeof seps[0]; k++) {
        size_t n = strlen(seps[k]);
        for (size_t i = 0; i + n <= l.n; i++)
            if (memcmp(l.p + i, seps[k], n) == 0) {
                *left = trim(l.p, i);
                *right = trim(l.p + i + n, l.n - i - n);
                return true;
            }
    }
    return false;
}

static bool contact_line(Line l)
{
    return memchr(l.p, '@', l.n) || (l.n >= 4 && memmem(l.p, l.n, "http", 4)) ||
           (l.n >= 4 && memmem(l.p, l.n, "www.", 4)) || (l.n && (is_digit(l.p[0]) || l.p[0] == '+'));
}

/* The company named on a signature line, or an empty Line. */
static Line company_in(Line l)
{
    Line none = { NULL, 0 };
    if (l.n == 0 || l.n > 80 || contact_line(l) || !core_utf8_valid(l.p, l.n, NULL))
        return none;
    /* "Acme, Inc." keeps its comma: look at suffixes before splitting. */
    Line left, right;
    if (has_suffix(l)) {
        Line cur = l;
        while (split_sig(cur, &left, &right)) {
            Line tail = { right.p, right.n };
            if (!has_suffix(tail) || (right.n <= 6 && has_suffix(l) && !has_suffix(left)))
                break;
            cur = tail;
        }
        /* cur ends with the suffix; drop a title before it ("CEO, Acme Ltd"). */
        if (split_sig(cur, &left, &right) && has_suffix(right) && right.n > 6)
            return right;
        if (split_sig(cur, &left, &right) && has_word_ci(left, TITLE_WORDS,
                                                           sizeof TITLE_WORDS / sizeof TITLE_WORDS[0]))
            return right;
        return cur;
    }
    if (split_sig(l, &left, &right) && right.n > 0 && is_upper_start(right.p, right.n) &&
        has_word_ci(left, TITLE_WORDS, sizeof TITLE_WORDS / sizeof TITLE_WORDS[0]) &&
        !contact_line(right)) {
        Line l2, r2;
        if (split_sig(right, &l2, &r2)) /* "Founder at Acme | acme.io" */
            return l2;
        return right;
    }
    return none;
}

static void scan_signature(X *x, json_t *out)
{
    Line lines[256];
    size_t nl = 0, i = 0;
    while (i <= x->len && nl < 256) {
        const char *nlp = memchr(x->s + i, '\n', x->len - i);
        size_t e = nlp ? (size_t)(nlp - x->s) : x->len;
        Line l = trim(x->s + i, e - i);
        /* Quoted mail below a reply is someone else's. */
        if (l.n && (l.p[0] == '>' || (l.n > 6 && memmem(l.p, l.n, " wrote:", 7)) ||
                    (l.n > 10 && memmem(l.p, l.n, "Original Message", 16))))
            break;
        lines[nl++] = l;
        i = e + 1;
    }
    Line name = { NULL, 0 }, company = { NULL, 0 }, role = { NULL, 0 };
    size_t sig_from = 0, sig_rest = 0; /* the lines after the name */
    for (size_t k = 0; k < nl && !name.n; k++) {
        size_t v = valediction(lines[k]);
        if (!v)
            continue;
        size_t next = k + 1;
        Line cand;
        if (v < lines[k].n) {
            cand = trim(lines[k].p + v, lines[k].n - v);
        } else {
            while (next < nl && lines[next].n == 0)
                next++;
            if (next >= nl)
                continue;
            cand = lines[next++];
        }
        if (cand.n >= 3 && memcmp(cand.p, "\xE2\x80\x94", 3) == 0)
            cand = trim(cand.p + 3, cand.n - 3);
        else if (cand.n && cand.p[0] == '-')
            cand = trim(cand.p + 1, cand.n - 1);
        Line left, right;
        Line rest = { NULL, 0 };
        if (!looks_like_name(cand) && split_sig(cand, &left, &right) && looks_like_name(left)) {
            rest = right;
            cand = left;
        }
        if (!looks_like_name(cand) || valediction(cand))
            continue;
        name = cand;
        sig_from = next;
        if (rest.n) {
            company = company_in(rest);
            if (has_word_ci(rest, TITLE_WORDS, sizeof TITLE_WORDS / sizeof TITLE_WORDS[0]))
                role = rest; /* "Dana Reyes, Founder" */
        }
        for (size_t j = next; j < nl && j < next + 4 && !company.n; j++)
            company = company_in(lines[j]);
    }
    /* The role: a line below the name with a title word ("Head of
     * Operations", "CEO, Acme Ltd": what comes before the company). */
    sig_rest = sig_from + 4 < nl ? sig_from + 4 : nl;
    for (size_t j = sig_from; name.n && j < sig_rest && !role.n; j++) {
        Line l = lines[j];
        if (l.n == 0 || l.n > 80 || contact_line(l) ||
            !has_word_ci(l, TITLE_WORDS, sizeof TITLE_WORDS / sizeof TITLE_WORDS[0]))
            continue;
        if (company.n && company.p > l.p && company.p < l.p + l.n) {
            Line left, right;
            if (split_sig(l, &left, &right) && left.n)
                role = left;
        } else if (!(company.n && company.p == l.p)) {
            Line left, right;
            role = split_sig(l, &left, &right) &&
                           has_word_ci(left, TITLE_WORDS,
                                       sizeof TITLE_WORDS / sizeof TITLE_WORDS[0])
                       ? left
                       : l;
        }
    }
    if (role.n && (role.n > 60 || (company.n && role.p == company.p)))
        role = (Line){ NULL, 0 };
    json_object_set_new(out, "name", name.n ? json_stringn(name.p, name.n) : json_null());
    json_object_set_new(out, "company",
                        company.n ? json_stringn(company.p, company.n) : json_null());
    json_object_set_new(out, "role", role.n ? json_stringn(role.p, role.n) : json_null());
}

int local_extract(const char *text, size_t len, int64_t now_ms, json_t **ret, Err *err)
{
    if (!text)
        len = 0;
    if (len > LOCAL_MAX_TEXT)
        len = LOCAL_MAX_TEXT;
    X x = { .s = text ? text : "", .len = len };
    x.taken = xcalloc(len + 1, 1);
    x.today = now_ms >= 0 ? now_ms / DAY_MS : -((-now_ms + DAY_MS - 1) / DAY_MS);
    x.emails = json_array();
    x.phones = json_array();
    x.money = json_array();
    x.dates = json_array();
    x.urls = json_array();
    scan_urls(&x);
    scan_emails(&x);
    scan_money(&x);
    scan_dates(&x);
    scan_phones(&x);
    json_t *o = json_object();
    json_object_set_new(o, "emails", x.emails);
    json_object_set_new(o, "phones", x.phones);
    json_object_set_new(o, "money", x.money);
    json_object_set_new(o, "dates", x.dates);
    json_object_set_new(o, "urls", x.urls);
    scan_signature(&x, o);
    free(x.taken);
    *ret = o;
    (void)err;
    return 0;
}
