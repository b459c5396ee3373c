/* bureau ingest: append events from stdin or a file.
 *
 * Single mode reads one JSON event. --bulk reads NDJSON and submits each
 * valid line as soon as it is parsed, so the writer groups them into
 * commits; each result is printed (and flushed) from the writer's callback,
 * that is, only once that event is durable. --strict validates every line
 * first and appends all of them in one transaction, or nothing. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/buf.h"

#define LINE_SLACK (64 * 1024) /* room for the header fields around data */

typedef struct Ingest {
    Cli *cli;
    pthread_mutex_t mu;
    long failed;
    long written;
} Ingest;

typedef struct LineCtx {
    Ingest *in;
    long line;
} LineCtx;

static void print_result(const Cli *cli, long line, const LedgerAppendResult *r)
{
    if (cli->json) {
        json_t *o = json_pack("{s:I, s:s, s:b}", "seq", (json_int_t)r->seq, "id", r->id,
                              "duplicate", r->duplicate);
        if (line > 0)
            json_object_set_new(o, "line", json_integer(line));
        cli_print_json(o);
    } else {
        printf("%s seq %lld (%s)\n", r->duplicate ? "duplicate of" : "appended", (long long)r->seq,
               r->id);
        fflush(stdout);
    }
}

static void line_done(void *ctx, int rc, const Err *err, const LedgerAppendResult *res, size_t n)
{
    LineCtx *lc = ctx;
    Ingest *in = lc->in;
    pthread_mutex_lock(&in->mu);
    if (rc < 0) {
        fprintf(stderr, "bureau ingest: line %ld: not written: %s\n", lc->line, err->msg);
        in->failed++;
    } else {
        for (size_t i = 0; i < n; i++)
            print_result(in->cli, lc->line, &res[i]);
        in->written++;
    }
    pthread_mutex_unlock(&in->mu);
    free(lc);
}

/* Reads one line (without its newline) into b. Returns 1 for a line, 0 at
 * end of input, ERR_TOOBIG for a line over b's maximum (the rest of it is
 * skipped). */
static int read_line(FILE *f, Buf *b)
{
    buf_clear(b);
    int c, rc = 0;
    bool any = false;
    char chunk[4096];
    size_t k = 0;
    while ((c = getc_unlocked(f)) != EOF) {
        any = true;
        if (c == '\n')
            break;
        chunk[k++] = (char)c;
        if (k == sizeof chunk) {
            if (rc == 0 && buf_append(b, chunk, k) < 0)
                rc = ERR_TOOBIG;
            k = 0;
        }
    }
    if (k && rc == 0 && buf_append(b, chunk, k) < 0)
        rc = ERR_TOOBIG;
    if (rc < 0)
        return rc;
    return any ? 1 : 0;
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

static int ingest_single(Cli *cli, FILE *f, Ledger *l, size_t max)
{
    Buf b;
    buf_init(&b, max);
    char chunk[65536];
    size_t k;
    int rc = 0;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (buf_append(&b, chunk, k) < 0) {
            rc = cli_fail(cli, "input: larger than %zu bytes", max);
            break;
        }
    if (rc == 0 && ferror(f))
        rc = cli_fail(cli, "input: read error");
    Event *ev = NULL;
    Err err = { 0 };
    if (rc == 0 && ledger_event_parse(buf_cstr(&b), b.len, ledger_limits(l), &ev, &err) < 0)
        rc = cli_fail_err(cli, &err);
    buf_done(&b);
    if (rc)
        return rc;
    LedgerAppendResult res;
    if (ledger_append(l, &ev, 1, &res, &err) < 0)
        return cli_fail_err(cli, &err);
    print_result(cli, 0, &res);
    return EXIT_OK;
}

static int ingest_bulk(Cli *cli, FILE *f, Ledger *l, size_t max, bool strict)
{
    Ingest in = { .cli = cli, .mu = PTHREAD_MUTEX_INITIALIZER };
    Buf line;
    buf_init(&line, max);
    long lineno = 0, bad = 0;
    Event **all = NULL;
    long *lines = NULL;
    size_t n_all = 0, cap = 0;
    int rc;
    while ((rc = read_line(f, &line)) != 0) {
        lineno++;
        Err err = { 0 };
        Event *ev = NULL;
        if (rc == ERR_TOOBIG) {
            fprintf(stderr, "bureau ingest: line %ld: longer than %zu bytes\n", lineno, max);
            bad++;
            continue;
        }
        if (blank(buf_cstr(&line), line.len))
            continue;
        if (ledger_event_parse(buf_cstr(&line), line.len, ledger_limits(l), &ev, &err) < 0) {
            fprintf(stderr, "bureau ingest: line %ld: %s\n", lineno, err.msg);
            bad++;
            continue;
        }
        if (strict) {
            if (n_all == cap) {
                cap = cap ? cap * 2 : 256;
                all = xrealloc(all, cap * sizeof *all);
                lines = xrealloc(lines, cap * sizeof *lines);
            }
            lines[n_all] = lineno;
            all[n_all++] = ev;
            continue;
        }
        LineCtx *lc = xmalloc(sizeof *lc);
        lc->in = &in;
        lc->line = lineno;
        if (ledger_append_async(l, &ev, 1, line_done, lc, &err) < 0) {
            free(lc);
            fprintf(stderr, "bureau ingest: line %ld: not written: %s\n", lineno, err.msg);
            in.failed++;
        }
    }
    buf_done(&line);
    Err serr = { 0 };
    if (ledger_sync(l, &serr) < 0) { /* every callback has run after this */
        fprintf(stderr, "bureau ingest: %s\n", serr.msg);
        in.failed++;
    }
    if (ferror(f)) {
        fprintf(stderr, "bureau ingest: input: read error after line %ld\n", lineno);
        bad++;
    }
    if (strict) {
        if (bad) {
            for (size_t i = 0; i < n_all; i++)
                ledger_event_free(all[i]);
            fprintf(stderr, "bureau ingest: %ld bad line%s: nothing written (--strict)\n", bad,
                    bad == 1 ? "" : "s");
        } else if (n_all) {
            LedgerAppendResult *res = xcalloc(n_all, sizeof *res);
            Err err = { 0 };
            if (ledger_append(l, all, n_all, res, &err) < 0) {
                fprintf(stderr, "bureau ingest: nothing written: %s\n", err.msg);
                in.failed++;
            } else {
                for (size_t i = 0; i < n_all; i++)
                    print_result(cli, lines[i], &res[i]);
            }
            free(res);
        }
        free(all);
        free(lines);
    }
    return (bad || in.failed) ? EXIT_FAIL : EXIT_OK;
}

int cmd_ingest(Cli *cli)
{
    bool bulk = cli_flag(cli, "bulk"), strict = cli_flag(cli, "strict");
    if (strict && !bulk)
        return cli_usage_error(cli, "--strict goes with --bulk");
    int rc = cli_load_config(cli);
    if (rc)
        return rc;
    const char *path = cli_opt(cli, "file");
    FILE *f = stdin;
    if (path && strcmp(path, "-") && !(f = fopen(path, "rb")))
        return cli_fail(cli, "cannot open %s", path);
    Ledger *l = NULL;
    if ((rc = cli_open_ledger(cli, false, &l)) == 0) {
        size_t max = cli->config.max_data_bytes + LINE_SLACK;
        rc = bulk ? ingest_bulk(cli, f, l, max, strict) : ingest_single(cli, f, l, max);
        /* Closing drains the writer: every submitted event is acknowledged
         * (and printed) before we exit. */
        ledger_close(l);
    }
    if (f != stdin)
        fclose(f);
    return rc;
}
