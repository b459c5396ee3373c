/* libFuzzer driver: the urlencoded body of POST /login and /logout
 * (api__form_field), the one parser of the dashboard's sessions that reads
 * outside input. The whole input is the body; both fields are looked up with
 * a small and a large output buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "api/tokens.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a copy without a terminating NUL: a read past the end is caught */
    char *body = malloc(size ? size : 1);
    if (!body)
        return 0;
    memcpy(body, data, size);
    char small[8], big[API_TOKEN_LEN + 8];
    const char *names[] = { "token", "csrf" };
    for (int i = 0; i < 2; i++) {
        if (api__form_field(body, size, names[i], small, sizeof small) && strlen(small) >= sizeof small)
            abort();
        if (api__form_field(body, size, names[i], big, sizeof big) && strlen(big) >= sizeof big)
            abort();
    }
    free(body);
    return 0;
}
