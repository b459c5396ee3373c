/* Reciprocal rank fusion. Every (id, list, rank) entry is gathered and sorted
 * by id, so that each id's contributions are adjacent; the fused scores are
 * then sorted. Time O(N log N) and memory O(N) for N entries in all, which
 * MEM_FUSE_MAX_LISTS * MEM_FUSE_MAX_LIST bounds. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "memory/fusion.h"

typedef struct Entry {
    int64_t id;
    int list, rank;
} Entry;

static int cmp_entry(const void *a, const void *b)
{
    const Entry *x = a, *y = b;
    if (x->id != y->id)
        return (x->id > y->id) - (x->id < y->id);
    if (x->list != y->list)
        return x->list - y->list;
    return x->rank - y->rank;
}

static int cmp_fused(const void *a, const void *b)
{
    const MemFused *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

int mem_fuse_rrf(const MemFuseList *lists, int n_lists, const MemFuseOptions *opt, int n,
                 MemFused *out, int *n_out, Err *err)
{
    if (n_lists < 0 || n_lists > MEM_FUSE_MAX_LISTS)
        return err_set(err, ERR_INVAL, "%d lists to fuse: at most %d", n_lists,
                       MEM_FUSE_MAX_LISTS);
    if (n < 0)
        return err_set(err, ERR_INVAL, "%d results asked for", n);
    double k = opt && opt->k > 0 ? opt->k : MEM_FUSE_K;
    double half_life = opt ? opt->half_life_s : 0;
    if (half_life > 0 && !opt->age_s)
        return err_set(err, ERR_INVAL, "a recency half-life needs the items' ages");
    size_t total = 0;
    for (int l = 0; l < n_lists; l++) {
        if (lists[l].n < 0 || lists[l].n > MEM_FUSE_MAX_LIST)
            return err_set(err, ERR_INVAL, "list %d holds %d ids: at most %d", l, lists[l].n,
                           MEM_FUSE_MAX_LIST);
        if (!isfinite(lists[l].weight) || lists[l].weight < 0)
            return err_set(err, ERR_INVAL, "list %d: weight %g", l, lists[l].weight);
        total += (size_t)lists[l].n;
    }
    Entry *e = xmalloc((total ? total : 1) * sizeof *e);
    size_t m = 0;
    for (int l = 0; l < n_lists; l++)
        for (int i = 0; i < lists[l].n; i++)
            e[m++] = (Entry){ .id = lists[l].ids[i], .list = l, .rank = i + 1 };
    qsort(e, m, sizeof *e, cmp_entry);

    MemFused *f = xmalloc((m ? m : 1) * sizeof *f);
    size_t nf = 0;
    for (size_t i = 0; i < m;) {
        MemFused *x = &f[nf++];
        memset(x, 0, sizeof *x);
        x->id = e[i].id;
        double s = 0;
        for (; i < m && e[i].id == x->id; i++) {
            if (x->rank[e[i].list])
                continue; /* a repeat in the same list: its best rank counted */
            x->rank[e[i].list] = e[i].rank;
            double w = lists[e[i].list].weight > 0 ? lists[e[i].list].weight : 1.0;
            s += w / (k + e[i].rank);
        }
        if (half_life > 0) {
            double age = opt->age_s(opt->ctx, x->id);
            s *= exp2(-(age > 0 ? age : 0) / half_life);
        }
        x->score = s;
    }
    qsort(f, nf, sizeof *f, cmp_fused);
    int w = (size_t)n < nf ? n : (int)nf;
    memcpy(out, f, (size_t)w * sizeof *out);
    *n_out = w;
    free(f);
    free(e);
    return 0;
}
