/* Reading the ledger: filtered scans, lookups, the head, chain
 * verification, and leases. Everything here runs on the caller's
 * connection and never appends. */
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "ledger/ledger_int.h"

int ledger_head(Store *s, int64_t *ret_seq, char ret_hash[CORE_SHA256_HEX + 1], Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(s, "SELECT seq, hash FROM ledger_state WHERE name = '@head'", &st, err);
    if (rc < 0)
        return rc;
    rc = store_step(st, err);
    if (rc == STORE_ROW) {
        *ret_seq = store_col_int(st, 0);
        if (ret_hash) {
            size_t len;
            const char *h = store_col_text(st, 1, &len);
            snprintf(ret_hash, CORE_SHA256_HEX + 1, "%s", h ? h : "");
        }
        rc = 0;
    } else if (rc == STORE_DONE) {
        rc = err_set(err, ERR_CHAIN, "the ledger head row (ledger_state @head) is missing");
    }
    store_stmt_done(st);
    return rc;
}

int ledger_read(Store *s, const LedgerFilter *f, int (*fn)(void *ctx, const Event *ev),
                void *ctx, Err *err)
{
    /* One SQL text per combination of filters, so that each uses its index. */
    Buf sql;
    buf_init(&sql, 0);
    buf_puts(&sql, f->headers_only
                       ? "SELECT seq, id, type, source, subject, occurred_at, received_at, consent,"
                         " idempotency_key, trace_id, '', data_hash, prev_hash, hash"
                         " FROM events WHERE seq > ?1"
                       : "SELECT " LEDGER_EVENT_COLUMNS " FROM events WHERE seq > ?1");
    if (f->type)
        buf_puts(&sql, " AND type = ?2");
    if (f->source)
        buf_puts(&sql, " AND source = ?3");
    if (f->subject)
        buf_puts(&sql, " AND subject = ?4");
    if (f->before_seq > 0)
        buf_puts(&sql, " AND seq < ?6");
    buf_puts(&sql, f->newest_first ? " ORDER BY seq DESC LIMIT ?5" : " ORDER BY seq LIMIT ?5");
    StoreStmt *st;
    int rc = store_prepare(s, sql.ptr, &st, err);
    buf_done(&sql);
    if (rc < 0)
        return rc;
    store_bind_int(st, 1, f->after_seq);
    if (f->type)
        store_bind_text(st, 2, f->type, strlen(f->type));
    if (f->source)
        store_bind_text(st, 3, f->source, strlen(f->source));
    if (f->subject)
        store_bind_text(st, 4, f->subject, strlen(f->subject));
    store_bind_int(st, 5, f->limit > 0 ? f->limit : -1);
    if (f->before_seq > 0)
        store_bind_int(st, 6, f->before_seq);
    while ((rc = store_step(st, err)) == STORE_ROW) {
        Event *ev;
        if ((rc = ledger_event_from_row(st, &ev, err)) < 0)
            break;
        rc = fn(ctx, ev);
        ledger_event_free(ev);
        if (rc != 0)
            break;
    }
    store_stmt_done(st);
    return rc < 0 ? rc : 0;
}

int ledger_event_get(Store *s, int64_t seq, const char *id, Event **ret, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(s,
                           id ? "SELECT " LEDGER_EVENT_COLUMNS " FROM events WHERE id = ?1"
                              : "SELECT " LEDGER_EVENT_COLUMNS " FROM events WHERE seq = ?1",
                           &st, err);
    if (rc < 0)
        return rc;
    if (id)
        store_bind_text(st, 1, id, strlen(id));
    else
        store_bind_int(st, 1, seq);
    rc = store_step(st, err);
    if (rc == STORE_ROW)
        rc = ledger_event_from_row(st, ret, err);
    else if (rc == STORE_DONE)
        rc = id ? err_set(err, ERR_NOTFOUND, "no event with id %s", id)
                : err_set(err, ERR_NOTFOUND, "no event with seq %lld", (long long)seq);
    store_stmt_done(st);
    return rc;
}

/* The seqs that ledger.redacted events say were redacted (a JSON object
 * used as a set: "seq" -> true). */
static json_t *redacted_seqs(Store *s, Err *err)
{
    json_t *set = json_object();
    StoreStmt *st;
    if (store_prepare(s, "SELECT data FROM events WHERE type = 'ledger.redacted'", &st, err) < 0)
        return set;
    while (store_step(st, err) == STORE_ROW) {
        size_t len;
        const char *d = store_col_text(st, 0, &len);
        json_t *o = json_loadb(d, len, 0, NULL);
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(o, "seqs"), i, v) {
            char k[32];
            snprintf(k, sizeof k, "%lld", (long long)json_integer_value(v));
            json_object_set_new(set, k, json_true());
        }
        json_decref(o);
    }
    store_stmt_done(st);
    return set;
}

/* A redacted row differs from its data_hash, as a ledger.redacted event of
 * the chain says it may: its data is exactly LEDGER_REDACTED. */
static bool redaction_ok(const json_t *redacted, const Event *ev)
{
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)ev->seq);
    return ev->data_len == strlen(LEDGER_REDACTED) &&
           !memcmp(ev->data, LEDGER_REDACTED, ev->data_len) && json_object_get(redacted, key);
}

int ledger_verify(Store *s, int64_t *ret_count, int64_t *ret_bad_seq, Err *err)
{
    int64_t expect = 1, count = 0, bad = 0;
    char prev[CORE_SHA256_HEX + 1];
    memset(prev, '0', CORE_SHA256_HEX);
    prev[CORE_SHA256_HEX] = '\0';
    int rc = store_begin_read(s, err); /* one consistent snapshot */
    if (rc < 0)
        return rc;
    StoreStmt *st;
    json_t *redacted = redacted_seqs(s, err);
    if ((rc = store_prepare(s, "SELECT " LEDGER_EVENT_COLUMNS " FROM events ORDER BY seq", &st,
                            err)) < 0) {
        json_decref(redacted);
        goto out;
    }
    while ((rc = store_step(st, err)) == STORE_ROW) {
        Event *ev;
        ledger_event_from_row(st, &ev, NULL);
        char dh[CORE_SHA256_HEX + 1], h[CORE_SHA256_HEX + 1];
        core_sha256_hex(ev->data, ev->data_len, dh);
        const char *malformed = ledger__row_malformed(ev);
        if (ev->seq != expect) {
            bad = expect < ev->seq ? expect : ev->seq;
            rc = err_set(err, ERR_CHAIN, "seq %lld: missing (the next row is seq %lld)",
                         (long long)bad, (long long)ev->seq);
        } else if (malformed) {
            bad = ev->seq;
            rc = err_set(err, ERR_CHAIN, "seq %lld: %s (altered)", (long long)ev->seq, malformed);
        } else if (strcmp(ev->prev_hash, prev)) {
            bad = ev->seq;
            rc = err_set(err, ERR_CHAIN,
                         "seq %lld: prev_hash does not match the hash of seq %lld "
                         "(a row was altered, removed or reordered)",
                         (long long)ev->seq, (long long)ev->seq - 1);
        } else if (strcmp(dh, ev->data_hash) && !redaction_ok(redacted, ev)) {
            bad = ev->seq;
            rc = err_set(err, ERR_CHAIN, "seq %lld: data does not match data_hash (altered)",
                         (long long)ev->seq);
        } else if (ledger_event_chain_hash(ev, prev, h) < 0 || strcmp(h, ev->hash)) {
            bad = ev->seq;
            rc = err_set(err, ERR_CHAIN, "seq %lld: hash does not match the row (altered)",
                         (long long)ev->seq);
        }
        memcpy(prev, ev->hash, sizeof prev);
        ledger_event_free(ev);
        if (rc < 0)
            break;
        expect++;
        count++;
    }
    store_stmt_done(st);
    json_decref(redacted);
    if (rc < 0)
        goto out;
    int64_t head;
    char head_hash[CORE_SHA256_HEX + 1];
    if ((rc = ledger_head(s, &head, head_hash, err)) < 0)
        goto out;
    if (head != count) {
        bad = count + 1 <= head ? count + 1 : head;
        rc = err_set(err, ERR_CHAIN,
                     "seq %lld: missing (the chain head says %lld events, the log has %lld)",
                     (long long)bad, (long long)head, (long long)count);
    } else if (strcmp(head_hash, prev)) {
        bad = head;
        rc = err_set(err, ERR_CHAIN, "seq %lld: hash differs from the recorded chain head",
                     (long long)head);
    }
    if (rc == 0)
        *ret_count = count;
out:
    if (rc < 0 && ret_bad_seq)
        *ret_bad_seq = bad;
    store_rollback(s);
    return rc;
}

int ledger_lease_acquire(Store *s, const char *name, const char *holder, int ttl_ms, Err *err)
{
    int64_t now = core_time_now_ms();
    int rc = store_begin_write(s, err);
    if (rc < 0)
        return rc;
    StoreStmt *st;
    if ((rc = store_prepare(s,
                            "INSERT INTO leases(name, holder, expires_ms) VALUES (?1, ?2, ?3)"
                            " ON CONFLICT(name) DO UPDATE SET holder = ?2, expires_ms = ?3"
                            " WHERE leases.holder = ?2 OR leases.expires_ms <= ?4",
                            &st, err)) < 0)
        goto fail;
    store_bind_text(st, 1, name, strlen(name));
    store_bind_text(st, 2, holder, strlen(holder));
    store_bind_int(st, 3, now + ttl_ms);
    store_bind_int(st, 4, now);
    if ((rc = store_stmt_exec(st, err)) < 0)
        goto fail;
    int held = store_changes(s) > 0;
    if ((rc = store_commit(s, err)) < 0)
        goto fail;
    return held;
fail:
    store_rollback(s);
    return rc;
}

int ledger_lease_release(Store *s, const char *name, const char *holder, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(s, "DELETE FROM leases WHERE name = ?1 AND holder = ?2", &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, name, strlen(name));
    store_bind_text(st, 2, holder, strlen(holder));
    return store_stmt_exec(st, err);
}

int ledger_redact(Ledger *l, Store *rd, const int64_t *seqs, size_t n, const char *reason,
                  const char *subject, int64_t *ret_seq, Err *err)
{
    if (n == 0 || n > LEDGER_REDACT_MAX)
        return err_set(err, ERR_INVAL, "redaction: 1 to %d events, not %zu", LEDGER_REDACT_MAX, n);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, json_integer(seqs[i]));
    json_t *d = json_pack("{s:o, s:s}", "seqs", list, "reason", reason);
    if (subject)
        json_object_set_new(d, "subject", json_string(subject));
    Event *ev = NULL;
    LedgerAppendResult r = { 0 };
    int rc = ledger_event_new("ledger.redacted", "operator", NULL, d, NULL, ledger_limits(l), &ev,
                              err);
    json_decref(d);
    if (rc == 0)
        rc = ledger_append(l, &ev, 1, &r, err);
    if (rc < 0)
        return rc;
    if (ret_seq)
        *ret_seq = r.seq;
    /* the rows themselves: the chain above already says which may differ */
    if ((rc = store_begin_write(rd, err)) < 0)
        return rc;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = store_execf(rd, err,
                         "UPDATE events SET data = ?2 WHERE seq = ?1 AND type NOT LIKE 'ledger.%'",
                         "is", seqs[i], LEDGER_REDACTED);
    if (rc < 0) {
        store_rollback(rd);
        return rc;
    }
    return store_commit(rd, err);
}
