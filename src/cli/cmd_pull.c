/* bureau connectors, connectors replay, import mbox, import contacts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/clock.h"
#include "core/json.h"
#include "pull/pull.h"

static const char *text_or(const json_t *o, const char *k, const char *dflt)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : dflt;
}

int cmd_connectors(Cli *cli)
{
    int rc = cli_load_config(cli);
    Store *rd = NULL;
    if (rc || (rc = cli_open_reader(cli, &rd)))
        return rc;
    json_t *list = NULL;
    Err err = { 0 };
    rc = pull_status(rd, &cli->config, core_time_now_ms(), &list, &err);
    store_close(rd);
    if (rc < 0)
        return cli_fail_err(cli, &err);
    size_t i;
    json_t *c;
    if (!cli->json && json_array_size(list))
        printf("%-20s %-5s %-24s %-8s %-8s %s\n", "NAME", "KIND", "LAST_SUCCESS", "TODAY", "EVENTS",
               "CURSOR / LAST_ERROR");
    json_array_foreach(list, i, c) {
        if (cli->json) {
            cli_print_json(json_incref(c));
            continue;
        }
        char *cur = json_dumps(json_object_get(c, "cursor"), JSON_COMPACT | JSON_SORT_KEYS);
        printf("%-20s %-5s %-24s %-8lld %-8lld %s\n", text_or(c, "name", ""),
               text_or(c, "kind", ""), text_or(c, "last_success", "never"),
               (long long)json_integer_value(json_object_get(c, "events_today")),
               (long long)json_integer_value(json_object_get(c, "events")), cur ? cur : "{}");
        if (json_is_true(json_object_get(c, "failing")))
            printf("    failing (%lld in a row) since %s: %s\n",
                   (long long)json_integer_value(json_object_get(c, "failures")),
                   text_or(c, "last_error_at", "?"), text_or(c, "last_error", "?"));
        free(cur);
    }
    if (!cli->json && json_array_size(list) == 0)
        printf("no pull connectors in bureau.yaml\n");
    json_decref(list);
    return EXIT_OK;
}

int cmd_connectors_replay(Cli *cli)
{
    const char *from = cli_opt(cli, "from");
    if (!from)
        return cli_usage_error(cli, "--from CURSOR is required (0 for the beginning, or a "
                                    "cursor as `bureau connectors --json` shows it)");
    json_t *cur = NULL;
    Err err = { 0 };
    if (!strcmp(from, "0")) {
        cur = json_object();
    } else if (core_json_parse(from, strlen(from), &cur, &err) < 0) {
        return cli_usage_error(cli, "--from: not a cursor: %s", err.msg);
    }
    Ledger *l = NULL;
    int rc = cli_load_config(cli);
    if (rc || (rc = cli_open_ledger(cli, false, &l))) {
        json_decref(cur);
        return rc;
    }
    rc = pull_replay(l, &cli->config, cli->pos[0], cur, &err) < 0 ? cli_fail_err(cli, &err)
                                                                  : EXIT_OK;
    ledger_close(l);
    if (rc == EXIT_OK) {
        if (cli->json)
            cli_print_json(json_pack("{s:s, s:O}", "connector", cli->pos[0], "cursor", cur));
        else
            printf("%s: the next poll reads again from %s (duplicates are dropped)\n",
                   cli->pos[0], from);
    }
    json_decref(cur);
    return rc;
}

/* ---- imports ---- */

typedef struct Progress {
    bool tty;
    int64_t start_ns;
    const char *what;
    bool shown;
} Progress;

static void on_progress(void *ctx, const PullImportStats *st, int64_t total)
{
    Progress *p = ctx;
    if (!p->tty)
        return;
    double secs = (double)(core_time_mono_ns() - p->start_ns) / 1e9;
    double rate = secs > 0 ? (double)st->seen / secs : 0;
    char eta[32] = "";
    if (total > 0 && st->bytes > 0 && st->bytes < total && secs > 0) {
        double left = secs * (double)(total - st->bytes) / (double)st->bytes;
        snprintf(eta, sizeof eta, ", ETA %.0f s", left);
    }
    fprintf(stderr, "\r%lld %s, %.0f/s, %lld%%%s   ", (long long)st->seen, p->what, rate,
            total > 0 ? (long long)(st->bytes * 100 / total) : 0LL, eta);
    p->shown = true;
}

static void on_bad(void *ctx, int64_t line, const char *why)
{
    Progress *p = ctx;
    if (p->shown) {
        fputc('\n', stderr);
        p->shown = false;
    }
    fprintf(stderr, "line %lld: %s\n", (long long)line, why);
}

static int import_common(Cli *cli, bool mbox)
{
    const char *path = cli->pos[0];
    FILE *in = fopen(path, "rb");
    if (!in)
        return cli_fail(cli, "%s: %s", path, strerror(errno));
    struct stat sb;
    int64_t total = fstat(fileno(in), &sb) == 0 && S_ISREG(sb.st_mode) ? (int64_t)sb.st_size : 0;
    Ledger *l = NULL;
    int rc = cli_load_config(cli);
    if (rc || (rc = cli_open_ledger(cli, false, &l))) {
        fclose(in);
        return rc;
    }
    const char *source = cli_opt(cli, "source") ? cli_opt(cli, "source") : "import";
    long long max = 25LL << 20;
    if (cli_opt(cli, "max-message-bytes") &&
        cli_int("max-message-bytes", cli_opt(cli, "max-message-bytes"), 4096, 256LL << 20, &max)) {
        fclose(in);
        ledger_close(l);
        return EXIT_USAGE;
    }
    Progress p = { .tty = isatty(2) && !cli->json, .start_ns = core_time_mono_ns(),
                   .what = mbox ? "messages" : "rows" };
    PullImportStats st;
    Err err = { 0 };
    rc = mbox ? pull_import_mbox(l, cli->data_dir, in, total, source, (size_t)max, on_progress, &p,
                                 &st, &err)
              : pull_import_contacts(l, in, total, source, on_progress, on_bad, &p, &st, &err);
    fclose(in);
    ledger_close(l);
    if (p.shown)
        fputc('\n', stderr);
    double secs = (double)(core_time_mono_ns() - p.start_ns) / 1e9;
    if (rc < 0) {
        fprintf(stderr, "bureau %s: %s (%lld added before the error)\n", cli->command, err.msg,
                (long long)st.added);
        return EXIT_FAIL;
    }
    if (cli->json) {
        json_t *o = json_pack("{s:I, s:I, s:I, s:f}", mbox ? "messages" : "rows",
                              (json_int_t)st.seen, "added", (json_int_t)st.added, "duplicates",
                              (json_int_t)st.duplicates, "seconds", secs);
        if (mbox)
            json_object_set_new(o, "warnings", json_integer(st.warnings));
        else
            json_object_set_new(o, "bad", json_integer(st.bad));
        cli_print_json(o);
    } else if (mbox) {
        printf("%lld messages: %lld added, %lld already there, %lld with parse warnings "
               "(%.1f s)\n",
               (long long)st.seen, (long long)st.added, (long long)st.duplicates,
               (long long)st.warnings, secs);
    } else {
        printf("%lld rows: %lld added, %lld already there, %lld refused (%.1f s)\n",
               (long long)st.seen, (long long)st.added, (long long)st.duplicates,
               (long long)st.bad, secs);
    }
    return st.bad ? EXIT_FAIL : EXIT_OK;
}

int cmd_import_mbox(Cli *cli) { return import_common(cli, true); }
int cmd_import_contacts(Cli *cli) { return import_common(cli, false); }
