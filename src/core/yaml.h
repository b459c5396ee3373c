/* YAML documents through libfyaml, with syntax errors placed at their line
 * and column (libfyaml reports through a FILE; this captures it). Shared by
 * bureau.yaml and the workflow files. */
#ifndef BUREAU_CORE_YAML_H
#define BUREAU_CORE_YAML_H

#include <libfyaml.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

/* Whether text holds anything but blanks and comments. */
bool core_yaml_has_content(const char *text, size_t len);

/* Builds a document from text[0..len). On a syntax error returns ERR_INVAL
 * with the parser's message in err (without a position) and the position in
 * *ret_line / *ret_col (0 when unknown); on success *ret is the document
 * (fy_document_destroy it). */
int core_yaml_build(const char *text, size_t len, struct fy_document **ret, int *ret_line,
                    int *ret_col, Err *err);

#endif
