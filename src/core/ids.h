/* Identifiers: ULIDs (time-ordered, monotonic within a millisecond in this
 * process) and W3C-style trace ids. Thread-safe. */
#ifndef BUREAU_CORE_IDS_H
#define BUREAU_CORE_IDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CORE_ULID_LEN 26
#define CORE_TRACE_LEN 32

/* A new ULID for the current time. Within one millisecond each ULID is the
 * previous one plus one, so ULIDs from this process sort in creation order. */
void core_ulid_new(char out[CORE_ULID_LEN + 1]);
/* The same for a given time (ms since the epoch); for tests and imports. */
void core_ulid_at(int64_t ms, char out[CORE_ULID_LEN + 1]);
/* True when s is 26 Crockford base32 characters with a valid time part. */
bool core_ulid_valid(const char *s, size_t len);
/* The millisecond time encoded in a valid ULID. */
int64_t core_ulid_time(const char *ulid);

/* 32 lower-case hex digits, random, never all zero. */
void core_trace_new(char out[CORE_TRACE_LEN + 1]);
bool core_trace_valid(const char *s, size_t len);

#endif
