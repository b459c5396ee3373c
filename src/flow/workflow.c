/* Workflow definitions (workflow.h): YAML is first turned into a JSON tree,
 * recording where each value (by its path, "steps[1].with.type") sits in
 * the file; one validator then walks that tree, or a stored canonical
 * definition, and names every problem by path. The YAML parser maps paths
 * to FILE:LINE:COL; flow_workflow_from_json prints the paths as they are.
 * Because both build the canonical definition from the same validated
 * values, parse(yaml) and from_json(definition) agree on text and version. */
#include "core/yaml.h"
#include "flow/workflow.h"

#include <errno.h>
#include <libfyaml.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/buf.h"
#include "core/json.h"
#include "flow/flow_lua.h"
#include "flow/workflow_int.h"

#define YAML_NODES_MAX 100000 /* aliases may multiply a small file */
#define YAML_DEPTH_MAX 64
#define DEFINITION_MAX_BYTES (4u << 20)
#define PATH_MAX_LEN 512

/* ---- names and durations ---------------------------------------------- */

bool flow__name_ok(const char *s)
{
    size_t n = 0;
    for (const char *p = s; *p; p++, n++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
            return false;
    return n >= 1 && n <= FLOW_NAME_MAX;
}

bool flow__event_pattern_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > FLOW_EVENT_PATTERN_MAX)
        return false;
    if (n > 2 && !strcmp(s + n - 2, ".*"))
        n -= 2;
    bool seg_empty = true;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (seg_empty)
                return false;
            seg_empty = true;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-') {
            seg_empty = false;
        } else {
            return false;
        }
    }
    return !seg_empty;
}

int flow_duration_parse(const char *s, int64_t *ret_ms, Err *err)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = { { "ms", 1 },         { "s", 1000 },           { "m", 60000 },
                  { "h", 3600000 },    { "d", 86400000 },       { "w", 604800000 } };
    const char *p = s;
    int64_t n = 0;
    if (!s || !(*p >= '0' && *p <= '9'))
        return err_set(err, ERR_INVAL,
                       "'%s' is not a duration (a whole number and one of ms, s, m, h, d, w: "
                       "\"30s\", \"3d\")",
                       s ? s : "");
    for (; *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (*p - '0');
        if (n > FLOW_DURATION_MAX_MS) /* no overflow: caught long before */
            return err_set(err, ERR_INVAL, "'%s' is longer than 366 days", s);
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(p, units[i].unit))
            continue;
        if (n == 0)
            return err_set(err, ERR_INVAL, "'%s': a duration must be positive", s);
        if (n > FLOW_DURATION_MAX_MS / units[i].ms)
            return err_set(err, ERR_INVAL, "'%s' is longer than 366 days", s);
        *ret_ms = n * units[i].ms;
        return 0;
    }
    return err_set(err, ERR_INVAL,
                   "'%s' is not a duration (a whole number and one of ms, s, m, h, d, w: "
                   "\"30s\", \"3d\")",
                   s);
}

/* ---- problems ---------------------------------------------------------- */

typedef struct Pos {
    int line, col;   /* the value (a container: its first scalar) */
    int kline, kcol; /* its key, 0 for list items and the root */
    int style;       /* STYLE_* */
} Pos;

enum { STYLE_PLAIN, STYLE_QUOTED, STYLE_BLOCK };
enum { AT_VALUE, AT_KEY };

typedef struct Problem {
    int line, col;
    size_t seq;
    char *text;
} Problem;

/* One validation: the source (YAML: file name, text and the path -> Pos
 * index; JSON: none), and the problems found so far. */
typedef struct V {
    const char *file; /* NULL when validating JSON */
    const char *text;
    size_t len;
    bool canonical;   /* the keys of a canonical definition (timeout_ms...) */
    json_t *index;    /* path -> integer index into pos */
    Pos *pos;
    size_t n_pos, cap_pos;
    size_t nodes;
    bool too_big; /* past YAML_NODES_MAX or YAML_DEPTH_MAX */
    Problem *probs;
    size_t n_probs, cap_probs;
} V;

static void v_done(V *v)
{
    json_decref(v->index);
    free(v->pos);
    for (size_t i = 0; i < v->n_probs; i++)
        free(v->probs[i].text);
    free(v->probs);
}

static void pos_put(V *v, const char *path, Pos p)
{
    if (v->n_pos == v->cap_pos) {
        v->cap_pos = v->cap_pos ? v->cap_pos * 2 : 64;
        v->pos = xrealloc(v->pos, v->cap_pos * sizeof *v->pos);
    }
    v->pos[v->n_pos] = p;
    json_object_set_new(v->index, path, json_integer((json_int_t)v->n_pos));
    v->n_pos++;
}

/* The position of path, or of the nearest enclosing path that has one. */
static const Pos *pos_find(const V *v, const char *path)
{
    if (!v->index)
        return NULL;
    char buf[PATH_MAX_LEN];
    snprintf(buf, sizeof buf, "%s", path);
    for (;;) {
        json_t *i = json_object_get(v->index, buf);
        if (i)
            return &v->pos[json_integer_value(i)];
        if (!*buf)
            return NULL;
        char *dot = strrchr(buf, '.'), *br = strrchr(buf, '[');
        char *cut = dot > br ? dot : br;
        if (cut)
            *cut = '\0';
        else
            *buf = '\0';
    }
}

/* The first column of line in the YAML text that is not a blank. */
static int first_col(const V *v, int line)
{
    const char *p = v->text, *end = v->text + v->len;
    for (int l = 1; l < line && p < end; p++)
        if (*p == '\n')
            l++;
    int col = 1;
    for (; p < end && (*p == ' ' || *p == '\t'); p++)
        col++;
    return col;
}

static void add_problem(V *v, int line, int col, const char *text)
{
    if (v->n_probs == v->cap_probs) {
        v->cap_probs = v->cap_probs ? v->cap_probs * 2 : 16;
        v->probs = xrealloc(v->probs, v->cap_probs * sizeof *v->probs);
    }
    Buf b;
    buf_init(&b, 0);
    if (v->file && line > 0)
        buf_printf(&b, "%s:%d:%d: %s", v->file, line, col, text);
    else if (v->file)
        buf_printf(&b, "%s: %s", v->file, text);
    else
        buf_puts(&b, text);
    v->probs[v->n_probs] = (Problem){ line, col, v->n_probs, buf_steal(&b) };
    v->n_probs++;
}

/* A problem located at path (its key or its value), LUA_LINE lines into a
 * scalar (0 or 1: its first line) and COL_OFF columns right of its start;
 * the message is "PATH: text" (just text at the root). */
static void vbad_at(V *v, const char *path, int at, int lua_line, int col_off, const char *fmt,
                    va_list ap)
{
    char text[1024];
    int n = 0;
    if (*path)
        n = snprintf(text, sizeof text, "%s: ", path);
    vsnprintf(text + n, sizeof text - (size_t)n, fmt, ap);
    int line = 0, col = 0;
    const Pos *p = pos_find(v, path);
    if (p) {
        line = p->line;
        col = p->col;
        if (at == AT_KEY && p->kline) {
            line = p->kline;
            col = p->kcol;
        } else if (lua_line > 1 || (p->style == STYLE_BLOCK && line)) {
            line += lua_line > 1 ? lua_line - 1 : 0;
            col = first_col(v, line);
        } else if (col_off > 0) { /* a quoted scalar's mark is past its quote */
            col += col_off;
        }
    }
    add_problem(v, line, col, text);
}

static void bad(V *v, const char *path, int at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void bad(V *v, const char *path, int at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vbad_at(v, path, at, 0, 0, fmt, ap);
    va_end(ap);
}

static void bad_line(V *v, const char *path, int lua_line, int col_off, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void bad_line(V *v, const char *path, int lua_line, int col_off, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vbad_at(v, path, AT_VALUE, lua_line, col_off, fmt, ap);
    va_end(ap);
}

static int prob_cmp(const void *a, const void *b)
{
    const Problem *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sets err (ERR_INVAL) from the problems and returns the full report. */
static char *report(V *v, Err *err)
{
    if (v->file)
        qsort(v->probs, v->n_probs, sizeof *v->probs, prob_cmp);
    Buf all;
    buf_init(&all, 0);
    size_t shown = v->n_probs < FLOW_PROBLEMS_MAX ? v->n_probs : FLOW_PROBLEMS_MAX;
    for (size_t i = 0; i < shown; i++)
        buf_printf(&all, "%s%s", i ? "\n" : "", v->probs[i].text);
    if (v->n_probs > shown)
        buf_printf(&all, "\n... and %zu more problems", v->n_probs - shown);
    /* err->msg: whole lines only, and a count of what did not fit. */
    if (err) {
        char tail[64];
        size_t used = 0, i = 0;
        err->code = ERR_INVAL;
        err->msg[0] = '\0';
        for (; i < v->n_probs; i++) {
            size_t need = strlen(v->probs[i].text) + (i ? 1 : 0);
            size_t reserve = i + 1 < v->n_probs ? sizeof tail : 0;
            if (used + need + reserve >= ERR_MSG_MAX)
                break;
            if (i)
                err->msg[used++] = '\n';
            memcpy(err->msg + used, v->probs[i].text, need - (i ? 1 : 0));
            used += need - (i ? 1 : 0);
            err->msg[used] = '\0';
        }
        if (i < v->n_probs) {
            snprintf(tail, sizeof tail, "%s... and %zu more problems", i ? "\n" : "",
                     v->n_probs - i);
            snprintf(err->msg + used, ERR_MSG_MAX - used, "%s", tail);
        }
    }
    return buf_steal(&all);
}

/* ---- YAML to JSON ------------------------------------------------------ */

static void mark_of(struct fy_node *n, int *line, int *col)
{
    struct fy_token *t = n ? fy_node_get_scalar_token(n) : NULL;
    const struct fy_mark *m = t ? fy_token_start_mark(t) : NULL;
    *line = m ? m->line + 1 : 0;
    *col = m ? m->column + 1 : 0;
}

/* A container's position: that of its first scalar, if any. */
static void first_mark(struct fy_node *n, int depth, int *line, int *col)
{
    *line = *col = 0;
    if (!n || depth > YAML_DEPTH_MAX)
        return;
    if (fy_node_is_scalar(n)) {
        mark_of(n, line, col);
        return;
    }
    void *it = NULL;
    if (fy_node_is_mapping(n)) {
        struct fy_node_pair *p = fy_node_mapping_iterate(n, &it);
        if (p)
            first_mark(fy_node_pair_key(p), depth + 1, line, col);
    } else if (fy_node_is_sequence(n)) {
        struct fy_node *c = fy_node_sequence_iterate(n, &it);
        if (c)
            first_mark(c, depth + 1, line, col);
    }
}

static bool all_digits(const char *s, size_t len)
{
    size_t i = (len && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
    if (i == len)
        return false;
    for (; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static bool is_float(const char *s, size_t len)
{
    size_t i = (len && (s[0] == '-' || s[0] == '+')) ? 1 : 0, digits = 0;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
        digits++;
    if (i < len && s[i] == '.')
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++)
            digits++;
    if (!digits)
        return false;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '-' || s[i] == '+'))
            i++;
        if (i == len)
            return false;
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
            ;
    }
    return i == len;
}

static bool eq(const char *s, size_t len, const char *w)
{
    return strlen(w) == len && !memcmp(s, w, len);
}

/* A plain scalar per the YAML 1.2 core schema (null, booleans, integers,
 * floats), else a string. */
static json_t *plain_scalar(const char *s, size_t len)
{
    if (len == 0 || eq(s, len, "~") || eq(s, len, "null") || eq(s, len, "Null") ||
        eq(s, len, "NULL"))
        return json_null();
    if (eq(s, len, "true") || eq(s, len, "True") || eq(s, len, "TRUE"))
        return json_true();
    if (eq(s, len, "false") || eq(s, len, "False") || eq(s, len, "FALSE"))
        return json_false();
    if (len < 64 && (all_digits(s, len) || is_float(s, len))) {
        char tmp[64];
        memcpy(tmp, s, len);
        tmp[len] = '\0';
        if (all_digits(s, len)) {
            errno = 0;
            long long n = strtoll(tmp, NULL, 10);
            if (!errno)
                return json_integer(n);
        }
        return json_real(strtod(tmp, NULL));
    }
    return NULL;
}

static json_t *to_json(V *v, struct fy_node *n, struct fy_node *key, Buf *path, int depth)
{
    Pos p = { 0 };
    mark_of(key, &p.kline, &p.kcol);
    int guard = 0;
    while (n && fy_node_is_alias(n) && guard++ < YAML_DEPTH_MAX)
        n = fy_node_resolve_alias(n);
    if (++v->nodes > YAML_NODES_MAX || depth > YAML_DEPTH_MAX) {
        if (!v->too_big) { /* said once: the siblings would repeat it */
            pos_put(v, buf_cstr(path), p);
            bad(v, buf_cstr(path), AT_KEY, "%s",
                depth > YAML_DEPTH_MAX ? "nested too deeply" : "too many values (aliases?)");
        }
        v->too_big = true;
        return NULL;
    }
    if (!n || fy_node_is_scalar(n)) {
        mark_of(n, &p.line, &p.col);
        enum fy_node_style st = fy_node_get_style(n);
        p.style = st == FYNS_LITERAL || st == FYNS_FOLDED         ? STYLE_BLOCK
                  : st == FYNS_SINGLE_QUOTED || st == FYNS_DOUBLE_QUOTED ? STYLE_QUOTED
                                                                   : STYLE_PLAIN;
        pos_put(v, buf_cstr(path), p);
        size_t len = 0;
        const char *s = n ? fy_node_get_scalar(n, &len) : NULL;
        if (!s)
            s = "", len = 0;
        size_t tlen = 0;
        const char *tag = n ? fy_node_get_tag(n, &tlen) : NULL;
        bool str_tag = tag && (eq(tag, tlen, "!!str") || eq(tag, tlen, "tag:yaml.org,2002:str"));
        json_t *j = st == FYNS_PLAIN && !str_tag ? plain_scalar(s, len) : NULL;
        if (j)
            return j;
        if (memchr(s, '\0', len)) {
            bad(v, buf_cstr(path), AT_VALUE, "a NUL character in a string");
            return NULL;
        }
        j = json_stringn(s, len);
        if (!j)
            bad(v, buf_cstr(path), AT_VALUE, "not valid UTF-8");
        return j;
    }
    first_mark(n, 0, &p.line, &p.col);
    if (!p.line) { /* an empty flow collection: name its key */
        p.line = p.kline;
        p.col = p.kcol;
    }
    pos_put(v, buf_cstr(path), p);
    size_t base = path->len;
    void *it = NULL;
    if (fy_node_is_sequence(n)) {
        json_t *a = json_array();
        struct fy_node *c;
        size_t i = 0;
        while ((c = fy_node_sequence_iterate(n, &it))) {
            buf_printf(path, "[%zu]", i++);
            json_t *j = to_json(v, c, NULL, path, depth + 1);
            path->len = base;
            path->ptr[base] = '\0';
            json_array_append_new(a, j ? j : json_null());
        }
        return a;
    }
    json_t *o = json_object();
    struct fy_node_pair *pr;
    while ((pr = fy_node_mapping_iterate(n, &it))) {
        struct fy_node *k = fy_node_pair_key(pr);
        while (k && fy_node_is_alias(k) && guard++ < YAML_DEPTH_MAX)
            k = fy_node_resolve_alias(k);
        size_t klen = 0;
        const char *ks = k && fy_node_is_scalar(k) ? fy_node_get_scalar(k, &klen) : NULL;
        if (!ks || memchr(ks, '\0', klen) || !klen) {
            int l, c;
            first_mark(k, 0, &l, &c);
            char msg[128];
            snprintf(msg, sizeof msg, "%s%sa key must be a non-empty string", buf_cstr(path),
                     path->len ? ": " : "");
            add_problem(v, l ? l : p.line, l ? c : p.col, msg);
            continue;
        }
        buf_printf(path, "%s%.*s", base ? "." : "", (int)klen, ks);
        json_t *j = to_json(v, fy_node_pair_value(pr), k, path, depth + 1);
        char *kz = xstrndup(ks, klen);
        if (json_object_get(o, kz)) { /* "<<" merges and aliased keys */
            bad(v, buf_cstr(path), AT_KEY, "given twice");
            json_decref(j);
        } else {
            json_object_set_new(o, kz, j ? j : json_null());
        }
        free(kz);
        path->len = base;
        path->ptr[base] = '\0';
    }
    return o;
}

/* Builds the YAML document; on a syntax error adds it as a problem. */
static struct fy_document *yaml_build(V *v, const char *text, size_t len)
{
    struct fy_document *doc = NULL;
    int line, col;
    Err e = { 0 };
    if (core_yaml_build(text, len, &doc, &line, &col, &e) < 0) {
        char msg[600];
        snprintf(msg, sizeof msg, "not valid YAML: %s", e.msg);
        add_problem(v, line, col, msg);
        return NULL;
    }
    return doc;
}

/* ---- validation -------------------------------------------------------- */

static void join_names(const char *const *names, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; names[i] && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%s", i ? ", " : "", names[i]);
}

static bool in_list(const char *const *names, const char *k)
{
    for (int i = 0; names[i]; i++)
        if (!strcmp(names[i], k))
            return true;
    return false;
}

/* Reports every key of obj not in allowed. */
static void check_keys(V *v, const json_t *obj, const char *path, const char *const *allowed)
{
    const char *k;
    json_t *val;
    char list[256];
    join_names(allowed, list, sizeof list);
    json_object_foreach((json_t *)obj, k, val) {
        if (in_list(allowed, k))
            continue;
        char sub[PATH_MAX_LEN];
        snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", k);
        bad(v, sub, AT_KEY, "unknown key (allowed: %s)", list);
    }
}

static void sub_path(char *out, size_t size, const char *path, const char *key)
{
    snprintf(out, size, "%s%s%s", path, *path ? "." : "", key);
}

/* The value of key in obj; NULL when absent or null (both mean "not
 * given"), with a problem when required. */
static json_t *get(V *v, const json_t *obj, const char *path, const char *key, bool required)
{
    json_t *j = json_object_get(obj, key);
    if (j && json_is_null(j))
        j = NULL;
    if (!j && required)
        bad(v, path, AT_VALUE, "missing required key '%s'", key);
    return j;
}

static const char *get_str(V *v, const json_t *obj, const char *path, const char *key,
                           bool required)
{
    json_t *j = get(v, obj, path, key, required);
    if (!j)
        return NULL;
    if (!json_is_string(j)) {
        char sub[PATH_MAX_LEN];
        sub_path(sub, sizeof sub, path, key);
        bad(v, sub, AT_VALUE, "must be a string, not %s", core_json_type_name(j));
        return NULL;
    }
    return json_string_value(j);
}

/* "steps[1].if:2: unexpected symbol" -> "unexpected symbol": the chunk and
 * line are replaced by the file position. */
const char *flow__lua_message(const char *msg)
{
    const char *p = msg;
    for (int tries = 0; tries < 8 && (p = strchr(p, ':')); tries++) {
        const char *q = p + 1;
        while (*q >= '0' && *q <= '9')
            q++;
        if (q > p + 1 && q[0] == ':' && q[1] == ' ')
            return q + 2;
        p++;
    }
    return msg;
}

enum { LUA_EXPR, LUA_TEMPLATE };

static void check_lua(V *v, const char *path, const char *src, int what)
{
    Err le = { 0 };
    int line = 0;
    int rc = what == LUA_EXPR ? flow_lua_check_expr(src, path, &line, &le)
                              : flow_lua_check_template(src, path, &line, &le);
    if (rc < 0) {
        /* The Lua line, within the lines the scalar has (a wrapper such as
         * "return (EXPR\n)" may name one more). */
        int lines = 1;
        for (const char *p = src; *p; p++)
            lines += *p == '\n' && p[1];
        bad_line(v, path, lines == 1 ? 0 : line > lines ? lines : line, 0, "Lua syntax error: %s",
                 flow__lua_message(le.msg));
    }
}

static void check_templates(V *v, const json_t *j, Buf *path, int depth)
{
    size_t base = path->len;
    if (depth > YAML_DEPTH_MAX)
        return;
    if (json_is_string(j)) {
        if (flow_lua_is_template(json_string_value(j)))
            check_lua(v, buf_cstr(path), json_string_value(j), LUA_TEMPLATE);
    } else if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++) {
            buf_printf(path, "[%zu]", i);
            check_templates(v, json_array_get(j, i), path, depth + 1);
            path->len = base;
            path->ptr[base] = '\0';
        }
    } else if (json_is_object(j)) {
        const char *k;
        json_t *c;
        json_object_foreach((json_t *)j, k, c) {
            buf_printf(path, ".%s", k);
            check_templates(v, c, path, depth + 1);
            path->len = base;
            path->ptr[base] = '\0';
        }
    }
}

/* A duration: "30s" in a file, an integer of ms in a canonical definition.
 * Returns false (and leaves *ms) when absent. */
static bool get_duration(V *v, const json_t *obj, const char *path, const char *key,
                         const char *key_ms, bool zero_ok, int64_t *ms)
{
    char sub[PATH_MAX_LEN];
    const char *name = v->canonical ? key_ms : key;
    json_t *j = get(v, obj, path, name, false);
    sub_path(sub, sizeof sub, path, name);
    if (!j)
        return false;
    if (v->canonical) {
        json_int_t n = json_is_integer(j) ? json_integer_value(j) : -1;
        if (n < (zero_ok ? 0 : 1) || n > FLOW_DURATION_MAX_MS) {
            bad(v, sub, AT_VALUE, "must be an integer of milliseconds, %d to %lld", zero_ok ? 0 : 1,
                (long long)FLOW_DURATION_MAX_MS);
            return false;
        }
        *ms = n;
        return true;
    }
    if (!json_is_string(j)) {
        bad(v, sub, AT_VALUE, "must be a duration such as \"30s\" or \"3d\", not %s",
            core_json_type_name(j));
        return false;
    }
    Err de = { 0 };
    if (flow_duration_parse(json_string_value(j), ms, &de) < 0) {
        bad(v, sub, AT_VALUE, "%s", de.msg);
        return false;
    }
    return true;
}

static const char *const on_error_names[] = { "fail", "continue", "inbox", NULL };

static void check_trigger(V *v, const json_t *on, FlowWorkflow *w)
{
    static const char *const keys[] = { "event", "where", "schedule", "timezone", NULL };
    if (!json_is_object(on)) {
        bad(v, "on", AT_VALUE, "must be a mapping ({event: TYPE, where: LUA} or "
                               "{schedule: CRON, timezone: TZ}), not %s",
            core_json_type_name(on));
        return;
    }
    check_keys(v, on, "on", keys);
    json_t *ev = get(v, on, "on", "event", false), *sc = get(v, on, "on", "schedule", false);
    if (!ev == !sc) {
        bad(v, "on", AT_VALUE, "give exactly one of 'event' or 'schedule'");
        return;
    }
    if (ev) {
        const char *e = get_str(v, on, "on", "event", true);
        if (e && !flow__event_pattern_ok(e))
            bad(v, "on.event", AT_VALUE,
                "'%s' is not an event type (segments of a-z, 0-9, _ and - joined by '.', "
                "or a prefix ending in \".*\")",
                e);
        const char *where = get_str(v, on, "on", "where", false);
        if (where)
            check_lua(v, "on.where", where, LUA_EXPR);
        if (get(v, on, "on", "timezone", false))
            bad(v, "on.timezone", AT_KEY, "only with 'schedule'");
        w->on_event = e ? xstrdup(e) : NULL;
        w->on_where = where ? xstrdup(where) : NULL;
        return;
    }
    const char *s = get_str(v, on, "on", "schedule", true);
    const char *tz = get_str(v, on, "on", "timezone", false);
    if (get(v, on, "on", "where", false))
        bad(v, "on.where", AT_KEY, "only with 'event'");
    if (!s)
        return;
    Err ce = { 0 };
    int col = 0;
    /* The expression alone first, so that a problem is placed in it. */
    if (flow_cron_parse(s, NULL, &w->cron, &col, &ce) < 0) {
        bad_line(v, "on.schedule", 0, col > 0 ? col - 1 : 0, "%s", ce.msg);
    } else if (tz && flow_cron_parse(s, tz, &w->cron, NULL, &ce) < 0) {
        const char *m = ce.msg; /* "timezone: ..." would say it twice */
        if (!strncmp(m, "timezone: ", 10))
            m += 10;
        bad(v, "on.timezone", AT_VALUE, "%s", m);
    }
    w->on_schedule = xstrdup(s);
    w->timezone = xstrdup(tz ? tz : "UTC");
}

static void check_kind_with(V *v, const char *spath, const FlowStepKind *k, const json_t *with)
{
    Err ke = { 0 };
    if (!k->check || k->check(with, &ke) >= 0)
        return;
    /* One problem per line, each "with.KEY...: message" when it names an input. */
    for (char *line = ke.msg; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        char where[PATH_MAX_LEN];
        const char *text = line;
        snprintf(where, sizeof where, "%s.with", spath);
        const char *colon = strstr(line, ": ");
        if (!strncmp(line, "with", 4) && colon && strchr(".[:", line[4]) &&
            (size_t)(colon - line) < PATH_MAX_LEN - strlen(spath) - 2) {
            snprintf(where, sizeof where, "%s.%.*s", spath, (int)(colon - line), line);
            text = colon + 2;
        }
        bad(v, where, strncmp(text, "unknown key", 11) ? AT_VALUE : AT_KEY, "%s", text);
        line = nl ? nl + 1 : NULL;
    }
}

bool flow_kind_is_effect(const char *kind)
{
    return kind && (!strcmp(kind, "email.send") || !strcmp(kind, "webhook.post"));
}

static const char *const policy_names[] = { "always", "never", "auto", NULL };
static const char *const on_deadline_names[] = { "remind", "escalate", NULL };

static int name_in(const char *s, const char *const *names)
{
    for (int i = 0; s && names[i]; i++)
        if (!strcmp(s, names[i]))
            return i;
    return -1;
}

/* `approval`: a policy ("always", "never", "auto") or a mapping; kept in
 * s->approval in its canonical form (deadline in ms). Only on effect steps
 * and `do: approval`. */
static void check_approval(V *v, const json_t *st, const char *path, FlowStepDef *s)
{
    static const char *const keys[] = { "policy",  "min_confidence", "deadline",
                                        "on_deadline", "on_reject", "confidence",
                                        "confidence_source", "sources", "model", "cost", NULL };
    static const char *const ckeys[] = { "policy",  "min_confidence", "deadline_ms",
                                         "on_deadline", "on_reject", "confidence",
                                         "confidence_source", "sources", "model", "cost", NULL };
    json_t *a = get(v, st, path, "approval", false);
    char sub[PATH_MAX_LEN / 2], item[PATH_MAX_LEN];
    sub_path(sub, sizeof sub, path, "approval");
    bool gate = s->kind && (flow_kind_is_effect(s->kind) || !strcmp(s->kind, "approval"));
    if (a && s->kind && !gate) {
        bad(v, sub, AT_KEY, "only effect steps (email.send, webhook.post) and 'approval' steps "
                            "take an approval");
        return;
    }
    if (!gate)
        return;
    json_t *c = json_pack("{s:s, s:s, s:s}", "policy", "always", "on_deadline", "remind",
                          "on_reject", "cancel");
    s->approval = c;
    if (!a)
        return;
    if (json_is_string(a)) {
        if (name_in(json_string_value(a), policy_names) < 0)
            bad(v, sub, AT_VALUE, "'%s' is not one of: always, never, auto (or a mapping)",
                json_string_value(a));
        else
            json_object_set(c, "policy", a);
        a = NULL;
    } else if (!json_is_object(a)) {
        bad(v, sub, AT_VALUE, "must be always, never, auto or a mapping {policy, min_confidence, "
                              "deadline, on_deadline, on_reject...}, not %s",
            core_json_type_name(a));
        return;
    }
    if (a) {
        check_keys(v, a, sub, v->canonical ? ckeys : keys);
        const char *p = get_str(v, a, sub, "policy", false);
        if (p && name_in(p, policy_names) < 0) {
            sub_path(item, sizeof item, sub, "policy");
            bad(v, item, AT_VALUE, "'%s' is not one of: always, never, auto", p);
        } else if (p) {
            json_object_set_new(c, "policy", json_string(p));
        }
        json_t *mc = get(v, a, sub, "min_confidence", false);
        sub_path(item, sizeof item, sub, "min_confidence");
        if (mc && (!json_is_number(mc) || json_number_value(mc) < 0 || json_number_value(mc) > 1))
            bad(v, item, AT_VALUE, "must be a number from 0 to 1");
        else if (mc)
            json_object_set_new(c, "min_confidence", json_real(json_number_value(mc)));
        int64_t ms = 0;
        if (get_duration(v, a, sub, "deadline", "deadline_ms", false, &ms))
            json_object_set_new(c, "deadline_ms", json_integer((json_int_t)ms));
        const char *od = get_str(v, a, sub, "on_deadline", false);
        sub_path(item, sizeof item, sub, "on_deadline");
        if (od && name_in(od, on_deadline_names) < 0)
            bad(v, item, AT_VALUE, "'%s' is not one of: remind, escalate", od);
        else if (od)
            json_object_set_new(c, "on_deadline", json_string(od));
        const char *orj = get_str(v, a, sub, "on_reject", false);
        sub_path(item, sizeof item, sub, "on_reject");
        if (orj && strcmp(orj, "cancel") && strcmp(orj, "compensate") && !flow__name_ok(orj))
            bad(v, item, AT_VALUE, "'%s': cancel, compensate, or the id of a step to go to", orj);
        else if (orj)
            json_object_set_new(c, "on_reject", json_string(orj));
        static const char *const preview[] = { "confidence", "confidence_source", "sources",
                                               "model", "cost", NULL };
        for (int i = 0; preview[i]; i++) {
            json_t *x = get(v, a, sub, preview[i], false);
            if (!x)
                continue;
            sub_path(item, sizeof item, sub, preview[i]);
            bool tmpl = json_is_string(x) && flow_lua_is_template(json_string_value(x));
            if (tmpl) {
                check_lua(v, item, json_string_value(x), LUA_TEMPLATE);
            } else if ((!strcmp(preview[i], "confidence") &&
                        (!json_is_number(x) || json_number_value(x) < 0 ||
                         json_number_value(x) > 1)) ||
                       (!strcmp(preview[i], "cost") &&
                        (!json_is_number(x) || json_number_value(x) < 0)) ||
                       (!strcmp(preview[i], "sources") && !json_is_array(x)) ||
                       ((!strcmp(preview[i], "model") || !strcmp(preview[i], "confidence_source")) &&
                        !json_is_string(x))) {
                bad(v, item, AT_VALUE, "%s",
                    !strcmp(preview[i], "confidence") ? "must be a number from 0 to 1 or a {{ }} template"
                    : !strcmp(preview[i], "cost")     ? "must be a number (USD) or a {{ }} template"
                    : !strcmp(preview[i], "sources")  ? "must be a list or a {{ }} template"
                                                      : "must be a string");
                continue;
            }
            json_object_set(c, preview[i], x);
        }
    }
    const char *pol = json_string_value(json_object_get(c, "policy"));
    if (pol && !strcmp(pol, "auto") && !json_object_get(c, "min_confidence")) {
        bad(v, sub, AT_VALUE, "policy auto needs min_confidence (0 to 1)");
    }
}

/* purpose and compensate: effect steps only. */
static void check_effect_keys(V *v, const json_t *st, const char *path, FlowStepDef *s)
{
    char sub[PATH_MAX_LEN / 2];
    check_approval(v, st, path, s);
    bool effect = flow_kind_is_effect(s->kind);
    const char *purpose = get_str(v, st, path, "purpose", false);
    sub_path(sub, sizeof sub, path, "purpose");
    if (purpose && s->kind && !effect)
        bad(v, sub, AT_KEY, "only effect steps (email.send, webhook.post) have a purpose");
    else if (purpose && strcmp(purpose, "transactional") && strcmp(purpose, "marketing"))
        bad(v, sub, AT_VALUE, "'%s' is not one of: transactional, marketing", purpose);
    else if (purpose)
        s->purpose = xstrdup(purpose);
    json_t *comp = get(v, st, path, "compensate", false);
    sub_path(sub, sizeof sub, path, "compensate");
    if (!comp)
        return;
    if (s->kind && !effect) {
        bad(v, sub, AT_KEY, "only effect steps (email.send, webhook.post) are compensated");
        return;
    }
    static const char *const keys[] = { "do", "with", NULL };
    if (!json_is_object(comp)) {
        bad(v, sub, AT_VALUE, "must be a mapping {do: webhook.post, with: {...}}, not %s",
            core_json_type_name(comp));
        return;
    }
    check_keys(v, comp, sub, keys);
    const char *kind = get_str(v, comp, sub, "do", true);
    json_t *with = get(v, comp, sub, "with", true);
    char item[PATH_MAX_LEN];
    sub_path(item, sizeof item, sub, "do");
    if (kind && !flow_kind_is_effect(kind)) {
        bad(v, item, AT_VALUE, "'%s' is not an effect kind (email.send, webhook.post)", kind);
        return;
    }
    if (!kind || !with)
        return;
    Buf wp;
    buf_init(&wp, 0);
    buf_printf(&wp, "%s.with", sub);
    check_templates(v, with, &wp, 0);
    buf_done(&wp);
    const FlowStepKind *k = flow_step_kind_find(kind);
    if (k)
        check_kind_with(v, sub, k, with);
    s->compensate = json_pack("{s:s, s:O}", "do", kind, "with", with);
}

static void check_step(V *v, const json_t *st, size_t i, FlowWorkflow *w)
{
    static const char *const keys[] = { "id",       "do",       "with",    "if",
                                        "needs",    "retry",    "timeout", "on_error",
                                        "approval", "purpose",  "compensate", NULL };
    static const char *const ckeys[] = { "id",       "do",         "with",    "if",
                                         "needs",    "retry",      "timeout_ms", "on_error",
                                         "approval", "purpose",    "compensate", NULL };
    FlowStepDef *s = &w->steps[i];
    char path[64], sub[128];
    snprintf(path, sizeof path, "steps[%zu]", i);
    s->backoff_ms = 1000;
    s->max_delay_ms = 3600000;
    s->on_error = FLOW_ON_ERROR_FAIL;
    if (!json_is_object(st)) {
        bad(v, path, AT_VALUE, "a step must be a mapping, not %s", core_json_type_name(st));
        s->with = json_object();
        return;
    }
    check_keys(v, st, path, v->canonical ? ckeys : keys);

    const char *id = get_str(v, st, path, "id", true);
    if (id) {
        snprintf(sub, sizeof sub, "%s.id", path);
        if (!flow__name_ok(id))
            bad(v, sub, AT_VALUE, "'%s': use 1-%d of a-z, 0-9, - and _", id, FLOW_NAME_MAX);
        for (size_t j = 0; j < i; j++)
            if (w->steps[j].id && !strcmp(w->steps[j].id, id)) {
                bad(v, sub, AT_VALUE, "duplicate step id '%s' (also steps[%zu])", id, j);
                break;
            }
        s->id = xstrdup(id);
    }

    const char *kind = get_str(v, st, path, "do", true);
    const FlowStepKind *k = NULL;
    if (kind) {
        k = flow_step_kind_find(kind);
        if (!k) {
            char known[256];
            flow_step_kinds_list(known, sizeof known);
            snprintf(sub, sizeof sub, "%s.do", path);
            bad(v, sub, AT_VALUE, "unknown step kind '%s' (known: %s)", kind, known);
        }
        s->kind = xstrdup(kind);
    }

    json_t *with = get(v, st, path, "with", false);
    s->with = with ? json_deep_copy(with) : json_object();
    if (with) {
        Buf wp;
        buf_init(&wp, 0);
        buf_printf(&wp, "%s.with", path);
        check_templates(v, with, &wp, 0);
        buf_done(&wp);
    }
    if (k)
        check_kind_with(v, path, k, s->with);

    const char *cond = get_str(v, st, path, "if", false);
    if (cond) {
        snprintf(sub, sizeof sub, "%s.if", path);
        check_lua(v, sub, cond, LUA_EXPR);
        s->if_expr = xstrdup(cond);
    }

    json_t *needs = get(v, st, path, "needs", false);
    snprintf(sub, sizeof sub, "%s.needs", path);
    if (!needs && !json_object_get(st, "needs") && i > 0) {
        s->needs = xcalloc(1, sizeof *s->needs);
        s->n_needs = 1; /* filled with the id of the step before, once known */
    } else if (json_is_string(needs)) {
        s->needs = xcalloc(1, sizeof *s->needs);
        s->needs[s->n_needs++] = xstrdup(json_string_value(needs));
    } else if (json_is_array(needs)) {
        s->needs = xcalloc(json_array_size(needs) + 1, sizeof *s->needs);
        for (size_t j = 0; j < json_array_size(needs); j++) {
            json_t *n = json_array_get(needs, j);
            char item[PATH_MAX_LEN];
            snprintf(item, sizeof item, "%s[%zu]", sub, j);
            if (!json_is_string(n)) {
                bad(v, item, AT_VALUE, "must be a step id, not %s", core_json_type_name(n));
                continue;
            }
            bool dup = false;
            for (size_t m = 0; m < s->n_needs; m++)
                dup |= !strcmp(s->needs[m], json_string_value(n));
            if (dup)
                bad(v, item, AT_VALUE, "'%s' is named twice", json_string_value(n));
            else
                s->needs[s->n_needs++] = xstrdup(json_string_value(n));
        }
    } else if (needs) {
        bad(v, sub, AT_VALUE, "must be a step id or a list of them, not %s",
            core_json_type_name(needs));
    }

    json_t *retry = get(v, st, path, "retry", false);
    snprintf(sub, sizeof sub, "%s.retry", path);
    if (retry && !json_is_object(retry)) {
        bad(v, sub, AT_VALUE, "must be a mapping {max: N, backoff: 1s, max_delay: 1h}, not %s",
            core_json_type_name(retry));
    } else if (retry) {
        static const char *const rkeys[] = { "max", "backoff", "max_delay", NULL };
        static const char *const crkeys[] = { "max", "backoff_ms", "max_delay_ms", NULL };
        check_keys(v, retry, sub, v->canonical ? crkeys : rkeys);
        json_t *max = get(v, retry, sub, "max", true);
        if (max) {
            json_int_t n = json_is_integer(max) ? json_integer_value(max) : -1;
            char mp[PATH_MAX_LEN];
            snprintf(mp, sizeof mp, "%s.max", sub);
            if (n < 0 || n > FLOW_RETRY_MAX)
                bad(v, mp, AT_VALUE, "must be an integer from 0 to %d", FLOW_RETRY_MAX);
            else
                s->retry_max = (int)n;
        }
        get_duration(v, retry, sub, "backoff", "backoff_ms", false, &s->backoff_ms);
        bool md = get_duration(v, retry, sub, "max_delay", "max_delay_ms", false,
                               &s->max_delay_ms);
        if (md && s->max_delay_ms < s->backoff_ms) {
            char mp[PATH_MAX_LEN];
            snprintf(mp, sizeof mp, "%s.%s", sub, v->canonical ? "max_delay_ms" : "max_delay");
            bad(v, mp, AT_VALUE, "must not be shorter than the backoff");
        }
    }
    get_duration(v, st, path, "timeout", "timeout_ms", true, &s->timeout_ms);

    const char *oe = get_str(v, st, path, "on_error", false);
    if (oe) {
        int found = -1;
        for (int j = 0; on_error_names[j]; j++)
            if (!strcmp(oe, on_error_names[j]))
                found = j;
        snprintf(sub, sizeof sub, "%s.on_error", path);
        if (found < 0)
            bad(v, sub, AT_VALUE, "'%s' is not one of: fail, continue, inbox", oe);
        else
            s->on_error = (FlowOnError)found;
    }
    check_effect_keys(v, st, path, s);
}

/* Resolves needs to indexes and orders the steps (Kahn's algorithm, the
 * lowest index first among the ready ones); names a cycle if there is one. */
static void order_steps(V *v, FlowWorkflow *w)
{
    size_t n = w->n_steps;
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        FlowStepDef *s = &w->steps[i];
        s->need_idx = xcalloc(s->n_needs + 1, sizeof *s->need_idx);
        for (size_t j = 0; j < s->n_needs; j++) {
            size_t found = n;
            for (size_t m = 0; m < n && found == n; m++)
                if (w->steps[m].id && !strcmp(w->steps[m].id, s->needs[j]))
                    found = m;
            if (found == n) {
                /* a single string has no [j] of its own: pos_find falls back */
                char item[PATH_MAX_LEN];
                snprintf(item, sizeof item, "steps[%zu].needs[%zu]", i, j);
                bad(v, item, AT_VALUE, "unknown step '%s'", s->needs[j]);
                ok = false;
            }
            s->need_idx[j] = found;
        }
    }
    w->order = xcalloc(n + 1, sizeof *w->order);
    if (!ok)
        return;
    bool *done = xcalloc(n + 1, sizeof *done);
    size_t k = 0;
    for (bool progress = true; progress && k < n;) {
        progress = false;
        for (size_t i = 0; i < n; i++) {
            if (done[i])
                continue;
            bool ready = true;
            for (size_t j = 0; j < w->steps[i].n_needs; j++)
                ready &= done[w->steps[i].need_idx[j]];
            if (ready) {
                done[i] = true;
                w->order[k++] = i;
                progress = true;
                break;
            }
        }
    }
    if (k < n) {
        /* Every step left waits on another step left: walk the first need
         * until a step repeats, which closes the cycle. */
        size_t *seen_at = xcalloc(n, sizeof *seen_at), *walk = xcalloc(n + 1, sizeof *walk);
        size_t cur = 0, len = 0;
        while (done[cur])
            cur++;
        for (;;) {
            if (seen_at[cur])
                break;
            walk[len++] = cur;
            seen_at[cur] = len;
            FlowStepDef *s = &w->steps[cur];
            size_t next = cur;
            for (size_t j = 0; j < s->n_needs; j++)
                if (!done[s->need_idx[j]]) {
                    next = s->need_idx[j];
                    break;
                }
            cur = next;
        }
        Buf b;
        buf_init(&b, 0);
        for (size_t i = seen_at[cur] - 1; i < len; i++)
            buf_printf(&b, "%s -> ", w->steps[walk[i]].id);
        buf_puts(&b, w->steps[cur].id);
        /* The message names `steps`; the position is the `needs` (or the id)
         * of the step where the walk closed the cycle. */
        char where[64];
        snprintf(where, sizeof where, "steps[%zu].needs", cur);
        if (!v->index || !json_object_get(v->index, where))
            snprintf(where, sizeof where, "steps[%zu].id", cur);
        const Pos *p = pos_find(v, where);
        char msg[1024];
        snprintf(msg, sizeof msg, "steps: needs form a cycle: %s", buf_cstr(&b));
        add_problem(v, p ? p->line : 0, p ? p->col : 0, msg);
        buf_done(&b);
        free(seen_at);
        free(walk);
    }
    free(done);
}

static void validate(V *v, const json_t *src, FlowWorkflow *w, const char *expect_name)
{
    static const char *const keys[] = { "name",        "description", "enabled", "on",
                                        "concurrency", "steps",       NULL };
    w->enabled = true;
    if (!json_is_object(src)) {
        bad(v, "", AT_VALUE, "a workflow must be a mapping (name, on, steps...), not %s",
            core_json_type_name(src));
        return;
    }
    check_keys(v, src, "", keys);
    const char *name = get_str(v, src, "", "name", true);
    if (name && !flow__name_ok(name))
        bad(v, "name", AT_VALUE, "'%s': use 1-%d of a-z, 0-9, - and _", name, FLOW_NAME_MAX);
    else if (name && expect_name && strcmp(name, expect_name))
        bad(v, "name", AT_VALUE, "'%s' differs from the file name '%s'", name, expect_name);
    w->name = name ? xstrdup(name) : NULL;
    const char *desc = get_str(v, src, "", "description", false);
    w->description = desc ? xstrdup(desc) : NULL;
    json_t *en = get(v, src, "", "enabled", false);
    if (en && !json_is_boolean(en))
        bad(v, "enabled", AT_VALUE, "must be true or false, not %s", core_json_type_name(en));
    else if (en)
        w->enabled = json_is_true(en);

    json_t *on = get(v, src, "", "on", true);
    if (on)
        check_trigger(v, on, w);
    const char *conc = get_str(v, src, "", "concurrency", false);
    if (conc) {
        check_lua(v, "concurrency", conc, LUA_EXPR);
        w->concurrency = xstrdup(conc);
    }

    json_t *steps = get(v, src, "", "steps", true);
    if (!steps)
        return;
    if (!json_is_array(steps) || json_array_size(steps) == 0 ||
        json_array_size(steps) > FLOW_MAX_STEPS) {
        bad(v, "steps", AT_KEY, "must be a list of 1 to %d steps%s%s", FLOW_MAX_STEPS,
            json_is_array(steps) ? "" : ", not ",
            json_is_array(steps) ? "" : core_json_type_name(steps));
        return;
    }
    w->n_steps = json_array_size(steps);
    w->steps = xcalloc(w->n_steps, sizeof *w->steps);
    for (size_t i = 0; i < w->n_steps; i++)
        check_step(v, json_array_get(steps, i), i, w);
    /* The default need: the step before. */
    for (size_t i = 1; i < w->n_steps; i++) {
        FlowStepDef *s = &w->steps[i];
        json_t *st = json_array_get(steps, i);
        if (json_is_object(st) && !json_object_get(st, "needs") && s->n_needs == 1 &&
            !s->needs[0]) {
            if (w->steps[i - 1].id)
                s->needs[0] = xstrdup(w->steps[i - 1].id);
            else
                s->n_needs = 0;
        }
    }
    bool ids_ok = true;
    for (size_t i = 0; i < w->n_steps; i++)
        ids_ok &= w->steps[i].id != NULL;
    if (ids_ok)
        order_steps(v, w);
    /* on_reject: STEP names a step that needs the gated one: the branch a
     * rejection takes. */
    for (size_t i = 0; ids_ok && i < w->n_steps; i++) {
        const char *to = json_string_value(json_object_get(w->steps[i].approval, "on_reject"));
        if (!to || !strcmp(to, "cancel") || !strcmp(to, "compensate"))
            continue;
        const FlowStepDef *t = NULL;
        for (size_t j = 0; j < w->n_steps; j++)
            if (!strcmp(w->steps[j].id, to))
                t = &w->steps[j];
        bool needs = false;
        for (size_t j = 0; t && j < t->n_needs; j++)
            needs |= t->needs[j] && !strcmp(t->needs[j], w->steps[i].id);
        char where[PATH_MAX_LEN];
        snprintf(where, sizeof where, "steps[%zu].approval.on_reject", i);
        if (!t)
            bad(v, where, AT_VALUE, "no step '%s' to go to", to);
        else if (!needs)
            bad(v, where, AT_VALUE, "step '%s' must list '%s' in its needs to be where a "
                                    "rejection goes", to, w->steps[i].id);
    }
}

/* ---- the canonical definition ------------------------------------------ */

static json_t *definition_of(const FlowWorkflow *w)
{
    json_t *def = json_object(), *on = json_object(), *steps = json_array();
    json_object_set_new(def, "name", json_string(w->name));
    if (w->description)
        json_object_set_new(def, "description", json_string(w->description));
    json_object_set_new(def, "enabled", json_boolean(w->enabled));
    if (w->on_event) {
        json_object_set_new(on, "event", json_string(w->on_event));
        if (w->on_where)
            json_object_set_new(on, "where", json_string(w->on_where));
    } else {
        json_object_set_new(on, "schedule", json_string(w->on_schedule));
        json_object_set_new(on, "timezone", json_string(w->timezone));
    }
    json_object_set_new(def, "on", on);
    if (w->concurrency)
        json_object_set_new(def, "concurrency", json_string(w->concurrency));
    for (size_t i = 0; i < w->n_steps; i++) {
        const FlowStepDef *s = &w->steps[i];
        json_t *st = json_object(), *needs = json_array();
        json_object_set_new(st, "id", json_string(s->id));
        json_object_set_new(st, "do", json_string(s->kind));
        json_object_set_new(st, "with", json_deep_copy(s->with));
        if (s->if_expr)
            json_object_set_new(st, "if", json_string(s->if_expr));
        for (size_t j = 0; j < s->n_needs; j++)
            json_array_append_new(needs, json_string(s->needs[j]));
        json_object_set_new(st, "needs", needs);
        json_object_set_new(st, "retry",
                            json_pack("{s:i, s:I, s:I}", "max", s->retry_max, "backoff_ms",
                                      (json_int_t)s->backoff_ms, "max_delay_ms",
                                      (json_int_t)s->max_delay_ms));
        json_object_set_new(st, "timeout_ms", json_integer((json_int_t)s->timeout_ms));
        json_object_set_new(st, "on_error", json_string(on_error_names[s->on_error]));
        if (s->approval)
            json_object_set(st, "approval", s->approval);
        if (s->purpose)
            json_object_set_new(st, "purpose", json_string(s->purpose));
        if (s->compensate)
            json_object_set(st, "compensate", s->compensate);
        json_array_append_new(steps, st);
    }
    json_object_set_new(def, "steps", steps);
    return def;
}

static int finish(FlowWorkflow *w, Err *err)
{
    w->definition = definition_of(w);
    Buf b;
    buf_init(&b, DEFINITION_MAX_BYTES);
    int rc = core_json_canonical(w->definition, &b);
    if (rc < 0) {
        buf_done(&b);
        return err_set(err, ERR_TOOBIG, "%s: the definition is larger than %u bytes", w->path,
                       DEFINITION_MAX_BYTES);
    }
    core_sha256_hex(b.ptr, b.len, w->version);
    buf_done(&b);
    return 0;
}

void flow_workflow_free(FlowWorkflow *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_steps; i++) {
        FlowStepDef *s = &w->steps[i];
        free(s->id);
        free(s->kind);
        json_decref(s->with);
        free(s->if_expr);
        json_decref(s->approval);
        free(s->purpose);
        json_decref(s->compensate);
        for (size_t j = 0; j < s->n_needs; j++)
            free(s->needs[j]);
        free(s->needs);
        free(s->need_idx);
    }
    free(w->steps);
    free(w->order);
    free(w->name);
    free(w->description);
    free(w->on_event);
    free(w->on_where);
    free(w->on_schedule);
    free(w->timezone);
    free(w->concurrency);
    json_decref(w->definition);
    free(w->path);
    free(w);
}

/* ---- entry points ------------------------------------------------------ */

int flow__workflow_parse(const char *text, size_t len, const char *path, const char *expect_name,
                         FlowWorkflow **ret, char **ret_report, Err *err)
{
    if (ret_report)
        *ret_report = NULL;
    if (len > FLOW_WORKFLOW_MAX_BYTES)
        return err_set(err, ERR_TOOBIG, "%s: larger than %d bytes", path,
                       FLOW_WORKFLOW_MAX_BYTES);
    flow_step_kinds_builtin();
    V v = { .file = path, .text = text, .len = len, .index = json_object() };
    FlowWorkflow *w = xcalloc(1, sizeof *w);
    w->path = xstrdup(path);
    json_t *src = NULL;
    int rc = 0;
    struct fy_document *doc = NULL;
    if (memchr(text, '\0', len)) {
        add_problem(&v, 0, 0, "a NUL byte in the file");
        goto out;
    }
    if (!core_yaml_has_content(text, len)) {
        add_problem(&v, 1, 1, "the file is empty (a workflow needs name, on and steps)");
        goto out;
    }
    doc = yaml_build(&v, text, len);
    if (!doc)
        goto out;
    struct fy_node *root = fy_document_root(doc);
    Buf p;
    buf_init(&p, 0);
    buf_puts(&p, "");
    src = root ? to_json(&v, root, NULL, &p, 0) : NULL;
    buf_done(&p);
    if (!src || json_is_null(src)) {
        add_problem(&v, 1, 1, "the file is empty (a workflow needs name, on and steps)");
        goto out;
    }
    if (src)
        validate(&v, src, w, expect_name);
out:
    if (v.n_probs) {
        char *rep = report(&v, err);
        if (ret_report)
            *ret_report = rep;
        else
            free(rep);
        rc = ERR_INVAL;
    } else {
        rc = finish(w, err);
    }
    json_decref(src);
    if (doc)
        fy_document_destroy(doc);
    v_done(&v);
    if (rc < 0) {
        flow_workflow_free(w);
        return rc;
    }
    *ret = w;
    return 0;
}

int flow_workflow_parse_report(const char *text, size_t len, const char *path,
                               FlowWorkflow **ret, char **ret_report, Err *err)
{
    return flow__workflow_parse(text, len, path, NULL, ret, ret_report, err);
}

int flow_workflow_parse(const char *text, size_t len, const char *path, FlowWorkflow **ret,
                        Err *err)
{
    return flow__workflow_parse(text, len, path, NULL, ret, NULL, err);
}

int flow_workflow_load(const char *path, FlowWorkflow **ret, Err *err)
{
    struct stat st;
    FILE *f = fopen(path, "rb");
    if (!f || fstat(fileno(f), &st) < 0) {
        int e = errno;
        if (f)
            fclose(f);
        return err_set(err, ERR_IO, "%s: %s", path, strerror(e));
    }
    if (st.st_size > FLOW_WORKFLOW_MAX_BYTES) {
        fclose(f);
        return err_set(err, ERR_TOOBIG, "%s: larger than %d bytes", path,
                       FLOW_WORKFLOW_MAX_BYTES);
    }
    char *text = xmalloc((size_t)st.st_size + 1);
    size_t len = fread(text, 1, (size_t)st.st_size, f);
    int bad_read = ferror(f);
    fclose(f);
    int rc;
    if (bad_read)
        rc = err_set(err, ERR_IO, "%s: read failed", path);
    else
        rc = flow_workflow_parse(text, len, path, ret, err);
    free(text);
    return rc;
}

int flow_workflow_from_json(const json_t *def, FlowWorkflow **ret, Err *err)
{
    flow_step_kinds_builtin();
    V v = { .canonical = true };
    FlowWorkflow *w = xcalloc(1, sizeof *w);
    validate(&v, def, w, NULL);
    int rc = 0;
    if (v.n_probs) {
        free(report(&v, err));
        rc = ERR_INVAL;
    } else {
        Buf p;
        buf_init(&p, 0);
        buf_printf(&p, "json:%s", w->name);
        w->path = buf_steal(&p);
        rc = finish(w, err);
    }
    v_done(&v);
    if (rc < 0) {
        flow_workflow_free(w);
        return rc;
    }
    *ret = w;
    return 0;
}
