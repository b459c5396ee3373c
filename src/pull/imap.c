/* kind: imap. libcurl makes the connection (TLS or STARTTLS, certificate
 * checks, LOGIN/AUTHENTICATE: CURLOPT_CONNECT_ONLY stops after the login);
 * this file then speaks the few commands a poll needs over it: EXAMINE (read
 * only, so nothing is marked \Seen), UID SEARCH, UID FETCH of RFC822.SIZE
 * and BODY.PEEK[]. Responses are read line by line with their literals, each
 * bounded.
 *
 * The cursor is {"folders": {NAME: {"uidvalidity": V, "uid": LAST}}}; a
 * poll reads the UIDs above LAST in batches of PULL_BATCH, and each batch's
 * events are appended with the moved cursor in one transaction. */
#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"
#include "effect/curl.h"
#include "ingest/ingest.h"
#include "pull/email.h"
#include "pull/pull_int.h"

#define MAX_LINE (64 * 1024)
#define MAX_SEARCH (16 * 1024 * 1024) /* a SEARCH answer: about 2M UIDs */

typedef struct Imap {
    CURL *curl;
    curl_socket_t sock;
    char rbuf[16384];
    size_t rpos, rlen;
    unsigned tag;
    Buf line;      /* the current response line, literals replaced by "{}" */
    Buf literal;   /* the first literal of the current response */
    bool literal_cut;
    size_t literal_size;
} Imap;

static int wait_sock(Imap *m, bool out, Err *err)
{
    struct pollfd p = { .fd = (int)m->sock, .events = out ? POLLOUT : POLLIN };
    int n = poll(&p, 1, PULL_IO_TIMEOUT_MS);
    if (n == 0)
        return err_set(err, ERR_IO, "imap: no answer from the server within %d s",
                       PULL_IO_TIMEOUT_MS / 1000);
    if (n < 0)
        return err_set(err, ERR_IO, "imap: poll: %s", strerror(errno));
    return 0;
}

static int fill(Imap *m, Err *err)
{
    for (;;) {
        size_t got = 0;
        CURLcode c = curl_easy_recv(m->curl, m->rbuf, sizeof m->rbuf, &got);
        if (c == CURLE_OK) {
            if (got == 0)
                return err_set(err, ERR_IO, "imap: the server closed the connection");
            m->rpos = 0;
            m->rlen = got;
            return 0;
        }
        if (c != CURLE_AGAIN)
            return err_set(err, ERR_IO, "imap: receive: %s", curl_easy_strerror(c));
        int rc = wait_sock(m, false, err);
        if (rc < 0)
            return rc;
    }
}

static int send_all(Imap *m, const char *p, size_t len, Err *err)
{
    while (len) {
        size_t sent = 0;
        CURLcode c = curl_easy_send(m->curl, p, len, &sent);
        if (c == CURLE_AGAIN) {
            int rc = wait_sock(m, true, err);
            if (rc < 0)
                return rc;
            continue;
        }
        if (c != CURLE_OK)
            return err_set(err, ERR_IO, "imap: send: %s", curl_easy_strerror(c));
        p += sent;
        len -= sent;
    }
    return 0;
}

/* Appends one line (without CRLF) to m->line. */
static int read_line(Imap *m, Err *err)
{
    size_t start = m->line.len;
    for (;;) {
        if (m->rpos == m->rlen) {
            int rc = fill(m, err);
            if (rc < 0)
                return rc;
        }
        char *nl = memchr(m->rbuf + m->rpos, '\n', m->rlen - m->rpos);
        size_t n = nl ? (size_t)(nl - (m->rbuf + m->rpos)) : m->rlen - m->rpos;
        if (m->line.len - start + n > MAX_LINE)
            return err_set(err, ERR_TOOBIG, "imap: a response line longer than %d bytes",
                           MAX_LINE);
        buf_append(&m->line, m->rbuf + m->rpos, n);
        m->rpos += n + (nl ? 1 : 0);
        if (nl) {
            if (m->line.len > start && m->line.ptr[m->line.len - 1] == '\r')
                m->line.ptr[--m->line.len] = '\0';
            return 0;
        }
    }
}

/* Reads size literal bytes: the first literal of a response is kept up to
 * keep bytes, the rest read and dropped. */
static int read_literal(Imap *m, size_t size, size_t keep, bool first, Err *err)
{
    if (first) {
        buf_clear(&m->literal);
        m->literal_size = size;
        m->literal_cut = size > keep;
    }
    while (size) {
        if (m->rpos == m->rlen) {
            int rc = fill(m, err);
            if (rc < 0)
                return rc;
        }
        size_t n = m->rlen - m->rpos < size ? m->rlen - m->rpos : size;
        if (first && m->literal.len < keep) {
            size_t k = keep - m->literal.len < n ? keep - m->literal.len : n;
            buf_append(&m->literal, m->rbuf + m->rpos, k);
        }
        m->rpos += n;
        size -= n;
    }
    return 0;
}

/* One response: a line with its literals. Returns 0 with m->line set. */
static int read_response(Imap *m, size_t keep, bool *has_literal, Err *err)
{
    buf_clear(&m->line);
    *has_literal = false;
    for (;;) {
        int rc = read_line(m, err);
        if (rc < 0)
            return rc;
        /* a literal announced at the end of the line: {N} */
        size_t len = m->line.len;
        if (len < 3 || m->line.ptr[len - 1] != '}')
            return 0;
        char *open = memrchr(m->line.ptr, '{', len);
        if (!open)
            return 0;
        char *end;
        unsigned long long n = strtoull(open + 1, &end, 10);
        if (end != m->line.ptr + len - 1 || end == open + 1)
            return 0;
        if ((rc = read_literal(m, (size_t)n, keep, !*has_literal, err)) < 0)
            return rc;
        *has_literal = true;
    }
}

typedef int (*UntaggedFn)(void *ctx, Imap *m, bool literal, Err *err);

/* Sends "TAG cmd" and reads until the tagged answer; untagged responses go
 * to fn. A NO or BAD answer is ERR_IO with the server's text. */
static int command(Imap *m, const char *cmd, size_t keep, UntaggedFn fn, void *ctx, Err *err)
{
    char tag[16];
    snprintf(tag, sizeof tag, "B%u", ++m->tag);
    Buf out;
    buf_init(&out, 0);
    buf_printf(&out, "%s %s\r\n", tag, cmd);
    int rc = send_all(m, out.ptr, out.len, err);
    buf_done(&out);
    if (rc < 0)
        return rc;
    size_t tl = strlen(tag);
    for (;;) {
        bool lit;
        if ((rc = read_response(m, keep, &lit, err)) < 0)
            return rc;
        const char *l = buf_cstr(&m->line);
        if (!strncmp(l, tag, tl) && l[tl] == ' ') {
            if (!strncasecmp(l + tl + 1, "OK", 2))
                return 0;
            /* the command itself is safe to name: folders and UIDs, no
             * secrets. A refusal (NO, BAD) leaves the connection usable. */
            return err_set(err, ERR_INVAL, "imap: %.60s: %.200s", cmd, l + tl + 1);
        }
        if (!strncmp(l, "* BYE", 5))
            return err_set(err, ERR_IO, "imap: the server said %.200s", l + 2);
        if (l[0] == '*' && fn && (rc = fn(ctx, m, lit, err)) < 0)
            return rc;
    }
}

static void imap_close(Imap *m)
{
    if (m->curl)
        curl_easy_cleanup(m->curl);
    buf_done(&m->line);
    buf_done(&m->literal);
}

static int imap_open(Imap *m, const ConnectorConfig *c, const char *password, Err *err)
{
    memset(m, 0, sizeof *m);
    buf_init(&m->line, 0);
    buf_init(&m->literal, 0);
    if (effect_curl_init() < 0)
        return err_set(err, ERR_INTERNAL, "libcurl could not initialise");
    m->curl = curl_easy_init();
    if (!m->curl)
        return err_set(err, ERR_INTERNAL, "libcurl: no handle");
    CURL *h = m->curl;
    curl_easy_setopt(h, CURLOPT_URL, c->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "imap,imaps");
    curl_easy_setopt(h, CURLOPT_USERNAME, c->user);
    curl_easy_setopt(h, CURLOPT_PASSWORD, password ? password : "");
    curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)PULL_IO_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)PULL_IO_TIMEOUT_MS * 2);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_USE_SSL, c->starttls_off ? (long)CURLUSESSL_NONE
                                                         : (long)CURLUSESSL_ALL);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, c->tls_verify ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, c->tls_verify ? 2L : 0L);
    if (c->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    CURLcode cc = curl_easy_perform(h);
    if (cc != CURLE_OK)
        return err_set(err, ERR_IO, "imap: connect or login to %.200s: %s", c->url,
                       curl_easy_strerror(cc));
    curl_socket_t s = CURL_SOCKET_BAD;
    if (curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &s) != CURLE_OK || s == CURL_SOCKET_BAD)
        return err_set(err, ERR_IO, "imap: no connection after login");
    m->sock = s;
    return 0;
}

/* "folder" quoted for IMAP (folders are printable ASCII, see config). */
static void quoted(Buf *b, const char *s)
{
    buf_putc(b, '"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            buf_putc(b, '\\');
        buf_putc(b, *s);
    }
    buf_putc(b, '"');
}

/* ---- untagged handlers ---- */

typedef struct Examine {
    int64_t uidvalidity;
    int64_t exists;
} Examine;

static int on_examine(void *ctx, Imap *m, bool literal, Err *err)
{
    Examine *x = ctx;
    const char *l = buf_cstr(&m->line);
    const char *p = strcasestr(l, "[UIDVALIDITY ");
    if (p)
        x->uidvalidity = strtoll(p + 13, NULL, 10);
    long long n;
    char word[16];
    if (sscanf(l, "* %lld %15s", &n, word) == 2 && !strcasecmp(word, "EXISTS"))
        x->exists = n;
    return 0;
}

typedef struct Uids {
    int64_t *v;
    size_t n, cap;
    int64_t above;
} Uids;

static int on_search(void *ctx, Imap *m, bool literal, Err *err)
{
    Uids *u = ctx;
    const char *l = buf_cstr(&m->line);
    if (strncasecmp(l, "* SEARCH", 8))
        return 0;
    const char *p = l + 8;
    while (*p) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p) {
            p++;
            continue;
        }
        p = end;
        if (v <= u->above)
            continue;
        if (u->n == u->cap) {
            if (u->cap * sizeof *u->v >= MAX_SEARCH)
                return err_set(err, ERR_TOOBIG, "imap: more than %zu new messages in one "
                                                "folder", u->cap);
            u->cap = u->cap ? u->cap * 2 : 256;
            u->v = realloc(u->v, u->cap * sizeof *u->v);
            if (!u->v)
                abort();
        }
        u->v[u->n++] = v;
    }
    return 0;
}

/* The value after "NAME " in a FETCH response (0 when absent). */
static int64_t fetch_item(const char *l, const char *name)
{
    const char *p = strcasestr(l, name);
    return p ? strtoll(p + strlen(name), NULL, 10) : 0;
}

typedef struct Sizes {
    const int64_t *uids;
    int64_t *sizes; /* parallel to uids; -1: not answered */
    size_t n;
} Sizes;

static int on_sizes(void *ctx, Imap *m, bool literal, Err *err)
{
    Sizes *s = ctx;
    const char *l = buf_cstr(&m->line);
    if (!strcasestr(l, " FETCH "))
        return 0;
    int64_t uid = fetch_item(l, "UID "), size = fetch_item(l, "RFC822.SIZE ");
    for (size_t i = 0; i < s->n; i++)
        if (s->uids[i] == uid)
            s->sizes[i] = size;
    return 0;
}

typedef struct Body {
    int64_t uid;
    bool got;
} Body;

static int on_body(void *ctx, Imap *m, bool literal, Err *err)
{
    Body *b = ctx;
    const char *l = buf_cstr(&m->line);
    if (literal && strcasestr(l, " FETCH ") && fetch_item(l, "UID ") == b->uid)
        b->got = true;
    return 0;
}

static int cmp_uid(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* ---- one folder ---- */

typedef struct Poll {
    const PullCtx *x;
    Imap *m;
    json_t *cursor;      /* owned: the whole cursor object */
    int64_t cursor_seq;
    int64_t added;
} Poll;

static int poll_folder(Poll *p, const char *folder, bool sent, Err *err)
{
    const ConnectorConfig *c = p->x->c;
    Buf cmd;
    buf_init(&cmd, 0);
    buf_puts(&cmd, "EXAMINE ");
    quoted(&cmd, folder);
    Examine ex = { .uidvalidity = -1 };
    Uids u = { 0 };
    int rc = command(p->m, buf_cstr(&cmd), 0, on_examine, &ex, err);
    if (rc < 0)
        goto out;
    if (ex.uidvalidity < 0) {
        rc = err_set(err, ERR_IO, "imap: the server gave no UIDVALIDITY for '%.100s'", folder);
        goto out;
    }
    json_t *folders = json_object_get(p->cursor, "folders");
    if (!json_is_object(folders)) {
        folders = json_object();
        json_object_set_new(p->cursor, "folders", folders);
    }
    json_t *fc = json_object_get(folders, folder);
    int64_t last = 0;
    bool moved = false;
    if (fc && json_integer_value(json_object_get(fc, "uidvalidity")) == ex.uidvalidity) {
        last = json_integer_value(json_object_get(fc, "uid"));
    } else {
        if (fc)
            log_info("imap uidvalidity changed: reading the folder again",
                     json_pack("{s:s, s:s, s:I}", "connector", c->name, "folder", folder,
                               "uidvalidity", (json_int_t)ex.uidvalidity));
        moved = true; /* the new UIDVALIDITY is recorded even with no message */
    }
    u.above = last;
    if (ex.exists > 0) {
        buf_clear(&cmd);
        buf_printf(&cmd, "UID SEARCH UID %lld:*", (long long)last + 1);
        if ((rc = command(p->m, buf_cstr(&cmd), 0, on_search, &u, err)) < 0)
            goto out;
    }
    if (u.n)
        qsort(u.v, u.n, sizeof *u.v, cmp_uid);
    size_t i = 0;
    size_t max = c->max_message_bytes;
    do {
        if (*p->x->stop)
            break;
        size_t n = u.n - i < PULL_BATCH ? u.n - i : PULL_BATCH;
        if (n == 0 && !moved)
            break;
        if ((rc = pull__lease(p->x, err)) <= 0) {
            if (rc == 0)
                rc = err_set(err, ERR_LEASE, "another process took the connector's lease");
            goto out;
        }
        Event **evs = xcalloc(n + 1, sizeof *evs);
        char **ids = xcalloc(n + 1, sizeof *ids);
        size_t ne = 0;
        int64_t sizes[PULL_BATCH];
        for (size_t k = 0; k < n; k++)
            sizes[k] = -1;
        if (n) {
            Sizes sz = { .uids = u.v + i, .sizes = sizes, .n = n };
            buf_clear(&cmd);
            buf_printf(&cmd, "UID FETCH %lld:%lld (UID RFC822.SIZE)", (long long)u.v[i],
                       (long long)u.v[i + n - 1]);
            rc = command(p->m, buf_cstr(&cmd), 0, on_sizes, &sz, err);
        }
        for (size_t k = 0; k < n && rc == 0; k++) {
            if (sizes[k] < 0)
                continue; /* expunged since the search */
            bool whole = (size_t)sizes[k] <= max;
            Body b = { .uid = u.v[i + k] };
            buf_clear(&cmd);
            buf_printf(&cmd, "UID FETCH %lld (UID BODY.PEEK[%s])", (long long)b.uid,
                       whole ? "" : "HEADER");
            if ((rc = command(p->m, buf_cstr(&cmd), whole ? max : max / 2 + 65536, on_body, &b,
                              err)) < 0)
                break;
            if (!b.got)
                continue;
            PullEmailOptions eo = {
                .data_dir = p->x->opts->data_dir,
                .max_attachment_bytes = p->x->opts->config->max_file_bytes,
                .source = c->source,
                .consent = c->consent == 1 ? "transactional" : c->consent == 2 ? "marketing"
                                                                                : "none",
                .folder = folder,
                .full_size = whole && !p->m->literal_cut ? 0 : (size_t)sizes[k],
                .limits = ledger_limits(p->x->opts->ledger),
                .defer_sync = true, /* one sync for the batch, below */
            };
            if ((rc = pull_email_event(buf_cstr(&p->m->literal), p->m->literal.len, &eo,
                                       &evs[ne], &ids[ne], err)) < 0)
                break;
            ne++;
        }
        if (rc == 0 && ne)
            rc = ingest_files_sync(p->x->opts->data_dir, err);
        if (rc == 0) {
            json_t *nfc = json_pack("{s:I, s:I}", "uidvalidity", (json_int_t)ex.uidvalidity, "uid",
                                    (json_int_t)(n ? u.v[i + n - 1] : last));
            json_object_set_new(folders, folder, nfc);
            rc = pull__append_batch(p->x->opts->ledger, c, evs, ne, p->cursor, &p->cursor_seq,
                                    &p->added, err);
            if (rc == 0)
                log_debug("imap batch", json_pack("{s:s, s:s, s:I, s:I}", "connector", c->name,
                                                  "folder", folder, "messages", (json_int_t)ne,
                                                  "uid", (json_int_t)(n ? u.v[i + n - 1] : last)));
            if (rc == 0 && sent && p->x->opts->sent) {
                for (size_t k = 0; k < ne; k++) {
                    Err e2 = { 0 };
                    if (ids[k][0] &&
                        p->x->opts->sent(p->x->opts->sent_ctx, p->x->opts->ledger, p->x->rd,
                                         ids[k], &e2) < 0)
                        log_warn("sent folder: cannot settle the effect",
                                 json_pack("{s:s, s:s}", "connector", c->name, "error", e2.msg));
                }
            }
        } else {
            for (size_t k = 0; k < ne; k++)
                ledger_event_free(evs[k]);
        }
        for (size_t k = 0; k < ne; k++)
            free(ids[k]);
        free(ids);
        free(evs);
        if (rc < 0)
            goto out;
        moved = false;
        i += n;
    } while (i < u.n);
out:
    free(u.v);
    buf_done(&cmd);
    return rc;
}

int pull__imap_poll(const PullCtx *x, int64_t *ret_appended, Err *err)
{
    Imap m;
    Poll p = { .x = x, .m = &m };
    int rc = pull__cursor_get(x->rd, x->c->name, &p.cursor, &p.cursor_seq, err);
    if (rc < 0)
        return rc;
    if ((rc = imap_open(&m, x->c, x->password, err)) < 0)
        goto out;
    /* A folder the server refuses (say, one that does not exist) fails the
     * poll, but only after the other folders had their turn. */
    bool sent_listed = false;
    int first = 0;
    Err ferr = { 0 };
    int nf = x->c->n_folders + (x->c->sent_folder ? 1 : 0);
    for (int i = 0; i < nf && !*x->stop; i++) {
        const char *folder = i < x->c->n_folders ? x->c->folders[i] : x->c->sent_folder;
        bool sent = x->c->sent_folder && !strcmp(x->c->sent_folder, folder);
        if (i == x->c->n_folders && sent_listed)
            break;
        sent_listed |= sent;
        rc = poll_folder(&p, folder, sent, &ferr);
        if (rc < 0 && !first) {
            first = rc;
            *err = ferr;
        }
        if (rc < 0 && rc != ERR_INVAL)
            break; /* the connection is gone */
    }
    rc = first;
    if (rc == 0) {
        Err e2 = { 0 };
        command(&m, "LOGOUT", 0, NULL, NULL, &e2);
    }
out:
    imap_close(&m);
    json_decref(p.cursor);
    *ret_appended = p.added;
    return rc;
}
