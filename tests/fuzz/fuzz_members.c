/* libFuzzer driver: core_json_members (reading an object's members from its
 * text, as the tasks projection does) against Jansson. On any input it must
 * not crash; on canonical text it must agree with a full parse: the same
 * members in the same order (keys decoded), each string decoding to Jansson's value, each
 * integer to its value, each other value's text parsing to an equal value. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CAP 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    CoreJsonMember m[CAP];
    int n = core_json_members((const char *)data, size, m, CAP); /* anything: no crash */
    for (int i = 0; i < n; i++) {
        free(core_json_member_string(&m[i]));
        int64_t v;
        (void)core_json_member_int(&m[i], &v);
    }
    json_t *obj = NULL;
    Err err = { 0 };
    if (core_json_parse((const char *)data, size, &obj, &err) < 0)
        return 0;
    if (!json_is_object(obj) || json_object_size(obj) > CAP) {
        json_decref(obj);
        return 0;
    }
    Buf b;
    buf_init(&b, 0);
    core_json_canonical(obj, &b);
    n = core_json_members(b.ptr, b.len, m, CAP);
    if (n != (int)json_object_size(obj))
        __builtin_trap();
    for (int i = 0; i < n; i++) {
        /* keys are compared as written: decode one to find it in obj */
        CoreJsonMember quoted = { .val = m[i].key - 1, .val_len = m[i].key_len + 2 };
        char *key = core_json_member_string(&quoted);
        json_t *want = key ? json_object_get(obj, key) : NULL;
        if (!want || (!memchr(m[i].key, '\\', m[i].key_len) &&
                      core_json_member(m, n, key) != &m[i]))
            __builtin_trap();
        char *s = core_json_member_string(&m[i]);
        if (json_is_string(want) != (s != NULL) ||
            (s && (strlen(s) != json_string_length(want) || strcmp(s, json_string_value(want)))))
            __builtin_trap();
        int64_t v = 0;
        bool is_int = core_json_member_int(&m[i], &v);
        if (is_int != json_is_integer(want) || (is_int && v != json_integer_value(want)))
            __builtin_trap();
        json_t *got = json_loadb(m[i].val, m[i].val_len, JSON_DECODE_ANY, NULL);
        if (!got || !json_equal(got, want))
            __builtin_trap();
        json_decref(got);
        free(s);
        free(key);
    }
    buf_done(&b);
    json_decref(obj);
    return 0;
}
