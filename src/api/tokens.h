/* API tokens. A token is shown once, when it is created; the ledger keeps
 * only its SHA-256 (operator.token.created), and the "tokens" projection
 * keeps the table that requests are checked against. */
#ifndef BUREAU_API_TOKENS_H
#define BUREAU_API_TOKENS_H

#include <stdbool.h>

#include "ledger/ledger.h"

#define API_TOKEN_PREFIX "bur_"
#define API_TOKEN_LEN (4 + 48) /* "bur_" + 48 hex digits (192 bits) */
#define API_TOKEN_NAME_MAX 64

/* Registers the "tokens" projection (before ledger_open). Idempotent. */
void api_projections_register(void);

/* Creates a token named name (1-64 printable characters) and appends
 * operator.token.created. Writes the token (API_TOKEN_LEN + 1 bytes) and its
 * id (a ULID). */
int api_token_create(Ledger *l, const char *name, char *ret_token, char *ret_id, Err *err);

/* Appends operator.token.revoked. ERR_NOTFOUND when no live token has id. */
int api_token_revoke(Ledger *l, Store *rd, const char *id, Err *err);

typedef struct ApiTokenInfo {
    const char *id, *name, *created_at, *revoked_at; /* revoked_at NULL when live */
} ApiTokenInfo;

int api_token_list(Store *rd, int (*fn)(void *ctx, const ApiTokenInfo *t), void *ctx, Err *err);

/* Checks a presented token: 0 when it is live (its id written to ret_id,
 * CORE_ULID_LEN + 1 bytes, may be NULL), ERR_AUTH otherwise. */
int api_token_check(Store *rd, const char *token, size_t len, char *ret_id, Err *err);

/* 0 when the token with this id is live, ERR_AUTH when it is unknown or
 * revoked. */
int api_token_live(Store *rd, const char *id, Err *err);

#endif
