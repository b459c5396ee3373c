/* Unit tests of the email.send effect: messages built by mail_build() are
 * parsed back with GMime (an independent MIME implementation) to check what a
 * recipient's mail reader will see: decoded subjects and names, bodies byte
 * for byte, the multipart structure, threading headers; plus the payload
 * check's errors, the Message-ID rule, line lengths and the outcomes of
 * mail_send() that need no server. */
#include <criterion/criterion.h>
#include <gmime/gmime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/crypto.h"
#include "core/json.h"
#include "effect/mail.h"

#define FROM "Bureau Bot <bot@example.com>"
#define MID "<0123456789abcdef0123456789abcdef@example.com>"
#define DATE_MS 1764072000123LL /* Tue, 25 Nov 2025 12:00:00.123 UTC */

/* ---- helpers ---------------------------------------------------------- */

static void gmime_setup(void)
{
    g_mime_init();
}

static void gmime_teardown(void)
{
    g_mime_shutdown();
}

static json_t *pj(const char *text)
{
    json_t *v = NULL;
    Err err = { 0 };
    cr_assert_eq(core_json_parse(text, strlen(text), &v, &err), 0, "%s: %s", text, err.msg);
    return v;
}

/* Builds payload (a JSON object) into out; asserts success. */
static void build(json_t *payload, Buf *out)
{
    Err err = { 0 };
    buf_init(out, MAIL_MAX_MESSAGE);
    int rc = mail_build(payload, FROM, MID, DATE_MS, out, &err);
    cr_assert_eq(rc, 0, "mail_build: %s", err.msg);
}

/* Every line ends in CRLF, none is longer than max_header columns in the
 * header section, max_body in the body, and never more than 998. */
static void check_lines(const Buf *m, size_t max_header, size_t max_body)
{
    const char *p = m->ptr, *end = m->ptr + m->len;
    bool in_body = false;
    cr_assert(m->len >= 2 && memcmp(end - 2, "\r\n", 2) == 0, "message ends in CRLF");
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        cr_assert_not_null(nl, "a line without LF");
        cr_assert(nl > p && nl[-1] == '\r', "bare LF at offset %zu", (size_t)(nl - m->ptr));
        size_t len = (size_t)(nl - 1 - p);
        cr_assert(memchr(p, '\r', len) == NULL, "bare CR at offset %zu", (size_t)(p - m->ptr));
        cr_assert_leq(len, 998);
        cr_assert_leq(len, in_body ? max_body : max_header, "line too long (%zu): %.*s", len,
                      (int)len, p);
        if (len == 0)
            in_body = true;
        p = nl + 1;
    }
}

static GMimeMessage *parse(const Buf *m)
{
    GMimeStream *s = g_mime_stream_mem_new_with_buffer(m->ptr, m->len);
    GMimeParser *parser = g_mime_parser_new_with_stream(s);
    GMimeMessage *msg = g_mime_parser_construct_message(parser, NULL);
    g_object_unref(parser);
    g_object_unref(s);
    cr_assert_not_null(msg, "GMime could not parse:\n%s", m->ptr);
    return msg;
}

/* The decoded content of a leaf part; caller frees. */
static char *part_text(GMimeObject *obj, size_t *ret_len)
{
    cr_assert(GMIME_IS_PART(obj));
    GMimePart *part = GMIME_PART(obj);
    cr_assert_eq(g_mime_part_get_content_encoding(part), GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE);
    GMimeContentType *ct = g_mime_object_get_content_type(obj);
    cr_assert_str_eq(g_mime_content_type_get_parameter(ct, "charset"), "utf-8");
    GMimeStream *out = g_mime_stream_mem_new();
    g_mime_data_wrapper_write_to_stream(g_mime_part_get_content(part), out);
    GByteArray *ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(out));
    char *r = malloc(ba->len + 1);
    if (ba->len)
        memcpy(r, ba->data, ba->len);
    r[ba->len] = '\0';
    *ret_len = ba->len;
    g_object_unref(out);
    return r;
}

/* s with every line break (CRLF, LF, CR) as CRLF: the canonical form. */
static char *crlf_form(const char *s)
{
    size_t n = strlen(s);
    char *r = malloc(2 * n + 1), *o = r;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r' || s[i] == '\n') {
            if (s[i] == '\r' && s[i + 1] == '\n')
                i++;
            *o++ = '\r';
            *o++ = '\n';
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return r;
}

static json_t *text_payload(const char *text)
{
    return json_pack("{s:s, s:s, s:s}", "to", "a@example.com", "subject", "s", "text", text);
}

/* Asserts that text goes through a text/plain message and comes back the
 * same (in CRLF form), and that no body line starts with '.' or "From ". */
static void body_roundtrip(const char *text)
{
    json_t *p = text_payload(text);
    Buf m;
    build(p, &m);
    check_lines(&m, 78, 76);
    const char *body = strstr(m.ptr, "\r\n\r\n") + 4;
    for (const char *l = body; l && *l; l = strstr(l, "\r\n") ? strstr(l, "\r\n") + 2 : NULL) {
        cr_assert(l[0] != '.', "a body line starts with '.'");
        cr_assert(strncmp(l, "From ", 5) != 0, "a body line starts with 'From '");
    }
    GMimeMessage *msg = parse(&m);
    GMimeObject *part = g_mime_message_get_mime_part(msg);
    cr_assert(g_mime_content_type_is_type(g_mime_object_get_content_type(part), "text", "plain"));
    size_t len;
    char *got = part_text(part, &len), *want = crlf_form(text);
    cr_assert_eq(len, strlen(want), "length %zu, want %zu; got: [%s]", len, strlen(want), got);
    cr_assert(memcmp(got, want, len) == 0, "got [%s], want [%s]", got, want);
    free(got);
    free(want);
    g_object_unref(msg);
    buf_done(&m);
    json_decref(p);
}

/* ---- headers ---------------------------------------------------------- */

TestSuite(mail_build, .init = gmime_setup, .fini = gmime_teardown);

Test(mail_build, utf8_subject_and_names_decode_back_exactly)
{
    const char *subject = "Héllo wörld — ünïcödé 日本語の件名 with a long tail to force the "
                          "subject across several encoded words, then an emoji 🎉 at the end";
    const char *names[] = { "Zoë Ångström", "山田 太郎 (経理部) — accounts payable department",
                            "Doe, John", "Quoted \"Name\" \\ here", "Plain Name" };
    const char *addrs[] = { "zoe@example.com", "yamada@example.jp", "john@example.net",
                            "q@example.org", "plain@example.org" };
    json_t *to = json_array();
    json_array_append_new(to, json_string("Zoë Ångström <zoe@example.com>"));
    json_array_append_new(to, json_string("山田 太郎 (経理部) — accounts payable department "
                                          "<yamada@example.jp>"));
    json_array_append_new(to, json_string("\"Doe, John\" <john@example.net>"));
    json_array_append_new(to, json_string("\"Quoted \\\"Name\\\" \\\\ here\" <q@example.org>"));
    json_array_append_new(to, json_string("Plain Name <plain@example.org>"));
    json_t *p = json_pack("{s:o, s:s, s:s, s:s}", "to", to, "cc", "Ünï Cc <cc@example.com>",
                          "subject", subject, "text", "hi");
    Buf m;
    build(p, &m);
    check_lines(&m, 78, 76);
    GMimeMessage *msg = parse(&m);
    cr_assert_str_eq(g_mime_message_get_subject(msg), subject);
    InternetAddressList *l = g_mime_message_get_to(msg);
    cr_assert_eq(internet_address_list_length(l), 5);
    for (int i = 0; i < 5; i++) {
        InternetAddress *a = internet_address_list_get_address(l, i);
        cr_assert_str_eq(internet_address_get_name(a), names[i]);
        cr_assert_str_eq(internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(a)), addrs[i]);
    }
    l = g_mime_message_get_cc(msg);
    cr_assert_eq(internet_address_list_length(l), 1);
    cr_assert_str_eq(internet_address_get_name(internet_address_list_get_address(l, 0)), "Ünï Cc");
    l = g_mime_message_get_from(msg);
    cr_assert_str_eq(internet_address_get_name(internet_address_list_get_address(l, 0)),
                     "Bureau Bot");
    cr_assert_null(strstr(m.ptr, "\r\nBcc:"));
    g_object_unref(msg);
    buf_done(&m);
    json_decref(p);
}

Test(mail_build, ascii_subjects_fold_and_decode_back)
{
    const char *subjects[] = {
        "Re: your invoice 2025-11 and the payment schedule we discussed on the phone last week, "
        "plus the two attachments you asked for",
        "spaces  doubled and a literal =?utf-8?Q?x?= that is not an encoded word",
        " leading and trailing space ",
        "a-single-word-that-is-far-too-long-to-fit-on-one-header-line-without-folding-at-all-"
        "really",
        "",
        "tab\there",
    };
    for (size_t i = 0; i < sizeof subjects / sizeof subjects[0]; i++) {
        json_t *p = json_pack("{s:s, s:s, s:s}", "to", "a@example.com", "subject", subjects[i],
                              "text", "x");
        Buf m;
        build(p, &m);
        check_lines(&m, 78, 76);
        GMimeMessage *msg = parse(&m);
        const char *got = g_mime_message_get_subject(msg);
        cr_assert_str_eq(got ? got : "", subjects[i], "subject %zu:\n%s", i, m.ptr);
        g_object_unref(msg);
        buf_done(&m);
        json_decref(p);
    }
}

Test(mail_build, date_and_mime_headers)
{
    json_t *p = text_payload("x");
    Buf m;
    build(p, &m);
    cr_assert(strncmp(m.ptr, "Date: Tue, 25 Nov 2025 12:00:00 +0000\r\n", 39) == 0, "%s", m.ptr);
    cr_assert_not_null(strstr(m.ptr, "\r\nMIME-Version: 1.0\r\n"));
    cr_assert_not_null(strstr(m.ptr, "\r\nMessage-ID: " MID "\r\n"));
    cr_assert_null(strstr(m.ptr, "In-Reply-To"));
    cr_assert_null(strstr(m.ptr, "References"));
    GMimeMessage *msg = parse(&m);
    cr_assert_eq(g_date_time_to_unix(g_mime_message_get_date(msg)), DATE_MS / 1000);
    cr_assert_str_eq(g_mime_message_get_message_id(msg), "0123456789abcdef0123456789abcdef@example.com");
    g_object_unref(msg);
    buf_done(&m);
    json_decref(p);

    /* Before the epoch and on a leap day. */
    p = text_payload("x");
    Err err = { 0 };
    buf_init(&m, MAIL_MAX_MESSAGE);
    cr_assert_eq(mail_build(p, FROM, MID, -1, &m, &err), 0);
    cr_assert(strncmp(m.ptr, "Date: Wed, 31 Dec 1969 23:59:59 +0000\r\n", 39) == 0, "%s", m.ptr);
    buf_clear(&m);
    cr_assert_eq(mail_build(p, FROM, MID, 951782400000LL, &m, &err), 0);
    cr_assert(strncmp(m.ptr, "Date: Tue, 29 Feb 2000 00:00:00 +0000\r\n", 39) == 0, "%s", m.ptr);
    buf_done(&m);
    json_decref(p);
}

Test(mail_build, threading_headers)
{
    json_t *p = pj("{\"to\":\"a@example.com\",\"subject\":\"Re: x\",\"text\":\"y\","
                   "\"in_reply_to\":\"<parent@example.org>\","
                   "\"references\":[\"<root@example.org>\",\"<mid.1@example.org>\"]}");
    Buf m;
    build(p, &m);
    check_lines(&m, 78, 76);
    GMimeMessage *msg = parse(&m);
    const char *irt = g_mime_object_get_header(GMIME_OBJECT(msg), "In-Reply-To");
    cr_assert_str_eq(irt, "<parent@example.org>");
    const char *refs = g_mime_object_get_header(GMIME_OBJECT(msg), "References");
    GMimeReferences *r = g_mime_references_parse(NULL, refs);
    cr_assert_eq(g_mime_references_length(r), 3);
    cr_assert_str_eq(g_mime_references_get_message_id(r, 0), "root@example.org");
    cr_assert_str_eq(g_mime_references_get_message_id(r, 1), "mid.1@example.org");
    cr_assert_str_eq(g_mime_references_get_message_id(r, 2), "parent@example.org");
    g_mime_references_free(r);
    g_object_unref(msg);
    buf_done(&m);
    json_decref(p);

    /* A string of ids already ending with the parent; in_reply_to alone. */
    p = pj("{\"to\":\"a@example.com\",\"subject\":\"Re: x\",\"text\":\"y\","
           "\"in_reply_to\":\"<p@x>\",\"references\":\"<r@x>  <p@x> \"}");
    build(p, &m);
    cr_assert_not_null(strstr(m.ptr, "\r\nReferences: <r@x> <p@x>\r\n"), "%s", m.ptr);
    buf_done(&m);
    json_decref(p);
    p = pj("{\"to\":\"a@example.com\",\"subject\":\"Re: x\",\"text\":\"y\",\"in_reply_to\":\"<p@x>\"}");
    build(p, &m);
    cr_assert_not_null(strstr(m.ptr, "\r\nIn-Reply-To: <p@x>\r\nReferences: <p@x>\r\n"), "%s", m.ptr);
    buf_done(&m);
    json_decref(p);

    /* 100 long references fold within 78 columns. */
    json_t *list = json_array();
    for (int i = 0; i < 100; i++) {
        char id[80];
        snprintf(id, sizeof id, "<%d.a-rather-long-message-identifier-left-part@mail.example.org>", i);
        json_array_append_new(list, json_string(id));
    }
    p = json_pack("{s:s, s:s, s:s, s:o}", "to", "a@example.com", "subject", "s", "text", "t",
                  "references", list);
    build(p, &m);
    check_lines(&m, 78, 76);
    msg = parse(&m);
    r = g_mime_references_parse(NULL, g_mime_object_get_header(GMIME_OBJECT(msg), "References"));
    cr_assert_eq(g_mime_references_length(r), 100);
    g_mime_references_free(r);
    g_object_unref(msg);
    buf_done(&m);
    json_decref(p);
}

/* ---- bodies ----------------------------------------------------------- */

Test(mail_build, qp_bodies_decode_back_byte_for_byte)
{
    static char long_line[3000], long_utf8[3000], long_eq[400];
    memset(long_line, 'a', 2999);
    for (size_t i = 0; i + 2 < sizeof long_utf8; i += 2)
        memcpy(long_utf8 + i, "é", 2);
    memset(long_eq, '=', sizeof long_eq - 1);
    const char *texts[] = {
        "",
        "no final newline",
        "final newline\n",
        "\n\n\n",
        ".\n.leading dot\n..two dots\n. \n",
        "From the start\nFrom \nFromage is fine\n>From quoted\n",
        "trailing spaces   \ntrailing tab\t\n \t \nend with space ",
        "Grüße, ñandú, 日本語, 🎉 and a zero-width\u200bjoiner\n",
        "equals = signs == and =41 that look encoded, =\n=",
        "CRLF\r\nand lone CR\rand LF\nmixed\r\n",
        "control\x01\x7f chars\x1b[0m and tab\tinside",
        long_line,
        long_utf8,
        long_eq,
        "word word word word word word word word word word word word word word word word "
        "word word word word word word word word word word word word word word word word\n",
        /* Soft breaks that would land on a '.' or "From " at a line start. */
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx."
        "From here on\n",
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxFrom here\n",
        /* Whitespace at the exact wrap columns. */
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx \n"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx  y\n"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\t",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        body_roundtrip(texts[i]);
}

Test(mail_build, multipart_alternative_with_html)
{
    const char *text = "Plain part — with a line that mentions --=_bureau_ boundaries\n"
                       "--=_bureau_0000\n.\nFrom x\n";
    const char *html = "<html><body><p style=\"color: red\">Hé =</p>\n--=_bureau_</body></html>";
    json_t *p = json_pack("{s:s, s:s, s:s, s:s}", "to", "a@example.com", "subject", "s", "text",
                          text, "html", html);
    Buf m;
    build(p, &m);
    check_lines(&m, 78, 76);
    GMimeMessage *msg = parse(&m);
    GMimeObject *top = g_mime_message_get_mime_part(msg);
    cr_assert(GMIME_IS_MULTIPART(top));
    cr_assert(g_mime_content_type_is_type(g_mime_object_get_content_type(top), "multipart",
                                          "alternative"));
    GMimeMultipart *mp = GMIME_MULTIPART(top);
    cr_assert_eq(g_mime_multipart_get_count(mp), 2);
    GMimeObject *p0 = g_mime_multipart_get_part(mp, 0), *p1 = g_mime_multipart_get_part(mp, 1);
    cr_assert(g_mime_content_type_is_type(g_mime_object_get_content_type(p0), "text", "plain"));
    cr_assert(g_mime_content_type_is_type(g_mime_object_get_content_type(p1), "text", "html"));
    size_t len;
    char *got = part_text(p0, &len), *want = crlf_form(text);
    cr_assert_str_eq(got, want);
    free(got);
    free(want);
    got = part_text(p1, &len);
    want = crlf_form(html);
    cr_assert_str_eq(got, want);
    free(got);
    free(want);
    /* The boundary occurs only as delimiters: 3 times plus its declaration. */
    const char *b = g_mime_multipart_get_boundary(mp);
    size_t count = 0;
    for (const char *s = strstr(m.ptr, b); s; s = strstr(s + 1, b))
        count++;
    cr_assert_eq(count, 4, "boundary %s seen %zu times", b, count);
    g_object_unref(msg);

    /* The same payload and Message-ID give the same message. */
    Buf again;
    build(p, &again);
    cr_assert_eq(again.len, m.len);
    cr_assert(memcmp(again.ptr, m.ptr, m.len) == 0);
    buf_done(&again);
    buf_done(&m);
    json_decref(p);
}

Test(mail_build, empty_text_with_empty_html)
{
    json_t *p = pj("{\"to\":\"a@example.com\",\"subject\":\"s\",\"text\":\"\",\"html\":\"\"}");
    Buf m;
    build(p, &m);
    GMimeMessage *msg = parse(&m);
    GMimeMultipart *mp = GMIME_MULTIPART(g_mime_message_get_mime_part(msg));
    cr_assert_eq(g_mime_multipart_get_count(mp), 2);
    for (int i = 0; i < 2; i++) {
        size_t len;
        char *got = part_text(g_mime_multipart_get_part(mp, i), &len);
        cr_assert_eq(len, 0);
        free(got);
    }
    g_object_unref(msg);
    buf_done(&m);
    json_decref(p);
}

Test(mail_build, largest_payload_stays_within_limits)
{
    /* 100 + 100 recipients with long non-ASCII names, a 998-byte subject
     * without spaces, 1 MiB of worst-case text and html. */
    json_t *to = json_array(), *cc = json_array();
    for (int i = 0; i < 100; i++) {
        char a[MAIL_MAX_ADDR + 1];
        snprintf(a, sizeof a, "Ünïcödé Pérsön Nümbér %03d with a long long long display name "
                 "<person.%03d.with.a.long.local.part@a-long-subdomain.example.com>", i, i);
        json_array_append_new(to, json_string(a));
        json_array_append_new(cc, json_string(a));
    }
    char *subject = malloc(MAIL_MAX_SUBJECT + 1), *body = malloc(MAIL_MAX_BODY + 1);
    memset(subject, 'S', MAIL_MAX_SUBJECT);
    subject[MAIL_MAX_SUBJECT] = '\0';
    memset(body, '=', MAIL_MAX_BODY); /* every byte encoded: QP's worst case */
    body[MAIL_MAX_BODY] = '\0';
    json_t *p = json_pack("{s:o, s:o, s:s, s:s, s:s}", "to", to, "cc", cc, "subject", subject,
                          "text", body, "html", body);
    Buf m;
    build(p, &m);
    cr_assert_leq(m.len, MAIL_MAX_MESSAGE);
    check_lines(&m, 78, 76);
    GMimeMessage *msg = parse(&m);
    cr_assert_str_eq(g_mime_message_get_subject(msg), subject);
    cr_assert_eq(internet_address_list_length(g_mime_message_get_cc(msg)), 100);
    g_object_unref(msg);

    /* A smaller buffer: ERR_TOOBIG, named. */
    Buf small;
    Err err = { 0 };
    buf_init(&small, 4096);
    cr_assert_eq(mail_build(p, FROM, MID, DATE_MS, &small, &err), ERR_TOOBIG);
    buf_done(&small);
    buf_done(&m);
    free(subject);
    free(body);
    json_decref(p);
}

Test(mail_build, refuses_bad_from_and_message_id)
{
    json_t *p = text_payload("x");
    Buf m;
    Err err = { 0 };
    buf_init(&m, MAIL_MAX_MESSAGE);
    cr_assert_eq(mail_build(p, "not an address", MID, DATE_MS, &m, &err), ERR_INVAL);
    cr_assert_not_null(strstr(err.msg, "from: 'not an address' is not an email address"), "%s", err.msg);
    cr_assert_eq(mail_build(p, "", MID, DATE_MS, &m, &err), ERR_INVAL);
    cr_assert_eq(mail_build(p, "a@b\r\nBcc: x@y", MID, DATE_MS, &m, &err), ERR_INVAL);
    cr_assert_eq(mail_build(p, FROM, "no-brackets@x", DATE_MS, &m, &err), ERR_INVAL);
    cr_assert_not_null(strstr(err.msg, "message_id"), "%s", err.msg);
    buf_done(&m);
    json_decref(p);
}

/* ---- Message-ID ------------------------------------------------------- */

Test(mail_message_id, deterministic_per_key_and_from)
{
    char a[MAIL_MESSAGE_ID_SIZE], b[MAIL_MESSAGE_ID_SIZE], c[MAIL_MESSAGE_ID_SIZE];
    mail_message_id("effect-1", "Bot <bot@Example.COM>", a, sizeof a);
    mail_message_id("effect-1", "bot@example.com", b, sizeof b);
    mail_message_id("effect-2", "bot@example.com", c, sizeof c);
    cr_assert_str_eq(a, b);
    cr_assert_str_neq(a, c);
    cr_assert_eq(strlen(a), 1 + 32 + 1 + strlen("example.com") + 1);
    cr_assert(a[0] == '<' && a[33] == '@' && strcmp(a + 34, "example.com>") == 0, "%s", a);
    for (int i = 1; i <= 32; i++)
        cr_assert(strchr("0123456789abcdef", a[i]), "%s", a);
    /* The rule, computed here: SHA-256("bureau-mail:effect-1"). */
    char hex[CORE_SHA256_HEX + 1];
    core_sha256_hex("bureau-mail:effect-1", strlen("bureau-mail:effect-1"), hex);
    cr_assert(memcmp(a + 1, hex, 32) == 0);
    mail_message_id("effect-1", "garbage", c, sizeof c);
    cr_assert_str_eq(c + 33, "@bureau.invalid>");
    mail_message_id("", NULL, c, sizeof c);
    cr_assert_str_eq(c + 33, "@bureau.invalid>");
}

/* ---- payload check ---------------------------------------------------- */

Test(mail_payload_check, accepts_valid_payloads)
{
    const char *ok[] = {
        "{\"to\":\"a@example.com\",\"subject\":\"\",\"text\":\"\"}",
        "{\"to\":[\"a@example.com\",\"B <b@x.org>\"],\"cc\":[\"<c@d.e>\"],\"subject\":\"s\","
        "\"text\":\"t\",\"html\":\"<p>\",\"in_reply_to\":\"<x@y>\",\"references\":\"<a@b> <c@d>\"}",
        "{\"to\":\"first.last+tag@sub-domain.example.co.uk\",\"subject\":\"s\",\"text\":\"t\"}",
        "{\"to\":\"\\\"Doe, John\\\" <j@x>\",\"subject\":\"s\",\"text\":\"t\",\"references\":[\"<a@b>\"]}",
        "{\"to\":\"Zoë <z@example.com>\",\"subject\":\"ünï\",\"text\":\"t\"}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        json_t *p = pj(ok[i]);
        Err err = { 0 };
        cr_assert_eq(mail_payload_check(p, &err), 0, "%s: %s", ok[i], err.msg);
        json_decref(p);
    }
}

Test(mail_payload_check, errors_name_the_field)
{
    static const struct {
        const char *json, *want;
    } cases[] = {
        { "[]", "payload: must be an object, not array" },
        { "{\"subject\":\"s\",\"text\":\"t\"}", "to: missing" },
        { "{\"to\":\"a@x\",\"text\":\"t\"}", "subject: missing" },
        { "{\"to\":\"a@x\",\"subject\":\"s\"}", "text: missing" },
        { "{\"to\":\"a@x\",\"subject\":\"s\",\"text\":\"t\",\"bcc\":\"b@x\"}",
          "payload: unknown key 'bcc'" },
        { "{\"to\":[\"a@x\",\"b@x\",\"x\"],\"subject\":\"s\",\"text\":\"t\"}",
          "to[2]: 'x' is not an email address" },
        { "{\"to\":\"a@x\",\"cc\":[\"a b@x\"],\"subject\":\"s\",\"text\":\"t\"}",
          "cc[0]: 'a b@x' is not an email address" },
        { "{\"to\":\"a@x, b@y\",\"subject\":\"s\",\"text\":\"t\"}",
          "to: 'a@x, b@y' is not an email address" },
        { "{\"to\":\"a@x\\r\\nBcc: v@x\",\"subject\":\"s\",\"text\":\"t\"}",
          "to: holds a line break" },
        { "{\"to\":\"Name <a@x>\\nBcc: v@x\",\"subject\":\"s\",\"text\":\"t\"}",
          "to: holds a line break" },
        { "{\"to\":[],\"subject\":\"s\",\"text\":\"t\"}", "to: an empty list" },
        { "{\"to\":5,\"subject\":\"s\",\"text\":\"t\"}",
          "to: must be an address or a list of them, not integer" },
        { "{\"to\":[\"a@x\",7],\"subject\":\"s\",\"text\":\"t\"}",
          "to[1]: must be a string, not integer" },
        { "{\"to\":\"a@-x.com\",\"subject\":\"s\",\"text\":\"t\"}", "to: 'a@-x.com' is not" },
        { "{\"to\":\"a..b@x\",\"subject\":\"s\",\"text\":\"t\"}", "to: 'a..b@x' is not" },
        { "{\"to\":\"@x\",\"subject\":\"s\",\"text\":\"t\"}", "to: '@x' is not" },
        { "{\"to\":\"a@x@y\",\"subject\":\"s\",\"text\":\"t\"}", "to: 'a@x@y' is not" },
        { "{\"to\":\"Name <a@x\",\"subject\":\"s\",\"text\":\"t\"}", "to: 'Name <a@x' is not" },
        { "{\"to\":\"Na<me <a@x>\",\"subject\":\"s\",\"text\":\"t\"}", "is not an email address" },
        { "{\"to\":\"\\\"unterminated <a@x>\",\"subject\":\"s\",\"text\":\"t\"}",
          "is not an email address" },
        { "{\"to\":\"a@x\",\"subject\":\"two\\nlines\",\"text\":\"t\"}",
          "subject: holds a line break" },
        { "{\"to\":\"a@x\",\"subject\":7,\"text\":\"t\"}", "subject: must be a string, not integer" },
        { "{\"to\":\"a@x\",\"subject\":\"s\",\"text\":null}", "text: must be a string, not null" },
        { "{\"to\":\"a@x\",\"subject\":\"s\",\"text\":\"t\",\"html\":[]}",
          "html: must be a string, not array" },
        { "{\"to\":\"a@x\",\"subject\":\"s\",\"text\":\"t\",\"in_reply_to\":\"abc@x\"}",
          "in_reply_to: 'abc@x' is not a message id" },
        { "{\"to\":\"a@x\",\"subject\":\"s\",\"text\":\"t\",\"in_reply_to\":\"<a b@x>\"}",
          "in_reply_to: '<a b@x>' is not a message id" },
        { "{\"to\":\"a@x\",\"subject\":\"s\",\"text\":\"t\",\"references\":[\"<a@x>\",\"b\"]}",
          "references[1]: 'b' is not a message id" },
        { "{\"to\":\"a@x\",\"subject\":\"s\",\"text\":\"t\",\"references\":\"<a@x> junk\"}",
          "references: 'junk' is not a message id" },
        { "{\"to\":\"a@x\",\"subject\":\"s\",\"text\":\"t\",\"references\":\"  \"}",
          "references: holds no message id" },
        { "{\"to\":\"a@x\",\"subject\":\"s\",\"text\":\"t\",\"references\":{}}",
          "references: must be a string or a list, not object" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *p = pj(cases[i].json);
        Err err = { 0 };
        cr_assert_eq(mail_payload_check(p, &err), ERR_INVAL, "%s", cases[i].json);
        cr_assert_not_null(strstr(err.msg, cases[i].want), "%s: got '%s', want '%s'",
                           cases[i].json, err.msg, cases[i].want);
        json_decref(p);
    }
}

Test(mail_payload_check, sizes_and_encoding)
{
    Err err = { 0 };
    /* 101 recipients. */
    json_t *to = json_array();
    for (int i = 0; i < 101; i++)
        json_array_append_new(to, json_string("a@example.com"));
    json_t *p = json_pack("{s:o, s:s, s:s}", "to", to, "subject", "s", "text", "t");
    cr_assert_eq(mail_payload_check(p, &err), ERR_INVAL);
    cr_assert_str_eq(err.msg, "to: 101 addresses, more than 100");
    json_decref(p);
    /* A 321-byte address. */
    char addr[400];
    memset(addr, 'a', 301);
    strcpy(addr + 301, "@example.com.example");
    p = json_pack("{s:s, s:s, s:s}", "to", addr, "subject", "s", "text", "t");
    cr_assert_eq(mail_payload_check(p, &err), ERR_INVAL);
    cr_assert_str_eq(err.msg, "to: 321 bytes, more than 320");
    json_decref(p);
    /* A 65-byte local part. */
    memset(addr, 'a', 65);
    strcpy(addr + 65, "@example.com");
    p = json_pack("{s:s, s:s, s:s}", "to", addr, "subject", "s", "text", "t");
    cr_assert_eq(mail_payload_check(p, &err), ERR_INVAL);
    cr_assert_not_null(strstr(err.msg, "is not an email address"), "%s", err.msg);
    json_decref(p);
    /* 999-byte subject, text over 1 MiB. */
    char *big = malloc(MAIL_MAX_BODY + 2);
    memset(big, 's', MAIL_MAX_BODY + 1);
    big[MAIL_MAX_SUBJECT + 1] = '\0';
    p = json_pack("{s:s, s:s, s:s}", "to", "a@x", "subject", big, "text", "t");
    cr_assert_eq(mail_payload_check(p, &err), ERR_INVAL);
    cr_assert_str_eq(err.msg, "subject: 999 bytes, more than 998");
    json_decref(p);
    big[MAIL_MAX_SUBJECT + 1] = 's';
    big[MAIL_MAX_BODY + 1] = '\0';
    p = json_pack("{s:s, s:s, s:s}", "to", "a@x", "subject", "s", "text", big);
    cr_assert_eq(mail_payload_check(p, &err), ERR_INVAL);
    cr_assert_str_eq(err.msg, "text: 1048577 bytes, more than 1048576");
    json_decref(p);
    free(big);
    /* An embedded NUL. */
    p = json_pack("{s:s, s:s, s:s#}", "to", "a@x", "subject", "s", "text", "a\0b", (size_t)3);
    cr_assert_eq(mail_payload_check(p, &err), ERR_INVAL);
    cr_assert_str_eq(err.msg, "text: holds a NUL character");
    json_decref(p);
}

/* ---- settings and delivery without a server --------------------------- */

Test(mail_settings, from_config_reads_the_password_variable_now)
{
    Config cfg;
    core_config_defaults(&cfg);
    snprintf(cfg.smtp_url, sizeof cfg.smtp_url, "smtps://mail.example.com:465");
    snprintf(cfg.smtp_from, sizeof cfg.smtp_from, "bot@example.com");
    snprintf(cfg.smtp_user, sizeof cfg.smtp_user, "bot");
    snprintf(cfg.smtp_password_env, sizeof cfg.smtp_password_env, "BUREAU_TEST_SMTP_PW");
    cfg.smtp_starttls = 1;
    cfg.smtp_timeout_s = 5;
    MailSettings s;
    unsetenv("BUREAU_TEST_SMTP_PW");
    mail_settings_from_config(&cfg, &s);
    cr_assert(s.password_missing);
    setenv("BUREAU_TEST_SMTP_PW", "s3cret", 1);
    mail_settings_from_config(&cfg, &s);
    cr_assert(!s.password_missing);
    cr_assert_str_eq(s.password, "s3cret");
    cr_assert_str_eq(s.url, "smtps://mail.example.com:465");
    cr_assert_eq(s.starttls, MAIL_STARTTLS_TRY);
    cr_assert_eq(s.timeout_s, 5);
    cr_assert_eq(s.connect_timeout_s, 5);
    mail_settings_done(&s);
    cr_assert_str_eq(s.password, "");
    unsetenv("BUREAU_TEST_SMTP_PW");
    core_config_done(&cfg);
}

Test(mail_send, permanent_without_a_usable_configuration)
{
    json_t *p = text_payload("x");
    const char *msg = "Subject: x\r\n\r\nx\r\n";
    MailSettings s;
    memset(&s, 0, sizeof s);
    s.timeout_s = s.connect_timeout_s = 5;
    EffectOutcome out;
    snprintf(s.from, sizeof s.from, "bot@example.com");
    cr_assert_eq(mail_send(&s, NULL, p, msg, strlen(msg), &out), 0);
    cr_assert_eq(out.result, EFFECT_PERMANENT);
    cr_assert_str_eq(out.detail, "smtp.url is not set");
    snprintf(s.url, sizeof s.url, "http://127.0.0.1:1");
    cr_assert_eq(mail_send(&s, NULL, p, msg, strlen(msg), &out), 0);
    cr_assert_eq(out.result, EFFECT_PERMANENT);
    cr_assert_not_null(strstr(out.detail, "smtp:// or smtps://"), "%s", out.detail);
    snprintf(s.url, sizeof s.url, "smtp://127.0.0.1:1");
    s.from[0] = '\0';
    cr_assert_eq(mail_send(&s, NULL, p, msg, strlen(msg), &out), 0);
    cr_assert_eq(out.result, EFFECT_PERMANENT);
    cr_assert_str_eq(out.detail, "smtp.from is not set");
    snprintf(s.user, sizeof s.user, "bot");
    s.password_missing = true;
    cr_assert_eq(mail_send(&s, "bot@example.com", p, msg, strlen(msg), &out), 0);
    cr_assert_eq(out.result, EFFECT_PERMANENT);
    cr_assert_not_null(strstr(out.detail, "smtp.user"), "%s", out.detail);
    json_decref(p);
    p = pj("{\"to\":\"x\",\"subject\":\"s\",\"text\":\"t\"}");
    cr_assert_eq(mail_send(&s, "bot@example.com", p, msg, strlen(msg), &out), 0);
    cr_assert_eq(out.result, EFFECT_PERMANENT);
    cr_assert_not_null(strstr(out.detail, "invalid payload: to: 'x'"), "%s", out.detail);
    json_decref(p);
}
