/* bench_models: the model router's own cost, and the local classifier's
 * speed.
 *
 *   - local classifications per second: local_nb_classify on the test
 *     split of tests/data/emails (trained on the train split), one thread;
 *   - router overhead per call, cache cold: model_router_call on the
 *     classify route (local tier) minus the bare classification of the same
 *     texts. It includes the cache lookup (a miss), the route and provider
 *     choice, the budget checks and building the model.called event (its
 *     append is asynchronous: the writer's work is counted in CPU, not in
 *     the call's time);
 *   - router overhead per call, cache warm: a priced remote route whose
 *     answers are all in the cache (the provider is never contacted: its
 *     address is a closed port, so a miss would show as a failure);
 *   - the edit distance of an approval decision (model/quality.h), typical
 *     and worst case.
 *
 * BENCH_CALLS (default 4000) calls per measurement; BENCH_DIR (default
 * /tmp) holds the data directory, removed at the end. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench_util.h"
#include "core/config.h"
#include "core/json.h"
#include "flow/engine.h"
#include "ledger/ledger.h"
#include "ledger/projection.h"
#include "model/local.h"
#include "model/quality.h"
#include "model/router.h"

#ifndef BENCH_SRC_DIR
#define BENCH_SRC_DIR "."
#endif
#define MAX_TEXTS 2000

typedef struct Texts {
    char *text[MAX_TEXTS];
    char *label[MAX_TEXTS];
    size_t n;
} Texts;

static int texts_load(const char *path, Texts *t)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char *line = NULL;
    size_t cap = 0;
    while (t->n < MAX_TEXTS && getline(&line, &cap, f) > 0) {
        json_t *o = json_loads(line, 0, NULL);
        const char *x = json_string_value(json_object_get(o, "text"));
        const char *l = json_string_value(json_object_get(o, "label"));
        if (x && l) {
            t->text[t->n] = strdup(x);
            t->label[t->n] = strdup(l);
            t->n++;
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
    return t->n ? 0 : -1;
}

static void texts_free(Texts *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->text[i]);
        free(t->label[i]);
    }
}

/* 4. the edit distance an approval decision costs the quality projection:
 * a typical edit (a sentence changed in a 2 KB draft) and the worst case
 * (two 16 KiB texts with nothing in common: the 1024 x 1024 window). */
static void edit_distance_bench(void)
{
    size_t n = 2048, big = MODEL_QUALITY_TEXT_MAX;
    char *a = malloc(big + 1), *b = malloc(big + 1);
    for (size_t i = 0; i < big; i++) {
        a[i] = (char)('a' + i % 23);
        b[i] = (char)('A' + i % 19);
    }
    a[big] = b[big] = '\0';
    char *c = malloc(n + 1);
    memcpy(c, a, n);
    c[n] = '\0';
    memcpy(c + n / 2, "This sentence was rewritten by the operator.", 44);
    int reps = 2000;
    double t0 = now_s(), sum = 0;
    for (int i = 0; i < reps; i++)
        sum += model_edit_distance(a, n, c, n);
    double typical = (now_s() - t0) / reps;
    reps = 5;
    t0 = now_s();
    for (int i = 0; i < reps; i++)
        sum += model_edit_distance(a, big, b, big);
    double worst = (now_s() - t0) / reps;
    printf("edit distance: %.1f us for a sentence edited in a 2 KB draft; %.1f ms at worst "
           "(16 KiB against 16 KiB, nothing in common) [%.3f]\n",
           typical * 1e6, worst * 1e3, sum);
    free(a);
    free(b);
    free(c);
}

int main(void)
{
    const char *env = getenv("BENCH_CALLS");
    int calls = env ? atoi(env) : 4000;
    if (calls < 100)
        calls = 100;
    Texts train = { 0 }, test = { 0 };
    if (texts_load(BENCH_SRC_DIR "/tests/data/emails/train.jsonl", &train) < 0 ||
        texts_load(BENCH_SRC_DIR "/tests/data/emails/test.jsonl", &test) < 0) {
        fprintf(stderr, "bench_models: the labelled emails (tests/data/emails) are missing\n");
        return 1;
    }
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    printf("machine: %s, %ld cores\n", cpu, sysconf(_SC_NPROCESSORS_ONLN));

    /* 1. the local classifier alone */
    LocalNB *nb = local_nb_new(18);
    Err err = { 0 };
    for (size_t i = 0; i < train.n; i++)
        local_nb_add(nb, train.text[i], strlen(train.text[i]), train.label[i], &err);
    local_nb_temperature(nb); /* fit it now, not in the timed loop */
    char label[LOCAL_LABEL_MAX + 1];
    double prob;
    int right = 0;
    double t0 = now_s();
    for (int i = 0; i < calls; i++) {
        size_t k = (size_t)i % test.n;
        local_nb_classify(nb, test.text[k], strlen(test.text[k]), label, sizeof label, &prob, NULL,
                          &err);
        right += i < (int)test.n && !strcmp(label, test.label[k]);
    }
    double bare_s = now_s() - t0;
    printf("local classify: %d calls in %.3f s: %.0f classifications/s, %.1f us each "
           "(accuracy on the %zu test mails: %.1f%%)\n",
           calls, bare_s, calls / bare_s, bare_s / calls * 1e6, test.n,
           100.0 * right / (double)(test.n < (size_t)calls ? test.n : (size_t)calls));

    /* a data directory with the examples labelled */
    char dir[512];
    const char *base = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/bench-models.%d", base, (int)getpid());
    mkdir(dir, 0700);
    printf("storage: %s, file system %s\n", dir, fs_name(dir));
    Config cfg;
    core_config_defaults(&cfg);
    cfg.log_level = LOG_WARN;
    log_set_level(LOG_WARN);
    /* a priced remote provider on a closed port, for the warm cache */
    ModelProviderConfig *p = &cfg.model_providers[cfg.n_model_providers++];
    snprintf(p->name, sizeof p->name, "remote");
    snprintf(p->kind, sizeof p->kind, "openai");
    snprintf(p->base_url, sizeof p->base_url, "http://127.0.0.1:9/v1");
    snprintf(p->model, sizeof p->model, "m");
    p->timeout_ms = 1000;
    p->price_in_per_mtok = 1.0;
    p->price_out_per_mtok = 2.0;
    ModelRouteConfig *rt = &cfg.model_routes[cfg.n_model_routes++];
    snprintf(rt->name, sizeof rt->name, "complete");
    snprintf(rt->candidates[0], sizeof rt->candidates[0], "remote");
    rt->n_candidates = 1;
    rt->max_output_tokens = 200;
    ledger_projections_builtin();
    flow_projections_register();
    Ledger *l = NULL;
    Store *rd = NULL;
    LedgerOptions opts = { .config = &cfg };
    if (ledger_db_prepare(dir, &cfg, true, &err) < 0 || ledger_open(dir, &opts, &l, &err) < 0 ||
        ledger_reader_open(l, &rd, &err) < 0) {
        fprintf(stderr, "bench_models: %s\n", err.msg);
        return 1;
    }
    for (size_t i = 0; i < train.n; i++) {
        json_t *d = json_pack("{s:I, s:s, s:s}", "event_seq", (json_int_t)i + 1, "label",
                              train.label[i], "text", train.text[i]);
        Event *ev = NULL;
        ledger_event_new("model.labeled", "bench", NULL, d, NULL, ledger_limits(l), &ev, &err);
        json_decref(d);
        ledger_append(l, &ev, 1, NULL, &err);
    }
    ModelRouter *r = NULL;
    if (model_router_new(l, &cfg, &r, &err) < 0) {
        fprintf(stderr, "bench_models: %s\n", err.msg);
        return 1;
    }
    /* 2. cache cold: the local classify route */
    ModelCall call = { .route = "classify", .workflow = "bench" };
    ModelResult res;
    call.req.prompt = test.text[0];
    model_router_call(r, rd, &call, &res, &err); /* the classifier learns the examples here */
    model_result_done(&res);
    int ok = 0;
    double c0 = cpu_s();
    t0 = now_s();
    for (int i = 0; i < calls; i++) {
        call.req.prompt = test.text[(size_t)i % test.n];
        model_router_call(r, rd, &call, &res, &err);
        ok += res.status == MODEL_CALL_OK;
        model_result_done(&res);
    }
    double routed_s = now_s() - t0;
    ledger_sync(l, &err);
    double routed_cpu = cpu_s() - c0;
    printf("router, cache cold (local classify): %.1f us per call, of which %.1f us are the "
           "router's (%d/%d answered); CPU with the model.called appends: %.1f us per call\n",
           routed_s / calls * 1e6, (routed_s - bare_s) / calls * 1e6, ok, calls,
           routed_cpu / calls * 1e6);

    /* 3. cache warm: every answer of the remote route is cached */
    for (size_t i = 0; i < test.n; i++) {
        ModelCall c = { .route = "complete", .req = { .prompt = test.text[i] } };
        char key[CORE_SHA256_HEX + 1];
        model_router_request_key(r, &c, key);
        json_t *d = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:f, s:b, s:s, s:i, s:i}", "route",
                              "complete", "provider", "remote", "model", "m", "outcome", "ok",
                              "request", key, "latency_ms", 100, "cost_usd", 0.0004, "cache_hit",
                              0, "output", "cached answer", "cache_ttl_s", 3600, "tokens_in", 100);
        Event *ev = NULL;
        ledger_event_new("model.called", "bench", NULL, d, NULL, ledger_limits(l), &ev, &err);
        json_decref(d);
        ledger_append(l, &ev, 1, NULL, &err);
    }
    int hits = 0;
    c0 = cpu_s();
    t0 = now_s();
    for (int i = 0; i < calls; i++) {
        ModelCall c = { .route = "complete", .req = { .prompt = test.text[(size_t)i % test.n] } };
        model_router_call(r, rd, &c, &res, &err);
        hits += res.status == MODEL_CALL_OK && res.cached;
        model_result_done(&res);
    }
    double warm_s = now_s() - t0;
    ledger_sync(l, &err);
    double warm_cpu = cpu_s() - c0;
    printf("router, cache warm (a priced remote route): %.1f us per call (%d/%d hits); CPU with "
           "the model.called appends: %.1f us per call\n",
           warm_s / calls * 1e6, hits, calls, warm_cpu / calls * 1e6);
    model_router_free(r);
    store_close(rd);
    ledger_close(l);
    local_nb_free(nb);
    texts_free(&train);
    texts_free(&test);
    rm_tree(dir);
    edit_distance_bench();
    return ok == calls && hits == calls ? 0 : 1;
}
