/* bureau.yaml loader over libfyaml. Each known key is one row of the table
 * below; the walk refuses anything the table does not name. */
#include "core/config.h"

#include <errno.h>
#include <stdarg.h>
#include <libfyaml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"

const char core_config_default_yaml[] =
    "# Bureau configuration. Every setting is optional: the values shown are the\n"
    "# defaults. Uncomment a line to change it. Secrets, API tokens and the\n"
    "# sandbox/production mode are kept in the database, never in this file.\n"
    "\n"
    "# store:\n"
    "#   # full: every acknowledged event survives a power loss (fsync per commit).\n"
    "#   # normal: survives a process crash, may lose the last moments before a\n"
    "#   # power loss, and commits faster.\n"
    "#   durability: full\n"
    "#   # How long a writer waits for another process's transaction (ms).\n"
    "#   busy_timeout_ms: 10000\n"
    "\n"
    "# ledger:\n"
    "#   # Largest canonical `data` object of one event, in bytes.\n"
    "#   max_data_bytes: 1048576\n"
    "#   # Most events the writer commits in one transaction (group commit).\n"
    "#   group_commit_max: 1024\n"
    "\n"
    "# log:\n"
    "#   # debug | info | warn | error | off (JSON lines on stderr)\n"
    "#   level: info\n";

void core_config_defaults(Config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->durability_normal = false;
    cfg->busy_timeout_ms = 10000;
    cfg->max_data_bytes = 1024 * 1024;
    cfg->group_commit_max = 1024;
    cfg->log_level = LOG_INFO;
}

typedef enum { KEY_INT, KEY_ENUM } KeyKind;

typedef struct KeyDef {
    const char *section, *key;
    KeyKind kind;
    long long min, max;        /* KEY_INT */
    const char *const *values; /* KEY_ENUM, NULL-terminated */
} KeyDef;

static const char *const durability_values[] = { "full", "normal", NULL };
static const char *const level_values[] = { "debug", "info", "warn", "error", "off", NULL };

static const KeyDef keys[] = {
    { "store", "durability", KEY_ENUM, 0, 0, durability_values },
    { "store", "busy_timeout_ms", KEY_INT, 0, 600000, NULL },
    { "ledger", "max_data_bytes", KEY_INT, 1024, 64 * 1024 * 1024, NULL },
    { "ledger", "group_commit_max", KEY_INT, 1, 100000, NULL },
    { "log", "level", KEY_ENUM, 0, 0, level_values },
};

static void set_value(Config *cfg, const KeyDef *k, long long iv, int ev)
{
    if (!strcmp(k->key, "durability"))
        cfg->durability_normal = ev == 1;
    else if (!strcmp(k->key, "busy_timeout_ms"))
        cfg->busy_timeout_ms = (int)iv;
    else if (!strcmp(k->key, "max_data_bytes"))
        cfg->max_data_bytes = (size_t)iv;
    else if (!strcmp(k->key, "group_commit_max"))
        cfg->group_commit_max = (int)iv;
    else if (!strcmp(k->key, "level"))
        cfg->log_level = (LogLevel)ev;
}

static void node_pos(struct fy_node *n, int *line, int *col)
{
    struct fy_token *t = n ? fy_node_get_scalar_token(n) : NULL;
    const struct fy_mark *m = t ? fy_token_start_mark(t) : NULL;
    *line = m ? m->line + 1 : 0;
    *col = m ? m->column + 1 : 0;
}

static int at(Err *err, const char *path, struct fy_node *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int at(Err *err, const char *path, struct fy_node *n, const char *fmt, ...)
{
    int line, col;
    node_pos(n, &line, &col);
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (line)
        return err_set(err, ERR_CONFIG, "%s:%d:%d: %s", path, line, col, what);
    return err_set(err, ERR_CONFIG, "%s: %s", path, what);
}

static int load_value(Config *cfg, const KeyDef *k, struct fy_node *key, struct fy_node *val,
                      const char *path, Err *err)
{
    char full[96];
    snprintf(full, sizeof full, "%s.%s", k->section, k->key);
    if (!val || !fy_node_is_scalar(val))
        return at(err, path, key, "'%s' must be a single value", full);
    size_t len;
    const char *s = fy_node_get_scalar(val, &len);
    char text[64];
    if (!s || len >= sizeof text)
        return at(err, path, val, "'%s': value too long", full);
    memcpy(text, s, len);
    text[len] = '\0';
    if (k->kind == KEY_INT) {
        char *end;
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (errno || end == text || *end || v < k->min || v > k->max) {
            char range[64];
            snprintf(range, sizeof range, "%lld..%lld", k->min, k->max);
            return at(err, path, val, "'%s' must be an integer in %s", full, range);
        }
        set_value(cfg, k, v, 0);
        return 0;
    }
    for (int i = 0; k->values[i]; i++)
        if (!strcmp(text, k->values[i])) {
            set_value(cfg, k, 0, i);
            return 0;
        }
    char allowed[128] = "";
    for (int i = 0; k->values[i]; i++) {
        strncat(allowed, i ? " | " : "", sizeof allowed - strlen(allowed) - 1);
        strncat(allowed, k->values[i], sizeof allowed - strlen(allowed) - 1);
    }
    return at(err, path, val, "'%s' must be one of: %s", full, allowed);
}

static int load_section(Config *cfg, const char *section, struct fy_node *key,
                        struct fy_node *map, const char *path, Err *err)
{
    if (!map || fy_node_is_null(map))
        return 0;
    if (!fy_node_is_mapping(map))
        return at(err, path, key, "section '%s' must be a mapping", section);
    void *iter = NULL;
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(map, &iter))) {
        struct fy_node *k = fy_node_pair_key(p);
        const char *name = k ? fy_node_get_scalar0(k) : NULL;
        const KeyDef *def = NULL;
        for (size_t i = 0; name && i < sizeof keys / sizeof keys[0]; i++)
            if (!strcmp(keys[i].section, section) && !strcmp(keys[i].key, name))
                def = &keys[i];
        if (!def)
            return at(err, path, k, "unknown key '%s.%s'", section, name ? name : "?");
        int rc = load_value(cfg, def, k, fy_node_pair_value(p), path, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* In "SOURCE:LINE:COL: error: MESSAGE\n...", finds LINE and COL, cuts the
 * message at its newline and returns it (NULL when the text has no error). */
static const char *diag_position(char *text, int *line, int *col)
{
    char *e = text ? strstr(text, ": error: ") : NULL;
    if (!e)
        return NULL;
    char *msg = e + strlen(": error: "), *nl = strchr(msg, '\n');
    if (nl)
        *nl = '\0';
    *e = '\0';
    char *c = strrchr(text, ':');
    if (c) {
        *col = atoi(c + 1);
        *c = '\0';
        char *l = strrchr(text, ':');
        if (l)
            *line = atoi(l + 1);
    }
    return msg;
}

static bool has_content(const char *text)
{
    for (const char *p = text; *p;) {
        while (*p == ' ' || *p == '\t' || *p == '\r')
            p++;
        if (*p && *p != '#' && *p != '\n')
            return true;
        while (*p && *p != '\n')
            p++;
        if (*p)
            p++;
    }
    return false;
}

int core_config_load(const char *path, Config *cfg, Err *err)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        return err_set(err, ERR_CONFIG, "%s: %s", path, strerror(errno));
    }
    if (st.st_size > CONFIG_MAX_BYTES)
        return err_set(err, ERR_CONFIG, "%s: larger than %d bytes", path, CONFIG_MAX_BYTES);

    char *text = xmalloc((size_t)st.st_size + 1);
    FILE *f = fopen(path, "rb");
    size_t len = f ? fread(text, 1, (size_t)st.st_size, f) : 0;
    if (f)
        fclose(f);
    text[len] = '\0';
    if (!f) {
        free(text);
        return err_set(err, ERR_CONFIG, "%s: %s", path, strerror(errno));
    }
    if (!has_content(text)) { /* empty or all comments: the defaults apply */
        free(text);
        return 0;
    }
    /* libfyaml reports through a FILE: capture it to name line and column. */
    char *diag_text = NULL;
    size_t diag_len = 0;
    FILE *ms = open_memstream(&diag_text, &diag_len);
    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = ms;
    dcfg.colorize = false;
    dcfg.show_source = false;
    dcfg.show_position = true;
    dcfg.show_type = false;
    dcfg.show_module = false;
    struct fy_diag *diag = ms ? fy_diag_create(&dcfg) : NULL;
    if (!diag) {
        if (ms)
            fclose(ms);
        free(diag_text);
        free(text);
        return err_set(err, ERR_CONFIG, "%s: cannot create YAML diagnostics", path);
    }
    struct fy_parse_cfg pcfg = { .flags = FYPCF_QUIET | FYPCF_DEFAULT_PARSE, .diag = diag };
    struct fy_document *doc = fy_document_build_from_string(&pcfg, text, len);
    fy_diag_destroy(diag);
    fclose(ms);
    int rc = 0;
    if (!doc) {
        int line = 0, col = 0;
        const char *msg = diag_position(diag_text, &line, &col);
        rc = err_set(err, ERR_CONFIG, "%s:%d:%d: %s", path, line, col,
                     msg ? msg : "not valid YAML");
        free(diag_text);
        goto out;
    }
    free(diag_text);
    struct fy_node *root = fy_document_root(doc);
    if (!root || fy_node_is_null(root))
        goto out; /* an all-comment file */
    if (!fy_node_is_mapping(root)) {
        rc = err_set(err, ERR_CONFIG, "%s: the top level must be a mapping of sections", path);
        goto out;
    }
    void *iter = NULL;
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(root, &iter))) {
        struct fy_node *k = fy_node_pair_key(p);
        const char *name = k ? fy_node_get_scalar0(k) : NULL;
        bool known = false;
        for (size_t i = 0; name && i < sizeof keys / sizeof keys[0]; i++)
            known |= !strcmp(keys[i].section, name);
        if (!known) {
            rc = at(err, path, k, "unknown section '%s'", name ? name : "?");
            goto out;
        }
        rc = load_section(cfg, name, k, fy_node_pair_value(p), path, err);
        if (rc < 0)
            goto out;
    }
out:
    fy_document_destroy(doc);
    free(text);
    return rc;
}
