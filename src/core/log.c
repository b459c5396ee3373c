/* The logger builds each line completely, then writes it with one write(2)
 * so that concurrent threads and processes sharing stderr do not interleave. */
#include "core/log.h"

#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/err.h"

static _Atomic int min_level = LOG_INFO;
static const char *const names[] = { "debug", "info", "warn", "error", "off" };

void log_set_level(LogLevel level)
{
    atomic_store(&min_level, (int)level);
}

LogLevel log_get_level(void)
{
    return (LogLevel)atomic_load(&min_level);
}

int log_level_parse(const char *s, LogLevel *ret)
{
    for (int i = 0; i <= LOG_OFF; i++)
        if (!strcmp(s, names[i])) {
            *ret = (LogLevel)i;
            return 0;
        }
    return ERR_INVAL;
}

static int dump_cb(const char *buffer, size_t size, void *data)
{
    return buf_append(data, buffer, size) < 0 ? -1 : 0;
}

void log_emit(LogLevel level, const char *msg, json_t *fields)
{
    if ((int)level < atomic_load(&min_level) || level >= LOG_OFF) {
        json_decref(fields);
        return;
    }
    char ts[CORE_TIME_LEN + 1];
    core_time_format(core_time_now_ms(), ts);
    json_t *line = json_object();
    json_object_set_new(line, "ts", json_string(ts));
    json_object_set_new(line, "level", json_string(names[level]));
    json_object_set_new(line, "msg", json_string(msg ? msg : ""));
    if (json_is_object(fields))
        json_object_update_missing(line, fields);
    json_decref(fields);
    Buf b;
    buf_init(&b, 64 * 1024);
    if (json_dump_callback(line, dump_cb, &b, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) == 0 &&
        buf_putc(&b, '\n') == 0) {
        size_t off = 0;
        while (off < b.len) {
            ssize_t n = write(STDERR_FILENO, b.ptr + off, b.len - off);
            if (n <= 0)
                break;
            off += (size_t)n;
        }
    }
    buf_done(&b);
    json_decref(line);
}
