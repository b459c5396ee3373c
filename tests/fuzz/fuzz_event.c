/* libFuzzer driver: outside event JSON through parsing, validation and the
 * canonical form. Any input must give an event or a clean error. */
#include <stdint.h>
#include <string.h>

#include "core/json.h"
#include "ledger/event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    EventLimits lim = { .max_data_bytes = 64 * 1024 };
    Event *ev = NULL;
    Err err = { 0 };
    if (ledger_event_parse((const char *)data, size, &lim, &ev, &err) == 0) {
        /* the stored text must parse back to the same canonical text */
        json_t *back = json_loadb(ev->data, ev->data_len, 0, NULL);
        if (!back)
            __builtin_trap();
        Buf b;
        buf_init(&b, 0);
        core_json_canonical(back, &b);
        if (b.len != ev->data_len || memcmp(b.ptr, ev->data, b.len))
            __builtin_trap();
        buf_done(&b);
        json_decref(back);
        ledger_event_free(ev);
    } else if (!err.msg[0]) {
        __builtin_trap(); /* every refusal says why */
    }
    return 0;
}
