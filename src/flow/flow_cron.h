/* Cron schedules for workflow triggers: `on: {schedule: CRON, timezone: TZ}`.
 *
 * Five fields (minute hour day-of-month month day-of-week) with `*`, lists,
 * ranges, steps (`*\/15`, `1-30/2`), month and weekday names (jan..dec,
 * sun..sat; 0 and 7 are Sunday), and the macros @yearly (@annually),
 * @monthly, @weekly, @daily (@midnight), @hourly. As in Vixie cron, when both
 * day fields are restricted a day matches either. Times are wall-clock times
 * in the timezone (an IANA name, default UTC): a time skipped by a DST change
 * fires at the first instant after the gap, and a time that occurs twice
 * fires once, at its first occurrence. */
#ifndef BUREAU_FLOW_CRON_H
#define BUREAU_FLOW_CRON_H

#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"

#define FLOW_TZ_MAX 64
#define FLOW_CRON_EXPR_MAX 256 /* longest expression accepted, in bytes */

typedef struct FlowCron {
    uint64_t minutes;     /* bit m: minute m (0-59) */
    uint32_t hours;       /* bit h (0-23) */
    uint32_t mdays;       /* bit d (1-31) */
    uint16_t months;      /* bit m (1-12) */
    uint8_t wdays;        /* bit w (0-6, 0 = Sunday) */
    bool mday_star, wday_star;
    char tz[FLOW_TZ_MAX]; /* "UTC" or an IANA name */
} FlowCron;

/* Parses expr in timezone tz (NULL, "" or "UTC" = UTC). Returns 0 and fills
 * *ret, or ERR_INVAL (nothing written to *ret): err->msg names the field
 * ("day-of-month: 32 is out of range 1-31") and *ret_col (when not NULL) is
 * the 1-based column within expr where the problem starts, or 0 when the
 * problem is the timezone (an unknown name is an error). A day field is
 * unrestricted (for the Vixie day rule) when one of its items is `*`, with
 * or without a step. Thread-safe. */
int flow_cron_parse(const char *expr, const char *tz, FlowCron *ret, int *ret_col, Err *err);

/* The first firing time strictly after after_ms (UTC ms since the epoch,
 * years 1971..8999); a firing time is always a whole second. ERR_NOTFOUND
 * when the schedule does not fire within about five years ("0 0 31 2 *"),
 * ERR_INVAL for a time out of range or a timezone that cannot be loaded.
 * *ret_ms is written only on success. Thread-safe (timezone work is
 * serialised inside the module). */
int flow_cron_next(const FlowCron *c, int64_t after_ms, int64_t *ret_ms, Err *err);
/* The last firing time at or before at_ms (at_ms itself when it is one);
 * ERR_NOTFOUND if none within the last 366 days. Otherwise as
 * flow_cron_next. */
int flow_cron_prev(const FlowCron *c, int64_t at_ms, int64_t *ret_ms, Err *err);

#endif
