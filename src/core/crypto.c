/* libcrypto wrappers. The SHA-256 implementation is fetched once and shared,
 * which avoids OpenSSL 3's per-call implicit fetch. */
#include "core/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!sha256_md) {
        fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"libcrypto has no SHA256\"}\n");
        abort();
    }
}

static const EVP_MD *md(void)
{
    pthread_once(&sha256_once, sha256_fetch);
    return sha256_md;
}

struct CoreSha256 {
    EVP_MD_CTX *ctx;
};

CoreSha256 *core_sha256_new(void)
{
    CoreSha256 *h = xmalloc(sizeof *h);
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || !EVP_DigestInit_ex(h->ctx, md(), NULL)) {
        fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"EVP_DigestInit failed\"}\n");
        abort();
    }
    return h;
}

void core_sha256_update(CoreSha256 *h, const void *data, size_t len)
{
    EVP_DigestUpdate(h->ctx, data, len);
}

void core_sha256_final(CoreSha256 *h, uint8_t out[CORE_SHA256_LEN])
{
    unsigned int n = 0;
    EVP_DigestFinal_ex(h->ctx, out, &n);
    EVP_DigestInit_ex(h->ctx, md(), NULL);
}

void core_sha256_free(CoreSha256 *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

void core_sha256(const void *data, size_t len, uint8_t out[CORE_SHA256_LEN])
{
    unsigned int n = 0;
    if (!EVP_Digest(data, len, out, &n, md(), NULL)) {
        fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"EVP_Digest failed\"}\n");
        abort();
    }
}

void core_sha256_hex(const void *data, size_t len, char out[CORE_SHA256_HEX + 1])
{
    uint8_t d[CORE_SHA256_LEN];
    core_sha256(data, len, d);
    core_hex_encode(d, sizeof d, out);
}

void core_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                      uint8_t out[CORE_SHA256_LEN])
{
    unsigned int n = 0;
    static const uint8_t empty = 0;
    if (!HMAC(md(), key_len ? key : &empty, (int)key_len, data, len, out, &n)) {
        fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"HMAC failed\"}\n");
        abort();
    }
}

static void rand_or_die(void *out, size_t len)
{
    if (RAND_bytes(out, (int)len) != 1) {
        fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"RAND_bytes failed\"}\n");
        abort();
    }
}

/* Small requests (ids, trace ids, jitter: several per event) are served
 * from a per-thread block drawn from RAND_bytes 256 bytes at a time: one
 * generator call, with its locking, per a dozen requests instead of each.
 * Bytes handed out are wiped from the block. Bureau does not fork, so no
 * two processes share a block. */
#define RAND_POOL 256
#define RAND_POOL_MAX_REQUEST 32

static _Thread_local struct {
    uint8_t b[RAND_POOL];
    size_t left; /* unused bytes at the end of b */
} pool;

void core_random_bytes(void *out, size_t len)
{
    if (len > RAND_POOL_MAX_REQUEST) {
        rand_or_die(out, len);
        return;
    }
    if (pool.left < len) {
        rand_or_die(pool.b, RAND_POOL);
        pool.left = RAND_POOL;
    }
    uint8_t *p = pool.b + RAND_POOL - pool.left;
    memcpy(out, p, len);
    OPENSSL_cleanse(p, len);
    pool.left -= len;
}

void core_hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * len] = '\0';
}

static int nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int core_hex_decode(const char *in, size_t in_len, uint8_t *out, size_t out_len)
{
    if (in_len != out_len * 2)
        return ERR_INVAL;
    for (size_t i = 0; i < out_len; i++) {
        int hi = nibble(in[2 * i]), lo = nibble(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return ERR_INVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

bool core_ct_equal(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}
