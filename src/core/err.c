/* Error table, Err helpers and allocation wrappers that abort on OOM. */
#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int err_set(Err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int err_wrap(Err *err, const char *fmt, ...)
{
    if (!err)
        return ERR_INTERNAL;
    char prefix[ERR_MSG_MAX], old[ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof err->msg - 3)
        n = sizeof err->msg - 3;
    memcpy(err->msg, prefix, n);
    memcpy(err->msg + n, ": ", 2);
    size_t room = sizeof err->msg - n - 3, k = strlen(old);
    if (k > room)
        k = room;
    memcpy(err->msg + n + 2, old, k);
    err->msg[n + 2 + k] = '\0';
    return err->code ? err->code : ERR_INTERNAL;
}

void err_clear(Err *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}

const char *err_name(int code)
{
    switch (code) {
    case ERR_OK: return "OK";
#define ERR__NAME(name, c, str) case name: return #name;
    ERR_MAP(ERR__NAME)
#undef ERR__NAME
    }
    return "ERR_UNKNOWN";
}

const char *err_str(int code)
{
    switch (code) {
    case ERR_OK: return "ok";
#define ERR__STR(name, c, str) case name: return str;
    ERR_MAP(ERR__STR)
#undef ERR__STR
    }
    return "unknown error";
}

static void oom(size_t n)
{
    fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"out of memory\",\"bytes\":%zu}\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}
