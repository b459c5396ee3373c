/* Buf: a growable byte buffer with a maximum size, always NUL-terminated.
 * Str: a borrowed view (pointer + length) into someone else's bytes.
 *
 * A Buf is embedded by its owner (buf_init/buf_done). An append that would
 * grow it past its maximum fails with ERR_TOOBIG and leaves it unchanged. */
#ifndef BUREAU_CORE_BUF_H
#define BUREAU_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Str {
    const char *ptr;
    size_t len;
} Str;

#define STR_LIT(s) ((Str){ (s), sizeof(s) - 1 })

typedef struct Buf {
    char *ptr;   /* read-only: the bytes, NUL-terminated (NULL until first append) */
    size_t len;  /* read-only: bytes used, not counting the NUL */
    size_t cap;  /* private */
    size_t max;  /* private: largest len allowed */
} Buf;

/* max = 0 means no limit beyond memory (for internal data only). */
void buf_init(Buf *b, size_t max);
void buf_done(Buf *b);
/* Empties the buffer but keeps its memory. */
void buf_clear(Buf *b);

int buf_append(Buf *b, const void *data, size_t len);
int buf_puts(Buf *b, const char *s);
int buf_putc(Buf *b, char c);
int buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(Buf *b, const char *fmt, va_list ap);

/* Returns the contents (caller frees; "" when empty) and resets the buffer. */
char *buf_steal(Buf *b);

/* The contents as a NUL-terminated string ("" when empty); borrowed. */
const char *buf_cstr(const Buf *b);

#endif
