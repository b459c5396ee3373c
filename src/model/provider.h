/* Model providers behind one interface. The router (model/router.c) picks a
 * provider per call; a provider answers one request and says how it went.
 * Providers never append events and never retry on their own beyond what
 * their kind needs (the OpenAI provider's one repair of broken JSON); the
 * router owns fallbacks, breakers, budgets and the cache. */
#ifndef BUREAU_MODEL_PROVIDER_H
#define BUREAU_MODEL_PROVIDER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/err.h"

/* What one call asks for. Every pointer is borrowed for the call. */
typedef struct ModelRequest {
    const char *task;          /* classify | extract | draft | summarize | plan | embed | complete */
    const char *system;        /* system prompt, or NULL */
    const char *prompt;        /* the text / the rendered prompt (UTF-8) */
    const json_t *schema;      /* JSON schema the output must follow (structured output), or NULL */
    const json_t *labels;      /* classify: the allowed labels (array of strings), or NULL */
    /* structured inputs for the local tier, which reads no free text: plan
     * gets {goal, workflows: [{name, text}], threshold?}. Remote providers
     * ignore it (the prompt says the same in words). NULL when none. */
    const json_t *context;
    int max_output_tokens;     /* 0: the provider's default */
    int timeout_ms;            /* the whole call, > 0 */
    size_t max_response_bytes; /* the answer's body is cut (and the call fails) above this */
} ModelRequest;

typedef enum ModelStatus {
    MODEL_OK,           /* output holds the answer */
    MODEL_RETRY,        /* transient: 5xx, connection refused or reset, try another or later */
    MODEL_RATE_LIMITED, /* 429: retry_after_ms says when (0: unknown) */
    MODEL_TIMEOUT,      /* no complete answer within timeout_ms */
    MODEL_TOO_LARGE,    /* the answer was larger than max_response_bytes */
    MODEL_BAD_OUTPUT,   /* an answer came but is unusable (broken JSON after the repair) */
    MODEL_FAILED,       /* permanent: 4xx other than 429, a bad request or configuration */
} ModelStatus;

typedef struct ModelResponse {
    ModelStatus status;
    /* the answer: a JSON string for text tasks; the parsed object for a
     * request with a schema; {label, confidence} for classify; an array of
     * numbers for embed (owned, NULL unless MODEL_OK) */
    json_t *output;
    char model[128];          /* the model that answered (as the provider names it) */
    int64_t tokens_in;        /* as reported; estimated (bytes / 4) when not */
    int64_t tokens_out;
    int64_t retry_after_ms;   /* MODEL_RATE_LIMITED */
    int http_status;          /* 0 for none or a local provider */
    int repairs;              /* broken-JSON repairs it took (0 or 1) */
    char error[512];          /* what went wrong, for the operator (never a key) */
} ModelResponse;

/* Releases r->output (and sets it to NULL); r may be NULL. The rest of *r
 * stays readable. */
void model_response_done(ModelResponse *r);

/* "ok", "retry", "rate_limited", "timeout", "too_large", "bad_output",
 * "failed" (static strings; "unknown" for anything else). */
const char *model_status_name(ModelStatus s);

/* The settings of one provider: ModelProviderConfig in core/config.h
 * (models.providers[] in bureau.yaml). */

typedef struct ModelProvider ModelProvider;

typedef struct ModelProviderOps {
    /* Answers one request; fills *resp (always, status says how it went).
     * Thread-safe: calls may run at once on one provider. */
    void (*call)(ModelProvider *p, const ModelRequest *req, ModelResponse *resp);
    void (*free)(ModelProvider *p);
} ModelProviderOps;

struct ModelProvider {
    const ModelProviderOps *ops;
    ModelProviderConfig cfg;
    void *impl;
};

/* The remote providers (model/openai.c, model/anthropic.c). The API key is
 * read from cfg->api_key_env when the provider is made. */
int model_openai_new(const ModelProviderConfig *cfg, ModelProvider **ret, Err *err);
int model_anthropic_new(const ModelProviderConfig *cfg, ModelProvider **ret, Err *err);

#endif
