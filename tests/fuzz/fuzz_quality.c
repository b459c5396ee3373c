/* libFuzzer driver: the quality maths on arbitrary bytes (model/quality.h).
 * The input splits at its first NUL into two texts: their edit distance is
 * in [0, 1], symmetric, 0 against itself and 0 only for equal texts; the
 * whole input, when it parses as JSON, gives a body text within its cap. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "model/quality.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *a = (const char *)data;
    const char *nul = memchr(data, 0, size);
    size_t alen = nul ? (size_t)(nul - a) : size;
    const char *b = nul ? nul + 1 : "";
    size_t blen = nul ? size - alen - 1 : 0;
    double d = model_edit_distance(a, alen, b, blen);
    if (!(d >= 0 && d <= 1) || d != model_edit_distance(b, blen, a, alen))
        abort();
    if (model_edit_distance(a, alen, a, alen) != 0)
        abort();
    if (d == 0 && (alen != blen || memcmp(a, b, alen)))
        abort(); /* two different texts are never at distance 0 */
    double lo, hi;
    model_wilson((int64_t)(alen % 101), 100, &lo, &hi);
    if (!(lo >= 0 && lo <= hi && hi <= 1))
        abort();
    json_t *j = NULL;
    Err err = { 0 };
    if (core_json_parse(a, size, &j, &err) == 0) {
        char *t = model_body_text(j);
        if (strlen(t) > MODEL_QUALITY_TEXT_MAX)
            abort();
        free(t);
        json_decref(j);
    }
    return 0;
}
