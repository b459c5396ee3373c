/* SHA-256, HMAC-SHA256, randomness and hex over OpenSSL libcrypto.
 * All functions are thread-safe. */
#ifndef BUREAU_CORE_CRYPTO_H
#define BUREAU_CORE_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CORE_SHA256_LEN 32
#define CORE_SHA256_HEX (CORE_SHA256_LEN * 2)

void core_sha256(const void *data, size_t len, uint8_t out[CORE_SHA256_LEN]);
void core_sha256_hex(const void *data, size_t len, char out[CORE_SHA256_HEX + 1]);

/* Incremental SHA-256. */
typedef struct CoreSha256 CoreSha256;
CoreSha256 *core_sha256_new(void);
void core_sha256_update(CoreSha256 *h, const void *data, size_t len);
/* Writes the digest and resets h for reuse. */
void core_sha256_final(CoreSha256 *h, uint8_t out[CORE_SHA256_LEN]);
void core_sha256_free(CoreSha256 *h);

void core_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                      uint8_t out[CORE_SHA256_LEN]);

/* Cryptographically strong random bytes; aborts if the generator fails. */
void core_random_bytes(void *out, size_t len);

/* Lower-case hex; out holds 2*len+1 bytes. */
void core_hex_encode(const uint8_t *in, size_t len, char *out);
/* Decodes exactly 2*out_len hex digits; returns 0 or ERR_INVAL. */
int core_hex_decode(const char *in, size_t in_len, uint8_t *out, size_t out_len);

/* Compares in time independent of where the bytes differ. */
bool core_ct_equal(const void *a, const void *b, size_t len);

#endif
