/* libcurl's global state is set up once, by whichever executor needs it
 * first; it is never torn down (it lives as long as the process). */
#include "effect/curl.h"

#include <curl/curl.h>
#include <pthread.h>

#include "core/err.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int effect_curl_init(void)
{
    pthread_once(&curl_once, curl_init_once);
    return curl_init_rc == CURLE_OK ? 0 : ERR_INTERNAL;
}
