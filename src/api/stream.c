/* GET /v1/stream: new ledger events as server-sent events.
 *
 * A stream with nothing to send suspends its connection (no thread is held);
 * a notifier thread resumes it when the ledger's head moves, when a heartbeat
 * is due, or when the server stops. Invariant: a stream is suspended only
 * while the notifier runs, so stopping resumes every one and each then ends. */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/log.h"

#define STREAM_BATCH 200   /* events per read */
#define STREAM_POLL_MS 100 /* how often the notifier looks at the head */

typedef struct Stream {
    struct ApiStreams *hub;
    struct MHD_Connection *conn;
    int64_t last_seq;
    int64_t next_ping_ms;
    int fd;        /* the connection's socket, watched while suspended */
    bool suspended;
    bool gone;     /* the client hung up while the stream waited */
    bool hello;    /* the first bytes were sent */
    Buf pending;   /* formatted, not yet handed to MHD */
    size_t off;
    struct Stream *next;
} Stream;

struct ApiStreams {
    ApiServer *srv;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool stopping;
    bool joined;
    int n;
    Stream *list;
};

static void *notifier(void *arg)
{
    struct ApiStreams *h = arg;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        int64_t head = ledger_head_seq(h->srv->ledger), now = core_time_now_ms();
        for (Stream *st = h->list; st; st = st->next) {
            if (!st->suspended)
                continue;
            /* MHD does not watch a suspended connection: a client that hung
             * up is seen here, so its slot is freed at once */
            struct pollfd p = { .fd = st->fd, .events = POLLRDHUP };
            if (st->fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
                st->gone = true;
            if (h->stopping || st->gone || st->last_seq < head || now >= st->next_ping_ms) {
                st->suspended = false;
                MHD_resume_connection(st->conn);
            }
        }
        if (h->stopping)
            break;
        struct timespec dl = core_time_deadline(CLOCK_REALTIME, STREAM_POLL_MS);
        pthread_cond_timedwait(&h->cv, &h->mu, &dl);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

struct ApiStreams *api__streams_new(ApiServer *s)
{
    struct ApiStreams *h = xcalloc(1, sizeof *h);
    h->srv = s;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    if (pthread_create(&h->thread, NULL, notifier, h) != 0) {
        log_error("cannot start the event stream notifier", NULL);
        h->stopping = h->joined = true;
    }
    return h;
}

void api__streams_stop(struct ApiStreams *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->stopping = true;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    if (!h->joined) {
        pthread_join(h->thread, NULL);
        h->joined = true;
    }
}

void api__streams_free(struct ApiStreams *h)
{
    if (!h)
        return;
    api__streams_stop(h);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}

int api__streams_count(struct ApiStreams *h)
{
    if (!h)
        return 0;
    pthread_mutex_lock(&h->mu);
    int n = h->n;
    pthread_mutex_unlock(&h->mu);
    return n;
}

typedef struct Fill {
    Buf *out;
    int64_t last;
} Fill;

static int add_one(void *ctx, const Event *ev)
{
    Fill *f = ctx;
    json_t *j = json_pack("{s:I, s:s, s:s, s:s, s:s}", "seq", (json_int_t)ev->seq, "id", ev->id,
                          "type", ev->type, "source", ev->source, "at", ev->received_at);
    json_object_set_new(j, "subject", ev->subject ? json_string(ev->subject) : json_null());
    buf_printf(f->out, "id: %lld\nevent: ledger\ndata: ", (long long)ev->seq);
    core_json_dump(j, f->out);
    json_decref(j);
    buf_puts(f->out, "\n\n");
    f->last = ev->seq;
    return 0;
}

static ssize_t reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    Stream *st = cls;
    struct ApiStreams *h = st->hub;
    pthread_mutex_lock(&h->mu);
    if (st->gone) {
        pthread_mutex_unlock(&h->mu);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (st->off >= st->pending.len) {
        buf_clear(&st->pending);
        st->off = 0;
        if (h->stopping) {
            pthread_mutex_unlock(&h->mu);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        int64_t now = core_time_now_ms();
        if (!st->hello) {
            st->hello = true;
            buf_puts(&st->pending, "retry: 3000\n: connected\n\n");
        } else if (st->last_seq < ledger_head_seq(h->srv->ledger)) {
            pthread_mutex_unlock(&h->mu);
            Err err = { 0 };
            Store *rd = api__reader(h->srv, &err);
            Buf tmp;
            buf_init(&tmp, 0);
            Fill f = { &tmp, st->last_seq };
            LedgerFilter lf = { .after_seq = st->last_seq, .limit = STREAM_BATCH,
                                .headers_only = true };
            int rc = rd ? ledger_read(rd, &lf, add_one, &f, &err) : ERR_STORE;
            pthread_mutex_lock(&h->mu);
            if (rc < 0) {
                pthread_mutex_unlock(&h->mu);
                buf_done(&tmp);
                log_warn("event stream ends", json_pack("{s:s}", "error", err.msg));
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            st->last_seq = f.last;
            buf_append(&st->pending, tmp.ptr ? tmp.ptr : "", tmp.len);
            buf_done(&tmp);
        } else if (now >= st->next_ping_ms) {
            buf_puts(&st->pending, ": heartbeat\n\n");
        }
        if (st->pending.len)
            st->next_ping_ms = now + API_STREAM_HEARTBEAT_MS;
    }
    if (st->off < st->pending.len) {
        size_t n = st->pending.len - st->off;
        if (n > max)
            n = max;
        memcpy(buf, st->pending.ptr + st->off, n);
        st->off += n;
        pthread_mutex_unlock(&h->mu);
        return (ssize_t)n;
    }
    /* nothing to send: wait, suspended, for the notifier (unless it has
     * stopped while the lock was let go for a read: then nobody would
     * resume the connection) */
    if (h->stopping) {
        pthread_mutex_unlock(&h->mu);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    st->suspended = true;
    MHD_suspend_connection(st->conn);
    pthread_mutex_unlock(&h->mu);
    return 0;
}

static void stream_free(void *cls)
{
    Stream *st = cls;
    struct ApiStreams *h = st->hub;
    pthread_mutex_lock(&h->mu);
    for (Stream **p = &h->list; *p; p = &(*p)->next)
        if (*p == st) {
            *p = st->next;
            break;
        }
    h->n--;
    pthread_mutex_unlock(&h->mu);
    buf_done(&st->pending);
    free(st);
}

void api__stream(Req *r)
{
    struct ApiStreams *h = r->srv->streams;
    int64_t head = ledger_head_seq(r->srv->ledger), since = head;
    const char *last = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Last-Event-ID");
    const char *q = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "since");
    const char *v = q ? q : last;
    if (v) {
        char *end;
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || x < 0) {
            api__problem(r, 400, "Bad request", "%s: must be an event seq (an integer >= 0)",
                         q ? "since" : "Last-Event-ID");
            return;
        }
        since = x < head ? x : head;
        if (head - since > 10000) /* a reconnect after long: no flood */
            since = head - 10000;
    }
    pthread_mutex_lock(&h->mu);
    bool full = h->n >= API_STREAMS_MAX, stopping = h->stopping;
    Stream *st = NULL;
    if (!full && !stopping) {
        st = xcalloc(1, sizeof *st);
        st->hub = h;
        st->conn = r->conn;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        st->fd = ci ? ci->connect_fd : -1;
        st->last_seq = since;
        st->next_ping_ms = core_time_now_ms() + API_STREAM_HEARTBEAT_MS;
        buf_init(&st->pending, 0);
        st->next = h->list;
        h->list = st;
        h->n++;
    }
    pthread_mutex_unlock(&h->mu);
    if (!st) {
        if (stopping)
            api__problem(r, 503, "Service unavailable", "the server is stopping");
        else
            api__problem(r, 503, "Service unavailable",
                         "too many event streams are open (at most %d)", API_STREAMS_MAX);
        return;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, reader, st, stream_free);
    if (!resp) {
        stream_free(st);
        api__problem(r, 503, "Service unavailable", "cannot start the stream");
        return;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    r->custom = resp;
    r->status = 200;
    r->answered = true;
}
