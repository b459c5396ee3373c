/* The "models" projection (migrations/sqlite/0005_models.sql): spend per
 * day, route, provider, workflow and customer; the answer cache; the
 * labelled examples of the local classifier. A pure function of
 * model.called and model.labeled. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "ledger/projection.h"
#include "model/quality.h"
#include "model/router.h"

static const char *const tables[] = { "model_spend", "model_cache", "model_examples", NULL };

static const char *str(const json_t *d, const char *k)
{
    const char *s = json_string_value(json_object_get(d, k));
    return s ? s : "";
}

static double num(const json_t *d, const char *k)
{
    return json_number_value(json_object_get(d, k));
}

static int called(Store *tx, const Event *ev, const json_t *d, Err *err)
{
    const char *route = str(d, "route"), *provider = str(d, "provider");
    if (!*route || !*provider)
        return 0;
    bool ok = !strcmp(str(d, "outcome"), "ok"), hit = json_is_true(json_object_get(d, "cache_hit"));
    StoreStmt *st;
    int rc = store_prepare(
        tx,
        "INSERT INTO model_spend(day, route, provider, workflow, customer, calls, failures,"
        " cache_hits, tokens_in, tokens_out, cost_usd, saved_usd, latency_ms)"
        " VALUES (substr(?1, 1, 10), ?2, ?3, ?4, ?5, 1, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        " ON CONFLICT(day, route, provider, workflow, customer) DO UPDATE SET"
        " calls = calls + 1, failures = failures + ?6, cache_hits = cache_hits + ?7,"
        " tokens_in = tokens_in + ?8, tokens_out = tokens_out + ?9, cost_usd = cost_usd + ?10,"
        " saved_usd = saved_usd + ?11, latency_ms = latency_ms + ?12",
        &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, ev->received_at, strlen(ev->received_at));
    store_bind_text(st, 2, route, strlen(route));
    store_bind_text(st, 3, provider, strlen(provider));
    store_bind_text(st, 4, str(d, "workflow"), strlen(str(d, "workflow")));
    store_bind_text(st, 5, str(d, "customer"), strlen(str(d, "customer")));
    store_bind_int(st, 6, !ok);
    store_bind_int(st, 7, hit);
    store_bind_int(st, 8, json_integer_value(json_object_get(d, "tokens_in")));
    store_bind_int(st, 9, json_integer_value(json_object_get(d, "tokens_out")));
    store_bind_real(st, 10, num(d, "cost_usd"));
    store_bind_real(st, 11, num(d, "saved_usd"));
    store_bind_int(st, 12, json_integer_value(json_object_get(d, "latency_ms")));
    if ((rc = store_stmt_exec(st, err)) < 0)
        return rc;
    const json_t *out = json_object_get(d, "output");
    int64_t ttl = json_integer_value(json_object_get(d, "cache_ttl_s"));
    if (!ok || hit || !out || ttl <= 0 || !*str(d, "request"))
        return 0;
    int64_t at = 0;
    core_time_parse(ev->received_at, strlen(ev->received_at), &at);
    char expires[CORE_TIME_LEN + 1];
    core_time_format(at + ttl * 1000, expires);
    char *text = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    rc = store_prepare(tx,
                       "INSERT INTO model_cache(key, route, provider, model, output, cost_usd, seq,"
                       " expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                       " ON CONFLICT(key) DO UPDATE SET provider = ?3, model = ?4, output = ?5,"
                       " cost_usd = ?6, seq = ?7, expires_at = ?8",
                       &st, err);
    if (rc == 0) {
        store_bind_text(st, 1, str(d, "request"), strlen(str(d, "request")));
        store_bind_text(st, 2, route, strlen(route));
        store_bind_text(st, 3, provider, strlen(provider));
        store_bind_text(st, 4, str(d, "model"), strlen(str(d, "model")));
        store_bind_text(st, 5, text, strlen(text));
        store_bind_real(st, 6, num(d, "cost_usd"));
        store_bind_int(st, 7, ev->seq);
        store_bind_text(st, 8, expires, strlen(expires));
        rc = store_stmt_exec(st, err);
    }
    free(text);
    return rc;
}

static int labeled(Store *tx, const Event *ev, const json_t *d, Err *err)
{
    const char *label = str(d, "label"), *text = str(d, "text");
    if (!*label || !*text)
        return 0;
    StoreStmt *st;
    int rc = store_prepare(tx,
                           "INSERT OR IGNORE INTO model_examples(seq, event_seq, label, text)"
                           " VALUES (?1, ?2, ?3, ?4)",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_int(st, 1, ev->seq);
    store_bind_int(st, 2, json_integer_value(json_object_get(d, "event_seq")));
    store_bind_text(st, 3, label, strlen(label));
    store_bind_text(st, 4, text, strlen(text));
    return store_stmt_exec(st, err);
}

static int apply(Store *tx, const Event *ev, Err *err)
{
    bool c = !strcmp(ev->type, "model.called"), l = !strcmp(ev->type, "model.labeled");
    if (!c && !l)
        return 0;
    json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (!d)
        return 0;
    int rc = c ? called(tx, ev, d, err) : labeled(tx, ev, d, err);
    json_decref(d);
    return rc;
}

static const Projection models_projection = {
    .name = "models",
    .version = 1,
    .tables = tables,
    .apply = apply,
};

void model_projections_register(void)
{
    ledger_projection_register(&models_projection);
    model_quality_register();
}

int model_spend(Store *rd, const char *by, const char *since, json_t **ret, Err *err)
{
    static const char *const groups[] = { "route", "provider", "workflow", "customer", "day",
                                          NULL };
    bool ok = false;
    for (int i = 0; groups[i]; i++)
        ok |= !strcmp(by, groups[i]);
    if (!ok)
        return err_set(err, ERR_INVAL, "by: '%.32s' is not one of route, provider, workflow, "
                                       "customer, day", by);
    char sql[640];
    snprintf(sql, sizeof sql,
             "SELECT %s, sum(calls), sum(failures), sum(cache_hits), sum(tokens_in),"
             " sum(tokens_out), sum(cost_usd), sum(saved_usd), sum(latency_ms)"
             " FROM model_spend WHERE day >= ?1 GROUP BY 1 ORDER BY %s",
             by, !strcmp(by, "day") ? "1" : "7 DESC, 1");
    StoreStmt *st;
    int rc = store_prepare(rd, sql, &st, err);
    if (rc < 0)
        return rc;
    const char *from = since ? since : "";
    store_bind_text(st, 1, from, strlen(from));
    json_t *list = json_array();
    while ((rc = store_step(st, err)) == STORE_ROW) {
        int64_t calls = store_col_int(st, 1);
        json_t *row = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f}", "key",
                                store_col_text(st, 0, NULL), "calls", (json_int_t)calls,
                                "failures", (json_int_t)store_col_int(st, 2), "cache_hits",
                                (json_int_t)store_col_int(st, 3), "tokens_in",
                                (json_int_t)store_col_int(st, 4), "tokens_out",
                                (json_int_t)store_col_int(st, 5), "cost_usd",
                                store_col_real(st, 6), "saved_usd", store_col_real(st, 7),
                                "latency_ms_mean",
                                calls ? (double)store_col_int(st, 8) / (double)calls : 0.0);
        json_array_append_new(list, row);
    }
    store_stmt_done(st);
    if (rc < 0) {
        json_decref(list);
        return rc;
    }
    *ret = list;
    return 0;
}

char *model_event_text(const json_t *d, const char *raw, size_t raw_len)
{
    Buf b;
    buf_init(&b, 0);
    const char *subject = json_string_value(json_object_get(d, "subject"));
    const char *text = json_string_value(json_object_get(d, "text"));
    if (subject)
        buf_printf(&b, "%s\n", subject);
    if (text)
        buf_puts(&b, text);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)json_object_get(d, "fields"), k, v) if (json_is_string(v))
        buf_printf(&b, "%s\n", json_string_value(v));
    if (b.len == 0 && raw) /* anything else: the data as it is */
        buf_append(&b, raw, raw_len);
    if (b.len > MODEL_LABEL_TEXT_MAX) {
        b.len = MODEL_LABEL_TEXT_MAX;
        while (b.len > 0 && ((unsigned char)b.ptr[b.len] & 0xC0) == 0x80)
            b.len--; /* whole UTF-8 characters */
        b.ptr[b.len] = '\0';
    }
    char *s = xstrdup(buf_cstr(&b));
    buf_done(&b);
    return s;
}
