/* Jansson sorts keys with strcmp, which orders UTF-8 by code point: the
 * canonical form is therefore stable across platforms and Jansson versions
 * that keep %.17g for reals. */
#include "core/json.h"

int core_json_parse(const char *text, size_t len, json_t **ret, Err *err)
{
    json_error_t je;
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!v)
        return err_set(err, ERR_INVAL, "malformed JSON at line %d, column %d (byte %d): %s",
                       je.line, je.column, je.position, je.text);
    *ret = v;
    return 0;
}

static int dump_cb(const char *buffer, size_t size, void *data)
{
    return buf_append(data, buffer, size) < 0 ? -1 : 0;
}

int core_json_canonical(const json_t *v, Buf *out)
{
    if (json_dump_callback(v, dump_cb, out,
                           JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY |
                               JSON_REAL_PRECISION(17)) != 0)
        return ERR_TOOBIG;
    return 0;
}

int core_json_dump(const json_t *v, Buf *out)
{
    if (json_dump_callback(v, dump_cb, out,
                           JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY) != 0)
        return ERR_TOOBIG;
    return 0;
}

const char *core_json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "unknown";
}
