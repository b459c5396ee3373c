/* The memory step kinds: memory.resolve (who is this?),
 * memory.record_fact (remember something about them), memory.context (what
 * a draft about them should know) and memory.search (what do we have on
 * this?). */
#include <stdio.h>
#include <string.h>

#include "flow/engine_int.h"
#include "memory/context.h"
#include "memory/identity.h"
#include "core/buf.h"
#include "core/clock.h"
#include "memory/search.h"
#include "memory/renewals.h"
#include "memory/themes.h"

/* memory.resolve: with {who: an email, phone, payment customer id or
 * contact id}. Output: the contact's profile with its current facts
 * ({key: value}) and found: true, or {found: false}. */
static int step_resolve(FlowStepRun *r)
{
    const char *who = json_string_value(json_object_get(r->inputs, "who"));
    if (!who || !*who)
        return flow__step_fail(r, false, "with.who: an email, phone or contact id is required");
    char id[MEMORY_CONTACT_ID_LEN + 1];
    Err err = { 0 };
    int rc = memory_contact_find(r->rd, who, id, &err);
    json_t *c = NULL;
    if (rc == 0)
        rc = memory_contact_get(r->rd, id, &c, &err);
    if (rc == ERR_NOTFOUND) {
        r->outcome = FLOW_DONE;
        r->output = json_pack("{s:b, s:s}", "found", 0, "who", who);
        return 0;
    }
    json_t *facts = NULL;
    if (rc == 0)
        rc = memory_facts(r->rd, id, false, &facts, &err);
    if (rc < 0) {
        json_decref(c);
        return flow__step_fail(r, true, "%s", err.msg);
    }
    /* the current facts as {key: value} (of conflicting ones, the first
     * listed: the most confident) for `if:` and templates */
    json_t *map = json_object();
    size_t i;
    json_t *f;
    json_array_foreach(facts, i, f) {
        const char *k = json_string_value(json_object_get(f, "key"));
        if (k && json_is_true(json_object_get(f, "current")) && !json_object_get(map, k))
            json_object_set(map, k, json_object_get(f, "value"));
    }
    json_decref(facts);
    json_object_set_new(c, "facts", map);
    json_object_set_new(c, "found", json_true());
    r->outcome = FLOW_DONE;
    r->output = c;
    return 0;
}

/* memory.record_fact: with {who, key, value, confidence?}: appends
 * memory.fact.recorded (source step) with the step's events. */
static int step_record_fact(FlowStepRun *r)
{
    const char *who = json_string_value(json_object_get(r->inputs, "who"));
    const char *key = json_string_value(json_object_get(r->inputs, "key"));
    const json_t *value = json_object_get(r->inputs, "value");
    const json_t *conf = json_object_get(r->inputs, "confidence");
    if (!who || !key || !value)
        return flow__step_fail(r, false, "with: who, key and value are required");
    double c = conf ? json_number_value(conf) : 1.0;
    if (conf && (!json_is_number(conf) || c < 0 || c > 1))
        return flow__step_fail(r, false, "with.confidence: must be a number from 0 to 1");
    size_t n = strlen(key);
    bool ok = n > 0 && n <= 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = (key[i] >= 'a' && key[i] <= 'z') || (key[i] >= '0' && key[i] <= '9') || key[i] == '_';
    if (!ok)
        return flow__step_fail(r, false, "with.key: '%.64s': 1-64 of a-z, 0-9 and _", key);
    char id[MEMORY_CONTACT_ID_LEN + 1];
    Err err = { 0 };
    int rc = memory_contact_find(r->rd, who, id, &err);
    if (rc < 0)
        return flow__step_fail(r, rc != ERR_NOTFOUND, "with.who: %s", err.msg);
    json_t *d = json_pack("{s:s, s:s, s:O, s:f, s:s, s:s, s:s}", "contact", id, "key", key,
                          "value", value, "confidence", c, "source", "step", "task", r->task_id,
                          "step", r->step->id);
    char source[FLOW_NAME_MAX + 16], ekey[256];
    flow__source(r->wf->name, source);
    snprintf(ekey, sizeof ekey, "memory.fact:%s:%s:%d", r->task_id, r->step->id, r->attempt);
    Event *ev = NULL;
    rc = ledger_event_new("memory.fact.recorded", source, r->subject, d, ekey, r->limits, &ev,
                          &err);
    json_decref(d);
    if (rc < 0)
        return flow__step_fail(r, false, "%s", err.msg);
    flow__step_emit(r, ev);
    r->outcome = FLOW_DONE;
    r->output = json_pack("{s:s, s:s}", "contact", id, "key", key);
    return 0;
}

/* memory.context: with {who, query?, budget?}: the context pack (profile,
 * facts, items, cited) for a drafting step; its `sources` are what an
 * approval shows. A person not known yet gets {found: false}. */
static int step_context(FlowStepRun *r)
{
    const char *who = json_string_value(json_object_get(r->inputs, "who"));
    const char *query = json_string_value(json_object_get(r->inputs, "query"));
    const json_t *budget = json_object_get(r->inputs, "budget");
    if (!who || !*who)
        return flow__step_fail(r, false, "with.who: an email, phone or contact id is required");
    if (budget && (!json_is_integer(budget) || json_integer_value(budget) < 1 ||
                   json_integer_value(budget) > MEMORY_CONTEXT_BUDGET_MAX))
        return flow__step_fail(r, false, "with.budget: tokens, from 1 to %d",
                               MEMORY_CONTEXT_BUDGET_MAX);
    json_t *pack = NULL;
    Err err = { 0 };
    int rc = memory_context(r->rd, r->cfg, who, query, budget ? (int)json_integer_value(budget) : 0,
                            &pack, &err);
    if (rc == ERR_NOTFOUND) {
        r->outcome = FLOW_DONE;
        r->output = json_pack("{s:b, s:s, s:[], s:[]}", "found", 0, "who", who, "parts",
                              "sources");
        return 0;
    }
    if (rc < 0)
        return flow__step_fail(r, rc != ERR_INVAL, "%s", err.msg);
    json_object_set_new(pack, "found", json_true());
    r->outcome = FLOW_DONE;
    r->output = pack;
    return 0;
}

/* memory.search: with {query, subject?, kinds? (a list or "a,b"), since?,
 * k?}: {query, hits} as GET /v1/memory/search answers. An unknown subject
 * finds nothing (hits: []), it is not an error. */
static int step_search(FlowStepRun *r)
{
    const char *query = json_string_value(json_object_get(r->inputs, "query"));
    const char *subject = json_string_value(json_object_get(r->inputs, "subject"));
    const char *since = json_string_value(json_object_get(r->inputs, "since"));
    const json_t *kj = json_object_get(r->inputs, "kinds");
    const json_t *k = json_object_get(r->inputs, "k");
    if (!query || !*query)
        return flow__step_fail(r, false, "with.query: required");
    if (k && (!json_is_integer(k) || json_integer_value(k) < 1 ||
              json_integer_value(k) > MEMORY_SEARCH_K_MAX))
        return flow__step_fail(r, false, "with.k: a number of hits, from 1 to %d",
                               MEMORY_SEARCH_K_MAX);
    const char *kinds[MEMORY_SEARCH_KINDS_MAX + 1] = { NULL };
    char kbuf[MEMORY_SEARCH_KINDS_BUF] = "";
    int n = 0;
    Err kerr = { 0 };
    if (json_is_array(kj)) {
        size_t i;
        const json_t *v;
        json_array_foreach(kj, i, v) {
            if (n == MEMORY_SEARCH_KINDS_MAX || !json_is_string(v))
                return flow__step_fail(r, false, "with.kinds: at most %d of email, form, note, summary",
                                       MEMORY_SEARCH_KINDS_MAX);
            kinds[n++] = json_string_value(v);
        }
    } else if (json_is_string(kj)) {
        if (memory_search_kinds(json_string_value(kj), kbuf, kinds, &kerr) < 0)
            return flow__step_fail(r, false, "with.%s", kerr.msg);
        while (kinds[n])
            n++;
    } else if (kj && !json_is_null(kj)) {
        return flow__step_fail(r, false, "with.kinds: a list or a comma-separated string");
    }
    MemorySearch q = { .query = query,
                       .subject = subject && *subject ? subject : NULL,
                       .kinds = n ? kinds : NULL,
                       .since = since && *since ? since : NULL,
                       .k = k ? (int)json_integer_value(k) : 0,
                       .config = r->cfg };
    json_t *hits = NULL;
    Err err = { 0 };
    int rc = memory_search(r->rd, &q, &hits, &err);
    if (rc == ERR_NOTFOUND) { /* the subject is not known (yet) */
        hits = json_array();
        rc = 0;
    }
    if (rc < 0)
        return flow__step_fail(r, rc != ERR_INVAL && rc != ERR_TOOBIG, "with: %s", err.msg);
    r->outcome = FLOW_DONE;
    r->output = json_pack("{s:s, s:o}", "query", query, "hits", hits);
    return 0;
}

/* memory.themes: with {types? (default [feedback.received]), since? (a
 * duration back from now, default 7d, or an RFC 3339 time), max? (themes,
 * default 8)}: what memory_themes() answers, plus `text`, the digest as a
 * person reads it. */
static int step_themes(FlowStepRun *r)
{
    const json_t *types = json_object_get(r->inputs, "types");
    const char *since = json_string_value(json_object_get(r->inputs, "since"));
    const json_t *max = json_object_get(r->inputs, "max");
    const char *list[MEMORY_THEMES_MAX_TYPES + 1] = { "feedback.received", NULL };
    if (types && !json_is_null(types)) {
        if (!json_is_array(types) || json_array_size(types) < 1 ||
            json_array_size(types) > MEMORY_THEMES_MAX_TYPES)
            return flow__step_fail(r, false, "with.types: a list of 1 to %d event types",
                                   MEMORY_THEMES_MAX_TYPES);
        size_t i;
        const json_t *v;
        json_array_foreach(types, i, v) {
            if (!json_is_string(v))
                return flow__step_fail(r, false, "with.types[%zu]: an event type", i);
            list[i] = json_string_value(v);
        }
        list[json_array_size(types)] = NULL;
    }
    if (max && (!json_is_integer(max) || json_integer_value(max) < 1 ||
                json_integer_value(max) > 50))
        return flow__step_fail(r, false, "with.max: themes, from 1 to 50");
    int64_t since_ms = r->now_ms - (int64_t)7 * 86400000, ms;
    Err err = { 0 };
    if (since && *since) {
        if (core_time_parse(since, strlen(since), &ms) == 0)
            since_ms = ms;
        else if (flow_duration_parse(since, &ms, &err) == 0)
            since_ms = r->now_ms - ms;
        else
            return flow__step_fail(r, false, "with.since: '%.40s': a duration (7d) or a time",
                                   since);
    }
    json_t *out = NULL;
    int rc = memory_themes(r->rd, list, since_ms, max ? (int)json_integer_value(max) : 0, &out,
                           &err);
    if (rc < 0)
        return flow__step_fail(r, true, "%s", err.msg);
    Buf b;
    buf_init(&b, 0);
    const json_t *themes = json_object_get(out, "themes");
    buf_printf(&b, "%lld messages since %.10s, in %zu themes.\n",
               (long long)json_integer_value(json_object_get(out, "total")),
               json_string_value(json_object_get(out, "since")), json_array_size(themes));
    size_t i, j;
    const json_t *t, *q;
    json_array_foreach(themes, i, t) {
        buf_printf(&b, "\n%zu. %s (%lld)\n", i + 1, json_string_value(json_object_get(t, "label")),
                   (long long)json_integer_value(json_object_get(t, "count")));
        json_array_foreach(json_object_get(t, "quotes"), j, q) {
            const char *who = json_string_value(json_object_get(q, "who"));
            buf_printf(&b, "   \"%s\"%s%s [%lld]\n", json_string_value(json_object_get(q, "text")),
                       who ? " - " : "", who ? who : "",
                       (long long)json_integer_value(json_object_get(q, "seq")));
        }
    }
    json_object_set_new(out, "text", json_string(buf_cstr(&b)));
    buf_done(&b);
    r->outcome = FLOW_DONE;
    r->output = out;
    return 0;
}

/* memory.renewals: with {within? (a duration, default 30d)}: {due: [...]}
 * as memory_renewals() finds them, and one `renewal.due` event per renewal
 * (keyed by contact, kind and end, so a daily run announces each once). */
static int step_renewals(FlowStepRun *r)
{
    const char *within = json_string_value(json_object_get(r->inputs, "within"));
    int64_t ms = (int64_t)30 * 86400000;
    Err err = { 0 };
    if (within && *within && flow_duration_parse(within, &ms, &err) < 0)
        return flow__step_fail(r, false, "with.within: '%.40s': a duration (30d)", within);
    json_t *due = NULL;
    if (memory_renewals(r->rd, r->now_ms, ms, &due, &err) < 0)
        return flow__step_fail(r, true, "%s", err.msg);
    char source[FLOW_NAME_MAX + 16];
    flow__source(r->wf->name, source);
    size_t i;
    json_t *d;
    json_array_foreach(due, i, d) {
        const char *contact = json_string_value(json_object_get(d, "contact"));
        char key[256], subject[64];
        snprintf(key, sizeof key, "renewal.due:%s:%s:%s", contact,
                 json_string_value(json_object_get(d, "kind")),
                 json_string_value(json_object_get(d, "ends_at")));
        snprintf(subject, sizeof subject, "contact:%s", contact);
        Event *ev = NULL;
        if (ledger_event_new("renewal.due", source, subject, d, key, r->limits, &ev, &err) < 0) {
            json_decref(due);
            return flow__step_fail(r, false, "%s", err.msg);
        }
        flow__step_emit(r, ev);
    }
    r->outcome = FLOW_DONE;
    r->output = json_pack("{s:o}", "due", due);
    return 0;
}

int flow__step_memory(FlowStepRun *r)
{
    const char *k = r->step->kind;
    return !strcmp(k, "memory.resolve")   ? step_resolve(r)
         : !strcmp(k, "memory.context")   ? step_context(r)
         : !strcmp(k, "memory.search")    ? step_search(r)
         : !strcmp(k, "memory.themes")    ? step_themes(r)
         : !strcmp(k, "memory.renewals")  ? step_renewals(r)
                                          : step_record_fact(r);
}
