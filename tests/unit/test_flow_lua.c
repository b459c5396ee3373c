/* Unit tests of src/flow/lua.c: the sandbox's walls, its limits, error
 * positions, JSON conversions both ways, templates, and isolation between
 * evaluations. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/json.h"
#include "flow/flow_lua.h"

static FlowLua *sandbox(size_t mem_max, long instr_max)
{
    FlowLuaLimits lim = { mem_max, instr_max };
    FlowLua *L = NULL;
    Err e = { 0 };
    cr_assert_eq(flow_lua_new(&lim, &L, &e), 0, "%s", e.msg);
    return L;
}

static json_t *J(const char *text)
{
    json_t *v = NULL;
    Err e = { 0 };
    cr_assert_eq(core_json_parse(text, strlen(text), &v, &e), 0, "%s: %s", text, e.msg);
    return v;
}

/* The canonical text of v (freed by the caller); v is released. */
static char *canon(json_t *v)
{
    Buf b;
    buf_init(&b, 0);
    cr_assert_eq(core_json_canonical(v, &b), 0);
    json_decref(v);
    return buf_steal(&b);
}

/* Evaluates expr with env (JSON text or NULL) and compares the canonical
 * text of the result with want. */
static void eval_is(FlowLua *L, const char *expr, const char *env, const char *want)
{
    json_t *envj = env ? J(env) : NULL;
    json_t *r = NULL;
    Err e = { 0 };
    int rc = flow_lua_eval(L, expr, "t", envj, &r, &e);
    json_decref(envj);
    cr_assert_eq(rc, 0, "%s: %s", expr, e.msg);
    char *got = canon(r);
    cr_assert_str_eq(got, want, "%s", expr);
    free(got);
}

static void run_is(FlowLua *L, const char *src, const char *want)
{
    json_t *r = NULL;
    Err e = { 0 };
    int rc = flow_lua_run(L, src, strlen(src), "s", NULL, &r, &e);
    cr_assert_eq(rc, 0, "%s: %s", src, e.msg);
    char *got = canon(r);
    cr_assert_str_eq(got, want, "%s", src);
    free(got);
}

/* Runs src, expects code, and returns the message in e. */
static void run_fails(FlowLua *L, const char *src, int code, Err *e)
{
    json_t *r = NULL;
    err_clear(e);
    int rc = flow_lua_run(L, src, strlen(src), "s", NULL, &r, e);
    cr_assert_eq(rc, code, "%s: rc %d, %s", src, rc, e->msg);
    cr_assert_null(r);
    cr_assert_eq(e->code, code);
}

/* Whether the environment's metatable can be neither read nor replaced. */
static bool getmetatable_is_protected(FlowLua *L, const char *env)
{
    json_t *envj = J(env), *r = NULL;
    Err e = { 0 };
    int rc = flow_lua_eval(L, "getmetatable(_G) == false", "t", envj, &r, &e);
    bool hidden = rc == 0 && json_is_true(r);
    json_decref(r);
    r = NULL;
    rc = flow_lua_eval(L, "setmetatable(_G, {})", "t", envj, &r, &e);
    json_decref(r);
    json_decref(envj);
    return hidden && rc == ERR_SCRIPT;
}

static void eval_fails(FlowLua *L, const char *expr, int code, const char *want_in_msg)
{
    json_t *r = NULL;
    Err e = { 0 };
    int rc = flow_lua_eval(L, expr, "t", NULL, &r, &e);
    cr_assert_eq(rc, code, "%s: rc %d, %s", expr, rc, e.msg);
    cr_assert_null(r);
    cr_assert(strstr(e.msg, want_in_msg), "%s: message '%s' lacks '%s'", expr, e.msg,
              want_in_msg);
}

/* ---- the walls -------------------------------------------------------- */

Test(flow_lua, escapes_are_absent)
{
    FlowLua *L = sandbox(0, 0);
    static const char *const absent[] = {
        "io", "os", "require", "package", "load", "loadstring", "dofile", "loadfile",
        "debug", "collectgarbage", "print", "coroutine", "string.dump", "math.random",
        "math.randomseed", "('x').dump", "warn",
    };
    for (size_t i = 0; i < sizeof absent / sizeof *absent; i++) {
        char expr[64];
        snprintf(expr, sizeof expr, "%s == nil", absent[i]);
        eval_is(L, expr, NULL, "true");
    }
    /* The string metatable (a way to the real string table) is hidden. */
    eval_is(L, "getmetatable('')", NULL, "false");
    eval_is(L, "getmetatable(_ENV)", NULL, "false");
    /* The safe library is there. */
    eval_is(L, "string.upper('a') .. ('b'):upper() .. table.concat({1, 2}, ',')", NULL,
            "\"AB1,2\"");
    eval_is(L, "math.floor(2.5) + math.max(1, 3) + utf8.len('héé')", NULL, "8");
    eval_is(L, "select('#', 1, 2) + tonumber('4') + #tostring(12)", NULL, "8");
    eval_is(L, "type(pcall) == 'function' and type(ipairs) == 'function' and _VERSION", NULL,
            "\"Lua 5.4\"");
    flow_lua_free(L);
}

Test(flow_lua, finalizers_are_refused)
{
    FlowLua *L = sandbox(0, 0);
    Err e;
    run_fails(L, "setmetatable({}, {__gc = function() end})", ERR_SCRIPT, &e);
    cr_assert(strstr(e.msg, "__gc"), "%s", e.msg);
    flow_lua_free(L);
}

Test(flow_lua, globals_do_not_outlive_an_evaluation)
{
    FlowLua *L = sandbox(0, 0);
    run_is(L, "x = 42; _G.y = 1; return x + y", "43");
    eval_is(L, "x == nil and y == nil", NULL, "true");
    /* Same source text (a cached chunk) with a different environment. */
    json_t *env = J("{\"x\": 7}"), *r = NULL;
    Err e = { 0 };
    cr_assert_eq(flow_lua_run(L, "x = (x or 0) + 1; return x", 26, "s", env, &r, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(json_integer_value(r), 8);
    json_decref(r);
    cr_assert_eq(flow_lua_run(L, "x = (x or 0) + 1; return x", 26, "s", env, &r, &e), 0);
    cr_assert_eq(json_integer_value(r), 8);
    json_decref(r);
    /* The caller's JSON is not changed by a script that changes its copy. */
    cr_assert_eq(flow_lua_run(L, "x = 100", 7, "s", env, &r, &e), 0);
    json_decref(r);
    cr_assert_eq(json_integer_value(json_object_get(env, "x")), 7);
    json_decref(env);
    flow_lua_free(L);
}

Test(flow_lua, library_tables_cannot_be_tampered_with)
{
    FlowLua *L = sandbox(0, 0);
    Err e;
    static const char *const attempts[] = {
        "string.upper = nil",
        "string.upper = function() return 'pwned' end",
        "math.pi = 3",
        "rawset(string, 'upper', function() return 'pwned' end)",
        "setmetatable(string, {})",
        "getmetatable('').__index.upper = nil",
        "table.insert(string, 1)",
        "table.insert = nil",
        "setmetatable(_ENV, nil)",
        "getmetatable(_ENV).__index.string = {}",
    };
    for (size_t i = 0; i < sizeof attempts / sizeof *attempts; i++) {
        run_fails(L, attempts[i], ERR_SCRIPT, &e);
        cr_assert(strncmp(e.msg, "s:1: ", 5) == 0, "%s -> %s", attempts[i], e.msg);
    }
    /* pcall hides nothing: the tables are the same afterwards. */
    run_is(L, "pcall(rawset, string, 'upper', 1); return string.upper('a')", "\"A\"");
    /* A script may shadow a library for itself only. */
    run_is(L, "string = {upper = function() return 'mine' end}; return string.upper('a')",
           "\"mine\"");
    eval_is(L, "string.upper('a') .. ('b'):upper() .. math.pi .. type(table.insert)", NULL,
            "\"AB3.1415926535898function\"");
    /* Iteration works, without handing out the real table. */
    run_is(L, "local n = 0 for k, v in pairs(math) do n = n + 1 end return n > 20", "true");
    run_is(L, "local _, t = pairs(string) return t == string", "true");
    flow_lua_free(L);
}

/* ---- limits ------------------------------------------------------------ */

Test(flow_lua, budget_stops_an_endless_loop_and_the_state_survives)
{
    FlowLua *L = sandbox(0, 100000);
    Err e;
    run_fails(L, "local n = 0\nwhile true do\n  n = n + 1\nend", ERR_SCRIPT, &e);
    cr_assert(strstr(e.msg, "budget"), "%s", e.msg);
    cr_assert(strstr(e.msg, "instruction budget of 100000 exceeded"), "%s", e.msg);
    cr_assert(strncmp(e.msg, "s:", 2) == 0, "%s", e.msg);
    eval_is(L, "1 + 1", NULL, "2");

    /* pcall and xpcall cannot swallow it. */
    run_fails(L, "while true do pcall(function() while true do end end) end", ERR_SCRIPT, &e);
    cr_assert(strstr(e.msg, "budget"), "%s", e.msg);
    run_fails(L,
              "local function spin() while true do end end\n"
              "while true do xpcall(spin, function() while true do end end) end",
              ERR_SCRIPT, &e);
    cr_assert(strstr(e.msg, "budget"), "%s", e.msg);
    eval_fails(L, "(function() while true do end end)()", ERR_SCRIPT, "budget");
    /* Ordinary errors are still theirs to catch. */
    run_is(L, "return select(2, xpcall(error, function(m) return 'handled: ' .. m end, 'x'))",
           "\"handled: x\"");
    run_is(L, "return select(2, pcall(error, 'y'))", "\"y\"");

    /* The budget is per evaluation: many small runs in a row pass. */
    for (int i = 0; i < 50; i++)
        run_is(L, "local s = 0 for i = 1, 1000 do s = s + i end return s", "500500");
    flow_lua_free(L);
}

Test(flow_lua, memory_cap_is_an_error_and_the_state_survives)
{
    FlowLua *L = sandbox(2u << 20, 100000000);
    Err e;
    for (int round = 0; round < 3; round++) {
        run_fails(L, "return string.rep('x', 100 * 1024 * 1024)", ERR_SCRIPT, &e);
        cr_assert(strstr(e.msg, "memory limit of 2097152 bytes exceeded"), "%s", e.msg);
        cr_assert(strncmp(e.msg, "s:1: ", 5) == 0, "%s", e.msg);

        run_fails(L, "local t = {}\nlocal i = 0\nwhile true do\n  i = i + 1\n  t[i] = {i}\nend",
                  ERR_SCRIPT, &e);
        cr_assert(strstr(e.msg, "memory limit"), "%s", e.msg);

        run_fails(L, "local s = 'x'\nwhile true do s = s .. s end", ERR_SCRIPT, &e);
        cr_assert(strstr(e.msg, "memory limit"), "%s", e.msg);

        /* pcall cannot swallow it either. */
        run_fails(L, "local ok = pcall(string.rep, 'x', 1e8) return ok", ERR_SCRIPT, &e);
        cr_assert(strstr(e.msg, "memory limit"), "%s", e.msg);

        /* And the state works afterwards, with room to spare. */
        run_is(L, "local t = {} for i = 1, 10000 do t[i] = i end return #t", "10000");
        eval_is(L, "string.rep('ab', 3)", NULL, "\"ababab\"");
    }

    /* An environment too large for the cap is refused the same way. */
    size_t big = 3u << 20;
    char *s = malloc(big + 1);
    memset(s, 'a', big);
    s[big] = '\0';
    json_t *env = json_pack("{s:s}", "blob", s), *r = NULL;
    free(s);
    cr_assert_eq(flow_lua_eval(L, "#blob", "t", env, &r, &e), ERR_SCRIPT);
    cr_assert(strstr(e.msg, "memory limit"), "%s", e.msg);
    json_decref(env);
    eval_is(L, "1", NULL, "1");
    flow_lua_free(L);
}

Test(flow_lua, a_cap_too_small_for_the_library_is_refused)
{
    FlowLuaLimits lim = { 4096, 0 };
    FlowLua *L = NULL;
    Err e = { 0 };
    cr_assert_eq(flow_lua_new(&lim, &L, &e), ERR_INVAL);
    cr_assert_null(L);
    cr_assert(strstr(e.msg, "too small"), "%s", e.msg);
    flow_lua_free(NULL);
}

/* ---- error positions ------------------------------------------------------ */

Test(flow_lua, syntax_errors_name_chunk_and_line)
{
    const char *src = "local a = 1\nlocal b = 2\nlocal c = = 3\nreturn c\n";
    int line = -1;
    Err e = { 0 };
    cr_assert_eq(flow_lua_check_script(src, strlen(src), "workflows/x.yaml:steps[2].do", &line,
                                       &e),
                 ERR_INVAL);
    cr_assert_eq(line, 3);
    cr_assert(strncmp(e.msg, "workflows/x.yaml:steps[2].do:3: ", 32) == 0, "%s", e.msg);

    FlowLua *L = sandbox(0, 0);
    json_t *r = NULL;
    cr_assert_eq(flow_lua_run(L, src, strlen(src), "x.yaml:s", NULL, &r, &e), ERR_INVAL);
    cr_assert(strncmp(e.msg, "x.yaml:s:3: ", 12) == 0, "%s", e.msg);
    flow_lua_free(L);

    line = -1;
    cr_assert_eq(flow_lua_check_script("return 1", 8, "c", &line, &e), 0);
    cr_assert_eq(flow_lua_check_script("while true do end", 17, "c", &line, &e), 0);

    cr_assert_eq(flow_lua_check_expr("event.amount >", "w.yaml:steps[2].if", &line, &e),
                 ERR_INVAL);
    cr_assert_eq(line, 1);
    cr_assert(strncmp(e.msg, "w.yaml:steps[2].if:1: ", 22) == 0, "%s", e.msg);
    /* Our closing parenthesis is on a line of its own; errors near it are
     * reported on the expression's last line. */
    cr_assert_eq(flow_lua_check_expr("a and\n(b or", "c", &line, &e), ERR_INVAL);
    cr_assert_eq(line, 2, "%s", e.msg);
    cr_assert_eq(flow_lua_check_expr("a > 1 -- a trailing comment", "c", &line, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(flow_lua_check_expr("1); os.exit(", "c", &line, &e), ERR_INVAL);
    /* Bytecode is never loaded. */
    cr_assert_eq(flow_lua_check_script("\x1bLua", 4, "c", &line, &e), ERR_INVAL);
}

Test(flow_lua, runtime_errors_name_chunk_and_line)
{
    FlowLua *L = sandbox(0, 0);
    Err e;
    run_fails(L, "local a = 1\n\nerror('boom')", ERR_SCRIPT, &e);
    cr_assert_str_eq(e.msg, "s:3: boom");
    run_fails(L, "local a = 1\nlocal b = nil\nreturn a + b", ERR_SCRIPT, &e);
    cr_assert(strncmp(e.msg, "s:3: attempt to perform arithmetic", 34) == 0, "%s", e.msg);
    run_fails(L, "\nerror({})", ERR_SCRIPT, &e);
    cr_assert_str_eq(e.msg, "s:2: (error object is a table value)");
    run_fails(L, "\n\nerror('plain', 0)", ERR_SCRIPT, &e);
    cr_assert_str_eq(e.msg, "s:3: plain");
    run_fails(L, "null.x = 1", ERR_SCRIPT, &e);
    cr_assert(strstr(e.msg, "index a null value"), "%s", e.msg);

    /* One compiled chunk serves several callers, each with its own name. */
    json_t *r = NULL;
    cr_assert_eq(flow_lua_eval(L, "nil + 1", "a.yaml:if", NULL, &r, &e), ERR_SCRIPT);
    cr_assert(strncmp(e.msg, "a.yaml:if:1: ", 13) == 0, "%s", e.msg);
    cr_assert_eq(flow_lua_eval(L, "nil + 1", "b.yaml:if", NULL, &r, &e), ERR_SCRIPT);
    cr_assert(strncmp(e.msg, "b.yaml:if:1: ", 13) == 0, "%s", e.msg);
    flow_lua_free(L);
}

/* ---- conversions ------------------------------------------------------------ */

Test(flow_lua, json_round_trips)
{
    FlowLua *L = sandbox(0, 0);
    static const char *const values[] = {
        "null", "true", "false", "0", "-7", "9007199254740993", "1.0", "-0.5", "1e+300",
        "\"\"", "\"h\\u00e9llo \\\"q\\\"\"", "[]", "{}", "[[]]", "{\"a\":{}}", "[null,null]",
        "{\"a\":{\"b\":[1,2.5,\"s\",true,null,{\"c\":[]}]},\"k y\":-1}",
    };
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        char env[512];
        snprintf(env, sizeof env, "{\"v\": %s}", values[i]);
        char *want = canon(J(values[i]));
        eval_is(L, "v", env, want);
        free(want);
    }
    eval_is(L, "v == null and null == null and type(null)", "{\"v\": null}", "\"userdata\"");
    eval_is(L, "#v .. ',' .. v[2]", "{\"v\": [5, 6]}", "\"2,6\"");
    eval_is(L, "math.type(i) .. ',' .. math.type(f)", "{\"i\": 3, \"f\": 3.0}",
            "\"integer,float\"");
    /* Integers stay integers; reals stay reals. */
    eval_is(L, "7 // 2", NULL, "3");
    eval_is(L, "7 / 2", NULL, "3.5");
    eval_is(L, "2^2", NULL, "4.0");
    eval_is(L, "nil", NULL, "null");
    /* Lua tables: 1..n is an array, string keys an object, empty {}. */
    eval_is(L, "{1, 'a', {x = 1}}", NULL, "[1,\"a\",{\"x\":1}]");
    eval_is(L, "{}", NULL, "{}");
    eval_is(L, "{[1] = 'a', [2] = 'b'}", NULL, "[\"a\",\"b\"]");
    eval_is(L, "array()", NULL, "[]");
    eval_is(L, "array({})", NULL, "[]");
    eval_is(L, "{a = array(), b = {}}", NULL, "{\"a\":[],\"b\":{}}");
    /* An array from JSON emptied by a script stays an array. */
    run_is(L, "local t = {items = array({1})} table.remove(t.items) return t",
           "{\"items\":[]}");
    json_t *env = J("{\"ev\": {\"tags\": [\"x\"], \"n\": 1}}"), *r = NULL;
    Err e = { 0 };
    const char *src = "table.remove(ev.tags)\nev.n = ev.n + 0.5\nev.new = {}\nreturn ev";
    cr_assert_eq(flow_lua_run(L, src, strlen(src), "s", env, &r, &e), 0, "%s", e.msg);
    char *got = canon(r);
    cr_assert_str_eq(got, "{\"n\":1.5,\"new\":{},\"tags\":[]}");
    free(got);
    json_decref(env);
    flow_lua_free(L);
}

Test(flow_lua, unconvertible_values_name_their_path)
{
    FlowLua *L = sandbox(0, 0);
    eval_fails(L, "{items = {1, 2, function() end}}", ERR_SCRIPT,
               "t:1: return value.items[3]: a function cannot become JSON");
    eval_fails(L, "0/0", ERR_SCRIPT, "return value: NaN cannot become JSON");
    eval_fails(L, "{a = {b = -math.huge}}", ERR_SCRIPT,
               "return value.a.b: an infinite number cannot become JSON");
    eval_fails(L, "{1, 2, x = 3}", ERR_SCRIPT, "both string and integer keys");
    eval_fails(L, "{[1] = 1, [3] = 3}", ERR_SCRIPT, "holes");
    eval_fails(L, "{[1.5] = 1}", ERR_SCRIPT, "float key");
    eval_fails(L, "{[true] = 1}", ERR_SCRIPT, "boolean as a key");
    eval_fails(L, "{['a b'] = {print = string.len}}", ERR_SCRIPT,
               "return value[\"a b\"].print: a function cannot become JSON");
    eval_fails(L, "'\\xff'", ERR_SCRIPT, "not valid UTF-8");
    eval_fails(L, "{v = pairs}", ERR_SCRIPT, "return value.v: a function");
    Err e;
    run_fails(L, "local t = {}\nt.t = t\nreturn t", ERR_SCRIPT, &e);
    cr_assert(strstr(e.msg, "nested deeper than 64 levels"), "%s", e.msg);
    flow_lua_free(L);
}

/* "[[[...1...]]]" with n brackets. */
static char *nested(int n)
{
    char *s = malloc((size_t)n * 2 + 2);
    memset(s, '[', (size_t)n);
    s[n] = '1';
    memset(s + n + 1, ']', (size_t)n);
    s[2 * n + 1] = '\0';
    return s;
}

Test(flow_lua, environment_keys_are_made_when_first_read)
{
    FlowLua *L = sandbox(0, 0);
    const char *env = "{\"event\": {\"data\": {\"n\": 3}}, \"steps\": {\"a\": {\"output\": 7}}}";
    eval_is(L, "event.data.n + steps.a.output", env, "10");
    /* assigned before it is read: the assignment wins, even nil */
    eval_is(L, "(function() event = nil return event == nil end)()", env, "true");
    eval_is(L, "(function() steps = 5 return steps end)()", env, "5");
    /* read, then cleared: stays cleared */
    eval_is(L, "(function() local x = event.data.n event = nil return {x, event == nil} end)()",
            env, "[3,true]");
    /* a script's changes stay in its evaluation */
    eval_is(L, "(function() event.data.n = 99 return event.data.n end)()", env, "99");
    eval_is(L, "event.data.n", env, "3");
    /* globals not in env still come from the base; _G is the table itself */
    eval_is(L, "type(string.upper) .. type(_G) .. tostring(_G.event.data.n)", env,
            "\"functiontable3\"");
    /* only what was read (or set) is in the table itself */
    eval_is(L, "(function() local before = rawget(_G, 'event') local _ = event"
               " return {before == nil, rawget(_G, 'event') ~= nil} end)()",
            env, "[true,true]");
    cr_assert_eq(getmetatable_is_protected(L, env), true);
    flow_lua_free(L);
}

Test(flow_lua, depth_is_limited_both_ways)
{
    FlowLua *L = sandbox(0, 0);
    char *ok = nested(FLOW_LUA_DEPTH_MAX), *deep = nested(FLOW_LUA_DEPTH_MAX + 1);
    char env[400];
    snprintf(env, sizeof env, "{\"v\": %s}", ok);
    eval_is(L, "v", env, ok);

    snprintf(env, sizeof env, "{\"v\": %s}", deep);
    json_t *envj = J(env), *r = NULL;
    Err e = { 0 };
    /* an environment key becomes Lua when read: untouched, it costs nothing */
    cr_assert_eq(flow_lua_eval(L, "1", "t", envj, &r, &e), 0, "%s", e.msg);
    json_decref(r);
    r = NULL;
    cr_assert_eq(flow_lua_eval(L, "v", "t", envj, &r, &e), ERR_SCRIPT);
    cr_assert(strstr(e.msg, "nested deeper than 64"), "%s", e.msg);
    cr_assert(strstr(e.msg, "v[1][1]"), "%s", e.msg);
    json_decref(envj);

    /* Lua -> JSON: 64 tables pass, 65 do not. */
    run_is(L, "local t = 1 for i = 1, 64 do t = {t} end return t", ok);
    run_fails(L, "local t = 1 for i = 1, 65 do t = {t} end return t", ERR_SCRIPT, &e);
    cr_assert(strstr(e.msg, "nested deeper than 64"), "%s", e.msg);
    free(ok);
    free(deep);
    flow_lua_free(L);
}

/* ---- predicates --------------------------------------------------------------- */

Test(flow_lua, test_uses_lua_truth)
{
    FlowLua *L = sandbox(0, 0);
    json_t *env = J("{\"event\": {\"data\": {\"amount\": 150, \"note\": null}}}");
    Err e = { 0 };
    bool t = false;
    cr_assert_eq(flow_lua_test(L, "event.data.amount > 100", "w:if", env, &t, &e), 0, "%s",
                 e.msg);
    cr_assert(t);
    cr_assert_eq(flow_lua_test(L, "event.data.amount > 200", "w:if", env, &t, &e), 0);
    cr_assert_not(t);
    cr_assert_eq(flow_lua_test(L, "event.data.missing", "w:if", env, &t, &e), 0);
    cr_assert_not(t);
    cr_assert_eq(flow_lua_test(L, "0", "w:if", env, &t, &e), 0);
    cr_assert(t);
    cr_assert_eq(flow_lua_test(L, "event.data.note == null", "w:if", env, &t, &e), 0);
    cr_assert(t);
    /* A predicate may return a function: only its truth matters. */
    cr_assert_eq(flow_lua_test(L, "print or pairs", "w:if", env, &t, &e), 0);
    cr_assert(t);
    t = true;
    cr_assert_eq(flow_lua_test(L, "event.x.y", "w:if", env, &t, &e), ERR_SCRIPT);
    cr_assert(strncmp(e.msg, "w:if:1: attempt to index a nil value", 36) == 0, "%s", e.msg);
    json_decref(env);
    flow_lua_free(L);
}

Test(flow_lua, many_distinct_chunks_pass_through_the_cache)
{
    FlowLua *L = sandbox(0, 0);
    for (int i = 0; i < 2500; i++) {
        char expr[32], want[32];
        snprintf(expr, sizeof expr, "n + %d", i);
        snprintf(want, sizeof want, "%d", i + 1);
        eval_is(L, expr, "{\"n\": 1}", want);
    }
    eval_is(L, "n + 5", "{\"n\": 2}", "7");
    flow_lua_free(L);
}

/* ---- templates ----------------------------------------------------------------- */

static void render_is(FlowLua *L, const char *tmpl, const char *env, const char *want)
{
    json_t *envj = J(env), *r = NULL;
    Err e = { 0 };
    int rc = flow_lua_render(L, tmpl, "r", envj, &r, &e);
    json_decref(envj);
    cr_assert_eq(rc, 0, "%s: %s", tmpl, e.msg);
    char *got = canon(r);
    cr_assert_str_eq(got, want, "%s", tmpl);
    free(got);
}

Test(flow_lua, render)
{
    FlowLua *L = sandbox(0, 0);
    const char *env = "{\"n\": 5, \"s\": \"hi\", \"t\": {\"b\": [1, 2], \"a\": null}, "
                      "\"f\": true, \"nul\": null, \"x\": 1.5}";
    /* One expression alone keeps its type. */
    render_is(L, "{{ n }}", env, "5");
    render_is(L, "  {{t}}\n", env, "{\"a\":null,\"b\":[1,2]}");
    render_is(L, "{{ f }}", env, "true");
    render_is(L, "{{ missing }}", env, "null");
    render_is(L, "{{ nul }}", env, "null");
    render_is(L, "{{ t.b }}", env, "[1,2]");
    /* Mixed text is text. */
    render_is(L, "Total: {{ n }} items, {{ missing }}!", env, "\"Total: 5 items, !\"");
    render_is(L, "{{ s }} {{ s:upper() }}", env, "\"hi HI\"");
    render_is(L, "[{{ x }}|{{ 2^2 }}|{{ 1e100 }}|{{ f }}|{{ nul }}]", env,
              "\"[1.5|4.0|1e+100|true|]\"");
    render_is(L, "t = {{ t }}", env, "\"t = {\\\"a\\\":null,\\\"b\\\":[1,2]}\"");
    render_is(L, "no template here", env, "\"no template here\"");
    render_is(L, "}} alone", env, "\"}} alone\"");

    /* Errors: unclosed, syntax, runtime; each with its line. */
    json_t *r = NULL;
    Err e = { 0 };
    cr_assert_eq(flow_lua_render(L, "a\nb {{ n", "r", NULL, &r, &e), ERR_INVAL);
    cr_assert_str_eq(e.msg, "r:2: '{{' is not closed by '}}'");
    cr_assert_eq(flow_lua_render(L, "a\n\n{{ n + }}", "r", NULL, &r, &e), ERR_INVAL);
    cr_assert(strncmp(e.msg, "r:3: ", 5) == 0, "%s", e.msg);
    cr_assert_eq(flow_lua_render(L, "a {{ 1 }}\n{{ nil .. 'x' }}", "r", NULL, &r, &e),
                 ERR_SCRIPT);
    cr_assert(strncmp(e.msg, "r:2: attempt to concatenate", 27) == 0, "%s", e.msg);
    cr_assert_eq(flow_lua_render(L, "x {{ pairs }}", "r", NULL, &r, &e), ERR_SCRIPT);
    cr_assert_null(r);

    int line = 0;
    cr_assert_eq(flow_lua_check_template("ok {{ a }}\n{{ b +* }}", "c", &line, &e), ERR_INVAL);
    cr_assert_eq(line, 2, "%s", e.msg);
    cr_assert_eq(flow_lua_check_template("x\n\n{{ a", "c", &line, &e), ERR_INVAL);
    cr_assert_eq(line, 3);
    cr_assert_eq(flow_lua_check_template("{{ a }} and {{ b.c }}", "c", &line, &e), 0);
    cr_assert(flow_lua_is_template("a {{ b"));
    cr_assert_not(flow_lua_is_template("a { { b }"));
    flow_lua_free(L);
}

Test(flow_lua, render_json_walks_values)
{
    FlowLua *L = sandbox(0, 0);
    json_t *env = J("{\"n\": 5, \"s\": \"hi\", \"o\": {\"k\": [true]}}");
    json_t *in = J("{\"a\": \"{{ n }}\", \"b\": [\"x {{ s }}\", 3, {\"c\": \"{{ o }}\"}], "
                   "\"k{{\": \"plain\", \"z\": null, \"r\": 2.5}");
    json_t *r = NULL;
    Err e = { 0 };
    cr_assert_eq(flow_lua_render_json(L, in, "w:input", env, &r, &e), 0, "%s", e.msg);
    char *got = canon(r);
    cr_assert_str_eq(got, "{\"a\":5,\"b\":[\"x hi\",3,{\"c\":{\"k\":[true]}}],\"k{{\":\"plain\","
                          "\"r\":2.5,\"z\":null}");
    free(got);
    char *orig = canon(json_incref(in));
    cr_assert(strstr(orig, "{{ n }}"), "the input is left as it was");
    free(orig);
    json_decref(in);

    in = J("[\"{{ n }}\", \"{{ nil + 1 }}\"]");
    r = NULL;
    cr_assert_eq(flow_lua_render_json(L, in, "w:input", env, &r, &e), ERR_SCRIPT);
    cr_assert_null(r);
    cr_assert(strncmp(e.msg, "w:input:1: attempt to perform arithmetic", 40) == 0, "%s", e.msg);
    json_decref(in);
    json_decref(env);
    flow_lua_free(L);
}
