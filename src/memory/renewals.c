/* What comes up for renewal (renewals.h). */
#include "memory/renewals.h"

#include <string.h>

#include "core/clock.h"

/* An end time in a fact's value: RFC 3339 (or a date), or Unix seconds. */
static bool end_of(const json_t *v, int64_t *ms)
{
    if (json_is_integer(v) && json_integer_value(v) > 0) {
        *ms = (int64_t)json_integer_value(v) * 1000;
        return true;
    }
    const char *s = json_string_value(v);
    if (!s)
        return false;
    if (core_time_parse(s, strlen(s), ms) == 0)
        return true;
    char day[40];
    if (strlen(s) == 10) { /* YYYY-MM-DD: the end of that day */
        snprintf(day, sizeof day, "%sT23:59:59Z", s);
        return core_time_parse(day, strlen(day), ms) == 0;
    }
    return false;
}

int memory_renewals(Store *rd, int64_t now_ms, int64_t within_ms, json_t **ret, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT f.contact_id, f.key, f.value, f.source_seq, c.name, c.email"
                           " FROM facts f JOIN contacts c ON c.id = f.contact_id"
                           " WHERE f.superseded_by IS NULL AND f.key IN ('subscription', 'retainer')"
                           " AND c.merged_into IS NULL ORDER BY f.contact_id, f.key",
                           &st, err);
    if (rc < 0)
        return rc;
    json_t *list = json_array();
    while ((rc = store_step(st, err)) == STORE_ROW) {
        size_t len;
        const char *text = store_col_text(st, 2, &len);
        json_t *v = text ? json_loadb(text, len, 0, NULL) : NULL;
        const char *key = store_col_text(st, 1, NULL);
        bool sub = !strcmp(key, "subscription");
        const char *status = json_string_value(json_object_get(v, "status"));
        const char *event = json_string_value(json_object_get(v, "event"));
        int64_t end = 0;
        bool has_end = sub ? end_of(json_object_get(v, "current_period_end"), &end)
                           : (end_of(json_object_get(v, "ends_at"), &end) ||
                              end_of(json_object_get(v, "ends"), &end));
        bool gone = sub && ((status && !strcmp(status, "canceled")) ||
                            (event && (!strcmp(event, "canceled") || !strcmp(event, "deleted"))));
        /* a subscription set to end (cancel_at) is due then */
        int64_t cancel_at = 0;
        bool ending = sub && end_of(json_object_get(v, "cancel_at"), &cancel_at);
        if (ending) {
            end = cancel_at;
            has_end = true;
        }
        /* a monthly subscription's period always ends within a month: only
         * a yearly one's renewal, or a set end, is worth a conversation */
        const char *interval = json_string_value(json_object_get(v, "interval"));
        bool yearly = interval && !strcmp(interval, "year");
        if (v && has_end && !gone && (!sub || ending || yearly) && end >= now_ms &&
            end <= now_ms + within_ms) {
            char at[CORE_TIME_LEN + 1];
            core_time_format(end, at);
            const char *name = store_col_text(st, 4, NULL), *email = store_col_text(st, 5, NULL);
            json_array_append_new(
                list, json_pack("{s:s, s:s?, s:s?, s:s, s:s, s:b, s:O?, s:I, s:O}", "contact",
                                store_col_text(st, 0, NULL), "name", name, "email", email, "kind",
                                key, "ends_at", at, "cancels", ending, "plan",
                                json_object_get(v, "plan"), "fact_seq",
                                (json_int_t)store_col_int(st, 3), "fact", v));
        }
        json_decref(v);
    }
    store_stmt_done(st);
    if (rc < 0) {
        json_decref(list);
        return rc;
    }
    *ret = list;
    return 0;
}
