/* /metrics in the Prometheus text format. Counters are atomics bumped on
 * the request path; rendering reads them without stopping anything. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api/api_int.h"
#include "core/clock.h"
#include "flow/effects.h"
#include "pull/pull.h"

static const double latency_bounds[API_LATENCY_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
};

static const char *const reason_names[API_REASONS] = {
    "ok", "missing_signature", "bad_signature", "stale", "bad_body", "honeypot",
    "unauthorized", "too_large", "rate_limited",
};

const char *api__reason_name(int reason)
{
    return reason >= 0 && reason < API_REASONS ? reason_names[reason] : "other";
}

void api__metrics_latency(ApiMetrics *m, int64_t ns)
{
    double s = (double)ns / 1e9;
    int b = 0;
    while (b < API_LATENCY_BUCKETS && s > latency_bounds[b])
        b++;
    atomic_fetch_add(&m->latency[b], 1);
    atomic_fetch_add(&m->latency_sum_us, (uint64_t)(ns / 1000));
    atomic_fetch_add(&m->requests, 1);
}

static const char *label_name(const ApiServer *s, int label)
{
    return label == 0 ? "api" : s->cfg->connectors[label - 1].name;
}

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

/* The pull connectors, from their projection and the poller's table. */
static void pull_metrics(ApiServer *s, Store *rd, Buf *out)
{
    json_t *list = NULL;
    Err err = { 0 };
    if (pull_status(rd, s->cfg, core_time_now_ms(), &list, &err) < 0 || !json_array_size(list)) {
        json_decref(list);
        return;
    }
    static const struct {
        const char *name, *type, *help, *field;
    } series[] = {
        { "bureau_connector_events_total", "counter", "Events a pull connector appended.",
          "events" },
        { "bureau_connector_events_today", "gauge", "Events a pull connector appended today (UTC).",
          "events_today" },
        { "bureau_connector_failing", "gauge", "1 while a pull connector's polls fail.",
          "failing" },
        { "bureau_connector_failures", "gauge", "Consecutive failed polls of a pull connector.",
          "failures" },
        { "bureau_connector_last_success_timestamp_seconds", "gauge",
          "When a pull connector last polled successfully (Unix time).", "last_success" },
    };
    for (size_t k = 0; k < sizeof series / sizeof series[0]; k++) {
        buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", series[k].name, series[k].help,
                   series[k].name, series[k].type);
        size_t i;
        json_t *c;
        json_array_foreach(list, i, c) {
            const json_t *v = json_object_get(c, series[k].field);
            double x = 0;
            int64_t ms;
            if (json_is_integer(v))
                x = (double)json_integer_value(v);
            else if (json_is_boolean(v))
                x = json_is_true(v);
            else if (json_is_string(v) &&
                     core_time_parse(json_string_value(v), json_string_length(v), &ms) == 0)
                x = (double)ms / 1000.0;
            else if (!strcmp(series[k].field, "last_success"))
                continue; /* never succeeded: no sample */
            buf_printf(out, "%s{connector=\"%s\",kind=\"%s\"} %.17g\n", series[k].name,
                       json_string_value(json_object_get(c, "name")),
                       json_string_value(json_object_get(c, "kind")), x);
        }
    }
    json_decref(list);
}

void api__metrics_render(ApiServer *s, Buf *out)
{
    ApiMetrics *m = &s->m;
    int labels = 1 + (int)s->cfg->n_connectors;
    buf_puts(out, "# HELP bureau_events_accepted_total Events stored, by connector.\n"
                  "# TYPE bureau_events_accepted_total counter\n");
    for (int i = 0; i < labels; i++)
        buf_printf(out, "bureau_events_accepted_total{connector=\"%s\"} %llu\n", label_name(s, i),
                   (unsigned long long)atomic_load(&m->accepted[i]));
    buf_puts(out, "# HELP bureau_events_duplicate_total Requests whose event was already "
                  "stored (same idempotency key).\n"
                  "# TYPE bureau_events_duplicate_total counter\n");
    for (int i = 0; i < labels; i++)
        buf_printf(out, "bureau_events_duplicate_total{connector=\"%s\"} %llu\n",
                   label_name(s, i), (unsigned long long)atomic_load(&m->duplicates[i]));
    buf_puts(out, "# HELP bureau_requests_rejected_total Requests refused, by connector and "
                  "reason.\n# TYPE bureau_requests_rejected_total counter\n");
    for (int i = 0; i < labels; i++)
        for (int r = 1; r < API_REASONS; r++)
            buf_printf(out, "bureau_requests_rejected_total{connector=\"%s\",reason=\"%s\"} %llu\n",
                       label_name(s, i), reason_names[r],
                       (unsigned long long)atomic_load(&m->rejected[i][r]));
    buf_puts(out, "# HELP bureau_http_request_duration_seconds Time from the first byte of a "
                  "request to its answer.\n"
                  "# TYPE bureau_http_request_duration_seconds histogram\n");
    uint64_t cum = 0;
    for (int b = 0; b < API_LATENCY_BUCKETS; b++) {
        cum += atomic_load(&m->latency[b]);
        buf_printf(out, "bureau_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                   latency_bounds[b], (unsigned long long)cum);
    }
    cum += atomic_load(&m->latency[API_LATENCY_BUCKETS]);
    buf_printf(out,
               "bureau_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
               "bureau_http_request_duration_seconds_sum %.6f\n"
               "bureau_http_request_duration_seconds_count %llu\n",
               (unsigned long long)cum, (double)atomic_load(&m->latency_sum_us) / 1e6,
               (unsigned long long)cum);
    LedgerStats ls;
    ledger_stats(s->ledger, &ls);
    buf_puts(out, "# HELP bureau_ledger_batch_size Events per ledger commit (group commit).\n"
                  "# TYPE bureau_ledger_batch_size histogram\n");
    cum = 0;
    for (int b = 0; b < LEDGER_BATCH_BUCKETS - 1; b++) {
        cum += ls.batch[b];
        buf_printf(out, "bureau_ledger_batch_size_bucket{le=\"%d\"} %llu\n", LEDGER_BATCH_BOUNDS[b],
                   (unsigned long long)cum);
    }
    cum += ls.batch[LEDGER_BATCH_BUCKETS - 1];
    buf_printf(out,
               "bureau_ledger_batch_size_bucket{le=\"+Inf\"} %llu\n"
               "bureau_ledger_batch_size_sum %llu\n"
               "bureau_ledger_batch_size_count %llu\n",
               (unsigned long long)cum, (unsigned long long)ls.events,
               (unsigned long long)ls.commits);
    buf_printf(out,
               "# HELP bureau_ledger_head_seq The last seq this process knows of.\n"
               "# TYPE bureau_ledger_head_seq gauge\n"
               "bureau_ledger_head_seq %lld\n"
               "# HELP bureau_http_open_connections Open HTTP connections.\n"
               "# TYPE bureau_http_open_connections gauge\n"
               "bureau_http_open_connections %lld\n"
               "# HELP process_resident_memory_bytes Resident set size.\n"
               "# TYPE process_resident_memory_bytes gauge\n"
               "process_resident_memory_bytes %ld\n"
               "# HELP process_uptime_seconds Seconds since the server started.\n"
               "# TYPE process_uptime_seconds gauge\n"
               "process_uptime_seconds %.3f\n",
               (long long)ledger_head_seq(s->ledger),
               (long long)atomic_load(&m->open_connections), rss_bytes(),
               (double)(core_time_now_ms() - s->started_ms) / 1000.0);
    buf_printf(out,
               "# HELP bureau_http_streams_open Open event streams (GET /v1/stream).\n"
               "# TYPE bureau_http_streams_open gauge\n"
               "bureau_http_streams_open %d\n"
               "# HELP bureau_sessions Live dashboard sessions.\n"
               "# TYPE bureau_sessions gauge\n"
               "bureau_sessions %d\n",
               api__streams_count(s->streams), api__sessions_count(s->sessions));
    /* the outbox and the inbox, from the projection */
    Err err = { 0 };
    Store *rd = api__reader(s, &err);
    int64_t counts[FLOW_EFFECT_STATUSES], pending = 0;
    char mode[FLOW_MODE_MAX];
    if (!rd || flow_effects_summary(rd, counts, &pending, &err) < 0 ||
        flow_mode_get(rd, mode, &err) < 0)
        return;
    buf_puts(out, "# HELP bureau_effects Effects by state (the outbox).\n"
                  "# TYPE bureau_effects gauge\n");
    for (int i = 0; i < FLOW_EFFECT_STATUSES; i++)
        buf_printf(out, "bureau_effects{status=\"%s\"} %lld\n", flow_effect_statuses[i],
                   (long long)counts[i]);
    buf_printf(out,
               "# HELP bureau_approvals_pending Approvals waiting for the operator.\n"
               "# TYPE bureau_approvals_pending gauge\n"
               "bureau_approvals_pending %lld\n"
               "# HELP bureau_mode 1 for the install's mode (sandbox or production).\n"
               "# TYPE bureau_mode gauge\n"
               "bureau_mode{mode=\"%s\"} 1\n",
               (long long)pending, mode);
    pull_metrics(s, rd, out);
}
