/* Context packs (context.h): what a drafting step needs to know about a
 * person, within a budget, every part cited. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "memory/context.h"
#include "memory/identity.h"
#include "memory/search.h"

static size_t tokens_of(const char *s)
{
    return (strlen(s) + 3) / 4;
}

/* Adds a part when it fits the budget; returns whether it did. */
static bool add_part(json_t *parts, json_t *sources, size_t *used, size_t budget, const char *kind,
                     const char *text, int64_t seq, const char *event_id)
{
    size_t t = tokens_of(text);
    if (*used + t > budget)
        return false;
    *used += t;
    json_t *p = json_pack("{s:s, s:s, s:I}", "kind", kind, "text", text, "seq", (json_int_t)seq);
    if (event_id)
        json_object_set_new(p, "event_id", json_string(event_id));
    json_array_append_new(parts, p);
    if (sources) { /* what an approval shows: the event and a snippet */
        char snippet[201];
        size_t n = strlen(text);
        if (n > sizeof snippet - 1) { /* cut at a character, not inside one */
            n = sizeof snippet - 1;
            while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
                n--;
        }
        memcpy(snippet, text, n);
        snippet[n] = '\0';
        json_array_append_new(sources, json_pack("{s:I, s:s}", "seq", (json_int_t)seq, "snippet",
                                                 snippet));
    }
    return true;
}

/* Steps st to its end, appending row(st) for each row; frees the list on
 * failure. */
static int rows_json(StoreStmt *st, json_t *(*row)(StoreStmt *st), json_t **ret, Err *err)
{
    json_t *list = json_array();
    int rc;
    while ((rc = store_step(st, err)) == STORE_ROW)
        json_array_append_new(list, row(st));
    store_stmt_done(st);
    if (rc < 0) {
        json_decref(list);
        return rc;
    }
    *ret = list;
    return 0;
}

static json_t *recent_row(StoreStmt *st)
{
    return json_pack("{s:I, s:s, s:s}", "seq", (json_int_t)store_col_int(st, 0), "event_id",
                     store_col_text(st, 1, NULL), "snippet", store_col_text(st, 2, NULL));
}

/* Without a query: the contact's latest items (and those of the contacts
 * merged into it; not their summaries, which the pack has already), newest
 * first, as search hits. */
static int recent_items(Store *rd, const char *id, json_t **ret, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT i.id, i.event_id, substr(i.text, 1, 300) FROM items i"
                           " WHERE i.kind <> 'summary' AND (i.contact_id = ?1 OR i.contact_id IN"
                           "  (SELECT id FROM contacts WHERE merged_into = ?1))"
                           " ORDER BY i.id DESC LIMIT 20",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, id, strlen(id));
    return rows_json(st, recent_row, ret, err);
}

/* The ids of a contact and of those merged into it, as an SQL set. */
#define CONTACT_SET "(SELECT ?1 UNION SELECT id FROM contacts WHERE merged_into = ?1)"

static json_t *summary_row(StoreStmt *st)
{
    return json_pack("{s:I, s:s, s:s, s:s, s:s?, s:I, s:I}", "seq",
                     (json_int_t)store_col_int(st, 0), "event_id", store_col_text(st, 1, NULL),
                     "at", store_col_text(st, 2, NULL), "text", store_col_text(st, 3, NULL),
                     "period", store_col_text(st, 4, NULL), "version",
                     (json_int_t)store_col_int(st, 5), "items", (json_int_t)store_col_int(st, 6));
}

static json_t *timeline_row(StoreStmt *st)
{
    return json_pack("{s:I, s:s, s:s, s:s, s:s}", "seq", (json_int_t)store_col_int(st, 0), "id",
                     store_col_text(st, 1, NULL), "type", store_col_text(st, 2, NULL), "source",
                     store_col_text(st, 3, NULL), "at", store_col_text(st, 4, NULL));
}

int memory_summaries(Store *rd, const char *contact, int64_t limit, json_t **ret, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT i.id, i.event_id, i.at, i.text,"
                           " json_extract(e.data, '$.period'), json_extract(e.data, '$.version'),"
                           " json_array_length(e.data, '$.items')"
                           " FROM items i JOIN events e ON e.seq = i.id"
                           " WHERE i.kind = 'summary' AND i.contact_id IN " CONTACT_SET
                           " ORDER BY i.at DESC, i.id DESC LIMIT ?2",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, contact, strlen(contact));
    store_bind_int(st, 2, limit);
    return rows_json(st, summary_row, ret, err);
}

int memory_timeline(Store *rd, const char *contact, int64_t limit, json_t **ret, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT e.seq, e.id, e.type, e.source,"
                           " coalesce(nullif(e.occurred_at, ''), e.received_at) FROM events e"
                           " WHERE e.seq IN ("
                           "  SELECT id FROM items WHERE contact_id IN " CONTACT_SET
                           "  UNION SELECT seq FROM identities WHERE contact_id IN " CONTACT_SET
                           "  UNION SELECT source_seq FROM facts WHERE contact_id IN " CONTACT_SET
                           "  UNION SELECT seq FROM events WHERE subject = 'contact:' || ?1)"
                           " ORDER BY e.seq DESC LIMIT ?2",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, contact, strlen(contact));
    store_bind_int(st, 2, limit);
    return rows_json(st, timeline_row, ret, err);
}

int memory_context(Store *rd, const Config *cfg, const char *who, const char *query,
                   int budget_tokens, json_t **ret, Err *err)
{
    if (budget_tokens <= 0)
        budget_tokens = MEMORY_CONTEXT_BUDGET_DEFAULT;
    if (budget_tokens > MEMORY_CONTEXT_BUDGET_MAX)
        return err_set(err, ERR_INVAL, "budget: at most %d tokens", MEMORY_CONTEXT_BUDGET_MAX);
    char id[MEMORY_CONTACT_ID_LEN + 1];
    json_t *profile = NULL, *facts = NULL, *hits = NULL, *summaries = NULL;
    int rc = memory_contact_find(rd, who, id, err);
    if (rc == 0)
        rc = memory_contact_get(rd, id, &profile, err);
    if (rc == 0)
        rc = memory_facts(rd, id, false, &facts, err);
    if (rc == 0)
        rc = memory_summaries(rd, id, MEMORY_CONTEXT_SUMMARIES, &summaries, err);
    if (rc == 0 && query && *query) {
        MemorySearch q = { .query = query, .subject = id, .k = 20, .config = cfg };
        rc = memory_search(rd, &q, &hits, err);
    } else if (rc == 0) {
        rc = recent_items(rd, id, &hits, err);
    }
    if (rc < 0) {
        json_decref(profile);
        json_decref(facts);
        json_decref(summaries);
        json_decref(hits);
        return rc;
    }
    size_t used = 0, budget = (size_t)budget_tokens;
    json_t *parts = json_array(), *sources = json_array();
    /* 1. who they are */
    Buf b;
    buf_init(&b, 0);
    const json_t *org = json_object_get(profile, "org");
    buf_printf(&b, "%s <%s>", json_string_value(json_object_get(profile, "name"))
                                  ? json_string_value(json_object_get(profile, "name"))
                                  : "(no name)",
               json_string_value(json_object_get(profile, "email"))
                   ? json_string_value(json_object_get(profile, "email"))
                   : "no email");
    if (json_is_object(org))
        buf_printf(&b, ", %s", json_string_value(json_object_get(org, "domain")));
    add_part(parts, NULL, &used, budget, "profile", buf_cstr(&b),
             json_integer_value(json_object_get(profile, "first_seq")), NULL);
    /* 2. what is known, most confident first as listed */
    size_t i;
    json_t *f;
    json_array_foreach(facts, i, f) {
        char *v = json_dumps(json_object_get(f, "value"), JSON_ENCODE_ANY | JSON_COMPACT);
        buf_clear(&b);
        buf_printf(&b, "%s: %s%s", json_string_value(json_object_get(f, "key")), v ? v : "null",
                   json_is_true(json_object_get(f, "conflict")) ? " (conflicting sources)" : "");
        free(v);
        add_part(parts, NULL, &used, budget, "fact", buf_cstr(&b),
                 json_integer_value(json_object_get(f, "seq")), NULL);
    }
    /* 3. the latest summaries of what expired from short-term memory */
    json_t *sm;
    json_array_foreach(summaries, i, sm) {
        buf_clear(&b);
        buf_printf(&b, "%s: %s", json_string_value(json_object_get(sm, "period")),
                   json_string_value(json_object_get(sm, "text")));
        add_part(parts, sources, &used, budget, "summary", buf_cstr(&b),
                 json_integer_value(json_object_get(sm, "seq")),
                 json_string_value(json_object_get(sm, "event_id")));
    }
    /* 4. what they wrote or was noted, the best matches first */
    json_t *h;
    json_array_foreach(hits, i, h) {
        const char *snippet = json_string_value(json_object_get(h, "snippet"));
        const char *kind = json_string_value(json_object_get(h, "kind"));
        if (!snippet || (kind && !strcmp(kind, "summary"))) /* already in */
            continue;
        if (!add_part(parts, sources, &used, budget, "item", snippet,
                      json_integer_value(json_object_get(h, "seq")),
                      json_string_value(json_object_get(h, "event_id"))))
            break;
    }
    buf_done(&b);
    *ret = json_pack("{s:s, s:o, s:i, s:I, s:o, s:o}", "contact", id, "profile", profile,
                     "budget_tokens", budget_tokens, "used_tokens", (json_int_t)used, "parts",
                     parts, "sources", sources);
    json_decref(facts);
    json_decref(summaries);
    json_decref(hits);
    return 0;
}
