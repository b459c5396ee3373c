/* bureau goal TEXT, bureau goals: the operator's goals, planned through the
 * plan route into a proposal that waits in the inbox (flow/goals.h). */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/buf.h"
#include "core/json.h"
#include "flow/goals.h"
#include "model/router.h"

static const char *text_of(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void print_json_short(const char *label, const json_t *v, size_t max)
{
    Buf b;
    buf_init(&b, 0);
    core_json_dump(v, &b);
    printf("%s%.*s%s\n", label, (int)(b.len > max ? max : b.len), buf_cstr(&b),
           b.len > max ? "..." : "");
    buf_done(&b);
}

int cmd_goal(Cli *cli)
{
    Ledger *l = NULL;
    Store *rd = NULL;
    int rc;
    if ((rc = cli_open_both(cli, &l, &rd)))
        return rc;
    Err err = { 0 };
    ModelRouter *router = NULL;
    json_t *g = NULL;
    Buf text; /* the words, as one text: `bureau goal reply to Ann` works unquoted */
    buf_init(&text, 0);
    for (int i = 0; i < cli->npos; i++)
        buf_printf(&text, "%s%s", i ? " " : "", cli->pos[i]);
    rc = model_router_new(l, &cli->config, &router, &err);
    if (rc == 0)
        rc = flow_goal_submit(l, rd, router, cli->data_dir, buf_cstr(&text), "cli", &g, &err);
    buf_done(&text);
    Err serr = { 0 };
    ledger_sync(l, &serr); /* model.called is durable before we report */
    model_router_free(router);
    store_close(rd);
    ledger_close(l);
    if (rc < 0)
        return cli_fail_err(cli, &err);
    bool refused = !strcmp(text_of(g, "status"), "refused");
    if (cli->json) {
        cli_print_json(json_incref(g));
    } else if (!refused) {
        const json_t *p = json_object_get(g, "proposal");
        const json_t *score = json_object_get(g, "score");
        printf("goal %s: proposed, waiting for your approval\n", text_of(g, "id"));
        if (!strcmp(text_of(g, "kind"), "workflow")) {
            printf("  start workflow %s", text_of(g, "workflow"));
            if (json_is_number(score))
                printf(" (similarity %.3f)", json_number_value(score));
            printf("\n  %s\n", text_of(p, "description"));
            print_json_short("  input: ", json_object_get(p, "input"), 300);
            if (json_is_string(json_object_get(p, "warning")))
                printf("  warning: %s\n", text_of(p, "warning"));
        } else {
            printf("  a new task graph, %s: %s\n", text_of(g, "workflow"),
                   text_of(p, "description"));
            size_t i;
            const json_t *s;
            json_array_foreach(json_object_get(p, "steps"), i, s) print_json_short("  - ", s, 300);
        }
        printf("  planned by %s/%s, $%.6f\n", text_of(g, "provider"), text_of(g, "model"),
               json_number_value(json_object_get(g, "cost_usd")));
        printf("  -> bureau approve %s | bureau approve %s --edit FILE | bureau reject %s "
               "--reason R\n",
               text_of(g, "approval"), text_of(g, "approval"), text_of(g, "approval"));
    }
    if (refused)
        rc = cli_fail(cli, "goal %s refused: %s", text_of(g, "id"), text_of(g, "error"));
    json_decref(g);
    return refused ? rc : EXIT_OK;
}

int cmd_goals(Cli *cli)
{
    long long limit = 100;
    if (cli_opt(cli, "limit") && cli_int("limit", cli_opt(cli, "limit"), 1, 10000, &limit))
        return EXIT_USAGE;
    int rc = cli_load_config(cli);
    Store *rd = NULL;
    if (rc || (rc = cli_open_reader(cli, &rd)))
        return rc;
    Err err = { 0 };
    json_t *list = NULL;
    rc = flow_goals_list(rd, limit, &list, &err) < 0 ? cli_fail_err(cli, &err) : EXIT_OK;
    store_close(rd);
    if (rc != EXIT_OK)
        return rc;
    size_t i;
    json_t *g;
    if (!cli->json)
        printf("%-26s  %-9s  %-34s  %-10s  %s\n", "ID", "STATUS", "WORKFLOW", "TASK", "GOAL");
    json_array_foreach(list, i, g) {
        if (cli->json) {
            cli_print_json(json_incref(g));
            continue;
        }
        const char *ts = text_of(g, "task_status");
        const char *text = text_of(g, "text");
        printf("%-26s  %-9s  %-34s  %-10s  %.60s%s\n", text_of(g, "id"), text_of(g, "status"),
               text_of(g, "workflow"), *ts ? ts : "-", text, strlen(text) > 60 ? "..." : "");
    }
    json_decref(list);
    return EXIT_OK;
}
