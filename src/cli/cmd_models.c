/* bureau models | models call | spend | label: the model router from the
 * command line (model/router.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/json.h"
#include "model/quality.h"
#include "model/router.h"

#define CALL_TEXT_MAX (1024 * 1024)
#define SHADOW_RUN_MAX 256 /* shadow calls one bureau batch run makes at most */

static const char *text_of(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "-";
}

int cmd_models(Cli *cli)
{
    int rc = cli_load_config(cli);
    if (rc)
        return rc;
    ModelRouter *r = NULL;
    Err err = { 0 };
    if (model_router_new(NULL, &cli->config, &r, &err) < 0)
        return cli_fail_err(cli, &err);
    json_t *health = model_router_health(r);
    model_router_free(r);
    Store *rd = NULL; /* the canaries' state, when there is a database */
    if (!cli->json)
        ledger_reader_open_dir(cli->data_dir, &cli->config, &rd, &err);
    size_t i;
    json_t *p;
    if (cli->json) {
        json_array_foreach(health, i, p) cli_print_json(json_incref(p));
    } else {
        printf("%-16s %-10s %-28s %-10s %s\n", "PROVIDER", "KIND", "MODEL", "BREAKER", "PRICE/MTOK");
        json_array_foreach(health, i, p) {
            const ModelProviderConfig *pc = NULL;
            for (size_t k = 0; k < cli->config.n_model_providers; k++)
                if (!strcmp(cli->config.model_providers[k].name, text_of(p, "name")))
                    pc = &cli->config.model_providers[k];
            printf("%-16s %-10s %-28s %-10s in $%.2f out $%.2f\n", text_of(p, "name"),
                   text_of(p, "kind"), *text_of(p, "model") ? text_of(p, "model") : "-",
                   text_of(p, "breaker"), pc ? pc->price_in_per_mtok : 0.0,
                   pc ? pc->price_out_per_mtok : 0.0);
        }
        printf("\n%-12s %s\n", "ROUTE", "CANDIDATES");
        for (size_t k = 0; k < cli->config.n_model_routes; k++) {
            const ModelRouteConfig *rt = &cli->config.model_routes[k];
            printf("%-12s", rt->name);
            for (int c = 0; c < rt->n_candidates; c++)
                printf("%s%s", c ? " > " : " ", rt->candidates[c]);
            if (rt->max_latency_ms)
                printf("  (SLA %d ms)", rt->max_latency_ms);
            if (rt->defer_batch)
                printf("  (batch window %s)", cli->config.batch_window);
            if (rt->canary[0]) {
                ModelCanaryState cs = model_canary_state(rd, rt, NULL);
                printf("  (canary %s: %s%s)", rt->canary, model_canary_state_name(cs),
                       cs == MODEL_CANARY_ACTIVE ? "" : " by the ledger");
                if (cs == MODEL_CANARY_ACTIVE)
                    printf(" %d%%", rt->canary_percent);
            }
            if (rt->shadow[0])
                printf("  (shadow %s)", rt->shadow);
            printf("\n");
        }
        store_close(rd);
        printf("%-12s %s\n", "(others)", "local");
        printf("\nbreakers and latencies are per process: `bureau serve` keeps them live\n");
    }
    json_decref(health);
    return EXIT_OK;
}

/* Reads --text or --file (at most max bytes) into a new string. */
static char *input_text(Cli *cli, size_t max, int *rc)
{
    const char *t = cli_opt(cli, "text"), *f = cli_opt(cli, "file");
    *rc = 0;
    if (!t == !f) {
        *rc = cli_usage_error(cli, "give exactly one of --text or --file");
        return NULL;
    }
    if (t) {
        if (strlen(t) > max) {
            *rc = cli_fail(cli, "--text: longer than %zu bytes", max);
            return NULL;
        }
        return xstrdup(t);
    }
    FILE *in = fopen(f, "rb");
    if (!in) {
        *rc = cli_fail(cli, "--file: %s: cannot be read", f);
        return NULL;
    }
    char *buf = xmalloc(max + 2);
    size_t n = fread(buf, 1, max + 1, in);
    fclose(in);
    if (n > max) {
        free(buf);
        *rc = cli_fail(cli, "--file: %s is larger than %zu bytes", f, max);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

int cmd_models_call(Cli *cli)
{
    int rc = 0;
    char *text = input_text(cli, CALL_TEXT_MAX, &rc);
    if (!text)
        return rc;
    json_t *labels = NULL;
    const char *ls = cli_opt(cli, "labels");
    if (ls) {
        labels = json_array();
        char *copy = xstrdup(ls), *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
            json_array_append_new(labels, json_string(t));
        free(copy);
    }
    Ledger *l = NULL;
    Store *rd = NULL;
    if ((rc = cli_open_both(cli, &l, &rd))) {
        free(text);
        json_decref(labels);
        return rc;
    }
    Err err = { 0 };
    ModelRouter *r = NULL;
    ModelResult res = { 0 };
    rc = model_router_new(l, &cli->config, &r, &err);
    if (rc == 0) {
        ModelCall call = { .route = cli->pos[0], .force = cli_flag(cli, "now"),
                           .req = { .prompt = text, .labels = labels,
                                    .system = cli_opt(cli, "system") } };
        rc = model_router_call(r, rd, &call, &res, &err);
    }
    Err serr = { 0 };
    ledger_sync(l, &serr); /* model.called is durable before we report */
    model_router_free(r);
    store_close(rd);
    ledger_close(l);
    free(text);
    json_decref(labels);
    if (rc < 0)
        return cli_fail_err(cli, &err);
    if (res.status != MODEL_CALL_OK) {
        rc = cli_fail(cli, "%s", res.error);
        if (cli->json)
            cli_print_json(json_pack("{s:s, s:s, s:O}", "status",
                                     res.status == MODEL_CALL_DEFERRED ? "deferred"
                                     : res.status == MODEL_CALL_PARKED ? "parked"
                                                                       : "failed",
                                     "error", res.error, "attempts", res.attempts));
        model_result_done(&res);
        return rc;
    }
    json_t *o = json_pack("{s:O, s:s, s:s, s:f, s:I, s:b, s:f}", "output", res.output, "provider",
                          res.provider, "model", res.model, "cost_usd", res.cost_usd, "latency_ms",
                          (json_int_t)res.latency_ms, "cached", res.cached, "saved_usd",
                          res.saved_usd);
    const json_t *label = json_object_get(res.output, "label");
    if (json_is_string(label)) {
        json_object_set(o, "label", (json_t *)label);
        json_object_set(o, "confidence", json_object_get(res.output, "confidence"));
    }
    json_object_set(o, "attempts", res.attempts);
    if (cli->json) {
        cli_print_json(o);
    } else {
        if (json_is_string(res.output))
            printf("%s\n", json_string_value(res.output));
        else {
            Buf b;
            buf_init(&b, 0);
            core_json_dump(res.output, &b);
            printf("%s\n", buf_cstr(&b));
            buf_done(&b);
        }
        fprintf(stderr, "%s (%s): $%.6f, %lld ms%s\n", res.provider, res.model, res.cost_usd,
                (long long)res.latency_ms, res.cached ? ", from the cache" : "");
        json_decref(o);
    }
    model_result_done(&res);
    return EXIT_OK;
}

int cmd_spend(Cli *cli)
{
    const char *by = cli_opt(cli, "by") ? cli_opt(cli, "by") : "route";
    const char *since = cli_opt(cli, "since");
    int rc = cli_load_config(cli);
    Store *rd = NULL;
    if (rc || (rc = cli_open_reader(cli, &rd)))
        return rc;
    Err err = { 0 };
    json_t *rows = NULL;
    rc = model_spend(rd, by, since, &rows, &err) < 0 ? cli_fail_err(cli, &err) : EXIT_OK;
    store_close(rd);
    if (rc != EXIT_OK)
        return rc;
    size_t i;
    json_t *row;
    double total = 0;
    if (!cli->json)
        printf("%-24s %7s %7s %6s %12s %12s %10s %9s\n", by == NULL ? "" : by, "CALLS", "FAILED",
               "CACHED", "TOKENS IN", "TOKENS OUT", "COST USD", "MEAN MS");
    json_array_foreach(rows, i, row) {
        total += json_number_value(json_object_get(row, "cost_usd"));
        if (cli->json) {
            cli_print_json(json_incref(row));
            continue;
        }
        const char *key = text_of(row, "key");
        printf("%-24s %7lld %7lld %6lld %12lld %12lld %10.4f %9.0f\n", *key ? key : "(none)",
               (long long)json_integer_value(json_object_get(row, "calls")),
               (long long)json_integer_value(json_object_get(row, "failures")),
               (long long)json_integer_value(json_object_get(row, "cache_hits")),
               (long long)json_integer_value(json_object_get(row, "tokens_in")),
               (long long)json_integer_value(json_object_get(row, "tokens_out")),
               json_number_value(json_object_get(row, "cost_usd")),
               json_number_value(json_object_get(row, "latency_ms_mean")));
    }
    if (!cli->json)
        printf("%-24s %70.4f\n", "total", total);
    json_decref(rows);
    return EXIT_OK;
}

int cmd_label(Cli *cli)
{
    const char *label = cli->pos[1];
    size_t n = strlen(label);
    bool ok = n > 0 && n <= 32;
    for (size_t i = 0; ok && i < n; i++)
        ok = (label[i] >= 'a' && label[i] <= 'z') || (label[i] >= '0' && label[i] <= '9') ||
             label[i] == '-' || label[i] == '_';
    if (!ok)
        return cli_usage_error(cli, "LABEL: '%s': 1-32 of a-z, 0-9, - and _", label);
    Ledger *l = NULL;
    Store *rd = NULL;
    int rc;
    if ((rc = cli_open_both(cli, &l, &rd)))
        return rc;
    Err err = { 0 };
    Event *ev = NULL;
    char *end;
    long long seq = strtoll(cli->pos[0], &end, 10);
    bool by_seq = *cli->pos[0] && !*end;
    rc = ledger_event_get(rd, by_seq ? seq : 0, by_seq ? NULL : cli->pos[0], &ev, &err);
    if (rc == 0) {
        json_t *data = NULL;
        core_json_parse(ev->data, ev->data_len, &data, &err);
        char *text = model_event_text(data, ev->data, ev->data_len);
        json_decref(data);
        err.code = 0;
        json_t *d = json_pack("{s:I, s:s, s:s, s:s}", "event_seq", (json_int_t)ev->seq, "label",
                              label, "text", text, "event_type", ev->type);
        free(text);
        Event *lab = NULL;
        LedgerAppendResult r = { 0 };
        rc = ledger_event_new("model.labeled", "operator", ev->subject, d, NULL, ledger_limits(l),
                              &lab, &err);
        json_decref(d);
        if (rc == 0)
            rc = ledger_append(l, &lab, 1, &r, &err);
        if (rc == 0) {
            if (cli->json)
                cli_print_json(json_pack("{s:I, s:s, s:I}", "event", (json_int_t)ev->seq, "label",
                                         label, "seq", (json_int_t)r.seq));
            else
                printf("event %lld labelled %s (seq %lld)\n", (long long)ev->seq, label,
                       (long long)r.seq);
        }
    }
    ledger_event_free(ev);
    store_close(rd);
    ledger_close(l);
    return rc < 0 ? cli_fail_err(cli, &err) : EXIT_OK;
}

int cmd_batch_run(Cli *cli)
{
    Ledger *l = NULL;
    int rc;
    if ((rc = cli_load_config(cli)) || (rc = cli_open_ledger(cli, false, &l)))
        return rc;
    Err err = { 0 };
    Event *ev = NULL;
    json_t *d = json_pack("{s:s}", "by", "cli");
    LedgerAppendResult r = { 0 };
    rc = ledger_event_new("model.batch.run", "operator", NULL, d, NULL, ledger_limits(l), &ev, &err);
    json_decref(d);
    if (rc == 0)
        rc = ledger_append(l, &ev, 1, &r, &err);
    /* the shadows of approved drafts run now, here (docs/models.md, "Quality") */
    json_t *shadows = NULL;
    bool any = false;
    for (size_t i = 0; i < cli->config.n_model_routes; i++)
        any |= cli->config.model_routes[i].shadow[0] != '\0';
    if (rc == 0 && any) {
        ModelRouter *router = NULL;
        Store *rd = NULL;
        if ((rc = model_router_new(l, &cli->config, &router, &err)) == 0 &&
            (rc = ledger_reader_open(l, &rd, &err)) == 0)
            rc = model_shadow_run(router, l, rd, &cli->config, SHADOW_RUN_MAX, &shadows, &err);
        Err e2 = { 0 };
        ledger_sync(l, &e2);
        store_close(rd);
        model_router_free(router);
    }
    ledger_close(l);
    if (rc < 0) {
        json_decref(shadows);
        return cli_fail_err(cli, &err);
    }
    if (cli->json) {
        cli_print_json(json_pack("{s:I, s:o}", "seq", (json_int_t)r.seq, "shadows",
                                 shadows ? shadows : json_null()));
        return EXIT_OK;
    }
    printf("batch run recorded (seq %lld): waiting model calls run with the next runner pass\n",
           (long long)r.seq);
    if (shadows) {
        const char *stopped = json_string_value(json_object_get(shadows, "stopped"));
        printf("shadow runs: %lld (%lld answered, %lld failed)%s%s\n",
               (long long)json_integer_value(json_object_get(shadows, "ran")),
               (long long)json_integer_value(json_object_get(shadows, "ok")),
               (long long)json_integer_value(json_object_get(shadows, "failed")),
               stopped ? "; stopped: " : "", stopped ? stopped : "");
        json_decref(shadows);
    }
    return EXIT_OK;
}

static void print_rate(const json_t *r)
{
    printf(" %5.1f%% [%5.1f-%5.1f]", 100 * json_number_value(json_object_get(r, "rate")),
           100 * json_number_value(json_object_get(r, "low")),
           100 * json_number_value(json_object_get(r, "high")));
}

/* A number of the table, " -" when it is null. */
static void print_num(int width, int prec, const json_t *v)
{
    if (json_is_number(v))
        printf(" %*.*f", width, prec, json_number_value(v));
    else
        printf(" %*s", width, "-");
}

int cmd_models_stats(Cli *cli)
{
    Store *rd = NULL;
    int rc;
    if ((rc = cli_load_config(cli)) || (rc = cli_open_reader(cli, &rd)))
        return rc;
    json_t *out = NULL;
    Err err = { 0 };
    const char *by = cli_opt(cli, "by");
    rc = model_quality_stats(rd, &cli->config, cli_opt(cli, "route"), cli_opt(cli, "since"), by,
                             &out, &err);
    store_close(rd);
    if (rc < 0)
        return cli_fail_err(cli, &err);
    if (cli->json) {
        cli_print_json(out);
        return EXIT_OK;
    }
    size_t i, k;
    json_t *r, *m;
    json_array_foreach(json_object_get(out, "routes"), i, r) {
        printf("%sroute %s:", i ? "\n" : "", text_of(r, "route"));
        json_array_foreach(json_object_get(r, "candidates"), k, m)
            printf("%s%s", k ? " > " : " ", json_string_value(m));
        const json_t *c = json_object_get(r, "canary"), *sh = json_object_get(r, "shadow");
        if (c)
            printf("  canary %s (%s)", text_of(c, "candidate"), text_of(c, "state"));
        if (sh)
            printf("  shadow %s", text_of(sh, "candidate"));
        printf("\n  %-12s %-20s %-9s %5s %-22s %-22s %-22s %6s %10s %10s %8s\n", "PROVIDER",
               "MODEL", "ROLE", "N", "APPROVED [95%]", "EDITED [95%]", "REJECTED [95%]", "EDIT",
               "$/DRAFT", "$/APPROVED", "P50 MS");
        json_array_foreach(json_object_get(r, "models"), k, m) {
            printf("  %-12.12s %-20.20s %-9s %5lld", text_of(m, "provider"), text_of(m, "model"),
                   text_of(m, "role"), (long long)json_integer_value(json_object_get(m, "n")));
            if (by)
                printf("  %s %s:", by, *text_of(m, by) ? text_of(m, by) : "(none)");
            print_rate(json_object_get(m, "approved"));
            print_rate(json_object_get(m, "edited"));
            print_rate(json_object_get(m, "rejected"));
            print_num(6, 3, json_object_get(m, "mean_edit_distance"));
            print_num(10, 6, json_object_get(m, "cost_per_draft_usd"));
            print_num(10, 6, json_object_get(m, "cost_per_approved_usd"));
            print_num(8, 0, json_object_get(m, "latency_ms_p50"));
            printf("\n");
        }
        json_array_foreach(json_object_get(r, "shadows"), k, m) {
            printf("  shadow %s (%s): %lld runs, %lld compared, disagreement", text_of(m, "provider"),
                   text_of(m, "model"), (long long)json_integer_value(json_object_get(m, "n")),
                   (long long)json_integer_value(json_object_get(m, "compared")));
            print_num(1, 3, json_object_get(m, "mean_disagreement"));
            printf(", $%.6f\n", json_number_value(json_object_get(m, "cost_usd")));
        }
        json_array_foreach(json_object_get(r, "marginal"), k, m) {
            printf("  %s -> %s: %+.6f $/draft, approved %+.1f pts, accepted %+.1f pts",
                   text_of(m, "from"), text_of(m, "to"),
                   json_number_value(json_object_get(m, "delta_cost_per_draft_usd")),
                   100 * json_number_value(json_object_get(m, "delta_approve_rate")),
                   100 * json_number_value(json_object_get(m, "delta_accept_rate")));
            const json_t *pu = json_object_get(m, "approve_rate_per_usd");
            if (json_is_number(pu))
                printf(" (%+.1f pts approved per extra $0.01 a draft)",
                       json_number_value(pu));
            printf("\n");
        }
        if (c && json_object_get(c, "decision"))
            printf("  canary decided (seq %lld, by %s): %s\n",
                   (long long)json_integer_value(json_object_get(json_object_get(c, "decision"), "seq")),
                   text_of(json_object_get(c, "decision"), "by"),
                   text_of(json_object_get(c, "decision"), "reason"));
    }
    if (!json_array_size(json_object_get(out, "routes")))
        printf("no decided drafts yet\n");
    json_decref(out);
    return EXIT_OK;
}

int cmd_models_canary(Cli *cli)
{
    bool promote = cli_opt(cli, "promote") != NULL, rollback = cli_opt(cli, "rollback") != NULL;
    if (promote == rollback)
        return cli_usage_error(cli, "give exactly one of --promote or --rollback");
    const char *reason = cli_opt(cli, "reason");
    if (reason && strlen(reason) > 2000)
        return cli_usage_error(cli, "--reason: longer than 2000 bytes");
    Ledger *l = NULL;
    Store *rd = NULL;
    int rc;
    if ((rc = cli_open_both(cli, &l, &rd)))
        return rc;
    json_t *out = NULL;
    Err err = { 0 };
    rc = model_canary_decide(l, rd, &cli->config, cli->pos[0], promote, "cli", reason, &out, &err);
    store_close(rd);
    ledger_close(l);
    if (rc < 0)
        return cli_fail_err(cli, &err);
    if (cli->json)
        cli_print_json(out);
    else {
        printf("route %s: canary %s %s (seq %lld)\n", text_of(out, "route"),
               text_of(out, "candidate"), promote ? "promoted" : "rolled back",
               (long long)json_integer_value(json_object_get(out, "seq")));
        json_decref(out);
    }
    return EXIT_OK;
}
