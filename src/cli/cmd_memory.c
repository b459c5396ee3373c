/* bureau memory contacts | profile | merge | unmerge: identity from the
 * command line (memory/identity.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/clock.h"
#include "memory/consolidate.h"
#include "memory/context.h"
#include "memory/identity.h"
#include "memory/search.h"
#include "memory/vectors.h"

static const char *text_of(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "-";
}

int cmd_memory_contacts(Cli *cli)
{
    long long limit = 100;
    const char *lim = cli_opt(cli, "limit");
    if (lim && cli_int("limit", lim, 1, 100000, &limit))
        return EXIT_USAGE;
    int rc = cli_load_config(cli);
    Store *rd = NULL;
    if (rc || (rc = cli_open_reader(cli, &rd)))
        return rc;
    Err err = { 0 };
    json_t *list = NULL;
    rc = memory_contacts_list(rd, cli_opt(cli, "query"), limit, &list, &err) < 0
             ? cli_fail_err(cli, &err)
             : EXIT_OK;
    store_close(rd);
    if (rc != EXIT_OK)
        return rc;
    size_t i;
    json_t *c;
    if (!cli->json)
        printf("%-26s %-24s %-32s %-20s %s\n", "ID", "NAME", "EMAIL", "ORG", "EVENTS");
    json_array_foreach(list, i, c) {
        if (cli->json)
            cli_print_json(json_incref(c));
        else
            printf("%-26s %-24.24s %-32.32s %-20.20s %lld\n", text_of(c, "id"), text_of(c, "name"),
                   text_of(c, "email"), text_of(c, "org"),
                   (long long)json_integer_value(json_object_get(c, "events")));
    }
    json_decref(list);
    return EXIT_OK;
}

int cmd_memory_profile(Cli *cli)
{
    int rc = cli_load_config(cli);
    Store *rd = NULL;
    if (rc || (rc = cli_open_reader(cli, &rd)))
        return rc;
    Err err = { 0 };
    char id[MEMORY_CONTACT_ID_LEN + 1];
    json_t *c = NULL;
    rc = memory_contact_find(rd, cli->pos[0], id, &err) < 0 ||
                 memory_contact_get(rd, id, &c, &err) < 0
             ? cli_fail_err(cli, &err)
             : EXIT_OK;
    store_close(rd);
    if (rc != EXIT_OK)
        return rc;
    if (cli->json) {
        cli_print_json(c);
        return EXIT_OK;
    }
    const json_t *org = json_object_get(c, "org");
    printf("contact:  %s\nname:     %s\nemail:    %s\nphone:    %s\norg:      %s%s%s%s\n"
           "events:   %lld (seq %lld .. %lld)\n",
           text_of(c, "id"), text_of(c, "name"), text_of(c, "email"), text_of(c, "phone"),
           json_is_object(org) ? text_of(org, "domain") : "-",
           json_is_string(json_object_get(org, "name")) ? " (" : "",
           json_is_string(json_object_get(org, "name")) ? text_of(org, "name") : "",
           json_is_string(json_object_get(org, "name")) ? ")" : "",
           (long long)json_integer_value(json_object_get(c, "events")),
           (long long)json_integer_value(json_object_get(c, "first_seq")),
           (long long)json_integer_value(json_object_get(c, "last_seq")));
    printf("identities:\n");
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(c, "identities"), i, x)
        printf("  %-8s %s (seq %lld)\n", text_of(x, "kind"), text_of(x, "value"),
               (long long)json_integer_value(json_object_get(x, "seq")));
    if (json_array_size(json_object_get(c, "merged"))) {
        printf("merged in:");
        json_array_foreach(json_object_get(c, "merged"), i, x)
            printf(" %s", json_string_value(x));
        printf("\n");
    }
    json_decref(c);
    return EXIT_OK;
}

/* Resolves two names of contacts (email, phone, payment id or contact id). */
static int merge_or_unmerge(Cli *cli, bool merge)
{
    Ledger *l = NULL;
    Store *rd = NULL;
    int rc;
    if ((rc = cli_open_both(cli, &l, &rd)))
        return rc;
    Err err = { 0 };
    char a[MEMORY_CONTACT_ID_LEN + 1], b[MEMORY_CONTACT_ID_LEN + 1];
    if (merge) {
        rc = memory_contact_find(rd, cli->pos[0], a, &err);
        if (rc == 0)
            rc = memory_contact_find(rd, cli->pos[1], b, &err);
        if (rc == 0)
            rc = memory_merge(l, rd, a, b, "cli", &err);
    } else {
        snprintf(a, sizeof a, "%.26s", cli->pos[0]);
        rc = memory_unmerge(l, rd, a, "cli", &err);
    }
    store_close(rd);
    ledger_close(l);
    if (rc < 0)
        return cli_fail_err(cli, &err);
    if (cli->json)
        cli_print_json(merge ? json_pack("{s:s, s:s}", "into", a, "from", b)
                             : json_pack("{s:s}", "unmerged", a));
    else if (merge)
        printf("%s merged into %s (recorded as an event; bureau memory unmerge %s undoes it)\n", b,
               a, b);
    else
        printf("%s stands again with its own identities\n", a);
    return EXIT_OK;
}

int cmd_memory_merge(Cli *cli) { return merge_or_unmerge(cli, true); }
int cmd_memory_unmerge(Cli *cli) { return merge_or_unmerge(cli, false); }

int cmd_memory_facts(Cli *cli)
{
    int rc = cli_load_config(cli);
    Store *rd = NULL;
    if (rc || (rc = cli_open_reader(cli, &rd)))
        return rc;
    Err err = { 0 };
    char id[MEMORY_CONTACT_ID_LEN + 1];
    json_t *facts = NULL;
    rc = memory_contact_find(rd, cli->pos[0], id, &err) < 0 ||
                 memory_facts(rd, id, cli_flag(cli, "history"), &facts, &err) < 0
             ? cli_fail_err(cli, &err)
             : EXIT_OK;
    store_close(rd);
    if (rc != EXIT_OK)
        return rc;
    size_t i;
    json_t *f;
    if (!cli->json)
        printf("%-16s %-40s %5s %-12s %7s  %s\n", "KEY", "VALUE", "CONF", "SOURCE", "SEQ", "");
    json_array_foreach(facts, i, f) {
        if (cli->json) {
            cli_print_json(json_incref(f));
            continue;
        }
        char *v = json_dumps(json_object_get(f, "value"), JSON_ENCODE_ANY | JSON_COMPACT);
        printf("%-16s %-40.40s %5.2f %-12s %7lld  %s\n", text_of(f, "key"), v ? v : "",
               json_number_value(json_object_get(f, "confidence")), text_of(f, "source"),
               (long long)json_integer_value(json_object_get(f, "seq")),
               !json_is_true(json_object_get(f, "current")) ? "(superseded)"
               : json_is_true(json_object_get(f, "conflict")) ? "(conflict)"
                                                               : "");
        free(v);
    }
    json_decref(facts);
    return EXIT_OK;
}

int cmd_memory_fact(Cli *cli)
{
    Ledger *l = NULL;
    Store *rd = NULL;
    int rc;
    if ((rc = cli_open_both(cli, &l, &rd)))
        return rc;
    Err err = { 0 };
    char id[MEMORY_CONTACT_ID_LEN + 1];
    /* VALUE is JSON when it parses as JSON, else a string */
    json_t *value = json_loads(cli->pos[2], JSON_DECODE_ANY, NULL);
    if (!value)
        value = json_string(cli->pos[2]);
    rc = memory_contact_find(rd, cli->pos[0], id, &err);
    if (rc == 0)
        rc = memory_fact_record(l, rd, id, cli->pos[1], value, 1.0, "operator", &err);
    json_decref(value);
    store_close(rd);
    ledger_close(l);
    if (rc < 0)
        return cli_fail_err(cli, &err);
    if (cli->json)
        cli_print_json(json_pack("{s:s, s:s}", "contact", id, "key", cli->pos[1]));
    else
        printf("%s: %s recorded\n", id, cli->pos[1]);
    return EXIT_OK;
}

int cmd_memory_search(Cli *cli)
{
    long long k = MEMORY_SEARCH_K_DEFAULT;
    const char *ks = cli_opt(cli, "k");
    if (ks && cli_int("k", ks, 1, MEMORY_SEARCH_K_MAX, &k))
        return EXIT_USAGE;
    /* --kind email,note */
    char kbuf[MEMORY_SEARCH_KINDS_BUF];
    const char *kinds[MEMORY_SEARCH_KINDS_MAX + 1] = { NULL };
    const char *kind = cli_opt(cli, "kind");
    Err kerr = { 0 };
    if (kind && memory_search_kinds(kind, kbuf, kinds, &kerr) < 0) {
        fprintf(stderr, "bureau: --%s\n", kerr.msg);
        return EXIT_USAGE;
    }
    const char *mode = cli_opt(cli, "mode");
    int m = mode ? memory_search_mode(mode) : MEMORY_SEARCH_HYBRID;
    if (m < 0) {
        fprintf(stderr, "bureau: --mode: '%s': hybrid, bm25 or vector\n", mode);
        return EXIT_USAGE;
    }
    int rc = cli_load_config(cli);
    Store *rd = NULL;
    if (rc || (rc = cli_open_reader(cli, &rd)))
        return rc;
    Err err = { 0 };
    json_t *hits = NULL;
    /* a remote embed route: the query's vector costs a call, recorded */
    char model[MEMORY_VECTOR_MODEL_MAX + 1];
    Ledger *l = NULL;
    ModelRouter *router = NULL;
    if (memory_embed_remote(&cli->config, model) &&
        (cli_open_ledger(cli, false, &l) || model_router_new(l, &cli->config, &router, &err) < 0)) {
        store_close(rd);
        ledger_close(l);
        return err.code ? cli_fail_err(cli, &err) : EXIT_FAIL;
    }
    MemorySearch q = { .query = cli->pos[0],
                       .router = router,
                       .subject = cli_opt(cli, "subject"),
                       .kinds = kind ? kinds : NULL,
                       .since = cli_opt(cli, "since"),
                       .k = (int)k,
                       .mode = m,
                       .config = &cli->config };
    rc = memory_search(rd, &q, &hits, &err) < 0 ? cli_fail_err(cli, &err) : EXIT_OK;
    if (l) {
        Err serr = { 0 };
        ledger_sync(l, &serr);
    }
    model_router_free(router);
    ledger_close(l);
    store_close(rd);
    if (rc != EXIT_OK)
        return rc;
    size_t i;
    json_t *h;
    if (!cli->json)
        printf("%-7s %-6s %-8s %-5s %-26s %-10s %s\n", "SEQ", "SCORE", "RANKS", "KIND", "SUBJECT",
               "AT", "SNIPPET");
    json_array_foreach(hits, i, h) {
        if (cli->json) {
            cli_print_json(json_incref(h));
            continue;
        }
        const json_t *r = json_object_get(h, "ranks");
        char ranks[32];
        snprintf(ranks, sizeof ranks, "%lld/%lld",
                 (long long)json_integer_value(json_object_get(r, "bm25")),
                 (long long)json_integer_value(json_object_get(r, "vector")));
        char snip[161];
        snprintf(snip, sizeof snip, "%s", text_of(h, "snippet"));
        for (char *p = snip; *p; p++)
            if (*p == '\n' || *p == '\r' || *p == '\t')
                *p = ' ';
        printf("%-7lld %-6.4f %-8s %-5s %-26s %-10.10s %s\n",
               (long long)json_integer_value(json_object_get(h, "seq")),
               json_number_value(json_object_get(h, "score")), ranks, text_of(h, "kind"),
               text_of(h, "subject"), text_of(h, "at"), snip);
    }
    json_decref(hits);
    return EXIT_OK;
}

int cmd_memory_export(Cli *cli)
{
    int rc = cli_load_config(cli);
    Store *rd = NULL;
    if (rc || (rc = cli_open_reader(cli, &rd)))
        return rc;
    Err err = { 0 };
    char id[MEMORY_CONTACT_ID_LEN + 1];
    json_t *all = NULL;
    rc = memory_contact_find(rd, cli->pos[0], id, &err) < 0 || memory_export(rd, id, &all, &err) < 0
             ? cli_fail_err(cli, &err)
             : EXIT_OK;
    store_close(rd);
    if (rc != EXIT_OK)
        return rc;
    const char *out = cli_opt(cli, "out");
    char *text = json_dumps(all, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(all);
    if (!out) {
        printf("%s\n", text);
    } else {
        FILE *f = fopen(out, "wx");
        if (!f || fputs(text, f) < 0 || fputc('\n', f) < 0) {
            if (f)
                fclose(f);
            free(text);
            return cli_fail(cli, "--out: %s cannot be written (it must not exist yet)", out);
        }
        fclose(f);
        fprintf(stderr, "%s: everything held about %s\n", out, id);
    }
    free(text);
    return EXIT_OK;
}

int cmd_memory_forget(Cli *cli)
{
    Ledger *l = NULL;
    Store *rd = NULL;
    int rc;
    if ((rc = cli_open_both(cli, &l, &rd)))
        return rc;
    Err err = { 0 };
    char id[MEMORY_CONTACT_ID_LEN + 1];
    json_t *rep = NULL;
    bool dry = cli_flag(cli, "dry-run");
    rc = memory_contact_find(rd, cli->pos[0], id, &err);
    if (rc == 0)
        rc = memory_forget(l, rd, cli->data_dir, id, dry, &rep, &err);
    store_close(rd);
    ledger_close(l);
    if (rc < 0)
        return cli_fail_err(cli, &err);
    if (cli->json) {
        cli_print_json(rep);
        return EXIT_OK;
    }
    size_t n = json_array_size(json_object_get(rep, "events"));
    if (dry)
        printf("would forget %s: %zu events redacted, %zu files deleted\n", id, n,
               json_array_size(json_object_get(rep, "files")));
    else
        printf("forgot %s: %zu events redacted (ledger.redacted at seq %lld), %lld files deleted; "
               "the chain still verifies\n",
               id, n, (long long)json_integer_value(json_object_get(rep, "redaction_seq")),
               (long long)json_integer_value(json_object_get(rep, "files_removed")));
    json_decref(rep);
    return EXIT_OK;
}

int cmd_memory_context(Cli *cli)
{
    long long budget = 0;
    const char *b = cli_opt(cli, "budget");
    if (b && cli_int("budget", b, 1, MEMORY_CONTEXT_BUDGET_MAX, &budget))
        return EXIT_USAGE;
    int rc = cli_load_config(cli);
    Store *rd = NULL;
    if (rc || (rc = cli_open_reader(cli, &rd)))
        return rc;
    Err err = { 0 };
    json_t *pack = NULL;
    rc = memory_context(rd, &cli->config, cli->pos[0], cli_opt(cli, "query"), (int)budget, &pack, &err) < 0
             ? cli_fail_err(cli, &err)
             : EXIT_OK;
    store_close(rd);
    if (rc != EXIT_OK)
        return rc;
    if (cli->json) {
        cli_print_json(pack);
        return EXIT_OK;
    }
    printf("context for %s: %lld of %lld tokens\n", json_string_value(json_object_get(pack, "contact")),
           (long long)json_integer_value(json_object_get(pack, "used_tokens")),
           (long long)json_integer_value(json_object_get(pack, "budget_tokens")));
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(pack, "parts"), i, p)
        printf("  [%s, seq %lld] %s\n", json_string_value(json_object_get(p, "kind")),
               (long long)json_integer_value(json_object_get(p, "seq")),
               json_string_value(json_object_get(p, "text")));
    json_decref(pack);
    return EXIT_OK;
}

/* The ledger, a reader and the model router, for a command that calls
 * models (record: its model.called go to the ledger). */
typedef struct WithRouter {
    Ledger *l;
    Store *rd;
    ModelRouter *router;
} WithRouter;

static int router_open(Cli *cli, bool record, WithRouter *w, Err *err)
{
    memset(w, 0, sizeof *w);
    int rc = cli_open_both(cli, &w->l, &w->rd);
    if (rc)
        return rc;
    if (model_router_new(record ? w->l : NULL, &cli->config, &w->router, err) < 0) {
        store_close(w->rd);
        ledger_close(w->l);
        return cli_fail_err(cli, err);
    }
    return 0;
}

static void router_close(WithRouter *w)
{
    Err serr = { 0 };
    ledger_sync(w->l, &serr); /* model.called is durable before we report */
    model_router_free(w->router);
    store_close(w->rd);
    ledger_close(w->l);
}

int cmd_memory_consolidate(Cli *cli)
{
    WithRouter w;
    Err err = { 0 };
    bool dry = cli_flag(cli, "dry-run");
    int rc = router_open(cli, !dry, &w, &err);
    if (rc)
        return rc;
    json_t *rep = NULL;
    rc = memory_consolidate(w.l, w.rd, w.router, &cli->config, core_time_now_ms(), dry, &rep, &err);
    router_close(&w);
    if (rc < 0)
        return cli_fail_err(cli, &err);
    int failed = (int)json_integer_value(json_object_get(rep, "failed"));
    if (cli->json) {
        cli_print_json(rep);
        return failed ? EXIT_FAIL : EXIT_OK;
    }
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(rep, "groups"), i, g) {
        const json_t *subject = json_object_get(g, "subject");
        printf("%-26s %s %4lld items", json_is_string(subject) ? json_string_value(subject) : "(no one)",
               text_of(g, "period"), (long long)json_integer_value(json_object_get(g, "items")));
        if (json_object_get(g, "seq"))
            printf(" -> summary v%lld (seq %lld)\n",
                   (long long)json_integer_value(json_object_get(g, "version")),
                   (long long)json_integer_value(json_object_get(g, "seq")));
        else if (json_object_get(g, "error"))
            printf(" -> failed: %s\n", text_of(g, "error"));
        else
            printf("\n");
    }
    printf("%s%lld expired items, %lld summaries made, %d failed\n", dry ? "dry run: " : "",
           (long long)json_integer_value(json_object_get(rep, "items")),
           (long long)json_integer_value(json_object_get(rep, "summaries")), failed);
    json_decref(rep);
    return failed ? EXIT_FAIL : EXIT_OK;
}

static void reembed_progress(void *ctx, int64_t done, int64_t total)
{
    int64_t *t0 = ctx;
    double s = (double)(core_time_now_ms() - *t0) / 1000.0;
    double rate = s > 0 ? (double)done / s : 0;
    fprintf(stderr, "\r%lld/%lld embedded, %.1f/s, about %.0f s left   ", (long long)done,
            (long long)total, rate, rate > 0 ? (double)(total - done) / rate : 0.0);
}

int cmd_memory_reembed(Cli *cli)
{
    WithRouter w;
    Err err = { 0 };
    int rc = router_open(cli, true, &w, &err);
    if (rc)
        return rc;
    json_t *rep = NULL;
    int64_t t0 = core_time_now_ms();
    rc = memory_reembed(w.rd, w.router, &cli->config, isatty(2) ? reembed_progress : NULL, &t0,
                        &rep, &err);
    if (isatty(2))
        fputc('\n', stderr);
    router_close(&w);
    if (rc < 0)
        return cli_fail_err(cli, &err);
    bool failed = json_is_true(json_object_get(rep, "failed"));
    if (cli->json) {
        cli_print_json(rep); /* takes it */
        rep = NULL;
    } else {
        printf("%s: %lld items embedded, %lld vectors of other models dropped\n",
               text_of(rep, "model"), (long long)json_integer_value(json_object_get(rep, "embedded")),
               (long long)json_integer_value(json_object_get(rep, "dropped")));
        if (failed)
            printf("stopped early: %s (run it again; nothing was dropped)\n", text_of(rep, "error"));
    }
    json_decref(rep);
    return failed ? EXIT_FAIL : EXIT_OK;
}
