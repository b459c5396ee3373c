/* Files embedded in the binary at build time (tools/embed.c). */
#ifndef BUREAU_CORE_EMBEDDED_H
#define BUREAU_CORE_EMBEDDED_H

#include <stddef.h>

typedef struct EmbeddedFile {
    const char *name;
    size_t len;
    const char *data;
} EmbeddedFile;

#endif
