/* http_ceiling: what wrk against libmicrohttpd reaches on this machine with
 * none of Bureau's work, as the ceiling for bench/http.sh. The daemon runs
 * with the flags `bureau serve` uses (epoll, an internal thread pool,
 * suspend/resume); each POST body is collected and answered 201 with a
 * small JSON body like Bureau's {seq,id}.
 *
 *   http_ceiling plain    answers at once
 *   http_ceiling handoff  suspends the connection and hands the request to
 *                         a "writer" thread that resumes it (Bureau's path,
 *                         without the ledger)
 *   http_ceiling durable  the same, and the writer writes each group of
 *                         requests to a file in DIR and fdatasyncs it before
 *                         resuming them: a group commit with nothing else
 *
 * Usage: http_ceiling MODE [THREADS [DIR]]; prints "listening on ADDR" and
 * serves until SIGTERM. bench/http_ceiling.sh drives it with wrk. */
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BODY_MAX 65536
#define FILE_WRAP ((off_t)64 << 20) /* the durable file is rewritten from 0 past this */
#define GROUP_BYTES_MAX (1 << 20)

enum { MODE_PLAIN, MODE_HANDOFF, MODE_DURABLE };

typedef struct Req {
    struct MHD_Connection *conn;
    size_t len;
    bool suspended, done;
    struct Req *next;
} Req;

static int mode;
static int fd = -1;
static long seq;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work = PTHREAD_COND_INITIALIZER;
static Req *queue;

static void *writer_main(void *arg)
{
    (void)arg;
    static char group[GROUP_BYTES_MAX];
    off_t off = 0;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (!queue)
            pthread_cond_wait(&work, &mu);
        Req *batch = queue;
        queue = NULL;
        pthread_mutex_unlock(&mu);
        if (mode == MODE_DURABLE) {
            size_t bytes = 4096; /* a page of bookkeeping, as a commit has */
            for (Req *r = batch; r; r = r->next)
                bytes += r->len;
            bytes = (bytes + 4095) / 4096 * 4096;
            if (bytes > sizeof group)
                bytes = sizeof group;
            if (off + (off_t)bytes > FILE_WRAP)
                off = 0;
            if (pwrite(fd, group, bytes, off) != (ssize_t)bytes || fdatasync(fd) < 0) {
                fprintf(stderr, "http_ceiling: write: %s\n", strerror(errno));
                exit(1);
            }
            off += (off_t)bytes;
        }
        for (Req *r = batch, *next; r; r = next) {
            next = r->next;
            r->done = true;
            MHD_resume_connection(r->conn);
        }
    }
    return NULL;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    (void)cls, (void)url, (void)method, (void)version, (void)upload;
    Req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        r->conn = conn;
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_size) {
        r->len += *upload_size;
        *upload_size = 0;
        return r->len <= BODY_MAX ? MHD_YES : MHD_NO;
    }
    if (mode != MODE_PLAIN && !r->suspended) {
        r->suspended = true;
        MHD_suspend_connection(conn);
        pthread_mutex_lock(&mu);
        r->next = queue;
        queue = r;
        pthread_cond_signal(&work);
        pthread_mutex_unlock(&mu);
        return MHD_YES;
    }
    if (mode != MODE_PLAIN && !r->done)
        return MHD_YES;
    char body[96];
    pthread_mutex_lock(&mu);
    long s = ++seq;
    pthread_mutex_unlock(&mu);
    int n = snprintf(body, sizeof body, "{\"seq\":%ld,\"id\":\"01JCEILINGCEILINGCEILINGCE\"}\n", s);
    struct MHD_Response *resp = MHD_create_response_from_buffer((size_t)n, body,
                                                                MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result ok = MHD_queue_response(conn, MHD_HTTP_CREATED, resp);
    MHD_destroy_response(resp);
    return ok;
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)conn, (void)toe;
    free(*con_cls);
    *con_cls = NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: http_ceiling plain|handoff|durable [THREADS [DIR]]\n");
        return 2;
    }
    mode = !strcmp(argv[1], "plain")     ? MODE_PLAIN
           : !strcmp(argv[1], "handoff") ? MODE_HANDOFF
           : !strcmp(argv[1], "durable") ? MODE_DURABLE
                                         : -1;
    unsigned threads = argc > 2 ? (unsigned)atoi(argv[2]) : 2;
    if (mode < 0 || threads < 1 || threads > 64 || (mode == MODE_DURABLE && argc < 4)) {
        fprintf(stderr, "http_ceiling: bad MODE or THREADS, or durable without DIR\n");
        return 2;
    }
    if (mode == MODE_DURABLE) {
        char path[4096];
        snprintf(path, sizeof path, "%s/ceiling.dat", argv[3]);
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
            fprintf(stderr, "http_ceiling: %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_t writer;
    if (pthread_create(&writer, NULL, writer_main, NULL) != 0)
        return 1;
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL, handler, NULL,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
        MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "http_ceiling: cannot start the daemon\n");
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("listening on 127.0.0.1:%u\n", info ? (unsigned)info->port : 0u);
    fflush(stdout);
    int sig;
    sigwait(&set, &sig);
    /* the writer may hold suspended connections: exit without stopping */
    if (fd >= 0)
        close(fd);
    _exit(0);
}
