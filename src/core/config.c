/* bureau.yaml loader over libfyaml. Each known key is one row of the table
 * below; the walk refuses anything the table does not name. */
#include "core/config.h"
#include "core/yaml.h"

#include <errno.h>
#include <stddef.h>
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
    "# Reference: docs/config.md.\n"
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
    "#   level: info\n"
    "\n"
    "# server:\n"
    "#   listen: 127.0.0.1:8470\n"
    "#   threads: 0                  # 0: one per CPU core\n"
    "#   max_connections: 1000\n"
    "#   timeout_s: 30               # idle or slow clients are disconnected\n"
    "#   max_header_bytes: 16384\n"
    "#   max_body_bytes: 1048576     # one JSON event (413 above)\n"
    "#   max_batch_bytes: 16777216   # an NDJSON batch\n"
    "#   max_form_bytes: 33554432    # a form submission with its files\n"
    "#   max_file_bytes: 10485760    # one uploaded file\n"
    "\n"
    "# flow:                        # workflows: the planner and the runner\n"
    "#   workers: 0                  # step worker threads; 0: two per CPU core\n"
    "#   lease_ms: 15000             # how long a dead runner's lease keeps others out\n"
    "#   depth_max: 8                # events emitted by workflows trigger at most this deep\n"
    "#   lua_memory_bytes: 16777216  # per Lua state\n"
    "#   lua_instructions: 1000000   # per evaluation\n"
    "\n"
    "# smtp:                        # email.send (sent only in production mode)\n"
    "#   url: smtp://mail.example.com:587   # STARTTLS; or smtps://HOST:465\n"
    "#   from: you@example.com\n"
    "#   user: you@example.com\n"
    "#   password_env: BUREAU_SMTP_PASSWORD\n"
    "#   starttls: required          # required | try | never (smtp:// only)\n"
    "#   ca_file: /etc/ssl/certs/ca-certificates.crt   # default: the system's\n"
    "#   timeout_s: 30\n"
    "#   undo_window_s: 0            # hold approved mail this long (cancel from the inbox)\n"
    "\n"
    "# outbox:                      # delivery of effects\n"
    "#   max_attempts: 8             # then the effect fails for good (inbox)\n"
    "#   backoff_ms: 5000            # first retry delay, doubled each time\n"
    "#   max_delay_ms: 3600000\n"
    "#   webhook_timeout_s: 30\n"
    "\n"
    "# connectors:                  # served at POST /hooks/NAME\n"
    "#   - name: site-hook\n"
    "#     kind: webhook             # generic JSON, HMAC-SHA256 of the body\n"
    "#     secret_env: SITE_HOOK_SECRET   # or: secret: \"...\"\n"
    "#     signature_header: X-Signature  # hex or base64, optional sha256= prefix\n"
    "#     timestamp_header: X-Timestamp  # optional: sign \"TIMESTAMP.BODY\", reject stale\n"
    "#     tolerance_s: 300\n"
    "#     type: lead.created        # or: type_field: event\n"
    "#     key_header: X-Delivery-Id # or: key_field: id   (default: the body's hash)\n"
    "#     source: site              # default: the connector name\n"
    "#     consent: none             # transactional | marketing | none\n"
    "#   - name: stripe\n"
    "#     kind: stripe              # Stripe-Signature: t=...,v1=...\n"
    "#     secret_env: STRIPE_WEBHOOK_SECRET\n"
    "#     tolerance_s: 300\n"
    "#     consent: transactional\n"
    "#   - name: contact\n"
    "#     kind: form                # urlencoded or multipart, files stored by hash\n"
    "#     form: contact             # the form's name in form.submitted\n"
    "#     honeypot: website         # bots fill it; such posts are dropped\n"
    "#     redirect: https://example.com/thanks\n"
    "#     consent_field: newsletter # a checked box means marketing consent\n"
    "#     rate_limit: 10            # submissions per minute per client\n";

void core_config_defaults(Config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->durability_normal = false;
    cfg->busy_timeout_ms = 10000;
    cfg->max_data_bytes = 1024 * 1024;
    cfg->group_commit_max = 1024;
    cfg->log_level = LOG_INFO;
    snprintf(cfg->listen, sizeof cfg->listen, "127.0.0.1:8470");
    cfg->threads = 0;
    cfg->max_connections = 1000;
    cfg->timeout_s = 30;
    cfg->max_header_bytes = 16 * 1024;
    cfg->max_body_bytes = 1024 * 1024;
    cfg->max_batch_bytes = 16 * 1024 * 1024;
    cfg->max_form_bytes = 32 * 1024 * 1024;
    cfg->max_file_bytes = 10 * 1024 * 1024;
    cfg->flow_workers = 0;
    cfg->flow_lease_ms = 15000;
    cfg->flow_depth_max = 8;
    cfg->lua_memory_bytes = 16 * 1024 * 1024;
    cfg->lua_instructions = 1000000;
    cfg->smtp_timeout_s = 30;
    cfg->outbox_max_attempts = 8;
    cfg->outbox_backoff_ms = 5000;
    cfg->outbox_max_delay_ms = 3600000;
    cfg->webhook_timeout_s = 30;
}

static void connector_free(ConnectorConfig *c)
{
    char **strs[] = { &c->name, &c->secret, &c->secret_env, &c->source, &c->signature_header,
                      &c->timestamp_header, &c->type, &c->type_field, &c->key_header,
                      &c->key_field, &c->form, &c->honeypot, &c->redirect, &c->consent_field };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        free(*strs[i]);
        *strs[i] = NULL;
    }
}

void core_config_done(Config *cfg)
{
    for (size_t i = 0; i < cfg->n_connectors; i++)
        connector_free(&cfg->connectors[i]);
    free(cfg->connectors);
    cfg->connectors = NULL;
    cfg->n_connectors = 0;
}

const ConnectorConfig *core_config_connector(const Config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_connectors; i++)
        if (!strcmp(cfg->connectors[i].name, name))
            return &cfg->connectors[i];
    return NULL;
}

/* KEY_STR allocates (freed by core_config_done); KEY_BUF fills a char array
 * of max + 1 bytes in place. */
typedef enum { KEY_INT, KEY_SIZE, KEY_ENUM, KEY_BOOLENUM, KEY_STR, KEY_BUF } KeyKind;

/* One known key: where it lives (section, or for connectors the kinds it
 * applies to), its type and range, and the member it fills. */
typedef struct KeyDef {
    const char *section, *key;
    KeyKind kind;
    long long min, max;        /* KEY_INT, KEY_SIZE; KEY_STR: max length */
    const char *const *values; /* KEY_ENUM, KEY_BOOLENUM: NULL-terminated */
    size_t offset;
} KeyDef;

static const char *const durability_values[] = { "full", "normal", NULL };
static const char *const level_values[] = { "debug", "info", "warn", "error", "off", NULL };
static const char *const consent_values[] = { "none", "transactional", "marketing", NULL };
static const char *const kind_values[] = { "webhook", "stripe", "form", NULL };
static const char *const starttls_values[] = { "required", "try", "never", NULL };

#define C(m) offsetof(Config, m)
static const KeyDef keys[] = {
    { "store", "durability", KEY_BOOLENUM, 0, 0, durability_values, C(durability_normal) },
    { "store", "busy_timeout_ms", KEY_INT, 0, 600000, NULL, C(busy_timeout_ms) },
    { "ledger", "max_data_bytes", KEY_SIZE, 1024, 64 * 1024 * 1024, NULL, C(max_data_bytes) },
    { "ledger", "group_commit_max", KEY_INT, 1, 100000, NULL, C(group_commit_max) },
    { "log", "level", KEY_ENUM, 0, 0, level_values, C(log_level) },
    { "server", "listen", KEY_BUF, 0, 128, NULL, C(listen) },
    { "server", "threads", KEY_INT, 0, 256, NULL, C(threads) },
    { "server", "max_connections", KEY_INT, 1, 100000, NULL, C(max_connections) },
    { "server", "timeout_s", KEY_INT, 1, 3600, NULL, C(timeout_s) },
    { "server", "max_header_bytes", KEY_SIZE, 4096, 1024 * 1024, NULL, C(max_header_bytes) },
    { "server", "max_body_bytes", KEY_SIZE, 1024, 256LL << 20, NULL, C(max_body_bytes) },
    { "server", "max_batch_bytes", KEY_SIZE, 1024, 1LL << 30, NULL, C(max_batch_bytes) },
    { "server", "max_form_bytes", KEY_SIZE, 1024, 1LL << 30, NULL, C(max_form_bytes) },
    { "server", "max_file_bytes", KEY_SIZE, 1024, 1LL << 30, NULL, C(max_file_bytes) },
    { "flow", "workers", KEY_INT, 0, 256, NULL, C(flow_workers) },
    { "flow", "lease_ms", KEY_INT, 500, 3600000, NULL, C(flow_lease_ms) },
    { "flow", "depth_max", KEY_INT, 1, 100, NULL, C(flow_depth_max) },
    { "flow", "lua_memory_bytes", KEY_SIZE, 1 << 20, 1LL << 30, NULL, C(lua_memory_bytes) },
    { "flow", "lua_instructions", KEY_INT, 1000, 1000000000, NULL, C(lua_instructions) },
    { "smtp", "url", KEY_BUF, 0, 511, NULL, C(smtp_url) },
    { "smtp", "from", KEY_BUF, 0, 320, NULL, C(smtp_from) },
    { "smtp", "user", KEY_BUF, 0, 256, NULL, C(smtp_user) },
    { "smtp", "password_env", KEY_BUF, 0, 128, NULL, C(smtp_password_env) },
    { "smtp", "ca_file", KEY_BUF, 0, 1023, NULL, C(smtp_ca_file) },
    { "smtp", "starttls", KEY_ENUM, 0, 0, starttls_values, C(smtp_starttls) },
    { "smtp", "timeout_s", KEY_INT, 1, 3600, NULL, C(smtp_timeout_s) },
    { "smtp", "undo_window_s", KEY_INT, 0, 86400, NULL, C(smtp_undo_window_s) },
    { "outbox", "max_attempts", KEY_INT, 1, 1000, NULL, C(outbox_max_attempts) },
    { "outbox", "backoff_ms", KEY_INT, 10, 86400000, NULL, C(outbox_backoff_ms) },
    { "outbox", "max_delay_ms", KEY_INT, 10, 604800000, NULL, C(outbox_max_delay_ms) },
    { "outbox", "webhook_timeout_s", KEY_INT, 1, 3600, NULL, C(webhook_timeout_s) },
};
#undef C

/* Connector keys: section is "*" (every kind) or the kind's name. */
#define K(m) offsetof(ConnectorConfig, m)
static const KeyDef connector_keys[] = {
    { "*", "name", KEY_STR, 0, 64, NULL, K(name) },
    { "*", "kind", KEY_ENUM, 0, 0, kind_values, K(kind) },
    { "*", "source", KEY_STR, 0, 128, NULL, K(source) },
    { "*", "consent", KEY_ENUM, 0, 0, consent_values, K(consent) },
    { "webhook", "secret", KEY_STR, 0, 1024, NULL, K(secret) },
    { "webhook", "secret_env", KEY_STR, 0, 128, NULL, K(secret_env) },
    { "webhook", "signature_header", KEY_STR, 0, 128, NULL, K(signature_header) },
    { "webhook", "timestamp_header", KEY_STR, 0, 128, NULL, K(timestamp_header) },
    { "webhook", "tolerance_s", KEY_INT, 1, 86400, NULL, K(tolerance_s) },
    { "webhook", "type", KEY_STR, 0, 128, NULL, K(type) },
    { "webhook", "type_field", KEY_STR, 0, 128, NULL, K(type_field) },
    { "webhook", "key_header", KEY_STR, 0, 128, NULL, K(key_header) },
    { "webhook", "key_field", KEY_STR, 0, 128, NULL, K(key_field) },
    { "stripe", "secret", KEY_STR, 0, 1024, NULL, K(secret) },
    { "stripe", "secret_env", KEY_STR, 0, 128, NULL, K(secret_env) },
    { "stripe", "tolerance_s", KEY_INT, 1, 86400, NULL, K(tolerance_s) },
    { "form", "form", KEY_STR, 0, 64, NULL, K(form) },
    { "form", "honeypot", KEY_STR, 0, 64, NULL, K(honeypot) },
    { "form", "redirect", KEY_STR, 0, 1024, NULL, K(redirect) },
    { "form", "consent_field", KEY_STR, 0, 64, NULL, K(consent_field) },
    { "form", "rate_limit", KEY_INT, 1, 100000, NULL, K(rate_limit) },
};
#undef K

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

/* Parses val per k into the struct at base. full names the key in errors. */
static int load_value(void *base, const KeyDef *k, const char *full, struct fy_node *key,
                      struct fy_node *val, const char *path, Err *err)
{
    char *member = (char *)base + k->offset;
    if (!val || !fy_node_is_scalar(val))
        return at(err, path, key, "'%s' must be a single value", full);
    size_t len;
    const char *s = fy_node_get_scalar(val, &len);
    if (!s)
        s = "";
    if (k->kind == KEY_STR || k->kind == KEY_BUF) {
        if (len == 0 || len > (size_t)k->max || memchr(s, '\0', len))
            return at(err, path, val, "'%s' must be 1-%lld characters", full, k->max);
        if (k->kind == KEY_BUF) {
            memcpy(member, s, len);
            member[len] = '\0';
            return 0;
        }
        free(*(char **)member);
        *(char **)member = xstrndup(s, len);
        return 0;
    }
    char text[64];
    if (len >= sizeof text)
        return at(err, path, val, "'%s': value too long", full);
    memcpy(text, s, len);
    text[len] = '\0';
    if (k->kind == KEY_INT || k->kind == KEY_SIZE) {
        char *end;
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (errno || end == text || *end || v < k->min || v > k->max)
            return at(err, path, val, "'%s' must be an integer in %lld..%lld", full, k->min,
                      k->max);
        if (k->kind == KEY_INT)
            *(int *)member = (int)v;
        else
            *(size_t *)member = (size_t)v;
        return 0;
    }
    for (int i = 0; k->values[i]; i++)
        if (!strcmp(text, k->values[i])) {
            if (k->kind == KEY_BOOLENUM)
                *(bool *)member = i != 0;
            else
                *(int *)member = i;
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
        char full[96];
        snprintf(full, sizeof full, "%s.%s", section, name);
        int rc = load_value(cfg, def, full, k, fy_node_pair_value(p), path, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static bool name_ok(const char *s)
{
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
            return false;
    return *s != '\0';
}

static int load_connector(Config *cfg, struct fy_node *item, size_t idx, const char *path,
                          Err *err)
{
    if (!fy_node_is_mapping(item))
        return at(err, path, item, "connectors[%zu] must be a mapping", idx);
    struct fy_node *kind_node = fy_node_mapping_lookup_by_string(item, "kind", 4);
    struct fy_node *name_node = fy_node_mapping_lookup_by_string(item, "name", 4);
    if (!name_node)
        return at(err, path, item, "connectors[%zu]: 'name' is required", idx);
    if (!kind_node)
        return at(err, path, name_node, "connectors[%zu]: 'kind' is required", idx);
    ConnectorConfig *c = &cfg->connectors[cfg->n_connectors++];
    memset(c, 0, sizeof *c);
    c->tolerance_s = 300;
    c->rate_limit = 10;
    char full[160];
    snprintf(full, sizeof full, "connectors[%zu].kind", idx);
    int rc = load_value(c, &connector_keys[1], full, kind_node, kind_node, path, err);
    if (rc < 0)
        return rc;
    const char *kind = kind_values[c->kind];
    void *iter = NULL;
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(item, &iter))) {
        struct fy_node *k = fy_node_pair_key(p);
        const char *key = k ? fy_node_get_scalar0(k) : NULL;
        const KeyDef *def = NULL;
        for (size_t i = 0; key && i < sizeof connector_keys / sizeof connector_keys[0]; i++)
            if ((!strcmp(connector_keys[i].section, "*") ||
                 !strcmp(connector_keys[i].section, kind)) &&
                !strcmp(connector_keys[i].key, key))
                def = &connector_keys[i];
        if (!def)
            return at(err, path, k, "connectors[%zu]: unknown key '%s' for kind %s", idx,
                      key ? key : "?", kind);
        snprintf(full, sizeof full, "connectors[%zu].%s", idx, key);
        if ((rc = load_value(c, def, full, k, fy_node_pair_value(p), path, err)) < 0)
            return rc;
    }
    if (!name_ok(c->name))
        return at(err, path, name_node,
                  "connectors[%zu].name: use lower-case letters, digits, - and _", idx);
    for (size_t i = 0; i + 1 < cfg->n_connectors; i++)
        if (!strcmp(cfg->connectors[i].name, c->name))
            return at(err, path, name_node, "connectors[%zu]: a connector named '%s' exists",
                      idx, c->name);
    if (c->kind != CONNECTOR_FORM && !c->secret == !c->secret_env)
        return at(err, path, name_node,
                  "connectors[%zu] (%s): give exactly one of 'secret' or 'secret_env'", idx,
                  c->name);
    if (c->type && c->type_field)
        return at(err, path, name_node,
                  "connectors[%zu] (%s): 'type' and 'type_field' exclude each other", idx,
                  c->name);
    if (c->kind == CONNECTOR_WEBHOOK && !c->type && !c->type_field)
        return at(err, path, name_node, "connectors[%zu] (%s): set 'type' or 'type_field'", idx,
                  c->name);
    if (c->key_header && c->key_field)
        return at(err, path, name_node,
                  "connectors[%zu] (%s): 'key_header' and 'key_field' exclude each other", idx,
                  c->name);
    if (!c->source)
        c->source = xstrdup(c->name);
    if (c->kind == CONNECTOR_WEBHOOK && !c->signature_header)
        c->signature_header = xstrdup("X-Signature");
    if (c->kind == CONNECTOR_FORM && !c->form)
        c->form = xstrdup(c->name);
    return 0;
}

static int load_connectors(Config *cfg, struct fy_node *key, struct fy_node *seq,
                           const char *path, Err *err)
{
    if (!seq || fy_node_is_null(seq))
        return 0;
    if (!fy_node_is_sequence(seq))
        return at(err, path, key, "'connectors' must be a list");
    int n = fy_node_sequence_item_count(seq);
    if (n > CONFIG_MAX_CONNECTORS)
        return at(err, path, key, "more than %d connectors", CONFIG_MAX_CONNECTORS);
    cfg->connectors = xcalloc((size_t)(n > 0 ? n : 1), sizeof *cfg->connectors);
    void *iter = NULL;
    struct fy_node *item;
    size_t idx = 0;
    while ((item = fy_node_sequence_iterate(seq, &iter))) {
        int rc = load_connector(cfg, item, idx++, path, err);
        if (rc < 0)
            return rc;
    }
    return 0;
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
    if (!core_yaml_has_content(text, len)) { /* empty or all comments: the defaults apply */
        free(text);
        return 0;
    }
    struct fy_document *doc = NULL;
    int line, col;
    Err e = { 0 };
    int rc = 0;
    if (core_yaml_build(text, len, &doc, &line, &col, &e) < 0) {
        rc = line ? err_set(err, ERR_CONFIG, "%s:%d:%d: %s", path, line, col, e.msg)
                  : err_set(err, ERR_CONFIG, "%s: %s", path, e.msg);
        goto out;
    }
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
        if (name && !strcmp(name, "connectors")) {
            if (cfg->connectors) {
                rc = at(err, path, k, "'connectors' given twice");
                goto out;
            }
            rc = load_connectors(cfg, k, fy_node_pair_value(p), path, err);
        } else if (!known) {
            rc = at(err, path, k, "unknown section '%s'", name ? name : "?");
            goto out;
        } else {
            rc = load_section(cfg, name, k, fy_node_pair_value(p), path, err);
        }
        if (rc < 0)
            goto out;
    }
out:
    fy_document_destroy(doc);
    free(text);
    return rc;
}
