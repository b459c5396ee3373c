/* Dashboard sessions: POST /login trades an API token for a session cookie,
 * POST /logout ends it, GET /v1/session tells the page its CSRF token.
 *
 * Invariant: the server keeps only the SHA-256 of a session id, so a memory
 * dump or a log never yields a usable cookie; a session lives at most
 * API_SESSION_TTL_S and never outlives its token (checked on every use). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "api/tokens.h"
#include "core/clock.h"
#include "core/crypto.h"
#include "core/json.h"
#include "core/log.h"

typedef struct Session {
    bool used;
    uint8_t id_hash[CORE_SHA256_LEN];
    char csrf[API_CSRF_HEX + 1];
    char token_id[32];
    int64_t created_ms, expires_ms;
} Session;

struct ApiSessions {
    pthread_mutex_t mu;
    Session s[API_SESSIONS_MAX];
};

struct ApiSessions *api__sessions_new(void)
{
    struct ApiSessions *ss = xcalloc(1, sizeof *ss);
    pthread_mutex_init(&ss->mu, NULL);
    return ss;
}

void api__sessions_free(struct ApiSessions *ss)
{
    if (!ss)
        return;
    pthread_mutex_destroy(&ss->mu);
    free(ss);
}

int api__sessions_count(struct ApiSessions *ss)
{
    int n = 0;
    int64_t now = core_time_now_ms();
    pthread_mutex_lock(&ss->mu);
    for (int i = 0; i < API_SESSIONS_MAX; i++)
        n += ss->s[i].used && ss->s[i].expires_ms > now;
    pthread_mutex_unlock(&ss->mu);
    return n;
}

static void random_hex(char *out, size_t hex_len)
{
    uint8_t raw[64];
    core_random_bytes(raw, hex_len / 2);
    core_hex_encode(raw, hex_len / 2, out);
}

void api__session_create(ApiServer *s, const char *token_id, char ret_id[API_SESSION_HEX + 1],
                         char ret_csrf[API_CSRF_HEX + 1])
{
    struct ApiSessions *ss = s->sessions;
    int64_t now = core_time_now_ms();
    random_hex(ret_id, API_SESSION_HEX);
    random_hex(ret_csrf, API_CSRF_HEX);
    pthread_mutex_lock(&ss->mu);
    /* a free or expired slot, else the oldest session makes room */
    Session *slot = NULL;
    for (int i = 0; i < API_SESSIONS_MAX; i++) {
        Session *x = &ss->s[i];
        if (!x->used || x->expires_ms <= now) {
            slot = x;
            break;
        }
        if (!slot || x->created_ms < slot->created_ms)
            slot = x;
    }
    memset(slot, 0, sizeof *slot);
    slot->used = true;
    core_sha256(ret_id, API_SESSION_HEX, slot->id_hash);
    memcpy(slot->csrf, ret_csrf, API_CSRF_HEX + 1);
    snprintf(slot->token_id, sizeof slot->token_id, "%s", token_id);
    slot->created_ms = now;
    slot->expires_ms = now + (int64_t)API_SESSION_TTL_S * 1000;
    pthread_mutex_unlock(&ss->mu);
}

/* The live session whose id hashes to h; called with the lock held. */
static Session *find(struct ApiSessions *ss, const uint8_t h[CORE_SHA256_LEN], int64_t now)
{
    Session *hit = NULL;
    /* every slot is compared, so the time taken says nothing of which one */
    for (int i = 0; i < API_SESSIONS_MAX; i++) {
        Session *x = &ss->s[i];
        bool eq = core_ct_equal(x->id_hash, h, CORE_SHA256_LEN);
        if (eq && x->used && x->expires_ms > now)
            hit = x;
    }
    return hit;
}

static bool well_formed(const char *id)
{
    if (!id || strlen(id) != API_SESSION_HEX)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

bool api__session_check(ApiServer *s, Store *rd, const char *id, char ret_token_id[32],
                        char ret_csrf[API_CSRF_HEX + 1], int64_t *ret_expires_ms)
{
    if (!well_formed(id))
        return false;
    uint8_t h[CORE_SHA256_LEN];
    core_sha256(id, API_SESSION_HEX, h);
    char token_id[32] = "", csrf[API_CSRF_HEX + 1] = "";
    int64_t expires = 0;
    pthread_mutex_lock(&s->sessions->mu);
    Session *x = find(s->sessions, h, core_time_now_ms());
    if (x) {
        memcpy(token_id, x->token_id, sizeof token_id);
        memcpy(csrf, x->csrf, sizeof csrf);
        expires = x->expires_ms;
    }
    pthread_mutex_unlock(&s->sessions->mu);
    if (!x)
        return false;
    /* a revoked token ends its sessions */
    Err err = { 0 };
    if (!rd || api_token_live(rd, token_id, &err) != 0) {
        api__session_end(s, id);
        return false;
    }
    memcpy(ret_token_id, token_id, 32);
    memcpy(ret_csrf, csrf, API_CSRF_HEX + 1);
    if (ret_expires_ms)
        *ret_expires_ms = expires;
    return true;
}

void api__session_end(ApiServer *s, const char *id)
{
    if (!well_formed(id))
        return;
    uint8_t h[CORE_SHA256_LEN];
    core_sha256(id, API_SESSION_HEX, h);
    pthread_mutex_lock(&s->sessions->mu);
    Session *x = find(s->sessions, h, core_time_now_ms());
    if (x)
        memset(x, 0, sizeof *x);
    pthread_mutex_unlock(&s->sessions->mu);
}

/* ---- the routes ---- */

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : -1;
}

bool api__form_field(const char *body, size_t len, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = body, *end = body + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *fe = amp ? amp : end;
        if ((size_t)(fe - p) > nl && !memcmp(p, name, nl) && p[nl] == '=') {
            size_t n = 0;
            for (const char *q = p + nl + 1; q < fe; q++) {
                int c = (unsigned char)*q;
                if (c == '+')
                    c = ' ';
                else if (c == '%') {
                    int hi = q + 2 < fe ? hexval(q[1]) : -1, lo = q + 2 < fe ? hexval(q[2]) : -1;
                    if (hi < 0 || lo < 0)
                        return false;
                    c = hi * 16 + lo;
                    q += 2;
                }
                if (n + 1 >= cap || c == 0)
                    return false;
                out[n++] = (char)c;
            }
            out[n] = '\0';
            return true;
        }
        p = fe + 1;
    }
    return false;
}

static bool wants_html(Req *r)
{
    const char *a = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
    return a && strstr(a, "text/html");
}

static void redirect(Req *r, const char *to)
{
    free(r->location);
    r->location = xstrdup(to);
    buf_clear(&r->resp);
    r->resp_type = NULL;
    r->status = 303;
    r->answered = true;
}

static void set_cookie(Req *r, const char *id, long max_age)
{
    char c[256];
    snprintf(c, sizeof c, "%s=%s; Path=/; Max-Age=%ld; HttpOnly; SameSite=Strict",
             API_SESSION_COOKIE, id, max_age);
    free(r->set_cookie);
    r->set_cookie = xstrdup(c);
}

void api__login(Req *r)
{
    ApiServer *s = r->srv;
    char client[64], key[80];
    api__client_address(r, client, sizeof client);
    snprintf(key, sizeof key, "login/%s", client);
    if (!api__rate_allow(s, key, API_LOGIN_PER_MINUTE)) {
        r->reason = API_REASON_RATE_LIMITED;
        api__problem(r, 429, "Too many requests", "token: too many login attempts; wait a minute");
        return;
    }
    const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_TYPE);
    if (ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33)) {
        api__problem(r, 415, "Unsupported media type",
                     "send the form field 'token' as application/x-www-form-urlencoded");
        return;
    }
    char token[API_TOKEN_LEN + 8];
    if (!api__form_field(buf_cstr(&r->body), r->body.len, "token", token, sizeof token)) {
        if (wants_html(r))
            redirect(r, "/?login=failed");
        else
            api__problem(r, 400, "Bad request", "token: required (the API token)");
        return;
    }
    Err err = { 0 };
    Store *rd = api__reader(s, &err);
    char token_id[32] = "";
    int rc = rd ? api_token_check(rd, token, strlen(token), token_id, &err) : ERR_STORE;
    memset(token, 0, sizeof token);
    if (rc == ERR_AUTH) {
        r->reason = API_REASON_UNAUTHORIZED;
        log_warn("login refused", json_pack("{s:s}", "client", client));
        if (wants_html(r)) {
            redirect(r, "/?login=failed");
        } else
            api__problem(r, 401, "Unauthorized", "token: unknown or revoked");
        return;
    }
    if (rc < 0) {
        api__problem(r, 503, "Service unavailable", "cannot check the token: %s", err.msg);
        return;
    }
    char id[API_SESSION_HEX + 1], csrf[API_CSRF_HEX + 1];
    api__session_create(s, token_id, id, csrf);
    log_info("login", json_pack("{s:s, s:s}", "token_id", token_id, "client", client));
    set_cookie(r, id, API_SESSION_TTL_S);
    redirect(r, "/");
}

static const char *cookie(Req *r)
{
    return MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, API_SESSION_COOKIE);
}

void api__logout(Req *r)
{
    const char *id = cookie(r);
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    char token_id[32], csrf[API_CSRF_HEX + 1];
    if (id && api__session_check(r->srv, rd, id, token_id, csrf, NULL)) {
        /* the CSRF token as a header (fetch) or a form field (a plain form) */
        const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-CSRF-Token");
        char field[API_CSRF_HEX + 2] = "";
        if (!h && api__form_field(buf_cstr(&r->body), r->body.len, "csrf", field, sizeof field))
            h = field;
        if (!h || strlen(h) != API_CSRF_HEX || !core_ct_equal(h, csrf, API_CSRF_HEX)) {
            r->reason = API_REASON_UNAUTHORIZED;
            api__problem(r, 403, "Forbidden",
                         "X-CSRF-Token: missing or wrong (GET /v1/session gives it)");
            return;
        }
        api__session_end(r->srv, id);
        log_info("logout", json_pack("{s:s}", "token_id", token_id));
    }
    set_cookie(r, "", 0);
    redirect(r, "/");
}

void api__session_get(Req *r)
{
    char at[CORE_TIME_LEN + 1] = "";
    json_t *j = json_pack("{s:s, s:s}", "token_id", r->token_id, "via",
                          r->via_session ? "session" : "bearer");
    if (r->via_session) {
        int64_t expires = 0;
        char token_id[32], csrf[API_CSRF_HEX + 1];
        Err err = { 0 };
        if (api__session_check(r->srv, api__reader(r->srv, &err), cookie(r), token_id, csrf,
                               &expires)) {
            core_time_format(expires, at);
            json_object_set_new(j, "csrf", json_string(csrf));
            json_object_set_new(j, "expires_at", json_string(at));
        }
    }
    api__json(r, 200, j);
}
