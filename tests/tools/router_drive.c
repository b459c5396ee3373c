/* router_drive: runs a script of calls through one model router, for tests.
 *
 *   router_drive --data DIR SCRIPT
 *
 * Loads DIR/bureau.yaml, opens DIR's ledger as the CLI does (the built-in,
 * API and flow projections registered, the "models" one with them), makes
 * one model_router_new() and runs the calls of SCRIPT, a JSON array of
 * entries, in order:
 *
 *   {"route": R, "text": T,          the call: route and prompt (required)
 *    "task": K,                      req.task (default: the route's name)
 *    "labels": [..], "system": S,    classify's labels, a system prompt
 *    "schema": {..},                 structured output
 *    "max_output_tokens": N,
 *    "workflow": W, "customer": C,   for budgets and spend
 *    "now": true,                    force: run even outside the batch window
 *    "repeat": N,                    N calls one after the other (1)
 *    "threads": N}                   N threads at once, each making `repeat`
 *                                    calls (1); its own read connection each
 *   {"health": true}                 prints {"health": [...]} now
 *
 * Each call prints one JSON line (the order of the lines of one threaded
 * entry is the order they finished in):
 *
 *   {"entry":0,"route":"r","status":"ok|deferred|parked|failed","provider":"p",
 *    "model":"m","cost_usd":0.025,"saved_usd":0,"cached":false,"tokens_in":11,
 *    "tokens_out":7,"output":...,"error":"","attempts":[...]}
 *
 * After each entry the ledger is synced (every model.called of it is durable
 * and in the projections, so the next entry's cache and budgets see it);
 * after the last, the router's health is printed as a last line
 * {"health": [...]}. Exit status: 0 when the script ran (whatever the calls
 * answered), 1 when the router or the ledger could not be set up or a call
 * was refused (model_router_call < 0), 2 on a usage or script error. */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/tokens.h"
#include "core/buf.h"
#include "core/json.h"
#include "core/log.h"
#include "flow/engine.h"
#include "ledger/ledger.h"
#include "ledger/projection.h"
#include "model/router.h"

#define MAX_SCRIPT (4 << 20)
#define MAX_THREADS 64
#define MAX_REPEAT 10000

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

static void usage(void)
{
    fprintf(stderr, "usage: router_drive --data DIR SCRIPT\n");
    exit(2);
}

static void print_line(json_t *v)
{
    Buf b;
    buf_init(&b, 0);
    core_json_canonical(v, &b); /* reals in their shortest form */
    pthread_mutex_lock(&out_mu);
    printf("%s\n", buf_cstr(&b));
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
    buf_done(&b);
    json_decref(v);
}

static json_t *script_read(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "router_drive: %s: cannot be read\n", path);
        exit(2);
    }
    Buf b;
    buf_init(&b, MAX_SCRIPT);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (buf_append(&b, chunk, n) < 0) {
            fprintf(stderr, "router_drive: %s: larger than %d bytes\n", path, MAX_SCRIPT);
            exit(2);
        }
    fclose(f);
    json_t *v = NULL;
    Err err = { 0 };
    if (core_json_parse(b.ptr ? b.ptr : "", b.len, &v, &err) < 0) {
        fprintf(stderr, "router_drive: %s: %s\n", path, err.msg);
        exit(2);
    }
    buf_done(&b);
    if (!json_is_array(v)) {
        fprintf(stderr, "router_drive: %s: must be a JSON array\n", path);
        exit(2);
    }
    return v;
}

static const char *opt_str(const json_t *e, const char *key, size_t i)
{
    const json_t *v = json_object_get(e, key);
    if (v && !json_is_string(v)) {
        fprintf(stderr, "router_drive: script[%zu].%s: must be a string\n", i, key);
        exit(2);
    }
    return json_string_value(v);
}

static long opt_int(const json_t *e, const char *key, long def, long lo, long hi, size_t i)
{
    const json_t *v = json_object_get(e, key);
    if (!v)
        return def;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        fprintf(stderr, "router_drive: script[%zu].%s: must be an integer in %ld..%ld\n", i,
                key, lo, hi);
        exit(2);
    }
    return (long)json_integer_value(v);
}

typedef struct Drive {
    ModelRouter *router;
    Ledger *l;
    const json_t *entry;
    size_t index;
    ModelCall call;
    long repeat;
    int failed; /* a call refused (< 0) */
} Drive;

static const char *status_name(ModelCallStatus s)
{
    switch (s) {
    case MODEL_CALL_OK: return "ok";
    case MODEL_CALL_DEFERRED: return "deferred";
    case MODEL_CALL_PARKED: return "parked";
    case MODEL_CALL_FAILED: return "failed";
    }
    return "unknown";
}

static int one_call(Drive *d, Store *rd)
{
    ModelResult res;
    Err err = { 0 };
    int rc = model_router_call(d->router, rd, &d->call, &res, &err);
    json_t *line;
    if (rc < 0) {
        line = json_pack("{s:I, s:s, s:s, s:s}", "entry", (json_int_t)d->index, "route",
                         d->call.route, "status", "error", "error", err.msg);
    } else {
        line = json_pack("{s:I, s:s, s:s, s:s, s:s, s:f, s:f, s:b, s:I, s:I, s:I, s:s, s:O}",
                         "entry", (json_int_t)d->index, "route", d->call.route, "status",
                         status_name(res.status), "provider", res.provider, "model", res.model,
                         "cost_usd", res.cost_usd, "saved_usd", res.saved_usd, "cached",
                         res.cached, "tokens_in", (json_int_t)res.tokens_in, "tokens_out",
                         (json_int_t)res.tokens_out, "latency_ms", (json_int_t)res.latency_ms,
                         "error", res.error, "attempts", res.attempts);
        json_object_set(line, "output", res.output ? res.output : json_null());
        if (res.status == MODEL_CALL_DEFERRED)
            json_object_set_new(line, "deferred_until_ms",
                                json_integer(res.deferred_until_ms));
    }
    model_result_done(&res);
    print_line(line);
    return rc;
}

static void *thread_main(void *arg)
{
    Drive *d = arg;
    Store *rd = NULL;
    Err err = { 0 };
    if (ledger_reader_open(d->l, &rd, &err) < 0) {
        fprintf(stderr, "router_drive: reader: %s\n", err.msg);
        d->failed = 1;
        return NULL;
    }
    for (long k = 0; k < d->repeat; k++)
        if (one_call(d, rd) < 0)
            d->failed = 1;
    store_close(rd);
    return NULL;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = { { "data", required_argument, NULL, 'd' },
                                          { NULL, 0, NULL, 0 } };
    const char *dir = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'd')
            dir = optarg;
        else
            usage();
    }
    if (!dir || argc - optind != 1)
        usage();
    json_t *script = script_read(argv[optind]);

    ledger_projections_builtin();
    api_projections_register();
    flow_projections_register(); /* with the "models" projection */
    model_projections_register(); /* (again: registering twice is harmless) */

    Config cfg;
    core_config_defaults(&cfg);
    Err err = { 0 };
    size_t n = strlen(dir) + sizeof "/bureau.yaml";
    char *path = xmalloc(n);
    snprintf(path, n, "%s/bureau.yaml", dir);
    int rc = core_config_load(path, &cfg, &err);
    free(path);
    if (rc < 0) {
        fprintf(stderr, "router_drive: %s\n", err.msg);
        json_decref(script);
        core_config_done(&cfg);
        return 1;
    }
    log_set_level(cfg.log_level);
    Ledger *l = NULL;
    ModelRouter *router = NULL;
    LedgerOptions lo = { .config = &cfg };
    if (ledger_open(dir, &lo, &l, &err) < 0 || model_router_new(l, &cfg, &router, &err) < 0) {
        fprintf(stderr, "router_drive: %s\n", err.msg);
        ledger_close(l);
        json_decref(script);
        core_config_done(&cfg);
        return 1;
    }

    int status = 0;
    size_t i;
    const json_t *e;
    json_array_foreach(script, i, e) {
        if (!json_is_object(e)) {
            fprintf(stderr, "router_drive: script[%zu]: must be an object\n", i);
            status = 2;
            break;
        }
        if (json_is_true(json_object_get(e, "health"))) {
            print_line(json_pack("{s:o}", "health", model_router_health(router)));
            continue;
        }
        const char *route = opt_str(e, "route", i), *text = opt_str(e, "text", i);
        if (!route || !text) {
            fprintf(stderr, "router_drive: script[%zu]: route and text are required\n", i);
            status = 2;
            break;
        }
        const json_t *labels = json_object_get(e, "labels"), *schema = json_object_get(e, "schema");
        Drive d = {
            .router = router, .l = l, .entry = e, .index = i,
            .repeat = opt_int(e, "repeat", 1, 1, MAX_REPEAT, i),
            .call = { .route = route, .workflow = opt_str(e, "workflow", i),
                      .customer = opt_str(e, "customer", i),
                      .force = json_is_true(json_object_get(e, "now")),
                      .req = { .task = opt_str(e, "task", i), .prompt = text,
                               .system = opt_str(e, "system", i), .schema = schema,
                               .labels = labels,
                               .max_output_tokens = (int)opt_int(e, "max_output_tokens", 0, 0,
                                                                 1000000, i) } },
        };
        long threads = opt_int(e, "threads", 1, 1, MAX_THREADS, i);
        Drive ds[MAX_THREADS];
        pthread_t tids[MAX_THREADS];
        for (long t = 0; t < threads; t++) {
            ds[t] = d;
            if (pthread_create(&tids[t], NULL, thread_main, &ds[t]) != 0) {
                fprintf(stderr, "router_drive: cannot start a thread\n");
                exit(1);
            }
        }
        for (long t = 0; t < threads; t++) {
            pthread_join(tids[t], NULL);
            if (ds[t].failed)
                status = 1;
        }
        if (ledger_sync(l, &err) < 0) {
            fprintf(stderr, "router_drive: sync: %s\n", err.msg);
            status = 1;
        }
    }
    if (ledger_sync(l, &err) < 0) { /* every model.called is durable */
        fprintf(stderr, "router_drive: sync: %s\n", err.msg);
        status = 1;
    }
    print_line(json_pack("{s:o}", "health", model_router_health(router)));
    model_router_free(router);
    ledger_close(l);
    json_decref(script);
    core_config_done(&cfg);
    return status;
}
