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
    "#   worker_nice: 10             # workers run this much nicer than the rest: the\n"
    "#                               # ledger's writer and the server come first\n"
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
    "# memory:                      # short-term memory (docs/memory.md)\n"
    "#   email_ttl_days: 30          # an item is searched this long, then consolidated\n"
    "#   form_ttl_days: 30\n"
    "#   note_ttl_days: 30\n"
    "#   consolidate_schedule: \"0 3 * * *\"  # cron; off: never (bureau memory consolidate)\n"
    "#   consolidate_timezone: UTC\n"
    "\n"
    "# models:                      # the model router (docs/models.md)\n"
    "#   providers:                  # the built-in `local` needs no declaration\n"
    "#     - name: big\n"
    "#       kind: openai            # local | openai (OpenAI-compatible) | anthropic\n"
    "#       base_url: http://127.0.0.1:11434/v1\n"
    "#       model: llama3.1\n"
    "#       embed_model: nomic-embed-text   # openai: embeddings (default: model)\n"
    "#       api_key_env: OPENAI_API_KEY     # the key is read from this variable\n"
    "#       timeout_ms: 30000\n"
    "#       json_schema: false      # openai: response_format json_schema (else json_object)\n"
    "#       price: {input_per_mtok: 1.0, output_per_mtok: 2.0}   # USD per million tokens\n"
    "#   routes:                     # per task class; without a route: local\n"
    "#     draft:                    # classify extract draft summarize plan embed complete\n"
    "#       candidates: [big, local]   # tried in order, falling back down the list\n"
    "#       max_latency_ms: 5000    # SLA: a slower provider (EWMA) is passed over\n"
    "#       max_cost_usd: 0.05      # per call, worst case\n"
    "#       max_output_tokens: 400\n"
    "#       defer: none             # none | batch (wait for the batch window)\n"
    "#       on_budget: degrade      # degrade (next candidate) | park (for the operator)\n"
    "#       cache: true\n"
    "#       daily_usd: 0.5          # this route's budgets\n"
    "#       monthly_usd: 10\n"
    "#       canary: {candidate: small, percent: 10, min_sample: 20}   # a challenger, judged\n"
    "#                               # by your decisions (max_edit_rate_delta: 0.1,\n"
    "#                               # max_reject_rate_delta: 0.05, max_cost_usd: 0)\n"
    "#       shadow: {candidate: tiny}   # answers approved drafts in the batch window, unused\n"
    "#   budgets:                    # USD; 0: none\n"
    "#     daily_usd: 1.0\n"
    "#     monthly_usd: 20.0\n"
    "#     per_customer: {daily_usd: 0.2, monthly_usd: 2.0}\n"
    "#     workflows:\n"
    "#       lead-intake: {daily_usd: 0.5}\n"
    "#   cache_ttl_s: 604800         # a cached answer lives this long\n"
    "#   batch: {window: \"02:00-05:00\", timezone: UTC}\n"
    "#   local:\n"
    "#     hash_bits: 18             # feature hashing buckets: 2^bits\n"
    "#     embed_dim: 384\n"
    "#     rules:                    # keywords that seed the classifier\n"
    "#       lead: [quote, proposal, pricing]\n"
    "#       billing: [invoice, refund, receipt]\n"
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
    "#     rate_limit: 10            # submissions per minute per client\n"
    "#   - name: mail                # pulled by bureau serve (docs/connectors.md)\n"
    "#     kind: imap\n"
    "#     url: imaps://imap.example.com:993   # or imap://HOST:143 (STARTTLS)\n"
    "#     user: you@example.com\n"
    "#     password_env: BUREAU_IMAP_PASSWORD   # or: password: \"...\"\n"
    "#     folders: [INBOX]\n"
    "#     sent_folder: Sent         # its messages settle uncertain sent mail\n"
    "#     interval_s: 300           # jittered; failures back off\n"
    "#     starttls: required        # imap:// only; off only for a loopback server\n"
    "#     tls_verify: true\n"
    "#     ca_file: /etc/bureau/imap-ca.pem   # a private CA or self-signed certificate\n"
    "#     max_message_bytes: 26214400   # larger messages keep only their header\n";

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
    cfg->flow_worker_nice = 10;
    cfg->flow_lease_ms = 15000;
    cfg->flow_depth_max = 8;
    cfg->lua_memory_bytes = 16 * 1024 * 1024;
    cfg->lua_instructions = 1000000;
    cfg->smtp_timeout_s = 30;
    cfg->outbox_max_attempts = 8;
    cfg->outbox_backoff_ms = 5000;
    cfg->outbox_max_delay_ms = 3600000;
    cfg->webhook_timeout_s = 30;
    cfg->memory_email_ttl_days = 30;
    cfg->memory_form_ttl_days = 30;
    cfg->memory_note_ttl_days = 30;
    snprintf(cfg->memory_consolidate_schedule, sizeof cfg->memory_consolidate_schedule, "%s",
             "0 3 * * *");
    snprintf(cfg->memory_consolidate_timezone, sizeof cfg->memory_consolidate_timezone, "%s",
             "UTC");
    cfg->model_cache_ttl_s = 7 * 24 * 3600;
    snprintf(cfg->batch_window, sizeof cfg->batch_window, "02:00-05:00");
    snprintf(cfg->batch_timezone, sizeof cfg->batch_timezone, "UTC");
    cfg->local_hash_bits = 18;
    cfg->local_embed_dim = 384;
}

static void connector_free(ConnectorConfig *c)
{
    char **strs[] = { &c->name, &c->secret, &c->secret_env, &c->source, &c->signature_header,
                      &c->timestamp_header, &c->type, &c->type_field, &c->key_header,
                      &c->key_field, &c->form, &c->honeypot, &c->redirect, &c->consent_field,
                      &c->url, &c->path, &c->user, &c->password, &c->password_env,
                      &c->sent_folder, &c->ca_file };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        free(*strs[i]);
        *strs[i] = NULL;
    }
    for (int i = 0; i < c->n_folders; i++) {
        free(c->folders[i]);
        c->folders[i] = NULL;
    }
    c->n_folders = 0;
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
typedef enum { KEY_INT, KEY_SIZE, KEY_ENUM, KEY_BOOLENUM, KEY_STR, KEY_BUF, KEY_REAL } KeyKind;

/* One known key: where it lives (section, or for connectors the kinds it
 * applies to), its type and range, and the member it fills. */
typedef struct KeyDef {
    const char *section, *key;
    KeyKind kind;
    long long min, max;        /* KEY_INT, KEY_SIZE, KEY_REAL; KEY_STR, KEY_BUF: max length */
    const char *const *values; /* KEY_ENUM, KEY_BOOLENUM: NULL-terminated */
    size_t offset;
} KeyDef;

static const char *const durability_values[] = { "full", "normal", NULL };
static const char *const level_values[] = { "debug", "info", "warn", "error", "off", NULL };
static const char *const consent_values[] = { "none", "transactional", "marketing", NULL };
static const char *const kind_values[] = { "webhook", "stripe", "form", "imap", "ics", NULL };
static const char *const imap_starttls_values[] = { "required", "off", NULL };
static const char *const bool_values[] = { "false", "true", NULL };
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
    { "flow", "worker_nice", KEY_INT, 0, 19, NULL, C(flow_worker_nice) },
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
    { "memory", "email_ttl_days", KEY_INT, 1, 36500, NULL, C(memory_email_ttl_days) },
    { "memory", "form_ttl_days", KEY_INT, 1, 36500, NULL, C(memory_form_ttl_days) },
    { "memory", "note_ttl_days", KEY_INT, 1, 36500, NULL, C(memory_note_ttl_days) },
    { "memory", "consolidate_schedule", KEY_BUF, 0, 63, NULL, C(memory_consolidate_schedule) },
    { "memory", "consolidate_timezone", KEY_BUF, 0, 63, NULL, C(memory_consolidate_timezone) },
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
    { "imap", "url", KEY_STR, 0, 1024, NULL, K(url) },
    { "imap", "user", KEY_STR, 0, 256, NULL, K(user) },
    { "imap", "password", KEY_STR, 0, 1024, NULL, K(password) },
    { "imap", "password_env", KEY_STR, 0, 128, NULL, K(password_env) },
    { "imap", "interval_s", KEY_INT, 1, 86400, NULL, K(interval_s) },
    { "imap", "starttls", KEY_BOOLENUM, 0, 0, imap_starttls_values, K(starttls_off) },
    { "imap", "tls_verify", KEY_BOOLENUM, 0, 0, bool_values, K(tls_verify) },
    { "imap", "ca_file", KEY_STR, 0, 1024, NULL, K(ca_file) },
    { "imap", "sent_folder", KEY_STR, 0, 255, NULL, K(sent_folder) },
    { "imap", "max_message_bytes", KEY_SIZE, 4096, 256LL << 20, NULL, K(max_message_bytes) },
    { "ics", "url", KEY_STR, 0, 1024, NULL, K(url) },
    { "ics", "path", KEY_STR, 0, 1024, NULL, K(path) },
    { "ics", "interval_s", KEY_INT, 1, 86400, NULL, K(interval_s) },
    { "ics", "horizon_days", KEY_INT, 1, 3660, NULL, K(horizon_days) },
    { "ics", "allow_empty", KEY_BOOLENUM, 0, 0, bool_values, K(allow_empty) },
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
    if (k->kind == KEY_REAL) {
        char *end;
        errno = 0;
        double v = strtod(text, &end);
        if (errno || end == text || *end || !(v >= (double)k->min) || !(v <= (double)k->max))
            return at(err, path, val, "'%s' must be a number from %lld to %lld", full, k->min,
                      k->max);
        *(double *)member = v;
        return 0;
    }
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

static struct fy_node *lookup(struct fy_node *map, const char *key);

/* A folder name: 1-255 printable ASCII characters (IMAP's modified UTF-7
 * for other names is not spoken here). */
static bool folder_ok(const char *s, size_t len)
{
    if (len == 0 || len > 255)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

static int load_folders(ConnectorConfig *c, size_t idx, struct fy_node *key,
                        struct fy_node *seq, const char *path, Err *err)
{
    if (!seq || !fy_node_is_sequence(seq) || fy_node_sequence_item_count(seq) < 1 ||
        fy_node_sequence_item_count(seq) > CONFIG_MAX_FOLDERS)
        return at(err, path, key, "connectors[%zu].folders: a list of 1-%d folder names", idx,
                  CONFIG_MAX_FOLDERS);
    for (int i = 0; i < c->n_folders; i++)
        free(c->folders[i]);
    c->n_folders = 0;
    void *it = NULL;
    struct fy_node *f;
    while ((f = fy_node_sequence_iterate(seq, &it))) {
        size_t len = 0;
        const char *s = fy_node_is_scalar(f) ? fy_node_get_scalar(f, &len) : NULL;
        if (!s || !folder_ok(s, len))
            return at(err, path, f, "connectors[%zu].folders: a folder name is 1-255 printable "
                                    "ASCII characters", idx);
        for (int j = 0; j < c->n_folders; j++)
            if (strlen(c->folders[j]) == len && !memcmp(c->folders[j], s, len))
                return at(err, path, f, "connectors[%zu].folders: '%.*s' is listed twice", idx,
                          (int)len, s);
        c->folders[c->n_folders++] = xstrndup(s, len);
    }
    return 0;
}

/* The host of scheme://[user@]HOST[:port][/...] into host (bracketed IPv6
 * without its brackets); false when there is none. */
static bool url_host(const char *url, char *host, size_t size)
{
    const char *p = strstr(url, "://");
    if (!p)
        return false;
    p += 3;
    const char *end = p + strcspn(p, "/?#");
    const char *at_ = memchr(p, '@', (size_t)(end - p));
    if (at_)
        p = at_ + 1;
    const char *h = p, *he;
    if (*p == '[') {
        h = p + 1;
        he = memchr(h, ']', (size_t)(end - h));
        if (!he)
            return false;
    } else {
        he = memchr(p, ':', (size_t)(end - p));
        if (!he)
            he = end;
    }
    if (he == h || (size_t)(he - h) >= size)
        return false;
    memcpy(host, h, (size_t)(he - h));
    host[he - h] = '\0';
    return true;
}

static bool host_loopback(const char *h)
{
    return !strcmp(h, "localhost") || !strcmp(h, "::1") || !strncmp(h, "127.", 4);
}

/* The rules of the pull kinds (docs/connectors.md) once their keys are read. */
static int pull_connector_check(ConnectorConfig *c, size_t idx, struct fy_node *name_node,
                                struct fy_node *item, const char *path, Err *err)
{
    if (!name_ok(c->name))
        return at(err, path, name_node,
                  "connectors[%zu].name: use lower-case letters, digits, - and _", idx);
    if (!c->source)
        c->source = xstrdup(c->name);
    if (c->kind == CONNECTOR_ICS) {
        if (!c->url == !c->path)
            return at(err, path, name_node, "connectors[%zu] (%s): give exactly one of 'url' or "
                                            "'path'", idx, c->name);
        if (c->url && strncmp(c->url, "http://", 7) && strncmp(c->url, "https://", 8))
            return at(err, path, lookup(item, "url"), "connectors[%zu].url: an http:// or "
                                                      "https:// feed", idx);
        return 0;
    }
    struct fy_node *url_node = lookup(item, "url");
    if (!c->url)
        return at(err, path, name_node, "connectors[%zu] (%s): 'url' is required "
                                        "(imap://HOST:PORT or imaps://HOST:PORT)", idx, c->name);
    bool plain = !strncmp(c->url, "imap://", 7);
    char host[256];
    if ((!plain && strncmp(c->url, "imaps://", 8)) || !url_host(c->url, host, sizeof host))
        return at(err, path, url_node, "connectors[%zu].url: '%s' is not imap://HOST[:PORT] or "
                                       "imaps://HOST[:PORT]", idx, c->url);
    const char *rest = strstr(c->url, "://") + 3;
    rest += strcspn(rest, "/?#");
    if (*rest && strcmp(rest, "/"))
        return at(err, path, url_node, "connectors[%zu].url: no path or query (name folders "
                                       "in 'folders')", idx);
    if (c->starttls_off && !plain)
        return at(err, path, lookup(item, "starttls"), "connectors[%zu].starttls: 'off' is "
                                                       "for imap:// only", idx);
    if (c->starttls_off && !host_loopback(host))
        return at(err, path, lookup(item, "starttls"),
                  "connectors[%zu].starttls: 'off' sends the password in clear; it is allowed "
                  "only for a server on loopback, not '%s'", idx, host);
    if (!c->user)
        return at(err, path, name_node, "connectors[%zu] (%s): 'user' is required", idx,
                  c->name);
    if (!c->password == !c->password_env)
        return at(err, path, name_node, "connectors[%zu] (%s): give exactly one of 'password' "
                                        "or 'password_env'", idx, c->name);
    if (c->sent_folder && !folder_ok(c->sent_folder, strlen(c->sent_folder)))
        return at(err, path, lookup(item, "sent_folder"), "connectors[%zu].sent_folder: 1-255 "
                                                          "printable ASCII characters", idx);
    if (c->n_folders == 0)
        c->folders[c->n_folders++] = xstrdup("INBOX");
    return 0;
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
    c->interval_s = 300;
    c->horizon_days = 365;
    c->tls_verify = true;
    c->max_message_bytes = 25 * 1024 * 1024;
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
        if (key && c->kind == CONNECTOR_IMAP && !strcmp(key, "folders")) {
            if ((rc = load_folders(c, idx, k, fy_node_pair_value(p), path, err)) < 0)
                return rc;
            continue;
        }
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
    if (CONNECTOR_IS_PULL(c->kind))
        return pull_connector_check(c, idx, name_node, item, path, err);
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

/* ---- models: ---- */

static const char *const provider_kinds[] = { "local", "openai", "anthropic", NULL };
static const char *const defer_values[] = { "none", "batch", NULL };
static const char *const on_budget_values[] = { "degrade", "park", NULL };

#define P(m) offsetof(ModelProviderConfig, m)
static const KeyDef provider_keys[] = {
    { "", "name", KEY_BUF, 0, 64, NULL, P(name) },
    { "", "kind", KEY_BUF, 0, 15, NULL, P(kind) },
    { "", "base_url", KEY_BUF, 0, 511, NULL, P(base_url) },
    { "", "model", KEY_BUF, 0, 127, NULL, P(model) },
    { "", "embed_model", KEY_BUF, 0, 127, NULL, P(embed_model) },
    { "", "api_key_env", KEY_BUF, 0, 128, NULL, P(api_key_env) },
    { "", "timeout_ms", KEY_INT, 100, 600000, NULL, P(timeout_ms) },
    { "", "json_schema", KEY_BOOLENUM, 0, 0, bool_values, P(json_schema) },
};
#undef P
#define R(m) offsetof(ModelRouteConfig, m)
static const KeyDef route_keys[] = {
    { "", "max_latency_ms", KEY_INT, 1, 3600000, NULL, R(max_latency_ms) },
    { "", "max_cost_usd", KEY_REAL, 0, 1000, NULL, R(max_cost_usd) },
    { "", "max_output_tokens", KEY_INT, 1, 1000000, NULL, R(max_output_tokens) },
    { "", "defer", KEY_BOOLENUM, 0, 0, defer_values, R(defer_batch) },
    { "", "on_budget", KEY_BOOLENUM, 0, 0, on_budget_values, R(on_budget_park) },
    { "", "daily_usd", KEY_REAL, 0, 1000000, NULL, R(daily_usd) },
    { "", "monthly_usd", KEY_REAL, 0, 1000000, NULL, R(monthly_usd) },
};
#undef R

/* A mapping's pairs through keys (the struct at base); "what" names it.
 * skip (may be NULL) is a key the caller reads itself. */
static int load_map(void *base, const KeyDef *keys_, size_t n, struct fy_node *map,
                    const char *what, const char *path, const char *skip, Err *err)
{
    void *iter = NULL;
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(map, &iter))) {
        struct fy_node *k = fy_node_pair_key(p);
        const char *key = k ? fy_node_get_scalar0(k) : NULL;
        if (key && skip && !strcmp(key, skip))
            continue;
        const KeyDef *def = NULL;
        for (size_t i = 0; key && i < n; i++)
            if (!strcmp(keys_[i].key, key))
                def = &keys_[i];
        if (!def)
            return at(err, path, k, "%s: unknown key '%s'", what, key ? key : "?");
        char full[192];
        snprintf(full, sizeof full, "%s.%s", what, key);
        int rc = load_value(base, def, full, k, fy_node_pair_value(p), path, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static struct fy_node *lookup(struct fy_node *map, const char *key)
{
    return fy_node_mapping_lookup_by_string(map, key, strlen(key));
}

static int load_provider(Config *cfg, struct fy_node *item, size_t idx, const char *path,
                         Err *err)
{
    char what[64];
    snprintf(what, sizeof what, "models.providers[%zu]", idx);
    if (!fy_node_is_mapping(item))
        return at(err, path, item, "%s must be a mapping {name, kind, ...}", what);
    ModelProviderConfig *p = &cfg->model_providers[cfg->n_model_providers++];
    memset(p, 0, sizeof *p);
    p->timeout_ms = 30000;
    struct fy_node *price = lookup(item, "price");
    /* price is a mapping of its own, read below */
    int rc = load_map(p, provider_keys, sizeof provider_keys / sizeof provider_keys[0], item, what,
                      path, "price", err);
    if (rc < 0)
        return rc;
    if (price) {
        static const KeyDef price_keys[] = {
            { "", "input_per_mtok", KEY_REAL, 0, 100000, NULL,
              offsetof(ModelProviderConfig, price_in_per_mtok) },
            { "", "output_per_mtok", KEY_REAL, 0, 100000, NULL,
              offsetof(ModelProviderConfig, price_out_per_mtok) },
        };
        char pw[80];
        snprintf(pw, sizeof pw, "%s.price", what);
        if (!fy_node_is_mapping(price))
            return at(err, path, price, "%s must be a mapping {input_per_mtok, output_per_mtok}",
                      pw);
        if ((rc = load_map(p, price_keys, 2, price, pw, path, NULL, err)) < 0)
            return rc;
    }
    struct fy_node *name = lookup(item, "name");
    if (!p->name[0] || !name_ok(p->name))
        return at(err, path, name ? name : item,
                  "%s.name: required, lower-case letters, digits, - and _", what);
    for (size_t i = 0; i + 1 < cfg->n_model_providers; i++)
        if (!strcmp(cfg->model_providers[i].name, p->name))
            return at(err, path, name, "%s: a provider named '%s' exists", what, p->name);
    bool kind_ok = false;
    for (int i = 0; provider_kinds[i]; i++)
        kind_ok |= !strcmp(p->kind, provider_kinds[i]);
    if (!kind_ok)
        return at(err, path, lookup(item, "kind") ? lookup(item, "kind") : item,
                  "%s.kind: must be one of: local | openai | anthropic", what);
    if (strcmp(p->kind, "local")) {
        if (!p->model[0])
            return at(err, path, item, "%s (%s): 'model' is required", what, p->name);
        if (!p->base_url[0])
            snprintf(p->base_url, sizeof p->base_url, "%s",
                     !strcmp(p->kind, "anthropic") ? "https://api.anthropic.com/v1"
                                                   : "https://api.openai.com/v1");
        if (strncmp(p->base_url, "http://", 7) && strncmp(p->base_url, "https://", 8))
            return at(err, path, lookup(item, "base_url"),
                      "%s.base_url: must start with http:// or https://", what);
    }
    return 0;
}

static bool provider_known(const Config *cfg, const char *name)
{
    for (size_t i = 0; name && i < cfg->n_model_providers; i++)
        if (!strcmp(cfg->model_providers[i].name, name))
            return true;
    return name && !strcmp(name, "local");
}

/* A route's canary: or shadow: mapping (docs/models.md, "Quality"). */
static int load_trial(const Config *cfg, ModelRouteConfig *r, const char *kn, const char *what,
                      struct fy_node *k, struct fy_node *v, const char *path, Err *err)
{
#define R(m) offsetof(ModelRouteConfig, m)
    static const KeyDef canary_keys[] = {
        { "", "candidate", KEY_BUF, 0, 64, NULL, R(canary) },
        { "", "percent", KEY_INT, 1, 100, NULL, R(canary_percent) },
        { "", "min_sample", KEY_INT, 1, 100000, NULL, R(canary_min_sample) },
        { "", "max_edit_rate_delta", KEY_REAL, 0, 1, NULL, R(canary_max_edit_delta) },
        { "", "max_reject_rate_delta", KEY_REAL, 0, 1, NULL, R(canary_max_reject_delta) },
        { "", "max_cost_usd", KEY_REAL, 0, 1000, NULL, R(canary_max_cost_usd) },
    };
    static const KeyDef shadow_keys[] = {
        { "", "candidate", KEY_BUF, 0, 64, NULL, R(shadow) },
        { "", "percent", KEY_INT, 1, 100, NULL, R(shadow_percent) },
    };
#undef R
    bool canary = !strcmp(kn, "canary");
    char full[96];
    snprintf(full, sizeof full, "%s.%s", what, kn);
    if (!v || !fy_node_is_mapping(v))
        return at(err, path, k, "%s must be a mapping {candidate, ...}", full);
    if (canary) {
        r->canary_percent = 10;
        r->canary_min_sample = 20;
        r->canary_max_edit_delta = 0.1;
        r->canary_max_reject_delta = 0.05;
    } else {
        r->shadow_percent = 100;
    }
    int rc = canary ? load_map(r, canary_keys, sizeof canary_keys / sizeof canary_keys[0], v, full,
                               path, NULL, err)
                    : load_map(r, shadow_keys, sizeof shadow_keys / sizeof shadow_keys[0], v, full,
                               path, NULL, err);
    if (rc < 0)
        return rc;
    const char *cand = canary ? r->canary : r->shadow;
    struct fy_node *cn = lookup(v, "candidate");
    if (!cand[0])
        return at(err, path, k, "%s.candidate: required (a provider of models.providers)", full);
    if (!provider_known(cfg, cand))
        return at(err, path, cn, "%s.candidate: '%s' is not a provider of models.providers", full,
                  cand);
    if (canary && r->shadow[0] && !strcmp(r->shadow, cand))
        return at(err, path, cn, "%s.candidate: '%s' is the route's shadow too", full, cand);
    if (!canary && r->canary[0] && !strcmp(r->canary, cand))
        return at(err, path, cn, "%s.candidate: '%s' is the route's canary too", full, cand);
    return 0;
}

static int load_route(Config *cfg, struct fy_node *key, struct fy_node *map, const char *path,
                      Err *err)
{
    const char *name = fy_node_get_scalar0(key);
    if (!name || !name_ok(name) || strlen(name) > 32)
        return at(err, path, key, "models.routes: '%s' is not a route name (1-32 of a-z, 0-9, - "
                                  "and _)", name ? name : "?");
    if (cfg->n_model_routes == CONFIG_MAX_MODEL_ROUTES)
        return at(err, path, key, "models.routes: more than %d routes", CONFIG_MAX_MODEL_ROUTES);
    char what[64];
    snprintf(what, sizeof what, "models.routes.%s", name);
    if (!fy_node_is_mapping(map))
        return at(err, path, key, "%s must be a mapping {candidates: [...], ...}", what);
    ModelRouteConfig *r = &cfg->model_routes[cfg->n_model_routes++];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    r->max_output_tokens = 512;
    void *iter = NULL;
    struct fy_node_pair *pair;
    int rc;
    while ((pair = fy_node_mapping_iterate(map, &iter))) {
        struct fy_node *k = fy_node_pair_key(pair), *v = fy_node_pair_value(pair);
        const char *kn = k ? fy_node_get_scalar0(k) : NULL;
        if (kn && !strcmp(kn, "candidates")) {
            if (!v || !fy_node_is_sequence(v) || fy_node_sequence_item_count(v) < 1 ||
                fy_node_sequence_item_count(v) > CONFIG_MAX_ROUTE_CANDIDATES)
                return at(err, path, k, "%s.candidates: a list of 1 to %d provider names", what,
                          CONFIG_MAX_ROUTE_CANDIDATES);
            void *it2 = NULL;
            struct fy_node *c;
            while ((c = fy_node_sequence_iterate(v, &it2))) {
                const char *cn = fy_node_is_scalar(c) ? fy_node_get_scalar0(c) : NULL;
                bool known = false;
                for (size_t i = 0; cn && i < cfg->n_model_providers; i++)
                    known |= !strcmp(cfg->model_providers[i].name, cn);
                if (!known && cn && !strcmp(cn, "local"))
                    known = true; /* the built-in local tier needs no declaration */
                if (!known)
                    return at(err, path, c, "%s.candidates: '%s' is not a provider of "
                                            "models.providers", what, cn ? cn : "?");
                snprintf(r->candidates[r->n_candidates++], sizeof r->candidates[0], "%s", cn);
            }
            continue;
        }
        if (kn && (!strcmp(kn, "canary") || !strcmp(kn, "shadow"))) {
            if ((rc = load_trial(cfg, r, kn, what, k, v, path, err)) < 0)
                return rc;
            continue;
        }
        if (kn && !strcmp(kn, "cache")) {
            static const KeyDef ck = { "", "cache", KEY_BOOLENUM, 0, 0, bool_values, 0 };
            bool on = true;
            char full[96];
            snprintf(full, sizeof full, "%s.cache", what);
            if ((rc = load_value(&on, &ck, full, k, v, path, err)) < 0)
                return rc;
            r->no_cache = !on;
            continue;
        }
        bool known = false;
        for (size_t i = 0; kn && i < sizeof route_keys / sizeof route_keys[0]; i++)
            if (!strcmp(route_keys[i].key, kn)) {
                known = true;
                char full[96];
                snprintf(full, sizeof full, "%s.%s", what, kn);
                if ((rc = load_value(r, &route_keys[i], full, k, v, path, err)) < 0)
                    return rc;
            }
        if (!known)
            return at(err, path, k, "%s: unknown key '%s'", what, kn ? kn : "?");
    }
    if (r->n_candidates == 0)
        return at(err, path, key, "%s: 'candidates' is required", what);
    /* a canary or a shadow is a challenger: not the model it is judged against */
    if (r->canary[0] && !strcmp(r->canary, r->candidates[0]))
        return at(err, path, lookup(map, "canary"), "%s.canary.candidate: '%s' is the route's "
                  "first candidate already", what, r->canary);
    if (r->shadow[0] && !strcmp(r->shadow, r->candidates[0]))
        return at(err, path, lookup(map, "shadow"), "%s.shadow.candidate: '%s' is the route's "
                  "first candidate already", what, r->shadow);
    return 0;
}

static int load_budgets(Config *cfg, struct fy_node *map, const char *path, Err *err)
{
    static const KeyDef keys_[] = {
        { "", "daily_usd", KEY_REAL, 0, 1000000, NULL, offsetof(Config, budget_daily_usd) },
        { "", "monthly_usd", KEY_REAL, 0, 1000000, NULL, offsetof(Config, budget_monthly_usd) },
    };
    static const KeyDef cust[] = {
        { "", "daily_usd", KEY_REAL, 0, 1000000, NULL,
          offsetof(Config, budget_customer_daily_usd) },
        { "", "monthly_usd", KEY_REAL, 0, 1000000, NULL,
          offsetof(Config, budget_customer_monthly_usd) },
    };
    static const KeyDef wf[] = {
        { "", "daily_usd", KEY_REAL, 0, 1000000, NULL, offsetof(ModelBudgetConfig, daily_usd) },
        { "", "monthly_usd", KEY_REAL, 0, 1000000, NULL, offsetof(ModelBudgetConfig, monthly_usd) },
    };
    void *iter = NULL;
    struct fy_node_pair *pair;
    int rc;
    while ((pair = fy_node_mapping_iterate(map, &iter))) {
        struct fy_node *k = fy_node_pair_key(pair), *v = fy_node_pair_value(pair);
        const char *kn = k ? fy_node_get_scalar0(k) : NULL;
        if (kn && !strcmp(kn, "per_customer")) {
            if (!v || !fy_node_is_mapping(v))
                return at(err, path, k, "models.budgets.per_customer must be a mapping "
                                        "{daily_usd, monthly_usd}");
            if ((rc = load_map(cfg, cust, 2, v, "models.budgets.per_customer", path, NULL,
                               err)) < 0)
                return rc;
        } else if (kn && !strcmp(kn, "workflows")) {
            if (!v || !fy_node_is_mapping(v))
                return at(err, path, k, "models.budgets.workflows must be a mapping "
                                        "{WORKFLOW: {daily_usd, monthly_usd}}");
            void *it2 = NULL;
            struct fy_node_pair *wp;
            while ((wp = fy_node_mapping_iterate(v, &it2))) {
                struct fy_node *wk = fy_node_pair_key(wp), *wv = fy_node_pair_value(wp);
                const char *wn = fy_node_get_scalar0(wk);
                if (!wn || !name_ok(wn) || strlen(wn) > 64)
                    return at(err, path, wk, "models.budgets.workflows: '%s' is not a workflow "
                                             "name", wn ? wn : "?");
                if (cfg->n_workflow_budgets == CONFIG_MAX_WORKFLOW_BUDGETS)
                    return at(err, path, wk, "models.budgets.workflows: more than %d",
                              CONFIG_MAX_WORKFLOW_BUDGETS);
                if (!wv || !fy_node_is_mapping(wv))
                    return at(err, path, wk, "models.budgets.workflows.%s must be a mapping", wn);
                ModelBudgetConfig *b = &cfg->workflow_budgets[cfg->n_workflow_budgets++];
                memset(b, 0, sizeof *b);
                snprintf(b->name, sizeof b->name, "%s", wn);
                char what[128];
                snprintf(what, sizeof what, "models.budgets.workflows.%s", wn);
                if ((rc = load_map(b, wf, 2, wv, what, path, NULL, err)) < 0)
                    return rc;
            }
        } else {
            bool known = false;
            for (size_t i = 0; kn && i < 2; i++)
                if (!strcmp(keys_[i].key, kn)) {
                    known = true;
                    char full[96];
                    snprintf(full, sizeof full, "models.budgets.%s", kn);
                    if ((rc = load_value(cfg, &keys_[i], full, k, v, path, err)) < 0)
                        return rc;
                }
            if (!known)
                return at(err, path, k, "models.budgets: unknown key '%s' (daily_usd, "
                                        "monthly_usd, per_customer, workflows)", kn ? kn : "?");
        }
    }
    return 0;
}

static int load_local(Config *cfg, struct fy_node *map, const char *path, Err *err)
{
    static const KeyDef keys_[] = {
        { "", "hash_bits", KEY_INT, 10, 24, NULL, offsetof(Config, local_hash_bits) },
        { "", "embed_dim", KEY_INT, 16, 4096, NULL, offsetof(Config, local_embed_dim) },
    };
    void *iter = NULL;
    struct fy_node_pair *pair;
    int rc;
    while ((pair = fy_node_mapping_iterate(map, &iter))) {
        struct fy_node *k = fy_node_pair_key(pair), *v = fy_node_pair_value(pair);
        const char *kn = k ? fy_node_get_scalar0(k) : NULL;
        if (kn && !strcmp(kn, "rules")) {
            if (!v || !fy_node_is_mapping(v))
                return at(err, path, k, "models.local.rules must be a mapping {LABEL: [words]}");
            void *it2 = NULL;
            struct fy_node_pair *rp;
            while ((rp = fy_node_mapping_iterate(v, &it2))) {
                struct fy_node *lk = fy_node_pair_key(rp), *lv = fy_node_pair_value(rp);
                const char *label = fy_node_get_scalar0(lk);
                if (!label || !name_ok(label) || strlen(label) > 32)
                    return at(err, path, lk, "models.local.rules: '%s' is not a label (1-32 of "
                                             "a-z, 0-9, - and _)", label ? label : "?");
                if (!lv || !fy_node_is_sequence(lv))
                    return at(err, path, lk, "models.local.rules.%s must be a list of words",
                              label);
                void *it3 = NULL;
                struct fy_node *w;
                while ((w = fy_node_sequence_iterate(lv, &it3))) {
                    size_t wl = 0;
                    const char *word = fy_node_is_scalar(w) ? fy_node_get_scalar(w, &wl) : NULL;
                    if (!word || wl == 0 || wl > 64)
                        return at(err, path, w, "models.local.rules.%s: a word of 1-64 bytes",
                                  label);
                    if (cfg->n_model_rules == CONFIG_MAX_MODEL_RULES)
                        return at(err, path, w, "models.local.rules: more than %d words",
                                  CONFIG_MAX_MODEL_RULES);
                    ModelRuleConfig *r = &cfg->model_rules[cfg->n_model_rules++];
                    snprintf(r->label, sizeof r->label, "%s", label);
                    snprintf(r->keyword, sizeof r->keyword, "%.*s", (int)wl, word);
                }
            }
            continue;
        }
        bool known = false;
        for (size_t i = 0; kn && i < 2; i++)
            if (!strcmp(keys_[i].key, kn)) {
                known = true;
                char full[96];
                snprintf(full, sizeof full, "models.local.%s", kn);
                if ((rc = load_value(cfg, &keys_[i], full, k, v, path, err)) < 0)
                    return rc;
            }
        if (!known)
            return at(err, path, k, "models.local: unknown key '%s' (hash_bits, embed_dim, rules)",
                      kn ? kn : "?");
    }
    return 0;
}

static bool batch_window_ok(const char *w)
{
    int h1, m1, h2, m2, n = 0;
    return sscanf(w, "%2d:%2d-%2d:%2d%n", &h1, &m1, &h2, &m2, &n) == 4 && (size_t)n == strlen(w) &&
           h1 >= 0 && h1 < 24 && h2 >= 0 && h2 < 24 && m1 >= 0 && m1 < 60 && m2 >= 0 && m2 < 60;
}

static int load_models(Config *cfg, struct fy_node *key, struct fy_node *map, const char *path,
                       Err *err)
{
    if (!map || fy_node_is_null(map))
        return 0;
    if (!fy_node_is_mapping(map))
        return at(err, path, key, "'models' must be a mapping {providers, routes, budgets...}");
    /* providers first: routes name them */
    struct fy_node *providers = lookup(map, "providers");
    int rc;
    if (providers && !fy_node_is_null(providers)) {
        if (!fy_node_is_sequence(providers) ||
            fy_node_sequence_item_count(providers) > CONFIG_MAX_MODEL_PROVIDERS)
            return at(err, path, providers, "models.providers: a list of at most %d providers",
                      CONFIG_MAX_MODEL_PROVIDERS);
        void *iter = NULL;
        struct fy_node *item;
        size_t idx = 0;
        while ((item = fy_node_sequence_iterate(providers, &iter)))
            if ((rc = load_provider(cfg, item, idx++, path, err)) < 0)
                return rc;
    }
    void *iter = NULL;
    struct fy_node_pair *pair;
    while ((pair = fy_node_mapping_iterate(map, &iter))) {
        struct fy_node *k = fy_node_pair_key(pair), *v = fy_node_pair_value(pair);
        const char *kn = k ? fy_node_get_scalar0(k) : NULL;
        if (!kn) {
            return at(err, path, k, "models: a key must be a name");
        } else if (!strcmp(kn, "providers")) {
            continue;
        } else if (!strcmp(kn, "routes") || !strcmp(kn, "budgets") || !strcmp(kn, "local") ||
                   !strcmp(kn, "batch")) {
            if (!v || !fy_node_is_mapping(v))
                return at(err, path, k, "models.%s must be a mapping", kn);
            if (!strcmp(kn, "routes")) {
                void *it2 = NULL;
                struct fy_node_pair *rp;
                while ((rp = fy_node_mapping_iterate(v, &it2)))
                    if ((rc = load_route(cfg, fy_node_pair_key(rp), fy_node_pair_value(rp), path,
                                         err)) < 0)
                        return rc;
            } else if (!strcmp(kn, "budgets")) {
                if ((rc = load_budgets(cfg, v, path, err)) < 0)
                    return rc;
            } else if (!strcmp(kn, "local")) {
                if ((rc = load_local(cfg, v, path, err)) < 0)
                    return rc;
            } else {
                static const KeyDef bk[] = {
                    { "", "window", KEY_BUF, 0, 11, NULL, offsetof(Config, batch_window) },
                    { "", "timezone", KEY_BUF, 0, 63, NULL, offsetof(Config, batch_timezone) },
                };
                if ((rc = load_map(cfg, bk, 2, v, "models.batch", path, NULL, err)) < 0)
                    return rc;
                if (!batch_window_ok(cfg->batch_window))
                    return at(err, path, lookup(v, "window") ? lookup(v, "window") : k,
                              "models.batch.window: '%s' is not HH:MM-HH:MM", cfg->batch_window);
                /* a zone of the tz database (tzdata), as cron schedules use */
                char zone[128];
                struct stat zs;
                snprintf(zone, sizeof zone, "/usr/share/zoneinfo/%s", cfg->batch_timezone);
                if (strcmp(cfg->batch_timezone, "UTC") &&
                    (strstr(cfg->batch_timezone, "..") || stat(zone, &zs) < 0 ||
                     !S_ISREG(zs.st_mode)))
                    return at(err, path, lookup(v, "timezone") ? lookup(v, "timezone") : k,
                              "models.batch.timezone: '%s' is not a timezone (like "
                              "Europe/Paris)", cfg->batch_timezone);
            }
        } else if (!strcmp(kn, "cache_ttl_s")) {
            static const KeyDef ck = { "", "cache_ttl_s", KEY_INT, 0, 31536000, NULL,
                                       offsetof(Config, model_cache_ttl_s) };
            if ((rc = load_value(cfg, &ck, "models.cache_ttl_s", k, v, path, err)) < 0)
                return rc;
        } else {
            return at(err, path, k, "models: unknown key '%s' (providers, routes, budgets, "
                                    "cache_ttl_s, batch, local)", kn);
        }
    }
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
        if (name && !strcmp(name, "models")) {
            if (cfg->n_model_providers || cfg->n_model_routes) {
                rc = at(err, path, k, "'models' given twice");
                goto out;
            }
            rc = load_models(cfg, k, fy_node_pair_value(p), path, err);
        } else if (name && !strcmp(name, "connectors")) {
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
