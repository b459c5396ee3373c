/* Unit tests of the pull connectors: the GMime email parser on the fixtures
 * of tests/data/pull (quoted-printable, base64, ISO-8859-1 and UTF-8 encoded
 * words, multipart/alternative, HTML only, attachments, no Message-ID, a
 * malformed part), HTML to text, the contacts CSV import, mbox import run
 * twice, the connectors projection and the pull connector config. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/config.h"
#include "core/log.h"
#include "helpers.h"
#include "ledger/projection.h"
#include "pull/email.h"
#include "pull/pull.h"

static char *read_fixture(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tests/data/pull/%s", TEST_SRC_DIR, name);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "open %s", path);
    char *buf = malloc(1 << 20);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    buf[*len] = '\0';
    return buf;
}

static json_t *parse(const char *name, const char *data_dir, char **msgid)
{
    size_t len;
    char *raw = read_fixture(name, &len);
    PullEmailOptions o = { .data_dir = data_dir, .source = "test" };
    json_t *d = NULL;
    Err e = { 0 };
    int64_t date = 0;
    cr_assert_eq(pull_email_parse(raw, len, &o, &d, msgid, &date, &e), 0, "%s", e.msg);
    /* and the whole event passes the ledger's email.received rules */
    Event *ev = NULL;
    cr_assert_eq(pull_email_event(raw, len, &o, &ev, NULL, &e), 0, "%s: %s", name, e.msg);
    ledger_event_free(ev);
    free(raw);
    return d;
}

static const char *s(const json_t *d, const char *path)
{
    json_t *v = json_object_get(d, path);
    return json_string_value(v);
}

Test(email, quoted_printable_latin1)
{
    char *id = NULL;
    json_t *d = parse("0001-qp-latin1.eml", NULL, &id);
    cr_assert_str_eq(id, "qp-1@example.fr");
    free(id);
    json_t *from = json_object_get(d, "from");
    cr_assert_str_eq(s(from, "email"), "renee@example.fr");
    cr_assert_str_eq(s(from, "name"), "Renée Dupré");
    cr_assert_str_eq(s(d, "subject"), "Café crème");
    cr_assert_eq(json_array_size(json_object_get(d, "to")), 2);
    cr_assert_str_eq(s(json_array_get(json_object_get(d, "to"), 1), "name"), "Bob");
    cr_assert_str_eq(s(json_array_get(json_object_get(d, "cc"), 0), "email"), "carol@example.com");
    cr_assert_str_eq(s(json_array_get(json_object_get(d, "reply_to"), 0), "email"),
                     "sales@example.fr");
    cr_assert_str_eq(s(d, "in_reply_to"), "orig-1@example.com");
    cr_assert_eq(json_array_size(json_object_get(d, "references")), 2);
    cr_assert_str_eq(s(d, "date"), "2023-11-14T09:00:00.000Z");
    cr_assert(strstr(s(d, "text"), "le café est prêt. Suite sur la même ligne."), "%s", s(d, "text"));
    cr_assert_null(json_object_get(d, "warnings"));
    json_decref(d);
}

Test(email, base64_utf8)
{
    json_t *d = parse("0002-b64-utf8.eml", NULL, NULL);
    cr_assert_str_eq(s(json_object_get(d, "from"), "name"), "Jürgen Müller");
    cr_assert_str_eq(s(d, "subject"), "Grüße ✅");
    cr_assert_str_eq(s(d, "text"), "Grüße aus München ✅\nZweite Zeile\n");
    json_decref(d);
}

Test(email, alternative_prefers_plain)
{
    json_t *d = parse("0003-alternative.eml", NULL, NULL);
    cr_assert(strstr(s(d, "text"), "Plain version"));
    cr_assert(strstr(s(d, "html"), "<b>can you quote</b>"));
    cr_assert_eq(json_array_size(json_object_get(d, "attachments")), 0);
    json_decref(d);
}

Test(email, html_only_becomes_text)
{
    json_t *d = parse("0004-html-only.eml", NULL, NULL);
    const char *t = s(d, "text");
    cr_assert(strstr(t, "Hello there"), "%s", t);
    cr_assert(strstr(t, "First & second"), "%s", t);
    cr_assert(strstr(t, "café €5 ✓"), "%s", t);
    cr_assert(strstr(t, "one\ntwo"), "%s", t);
    cr_assert_null(strstr(t, "alert"), "%s", t);
    cr_assert_null(strstr(t, "color"), "%s", t);
    json_decref(d);
}

Test(email, attachments_are_listed_and_stored)
{
    char *dir = test_tmpdir();
    json_t *d = parse("0005-attachment.eml", dir, NULL);
    cr_assert_str_eq(s(d, "text"), "See the attached invoice.");
    json_t *att = json_object_get(d, "attachments");
    cr_assert_eq(json_array_size(att), 2);
    json_t *pdf = json_array_get(att, 0);
    cr_assert_str_eq(s(pdf, "name"), "invoice.pdf");
    cr_assert_str_eq(s(pdf, "type"), "application/pdf");
    const char content[] = "%PDF-1.4 fake invoice content\n";
    cr_assert_eq(json_integer_value(json_object_get(pdf, "size")), (json_int_t)strlen(content));
    char want[65];
    core_sha256_hex(content, strlen(content), want);
    cr_assert_str_eq(s(pdf, "sha256"), want);
    cr_assert(json_is_true(json_object_get(pdf, "stored")));
    char path[600];
    struct stat st;
    snprintf(path, sizeof path, "%s/files/%s", dir, want);
    cr_assert_eq(stat(path, &st), 0, "attachment not stored at %s", path);
    /* the raw message too, by its hash */
    snprintf(path, sizeof path, "%s/files/%s", dir, s(d, "raw_sha256"));
    cr_assert_eq(stat(path, &st), 0, "raw message not stored");
    cr_assert_str_eq(s(json_array_get(att, 1), "name"), "notes.txt");
    json_decref(d);
    test_rmdir(dir);
}

Test(email, missing_message_id_is_keyed_by_hash)
{
    size_t len;
    char *raw = read_fixture("0006-no-message-id.eml", &len);
    PullEmailOptions o = { .source = "test" };
    Event *ev = NULL;
    char *id = NULL;
    Err e = { 0 };
    cr_assert_eq(pull_email_event(raw, len, &o, &ev, &id, &e), 0, "%s", e.msg);
    cr_assert_str_eq(id, "");
    char hex[65], key[128], want[65];
    core_sha256_hex(raw, len, hex);
    snprintf(key, sizeof key, "email-sha256:%s", hex);
    core_sha256_hex(key, strlen(key), want);
    cr_assert_str_eq(ev->idempotency_key, want);
    cr_assert(strstr(ev->data, "\"message_id_missing\":true"));
    ledger_event_free(ev);
    free(id);
    free(raw);
}

Test(email, malformed_part_is_kept_with_a_warning)
{
    json_t *d = parse("0007-malformed.eml", NULL, NULL);
    cr_assert(strstr(s(d, "text"), "The text before the broken part."));
    json_t *w = json_object_get(d, "warnings");
    cr_assert(json_array_size(w) > 0, "no warning");
    json_decref(d);
}

Test(email, garbage_is_still_an_event)
{
    const char raw[] = "\x01\x02 this is not a mail at all \xff\xfe";
    PullEmailOptions o = { .source = "test" };
    Event *ev = NULL;
    Err e = { 0 };
    cr_assert_eq(pull_email_event(raw, sizeof raw - 1, &o, &ev, NULL, &e), 0, "%s", e.msg);
    cr_assert(strstr(ev->data, "\"warnings\":["), "%s", ev->data);
    cr_assert(strstr(ev->data, "unknown@unknown.invalid"), "%s", ev->data);
    ledger_event_free(ev);
}

Test(email, huge_body_is_cut_to_fit)
{
    Buf b;
    buf_init(&b, 0);
    buf_puts(&b, "From: a@example.com\r\nTo: b@example.com\r\nSubject: big\r\n"
                 "Message-ID: <big@example.com>\r\n\r\n");
    for (int i = 0; i < 40000; i++)
        buf_puts(&b, "0123456789012345678901234567890123456789\r\n");
    PullEmailOptions o = { .source = "test" };
    Event *ev = NULL;
    Err e = { 0 };
    cr_assert_eq(pull_email_event(b.ptr, b.len, &o, &ev, NULL, &e), 0, "%s", e.msg);
    cr_assert(ev->data_len < 1024 * 1024);
    cr_assert(strstr(ev->data, "\"body_truncated\":true"));
    ledger_event_free(ev);
    buf_done(&b);
}

Test(html, entities_and_blocks)
{
    const char h[] = "<p>a&lt;b &amp;&amp; c</p><br><div>d&#233;f</div><!-- gone --><b>x</b>  y";
    Buf out;
    buf_init(&out, 0);
    cr_assert_eq(pull_html_to_text(h, sizeof h - 1, &out), 0);
    cr_assert_str_eq(out.ptr, "a<b && c\n\ndéf\nx y");
    buf_done(&out);
}

/* ---- imports over a real ledger ---- */

static char *dir;
static Ledger *led;

static void setup(void)
{
    dir = test_tmpdir();
    Config cfg;
    core_config_defaults(&cfg);
    cfg.durability_normal = true;
    log_set_level(LOG_ERROR);
    ledger_projections_builtin();
    pull_projections_register();
    Err e = { 0 };
    cr_assert_eq(ledger_db_prepare(dir, &cfg, true, &e), 0, "%s", e.msg);
    LedgerOptions o = { .config = &cfg };
    cr_assert_eq(ledger_open(dir, &o, &led, &e), 0, "%s", e.msg);
}

static void teardown(void)
{
    ledger_close(led);
    test_rmdir(dir);
}

typedef struct Bad {
    int n;
    int64_t lines[8];
    char why[8][200];
} Bad;

static void on_bad(void *ctx, int64_t line, const char *why)
{
    Bad *b = ctx;
    if (b->n < 8) {
        b->lines[b->n] = line;
        snprintf(b->why[b->n], sizeof b->why[0], "%s", why);
    }
    b->n++;
}

static FILE *mem(const char *text)
{
    return fmemopen((void *)text, strlen(text), "r");
}

Test(import, contacts_csv, .init = setup, .fini = teardown)
{
    const char csv[] =
        "Email,First Name,Last Name,Company,Phone,Tags,Notes\r\n"
        "ann@example.com,Ann,Lee,Acme,+33 1 23 45 67 89,\"vip; lead\",\"said \"\"hi\"\"\"\r\n"
        "\r\n"
        "not-an-email,Bob,,,,,\r\n"
        "carol@example.com,Carol,,\"Multi\nLine Ltd\",,,\r\n"
        "dan@example.com,Dan\r\n"
        "Eve@Example.com,Eve,,,,,\r\n";
    Bad bad = { 0 };
    PullImportStats st;
    Err e = { 0 };
    FILE *f = mem(csv);
    cr_assert_eq(pull_import_contacts(led, f, 0, "import", NULL, on_bad, &bad, &st, &e), 0, "%s",
                 e.msg);
    fclose(f);
    cr_assert_eq(st.added, 3);
    cr_assert_eq(st.bad, 2);
    cr_assert_eq(bad.lines[0], 4);
    cr_assert(strstr(bad.why[0], "no valid email"), "%s", bad.why[0]);
    cr_assert_eq(bad.lines[1], 7, "line %lld", (long long)bad.lines[1]);
    cr_assert(strstr(bad.why[1], "2 fields where the header has 7"), "%s", bad.why[1]);
    /* again: nothing new */
    f = mem(csv);
    cr_assert_eq(pull_import_contacts(led, f, 0, "import", NULL, NULL, NULL, &st, &e), 0);
    fclose(f);
    cr_assert_eq(st.added, 0);
    cr_assert_eq(st.duplicates, 3);
    Store *rd = NULL;
    cr_assert_eq(ledger_reader_open(led, &rd, &e), 0);
    Event *ev = NULL;
    cr_assert_eq(ledger_event_get(rd, 1, NULL, &ev, &e), 0, "%s", e.msg);
    cr_assert_str_eq(ev->type, "contact.imported");
    json_t *d = json_loads(ev->data, 0, NULL);
    cr_assert_str_eq(s(d, "email"), "ann@example.com");
    cr_assert_str_eq(s(d, "name"), "Ann Lee");
    cr_assert_str_eq(s(d, "company"), "Acme");
    cr_assert_eq(json_array_size(json_object_get(d, "tags")), 2);
    cr_assert_str_eq(s(json_object_get(d, "fields"), "Notes"), "said \"hi\"");
    json_decref(d);
    ledger_event_free(ev);
    store_close(rd);
}

Test(import, csv_errors_name_the_line, .init = setup, .fini = teardown)
{
    PullImportStats st;
    Err e = { 0 };
    FILE *f = mem("name,phone\nann,1\n");
    cr_assert_lt(pull_import_contacts(led, f, 0, "import", NULL, NULL, NULL, &st, &e), 0);
    cr_assert(strstr(e.msg, "line 1: no email column"), "%s", e.msg);
    fclose(f);
    f = mem("email,name\nann@example.com,\"unclosed\n");
    cr_assert_lt(pull_import_contacts(led, f, 0, "import", NULL, NULL, NULL, &st, &e), 0);
    cr_assert(strstr(e.msg, "line 2: a quoted field is not closed"), "%s", e.msg);
    fclose(f);
    f = mem("email,name\nann@example.com,an\"n\n");
    cr_assert_lt(pull_import_contacts(led, f, 0, "import", NULL, NULL, NULL, &st, &e), 0);
    cr_assert(strstr(e.msg, "line 2, field 2: a quote inside"), "%s", e.msg);
    fclose(f);
}

Test(import, mbox_twice, .init = setup, .fini = teardown)
{
    Buf b;
    buf_init(&b, 0);
    for (int i = 0; i < 300; i++)
        buf_printf(&b,
                   "From sender@example.com Mon Jan  1 00:00:00 2024\n"
                   "From: s%d@example.com\nTo: ops@example.com\nSubject: n%d\n"
                   "Message-ID: <m%d@example.com>\n\nbody %d\n>From the escaped line\n\n",
                   i % 7, i, i, i);
    PullImportStats st;
    Err e = { 0 };
    FILE *f = fmemopen(b.ptr, b.len, "r");
    cr_assert_eq(pull_import_mbox(led, dir, f, (int64_t)b.len, "import", 0, NULL, NULL, &st, &e),
                 0, "%s", e.msg);
    fclose(f);
    cr_assert_eq(st.seen, 300);
    cr_assert_eq(st.added, 300);
    f = fmemopen(b.ptr, b.len, "r");
    cr_assert_eq(pull_import_mbox(led, dir, f, (int64_t)b.len, "import", 0, NULL, NULL, &st, &e),
                 0);
    fclose(f);
    cr_assert_eq(st.added, 0);
    cr_assert_eq(st.duplicates, 300);
    Store *rd = NULL;
    cr_assert_eq(ledger_reader_open(led, &rd, &e), 0);
    Event *ev = NULL;
    cr_assert_eq(ledger_event_get(rd, 300, NULL, &ev, &e), 0);
    json_t *d = json_loads(ev->data, 0, NULL);
    cr_assert_str_eq(s(d, "text"), "body 299\nFrom the escaped line\n");
    json_decref(d);
    ledger_event_free(ev);
    store_close(rd);
    buf_done(&b);
}

Test(import, mbox_long_lines_and_the_cap, .init = setup, .fini = teardown)
{
    Buf b;
    buf_init(&b, 0);
    /* a 150 KB line (read in 64 KiB pieces), then a second message */
    buf_puts(&b, "From a@example.com Mon Jan  1 00:00:00 2024\nFrom: a@example.com\n"
                 "To: b@example.com\nSubject: long\nMessage-ID: <long@example.com>\n\n");
    for (int i = 0; i < 15000; i++)
        buf_puts(&b, "0123456789");
    buf_puts(&b, "\nFrom the middle of a line is no separator\n\n");
    buf_puts(&b, "From a@example.com Mon Jan  1 00:00:00 2024\nFrom: a@example.com\n"
                 "To: b@example.com\nSubject: capped\nMessage-ID: <cap@example.com>\n\n");
    for (int i = 0; i < 1000; i++)
        buf_puts(&b, "a body line that is longer than it needs to be, again and again\n");
    buf_puts(&b, "short tail\n");
    PullImportStats st;
    Err e = { 0 };
    FILE *f = fmemopen(b.ptr, b.len, "r");
    cr_assert_eq(pull_import_mbox(led, dir, f, (int64_t)b.len, "import", 300000, NULL, NULL, &st,
                                  &e),
                 0, "%s", e.msg);
    fclose(f);
    cr_assert_eq(st.seen, 2);
    cr_assert_eq(st.bytes, (int64_t)b.len);
    Store *rd = NULL;
    cr_assert_eq(ledger_reader_open(led, &rd, &e), 0);
    Event *ev = NULL;
    cr_assert_eq(ledger_event_get(rd, 1, NULL, &ev, &e), 0);
    json_t *d = json_loads(ev->data, 0, NULL);
    const char *t = s(d, "text");
    cr_assert_eq(strspn(t, "0123456789"), 150000);
    cr_assert(strstr(t, "From the middle of a line"));
    json_decref(d);
    ledger_event_free(ev);
    /* a message over a cap of 4 KiB keeps its beginning only */
    Buf c;
    buf_init(&c, 0);
    buf_puts(&c, "From a@example.com Mon Jan  1 00:00:00 2024\nFrom: a@example.com\n"
                 "To: b@example.com\nSubject: capped\nMessage-ID: <cap2@example.com>\n\n");
    for (int i = 0; i < 1000; i++)
        buf_puts(&c, "a body line that is longer than it needs to be, again and again\n");
    buf_puts(&c, "short tail\n");
    f = fmemopen(c.ptr, c.len, "r");
    cr_assert_eq(pull_import_mbox(led, dir, f, 0, "import", 4096, NULL, NULL, &st, &e), 0);
    fclose(f);
    buf_done(&c);
    cr_assert_eq(st.seen, 1);
    cr_assert_eq(st.added, 1);
    cr_assert_eq(ledger_event_get(rd, 3, NULL, &ev, &e), 0);
    cr_assert_str_eq(ev->type, "email.received");
    cr_assert(strstr(ev->data, "larger than the limit"), "%.300s", ev->data);
    cr_assert_null(strstr(ev->data, "short tail"));
    ledger_event_free(ev);
    store_close(rd);
    buf_done(&b);
}

Test(import, not_an_mbox, .init = setup, .fini = teardown)
{
    PullImportStats st;
    Err e = { 0 };
    FILE *f = mem("\nSubject: hi\n\nbody\n");
    cr_assert_lt(pull_import_mbox(led, dir, f, 0, "import", 0, NULL, NULL, &st, &e), 0);
    cr_assert(strstr(e.msg, "line 2: not an mbox file"), "%s", e.msg);
    fclose(f);
}

/* ---- the connectors projection and replay ---- */

static char *write_yaml(const char *d, const char *text)
{
    char *path = malloc(strlen(d) + 32);
    sprintf(path, "%s/bureau.yaml", d);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

Test(connectors, cursor_moves_only_from_the_current_one, .init = setup, .fini = teardown)
{
    Config cfg;
    core_config_defaults(&cfg);
    char *path = write_yaml(dir, "connectors:\n  - name: mail\n    kind: imap\n"
                                 "    url: imap://127.0.0.1:10143\n    user: u\n    password: p\n"
                                 "    starttls: off\n");
    Err e = { 0 };
    cr_assert_eq(core_config_load(path, &cfg, &e), 0, "%s", e.msg);
    json_t *cur = json_pack("{s:{s:{s:i, s:i}}}", "folders", "INBOX", "uidvalidity", 7, "uid", 5);
    cr_assert_eq(pull_replay(led, &cfg, "mail", cur, &e), 0, "%s", e.msg);
    json_decref(cur);
    Store *rd = NULL;
    cr_assert_eq(ledger_reader_open(led, &rd, &e), 0);
    json_t *list = NULL;
    cr_assert_eq(pull_status(rd, &cfg, 0, &list, &e), 0, "%s", e.msg);
    json_t *c = json_array_get(list, 0);
    cr_assert_str_eq(s(c, "name"), "mail");
    cr_assert_str_eq(s(c, "kind"), "imap");
    json_t *inbox = json_object_get(json_object_get(json_object_get(c, "cursor"), "folders"),
                                    "INBOX");
    cr_assert_eq(json_integer_value(json_object_get(inbox, "uid")), 5);
    json_decref(list);
    /* a wrong shape is refused */
    cur = json_pack("{s:i}", "uid", 3);
    cr_assert_eq(pull_replay(led, &cfg, "mail", cur, &e), ERR_INVAL);
    json_decref(cur);
    json_t *empty = json_object();
    cr_assert_eq(pull_replay(led, &cfg, "nope", empty, &e), ERR_NOTFOUND);
    json_decref(empty);
    store_close(rd);
    core_config_done(&cfg);
    free(path);
}

/* ---- config ---- */

static void config_error(const char *yaml, const char *want)
{
    char *d = test_tmpdir();
    char *path = write_yaml(d, yaml);
    Config cfg;
    core_config_defaults(&cfg);
    Err e = { 0 };
    cr_assert_eq(core_config_load(path, &cfg, &e), ERR_CONFIG, "accepted: %s", yaml);
    cr_assert(strstr(e.msg, want), "got '%s', want '%s'", e.msg, want);
    cr_assert(strstr(e.msg, "bureau.yaml:"), "%s", e.msg);
    core_config_done(&cfg);
    free(path);
    test_rmdir(d);
}

Test(config, pull_connectors)
{
    char *d = test_tmpdir();
    char *path = write_yaml(d, "connectors:\n  - name: mail\n    kind: imap\n"
                               "    url: imaps://imap.example.com:993\n    user: me\n"
                               "    password_env: PW\n    folders: [INBOX, Archive]\n"
                               "    sent_folder: Sent\n    interval_s: 60\n"
                               "  - name: cal\n    kind: ics\n    path: /tmp/x.ics\n"
                               "    horizon_days: 30\n");
    Config cfg;
    core_config_defaults(&cfg);
    Err e = { 0 };
    cr_assert_eq(core_config_load(path, &cfg, &e), 0, "%s", e.msg);
    const ConnectorConfig *c = core_config_connector(&cfg, "mail");
    cr_assert_eq(c->kind, CONNECTOR_IMAP);
    cr_assert_eq(c->n_folders, 2);
    cr_assert_str_eq(c->folders[1], "Archive");
    cr_assert_str_eq(c->sent_folder, "Sent");
    cr_assert(c->tls_verify);
    cr_assert(!c->starttls_off);
    cr_assert_eq(c->interval_s, 60);
    c = core_config_connector(&cfg, "cal");
    cr_assert_eq(c->kind, CONNECTOR_ICS);
    cr_assert_eq(c->horizon_days, 30);
    core_config_done(&cfg);
    free(path);
    test_rmdir(d);
    /* the default folder */
    d = test_tmpdir();
    path = write_yaml(d, "connectors:\n  - {name: m, kind: imap, url: \"imap://localhost:143\", "
                         "user: u, password: p}\n");
    core_config_defaults(&cfg);
    cr_assert_eq(core_config_load(path, &cfg, &e), 0, "%s", e.msg);
    cr_assert_eq(cfg.connectors[0].n_folders, 1);
    cr_assert_str_eq(cfg.connectors[0].folders[0], "INBOX");
    core_config_done(&cfg);
    free(path);
    test_rmdir(d);
}

Test(config, pull_connector_errors)
{
    config_error("connectors:\n  - name: m\n    kind: imap\n    user: u\n    password: p\n",
                 ":2:11: connectors[0] (m): 'url' is required");
    config_error("connectors:\n  - name: m\n    kind: imap\n    url: http://x\n    user: u\n"
                 "    password: p\n",
                 ":4:10: connectors[0].url: 'http://x' is not imap://");
    config_error("connectors:\n  - name: m\n    kind: imap\n    url: imap://mail.example.com\n"
                 "    user: u\n    password: p\n    starttls: off\n",
                 ":7:15: connectors[0].starttls: 'off' sends the password in clear");
    config_error("connectors:\n  - name: m\n    kind: imap\n    url: imap://127.0.0.1\n"
                 "    user: u\n",
                 "give exactly one of 'password' or 'password_env'");
    config_error("connectors:\n  - name: m\n    kind: imap\n    url: imap://127.0.0.1\n"
                 "    user: u\n    password: p\n    folders: []\n",
                 ":7:5: connectors[0].folders: a list of 1-16 folder names");
    config_error("connectors:\n  - name: m\n    kind: imap\n    url: imap://127.0.0.1\n"
                 "    user: u\n    password: p\n    folders: [INBOX, INBOX]\n",
                 "'INBOX' is listed twice");
    config_error("connectors:\n  - name: m\n    kind: imap\n    url: imap://127.0.0.1\n"
                 "    user: u\n    password: p\n    secret: x\n",
                 ":7:5: connectors[0]: unknown key 'secret' for kind imap");
    config_error("connectors:\n  - name: c\n    kind: ics\n    url: https://x/a.ics\n"
                 "    path: /a.ics\n",
                 "give exactly one of 'url' or 'path'");
    config_error("connectors:\n  - name: m\n    kind: imap\n    url: imap://127.0.0.1\n"
                 "    user: u\n    password: p\n    interval_s: 0\n",
                 ":7:17: 'connectors[0].interval_s' must be an integer in 1..86400");
}
