/* The Lua 5.4 sandbox: workflow expressions (`where`, `if`, `concurrency`,
 * `{{ ... }}` in step inputs) and custom steps (`do: lua`).
 *
 * A sandbox has no io, os, require, load, loadstring, dofile, loadfile,
 * debug, collectgarbage, print or math.random: time and randomness reach a
 * script only through the task context it is given. Every evaluation runs
 * under an instruction budget and the state under a memory cap; a script
 * error, a blown budget or an exhausted cap is an error naming the chunk and
 * line, never a crash. One FlowLua is used by one thread at a time.
 * docs/internals/flow_lua.md describes the walls and their limits. */
#ifndef BUREAU_FLOW_LUA_H
#define BUREAU_FLOW_LUA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

#define FLOW_LUA_MEM_DEFAULT (16u << 20) /* bytes per state */
#define FLOW_LUA_INSTR_DEFAULT 1000000   /* VM instructions per evaluation */
#define FLOW_LUA_DEPTH_MAX 64            /* nesting of converted values */

typedef struct FlowLuaLimits {
    size_t mem_max;   /* 0: FLOW_LUA_MEM_DEFAULT */
    long instr_max;   /* 0: FLOW_LUA_INSTR_DEFAULT */
} FlowLuaLimits;

typedef struct FlowLua FlowLua;

/* lim may be NULL (defaults). ERR_INVAL when mem_max is too small to hold
 * the library. */
int flow_lua_new(const FlowLuaLimits *lim, FlowLua **ret, Err *err);
void flow_lua_free(FlowLua *L);

/* Syntax checks without running anything (validation). An expression is
 * checked as `return (EXPR)`. On error, err->msg is "CHUNK:LINE: message"
 * with LINE counted within src, and *ret_line (when not NULL) is that line
 * (1-based; 0 when unknown). */
int flow_lua_check_expr(const char *expr, const char *chunk, int *ret_line, Err *err);
int flow_lua_check_script(const char *src, size_t len, const char *chunk, int *ret_line,
                          Err *err);
/* Checks every `{{ expr }}` inside a template string (also an unclosed
 * `{{`). */
int flow_lua_check_template(const char *tmpl, const char *chunk, int *ret_line, Err *err);
/* Whether s holds a `{{`. */
bool flow_lua_is_template(const char *s);

/* The globals of one evaluation: every key of env (a JSON object, may be
 * NULL) becomes a global holding the converted value. JSON null becomes the
 * global `null` (a unique sentinel), arrays and objects become tables that
 * convert back to the same JSON shape (an empty array stays an array). The
 * safe standard library (base without the functions named above, string,
 * table, math without random, utf8) is visible too, read-only, plus
 * array([t]), which tags t (or a new table) so that it converts to a JSON
 * array even when empty. Globals a script sets do not outlive its
 * evaluation. Compiled chunks are cached per state by source text.
 *
 * Lua -> JSON: nil is null (at the top; a table cannot hold nil), integers
 * stay integers and floats become reals, a table with keys exactly 1..n (or
 * tagged as an array) is an array, a table with only string keys an object,
 * an empty untagged table {}. NaN, infinities, functions, other userdata,
 * mixed or sparse keys and nesting beyond FLOW_LUA_DEPTH_MAX are ERR_SCRIPT
 * naming the path ("return value.items[3]: a function cannot become JSON").
 *
 * Errors of every evaluation: ERR_INVAL for a syntax error, ERR_SCRIPT for
 * a runtime error, a blown budget or an exhausted memory cap, with err->msg
 * "CHUNK:LINE: message" ("CHUNK: message" where no line applies). The state
 * stays usable after any of them. */

/* Evaluates EXPR; *ret is a new reference (JSON null for nil). */
int flow_lua_eval(FlowLua *L, const char *expr, const char *chunk, const json_t *env,
                  json_t **ret, Err *err);
/* Evaluates EXPR for its truth (Lua's: only nil and false are false). */
int flow_lua_test(FlowLua *L, const char *expr, const char *chunk, const json_t *env,
                  bool *ret, Err *err);
/* Runs a script; its return value (nil: JSON null) is *ret, a new reference. */
int flow_lua_run(FlowLua *L, const char *src, size_t len, const char *chunk, const json_t *env,
                 json_t **ret, Err *err);
/* Renders a template. A string that is exactly one `{{ expr }}` (spaces
 * around allowed) yields the expression's JSON value; otherwise every
 * `{{ expr }}` is replaced by its value as text (strings as they are,
 * numbers and booleans as Lua prints them, nil and null as "", tables as
 * canonical JSON) and the result is a JSON string. An expression ends at the
 * first `}}`; there is no escape for a literal `{{`. The expressions of one
 * call share one environment; each has its own instruction budget. */
int flow_lua_render(FlowLua *L, const char *tmpl, const char *chunk, const json_t *env,
                    json_t **ret, Err *err);
/* Renders every string inside in (recursively; keys are left alone) into
 * a new value; in is not changed. One environment serves the whole call and
 * is built only if some string holds a `{{`. */
int flow_lua_render_json(FlowLua *L, const json_t *in, const char *chunk, const json_t *env,
                         json_t **ret, Err *err);

#endif
