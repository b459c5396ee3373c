/* libcurl's process-wide set-up, shared by the executors that use it. */
#ifndef BUREAU_EFFECT_CURL_H
#define BUREAU_EFFECT_CURL_H

/* Calls curl_global_init() once per process; thread-safe, cheap after the
 * first call. Every executor calls it before its first curl handle. */
void effect_curl_init(void);

#endif
