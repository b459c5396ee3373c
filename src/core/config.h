/* bureau.yaml: the operator's settings, all optional, with defaults.
 *
 * The loader knows every key; an unknown key, a wrong type or a value out of
 * range is refused with the file, line and column. Secrets, tokens and the
 * mode never live here (they are in the database); a connector's secret is
 * given inline (`secret`) or, better, named by environment variable
 * (`secret_env`), which is read when the server starts. */
#ifndef BUREAU_CORE_CONFIG_H
#define BUREAU_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"
#include "core/log.h"

#define CONFIG_MAX_BYTES (1024 * 1024)
#define CONFIG_MAX_CONNECTORS 64

typedef enum ConnectorKind {
    CONNECTOR_WEBHOOK, CONNECTOR_STRIPE, CONNECTOR_FORM, /* push: served at /hooks/NAME */
    CONNECTOR_IMAP, CONNECTOR_ICS,                       /* pull: polled by bureau serve */
} ConnectorKind;

#define CONFIG_MAX_FOLDERS 16

/* True for the kinds bureau serve polls (imap, ics) rather than serves. */
#define CONNECTOR_IS_PULL(k) ((k) == CONNECTOR_IMAP || (k) == CONNECTOR_ICS)

typedef struct ConnectorConfig {
    char *name;             /* [a-z0-9_-]+, served at /hooks/NAME */
    ConnectorKind kind;
    char *secret;           /* inline secret, or NULL */
    char *secret_env;       /* environment variable holding the secret, or NULL */
    char *source;           /* events' source; default the name */
    int consent;            /* default consent: 0 none, 1 transactional, 2 marketing */
    /* webhook */
    char *signature_header; /* default X-Signature */
    char *timestamp_header; /* NULL: no timestamp check */
    int tolerance_s;        /* timestamp / Stripe tolerance, default 300 */
    char *type;             /* fixed event type */
    char *type_field;       /* or: the body field (dotted path) holding it */
    char *key_header;       /* idempotency key from a header */
    char *key_field;        /* or from a body field (dotted path); else the body's hash */
    /* form */
    char *form;             /* form name in the event; default the connector name */
    char *honeypot;         /* a field that must stay empty */
    char *redirect;         /* 303 to this URL after a submission */
    char *consent_field;    /* a field whose truthy value means marketing consent */
    int rate_limit;         /* submissions per minute per client address, default 10 */
    /* pull (imap, ics) */
    char *url;              /* imap://HOST[:PORT] or imaps://...; ics: http(s) feed */
    char *path;             /* ics: a file instead of url */
    int interval_s;         /* poll every interval_s (jittered), default 300 */
    int horizon_days;       /* ics: recurrences expanded this far ahead, default 365 */
    bool allow_empty;       /* ics: an empty feed may cancel every known event */
    /* imap */
    char *user;
    char *password;         /* inline password, or NULL */
    char *password_env;     /* environment variable holding it, or NULL */
    char *folders[CONFIG_MAX_FOLDERS]; /* default [INBOX] */
    int n_folders;
    char *sent_folder;      /* the operator's Sent folder (polled too), or NULL */
    bool starttls_off;      /* imap:// without STARTTLS (loopback servers only) */
    bool tls_verify;        /* default true */
    char *ca_file;          /* PEM file of the CA(s) to trust instead of the system store */
    size_t max_message_bytes; /* larger messages keep only their header, default 25 MiB */
} ConnectorConfig;

/* models: (docs/models.md) */
#define CONFIG_MAX_MODEL_PROVIDERS 16
#define CONFIG_MAX_MODEL_ROUTES 16
#define CONFIG_MAX_ROUTE_CANDIDATES 8
#define CONFIG_MAX_WORKFLOW_BUDGETS 64
#define CONFIG_MAX_MODEL_RULES 256

/* One provider (models.providers[]). */
typedef struct ModelProviderConfig {
    char name[65];             /* [a-z0-9_-]+, unique */
    char kind[16];             /* local | openai | anthropic */
    char base_url[512];        /* openai: ".../v1"; anthropic: "https://api.anthropic.com/v1" */
    char model[128];           /* the model name sent to the API */
    char embed_model[128];     /* openai: for embeddings, default model */
    char api_key_env[129];     /* environment variable holding the key, or "" */
    int timeout_ms;            /* per call, default 30000 */
    double price_in_per_mtok;  /* USD per million input tokens */
    double price_out_per_mtok; /* USD per million output tokens */
    bool json_schema;          /* openai: response_format json_schema (else json_object) */
} ModelProviderConfig;

/* One route (models.routes.NAME): a task class and its candidates. */
typedef struct ModelRouteConfig {
    char name[33];
    char candidates[CONFIG_MAX_ROUTE_CANDIDATES][65];
    int n_candidates;
    int max_latency_ms;        /* 0: no SLA */
    double max_cost_usd;       /* per call; 0: no cap */
    int max_output_tokens;     /* default 512 */
    bool defer_batch;          /* defer: batch (the call waits for the batch window) */
    bool on_budget_park;       /* on_budget: park (else degrade to the next candidate) */
    bool no_cache;             /* cache: false */
    double daily_usd, monthly_usd; /* this route's budgets, 0: none */
    /* canary: {candidate, percent, min_sample, max_edit_rate_delta,
     * max_reject_rate_delta, max_cost_usd} (docs/models.md, "Quality") */
    char canary[65];           /* '' when none */
    int canary_percent;        /* 1..100 of the calls, default 10 */
    int canary_min_sample;     /* outcomes of each side before the rule decides, default 20 */
    double canary_max_edit_delta;   /* canary edit rate - incumbent's, at most; default 0.1 */
    double canary_max_reject_delta; /* the same for rejections; default 0.05 */
    double canary_max_cost_usd;     /* mean cost per draft of the canary, at most; 0: none */
    /* shadow: {candidate, percent} */
    char shadow[65];           /* '' when none */
    int shadow_percent;        /* 1..100 of the approved drafts, default 100 */
} ModelRouteConfig;

typedef struct ModelBudgetConfig {
    char name[65];             /* a workflow */
    double daily_usd, monthly_usd;
} ModelBudgetConfig;

typedef struct ModelRuleConfig {
    char label[33];            /* a classify label */
    char keyword[65];          /* a word or phrase that leans towards it */
} ModelRuleConfig;

typedef struct Config {
    /* store: */
    bool durability_normal;   /* store.durability: full (default) | normal */
    int busy_timeout_ms;      /* store.busy_timeout_ms, default 10000 */
    /* ledger: */
    size_t max_data_bytes;    /* ledger.max_data_bytes, default 1 MiB */
    int group_commit_max;     /* ledger.group_commit_max, default 1024 events */
    /* log: */
    LogLevel log_level;       /* log.level, default info */
    /* server: */
    char listen[129];         /* server.listen, default 127.0.0.1:8470 */
    int threads;              /* server.threads, 0 = one per core */
    int max_connections;      /* server.max_connections, default 1000 */
    int timeout_s;            /* server.timeout_s: idle/slow client timeout, default 30 */
    size_t max_header_bytes;  /* server.max_header_bytes, default 16 KiB */
    size_t max_body_bytes;    /* server.max_body_bytes: one JSON event, default 1 MiB */
    size_t max_batch_bytes;   /* server.max_batch_bytes: an NDJSON batch, default 16 MiB */
    size_t max_form_bytes;    /* server.max_form_bytes: a form post, default 32 MiB */
    size_t max_file_bytes;    /* server.max_file_bytes: one uploaded file, default 10 MiB */
    /* flow: */
    int flow_workers;         /* flow.workers: step worker threads, 0 = two per core */
    int flow_worker_nice;     /* flow.worker_nice: the workers' niceness above the process's */
    int flow_lease_ms;        /* flow.lease_ms: runner lease time to live, default 15000 */
    int flow_depth_max;       /* flow.depth_max: causal depth limit, default 8 */
    size_t lua_memory_bytes;  /* flow.lua_memory_bytes, default 16 MiB */
    int lua_instructions;     /* flow.lua_instructions per evaluation, default 1e6 */
    /* smtp: (email.send; empty url: mail cannot be delivered, only captured) */
    char smtp_url[512];       /* smtp.url: smtp://HOST:PORT (STARTTLS) or smtps://HOST:PORT */
    char smtp_from[321];      /* smtp.from: the From address of every mail */
    char smtp_user[257];      /* smtp.user: login, or empty */
    char smtp_password_env[129]; /* smtp.password_env: variable holding the password */
    char smtp_ca_file[1024];  /* smtp.ca_file: CA bundle to verify the server, or empty */
    int smtp_starttls;        /* smtp.starttls: 0 required (default), 1 try, 2 never */
    int smtp_timeout_s;       /* smtp.timeout_s: one delivery, default 30 */
    int smtp_undo_window_s;   /* smtp.undo_window_s: approved mail held this long, default 0 */
    /* outbox: */
    int outbox_max_attempts;  /* outbox.max_attempts before an effect fails for good, default 8 */
    int outbox_backoff_ms;    /* outbox.backoff_ms: first retry delay, doubled, default 5000 */
    int outbox_max_delay_ms;  /* outbox.max_delay_ms: cap of the delay, default 3600000 */
    int webhook_timeout_s;    /* outbox.webhook_timeout_s: one webhook.post, default 30 */
    /* memory: how long an item of each kind is short-term memory (searched;
     * then consolidated into a summary), default 30 days each */
    int memory_email_ttl_days, memory_form_ttl_days, memory_note_ttl_days;
    char memory_consolidate_schedule[64]; /* memory.consolidate_schedule: cron, "off"; default "0 3 * * *" */
    char memory_consolidate_timezone[64]; /* memory.consolidate_timezone, default UTC */
    /* models: */
    ModelProviderConfig model_providers[CONFIG_MAX_MODEL_PROVIDERS];
    size_t n_model_providers;
    ModelRouteConfig model_routes[CONFIG_MAX_MODEL_ROUTES];
    size_t n_model_routes;
    double budget_daily_usd, budget_monthly_usd;      /* models.budgets: all spend */
    double budget_customer_daily_usd, budget_customer_monthly_usd; /* .per_customer: each */
    ModelBudgetConfig workflow_budgets[CONFIG_MAX_WORKFLOW_BUDGETS]; /* .workflows.NAME */
    size_t n_workflow_budgets;
    int model_cache_ttl_s;     /* models.cache_ttl_s, default 604800 (7 days) */
    char batch_window[12];     /* models.batch.window "HH:MM-HH:MM", default 02:00-05:00 */
    char batch_timezone[64];   /* models.batch.timezone, default UTC */
    int local_hash_bits;       /* models.local.hash_bits, default 18 */
    int local_embed_dim;       /* models.local.embed_dim, default 384 */
    ModelRuleConfig model_rules[CONFIG_MAX_MODEL_RULES]; /* models.local.rules: {LABEL: [words]} */
    size_t n_model_rules;
    /* connectors: */
    ConnectorConfig *connectors;
    size_t n_connectors;
} Config;

/* Fills cfg with the defaults (owns nothing yet; core_config_done is safe). */
void core_config_defaults(Config *cfg);

/* Loads path over the defaults. A missing file is not an error (defaults
 * apply). Returns 0, or ERR_CONFIG with "path:line:col: ..." in err. */
int core_config_load(const char *path, Config *cfg, Err *err);

/* Frees what the loader allocated; cfg keeps its scalar settings. */
void core_config_done(Config *cfg);

const ConnectorConfig *core_config_connector(const Config *cfg, const char *name);

/* The commented-out default file `bureau init` writes. */
extern const char core_config_default_yaml[];

#endif
