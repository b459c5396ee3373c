/* Private to src/model/: what the remote providers (openai.c, anthropic.c)
 * share in remote.c. A remote provider is a ModelWire (how one API is
 * spoken: its path, headers, request body and answer) over one call
 * procedure (remote.c: the HTTP exchange, the status mapping, the JSON
 * check and its one repair round). The pure parts are reachable here so
 * that tests/unit/test_model_remote.c can test them without a network. */
#ifndef BUREAU_MODEL_MODEL_INT_H
#define BUREAU_MODEL_MODEL_INT_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "model/provider.h"

#define MODEL_MAX_PROMPT      (4 << 20)  /* bytes of system + prompt sent */
#define MODEL_MAX_REQUEST     (8 << 20)  /* bytes of a request body */
#define MODEL_DEFAULT_MAX_RESPONSE (4 << 20) /* when the request says 0 */
#define MODEL_MAX_RESPONSE    (64 << 20) /* the most a request may allow */
#define MODEL_REPAIR_ECHO_MAX (32 << 10) /* bytes of a broken answer sent back */
#define MODEL_MAX_KEY         4096       /* bytes of an API key */
#define MODEL_MAX_TIMEOUT_MS  (3600 * 1000)
#define MODEL_ANTHROPIC_DEFAULT_MAX_TOKENS 1024
#define MODEL_ANTHROPIC_VERSION "2023-06-01"

/* One chat exchange, neutral of the API that carries it. Borrowed. */
typedef struct ModelChat {
    const char *system;    /* the whole system prompt (the schema stated in it), or NULL */
    const char *prompt;    /* the user's turn */
    const char *broken;    /* repair round: the broken answer (the assistant's turn), or NULL */
    const char *repair;    /* repair round: the instruction (a second user turn) */
    const json_t *schema;  /* sent natively (OpenAI json_schema mode), or NULL */
    bool json;             /* the answer must be JSON (OpenAI: json_object mode) */
    int max_tokens;        /* 0: the API's default (Anthropic: its wire sets one) */
} ModelChat;

/* What a chat answer said. text is owned (free()). */
typedef struct ModelReply {
    char *text;
    bool has_usage;
    int64_t tokens_in, tokens_out;
    char model[128];
} ModelReply;

void model__reply_done(ModelReply *r);

/* How one API is spoken. */
typedef struct ModelWire {
    const char *kind;       /* "openai" | "anthropic" */
    const char *chat_path;  /* appended to base_url */
    /* the request body of a chat (a new reference) */
    json_t *(*chat_body)(const ModelProviderConfig *cfg, const ModelChat *c);
    /* reads a 2xx chat answer; 0, or <0 with why */
    int (*chat_parse)(const json_t *answer, ModelReply *out, char *why, size_t why_size);
    /* appends the headers that carry key (may be NULL: no key) */
    struct curl_slist *(*auth_headers)(struct curl_slist *list, const char *key);
    /* embeddings: the path, the body and the parse; NULL when not offered */
    const char *embed_path;
    json_t *(*embed_body)(const ModelProviderConfig *cfg, const char *input);
    /* *ret_vector: a new array of numbers */
    int (*embed_parse)(const json_t *answer, json_t **ret_vector, ModelReply *out, char *why,
                       size_t why_size);
    const char *no_embed_msg; /* the error when embed_path is NULL */
} ModelWire;

/* Makes a provider that speaks wire: checks cfg (kind, base_url, model,
 * timeout) and reads the key from cfg->api_key_env (ERR_CONFIG when the
 * variable is named but not set). */
int model__remote_new(const ModelProviderConfig *cfg, const ModelWire *wire,
                      ModelProvider **ret, Err *err);

/* ---- the pure parts (remote.c) ---------------------------------------- */

/* A Retry-After value: delta-seconds or an HTTP-date (any of the three
 * forms RFC 9110 allows), against now_ms. Sets *ret_ms (0 for a date in
 * the past; capped at one day) and returns 0, or ERR_INVAL. */
int model__retry_after_parse(const char *value, int64_t now_ms, int64_t *ret_ms);

/* Whether v follows schema at its top level: its type, the required keys,
 * and for each top-level property present its type, enum, minimum and
 * maximum. Keywords other than these are not checked (a provider asks the
 * model for the schema; the router's callers validate deeper). Returns
 * true, or false with why. */
bool model__schema_check(const json_t *schema, const json_t *v, char *why, size_t why_size);

/* The classify schema for labels (an array of 1..256 non-empty strings):
 * {label: one of labels, confidence: a number 0..1}, both required, nothing
 * else. NULL when labels are not such an array. */
json_t *model__classify_schema(const json_t *labels);

/* Parses a model's JSON answer: the text, trimmed, optionally inside one
 * Markdown code fence (```json ... ```). Returns 0 and a new reference, or
 * ERR_INVAL with why. */
int model__json_answer_parse(const char *text, json_t **ret, char *why, size_t why_size);

/* The system prompt for a request: system (may be NULL) and, when
 * schema is set, the instruction to answer with JSON that follows it.
 * Appended to out. */
int model__system_build(const char *system, const json_t *schema, Buf *out);

/* The repair round's instruction for an answer that was broken because of
 * why. Appended to out. */
int model__repair_build(const json_t *schema, const char *why, Buf *out);

/* The message an API put in an error answer ({"error": {"message"}},
 * {"error": "..."}, {"message": "..."}), else the start of the body on one
 * line. Written to out (never longer than size - 1). */
void model__error_message(const char *body, size_t len, char *out, size_t size);

/* Replaces every occurrence of key (when not NULL or empty) in s with
 * "[redacted]", in place, within size bytes. */
void model__redact(char *s, size_t size, const char *key);

/* The token estimate of len bytes of text: len / 4, rounded up. */
int64_t model__tokens_estimate(size_t len);

/* ---- the wires --------------------------------------------------------- */

extern const ModelWire model__openai_wire;
extern const ModelWire model__anthropic_wire;

#endif
