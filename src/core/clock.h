/* Wall-clock time as milliseconds since the Unix epoch, and RFC 3339 text.
 * Bureau writes timestamps as UTC with exactly three fraction digits:
 * 2026-11-25T12:00:00.123Z. */
#ifndef BUREAU_CORE_CLOCK_H
#define BUREAU_CORE_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define CORE_TIME_LEN 24 /* strlen("2026-11-25T12:00:00.123Z") */

int64_t core_time_now_ms(void);
/* Monotonic clock in nanoseconds, for durations. */
int64_t core_time_mono_ns(void);

/* A deadline timeout_ms from now on clock (CLOCK_REALTIME or
 * CLOCK_MONOTONIC), for pthread_cond_timedwait(). */
struct timespec core_time_deadline(clockid_t clock, int timeout_ms);

/* Writes the RFC 3339 UTC form of ms into out (CORE_TIME_LEN + 1 bytes). */
void core_time_format(int64_t ms, char out[CORE_TIME_LEN + 1]);

/* Parses an RFC 3339 date-time ("T" or space separator, optional fraction of
 * any length, "Z" or a +hh:mm / -hh:mm offset). Fractions below a millisecond
 * are truncated. Returns 0 and sets *ret_ms, or ERR_INVAL. */
int core_time_parse(const char *s, size_t len, int64_t *ret_ms);

/* The proleptic Gregorian calendar: days since 1970-01-01 of a date
 * (month 1-12, day 1-31), and back. */
int64_t core_days_from_civil(int64_t y, int m, int d);
void core_civil_from_days(int64_t days, int64_t *ret_y, int *ret_m, int *ret_d);

#endif
