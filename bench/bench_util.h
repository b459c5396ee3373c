/* Shared by the benchmarks: clocks, cleaning up, and the machine details
 * printed with every result. */
#ifndef BUREAU_BENCH_UTIL_H
#define BUREAU_BENCH_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "core/clock.h"

static inline double now_s(void)
{
    return (double)core_time_mono_ns() / 1e9;
}

/* Process CPU time (user + system, every thread), in seconds. */
static inline double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* CPU time (user + system) of this process's threads named name, in
 * seconds, from /proc (clock ticks: 10 ms steps at 100 Hz); -1 without it. */
static inline double thread_cpu_s(const char *name)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    double total = 0;
    long hz = sysconf(_SC_CLK_TCK);
    struct dirent *de;
    while ((de = readdir(d))) {
        char path[300], buf[1024];
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", de->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        bool match = fgets(buf, sizeof buf, f) && !strncmp(buf, name, strlen(name)) &&
                     (buf[strlen(name)] == '\n' || buf[strlen(name)] == '\0');
        fclose(f);
        if (!match)
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", de->d_name);
        if (!(f = fopen(path, "r")))
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')'); /* after the name: state is field 3 */
        unsigned long long ut = 0, st = 0;
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                        &st) == 2)
            total += (double)(ut + st) / (double)hz;
    }
    closedir(d);
    return total;
}

static inline int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path) < 0 ? -1 : 0;
}

static inline void rm_tree(const char *dir)
{
    if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0)
        fprintf(stderr, "bench: could not remove %s: %s\n", dir, strerror(errno));
}

static void cpu_model(char *out, size_t cap)
{
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10))
            continue;
        const char *v = strchr(line, ':');
        if (!v)
            break;
        v++;
        while (*v == ' ' || *v == '\t')
            v++;
        snprintf(out, cap, "%s", v);
        out[strcspn(out, "\n")] = '\0';
        break;
    }
    fclose(f);
}

static inline const char *fs_name(const char *dir)
{
    struct statfs sf;
    if (statfs(dir, &sf) < 0)
        return "unknown";
    switch ((unsigned long)sf.f_type) {
    case 0xEF53: return "ext4";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x01021994: return "tmpfs";
    case 0x794C7630: return "overlayfs";
    case 0x2FC12FC1: return "zfs";
    default: return "other";
    }
}

#endif
