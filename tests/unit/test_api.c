/* Unit tests of API tokens (created as events, checked by hash, revoked)
 * and of the dashboard's sessions built on them. */
#include <criterion/criterion.h>
#include <string.h>

#include "api/api_int.h"
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

/* ---- dashboard sessions (session.c) ---- */

Test(tokens, sessions_live_with_their_token)
{
    char tok[API_TOKEN_LEN + 1], tid[CORE_ULID_LEN + 1];
    Err e = { 0 };
    cr_assert_eq(api_token_create(led, "browser", tok, tid, &e), 0, "%s", e.msg);
    cr_assert_eq(api_token_live(rd, tid, &e), 0);
    ApiServer srv = { 0 };
    srv.sessions = api__sessions_new();
    char sid[API_SESSION_HEX + 1], csrf[API_CSRF_HEX + 1];
    api__session_create(&srv, tid, sid, csrf);
    cr_assert_eq(strlen(sid), API_SESSION_HEX);
    cr_assert_eq(strlen(csrf), API_CSRF_HEX);
    cr_assert_str_neq(sid, csrf);
    char got_tid[32], got_csrf[API_CSRF_HEX + 1];
    int64_t exp = 0;
    cr_assert(api__session_check(&srv, rd, sid, got_tid, got_csrf, &exp));
    cr_assert_str_eq(got_tid, tid);
    cr_assert_str_eq(got_csrf, csrf);
    cr_assert_gt(exp, core_time_now_ms() + (API_SESSION_TTL_S - 60) * 1000LL);
    /* one changed digit, upper case, short, empty, NULL: no session */
    char bad[API_SESSION_HEX + 1];
    memcpy(bad, sid, sizeof bad);
    bad[5] = bad[5] == '0' ? '1' : '0';
    cr_assert_not(api__session_check(&srv, rd, bad, got_tid, got_csrf, NULL));
    memcpy(bad, sid, sizeof bad);
    for (char *p = bad; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    cr_assert_not(api__session_check(&srv, rd, strcmp(bad, sid) ? bad : "x", got_tid, got_csrf,
                                     NULL));
    cr_assert_not(api__session_check(&srv, rd, "abc", got_tid, got_csrf, NULL));
    cr_assert_not(api__session_check(&srv, rd, "", got_tid, got_csrf, NULL));
    cr_assert_not(api__session_check(&srv, rd, NULL, got_tid, got_csrf, NULL));
    /* a second session is another id and another CSRF token */
    char sid2[API_SESSION_HEX + 1], csrf2[API_CSRF_HEX + 1];
    api__session_create(&srv, tid, sid2, csrf2);
    cr_assert_str_neq(sid, sid2);
    cr_assert_str_neq(csrf, csrf2);
    /* logout ends one session only */
    api__session_end(&srv, sid);
    cr_assert_not(api__session_check(&srv, rd, sid, got_tid, got_csrf, NULL));
    cr_assert(api__session_check(&srv, rd, sid2, got_tid, got_csrf, NULL));
    /* revoking the token ends its sessions */
    cr_assert_eq(api_token_revoke(led, rd, tid, &e), 0, "%s", e.msg);
    cr_assert_eq(api_token_live(rd, tid, &e), ERR_AUTH);
    cr_assert_not(api__session_check(&srv, rd, sid2, got_tid, got_csrf, NULL));
    api__sessions_free(srv.sessions);
}

Test(tokens, sessions_are_bounded_the_oldest_ends)
{
    char tok[API_TOKEN_LEN + 1], tid[CORE_ULID_LEN + 1];
    Err e = { 0 };
    cr_assert_eq(api_token_create(led, "many", tok, tid, &e), 0, "%s", e.msg);
    ApiServer srv = { 0 };
    srv.sessions = api__sessions_new();
    static char sids[API_SESSIONS_MAX + 1][API_SESSION_HEX + 1];
    char csrf[API_CSRF_HEX + 1], got_tid[32], got_csrf[API_CSRF_HEX + 1];
    for (int i = 0; i <= API_SESSIONS_MAX; i++) {
        api__session_create(&srv, tid, sids[i], csrf);
        /* created_ms orders them: keep each in its own millisecond */
        int64_t t = core_time_now_ms();
        while (core_time_now_ms() == t)
            ;
    }
    cr_assert_not(api__session_check(&srv, rd, sids[0], got_tid, got_csrf, NULL),
                  "the oldest session outlived the bound");
    for (int i = 1; i <= API_SESSIONS_MAX; i++)
        cr_assert(api__session_check(&srv, rd, sids[i], got_tid, got_csrf, NULL), "session %d", i);
    api__sessions_free(srv.sessions);
}

Test(tokens, login_form_fields)
{
    char out[16];
    const char *b = "a=1&token=bur%5Fx+y%21&csrf=";
    cr_assert(api__form_field(b, strlen(b), "token", out, sizeof out));
    cr_assert_str_eq(out, "bur_x y!");
    cr_assert(api__form_field(b, strlen(b), "csrf", out, sizeof out));
    cr_assert_str_eq(out, "");
    cr_assert_not(api__form_field(b, strlen(b), "tok", out, sizeof out));
    cr_assert_not(api__form_field(b, strlen(b), "b", out, sizeof out));
    /* the length bounds the body: no NUL is needed, none is read past */
    cr_assert_not(api__form_field(b, 9, "token", out, sizeof out));
    cr_assert(api__form_field(b, 10, "token", out, sizeof out));
    cr_assert_str_eq(out, "");
    /* malformed escapes, a NUL, too long: refused */
    cr_assert_not(api__form_field("token=%4", 8, "token", out, sizeof out));
    cr_assert_not(api__form_field("token=%zz", 9, "token", out, sizeof out));
    cr_assert_not(api__form_field("token=%00", 9, "token", out, sizeof out));
    cr_assert_not(api__form_field("token=0123456789abcdef", 22, "token", out, sizeof out));
    cr_assert(api__form_field("token=0123456789abcde", 21, "token", out, sizeof out));
}
