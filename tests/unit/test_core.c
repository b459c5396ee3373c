/* Unit tests of src/core: Err, Buf, time, ULIDs, crypto, JSON, config. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/ids.h"
#include "core/json.h"
#include "helpers.h"

Test(err, set_returns_code_and_formats)
{
    Err e = { 0 };
    cr_assert_eq(err_set(&e, ERR_INVAL, "field '%s': required", "type"), ERR_INVAL);
    cr_assert_str_eq(e.msg, "field 'type': required");
    cr_assert_eq(e.code, ERR_INVAL);
    err_wrap(&e, "line %d", 2);
    cr_assert_str_eq(e.msg, "line 2: field 'type': required");
    cr_assert_eq(err_set(NULL, ERR_IO, "x"), ERR_IO);
    cr_assert_str_eq(err_name(ERR_CHAIN), "ERR_CHAIN");
    cr_assert_str_eq(err_str(ERR_TOOBIG), "too large");
    cr_assert_str_eq(err_name(-999), "ERR_UNKNOWN");
}

Test(buf, grows_and_stays_terminated)
{
    Buf b;
    buf_init(&b, 0);
    cr_assert_str_eq(buf_cstr(&b), "");
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(buf_printf(&b, "%d,", i % 10), 0);
    cr_assert_eq(b.len, 2000);
    cr_assert_eq(b.ptr[b.len], '\0');
    buf_clear(&b);
    cr_assert_eq(b.len, 0);
    cr_assert_str_eq(buf_cstr(&b), "");
    buf_done(&b);
}

Test(buf, refuses_past_its_maximum_and_keeps_content)
{
    Buf b;
    buf_init(&b, 8);
    cr_assert_eq(buf_puts(&b, "abcdef"), 0);
    cr_assert_eq(buf_puts(&b, "ghi"), ERR_TOOBIG);
    cr_assert_str_eq(b.ptr, "abcdef");
    cr_assert_eq(buf_printf(&b, "%s", "xyz"), ERR_TOOBIG);
    cr_assert_eq(buf_puts(&b, "gh"), 0);
    cr_assert_str_eq(b.ptr, "abcdefgh");
    char *s = buf_steal(&b);
    cr_assert_str_eq(s, "abcdefgh");
    cr_assert_eq(b.len, 0);
    free(s);
    buf_done(&b);
}

Test(time, formats_utc_with_milliseconds)
{
    char out[CORE_TIME_LEN + 1];
    core_time_format(0, out);
    cr_assert_str_eq(out, "1970-01-01T00:00:00.000Z");
    core_time_format(1795608000123LL, out);
    cr_assert_str_eq(out, "2026-11-25T12:00:00.123Z");
    core_time_format(951782400000LL, out); /* leap day 2000 */
    cr_assert_str_eq(out, "2000-02-29T00:00:00.000Z");
}

Test(time, parses_offsets_and_fractions)
{
    int64_t ms;
    cr_assert_eq(core_time_parse("2026-11-25T12:00:00Z", 20, &ms), 0);
    cr_assert_eq(ms, 1795608000000LL);
    const char *s = "2026-11-25T13:30:00.123456+01:30";
    cr_assert_eq(core_time_parse(s, strlen(s), &ms), 0);
    cr_assert_eq(ms, 1795608000123LL);
    s = "2026-11-25 12:00:00.5z";
    cr_assert_eq(core_time_parse(s, strlen(s), &ms), 0);
    cr_assert_eq(ms, 1795608000500LL);
    char out[CORE_TIME_LEN + 1];
    core_time_format(ms, out);
    int64_t back;
    cr_assert_eq(core_time_parse(out, strlen(out), &back), 0);
    cr_assert_eq(back, ms);
}

Test(time, refuses_malformed)
{
    const char *bad[] = { "2026-11-25",           "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z",
                          "2025-02-29T00:00:00Z", "2026-11-25T24:00:00Z", "2026-11-25T12:00:00",
                          "2026-11-25T12:00:00.Z", "2026-11-25T12:00:00+0100",
                          "2026-11-25T12:00:00Zx", "20261125T120000Z" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms;
        cr_assert_eq(core_time_parse(bad[i], strlen(bad[i]), &ms), ERR_INVAL, "%s", bad[i]);
    }
}

Test(ulid, valid_time_ordered_and_monotonic)
{
    char prev[CORE_ULID_LEN + 1] = "", cur[CORE_ULID_LEN + 1];
    int64_t now = core_time_now_ms();
    for (int i = 0; i < 10000; i++) {
        core_ulid_new(cur);
        cr_assert(core_ulid_valid(cur, strlen(cur)), "%s", cur);
        cr_assert(strcmp(prev, cur) < 0, "%s !< %s", prev, cur);
        memcpy(prev, cur, sizeof cur);
    }
    int64_t t = core_ulid_time(cur);
    cr_assert(t >= now && t <= core_time_now_ms());
}

Test(ulid, same_millisecond_increments)
{
    char a[CORE_ULID_LEN + 1], b[CORE_ULID_LEN + 1];
    int64_t ms = 4102444800000LL; /* a future ms no other test uses */
    core_ulid_at(ms, a);
    core_ulid_at(ms, b);
    cr_assert(strcmp(a, b) < 0);
    cr_assert_eq(strncmp(a, b, 10), 0, "time parts differ: %s %s", a, b);
    cr_assert_eq(core_ulid_time(a), ms);
    /* A clock that goes backwards still yields increasing ids. */
    core_ulid_at(ms - 5000, a);
    cr_assert(strcmp(b, a) < 0);
    cr_assert(!core_ulid_valid("01ARZ3NDEKTSV4RRFFQ69G5FA", 25));
    cr_assert(!core_ulid_valid("81ARZ3NDEKTSV4RRFFQ69G5FAV", 26));
    cr_assert(!core_ulid_valid("01ARZ3NDEKTSV4RRFFQ69G5FAU", 26)); /* U is not Crockford */
    cr_assert(core_ulid_valid("01ARZ3NDEKTSV4RRFFQ69G5FAV", 26));
}

Test(trace, format)
{
    char t[CORE_TRACE_LEN + 1];
    core_trace_new(t);
    cr_assert(core_trace_valid(t, strlen(t)));
    cr_assert(!core_trace_valid("00000000000000000000000000000000", 32));
    cr_assert(!core_trace_valid("ABCDEF00000000000000000000000000", 32));
}

Test(crypto, sha256_and_hmac_vectors)
{
    char hex[CORE_SHA256_HEX + 1];
    core_sha256_hex("abc", 3, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    core_sha256_hex("", 0, hex);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* RFC 4231 test case 2 */
    uint8_t mac[CORE_SHA256_LEN];
    const char *data = "what do ya want for nothing?";
    core_hmac_sha256("Jefe", 4, data, strlen(data), mac);
    core_hex_encode(mac, sizeof mac, hex);
    cr_assert_str_eq(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* incremental equals one-shot */
    CoreSha256 *h = core_sha256_new();
    core_sha256_update(h, "a", 1);
    core_sha256_update(h, "bc", 2);
    core_sha256_final(h, mac);
    core_sha256_free(h);
    core_hex_encode(mac, sizeof mac, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

Test(crypto, hex_round_trip_and_ct_equal)
{
    uint8_t in[4] = { 0x00, 0xab, 0xff, 0x10 }, out[4];
    char hex[9];
    core_hex_encode(in, 4, hex);
    cr_assert_str_eq(hex, "00abff10");
    cr_assert_eq(core_hex_decode("00ABff10", 8, out, 4), 0);
    cr_assert_eq(memcmp(in, out, 4), 0);
    cr_assert_eq(core_hex_decode("00abff1", 7, out, 4), ERR_INVAL);
    cr_assert_eq(core_hex_decode("00abffzz", 8, out, 4), ERR_INVAL);
    cr_assert(core_ct_equal("abcd", "abcd", 4));
    cr_assert(!core_ct_equal("abcd", "abce", 4));
}

Test(json, canonical_sorts_keys_and_is_compact)
{
    json_t *v;
    const char *text = "{ \"b\": [1, 2.5, {\"z\":1, \"a\":null}], \"a\": \"\xc3\xa9\", \"c\": true }";
    cr_assert_eq(core_json_parse(text, strlen(text), &v, NULL), 0);
    Buf b;
    buf_init(&b, 0);
    cr_assert_eq(core_json_canonical(v, &b), 0);
    cr_assert_str_eq(b.ptr, "{\"a\":\"\xc3\xa9\",\"b\":[1,2.5,{\"a\":null,\"z\":1}],\"c\":true}");
    buf_done(&b);
    json_decref(v);
}

Test(json, canonical_reals_and_escapes)
{
    json_t *v;
    const char *text = "{\"r\":[0.1, 1.0, 1e300, -2.5e-7, 100.0], \"s\":\"a\\\"b\\\\c\\n\\u0001\\u00e9/\"}";
    cr_assert_eq(core_json_parse(text, strlen(text), &v, NULL), 0);
    Buf b;
    buf_init(&b, 0);
    cr_assert_eq(core_json_canonical(v, &b), 0);
    cr_assert_str_eq(b.ptr, "{\"r\":[0.1,1.0,1e+300,-2.5e-07,100.0],\"s\":\"a\\\"b\\\\c\\n\\u0001\xc3\xa9/\"}");
    /* the canonical text parses back to an equal value */
    json_t *back;
    cr_assert_eq(core_json_parse(b.ptr, b.len, &back, NULL), 0);
    cr_assert(json_equal(v, back));
    json_decref(back);
    buf_done(&b);
    json_decref(v);
}

Test(json, errors_name_the_position)
{
    json_t *v;
    Err e = { 0 };
    const char *text = "{\"a\": 1,\n \"b\": }";
    cr_assert_eq(core_json_parse(text, strlen(text), &v, &e), ERR_INVAL);
    cr_assert(strstr(e.msg, "line 2"), "%s", e.msg);
    cr_assert(strstr(e.msg, "byte"), "%s", e.msg);
    const char *dup = "{\"a\":1,\"a\":2}";
    cr_assert_eq(core_json_parse(dup, strlen(dup), &v, &e), ERR_INVAL);
    cr_assert(strstr(e.msg, "duplicate"), "%s", e.msg);
}

Test(json, canonical_respects_the_limit)
{
    json_t *v = json_pack("{s:s}", "k", "0123456789012345678901234567890123456789");
    Buf b;
    buf_init(&b, 16);
    cr_assert_eq(core_json_canonical(v, &b), ERR_TOOBIG);
    buf_done(&b);
    json_decref(v);
}

static char *write_yaml(const char *dir, const char *text)
{
    char *path = malloc(strlen(dir) + 20);
    sprintf(path, "%s/bureau.yaml", dir);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static char *member_text(const CoreJsonMember *m)
{
    return strndup(m->val, m->val_len);
}

Test(json, members_of_an_object_without_a_tree)
{
    const char *t = "{\"a\":{\"x\":[1,{\"y\":\"}\"}]},\"i\":-42,\"r\":2.5,\"s\":\"q\\\"\\\\\\n\\u00e9"
                    "\\ud83d\\ude00\",\"t\":true,\"z\":null}";
    CoreJsonMember m[8];
    int n = core_json_members(t, strlen(t), m, 8);
    cr_assert_eq(n, 6);
    char *a = member_text(core_json_member(m, n, "a"));
    cr_assert_str_eq(a, "{\"x\":[1,{\"y\":\"}\"}]}"); /* a brace inside a string */
    free(a);
    int64_t v = 0;
    cr_assert(core_json_member_int(core_json_member(m, n, "i"), &v));
    cr_assert_eq(v, -42);
    cr_assert_not(core_json_member_int(core_json_member(m, n, "r"), &v)); /* a real */
    cr_assert_not(core_json_member_int(core_json_member(m, n, "s"), &v));
    char *s = core_json_member_string(core_json_member(m, n, "s"));
    cr_assert_str_eq(s, "q\"\\\n\xc3\xa9\xf0\x9f\x98\x80");
    free(s);
    cr_assert_null(core_json_member_string(core_json_member(m, n, "t")));
    cr_assert_null(core_json_member(m, n, "missing"));
    cr_assert_eq(core_json_members("{}", 2, m, 8), 0);
    cr_assert_eq(core_json_members(" { \"k\" : 1 } ", 13, m, 8), 1);
}

Test(json, members_refuse_what_is_not_one_object)
{
    static const char *const bad[] = {
        "",          "[]",           "{\"a\":1",        "{\"a\":1,}",     "{\"a\" 1}",
        "{a:1}",     "{\"a\":tru}",  "{\"a\":\"\\x\"}", "{\"a\":[1}",    "{\"a\":1} x",
        "{\"a\":\"\\u0000\"}",       "{\"a\":\"\\u12\"}",                 "{\"a\":\"\x01\"}",
    };
    CoreJsonMember m[4];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_eq(core_json_members(bad[i], strlen(bad[i]), m, 4), -1, "%s", bad[i]);
    /* more members than room */
    cr_assert_eq(core_json_members("{\"a\":1,\"b\":2,\"c\":3}", 19, m, 2), -1);
    /* any depth: nested values are walked without recursion */
    size_t levels = 100000, len = 0;
    char *deep = malloc(2 * levels + 16);
    len += (size_t)sprintf(deep, "{\"a\":");
    memset(deep + len, '[', levels);
    len += levels;
    memset(deep + len, ']', levels);
    len += levels;
    deep[len++] = '}';
    cr_assert_eq(core_json_members(deep, len, m, 4), 1);
    cr_assert_eq(m[0].val_len, 2 * levels);
    deep[len - 2] = '}'; /* one bracket short */
    cr_assert_eq(core_json_members(deep, len - 1, m, 4), -1);
    free(deep);
    /* a lone surrogate reads as no string */
    const char *lone = "{\"a\":\"\\ud83d\"}";
    cr_assert_eq(core_json_members(lone, strlen(lone), m, 4), 1);
    cr_assert_null(core_json_member_string(&m[0]));
}

Test(config, defaults_and_commented_default_file)
{
    char *dir = test_tmpdir();
    Config c;
    core_config_defaults(&c);
    cr_assert_eq(c.busy_timeout_ms, 10000);
    cr_assert_eq(c.max_data_bytes, 1024 * 1024);
    cr_assert(!c.durability_normal);
    char *path = write_yaml(dir, core_config_default_yaml);
    Err e = { 0 };
    cr_assert_eq(core_config_load(path, &c, &e), 0, "%s", e.msg);
    cr_assert_eq(c.max_data_bytes, 1024 * 1024);
    free(path);
    /* a missing file means defaults */
    cr_assert_eq(core_config_load("/nonexistent/bureau.yaml", &c, &e), 0);
    test_rmdir(dir);
}

Test(config, values_are_applied)
{
    char *dir = test_tmpdir();
    char *path = write_yaml(dir, "store:\n  durability: normal\n  busy_timeout_ms: 250\n"
                                 "ledger:\n  max_data_bytes: 4096\nlog:\n  level: warn\n");
    Config c;
    core_config_defaults(&c);
    Err e = { 0 };
    cr_assert_eq(core_config_load(path, &c, &e), 0, "%s", e.msg);
    cr_assert(c.durability_normal);
    cr_assert_eq(c.busy_timeout_ms, 250);
    cr_assert_eq(c.max_data_bytes, 4096);
    cr_assert_eq(c.log_level, LOG_WARN);
    free(path);
    test_rmdir(dir);
}

Test(config, models_section)
{
    char *dir = test_tmpdir();
    char *path = write_yaml(dir,
        "models:\n"
        "  providers:\n"
        "    - {name: big, kind: openai, base_url: \"http://127.0.0.1:9/v1\", model: m1,\n"
        "       api_key_env: KEY, price: {input_per_mtok: 1.5, output_per_mtok: 2}}\n"
        "    - {name: claude, kind: anthropic, model: c1}\n"
        "  routes:\n"
        "    draft: {candidates: [big, local], max_latency_ms: 5000, max_cost_usd: 0.05,\n"
        "            max_output_tokens: 400, defer: batch, on_budget: park, cache: false}\n"
        "  budgets: {daily_usd: 1, monthly_usd: 20.5, per_customer: {daily_usd: 0.2},\n"
        "            workflows: {lead-intake: {daily_usd: 0.5}}}\n"
        "  batch: {window: \"01:30-04:00\", timezone: Europe/Paris}\n"
        "  local: {hash_bits: 16, rules: {lead: [quote, \"price list\"], billing: [invoice]}}\n");
    Config c;
    core_config_defaults(&c);
    Err e = { 0 };
    cr_assert_eq(core_config_load(path, &c, &e), 0, "%s", e.msg);
    cr_assert_eq(c.n_model_providers, 2);
    cr_assert_str_eq(c.model_providers[0].kind, "openai");
    cr_assert_float_eq(c.model_providers[0].price_in_per_mtok, 1.5, 1e-9);
    cr_assert_eq(c.model_providers[0].timeout_ms, 30000);
    cr_assert_str_eq(c.model_providers[1].base_url, "https://api.anthropic.com/v1");
    cr_assert_eq(c.n_model_routes, 1);
    const ModelRouteConfig *r = &c.model_routes[0];
    cr_assert_str_eq(r->name, "draft");
    cr_assert_eq(r->n_candidates, 2);
    cr_assert_str_eq(r->candidates[1], "local");
    cr_assert(r->defer_batch && r->on_budget_park && r->no_cache);
    cr_assert_eq(r->max_output_tokens, 400);
    cr_assert_float_eq(c.budget_monthly_usd, 20.5, 1e-9);
    cr_assert_float_eq(c.budget_customer_daily_usd, 0.2, 1e-9);
    cr_assert_eq(c.n_workflow_budgets, 1);
    cr_assert_str_eq(c.workflow_budgets[0].name, "lead-intake");
    cr_assert_str_eq(c.batch_window, "01:30-04:00");
    cr_assert_eq(c.local_hash_bits, 16);
    cr_assert_eq(c.n_model_rules, 3);
    cr_assert_str_eq(c.model_rules[1].keyword, "price list");
    free(path);
    struct {
        const char *yaml, *want;
    } bad[] = {
        { "models:\n  routes:\n    draft: {candidates: [nope]}\n",
          "bureau.yaml:3:26: models.routes.draft.candidates: 'nope' is not a provider" },
        { "models:\n  providers:\n    - {name: x, kind: gpt}\n",
          "models.providers[0].kind: must be one of" },
        { "models:\n  providers:\n    - {name: x, kind: openai}\n", "'model' is required" },
        { "models:\n  budgets: {daily_usd: -1}\n", "bureau.yaml:2:24: 'models.budgets.daily_usd' must be a number" },
        { "models:\n  batch: {window: \"25:00-01:00\"}\n", "models.batch.window" },
        { "models:\n  routes:\n    draft: {candidates: [local], speed: 3}\n",
          "models.routes.draft: unknown key 'speed'" },
        { "models:\n  providers:\n    - {name: a, kind: local}\n    - {name: a, kind: local}\n",
          "a provider named 'a' exists" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        path = write_yaml(dir, bad[i].yaml);
        core_config_defaults(&c);
        cr_assert_eq(core_config_load(path, &c, &e), ERR_CONFIG, "case %zu", i);
        cr_assert(strstr(e.msg, bad[i].want), "case %zu: %s", i, e.msg);
        free(path);
    }
    test_rmdir(dir);
}

Test(config, errors_name_file_line_and_column)
{
    char *dir = test_tmpdir();
    struct {
        const char *yaml, *want;
    } cases[] = {
        { "store:\n  durabilty: full\n", "bureau.yaml:2:3: unknown key 'store.durabilty'" },
        { "store:\n  durability: fast\n", "bureau.yaml:2:15: 'store.durability' must be one of" },
        { "ledger:\n  max_data_bytes: 12\n", "must be an integer in 1024..67108864" },
        { "nope:\n  a: 1\n", "bureau.yaml:1:1: unknown section 'nope'" },
        { "store: [\n", "bureau.yaml:" },
        { "- a\n- b\n", "top level must be a mapping" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = write_yaml(dir, cases[i].yaml);
        Config c;
        core_config_defaults(&c);
        Err e = { 0 };
        cr_assert_eq(core_config_load(path, &c, &e), ERR_CONFIG, "case %zu", i);
        cr_assert(strstr(e.msg, cases[i].want), "case %zu: %s", i, e.msg);
        free(path);
    }
    test_rmdir(dir);
}
