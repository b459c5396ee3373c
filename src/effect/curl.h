/* libcurl's process-wide initialisation, shared by every effect executor
 * that speaks through libcurl (mail, webhooks). */
#ifndef BUREAU_EFFECT_CURL_H
#define BUREAU_EFFECT_CURL_H

/* Calls curl_global_init() exactly once per process, whichever thread comes
 * first; safe to call before every transfer. Returns 0, or ERR_INTERNAL when
 * libcurl could not initialise (then every later call says so too). */
int effect_curl_init(void);

#endif
