/* Effects: what leaves Bureau (mail, outgoing webhooks). The executors
 * deliver one payload and say how it went; the outbox (flow/outbox.c)
 * decides what to record, when to retry and what goes to the inbox. */
#ifndef BUREAU_EFFECT_EFFECT_H
#define BUREAU_EFFECT_EFFECT_H

/* How one delivery attempt ended. */
typedef enum EffectResult {
    EFFECT_DELIVERED, /* the peer accepted it */
    EFFECT_RETRY,     /* it may work later: timeouts, 4xx SMTP, HTTP 5xx/408/429 */
    EFFECT_PERMANENT, /* it will not work as it is: 5xx SMTP, other HTTP 4xx, bad payload */
} EffectResult;

typedef struct EffectOutcome {
    EffectResult result;
    long code;          /* the SMTP reply or HTTP status code, 0 when none came */
    char detail[512];   /* what happened, for the operator (never a secret) */
} EffectOutcome;

#endif
