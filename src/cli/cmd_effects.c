/* bureau mode | inbox | approve | reject | effects | trace | task compensate:
 * the operator's side of approvals and effects (flow/effects.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/json.h"
#include "flow/effects.h"
#include "flow/engine.h"
#include "model/quality.h"

#define EDIT_MAX_BYTES (1024 * 1024)

static const char *text(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "-";
}

/* Prints v (compact JSON) cut at max bytes, after a label. */
static void print_json_line(const char *label, const json_t *v, size_t max)
{
    Buf b;
    buf_init(&b, 0);
    core_json_dump(v, &b);
    printf("%s%.*s%s\n", label, (int)(b.len > max ? max : b.len), buf_cstr(&b),
           b.len > max ? "..." : "");
    buf_done(&b);
}

/* "cli:USER" would need a login; the CLI runs as the operator. */
#define BY_CLI "cli"

int cmd_mode(Cli *cli)
{
    int rc = cli_load_config(cli);
    if (rc)
        return rc;
    Err err = { 0 };
    if (cli->npos == 0) {
        Store *rd = NULL;
        if ((rc = cli_open_reader(cli, &rd)))
            return rc;
        char mode[FLOW_MODE_MAX];
        rc = flow_mode_get(rd, mode, &err) < 0 ? cli_fail_err(cli, &err) : EXIT_OK;
        store_close(rd);
        if (rc == EXIT_OK) {
            if (cli->json)
                cli_print_json(json_pack("{s:s}", "mode", mode));
            else
                printf("%s\n", mode);
        }
        return rc;
    }
    const char *want = cli->pos[0];
    if (strcmp(want, "sandbox") && strcmp(want, "production"))
        return cli_usage_error(cli, "mode: '%s' is not sandbox or production", want);
    Ledger *l = NULL;
    Store *rd = NULL;
    if ((rc = cli_open_both(cli, &l, &rd)))
        return rc;
    bool changed = false;
    rc = flow_mode_set(l, rd, want, BY_CLI, &changed, &err) < 0 ? cli_fail_err(cli, &err) : EXIT_OK;
    store_close(rd);
    ledger_close(l);
    if (rc == EXIT_OK) {
        if (cli->json)
            cli_print_json(json_pack("{s:s, s:b}", "mode", want, "changed", changed));
        else if (!changed)
            printf("already in %s mode\n", want);
        else if (!strcmp(want, "production"))
            printf("production: effects are now sent for real (recorded as an event)\n");
        else
            printf("sandbox: effects are now captured, nothing is sent (recorded as an event)\n");
    }
    return rc;
}

static void print_item(const json_t *it)
{
    const char *kind = text(it, "kind");
    if (json_is_string(json_object_get(it, "goal")))
        printf("%s  goal     %s  (%s)\n    Goal: %s\n", text(it, "id"), text(it, "goal"),
               text(it, "workflow"), text(it, "title"));
    else
        printf("%s  %-8s task %s  step %s  (%s)%s\n", text(it, "id"), kind, text(it, "task"),
               text(it, "step"), text(it, "workflow"),
               json_is_true(json_object_get(it, "escalated")) ? "  ESCALATED" : "");
    if (!strcmp(kind, "approval")) {
        const json_t *p = json_object_get(it, "preview");
        const char *ek = text(it, "effect_kind");
        if (!strcmp(ek, "email.send") && json_is_object(p)) {
            const json_t *to = json_object_get(p, "to");
            if (json_is_string(to))
                printf("    To:      %s\n", json_string_value(to));
            else
                print_json_line("    To:      ", to, 200);
            printf("    Subject: %s\n", text(p, "subject"));
            const char *body = text(p, "text");
            printf("    | %.*s%s\n", 300, body, strlen(body) > 300 ? "..." : "");
        } else {
            print_json_line("    payload: ", p, 300);
        }
        const json_t *c = json_object_get(it, "confidence");
        if (json_is_number(c))
            printf("    confidence %.2f (%s)", json_number_value(c), text(it, "confidence_source"));
        else
            printf("    confidence -");
        if (json_is_string(json_object_get(it, "model")))
            printf("  model %s", text(it, "model"));
        if (json_is_number(json_object_get(it, "cost")))
            printf("  cost $%.4f", json_number_value(json_object_get(it, "cost")));
        if (json_is_string(json_object_get(it, "deadline")))
            printf("  deadline %s", text(it, "deadline"));
        printf("\n");
        size_t i;
        const json_t *s;
        json_array_foreach(json_object_get(it, "sources"), i, s) print_json_line("    source: ", s,
                                                                                  200);
        printf("    -> bureau approve %s | bureau approve %s --edit FILE | bureau reject %s "
               "--reason R\n",
               text(it, "id"), text(it, "id"), text(it, "id"));
    } else {
        printf("    %s\n", text(it, "error"));
        if (json_is_string(json_object_get(it, "effect")))
            printf("    -> bureau effects resolve %s --sent | --resend, or bureau effects cancel "
                   "%s\n",
                   text(it, "id"), text(it, "id"));
        else
            printf("    -> bureau task retry | skip | cancel %s\n", text(it, "task"));
    }
}

int cmd_inbox(Cli *cli)
{
    int rc = cli_load_config(cli);
    Store *rd = NULL;
    if (rc || (rc = cli_open_reader(cli, &rd)))
        return rc;
    Err err = { 0 };
    json_t *items = NULL;
    rc = flow_inbox_list(rd, &items, &err) < 0 ? cli_fail_err(cli, &err) : EXIT_OK;
    store_close(rd);
    if (rc != EXIT_OK)
        return rc;
    size_t i;
    json_t *it;
    if (cli->json) {
        json_array_foreach(items, i, it) cli_print_json(json_incref(it));
    } else if (json_array_size(items) == 0) {
        printf("the inbox is empty\n");
    } else {
        json_array_foreach(items, i, it) print_item(it);
    }
    json_decref(items);
    return EXIT_OK;
}

/* Reads FILE as JSON (at most EDIT_MAX_BYTES). */
static int read_json_file(Cli *cli, const char *path, json_t **ret)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cli_fail(cli, "--edit: %s: cannot be read", path);
    char *buf = xmalloc(EDIT_MAX_BYTES + 1);
    size_t n = fread(buf, 1, EDIT_MAX_BYTES + 1, f);
    fclose(f);
    if (n > EDIT_MAX_BYTES) {
        free(buf);
        return cli_fail(cli, "--edit: %s is larger than %d bytes", path, EDIT_MAX_BYTES);
    }
    Err err = { 0 };
    int rc = core_json_parse(buf, n, ret, &err);
    free(buf);
    if (rc < 0)
        return cli_fail(cli, "--edit: %s: %s", path, err.msg);
    return 0;
}

static int decide(Cli *cli, const char *decision, json_t *payload, const char *reason)
{
    Ledger *l = NULL;
    Store *rd = NULL;
    int rc = cli_open_both(cli, &l, &rd);
    if (rc) {
        json_decref(payload);
        return rc;
    }
    Err err = { 0 };
    json_t *out = NULL;
    rc = flow_approval_decide(l, rd, cli->pos[0], decision, payload, reason, BY_CLI, &out, &err) < 0
             ? cli_fail_err(cli, &err)
             : EXIT_OK;
    json_decref(payload);
    json_t *canary = NULL;
    if (rc == EXIT_OK) { /* the canary rule sees every decision (docs/models.md, "Quality") */
        Err cerr = { 0 };
        if (model_canary_evaluate(l, rd, &cli->config, &canary, &cerr) < 0)
            fprintf(stderr, "bureau: the canary rule: %s\n", cerr.msg);
        else if (json_array_size(canary))
            json_object_set(out, "canary", canary);
    }
    store_close(rd);
    ledger_close(l);
    if (rc == EXIT_OK) {
        if (cli->json)
            cli_print_json(json_incref(out));
        else if (json_is_string(json_object_get(out, "goal")))
            printf("%s: %s recorded (goal %s)%s\n", cli->pos[0],
                   !strcmp(decision, "approve") ? "approval"
                   : !strcmp(decision, "edit")  ? "edit and approval"
                                                : "rejection",
                   text(out, "goal"),
                   strcmp(decision, "reject") ? ": the planner starts its task" : "");
        else
            printf("%s: %s recorded (task %s, step %s)\n", cli->pos[0],
                   !strcmp(decision, "approve") ? "approval"
                   : !strcmp(decision, "edit")  ? "edit and approval"
                                                : "rejection",
                   text(out, "task"), text(out, "step"));
        size_t i;
        json_t *c;
        json_array_foreach(cli->json ? NULL : canary, i, c)
            printf("route %s: canary %s %s: %s\n", text(c, "route"), text(c, "candidate"),
                   !strcmp(text(c, "type"), "model.canary.promoted") ? "promoted"
                                                                     : "rolled back",
                   text(c, "reason"));
    }
    json_decref(canary);
    json_decref(out);
    return rc;
}

int cmd_approve(Cli *cli)
{
    const char *file = cli_opt(cli, "edit");
    json_t *payload = NULL;
    if (file) {
        int rc = read_json_file(cli, file, &payload);
        if (rc)
            return rc;
    }
    return decide(cli, file ? "edit" : "approve", payload, NULL);
}

int cmd_reject(Cli *cli)
{
    const char *reason = cli_opt(cli, "reason");
    if (!reason || !*reason)
        return cli_usage_error(cli, "--reason is required");
    return decide(cli, "reject", NULL, reason);
}

int cmd_effects(Cli *cli)
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
    rc = flow_effects_list(rd, cli_opt(cli, "status"), cli_opt(cli, "task"), limit, &list, &err) < 0
             ? cli_fail_err(cli, &err)
             : EXIT_OK;
    store_close(rd);
    if (rc != EXIT_OK)
        return rc;
    size_t i;
    json_t *x;
    json_array_foreach(list, i, x) {
        if (cli->json) {
            cli_print_json(json_incref(x));
            continue;
        }
        printf("%s  %-12s %-11s task %s  step %s  %s\n", text(x, "id"), text(x, "kind"),
               text(x, "status"), text(x, "task"), text(x, "step"), text(x, "updated_at"));
        const json_t *p = json_object_get(x, "payload");
        if (!strcmp(text(x, "kind"), "email.send"))
            printf("    to %s  subject %s\n",
                   json_is_string(json_object_get(p, "to")) ? text(p, "to") : "(several)",
                   text(p, "subject"));
        else
            printf("    %s\n", text(p, "url"));
        if (json_is_string(json_object_get(x, "detail")))
            printf("    %s\n", text(x, "detail"));
    }
    if (!cli->json && json_array_size(list) == 0)
        printf("no effects\n");
    json_decref(list);
    return EXIT_OK;
}

static int effect_action(Cli *cli, const char *action)
{
    Ledger *l = NULL;
    Store *rd = NULL;
    int rc = cli_open_both(cli, &l, &rd);
    if (rc)
        return rc;
    Err err = { 0 };
    rc = flow_effect_action(l, rd, cli->pos[0], action, cli_opt(cli, "reason"), BY_CLI, &err) < 0
             ? cli_fail_err(cli, &err)
             : EXIT_OK;
    store_close(rd);
    ledger_close(l);
    if (rc == EXIT_OK) {
        if (cli->json)
            cli_print_json(json_pack("{s:s, s:s}", "effect", cli->pos[0], "action", action));
        else
            printf("%s: %s recorded\n", cli->pos[0],
                   !strcmp(action, "cancel") ? "cancel"
                   : !strcmp(action, "sent") ? "marked as sent"
                                             : "send again");
    }
    return rc;
}

int cmd_effects_cancel(Cli *cli) { return effect_action(cli, "cancel"); }

int cmd_effects_resolve(Cli *cli)
{
    bool sent = cli_flag(cli, "sent"), resend = cli_flag(cli, "resend");
    if (sent == resend)
        return cli_usage_error(cli, "give exactly one of --sent or --resend");
    return effect_action(cli, sent ? "sent" : "resend");
}

int cmd_task_compensate(Cli *cli)
{
    Ledger *l = NULL;
    Store *rd = NULL;
    int rc = cli_open_both(cli, &l, &rd);
    if (rc)
        return rc;
    Err err = { 0 };
    rc = flow_task_action(l, rd, cli->pos[0], "compensate", &err) < 0 ? cli_fail_err(cli, &err)
                                                                      : EXIT_OK;
    store_close(rd);
    ledger_close(l);
    if (rc == EXIT_OK) {
        if (cli->json)
            cli_print_json(json_pack("{s:s, s:s}", "task", cli->pos[0], "action", "compensate"));
        else
            printf("%s: compensation requested (its effects are undone newest first)\n",
                   cli->pos[0]);
    }
    return rc;
}

/* One event of a trace, as a line a person can follow. */
static void trace_line(const json_t *ev)
{
    const char *type = text(ev, "type");
    const json_t *d = json_object_get(ev, "data");
    printf("  %6lld  %s  %-20s", (long long)json_integer_value(json_object_get(ev, "seq")),
           text(ev, "received_at"), type);
    if (!strncmp(type, "step.", 5)) {
        printf(" %s (attempt %lld)", text(d, "step"),
               (long long)json_integer_value(json_object_get(d, "attempt")));
        if (!strcmp(type, "step.failed") || !strcmp(type, "step.skipped"))
            printf(": %s", json_is_string(json_object_get(d, "error")) ? text(d, "error")
                                                                         : text(d, "reason"));
        printf("\n");
        if (json_object_get(d, "inputs"))
            print_json_line("            inputs: ", json_object_get(d, "inputs"), 300);
        if (json_object_get(d, "output") && !json_is_null(json_object_get(d, "output")))
            print_json_line("            output: ", json_object_get(d, "output"), 300);
    } else if (!strcmp(type, "approval.requested")) {
        printf(" %s for %s (policy %s)\n", text(d, "approval"), text(d, "step"), text(d, "policy"));
        print_json_line("            preview: ", json_object_get(d, "preview"), 300);
    } else if (!strcmp(type, "approval.decided")) {
        printf(" %s: %s by %s", text(d, "approval"), text(d, "decision"), text(d, "by"));
        if (json_is_string(json_object_get(d, "reason")))
            printf(" (%s)", text(d, "reason"));
        printf("\n");
        if (json_object_get(d, "diff"))
            print_json_line("            diff: ", json_object_get(d, "diff"), 400);
    } else if (!strncmp(type, "effect.", 7)) {
        printf(" %s %s", text(d, "effect"), text(d, "kind"));
        if (json_is_string(json_object_get(d, "detail")))
            printf(": %s", text(d, "detail"));
        printf("\n");
        if (!strcmp(type, "effect.requested"))
            print_json_line("            payload: ", json_object_get(d, "payload"), 300);
    } else {
        printf("\n");
        print_json_line("            data: ", d, 200);
    }
}

int cmd_trace(Cli *cli)
{
    int rc = cli_load_config(cli);
    Store *rd = NULL;
    if (rc || (rc = cli_open_reader(cli, &rd)))
        return rc;
    Err err = { 0 };
    json_t *t = NULL;
    rc = flow_task_trace(rd, cli->pos[0], &t, &err) < 0 ? cli_fail_err(cli, &err) : EXIT_OK;
    store_close(rd);
    if (rc != EXIT_OK)
        return rc;
    if (cli->json) {
        cli_print_json(t);
        return EXIT_OK;
    }
    const json_t *task = json_object_get(t, "task"), *trig = json_object_get(t, "trigger");
    printf("task %s  workflow %s  status %s\n", text(task, "id"), text(task, "workflow"),
           text(task, "status"));
    if (json_is_object(trig)) {
        printf("trigger: seq %lld  %s from %s\n",
               (long long)json_integer_value(json_object_get(trig, "seq")), text(trig, "type"),
               text(trig, "source"));
        print_json_line("         ", json_object_get(trig, "data"), 300);
    }
    printf("events:\n");
    size_t i;
    json_t *ev;
    json_array_foreach(json_object_get(t, "events"), i, ev) trace_line(ev);
    json_t *x;
    if (json_array_size(json_object_get(t, "effects")))
        printf("effects:\n");
    json_array_foreach(json_object_get(t, "effects"), i, x)
        printf("  %s  %-12s %-11s deliveries %lld%s%s\n", text(x, "id"), text(x, "kind"),
               text(x, "status"), (long long)json_integer_value(json_object_get(x, "deliveries")),
               json_is_string(json_object_get(x, "detail")) ? "  " : "",
               json_is_string(json_object_get(x, "detail")) ? text(x, "detail") : "");
    json_decref(t);
    return EXIT_OK;
}
