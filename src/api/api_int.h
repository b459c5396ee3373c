/* Private to src/api: the request context, metrics and route handlers. */
#ifndef BUREAU_API_API_INT_H
#define BUREAU_API_API_INT_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "api/server.h"
#include "core/buf.h"
#include "core/embedded.h"
#include "flow/content.h"
#include "ingest/ingest.h"

#define API_SESSION_COOKIE "bureau_session"
#define API_SESSION_HEX 64      /* 32 random bytes */
#define API_CSRF_HEX 64
#define API_SESSIONS_MAX 64     /* the oldest is ended to make room */
#define API_SESSION_TTL_S (12 * 3600)
#define API_STREAMS_MAX 16
#define API_STREAM_HEARTBEAT_MS 15000
#define API_LOGIN_MAX_BODY 4096
#define API_GOAL_MAX_BODY 16384   /* POST /v1/goals: {text} of at most FLOW_GOAL_TEXT_MAX bytes */
#define API_LOGIN_PER_MINUTE 30
#define API_AUDIT_EVERY_MS 60000

/* ---- metrics ---- */

#define API_LATENCY_BUCKETS 12
#define API_BATCH_BUCKETS 12
#define API_MAX_LABELS 66 /* "api", "forms"... plus one per connector */
#define API_REASONS 9

typedef struct ApiMetrics {
    _Atomic uint64_t accepted[API_MAX_LABELS];
    _Atomic uint64_t duplicates[API_MAX_LABELS];
    _Atomic uint64_t rejected[API_MAX_LABELS][API_REASONS];
    _Atomic uint64_t latency[API_LATENCY_BUCKETS + 1]; /* cumulative at render */
    _Atomic uint64_t latency_sum_us;
    _Atomic uint64_t requests;
    _Atomic int64_t open_connections;
} ApiMetrics;

/* Reject reasons beyond the connectors' own (IngestReason values come
 * first, so one table serves both). */
enum {
    API_REASON_UNAUTHORIZED = INGEST_HONEYPOT + 1, /* bad or missing bearer token */
    API_REASON_TOO_LARGE,
    API_REASON_RATE_LIMITED,
};

const char *api__reason_name(int reason);
void api__metrics_latency(ApiMetrics *m, int64_t ns);
void api__metrics_render(ApiServer *s, Buf *out);

/* ---- requests ---- */

typedef enum Route {
    ROUTE_NONE,
    ROUTE_HEALTH,
    ROUTE_METRICS,
    ROUTE_EVENTS_POST,
    ROUTE_EVENTS_GET,
    ROUTE_HOOK,
    ROUTE_TASKS_GET,
    ROUTE_TASK_GET,
    ROUTE_TASK_ACTION,
    ROUTE_TASK_TRACE,
    ROUTE_INBOX,
    ROUTE_DECISION,
    ROUTE_EFFECTS,
    ROUTE_EFFECT_ACTION,
    ROUTE_MODE_GET,
    ROUTE_MODE_POST,
    ROUTE_SPEND,
    ROUTE_CONTENT,
    ROUTE_CONTENT_PIECE,
    ROUTE_MODELS_STATS,
    ROUTE_MODELS_CANARY,
    ROUTE_CONTACTS,
    ROUTE_CONTACT,
    ROUTE_MEMORY_SEARCH,
    ROUTE_WEB,                  /* the dashboard's files (web.c) */
    ROUTE_LOGIN,
    ROUTE_LOGOUT,
    ROUTE_SESSION,
    ROUTE_STREAM,
    ROUTE_STATUS,
    ROUTE_AUDIT,
    ROUTE_GOALS_GET,
    ROUTE_GOALS_POST,
} Route;

typedef struct FormState FormState;

typedef struct Req {
    ApiServer *srv;
    struct MHD_Connection *conn;
    int64_t start_ns;
    Route route;
    int label;                  /* metrics label: 0 api, 1 + connector index */
    const ConnectorConfig *connector;
    const char *secret;
    size_t secret_len;
    char method[8];
    char path[128];
    char target[40];            /* /v1/tasks/{target}/{action}, /v1/approvals/{target}/... */
    char action[16];
    char token_id[32];          /* the bearer token's id, once authorized */
    char contact[321];          /* /v1/contacts/{contact} */
    char piece[CONTENT_PIECE_MAX + 1]; /* /v1/content/{piece} */
    bool via_session;           /* authorized by the session cookie, not a bearer token */
    char session_csrf[API_CSRF_HEX + 1];
    const EmbeddedFile *file;   /* ROUTE_WEB */

    Buf body;                   /* bounded by the route's limit */
    bool too_big;
    size_t discarded;           /* bytes dropped after an answer was decided */
    FormState *form;

    /* the answer, once known */
    bool answered;
    bool queued;                /* the answer was handed to MHD */
    bool counted;               /* in ApiServer.active */
    int status;
    Buf resp;
    const char *resp_type;
    char *location;             /* 303 redirect target */
    char *set_cookie;           /* a Set-Cookie header */
    const char *cache_control;  /* NULL: no-store */
    const char *etag;
    const char *static_body;    /* an embedded file, answered as is (not copied) */
    size_t static_len;
    struct MHD_Response *custom; /* built by the handler (the event stream) */
    const char *allow;          /* the Allow header of a 405 */
    const char *retry_after;    /* the Retry-After header (seconds), or NULL */
    int64_t seq;                /* for the access log; 0 when none */
    int reason;                 /* why it was refused, counted when it ends; 0: from status */

    /* an append in flight: the connection is suspended until done */
    bool suspended;
    bool append_done;
    int append_rc;
    Err append_err;
    LedgerAppendResult *results;
    size_t n_results;
    bool batch;                 /* NDJSON: answer with a list */
} Req;

struct ApiServer {
    char *data_dir;
    const Config *cfg;
    Ledger *ledger;
    struct MHD_Daemon *d;
    char address[160];
    int64_t started_ms;
    ApiMetrics m;
    char **secrets;             /* per connector, resolved at start */
    pthread_key_t reader_key;   /* per-thread read connection */
    pthread_mutex_t mu;
    pthread_cond_t idle;
    int active;                 /* requests in flight */
    bool stopping;              /* new requests get 503 and are never suspended */
    struct RateLimit *rate;
    struct ApiSessions *sessions;
    struct ApiStreams *streams;
    ApiModelsHealth models_health; /* may be NULL */
    ModelRouter *router;        /* goals: the engine's router, or NULL */
    bool planning;              /* a goal is being planned (under mu): one at a time */
    void *models_ctx;
    pthread_mutex_t audit_mu;   /* the chain check, cached per head */
    int64_t audit_head;
    int64_t audit_ms;           /* when it was last checked */
    json_t *audit;
};

/* A read connection for the calling thread (opened on first use). */
Store *api__reader(ApiServer *s, Err *err);

/* Answers: problem+json with a title and detail, or JSON. */
void api__problem(Req *r, int status, const char *title, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void api__json(Req *r, int status, json_t *body);

/* Route handlers; each either answers or suspends the request for an
 * append (see api__append). */
void api__events_post(Req *r);
void api__events_get(Req *r);
void api__hook(Req *r);
void api__tasks_get(Req *r);
void api__task_get(Req *r);
void api__task_action(Req *r);
void api__task_trace(Req *r);
void api__inbox_get(Req *r);
void api__decision_post(Req *r);
void api__effects_get(Req *r);
void api__effect_action(Req *r);
void api__mode_get(Req *r);
void api__mode_post(Req *r);
void api__spend_get(Req *r);
void api__content_get(Req *r);
void api__content_piece_get(Req *r);
void api__models_stats_get(Req *r);
void api__models_canary_post(Req *r);
void api__contacts_get(Req *r);
void api__memory_search_get(Req *r);
void api__contact_get(Req *r);
void api__web_get(Req *r);
void api__login(Req *r);
void api__logout(Req *r);
void api__session_get(Req *r);
void api__stream(Req *r);
void api__status_get(Req *r);
void api__audit_get(Req *r);
void api__goals_get(Req *r);
void api__goals_post(Req *r);

/* The dashboard's files (web.c): the one at path ("/" is index.html), NULL
 * when none. Its ETag is computed once. */
const EmbeddedFile *api__web_file(const char *path, const char **ret_etag,
                                  const char **ret_type);

/* Sessions (session.c): server-side, the id kept only as its SHA-256. */
struct ApiSessions *api__sessions_new(void);
void api__sessions_free(struct ApiSessions *ss);
/* Starts a session for a token; writes its id and CSRF token (hex, NUL
 * ended). The oldest session is ended when API_SESSIONS_MAX are live. */
void api__session_create(ApiServer *s, const char *token_id, char ret_id[API_SESSION_HEX + 1],
                         char ret_csrf[API_CSRF_HEX + 1]);
/* True when id names a live session (not expired, its token not revoked);
 * writes the token's id and the session's CSRF token. */
bool api__session_check(ApiServer *s, Store *rd, const char *id, char ret_token_id[32],
                        char ret_csrf[API_CSRF_HEX + 1], int64_t *ret_expires_ms);
void api__session_end(ApiServer *s, const char *id);
/* The value of field name in an application/x-www-form-urlencoded body of
 * len bytes (not NUL-ended), decoded into out (cap bytes, NUL-ended). False
 * when absent, malformed (a bad %XX, a NUL) or longer than cap - 1. */
bool api__form_field(const char *body, size_t len, const char *name, char *out, size_t cap);

/* Event streams (stream.c). */
struct ApiStreams *api__streams_new(ApiServer *s);
/* Ends every stream (they answer end of stream) and stops the notifier. */
void api__streams_stop(struct ApiStreams *st);
void api__streams_free(struct ApiStreams *st);
int api__streams_count(struct ApiStreams *st);
int api__sessions_count(struct ApiSessions *ss);

/* Form parsing (form.c): feed upload data, then finish. */
int api__form_begin(Req *r);
int api__form_feed(Req *r, const char *data, size_t len);
void api__form_finish(Req *r);
void api__form_free(FormState *f);

/* Submits events for appending and suspends the request until durable.
 * Takes ownership of the events. */
void api__append(Req *r, Event **events, size_t n, bool batch);

/* The client's address as text, for rate limiting. */
void api__client_address(Req *r, char *out, size_t cap);
struct RateLimit *api__rate_new(void);
void api__rate_free(struct RateLimit *rl);
/* True when the client may submit another form now (per-minute window). */
bool api__rate_allow(ApiServer *s, const char *client, int per_minute);

#endif
