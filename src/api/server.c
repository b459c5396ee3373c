/* The HTTP server: libmicrohttpd with epoll and a thread pool, request
 * contexts with bounded bodies, suspend/resume around ledger appends,
 * problem+json errors, one JSON access-log line per request.
 *
 * Invariant: a 2xx for a write is queued only after the writer's callback
 * reported the append durable. The callback runs on the writer thread; it
 * records the result and resumes the connection, and the next handler call
 * (on an MHD thread) builds and queues the answer. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api_int.h"
#include "api/tokens.h"
#include "core/clock.h"
#include "core/crypto.h"
#include "core/json.h"
#include "core/log.h"

/* ---- answers ---- */

void api__problem(Req *r, int status, const char *title, const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    core_utf8_sanitize(detail);
    json_t *p = json_pack("{s:s, s:s, s:i, s:s}", "type", "about:blank", "title", title,
                          "status", status, "detail", detail);
    buf_clear(&r->resp);
    core_json_dump(p, &r->resp);
    json_decref(p);
    r->status = status;
    r->resp_type = "application/problem+json";
    r->answered = true;
}

void api__json(Req *r, int status, json_t *body)
{
    buf_clear(&r->resp);
    core_json_dump(body, &r->resp);
    buf_putc(&r->resp, '\n');
    json_decref(body);
    r->status = status;
    r->resp_type = "application/json";
    r->answered = true;
}

static enum MHD_Result queue_answer(Req *r)
{
    if (r->queued)
        return MHD_YES;
    r->queued = true;
    struct MHD_Response *resp = r->custom;
    r->custom = NULL;
    if (!resp && r->static_body)
        resp = MHD_create_response_from_buffer(r->static_len, (void *)r->static_body,
                                               MHD_RESPMEM_PERSISTENT);
    else if (!resp)
        resp = MHD_create_response_from_buffer(r->resp.len, r->resp.ptr ? r->resp.ptr : "",
                                               MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    if (r->resp_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->resp_type);
    if (r->location)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, r->location);
    if (r->allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    if (r->retry_after)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, r->retry_after);
    if (r->set_cookie)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_SET_COOKIE, r->set_cookie);
    if (r->etag)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, r->etag);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
                            r->cache_control ? r->cache_control : "no-store");
    /* the dashboard loads nothing from elsewhere and is never framed */
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                            "form-action 'self'");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ok;
}

/* ---- appends ---- */

static void append_done(void *ctx, int rc, const Err *err, const LedgerAppendResult *res,
                        size_t n)
{
    Req *r = ctx;
    r->append_rc = rc;
    if (rc < 0)
        r->append_err = *err;
    else if (n) {
        r->results = xmalloc(n * sizeof *res);
        memcpy(r->results, res, n * sizeof *res);
        r->n_results = n;
    }
    r->append_done = true;
    MHD_resume_connection(r->conn);
}

void api__append(Req *r, Event **events, size_t n, bool batch)
{
    r->batch = batch;
    Err err = { 0 };
    MHD_suspend_connection(r->conn);
    r->suspended = true;
    if (ledger_append_async(r->srv->ledger, events, n, append_done, r, &err) < 0) {
        /* nothing was queued: answer now */
        r->suspended = false;
        MHD_resume_connection(r->conn);
        api__problem(r, 503, "Service unavailable", "%s", err.msg);
    }
}

static void answer_append(Req *r)
{
    ApiMetrics *m = &r->srv->m;
    if (r->append_rc < 0) {
        int status = r->append_rc == ERR_BUSY || r->append_rc == ERR_CLOSED ? 503 : 500;
        log_error("append failed", json_pack("{s:s, s:s}", "path", r->path, "error",
                                             r->append_err.msg));
        api__problem(r, status, status == 503 ? "Service unavailable" : "Internal error",
                     "the event was not stored: %s", r->append_err.msg);
        return;
    }
    size_t fresh = 0;
    for (size_t i = 0; i < r->n_results; i++) {
        if (r->results[i].duplicate)
            atomic_fetch_add(&m->duplicates[r->label], 1);
        else {
            atomic_fetch_add(&m->accepted[r->label], 1);
            fresh++;
        }
    }
    if (r->n_results)
        r->seq = r->results[r->n_results - 1].seq;
    if (r->location) {
        r->status = 303;
        r->answered = true;
        buf_clear(&r->resp);
        r->resp_type = NULL;
        return;
    }
    if (r->batch) {
        json_t *list = json_array();
        for (size_t i = 0; i < r->n_results; i++)
            json_array_append_new(list, json_pack("{s:I, s:s, s:b}", "seq",
                                                  (json_int_t)r->results[i].seq, "id",
                                                  r->results[i].id, "duplicate",
                                                  r->results[i].duplicate));
        api__json(r, fresh ? 201 : 200, json_pack("{s:o}", "events", list));
        return;
    }
    const LedgerAppendResult *res = &r->results[0];
    if (res->duplicate)
        api__json(r, 200, json_pack("{s:I, s:s, s:b}", "seq", (json_int_t)res->seq, "id",
                                    res->id, "duplicate", 1));
    else
        api__json(r, 201, json_pack("{s:I, s:s}", "seq", (json_int_t)res->seq, "id", res->id));
}

/* ---- per-thread read connections ---- */

static void reader_free(void *p)
{
    store_close(p);
}

Store *api__reader(ApiServer *s, Err *err)
{
    Store *rd = pthread_getspecific(s->reader_key);
    if (rd)
        return rd;
    if (ledger_reader_open(s->ledger, &rd, err) < 0)
        return NULL;
    pthread_setspecific(s->reader_key, rd);
    return rd;
}

/* ---- routing ---- */

static bool state_changing(const Req *r)
{
    return strcmp(r->method, "GET") && strcmp(r->method, "HEAD") && strcmp(r->method, "OPTIONS");
}

/* A request carries the bearer token, or the dashboard's session cookie and,
 * when it changes anything, the session's CSRF token (X-CSRF-Token): a
 * cookie alone is what another site can make a browser send. */
static bool authorized(Req *r)
{
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_AUTHORIZATION);
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    if (!h) {
        const char *sid = MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND,
                                                      API_SESSION_COOKIE);
        if (!sid) {
            api__problem(r, 401, "Unauthorized",
                         "send the API token as 'Authorization: Bearer TOKEN' (bureau token "
                         "create), or log in at / for a session");
            return false;
        }
        if (!api__session_check(r->srv, rd, sid, r->token_id, r->session_csrf, NULL)) {
            api__problem(r, 401, "Unauthorized", "the session expired or ended: log in again");
            return false;
        }
        r->via_session = true;
        if (state_changing(r)) {
            const char *c = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-CSRF-Token");
            if (!c || strlen(c) != API_CSRF_HEX ||
                !core_ct_equal(c, r->session_csrf, API_CSRF_HEX)) {
                api__problem(r, 403, "Forbidden",
                             "X-CSRF-Token: %s (a request with the session cookie that changes "
                             "anything carries the session's CSRF token; GET /v1/session "
                             "gives it)",
                             c ? "wrong" : "missing");
                return false;
            }
        }
        return true;
    }
    if (strncasecmp(h, "Bearer ", 7)) {
        api__problem(r, 401, "Unauthorized",
                     "send the API token as 'Authorization: Bearer TOKEN' (bureau token create)");
        return false;
    }
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    int rc = rd ? api_token_check(rd, tok, strlen(tok), r->token_id, &err) : ERR_STORE;
    if (rc == 0)
        return true;
    if (rc == ERR_AUTH)
        api__problem(r, 401, "Unauthorized", "the bearer token is unknown or revoked");
    else
        api__problem(r, 503, "Service unavailable", "cannot check the token: %s", err.msg);
    return false;
}

static size_t content_length(Req *r, bool *present)
{
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    *present = cl != NULL;
    return cl ? (size_t)strtoull(cl, NULL, 10) : 0;
}

static void reject(Req *r, int reason)
{
    r->reason = reason;
}

/* Counts a refused request once, under its reason or one its status implies. */
static void count_reject(Req *r)
{
    int reason = r->reason;
    if (!reason)
        reason = r->status == 400   ? INGEST_BAD_BODY
                 : r->status == 401 ? API_REASON_UNAUTHORIZED
                 : r->status == 413 ? API_REASON_TOO_LARGE
                 : r->status == 429 ? API_REASON_RATE_LIMITED
                                    : 0;
    if (reason > 0 && reason < API_REASONS && r->label >= 0 && r->label < API_MAX_LABELS)
        atomic_fetch_add(&r->srv->m.rejected[r->label][reason], 1);
}

/* Decides the route from method and path; may answer at once. */
static void route(Req *r, const char *url, const char *method)
{
    const Config *cfg = r->srv->cfg;
    size_t limit = cfg->max_body_bytes;
    bool post = !strcmp(method, "POST"), get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    if (!strcmp(url, "/healthz")) {
        r->route = ROUTE_HEALTH;
        if (!get) {
            r->allow = "GET, HEAD";
            api__problem(r, 405, "Method not allowed", "use GET %s", url);
        }
        return;
    }
    if (!strcmp(url, "/metrics")) {
        r->route = ROUTE_METRICS;
        if (!get) {
            r->allow = "GET, HEAD";
            api__problem(r, 405, "Method not allowed", "use GET %s", url);
        }
        return;
    }
    if (!strcmp(url, "/login") || !strcmp(url, "/logout")) {
        r->route = !strcmp(url, "/login") ? ROUTE_LOGIN : ROUTE_LOGOUT;
        if (!post) {
            r->allow = "POST";
            api__problem(r, 405, "Method not allowed", "use POST %s", url);
            return;
        }
        limit = API_LOGIN_MAX_BODY;
    } else if (!strcmp(url, "/v1/session") || !strcmp(url, "/v1/stream") ||
               !strcmp(url, "/v1/status") || !strcmp(url, "/v1/audit")) {
        if (!get) {
            r->allow = "GET, HEAD";
            api__problem(r, 405, "Method not allowed", "use GET %s", url);
            return;
        }
        r->route = !strcmp(url, "/v1/session") ? ROUTE_SESSION
                 : !strcmp(url, "/v1/audit")   ? ROUTE_AUDIT
                 : !strcmp(url, "/v1/stream")  ? ROUTE_STREAM
                                               : ROUTE_STATUS;
        if (!authorized(r)) {
            reject(r, API_REASON_UNAUTHORIZED);
            return;
        }
    } else if (!strcmp(url, "/v1/events")) {
        if (!post && !get) {
            r->allow = "GET, HEAD, POST";
            api__problem(r, 405, "Method not allowed", "use GET or POST %s", url);
            return;
        }
        r->route = post ? ROUTE_EVENTS_POST : ROUTE_EVENTS_GET;
        if (!authorized(r)) {
            reject(r, API_REASON_UNAUTHORIZED);
            return;
        }
        const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_TYPE);
        if (post && ct && !strncasecmp(ct, "application/x-ndjson", 20))
            limit = cfg->max_batch_bytes;
    } else if (!strcmp(url, "/v1/tasks") || !strncmp(url, "/v1/tasks/", 10)) {
        /* /v1/tasks, /v1/tasks/{id}, /v1/tasks/{id}/{retry|skip|cancel} */
        const char *rest = url[9] == '/' ? url + 10 : NULL;
        const char *slash = rest ? strchr(rest, '/') : NULL;
        size_t idlen = rest ? (slash ? (size_t)(slash - rest) : strlen(rest)) : 0;
        if (rest && (idlen == 0 || idlen >= sizeof r->target ||
                     (slash && (strlen(slash + 1) == 0 || strlen(slash + 1) >= sizeof r->action ||
                                strchr(slash + 1, '/'))))) {
            api__problem(r, 404, "Not found", "no route for %s %.100s", method, url);
            return;
        }
        if (rest) {
            snprintf(r->target, sizeof r->target, "%.*s", (int)idlen, rest);
            if (slash)
                snprintf(r->action, sizeof r->action, "%s", slash + 1);
        }
        bool trace = slash && !strcmp(r->action, "trace");
        bool action = slash != NULL && !trace;
        if (action ? !post : !get) {
            r->allow = action ? "POST" : "GET, HEAD";
            api__problem(r, 405, "Method not allowed", "use %s %.100s", action ? "POST" : "GET",
                         url);
            return;
        }
        r->route = trace    ? ROUTE_TASK_TRACE
                 : action   ? ROUTE_TASK_ACTION
                 : rest     ? ROUTE_TASK_GET
                            : ROUTE_TASKS_GET;
        if (!authorized(r)) {
            reject(r, API_REASON_UNAUTHORIZED);
            return;
        }
    } else if (!strcmp(url, "/v1/contacts") || !strncmp(url, "/v1/contacts/", 13)) {
        /* /v1/contacts?q=&limit=, /v1/contacts/{id|email} */
        const char *rest = url[12] == '/' ? url + 13 : NULL;
        if (rest && (!*rest || strlen(rest) > 320 || strchr(rest, '/'))) {
            api__problem(r, 404, "Not found", "no route for %s %.100s", method, url);
            return;
        }
        if (!get) {
            r->allow = "GET, HEAD";
            api__problem(r, 405, "Method not allowed", "use GET %.100s", url);
            return;
        }
        if (rest)
            snprintf(r->contact, sizeof r->contact, "%s", rest);
        r->route = rest ? ROUTE_CONTACT : ROUTE_CONTACTS;
        if (!authorized(r)) {
            reject(r, API_REASON_UNAUTHORIZED);
            return;
        }
    } else if (!strcmp(url, "/v1/memory/search")) {
        /* /v1/memory/search?q=&subject=&kind=&since=&k= */
        if (!get) {
            r->allow = "GET, HEAD";
            api__problem(r, 405, "Method not allowed", "use GET %s", url);
            return;
        }
        r->route = ROUTE_MEMORY_SEARCH;
        if (!authorized(r)) {
            reject(r, API_REASON_UNAUTHORIZED);
            return;
        }
    } else if (!strcmp(url, "/v1/models/stats")) {
        if (!get) {
            r->allow = "GET, HEAD";
            api__problem(r, 405, "Method not allowed", "use GET %s", url);
            return;
        }
        r->route = ROUTE_MODELS_STATS;
        if (!authorized(r)) {
            reject(r, API_REASON_UNAUTHORIZED);
            return;
        }
    } else if (!strncmp(url, "/v1/models/canary/", 18)) {
        /* POST /v1/models/canary/{route} {action: promote|rollback, reason?} */
        const char *rest = url + 18;
        if (!*rest || strlen(rest) >= sizeof r->target || strchr(rest, '/')) {
            api__problem(r, 404, "Not found", "no route for %s %.100s", method, url);
            return;
        }
        if (!post) {
            r->allow = "POST";
            api__problem(r, 405, "Method not allowed", "use POST %.100s", url);
            return;
        }
        snprintf(r->target, sizeof r->target, "%s", rest);
        r->route = ROUTE_MODELS_CANARY;
        if (!authorized(r)) {
            reject(r, API_REASON_UNAUTHORIZED);
            return;
        }
    } else if (!strcmp(url, "/v1/goals")) {
        if (!get && !post) {
            r->allow = "GET, HEAD, POST";
            api__problem(r, 405, "Method not allowed", "use GET or POST %s", url);
            return;
        }
        r->route = post ? ROUTE_GOALS_POST : ROUTE_GOALS_GET;
        limit = API_GOAL_MAX_BODY;
        if (!authorized(r)) {
            reject(r, API_REASON_UNAUTHORIZED);
            return;
        }
    } else if (!strcmp(url, "/v1/spend")) {
        if (!get) {
            r->allow = "GET, HEAD";
            api__problem(r, 405, "Method not allowed", "use GET %s", url);
            return;
        }
        r->route = ROUTE_SPEND;
        if (!authorized(r)) {
            reject(r, API_REASON_UNAUTHORIZED);
            return;
        }
    } else if (!strcmp(url, "/v1/content") || !strncmp(url, "/v1/content/", 12)) {
        /* /v1/content?limit=, /v1/content/{piece} */
        const char *rest = url[11] == '/' ? url + 12 : NULL;
        if (rest && (!*rest || strlen(rest) > CONTENT_PIECE_MAX || strchr(rest, '/'))) {
            api__problem(r, 404, "Not found", "no route for %s %.100s", method, url);
            return;
        }
        if (!get) {
            r->allow = "GET, HEAD";
            api__problem(r, 405, "Method not allowed", "use GET %.100s", url);
            return;
        }
        if (rest)
            snprintf(r->piece, sizeof r->piece, "%s", rest);
        r->route = rest ? ROUTE_CONTENT_PIECE : ROUTE_CONTENT;
        if (!authorized(r)) {
            reject(r, API_REASON_UNAUTHORIZED);
            return;
        }
    } else if (!strcmp(url, "/v1/inbox") || !strcmp(url, "/v1/effects") ||
               !strcmp(url, "/v1/mode")) {
        bool mode = !strcmp(url, "/v1/mode");
        if (!get && !(mode && post)) {
            r->allow = mode ? "GET, HEAD, POST" : "GET, HEAD";
            api__problem(r, 405, "Method not allowed", "use GET %s", url);
            return;
        }
        r->route = mode ? (post ? ROUTE_MODE_POST : ROUTE_MODE_GET)
                 : !strcmp(url, "/v1/inbox") ? ROUTE_INBOX
                                             : ROUTE_EFFECTS;
        if (!authorized(r)) {
            reject(r, API_REASON_UNAUTHORIZED);
            return;
        }
    } else if (!strncmp(url, "/v1/approvals/", 14) || !strncmp(url, "/v1/effects/", 12)) {
        /* POST /v1/approvals/{id}/decision, POST /v1/effects/{id}/{cancel|sent|resend} */
        bool appr = url[4] == 'a';
        const char *rest = url + (appr ? 14 : 12), *slash = strchr(rest, '/');
        size_t idlen = slash ? (size_t)(slash - rest) : 0;
        if (!slash || idlen == 0 || idlen >= sizeof r->target || strchr(slash + 1, '/') ||
            (appr ? strcmp(slash + 1, "decision")
                  : strcmp(slash + 1, "cancel") && strcmp(slash + 1, "sent") &&
                        strcmp(slash + 1, "resend"))) {
            api__problem(r, 404, "Not found", "no route for %s %.100s", method, url);
            return;
        }
        snprintf(r->target, sizeof r->target, "%.*s", (int)idlen, rest);
        snprintf(r->action, sizeof r->action, "%s", slash + 1);
        if (!post) {
            /* a link preview fetching a URL must never decide anything */
            r->allow = "POST";
            api__problem(r, 405, "Method not allowed",
                         "decisions are made only by POST with a token, never by following a "
                         "link");
            return;
        }
        r->route = appr ? ROUTE_DECISION : ROUTE_EFFECT_ACTION;
        if (!authorized(r)) {
            reject(r, API_REASON_UNAUTHORIZED);
            return;
        }
    } else if (!strncmp(url, "/hooks/", 7)) {
        const char *name = url + 7;
        r->connector = core_config_connector(cfg, name);
        if (r->connector && CONNECTOR_IS_PULL(r->connector->kind)) {
            api__problem(r, 404, "Unknown connector",
                         "'%.64s' is a pull connector: bureau serve polls it, nothing posts "
                         "to it", name);
            return;
        }
        if (!r->connector) {
            api__problem(r, 404, "Unknown connector",
                         "no connector named '%.64s' in bureau.yaml", name);
            return;
        }
        r->label = 1 + (int)(r->connector - cfg->connectors);
        r->secret = r->srv->secrets[r->label - 1];
        r->secret_len = r->secret ? strlen(r->secret) : 0;
        if (!post) {
            r->allow = "POST";
            api__problem(r, 405, "Method not allowed", "use POST %s", url);
            return;
        }
        r->route = ROUTE_HOOK;
        if (r->connector->kind == CONNECTOR_FORM) {
            limit = cfg->max_form_bytes;
            if (api__form_begin(r) < 0)
                return; /* answered */
        }
    } else if (strncmp(url, "/v1/", 4) && strncmp(url, "/hooks", 6) &&
               api__web_file(url, &(const char *){ NULL }, &(const char *){ NULL })) {
        r->route = ROUTE_WEB;
        if (!get) {
            r->allow = "GET, HEAD";
            api__problem(r, 405, "Method not allowed", "use GET %.100s", url);
        }
        return;
    } else {
        api__problem(r, 404, "Not found", "no route for %s %.100s", method, url);
        return;
    }
    bool has_len;
    size_t len = content_length(r, &has_len);
    if (has_len && len > limit) {
        reject(r, API_REASON_TOO_LARGE);
        api__problem(r, 413, "Payload too large", "the body is %zu bytes; the limit is %zu",
                     len, limit);
        return;
    }
    buf_init(&r->body, limit);
}

static void dispatch(Req *r)
{
    switch (r->route) {
    case ROUTE_HEALTH:
        api__json(r, 200, json_pack("{s:s, s:I}", "status", "ok", "head",
                                    (json_int_t)ledger_head_seq(r->srv->ledger)));
        break;
    case ROUTE_METRICS:
        buf_clear(&r->resp);
        api__metrics_render(r->srv, &r->resp);
        r->status = 200;
        r->resp_type = "text/plain; version=0.0.4";
        r->answered = true;
        break;
    case ROUTE_EVENTS_POST: api__events_post(r); break;
    case ROUTE_EVENTS_GET: api__events_get(r); break;
    case ROUTE_TASKS_GET: api__tasks_get(r); break;
    case ROUTE_TASK_GET: api__task_get(r); break;
    case ROUTE_TASK_ACTION: api__task_action(r); break;
    case ROUTE_TASK_TRACE: api__task_trace(r); break;
    case ROUTE_INBOX: api__inbox_get(r); break;
    case ROUTE_DECISION: api__decision_post(r); break;
    case ROUTE_EFFECTS: api__effects_get(r); break;
    case ROUTE_EFFECT_ACTION: api__effect_action(r); break;
    case ROUTE_MODE_GET: api__mode_get(r); break;
    case ROUTE_MODE_POST: api__mode_post(r); break;
    case ROUTE_SPEND: api__spend_get(r); break;
    case ROUTE_CONTENT: api__content_get(r); break;
    case ROUTE_CONTENT_PIECE: api__content_piece_get(r); break;
    case ROUTE_MODELS_STATS: api__models_stats_get(r); break;
    case ROUTE_MODELS_CANARY: api__models_canary_post(r); break;
    case ROUTE_CONTACTS: api__contacts_get(r); break;
    case ROUTE_CONTACT: api__contact_get(r); break;
    case ROUTE_MEMORY_SEARCH: api__memory_search_get(r); break;
    case ROUTE_WEB: api__web_get(r); break;
    case ROUTE_LOGIN: api__login(r); break;
    case ROUTE_LOGOUT: api__logout(r); break;
    case ROUTE_SESSION: api__session_get(r); break;
    case ROUTE_STREAM: api__stream(r); break;
    case ROUTE_STATUS: api__status_get(r); break;
    case ROUTE_AUDIT: api__audit_get(r); break;
    case ROUTE_GOALS_GET: api__goals_get(r); break;
    case ROUTE_GOALS_POST: api__goals_post(r); break;
    case ROUTE_HOOK:
        if (r->form)
            api__form_finish(r);
        else
            api__hook(r);
        break;
    default: api__problem(r, 404, "Not found", "no route"); break;
    }
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version,
                               const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    ApiServer *s = cls;
    Req *r = *con_cls;
    if (!r) {
        r = xcalloc(1, sizeof *r);
        r->srv = s;
        r->conn = conn;
        r->start_ns = core_time_mono_ns();
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->path, sizeof r->path, "%s", url);
        buf_init(&r->resp, 0);
        buf_init(&r->body, 1);
        *con_cls = r;
        /* Counted in flight, unless the server is stopping: then a request
         * on a kept-alive connection is refused, so that nothing is left
         * suspended when the daemon stops. */
        pthread_mutex_lock(&s->mu);
        bool stopping = s->stopping;
        if (!stopping)
            s->active++;
        r->counted = !stopping;
        pthread_mutex_unlock(&s->mu);
        if (stopping)
            api__problem(r, 503, "Service unavailable", "the server is shutting down");
        else
            route(r, url, method);
        return r->answered ? queue_answer(r) : MHD_YES;
    }
    if (*upload_data_size) {
        size_t len = *upload_data_size;
        *upload_data_size = 0;
        if (r->answered || r->too_big) {
            /* The answer waits for the end of the upload (a client still
             * sending does not read it); what is discarded meanwhile is
             * bounded, past that the connection is closed. */
            r->discarded += len;
            return r->discarded > r->srv->cfg->max_form_bytes + r->srv->cfg->max_batch_bytes
                       ? MHD_NO
                       : MHD_YES;
        }
        int rc = r->form ? api__form_feed(r, upload_data, len)
                         : buf_append(&r->body, upload_data, len);
        if (rc < 0) {
            r->too_big = true;
            reject(r, API_REASON_TOO_LARGE);
            if (!r->answered) /* a form names its own limit */
                api__problem(r, 413, "Payload too large",
                             "the body is larger than the limit of %zu bytes",
                             r->form ? r->srv->cfg->max_form_bytes : r->body.max);
        }
        return MHD_YES;
    }
    if (!r->answered && !r->suspended)
        dispatch(r);
    if (r->suspended && !r->append_done)
        return MHD_YES; /* waiting for the writer */
    if (r->suspended && r->append_done && !r->answered) {
        r->suspended = false;
        answer_append(r);
    }
    return queue_answer(r);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    ApiServer *s = cls;
    Req *r = *con_cls;
    if (!r)
        return;
    int64_t ns = core_time_mono_ns() - r->start_ns;
    api__metrics_latency(&s->m, ns);
    count_reject(r);
    if (log_get_level() <= LOG_INFO) { /* the line is built only to be written */
        json_t *f = json_pack("{s:s, s:s, s:i, s:f}", "method", r->method, "path", r->path,
                              "status", r->status, "duration_ms", (double)ns / 1e6);
        if (r->seq > 0)
            json_object_set_new(f, "seq", json_integer(r->seq));
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
            json_object_set_new(f, "aborted", json_true());
        log_info("request", f);
    }
    buf_done(&r->body);
    buf_done(&r->resp);
    api__form_free(r->form);
    free(r->results);
    free(r->location);
    free(r->set_cookie);
    if (r->custom) /* built but never queued */
        MHD_destroy_response(r->custom);
    *con_cls = NULL;
    bool counted = r->counted;
    free(r);
    if (counted) {
        pthread_mutex_lock(&s->mu);
        if (--s->active == 0)
            pthread_cond_broadcast(&s->idle);
        pthread_mutex_unlock(&s->mu);
    }
}

static void connection_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode toe)
{
    ApiServer *s = cls;
    atomic_fetch_add(&s->m.open_connections, toe == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_warn("http", json_pack("{s:s}", "detail", msg));
}

/* ---- start / stop ---- */

static int parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len,
                        Err *err)
{
    char host[128];
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen || strlen(listen) >= sizeof host)
        return err_set(err, ERR_CONFIG, "listen address '%s' is not HOST:PORT", listen);
    size_t hl = (size_t)(colon - listen);
    memcpy(host, listen, hl);
    host[hl] = '\0';
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || port < 0 || port > 65535)
        return err_set(err, ERR_CONFIG, "listen address '%s': bad port", listen);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE };
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(host, NULL, &hints, &ai);
    if (g != 0 || !ai)
        return err_set(err, ERR_CONFIG, "listen address '%s': %s", listen, gai_strerror(g));
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    return 0;
}

static int resolve_secrets(ApiServer *s, Err *err)
{
    s->secrets = xcalloc(s->cfg->n_connectors + 1, sizeof *s->secrets);
    for (size_t i = 0; i < s->cfg->n_connectors; i++) {
        const ConnectorConfig *c = &s->cfg->connectors[i];
        if (c->secret) {
            s->secrets[i] = xstrdup(c->secret);
        } else if (c->secret_env) {
            const char *v = getenv(c->secret_env);
            if (!v || !*v)
                return err_set(err, ERR_CONFIG,
                               "connector '%s': environment variable %s is not set", c->name,
                               c->secret_env);
            s->secrets[i] = xstrdup(v);
        }
    }
    return 0;
}

static void server_free(ApiServer *s)
{
    if (s->secrets)
        for (size_t i = 0; i < s->cfg->n_connectors; i++)
            free(s->secrets[i]);
    free(s->secrets);
    api__rate_free(s->rate);
    api__streams_free(s->streams);
    api__sessions_free(s->sessions);
    json_decref(s->audit);
    pthread_mutex_destroy(&s->audit_mu);
    free(s->data_dir);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->idle);
    pthread_key_delete(s->reader_key);
    free(s);
}

int api_server_start(const ApiOptions *opts, ApiServer **ret, Err *err)
{
    ApiServer *s = xcalloc(1, sizeof *s);
    s->data_dir = xstrdup(opts->data_dir);
    s->cfg = opts->config;
    s->ledger = opts->ledger;
    s->started_ms = core_time_now_ms();
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->idle, NULL);
    pthread_key_create(&s->reader_key, reader_free);
    s->rate = api__rate_new();
    s->sessions = api__sessions_new();
    pthread_mutex_init(&s->audit_mu, NULL);
    const char *listen = opts->listen ? opts->listen : s->cfg->listen;
    struct sockaddr_storage ss;
    socklen_t sslen;
    int rc = resolve_secrets(s, err);
    if (rc < 0 || (rc = parse_listen(listen, &ss, &sslen, err)) < 0) {
        server_free(s);
        return rc;
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned threads = s->cfg->threads > 0 ? (unsigned)s->cfg->threads
                                           : (unsigned)(cores > 0 ? cores : 1);
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, handler, s,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_THREAD_POOL_SIZE, threads,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->cfg->max_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->cfg->timeout_s,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)s->cfg->max_header_bytes,
                            MHD_OPTION_NOTIFY_COMPLETED, completed, s,
                            MHD_OPTION_NOTIFY_CONNECTION, connection_notify, s,
                            MHD_OPTION_END);
    if (s->d)
        s->streams = api__streams_new(s);
    if (!s->d) {
        server_free(s);
        return err_set(err, ERR_IO, "cannot listen on %s: %s", listen, strerror(errno));
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    char host[INET6_ADDRSTRLEN];
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
    else
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
    snprintf(s->address, sizeof s->address, ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u",
             host, info ? (unsigned)info->port : 0u);
    *ret = s;
    return 0;
}

void api_server_set_router(ApiServer *s, ModelRouter *router)
{
    pthread_mutex_lock(&s->mu);
    s->router = router;
    pthread_mutex_unlock(&s->mu);
}

void api_server_set_models_health(ApiServer *s, ApiModelsHealth fn, void *ctx)
{
    pthread_mutex_lock(&s->mu);
    s->models_health = fn;
    s->models_ctx = ctx;
    pthread_mutex_unlock(&s->mu);
}

const char *api_server_address(const ApiServer *s)
{
    return s->address;
}

void api_server_stop(ApiServer *s, int grace_ms)
{
    if (!s)
        return;
    MHD_socket lsock = MHD_quiesce_daemon(s->d); /* no new connections from here on */
    if (lsock != MHD_INVALID_SOCKET)
        close(lsock);
    struct timespec deadline = core_time_deadline(CLOCK_REALTIME, grace_ms);
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_mutex_unlock(&s->mu);
    api__streams_stop(s->streams); /* open streams end now: they count as in flight */
    pthread_mutex_lock(&s->mu);
    while (s->active > 0)
        if (pthread_cond_timedwait(&s->idle, &s->mu, &deadline) == ETIMEDOUT)
            break;
    int left = s->active;
    pthread_mutex_unlock(&s->mu);
    if (left)
        log_warn("stopping with requests in flight", json_pack("{s:i}", "requests", left));
    MHD_stop_daemon(s->d);
    server_free(s);
}
