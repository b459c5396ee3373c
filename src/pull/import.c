/* Imports for onboarding: an mbox file as email.received (through the same
 * parser as IMAP) and a contacts CSV as contact.imported. Both stream their
 * input (one message or one row in memory at a time), append in batches and
 * rely on idempotency keys, so running an import again adds nothing. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/json.h"
#include "ingest/ingest.h"
#include "pull/email.h"
#include "pull/pull_int.h"

#define IMPORT_BATCH 256
#define MBOX_PIECE (64 * 1024) /* a longer line is read in pieces of this size */
#define PROGRESS_NS 500000000LL

typedef struct Batch {
    Ledger *l;
    Event *ev[IMPORT_BATCH];
    size_t n;
    PullImportStats *st;
    const char *sync_dir; /* files stored unsynced in this data dir: sync them first */
} Batch;

static int flush(Batch *b, Err *err)
{
    if (b->n == 0)
        return 0;
    LedgerAppendResult res[IMPORT_BATCH];
    size_t n = b->n;
    b->n = 0;
    int rc = b->sync_dir ? ingest_files_sync(b->sync_dir, err) : 0;
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            ledger_event_free(b->ev[i]);
        return rc;
    }
    rc = ledger_append(b->l, b->ev, n, res, err);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (res[i].duplicate)
            b->st->duplicates++;
        else
            b->st->added++;
    }
    return 0;
}

static int add(Batch *b, Event *ev, Err *err)
{
    b->ev[b->n++] = ev;
    return b->n == IMPORT_BATCH ? flush(b, err) : 0;
}

static void progress_maybe(PullProgressFn fn, void *ctx, const PullImportStats *st,
                           int64_t total, int64_t *last_ns, bool force)
{
    if (!fn)
        return;
    int64_t now = core_time_mono_ns();
    if (!force && now - *last_ns < PROGRESS_NS)
        return;
    *last_ns = now;
    fn(ctx, st, total);
}

/* ---- mbox ---- */

static bool from_line(const char *s, size_t len)
{
    return len >= 5 && !memcmp(s, "From ", 5);
}

typedef struct Mbox {
    Batch b;
    const char *data_dir;
    const char *source;
    size_t max;
    Buf msg;
    size_t full;   /* the message's size, counting what the cap dropped */
    bool cut;      /* the cap was reached: the rest is counted, not kept */
} Mbox;

static int mbox_message(Mbox *x, Err *err)
{
    if (x->full == 0)
        return 0;
    /* the blank line before the next "From " belongs to the separator */
    if (x->msg.len && x->msg.ptr[x->msg.len - 1] == '\n' && x->full == x->msg.len) {
        x->msg.ptr[--x->msg.len] = '\0';
        x->full--;
    }
    PullEmailOptions eo = {
        .data_dir = x->data_dir,
        .source = x->source,
        .full_size = x->full > x->msg.len ? x->full : 0,
        .limits = ledger_limits(x->b.l),
        .defer_sync = x->data_dir != NULL, /* one sync per batch, in flush() */
    };
    Event *ev = NULL;
    int rc = pull_email_event(buf_cstr(&x->msg), x->msg.len, &eo, &ev, NULL, err);
    buf_clear(&x->msg);
    x->full = 0;
    x->cut = false;
    if (rc < 0)
        return rc;
    x->b.st->seen++;
    if (strstr(ev->data, "\"warnings\":"))
        x->b.st->warnings++;
    return add(&x->b, ev, err);
}

/* A bounded line reader: each piece is a whole line (ending in '\n'), or
 * MBOX_PIECE bytes of a longer one, or the end of the file. */
typedef struct Pieces {
    FILE *in;
    char buf[MBOX_PIECE];
    size_t pos, len;
    bool eof;
} Pieces;

static int next_piece(Pieces *r, const char **ret, size_t *ret_len)
{
    for (;;) {
        char *nl = memchr(r->buf + r->pos, '\n', r->len - r->pos);
        if (nl || r->len - r->pos == sizeof r->buf || (r->eof && r->len > r->pos)) {
            size_t n = nl ? (size_t)(nl - (r->buf + r->pos)) + 1 : r->len - r->pos;
            *ret = r->buf + r->pos;
            *ret_len = n;
            r->pos += n;
            return 1;
        }
        if (r->eof)
            return 0;
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
        size_t got = fread(r->buf + r->len, 1, sizeof r->buf - r->len, r->in);
        r->len += got;
        if (got == 0) {
            if (ferror(r->in))
                return -1;
            r->eof = true;
        }
    }
}

int pull_import_mbox(Ledger *l, const char *data_dir, FILE *in, int64_t total_bytes,
                     const char *source, size_t max_message_bytes, PullProgressFn progress,
                     void *ctx, PullImportStats *st, Err *err)
{
    memset(st, 0, sizeof *st);
    Mbox x = { .b = { .l = l, .st = st, .sync_dir = data_dir }, .data_dir = data_dir,
               .source = source,
               .max = max_message_bytes ? max_message_bytes : 25u << 20 };
    buf_init(&x.msg, 0);
    Pieces *r = xcalloc(1, sizeof *r);
    r->in = in;
    const char *line;
    size_t len;
    int rc = 0, got;
    bool started = false, prev_blank = true, bol = true;
    int64_t last_ns = core_time_mono_ns();
    int64_t lineno = 0;
    while ((got = next_piece(r, &line, &len)) > 0) {
        bool at_bol = bol;
        bol = line[len - 1] == '\n';
        st->bytes += (int64_t)len;
        if (at_bol)
            lineno++;
        if (at_bol && from_line(line, len) && prev_blank) {
            if ((rc = mbox_message(&x, err)) < 0)
                break;
            started = true;
            prev_blank = false;
            /* the rest of a very long From line is not part of the message */
            while (!bol && (got = next_piece(r, &line, &len)) > 0) {
                st->bytes += (int64_t)len;
                bol = line[len - 1] == '\n';
            }
            progress_maybe(progress, ctx, st, total_bytes, &last_ns, false);
            continue;
        }
        if (!started) {
            if (!at_bol || len > 2 || (line[0] != '\n' && line[0] != '\r')) {
                rc = err_set(err, ERR_INVAL, "line %lld: not an mbox file (it must begin with a "
                                             "\"From \" line)", (long long)lineno);
                break;
            }
            continue;
        }
        prev_blank = at_bol && bol && (len == 1 || (len == 2 && line[0] == '\r'));
        /* mboxrd: ">From " and ">>From " lose one '>' */
        const char *p = line;
        size_t k = 0;
        while (at_bol && k < len && p[k] == '>')
            k++;
        if (k > 0 && from_line(p + k, len - k)) {
            p++;
            len--;
        }
        x.full += len;
        /* over the cap, the message keeps its beginning (the header) only */
        if (!x.cut && x.msg.len + len <= x.max)
            buf_append(&x.msg, p, len);
        else
            x.cut = true;
    }
    if (rc == 0 && got < 0)
        rc = err_set(err, ERR_IO, "read: %s", strerror(errno));
    if (rc == 0)
        rc = mbox_message(&x, err);
    if (rc == 0)
        rc = flush(&x.b, err);
    else
        for (size_t i = 0; i < x.b.n; i++)
            ledger_event_free(x.b.ev[i]);
    progress_maybe(progress, ctx, st, total_bytes, &last_ns, true);
    free(r);
    buf_done(&x.msg);
    return rc;
}

/* ---- contacts CSV ---- */

/* Reads one record (RFC 4180: quoted fields may hold commas, quotes as ""
 * and line breaks). *ret_lines counts the physical lines it took. Returns 1
 * with fields, 0 at the end, <0 on error (naming the line). */
typedef struct Csv {
    FILE *in;
    int64_t line;      /* lines read so far */
    int64_t bytes;
    char *fields[PULL_CSV_MAX_COLUMNS];
    size_t nf;
    Buf rec;           /* the fields, NUL-separated */
} Csv;

static int csv_record(Csv *c, Err *err)
{
    buf_clear(&c->rec);
    c->nf = 0;
    size_t starts[PULL_CSV_MAX_COLUMNS];
    bool quoted = false, field_quoted = false, any = false;
    int64_t first = c->line + 1;
    size_t field_len = 0;
    starts[0] = 0;
    size_t nf = 1;
    for (;;) {
        int ch = fgetc(c->in);
        if (ch == EOF) {
            if (ferror(c->in))
                return err_set(err, ERR_IO, "read: %s", strerror(errno));
            if (quoted)
                return err_set(err, ERR_INVAL, "line %lld: a quoted field is not closed",
                               (long long)first);
            if (!any)
                return 0;
            c->line++;
            break;
        }
        c->bytes++;
        any = true;
        if (c->rec.len >= PULL_CSV_MAX_LINE)
            return err_set(err, ERR_TOOBIG, "line %lld: a record longer than %d bytes",
                           (long long)first, PULL_CSV_MAX_LINE);
        if (quoted) {
            if (ch == '"') {
                int nx = fgetc(c->in);
                if (nx == '"') {
                    c->bytes++;
                    buf_putc(&c->rec, '"');
                    field_len++;
                } else {
                    quoted = false;
                    if (nx != EOF)
                        ungetc(nx, c->in);
                }
            } else {
                if (ch == '\n')
                    c->line++;
                buf_putc(&c->rec, (char)ch);
                field_len++;
            }
            continue;
        }
        if (ch == '"') {
            if (field_len != 0 || field_quoted)
                return err_set(err, ERR_INVAL, "line %lld, field %zu: a quote inside an unquoted "
                                               "field (quote the whole field and double the quote)",
                               (long long)c->line + 1, nf);
            quoted = field_quoted = true;
            continue;
        }
        if (ch == ',') {
            if (nf == PULL_CSV_MAX_COLUMNS)
                return err_set(err, ERR_TOOBIG, "line %lld: more than %d columns",
                               (long long)first, PULL_CSV_MAX_COLUMNS);
            buf_putc(&c->rec, '\0');
            starts[nf++] = c->rec.len;
            field_len = 0;
            field_quoted = false;
            continue;
        }
        if (ch == '\r')
            continue;
        if (ch == '\n') {
            c->line++;
            break;
        }
        if (field_quoted)
            return err_set(err, ERR_INVAL, "line %lld, field %zu: text after a closing quote",
                           (long long)c->line + 1, nf);
        buf_putc(&c->rec, (char)ch);
        field_len++;
    }
    buf_putc(&c->rec, '\0');
    for (size_t i = 0; i < nf; i++)
        c->fields[i] = c->rec.ptr + starts[i];
    c->nf = nf;
    return 1;
}

typedef enum Col { COL_OTHER, COL_EMAIL, COL_NAME, COL_FIRST, COL_LAST, COL_COMPANY, COL_PHONE,
                   COL_TAGS } Col;

static Col column_of(const char *h)
{
    char k[64];
    size_t n = 0;
    for (const char *p = h; *p && n + 1 < sizeof k; p++)
        if (isalnum((unsigned char)*p))
            k[n++] = (char)tolower((unsigned char)*p);
    k[n] = '\0';
    static const struct {
        const char *k;
        Col c;
    } map[] = {
        { "email", COL_EMAIL },         { "emailaddress", COL_EMAIL }, { "mail", COL_EMAIL },
        { "email1", COL_EMAIL },        { "primaryemail", COL_EMAIL }, { "name", COL_NAME },
        { "fullname", COL_NAME },       { "displayname", COL_NAME },  { "firstname", COL_FIRST },
        { "givenname", COL_FIRST },     { "lastname", COL_LAST },     { "surname", COL_LAST },
        { "familyname", COL_LAST },     { "company", COL_COMPANY },   { "organization", COL_COMPANY },
        { "organisation", COL_COMPANY }, { "phone", COL_PHONE },      { "telephone", COL_PHONE },
        { "mobile", COL_PHONE },        { "phonenumber", COL_PHONE }, { "tags", COL_TAGS },
        { "labels", COL_TAGS },         { "groups", COL_TAGS },
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(map[i].k, k))
            return map[i].c;
    return COL_OTHER;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static bool email_ok(const char *s)
{
    const char *at = strchr(s, '@');
    size_t len = strlen(s);
    if (!at || at == s || !at[1] || strchr(at + 1, '@') || len > 254 || !strchr(at + 1, '.'))
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ')
            return false;
    return true;
}

int pull_import_contacts(Ledger *l, FILE *in, int64_t total_bytes, const char *source,
                         PullProgressFn progress, PullBadRowFn bad, void *ctx,
                         PullImportStats *st, Err *err)
{
    memset(st, 0, sizeof *st);
    Csv c = { .in = in };
    buf_init(&c.rec, PULL_CSV_MAX_LINE + 16);
    Batch b = { .l = l, .st = st };
    char *headers[PULL_CSV_MAX_COLUMNS] = { 0 };
    Col cols[PULL_CSV_MAX_COLUMNS];
    size_t nh = 0;
    int64_t last_ns = core_time_mono_ns();
    int rc = csv_record(&c, err);
    if (rc == 0)
        rc = err_set(err, ERR_INVAL, "line 1: the file is empty (the first row must name the "
                                     "columns)");
    if (rc < 0)
        goto out;
    bool has_email = false;
    for (size_t i = 0; i < c.nf; i++) {
        char *h = trim(c.fields[i]);
        if (!*h || !core_utf8_valid(h, strlen(h), NULL)) {
            rc = err_set(err, ERR_INVAL, "line 1, column %zu: a column needs a UTF-8 name", i + 1);
            goto out;
        }
        for (size_t j = 0; j < nh; j++)
            if (!strcmp(headers[j], h)) {
                rc = err_set(err, ERR_INVAL, "line 1: column '%.64s' is named twice", h);
                goto out;
            }
        headers[nh] = xstrdup(h);
        cols[nh] = column_of(h);
        has_email |= cols[nh] == COL_EMAIL;
        nh++;
    }
    if (!has_email) {
        rc = err_set(err, ERR_INVAL, "line 1: no email column (one named email, e-mail, mail or "
                                     "email address)");
        goto out;
    }
    for (;;) {
        int64_t line = c.line + 1;
        if ((rc = csv_record(&c, err)) <= 0)
            break;
        st->bytes = c.bytes;
        if (c.nf == 1 && !*c.fields[0])
            continue; /* a blank line */
        st->seen++;
        char why[200] = "";
        if (c.nf != nh)
            snprintf(why, sizeof why, "%zu fields where the header has %zu", c.nf, nh);
        json_t *d = json_pack("{s:[], s:{}}", "tags", "fields");
        const char *email = NULL, *first = NULL, *lastn = NULL, *name = NULL;
        for (size_t i = 0; i < c.nf && i < nh && !*why; i++) {
            char *v = trim(c.fields[i]);
            if (!core_utf8_valid(v, strlen(v), NULL)) {
                snprintf(why, sizeof why, "column '%.64s' is not UTF-8", headers[i]);
                break;
            }
            if (!*v)
                continue;
            switch (cols[i]) {
            case COL_EMAIL:
                if (!email) {
                    email = v;
                    break;
                }
                json_object_set_new(json_object_get(d, "fields"), headers[i], json_string(v));
                break;
            case COL_NAME: name = v; break;
            case COL_FIRST: first = v; break;
            case COL_LAST: lastn = v; break;
            case COL_COMPANY: json_object_set_new(d, "company", json_string(v)); break;
            case COL_PHONE: json_object_set_new(d, "phone", json_string(v)); break;
            case COL_TAGS: {
                char *save = NULL;
                for (char *t = strtok_r(v, ";,", &save); t; t = strtok_r(NULL, ";,", &save)) {
                    t = trim(t);
                    if (*t && json_array_size(json_object_get(d, "tags")) < 64)
                        json_array_append_new(json_object_get(d, "tags"), json_string(t));
                }
                break;
            }
            default:
                json_object_set_new(json_object_get(d, "fields"), headers[i], json_string(v));
            }
        }
        if (!*why && (!email || !email_ok(email)))
            snprintf(why, sizeof why, "no valid email address%s%.100s%s", email ? " ('" : "",
                     email ? email : "", email ? "')" : "");
        if (*why) {
            json_decref(d);
            st->bad++;
            if (bad)
                bad(ctx, line, why);
            continue;
        }
        char lower[256];
        size_t el = strlen(email);
        for (size_t i = 0; i <= el; i++)
            lower[i] = (char)tolower((unsigned char)email[i]);
        json_object_set_new(d, "email", json_string(lower));
        if (name) {
            json_object_set_new(d, "name", json_string(name));
        } else if (first || lastn) {
            char full[512];
            snprintf(full, sizeof full, "%s%s%s", first ? first : "", first && lastn ? " " : "",
                     lastn ? lastn : "");
            json_object_set_new(d, "name", json_string(full));
        }
        /* the key: the contact and what the row says, so an unchanged row is
         * stored once and a changed one is a new import */
        Buf canon;
        buf_init(&canon, 0);
        core_json_canonical(d, &canon);
        char hash[CORE_SHA256_HEX + 1], key[400];
        core_sha256_hex(canon.ptr, canon.len, hash);
        buf_done(&canon);
        snprintf(key, sizeof key, "contact:%s:%s", lower, hash);
        json_t *obj = json_pack("{s:s, s:s, s:s, s:o}", "type", "contact.imported", "source",
                                source, "idempotency_key", key, "data", d);
        Event *ev = NULL;
        Err e2 = { 0 };
        if (ledger_event_from_json(obj, ledger_limits(l), &ev, &e2) < 0) {
            json_decref(obj);
            st->bad++;
            if (bad)
                bad(ctx, line, e2.msg);
            continue;
        }
        json_decref(obj);
        if ((rc = add(&b, ev, err)) < 0)
            break;
        progress_maybe(progress, ctx, st, total_bytes, &last_ns, false);
    }
    if (rc >= 0)
        rc = flush(&b, err);
    else
        for (size_t i = 0; i < b.n; i++)
            ledger_event_free(b.ev[i]);
    st->bytes = c.bytes;
    progress_maybe(progress, ctx, st, total_bytes, &last_ns, true);
out:
    for (size_t i = 0; i < nh; i++)
        free(headers[i]);
    buf_done(&c.rec);
    return rc < 0 ? rc : 0;
}
