/* JSON helpers over Jansson: bounded parsing with positioned errors, and the
 * canonical text form that Bureau hashes: compact, object keys sorted
 * bytewise, UTF-8 kept as is, only '"', '\\' and control characters escaped,
 * reals in the shortest form that reads back as the same double. */
#ifndef BUREAU_CORE_JSON_H
#define BUREAU_CORE_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

/* Parses exactly one JSON value from text[0..len). Duplicate object keys and
 * NUL characters are refused. On error, err names the line, column and byte
 * offset. Returns 0 and a new reference in *ret. */
int core_json_parse(const char *text, size_t len, json_t **ret, Err *err);

/* Appends the canonical text of v to out; ERR_TOOBIG when out's maximum is
 * reached. */
int core_json_canonical(const json_t *v, Buf *out);

/* Appends compact JSON text of v (object keys in insertion order). */
int core_json_dump(const json_t *v, Buf *out);

/* One member of a JSON object, found in its text without building a tree:
 * the key's and the value's bytes as written (a string value with its
 * quotes). For readers of canonical text that want a few members of many
 * small objects (the ledger's writer). */
typedef struct CoreJsonMember {
    const char *key;
    size_t key_len;
    const char *val;
    size_t val_len;
} CoreJsonMember;

/* Splits text[0..len), one JSON object, into its members, in order, into
 * out[0..cap). Returns their number, or -1 when the text is not one object,
 * has more than cap members, or holds a string with a NUL (\u0000, which
 * core_json_parse refuses too). Values are checked only as far as finding
 * where they end (inside an array or object: strings and brackets), at any
 * depth; keys are compared as written. */
int core_json_members(const char *text, size_t len, CoreJsonMember *out, size_t cap);
/* The member named key (as written), or NULL. */
const CoreJsonMember *core_json_member(const CoreJsonMember *m, int n, const char *key);
/* A string member's value decoded (malloc'd), or NULL for another type. */
char *core_json_member_string(const CoreJsonMember *m);
/* An integer member's value; false for another type (a real included). */
bool core_json_member_int(const CoreJsonMember *m, int64_t *ret);

/* A short description of v's type: "object", "string", ... */
const char *core_json_type_name(const json_t *v);

/* Replaces, in place, every byte of s that is not part of valid UTF-8 with
 * '?', so that text cut short or taken from a request can go into JSON. */
void core_utf8_sanitize(char *s);
/* Whether s[0..len) is valid UTF-8; if not, *ret_bad (may be NULL) is the
 * offset of the first byte that is not. */
bool core_utf8_valid(const char *s, size_t len, size_t *ret_bad);

#endif
