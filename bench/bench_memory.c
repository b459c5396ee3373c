/* bench_memory: the vector index's search latency, memory and int8 recall.
 *
 * Random unit vectors of dimension 384 (the local embedder's) at 10k, 100k
 * and 1M rows, grown in place; at each size, BENCH_QUERIES (default 200)
 * random unit queries, k = 10: exact search and int8 search (rerank 40),
 * latency p50/p99 of one search on one thread, index bytes, and the int8
 * search's recall@10 against the exact one. A size is skipped, and the
 * benchmark stops, when MemAvailable (/proc/meminfo) is less than twice what
 * it needs. BENCH_MAX_ROWS (default 1000000) lowers the largest size. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench_util.h"
#include "memory/index.h"

#define DIM    384
#define K      10
#define RERANK 40

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void rand_unit(uint64_t *s, float *v)
{
    double n = 0;
    for (int i = 0; i < DIM; i += 2) { /* Box-Muller: two Gaussians per draw */
        double u1 = ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
        double u2 = ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
        double r = sqrt(-2 * log(u1));
        v[i] = (float)(r * cos(6.283185307179586 * u2));
        v[i + 1] = (float)(r * sin(6.283185307179586 * u2));
        n += (double)v[i] * v[i] + (double)v[i + 1] * v[i + 1];
    }
    n = sqrt(n);
    for (int i = 0; i < DIM; i++)
        v[i] = (float)(v[i] / n);
}

static size_t mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0;
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %zu kB", &kb) == 1)
            break;
    fclose(f);
    return kb * 1024;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *ms, int n, double p)
{
    qsort(ms, (size_t)n, sizeof *ms, cmp_double);
    int i = (int)ceil(p * n) - 1;
    return ms[i < 0 ? 0 : i];
}

int main(void)
{
    const char *env = getenv("BENCH_QUERIES");
    int nq = env ? atoi(env) : 200;
    if (nq < 10)
        nq = 10;
    env = getenv("BENCH_MAX_ROWS");
    size_t max_rows = env ? (size_t)atol(env) : 1000000;
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    printf("machine: %s, %ld cores, %.1f GiB available\n", cpu, sysconf(_SC_NPROCESSORS_ONLN),
           (double)mem_available() / (1 << 30));
    printf("vectors: random unit, dim %d; k %d; int8 rerank %d; %d queries per size; one "
           "thread\n", DIM, K, RERANK, nq);

    static const size_t sizes[] = { 10000, 100000, 1000000 };
    MemIndex *ix = mem_index_new(DIM);
    mem_index_quantize(ix); /* kept up to date by every add */
    uint64_t s = 42, sq = 4242;
    float v[DIM];
    float *qs = malloc((size_t)nq * DIM * sizeof *qs);
    for (int i = 0; i < nq; i++)
        rand_unit(&sq, qs + (size_t)i * DIM);
    double *ms_ex = malloc((size_t)nq * sizeof(double));
    double *ms_q8 = malloc((size_t)nq * sizeof(double));
    double *ms_xb = malloc((size_t)nq * sizeof(double));
    Err err = { 0 };
    int rc = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        size_t n = sizes[si];
        if (n > max_rows)
            break;
        /* floats + int8 + ids + map, and the doubling realloc's old copy */
        size_t need = n * (DIM * 4 + DIM + 4 + 8 + 24) * 2;
        if (mem_available() < need) {
            printf("%zu rows: skipped, it needs about %.1f GiB and %.1f GiB are available\n", n,
                   (double)need / (1 << 30), (double)mem_available() / (1 << 30));
            break;
        }
        double t0 = now_s();
        for (size_t i = mem_index_size(ix); i < n; i++) {
            rand_unit(&s, v);
            if (mem_index_add(ix, (int64_t)i, v, &err) < 0) {
                fprintf(stderr, "bench_memory: %s\n", err.msg);
                rc = 1;
                goto out;
            }
        }
        double t_add = now_s() - t0;
        size_t found = 0, differ = 0;
        for (int qi = 0; qi < nq; qi++) {
            const float *q = qs + (size_t)qi * DIM;
            MemHit ex[K], q8[K], xb[K];
            int a, b, c;
            double t = now_s();
            mem_index_search_f32(ix, q, K, NULL, 0, ex, &a);
            ms_ex[qi] = (now_s() - t) * 1e3;
            t = now_s();
            mem_index_search(ix, q, K, xb, &c); /* exact, over the int8 copy with its bound */
            ms_xb[qi] = (now_s() - t) * 1e3;
            differ += c != a;
            for (int i = 0; i < a && i < c; i++)
                differ += xb[i].id != ex[i].id || xb[i].score != ex[i].score;
            t = now_s();
            mem_index_search_q8(ix, q, K, RERANK, q8, &b);
            ms_q8[qi] = (now_s() - t) * 1e3;
            for (int i = 0; i < a; i++)
                for (int j = 0; j < b; j++)
                    found += ex[i].id == q8[j].id;
        }
        size_t bytes = mem_index_bytes(ix);
        printf("%7zu rows: index %.1f MiB (%.0f B/row: float32 %d + int8 %d + scale, id, map); "
               "added (generating and quantising) in %.2f s\n",
               n, (double)bytes / (1 << 20), (double)bytes / (double)n, DIM * 4, DIM, t_add);
        printf("%7zu rows: exact (float32 scan)  p50 %8.3f ms  p99 %8.3f ms  (%.1f GB/s of float32 rows at "
               "p50)\n", n, pct(ms_ex, nq, 0.50), pct(ms_ex, nq, 0.99),
               (double)n * DIM * 4 / (pct(ms_ex, nq, 0.50) * 1e6));
        printf("%7zu rows: exact via int8 bound  p50 %8.3f ms  p99 %8.3f ms  (hits differing "
               "from the float scan: %zu)\n", n, pct(ms_xb, nq, 0.50), pct(ms_xb, nq, 0.99), differ);
        printf("%7zu rows: int8   p50 %8.3f ms  p99 %8.3f ms  recall@%d vs exact %.4f\n", n,
               pct(ms_q8, nq, 0.50), pct(ms_q8, nq, 0.99), K, (double)found / ((double)nq * K));
        fflush(stdout);
    }
out:
    free(ms_ex);
    free(ms_q8);
    free(ms_xb);
    free(qs);
    mem_index_free(ix);
    return rc;
}
