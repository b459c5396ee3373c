/* libcurl's process-wide set-up: curl_global_init() is not thread-safe, so
 * it runs exactly once, whichever executor gets there first. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "effect/curl.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        /* only fails when out of memory or when TLS cannot start */
        fprintf(stderr, "curl_global_init: %s\n", curl_easy_strerror(rc));
        abort();
    }
}

void effect_curl_init(void)
{
    pthread_once(&curl_once, curl_init_once);
}
