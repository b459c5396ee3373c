/* The "items" projection: short-term memory items from emails, forms and
 * notes (docs/memory.md, "Items and search"). The full-text index items_fts
 * is an external-content FTS5 table kept in step with items by triggers
 * (migrations/sqlite/0007_items.sql), so the projection writes items only
 * and a rebuild (which deletes from items, then applies the log again) or a
 * snapshot reload leaves the index equal to the table. */
#include <stdlib.h>
#include <strings.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "ledger/projection.h"
#include "memory/identity.h"
#include "memory/items.h"

static const char *const tables[] = { "items", NULL };

/* How long an item is short-term memory, per kind (a projection constant:
 * changing it means a new projection version). */
#define DAY_MS ((int64_t)24 * 3600 * 1000)
static int64_t ttl_ms(const char *kind)
{
    (void)kind; /* email, form and note: 30 days for now */
    return MEMORY_ITEM_TTL_DAYS * DAY_MS;
}

static void add_text(Buf *b, const char *s)
{
    if (!s || !*s)
        return;
    if (b->len)
        buf_append(b, "\n", 1);
    buf_append(b, s, strlen(s));
}

/* Fields of a form that say who the person is, not what they wrote. */
static bool identity_field(const char *k)
{
    static const char *const skip[] = { "email", "e-mail", "mail", "phone", "tel", "telephone",
                                        "mobile", "name", "full_name", "fullname", "first_name",
                                        "last_name", "company", "organisation", "organization",
                                        "url", "website", "consent", NULL };
    for (int i = 0; skip[i]; i++)
        if (!strcasecmp(k, skip[i]))
            return true;
    return false;
}

/* Cuts b to at most max bytes, at a UTF-8 character boundary. */
static void cut(Buf *b, size_t max)
{
    if (b->len <= max)
        return;
    size_t n = max;
    while (n > 0 && ((unsigned char)b->ptr[n] & 0xC0) == 0x80)
        n--;
    b->len = n;
    b->ptr[n] = '\0';
}

/* memory.consolidated: the items it folded leave short-term memory, the
 * summary it replaces goes, and the summary is an item of its own (kind
 * summary, never expiring). A redacted event has none of it: nothing. */
#define NEVER "9999-12-31T23:59:59.999Z"
static int apply_consolidated(Store *tx, const Event *ev, Err *err)
{
    json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
    const char *summary = json_string_value(json_object_get(d, "summary"));
    const char *at = json_string_value(json_object_get(d, "at"));
    const char *subject = json_string_value(json_object_get(d, "subject"));
    json_t *items = json_object_get(d, "items");
    int rc = 0;
    if (summary && *summary && json_is_array(items)) {
        char *list = json_dumps(items, JSON_COMPACT);
        rc = store_execf(tx, err,
                         "DELETE FROM items WHERE kind <> 'summary' AND id IN"
                         " (SELECT value FROM json_each(?1))",
                         "s", list ? list : "[]");
        free(list);
        json_t *rep = json_object_get(d, "replaces");
        if (rc == 0 && json_is_integer(rep))
            rc = store_execf(tx, err, "DELETE FROM items WHERE id = ?1 AND kind = 'summary'", "i",
                             (int64_t)json_integer_value(rep));
        Buf text;
        buf_init(&text, 0);
        buf_append(&text, summary, strlen(summary));
        cut(&text, MEMORY_ITEM_MAX_TEXT);
        if (rc == 0)
            rc = store_execf(tx, err,
                             "INSERT INTO items(id, event_id, contact_id, kind, text, at, expires_at)"
                             " VALUES (?1, ?2, ?3, 'summary', ?4, ?5, '" NEVER "')",
                             "issss", ev->seq, ev->id, subject, text.ptr,
                             at && *at ? at : ev->received_at);
        buf_done(&text);
    }
    json_decref(d);
    return rc;
}

static int apply(Store *tx, const Event *ev, Err *err)
{
    if (!strcmp(ev->type, "memory.consolidated"))
        return apply_consolidated(tx, ev, err);
    const char *t = ev->type, *kind = !strcmp(t, "email.received") ? "email"
                                    : !strcmp(t, "form.submitted") ? "form"
                                    : !strcmp(t, "note.added")     ? "note"
                                                                   : NULL;
    if (!kind)
        return 0;
    json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (!d)
        return 0;
    Buf text;
    buf_init(&text, 0);
    if (!strcmp(kind, "form")) {
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(d, "fields"), k, v) if (json_is_string(v) &&
                                                                   !identity_field(k))
            add_text(&text, json_string_value(v));
    } else {
        add_text(&text, json_string_value(json_object_get(d, "subject")));
        const char *body = json_string_value(json_object_get(d, "text"));
        add_text(&text, body ? body : json_string_value(json_object_get(d, "body")));
    }
    cut(&text, MEMORY_ITEM_MAX_TEXT);
    int rc = 0;
    if (text.len) {
        char contact[MEMORY_CONTACT_ID_LEN + 1] = "";
        rc = memory__item_contact(tx, ev, d, contact, err);
        const char *at = ev->occurred_at[0] ? ev->occurred_at : ev->received_at;
        int64_t at_ms = 0;
        char expires[CORE_TIME_LEN + 1];
        if (core_time_parse(at, strlen(at), &at_ms) < 0)
            at_ms = 0;
        core_time_format(at_ms + ttl_ms(kind), expires);
        if (rc == 0)
            rc = store_execf(tx, err,
                             "INSERT INTO items(id, event_id, contact_id, kind, text, at, expires_at)"
                             " VALUES (?1, ?2, nullif(?3, ''), ?4, ?5, ?6, ?7)",
                             "issssss", ev->seq, ev->id, contact, kind, text.ptr, at, expires);
    }
    buf_done(&text);
    json_decref(d);
    return rc;
}

static const Projection items_projection = {
    .name = "items",
    .version = 1,
    .tables = tables,
    .apply = apply,
};

void memory__items_register(void)
{
    ledger_projection_register(&items_projection);
}
