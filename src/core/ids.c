/* ULID: 48-bit big-endian millisecond time + 80 random bits, in Crockford's
 * base32. Monotonicity: when the clock has not advanced past the last ULID's
 * time, the last random part is incremented instead of drawing a new one. */
#include "core/ids.h"

#include <pthread.h>
#include <string.h>

#include "core/clock.h"
#include "core/crypto.h"

static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static pthread_mutex_t ulid_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t last_ms = -1;
static uint8_t last_rand[10];

static void encode(int64_t ms, const uint8_t rnd[10], char out[CORE_ULID_LEN + 1])
{
    uint8_t b[16];
    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)((uint64_t)ms >> (8 * (5 - i)));
    memcpy(b + 6, rnd, 10);
    /* 128 bits -> 26 chars of 5 bits; the first char carries 3 bits. */
    int bit = -2; /* 26*5 = 130 bits: two leading zero bits */
    for (int i = 0; i < CORE_ULID_LEN; i++) {
        int v = 0;
        for (int k = 0; k < 5; k++, bit++) {
            v <<= 1;
            if (bit >= 0)
                v |= (b[bit / 8] >> (7 - bit % 8)) & 1;
        }
        out[i] = b32[v];
    }
    out[CORE_ULID_LEN] = '\0';
}

void core_ulid_at(int64_t ms, char out[CORE_ULID_LEN + 1])
{
    uint8_t rnd[10];
    pthread_mutex_lock(&ulid_lock);
    if (ms <= last_ms) {
        ms = last_ms;
        int i = 9;
        while (i >= 0 && ++last_rand[i] == 0)
            i--;
        if (i < 0) { /* 2^80 ULIDs in one ms: move to the next ms */
            ms = ++last_ms;
            core_random_bytes(last_rand, sizeof last_rand);
        }
    } else {
        core_random_bytes(last_rand, sizeof last_rand);
        last_rand[0] &= 0x7f; /* headroom so increments rarely overflow */
        last_ms = ms;
    }
    memcpy(rnd, last_rand, sizeof rnd);
    pthread_mutex_unlock(&ulid_lock);
    encode(ms, rnd, out);
}

void core_ulid_new(char out[CORE_ULID_LEN + 1])
{
    core_ulid_at(core_time_now_ms(), out);
}

static int b32_value(char c)
{
    if (c >= 'a' && c <= 'z')
        c = (char)(c - 'a' + 'A');
    const char *p = c ? strchr(b32, c) : NULL;
    return p ? (int)(p - b32) : -1;
}

bool core_ulid_valid(const char *s, size_t len)
{
    if (len != CORE_ULID_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (b32_value(s[i]) < 0)
            return false;
    return b32_value(s[0]) <= 7; /* the time part must fit in 48 bits */
}

int64_t core_ulid_time(const char *ulid)
{
    int64_t ms = 0;
    for (int i = 0; i < 10; i++)
        ms = ms << 5 | b32_value(ulid[i]);
    return ms;
}

void core_trace_new(char out[CORE_TRACE_LEN + 1])
{
    uint8_t b[16];
    do
        core_random_bytes(b, sizeof b);
    while (!memcmp(b, (uint8_t[16]){ 0 }, 16));
    core_hex_encode(b, sizeof b, out);
}

bool core_trace_valid(const char *s, size_t len)
{
    if (len != CORE_TRACE_LEN)
        return false;
    bool nonzero = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        nonzero |= c != '0';
    }
    return nonzero;
}
