/* Text normalisation, the word scanner and hashed features for the local
 * tier. Invariant: normalising never makes a text longer, so a buffer of the
 * input's size (cut at LOCAL_MAX_TEXT) always holds its normal form. */
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "model/local.h"
#include "model/local/local_int.h"

#define WORD_MAX 64 /* bytes of a word that make features; the rest is ignored */

#define SEED_WORD    UINT64_C(0x9e3779b97f4a7c15)
#define SEED_BIGRAM  UINT64_C(0xc2b2ae3d27d4eb4f)
#define SEED_TRIGRAM UINT64_C(0x165667b19e3779f9)

size_t local__u8_decode(const char *str, size_t len, uint32_t *cp)
{
    const unsigned char *s = (const unsigned char *)str;
    unsigned char c = s[0];
    *cp = 0xFFFD;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2; v = c & 0x1F; min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3; v = c & 0x0F; min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4; v = c & 0x07; min = 0x10000;
    } else {
        return 1;
    }
    if (len < n)
        return 1;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 1;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 1;
    *cp = v;
    return n;
}

bool local__is_word_cp(uint32_t cp)
{
    if (cp < 0x80)
        return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9');
    if (cp < 0xC0 || cp == 0xD7 || cp == 0xF7 || cp == 0xFFFD)
        return false;
    if (cp >= 0x2000 && cp <= 0x2BFF) /* punctuation, currency, arrows, maths, shapes */
        return false;
    if (cp >= 0x3000 && cp <= 0x303F) /* CJK punctuation */
        return false;
    if (cp >= 0xFE00 && cp <= 0xFE0F) /* variation selectors */
        return false;
    if (cp >= 0x1F000) /* emoji and other pictographs */
        return false;
    return true;
}

/* Lower-case of an upper-case letter of Latin-1 or Latin Extended-A, or cp. */
static uint32_t lower_cp(uint32_t cp)
{
    if (cp >= 'A' && cp <= 'Z')
        return cp + 32;
    if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7)
        return cp + 32;
    if ((cp >= 0x100 && cp <= 0x137) || (cp >= 0x14A && cp <= 0x177))
        return (cp & 1) ? cp : cp + 1;
    if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E))
        return (cp & 1) ? cp + 1 : cp;
    if (cp == 0x178)
        return 0xFF;
    return cp;
}

size_t local_normalize(const char *text, size_t len, char *out)
{
    if (len > LOCAL_MAX_TEXT)
        len = LOCAL_MAX_TEXT;
    size_t i = 0, o = 0;
    while (i < len) {
        uint32_t cp;
        size_t n = local__u8_decode(text + i, len - i, &cp);
        if (cp == 0xFFFD && n == 1) {
            out[o++] = ' ';
        } else if (cp < 0x80) {
            if ((cp < 0x20 && cp != '\n') || cp == 0x7F)
                out[o++] = ' ';
            else
                out[o++] = (char)lower_cp(cp);
        } else if (cp == 0x2018 || cp == 0x2019) {
            out[o++] = '\'';
        } else if (cp == 0xA0) {
            out[o++] = ' '; /* no-break space: 2 bytes become 1 */
        } else {
            uint32_t lc = lower_cp(cp);
            if (lc == cp) {
                memcpy(out + o, text + i, n);
                o += n;
            } else {
                /* Every mapping above stays within two-byte UTF-8. */
                out[o++] = (char)(0xC0 | (lc >> 6));
                out[o++] = (char)(0x80 | (lc & 0x3F));
            }
        }
        i += n;
    }
    out[o] = '\0';
    return o;
}

uint64_t local_hash(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    uint64_t h = UINT64_C(0xcbf29ce484222325) ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= UINT64_C(0x100000001b3);
    }
    /* FNV-1a mixes its low bits poorly; finish with MurmurHash3's fmix64. */
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    h ^= h >> 33;
    return h;
}

bool local__word_next(const char *s, size_t len, size_t *pos, Str *ret)
{
    size_t i = *pos;
    while (i < len) {
        uint32_t cp;
        size_t n = local__u8_decode(s + i, len - i, &cp);
        if (local__is_word_cp(cp))
            break;
        i += n;
    }
    if (i >= len) {
        *pos = len;
        return false;
    }
    size_t start = i;
    while (i < len) {
        uint32_t cp;
        size_t n = local__u8_decode(s + i, len - i, &cp);
        if (local__is_word_cp(cp)) {
            i += n;
            continue;
        }
        if (cp == '\'' && i + 1 < len) {
            uint32_t next;
            local__u8_decode(s + i + 1, len - i - 1, &next);
            if (local__is_word_cp(next)) {
                i += 1;
                continue;
            }
        }
        break;
    }
    *pos = i;
    ret->ptr = s + start;
    ret->len = i - start;
    return true;
}

static const char *const STOPWORDS[] = {
    "a", "about", "after", "all", "also", "am", "an", "and", "any", "are", "as", "at",
    "be", "been", "but", "by", "can", "could", "did", "do", "does", "for", "from",
    "had", "has", "have", "he", "her", "here", "him", "his", "how", "i", "i'm", "if",
    "in", "into", "is", "it", "it's", "its", "just", "me", "my", "no", "not", "of",
    "on", "or", "our", "out", "she", "so", "some", "than", "that", "the", "their",
    "them", "then", "there", "these", "they", "this", "to", "up", "us", "was", "we",
    "were", "what", "when", "which", "who", "will", "with", "would", "you", "your",
};

bool local__stopword(const char *w, size_t n)
{
    size_t lo = 0, hi = sizeof STOPWORDS / sizeof STOPWORDS[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *sw = STOPWORDS[mid];
        size_t sl = strlen(sw);
        int c = memcmp(w, sw, n < sl ? n : sl);
        if (c == 0)
            c = (n > sl) - (n < sl);
        if (c == 0)
            return true;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return false;
}

/* Copies word w (cut at WORD_MAX bytes on a character boundary) into out
 * with every ASCII digit read as '0'; returns its length. */
static size_t word_shape(Str w, char out[WORD_MAX])
{
    size_t n = 0;
    while (n < w.len) {
        uint32_t cp;
        size_t k = local__u8_decode(w.ptr + n, w.len - n, &cp);
        if (n + k > WORD_MAX)
            break;
        for (size_t j = 0; j < k; j++) {
            char c = w.ptr[n + j];
            out[n + j] = (c >= '0' && c <= '9') ? '0' : c;
        }
        n += k;
    }
    return n;
}

static size_t trigrams(const char *w, size_t n, LocalFeatureFn fn, void *ctx)
{
    /* Character offsets of "^" w "$": the marks are one byte each. */
    char buf[WORD_MAX + 2];
    size_t starts[WORD_MAX + 3];
    size_t nchars = 0, blen = 0;
    buf[blen++] = '^';
    starts[nchars++] = 0;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = local__u8_decode(w + i, n - i, &cp);
        starts[nchars++] = blen;
        memcpy(buf + blen, w + i, k);
        blen += k;
        i += k;
    }
    starts[nchars++] = blen;
    buf[blen++] = '$';
    starts[nchars] = blen; /* the end of the last character */
    size_t count = 0;
    for (size_t c = 0; c + 3 <= nchars; c++) {
        fn(ctx, local_hash(buf + starts[c], starts[c + 3] - starts[c], SEED_TRIGRAM),
           LOCAL_F_TRIGRAM);
        count++;
    }
    return count;
}

size_t local_features(const char *text, size_t len, unsigned kinds, LocalFeatureFn fn, void *ctx)
{
    if (len > LOCAL_MAX_TEXT)
        len = LOCAL_MAX_TEXT;
    char *norm = xmalloc(len + 1);
    size_t nlen = local_normalize(text, len, norm);
    size_t pos = 0, count = 0;
    char prev[WORD_MAX], cur[WORD_MAX];
    size_t prev_len = 0;
    Str w;
    while (local__word_next(norm, nlen, &pos, &w)) {
        size_t n = word_shape(w, cur);
        if (kinds & LOCAL_F_WORD) {
            fn(ctx, local_hash(cur, n, SEED_WORD), LOCAL_F_WORD);
            count++;
        }
        if ((kinds & LOCAL_F_BIGRAM) && prev_len > 0) {
            char pair[2 * WORD_MAX + 1];
            memcpy(pair, prev, prev_len);
            pair[prev_len] = ' ';
            memcpy(pair + prev_len + 1, cur, n);
            fn(ctx, local_hash(pair, prev_len + 1 + n, SEED_BIGRAM), LOCAL_F_BIGRAM);
            count++;
        }
        if (kinds & LOCAL_F_TRIGRAM)
            count += trigrams(cur, n, fn, ctx);
        memcpy(prev, cur, n);
        prev_len = n;
    }
    free(norm);
    return count;
}
