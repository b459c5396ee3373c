/* bureau workflows list|show|validate|enable|disable, bureau tasks,
 * bureau task show|retry|skip|cancel, bureau run. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/log.h"
#include "flow/content.h"
#include "flow/engine.h"
#include "flow/workflow.h"

static void report_invalid(void *ctx, const char *path, const Err *err)
{
    (void)path;
    int *bad = ctx;
    (*bad)++;
    fprintf(stderr, "%s\n", err->msg);
}

static int load_catalog(Cli *cli, FlowCatalog *cat, int *bad)
{
    Err err = { 0 };
    flow_step_kinds_builtin();
    if (flow_catalog_load(cli->data_dir, cat, report_invalid, bad, &err) < 0)
        return cli_fail_err(cli, &err);
    return 0;
}

static const char *trigger_text(const FlowWorkflow *w, char *buf, size_t cap)
{
    if (w->on_schedule)
        snprintf(buf, cap, "schedule %s%s%s", w->on_schedule, w->timezone ? " " : "",
                 w->timezone ? w->timezone : "");
    else
        snprintf(buf, cap, "event %s", w->on_event ? w->on_event : "?");
    return buf;
}

int cmd_workflows_list(Cli *cli)
{
    int rc = cli_load_config(cli), bad = 0;
    FlowCatalog cat;
    Store *s = NULL;
    if (rc || (rc = load_catalog(cli, &cat, &bad)))
        return rc;
    if ((rc = cli_open_reader(cli, &s))) {
        flow_catalog_done(&cat);
        return rc;
    }
    if (!cli->json)
        printf("%-24s %-8s %-8s %-12s %s\n", "NAME", "ENABLED", "ORIGIN", "VERSION", "TRIGGER");
    Err err = { 0 };
    for (size_t i = 0; i < cat.n && rc == 0; i++) {
        const FlowWorkflow *w = cat.items[i];
        bool on = false;
        if (flow_workflow_enabled(s, w->name, w->enabled, w->builtin, &on, &err) < 0) {
            rc = cli_fail_err(cli, &err);
            break;
        }
        char trig[256];
        trigger_text(w, trig, sizeof trig);
        if (cli->json)
            cli_print_json(json_pack("{s:s, s:s?, s:b, s:b, s:s, s:s, s:s}", "name", w->name,
                                     "description", w->description, "enabled", on, "builtin",
                                     w->builtin, "version", w->version, "trigger", trig, "path",
                                     w->path));
        else
            printf("%-24s %-8s %-8s %.12s %s\n", w->name, on ? "yes" : "no",
                   w->builtin ? "builtin" : "file", w->version, trig);
    }
    store_close(s);
    flow_catalog_done(&cat);
    return rc ? rc : bad ? EXIT_FAIL : EXIT_OK;
}

int cmd_workflows_show(Cli *cli)
{
    int rc = cli_load_config(cli), bad = 0;
    FlowCatalog cat;
    if (rc || (rc = load_catalog(cli, &cat, &bad)))
        return rc;
    const FlowWorkflow *w = flow_catalog_find(&cat, cli->pos[0]);
    if (!w) {
        flow_catalog_done(&cat);
        return cli_fail(cli, "no workflow named '%s' (see `bureau workflows list`)", cli->pos[0]);
    }
    if (cli->json) {
        json_t *o = json_pack("{s:s, s:s, s:b, s:O}", "name", w->name, "version", w->version,
                              "builtin", w->builtin, "definition", w->definition);
        cli_print_json(o);
    } else {
        char trig[256];
        printf("name:     %s\nversion:  %s\norigin:   %s\ntrigger:  %s\n", w->name, w->version,
               w->path, trigger_text(w, trig, sizeof trig));
        if (w->on_where)
            printf("where:    %s\n", w->on_where);
        if (w->concurrency)
            printf("one at a time per: %s\n", w->concurrency);
        if (w->description)
            printf("about:    %s\n", w->description);
        printf("steps:\n");
        for (size_t i = 0; i < w->n_steps; i++) {
            const FlowStepDef *s = &w->steps[i];
            printf("  %-20s %-10s needs:", s->id, s->kind);
            for (size_t j = 0; j < s->n_needs; j++)
                printf("%s%s", j ? "," : " ", s->needs[j]);
            if (!s->n_needs)
                printf(" -");
            if (s->if_expr)
                printf("  if: %s", s->if_expr);
            printf("\n");
        }
    }
    flow_catalog_done(&cat);
    return EXIT_OK;
}

int cmd_workflows_validate(Cli *cli)
{
    Err err = { 0 };
    flow_step_kinds_builtin();
    FlowWorkflow *w = NULL;
    if (flow_workflow_load(cli->pos[0], &w, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return EXIT_FAIL;
    }
    int rc = EXIT_OK;
    if (cli->data_given) {
        /* --data named a data directory: check references too */
        int bad = 0;
        FlowCatalog cat;
        if (flow_catalog_load(cli->data_dir, &cat, NULL, &bad, &err) < 0) {
            flow_workflow_free(w);
            return cli_fail_err(cli, &err);
        }
        if (flow_workflow_check_refs(w, cli->data_dir, &cat, &err) < 0) {
            fprintf(stderr, "%s\n", err.msg);
            rc = EXIT_FAIL;
        }
        flow_catalog_done(&cat);
    }
    if (rc == EXIT_OK) {
        if (cli->json)
            cli_print_json(json_pack("{s:s, s:s, s:b}", "name", w->name, "version", w->version,
                                     "valid", 1));
        else
            printf("ok: %s (version %.12s, %zu steps)\n", w->name, w->version, w->n_steps);
    }
    flow_workflow_free(w);
    return rc;
}

static int set_enabled(Cli *cli, bool on)
{
    int rc = cli_load_config(cli);
    Ledger *l = NULL;
    if (rc || (rc = cli_open_ledger(cli, false, &l)))
        return rc;
    Err err = { 0 };
    flow_step_kinds_builtin();
    rc = flow_workflow_set_enabled(l, cli->data_dir, cli->pos[0], on, &err);
    ledger_close(l);
    if (rc < 0)
        return cli_fail_err(cli, &err);
    if (cli->json)
        cli_print_json(json_pack("{s:s, s:b}", "name", cli->pos[0], "enabled", on));
    else
        printf("%s: %s\n", cli->pos[0], on ? "enabled" : "disabled");
    return EXIT_OK;
}

/* bureau workflows run NAME: fires a scheduled workflow now, as its
 * schedule would (schedule.fired, by operator). */
int cmd_workflows_run(Cli *cli)
{
    int rc = cli_load_config(cli);
    if (rc)
        return rc;
    flow_step_kinds_builtin();
    FlowCatalog cat;
    Err err = { 0 };
    if (flow_catalog_load(cli->data_dir, &cat, NULL, NULL, &err) < 0)
        return cli_fail_err(cli, &err);
    const FlowWorkflow *w = flow_catalog_find(&cat, cli->pos[0]);
    if (!w || !w->on_schedule) {
        flow_catalog_done(&cat);
        return cli_fail(cli, "%s: %s", cli->pos[0],
                        w ? "not a scheduled workflow (it starts on an event)" : "no such workflow");
    }
    flow_catalog_done(&cat);
    Ledger *l = NULL;
    if ((rc = cli_open_ledger(cli, false, &l)))
        return rc;
    char slot[CORE_TIME_LEN + 1], key[160];
    int64_t now = core_time_now_ms();
    core_time_format(now, slot);
    snprintf(key, sizeof key, "schedule:%s:run:%s", cli->pos[0], slot);
    json_t *d = json_pack("{s:s, s:s, s:s}", "workflow", cli->pos[0], "slot", slot, "by",
                          "operator");
    Event *ev = NULL;
    LedgerAppendResult res;
    rc = ledger_event_new("schedule.fired", "operator", NULL, d, key, ledger_limits(l), &ev, &err);
    json_decref(d);
    if (rc == 0)
        rc = ledger_append(l, &ev, 1, &res, &err);
    ledger_close(l);
    if (rc < 0)
        return cli_fail_err(cli, &err);
    if (cli->json)
        cli_print_json(json_pack("{s:s, s:I}", "workflow", cli->pos[0], "seq", (json_int_t)res.seq));
    else
        printf("%s: fired now (seq %lld); bureau serve or bureau run starts its task\n",
               cli->pos[0], (long long)res.seq);
    return EXIT_OK;
}

int cmd_workflows_enable(Cli *cli) { return set_enabled(cli, true); }
int cmd_workflows_disable(Cli *cli) { return set_enabled(cli, false); }

static const char *text(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "-";
}

int cmd_tasks(Cli *cli)
{
    long long limit = 100;
    const char *lim = cli_opt(cli, "limit");
    if (lim && cli_int("limit", lim, 1, 1000000, &limit))
        return EXIT_USAGE;
    int rc = cli_load_config(cli);
    Store *s = NULL;
    if (rc || (rc = cli_open_reader(cli, &s)))
        return rc;
    json_t *arr = NULL;
    Err err = { 0 };
    rc = flow_tasks_list(s, cli_opt(cli, "status"), cli_opt(cli, "workflow"), limit, &arr, &err);
    store_close(s);
    if (rc < 0)
        return cli_fail_err(cli, &err);
    if (!cli->json)
        printf("%-26s %-24s %-10s %8s  %s\n", "ID", "WORKFLOW", "STATUS", "TRIGGER", "CREATED_AT");
    size_t i;
    json_t *t;
    json_array_foreach(arr, i, t) {
        if (cli->json)
            cli_print_json(json_incref(t));
        else
            printf("%-26s %-24s %-10s %8lld  %s\n", text(t, "id"), text(t, "workflow"),
                   text(t, "status"), (long long)json_integer_value(json_object_get(t, "trigger_seq")),
                   text(t, "created_at"));
    }
    json_decref(arr);
    return EXIT_OK;
}

int cmd_task_show(Cli *cli)
{
    int rc = cli_load_config(cli);
    Store *s = NULL;
    if (rc || (rc = cli_open_reader(cli, &s)))
        return rc;
    json_t *t = NULL;
    Err err = { 0 };
    rc = flow_task_get(s, cli->pos[0], &t, &err);
    store_close(s);
    if (rc < 0)
        return cli_fail_err(cli, &err);
    if (cli->json) {
        cli_print_json(t);
        return EXIT_OK;
    }
    printf("task:     %s\nworkflow: %s (version %.12s)\nstatus:   %s\ntrigger:  seq %lld\n"
           "created:  %s\nfinished: %s\n",
           text(t, "id"), text(t, "workflow"), text(t, "version"), text(t, "status"),
           (long long)json_integer_value(json_object_get(t, "trigger_seq")), text(t, "created_at"),
           text(t, "finished_at"));
    if (json_is_string(json_object_get(t, "error")))
        printf("error:    %s\n", text(t, "error"));
    printf("steps:\n");
    size_t i;
    json_t *st;
    json_array_foreach(json_object_get(t, "steps"), i, st) {
        printf("  %-20s %-10s %-10s attempts %lld", text(st, "id"), text(st, "kind"),
               text(st, "status"), (long long)json_integer_value(json_object_get(st, "attempts")));
        if (json_is_string(json_object_get(st, "started_at")))
            printf("  %s .. %s", text(st, "started_at"), text(st, "finished_at"));
        if (json_is_string(json_object_get(st, "wake_at")))
            printf("  wakes %s (%s)", text(st, "wake_at"), text(st, "wait"));
        printf("\n");
        const json_t *out = json_object_get(st, "output");
        if (out && !json_is_null(out)) {
            Buf b;
            buf_init(&b, 0);
            core_json_dump(out, &b);
            printf("      output: %.200s%s\n", buf_cstr(&b), b.len > 200 ? "..." : "");
            buf_done(&b);
        }
        if (json_is_string(json_object_get(st, "error")))
            printf("      error:  %s\n", text(st, "error"));
        const json_t *in = json_object_get(st, "inputs");
        if (in && !json_is_null(in) && json_is_string(json_object_get(st, "error"))) {
            Buf b;
            buf_init(&b, 0);
            core_json_dump(in, &b);
            printf("      inputs: %.200s%s\n", buf_cstr(&b), b.len > 200 ? "..." : "");
            buf_done(&b);
        }
    }
    json_decref(t);
    return EXIT_OK;
}

static int task_action(Cli *cli, const char *action)
{
    int rc = cli_load_config(cli);
    Ledger *l = NULL;
    Store *s = NULL;
    if (rc || (rc = cli_open_ledger(cli, false, &l)))
        return rc;
    Err err = { 0 };
    if ((rc = cli_open_reader(cli, &s)) == 0) {
        rc = flow_task_action(l, s, cli->pos[0], action, &err) < 0 ? cli_fail_err(cli, &err)
                                                                   : EXIT_OK;
        store_close(s);
    }
    ledger_close(l);
    if (rc == EXIT_OK) {
        if (cli->json)
            cli_print_json(json_pack("{s:s, s:s}", "task", cli->pos[0], "action", action));
        else
            printf("%s: %s requested\n", cli->pos[0], action);
    }
    return rc;
}

int cmd_task_retry(Cli *cli) { return task_action(cli, "retry"); }
int cmd_task_skip(Cli *cli) { return task_action(cli, "skip"); }
int cmd_task_cancel(Cli *cli) { return task_action(cli, "cancel"); }

typedef struct SigWatch {
    sigset_t set;
    FlowEngine *engine;
} SigWatch;

/* With --until-idle: a signal stops the wait (the main thread waits on the
 * engine, not on signals). */
static void *sig_watch(void *arg)
{
    SigWatch *w = arg;
    int sig = 0;
    sigwait(&w->set, &sig);
    flow_engine_interrupt(w->engine);
    return NULL;
}

int cmd_run(Cli *cli)
{
    bool until_idle = cli_flag(cli, "until-idle");
    long long timeout_s = -1, timers_s = 0;
    const char *t = cli_opt(cli, "timeout"), *tw = cli_opt(cli, "wait-timers");
    if ((t && cli_int("timeout", t, 1, 2000000, &timeout_s)) || /* ms fit an int */
        (tw && cli_int("wait-timers", tw, 0, 86400, &timers_s)))
        return EXIT_USAGE;
    int rc = cli_load_config(cli);
    if (rc)
        return rc;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    Ledger *l = NULL;
    if ((rc = cli_open_ledger(cli, true, &l)))
        return rc;
    FlowEngine *e = NULL;
    Err err = { 0 };
    if (flow_engine_start(l, cli->data_dir, &cli->config, &e, &err) < 0) {
        ledger_close(l);
        return cli_fail_err(cli, &err);
    }
    if (until_idle) {
        SigWatch w = { .set = set, .engine = e };
        pthread_t watcher;
        bool watching = pthread_create(&watcher, NULL, sig_watch, &w) == 0;
        rc = flow_engine_wait_idle(e, timeout_s > 0 ? (int)(timeout_s * 1000) : -1,
                                   timers_s * 1000, &err) < 0
                 ? cli_fail_err(cli, &err)
                 : EXIT_OK;
        if (watching) { /* the watcher takes this one if no signal came */
            pthread_kill(watcher, SIGTERM);
            pthread_join(watcher, NULL);
        }
    } else {
        int sig = 0;
        sigwait(&set, &sig);
        log_info("stopping", json_pack("{s:s}", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"));
    }
    flow_engine_stop(e);
    ledger_close(l);
    return rc;
}

/* ---- published content ---- */

/* "views 120, replies 3" from an engagement object; "" when empty. */
static void engagement_text(const json_t *eng, char *buf, size_t cap)
{
    size_t used = 0;
    const char *k;
    json_t *v;
    buf[0] = '\0';
    json_object_foreach((json_t *)eng, k, v) {
        int n = json_is_integer(v)
                    ? snprintf(buf + used, cap - used, "%s%s %lld", used ? ", " : "", k,
                               (long long)json_integer_value(v))
                    : snprintf(buf + used, cap - used, "%s%s %.2f", used ? ", " : "", k,
                               json_number_value(v));
        if (n < 0 || (size_t)n >= cap - used)
            break;
        used += (size_t)n;
    }
}

int cmd_content(Cli *cli)
{
    long long limit = 100;
    const char *lim = cli_opt(cli, "limit");
    if (lim && cli_int("limit", lim, 1, 1000, &limit))
        return EXIT_USAGE;
    int rc = cli_load_config(cli);
    Store *s = NULL;
    if (rc || (rc = cli_open_reader(cli, &s)))
        return rc;
    json_t *arr = NULL;
    Err err = { 0 };
    rc = content_list(s, (int)limit, &arr, &err);
    store_close(s);
    if (rc < 0)
        return cli_fail_err(cli, &err);
    if (!cli->json && json_array_size(arr))
        printf("%-26s %-20s %-36s %s\n", "PIECE", "PUBLISHED_AT", "TITLE", "ENGAGEMENT");
    size_t i;
    json_t *p;
    json_array_foreach(arr, i, p) {
        if (cli->json) {
            cli_print_json(json_incref(p));
            continue;
        }
        char eng[256];
        engagement_text(json_object_get(p, "engagement"), eng, sizeof eng);
        printf("%-26s %-20.20s %-36.36s %s\n", text(p, "piece"), text(p, "published_at"),
               text(p, "title"), *eng ? eng : "-");
    }
    if (!cli->json && !json_array_size(arr))
        printf("nothing published yet (the content-pipeline workflow publishes pieces)\n");
    json_decref(arr);
    return EXIT_OK;
}

int cmd_content_show(Cli *cli)
{
    int rc = cli_load_config(cli);
    Store *s = NULL;
    if (rc || (rc = cli_open_reader(cli, &s)))
        return rc;
    json_t *p = NULL;
    Err err = { 0 };
    rc = content_get(s, cli->pos[0], &p, &err);
    store_close(s);
    if (rc < 0)
        return cli_fail_err(cli, &err);
    if (cli->json) {
        cli_print_json(p);
        return EXIT_OK;
    }
    char eng[256];
    engagement_text(json_object_get(p, "engagement"), eng, sizeof eng);
    printf("piece      %s\ntitle      %s\npublished  %s (event %lld)\nengagement %s\n",
           text(p, "piece"), text(p, "title"), text(p, "published_at"),
           (long long)json_integer_value(json_object_get(p, "seq")), *eng ? eng : "none yet");
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(p, "recent"), i, e) {
        const json_t *v = json_object_get(e, "value");
        printf("  %8lld  %-20.20s %-24s %g\n", (long long)json_integer_value(json_object_get(e, "seq")),
               text(e, "occurred_at"), text(e, "metric"), json_number_value(v));
    }
    json_decref(p);
    return EXIT_OK;
}
