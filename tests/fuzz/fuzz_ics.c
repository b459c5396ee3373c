/* libFuzzer driver: the ICS feed scan, libical's parse and the expansion of
 * recurring events over the window (ics_check), with small limits so that a
 * run spends its time on the parser rather than on huge expansions. */
#include <stdint.h>
#include <stdlib.h>

#include "pull/ics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    IcsOptions o = { .horizon_days = 400, .max_bytes = 65536, .max_events = 64,
                     .max_occurrences = 64 };
    size_t n = 0;
    Err err = { 0 };
    ics_check((const char *)data, size, &o, &n, &err);
    return 0;
}
