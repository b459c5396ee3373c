/* Themes (docs/memory.md, "Themes"): what people said over a period,
 * grouped by what it is about. The texts of the events of some types since
 * a time are embedded (the local embedder, IDF from those texts) and
 * clustered on cosine similarity (each text joins the nearest group's
 * centroid above a threshold or starts one; groups that close merge; a text
 * left alone joins the nearest larger group at half the threshold); each theme
 * is named by its most distinctive words and carries its count, quotes
 * (with seq and who) and seqs. The input of the feedback-digest workflow
 * (the step kind memory.themes). */
#ifndef BUREAU_MEMORY_THEMES_H
#define BUREAU_MEMORY_THEMES_H

#include <jansson.h>
#include <stdint.h>

#include "core/err.h"
#include "store/store.h"

#define MEMORY_THEMES_MAX_TEXTS 2000   /* the newest this many are grouped */
#define MEMORY_THEMES_MAX_TYPES 8
#define MEMORY_THEMES_DEFAULT_MAX 8    /* themes listed */
#define MEMORY_THEMES_QUOTES 3         /* quotes per theme */
#define MEMORY_THEMES_QUOTE_CHARS 240
#define MEMORY_THEMES_JOIN 0.22        /* two groups join when their average cosine is above */

/* types: NULL-terminated event types; since_ms: events that occurred at
 * or after it. *ret: {since, total, themes: [{label, words, count, quotes:
 * [{seq, text, who}], seqs}]}, largest theme first (ties: the earliest). A
 * theme of one text is listed after the others, under "other" when more
 * than max_themes are found. */
int memory_themes(Store *rd, const char *const *types, int64_t since_ms, int max_themes,
                  json_t **ret, Err *err);

#endif
