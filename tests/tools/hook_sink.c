/* hook_sink: a webhook receiver for tests.
 *
 *   hook_sink --port-file F --log FILE [--fail N] [--status CODE]
 *             [--secret S] [--hang]
 *
 * Listens on 127.0.0.1, on a port the kernel picks, and writes that port to
 * F (a temporary file renamed into place) once it accepts connections, then
 * prints "listening on 127.0.0.1:PORT" on stdout. Each
 * request appends one JSON line to FILE before it is answered, so that a
 * client that got its answer finds its line already there:
 *
 *   {"n":1,"method":"POST","path":"/hook","key":"K","signature":"ok",
 *    "content_type":"application/json","user_agent":"bureau/0.1.0",
 *    "body":{...},"status":500}
 *
 * key is the Idempotency-Key (null without one); signature is "ok" or "bad"
 * (Bureau-Signature checked against --secret with OpenSSL directly, not with
 * Bureau's code), "none" (no header) or "unverified" (a header but no
 * --secret); body is the body parsed as JSON, or null with the text in
 * "raw" when it is not JSON; status is the answer (0 with --hang).
 *
 * Answers 500 to the first N requests of each Idempotency-Key, then 200;
 * with --status, always CODE (a 3xx points Location at /moved). --hang holds
 * each request open, unanswered, until the client gives up (at most
 * HANG_MAX_MS). Bodies over MAX_BODY get 413. Exits 0 on SIGTERM or
 * SIGINT. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/json.h"

#define MAX_BODY (1 << 20)
#define MAX_KEYS 100000
#define HANG_MAX_MS 30000

typedef struct KeyCount {
    char *key; /* "" for requests without one */
    long count;
} KeyCount;

typedef struct Sink {
    int log_fd;
    long fail;
    int status;
    const char *secret;
    bool hang;
    int stop[2]; /* closing stop[1] wakes the held requests */
    pthread_mutex_t mu;
    long n;
    KeyCount *keys;
    size_t n_keys, cap_keys;
} Sink;

typedef struct Req {
    Buf body;
    bool too_big;  /* over MAX_BODY: answered 413 */
    bool answered; /* logged and answered (or held) */
} Req;

static void die(const char *what)
{
    fprintf(stderr, "hook_sink: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* How many requests with this key came so far, this one included; -1 when
 * the table is full. Called with s->mu held. */
static long key_count(Sink *s, const char *key)
{
    for (size_t i = 0; i < s->n_keys; i++)
        if (!strcmp(s->keys[i].key, key))
            return ++s->keys[i].count;
    if (s->n_keys == MAX_KEYS)
        return -1;
    if (s->n_keys == s->cap_keys) {
        s->cap_keys = s->cap_keys ? 2 * s->cap_keys : 16;
        s->keys = xrealloc(s->keys, s->cap_keys * sizeof *s->keys);
    }
    s->keys[s->n_keys++] = (KeyCount){ xstrdup(key), 1 };
    return 1;
}

/* "ok", "bad", "none" or "unverified": the Bureau-Signature header
 * "t=TS,v1=HEX[,v1=HEX...]" against HMAC-SHA256(secret, "TS." + body),
 * computed here with OpenSSL so as not to trust the code under test. */
static const char *signature_check(const Sink *s, const char *header, const Buf *body)
{
    if (!header)
        return "none";
    if (!s->secret)
        return "unverified";
    char *copy = xstrdup(header), *save = NULL;
    const char *ts = NULL;
    const char *v1[8];
    int n_v1 = 0;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        if (!strncmp(item, "t=", 2) && !ts)
            ts = item + 2;
        else if (!strncmp(item, "v1=", 3) && n_v1 < 8)
            v1[n_v1++] = item + 3;
    }
    const char *verdict = "bad";
    if (ts && *ts && strspn(ts, "0123456789") == strlen(ts) && strlen(ts) <= 20) {
        Buf text;
        buf_init(&text, 0);
        buf_printf(&text, "%s.", ts);
        buf_append(&text, body->ptr ? body->ptr : "", body->len);
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int mac_len = 0;
        HMAC(EVP_sha256(), s->secret, (int)strlen(s->secret), (const unsigned char *)text.ptr,
             text.len, mac, &mac_len);
        buf_done(&text);
        char hex[2 * EVP_MAX_MD_SIZE + 1];
        for (unsigned i = 0; i < mac_len; i++)
            snprintf(hex + 2 * i, 3, "%02x", mac[i]);
        for (int i = 0; i < n_v1; i++)
            if (strlen(v1[i]) == 2 * mac_len && !CRYPTO_memcmp(v1[i], hex, 2 * mac_len))
                verdict = "ok";
    }
    free(copy);
    return verdict;
}

static json_t *jstr_or_null(const char *s)
{
    if (!s)
        return json_null();
    char *copy = xstrdup(s);
    core_utf8_sanitize(copy);
    json_t *v = json_string(copy);
    free(copy);
    return v;
}

/* Appends one line to the log in a single write (O_APPEND: lines never
 * interleave). */
static void log_line(Sink *s, json_t *line)
{
    Buf b;
    buf_init(&b, 0);
    core_json_dump(line, &b);
    buf_putc(&b, '\n');
    json_decref(line);
    if (write(s->log_fd, b.ptr, b.len) != (ssize_t)b.len)
        die("write log");
    buf_done(&b);
}

/* Waits until the client closes the connection, the sink stops or
 * HANG_MAX_MS pass. */
static void hold(Sink *s, struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct pollfd p[2] = { { .fd = s->stop[0], .events = POLLIN } };
    nfds_t n = 1;
    if (ci) {
        p[1] = (struct pollfd){ .fd = ci->connect_fd, .events = POLLIN | POLLRDHUP };
        n = 2;
    }
    while (poll(p, n, HANG_MAX_MS) < 0 && errno == EINTR)
        ;
}

static enum MHD_Result answer(struct MHD_Connection *conn, int status)
{
    char text[96];
    if (status >= 200 && status < 300)
        snprintf(text, sizeof text, "{\"ok\":true}\n");
    else
        snprintf(text, sizeof text, "{\"error\":\"hook_sink answers %d\"}\n", status);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (status >= 300 && status < 400)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, "/moved");
    enum MHD_Result ok = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ok;
}

/* Logs the request, then answers it (or holds it with --hang). */
static enum MHD_Result finish(Sink *s, struct MHD_Connection *conn, Req *r, const char *url,
                              const char *method)
{
    const char *key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Idempotency-Key");
    const char *sig = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Bureau-Signature");
    int status;
    pthread_mutex_lock(&s->mu);
    long n = ++s->n;
    long count = key_count(s, key ? key : "");
    pthread_mutex_unlock(&s->mu);
    if (r->too_big)
        status = 413;
    else if (count < 0)
        status = 503;
    else if (s->hang)
        status = 0;
    else if (s->status)
        status = s->status;
    else
        status = count <= s->fail ? 500 : 200;

    json_t *line = json_pack("{s:I, s:s, s:o, s:o, s:s, s:o, s:o}", "n", (json_int_t)n, "method",
                             method, "path", jstr_or_null(url), "key", jstr_or_null(key),
                             "signature", signature_check(s, sig, &r->body), "content_type",
                             jstr_or_null(MHD_lookup_connection_value(
                                 conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE)),
                             "user_agent",
                             jstr_or_null(MHD_lookup_connection_value(
                                 conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_USER_AGENT)));
    json_t *body = NULL;
    if (!r->too_big && r->body.len) {
        Err e = { 0 };
        if (core_json_parse(r->body.ptr, r->body.len, &body, &e) < 0) {
            body = NULL;
            json_object_set_new(line, "raw", jstr_or_null(r->body.ptr));
        }
    }
    json_object_set_new(line, "body", body ? body : json_null());
    json_object_set_new(line, "status", json_integer(status));
    log_line(s, line);

    if (status == 0) {
        hold(s, conn);
        return MHD_NO; /* closes the connection, unanswered */
    }
    return answer(conn, status);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    Sink *s = cls;
    Req *r = *con_cls;
    if (!r) {
        r = xcalloc(1, sizeof *r);
        buf_init(&r->body, MAX_BODY);
        *con_cls = r;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > MAX_BODY) {
            /* refused before the body is read; MHD then closes the connection */
            r->too_big = true;
            r->answered = true;
            return finish(s, conn, r, url, method);
        }
        return MHD_YES;
    }
    if (r->answered) {
        *upload_size = 0; /* the rest of a refused body, dropped */
        return MHD_YES;
    }
    if (*upload_size) {
        if (!r->too_big && buf_append(&r->body, upload, *upload_size) < 0)
            r->too_big = true;
        *upload_size = 0;
        return MHD_YES;
    }
    r->answered = true;
    return finish(s, conn, r, url, method);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    Req *r = *con_cls;
    if (!r)
        return;
    buf_done(&r->body);
    free(r);
    *con_cls = NULL;
}

static void write_port_file(const char *path, unsigned port)
{
    size_t n = strlen(path) + 8;
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        die(tmp);
    fprintf(f, "%u\n", port);
    if (fclose(f) != 0)
        die(tmp);
    if (rename(tmp, path) < 0)
        die("rename port file");
    free(tmp);
}

static void usage(void)
{
    fprintf(stderr, "usage: hook_sink --port-file F --log FILE [--fail N] [--status CODE] "
                    "[--secret S] [--hang]\n");
    exit(2);
}

static long number(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "hook_sink: '%s' is not a number in %ld..%ld\n", s, lo, hi);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "port-file", required_argument, NULL, 'p' }, { "log", required_argument, NULL, 'l' },
        { "fail", required_argument, NULL, 'f' },      { "status", required_argument, NULL, 's' },
        { "secret", required_argument, NULL, 'k' },    { "hang", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    Sink s = { .log_fd = -1 };
    const char *port_file = NULL, *log_path = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p': port_file = optarg; break;
        case 'l': log_path = optarg; break;
        case 'f': s.fail = number(optarg, 0, 1000000); break;
        case 's': s.status = (int)number(optarg, 100, 599); break;
        case 'k': s.secret = optarg; break;
        case 'h': s.hang = true; break;
        default: usage();
        }
    }
    if (!port_file || !log_path || optind != argc)
        usage();

    s.log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (s.log_fd < 0)
        die(log_path);
    if (pipe2(s.stop, O_CLOEXEC) < 0)
        die("pipe");
    pthread_mutex_init(&s.mu, NULL);

    /* The daemon's threads inherit this mask: the signals reach sigwait(). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
        NULL, NULL, handler, &s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
        MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "hook_sink: cannot start the HTTP daemon\n");
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    if (!info || !info->port) {
        fprintf(stderr, "hook_sink: no port\n");
        MHD_stop_daemon(d);
        return 1;
    }
    write_port_file(port_file, info->port);
    /* for a script that waits on a pipe rather than polling for the file */
    printf("listening on 127.0.0.1:%u\n", info->port);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&set, &sig) != 0)
        ;
    close(s.stop[1]); /* wakes the held requests */
    MHD_stop_daemon(d);
    close(s.stop[0]);
    close(s.log_fd);
    for (size_t i = 0; i < s.n_keys; i++)
        free(s.keys[i].key);
    free(s.keys);
    pthread_mutex_destroy(&s.mu);
    return 0;
}
