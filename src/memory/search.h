/* Hybrid search over short-term memory items (docs/memory.md, "Items and
 * search"): BM25 from the FTS5 index and cosine similarity of local hashed
 * embeddings, fused by reciprocal rank fusion with a recency half-life.
 *
 * The vectors are a derived index outside the ledger and outside replay
 * --check: one in-memory MemIndex (and the IDF it was embedded with) per
 * process, for the database last searched (keyed by its path), built
 * lazily from the items table on the first search and extended with the
 * items added since (by id) on every later one. A mutex guards it; searches
 * in one process run one at a time. A table that lost rows (a replay of a
 * new projection version) is read again from scratch. */
#ifndef BUREAU_MEMORY_SEARCH_H
#define BUREAU_MEMORY_SEARCH_H

#include <jansson.h>

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/err.h"
#include "store/store.h"

#define MEMORY_SEARCH_K_DEFAULT 10
#define MEMORY_SEARCH_K_MAX     100
#define MEMORY_SEARCH_DEPTH     50    /* ids taken from each retriever */
#define MEMORY_SEARCH_VEC_WEIGHT 0.5  /* the vector list's RRF weight (BM25: 1) */
#define MEMORY_SEARCH_FEEDBACK  2.0   /* weight of BM25's best hits in the query vector */
#define MEMORY_SEARCH_FEEDBACK_DOCS 3 /* how many of them */
#define MEMORY_SEARCH_SUBJECT_WEIGHT 0.4 /* weight of the query's similarity to the subject */
#define MEMORY_SEARCH_QUERY_MAX 4096
#define MEMORY_SEARCH_RRF_K     20.0
#define MEMORY_SEARCH_HALF_LIFE_DAYS 30

enum { MEMORY_SEARCH_HYBRID, MEMORY_SEARCH_BM25, MEMORY_SEARCH_VECTOR };

typedef struct MemorySearch {
    const char *query;
    const char *subject;            /* a contact id or an email/phone naming one; NULL: anyone */
    const char *const *kinds;       /* NULL-terminated (email, form, note); NULL: all */
    const char *since;              /* RFC 3339; NULL: any time */
    int k;                          /* hits; 0: MEMORY_SEARCH_K_DEFAULT */
    int mode;                       /* MEMORY_SEARCH_HYBRID (0), _BM25 or _VECTOR: one retriever */
    const Config *config;           /* the TTLs (memory.*_ttl_days); NULL: 30 days each */
    int64_t now_ms;                 /* 0: now */
    bool no_cache;                  /* do not answer from the result cache */
    struct ModelRouter *router;     /* a remote embed route's query vectors; NULL: BM25 alone then */
} MemorySearch;

/* A comma-separated list of kinds ("email,note") split into out[0..n),
 * NULL-terminated; buf keeps the words. ERR_INVAL naming `kind` when the
 * list is longer than MEMORY_SEARCH_KINDS_BUF - 1 bytes or holds more than
 * MEMORY_SEARCH_KINDS_MAX kinds (the names are checked by memory_search). */
#define MEMORY_SEARCH_KINDS_MAX 4
#define MEMORY_SEARCH_KINDS_BUF 64
int memory_search_kinds(const char *list, char buf[MEMORY_SEARCH_KINDS_BUF],
                        const char *out[MEMORY_SEARCH_KINDS_MAX + 1], Err *err);

/* The mode named "hybrid", "bm25" or "vector", or -1. */
int memory_search_mode(const char *name);

/* The best k items, best first: [{score, snippet, seq, event_id, subject,
 * kind, at, ranks: {bm25, vector}}] (a rank is null when that retriever did
 * not find the item; subject is the contact that stands, or null).
 * ERR_INVAL for a bad since or k, ERR_NOTFOUND for an unknown subject. */
int memory_search(Store *rd, const MemorySearch *q, json_t **ret, Err *err);

/* The FTS5 expression for a user's query: each word (a run of letters,
 * digits and non-ASCII characters) quoted, ORed; "" when it has no word.
 * The caller frees it. */
char *memory_fts_query(const char *query);

/* The router searches use for a remote embed route's query vectors when
 * MemorySearch.router is NULL (the engine sets its own; NULL clears). */
void memory_search_use_router(struct ModelRouter *r);

/* Drops the process's vector cache (tests). */
void memory_search_reset(void);

#endif
