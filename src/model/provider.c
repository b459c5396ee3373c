/* What every provider shares: the response's lifecycle and the status
 * names that logs, the CLI and the tests print. */
#include "model/provider.h"

#include <stddef.h>

void model_response_done(ModelResponse *r)
{
    if (!r)
        return;
    json_decref(r->output);
    r->output = NULL;
}

const char *model_status_name(ModelStatus s)
{
    switch (s) {
    case MODEL_OK: return "ok";
    case MODEL_RETRY: return "retry";
    case MODEL_RATE_LIMITED: return "rate_limited";
    case MODEL_TIMEOUT: return "timeout";
    case MODEL_TOO_LARGE: return "too_large";
    case MODEL_BAD_OUTPUT: return "bad_output";
    case MODEL_FAILED: return "failed";
    }
    return "unknown";
}
