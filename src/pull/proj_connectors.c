/* The "connectors" projection (migrations/sqlite/0008_connectors.sql): each
 * pull connector's cursor, its event counts (total and per UTC day: the
 * email.* and calendar.* events stored with its source) and whether it is
 * failing, from connector.cursor, connector.failed and connector.recovered.
 *
 * A cursor event names the cursor event it was computed from (prev); it
 * moves the cursor only if that is still the current one, so a poll that
 * was running while the operator replayed cannot overwrite the replay. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger/projection.h"
#include "pull/ics.h"
#include "pull/pull_int.h"

static const char *const tables[] = { "connectors", "connector_days", NULL };

static const char *str(const json_t *d, const char *k)
{
    return json_string_value(json_object_get(d, k));
}

/* An event a pull connector stored (not a duplicate: those are never
 * applied) counts for the connector whose source it carries. Only the types
 * pull connectors append are looked at, so other appends pay nothing. */
static int count_event(Store *tx, const Event *ev, Err *err)
{
    char day[11];
    snprintf(day, sizeof day, "%.10s", ev->received_at);
    int rc = store_execf(tx, err,
                         "UPDATE connectors SET events = events + 1, last_event_at = ?2"
                         " WHERE source = ?1",
                         "ss", ev->source, ev->received_at);
    if (rc < 0 || store_changes(tx) == 0)
        return rc;
    return store_execf(tx, err,
                       "INSERT INTO connector_days(name, day, events)"
                       " SELECT name, ?2, 1 FROM connectors WHERE source = ?1 AND true"
                       " ON CONFLICT(name, day) DO UPDATE SET events = events + 1",
                       "ss", ev->source, day);
}

static int apply(Store *tx, const Event *ev, Err *err)
{
    if (!strncmp(ev->type, "email.", 6) || !strncmp(ev->type, "calendar.", 9))
        return count_event(tx, ev, err);
    if (strncmp(ev->type, "connector.", 10))
        return 0;
    json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
    const char *name = str(d, "connector"), *kind = str(d, "kind");
    int rc = 0;
    if (!name || !kind)
        goto out;
    if ((rc = store_execf(tx, err,
                          "INSERT INTO connectors(name, kind, source) VALUES (?1, ?2, ?3)"
                          " ON CONFLICT(name) DO UPDATE SET source = ?3",
                          "sss", name, kind, ev->source)) < 0)
        goto out;
    if (!strcmp(ev->type, "connector.cursor")) {
        const json_t *cur = json_object_get(d, "cursor");
        bool replay = json_is_true(json_object_get(d, "replay"));
        const json_t *prev = json_object_get(d, "prev");
        if (json_is_object(cur)) {
            char *text = json_dumps(cur, JSON_COMPACT | JSON_SORT_KEYS);
            rc = store_execf(tx, err,
                             "UPDATE connectors SET kind = ?2, cursor = ?3, cursor_seq = ?4"
                             " WHERE name = ?1 AND (?5 OR ?6 = cursor_seq)",
                             "sssiii", name, kind, text, ev->seq, (int64_t)(replay || !prev),
                             (int64_t)json_integer_value(prev));
            free(text);
            if (rc < 0)
                goto out;
        }
    } else if (!strcmp(ev->type, "connector.failed")) {
        rc = store_execf(tx, err,
                         "UPDATE connectors SET failing = 1, last_error = ?2, last_error_at = ?3"
                         " WHERE name = ?1",
                         "sss", name, str(d, "error") ? str(d, "error") : "failed",
                         ev->received_at);
    } else if (!strcmp(ev->type, "connector.recovered")) {
        rc = store_execf(tx, err, "UPDATE connectors SET failing = 0 WHERE name = ?1", "s", name);
    }
out:
    json_decref(d);
    return rc < 0 ? rc : 0;
}

static const Projection connectors_projection = {
    .name = "connectors",
    .version = 1,
    .tables = tables,
    .apply = apply,
};

void pull_projections_register(void)
{
    ledger_projection_register(&connectors_projection);
    ics_projections_register(); /* the calendar, after the connectors */
}

int pull__cursor_get(Store *rd, const char *name, json_t **ret, int64_t *ret_seq, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(rd, "SELECT cursor, cursor_seq FROM connectors WHERE name = ?1", &st,
                           err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, name, strlen(name));
    json_t *cur = NULL;
    int64_t seq = 0;
    if ((rc = store_step(st, err)) == STORE_ROW) {
        size_t len = 0;
        const char *t = store_col_text(st, 0, &len);
        cur = t ? json_loadb(t, len, 0, NULL) : NULL;
        seq = store_col_int(st, 1);
    }
    store_stmt_done(st);
    if (rc < 0)
        return rc;
    if (!json_is_object(cur)) {
        json_decref(cur);
        cur = json_object();
    }
    *ret = cur;
    *ret_seq = seq;
    return 0;
}
