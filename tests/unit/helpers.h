/* Shared helpers for unit tests: temporary data directories. */
#ifndef BUREAU_TESTS_HELPERS_H
#define BUREAU_TESTS_HELPERS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A new empty directory under /tmp; caller frees the string. */
static inline char *test_tmpdir(void)
{
    char *t = strdup("/tmp/bureau-unit.XXXXXX");
    if (!t || !mkdtemp(t)) {
        perror("mkdtemp");
        abort();
    }
    return t;
}

static inline void test_rmdir(char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    free(dir);
}

#endif
