/* email.send: payload validation, RFC 5322 / MIME message building and SMTP
 * delivery through libcurl.
 *
 * Invariants of a built message: every line ends in CRLF and no header line
 * is longer than 78 columns unless one address or id alone is longer; the
 * bodies are quoted-printable, so no body line exceeds 76 columns and the
 * multipart boundary (which holds "=_") cannot occur inside a part. */
#include "effect/mail.h"

#include <assert.h>
#include <ctype.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/crypto.h"
#include "core/json.h"
#include "effect/curl.h"

#define LINE_MAX_COLS 78  /* RFC 5322 "SHOULD" for header lines */
#define QP_MAX_COLS 76    /* RFC 2045: encoded lines, soft break included */
#define EW_OVERHEAD 12    /* strlen("=?utf-8?Q?") + strlen("?=") */
#define EW_MAX 75         /* RFC 2047: one encoded-word */

/* ---- addresses -------------------------------------------------------- */

/* One parsed address: borrowed views into the string it came from. */
typedef struct Addr {
    Str name;       /* display name as written (quotes included), or empty */
    bool quoted;    /* name is a quoted-string: "..." */
    Str spec;       /* addr@domain */
} Addr;

static bool is_atext(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

/* addr@domain: a dot-atom local part (no quoted local parts, no SMTPUTF8)
 * of 1..64 bytes and a host name of 1..255 bytes. */
static bool spec_valid(const char *s, size_t n)
{
    const char *at = memchr(s, '@', n);
    if (!at || memchr(at + 1, '@', n - (size_t)(at - s) - 1))
        return false;
    size_t local = (size_t)(at - s), dom = n - local - 1;
    if (local == 0 || local > 64 || dom == 0 || dom > 255)
        return false;
    for (size_t i = 0; i < local; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (i == 0 || i + 1 == local || s[i + 1] == '.')
                return false;
        } else if (!is_atext(c)) {
            return false;
        }
    }
    const char *d = at + 1;
    size_t label = 0;
    for (size_t i = 0; i <= dom; i++) {
        if (i == dom || d[i] == '.') {
            if (label == 0 || label > 63 || d[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        unsigned char c = (unsigned char)d[i];
        if (!(isalnum(c) || (c == '-' && label > 0)))
            return false;
        label++;
    }
    return true;
}

static void trim(const char **s, size_t *n)
{
    while (*n && is_wsp(**s))
        (*s)++, (*n)--;
    while (*n && is_wsp((*s)[*n - 1]))
        (*n)--;
}

/* "addr@domain", "<addr@domain>" or "Display Name <addr@domain>", where the
 * name is free text without '<', '>' and control characters, or a
 * quoted-string. The caller has checked length, UTF-8 and line breaks. */
static bool addr_parse(const char *s, size_t n, Addr *a)
{
    trim(&s, &n);
    a->name = (Str){ s, 0 };
    a->quoted = false;
    if (n && s[n - 1] == '>') {
        const char *lt = NULL;
        for (size_t i = n - 1; i-- > 0;)
            if (s[i] == '<') {
                lt = s + i;
                break;
            }
        if (!lt)
            return false;
        a->spec = (Str){ lt + 1, n - (size_t)(lt - s) - 2 };
        const char *name = s;
        size_t nn = (size_t)(lt - s);
        trim(&name, &nn);
        a->name = (Str){ name, nn };
        if (nn >= 2 && name[0] == '"' && name[nn - 1] == '"') {
            a->quoted = true;
            for (size_t i = 1; i + 1 < nn; i++) {
                if (name[i] == '\\') {
                    if (++i + 1 >= nn)
                        return false; /* the escape took the closing quote */
                } else if (name[i] == '"') {
                    return false;
                }
            }
        } else {
            for (size_t i = 0; i < nn; i++)
                if (name[i] == '<' || name[i] == '>' || name[i] == '"')
                    return false;
        }
        for (size_t i = 0; i < nn; i++) {
            unsigned char c = (unsigned char)name[i];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return false;
        }
    } else {
        a->spec = (Str){ s, n };
    }
    return spec_valid(a->spec.ptr, a->spec.len);
}

/* The display name's text: quotes removed and escapes resolved. */
static int addr_name_text(const Addr *a, Buf *out)
{
    buf_clear(out);
    if (!a->quoted)
        return buf_append(out, a->name.ptr, a->name.len);
    int rc = 0;
    for (size_t i = 1; i + 1 < a->name.len && rc == 0; i++) {
        if (a->name.ptr[i] == '\\')
            i++;
        rc = buf_putc(out, a->name.ptr[i]);
    }
    return rc;
}

/* ---- payload check ---------------------------------------------------- */

/* Appends a short, printable quote of s for an error message. */
static void quote_value(const char *s, size_t n, char *out, size_t size)
{
    size_t max = 60, o = 0;
    bool cut = n > max;
    if (cut) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--; /* do not split a UTF-8 sequence */
    }
    for (size_t i = 0; i < n && o + 4 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        out[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (cut && o + 4 < size)
        memcpy(out + o, "...", 3), o += 3;
    out[o] = '\0';
}

/* A JSON string's bytes with the checks every text field shares. */
static int text_check(const char *field, const json_t *v, size_t max, bool one_line, Err *err)
{
    if (!json_is_string(v))
        return err_set(err, ERR_INVAL, "%s: must be a string, not %s", field,
                       core_json_type_name(v));
    const char *s = json_string_value(v);
    size_t n = json_string_length(v), bad = 0;
    if (n > max)
        return err_set(err, ERR_INVAL, "%s: %zu bytes, more than %zu", field, n, max);
    if (memchr(s, '\0', n))
        return err_set(err, ERR_INVAL, "%s: holds a NUL character", field);
    if (!core_utf8_valid(s, n, &bad))
        return err_set(err, ERR_INVAL, "%s: not UTF-8 (byte %zu)", field, bad);
    if (one_line && (memchr(s, '\r', n) || memchr(s, '\n', n)))
        return err_set(err, ERR_INVAL, "%s: holds a line break", field);
    return 0;
}

static int addr_check(const char *field, const json_t *v, Err *err)
{
    int rc = text_check(field, v, MAIL_MAX_ADDR, true, err);
    if (rc < 0)
        return rc;
    Addr a;
    if (!addr_parse(json_string_value(v), json_string_length(v), &a)) {
        char q[200];
        quote_value(json_string_value(v), json_string_length(v), q, sizeof q);
        return err_set(err, ERR_INVAL, "%s: '%s' is not an email address", field, q);
    }
    return 0;
}

static int addr_list_check(const char *key, const json_t *v, Err *err)
{
    if (json_is_string(v))
        return addr_check(key, v, err);
    if (!json_is_array(v))
        return err_set(err, ERR_INVAL, "%s: must be an address or a list of them, not %s", key,
                       core_json_type_name(v));
    size_t n = json_array_size(v);
    if (n == 0)
        return err_set(err, ERR_INVAL, "%s: an empty list", key);
    if (n > MAIL_MAX_RCPTS)
        return err_set(err, ERR_INVAL, "%s: %zu addresses, more than %d", key, n, MAIL_MAX_RCPTS);
    for (size_t i = 0; i < n; i++) {
        char field[48];
        snprintf(field, sizeof field, "%s[%zu]", key, i);
        int rc = addr_check(field, json_array_get(v, i), err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* "<id>": 3..MAIL_MAX_MSGID printable ASCII bytes, no space, '<' or '>'
 * inside. */
static bool msgid_valid(const char *s, size_t n)
{
    if (n < 3 || n > MAIL_MAX_MSGID || s[0] != '<' || s[n - 1] != '>')
        return false;
    for (size_t i = 1; i + 1 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '<' || c == '>')
            return false;
    }
    return true;
}

/* Calls fn for each whitespace-separated word of s[0..n). */
static int split_ids(const char *s, size_t n, int (*fn)(const char *, size_t, void *), void *ud)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && is_wsp(s[i]))
            i++;
        size_t start = i;
        while (i < n && !is_wsp(s[i]))
            i++;
        if (i > start) {
            int rc = fn(s + start, i - start, ud);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

typedef struct RefCheck {
    const char *field;
    size_t count;
    Err *err;
} RefCheck;

static int ref_check_one(const char *s, size_t n, void *ud)
{
    RefCheck *rc = ud;
    if (++rc->count > MAIL_MAX_REFS)
        return err_set(rc->err, ERR_INVAL, "references: more than %d ids", MAIL_MAX_REFS);
    if (!msgid_valid(s, n)) {
        char q[200];
        quote_value(s, n, q, sizeof q);
        return err_set(rc->err, ERR_INVAL, "%s: '%s' is not a message id (<...>)", rc->field, q);
    }
    return 0;
}

static int refs_check(const json_t *v, Err *err)
{
    RefCheck rc = { "references", 0, err };
    if (json_is_string(v)) {
        int r = text_check("references", v, (size_t)MAIL_MAX_REFS * (MAIL_MAX_MSGID + 1), true,
                           err);
        if (r < 0)
            return r;
        r = split_ids(json_string_value(v), json_string_length(v), ref_check_one, &rc);
        if (r == 0 && rc.count == 0)
            return err_set(err, ERR_INVAL, "references: holds no message id");
        return r;
    }
    if (!json_is_array(v))
        return err_set(err, ERR_INVAL, "references: must be a string or a list, not %s",
                       core_json_type_name(v));
    if (json_array_size(v) > MAIL_MAX_REFS)
        return err_set(err, ERR_INVAL, "references: more than %d ids", MAIL_MAX_REFS);
    for (size_t i = 0; i < json_array_size(v); i++) {
        char field[48];
        snprintf(field, sizeof field, "references[%zu]", i);
        const json_t *e = json_array_get(v, i);
        int r = text_check(field, e, MAIL_MAX_MSGID, true, err);
        if (r < 0)
            return r;
        rc.field = field;
        rc.count = i;
        r = ref_check_one(json_string_value(e), json_string_length(e), &rc);
        if (r < 0)
            return r;
    }
    return 0;
}

int mail_payload_check(const json_t *payload, Err *err)
{
    static const char *const keys[] = { "to", "cc", "subject", "text", "html",
                                        "in_reply_to", "references" };
    if (!json_is_object(payload))
        return err_set(err, ERR_INVAL, "payload: must be an object, not %s",
                       core_json_type_name(payload));
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)payload, key, v) {
        bool known = false;
        for (size_t i = 0; i < sizeof keys / sizeof keys[0] && !known; i++)
            known = strcmp(key, keys[i]) == 0;
        if (!known) {
            char q[200];
            quote_value(key, strlen(key), q, sizeof q);
            return err_set(err, ERR_INVAL,
                           "payload: unknown key '%s' (to, cc, subject, text, html, in_reply_to, "
                           "references)", q);
        }
    }
    int rc;
    if (!(v = json_object_get(payload, "to")))
        return err_set(err, ERR_INVAL, "to: missing");
    if ((rc = addr_list_check("to", v, err)) < 0)
        return rc;
    if ((v = json_object_get(payload, "cc")) && (rc = addr_list_check("cc", v, err)) < 0)
        return rc;
    if (!(v = json_object_get(payload, "subject")))
        return err_set(err, ERR_INVAL, "subject: missing");
    if ((rc = text_check("subject", v, MAIL_MAX_SUBJECT, true, err)) < 0)
        return rc;
    if (!(v = json_object_get(payload, "text")))
        return err_set(err, ERR_INVAL, "text: missing");
    if ((rc = text_check("text", v, MAIL_MAX_BODY, false, err)) < 0)
        return rc;
    if ((v = json_object_get(payload, "html")) &&
        (rc = text_check("html", v, MAIL_MAX_BODY, false, err)) < 0)
        return rc;
    if ((v = json_object_get(payload, "in_reply_to"))) {
        if ((rc = text_check("in_reply_to", v, MAIL_MAX_MSGID, true, err)) < 0)
            return rc;
        if (!msgid_valid(json_string_value(v), json_string_length(v))) {
            char q[200];
            quote_value(json_string_value(v), json_string_length(v), q, sizeof q);
            return err_set(err, ERR_INVAL, "in_reply_to: '%s' is not a message id (<...>)", q);
        }
    }
    if ((v = json_object_get(payload, "references")) && (rc = refs_check(v, err)) < 0)
        return rc;
    return 0;
}

/* ---- Message-ID ------------------------------------------------------- */

void mail_message_id(const char *key, const char *from, char *out, size_t size)
{
    static const char prefix[] = "bureau-mail:";
    char hex[CORE_SHA256_HEX + 1];
    uint8_t digest[CORE_SHA256_LEN];
    CoreSha256 *h = core_sha256_new();
    core_sha256_update(h, prefix, sizeof prefix - 1);
    core_sha256_update(h, key, strlen(key));
    core_sha256_final(h, digest);
    core_sha256_free(h);
    core_hex_encode(digest, sizeof digest, hex);

    char domain[256] = "bureau.invalid";
    Addr a;
    if (from && strlen(from) <= MAIL_MAX_ADDR && addr_parse(from, strlen(from), &a)) {
        const char *at = memchr(a.spec.ptr, '@', a.spec.len);
        size_t n = a.spec.len - (size_t)(at - a.spec.ptr) - 1;
        for (size_t i = 0; i < n; i++)
            domain[i] = (char)tolower((unsigned char)at[1 + i]);
        domain[n] = '\0';
    }
    assert(size >= MAIL_MESSAGE_ID_SIZE);
    size_t dn = strlen(domain);
    out[0] = '<';
    memcpy(out + 1, hex, 32);
    out[33] = '@';
    memcpy(out + 34, domain, dn);
    memcpy(out + 34 + dn, ">", 2);
}

/* ---- message building ------------------------------------------------- */

/* Writes into a Buf, keeping the first error and the current column. */
typedef struct Out {
    Buf *b;
    int rc;
    size_t col;    /* columns used on the current line */
    size_t words;  /* words on the current header line */
} Out;

static void put(Out *o, const char *s, size_t n)
{
    if (o->rc == 0)
        o->rc = buf_append(o->b, s, n);
    o->col += n;
}

static void puts_(Out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void crlf(Out *o)
{
    put(o, "\r\n", 2);
    o->col = 0;
    o->words = 0;
}

static void hdr_begin(Out *o, const char *name)
{
    puts_(o, name);
    put(o, ":", 1);
    o->words = 0;
}

/* One unbreakable word, after a space or, when it would pass column 78, a
 * fold (never right after the header name). */
static void hdr_word(Out *o, const char *s, size_t n)
{
    if (o->words > 0 && o->col + 1 + n > LINE_MAX_COLS) {
        put(o, "\r\n ", 3);
        o->col = 1;
    } else {
        put(o, " ", 1);
    }
    put(o, s, n);
    o->words++;
}

/* Length of the UTF-8 sequence starting with lead byte c (input is valid). */
static size_t utf8_len(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}

/* Bytes left literal in a Q encoded-word (RFC 2047 5(3): safe in a phrase). */
static bool q_literal(unsigned char c)
{
    return isalnum(c) || c == '!' || c == '*' || c == '+' || c == '-' || c == '/';
}

/* Appends s[0..n) as RFC 2047 encoded-words, folded between words. Q when
 * most bytes stay readable, else B; never splits a UTF-8 character. */
static void hdr_encoded(Out *o, const char *s, size_t n)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char hexd[] = "0123456789ABCDEF";
    size_t need_enc = 0;
    for (size_t i = 0; i < n; i++)
        need_enc += !q_literal((unsigned char)s[i]) && s[i] != ' ';
    bool q = need_enc * 3 <= n;
    char word[EW_MAX + 1];
    size_t i = 0;
    do {
        /* The room for this word: the rest of the line, or a new line. */
        size_t room = LINE_MAX_COLS - 1 > o->col ? LINE_MAX_COLS - 1 - o->col : 0;
        if (o->words > 0 && room < EW_OVERHEAD + 12)
            room = LINE_MAX_COLS - 1;
        if (room > EW_MAX)
            room = EW_MAX;
        size_t w = 0;
        memcpy(word, q ? "=?utf-8?Q?" : "=?utf-8?B?", 10);
        w = 10;
        /* Take whole characters while they fit. */
        size_t start = i, enc = 0;
        while (i < n) {
            size_t k = utf8_len((unsigned char)s[i]);
            if (k > n - i)
                k = n - i;
            size_t add = 0;
            if (q) {
                for (size_t j = 0; j < k; j++)
                    add += (q_literal((unsigned char)s[i + j]) || s[i + j] == ' ') ? 1 : 3;
            } else {
                add = ((i + k - start + 2) / 3) * 4 - enc;
            }
            if (w + enc + add + 2 > room && i > start)
                break;
            enc += add;
            i += k;
        }
        if (q) {
            for (size_t j = start; j < i; j++) {
                unsigned char c = (unsigned char)s[j];
                if (c == ' ') {
                    word[w++] = '_';
                } else if (q_literal(c)) {
                    word[w++] = (char)c;
                } else {
                    word[w++] = '=';
                    word[w++] = hexd[c >> 4];
                    word[w++] = hexd[c & 15];
                }
            }
        } else {
            const unsigned char *p = (const unsigned char *)s + start;
            size_t len = i - start;
            for (size_t j = 0; j < len; j += 3) {
                uint32_t v = (uint32_t)p[j] << 16;
                if (j + 1 < len)
                    v |= (uint32_t)p[j + 1] << 8;
                if (j + 2 < len)
                    v |= p[j + 2];
                word[w++] = b64[(v >> 18) & 63];
                word[w++] = b64[(v >> 12) & 63];
                word[w++] = j + 1 < len ? b64[(v >> 6) & 63] : '=';
                word[w++] = j + 2 < len ? b64[v & 63] : '=';
            }
        }
        word[w++] = '?';
        word[w++] = '=';
        hdr_word(o, word, w);
    } while (i < n);
}

/* Whether text can go into a header as plain words: printable ASCII, single
 * spaces between words, no word longer than max, nothing that reads as an
 * encoded-word. */
static bool plain_words(const char *s, size_t n, size_t max, bool atoms_only)
{
    if (n == 0 || s[0] == ' ' || s[n - 1] == ' ')
        return false;
    size_t word = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ') {
            if (i + 1 < n && s[i + 1] == ' ')
                return false;
            word = 0;
            continue;
        }
        if (c < 0x21 || c > 0x7e || (atoms_only && !is_atext(c)))
            return false;
        if (c == '=' && i + 1 < n && s[i + 1] == '?')
            return false;
        if (++word > max)
            return false;
    }
    return true;
}

static void hdr_plain_words(Out *o, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        const char *sp = memchr(s + i, ' ', n - i);
        size_t end = sp ? (size_t)(sp - s) : n;
        hdr_word(o, s + i, end - i);
        i = end + 1;
    }
}

/* "Name <spec>" (name as atoms, a quoted-string or encoded-words) or "spec";
 * comma appended when more follow. */
static void hdr_address(Out *o, const Addr *a, bool comma, Buf *scratch)
{
    char word[MAIL_MAX_ADDR + 4];
    int rc = addr_name_text(a, scratch);
    if (rc < 0 && o->rc == 0)
        o->rc = rc;
    const char *name = buf_cstr(scratch);
    size_t nn = scratch->len;
    if (nn > 0) {
        if (plain_words(name, nn, 60, true)) {
            hdr_plain_words(o, name, nn);
        } else {
            bool printable = nn <= 60;
            for (size_t i = 0; i < nn && printable; i++)
                printable = name[i] >= 0x20 && name[i] <= 0x7e;
            if (printable && !strstr(name, "=?")) {
                size_t w = 0;
                word[w++] = '"';
                for (size_t i = 0; i < nn; i++) {
                    if (name[i] == '"' || name[i] == '\\')
                        word[w++] = '\\';
                    word[w++] = name[i];
                }
                word[w++] = '"';
                hdr_word(o, word, w);
            } else {
                hdr_encoded(o, name, nn);
            }
        }
        int w = snprintf(word, sizeof word, "<%.*s>%s", (int)a->spec.len, a->spec.ptr,
                         comma ? "," : "");
        hdr_word(o, word, (size_t)w);
    } else {
        int w = snprintf(word, sizeof word, "%.*s%s", (int)a->spec.len, a->spec.ptr,
                         comma ? "," : "");
        hdr_word(o, word, (size_t)w);
    }
}

static void hdr_addresses(Out *o, const char *name, const json_t *v, Buf *scratch)
{
    if (!v)
        return;
    hdr_begin(o, name);
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
        Addr a;
        addr_parse(json_string_value(e), json_string_length(e), &a); /* checked */
        hdr_address(o, &a, i + 1 < n, scratch);
    }
    crlf(o);
}

static void hdr_date(Out *o, int64_t ms)
{
    static const char *const wd[] = { "Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed" };
    static const char *const mon[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    int64_t secs = ms / 1000 - (ms % 1000 < 0);
    int64_t days = secs / 86400 - (secs % 86400 < 0);
    int64_t sod = secs - days * 86400, y;
    int m, d;
    core_civil_from_days(days, &y, &m, &d);
    char line[64];
    int n = snprintf(line, sizeof line, "Date: %s, %d %s %04lld %02d:%02d:%02d +0000",
                     wd[((days % 7) + 7) % 7], d, mon[m - 1], (long long)y, (int)(sod / 3600),
                     (int)(sod / 60 % 60), (int)(sod % 60));
    put(o, line, (size_t)n);
    crlf(o);
}

static int ref_emit(const char *s, size_t n, void *ud)
{
    hdr_word(ud, s, n);
    return 0;
}

static void hdr_references(Out *o, const json_t *refs, const json_t *irt)
{
    if (!refs && !irt)
        return;
    hdr_begin(o, "References");
    Str last = { NULL, 0 };
    if (json_is_string(refs)) {
        const char *s = json_string_value(refs);
        size_t n = json_string_length(refs);
        split_ids(s, n, ref_emit, o);
        while (n && is_wsp(s[n - 1]))
            n--;
        size_t start = n;
        while (start && !is_wsp(s[start - 1]))
            start--;
        last = (Str){ s + start, n - start };
    } else if (json_is_array(refs)) {
        for (size_t i = 0; i < json_array_size(refs); i++) {
            const json_t *e = json_array_get(refs, i);
            hdr_word(o, json_string_value(e), json_string_length(e));
            last = (Str){ json_string_value(e), json_string_length(e) };
        }
    }
    /* RFC 5322 3.6.4: the parent's id ends the reply's References. */
    if (irt && !(last.len == json_string_length(irt) &&
                 memcmp(last.ptr, json_string_value(irt), last.len) == 0))
        hdr_word(o, json_string_value(irt), json_string_length(irt));
    crlf(o);
}

/* Quoted-printable (RFC 2045 6.7) with CRLF hard breaks. Encoded: '=',
 * controls, non-ASCII, whitespace before a line break, and the first byte of
 * a line that starts with '.' or "From " (SMTP and mbox safety). Lines stay
 * within 76 columns. With end_soft, text that does not end in a line break
 * ends in a soft break, so that the output always ends in CRLF. */
static void qp_body(Out *o, const char *s, size_t n, bool end_soft)
{
    static const char hexd[] = "0123456789ABCDEF";
    o->col = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' || c == '\n') {
            if (c == '\r' && i + 1 < n && s[i + 1] == '\n')
                i++;
            crlf(o);
            continue;
        }
        bool eol = i + 1 == n || s[i + 1] == '\r' || s[i + 1] == '\n';
        bool enc = c == '=' || c > 0x7e || (c < 0x20 && c != '\t') || (is_wsp((char)c) && eol);
        size_t need = enc ? 3 : 1;
        /* The last token of a line may reach column 76; others leave room
         * for the soft break's '='. */
        if (o->col + need > (eol ? QP_MAX_COLS : QP_MAX_COLS - 1)) {
            put(o, "=\r\n", 3);
            o->col = 0;
        }
        if (o->col == 0 && (c == '.' || (c == 'F' && n - i >= 5 && !memcmp(s + i, "From ", 5))))
            enc = true;
        if (enc) {
            char e[3] = { '=', hexd[c >> 4], hexd[c & 15] };
            put(o, e, 3);
        } else {
            put(o, (const char *)&c, 1);
        }
    }
    if (end_soft && n > 0 && s[n - 1] != '\r' && s[n - 1] != '\n')
        put(o, "=\r\n", 3);
    o->col = 0;
}

static void part_headers(Out *o, const char *type)
{
    puts_(o, "Content-Type: ");
    puts_(o, type);
    puts_(o, "; charset=utf-8");
    crlf(o);
    puts_(o, "Content-Transfer-Encoding: quoted-printable");
    crlf(o);
}

int mail_build(const json_t *payload, const char *from, const char *message_id,
               int64_t date_ms, Buf *out, Err *err)
{
    int rc = mail_payload_check(payload, err);
    if (rc < 0)
        return rc;
    Addr fa;
    size_t flen = from ? strlen(from) : 0;
    if (!from || flen > MAIL_MAX_ADDR || !core_utf8_valid(from, flen, NULL) ||
        strpbrk(from, "\r\n") || !addr_parse(from, flen, &fa)) {
        char q[200];
        quote_value(from ? from : "", flen, q, sizeof q);
        return err_set(err, ERR_INVAL, "from: '%s' is not an email address", q);
    }
    if (!message_id || !msgid_valid(message_id, strlen(message_id)))
        return err_set(err, ERR_INVAL, "message_id: not a message id (<...>)");

    const json_t *subject = json_object_get(payload, "subject");
    const json_t *text = json_object_get(payload, "text");
    const json_t *html = json_object_get(payload, "html");
    const json_t *irt = json_object_get(payload, "in_reply_to");
    Buf scratch;
    buf_init(&scratch, MAIL_MAX_ADDR + 1);
    Out o = { out, 0, 0, 0 };

    hdr_date(&o, date_ms);
    hdr_begin(&o, "From");
    hdr_address(&o, &fa, false, &scratch);
    crlf(&o);
    hdr_addresses(&o, "To", json_object_get(payload, "to"), &scratch);
    hdr_addresses(&o, "Cc", json_object_get(payload, "cc"), &scratch);

    hdr_begin(&o, "Subject");
    const char *subj = json_string_value(subject);
    size_t slen = json_string_length(subject);
    if (plain_words(subj, slen, LINE_MAX_COLS - sizeof "Subject: ", false))
        hdr_plain_words(&o, subj, slen);
    else if (slen > 0)
        hdr_encoded(&o, subj, slen);
    crlf(&o);

    hdr_begin(&o, "Message-ID");
    hdr_word(&o, message_id, strlen(message_id));
    crlf(&o);
    if (irt) {
        hdr_begin(&o, "In-Reply-To");
        hdr_word(&o, json_string_value(irt), json_string_length(irt));
        crlf(&o);
    }
    hdr_references(&o, json_object_get(payload, "references"), irt);
    puts_(&o, "MIME-Version: 1.0");
    crlf(&o);

    if (!html) {
        part_headers(&o, "text/plain");
        crlf(&o);
        qp_body(&o, json_string_value(text), json_string_length(text), true);
    } else {
        /* "=_" never occurs in quoted-printable output, so the boundary
         * cannot occur in a part; the hash keeps it the same on a retry. */
        uint8_t digest[CORE_SHA256_LEN];
        char hex[CORE_SHA256_HEX + 1], boundary[48];
        CoreSha256 *h = core_sha256_new();
        core_sha256_update(h, message_id, strlen(message_id) + 1);
        core_sha256_update(h, json_string_value(text), json_string_length(text));
        core_sha256_update(h, "", 1);
        core_sha256_update(h, json_string_value(html), json_string_length(html));
        core_sha256_final(h, digest);
        core_sha256_free(h);
        core_hex_encode(digest, sizeof digest, hex);
        snprintf(boundary, sizeof boundary, "=_bureau_%.24s", hex);

        puts_(&o, "Content-Type: multipart/alternative;");
        crlf(&o);
        puts_(&o, " boundary=\"");
        puts_(&o, boundary);
        puts_(&o, "\"");
        crlf(&o);
        crlf(&o);
        const json_t *parts[2] = { text, html };
        for (int k = 0; k < 2; k++) {
            puts_(&o, "--");
            puts_(&o, boundary);
            crlf(&o);
            part_headers(&o, k == 0 ? "text/plain" : "text/html");
            crlf(&o);
            qp_body(&o, json_string_value(parts[k]), json_string_length(parts[k]), false);
            crlf(&o); /* belongs to the delimiter that follows */
        }
        puts_(&o, "--");
        puts_(&o, boundary);
        puts_(&o, "--");
        crlf(&o);
    }
    buf_done(&scratch);
    if (o.rc < 0)
        return err_set(err, o.rc, "message: larger than its buffer allows");
    return 0;
}

/* ---- settings --------------------------------------------------------- */

#define COPY(dst, src) snprintf((dst), sizeof(dst), "%s", (src))

void mail_settings_from_config(const Config *cfg, MailSettings *s)
{
    memset(s, 0, sizeof *s);
    COPY(s->url, cfg->smtp_url);
    COPY(s->from, cfg->smtp_from);
    COPY(s->user, cfg->smtp_user);
    COPY(s->password_env, cfg->smtp_password_env);
    COPY(s->ca_file, cfg->smtp_ca_file);
    s->starttls = (MailStarttls)cfg->smtp_starttls;
    s->timeout_s = cfg->smtp_timeout_s > 0 ? cfg->smtp_timeout_s : 30;
    s->connect_timeout_s = s->timeout_s < 10 ? s->timeout_s : 10;
    if (s->password_env[0]) {
        const char *pw = getenv(s->password_env);
        if (pw && strlen(pw) < sizeof s->password)
            COPY(s->password, pw);
        else if (s->user[0])
            s->password_missing = true;
    } else if (s->user[0]) {
        s->password_missing = true;
    }
}

void mail_settings_done(MailSettings *s)
{
    explicit_bzero(s->password, sizeof s->password);
}

/* ---- delivery --------------------------------------------------------- */

typedef struct Upload {
    const char *p;
    size_t left;
} Upload;

static size_t upload_read(char *buf, size_t size, size_t nitems, void *ud)
{
    Upload *u = ud;
    size_t n = size * nitems;
    if (n > u->left)
        n = u->left;
    memcpy(buf, u->p, n);
    u->p += n;
    u->left -= n;
    return n;
}

/* The server's replies reach the header callback one line at a time; the
 * last one is kept for the outcome's detail. */
typedef struct Reply {
    char line[200];
} Reply;

static size_t reply_line(char *buf, size_t size, size_t nitems, void *ud)
{
    Reply *r = ud;
    size_t n = size * nitems;
    /* QUIT's "221" comes after the reply that decided the outcome. */
    if (n >= 3 && isdigit((unsigned char)buf[0]) && memcmp(buf, "221", 3) != 0) {
        size_t k = n < sizeof r->line ? n : sizeof r->line - 1;
        memcpy(r->line, buf, k);
        r->line[k] = '\0';
        for (char *p = r->line; *p; p++)
            if ((unsigned char)*p < 0x20)
                *p = *p == '\r' || *p == '\n' ? '\0' : '?';
    }
    return n;
}

static void outcome(EffectOutcome *out, EffectResult res, long code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void outcome(EffectOutcome *out, EffectResult res, long code, const char *fmt, ...)
{
    va_list ap;
    out->result = res;
    out->code = code;
    va_start(ap, fmt);
    vsnprintf(out->detail, sizeof out->detail, fmt, ap);
    va_end(ap);
    core_utf8_sanitize(out->detail);
}

/* Whether "<spec>" is already in the list (case-insensitively). */
static bool rcpt_has(const struct curl_slist *l, const char *s)
{
    for (; l; l = l->next)
        if (strcasecmp(l->data, s) == 0)
            return true;
    return false;
}

static struct curl_slist *rcpt_add(struct curl_slist *l, const json_t *v)
{
    if (!v)
        return l;
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
        Addr a;
        addr_parse(json_string_value(e), json_string_length(e), &a);
        char r[MAIL_MAX_ADDR + 3];
        snprintf(r, sizeof r, "<%.*s>", (int)a.spec.len, a.spec.ptr);
        if (!rcpt_has(l, r)) {
            struct curl_slist *nl = curl_slist_append(l, r);
            if (!nl) {
                curl_slist_free_all(l);
                return NULL;
            }
            l = nl;
        }
    }
    return l;
}

/* libcurl errors that say the settings, not the network, are wrong. */
static bool curl_error_permanent(CURLcode c)
{
    return c == CURLE_URL_MALFORMAT || c == CURLE_UNSUPPORTED_PROTOCOL ||
           c == CURLE_NOT_BUILT_IN || c == CURLE_BAD_FUNCTION_ARGUMENT ||
           c == CURLE_SSL_CACERT_BADFILE || c == CURLE_SSL_CERTPROBLEM;
}

int mail_send(const MailSettings *s, const char *from, const json_t *payload, const char *msg,
              size_t len, EffectOutcome *out)
{
    Err err = { 0 };
    if (!from || !from[0])
        from = s->from;
    if (mail_payload_check(payload, &err) < 0) {
        outcome(out, EFFECT_PERMANENT, 0, "invalid payload: %s", err.msg);
        return 0;
    }
    if (!s->url[0]) {
        outcome(out, EFFECT_PERMANENT, 0, "smtp.url is not set");
        return 0;
    }
    if (strncasecmp(s->url, "smtp://", 7) != 0 && strncasecmp(s->url, "smtps://", 8) != 0) {
        outcome(out, EFFECT_PERMANENT, 0, "smtp.url must start with smtp:// or smtps://");
        return 0;
    }
    Addr fa;
    size_t flen = strlen(from);
    if (!flen || flen > MAIL_MAX_ADDR || strpbrk(from, "\r\n") || !addr_parse(from, flen, &fa)) {
        outcome(out, EFFECT_PERMANENT, 0, "smtp.from is %s", flen ? "not an email address" :
                                                                    "not set");
        return 0;
    }
    if (s->user[0] && s->password_missing) {
        outcome(out, EFFECT_PERMANENT, 0,
                "smtp.user is set but smtp.password_env ('%s') names no variable with a password",
                s->password_env);
        return 0;
    }
    if (effect_curl_init() < 0) {
        outcome(out, EFFECT_RETRY, 0, "libcurl could not be initialised");
        return ERR_INTERNAL;
    }

    int rc = 0;
    char mail_from[MAIL_MAX_ADDR + 3];
    char errbuf[CURL_ERROR_SIZE] = "";
    Reply reply = { "" };
    Upload up = { msg, len };
    struct curl_slist *rcpts = rcpt_add(NULL, json_object_get(payload, "to"));
    if (rcpts)
        rcpts = rcpt_add(rcpts, json_object_get(payload, "cc"));
    CURL *c = curl_easy_init();
    if (!c || !rcpts) {
        outcome(out, EFFECT_RETRY, 0, "libcurl could not start a transfer");
        rc = ERR_INTERNAL;
        goto out;
    }
    snprintf(mail_from, sizeof mail_from, "<%.*s>", (int)fa.spec.len, fa.spec.ptr);

    curl_easy_setopt(c, CURLOPT_URL, s->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)s->connect_timeout_s);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)s->timeout_s);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (s->ca_file[0])
        curl_easy_setopt(c, CURLOPT_CAINFO, s->ca_file);
    if (strncasecmp(s->url, "smtp://", 7) == 0)
        curl_easy_setopt(c, CURLOPT_USE_SSL,
                         s->starttls == MAIL_STARTTLS_REQUIRED ? (long)CURLUSESSL_ALL :
                         s->starttls == MAIL_STARTTLS_TRY      ? (long)CURLUSESSL_TRY :
                                                                 (long)CURLUSESSL_NONE);
    if (s->user[0]) {
        curl_easy_setopt(c, CURLOPT_USERNAME, s->user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, s->password);
    }
    curl_easy_setopt(c, CURLOPT_MAIL_FROM, mail_from);
    curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpts);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, upload_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &up);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, reply_line);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &reply);

    CURLcode res = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    const char *why = errbuf[0] ? errbuf : curl_easy_strerror(res);
    if (res == CURLE_OK && code >= 200 && code < 400) {
        outcome(out, EFFECT_DELIVERED, code, "accepted: %s", reply.line[0] ? reply.line : "");
    } else if (res != CURLE_OK && code >= 400 && code < 500) {
        outcome(out, EFFECT_RETRY, code, "%s; server said: %s", why, reply.line);
    } else if (res != CURLE_OK && code >= 500 && code < 600) {
        outcome(out, EFFECT_PERMANENT, code, "%s; server said: %s", why, reply.line);
    } else if (curl_error_permanent(res)) {
        outcome(out, EFFECT_PERMANENT, 0, "%s", why);
    } else {
        /* No refusal from the server: the connection, TLS or a timeout. */
        outcome(out, EFFECT_RETRY, code, "%s%s%s", why, reply.line[0] ? "; last reply: " : "",
                reply.line);
    }
out:
    curl_easy_cleanup(c);
    curl_slist_free_all(rcpts);
    return rc;
}
