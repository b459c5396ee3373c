/* HTML form posts (kind: form): urlencoded or multipart bodies parsed by
 * libmicrohttpd's post processor as they arrive, uploaded files streamed
 * into the content-addressed store, then one form.submitted event.
 * Limits: fields, field size, files and file size, and a per-client rate. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "core/clock.h"
#include "core/log.h"

#define FORM_MAX_FIELDS 256
#define FORM_MAX_VALUE (64 * 1024)
#define FORM_MAX_KEY 128
#define FORM_MAX_FILES 16

struct FormState {
    struct MHD_PostProcessor *pp;
    json_t *fields;
    int n_values;
    /* the item being received */
    char key[FORM_MAX_KEY + 1];
    bool active, is_file;
    Buf value;
    IngestFile *file;
    char *file_name, *file_type;
    /* finished files */
    IngestFormFile files[FORM_MAX_FILES];
    size_t n_files;
    /* the first problem, answered when the upload ends */
    int status;
    char problem[256];
};

void api__form_free(FormState *f)
{
    if (!f)
        return;
    if (f->pp)
        MHD_destroy_post_processor(f->pp);
    json_decref(f->fields);
    buf_done(&f->value);
    ingest_file_abort(f->file);
    free(f->file_name);
    free(f->file_type);
    for (size_t i = 0; i < f->n_files; i++) {
        free((char *)f->files[i].field);
        free((char *)f->files[i].name);
        free((char *)f->files[i].type);
    }
    free(f);
}

static void fail(FormState *f, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(FormState *f, int status, const char *fmt, ...)
{
    if (f->status)
        return;
    f->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->problem, sizeof f->problem, fmt, ap);
    va_end(ap);
}

static void add_field(FormState *f, const char *key, json_t *value)
{
    json_t *have = json_object_get(f->fields, key);
    if (!have) {
        json_object_set_new(f->fields, key, value);
    } else if (json_is_array(have)) {
        json_array_append_new(have, value);
    } else {
        json_t *arr = json_array();
        json_array_append(arr, have);
        json_array_append_new(arr, value);
        json_object_set_new(f->fields, key, arr);
    }
}

/* Completes the item being received. */
static void close_item(FormState *f)
{
    if (!f->active)
        return;
    f->active = false;
    if (!f->is_file) {
        if (!f->status)
            add_field(f, f->key, json_stringn(buf_cstr(&f->value), f->value.len));
        buf_clear(&f->value);
        return;
    }
    IngestFile *file = f->file;
    f->file = NULL;
    if (f->status || !file) {
        ingest_file_abort(file);
        return;
    }
    IngestFormFile *out = &f->files[f->n_files];
    Err err = { 0 };
    if (ingest_file_finish(file, out->sha256, &out->size, &err) < 0) {
        fail(f, 500, "cannot store an uploaded file: %s", err.msg);
        return;
    }
    out->field = xstrdup(f->key);
    out->name = f->file_name ? f->file_name : xstrdup("");
    out->type = f->file_type ? f->file_type : xstrdup("application/octet-stream");
    f->file_name = f->file_type = NULL;
    f->n_files++;
}

static enum MHD_Result iterate(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *filename, const char *content_type,
                               const char *transfer_encoding, const char *data, uint64_t off,
                               size_t size)
{
    Req *r = cls;
    FormState *f = r->form;
    if (f->status)
        return MHD_YES; /* keep reading, answer at the end */
    if (!key)
        key = "";
    if (filename && !*filename && off == 0 && size == 0)
        return MHD_YES; /* a file input left empty: browsers still send a part */
    bool new_item = off == 0 || !f->active || strcmp(f->key, key);
    if (new_item) {
        close_item(f);
        if (strlen(key) > FORM_MAX_KEY) {
            fail(f, 400, "a field name is longer than %d bytes", FORM_MAX_KEY);
            return MHD_YES;
        }
        if (++f->n_values > FORM_MAX_FIELDS) {
            fail(f, 413, "more than %d fields", FORM_MAX_FIELDS);
            return MHD_YES;
        }
        snprintf(f->key, sizeof f->key, "%s", key);
        f->active = true;
        f->is_file = filename != NULL;
        if (f->is_file) {
            if (f->n_files >= FORM_MAX_FILES) {
                fail(f, 413, "more than %d files", FORM_MAX_FILES);
                return MHD_YES;
            }
            Err err = { 0 };
            if (ingest_file_begin(r->srv->data_dir, r->srv->cfg->max_file_bytes, &f->file, &err) <
                0) {
                fail(f, 500, "cannot store an uploaded file: %s", err.msg);
                return MHD_YES;
            }
            f->file_name = xstrndup(filename, strnlen(filename, 255));
            f->file_type = content_type ? xstrndup(content_type, strnlen(content_type, 127))
                                        : NULL;
        }
    }
    if (f->is_file) {
        Err err = { 0 };
        int rc = f->file ? ingest_file_write(f->file, data, size, &err) : 0;
        if (rc == ERR_TOOBIG)
            fail(f, 413, "the file in field '%s' is larger than the limit of %zu bytes", f->key,
                 r->srv->cfg->max_file_bytes);
        else if (rc < 0)
            fail(f, 500, "cannot store an uploaded file: %s", err.msg);
    } else if (buf_append(&f->value, data, size) < 0) {
        fail(f, 413, "field '%s' is longer than %d bytes", f->key, FORM_MAX_VALUE);
    }
    return MHD_YES;
}

/* ---- per-client rate limit: one counter per client and minute ---- */

#define RATE_SLOTS 4096

typedef struct RateSlot {
    char client[160];
    int64_t minute;
    int count;
} RateSlot;

struct RateLimit {
    pthread_mutex_t mu;
    RateSlot slots[RATE_SLOTS];
};

struct RateLimit *api__rate_new(void)
{
    struct RateLimit *rl = xcalloc(1, sizeof *rl);
    pthread_mutex_init(&rl->mu, NULL);
    return rl;
}

void api__rate_free(struct RateLimit *rl)
{
    if (!rl)
        return;
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}

bool api__rate_allow(ApiServer *s, const char *client, int per_minute)
{
    struct RateLimit *rl = s->rate;
    int64_t minute = core_time_now_ms() / 60000;
    uint32_t h = 2166136261u;
    for (const char *p = client; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    pthread_mutex_lock(&rl->mu);
    RateSlot *slot = NULL;
    for (int i = 0; i < 8 && !slot; i++) {
        RateSlot *c = &rl->slots[(h + (uint32_t)i) % RATE_SLOTS];
        if (!strcmp(c->client, client) || c->minute != minute)
            slot = c; /* this client's slot, or a stale one to reuse */
    }
    if (!slot)
        slot = &rl->slots[h % RATE_SLOTS]; /* a crowded minute: share */
    if (strcmp(slot->client, client) || slot->minute != minute) {
        snprintf(slot->client, sizeof slot->client, "%s", client);
        slot->minute = minute;
        slot->count = 0;
    }
    bool ok = slot->count < per_minute;
    if (ok)
        slot->count++;
    pthread_mutex_unlock(&rl->mu);
    return ok;
}

void api__client_address(Req *r, char *out, size_t cap)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    out[0] = '\0';
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)cap);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)cap);
}

/* ---- the request ---- */

int api__form_begin(Req *r)
{
    char addr[64], client[160];
    api__client_address(r, addr, sizeof addr);
    snprintf(client, sizeof client, "%s/%s", r->connector->name, addr);
    if (!api__rate_allow(r->srv, client, r->connector->rate_limit)) {
        r->reason = API_REASON_RATE_LIMITED;
        api__problem(r, 429, "Too many requests",
                     "more than %d submissions a minute from this address", r->connector->rate_limit);
        return -1;
    }
    FormState *f = xcalloc(1, sizeof *f);
    f->fields = json_object();
    buf_init(&f->value, FORM_MAX_VALUE);
    r->form = f;
    f->pp = MHD_create_post_processor(r->conn, 64 * 1024, iterate, r);
    if (!f->pp) {
        api__problem(r, 415, "Unsupported media type",
                     "send application/x-www-form-urlencoded or multipart/form-data");
        return -1;
    }
    return 0;
}

int api__form_feed(Req *r, const char *data, size_t len)
{
    FormState *f = r->form;
    if (MHD_post_process(f->pp, data, len) != MHD_YES)
        fail(f, 400, "the form body is malformed");
    if (f->status != 413)
        return 0;
    api__problem(r, 413, "Payload too large", "%s", f->problem); /* sent when the upload ends */
    return ERR_TOOBIG;
}

void api__form_finish(Req *r)
{
    FormState *f = r->form;
    MHD_destroy_post_processor(f->pp);
    f->pp = NULL;
    close_item(f);
    if (f->status) {
        api__problem(r, f->status, f->status == 413 ? "Payload too large" : "Bad request", "%s",
                     f->problem);
        return;
    }
    Event *ev = NULL;
    bool honeypot = false;
    Err err = { 0 };
    if (ingest_form_event(r->connector, f->fields, f->files, f->n_files,
                          ledger_limits(r->srv->ledger), &ev, &honeypot, &err) < 0) {
        api__problem(r, err.code == ERR_TOOBIG ? 413 : 400, "Bad request", "%s", err.msg);
        return;
    }
    if (r->connector->redirect)
        r->location = xstrdup(r->connector->redirect);
    if (honeypot) {
        /* answer like a success, so the bot learns nothing; store nothing */
        r->reason = INGEST_HONEYPOT;
        if (r->location) {
            r->status = 303;
            r->answered = true;
        } else {
            api__json(r, 200, json_pack("{s:s}", "status", "received"));
        }
        return;
    }
    api__append(r, &ev, 1, false);
}
