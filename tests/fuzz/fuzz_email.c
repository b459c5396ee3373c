/* libFuzzer driver: the email parser (pull/email.c, GMime underneath) and
 * the HTML-to-text conversion. Every input must become an email.received
 * event the ledger accepts: the parser never refuses content. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "pull/email.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    EventLimits lim = { .max_data_bytes = 1024 * 1024 };
    PullEmailOptions o = { .source = "fuzz", .limits = &lim };
    Event *ev = NULL;
    Err err = { 0 };
    if (pull_email_event((const char *)data, size, &o, &ev, NULL, &err) < 0) {
        fprintf(stderr, "refused: %s\n", err.msg);
        abort();
    }
    ledger_event_free(ev);
    Buf out;
    buf_init(&out, 0);
    pull_html_to_text((const char *)data, size, &out);
    buf_done(&out);
    return 0;
}
