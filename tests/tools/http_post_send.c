/* http_post_send: one webhook.post delivery attempt, for tests.
 *
 *   http_post_send [--secret S] [--timeout SEC] [--ts T] [--no-check]
 *                  URL BODY_FILE KEY
 *
 * Reads the JSON value in BODY_FILE, checks {url: URL, body: VALUE} with
 * http_post_check() (unless --no-check), sends its compact form with
 * http_post_deliver() and prints the outcome as one JSON line:
 *
 *   {"result":"delivered|retry|permanent","code":N,"detail":"..."}
 *
 * or, when the check refuses it, {"result":"refused","error":"with.url: ..."}.
 * Exit status: 0 when an outcome was printed, 1 when the check refused the
 * step, 2 on a usage or file error. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/json.h"
#include "effect/http_post.h"

static void usage(void)
{
    fprintf(stderr, "usage: http_post_send [--secret S] [--timeout SEC] [--ts T] [--no-check] "
                    "URL BODY_FILE KEY\n");
    exit(2);
}

static long long number(const char *s, long long lo, long long hi)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "http_post_send: '%s' is not a number in %lld..%lld\n", s, lo, hi);
        exit(2);
    }
    return v;
}

/* The whole file, at most max bytes (one more is an error). */
static int read_file(const char *path, size_t max, Buf *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "http_post_send: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char chunk[8192];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (buf_append(out, chunk, n) < 0) {
            fprintf(stderr, "http_post_send: %s: larger than %zu bytes\n", path, max);
            rc = -1;
        }
    if (rc == 0 && ferror(f)) {
        fprintf(stderr, "http_post_send: %s: read error\n", path);
        rc = -1;
    }
    fclose(f);
    return rc;
}

static void print_line(json_t *v)
{
    Buf b;
    buf_init(&b, 0);
    core_json_dump(v, &b);
    printf("%s\n", buf_cstr(&b));
    buf_done(&b);
    json_decref(v);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "secret", required_argument, NULL, 's' },
        { "timeout", required_argument, NULL, 't' },
        { "ts", required_argument, NULL, 'T' },
        { "no-check", no_argument, NULL, 'n' },
        { NULL, 0, NULL, 0 },
    };
    const char *secret = NULL;
    int timeout_s = 10;
    long long ts = 0;
    int check = 1, c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's': secret = optarg; break;
        case 't': timeout_s = (int)number(optarg, 1, HTTP_POST_MAX_TIMEOUT); break;
        case 'T': ts = number(optarg, 0, 253402300799LL); break;
        case 'n': check = 0; break;
        default: usage();
        }
    }
    if (argc - optind != 3)
        usage();
    const char *url = argv[optind], *body_path = argv[optind + 1], *key = argv[optind + 2];

    int status = 2;
    json_t *body = NULL, *with = NULL;
    Buf text, sent;
    buf_init(&text, 4 * (size_t)HTTP_POST_MAX_BODY);
    buf_init(&sent, HTTP_POST_MAX_BODY);
    Err err = { 0 };
    if (read_file(body_path, 4 * (size_t)HTTP_POST_MAX_BODY, &text) < 0)
        goto out;
    if (core_json_parse(buf_cstr(&text), text.len, &body, &err) < 0) {
        fprintf(stderr, "http_post_send: %s: %s\n", body_path, err.msg);
        goto out;
    }
    if (check) {
        with = json_pack("{s:s, s:O}", "url", url, "body", body);
        if (http_post_check(with, &err) < 0) {
            print_line(json_pack("{s:s, s:s}", "result", "refused", "error", err.msg));
            status = 1;
            goto out;
        }
    }
    if (core_json_dump(body, &sent) < 0) {
        fprintf(stderr, "http_post_send: the body is larger than %d bytes as JSON\n",
                HTTP_POST_MAX_BODY);
        goto out;
    }

    HttpPostRequest req = { .url = url,
                            .body = buf_cstr(&sent),
                            .len = sent.len,
                            .idempotency_key = key,
                            .secret = secret,
                            .timestamp_s = ts,
                            .timeout_s = timeout_s };
    EffectOutcome o;
    http_post_deliver(&req, &o);
    static const char *const names[] = { [EFFECT_DELIVERED] = "delivered",
                                         [EFFECT_RETRY] = "retry",
                                         [EFFECT_PERMANENT] = "permanent" };
    print_line(json_pack("{s:s, s:I, s:s}", "result", names[o.result], "code",
                         (json_int_t)o.code, "detail", o.detail));
    status = 0;

out:
    json_decref(with);
    json_decref(body);
    buf_done(&text);
    buf_done(&sent);
    return status;
}
