/* Goals matched to workflows: the goal and each workflow's text are
 * embedded with an IDF learned from the workflow texts themselves (so the
 * words every workflow shares, "steps", "approve", weigh little and the
 * words that tell them apart weigh much), and ranked by cosine. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "model/local.h"

#define PLAN_DIM 2048 /* few documents: a wide vector keeps collisions rare */

static bool alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* A light suffix stripper for English words of ASCII letters, so that
 * "renewals", "renewal", "customers" and "customer's", "ends" and
 * "ending", "weekly" and "week", "welcome" and "welcomes" meet: -'s,
 * -ies > -y, -sses > -ss, -ing, -ly, -ed, -es, -s, and a final -e, on words that keep at least 3 letters. Other words
 * (and other scripts) pass as they are. Caller frees. */
static char *stem_text(const char *text, size_t len)
{
    Buf b;
    buf_init(&b, 0);
    size_t i = 0;
    while (i < len) {
        if (!alpha(text[i])) {
            buf_putc(&b, text[i] == '\'' ? ' ' : text[i]);
            i++;
            continue;
        }
        size_t j = i;
        while (j < len && alpha(text[j]))
            j++;
        bool ascii_word = j >= len || (unsigned char)text[j] < 0x80;
        size_t n = j - i;
        char w[64];
        if (!ascii_word || n >= sizeof w) {
            buf_append(&b, text + i, n);
            i = j;
            continue;
        }
        for (size_t k = 0; k < n; k++)
            w[k] = (char)(text[i + k] | 0x20);
        w[n] = '\0';
        static const struct { const char *suf; const char *rep; } rules[] = {
            { "ies", "y" }, { "sses", "ss" }, { "ing", "" }, { "ly", "" }, { "ed", "" },
            { "es", "" }, { "s", "" },
        };
        for (size_t r = 0; r < sizeof rules / sizeof rules[0]; r++) {
            size_t sl = strlen(rules[r].suf), rl = strlen(rules[r].rep);
            if (n > sl + 2 && !memcmp(w + n - sl, rules[r].suf, sl) &&
                !(sl == 1 && w[n - 2] == 's')) {
                memcpy(w + n - sl, rules[r].rep, rl);
                n = n - sl + rl;
                w[n] = '\0';
                break;
            }
        }
        if (n > 3 && w[n - 1] == 'e')
            w[--n] = '\0';
        buf_append(&b, w, n);
        i = j;
    }
    return buf_steal(&b);
}

int local_plan_match(const char *goal, size_t goal_len, const char *const *docs,
                     const size_t *lens, size_t n, double *scores, Err *err)
{
    if (n > LOCAL_PLAN_MAX_DOCS)
        return err_set(err, ERR_TOOBIG, "%zu workflows to match, more than %d", n,
                       LOCAL_PLAN_MAX_DOCS);
    LocalIdf *idf = local_idf_new();
    char **stems = xcalloc(n ? n : 1, sizeof *stems);
    for (size_t i = 0; i < n; i++) {
        stems[i] = stem_text(docs[i], lens[i] < LOCAL_MAX_TEXT ? lens[i] : LOCAL_MAX_TEXT);
        local_idf_add(idf, stems[i], strlen(stems[i]));
    }
    char *gs = stem_text(goal, goal_len < LOCAL_MAX_TEXT ? goal_len : LOCAL_MAX_TEXT);
    float *g = xmalloc(PLAN_DIM * sizeof *g), *d = xmalloc(PLAN_DIM * sizeof *d);
    int rc = local_embed(idf, gs, strlen(gs), PLAN_DIM, g, err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = local_embed(idf, stems[i], strlen(stems[i]), PLAN_DIM, d, err);
        if (rc == 0)
            scores[i] = local_cosine(g, d, PLAN_DIM);
    }
    for (size_t i = 0; i < n; i++)
        free(stems[i]);
    free(stems);
    free(gs);
    free(g);
    free(d);
    local_idf_free(idf);
    return rc;
}
