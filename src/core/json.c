/* Jansson sorts keys with strcmp, which orders UTF-8 by code point: the
 * canonical form is therefore stable across platforms and Jansson versions
 * that keep %.17g for reals. */
#include "core/json.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int core_json_parse(const char *text, size_t len, json_t **ret, Err *err)
{
    json_error_t je;
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!v)
        return err_set(err, ERR_INVAL, "malformed JSON at line %d, column %d (byte %d): %s",
                       je.line, je.column, je.position, je.text);
    *ret = v;
    return 0;
}

static int dump_cb(const char *buffer, size_t size, void *data)
{
    return buf_append(data, buffer, size) < 0 ? -1 : 0;
}

static int put_string(Buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    int rc = buf_putc(out, '"');
    size_t run = 0; /* bytes copied as they are, flushed in one append */
    for (size_t i = 0; i < len && rc == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[7];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                memcpy(u, "\\u00", 4);
                u[4] = hex[c >> 4];
                u[5] = hex[c & 15];
                u[6] = '\0';
                esc = u;
            }
        }
        if (!esc) {
            run++;
            continue;
        }
        if (run)
            rc = buf_append(out, s + i - run, run);
        run = 0;
        if (rc == 0)
            rc = buf_puts(out, esc);
    }
    if (rc == 0 && run)
        rc = buf_append(out, s + len - run, run);
    return rc < 0 ? rc : buf_putc(out, '"');
}

/* The shortest decimal form that reads back as the same double: plain
 * notation for exponents from -6 to 20 (as JavaScript prints numbers),
 * exponent notation otherwise; always with a '.' or an exponent so that it
 * stays a real. */
static int put_real(Buf *out, double d)
{
    char tmp[64];
    int prec = 1;
    for (; prec < 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
    const char *e = strchr(tmp, 'e');
    int exp = e ? atoi(e + 1) : 0;
    if (exp >= -6 && exp < 21) {
        int decimals = prec - 1 - exp;
        snprintf(tmp, sizeof tmp, "%.*f", decimals > 0 ? decimals : 0, d);
        if (!strchr(tmp, '.'))
            strncat(tmp, ".0", sizeof tmp - strlen(tmp) - 1);
    } else {
        snprintf(tmp, sizeof tmp, "%.*g", prec, d);
    }
    return buf_puts(out, tmp);
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int core_json_canonical(const json_t *v, Buf *out)
{
    int rc = 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        size_t n = json_object_size(v), i = 0;
        const char **keys = xmalloc((n ? n : 1) * sizeof *keys);
        const char *k;
        json_t *child;
        json_object_foreach((json_t *)v, k, child) keys[i++] = k;
        qsort(keys, n, sizeof *keys, key_cmp);
        rc = buf_putc(out, '{');
        for (i = 0; i < n && rc == 0; i++) {
            if (i)
                rc = buf_putc(out, ',');
            if (rc == 0)
                rc = put_string(out, keys[i], strlen(keys[i]));
            if (rc == 0)
                rc = buf_putc(out, ':');
            if (rc == 0)
                rc = core_json_canonical(json_object_get(v, keys[i]), out);
        }
        free(keys);
        return rc < 0 ? rc : buf_putc(out, '}');
    }
    case JSON_ARRAY: {
        rc = buf_putc(out, '[');
        for (size_t i = 0; i < json_array_size(v) && rc == 0; i++) {
            if (i)
                rc = buf_putc(out, ',');
            if (rc == 0)
                rc = core_json_canonical(json_array_get(v, i), out);
        }
        return rc < 0 ? rc : buf_putc(out, ']');
    }
    case JSON_STRING: return put_string(out, json_string_value(v), json_string_length(v));
    case JSON_INTEGER: return buf_printf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    case JSON_REAL: return put_real(out, json_real_value(v));
    case JSON_TRUE: return buf_puts(out, "true");
    case JSON_FALSE: return buf_puts(out, "false");
    case JSON_NULL: return buf_puts(out, "null");
    }
    return ERR_INVAL;
}

int core_json_dump(const json_t *v, Buf *out)
{
    if (json_dump_callback(v, dump_cb, out,
                           JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY) != 0)
        return ERR_TOOBIG;
    return 0;
}

const char *core_json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "unknown";
}

/* The length of the valid UTF-8 sequence at p (at most n bytes), 0 when
 * there is none: no overlong forms, no surrogates, nothing past U+10FFFF. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    size_t k = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3
             : (*p & 0xf8) == 0xf0 ? 4 : 0;
    if (k == 0 || k > n || (k == 2 && *p < 0xc2) || (k == 4 && *p > 0xf4))
        return 0;
    for (size_t i = 1; i < k; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if (k == 3) {
        unsigned cp = ((p[0] & 0x0fu) << 12) | ((p[1] & 0x3fu) << 6) | (p[2] & 0x3fu);
        if (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
    } else if (k == 4) {
        unsigned cp = ((p[0] & 0x07u) << 18) | ((p[1] & 0x3fu) << 12);
        if (cp < 0x10000 || cp > 0x10ffff)
            return 0;
    }
    return k;
}

bool core_utf8_valid(const char *s, size_t len, size_t *ret_bad)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(p + i, len - i);
        if (k == 0) {
            if (ret_bad)
                *ret_bad = i;
            return false;
        }
        i += k;
    }
    return true;
}

void core_utf8_sanitize(char *s)
{
    unsigned char *p = (unsigned char *)s;
    size_t n = strlen(s);
    while (*p) {
        size_t k = utf8_seq(p, n);
        if (k == 0)
            k = 1, *p = '?';
        p += k;
        n -= k;
    }
}

/* ---- members of an object, from its text ---- */

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                     : -1;
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

/* p at a string's opening quote: the byte after its closing quote, or NULL. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
        if (c != '\\')
            continue;
        if (++p >= end)
            return NULL;
        if (*p == 'u') {
            if (end - p < 5 || hex4(p + 1) <= 0) /* not hex, or NUL */
                return NULL;
            p += 4;
        } else if (!memchr("\"\\/bfnrt", *p, 8)) {
            return NULL;
        }
    }
    return NULL;
}

/* p at a value: the byte after it, or NULL. A nested value is walked
 * counting open brackets, without recursion and so without a depth limit:
 * inside it, only strings and brackets are checked (the text is meant to be
 * canonical, made by core_json_canonical). */
static const char *skip_value(const char *p, const char *end)
{
    if (p >= end)
        return NULL;
    if (*p == '"')
        return skip_string(p, end);
    if (*p == '{' || *p == '[') {
        size_t open = 0;
        while (p < end) {
            char c = *p;
            if (c == '"') {
                if (!(p = skip_string(p, end)))
                    return NULL;
                continue;
            }
            if (c == '{' || c == '[')
                open++;
            else if ((c == '}' || c == ']') && --open == 0)
                return p + 1;
            p++;
        }
        return NULL;
    }
    const char *s = p; /* a number or true, false, null */
    while (p < end && ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || *p == '-' ||
                       *p == '+' || *p == '.' || *p == 'E'))
        p++;
    size_t n = (size_t)(p - s);
    if (n == 0)
        return NULL;
    if (*s >= 'a' && *s <= 'z' && !(n == 4 && !memcmp(s, "true", 4)) &&
        !(n == 5 && !memcmp(s, "false", 5)) && !(n == 4 && !memcmp(s, "null", 4)))
        return NULL;
    return p;
}

int core_json_members(const char *text, size_t len, CoreJsonMember *out, size_t cap)
{
    const char *end = text + len, *p = skip_ws(text, end);
    if (p >= end || *p != '{')
        return -1;
    p = skip_ws(p + 1, end);
    size_t n = 0;
    if (p < end && *p == '}')
        return skip_ws(p + 1, end) == end ? 0 : -1;
    for (;;) {
        if (p >= end || *p != '"' || n == cap)
            return -1;
        const char *k = p + 1, *ke = skip_string(p, end);
        if (!ke)
            return -1;
        p = skip_ws(ke, end);
        if (p >= end || *p != ':')
            return -1;
        const char *v = skip_ws(p + 1, end);
        if (!(p = skip_value(v, end)))
            return -1;
        out[n++] = (CoreJsonMember){ k, (size_t)(ke - 1 - k), v, (size_t)(p - v) };
        p = skip_ws(p, end);
        if (p >= end)
            return -1;
        if (*p == '}')
            break;
        if (*p != ',')
            return -1;
        p = skip_ws(p + 1, end);
    }
    return skip_ws(p + 1, end) == end ? (int)n : -1;
}

const CoreJsonMember *core_json_member(const CoreJsonMember *m, int n, const char *key)
{
    size_t len = strlen(key);
    for (int i = 0; i < n; i++)
        if (m[i].key_len == len && !memcmp(m[i].key, key, len))
            return &m[i];
    return NULL;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* The members were checked by core_json_members: escapes are well formed. A
 * lone surrogate is refused, as Jansson refuses it. */
char *core_json_member_string(const CoreJsonMember *m)
{
    if (!m || m->val_len < 2 || m->val[0] != '"')
        return NULL;
    const char *p = m->val + 1, *end = m->val + m->val_len - 1;
    char *out = malloc((size_t)(end - p) + 1), *o = out;
    if (!out)
        abort();
    while (p < end) {
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        char c = p[1];
        p += 2;
        switch (c) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp = (unsigned)hex4(p);
            p += 4;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                goto bad;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                int lo = end - p >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2) : -1;
                if (lo < 0xdc00 || lo > 0xdfff)
                    goto bad;
                cp = 0x10000 + ((cp - 0xd800) << 10) + ((unsigned)lo - 0xdc00);
                p += 6;
            }
            o += put_utf8(o, cp); /* never longer than the escape it replaces */
            break;
        }
        default: *o++ = c; break; /* '"', '\\', '/' */
        }
    }
    *o = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

bool core_json_member_int(const CoreJsonMember *m, int64_t *ret)
{
    if (!m || m->val_len == 0 || m->val_len > 20)
        return false;
    char tmp[24];
    memcpy(tmp, m->val, m->val_len);
    tmp[m->val_len] = '\0';
    if (strpbrk(tmp, ".eE") || !(tmp[0] == '-' || (tmp[0] >= '0' && tmp[0] <= '9')))
        return false;
    char *e;
    errno = 0;
    long long v = strtoll(tmp, &e, 10);
    if (*e || errno)
        return false;
    *ret = v;
    return true;
}
