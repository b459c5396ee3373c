/* Consolidation of expired memory items into summaries (consolidate.h). */
#include "memory/consolidate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/crypto.h"
#include "memory/identity.h"
#include "memory/items.h"

/* One (subject, month) with expired items, ids in order. */
typedef struct Group {
    char subject[MEMORY_CONTACT_ID_LEN + 1]; /* "" for items about no one */
    char period[8];                          /* YYYY-MM */
    int64_t *ids;
    size_t n;
} Group;

typedef struct Groups {
    Group *g;
    size_t n, cap;
    size_t items;
} Groups;

static void groups_done(Groups *gs)
{
    for (size_t i = 0; i < gs->n; i++)
        free(gs->g[i].ids);
    free(gs->g);
}

static int ttl_days(const Config *cfg, const char *kind)
{
    return !strcmp(kind, "email") ? cfg->memory_email_ttl_days
         : !strcmp(kind, "form")  ? cfg->memory_form_ttl_days
                                  : cfg->memory_note_ttl_days;
}

/* The expired items, grouped. At most MEMORY_CONSOLIDATE_MAX_GROUPS groups
 * of at most MEMORY_CONSOLIDATE_MAX_ITEMS items: the rest waits for the
 * next run. */
static int expired_groups(Store *rd, const Config *cfg, int64_t now_ms, Groups *gs, Err *err)
{
    char cut[3][CORE_TIME_LEN + 1];
    static const char *const kinds[] = { "email", "form", "note" };
    for (int i = 0; i < 3; i++)
        core_time_format(now_ms - (int64_t)ttl_days(cfg, kinds[i]) * 86400000, cut[i]);
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT i.id, coalesce(c.merged_into, i.contact_id, ''),"
                           " substr(i.at, 1, 7) AS period FROM items i"
                           " LEFT JOIN contacts c ON c.id = i.contact_id"
                           " WHERE i.kind IN ('email', 'form', 'note') AND i.at < CASE i.kind"
                           "  WHEN 'email' THEN ?1 WHEN 'form' THEN ?2 ELSE ?3 END"
                           " ORDER BY 2, period, i.id",
                           &st, err);
    if (rc < 0)
        return rc;
    for (int i = 0; i < 3; i++)
        store_bind_text(st, i + 1, cut[i], strlen(cut[i]));
    while ((rc = store_step(st, err)) == STORE_ROW) {
        const char *subject = store_col_text(st, 1, NULL);
        const char *period = store_col_text(st, 2, NULL);
        Group *g = gs->n ? &gs->g[gs->n - 1] : NULL;
        if (!g || strcmp(g->subject, subject ? subject : "") ||
            strcmp(g->period, period ? period : "")) {
            if (gs->n == MEMORY_CONSOLIDATE_MAX_GROUPS)
                break;
            if (gs->n == gs->cap) {
                gs->cap = gs->cap ? gs->cap * 2 : 16;
                gs->g = xrealloc(gs->g, gs->cap * sizeof *gs->g);
            }
            g = &gs->g[gs->n++];
            memset(g, 0, sizeof *g);
            snprintf(g->subject, sizeof g->subject, "%s", subject ? subject : "");
            snprintf(g->period, sizeof g->period, "%s", period ? period : "");
            g->ids = xmalloc(MEMORY_CONSOLIDATE_MAX_ITEMS * sizeof *g->ids);
        }
        if (g->n < MEMORY_CONSOLIDATE_MAX_ITEMS) {
            g->ids[g->n++] = store_col_int(st, 0);
            gs->items++;
        }
    }
    store_stmt_done(st);
    return rc < 0 ? rc : 0;
}

/* The summary this group's month already has: its seq, version and text. */
static int previous_summary(Store *rd, const Group *g, int64_t *seq, int64_t *version, Buf *text,
                            Err *err)
{
    *seq = 0;
    *version = 0;
    char subject[MEMORY_CONTACT_ID_LEN + 16];
    snprintf(subject, sizeof subject, "contact:%s", g->subject);
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT e.seq, coalesce(json_extract(e.data, '$.version'), 0), i.text"
                           " FROM events e JOIN items i ON i.id = e.seq AND i.kind = 'summary'"
                           " WHERE e.type = 'memory.consolidated' AND e.subject IS ?1"
                           " AND json_extract(e.data, '$.period') = ?2 ORDER BY e.seq DESC LIMIT 1",
                           &st, err);
    if (rc < 0)
        return rc;
    if (*g->subject)
        store_bind_text(st, 1, subject, strlen(subject));
    else
        store_bind_null(st, 1);
    store_bind_text(st, 2, g->period, strlen(g->period));
    if ((rc = store_step(st, err)) == STORE_ROW) {
        *seq = store_col_int(st, 0);
        *version = store_col_int(st, 1);
        size_t len;
        const char *t = store_col_text(st, 2, &len);
        buf_append(text, t ? t : "", t ? len : 0);
    }
    store_stmt_done(st);
    return rc < 0 ? rc : 0;
}

/* Appends at most max bytes of s, cut at a character. */
static void append_cut(Buf *b, const char *s, size_t len, size_t max)
{
    if (len > max) {
        len = max;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--;
    }
    buf_append(b, s, len);
}

/* The model's input: the earlier summary, then each item, dated, until
 * MEMORY_CONSOLIDATE_INPUT_MAX; *last_at: when the last item occurred. */
static int group_input(Store *rd, Group *g, const char *previous, Buf *in,
                       char last_at[CORE_TIME_LEN + 1], Err *err)
{
    if (previous && *previous) {
        buf_printf(in, "Earlier summary of %s:\n", g->period);
        append_cut(in, previous, strlen(previous), MEMORY_CONSOLIDATE_INPUT_MAX / 4);
        buf_append(in, "\n\n", 2);
    }
    int rc = 0;
    for (size_t i = 0; rc >= 0 && i < g->n; i++) {
        StoreStmt *st;
        if ((rc = store_prepare(rd, "SELECT kind, at, text FROM items WHERE id = ?1", &st, err)) < 0)
            break;
        store_bind_int(st, 1, g->ids[i]);
        if ((rc = store_step(st, err)) != STORE_ROW) {
            store_stmt_done(st);
            continue;
        }
        const char *at = store_col_text(st, 1, NULL);
        size_t len;
        const char *text = store_col_text(st, 2, &len);
        if (in->len >= MEMORY_CONSOLIDATE_INPUT_MAX) {
            /* the model sees no more: the rest waits for the next run (and
             * makes the next version), none is folded unseen */
            store_stmt_done(st);
            g->n = i;
            break;
        }
        snprintf(last_at, CORE_TIME_LEN + 1, "%s", at ? at : "");
        buf_printf(in, "%.10s %s: ", at ? at : "", store_col_text(st, 0, NULL));
        append_cut(in, text ? text : "", text ? len : 0, MEMORY_CONSOLIDATE_ITEM_CHARS);
        buf_append(in, "\n", 1);
        store_stmt_done(st);
    }
    return rc < 0 ? rc : 0;
}

/* Summarises one group and appends its memory.consolidated. Fills out with
 * {version, seq} or {error}; <0 only for a store or ledger failure. */
static int consolidate_group(Ledger *l, Store *rd, ModelRouter *router, Group *g,
                             json_t *out, Err *err)
{
    Buf prev, in;
    buf_init(&prev, 0);
    buf_init(&in, 0);
    int64_t prev_seq = 0, prev_version = 0;
    char last_at[CORE_TIME_LEN + 1] = "";
    int rc = previous_summary(rd, g, &prev_seq, &prev_version, &prev, err);
    if (rc == 0)
        rc = group_input(rd, g, buf_cstr(&prev), &in, last_at, err);
    char customer[MEMORY_CONTACT_ID_LEN + 16];
    snprintf(customer, sizeof customer, "contact:%s", g->subject);
    ModelResult res = { 0 };
    if (rc == 0) {
        ModelCall call = { .route = "summarize",
                           .workflow = "memory-consolidation",
                           .customer = *g->subject ? customer : NULL,
                           .force = true,
                           .req = { .task = "summarize",
                                    .prompt = buf_cstr(&in),
                                    .max_output_tokens = 400 } };
        rc = model_router_call(router, rd, &call, &res, err);
        if (rc < 0) { /* a bad request: this group is left, reported */
            json_object_set_new(out, "error", json_string(err->msg));
            err->code = 0;
            rc = 0;
            goto done;
        }
    }
    if (rc < 0)
        goto done;
    const char *summary = json_string_value(json_object_get(res.output, "summary"));
    if (res.status != MODEL_CALL_OK || !summary || !*summary) {
        json_object_set_new(out, "error",
                            json_string(res.status != MODEL_CALL_OK ? res.error
                                                                    : "the model gave no summary"));
        goto done;
    }
    json_t *ids = json_array();
    Buf key;
    buf_init(&key, 0);
    buf_printf(&key, "%s|%s", g->subject, g->period);
    for (size_t i = 0; i < g->n; i++) {
        json_array_append_new(ids, json_integer(g->ids[i]));
        buf_printf(&key, "|%lld", (long long)g->ids[i]);
    }
    char hash[CORE_SHA256_HEX + 1], ekey[CORE_SHA256_HEX + 32];
    core_sha256_hex(key.ptr, key.len, hash);
    buf_done(&key);
    snprintf(ekey, sizeof ekey, "memory.consolidated:%s", hash);
    json_t *d = json_pack("{s:o, s:s, s:I, s:s, s:o, s:s, s:o, s:s, s:s, s:s, s:f}", "subject",
                          *g->subject ? json_string(g->subject) : json_null(), "period",
                          g->period, "version", (json_int_t)(prev_version + 1), "summary",
                          summary, "items", ids, "at", last_at, "replaces",
                          prev_seq ? json_integer(prev_seq) : json_null(), "route", "summarize",
                          "provider", res.provider, "model", res.model, "cost_usd", res.cost_usd);
    Event *ev = NULL;
    LedgerAppendResult ar;
    rc = ledger_event_new("memory.consolidated", "memory", *g->subject ? customer : NULL, d, ekey,
                          ledger_limits(l), &ev, err);
    json_decref(d);
    if (rc == 0)
        rc = ledger_append(l, &ev, 1, &ar, err);
    if (rc == 0) {
        json_object_set_new(out, "version", json_integer(prev_version + 1));
        json_object_set_new(out, "seq", json_integer(ar.seq));
    }
done:
    model_result_done(&res);
    buf_done(&prev);
    buf_done(&in);
    return rc;
}

/* Takes or renews the run's lease: 1 held, 0 another process holds it. */
static int hold_lease(Ledger *l, Store *rd, Err *err)
{
    return ledger_lease_acquire(rd, MEMORY_CONSOLIDATE_LEASE, ledger_instance(l),
                                MEMORY_CONSOLIDATE_LEASE_MS, err);
}

int memory_consolidate(Ledger *l, Store *rd, ModelRouter *router, const Config *cfg,
                       int64_t now_ms, bool dry_run, json_t **ret, Err *err)
{
    if (!dry_run) {
        int held = hold_lease(l, rd, err);
        if (held < 0)
            return held;
        if (!held)
            return err_set(err, ERR_BUSY, "another process is consolidating memory (lease %s)",
                           MEMORY_CONSOLIDATE_LEASE);
    }
    Groups gs = { 0 };
    int rc = expired_groups(rd, cfg, now_ms, &gs, err);
    json_t *list = json_array();
    int64_t summaries = 0, failed = 0;
    bool lost = false;
    for (size_t i = 0; rc == 0 && i < gs.n; i++) {
        Group *g = &gs.g[i];
        /* Each group may wait on a slow model: the lease is renewed before
         * it, and a run that lost its lease stops before writing more. */
        if (!dry_run && i > 0) {
            int held = hold_lease(l, rd, err);
            if (held < 0) {
                rc = held;
                break;
            }
            if (!held) {
                lost = true;
                break;
            }
        }
        json_t *o = json_pack("{s:o, s:s, s:I}", "subject",
                              *g->subject ? json_string(g->subject) : json_null(), "period",
                              g->period, "items", (json_int_t)g->n);
        json_array_append_new(list, o);
        if (dry_run)
            continue;
        rc = consolidate_group(l, rd, router, g, o, err);
        json_object_set_new(o, "items", json_integer((json_int_t)g->n)); /* those folded */
        if (json_object_get(o, "seq"))
            summaries++;
        else
            failed++;
    }
    groups_done(&gs);
    if (!dry_run && !lost) {
        Err ignored = { 0 };
        ledger_lease_release(rd, MEMORY_CONSOLIDATE_LEASE, ledger_instance(l), &ignored);
    }
    if (rc < 0) {
        json_decref(list);
        return rc;
    }
    *ret = json_pack("{s:I, s:I, s:I, s:b, s:b, s:o}", "items", (json_int_t)gs.items, "summaries",
                     (json_int_t)summaries, "failed", (json_int_t)failed, "dry_run", dry_run,
                     "lease_lost", lost, "groups", list);
    return 0;
}
