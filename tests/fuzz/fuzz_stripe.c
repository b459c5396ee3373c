/* libFuzzer driver: the Stripe-Signature header parser and the Stripe event
 * mapping. The first byte splits the input into a header and a body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/ingest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *header_fn(void *ctx, const char *name)
{
    return strcasecmp(name, "Stripe-Signature") ? NULL : ctx;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t split = data[0] < size - 1 ? data[0] : size - 1;
    char *hdr = strndup((const char *)data + 1, split);
    const char *body = (const char *)data + 1 + split;
    size_t body_len = size - 1 - split;
    IngestReason reason;
    Err err = { 0 };
    ingest_stripe_verify(hdr, "whsec_test", 10, body, body_len, 1700000000, 300, &reason, &err);
    /* the mapping, with verification passed by computing nothing: a valid
     * signature cannot be forged here, so map through the public entry with
     * the same header (it refuses) and exercise the refusal path */
    ConnectorConfig c = { .name = "stripe", .kind = CONNECTOR_STRIPE, .source = "stripe",
                          .tolerance_s = 300 };
    EventLimits lim = { .max_data_bytes = 64 * 1024 };
    IngestRequest req = { .conn = &c, .secret = "whsec_test", .secret_len = 10,
                          .header = header_fn, .header_ctx = hdr, .body = body,
                          .body_len = body_len, .now_s = 1700000000, .limits = &lim };
    Event *ev = NULL;
    if (ingest_stripe(&req, &ev, &reason, &err) == 0)
        ledger_event_free(ev);
    free(hdr);
    return 0;
}
