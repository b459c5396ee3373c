/* API tokens as events plus a projection. The projection applies
 * operator.token.created / .revoked; the check hashes the presented token,
 * finds it by hash and compares the hashes in constant time. */
#include "api/tokens.h"

#include <stdio.h>
#include <string.h>

#include "core/crypto.h"
#include "ledger/projection.h"

static const char *const tables[] = { "api_tokens", NULL };

static int apply(Store *tx, const Event *ev, Err *err)
{
    bool created = !strcmp(ev->type, "operator.token.created");
    if (!created && strcmp(ev->type, "operator.token.revoked"))
        return 0;
    json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
    const char *id = json_string_value(json_object_get(d, "token_id"));
    const char *name = json_string_value(json_object_get(d, "name"));
    const char *hash = json_string_value(json_object_get(d, "token_sha256"));
    int rc = 0;
    StoreStmt *st;
    if (!id || (created && (!name || !hash))) {
        /* validated when appended; an older malformed event is skipped */
        json_decref(d);
        return 0;
    }
    if (created) {
        rc = store_prepare(tx,
                           "INSERT OR IGNORE INTO api_tokens(id, name, token_hash, created_at)"
                           " VALUES (?1, ?2, ?3, ?4)",
                           &st, err);
        if (rc == 0) {
            store_bind_text(st, 1, id, strlen(id));
            store_bind_text(st, 2, name, strlen(name));
            store_bind_text(st, 3, hash, strlen(hash));
            store_bind_text(st, 4, ev->received_at, CORE_TIME_LEN);
        }
    } else {
        rc = store_prepare(tx,
                           "UPDATE api_tokens SET revoked_at = ?2"
                           " WHERE id = ?1 AND revoked_at IS NULL",
                           &st, err);
        if (rc == 0) {
            store_bind_text(st, 1, id, strlen(id));
            store_bind_text(st, 2, ev->received_at, CORE_TIME_LEN);
        }
    }
    if (rc == 0)
        rc = store_stmt_exec(st, err);
    json_decref(d);
    return rc;
}

static const Projection tokens = {
    .name = "tokens",
    .version = 1,
    .tables = tables,
    .apply = apply,
};

void api_projections_register(void)
{
    ledger_projection_register(&tokens);
}

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > API_TOKEN_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

int api_token_create(Ledger *l, const char *name, char *ret_token, char *ret_id, Err *err)
{
    if (!name_ok(name))
        return err_set(err, ERR_INVAL, "a token name must be 1-%d printable characters",
                       API_TOKEN_NAME_MAX);
    uint8_t raw[24];
    core_random_bytes(raw, sizeof raw);
    char token[API_TOKEN_LEN + 1], id[CORE_ULID_LEN + 1], hash[CORE_SHA256_HEX + 1];
    memcpy(token, API_TOKEN_PREFIX, 4);
    core_hex_encode(raw, sizeof raw, token + 4);
    core_sha256_hex(token, API_TOKEN_LEN, hash);
    core_ulid_new(id);
    json_t *data = json_pack("{s:s, s:s, s:s}", "token_id", id, "name", name, "token_sha256", hash);
    Event *ev = NULL;
    int rc = ledger_event_new("operator.token.created", "cli", NULL, data, NULL,
                              ledger_limits(l), &ev, err);
    json_decref(data);
    if (rc == 0)
        rc = ledger_append(l, &ev, 1, NULL, err);
    if (rc == 0) {
        memcpy(ret_token, token, sizeof token);
        memcpy(ret_id, id, sizeof id);
    }
    return rc;
}

int api_token_revoke(Ledger *l, Store *rd, const char *id, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(rd, "SELECT 1 FROM api_tokens WHERE id = ?1 AND revoked_at IS NULL",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, id, strlen(id));
    rc = store_step(st, err);
    store_stmt_done(st);
    if (rc < 0)
        return rc;
    if (rc == STORE_DONE)
        return err_set(err, ERR_NOTFOUND, "no live token with id %s", id);
    json_t *data = json_pack("{s:s}", "token_id", id);
    Event *ev = NULL;
    rc = ledger_event_new("operator.token.revoked", "cli", NULL, data, NULL, ledger_limits(l),
                          &ev, err);
    json_decref(data);
    return rc < 0 ? rc : ledger_append(l, &ev, 1, NULL, err);
}

int api_token_list(Store *rd, int (*fn)(void *ctx, const ApiTokenInfo *t), void *ctx, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT id, name, created_at, revoked_at FROM api_tokens ORDER BY id",
                           &st, err);
    if (rc < 0)
        return rc;
    while ((rc = store_step(st, err)) == STORE_ROW) {
        ApiTokenInfo t = { store_col_text(st, 0, NULL), store_col_text(st, 1, NULL),
                           store_col_text(st, 2, NULL), store_col_text(st, 3, NULL) };
        if ((rc = fn(ctx, &t)) != 0)
            break;
    }
    store_stmt_done(st);
    return rc < 0 ? rc : 0;
}

int api_token_check(Store *rd, const char *token, size_t len, char *ret_id, Err *err)
{
    if (len != API_TOKEN_LEN || memcmp(token, API_TOKEN_PREFIX, 4))
        return err_set(err, ERR_AUTH, "not a Bureau API token");
    char hash[CORE_SHA256_HEX + 1];
    core_sha256_hex(token, len, hash);
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT id, token_hash FROM api_tokens"
                           " WHERE token_hash = ?1 AND revoked_at IS NULL",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, hash, CORE_SHA256_HEX);
    rc = store_step(st, err);
    bool ok = false;
    if (rc == STORE_ROW) {
        size_t hl;
        const char *stored = store_col_text(st, 1, &hl);
        ok = stored && hl == CORE_SHA256_HEX && core_ct_equal(stored, hash, CORE_SHA256_HEX);
        if (ok && ret_id)
            snprintf(ret_id, CORE_ULID_LEN + 1, "%s", store_col_text(st, 0, NULL));
    }
    store_stmt_done(st);
    if (rc < 0)
        return rc;
    return ok ? 0 : err_set(err, ERR_AUTH, "unknown or revoked token");
}

int api_token_live(Store *rd, const char *id, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(rd, "SELECT 1 FROM api_tokens WHERE id = ?1 AND revoked_at IS NULL",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, id, strlen(id));
    rc = store_step(st, err);
    store_stmt_done(st);
    if (rc < 0)
        return rc;
    return rc == STORE_ROW ? 0 : err_set(err, ERR_AUTH, "the token was revoked");
}
