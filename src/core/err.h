/* Error codes and error detail.
 *
 * Every fallible function returns 0 on success or a negative code from the one
 * table below, and may fill an Err with a human-readable message. err_set()
 * returns the code so that "return err_set(err, ERR_X, ...)" is one line. */
#ifndef BUREAU_CORE_ERR_H
#define BUREAU_CORE_ERR_H

#include <stddef.h>

#define ERR_MAP(X)                                                  \
    X(ERR_INVAL,    -1,  "invalid input")                           \
    X(ERR_IO,       -2,  "i/o error")                               \
    X(ERR_STORE,    -3,  "database error")                          \
    X(ERR_NOTFOUND, -4,  "not found")                               \
    X(ERR_EXISTS,   -5,  "already exists")                          \
    X(ERR_TOOBIG,   -6,  "too large")                               \
    X(ERR_SCHEMA,   -7,  "schema version mismatch")                 \
    X(ERR_BUSY,     -8,  "busy")                                    \
    X(ERR_CHAIN,    -9,  "hash chain broken")                       \
    X(ERR_CONFIG,   -10, "bad configuration")                       \
    X(ERR_USAGE,    -11, "usage error")                             \
    X(ERR_CLOSED,   -12, "closed")                                  \
    X(ERR_TIMEOUT,  -13, "timed out")                               \
    X(ERR_AUTH,     -14, "not authorized")                          \
    X(ERR_LEASE,    -15, "lease lost")                              \
    X(ERR_INTERNAL, -16, "internal error")                          \
    X(ERR_SCRIPT,   -17, "script error")

enum {
    ERR_OK = 0,
#define ERR__ENUM(name, code, str) name = code,
    ERR_MAP(ERR__ENUM)
#undef ERR__ENUM
};

#define ERR_MSG_MAX 512

typedef struct Err {
    int code;                 /* 0 or one of ERR_* */
    char msg[ERR_MSG_MAX];    /* detail, NUL-terminated, never a secret */
} Err;

/* Sets code and a printf-formatted message on err (which may be NULL) and
 * returns code. */
int err_set(Err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the existing message with "prefix: " (printf-formatted); returns
 * err->code (or ERR_INTERNAL when err is NULL). */
int err_wrap(Err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void err_clear(Err *err);

/* "ERR_INVAL" and "invalid input" for ERR_INVAL; "ERR_UNKNOWN" for others. */
const char *err_name(int code);
const char *err_str(int code);

/* Out of memory: logs and aborts (allocation failure is not recoverable). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
