/* `bureau serve`: the HTTP server (libmicrohttpd, epoll, a thread pool).
 *
 * Routes: GET /healthz, GET /metrics, POST|GET /v1/events and the rest of
 * /v1 (a bearer token, or the dashboard's session cookie with its CSRF
 * token), POST /hooks/NAME (the connectors of bureau.yaml), the dashboard at
 * / with POST /login and /logout, and the event stream GET /v1/stream.
 * Every accepted write becomes a ledger event and is answered only once that
 * event is durable; a request waiting for the writer (or a stream waiting
 * for events) is suspended, not a blocked thread, so a few threads carry
 * many concurrent appends into each group commit. */
#ifndef BUREAU_API_SERVER_H
#define BUREAU_API_SERVER_H

#include <stdint.h>

#include <jansson.h>

#include "core/config.h"
#include "ledger/ledger.h"
#include "model/router.h"

typedef struct ApiServer ApiServer;

typedef struct ApiOptions {
    const char *data_dir;
    const Config *config;  /* borrowed for the server's life */
    Ledger *ledger;        /* borrowed */
    const char *listen;    /* HOST:PORT; NULL = config->listen */
} ApiOptions;

/* Resolves connector secrets (secret_env), binds and starts serving.
 * ERR_CONFIG for a missing secret or a bad address, ERR_IO when the
 * address cannot be bound. */
int api_server_start(const ApiOptions *opts, ApiServer **ret, Err *err);

/* The bound address ("127.0.0.1:8470"), useful with port 0. */
const char *api_server_address(const ApiServer *s);

/* What `bureau models` shows of the providers (breakers, latency), for
 * GET /v1/status; called on a server thread. Returns a new reference. */
typedef json_t *(*ApiModelsHealth)(void *ctx);
void api_server_set_models_health(ApiServer *s, ApiModelsHealth fn, void *ctx);

/* The model router POST /v1/goals plans with (the engine's, borrowed;
 * stop the server before freeing it). Without one, goals answer 503. */
void api_server_set_router(ApiServer *s, ModelRouter *router);

/* Stops accepting connections, lets in-flight requests finish (at most
 * grace_ms), then stops the threads and frees the server. The ledger stays
 * open: close it afterwards to drain its writer. */
void api_server_stop(ApiServer *s, int grace_ms);

#endif
