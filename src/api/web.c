/* The dashboard's files (web/), embedded at build time and served at "/"
 * with an ETag (a content hash): a browser revalidates and gets 304 while
 * the binary is the same. Nothing is read from disk. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "api/api_int.h"
#include "core/crypto.h"

extern const EmbeddedFile api__web[];
extern const size_t api__web_count;

#define WEB_FILES_MAX 16

static char etags[WEB_FILES_MAX][24];
static pthread_once_t etags_once = PTHREAD_ONCE_INIT;

static void etags_init(void)
{
    for (size_t i = 0; i < api__web_count && i < WEB_FILES_MAX; i++) {
        char hex[CORE_SHA256_HEX + 1];
        core_sha256_hex(api__web[i].data, api__web[i].len, hex);
        snprintf(etags[i], sizeof etags[i], "\"%.20s\"", hex);
    }
}

static const char *type_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot)
        return "application/octet-stream";
    if (!strcmp(dot, ".html"))
        return "text/html; charset=utf-8";
    if (!strcmp(dot, ".css"))
        return "text/css; charset=utf-8";
    if (!strcmp(dot, ".js"))
        return "text/javascript; charset=utf-8";
    if (!strcmp(dot, ".svg"))
        return "image/svg+xml";
    return "application/octet-stream";
}

const EmbeddedFile *api__web_file(const char *path, const char **ret_etag, const char **ret_type)
{
    pthread_once(&etags_once, etags_init);
    if (path[0] != '/')
        return NULL;
    const char *name = !strcmp(path, "/") ? "index.html" : path + 1;
    if (strchr(name, '/'))
        return NULL;
    for (size_t i = 0; i < api__web_count && i < WEB_FILES_MAX; i++)
        if (!strcmp(api__web[i].name, name)) {
            *ret_etag = etags[i];
            *ret_type = type_of(name);
            return &api__web[i];
        }
    return NULL;
}

void api__web_get(Req *r)
{
    const char *etag, *type;
    const EmbeddedFile *f = api__web_file(r->path, &etag, &type);
    if (!f) {
        api__problem(r, 404, "Not found", "no file %.100s", r->path);
        return;
    }
    r->etag = etag;
    r->cache_control = "no-cache"; /* revalidate: the ETag changes with the binary */
    const char *inm = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                  MHD_HTTP_HEADER_IF_NONE_MATCH);
    r->answered = true;
    buf_clear(&r->resp);
    r->resp_type = type;
    if (inm && strstr(inm, etag)) {
        r->status = 304;
        return;
    }
    r->status = 200;
    r->static_body = f->data;
    r->static_len = f->len;
}
