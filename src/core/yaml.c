/* YAML documents with positioned syntax errors (yaml.h). */
#include "core/yaml.h"

#include "core/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool core_yaml_has_content(const char *text, size_t len)
{
    for (size_t i = 0; i < len;) {
        while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r'))
            i++;
        if (i < len && text[i] != '#' && text[i] != '\n')
            return true;
        while (i < len && text[i] != '\n')
            i++;
        i++;
    }
    return false;
}

/* In libfyaml's "SOURCE:LINE:COL: error: MESSAGE\n", finds LINE, COL and
 * MESSAGE (cut at its newline); NULL when there is none. */
static const char *diag_message(char *text, int *line, int *col)
{
    char *e = text ? strstr(text, ": error: ") : NULL;
    if (!e)
        return NULL;
    char *msg = e + strlen(": error: "), *nl = strchr(msg, '\n');
    if (nl)
        *nl = '\0';
    *e = '\0';
    char *c = strrchr(text, ':');
    if (c) {
        *col = atoi(c + 1);
        *c = '\0';
        char *l = strrchr(text, ':');
        if (l)
            *line = atoi(l + 1);
    }
    return msg;
}

int core_yaml_build(const char *text, size_t len, struct fy_document **ret, int *ret_line,
                    int *ret_col, Err *err)
{
    /* YAML is UTF-8; libfyaml 0.8 can also loop forever on some invalid
     * bytes (a directive followed by 0xff), so they never reach it. */
    size_t bad = 0;
    if (!core_utf8_valid(text, len, &bad)) {
        int line = 1, col = 1;
        for (size_t i = 0; i < bad; i++) {
            if (text[i] == '\n')
                line++, col = 1;
            else if (((unsigned char)text[i] & 0xc0) != 0x80)
                col++;
        }
        *ret_line = line;
        *ret_col = col;
        return err_set(err, ERR_INVAL, "not valid UTF-8 (byte 0x%02x at offset %zu)",
                       (unsigned char)text[bad], bad);
    }
    char *diag_text = NULL;
    size_t diag_len = 0;
    FILE *ms = open_memstream(&diag_text, &diag_len);
    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = ms;
    dcfg.colorize = false;
    dcfg.show_source = false;
    dcfg.show_position = true;
    dcfg.show_type = false;
    dcfg.show_module = false;
    struct fy_diag *diag = ms ? fy_diag_create(&dcfg) : NULL;
    struct fy_document *doc = NULL;
    if (diag) {
        struct fy_parse_cfg pcfg = { .flags = FYPCF_QUIET | FYPCF_DEFAULT_PARSE, .diag = diag };
        doc = fy_document_build_from_string(&pcfg, text, len);
        fy_diag_destroy(diag);
    }
    if (ms)
        fclose(ms);
    int rc = 0;
    *ret_line = *ret_col = 0;
    if (!diag) {
        rc = err_set(err, ERR_INTERNAL, "cannot create YAML diagnostics");
    } else if (!doc) {
        const char *msg = diag_message(diag_text, ret_line, ret_col);
        rc = err_set(err, ERR_INVAL, "%s", msg ? msg : "not valid YAML");
    } else {
        *ret = doc;
    }
    free(diag_text);
    return rc;
}
