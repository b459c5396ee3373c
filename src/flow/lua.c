/* The Lua sandbox (flow_lua.h): one lua_State per FlowLua, holding a
 * read-only library, a cache of compiled chunks and nothing else between
 * evaluations. Every call that may raise a Lua error (any allocation) runs
 * under lua_pcall; the code outside it uses only the API functions that
 * never raise, so a panic cannot happen.
 *
 * Chunks are compiled under the name "=?" so that one compiled chunk serves
 * every caller with the same source text; error messages are rewritten to
 * the caller's chunk name ("?:3: x" -> "workflows/a.yaml:steps[2].if:3: x"). */
#include "flow/flow_lua.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/json.h"

#define CACHE_MAX 1024  /* compiled chunks kept per state; the cache is emptied when full */
#define STACK_SLOTS 16  /* Lua stack slots a public call needs besides conversions */

enum { KIND_EXPR = 1, KIND_SCRIPT = 2 };

typedef struct CacheEntry {
    uint64_t hash;  /* 0: empty slot */
    char *src;      /* the source as given (not wrapped), owned */
    size_t len;
    int kind;
    int ref;        /* in the cache table */
} CacheEntry;

struct FlowLua {
    lua_State *L;
    size_t mem_used;
    size_t mem_max;
    long instr_max;
    /* Set while a chunk runs, so that the allocator may look for the line. */
    bool running;
    /* Why the current evaluation is being aborted; a script's pcall cannot
     * catch either (sb_pcall rethrows). */
    bool budget_hit;
    bool mem_hit;
    int abort_line;  /* line (within the chunk) where the budget or the memory ran out */
    const void *array_mt;  /* identity of the metatable tagging JSON arrays */
    const void *null_ud;   /* identity of the `null` sentinel */
    CacheEntry *cache;     /* open addressing, cache_cap slots (a power of two) */
    size_t cache_cap;
    size_t cache_n;
    uint64_t calls;        /* public calls ended: an environment is good for one */
};

/* Registry keys (their addresses). */
static const char k_env_mt = 0, k_array_mt = 0, k_null = 0, k_cache = 0, k_frozen = 0,
                  k_base = 0;

static FlowLua *sandbox_of(lua_State *L)
{
    return *(FlowLua **)lua_getextraspace(L);
}

/* ---- memory and instruction limits ---------------------------------- */

/* The line of the innermost running Lua function (0 if none). Uses only
 * lua_getstack and lua_getinfo("l"), which neither allocate nor raise, so it
 * is safe inside the allocator. */
static int running_line(lua_State *L)
{
    lua_Debug ar;
    for (int level = 0; level < 32 && lua_getstack(L, level, &ar); level++) {
        if (lua_getinfo(L, "l", &ar) && ar.currentline > 0)
            return ar.currentline;
    }
    return 0;
}

static void *sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    FlowLua *F = ud;
    if (!ptr)
        osize = 0; /* osize is a type tag for new blocks */
    if (nsize == 0) {
        free(ptr);
        F->mem_used -= osize;
        return NULL;
    }
    if (nsize > osize && F->mem_used - osize + nsize > F->mem_max) {
        if (F->running && !F->mem_hit)
            F->abort_line = running_line(F->L);
        F->mem_hit = true;
        return NULL; /* Lua raises a memory error */
    }
    void *p = realloc(ptr, nsize);
    if (!p)
        return NULL;
    F->mem_used = F->mem_used - osize + nsize;
    return p;
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    FlowLua *F = sandbox_of(L);
    if (!F->budget_hit) {
        F->budget_hit = true;
        F->abort_line = lua_getinfo(L, "l", ar) ? ar->currentline : 0;
        /* From now on every instruction fails, so that no __close handler
         * or message handler gets another budget. */
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    }
    lua_pushfstring(L, "?:%d: instruction budget of %I exceeded", F->abort_line,
                    (lua_Integer)F->instr_max);
    lua_error(L);
}

static int sandbox_panic(lua_State *L)
{
    const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
    fprintf(stderr, "flow_lua: unprotected Lua error (a bug): %s\n", m);
    abort();
}

/* ---- replacements for base functions ---------------------------------- */

static bool aborting(FlowLua *F, int status)
{
    return F->budget_hit || F->mem_hit || status == LUA_ERRMEM;
}

/* pcall and xpcall that do not catch a blown budget or memory cap. */
static int sb_pcall(lua_State *L)
{
    luaL_checkany(L, 1);
    int status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    if (status != LUA_OK) {
        if (aborting(sandbox_of(L), status))
            return lua_error(L);
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushboolean(L, 1);
    lua_insert(L, 1);
    return lua_gettop(L);
}

/* The message handler xpcall installs: the script's handler, except when the
 * evaluation is being aborted. An error raised by the budget hook reaches
 * the handler before Lua turns hooks back on (luaD_hook restores allowhook
 * only when the hook returns), so a Lua handler would run unbudgeted. */
static int xpcall_handler(lua_State *L)
{
    if (aborting(sandbox_of(L), LUA_OK))
        return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int sb_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, xpcall_handler, 1);
    lua_replace(L, 2);
    lua_pushboolean(L, 1);   /* first result if no errors */
    lua_pushvalue(L, 1);     /* function */
    lua_rotate(L, 3, 2);     /* move them below the arguments */
    int status = lua_pcall(L, n - 2, LUA_MULTRET, 2);
    if (status != LUA_OK) {
        if (aborting(sandbox_of(L), status))
            return lua_error(L);
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;
    }
    return lua_gettop(L) - 2;
}

static bool is_frozen(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx))
        return false;
    bool frozen = lua_rawgetp(L, -1, &k_frozen) != LUA_TNIL;
    lua_pop(L, 2);
    return frozen;
}

/* rawset that refuses the read-only library tables. */
static int sb_rawset(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    luaL_checkany(L, 3);
    if (is_frozen(L, 1))
        return luaL_error(L, "attempt to modify a read-only library table");
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 1;
}

/* setmetatable without finalizers: a __gc metamethod would run outside any
 * evaluation (during a later collection). */
static int sb_setmetatable(lua_State *L)
{
    int t = lua_type(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (t == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "__gc metamethods are not allowed in the sandbox");
        lua_pop(L, 1);
    }
    lua_settop(L, 2);
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
        return luaL_error(L, "cannot change a protected metatable");
    lua_setmetatable(L, 1);
    return 1;
}

/* array([t]): tags t (or a new table) as a JSON array, so that it converts
 * to [] even when empty. */
static int sb_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_settop(L, 1);
        if (lua_getmetatable(L, 1)) {
            if (lua_topointer(L, -1) != sandbox_of(L)->array_mt)
                return luaL_error(L, "array(): the table already has a metatable");
            lua_pop(L, 1);
            return 1;
        }
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_array_mt);
    lua_setmetatable(L, 1);
    return 1;
}

static int null_tostring(lua_State *L)
{
    lua_pushliteral(L, "null");
    return 1;
}

static int frozen_newindex(lua_State *L)
{
    return luaL_error(L, "attempt to modify read-only table '%s'",
                      lua_tostring(L, lua_upvalueindex(1)));
}

/* __pairs of a read-only proxy: iterates the library table without handing
 * it out (pairs' second result is the proxy itself). */
static int frozen_next(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "__index");
    lua_pushvalue(L, 2);
    if (lua_next(L, -2))
        return 2;
    lua_pushnil(L);
    return 1;
}

static int frozen_pairs(lua_State *L)
{
    lua_pushcfunction(L, frozen_next);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* ---- the state ------------------------------------------------------------ */

static const char *const base_names[] = {
    "assert", "error", "getmetatable", "ipairs", "next", "pairs", "rawequal", "rawget",
    "rawlen", "select", "tonumber", "tostring", "type", "_VERSION",
};

static const luaL_Reg libs[] = {
    { "string", luaopen_string },
    { "table", luaopen_table },
    { "math", luaopen_math },
    { "utf8", luaopen_utf8 },
};

/* Builds the registry entries: the read-only base table behind every
 * evaluation's environment, the metatables and the chunk cache. */
static int setup(lua_State *L)
{
    FlowLua *F = lua_touserdata(L, 1);

    luaL_requiref(L, "_G", luaopen_base, 0);
    int g = lua_gettop(L);
    lua_createtable(L, 0, 24);
    int base = lua_gettop(L);
    for (size_t i = 0; i < sizeof base_names / sizeof *base_names; i++) {
        lua_getfield(L, g, base_names[i]);
        lua_setfield(L, base, base_names[i]);
    }
    static const luaL_Reg own[] = {
        { "pcall", sb_pcall },     { "xpcall", sb_xpcall }, { "rawset", sb_rawset },
        { "setmetatable", sb_setmetatable }, { "array", sb_array }, { NULL, NULL },
    };
    luaL_setfuncs(L, own, 0);

    /* The library tables, stripped, each behind a read-only proxy. */
    for (size_t i = 0; i < sizeof libs / sizeof *libs; i++) {
        luaL_requiref(L, libs[i].name, libs[i].func, 0);
        int lib = lua_gettop(L);
        if (strcmp(libs[i].name, "string") == 0) {
            lua_pushnil(L);
            lua_setfield(L, lib, "dump");
        } else if (strcmp(libs[i].name, "math") == 0) {
            lua_pushnil(L);
            lua_setfield(L, lib, "random");
            lua_pushnil(L);
            lua_setfield(L, lib, "randomseed");
        }
        lua_newtable(L); /* the proxy */
        lua_createtable(L, 0, 5);
        lua_pushvalue(L, lib);
        lua_setfield(L, -2, "__index");
        lua_pushstring(L, libs[i].name);
        lua_pushcclosure(L, frozen_newindex, 1);
        lua_setfield(L, -2, "__newindex");
        lua_pushcfunction(L, frozen_pairs);
        lua_setfield(L, -2, "__pairs");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
        lua_pushboolean(L, 1);
        lua_rawsetp(L, -2, &k_frozen);
        lua_setmetatable(L, -2);
        lua_setfield(L, base, libs[i].name);
        lua_settop(L, base);
    }

    /* Strings index the real string table: hide it from getmetatable(""). */
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_settop(L, base);

    /* null: a unique full userdata that prints as "null". */
    lua_newuserdatauv(L, 0, 0);
    lua_createtable(L, 0, 3);
    lua_pushliteral(L, "null");
    lua_setfield(L, -2, "__name");
    lua_pushcfunction(L, null_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    F->null_ud = lua_topointer(L, -1);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &k_null);
    lua_setfield(L, base, "null");

    /* The array tag, protected: scripts can neither read nor change it. */
    lua_createtable(L, 0, 1);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    F->array_mt = lua_topointer(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &k_array_mt);

    /* Environments read through to base and hide it. */
    lua_pushvalue(L, base);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &k_base);
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, base);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &k_env_mt);

    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &k_cache);
    return 0;
}

static void cache_clear(FlowLua *F)
{
    for (size_t i = 0; i < F->cache_cap; i++)
        free(F->cache[i].src);
    memset(F->cache, 0, F->cache_cap * sizeof *F->cache);
    F->cache_n = 0;
}

int flow_lua_new(const FlowLuaLimits *lim, FlowLua **ret, Err *err)
{
    FlowLua *F = xcalloc(1, sizeof *F);
    F->mem_max = lim && lim->mem_max ? lim->mem_max : FLOW_LUA_MEM_DEFAULT;
    F->instr_max = lim && lim->instr_max > 0 ? lim->instr_max : FLOW_LUA_INSTR_DEFAULT;
    F->cache_cap = 2 * CACHE_MAX;
    F->cache = xcalloc(F->cache_cap, sizeof *F->cache);
    F->L = lua_newstate(sandbox_alloc, F);
    if (!F->L) {
        int rc = err_set(err, ERR_INVAL, "lua: a memory limit of %zu bytes is too small",
                         F->mem_max);
        flow_lua_free(F);
        return rc;
    }
    *(FlowLua **)lua_getextraspace(F->L) = F;
    lua_atpanic(F->L, sandbox_panic);
    /* The default incremental collector: Lua 5.4.4's generational mode
     * mis-sets its target after a full collection, which follows every
     * exhausted cap here. */
    lua_pushcfunction(F->L, setup);
    lua_pushlightuserdata(F->L, F);
    int status = lua_pcall(F->L, 1, 0, 0);
    if (status != LUA_OK) {
        int rc = status == LUA_ERRMEM
                     ? err_set(err, ERR_INVAL, "lua: a memory limit of %zu bytes is too small",
                               F->mem_max)
                     : err_set(err, ERR_INTERNAL, "lua: setting up the sandbox: %s",
                               lua_type(F->L, -1) == LUA_TSTRING ? lua_tostring(F->L, -1) : "?");
        flow_lua_free(F);
        return rc;
    }
    *ret = F;
    return 0;
}

void flow_lua_free(FlowLua *F)
{
    if (!F)
        return;
    if (F->L)
        lua_close(F->L);
    if (F->cache)
        cache_clear(F);
    free(F->cache);
    free(F);
}

/* ---- error messages ------------------------------------------------------ */

/* Where an error happened: the caller's chunk name, the line of the chunk's
 * first line within the caller's text, and the number of lines the caller
 * wrote (an expression's closing parenthesis is ours: errors "near ')'" on
 * the line after the expression are reported on its last line). */
typedef struct Where {
    const char *chunk;
    int line0;
    int nlines;  /* 0: no clamp */
} Where;

static const char *chunk_name(const char *chunk)
{
    return chunk && *chunk ? chunk : "lua";
}

static int count_lines(const char *s, size_t len)
{
    int n = 1;
    for (size_t i = 0; i < len; i++)
        n += s[i] == '\n';
    return n;
}

/* Splits "?:N: rest" into N and rest; returns 0 when msg has no position. */
static int msg_line(const char *msg, const char **ret_rest)
{
    if (msg[0] != '?' || msg[1] != ':')
        return 0;
    const char *p = msg + 2;
    long n = 0;
    while (*p >= '0' && *p <= '9' && n < 100000000)
        n = n * 10 + (*p++ - '0');
    if (p == msg + 2 || *p != ':')
        return 0;
    p++;
    if (*p == ' ')
        p++;
    *ret_rest = p;
    return (int)n;
}

static int where_line(const Where *w, int line)
{
    if (line <= 0)
        return 0;
    if (w->nlines > 0 && line > w->nlines)
        line = w->nlines;
    return w->line0 + line - 1;
}

/* Sets err to "CHUNK:LINE: message" (or "CHUNK: message" when the line is
 * unknown) from a Lua message that may start with "?:N: ". */
static int where_err(const Where *w, int code, const char *msg, int *ret_line, Err *err)
{
    const char *rest = msg;
    int line = where_line(w, msg_line(msg, &rest));
    if (ret_line)
        *ret_line = line;
    if (line > 0)
        return err_set(err, code, "%s:%d: %s", chunk_name(w->chunk), line, rest);
    return err_set(err, code, "%s: %s", chunk_name(w->chunk), rest);
}

/* The message handler of every evaluation: gives a position to errors that
 * have none (error("x", 0), error({}), errors of C functions called by C). */
static int msgh(lua_State *L)
{
    const char *m = lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1) : NULL;
    const char *rest;
    if (m && msg_line(m, &rest) > 0)
        return 1;
    int line = 0;
    lua_Debug ar;
    for (int level = 1; !line && lua_getstack(L, level, &ar); level++) {
        if (lua_getinfo(L, "l", &ar) && ar.currentline > 0)
            line = ar.currentline;
    }
    if (m)
        lua_pushfstring(L, "?:%d: %s", line, m);
    else
        lua_pushfstring(L, "?:%d: (error object is a %s value)", line, luaL_typename(L, 1));
    return 1;
}

/* ---- paths, for conversion errors ----------------------------------------- */

typedef struct PathSeg {
    const char *key;  /* NULL: an index */
    size_t klen;
    long long idx;
} PathSeg;

typedef struct Path {
    const char *root;
    int n;
    PathSeg seg[FLOW_LUA_DEPTH_MAX + 2];
} Path;

static bool is_ident(const char *s, size_t len)
{
    if (len == 0 || len > 64 || !(s[0] == '_' || ((s[0] | 32) >= 'a' && (s[0] | 32) <= 'z')))
        return false;
    for (size_t i = 1; i < len; i++) {
        char c = s[i];
        if (!(c == '_' || (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z')))
            return false;
    }
    return true;
}

/* "root.a.b[3]['x y']", shortened in the middle when long. */
static void path_format(const Path *p, char *out, size_t size)
{
    Buf b;
    buf_init(&b, 0);
    buf_puts(&b, p->root);
    for (int i = 0; i < p->n; i++) {
        const PathSeg *s = &p->seg[i];
        if (!s->key)
            buf_printf(&b, "[%lld]", s->idx);
        else if (is_ident(s->key, s->klen))
            buf_printf(&b, "%s%.*s", b.len ? "." : "", (int)s->klen, s->key);
        else
            buf_printf(&b, "[\"%.*s\"]", (int)(s->klen > 40 ? 40 : s->klen), s->key);
    }
    const char *t = buf_cstr(&b);
    if (b.len < size) {
        snprintf(out, size, "%s", t);
    } else {
        size_t half = (size - 6) / 2;
        snprintf(out, size, "%.*s ... %s", (int)half, t, t + b.len - half);
    }
    buf_done(&b);
}

/* ---- JSON -> Lua (raises: run under lua_pcall) ----------------------------- */

static void push_json(lua_State *L, const json_t *v, Path *p, int depth);

static void depth_error(lua_State *L, Path *p, const char *what)
{
    char path[300];
    path_format(p, path, sizeof path);
    luaL_error(L, "%s: %s nested deeper than %d levels", path, what, FLOW_LUA_DEPTH_MAX);
}

static void push_json(lua_State *L, const json_t *v, Path *p, int depth)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (depth >= FLOW_LUA_DEPTH_MAX)
            depth_error(L, p, "JSON");
        luaL_checkstack(L, 4, "JSON nested too deeply");
        lua_createtable(L, 0, (int)json_object_size(v));
        const char *k;
        json_t *child;
        json_object_foreach((json_t *)v, k, child) {
            size_t klen = json_object_iter_key_len(json_object_key_to_iter(k));
            p->seg[p->n++] = (PathSeg){ k, klen, 0 };
            lua_pushlstring(L, k, klen);
            push_json(L, child, p, depth + 1);
            lua_rawset(L, -3);
            p->n--;
        }
        return;
    }
    case JSON_ARRAY: {
        if (depth >= FLOW_LUA_DEPTH_MAX)
            depth_error(L, p, "JSON");
        luaL_checkstack(L, 4, "JSON nested too deeply");
        size_t n = json_array_size(v);
        lua_createtable(L, (int)n, 0);
        lua_rawgetp(L, LUA_REGISTRYINDEX, &k_array_mt);
        lua_setmetatable(L, -2);
        for (size_t i = 0; i < n; i++) {
            p->seg[p->n++] = (PathSeg){ NULL, 0, (long long)i + 1 };
            push_json(L, json_array_get(v, i), p, depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
            p->n--;
        }
        return;
    }
    case JSON_STRING: lua_pushlstring(L, json_string_value(v), json_string_length(v)); return;
    case JSON_INTEGER: lua_pushinteger(L, (lua_Integer)json_integer_value(v)); return;
    case JSON_REAL: lua_pushnumber(L, (lua_Number)json_real_value(v)); return;
    case JSON_TRUE: lua_pushboolean(L, 1); return;
    case JSON_FALSE: lua_pushboolean(L, 0); return;
    case JSON_NULL: lua_rawgetp(L, LUA_REGISTRYINDEX, &k_null); return;
    }
}

/* An environment's JSON: each key of env becomes a Lua global the first
 * time a chunk reads it, since most read one or two of event, steps, task
 * and args, and converting all of them was most of a step's Lua time. A key
 * a chunk assigns before reading it is never converted. The table is good
 * for the public call that made it (env is the caller's, valid until then). */
#define LAZY_KEYS 64

typedef struct LazyEnv {
    const json_t *env;
    uint64_t call; /* F->calls when made */
    uint64_t done; /* bit i: env's i-th key was converted or assigned */
} LazyEnv;

/* The index of key k among env's first LAZY_KEYS keys (and its value), or -1. */
static int lazy_key(const LazyEnv *le, const char *k, size_t klen, json_t **ret)
{
    int i = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)le->env, key, v) {
        if (i == LAZY_KEYS)
            break;
        if (json_object_iter_key_len(json_object_key_to_iter(key)) == klen &&
            !memcmp(key, k, klen)) {
            *ret = v;
            return i;
        }
        i++;
    }
    return -1;
}

/* The env key a metamethod was called with (stack index 2; upvalue 1 is
 * the LazyEnv). i is its index among env's keys, or -1: not a key of env,
 * or the call that made the table is over. */
typedef struct LazyArg {
    LazyEnv *le;
    const char *k;
    size_t klen;
    json_t *v;
    int i;
} LazyArg;

static LazyArg lazy_arg(lua_State *L)
{
    LazyArg a = { .le = lua_touserdata(L, lua_upvalueindex(1)), .i = -1 };
    if (lua_type(L, 2) == LUA_TSTRING && a.le->env && a.le->call == sandbox_of(L)->calls) {
        a.k = lua_tolstring(L, 2, &a.klen);
        a.i = lazy_key(a.le, a.k, a.klen, &a.v);
    }
    return a;
}

/* __index(t, k): an env key not yet converted, else the base. */
static int env_index(lua_State *L)
{
    LazyArg a = lazy_arg(L);
    if (a.i >= 0 && !(a.le->done >> a.i & 1)) {
        Path p = { "", 1, { { a.k, a.klen, 0 } } };
        push_json(L, a.v, &p, 0); /* may raise (depth, memory): then not done */
        a.le->done |= 1ull << a.i;
        lua_pushvalue(L, 2);
        lua_pushvalue(L, -2);
        lua_rawset(L, 1);
        return 1;
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_base);
    lua_pushvalue(L, 2);
    lua_gettable(L, -2);
    return 1;
}

/* __newindex(t, k, v): assigning an env key first replaces it unconverted. */
static int env_newindex(lua_State *L)
{
    LazyArg a = lazy_arg(L);
    if (a.i >= 0)
        a.le->done |= 1ull << a.i;
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 0;
}

/* Pushes a fresh environment: a table holding env's keys as globals (made
 * when first read, see LazyEnv) and reading through to the read-only base. */
static int env_build(lua_State *L)
{
    const json_t *env = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, 1);
    lua_setfield(L, 1, "_G");
    if (!env || json_object_size(env) == 0) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &k_env_mt);
        lua_setmetatable(L, 1);
        return 1;
    }
    LazyEnv *le = lua_newuserdatauv(L, sizeof *le, 0);
    *le = (LazyEnv){ env, sandbox_of(L)->calls, 0 };
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, env_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, env_newindex, 1);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, 1);
    /* keys past LAZY_KEYS (there are a handful in practice) at once */
    int i = 0;
    Path p = { "", 0, { { 0 } } };
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)env, k, v) {
        if (i++ < LAZY_KEYS)
            continue;
        size_t klen = json_object_iter_key_len(json_object_key_to_iter(k));
        p.seg[0] = (PathSeg){ k, klen, 0 };
        p.n = 1;
        lua_pushlstring(L, k, klen);
        push_json(L, v, &p, 0);
        lua_rawset(L, 1);
    }
    lua_settop(L, 1);
    return 1;
}

/* ---- Lua -> JSON (never raises: no allocation inside Lua) ------------------ */

typedef struct Conv {
    FlowLua *F;
    Path path;
    char msg[420]; /* "path: what" */
} Conv;

static int conv_fail(Conv *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int conv_fail(Conv *c, const char *fmt, ...)
{
    char path[300], what[100];
    path_format(&c->path, path, sizeof path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(c->msg, sizeof c->msg, "%s: %s", path, what);
    return -1;
}

static int to_json(Conv *c, int idx, int depth, json_t **ret);

static int table_to_json(Conv *c, int idx, int depth, json_t **ret)
{
    lua_State *L = c->F->L;
    if (depth >= FLOW_LUA_DEPTH_MAX)
        return conv_fail(c, "a table nested deeper than %d levels (a cycle?) cannot become JSON",
                         FLOW_LUA_DEPTH_MAX);
    if (!lua_checkstack(L, 6))
        return conv_fail(c, "out of Lua stack");
    bool tagged = false;
    if (lua_getmetatable(L, idx)) {
        tagged = lua_topointer(L, -1) == c->F->array_mt;
        lua_pop(L, 1);
    }
    /* First pass: which keys are there? */
    long long count = 0, nstr = 0, nint = 0, maxint = 0;
    const char *badkey = NULL;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int kt = lua_type(L, -2);
        count++;
        if (kt == LUA_TSTRING) {
            nstr++;
        } else if (kt == LUA_TNUMBER && lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1) {
            nint++;
            if (lua_tointeger(L, -2) > maxint)
                maxint = lua_tointeger(L, -2);
        } else {
            badkey = kt == LUA_TNUMBER ? (lua_isinteger(L, -2) ? "an integer key below 1"
                                                                 : "a float key")
                                       : lua_typename(L, kt);
            lua_pop(L, 2);
            break;
        }
        lua_pop(L, 1);
    }
    if (badkey)
        return conv_fail(c, "a table with %s as a key cannot become JSON", badkey);
    if (count == 0) {
        *ret = tagged ? json_array() : json_object();
        return 0;
    }
    if (nint == count) {
        if (maxint != count)
            return conv_fail(c, "an array with holes (keys other than 1..n) cannot become JSON");
        json_t *a = json_array();
        for (long long i = 1; i <= count; i++) {
            lua_rawgeti(L, idx, (lua_Integer)i);
            c->path.seg[c->path.n++] = (PathSeg){ NULL, 0, i };
            json_t *v = NULL;
            int rc = to_json(c, lua_gettop(L), depth + 1, &v);
            c->path.n--;
            lua_pop(L, 1);
            if (rc < 0) {
                json_decref(a);
                return rc;
            }
            json_array_append_new(a, v);
        }
        *ret = a;
        return 0;
    }
    if (nstr != count || tagged)
        return conv_fail(c, "%s", tagged ? "an array with string keys cannot become JSON"
                                         : "a table with both string and integer keys cannot "
                                           "become JSON");
    json_t *o = json_object();
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t klen;
        const char *k = lua_tolstring(L, -2, &klen); /* a string: no conversion */
        c->path.seg[c->path.n++] = (PathSeg){ k, klen, 0 };
        json_t *v = NULL;
        int rc = to_json(c, lua_gettop(L), depth + 1, &v);
        if (rc == 0 && json_object_setn_new(o, k, klen, v) < 0)
            rc = conv_fail(c, "a key that is not valid UTF-8 cannot become JSON");
        c->path.n--;
        lua_pop(L, 1);
        if (rc < 0) {
            lua_pop(L, 1);
            json_decref(o);
            return rc;
        }
    }
    *ret = o;
    return 0;
}

static int to_json(Conv *c, int idx, int depth, json_t **ret)
{
    lua_State *L = c->F->L;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: *ret = json_null(); return 0;
    case LUA_TBOOLEAN: *ret = json_boolean(lua_toboolean(L, idx)); return 0;
    case LUA_TNUMBER: {
        if (lua_isinteger(L, idx)) {
            *ret = json_integer((json_int_t)lua_tointeger(L, idx));
            return 0;
        }
        double d = (double)lua_tonumber(L, idx);
        if (isnan(d))
            return conv_fail(c, "NaN cannot become JSON");
        if (isinf(d))
            return conv_fail(c, "an infinite number cannot become JSON");
        *ret = json_real(d);
        return 0;
    }
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        *ret = json_stringn(s, len);
        return *ret ? 0 : conv_fail(c, "a string that is not valid UTF-8 cannot become JSON");
    }
    case LUA_TTABLE: return table_to_json(c, idx, depth, ret);
    case LUA_TUSERDATA:
        if (lua_topointer(L, idx) == c->F->null_ud) {
            *ret = json_null();
            return 0;
        }
        return conv_fail(c, "a userdata value cannot become JSON");
    default:
        return conv_fail(c, "a %s cannot become JSON", lua_typename(L, lua_type(L, idx)));
    }
}

/* Converts the value at idx; on failure err names the path under root. */
static int value_to_json(FlowLua *F, int idx, const char *root, const Where *w, json_t **ret,
                         Err *err)
{
    Conv c = { .F = F, .path = { .root = root } };
    json_t *v = NULL;
    if (to_json(&c, lua_absindex(F->L, idx), 0, &v) < 0) {
        int line = w->line0 > 0 && w->nlines > 0 ? w->line0 : 0;
        if (line)
            return err_set(err, ERR_SCRIPT, "%s:%d: %s", chunk_name(w->chunk), line, c.msg);
        return err_set(err, ERR_SCRIPT, "%s: %s", chunk_name(w->chunk), c.msg);
    }
    *ret = v;
    return 0;
}

/* ---- compiling and running ------------------------------------------------- */

static uint64_t src_hash(int kind, const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)kind;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ? h : 1;
}

static CacheEntry *cache_slot(FlowLua *F, int kind, const char *src, size_t len, uint64_t h)
{
    size_t mask = F->cache_cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        CacheEntry *e = &F->cache[i];
        if (e->hash == 0)
            return e;
        if (e->hash == h && e->kind == kind && e->len == len && memcmp(e->src, src, len) == 0)
            return e;
    }
}

/* Wraps an expression so that it compiles as `return (EXPR)`; the newline
 * keeps a trailing comment from swallowing the parenthesis. */
static void wrap_source(Buf *b, int kind, const char *src, size_t len)
{
    if (kind == KIND_EXPR)
        buf_puts(b, "return (");
    buf_append(b, src, len);
    if (kind == KIND_EXPR)
        buf_puts(b, "\n)");
}

typedef struct Compile {
    const char *text;
    size_t len;
    bool flush;
    int status;  /* of lua_load */
    int ref;
} Compile;

/* Compiles text and stores the function in the cache table (emptied first
 * when flush is set). Pushes the function, or the syntax error message. */
static int compile_main(lua_State *L)
{
    Compile *c = lua_touserdata(L, 1);
    lua_settop(L, 0);
    if (c->flush) {
        lua_newtable(L);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &k_cache);
    }
    c->status = luaL_loadbufferx(L, c->text, c->len, "=?", "t");
    if (c->status != LUA_OK) {
        if (c->status == LUA_ERRMEM)
            return lua_error(L);
        return 1;
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_cache);
    lua_pushvalue(L, 1);
    c->ref = luaL_ref(L, 2);
    lua_settop(L, 1);
    return 1;
}

static int mem_err(FlowLua *F, const Where *w, Err *err)
{
    int line = where_line(w, F->abort_line);
    if (line > 0)
        return err_set(err, ERR_SCRIPT, "%s:%d: memory limit of %zu bytes exceeded",
                       chunk_name(w->chunk), line, F->mem_max);
    return err_set(err, ERR_SCRIPT, "%s: memory limit of %zu bytes exceeded",
                   chunk_name(w->chunk), F->mem_max);
}

/* Pushes the compiled function for src (from the cache when it is there).
 * A syntax error is ERR_INVAL. */
static int chunk_push(FlowLua *F, int kind, const char *src, size_t len, const Where *w,
                      Err *err)
{
    lua_State *L = F->L;
    uint64_t h = src_hash(kind, src, len);
    CacheEntry *e = cache_slot(F, kind, src, len, h);
    if (e->hash) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &k_cache);
        lua_rawgeti(L, -1, e->ref);
        lua_remove(L, -2);
        return 0;
    }
    Buf b;
    buf_init(&b, 0);
    wrap_source(&b, kind, src, len);
    Compile c = { buf_cstr(&b), b.len, F->cache_n >= CACHE_MAX, 0, LUA_NOREF };
    if (c.flush)
        cache_clear(F);
    lua_pushcfunction(L, compile_main);
    lua_pushlightuserdata(L, &c);
    int status = lua_pcall(L, 1, 1, 0);
    buf_done(&b);
    int rc = 0;
    if (status != LUA_OK || c.status == LUA_ERRMEM) {
        rc = status == LUA_ERRMEM || c.status == LUA_ERRMEM
                 ? mem_err(F, w, err)
                 : where_err(w, ERR_INTERNAL,
                             lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?", NULL,
                             err);
        lua_pop(L, 1);
        return rc;
    }
    if (c.status != LUA_OK) {
        rc = where_err(w, ERR_INVAL, lua_tostring(L, -1), NULL, err);
        lua_pop(L, 1);
        return rc;
    }
    e = cache_slot(F, kind, src, len, h); /* the cache may have been emptied */
    *e = (CacheEntry){ h, xstrndup(src, len), len, kind, c.ref };
    F->cache_n++;
    return 0;
}

static int env_push(FlowLua *F, const json_t *env, const Where *w, Err *err)
{
    lua_State *L = F->L;
    if (env && !json_is_object(env))
        return err_set(err, ERR_INVAL, "%s: the environment must be a JSON object, not %s",
                       chunk_name(w->chunk), core_json_type_name(env));
    lua_pushcfunction(L, env_build);
    lua_pushlightuserdata(L, (void *)env);
    int status = lua_pcall(L, 1, 1, 0);
    if (status == LUA_OK)
        return 0;
    int rc = status == LUA_ERRMEM || F->mem_hit
                 ? mem_err(F, &(Where){ w->chunk, 0, 0 }, err)
                 : err_set(err, ERR_INVAL, "%s: %s", chunk_name(w->chunk),
                           lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
    lua_pop(L, 1);
    return rc;
}

/* Calls the function on top of the stack with env (at env_idx) as its _ENV,
 * under the instruction budget; leaves its first result in its place. */
static int chunk_call(FlowLua *F, int env_idx, const Where *w, Err *err)
{
    lua_State *L = F->L;
    lua_pushvalue(L, env_idx);
    lua_setupvalue(L, -2, 1);
    lua_pushcfunction(L, msgh);
    lua_insert(L, -2);
    int h = lua_gettop(L) - 1;
    F->budget_hit = F->mem_hit = false;
    F->abort_line = 0;
    F->running = true;
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, (int)(F->instr_max > INT32_MAX ? INT32_MAX
                                                                              : F->instr_max));
    int status = lua_pcall(L, 0, 1, h);
    lua_sethook(L, NULL, 0, 0);
    F->running = false;
    lua_remove(L, h);
    if (status == LUA_OK)
        return 0;
    int rc;
    if (F->budget_hit)
        rc = where_line(w, F->abort_line) > 0
                 ? err_set(err, ERR_SCRIPT, "%s:%d: instruction budget of %ld exceeded",
                           chunk_name(w->chunk), where_line(w, F->abort_line), F->instr_max)
                 : err_set(err, ERR_SCRIPT, "%s: instruction budget of %ld exceeded",
                           chunk_name(w->chunk), F->instr_max);
    else if (F->mem_hit || status == LUA_ERRMEM)
        rc = mem_err(F, w, err);
    else
        rc = where_err(w, ERR_SCRIPT,
                       lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "error", NULL,
                       err);
    lua_pop(L, 1);
    return rc;
}

/* Every public call starts and ends here: the stack is restored, and after
 * an exhausted cap the garbage of the failed evaluation is collected so that
 * the next one has the whole allowance. */
static int call_begin(FlowLua *F, Err *err)
{
    F->mem_hit = F->budget_hit = false;
    if (!lua_checkstack(F->L, STACK_SLOTS))
        return err_set(err, ERR_SCRIPT, "lua: out of memory for the stack");
    return 0;
}

static void call_end(FlowLua *F, int top)
{
    F->calls++; /* the call's environments (and their JSON) are done with */
    lua_settop(F->L, top);
    if (F->mem_hit)
        lua_gc(F->L, LUA_GCCOLLECT);
    F->mem_hit = F->budget_hit = false;
}

/* Runs src with a fresh environment; leaves the result on the stack. */
static int eval_push(FlowLua *F, int kind, const char *src, size_t len, const Where *w,
                     const json_t *env, Err *err)
{
    int rc = env_push(F, env, w, err);
    if (rc == 0)
        rc = chunk_push(F, kind, src, len, w, err);
    if (rc == 0)
        rc = chunk_call(F, lua_gettop(F->L) - 1, w, err);
    return rc;
}

int flow_lua_eval(FlowLua *F, const char *expr, const char *chunk, const json_t *env,
                  json_t **ret, Err *err)
{
    size_t len = strlen(expr);
    Where w = { chunk, 1, count_lines(expr, len) };
    int top = lua_gettop(F->L);
    int rc = call_begin(F, err);
    if (rc == 0)
        rc = eval_push(F, KIND_EXPR, expr, len, &w, env, err);
    if (rc == 0)
        rc = value_to_json(F, -1, "return value", &w, ret, err);
    call_end(F, top);
    return rc;
}

int flow_lua_test(FlowLua *F, const char *expr, const char *chunk, const json_t *env,
                  bool *ret, Err *err)
{
    size_t len = strlen(expr);
    Where w = { chunk, 1, count_lines(expr, len) };
    int top = lua_gettop(F->L);
    int rc = call_begin(F, err);
    if (rc == 0)
        rc = eval_push(F, KIND_EXPR, expr, len, &w, env, err);
    if (rc == 0)
        *ret = lua_toboolean(F->L, -1);
    call_end(F, top);
    return rc;
}

int flow_lua_run(FlowLua *F, const char *src, size_t len, const char *chunk, const json_t *env,
                 json_t **ret, Err *err)
{
    Where w = { chunk, 1, 0 };
    int top = lua_gettop(F->L);
    int rc = call_begin(F, err);
    if (rc == 0)
        rc = eval_push(F, KIND_SCRIPT, src, len, &w, env, err);
    if (rc == 0)
        rc = value_to_json(F, -1, "return value", &(Where){ chunk, 0, 0 }, ret, err);
    call_end(F, top);
    return rc;
}

/* ---- templates ---------------------------------------------------------------- */

typedef struct Segment {
    const char *text;  /* literal text, or the expression */
    size_t len;
    bool expr;
    int line;          /* line of the text's start within the template */
} Segment;

/* Calls fn for each literal and expression of tmpl in order. An unclosed
 * `{{` is ERR_INVAL. *ret_whole is set when tmpl is exactly one expression
 * with optional spaces around. */
typedef int (*SegmentFn)(void *ctx, const Segment *s, Err *err);

static bool only_space(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!(s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
            return false;
    return true;
}

/* Splits tmpl; when whole is not NULL, reports whether tmpl is one
 * expression alone (then fn is called for it only). */
static int template_walk(const char *tmpl, const char *chunk, SegmentFn fn, void *ctx,
                         bool *whole, int *ret_line, Err *err)
{
    const char *p = tmpl;
    int line = 1;
    if (whole) {
        const char *o = strstr(tmpl, "{{");
        const char *c = o ? strstr(o + 2, "}}") : NULL;
        *whole = o && c && only_space(tmpl, (size_t)(o - tmpl)) && only_space(c + 2, strlen(c + 2));
        if (*whole) {
            int l0 = count_lines(tmpl, (size_t)(o - tmpl));
            return fn(ctx, &(Segment){ o + 2, (size_t)(c - o - 2), true, l0 }, err);
        }
    }
    while (*p) {
        const char *o = strstr(p, "{{");
        size_t lit = o ? (size_t)(o - p) : strlen(p);
        if (lit) {
            int rc = fn(ctx, &(Segment){ p, lit, false, line }, err);
            if (rc < 0)
                return rc;
            line += count_lines(p, lit) - 1;
        }
        if (!o)
            break;
        const char *c = strstr(o + 2, "}}");
        if (!c) {
            if (ret_line)
                *ret_line = line;
            return err_set(err, ERR_INVAL, "%s:%d: '{{' is not closed by '}}'", chunk_name(chunk),
                           line);
        }
        size_t elen = (size_t)(c - o - 2);
        int rc = fn(ctx, &(Segment){ o + 2, elen, true, line }, err);
        if (rc < 0)
            return rc;
        line += count_lines(o + 2, elen) - 1;
        p = c + 2;
    }
    return 0;
}

bool flow_lua_is_template(const char *s)
{
    return s && strstr(s, "{{") != NULL;
}

/* Appends the value at idx as template text. */
static int value_to_text(FlowLua *F, int idx, const Where *w, Buf *out, Err *err)
{
    lua_State *L = F->L;
    int rc = 0;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: break;
    case LUA_TBOOLEAN: rc = buf_puts(out, lua_toboolean(L, idx) ? "true" : "false"); break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            rc = buf_printf(out, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, idx));
        } else {
            /* As Lua's tostring: %.14g, and ".0" when it looks like an integer. */
            char tmp[64];
            int n = snprintf(tmp, sizeof tmp, LUA_NUMBER_FMT, (LUAI_UACNUMBER)lua_tonumber(L, idx));
            if (n > 0 && (size_t)n + 2 < sizeof tmp && tmp[strspn(tmp, "-0123456789")] == '\0')
                memcpy(tmp + n, ".0", 3);
            rc = buf_puts(out, tmp);
        }
        break;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        rc = buf_append(out, s, len);
        break;
    }
    case LUA_TUSERDATA:
        if (lua_topointer(L, idx) == F->null_ud)
            break;
        /* fallthrough */
    default: {
        json_t *j = NULL;
        rc = value_to_json(F, idx, "value", w, &j, err);
        if (rc < 0)
            return rc;
        rc = core_json_canonical(j, out);
        json_decref(j);
    }
    }
    if (rc < 0)
        return err_set(err, ERR_TOOBIG, "%s:%d: the rendered text is larger than %zu bytes",
                       chunk_name(w->chunk), w->line0, out->max);
    return 0;
}

typedef struct Render {
    FlowLua *F;
    const char *chunk;
    const json_t *env;
    int env_idx;  /* 0 until the environment is built */
    Buf out;
    json_t *value;  /* the result of a whole-template expression */
    bool whole;
} Render;

static int render_segment(void *ctx, const Segment *s, Err *err)
{
    Render *r = ctx;
    FlowLua *F = r->F;
    if (!s->expr)
        return buf_append(&r->out, s->text, s->len) < 0
                   ? err_set(err, ERR_TOOBIG, "%s:%d: the rendered text is larger than %zu bytes",
                             chunk_name(r->chunk), s->line, r->out.max)
                   : 0;
    Where w = { r->chunk, s->line, count_lines(s->text, s->len) };
    int rc = 0;
    if (!r->env_idx) {
        rc = env_push(F, r->env, &w, err);
        if (rc < 0)
            return rc;
        r->env_idx = lua_gettop(F->L);
    }
    rc = chunk_push(F, KIND_EXPR, s->text, s->len, &w, err);
    if (rc == 0)
        rc = chunk_call(F, r->env_idx, &w, err);
    if (rc < 0)
        return rc;
    if (r->whole)
        rc = value_to_json(F, -1, "value", &w, &r->value, err);
    else
        rc = value_to_text(F, -1, &w, &r->out, err);
    lua_pop(F->L, 1);
    return rc;
}

static int render_one(Render *r, const char *tmpl, json_t **ret, Err *err)
{
    buf_clear(&r->out);
    r->value = NULL;
    int rc = template_walk(tmpl, r->chunk, render_segment, r, &r->whole, NULL, err);
    if (rc < 0) {
        json_decref(r->value);
        return rc;
    }
    if (r->whole) {
        *ret = r->value ? r->value : json_null();
        return 0;
    }
    *ret = json_stringn(buf_cstr(&r->out), r->out.len);
    if (!*ret)
        return err_set(err, ERR_SCRIPT, "%s: the rendered text is not valid UTF-8",
                       chunk_name(r->chunk));
    return 0;
}

static int render_value(Render *r, const json_t *in, int depth, json_t **ret, Err *err);

/* One rendering call: a template string (tmpl) or a JSON value (in). */
static int render(FlowLua *F, const char *tmpl, const json_t *in, const char *chunk,
                  const json_t *env, json_t **ret, Err *err)
{
    Render r = { .F = F, .chunk = chunk, .env = env };
    buf_init(&r.out, F->mem_max);
    int top = lua_gettop(F->L);
    int rc = call_begin(F, err);
    if (rc == 0)
        rc = tmpl ? render_one(&r, tmpl, ret, err) : render_value(&r, in, 0, ret, err);
    call_end(F, top);
    buf_done(&r.out);
    return rc;
}

int flow_lua_render(FlowLua *F, const char *tmpl, const char *chunk, const json_t *env,
                    json_t **ret, Err *err)
{
    return render(F, tmpl, NULL, chunk, env, ret, err);
}

static int render_value(Render *r, const json_t *in, int depth, json_t **ret, Err *err)
{
    if (depth >= FLOW_LUA_DEPTH_MAX)
        return err_set(err, ERR_INVAL, "%s: JSON nested deeper than %d levels",
                       chunk_name(r->chunk), FLOW_LUA_DEPTH_MAX);
    switch (json_typeof(in)) {
    case JSON_STRING:
        if (flow_lua_is_template(json_string_value(in)))
            return render_one(r, json_string_value(in), ret, err);
        break;
    case JSON_OBJECT: {
        json_t *o = json_object();
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)in, k, v) {
            size_t klen = json_object_iter_key_len(json_object_key_to_iter(k));
            json_t *nv = NULL;
            int rc = render_value(r, v, depth + 1, &nv, err);
            if (rc < 0) {
                json_decref(o);
                return rc;
            }
            json_object_setn_new_nocheck(o, k, klen, nv);
        }
        *ret = o;
        return 0;
    }
    case JSON_ARRAY: {
        json_t *a = json_array();
        for (size_t i = 0; i < json_array_size(in); i++) {
            json_t *nv = NULL;
            int rc = render_value(r, json_array_get(in, i), depth + 1, &nv, err);
            if (rc < 0) {
                json_decref(a);
                return rc;
            }
            json_array_append_new(a, nv);
        }
        *ret = a;
        return 0;
    }
    default: break;
    }
    *ret = json_copy((json_t *)in);
    return 0;
}

int flow_lua_render_json(FlowLua *F, const json_t *in, const char *chunk, const json_t *env,
                         json_t **ret, Err *err)
{
    return render(F, NULL, in, chunk, env, ret, err);
}

/* ---- syntax checks -------------------------------------------------------------- */

/* A bare state (no libraries) under the default memory cap, for compiling
 * only. */
typedef struct Checker {
    FlowLua F;
    const char *chunk;
    int *ret_line;
} Checker;

static int checker_init(Checker *c, const char *chunk, int *ret_line, Err *err)
{
    memset(c, 0, sizeof *c);
    c->F.mem_max = FLOW_LUA_MEM_DEFAULT;
    c->chunk = chunk;
    c->ret_line = ret_line;
    if (ret_line)
        *ret_line = 0;
    c->F.L = lua_newstate(sandbox_alloc, &c->F);
    if (!c->F.L)
        return err_set(err, ERR_INTERNAL, "lua: cannot create a state");
    lua_atpanic(c->F.L, sandbox_panic);
    return 0;
}

static int checker_compile(Checker *c, int kind, const char *src, size_t len, const Where *w,
                           Err *err)
{
    lua_State *L = c->F.L;
    Buf b;
    buf_init(&b, 0);
    wrap_source(&b, kind, src, len);
    int status = luaL_loadbufferx(L, buf_cstr(&b), b.len, "=?", "t");
    buf_done(&b);
    int rc = 0;
    if (status == LUA_ERRMEM)
        rc = err_set(err, ERR_TOOBIG, "%s: the source is too large to compile",
                     chunk_name(w->chunk));
    else if (status != LUA_OK)
        rc = where_err(w, ERR_INVAL, lua_tostring(L, -1), c->ret_line, err);
    lua_settop(L, 0);
    return rc;
}

static void checker_done(Checker *c)
{
    if (c->F.L)
        lua_close(c->F.L);
}

int flow_lua_check_expr(const char *expr, const char *chunk, int *ret_line, Err *err)
{
    Checker c;
    size_t len = strlen(expr);
    int rc = checker_init(&c, chunk, ret_line, err);
    if (rc == 0)
        rc = checker_compile(&c, KIND_EXPR, expr, len,
                             &(Where){ chunk, 1, count_lines(expr, len) }, err);
    checker_done(&c);
    return rc;
}

int flow_lua_check_script(const char *src, size_t len, const char *chunk, int *ret_line,
                          Err *err)
{
    Checker c;
    int rc = checker_init(&c, chunk, ret_line, err);
    if (rc == 0)
        rc = checker_compile(&c, KIND_SCRIPT, src, len, &(Where){ chunk, 1, 0 }, err);
    checker_done(&c);
    return rc;
}

static int check_segment(void *ctx, const Segment *s, Err *err)
{
    Checker *c = ctx;
    if (!s->expr)
        return 0;
    return checker_compile(c, KIND_EXPR, s->text, s->len,
                           &(Where){ c->chunk, s->line, count_lines(s->text, s->len) }, err);
}

int flow_lua_check_template(const char *tmpl, const char *chunk, int *ret_line, Err *err)
{
    Checker c;
    int rc = checker_init(&c, chunk, ret_line, err);
    if (rc == 0)
        rc = template_walk(tmpl, chunk, check_segment, &c, NULL, ret_line, err);
    checker_done(&c);
    return rc;
}
