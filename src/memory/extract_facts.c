/* The "memory.extract" reactor (extract_facts.h). */
#include "memory/extract_facts.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory/identity.h"

#define RECENT_SLOTS 4096 /* a power of two */

struct MemoryExtractor {
    Ledger *l;
    ModelRouter *router;
    Reactor *reactor;
    /* facts emitted but maybe not committed yet (a batch commits at its
     * end, so the facts table does not show them to the next email of the
     * same batch): hashes of contact, key and value */
    uint64_t recent[RECENT_SLOTS];
    size_t n_recent;
    int64_t last_seq;    /* the last event handled: a lower one is a step retried */
    int emails;          /* emails read in this step */
};

static void recent_clear(MemoryExtractor *x)
{
    memset(x->recent, 0, sizeof x->recent);
    x->n_recent = 0;
}

/* After a commit the facts table holds what the step emitted. */
static void committed(void *ctx)
{
    MemoryExtractor *x = ctx;
    recent_clear(x);
    x->emails = 0;
}

static uint64_t fact_hash(const char *contact, const char *key, const json_t *value)
{
    uint64_t h = 1469598103934665603ULL;
    const char *parts[3] = { contact, key, json_string_value(value) };
    for (int i = 0; i < 3; i++) {
        for (const char *p = parts[i] ? parts[i] : ""; *p; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ULL;
        h = (h ^ 0xff) * 1099511628211ULL;
    }
    return h ? h : 1;
}

/* Whether h was emitted lately; remembers it. */
static bool recent_seen(MemoryExtractor *x, uint64_t h)
{
    if (x->n_recent >= RECENT_SLOTS / 2) /* keep it sparse: forget all */
        recent_clear(x);
    size_t i = (size_t)h & (RECENT_SLOTS - 1);
    for (; x->recent[i]; i = (i + 1) & (RECENT_SLOTS - 1))
        if (x->recent[i] == h)
            return true;
    x->recent[i] = h;
    x->n_recent++;
    return false;
}

/* Whether a current fact of key (among memory_facts' list; conflicting
 * ones are all current) has this value. */
static bool known(const json_t *facts, const char *key, const json_t *value)
{
    size_t i;
    const json_t *f;
    json_array_foreach(facts, i, f) {
        const char *k = json_string_value(json_object_get(f, "key"));
        if (json_is_true(json_object_get(f, "current")) && k && !strcmp(k, key) &&
            json_equal(json_object_get(f, "value"), (json_t *)value))
            return true;
    }
    return false;
}

static int emit_fact(MemoryExtractor *x, const Event *src, const char *contact, const json_t *facts,
                     const char *key, const json_t *value, ReactorEmit *out, Err *err)
{
    if (!json_is_string(value) || !*json_string_value(value))
        return 0;
    if (known(facts, key, value) || recent_seen(x, fact_hash(contact, key, value)))
        return 0;
    json_t *d = json_pack("{s:s, s:s, s:O, s:f, s:s, s:I}", "contact", contact, "key", key, "value",
                          value, "confidence", MEMORY_EXTRACT_CONFIDENCE, "source", "extract",
                          "event_seq", (json_int_t)src->seq);
    char ekey[96];
    snprintf(ekey, sizeof ekey, "memory.extract:%lld:%s", (long long)src->seq, key);
    Event *ev = NULL;
    int rc = ledger_event_new("memory.fact.recorded", "memory", NULL, d, ekey, ledger_limits(x->l),
                              &ev, err);
    json_decref(d);
    if (rc < 0)
        return rc;
    ledger_reactor_emit(out, ev);
    return 0;
}

/* Only emails are read; handle passes over anything else. */
static bool wants(void *ctx, const char *type)
{
    (void)ctx;
    return !strcmp(type, "email.received");
}

static int handle(void *ctx, Store *rd, const Event *hdr, ReactorEmit *out, Err *err)
{
    MemoryExtractor *x = ctx;
    if (hdr->seq <= x->last_seq) { /* the step failed and runs again: nothing it emitted stayed */
        recent_clear(x);
        x->emails = 0;
    }
    x->last_seq = hdr->seq;
    if (strcmp(hdr->type, "email.received"))
        return 0;
    ledger_reactor_keep(out); /* a model call: not to be made twice */
    Event *ev = NULL;
    int rc = ledger_event_get(rd, hdr->seq, NULL, &ev, err);
    if (rc == ERR_NOTFOUND)
        return 0;
    if (rc < 0)
        return rc;
    json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
    const json_t *from = json_object_get(d, "from");
    const char *email = json_is_string(from) ? json_string_value(from)
                                             : json_string_value(json_object_get(from, "email"));
    const char *text = json_string_value(json_object_get(d, "text"));
    if (!text)
        text = json_string_value(json_object_get(d, "body"));
    char contact[MEMORY_CONTACT_ID_LEN + 1];
    json_t *facts = NULL;
    ModelResult res = { 0 };
    Err e2 = { 0 };
    if (!email || !text || !*text || memory_contact_find(rd, email, contact, &e2) < 0)
        goto done; /* nothing to read, or no one to say it of */
    char customer[MEMORY_CONTACT_ID_LEN + 16];
    snprintf(customer, sizeof customer, "contact:%s", contact);
    /* the signature is near the top of what they wrote, above quoted mail:
     * the first MEMORY_EXTRACT_MAX_TEXT bytes, cut at a character */
    size_t len = strlen(text);
    char *cut = NULL;
    if (len > MEMORY_EXTRACT_MAX_TEXT) {
        len = MEMORY_EXTRACT_MAX_TEXT;
        while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80)
            len--;
        cut = strndup(text, len);
    }
    ModelCall call = { .route = "extract",
                       .workflow = "memory-facts",
                       .customer = customer,
                       .force = true,
                       .req = { .task = "extract", .prompt = cut ? cut : text } };
    int called = model_router_call(x->router, rd, &call, &res, &e2);
    free(cut);
    if (called < 0 || res.status != MODEL_CALL_OK)
        goto done; /* a failed extraction loses a fact, not the event: go on */
    if ((rc = memory_facts(rd, contact, false, &facts, err)) < 0)
        goto done;
    static const char *const keys[] = { "name", "company", "role" };
    for (size_t i = 0; rc == 0 && i < sizeof keys / sizeof *keys; i++)
        rc = emit_fact(x, ev, contact, facts, keys[i], json_object_get(res.output, keys[i]), out,
                       err);
    const json_t *phones = json_object_get(res.output, "phones");
    if (rc == 0 && json_array_size(phones) == 1) /* one number in a signature is theirs */
        rc = emit_fact(x, ev, contact, facts, "phone", json_array_get(phones, 0), out, err);
done:
    model_result_done(&res);
    json_decref(facts);
    json_decref(d);
    ledger_event_free(ev);
    /* each email is a model call: a step of a few ends well within the lease */
    if (rc == 0 && ++x->emails >= MEMORY_EXTRACT_STEP)
        return 1;
    return rc;
}

int memory_extractor_start(Ledger *l, ModelRouter *router, int lease_ms, MemoryExtractor **ret,
                           Err *err)
{
    MemoryExtractor *x = xcalloc(1, sizeof *x);
    x->l = l;
    x->router = router;
    ReactorDef def = { .name = "memory.extract",
                       .handle = handle,
                       .ctx = x,
                       .lease_ms = lease_ms,
                       .batch = 1024, /* events; a step ends after a few emails */
                       .committed = committed,
                       .headers_only = true,
                       .lazy = true,
                       .wants = wants };
    int rc = ledger_reactor_start(l, &def, &x->reactor, err);
    if (rc < 0) {
        free(x);
        return rc;
    }
    *ret = x;
    return 0;
}

void memory_extractor_stop(MemoryExtractor *x)
{
    if (!x)
        return;
    ledger_reactor_stop(x->reactor);
    free(x);
}
