/* The catalog of a data dir's workflows (workflow.h): the built-ins, each
 * replaced by DATA/workflows/NAME.yaml when that file exists and validates,
 * plus the other files there. A file that fails is reported and left out;
 * only an unreadable directory fails the whole load. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/buf.h"
#include "flow/flow_lua.h"
#include "flow/workflow.h"
#include "flow/workflow_int.h"


static void report_error(void (*on_error)(void *, const char *, const Err *), void *ctx,
                         const char *path, const Err *e)
{
    if (on_error)
        on_error(ctx, path, e);
}

/* Puts w into the catalog, replacing one of the same name. */
static void catalog_put(FlowCatalog *c, size_t *cap, FlowWorkflow *w)
{
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->items[i]->name, w->name)) {
            flow_workflow_free(c->items[i]);
            c->items[i] = w;
            return;
        }
    if (c->n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        c->items = xrealloc(c->items, *cap * sizeof *c->items);
    }
    c->items[c->n++] = w;
}

static int wf_cmp(const void *a, const void *b)
{
    return strcmp((*(FlowWorkflow *const *)a)->name, (*(FlowWorkflow *const *)b)->name);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "NAME.yaml" -> "NAME", or NULL when the file is not a workflow file. */
static char *yaml_stem(const char *file)
{
    size_t n = strlen(file);
    if (file[0] == '.' || n <= 5 || strcmp(file + n - 5, ".yaml"))
        return NULL;
    return xstrndup(file, n - 5);
}

/* Reads a whole file of at most max bytes; ERR_IO or ERR_TOOBIG. */
static int read_file(const char *path, size_t max, char **ret, size_t *ret_len, Err *err)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) < 0) {
        int e = errno;
        if (f)
            fclose(f);
        return err_set(err, ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
        fclose(f);
        if (!S_ISREG(st.st_mode))
            return err_set(err, ERR_IO, "%s: not a regular file", path);
        return err_set(err, ERR_TOOBIG, "%s: larger than %zu bytes", path, max);
    }
    char *text = xmalloc((size_t)st.st_size + 1);
    size_t len = fread(text, 1, (size_t)st.st_size, f);
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(text);
        return err_set(err, ERR_IO, "%s: read failed", path);
    }
    text[len] = '\0';
    *ret = text;
    *ret_len = len;
    return 0;
}

int flow_catalog_load(const char *data_dir, FlowCatalog *ret,
                      void (*on_error)(void *ctx, const char *path, const Err *e), void *ctx,
                      Err *err)
{
    FlowCatalog c = { 0 };
    size_t cap = 0;
    int rc = 0;
    char **files = NULL;
    size_t n_files = 0, files_cap = 0;
    DIR *d = NULL;
    Buf path;
    buf_init(&path, 0);

    for (size_t i = 0; i < flow__builtins_count; i++) {
        const EmbeddedFile *f = &flow__builtins[i];
        char *stem = yaml_stem(f->name);
        buf_clear(&path);
        buf_printf(&path, "builtin:%s", stem ? stem : f->name);
        FlowWorkflow *w = NULL;
        Err e = { 0 };
        if (!stem)
            err_set(&e, ERR_INVAL, "%s: not a .yaml file", f->name);
        else if (flow__workflow_parse(f->data, f->len, buf_cstr(&path), stem, &w, NULL, &e) ==
                 0) {
            w->builtin = true;
            catalog_put(&c, &cap, w);
        }
        if (e.code)
            report_error(on_error, ctx, buf_cstr(&path), &e);
        free(stem);
    }

    if (data_dir) {
        buf_clear(&path);
        buf_printf(&path, "%s/workflows", data_dir);
        d = opendir(buf_cstr(&path));
        if (!d && errno != ENOENT) {
            rc = err_set(err, ERR_IO, "%s: %s", buf_cstr(&path), strerror(errno));
            goto out;
        }
    }
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char *stem = yaml_stem(de->d_name);
        if (!stem)
            continue;
        free(stem);
        if (n_files == files_cap) {
            files_cap = files_cap ? files_cap * 2 : 16;
            files = xrealloc(files, files_cap * sizeof *files);
        }
        files[n_files++] = xstrdup(de->d_name);
    }
    if (n_files)
        qsort(files, n_files, sizeof *files, str_cmp);
    for (size_t i = 0; i < n_files; i++) {
        buf_clear(&path);
        buf_printf(&path, "%s/workflows/%s", data_dir, files[i]);
        Err e = { 0 };
        if (i >= FLOW_CATALOG_MAX_FILES) {
            err_set(&e, ERR_TOOBIG, "%s: left out: more than %d workflow files",
                    buf_cstr(&path), FLOW_CATALOG_MAX_FILES);
            report_error(on_error, ctx, buf_cstr(&path), &e);
            continue;
        }
        char *text = NULL, *stem = yaml_stem(files[i]);
        size_t len = 0;
        FlowWorkflow *w = NULL;
        if (read_file(buf_cstr(&path), FLOW_WORKFLOW_MAX_BYTES, &text, &len, &e) == 0 &&
            flow__workflow_parse(text, len, buf_cstr(&path), stem, &w, NULL, &e) == 0)
            catalog_put(&c, &cap, w);
        else
            report_error(on_error, ctx, buf_cstr(&path), &e);
        free(text);
        free(stem);
    }
    if (c.n)
        qsort(c.items, c.n, sizeof *c.items, wf_cmp);
out:
    if (d)
        closedir(d);
    for (size_t i = 0; i < n_files; i++)
        free(files[i]);
    free(files);
    buf_done(&path);
    if (rc < 0) {
        flow_catalog_done(&c);
        return rc;
    }
    *ret = c;
    return 0;
}

void flow_catalog_done(FlowCatalog *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        flow_workflow_free(c->items[i]);
    free(c->items);
    c->items = NULL;
    c->n = 0;
}

const FlowWorkflow *flow_catalog_find(const FlowCatalog *c, const char *name)
{
    size_t lo = 0, hi = c ? c->n : 0;
    while (lo < hi) { /* items are sorted by name */
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(c->items[mid]->name, name);
        if (cmp == 0)
            return c->items[mid];
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Appends one problem line to out. */
static void line(Buf *out, const char *path, size_t step, const char *key, const char *msg)
{
    buf_printf(out, "%s%s: steps[%zu].with.%s: %s", out->len ? "\n" : "", path, step, key, msg);
}

int flow_workflow_check_refs(const FlowWorkflow *w, const char *data_dir,
                             const FlowCatalog *cat, Err *err)
{
    Buf out;
    buf_init(&out, 0);
    char msg[ERR_MSG_MAX + 64];
    for (size_t i = 0; i < w->n_steps; i++) {
        const FlowStepDef *s = &w->steps[i];
        if (!strcmp(s->kind, "lua") && data_dir) {
            const char *name = json_string_value(json_object_get(s->with, "script"));
            if (!name || !flow__name_ok(name))
                continue; /* validation refused it already */
            Buf sp;
            buf_init(&sp, 0);
            buf_printf(&sp, "%s/agents/%s.lua", data_dir, name);
            char *src = NULL;
            size_t len = 0;
            Err e = { 0 };
            if (read_file(buf_cstr(&sp), FLOW_SCRIPT_MAX_BYTES, &src, &len, &e) < 0) {
                if (e.code == ERR_TOOBIG)
                    snprintf(msg, sizeof msg, "%s", e.msg);
                else
                    snprintf(msg, sizeof msg, "no script DATA/agents/%s.lua", name);
                line(&out, w->path, i, "script", msg);
            } else {
                char chunk[FLOW_NAME_MAX + 16];
                snprintf(chunk, sizeof chunk, "%s.lua", name);
                int l = 0;
                if (flow_lua_check_script(src, len, chunk, &l, &e) < 0) {
                    snprintf(msg, sizeof msg, "agents/%s.lua:%d: %s", name, l,
                             flow__lua_message(e.msg));
                    line(&out, w->path, i, "script", msg);
                }
            }
            free(src);
            buf_done(&sp);
        } else if (!strcmp(s->kind, "task.start") && cat) {
            const char *name = json_string_value(json_object_get(s->with, "workflow"));
            if (name && !flow_catalog_find(cat, name)) {
                snprintf(msg, sizeof msg, "no workflow named '%s'", name);
                line(&out, w->path, i, "workflow", msg);
            }
        }
    }
    int rc = 0;
    if (out.len)
        rc = err_set(err, ERR_INVAL, "%s", buf_cstr(&out));
    buf_done(&out);
    return rc;
}
