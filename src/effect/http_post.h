/* The webhook.post effect: one JSON POST to a receiver's URL, signed with
 * HMAC-SHA256 in Stripe's scheme when there is a secret, and the answer
 * classified as delivered / retry / permanent. The executor never follows a
 * redirect, never speaks anything but http and https, and never lets the
 * secret reach an outcome or a log line. */
#ifndef BUREAU_EFFECT_HTTP_POST_H
#define BUREAU_EFFECT_HTTP_POST_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "effect/effect.h"

#define HTTP_POST_MAX_URL      2048        /* bytes of with.url */
#define HTTP_POST_MAX_BODY     (1 << 20)   /* bytes of with.body, as compact JSON */
#define HTTP_POST_MAX_ENV      128         /* bytes of with.secret_env */
#define HTTP_POST_MAX_KEY      255         /* bytes of the Idempotency-Key */
#define HTTP_POST_MAX_RESPONSE (64 << 10)  /* bytes of the answer read, the rest dropped */
#define HTTP_POST_MAX_TIMEOUT  3600        /* seconds */
/* "t=" + 20 digits + ",v1=" + 64 hex digits + NUL, rounded up. */
#define HTTP_POST_SIGNATURE_MAX 96

/* Validates a webhook.post step's `with` object: {url, body, secret_env?}.
 * url: a string, http:// or https:// only, at most HTTP_POST_MAX_URL bytes,
 * parseable by libcurl, with a host and no user name or password in it.
 * body: any JSON value whose compact form fits in HTTP_POST_MAX_BODY bytes.
 * secret_env: the name of an environment variable, [A-Z_][A-Z0-9_]*, at most
 * HTTP_POST_MAX_ENV bytes (the variable itself is read at delivery time).
 * Any other key is refused. Returns 0, or ERR_INVAL with a message that
 * starts with the field ("with.url: ..."). Thread-safe. */
int http_post_check(const json_t *with, Err *err);

/* Writes the Bureau-Signature header value for body[0..len) signed at ts
 * (seconds since the epoch) into out: "t=TS,v1=HEX", where HEX is the
 * lower-case hex HMAC-SHA256 keyed with secret over "TS." followed by the
 * body: Stripe's v1 scheme, so receivers can reuse their verification code.
 * Returns 0; ERR_INVAL when secret or body is NULL or ts is negative;
 * ERR_TOOBIG when size is below what the value needs (HTTP_POST_SIGNATURE_MAX
 * is always enough). out is written only on success. */
int http_post_sign(const char *secret, int64_t ts, const char *body, size_t len, char *out,
                   size_t size);

/* One delivery attempt. Every pointer is borrowed for the call only. */
typedef struct HttpPostRequest {
    const char *url;             /* http:// or https:// (see http_post_check) */
    const char *body;            /* JSON text, sent as is */
    size_t len;                  /* bytes of body, at most HTTP_POST_MAX_BODY */
    const char *idempotency_key; /* required; printable ASCII, HTTP_POST_MAX_KEY bytes at most */
    const char *secret;          /* may be NULL: then no Bureau-Signature header */
    int64_t timestamp_s;         /* the signature's t=; <= 0 means now */
    int timeout_s;               /* whole attempt, 1..HTTP_POST_MAX_TIMEOUT; connecting
                                  * gets at most 10 s of it */
} HttpPostRequest;

/* POSTs req->body to req->url with the headers Content-Type:
 * application/json, Idempotency-Key, User-Agent: bureau/VERSION and, when
 * req->secret is set, Bureau-Signature. Redirects are not followed, only
 * http and https are spoken, at most HTTP_POST_MAX_RESPONSE bytes of the
 * answer are read. Blocks for at most req->timeout_s (plus name resolution
 * in the system resolver, which libcurl runs in a thread of its own when
 * built so).
 *
 * Always fills *out: 2xx -> EFFECT_DELIVERED; 408, 425, 429, 5xx, a refused
 * connection, a name that does not resolve, a timeout, a TLS failure ->
 * EFFECT_RETRY; any other 4xx, a 3xx (not followed), a malformed URL or
 * request -> EFFECT_PERMANENT. out->code is the HTTP status, 0 when none
 * came; out->detail says what happened for the operator, with the start of
 * the answer's body, and never holds the secret.
 *
 * Returns 0 when the attempt was made (whatever its outcome), ERR_INVAL
 * when req itself is unusable (out then says EFFECT_PERMANENT and why),
 * ERR_INTERNAL when libcurl cannot be set up (out says EFFECT_RETRY).
 * Thread-safe: each call uses a handle of its own. */
int http_post_deliver(const HttpPostRequest *req, EffectOutcome *out);

#endif
