/* bureau.yaml: the operator's settings, all optional, with defaults.
 *
 * The loader knows every key; an unknown key, a wrong type or a value out of
 * range is refused with the file, line and column. Secrets, tokens and the
 * mode never live here (they are in the database). */
#ifndef BUREAU_CORE_CONFIG_H
#define BUREAU_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"
#include "core/log.h"

#define CONFIG_MAX_BYTES (1024 * 1024)

typedef struct Config {
    /* store: */
    bool durability_normal;   /* store.durability: full (default) | normal */
    int busy_timeout_ms;      /* store.busy_timeout_ms, default 10000 */
    /* ledger: */
    size_t max_data_bytes;    /* ledger.max_data_bytes, default 1 MiB */
    int group_commit_max;     /* ledger.group_commit_max, default 1024 events */
    /* log: */
    LogLevel log_level;       /* log.level, default info */
} Config;

/* Fills cfg with the defaults. */
void core_config_defaults(Config *cfg);

/* Loads path over the defaults. A missing file is not an error (defaults
 * apply). Returns 0, or ERR_CONFIG with "path:line:col: ..." in err. */
int core_config_load(const char *path, Config *cfg, Err *err);

/* The commented-out default file `bureau init` writes. */
extern const char core_config_default_yaml[];

#endif
