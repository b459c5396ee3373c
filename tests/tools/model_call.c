/* model_call: one call to a remote model provider, for tests.
 *
 *   model_call [--schema FILE] [--labels A,B,...] [--system S] [--json-schema]
 *              [--key-env NAME] [--embed-model M] [--max-tokens N]
 *              [--timeout MS] [--max-bytes N]
 *              KIND BASE_URL MODEL TASK PROMPT
 *
 * Makes a provider of KIND (openai | anthropic) with model_openai_new() or
 * model_anthropic_new(), makes one call and prints the ModelResponse as one
 * JSON line:
 *
 *   {"status":"ok","output":...,"model":"m","tokens_in":11,"tokens_out":7,
 *    "retry_after_ms":0,"http_status":200,"repairs":0,"error":""}
 *
 * or, when the provider cannot be made, {"status":"config","error":"..."}.
 * Exit status: 0 when a response was printed, 1 when the provider could not
 * be made, 2 on a usage or file error. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/json.h"
#include "model/provider.h"

#define MAX_SCHEMA (1 << 20)

static void usage(void)
{
    fprintf(stderr, "usage: model_call [--schema FILE] [--labels A,B] [--system S] "
                    "[--json-schema] [--key-env NAME] [--embed-model M] [--max-tokens N] "
                    "[--timeout MS] [--max-bytes N] KIND BASE_URL MODEL TASK PROMPT\n");
    exit(2);
}

static long long number(const char *s, long long lo, long long hi)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "model_call: '%s' is not a number in %lld..%lld\n", s, lo, hi);
        exit(2);
    }
    return v;
}

static json_t *schema_read(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "model_call: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    Buf b;
    buf_init(&b, MAX_SCHEMA);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (buf_append(&b, chunk, n) < 0) {
            fprintf(stderr, "model_call: %s: larger than %d bytes\n", path, MAX_SCHEMA);
            exit(2);
        }
    fclose(f);
    json_t *v = NULL;
    Err err = { 0 };
    if (core_json_parse(b.ptr ? b.ptr : "", b.len, &v, &err) < 0) {
        fprintf(stderr, "model_call: %s: %s\n", path, err.msg);
        exit(2);
    }
    buf_done(&b);
    return v;
}

static json_t *labels_split(const char *list)
{
    json_t *a = json_array();
    char *copy = xstrdup(list), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
        json_array_append_new(a, json_string(t));
    free(copy);
    return a;
}

static void print_line(json_t *v)
{
    Buf b;
    buf_init(&b, 0);
    /* the canonical form: reals in their shortest form (0.9, not 0.9000...2) */
    core_json_canonical(v, &b);
    printf("%s\n", buf_cstr(&b));
    buf_done(&b);
    json_decref(v);
}

static void set(char *dst, size_t size, const char *src, const char *what)
{
    if (strlen(src) >= size) {
        fprintf(stderr, "model_call: %s is longer than %zu bytes\n", what, size - 1);
        exit(2);
    }
    memcpy(dst, src, strlen(src) + 1);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "schema", required_argument, NULL, 's' },   { "labels", required_argument, NULL, 'l' },
        { "system", required_argument, NULL, 'y' },   { "json-schema", no_argument, NULL, 'j' },
        { "key-env", required_argument, NULL, 'k' },  { "embed-model", required_argument, NULL, 'e' },
        { "max-tokens", required_argument, NULL, 'm' }, { "timeout", required_argument, NULL, 't' },
        { "max-bytes", required_argument, NULL, 'b' }, { NULL, 0, NULL, 0 },
    };
    ModelProviderConfig cfg = { .timeout_ms = 30000 };
    ModelRequest req = { .timeout_ms = 10000 };
    json_t *schema = NULL, *labels = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's': schema = schema_read(optarg); break;
        case 'l': labels = labels_split(optarg); break;
        case 'y': req.system = optarg; break;
        case 'j': cfg.json_schema = true; break;
        case 'k': set(cfg.api_key_env, sizeof cfg.api_key_env, optarg, "--key-env"); break;
        case 'e': set(cfg.embed_model, sizeof cfg.embed_model, optarg, "--embed-model"); break;
        case 'm': req.max_output_tokens = (int)number(optarg, 0, 1000000); break;
        case 't': req.timeout_ms = (int)number(optarg, 1, 3600000); break;
        case 'b': req.max_response_bytes = (size_t)number(optarg, 1, 1LL << 30); break;
        default: usage();
        }
    }
    if (argc - optind != 5)
        usage();
    set(cfg.kind, sizeof cfg.kind, argv[optind], "KIND");
    set(cfg.base_url, sizeof cfg.base_url, argv[optind + 1], "BASE_URL");
    set(cfg.model, sizeof cfg.model, argv[optind + 2], "MODEL");
    snprintf(cfg.name, sizeof cfg.name, "test");
    req.task = argv[optind + 3];
    req.prompt = argv[optind + 4];
    req.schema = schema;
    req.labels = labels;

    ModelProvider *p = NULL;
    Err err = { 0 };
    int rc;
    if (!strcmp(cfg.kind, "openai"))
        rc = model_openai_new(&cfg, &p, &err);
    else if (!strcmp(cfg.kind, "anthropic"))
        rc = model_anthropic_new(&cfg, &p, &err);
    else
        rc = err_set(&err, ERR_CONFIG, "unknown kind '%s'", cfg.kind);
    if (rc < 0) {
        print_line(json_pack("{s:s, s:s}", "status", "config", "error", err.msg));
        json_decref(schema);
        json_decref(labels);
        return 1;
    }

    ModelResponse resp;
    p->ops->call(p, &req, &resp);
    print_line(json_pack("{s:s, s:O?, s:s, s:I, s:I, s:I, s:i, s:i, s:s}", "status",
                         model_status_name(resp.status), "output", resp.output, "model",
                         resp.model, "tokens_in", (json_int_t)resp.tokens_in, "tokens_out",
                         (json_int_t)resp.tokens_out, "retry_after_ms",
                         (json_int_t)resp.retry_after_ms, "http_status", resp.http_status,
                         "repairs", resp.repairs, "error", resp.error));
    model_response_done(&resp);
    p->ops->free(p);
    json_decref(schema);
    json_decref(labels);
    return 0;
}
