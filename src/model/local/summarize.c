/* Extractive summaries by TextRank (Mihalcea and Tarau, 2004): sentences are
 * the nodes of a graph weighted by their word overlap, PageRank ranks them,
 * and the best are kept in text order within a byte budget. Invariant: the
 * summary is built only from whole sentences, except for one sentence cut at
 * a word boundary when no whole sentence fits, and its length never exceeds
 * the budget. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "model/local.h"
#include "model/local/local_int.h"

#define MAX_SENTENCES 400 /* the rest of a longer text is not summarised */
#define DAMPING       0.85
#define MAX_ITER      50
#define EPSILON       1e-6
#define ELLIPSIS      "\xE2\x80\xA6" /* … */

typedef struct Sentence {
    char *text;     /* whitespace collapsed, valid UTF-8 */
    size_t len;
    uint64_t *words; /* sorted, unique hashes of its content words */
    size_t nwords;
    double score;
    size_t index;
} Sentence;

static const char *const ABBREVIATIONS[] = {
    "al", "approx", "apr", "aug", "ave", "cf", "co", "corp", "dec", "dept", "dr", "e.g",
    "est", "feb", "fig", "i.e", "inc", "jan", "jr", "jul", "jun", "ltd", "mr", "mrs", "ms",
    "mt", "no", "nov", "oct", "p", "pp", "prof", "rd", "sep", "sept", "sr", "st", "tel",
    "vs", "viz",
};

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Whether the '.' at s[dot] ends an abbreviation, an initial or a number
 * rather than a sentence. */
static bool dot_is_abbreviation(const char *s, size_t dot)
{
    size_t b = dot;
    while (b > 0 && !is_space(s[b - 1]) && s[b - 1] != '(' && s[b - 1] != '"')
        b--;
    size_t n = dot - b;
    if (n == 0)
        return false;
    if (memchr(s + b, '.', n)) /* "e.g", "U.S", "a.m" */
        return true;
    if (n == 1 && ((s[b] >= 'A' && s[b] <= 'Z') || (s[b] >= 'a' && s[b] <= 'z')))
        return true; /* an initial: "J. Smith" */
    for (size_t i = 0; i < sizeof ABBREVIATIONS / sizeof ABBREVIATIONS[0]; i++)
        if (strlen(ABBREVIATIONS[i]) == n && strncasecmp(ABBREVIATIONS[i], s + b, n) == 0)
            return true;
    return false;
}

/* Appends s[0..len) to out with runs of whitespace as one space and invalid
 * UTF-8 bytes dropped; trims both ends. */
static char *collapse(const char *s, size_t len, size_t *ret_len)
{
    Buf b;
    buf_init(&b, 0);
    bool space = false;
    size_t i = 0;
    while (i < len) {
        if (is_space(s[i])) {
            space = b.len > 0;
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = local__u8_decode(s + i, len - i, &cp);
        if (!(cp == 0xFFFD && k == 1) && !(cp < 0x20)) {
            if (space)
                buf_putc(&b, ' ');
            buf_append(&b, s + i, k);
            space = false;
        }
        i += k;
    }
    *ret_len = b.len;
    if (b.len == 0)
        buf_putc(&b, '\0'); /* make ptr non-NULL; len stays 0 */
    char *r = buf_steal(&b);
    return r;
}

static int cmp_u64(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    return (*x > *y) - (*x < *y);
}

static void sentence_words(Sentence *st)
{
    char *norm = xmalloc(st->len + 1);
    size_t n = local_normalize(st->text, st->len, norm);
    size_t pos = 0, cap = 0;
    Str w;
    st->words = NULL;
    st->nwords = 0;
    while (local__word_next(norm, n, &pos, &w)) {
        if (w.len < 2 || local__stopword(w.ptr, w.len))
            continue;
        if (st->nwords == cap) {
            cap = cap ? cap * 2 : 16;
            st->words = xrealloc(st->words, cap * sizeof *st->words);
        }
        st->words[st->nwords++] = local_hash(w.ptr, w.len, 0);
    }
    free(norm);
    if (st->nwords == 0)
        return;
    qsort(st->words, st->nwords, sizeof *st->words, cmp_u64);
    size_t o = 1;
    for (size_t i = 1; i < st->nwords; i++)
        if (st->words[i] != st->words[o - 1])
            st->words[o++] = st->words[i];
    st->nwords = o;
}

static void add_sentence(Sentence *ss, size_t *n, const char *s, size_t a, size_t b)
{
    if (*n == MAX_SENTENCES)
        return;
    size_t len;
    char *t = collapse(s + a, b - a, &len);
    if (len == 0) {
        free(t);
        return;
    }
    Sentence *st = &ss[*n];
    st->text = t;
    st->len = len;
    st->index = *n;
    st->score = 0;
    sentence_words(st);
    (*n)++;
}

/* Splits s[0..len) into sentences. */
static size_t split(const char *s, size_t len, Sentence *ss)
{
    size_t n = 0, start = 0, i = 0;
    while (i < len && n < MAX_SENTENCES) {
        char c = s[i];
        if (c == '\n') {
            /* A blank line, a line ending in , : or ; (a greeting, a list's
             * lead-in) or a list item after it ends a sentence. */
            size_t j = i + 1;
            while (j < len && (s[j] == ' ' || s[j] == '\t' || s[j] == '\r'))
                j++;
            size_t p = i;
            while (p > start && is_space(s[p - 1]))
                p--;
            char last = p > start ? s[p - 1] : '\0';
            bool brk = j >= len || s[j] == '\n' || last == ',' || last == ':' || last == ';' ||
                       s[j] == '-' || s[j] == '*' || (unsigned char)s[j] == 0xE2 /* • */;
            if (brk) {
                add_sentence(ss, &n, s, start, i);
                start = i + 1;
            }
            i++;
            continue;
        }
        bool term = c == '.' || c == '!' || c == '?';
        size_t tlen = 1;
        if (!term && (unsigned char)c == 0xE2 && i + 2 < len && (unsigned char)s[i + 1] == 0x80 &&
            (unsigned char)s[i + 2] == 0xA6) {
            term = true;
            tlen = 3;
        }
        if (!term) {
            i++;
            continue;
        }
        size_t end = i + tlen;
        /* Runs of terminators and closing quotes or brackets stay with it. */
        while (end < len && (s[end] == '.' || s[end] == '!' || s[end] == '?' || s[end] == '"' ||
                             s[end] == ')' || s[end] == '\''))
            end++;
        if (end < len && !is_space(s[end])) {
            i = end;
            continue; /* "3.5", "example.com", "?!x" */
        }
        if (c == '.' && end == i + 1 && dot_is_abbreviation(s, i)) {
            i = end;
            continue;
        }
        size_t j = end;
        while (j < len && is_space(s[j]))
            j++;
        if (j < len && s[j] >= 'a' && s[j] <= 'z' && c == '.') {
            i = end; /* "approx. five", "no. 4 of" */
            continue;
        }
        add_sentence(ss, &n, s, start, end);
        start = end;
        i = end;
    }
    if (start < len)
        add_sentence(ss, &n, s, start, len);
    return n;
}

static double similarity(const Sentence *a, const Sentence *b)
{
    if (a->nwords == 0 || b->nwords == 0)
        return 0;
    size_t i = 0, j = 0, common = 0;
    while (i < a->nwords && j < b->nwords) {
        if (a->words[i] == b->words[j]) {
            common++; i++; j++;
        } else if (a->words[i] < b->words[j]) {
            i++;
        } else {
            j++;
        }
    }
    if (common == 0)
        return 0;
    return (double)common / (log(1.0 + (double)a->nwords) + log(1.0 + (double)b->nwords));
}

static void rank(Sentence *ss, size_t n)
{
    double *w = xcalloc(n * n, sizeof *w);
    double *out = xcalloc(n, sizeof *out);
    double *next = xcalloc(n, sizeof *next);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            double s = similarity(&ss[i], &ss[j]);
            w[i * n + j] = w[j * n + i] = s;
            out[i] += s;
            out[j] += s;
        }
    for (size_t i = 0; i < n; i++)
        ss[i].score = 1.0;
    for (int it = 0; it < MAX_ITER; it++) {
        double delta = 0;
        for (size_t i = 0; i < n; i++) {
            double sum = 0;
            for (size_t j = 0; j < n; j++)
                if (out[j] > 0 && w[j * n + i] > 0)
                    sum += w[j * n + i] / out[j] * ss[j].score;
            next[i] = (1.0 - DAMPING) + DAMPING * sum;
        }
        for (size_t i = 0; i < n; i++) {
            delta += fabs(next[i] - ss[i].score);
            ss[i].score = next[i];
        }
        if (delta < EPSILON)
            break;
    }
    free(w);
    free(out);
    free(next);
}

static int cmp_score(const void *a, const void *b)
{
    const Sentence *const *x = a, *const *y = b;
    if ((*x)->score != (*y)->score)
        return (*x)->score < (*y)->score ? 1 : -1;
    return ((*x)->index > (*y)->index) - ((*x)->index < (*y)->index);
}

/* The longest prefix of s (at most max bytes) that ends at a word boundary,
 * or at a character boundary when the first word alone is too long. */
static size_t cut_at_word(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t cut = max;
    while (cut > 0 && s[cut] != ' ')
        cut--;
    if (cut == 0) {
        cut = max;
        while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
            cut--;
    }
    while (cut > 0 && (s[cut - 1] == ' ' || s[cut - 1] == ',' || s[cut - 1] == ';' ||
                       s[cut - 1] == ':' || s[cut - 1] == '-'))
        cut--;
    return cut;
}

int local_summarize(const char *text, size_t len, size_t max_chars, json_t **ret, Err *err)
{
    if (!text)
        len = 0;
    if (len > LOCAL_MAX_TEXT) {
        len = LOCAL_MAX_TEXT;
        while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80)
            len--;
    }
    Sentence *ss = xcalloc(MAX_SENTENCES, sizeof *ss);
    size_t n = len ? split(text, len, ss) : 0;
    if (n > 1)
        rank(ss, n);
    Sentence **order = xmalloc((n ? n : 1) * sizeof *order);
    for (size_t i = 0; i < n; i++)
        order[i] = &ss[i];
    qsort(order, n, sizeof *order, cmp_score);

    /* A sentence that shares no word with any other ("Hi Sam,", "Best,
     * Anna") keeps the base score 1 - d; once some sentence is connected,
     * such isolated ones are left out rather than used to fill the budget. */
    bool connected = n > 0 && order[0]->score > (1.0 - DAMPING) + 1e-9;
    bool *keep = xcalloc(n ? n : 1, sizeof *keep);
    size_t used = 0, kept = 0;
    for (size_t r = 0; r < n; r++) {
        if (connected && order[r]->score <= (1.0 - DAMPING) + 1e-9)
            break;
        size_t need = order[r]->len + (kept ? 1 : 0);
        if (used + need <= max_chars) {
            keep[order[r]->index] = true;
            used += need;
            kept++;
        }
    }
    Buf b;
    buf_init(&b, 0);
    json_t *idx = json_array();
    if (kept > 0) {
        for (size_t i = 0; i < n; i++) {
            if (!keep[i])
                continue;
            if (b.len)
                buf_putc(&b, ' ');
            buf_append(&b, ss[i].text, ss[i].len);
            json_array_append_new(idx, json_integer((json_int_t)i));
        }
    } else if (n > 0 && max_chars > strlen(ELLIPSIS)) {
        const Sentence *top = order[0];
        size_t cut = cut_at_word(top->text, top->len, max_chars - strlen(ELLIPSIS));
        if (cut > 0) {
            buf_append(&b, top->text, cut);
            buf_puts(&b, ELLIPSIS);
            json_array_append_new(idx, json_integer((json_int_t)top->index));
        }
    }
    json_t *o = json_object();
    json_object_set_new(o, "summary", json_stringn(b.ptr ? b.ptr : "", b.len));
    json_object_set_new(o, "sentences", idx);
    buf_done(&b);
    for (size_t i = 0; i < n; i++) {
        free(ss[i].text);
        free(ss[i].words);
    }
    free(ss);
    free(order);
    free(keep);
    if (!json_object_get(o, "summary")) {
        json_decref(o);
        return err_set(err, ERR_INTERNAL, "summary is not valid UTF-8");
    }
    *ret = o;
    return 0;
}
