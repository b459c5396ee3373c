/* fake_llm: an OpenAI-compatible and Anthropic-compatible model server for
 * tests, on loopback.
 *
 *   fake_llm --port-file F --log FILE --script FILE [--key K]
 *
 * Listens on 127.0.0.1, on a port the kernel picks, writes that port to F
 * (a temporary file renamed into place) and prints "listening on
 * 127.0.0.1:PORT". Exits 0 on SIGTERM or SIGINT.
 *
 * The script is a JSON array of answers. A request takes the first answer
 * that still has uses left and matches it: "path" (when given) is a suffix
 * of the request's path ("/chat/completions", "/messages", "/embeddings"),
 * "model" (when given) equals the request body's "model" — so one server
 * can play several models. An answer with "default": true is never used
 * up and serves when no other matches. Fields of an answer:
 *
 *   status       HTTP status (200)
 *   repeat       uses before it is spent (1)
 *   delay_ms     wait before answering, 0..60000; a client that hangs up
 *                ends the wait (the server's behaviour, not a test's sleep)
 *   retry_after  the Retry-After header's value
 *   and the body, one of:
 *   content      a chat answer with this text (the OpenAI form, or the
 *                Anthropic form on a path ending in /messages), with usage
 *                11 in / 7 out unless "usage": false
 *   broken       true: a chat answer whose text is broken JSON
 *   oversize     N: a body of N bytes (a JSON object padded out)
 *   embedding    an array of numbers: an embeddings answer
 *   body         a string sent as is, or a JSON value sent as JSON
 *   (none)       {} for a 2xx, else {"error": {"message": "fake_llm answers N"}}
 *
 * Each request appends one JSON line to the log before it is answered:
 *
 *   {"n":1,"method":"POST","path":"/v1/chat/completions","model":"m",
 *    "authorization":"ok","x_api_key":"none","anthropic_version":null,
 *    "content_type":"application/json","answer":0,"status":200,"body":{...}}
 *
 * authorization / x_api_key: "none" (no header), "ok" (equal to --key;
 * Authorization as "Bearer K"), "bad" (another value), "present" (no --key
 * given). The keys themselves are never logged. answer is the script entry
 * used (-1: none matched, answered 500). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <microhttpd.h>
#include <netinet/in.h>
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

#define MAX_BODY (8 << 20)      /* bytes of a request body */
#define MAX_SCRIPT (4 << 20)    /* bytes of the script */
#define MAX_ANSWERS 4096
#define MAX_DELAY_MS 60000
#define MAX_OVERSIZE (64 << 20)

typedef struct Answer {
    const json_t *spec; /* borrowed from Server.script */
    long left;          /* uses left; ignored for a default */
    bool is_default;
} Answer;

typedef struct Server {
    int log_fd;
    const char *key;
    json_t *script;
    Answer *answers;
    size_t n_answers;
    int stop[2]; /* closing stop[1] ends the delays */
    pthread_mutex_t mu;
    long n;
} Server;

typedef struct Req {
    Buf body;
    bool too_big;
    bool answered;
} Req;

static void die(const char *what)
{
    fprintf(stderr, "fake_llm: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void usage(void)
{
    fprintf(stderr, "usage: fake_llm --port-file F --log FILE --script FILE [--key K]\n");
    exit(2);
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

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* ---- the script --------------------------------------------------------- */

static long field_int(const json_t *spec, const char *key, long def, long lo, long hi,
                      size_t index)
{
    const json_t *v = json_object_get(spec, key);
    if (!v)
        return def;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        fprintf(stderr, "fake_llm: script[%zu].%s: must be an integer in %ld..%ld\n", index, key,
                lo, hi);
        exit(2);
    }
    return (long)json_integer_value(v);
}

static void script_load(Server *s, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path);
    Buf b;
    buf_init(&b, MAX_SCRIPT);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (buf_append(&b, chunk, n) < 0) {
            fprintf(stderr, "fake_llm: %s: larger than %d bytes\n", path, MAX_SCRIPT);
            exit(2);
        }
    fclose(f);
    Err err = { 0 };
    if (core_json_parse(b.ptr ? b.ptr : "", b.len, &s->script, &err) < 0) {
        fprintf(stderr, "fake_llm: %s: %s\n", path, err.msg);
        exit(2);
    }
    buf_done(&b);
    if (!json_is_array(s->script) || json_array_size(s->script) > MAX_ANSWERS) {
        fprintf(stderr, "fake_llm: %s: must be an array of at most %d answers\n", path,
                MAX_ANSWERS);
        exit(2);
    }
    s->n_answers = json_array_size(s->script);
    s->answers = xcalloc(s->n_answers ? s->n_answers : 1, sizeof *s->answers);
    for (size_t i = 0; i < s->n_answers; i++) {
        const json_t *spec = json_array_get(s->script, i);
        if (!json_is_object(spec)) {
            fprintf(stderr, "fake_llm: script[%zu]: must be an object\n", i);
            exit(2);
        }
        field_int(spec, "status", 200, 100, 599, i);
        field_int(spec, "delay_ms", 0, 0, MAX_DELAY_MS, i);
        field_int(spec, "oversize", 0, 0, MAX_OVERSIZE, i);
        s->answers[i] = (Answer){ spec, field_int(spec, "repeat", 1, 1, 1000000, i),
                                  json_is_true(json_object_get(spec, "default")) };
    }
}

/* The answer for a request on path with model (may be NULL): its index, or
 * -1. Uses it up. */
static long answer_pick(Server *s, const char *path, const char *model)
{
    long pick = -1;
    pthread_mutex_lock(&s->mu);
    for (int pass = 0; pass < 2 && pick < 0; pass++) {
        for (size_t i = 0; i < s->n_answers && pick < 0; i++) {
            Answer *a = &s->answers[i];
            if (a->is_default != (pass == 1) || (!a->is_default && a->left == 0))
                continue;
            const json_t *p = json_object_get(a->spec, "path");
            const json_t *m = json_object_get(a->spec, "model");
            if (json_is_string(p) && !ends_with(path, json_string_value(p)))
                continue;
            if (json_is_string(m) && (!model || strcmp(model, json_string_value(m))))
                continue;
            if (!a->is_default)
                a->left--;
            pick = (long)i;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return pick;
}

/* ---- answers ------------------------------------------------------------ */

static char *dump(json_t *v)
{
    Buf b;
    buf_init(&b, 0);
    core_json_dump(v, &b);
    json_decref(v);
    return buf_steal(&b);
}

static char *chat_answer(const char *path, const char *model, const char *text, bool usage)
{
    json_t *v;
    if (ends_with(path, "/messages")) {
        v = json_pack("{s:s, s:s, s:s, s:s, s:[{s:s, s:s}], s:s}", "id", "msg_fake", "type",
                      "message", "role", "assistant", "model", model, "content", "type", "text",
                      "text", text, "stop_reason", "end_turn");
        if (usage)
            json_object_set_new(v, "usage",
                                json_pack("{s:i, s:i}", "input_tokens", 11, "output_tokens", 7));
    } else {
        v = json_pack("{s:s, s:s, s:i, s:s, s:[{s:i, s:{s:s, s:s}, s:s}]}", "id", "chatcmpl-fake",
                      "object", "chat.completion", "created", 1700000000, "model", model,
                      "choices", "index", 0, "message", "role", "assistant", "content", text,
                      "finish_reason", "stop");
        if (usage)
            json_object_set_new(v, "usage", json_pack("{s:i, s:i, s:i}", "prompt_tokens", 11,
                                                      "completion_tokens", 7, "total_tokens", 18));
    }
    return dump(v);
}

/* The body of spec's answer (a malloc'd string, *ret_len bytes). */
static char *body_make(const json_t *spec, int status, const char *path, const char *model,
                       size_t *ret_len)
{
    const json_t *v;
    bool usage = !json_is_false(json_object_get(spec, "usage"));
    char *text;
    if ((v = json_object_get(spec, "content")) && json_is_string(v))
        text = chat_answer(path, model, json_string_value(v), usage);
    else if (json_is_true(json_object_get(spec, "broken")))
        text = chat_answer(path, model, "{\"label\": \"spam\", \"confidence\": oops", usage);
    else if ((v = json_object_get(spec, "oversize")) && json_integer_value(v) > 0) {
        size_t n = (size_t)json_integer_value(v);
        text = xmalloc(n + 1);
        memset(text, 'x', n);
        static const char head[] = "{\"pad\":\"";
        if (n >= sizeof head + 1) {
            memcpy(text, head, sizeof head - 1);
            memcpy(text + n - 2, "\"}", 2);
        }
        text[n] = '\0';
        *ret_len = n;
        return text;
    } else if ((v = json_object_get(spec, "embedding")) && json_is_array(v))
        text = dump(json_pack("{s:s, s:[{s:s, s:i, s:O}], s:s, s:{s:i, s:i}}", "object", "list",
                              "data", "object", "embedding", "index", 0, "embedding", v, "model",
                              model, "usage", "prompt_tokens", 5, "total_tokens", 5));
    else if ((v = json_object_get(spec, "body")) && json_is_string(v))
        text = xstrndup(json_string_value(v), json_string_length(v));
    else if (v)
        text = dump(json_incref((json_t *)v));
    else if (status >= 200 && status < 300)
        text = xstrdup("{}");
    else {
        char msg[64];
        snprintf(msg, sizeof msg, "fake_llm answers %d", status);
        text = dump(json_pack("{s:{s:s, s:s}}", "error", "message", msg, "type", "fake"));
    }
    *ret_len = strlen(text);
    return text;
}

/* Waits ms, or until the client hangs up or the server stops. Returns
 * false when the wait was cut short. */
static bool delay(Server *s, struct MHD_Connection *conn, long ms)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct pollfd p[2] = { { .fd = s->stop[0], .events = POLLIN } };
    nfds_t n = 1;
    if (ci) {
        p[1] = (struct pollfd){ .fd = ci->connect_fd, .events = POLLRDHUP };
        n = 2;
    }
    int r;
    while ((r = poll(p, n, (int)ms)) < 0 && errno == EINTR)
        ;
    return r == 0;
}

static const char *key_check(const Server *s, const char *value, bool bearer)
{
    if (!value)
        return "none";
    if (!s->key)
        return "present";
    if (bearer) {
        if (strncmp(value, "Bearer ", 7))
            return "bad";
        value += 7;
    }
    return strcmp(value, s->key) ? "bad" : "ok";
}

static void log_line(Server *s, json_t *line)
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

static enum MHD_Result finish(Server *s, struct MHD_Connection *conn, Req *r, const char *url,
                              const char *method)
{
    json_t *body = NULL;
    if (!r->too_big && r->body.len) {
        Err e = { 0 };
        if (core_json_parse(r->body.ptr, r->body.len, &body, &e) < 0)
            body = NULL;
    }
    const json_t *m = json_object_get(body, "model");
    /* a copy: the body goes into the log line, which is freed below */
    char *model = json_is_string(m) ? xstrdup(json_string_value(m)) : NULL;
    long pick = r->too_big ? -1 : answer_pick(s, url, model);
    const json_t *spec = pick >= 0 ? s->answers[pick].spec : NULL;
    int status = r->too_big ? 413 : spec ? (int)field_int(spec, "status", 200, 100, 599, 0) : 500;

    pthread_mutex_lock(&s->mu);
    long n = ++s->n;
    pthread_mutex_unlock(&s->mu);
    json_t *line = json_pack(
        "{s:I, s:s, s:o, s:o, s:s, s:s, s:o, s:o, s:I, s:i}", "n", (json_int_t)n, "method",
        method, "path", jstr_or_null(url), "model", jstr_or_null(model), "authorization",
        key_check(s, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization"), true),
        "x_api_key",
        key_check(s, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "x-api-key"), false),
        "anthropic_version",
        jstr_or_null(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "anthropic-version")),
        "content_type",
        jstr_or_null(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type")),
        "answer", (json_int_t)pick, "status", status);
    json_object_set_new(line, "body", body ? body : json_null());
    log_line(s, line);

    size_t len = 0;
    char *text;
    if (spec) {
        text = body_make(spec, status, url, model ? model : "unknown", &len);
        free(model);
        long ms = field_int(spec, "delay_ms", 0, 0, MAX_DELAY_MS, 0);
        if (ms > 0 && !delay(s, conn, ms)) {
            free(text);
            return MHD_NO; /* the client left, or the server stops */
        }
    } else {
        free(model);
        text = xstrdup(r->too_big ? "{\"error\":{\"message\":\"fake_llm: body too large\"}}"
                                  : "{\"error\":{\"message\":\"fake_llm: no answer matches\"}}");
        len = strlen(text);
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    const json_t *ra = spec ? json_object_get(spec, "retry_after") : NULL;
    if (json_is_string(ra))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, json_string_value(ra));
    enum MHD_Result ok = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    Server *s = cls;
    Req *r = *con_cls;
    if (!r) {
        r = xcalloc(1, sizeof *r);
        buf_init(&r->body, MAX_BODY);
        *con_cls = r;
        return MHD_YES;
    }
    if (r->answered) {
        *upload_size = 0;
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

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "port-file", required_argument, NULL, 'p' }, { "log", required_argument, NULL, 'l' },
        { "script", required_argument, NULL, 's' },    { "key", required_argument, NULL, 'k' },
        { NULL, 0, NULL, 0 },
    };
    Server s = { .log_fd = -1 };
    const char *port_file = NULL, *log_path = NULL, *script = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p': port_file = optarg; break;
        case 'l': log_path = optarg; break;
        case 's': script = optarg; break;
        case 'k': s.key = optarg; break;
        default: usage();
        }
    }
    if (!port_file || !log_path || !script || optind != argc)
        usage();
    script_load(&s, script);

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
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
        MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "fake_llm: cannot start the HTTP daemon\n");
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    if (!info || !info->port) {
        fprintf(stderr, "fake_llm: no port\n");
        MHD_stop_daemon(d);
        return 1;
    }
    write_port_file(port_file, info->port);
    printf("listening on 127.0.0.1:%u\n", info->port);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&set, &sig) != 0)
        ;
    close(s.stop[1]); /* ends the delays */
    MHD_stop_daemon(d);
    close(s.stop[0]);
    close(s.log_fd);
    free(s.answers);
    json_decref(s.script);
    pthread_mutex_destroy(&s.mu);
    return 0;
}
