/* JSON-lines logger: one object per line on stderr, with "ts", "level",
 * "msg" and the caller's fields. Thread-safe; lines never interleave.
 * Secrets and message bodies never belong in fields. */
#ifndef BUREAU_CORE_LOG_H
#define BUREAU_CORE_LOG_H

#include <jansson.h>

typedef enum LogLevel { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF } LogLevel;

void log_set_level(LogLevel level);
LogLevel log_get_level(void);
/* "debug" | "info" | "warn" | "error" | "off"; returns 0 or ERR_INVAL. */
int log_level_parse(const char *s, LogLevel *ret);

/* Writes one line. fields (may be NULL) is an object whose reference is
 * stolen, e.g. json_pack("{s:s, s:I}", "path", p, "seq", (json_int_t)n). */
void log_emit(LogLevel level, const char *msg, json_t *fields);

#define log_debug(msg, fields) log_emit(LOG_DEBUG, (msg), (fields))
#define log_info(msg, fields)  log_emit(LOG_INFO, (msg), (fields))
#define log_warn(msg, fields)  log_emit(LOG_WARN, (msg), (fields))
#define log_error(msg, fields) log_emit(LOG_ERROR, (msg), (fields))

#endif
