/* Model quality (quality.h): the "quality" projection
 * (migrations/sqlite/0012_model_quality.sql), its statistics, the canary
 * rule and shadow runs. The projection is a pure function of model.called,
 * approval.requested, approval.decided and model.canary.*: an approval is
 * joined to the latest answered model.draft call of its task before it. */
#include "model/quality.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/crypto.h"
#include "core/json.h"
#include "core/log.h"
#include "ledger/projection.h"

#define Z95 1.959963984540054

/* ---- edit distance ---- */

/* Decodes UTF-8 into code points. A byte that does not start a valid
 * sequence (overlong, a surrogate, beyond U+10FFFF, cut short) becomes a
 * unit of its own above the Unicode range, so that it never equals a
 * character. */
static uint32_t *decode(const char *s, size_t len, size_t *n)
{
    static const uint32_t min[] = { 0, 0x80, 0x800, 0x10000 };
    uint32_t *out = xmalloc((len + 1) * sizeof *out);
    size_t k = 0;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        unsigned c = p[i];
        int extra = c >= 0xF0 && c < 0xF8   ? 3
                  : c >= 0xE0 && c < 0xF0 ? 2
                  : c >= 0xC0 && c < 0xE0 ? 1
                                          : 0;
        bool ok = c < 0x80 || (extra > 0 && i + (size_t)extra < len);
        uint32_t v = extra ? c & (0x3Fu >> extra) : c;
        for (int j = 1; ok && j <= extra; j++) {
            ok = (p[i + (size_t)j] & 0xC0) == 0x80;
            v = (v << 6) | (p[i + (size_t)j] & 0x3F);
        }
        if (ok && extra && (v < min[extra] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)))
            ok = false;
        if (!ok) {
            out[k++] = 0x110000u + c;
            i++;
            continue;
        }
        out[k++] = v;
        i += (size_t)extra + 1;
    }
    *n = k;
    return out;
}

static size_t levenshtein(const uint32_t *a, size_t m, const uint32_t *b, size_t n)
{
    size_t *row = xmalloc((n + 1) * sizeof *row);
    for (size_t j = 0; j <= n; j++)
        row[j] = j;
    for (size_t i = 1; i <= m; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= n; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    size_t d = row[n];
    free(row);
    return d;
}

double model_edit_distance(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t m, n;
    uint32_t *x = decode(a, alen, &m), *y = decode(b, blen, &n);
    size_t longest = m > n ? m : n;
    if (longest == 0) {
        free(x);
        free(y);
        return 0;
    }
    size_t pre = 0;
    while (pre < m && pre < n && x[pre] == y[pre])
        pre++;
    size_t suf = 0;
    while (suf < m - pre && suf < n - pre && x[m - 1 - suf] == y[n - 1 - suf])
        suf++;
    size_t mm = m - pre - suf, nn = n - pre - suf;
    size_t wm = mm, wn = nn; /* the window compared exactly: at most MODEL_EDIT_CELLS cells */
    if (mm > 0 && nn > MODEL_EDIT_CELLS / mm) {
        if (mm <= MODEL_EDIT_WINDOW) /* the shorter whole, of the longer what fits */
            wn = MODEL_EDIT_CELLS / mm;
        else if (nn <= MODEL_EDIT_WINDOW)
            wm = MODEL_EDIT_CELLS / nn;
        else
            wm = wn = MODEL_EDIT_WINDOW;
    }
    size_t d = levenshtein(x + pre, wm, y + pre, wn);
    size_t rm = mm - wm, rn = nn - wn;
    d += rm > rn ? rm : rn; /* beyond the window: wholly different */
    free(x);
    free(y);
    return (double)d / (double)longest;
}

void model_wilson(int64_t k, int64_t n, double *ret_low, double *ret_high)
{
    if (n <= 0) {
        *ret_low = 0;
        *ret_high = 1;
        return;
    }
    double p = (double)k / (double)n, nn = (double)n, z2 = Z95 * Z95;
    double denom = 1 + z2 / nn;
    double center = (p + z2 / (2 * nn)) / denom;
    double half = Z95 * sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn)) / denom;
    double lo = center - half, hi = center + half;
    *ret_low = lo < 0 ? 0 : lo;
    *ret_high = hi > 1 ? 1 : hi;
}

char *model_body_text(const json_t *payload)
{
    static const char *const fields[] = { "text", "body", "message", "content", "html", NULL };
    const char *s = json_string_value(payload);
    for (int i = 0; !s && json_is_object(payload) && fields[i]; i++)
        s = json_string_value(json_object_get(payload, fields[i]));
    Buf b;
    buf_init(&b, 0);
    if (s)
        buf_puts(&b, s);
    else if (payload)
        core_json_canonical(payload, &b);
    if (b.len > MODEL_QUALITY_TEXT_MAX) {
        b.len = MODEL_QUALITY_TEXT_MAX;
        while (b.len > 0 && ((unsigned char)b.ptr[b.len] & 0xC0) == 0x80)
            b.len--; /* whole UTF-8 characters */
        b.ptr[b.len] = '\0';
    }
    char *t = xstrdup(buf_cstr(&b));
    buf_done(&b);
    return t;
}

/* ---- the projection ---- */

static const char *const tables[] = { "model_drafts", "model_outcomes", "model_shadows",
                                      "model_canaries", NULL };

static const char *str(const json_t *d, const char *k)
{
    return json_string_value(json_object_get(d, k));
}

static const char *or_empty(const char *s)
{
    return s ? s : "";
}

/* The text of a model's answer: a string, or its text field. */
static const char *answer_text(const json_t *out)
{
    return json_is_string(out) ? json_string_value(out) : str(out, "text");
}

static int draft_called(Store *tx, const Event *ev, const json_t *d, Err *err)
{
    const char *task = str(d, "task"), *step = str(d, "step"), *route = str(d, "route");
    const char *provider = str(d, "provider");
    if (!task || !step || !route || !provider)
        return 0;
    bool ok = !strcmp(or_empty(str(d, "outcome")), "ok");
    const char *role = str(d, "role") ? str(d, "role") : "incumbent";
    const json_t *mot = json_object_get(d, "max_output_tokens");
    char mbuf[24] = "";
    if (json_is_integer(mot))
        snprintf(mbuf, sizeof mbuf, "%lld", (long long)json_integer_value(mot));
    /* a failed attempt adds its cost; the call that answers sets the rest */
    return store_execf(
        tx, err,
        "INSERT INTO model_drafts(task_id, step_id, seq, answered, route, provider, model,"
        " template, workflow, role, cost_usd, latency_ms, system, prompt, max_output_tokens)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
        " CAST(nullif(?15, '') AS INTEGER))"
        " ON CONFLICT(task_id, step_id) DO UPDATE SET cost_usd = cost_usd + excluded.cost_usd,"
        " seq = CASE WHEN excluded.answered THEN excluded.seq ELSE seq END,"
        " answered = max(answered, excluded.answered),"
        " route = CASE WHEN excluded.answered THEN excluded.route ELSE route END,"
        " provider = CASE WHEN excluded.answered THEN excluded.provider ELSE provider END,"
        " model = CASE WHEN excluded.answered THEN excluded.model ELSE model END,"
        " template = CASE WHEN excluded.answered THEN excluded.template ELSE template END,"
        " role = CASE WHEN excluded.answered THEN excluded.role ELSE role END,"
        " latency_ms = CASE WHEN excluded.answered THEN excluded.latency_ms ELSE latency_ms END,"
        " system = CASE WHEN excluded.answered THEN excluded.system ELSE system END,"
        " prompt = CASE WHEN excluded.answered THEN excluded.prompt ELSE prompt END,"
        " max_output_tokens = CASE WHEN excluded.answered THEN excluded.max_output_tokens"
        " ELSE max_output_tokens END",
        "ssiissssssrisss", task, step, ev->seq, (int64_t)ok, route,
        provider, or_empty(str(d, "model")), or_empty(str(d, "template")),
        or_empty(str(d, "workflow")), role, json_number_value(json_object_get(d, "cost_usd")),
        (int64_t)json_integer_value(json_object_get(d, "latency_ms")), str(d, "system"),
        str(d, "prompt"), mbuf);
}

static int shadow_called(Store *tx, const Event *ev, const json_t *d, Err *err)
{
    const char *task = str(d, "task"), *step = str(d, "step"), *route = str(d, "route");
    const char *provider = str(d, "provider"), *outcome = or_empty(str(d, "outcome"));
    if (!task || !step || !route || !provider)
        return 0;
    char dbuf[32] = "";
    const char *said = answer_text(json_object_get(d, "output"));
    StoreStmt *st;
    int rc = store_prepare(tx,
                           "SELECT sent FROM model_outcomes WHERE task_id = ?1 AND draft_step = ?2"
                           " AND sent IS NOT NULL ORDER BY decided_seq DESC LIMIT 1",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, task, strlen(task));
    store_bind_text(st, 2, step, strlen(step));
    if ((rc = store_step(st, err)) == STORE_ROW && said && !strcmp(outcome, "ok")) {
        size_t len;
        const char *sent = store_col_text(st, 0, &len);
        char *mine = model_body_text(json_object_get(d, "output"));
        snprintf(dbuf, sizeof dbuf, "%.17g", model_edit_distance(mine, strlen(mine), sent, len));
        free(mine);
    }
    store_stmt_done(st);
    if (rc < 0)
        return rc;
    return store_execf(tx, err,
                       "INSERT OR REPLACE INTO model_shadows(task_id, step_id, provider, route,"
                       " model, seq, outcome, cost_usd, latency_ms, disagreement, at)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,"
                       " CAST(nullif(?10, '') AS REAL), ?11)",
                       "sssssisriss", task, step, provider, route,
                       or_empty(str(d, "model")), ev->seq, outcome,
                       json_number_value(json_object_get(d, "cost_usd")),
                       (int64_t)json_integer_value(json_object_get(d, "latency_ms")), dbuf,
                       ev->received_at);
}

static int requested(Store *tx, const Event *ev, const json_t *d, Err *err)
{
    const char *id = str(d, "approval"), *task = str(d, "task"), *step = str(d, "step");
    if (!id || !task || !step || json_object_get(d, "compensates"))
        return 0; /* a correction's approval shows no draft of the task's */
    StoreStmt *st;
    int rc = store_prepare(tx,
                           "SELECT step_id, route, provider, model, template, workflow, role,"
                           " cost_usd, latency_ms FROM model_drafts"
                           " WHERE task_id = ?1 AND answered = 1 AND seq < ?2"
                           " ORDER BY seq DESC LIMIT 1",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, task, strlen(task));
    store_bind_int(st, 2, ev->seq);
    if ((rc = store_step(st, err)) != STORE_ROW) {
        store_stmt_done(st);
        return rc < 0 ? rc : 0; /* no draft: nothing to judge */
    }
    char *col[7];
    for (int i = 0; i < 7; i++)
        col[i] = xstrdup(or_empty(store_col_text(st, i, NULL)));
    double cost = store_col_real(st, 7);
    int64_t latency = store_col_int(st, 8);
    store_stmt_done(st);
    char *body = model_body_text(json_object_get(d, "preview"));
    rc = store_execf(tx, err,
                     "INSERT OR IGNORE INTO model_outcomes(approval_id, task_id, step_id,"
                     " draft_step, requested_seq, route, provider, model, template, workflow,"
                     " role, cost_usd, latency_ms, drafted)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                     "ssssissssssris", id, task, step, col[0], ev->seq, col[1], col[2],
                     col[3], col[4], col[5], col[6], cost, latency, body);
    for (int i = 0; i < 7; i++)
        free(col[i]);
    free(body);
    return rc;
}

static int decided(Store *tx, const Event *ev, const json_t *d, Err *err)
{
    const char *id = str(d, "approval"), *decision = str(d, "decision"), *by = str(d, "by");
    if (!id || !decision || (strcmp(decision, "approve") && strcmp(decision, "edit") &&
                             strcmp(decision, "reject")))
        return 0;
    if (by && !strcmp(by, "auto")) /* not the operator's judgement */
        return store_execf(tx, err,
                           "DELETE FROM model_outcomes WHERE approval_id = ?1 AND decision IS NULL",
                           "s", id);
    StoreStmt *st;
    int rc = store_prepare(tx,
                           "SELECT drafted FROM model_outcomes WHERE approval_id = ?1"
                           " AND decision IS NULL",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, id, strlen(id));
    if ((rc = store_step(st, err)) != STORE_ROW) {
        store_stmt_done(st);
        return rc < 0 ? rc : 0;
    }
    char *drafted = xstrdup(or_empty(store_col_text(st, 0, NULL)));
    store_stmt_done(st);
    char *sent = NULL;
    char dist[32] = "";
    if (!strcmp(decision, "edit"))
        sent = model_body_text(json_object_get(d, "payload"));
    else if (!strcmp(decision, "approve"))
        sent = xstrdup(drafted);
    if (sent)
        snprintf(dist, sizeof dist, "%.17g",
                 model_edit_distance(drafted, strlen(drafted), sent, strlen(sent)));
    rc = store_execf(tx, err,
                     "UPDATE model_outcomes SET decision = ?2, decided_by = ?3, reason = ?4,"
                     " sent = ?5, edit_distance = CAST(nullif(?6, '') AS REAL), decided_seq = ?7,"
                     " decided_at = ?8 WHERE approval_id = ?1 AND decision IS NULL",
                     "ssssssis", id, decision, or_empty(by), str(d, "reason"), sent, dist,
                     ev->seq, ev->received_at);
    free(drafted);
    free(sent);
    return rc;
}

static int canary_decided(Store *tx, const Event *ev, const json_t *d, Err *err)
{
    const char *route = str(d, "route"), *cand = str(d, "candidate");
    if (!route || !cand)
        return 0;
    bool promoted = !strcmp(ev->type, "model.canary.promoted");
    return store_execf(tx, err,
                       "INSERT OR REPLACE INTO model_canaries(route, candidate, state, seq, at, by,"
                       " reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                       "sssisss", route, cand, promoted ? "promoted" : "rolled_back", ev->seq,
                       ev->received_at, or_empty(str(d, "by")), or_empty(str(d, "reason")));
}

static int apply(Store *tx, const Event *ev, Err *err)
{
    const char *t = ev->type;
    bool called = !strcmp(t, "model.called"), req = !strcmp(t, "approval.requested"),
         dec = !strcmp(t, "approval.decided"),
         can = !strcmp(t, "model.canary.promoted") || !strcmp(t, "model.canary.rolled_back");
    if (!called && !req && !dec && !can)
        return 0;
    /* most model.called are neither a draft nor a shadow: look before parsing
     * (a key or value spelled with escapes is skipped, in a replay too) */
    if (called && !memmem(ev->data, ev->data_len, "\"template\"", 10) &&
        !memmem(ev->data, ev->data_len, "\"shadow\"", 8))
        return 0;
    json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (!d)
        return 0;
    int rc = 0;
    if (called) {
        const char *role = str(d, "role");
        if (role && !strcmp(role, "shadow"))
            rc = shadow_called(tx, ev, d, err);
        else if (str(d, "template")) /* a model.draft call (a cache hit too: it answered) */
            rc = draft_called(tx, ev, d, err);
    } else if (req) {
        rc = requested(tx, ev, d, err);
    } else if (dec) {
        rc = decided(tx, ev, d, err);
    } else {
        rc = canary_decided(tx, ev, d, err);
    }
    json_decref(d);
    return rc;
}

static const Projection quality_projection = {
    .name = "quality",
    .version = 1,
    .tables = tables,
    .apply = apply,
};

void model_quality_register(void)
{
    ledger_projection_register(&quality_projection);
}

/* ---- canaries ---- */

const char *model_canary_state_name(ModelCanaryState s)
{
    static const char *const names[] = { "none", "active", "promoted", "rolled_back" };
    return names[s];
}

/* The state of route's canary; on a read error (or no reader), ERR_* with
 * *ret NONE: the route's configured order, never a canary back in service. */
static int canary_state(Store *rd, const ModelRouteConfig *route, ModelCanaryState *ret,
                        int64_t *ret_since, Err *err)
{
    *ret = MODEL_CANARY_NONE;
    if (ret_since)
        *ret_since = 0;
    if (!route->canary[0])
        return 0;
    if (!rd)
        return err_set(err, ERR_INTERNAL, "route %s: no store to read the canary's state",
                       route->name);
    StoreStmt *st;
    int rc = store_prepare(rd, "SELECT candidate, state, seq FROM model_canaries WHERE route = ?1",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, route->name, strlen(route->name));
    ModelCanaryState s = MODEL_CANARY_ACTIVE;
    int64_t since = 0;
    if ((rc = store_step(st, err)) == STORE_ROW) {
        since = store_col_int(st, 2);
        /* a decision on another candidate: the configured one is a new trial */
        if (!strcmp(or_empty(store_col_text(st, 0, NULL)), route->canary))
            s = !strcmp(or_empty(store_col_text(st, 1, NULL)), "promoted")
                    ? MODEL_CANARY_PROMOTED
                    : MODEL_CANARY_ROLLED_BACK;
    }
    store_stmt_done(st);
    if (rc < 0)
        return rc;
    *ret = s;
    if (ret_since)
        *ret_since = since;
    return 0;
}

ModelCanaryState model_canary_state(Store *rd, const ModelRouteConfig *route, int64_t *ret_since)
{
    ModelCanaryState s;
    Err err = { 0 };
    if (canary_state(rd, route, &s, ret_since, &err) < 0)
        log_warn("model canary state unknown: the route's configured order",
                 json_pack("{s:s, s:s, s:s}", "route", route->name, "candidate", route->canary,
                           "error", err.msg));
    return s;
}

typedef struct Side {
    int64_t n, edited, rejected;
    double cost;
} Side;

static json_t *side_json(const Side *s)
{
    return json_pack("{s:I, s:f, s:f, s:f}", "n", (json_int_t)s->n, "edit_rate",
                     s->n ? (double)s->edited / (double)s->n : 0.0, "reject_rate",
                     s->n ? (double)s->rejected / (double)s->n : 0.0, "cost_per_draft_usd",
                     s->n ? s->cost / (double)s->n : 0.0);
}

/* The decided outcomes of route's canary and of its incumbent (the route's
 * first candidate) since seq. */
static int sides(Store *rd, const ModelRouteConfig *route, int64_t since, Side *canary,
                 Side *incumbent, Err *err)
{
    memset(canary, 0, sizeof *canary);
    memset(incumbent, 0, sizeof *incumbent);
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT role, count(*), sum(decision = 'edit'), sum(decision = 'reject'),"
                           " sum(cost_usd) FROM model_outcomes WHERE route = ?1"
                           " AND decision IS NOT NULL AND requested_seq > ?2"
                           " AND ((role = 'canary' AND provider = ?3)"
                           " OR (role = 'incumbent' AND provider = ?4))"
                           " GROUP BY role",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, route->name, strlen(route->name));
    store_bind_int(st, 2, since);
    store_bind_text(st, 3, route->canary, strlen(route->canary));
    /* the incumbent is the route's first candidate: a fallback to another
     * provider is not its answer */
    store_bind_text(st, 4, route->candidates[0], strlen(route->candidates[0]));
    while ((rc = store_step(st, err)) == STORE_ROW) {
        Side *s = !strcmp(or_empty(store_col_text(st, 0, NULL)), "canary") ? canary : incumbent;
        s->n = store_col_int(st, 1);
        s->edited = store_col_int(st, 2);
        s->rejected = store_col_int(st, 3);
        s->cost = store_col_real(st, 4);
    }
    store_stmt_done(st);
    return rc < 0 ? rc : 0;
}

/* Appends the decision on route's canary (key: one per trial). */
static int canary_append(Ledger *l, const ModelRouteConfig *route, bool promote, int64_t since,
                         const char *by, const char *reason, const Side *c, const Side *i,
                         json_t **ret, Err *err)
{
    json_t *d = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:o, s:o}", "route", route->name,
                          "candidate", route->canary, "incumbent", route->candidates[0], "by", by,
                          "reason", reason, "since_seq", (json_int_t)since, "canary",
                          side_json(c), "incumbent_outcomes", side_json(i));
    const char *type = promote ? "model.canary.promoted" : "model.canary.rolled_back";
    char key[192];
    snprintf(key, sizeof key, "model.canary:%s:%s:%lld", route->name, route->canary,
             (long long)since);
    Event *ev = NULL;
    int rc = ledger_event_new(type, !strcmp(by, "rule") ? "router" : "operator", NULL, d, key,
                              ledger_limits(l), &ev, err);
    if (rc < 0) {
        json_decref(d);
        return rc;
    }
    LedgerAppendResult res;
    if ((rc = ledger_append(l, &ev, 1, &res, err)) < 0) {
        json_decref(d);
        return rc;
    }
    if (res.duplicate) { /* another process decided this trial first */
        json_decref(d);
        return err_set(err, ERR_EXISTS, "route %s: the canary %s was decided already (seq %lld)",
                       route->name, route->canary, (long long)res.seq);
    }
    json_object_set_new(d, "type", json_string(type));
    json_object_set_new(d, "seq", json_integer(res.seq));
    if (ret)
        *ret = d;
    else
        json_decref(d);
    return 0;
}

int model_canary_evaluate(Ledger *l, Store *rd, const Config *cfg, json_t **ret, Err *err)
{
    json_t *list = json_array();
    int rc = 0;
    for (size_t k = 0; k < cfg->n_model_routes; k++) {
        const ModelRouteConfig *route = &cfg->model_routes[k];
        int64_t since = 0;
        ModelCanaryState cs;
        if ((rc = canary_state(rd, route, &cs, &since, err)) < 0)
            break;
        if (cs != MODEL_CANARY_ACTIVE)
            continue;
        Side c, i;
        if ((rc = sides(rd, route, since, &c, &i, err)) < 0)
            break;
        if (c.n < route->canary_min_sample || i.n < route->canary_min_sample)
            continue;
        double de = (double)c.edited / (double)c.n - (double)i.edited / (double)i.n;
        double dr = (double)c.rejected / (double)c.n - (double)i.rejected / (double)i.n;
        double cpd = c.cost / (double)c.n;
        char why[320];
        bool promote = false;
        if (de > route->canary_max_edit_delta + 1e-12)
            snprintf(why, sizeof why, "edit rate %.3f against %.3f: +%.3f > max_edit_rate_delta "
                                      "%.3f", (double)c.edited / (double)c.n,
                     (double)i.edited / (double)i.n, de, route->canary_max_edit_delta);
        else if (dr > route->canary_max_reject_delta + 1e-12)
            snprintf(why, sizeof why, "reject rate %.3f against %.3f: +%.3f > "
                                      "max_reject_rate_delta %.3f",
                     (double)c.rejected / (double)c.n, (double)i.rejected / (double)i.n, dr,
                     route->canary_max_reject_delta);
        else if (route->canary_max_cost_usd > 0 && cpd > route->canary_max_cost_usd + 1e-12)
            snprintf(why, sizeof why, "cost per draft $%.6f > max_cost_usd $%.6f", cpd,
                     route->canary_max_cost_usd);
        else {
            promote = true;
            snprintf(why, sizeof why, "%lld outcomes each: edit rate %+.3f, reject rate %+.3f "
                                      "against the incumbent, within the rule",
                     (long long)route->canary_min_sample, de, dr);
        }
        json_t *one = NULL;
        Err e2 = { 0 };
        if (canary_append(l, route, promote, since, "rule", why, &c, &i, &one, &e2) < 0) {
            if (e2.code == ERR_EXISTS)
                continue;
            rc = err_set(err, e2.code, "%s", e2.msg);
            break;
        }
        log_info(promote ? "model canary promoted" : "model canary rolled back",
                 json_pack("{s:s, s:s, s:s}", "route", route->name, "candidate", route->canary,
                           "reason", why));
        json_array_append_new(list, one);
    }
    if (rc < 0 || !ret)
        json_decref(list);
    else
        *ret = list;
    return rc;
}

int model_canary_decide(Ledger *l, Store *rd, const Config *cfg, const char *name, bool promote,
                        const char *by, const char *reason, json_t **ret, Err *err)
{
    const ModelRouteConfig *route = NULL;
    for (size_t k = 0; k < cfg->n_model_routes; k++)
        if (!strcmp(cfg->model_routes[k].name, name))
            route = &cfg->model_routes[k];
    if (!route)
        return err_set(err, ERR_NOTFOUND, "route: no route '%.40s' in models.routes", name);
    int64_t since = 0;
    ModelCanaryState s;
    int rc = canary_state(rd, route, &s, &since, err);
    if (rc < 0)
        return rc;
    if (s == MODEL_CANARY_NONE)
        return err_set(err, ERR_NOTFOUND, "route %s has no canary (models.routes.%s.canary)",
                       route->name, route->name);
    if (s != MODEL_CANARY_ACTIVE)
        return err_set(err, ERR_EXISTS, "route %s: the canary %s is %s already", route->name,
                       route->canary, model_canary_state_name(s));
    Side c, i;
    if ((rc = sides(rd, route, since, &c, &i, err)) < 0)
        return rc;
    char why[600];
    snprintf(why, sizeof why, "by hand%s%.500s", reason && *reason ? ": " : "",
             reason ? reason : "");
    return canary_append(l, route, promote, since, by, why, &c, &i, ret, err);
}

/* ---- shadows ---- */

typedef struct ShadowJob {
    char *task, *step, *workflow, *system, *prompt, *template_name;
    const ModelRouteConfig *route;
    int max_output_tokens;
} ShadowJob;

static const ModelRouteConfig *route_of(const Config *cfg, const char *name)
{
    for (size_t k = 0; name && k < cfg->n_model_routes; k++)
        if (!strcmp(cfg->model_routes[k].name, name))
            return &cfg->model_routes[k];
    return NULL;
}

/* Whether a draft is in the shadow's share (by its task and step). */
static bool shadow_share(const ModelRouteConfig *route, const char *task, const char *step)
{
    char key[256], hex[CORE_SHA256_HEX + 1], h[9];
    snprintf(key, sizeof key, "%s:%s", task, step);
    core_sha256_hex(key, strlen(key), hex);
    memcpy(h, hex, 8);
    h[8] = '\0';
    return (int)(strtoul(h, NULL, 16) % 100) < route->shadow_percent;
}

static void job_free(ShadowJob *j)
{
    free(j->task);
    free(j->step);
    free(j->workflow);
    free(j->system);
    free(j->prompt);
    free(j->template_name);
}

/* Up to max jobs: approved drafts of routes with a shadow that the shadow
 * has not answered, oldest decision first. The rows are streamed, so drafts
 * outside the shadow's share never crowd the others out. On a read error,
 * no jobs (*ret NULL, *ret_n 0) and the error. */
static int shadow_jobs(Store *rd, const Config *cfg, size_t max, ShadowJob **ret, size_t *ret_n,
                       Err *err)
{
    ShadowJob *jobs = NULL;
    size_t n = 0;
    int rc = 0;
    for (size_t k = 0; k < cfg->n_model_routes && n < max && rc >= 0; k++) {
        const ModelRouteConfig *route = &cfg->model_routes[k];
        if (!route->shadow[0])
            continue;
        StoreStmt *st;
        if ((rc = store_prepare(rd,
                          "SELECT o.task_id, o.draft_step, o.workflow, d.system, d.prompt,"
                          " d.max_output_tokens, d.template FROM model_outcomes o"
                          " JOIN model_drafts d ON d.task_id = o.task_id"
                          " AND d.step_id = o.draft_step"
                          " WHERE o.route = ?1 AND o.decision IN ('approve', 'edit')"
                          " AND d.prompt IS NOT NULL AND NOT EXISTS (SELECT 1 FROM model_shadows s"
                          " WHERE s.task_id = o.task_id AND s.step_id = o.draft_step"
                          " AND s.provider = ?2)"
                          " ORDER BY o.decided_seq",
                          &st, err)) < 0)
            break;
        store_bind_text(st, 1, route->name, strlen(route->name));
        store_bind_text(st, 2, route->shadow, strlen(route->shadow));
        while (n < max && (rc = store_step(st, err)) == STORE_ROW) {
            const char *task = store_col_text(st, 0, NULL), *step = store_col_text(st, 1, NULL);
            if (!task || !step || !shadow_share(route, task, step))
                continue;
            jobs = xrealloc(jobs, (n + 1) * sizeof *jobs);
            ShadowJob *j = &jobs[n++];
            j->task = xstrdup(task);
            j->step = xstrdup(step);
            j->workflow = xstrdup(or_empty(store_col_text(st, 2, NULL)));
            j->system = store_col_text(st, 3, NULL) ? xstrdup(store_col_text(st, 3, NULL)) : NULL;
            j->prompt = xstrdup(or_empty(store_col_text(st, 4, NULL)));
            j->max_output_tokens = (int)store_col_int(st, 5);
            j->template_name = xstrdup(or_empty(store_col_text(st, 6, NULL)));
            j->route = route;
        }
        store_stmt_done(st);
    }
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            job_free(&jobs[i]);
        free(jobs);
        jobs = NULL;
        n = 0;
    }
    *ret = jobs;
    *ret_n = n;
    return rc < 0 ? rc : 0;
}

/* Whether the router called a provider (an attempt not skipped). */
static bool attempted(const json_t *attempts)
{
    size_t i;
    const json_t *a;
    json_array_foreach(attempts, i, a) {
        if (strcmp(or_empty(str(a, "outcome")), "skipped"))
            return true;
    }
    return false;
}

/* The reason the router gave for skipping the first candidate. */
static const char *skipped_why(const json_t *attempts)
{
    const char *why = str(json_array_get(attempts, 0), "error");
    return why ? why : "no candidate";
}

#define SHADOW_LEASE "model.shadows"
#define SHADOW_LEASE_MS (10 * 60 * 1000)

/* How long one shadow call may last at most: its provider's timeout, or
 * the route's SLA when shorter. */
static int shadow_timeout_ms(const Config *cfg, const ModelRouteConfig *route)
{
    int t = 30000;
    for (size_t k = 0; k < cfg->n_model_providers; k++)
        if (!strcmp(cfg->model_providers[k].name, route->shadow) &&
            cfg->model_providers[k].timeout_ms > 0)
            t = cfg->model_providers[k].timeout_ms;
    if (route->max_latency_ms > 0 && route->max_latency_ms < t)
        t = route->max_latency_ms;
    return t;
}

int model_shadow_run(ModelRouter *r, Ledger *l, Store *rd, const Config *cfg, int max,
                     json_t **ret, Err *err)
{
    const char *me = ledger_instance(l);
    int held = ledger_lease_acquire(rd, SHADOW_LEASE, me, SHADOW_LEASE_MS, err);
    if (held < 0)
        return held;
    json_t *rep = json_pack("{s:i, s:i, s:i, s:n}", "ran", 0, "ok", 0, "failed", 0, "stopped");
    if (!held) {
        json_object_set_new(rep, "stopped", json_string("another process runs the shadows"));
        goto done;
    }
    ShadowJob *jobs;
    size_t n;
    int rc = shadow_jobs(rd, cfg, max > 0 ? (size_t)max : 0, &jobs, &n, err);
    if (rc < 0) { /* the pass fails: the caller says why */
        Err e3 = { 0 };
        ledger_lease_release(rd, SHADOW_LEASE, me, &e3);
        json_decref(rep);
        return rc;
    }
    int ran = 0, ok = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        ShadowJob *j = &jobs[i];
        if (!json_is_string(json_object_get(rep, "stopped"))) {
            /* the lease outlives the call about to start, or the pass stops:
             * another process never runs the same shadows meanwhile */
            Err el = { 0 };
            int kept = ledger_lease_acquire(rd, SHADOW_LEASE, me,
                                            SHADOW_LEASE_MS + shadow_timeout_ms(cfg, j->route), &el);
            if (kept <= 0) {
                char why[600];
                snprintf(why, sizeof why, "the lease %s %s", SHADOW_LEASE,
                         kept == 0 ? "was taken by another process" : el.msg);
                json_object_set_new(rep, "stopped", json_string(why));
                job_free(j);
                continue;
            }
            ModelCall call = {
                .route = j->route->name, .workflow = *j->workflow ? j->workflow : NULL,
                .task_id = j->task, .step_id = j->step, .template_name = j->template_name,
                .force = true, .shadow_provider = j->route->shadow,
                .req = { .task = "draft", .prompt = j->prompt, .system = j->system,
                         .max_output_tokens = j->max_output_tokens },
            };
            ModelResult res;
            Err e2 = { 0 };
            if (model_router_call(r, rd, &call, &res, &e2) < 0) {
                failed++;
                log_warn("shadow run", json_pack("{s:s, s:s}", "task", j->task, "error", e2.msg));
            } else if (res.status == MODEL_CALL_PARKED) {
                json_object_set_new(rep, "stopped", json_string(res.error));
            } else if (res.status != MODEL_CALL_OK && !attempted(res.attempts)) {
                /* the router skipped the shadow without calling it (its
                 * breaker, a rate limit, the SLA, max_cost_usd): the rest
                 * would be skipped the same way, wait for the next pass */
                char why[700];
                snprintf(why, sizeof why, "the shadow %s was not called: %s", j->route->shadow,
                         skipped_why(res.attempts));
                json_object_set_new(rep, "stopped", json_string(why));
            } else {
                ran++;
                if (res.status == MODEL_CALL_OK)
                    ok++;
                else
                    failed++;
            }
            model_result_done(&res);
        }
        job_free(j);
    }
    free(jobs);
    json_object_set_new(rep, "ran", json_integer(ran));
    json_object_set_new(rep, "ok", json_integer(ok));
    json_object_set_new(rep, "failed", json_integer(failed));
    Err e3 = { 0 };
    ledger_sync(l, &e3); /* what was recorded is in the projection before the next pass */
    ledger_lease_release(rd, SHADOW_LEASE, me, &e3);
done:
    if (ret)
        *ret = rep;
    else
        json_decref(rep);
    return 0;
}

struct ModelShadowRunner {
    Ledger *l;
    const Config *cfg;
    ModelRouter *r;
    Store *rd;
    pthread_t thread;
    atomic_bool stop;
};

#define SHADOW_PASS_MAX 16
#define SHADOW_WAIT_MS 1000     /* how long a wait lasts before the stop flag is seen */
#define SHADOW_BACKOFF_MS 60000 /* after a pass that stopped, before the next one */

static void *shadow_main(void *arg)
{
    ModelShadowRunner *s = arg;
    int64_t seen = -1, not_before = 0;
    char last_stop[300] = "";
    while (!atomic_load(&s->stop)) {
        bool inside = false;
        int64_t now = core_time_now_ms();
        model_batch_next(s->cfg, now, &inside);
        int64_t head = ledger_head_seq(s->l);
        if (inside && head != seen && now >= not_before) {
            json_t *rep = NULL;
            Err err = { 0 };
            if (model_shadow_run(s->r, s->l, s->rd, s->cfg, SHADOW_PASS_MAX, &rep, &err) < 0) {
                log_warn("shadow run", json_pack("{s:s}", "error", err.msg));
                not_before = now + SHADOW_BACKOFF_MS;
            }
            const char *stopped = json_string_value(json_object_get(rep, "stopped"));
            /* ran counts calls made: a full pass made progress, go on at once */
            bool more = !stopped && json_integer_value(json_object_get(rep, "ran")) >= SHADOW_PASS_MAX;
            if (stopped) { /* a budget, a skipped shadow, another process: later */
                not_before = now + SHADOW_BACKOFF_MS;
                if (strncmp(stopped, last_stop, sizeof last_stop - 1))
                    log_info("shadow runs stopped", json_pack("{s:s}", "reason", stopped));
                snprintf(last_stop, sizeof last_stop, "%s", stopped);
            } else {
                last_stop[0] = '\0';
            }
            json_decref(rep);
            seen = more ? -1 : head;
            if (more)
                continue;
        }
        ledger_wait(s->l, ledger_head_seq(s->l), SHADOW_WAIT_MS);
    }
    return NULL;
}

int model_shadow_runner_start(Ledger *l, const Config *cfg, ModelRouter *r,
                              ModelShadowRunner **ret, Err *err)
{
    *ret = NULL;
    bool any = false;
    for (size_t k = 0; k < cfg->n_model_routes; k++)
        any |= cfg->model_routes[k].shadow[0] != '\0';
    if (!any)
        return 0; /* nothing to shadow: no thread */
    ModelShadowRunner *s = xcalloc(1, sizeof *s);
    s->l = l;
    s->cfg = cfg;
    s->r = r;
    int rc = ledger_reader_open(l, &s->rd, err);
    if (rc < 0) {
        free(s);
        return rc;
    }
    if (pthread_create(&s->thread, NULL, shadow_main, s) != 0) {
        store_close(s->rd);
        free(s);
        return err_set(err, ERR_INTERNAL, "cannot start the shadow runner");
    }
    *ret = s;
    return 0;
}

void model_shadow_runner_stop(ModelShadowRunner *s)
{
    if (!s)
        return;
    atomic_store(&s->stop, true);
    ledger_wake(s->l);
    pthread_join(s->thread, NULL);
    store_close(s->rd);
    free(s);
}

/* ---- statistics ---- */

typedef struct Group {
    char route[33], provider[65], model[128], role[16], extra[200];
    int64_t n, approved, edited, rejected;
    double cost, dist_sum;
    int64_t dist_n;
    int64_t *lat;
    size_t n_lat;
} Group;

static json_t *rate(int64_t k, int64_t n)
{
    double lo, hi;
    model_wilson(k, n, &lo, &hi);
    return json_pack("{s:I, s:f, s:f, s:f}", "count", (json_int_t)k, "rate",
                     n ? (double)k / (double)n : 0.0, "low", lo, "high", hi);
}

static json_t *nullable(bool has, double v)
{
    return has ? json_real(v) : json_null();
}

static json_t *group_json(const Group *g, const char *by)
{
    int64_t accepted = g->approved + g->edited;
    double p50 = 0, mean = 0;
    for (size_t i = 0; i < g->n_lat; i++)
        mean += (double)g->lat[i];
    if (g->n_lat) {
        mean /= (double)g->n_lat;
        /* sorted by the query: the median, the mean of the middle two for an even count */
        p50 = g->n_lat % 2 ? (double)g->lat[g->n_lat / 2]
                           : ((double)g->lat[g->n_lat / 2 - 1] + (double)g->lat[g->n_lat / 2]) / 2;
    }
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:o, s:o, s:o, s:o, s:f}", "provider", g->provider,
                          "model", g->model, "role", g->role, "n", (json_int_t)g->n, "approved",
                          rate(g->approved, g->n), "edited", rate(g->edited, g->n), "rejected",
                          rate(g->rejected, g->n), "accepted", rate(accepted, g->n), "cost_usd",
                          g->cost);
    if (by)
        json_object_set_new(o, by, json_string(g->extra));
    json_object_set_new(o, "mean_edit_distance",
                        nullable(g->dist_n > 0, g->dist_n ? g->dist_sum / (double)g->dist_n : 0));
    json_object_set_new(o, "cost_per_draft_usd", nullable(g->n > 0, g->n ? g->cost / (double)g->n : 0));
    json_object_set_new(o, "cost_per_approved_usd",
                        nullable(g->approved > 0, g->approved ? g->cost / (double)g->approved : 0));
    json_object_set_new(o, "cost_per_accepted_usd",
                        nullable(accepted > 0, accepted ? g->cost / (double)accepted : 0));
    json_object_set_new(o, "latency_ms_p50", nullable(g->n_lat > 0, p50));
    json_object_set_new(o, "latency_ms_mean", nullable(g->n_lat > 0, mean));
    return o;
}

static json_t *route_entry(json_t *routes, const char *name, const Config *cfg, Store *rd)
{
    size_t i;
    json_t *r;
    json_array_foreach(routes, i, r) if (!strcmp(str(r, "route"), name)) return r;
    r = json_pack("{s:s, s:[], s:[], s:[], s:[], s:n, s:n}", "route", name, "candidates", "models",
                  "shadows", "marginal", "canary", "shadow");
    const ModelRouteConfig *rc = route_of(cfg, name);
    if (rc) {
        ModelCanaryState cs = model_canary_state(rd, rc, NULL);
        json_t *cands = json_object_get(r, "candidates");
        if (cs == MODEL_CANARY_PROMOTED)
            json_array_append_new(cands, json_string(rc->canary));
        for (int k = 0; k < rc->n_candidates; k++)
            if (cs == MODEL_CANARY_NONE || strcmp(rc->candidates[k], rc->canary))
                json_array_append_new(cands, json_string(rc->candidates[k]));
        if (rc->canary[0]) {
            json_t *c = json_pack("{s:s, s:s, s:i, s:i, s:f, s:f, s:f}", "candidate", rc->canary,
                                  "state", model_canary_state_name(cs), "percent",
                                  rc->canary_percent, "min_sample", rc->canary_min_sample,
                                  "max_edit_rate_delta", rc->canary_max_edit_delta,
                                  "max_reject_rate_delta", rc->canary_max_reject_delta,
                                  "max_cost_usd", rc->canary_max_cost_usd);
            StoreStmt *st;
            Err err = { 0 };
            if (store_prepare(rd, "SELECT seq, at, by, reason FROM model_canaries WHERE route = ?1"
                                  " AND candidate = ?2",
                              &st, &err) == 0) {
                store_bind_text(st, 1, name, strlen(name));
                store_bind_text(st, 2, rc->canary, strlen(rc->canary));
                if (store_step(st, &err) == STORE_ROW)
                    json_object_set_new(
                        c, "decision",
                        json_pack("{s:I, s:s, s:s, s:s}", "seq", (json_int_t)store_col_int(st, 0),
                                  "at", or_empty(store_col_text(st, 1, NULL)), "by",
                                  or_empty(store_col_text(st, 2, NULL)), "reason",
                                  or_empty(store_col_text(st, 3, NULL))));
                store_stmt_done(st);
            }
            json_object_set_new(r, "canary", c);
        }
        if (rc->shadow[0])
            json_object_set_new(r, "shadow", json_pack("{s:s, s:i}", "candidate", rc->shadow,
                                                       "percent", rc->shadow_percent));
    }
    json_array_append_new(routes, r);
    return r;
}

/* Per provider of a route (every role): what escalating from a cheaper to
 * a dearer candidate changed, per dollar per draft. */
static void marginal(json_t *route)
{
    typedef struct {
        const char *provider;
        int64_t n, approved, accepted;
        double cost;
    } Prov;
    Prov p[16];
    size_t np = 0, i;
    json_t *m;
    json_array_foreach(json_object_get(route, "models"), i, m) {
        const char *name = str(m, "provider");
        size_t k = 0;
        while (k < np && strcmp(p[k].provider, name))
            k++;
        if (k == np) {
            if (np == sizeof p / sizeof p[0])
                continue;
            p[np++] = (Prov){ .provider = name };
        }
        p[k].n += json_integer_value(json_object_get(m, "n"));
        p[k].approved += json_integer_value(json_object_get(json_object_get(m, "approved"), "count"));
        p[k].accepted += json_integer_value(json_object_get(json_object_get(m, "accepted"), "count"));
        p[k].cost += json_number_value(json_object_get(m, "cost_usd"));
    }
    /* by cost per draft, cheapest first (insertion sort: a handful) */
    for (size_t a = 1; a < np; a++)
        for (size_t b = a; b > 0; b--) {
            double x = p[b - 1].cost / (double)p[b - 1].n, y = p[b].cost / (double)p[b].n;
            if (x < y || (x == y && strcmp(p[b - 1].provider, p[b].provider) <= 0))
                break;
            Prov t = p[b];
            p[b] = p[b - 1];
            p[b - 1] = t;
        }
    json_t *out = json_object_get(route, "marginal");
    for (size_t a = 0; a + 1 < np; a++) {
        const Prov *lo = &p[a], *hi = &p[a + 1];
        double dc = hi->cost / (double)hi->n - lo->cost / (double)lo->n;
        double da = (double)hi->approved / (double)hi->n - (double)lo->approved / (double)lo->n;
        double dx = (double)hi->accepted / (double)hi->n - (double)lo->accepted / (double)lo->n;
        json_t *e = json_pack("{s:s, s:s, s:I, s:I, s:f, s:f, s:f}", "from", lo->provider, "to",
                              hi->provider, "n_from", (json_int_t)lo->n, "n_to", (json_int_t)hi->n,
                              "delta_cost_per_draft_usd", dc, "delta_approve_rate", da,
                              "delta_accept_rate", dx);
        json_object_set_new(e, "approve_rate_per_usd", nullable(dc > 1e-12, dc > 1e-12 ? da / dc : 0));
        json_object_set_new(e, "accept_rate_per_usd", nullable(dc > 1e-12, dc > 1e-12 ? dx / dc : 0));
        json_array_append_new(out, e);
    }
}

static int day_ok(const char *s)
{
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return 0;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return 0;
    return 1;
}

int model_quality_stats(Store *rd, const Config *cfg, const char *route, const char *since,
                        const char *by, json_t **ret, Err *err)
{
    if (by && strcmp(by, "template") && strcmp(by, "workflow"))
        return err_set(err, ERR_INVAL, "by: '%.32s' is not template or workflow", by);
    if (since && !day_ok(since))
        return err_set(err, ERR_INVAL, "since: '%.32s' is not a day (YYYY-MM-DD)", since);
    if (route && strlen(route) > 32)
        return err_set(err, ERR_INVAL, "route: longer than 32 bytes");
    StoreStmt *st;
    char sql[512];
    /* by: one of two column names, never outside text */
    snprintf(sql, sizeof sql,
             "SELECT route, provider, model, role, decision, edit_distance, cost_usd,"
             " latency_ms, %s FROM model_outcomes WHERE decision IS NOT NULL"
             " AND decided_at >= ?1 AND (?2 = '' OR route = ?2)"
             " ORDER BY route, provider, model, role, 9, latency_ms",
             by && !strcmp(by, "template") ? "template" : by ? "workflow" : "''");
    int rc = store_prepare(rd, sql, &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, since ? since : "", since ? strlen(since) : 0);
    store_bind_text(st, 2, route ? route : "", route ? strlen(route) : 0);
    json_t *routes = json_array();
    Group g = { 0 };
    bool open = false;
    size_t cap = 0;
    for (;;) {
        rc = store_step(st, err);
        bool row = rc == STORE_ROW;
        const char *c[4] = { NULL }, *x = row ? or_empty(store_col_text(st, 8, NULL)) : "";
        for (int i = 0; row && i < 4; i++)
            c[i] = or_empty(store_col_text(st, i, NULL));
        if (open && (!row || strcmp(c[0], g.route) || strcmp(c[1], g.provider) ||
                     strcmp(c[2], g.model) || strcmp(c[3], g.role) ||
                     strncmp(x, g.extra, sizeof g.extra - 1))) {
            json_array_append_new(json_object_get(route_entry(routes, g.route, cfg, rd), "models"),
                                  group_json(&g, by));
            open = false;
        }
        if (!row)
            break;
        if (!open) {
            int64_t *lat = g.lat;
            memset(&g, 0, sizeof g);
            g.lat = lat;
            snprintf(g.route, sizeof g.route, "%s", c[0]);
            snprintf(g.provider, sizeof g.provider, "%s", c[1]);
            snprintf(g.model, sizeof g.model, "%s", c[2]);
            snprintf(g.role, sizeof g.role, "%s", c[3]);
            snprintf(g.extra, sizeof g.extra, "%s", x);
            open = true;
        }
        const char *dec = or_empty(store_col_text(st, 4, NULL));
        g.n++;
        g.approved += !strcmp(dec, "approve");
        g.edited += !strcmp(dec, "edit");
        g.rejected += !strcmp(dec, "reject");
        if (store_col_type(st, 5) != STORE_NULL) {
            g.dist_sum += store_col_real(st, 5);
            g.dist_n++;
        }
        g.cost += store_col_real(st, 6);
        if (g.n_lat == cap) {
            cap = cap ? cap * 2 : 64;
            g.lat = xrealloc(g.lat, cap * sizeof *g.lat);
        }
        g.lat[g.n_lat++] = store_col_int(st, 7);
    }
    free(g.lat);
    store_stmt_done(st);
    if (rc < 0) {
        json_decref(routes);
        return rc;
    }
    rc = store_prepare(rd,
                       "SELECT route, provider, model, count(*), sum(outcome = 'ok'),"
                       " avg(disagreement), count(disagreement), sum(cost_usd), avg(latency_ms)"
                       " FROM model_shadows WHERE at >= ?1 AND (?2 = '' OR route = ?2)"
                       " GROUP BY route, provider, model ORDER BY route, provider, model",
                       &st, err);
    if (rc < 0) {
        json_decref(routes);
        return rc;
    }
    store_bind_text(st, 1, since ? since : "", since ? strlen(since) : 0);
    store_bind_text(st, 2, route ? route : "", route ? strlen(route) : 0);
    while ((rc = store_step(st, err)) == STORE_ROW) {
        json_t *e = route_entry(routes, or_empty(store_col_text(st, 0, NULL)), cfg, rd);
        json_t *s = json_pack("{s:s, s:s, s:I, s:I, s:f, s:f}", "provider",
                              or_empty(store_col_text(st, 1, NULL)), "model",
                              or_empty(store_col_text(st, 2, NULL)), "n",
                              (json_int_t)store_col_int(st, 3), "ok",
                              (json_int_t)store_col_int(st, 4), "cost_usd", store_col_real(st, 7),
                              "latency_ms_mean", store_col_real(st, 8));
        json_object_set_new(s, "mean_disagreement",
                            nullable(store_col_int(st, 6) > 0, store_col_real(st, 5)));
        json_object_set_new(s, "compared", json_integer(store_col_int(st, 6)));
        json_array_append_new(json_object_get(e, "shadows"), s);
    }
    store_stmt_done(st);
    if (rc < 0) {
        json_decref(routes);
        return rc;
    }
    /* configured routes with a canary or a shadow show even before outcomes */
    for (size_t k = 0; k < cfg->n_model_routes; k++) {
        const ModelRouteConfig *rc2 = &cfg->model_routes[k];
        if ((rc2->canary[0] || rc2->shadow[0]) && (!route || !strcmp(route, rc2->name)))
            route_entry(routes, rc2->name, cfg, rd);
    }
    size_t i;
    json_t *r;
    json_array_foreach(routes, i, r) marginal(r);
    *ret = json_pack("{s:o, s:o, s:o}", "since", since ? json_string(since) : json_null(), "by",
                     by ? json_string(by) : json_null(), "routes", routes);
    return 0;
}
