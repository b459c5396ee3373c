/* bureau events, bureau event show. */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/json.h"

static int print_event(void *ctx, const Event *ev)
{
    const Cli *cli = ctx;
    if (cli->json) {
        cli_print_json(ledger_event_to_json(ev));
        return 0;
    }
    printf("%-8lld %s  %-28s %-20s %s\n", (long long)ev->seq, ev->received_at, ev->type,
           ev->source, ev->subject ? ev->subject : "-");
    return 0;
}

int cmd_events(Cli *cli)
{
    LedgerFilter f = { .type = cli_opt(cli, "type"),
                       .source = cli_opt(cli, "source"),
                       .subject = cli_opt(cli, "subject") };
    long long v;
    const char *since = cli_opt(cli, "since"), *limit = cli_opt(cli, "limit");
    if (since) {
        if (cli_int("since", since, 0, INT64_MAX, &v))
            return EXIT_USAGE;
        f.after_seq = v;
    }
    if (limit) {
        if (cli_int("limit", limit, 1, INT64_MAX, &v))
            return EXIT_USAGE;
        f.limit = v;
    }
    int rc = cli_load_config(cli);
    Store *s = NULL;
    if (rc || (rc = cli_open_reader(cli, &s)))
        return rc;
    Err err = { 0 };
    if (!cli->json)
        printf("%-8s %-24s  %-28s %-20s %s\n", "SEQ", "RECEIVED_AT", "TYPE", "SOURCE", "SUBJECT");
    rc = ledger_read(s, &f, print_event, cli, &err) < 0 ? cli_fail_err(cli, &err) : EXIT_OK;
    fflush(stdout);
    store_close(s);
    return rc;
}

int cmd_event_show(Cli *cli)
{
    const char *arg = cli->pos[0];
    int64_t seq = 0;
    const char *id = NULL;
    if (core_ulid_valid(arg, strlen(arg))) {
        id = arg;
    } else {
        long long v;
        char *end;
        v = strtoll(arg, &end, 10);
        if (!*arg || *end || v < 1)
            return cli_usage_error(cli, "'%s' is neither a seq (1, 2, ...) nor an event id", arg);
        seq = v;
    }
    int rc = cli_load_config(cli);
    Store *s = NULL;
    if (rc || (rc = cli_open_reader(cli, &s)))
        return rc;
    Err err = { 0 };
    Event *ev = NULL;
    if (ledger_event_get(s, seq, id, &ev, &err) < 0) {
        store_close(s);
        return cli_fail_err(cli, &err);
    }
    json_t *j = ledger_event_to_json(ev);
    if (cli->json) {
        cli_print_json(j);
    } else {
        char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", text ? text : "");
        free(text);
        json_decref(j);
    }
    ledger_event_free(ev);
    store_close(s);
    return EXIT_OK;
}
