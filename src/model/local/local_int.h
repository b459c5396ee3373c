/* Private to src/model/local/: UTF-8 decoding and the word scanner that the
 * features, the summariser and the embeddings share. */
#ifndef BUREAU_MODEL_LOCAL_INT_H
#define BUREAU_MODEL_LOCAL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* Decodes one code point at s[0..len) (len > 0) into *cp and returns the
 * bytes it takes; an invalid or truncated sequence takes 1 byte and reads
 * as U+FFFD. Overlong forms and surrogates are invalid. */
size_t local__u8_decode(const char *s, size_t len, uint32_t *cp);

/* Whether cp is part of a word: ASCII letters and digits, and code points
 * from U+00C0 up that are not punctuation, symbols or spaces. */
bool local__is_word_cp(uint32_t cp);

/* The next word of s[*pos..len) in *ret, advancing *pos past it; false at
 * the end. Apostrophes (') between two word characters stay in the word. */
bool local__word_next(const char *s, size_t len, size_t *pos, Str *ret);

/* Whether the (normalised) word is a common English function word. */
bool local__stopword(const char *w, size_t n);

#endif
