/* libFuzzer driver: the local model tier on arbitrary bytes (the extractor,
 * the summariser, the classifier, the embedder and the goal matcher), and
 * the email.send payload check and message builder on whatever JSON the
 * bytes parse to.
 * The first byte picks the summary budget. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "effect/mail.h"
#include "model/local.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    Err err = { 0 };
    json_t *out = NULL;
    if (local_extract(text, len, 1764000000000, &out, &err) == 0)
        json_decref(out);
    out = NULL;
    if (local_summarize(text, len, (size_t)data[0] * 4, &out, &err) == 0) {
        const char *s = json_string_value(json_object_get(out, "summary"));
        if (!s || strlen(s) > (size_t)data[0] * 4)
            abort(); /* the budget is a promise */
        json_decref(out);
    }
    static LocalNB *nb;
    if (!nb) {
        nb = local_nb_new(12);
        local_nb_add(nb, "please send a quote for the website", 35, "lead", &err);
        local_nb_add(nb, "the invoice is wrong, refund me", 31, "billing", &err);
    }
    char label[LOCAL_LABEL_MAX + 1];
    double p;
    if (local_nb_classify(nb, text, len, label, sizeof label, &p, NULL, &err) == 0 &&
        !(p >= 0 && p <= 1))
        abort();
    float v[32];
    local_embed(NULL, text, len, 32, v, &err);
    /* goals: the bytes as the goal, and as the text of one of the
     * workflows (the suffix stripper reads both); a score is a cosine */
    const char *docs[2] = { "renewal watch. retainers ending within 30 days", text };
    size_t lens[2] = { strlen(docs[0]), len };
    double sc[2];
    if (local_plan_match(text, len, docs, lens, 2, sc, &err) == 0 &&
        !(sc[0] >= -1.0001 && sc[0] <= 1.0001 && sc[1] >= -1.0001 && sc[1] <= 1.0001))
        abort();
    json_t *payload = json_loadb(text, len, 0, NULL);
    if (payload && mail_payload_check(payload, &err) == 0) {
        Buf msg;
        buf_init(&msg, MAIL_MAX_MESSAGE);
        char mid[MAIL_MESSAGE_ID_SIZE];
        mail_message_id("task:step", "bot@example.com", mid, sizeof mid);
        if (mail_build(payload, "bot@example.com", mid, 1764000000000, &msg, &err) == 0 &&
            msg.len == 0)
            abort();
        buf_done(&msg);
    }
    json_decref(payload);
    return 0;
}
