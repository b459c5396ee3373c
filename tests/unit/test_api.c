/* Unit tests of API tokens: created as events, checked by hash, revoked. */
#include <criterion/criterion.h>
#include <string.h>

#include "api/tokens.h"
#include "helpers.h"
#include "ledger/projection.h"

static char *dir;
static Ledger *led;
static Store *rd;

static void setup(void)
{
    dir = test_tmpdir();
    Config cfg;
    core_config_defaults(&cfg);
    cfg.durability_normal = true;
    log_set_level(LOG_ERROR);
    api_projections_register();
    Err e = { 0 };
    cr_assert_eq(ledger_db_prepare(dir, &cfg, true, &e), 0, "%s", e.msg);
    LedgerOptions o = { .config = &cfg };
    cr_assert_eq(ledger_open(dir, &o, &led, &e), 0, "%s", e.msg);
    cr_assert_eq(ledger_reader_open(led, &rd, &e), 0);
}

static void teardown(void)
{
    store_close(rd);
    ledger_close(led);
    test_rmdir(dir);
}

TestSuite(tokens, .init = setup, .fini = teardown);

static int count(void *ctx, const ApiTokenInfo *t)
{
    (*(int *)ctx)++;
    return 0;
}

Test(tokens, create_check_revoke)
{
    char tok[API_TOKEN_LEN + 1], id[CORE_ULID_LEN + 1], got[CORE_ULID_LEN + 1];
    Err e = { 0 };
    cr_assert_eq(api_token_create(led, "zapier", tok, id, &e), 0, "%s", e.msg);
    cr_assert_eq(strlen(tok), API_TOKEN_LEN);
    cr_assert_eq(strncmp(tok, "bur_", 4), 0);
    cr_assert_eq(api_token_check(rd, tok, strlen(tok), got, &e), 0, "%s", e.msg);
    cr_assert_str_eq(got, id);
    /* one changed character, a prefix, garbage: all refused */
    char bad[API_TOKEN_LEN + 1];
    memcpy(bad, tok, sizeof bad);
    bad[10] = bad[10] == 'a' ? 'b' : 'a';
    cr_assert_eq(api_token_check(rd, bad, strlen(bad), NULL, &e), ERR_AUTH);
    cr_assert_eq(api_token_check(rd, tok, 20, NULL, &e), ERR_AUTH);
    cr_assert_eq(api_token_check(rd, "Bearer", 6, NULL, &e), ERR_AUTH);
    /* the ledger holds the hash, never the token */
    StoreStmt *st;
    cr_assert_eq(store_prepare(rd, "SELECT data FROM events WHERE type = 'operator.token.created'",
                               &st, &e), 0);
    cr_assert_eq(store_step(st, &e), STORE_ROW);
    const char *data = store_col_text(st, 0, NULL);
    cr_assert_null(strstr(data, tok + 4));
    char hash[CORE_SHA256_HEX + 1];
    core_sha256_hex(tok, strlen(tok), hash);
    cr_assert(strstr(data, hash), "%s", data);
    store_stmt_done(st);
    cr_assert_eq(api_token_revoke(led, rd, id, &e), 0, "%s", e.msg);
    cr_assert_eq(api_token_check(rd, tok, strlen(tok), NULL, &e), ERR_AUTH);
    cr_assert_eq(api_token_revoke(led, rd, id, &e), ERR_NOTFOUND);
    cr_assert_eq(api_token_revoke(led, rd, "01ARZ3NDEKTSV4RRFFQ69G5FAV", &e), ERR_NOTFOUND);
    int n = 0;
    cr_assert_eq(api_token_list(rd, count, &n, &e), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(api_token_create(led, "", tok, id, &e), ERR_INVAL);
}

Test(tokens, the_table_is_a_projection)
{
    char tok[API_TOKEN_LEN + 1], id[CORE_ULID_LEN + 1];
    Err e = { 0 };
    cr_assert_eq(api_token_create(led, "a", tok, id, &e), 0);
    cr_assert_eq(api_token_create(led, "b", tok, id, &e), 0);
    cr_assert_eq(api_token_revoke(led, rd, id, &e), 0);
    ReplayCheck res[8];
    size_t n = 0;
    cr_assert_eq(ledger_replay_check(rd, "tokens", res, 8, &n, &e), 0, "%s", e.msg);
    cr_assert_eq(n, 1);
    cr_assert(res[0].equal);
    cr_assert_eq(store_exec(rd, "DELETE FROM api_tokens", &e), 0);
    cr_assert_eq(api_token_check(rd, tok, strlen(tok), NULL, &e), ERR_AUTH);
    cr_assert_eq(ledger_replay(rd, "tokens", true, NULL, &e), 0);
    int count_rows = 0;
    cr_assert_eq(api_token_list(rd, count, &count_rows, &e), 0);
    cr_assert_eq(count_rows, 2);
}
