/* RFC 822 messages to email.received with GMime 3. GMime does the MIME
 * work (structure, transfer encodings, RFC 2047 words, charsets); this file
 * chooses the body, lists the attachments, bounds every piece so that the
 * event fits the ledger, and records what went wrong instead of refusing. */
#include "pull/email.h"

#include <gmime/gmime.h>
#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/crypto.h"
#include "core/json.h"
#include "ingest/ingest.h"

#define DEFAULT_MAX_ATTACHMENT (10u << 20)
#define MAX_SUBJECT 1000
#define MAX_NAME 256

static pthread_once_t gmime_once = PTHREAD_ONCE_INIT;

static void gmime_init_once(void)
{
    g_mime_init();
}

/* ---- text helpers ---- */

/* Appends s[0..len) as clean UTF-8 text: CRLF and lone CR become LF,
 * control characters other than LF and TAB are dropped, bytes that are not
 * UTF-8 become '?'. Stops (setting *cut) at max bytes, on a character
 * boundary. */
static void text_clean(const char *s, size_t len, Buf *out, size_t max, bool *cut)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        size_t n = 1;
        if (c >= 0x80) {
            size_t bad = 0;
            size_t want = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
            if (want > 1 && i + want <= len && core_utf8_valid(s + i, want, &bad))
                n = want;
            else
                n = 0; /* not UTF-8: one '?' for this byte */
        }
        if (out->len + (n ? n : 1) > max) {
            if (cut)
                *cut = true;
            return;
        }
        if (n == 0) {
            buf_putc(out, '?');
            i++;
            continue;
        }
        if (c == '\r') {
            buf_putc(out, '\n');
            if (i + 1 < len && s[i + 1] == '\n')
                i++;
        } else if (c >= 0x20 || c == '\n' || c == '\t' || c >= 0x80) {
            if (c == 0x7f) {
                i++;
                continue;
            }
            buf_append(out, s + i, n);
        }
        i += n;
    }
}

static json_t *json_text(const char *s, size_t max)
{
    Buf b;
    buf_init(&b, 0);
    bool cut = false;
    text_clean(s ? s : "", s ? strlen(s) : 0, &b, max, &cut);
    json_t *v = json_stringn(buf_cstr(&b), b.len);
    buf_done(&b);
    return v;
}

/* ---- HTML to text ---- */

static void put_utf8(Buf *out, unsigned long cp)
{
    char u[4];
    if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        cp = 0xfffd;
    if (cp < 0x80) {
        u[0] = (char)cp;
        buf_append(out, u, 1);
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        buf_append(out, u, 2);
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        buf_append(out, u, 3);
    } else {
        u[0] = (char)(0xf0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        buf_append(out, u, 4);
    }
}

static const struct {
    const char *name;
    unsigned long cp;
} entities[] = {
    { "amp", '&' },     { "lt", '<' },       { "gt", '>' },       { "quot", '"' },
    { "apos", '\'' },   { "nbsp", ' ' },     { "copy", 0xa9 },    { "reg", 0xae },
    { "euro", 0x20ac }, { "hellip", 0x2026 }, { "mdash", 0x2014 }, { "ndash", 0x2013 },
    { "laquo", 0xab },  { "raquo", 0xbb },   { "rsquo", 0x2019 }, { "lsquo", 0x2018 },
    { "rdquo", 0x201d }, { "ldquo", 0x201c }, { "eacute", 0xe9 }, { "egrave", 0xe8 },
    { "agrave", 0xe0 }, { "ccedil", 0xe7 },  { "uuml", 0xfc },    { "ouml", 0xf6 },
    { "auml", 0xe4 },   { "szlig", 0xdf },   { "bull", 0x2022 },  { "middot", 0xb7 },
};

/* Decodes the entity at s (after '&'); returns the bytes consumed (0: not
 * an entity). */
static size_t entity(const char *s, size_t len, Buf *out)
{
    size_t end = 0;
    while (end < len && end < 12 && s[end] != ';')
        end++;
    if (end == len || end == 12 || end == 0 || s[end] != ';')
        return 0;
    if (s[0] == '#') {
        char num[16];
        memcpy(num, s + 1, end - 1);
        num[end - 1] = '\0';
        char *e;
        unsigned long cp = (num[0] == 'x' || num[0] == 'X') ? strtoul(num + 1, &e, 16)
                                                             : strtoul(num, &e, 10);
        if (*e || e == num)
            return 0;
        put_utf8(out, cp == 0xa0 ? ' ' : cp);
        return end + 1;
    }
    for (size_t i = 0; i < sizeof entities / sizeof entities[0]; i++)
        if (strlen(entities[i].name) == end && !memcmp(entities[i].name, s, end)) {
            put_utf8(out, entities[i].cp);
            return end + 1;
        }
    return 0;
}

static bool tag_is(const char *name, size_t n, const char *const *list)
{
    for (int i = 0; list[i]; i++)
        if (strlen(list[i]) == n && !strncasecmp(list[i], name, n))
            return true;
    return false;
}

int pull_html_to_text(const char *html, size_t len, Buf *out)
{
    static const char *const blocks[] = { "p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4",
                                          "h5", "h6", "table", "ul", "ol", "blockquote", "pre",
                                          "hr", "section", "article", "header", "footer",
                                          "title", NULL };
    Buf raw; /* entities decoded, tags replaced; whitespace collapsed below */
    buf_init(&raw, 0);
    size_t i = 0;
    while (i < len) {
        char c = html[i];
        if (c == '<') {
            if (i + 4 <= len && !memcmp(html + i, "<!--", 4)) {
                const char *e = memmem(html + i + 4, len - i - 4, "-->", 3);
                i = e ? (size_t)(e - html) + 3 : len;
                continue;
            }
            size_t j = i + 1;
            bool closing = j < len && html[j] == '/';
            if (closing)
                j++;
            size_t ns = j;
            while (j < len && (isalnum((unsigned char)html[j])))
                j++;
            size_t nlen = j - ns;
            const char *gt = memchr(html + j, '>', len - j);
            size_t after = gt ? (size_t)(gt - html) + 1 : len;
            const char *name = html + ns;
            if (!closing && (tag_is(name, nlen, (const char *const[]){ "script", "style", "head",
                                                                        NULL }))) {
                /* skip to the matching end tag */
                char endtag[16];
                snprintf(endtag, sizeof endtag, "</%.*s", (int)nlen, name);
                size_t k = after;
                while (k < len) {
                    const char *lt = memchr(html + k, '<', len - k);
                    if (!lt)
                        break;
                    k = (size_t)(lt - html);
                    if (len - k >= strlen(endtag) &&
                        !strncasecmp(html + k, endtag, strlen(endtag)))
                        break;
                    k++;
                }
                const char *gt2 = k < len ? memchr(html + k, '>', len - k) : NULL;
                i = gt2 ? (size_t)(gt2 - html) + 1 : len;
                continue;
            }
            /* a block starts on a new line; a paragraph's end leaves an
             * empty line after it (list items and rows do not) */
            if (nlen && tag_is(name, nlen, blocks) &&
                (!closing || !tag_is(name, nlen, (const char *const[]){ "li", "tr", "br",
                                                                         "title", NULL })))
                buf_putc(&raw, '\n');
            else if (nlen && (tag_is(name, nlen, (const char *const[]){ "td", "th", NULL })))
                buf_putc(&raw, '\t');
            i = after;
            continue;
        }
        if (c == '&') {
            size_t n = entity(html + i + 1, len - i - 1, &raw);
            if (n) {
                i += n + 1;
                continue;
            }
        }
        buf_putc(&raw, c);
        i++;
    }
    /* collapse: runs of blanks to one space, at most one empty line, trimmed
     * lines */
    int rc = 0, newlines = 2;
    bool space = false;
    for (size_t k = 0; k < raw.len && rc == 0; k++) {
        char c = raw.ptr[k];
        if (c == '\n') {
            space = false;
            if (newlines < 2)
                rc = buf_putc(out, '\n');
            newlines++;
        } else if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
            space = newlines == 0;
        } else {
            if (space)
                rc = buf_putc(out, ' ');
            if (rc == 0)
                rc = buf_putc(out, c);
            space = false;
            newlines = 0;
        }
    }
    while (rc == 0 && out->len && out->ptr[out->len - 1] == '\n')
        out->ptr[--out->len] = '\0';
    buf_done(&raw);
    return rc;
}

/* ---- parsing ---- */

typedef struct Parse {
    const PullEmailOptions *o;
    json_t *warnings;
    json_t *attachments;
    Buf text, html;
    bool have_text, have_html, text_cut, html_cut;
    int parts;
    int rc;   /* first storage error */
    Err *err;
} Parse;

static void warn(Parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void warn(Parse *p, const char *fmt, ...)
{
    if (json_array_size(p->warnings) >= PULL_EMAIL_MAX_WARNINGS)
        return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    core_utf8_sanitize(msg);
    json_array_append_new(p->warnings, json_string(msg));
}

static void on_parser_warning(gint64 offset, GMimeParserWarning code, const gchar *item,
                              gpointer user)
{
    static const char *const names[] = {
        [GMIME_WARN_DUPLICATED_HEADER] = "duplicated header",
        [GMIME_WARN_DUPLICATED_PARAMETER] = "duplicated parameter",
        [GMIME_WARN_UNENCODED_8BIT_HEADER] = "unencoded 8-bit header",
        [GMIME_WARN_INVALID_CONTENT_TYPE] = "invalid content type",
        [GMIME_WARN_INVALID_RFC2047_HEADER_VALUE] = "invalid RFC 2047 header value",
        [GMIME_WARN_MALFORMED_MULTIPART] = "malformed multipart",
        [GMIME_WARN_TRUNCATED_MESSAGE] = "truncated message",
        [GMIME_WARN_MALFORMED_MESSAGE] = "malformed message",
        [GMIME_CRIT_INVALID_HEADER_NAME] = "invalid header name",
        [GMIME_CRIT_CONFLICTING_HEADER] = "conflicting header",
        [GMIME_CRIT_CONFLICTING_PARAMETER] = "conflicting parameter",
        [GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY] = "multipart without boundary",
        [GMIME_WARN_INVALID_PARAMETER] = "invalid parameter",
        [GMIME_WARN_INVALID_ADDRESS_LIST] = "invalid address list",
        [GMIME_CRIT_NESTING_OVERFLOW] = "MIME nesting too deep",
        [GMIME_WARN_PART_WITHOUT_CONTENT] = "part without content",
        [GMIME_CRIT_PART_WITHOUT_HEADERS_OR_CONTENT] = "part without headers or content",
    };
    Parse *p = user;
    /* 8-bit headers are common and decoded anyway: not worth a warning */
    if (code == GMIME_WARN_UNENCODED_8BIT_HEADER || code == GMIME_WARN_DUPLICATED_HEADER)
        return;
    const char *what = (size_t)code < sizeof names / sizeof names[0] && names[code]
                           ? names[code]
                           : "parse problem";
    warn(p, "%s at byte %lld%s%.80s", what, (long long)offset, item && *item ? ": " : "",
         item ? item : "");
}

/* Valid enough for the ledger's email rule: one @, not at an end, no
 * blanks or control characters, at most 254 bytes. */
static bool addr_ok(const char *s)
{
    size_t len = s ? strlen(s) : 0;
    const char *at = s ? strchr(s, '@') : NULL;
    if (!at || at == s || at == s + len - 1 || len > 254 || strchr(at + 1, '@'))
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] == 0x7f)
            return false;
    return core_utf8_valid(s, len, NULL);
}

static void add_mailbox(json_t *arr, InternetAddress *ia, int depth)
{
    if (json_array_size(arr) >= PULL_EMAIL_MAX_ADDRS || depth > 4)
        return;
    if (INTERNET_ADDRESS_IS_GROUP(ia)) {
        InternetAddressList *m = internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia));
        int n = m ? internet_address_list_length(m) : 0;
        for (int i = 0; i < n; i++)
            add_mailbox(arr, internet_address_list_get_address(m, i), depth + 1);
        return;
    }
    if (!INTERNET_ADDRESS_IS_MAILBOX(ia))
        return;
    const char *addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
    if (!addr_ok(addr))
        return;
    json_t *o = json_pack("{s:s}", "email", addr);
    const char *name = internet_address_get_name(ia);
    if (name && *name)
        json_object_set_new(o, "name", json_text(name, MAX_NAME));
    json_array_append_new(arr, o);
}

static json_t *addresses(InternetAddressList *l)
{
    json_t *arr = json_array();
    int n = l ? internet_address_list_length(l) : 0;
    for (int i = 0; i < n; i++)
        add_mailbox(arr, internet_address_list_get_address(l, i), 0);
    return arr;
}

/* Message-IDs of a References / In-Reply-To header, without brackets. */
static json_t *msgids(GMimeObject *o, const char *header, int max)
{
    json_t *arr = json_array();
    const char *v = g_mime_object_get_header(o, header);
    if (!v)
        return arr;
    GMimeReferences *refs = g_mime_references_parse(NULL, v);
    int n = refs ? g_mime_references_length(refs) : 0;
    /* the newest are at the end: keep the last max */
    for (int i = n > max ? n - max : 0; i < n; i++) {
        const char *id = g_mime_references_get_message_id(refs, i);
        if (id && *id && strlen(id) <= 998 && core_utf8_valid(id, strlen(id), NULL))
            json_array_append_new(arr, json_string(id));
    }
    if (refs)
        g_mime_references_free(refs);
    return arr;
}

/* The decoded content of a leaf part into a memory stream (transfer
 * encoding undone; for text, converted from charset to UTF-8). Caller
 * unrefs. */
static GMimeStream *decoded(Parse *p, GMimePart *part, bool text)
{
    GMimeStream *mem = g_mime_stream_mem_new();
    GMimeDataWrapper *w = g_mime_part_get_content(part);
    if (!w)
        return mem;
    const char *charset = text ? g_mime_object_get_content_type_parameter(GMIME_OBJECT(part),
                                                                          "charset")
                               : NULL;
    GMimeStream *target = mem;
    GMimeStream *filtered = NULL;
    if (charset && g_ascii_strcasecmp(charset, "utf-8") && g_ascii_strcasecmp(charset, "utf8") &&
        g_ascii_strcasecmp(charset, "us-ascii")) {
        GMimeFilter *cs = g_mime_filter_charset_new(charset, "UTF-8");
        if (cs) {
            filtered = g_mime_stream_filter_new(mem);
            g_mime_stream_filter_add(GMIME_STREAM_FILTER(filtered), cs);
            g_object_unref(cs);
            target = filtered;
        } else {
            warn(p, "unknown charset '%.40s': bytes kept as UTF-8 where valid", charset);
        }
    }
    if (g_mime_data_wrapper_write_to_stream(w, target) < 0)
        warn(p, "a part's content could not be decoded");
    if (filtered) {
        g_mime_stream_flush(filtered);
        g_object_unref(filtered);
    }
    return mem;
}

static GByteArray *mem_bytes(GMimeStream *s)
{
    return g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(s));
}

/* Stores data in the file store when there is a data dir and it is at
 * most max bytes; fills sha (always) and returns whether it was stored. */
static bool store_blob(Parse *p, const void *data, size_t len, size_t max,
                       char sha[CORE_SHA256_HEX + 1])
{
    core_sha256_hex(data, len, sha);
    if (!p->o->data_dir || len > max || p->rc < 0)
        return false;
    IngestFile *f = NULL;
    char got[CORE_SHA256_HEX + 1];
    int64_t size;
    int rc = ingest_file_begin(p->o->data_dir, len ? len : 1, &f, p->err);
    if (rc == 0 && p->o->defer_sync)
        ingest_file_nosync(f);
    if (rc == 0 && (rc = ingest_file_write(f, data, len, p->err)) < 0)
        ingest_file_abort(f);
    else if (rc == 0)
        rc = ingest_file_finish(f, got, &size, p->err);
    if (rc < 0) {
        p->rc = rc;
        return false;
    }
    return true;
}

static void add_attachment(Parse *p, const char *name, const char *type, const void *data,
                           size_t len)
{
    if (json_array_size(p->attachments) >= PULL_EMAIL_MAX_ATTACHMENTS) {
        warn(p, "more than %d attachments: the rest are not listed", PULL_EMAIL_MAX_ATTACHMENTS);
        return;
    }
    size_t max = p->o->max_attachment_bytes ? p->o->max_attachment_bytes : DEFAULT_MAX_ATTACHMENT;
    char sha[CORE_SHA256_HEX + 1];
    bool stored = store_blob(p, data, len, max, sha);
    json_t *a = json_pack("{s:o, s:s, s:I, s:s, s:b}", "name", json_text(name ? name : "", MAX_NAME),
                          "type", type && *type ? type : "application/octet-stream", "size",
                          (json_int_t)len, "sha256", sha, "stored", stored);
    json_array_append_new(p->attachments, a);
}

static void walk(Parse *p, GMimeObject *o, int depth)
{
    if (!o)
        return;
    if (++p->parts > PULL_EMAIL_MAX_PARTS) {
        if (p->parts == PULL_EMAIL_MAX_PARTS + 1)
            warn(p, "more than %d MIME parts: the rest are ignored", PULL_EMAIL_MAX_PARTS);
        return;
    }
    if (depth > PULL_EMAIL_MAX_DEPTH) {
        warn(p, "MIME parts nested deeper than %d are ignored", PULL_EMAIL_MAX_DEPTH);
        return;
    }
    GMimeContentType *ct = g_mime_object_get_content_type(o);
    char *mime = ct ? g_mime_content_type_get_mime_type(ct) : NULL;
    if (GMIME_IS_MULTIPART(o)) {
        GMimeMultipart *mp = GMIME_MULTIPART(o);
        int n = g_mime_multipart_get_count(mp);
        if (n == 0)
            warn(p, "a %s part has no parts", mime ? mime : "multipart");
        for (int i = 0; i < n; i++)
            walk(p, g_mime_multipart_get_part(mp, i), depth + 1);
    } else if (GMIME_IS_MESSAGE_PART(o)) {
        GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(o));
        GMimeStream *mem = g_mime_stream_mem_new();
        if (inner)
            g_mime_object_write_to_stream(GMIME_OBJECT(inner), NULL, mem);
        GByteArray *ba = mem_bytes(mem);
        const char *subj = inner ? g_mime_message_get_subject(inner) : NULL;
        char name[MAX_NAME];
        snprintf(name, sizeof name, "%.200s.eml", subj && *subj ? subj : "message");
        add_attachment(p, name, "message/rfc822", ba->data, ba->len);
        g_object_unref(mem);
    } else if (GMIME_IS_PART(o)) {
        GMimePart *part = GMIME_PART(o);
        GMimeContentDisposition *cd = g_mime_object_get_content_disposition(o);
        bool attach = cd && g_mime_content_disposition_is_attachment(cd);
        bool plain = ct && g_mime_content_type_is_type(ct, "text", "plain");
        bool html = ct && g_mime_content_type_is_type(ct, "text", "html");
        const char *filename = g_mime_part_get_filename(part);
        bool body = !attach && ((plain && !p->have_text) || (html && !p->have_html));
        GMimeStream *mem = decoded(p, part, body);
        GByteArray *ba = mem_bytes(mem);
        if (body && plain) {
            p->have_text = true;
            text_clean((const char *)ba->data, ba->len, &p->text, PULL_EMAIL_MAX_TEXT,
                       &p->text_cut);
        } else if (body && html) {
            p->have_html = true;
            text_clean((const char *)ba->data, ba->len, &p->html, PULL_EMAIL_MAX_TEXT,
                       &p->html_cut);
        } else if (attach || filename || !(plain || html)) {
            add_attachment(p, filename, mime, ba->data, ba->len);
        } /* else: a second inline text part of a kind already chosen */
        g_object_unref(mem);
    }
    g_free(mime);
}

static char *dup_id(const char *id)
{
    return xstrdup(id ? id : "");
}

int pull_email_parse(const char *raw, size_t len, const PullEmailOptions *o, json_t **ret_data,
                     char **ret_message_id, int64_t *ret_date_ms, Err *err)
{
    pthread_once(&gmime_once, gmime_init_once);
    Parse p = { .o = o, .warnings = json_array(), .attachments = json_array(), .err = err };
    buf_init(&p.text, 0);
    buf_init(&p.html, 0);
    json_t *d = json_object();
    char raw_sha[CORE_SHA256_HEX + 1];
    bool raw_stored = store_blob(&p, raw, len, (size_t)-1, raw_sha);
    GMimeParserOptions *popts = g_mime_parser_options_new();
    g_mime_parser_options_set_warning_callback(popts, on_parser_warning, &p);
    const char *fallback[] = { "UTF-8", "ISO-8859-1", NULL };
    g_mime_parser_options_set_fallback_charsets(popts, fallback);
    GMimeStream *st = g_mime_stream_mem_new_with_buffer(raw, len);
    GMimeParser *parser = g_mime_parser_new_with_stream(st);
    GMimeMessage *m = g_mime_parser_construct_message(parser, popts);
    char *msgid = NULL;
    int64_t date_ms = 0;
    if (o->full_size > len)
        warn(&p, "message of %zu bytes is larger than the limit: only its first %zu bytes "
                 "(the header) were parsed", o->full_size, len);
    if (!m) {
        warn(&p, "not a MIME message: nothing could be parsed (the raw bytes are kept)");
        json_object_set_new(d, "from", json_pack("{s:s}", "email", "unknown@unknown.invalid"));
        json_object_set_new(d, "to", json_array());
        json_object_set_new(d, "subject", json_string(""));
        msgid = dup_id(NULL);
    } else {
        json_t *from = addresses(g_mime_message_get_from(m));
        if (json_array_size(from) == 0) {
            json_decref(from);
            from = addresses(g_mime_message_get_sender(m));
        }
        if (json_array_size(from) == 0) {
            warn(&p, "no From address");
            json_object_set_new(d, "from", json_pack("{s:s}", "email", "unknown@unknown.invalid"));
        } else {
            json_object_set(d, "from", json_array_get(from, 0));
        }
        json_decref(from);
        json_object_set_new(d, "to", addresses(g_mime_message_get_to(m)));
        json_object_set_new(d, "cc", addresses(g_mime_message_get_cc(m)));
        json_t *rt = addresses(g_mime_message_get_reply_to(m));
        if (json_array_size(rt))
            json_object_set_new(d, "reply_to", rt);
        else
            json_decref(rt);
        json_object_set_new(d, "subject", json_text(g_mime_message_get_subject(m), MAX_SUBJECT));
        GDateTime *dt = g_mime_message_get_date(m);
        if (dt) {
            date_ms = (int64_t)g_date_time_to_unix(dt) * 1000;
            if (date_ms > 0 && date_ms < 253402300799000LL) {
                char when[CORE_TIME_LEN + 1];
                core_time_format(date_ms, when);
                json_object_set_new(d, "date", json_string(when));
            } else {
                date_ms = 0;
            }
        } else if (g_mime_object_get_header(GMIME_OBJECT(m), "Date")) {
            warn(&p, "unreadable Date header");
        }
        const char *id = g_mime_message_get_message_id(m);
        if (id && (!*id || strlen(id) > 998 || !core_utf8_valid(id, strlen(id), NULL)))
            id = NULL;
        msgid = dup_id(id);
        json_t *irt = msgids(GMIME_OBJECT(m), "In-Reply-To", 1);
        if (json_array_size(irt))
            json_object_set(d, "in_reply_to", json_array_get(irt, 0));
        json_decref(irt);
        json_object_set_new(d, "references", msgids(GMIME_OBJECT(m), "References",
                                                    PULL_EMAIL_MAX_REFS));
        walk(&p, g_mime_message_get_mime_part(m), 0);
    }
    if (*msgid) {
        json_object_set_new(d, "message_id", json_string(msgid));
    } else {
        json_object_set_new(d, "message_id", json_pack("s+", "sha256:", raw_sha));
        json_object_set_new(d, "message_id_missing", json_true());
    }
    if (p.have_text) {
        json_object_set_new(d, "text", json_stringn(buf_cstr(&p.text), p.text.len));
    } else if (p.have_html) {
        Buf t;
        buf_init(&t, PULL_EMAIL_MAX_TEXT);
        pull_html_to_text(p.html.ptr ? p.html.ptr : "", p.html.len, &t);
        json_object_set_new(d, "text", json_stringn(buf_cstr(&t), t.len));
        buf_done(&t);
    } else {
        json_object_set_new(d, "text", json_string(""));
    }
    if (p.have_html)
        json_object_set_new(d, "html", json_stringn(buf_cstr(&p.html), p.html.len));
    if (p.text_cut || p.html_cut)
        json_object_set_new(d, "body_truncated", json_true());
    json_object_set_new(d, "attachments", p.attachments);
    if (o->folder)
        json_object_set_new(d, "folder", json_string(o->folder));
    json_object_set_new(d, "raw_sha256", json_string(raw_sha));
    json_object_set_new(d, "raw_size", json_integer((json_int_t)(o->full_size > len ? o->full_size
                                                                                   : len)));
    json_object_set_new(d, "raw_stored", json_boolean(raw_stored));
    if (json_array_size(p.warnings))
        json_object_set_new(d, "warnings", p.warnings);
    else
        json_decref(p.warnings);
    if (m)
        g_object_unref(m);
    g_object_unref(parser);
    g_object_unref(st);
    g_mime_parser_options_free(popts);
    buf_done(&p.text);
    buf_done(&p.html);
    if (p.rc < 0) {
        json_decref(d);
        free(msgid);
        return p.rc;
    }
    *ret_data = d;
    if (ret_message_id)
        *ret_message_id = msgid;
    else
        free(msgid);
    if (ret_date_ms)
        *ret_date_ms = date_ms;
    return 0;
}

int pull_email_event(const char *raw, size_t len, const PullEmailOptions *o, Event **ret,
                     char **ret_message_id, Err *err)
{
    json_t *d = NULL;
    char *msgid = NULL;
    int64_t date_ms = 0;
    int rc = pull_email_parse(raw, len, o, &d, &msgid, &date_ms, err);
    if (rc < 0)
        return rc;
    Buf key;
    buf_init(&key, 0);
    if (*msgid)
        buf_printf(&key, "email:%s", msgid);
    else
        buf_printf(&key, "email-sha256:%s", json_string_value(json_object_get(d, "raw_sha256")));
    json_t *obj = json_pack("{s:s, s:s, s:s, s:s, s:O}", "type", "email.received", "source",
                            o->source, "consent", o->consent ? o->consent : "none",
                            "idempotency_key", buf_cstr(&key), "data", d);
    if (date_ms) {
        char when[CORE_TIME_LEN + 1];
        core_time_format(date_ms, when);
        json_object_set_new(obj, "occurred_at", json_string(when));
    }
    rc = ledger_event_from_json(obj, o->limits, ret, err);
    if (rc == ERR_TOOBIG) {
        /* the bodies are bounded, but many long headers may still not fit:
         * keep the text (cut) and drop the html, which the raw message holds */
        json_object_del(d, "html");
        json_t *t = json_object_get(d, "text");
        if (json_string_length(t) > 16384) {
            Buf b;
            buf_init(&b, 0);
            bool cut = false;
            text_clean(json_string_value(t), json_string_length(t), &b, 16384, &cut);
            json_object_set_new(d, "text", json_stringn(buf_cstr(&b), b.len));
            buf_done(&b);
        }
        json_object_set_new(d, "body_truncated", json_true());
        json_object_set_new(obj, "data", json_incref(d));
        rc = ledger_event_from_json(obj, o->limits, ret, err);
    }
    json_decref(obj);
    json_decref(d);
    buf_done(&key);
    if (rc < 0) {
        free(msgid);
        return rc;
    }
    if (ret_message_id)
        *ret_message_id = msgid;
    else
        free(msgid);
    return 0;
}
