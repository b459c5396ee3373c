/* Unit tests of src/flow/workflow.c, steps.c and catalog.c: workflow files,
 * their validation, the canonical definition and version, the catalog.
 *
 * Data-driven cases: tests/data/workflows/NNNN-slug.yaml with the expected
 * problem lines in NNNN-slug.err ("FILE:LINE:COL: message", FILE being the
 * .yaml's base name). BUREAU_UPDATE_EXPECTED=1 rewrites the .err files from
 * the current output (review the diff before committing). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/buf.h"
#include "core/json.h"
#include "flow/engine_int.h" /* flow__goal_compose */
#include "flow/workflow.h"
#include "helpers.h"

#ifndef TEST_SRC_DIR
#error "meson passes TEST_SRC_DIR (the source root)"
#endif
#define CASES_DIR TEST_SRC_DIR "/tests/data/workflows"

static char *slurp(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    Buf b;
    buf_init(&b, 0);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    if (ret_len)
        *ret_len = b.len;
    return buf_steal(&b);
}

static void spew(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
}

static FlowWorkflow *parse_ok(const char *yaml)
{
    FlowWorkflow *w = NULL;
    char *rep = NULL;
    Err e = { 0 };
    int rc = flow_workflow_parse_report(yaml, strlen(yaml), "t.yaml", &w, &rep, &e);
    cr_assert_eq(rc, 0, "parse failed:\n%s", rep ? rep : e.msg);
    cr_assert_not_null(w);
    free(rep);
    return w;
}

static char *parse_fail(const char *yaml)
{
    FlowWorkflow *w = NULL;
    char *rep = NULL;
    Err e = { 0 };
    int rc = flow_workflow_parse_report(yaml, strlen(yaml), "t.yaml", &w, &rep, &e);
    cr_assert_eq(rc, ERR_INVAL, "expected a validation failure, got %d", rc);
    cr_assert_null(w);
    cr_assert_not_null(rep);
    cr_assert_eq(e.code, ERR_INVAL);
    return rep;
}

static char *canonical_text(const json_t *def)
{
    Buf b;
    buf_init(&b, 0);
    cr_assert_eq(core_json_canonical(def, &b), 0);
    return buf_steal(&b);
}

/* ---- durations --------------------------------------------------------- */

Test(duration, units_and_limits)
{
    int64_t ms = 0;
    Err e = { 0 };
    struct {
        const char *s;
        int64_t ms;
    } ok[] = { { "500ms", 500 },      { "45s", 45000 },         { "30m", 1800000 },
               { "12h", 43200000 },   { "3d", 259200000 },      { "1w", 604800000 },
               { "366d", 366LL * 86400000 } };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        cr_assert_eq(flow_duration_parse(ok[i].s, &ms, &e), 0, "%s: %s", ok[i].s, e.msg);
        cr_assert_eq(ms, ok[i].ms, "%s", ok[i].s);
    }
    const char *bad[] = { "",    "0s",  "-1s",     "1",  "s",   "1.5h",  "1 h",
                          "1H",  "367d", "53w",    "99999999999999999999d", "1hh", "3x" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ms = -7;
        cr_assert_eq(flow_duration_parse(bad[i], &ms, &e), ERR_INVAL, "'%s' accepted", bad[i]);
        cr_assert_eq(ms, -7, "output written on failure");
    }
}

/* ---- data-driven broken files ------------------------------------------ */

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

Test(workflow_files, broken_cases_report_every_problem)
{
    DIR *d = opendir(CASES_DIR);
    cr_assert(d, "no %s", CASES_DIR);
    char *names[512];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 512) {
        size_t l = strlen(de->d_name);
        if (l > 5 && !strcmp(de->d_name + l - 5, ".yaml"))
            names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, name_cmp);
    cr_assert_geq(n, 20, "too few cases in %s", CASES_DIR);
    bool update = getenv("BUREAU_UPDATE_EXPECTED") != NULL;
    int failures = 0;
    for (size_t i = 0; i < n; i++) {
        char path[1024], errpath[1024];
        snprintf(path, sizeof path, "%s/%s", CASES_DIR, names[i]);
        snprintf(errpath, sizeof errpath, "%s/%.*s.err", CASES_DIR,
                 (int)(strlen(names[i]) - 5), names[i]);
        size_t len;
        char *text = slurp(path, &len);
        cr_assert_not_null(text);
        FlowWorkflow *w = NULL;
        char *rep = NULL;
        Err e = { 0 };
        int rc = flow_workflow_parse_report(text, len, names[i], &w, &rep, &e);
        if (rc == 0) {
            cr_log_error("%s: accepted, but it is broken", names[i]);
            failures++;
            flow_workflow_free(w);
            free(text);
            continue;
        }
        cr_expect_eq(rc, ERR_INVAL, "%s: rc %d", names[i], rc);
        cr_expect_eq(e.code, ERR_INVAL);
        cr_expect_not_null(rep, "%s: no report", names[i]);
        /* err->msg starts with the first lines of the report. */
        cr_expect(rep && !strncmp(rep, e.msg, strcspn(e.msg, "\n")), "%s: err->msg '%s'",
                  names[i], e.msg);
        if (update && rep) {
            char out[16384];
            snprintf(out, sizeof out, "%s\n", rep);
            spew(errpath, out);
        }
        char *want = slurp(errpath, NULL);
        if (!want) {
            cr_log_error("%s: no .err file; got:\n%s", names[i], rep ? rep : "");
            failures++;
        } else {
            chomp(want);
            if (!rep || strcmp(want, rep)) {
                cr_log_error("%s:\n--- expected\n%s\n--- got\n%s", names[i], want,
                             rep ? rep : "(none)");
                failures++;
            }
        }
        free(want);
        free(rep);
        free(text);
        free(names[i]);
    }
    cr_assert_eq(failures, 0, "%d of %zu cases differ", failures, n);
}

/* ---- good files -------------------------------------------------------- */

Test(workflow_files, builtins_validate)
{
    cr_assert_geq(flow__builtins_count, 1);
    bool lead = false;
    for (size_t i = 0; i < flow__builtins_count; i++) {
        FlowWorkflow *w = NULL;
        char *rep = NULL;
        Err e = { 0 };
        int rc = flow_workflow_parse_report(flow__builtins[i].data, flow__builtins[i].len,
                                            flow__builtins[i].name, &w, &rep, &e);
        cr_assert_eq(rc, 0, "%s:\n%s", flow__builtins[i].name, rep ? rep : e.msg);
        if (!strcmp(w->name, "lead-from-form")) {
            lead = true;
            cr_assert_str_eq(w->on_event, "form.submitted");
            cr_assert_not_null(w->on_where);
            cr_assert_str_eq(w->concurrency, "event.data.fields.email");
            cr_assert_eq(w->n_steps, 1);
            cr_assert_str_eq(w->steps[0].kind, "emit");
            cr_assert_eq(w->steps[0].n_needs, 0);
        }
        flow_workflow_free(w);
    }
    cr_assert(lead, "workflows/lead-from-form.yaml is not built in");
    /* The file in the source tree is the same. */
    FlowWorkflow *w = NULL;
    Err e = { 0 };
    cr_assert_eq(flow_workflow_load(TEST_SRC_DIR "/workflows/lead-from-form.yaml", &w, &e), 0,
                 "%s", e.msg);
    flow_workflow_free(w);
}

static const char full_yaml[] =
    "name: follow-up\n"
    "description: Follows a lead up.\n"
    "enabled: false\n"
    "on:\n"
    "  event: lead.*\n"
    "  where: event.data.email ~= nil\n"
    "concurrency: event.data.email\n"
    "steps:\n"
    "  - id: hello\n"
    "    do: emit\n"
    "    with:\n"
    "      type: lead.greeted\n"
    "      subject: \"{{ event.subject }}\"\n"
    "      data: {email: \"{{ event.data.email }}\", n: 1, r: 0.5, yes: true, none: null}\n"
    "  - id: pause\n"
    "    do: wait\n"
    "    with: {duration: 3d}\n"
    "  - id: reply\n"
    "    do: wait\n"
    "    needs: []\n"
    "    with: {event: email.received, where: e.data.from == email, timeout: 7d}\n"
    "  - id: score\n"
    "    do: lua\n"
    "    needs: [pause, reply]\n"
    "    if: steps.reply ~= nil\n"
    "    with: {script: score_lead, args: {weight: 2}}\n"
    "    retry: {max: 3, backoff: 10s, max_delay: 5m}\n"
    "    timeout: 30s\n"
    "    on_error: inbox\n"
    "  - id: next\n"
    "    do: task.start\n"
    "    with: {workflow: nurture, input: {email: \"{{ event.data.email }}\"}}\n"
    "    on_error: continue\n";

Test(workflow_files, full_file_fields_defaults_and_order)
{
    FlowWorkflow *w = parse_ok(full_yaml);
    cr_assert_str_eq(w->name, "follow-up");
    cr_assert_str_eq(w->description, "Follows a lead up.");
    cr_assert_not(w->enabled);
    cr_assert_str_eq(w->on_event, "lead.*");
    cr_assert_null(w->on_schedule);
    cr_assert_eq(w->n_steps, 5);
    FlowStepDef *s = w->steps;
    cr_assert_eq(s[0].n_needs, 0);
    cr_assert_eq(s[1].n_needs, 1);
    cr_assert_str_eq(s[1].needs[0], "hello"); /* the step before */
    cr_assert_eq(s[1].need_idx[0], 0);
    cr_assert_eq(s[2].n_needs, 0);            /* needs: [] */
    cr_assert_eq(s[3].n_needs, 2);
    cr_assert_eq(s[3].need_idx[0], 1);
    cr_assert_eq(s[3].need_idx[1], 2);
    cr_assert_eq(s[3].retry_max, 3);
    cr_assert_eq(s[3].backoff_ms, 10000);
    cr_assert_eq(s[3].max_delay_ms, 300000);
    cr_assert_eq(s[3].timeout_ms, 30000);
    cr_assert_eq(s[3].on_error, FLOW_ON_ERROR_INBOX);
    cr_assert_str_eq(s[3].if_expr, "steps.reply ~= nil");
    cr_assert_eq(s[0].retry_max, 0);
    cr_assert_eq(s[0].backoff_ms, 1000);
    cr_assert_eq(s[0].max_delay_ms, 3600000);
    cr_assert_eq(s[0].timeout_ms, 0);
    cr_assert_eq(s[0].on_error, FLOW_ON_ERROR_FAIL);
    cr_assert_eq(s[4].on_error, FLOW_ON_ERROR_CONTINUE);
    /* YAML scalars became JSON of their type. */
    json_t *data = json_object_get(s[0].with, "data");
    cr_assert(json_is_integer(json_object_get(data, "n")));
    cr_assert(json_is_real(json_object_get(data, "r")));
    cr_assert(json_is_true(json_object_get(data, "yes")));
    cr_assert(json_is_null(json_object_get(data, "none")));
    /* Every step comes after what it needs. */
    size_t at[5];
    for (size_t i = 0; i < 5; i++)
        at[w->order[i]] = i;
    for (size_t i = 0; i < 5; i++)
        for (size_t j = 0; j < s[i].n_needs; j++)
            cr_assert_lt(at[s[i].need_idx[j]], at[i]);
    cr_assert_eq(w->order[0], 0);
    cr_assert_eq(strlen(w->version), CORE_SHA256_HEX);
    flow_workflow_free(w);
}

Test(workflow_files, canonical_definition_fills_defaults)
{
    FlowWorkflow *w = parse_ok("name: tiny\n"
                               "on: {schedule: '*/15 * * * *'}\n"
                               "steps:\n"
                               "  - {id: a, do: wait, with: {duration: 1h}}\n"
                               "  - {id: b, do: emit, with: {type: x.y}}\n");
    char *text = canonical_text(w->definition);
    cr_assert_str_eq(
        text,
        "{\"enabled\":true,\"name\":\"tiny\","
        "\"on\":{\"schedule\":\"*/15 * * * *\",\"timezone\":\"UTC\"},"
        "\"steps\":[{\"do\":\"wait\",\"id\":\"a\",\"needs\":[],\"on_error\":\"fail\","
        "\"retry\":{\"backoff_ms\":1000,\"max\":0,\"max_delay_ms\":3600000},\"timeout_ms\":0,"
        "\"with\":{\"duration\":\"1h\"}},"
        "{\"do\":\"emit\",\"id\":\"b\",\"needs\":[\"a\"],\"on_error\":\"fail\","
        "\"retry\":{\"backoff_ms\":1000,\"max\":0,\"max_delay_ms\":3600000},\"timeout_ms\":0,"
        "\"with\":{\"type\":\"x.y\"}}]}");
    char hex[CORE_SHA256_HEX + 1];
    core_sha256_hex(text, strlen(text), hex);
    cr_assert_str_eq(w->version, hex);
    cr_assert_str_eq(w->timezone, "UTC");
    free(text);
    flow_workflow_free(w);
}

/* ---- version ----------------------------------------------------------- */

Test(version, stable_across_formatting_and_defaults)
{
    FlowWorkflow *a = parse_ok(full_yaml);
    /* The same definition: other key order, flow style, quoting, comments,
     * defaults spelled out. */
    FlowWorkflow *b = parse_ok(
        "# the same, written differently\n"
        "steps:\n"
        "  - do: emit\n"
        "    id: hello\n"
        "    needs: []\n"
        "    retry: {max: 0, backoff: 1s, max_delay: 1h}\n"
        "    on_error: fail\n"
        "    with:\n"
        "      data:\n"
        "        none: ~\n"
        "        yes: True\n"
        "        r: 0.50\n"
        "        n: 1\n"
        "        email: '{{ event.data.email }}'\n"
        "      subject: '{{ event.subject }}'\n"
        "      type: \"lead.greeted\"\n"
        "  - {id: pause, do: wait, with: {duration: 3d}, needs: hello}\n"
        "  - id: reply\n"
        "    do: wait\n"
        "    needs: []\n"
        "    with:\n"
        "      timeout: 7d\n"
        "      where: e.data.from == email\n"
        "      event: email.received\n"
        "  - id: score\n"
        "    do: lua\n"
        "    needs: [pause, reply]\n"
        "    if: 'steps.reply ~= nil'\n"
        "    with: {args: {weight: 2}, script: score_lead}\n"
        "    retry: {max_delay: 300s, max: 3, backoff: 10000ms}\n"
        "    timeout: 30000ms\n"
        "    on_error: inbox\n"
        "  - id: next\n"
        "    do: task.start\n"
        "    with: {input: {email: \"{{ event.data.email }}\"}, workflow: nurture}\n"
        "    on_error: continue\n"
        "concurrency: event.data.email\n"
        "on: {where: event.data.email ~= nil, event: lead.*}\n"
        "enabled: false\n"
        "description: Follows a lead up.\n"
        "name: follow-up\n");
    cr_assert_str_eq(a->version, b->version);
    flow_workflow_free(b);

    /* Any change of meaning changes the version. */
    struct {
        const char *from, *to;
    } edits[] = {
        { "enabled: false", "enabled: true" },
        { "description: Follows a lead up.", "description: Follows a lead up!" },
        { "event: lead.*", "event: lead.created" },
        { "where: event.data.email ~= nil", "where: event.data.email ~= ''" },
        { "concurrency: event.data.email", "concurrency: event.subject" },
        { "n: 1,", "n: 2," },
        { "n: 1,", "n: '1'," },
        { "duration: 3d", "duration: 4d" },
        { "needs: []\n    with: {event", "needs: [pause]\n    with: {event" },
        { "retry: {max: 3,", "retry: {max: 4," },
        { "backoff: 10s", "backoff: 11s" },
        { "max_delay: 5m", "max_delay: 6m" },
        { "timeout: 30s", "timeout: 31s" },
        { "on_error: inbox", "on_error: fail" },
        { "if: steps.reply ~= nil", "if: steps.reply == nil" },
        { "id: hello", "id: hi" },
        { "script: score_lead", "script: score_lead2" },
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        const char *at = strstr(full_yaml, edits[i].from);
        cr_assert_not_null(at, "edit %zu: '%s' not found", i, edits[i].from);
        Buf y;
        buf_init(&y, 0);
        buf_append(&y, full_yaml, (size_t)(at - full_yaml));
        buf_puts(&y, edits[i].to);
        buf_puts(&y, at + strlen(edits[i].from));
        FlowWorkflow *c = NULL;
        char *rep = NULL;
        Err e = { 0 };
        int rc = flow_workflow_parse_report(y.ptr, y.len, "t.yaml", &c, &rep, &e);
        cr_assert_eq(rc, 0, "edit %zu: %s", i, rep ? rep : e.msg);
        cr_assert_str_neq(c->version, a->version, "edit %zu ('%s') kept the version", i,
                          edits[i].to);
        flow_workflow_free(c);
        free(rep);
        buf_done(&y);
    }
    flow_workflow_free(a);
}

/* ---- from_json --------------------------------------------------------- */

Test(from_json, round_trip_gives_identical_text_and_version)
{
    const char *files[] = { full_yaml, NULL };
    for (size_t i = 0; i <= flow__builtins_count; i++) {
        const char *yaml = i < flow__builtins_count ? flow__builtins[i].data : files[0];
        size_t len = i < flow__builtins_count ? flow__builtins[i].len : strlen(files[0]);
        FlowWorkflow *w = NULL, *r = NULL, *r2 = NULL;
        Err e = { 0 };
        cr_assert_eq(flow_workflow_parse(yaml, len, "t.yaml", &w, &e), 0, "%s", e.msg);
        char *t1 = canonical_text(w->definition);
        /* Through text, as a task stores it. */
        json_t *stored = NULL;
        cr_assert_eq(core_json_parse(t1, strlen(t1), &stored, &e), 0, "%s", e.msg);
        cr_assert_eq(flow_workflow_from_json(stored, &r, &e), 0, "%s", e.msg);
        char *t2 = canonical_text(r->definition);
        cr_assert_str_eq(t1, t2);
        cr_assert_str_eq(w->version, r->version);
        cr_assert_eq(r->n_steps, w->n_steps);
        for (size_t s = 0; s < w->n_steps; s++) {
            cr_assert_str_eq(r->steps[s].id, w->steps[s].id);
            cr_assert_eq(r->steps[s].n_needs, w->steps[s].n_needs);
            cr_assert_eq(r->steps[s].backoff_ms, w->steps[s].backoff_ms);
            cr_assert_eq(r->steps[s].timeout_ms, w->steps[s].timeout_ms);
            cr_assert_eq(r->order[s], w->order[s]);
        }
        cr_assert_eq(r->enabled, w->enabled);
        cr_assert(!strncmp(r->path, "json:", 5));
        /* And once more from the rebuilt definition. */
        cr_assert_eq(flow_workflow_from_json(r->definition, &r2, &e), 0, "%s", e.msg);
        cr_assert_str_eq(r2->version, w->version);
        free(t1);
        free(t2);
        json_decref(stored);
        flow_workflow_free(w);
        flow_workflow_free(r);
        flow_workflow_free(r2);
    }
}

Test(from_json, errors_name_the_json_path)
{
    FlowWorkflow *w = parse_ok(full_yaml);
    json_t *d = json_deep_copy(w->definition);
    json_t *steps = json_object_get(d, "steps");
    json_object_set_new(json_object_get(json_array_get(steps, 3), "retry"), "max",
                        json_integer(500));
    json_object_set_new(json_array_get(steps, 1), "timeout", json_string("3d"));
    json_object_set_new(json_array_get(steps, 2), "needs", json_pack("[s]", "nope"));
    json_object_set_new(json_object_get(json_array_get(steps, 1), "with"), "duration",
                        json_string("3 days"));
    FlowWorkflow *r = NULL;
    Err e = { 0 };
    cr_assert_eq(flow_workflow_from_json(d, &r, &e), ERR_INVAL);
    cr_assert_null(r);
    cr_assert_str_eq(e.msg,
                     "steps[1].timeout: unknown key (allowed: id, do, with, if, needs, retry, "
                     "timeout_ms, on_error, approval, purpose, compensate)\n"
                     "steps[1].with.duration: '3 days' is not a duration (a whole number and "
                     "one of ms, s, m, h, d, w: \"30s\", \"3d\")\n"
                     "steps[3].retry.max: must be an integer from 0 to 100\n"
                     "steps[2].needs[0]: unknown step 'nope'");
    json_decref(d);
    json_t *x = json_string("x");
    cr_assert_eq(flow_workflow_from_json(x, &r, &e), ERR_INVAL);
    json_decref(x);
    cr_assert_str_eq(e.msg, "a workflow must be a mapping (name, on, steps...), not string");
    flow_workflow_free(w);
}

/* ---- problems are capped ----------------------------------------------- */

Test(workflow_files, many_problems_are_capped)
{
    Buf y;
    buf_init(&y, 0);
    buf_puts(&y, "name: many\non: {event: a.b}\nsteps:\n");
    for (int i = 0; i < 40; i++)
        buf_printf(&y, "  - {id: s%d, do: nope}\n", i);
    char *rep = parse_fail(y.ptr);
    int lines = 1;
    for (const char *p = rep; *p; p++)
        lines += *p == '\n';
    cr_assert_eq(lines, FLOW_PROBLEMS_MAX + 1);
    cr_assert(strstr(rep, "\n... and 10 more problems"), "%s", rep);
    free(rep);
    FlowWorkflow *w = NULL;
    Err e = { 0 };
    cr_assert_eq(flow_workflow_parse(y.ptr, y.len, "t.yaml", &w, &e), ERR_INVAL);
    cr_assert_lt(strlen(e.msg), ERR_MSG_MAX);
    cr_assert(strstr(e.msg, "more problems"), "%s", e.msg);
    buf_done(&y);

    /* Too large, too many steps. */
    char *big = malloc(FLOW_WORKFLOW_MAX_BYTES + 2);
    memset(big, '#', FLOW_WORKFLOW_MAX_BYTES + 1);
    big[FLOW_WORKFLOW_MAX_BYTES + 1] = '\0';
    cr_assert_eq(flow_workflow_parse(big, FLOW_WORKFLOW_MAX_BYTES + 1, "big.yaml", &w, &e),
                 ERR_TOOBIG);
    free(big);
    buf_init(&y, 0);
    buf_puts(&y, "name: long\non: {event: a.b}\nsteps:\n");
    for (int i = 0; i <= FLOW_MAX_STEPS; i++)
        buf_printf(&y, "  - {id: s%d, do: emit, with: {type: a.b}}\n", i);
    rep = parse_fail(y.ptr);
    cr_assert_str_eq(rep, "t.yaml:3:1: steps: must be a list of 1 to 64 steps");
    free(rep);
    buf_done(&y);
}

Test(workflow_files, aliases_are_expanded_but_bounded)
{
    FlowWorkflow *w = parse_ok("name: alias\n"
                               "on: {event: a.b}\n"
                               "steps:\n"
                               "  - id: a\n"
                               "    do: emit\n"
                               "    with: &w {type: a.b}\n"
                               "    retry: &r {max: 2}\n"
                               "  - {id: b, do: emit, with: *w, retry: *r}\n");
    cr_assert_eq(w->steps[1].retry_max, 2);
    flow_workflow_free(w);
    /* A billion laughs stops at the node cap. */
    char *rep = parse_fail("name: lol\non: {event: a.b}\n"
                           "x0: &a [x, x, x, x, x, x, x, x, x, x]\n"
                           "x1: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                           "x2: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                           "x3: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                           "x4: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                           "x5: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                           "x6: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
                           "steps: [{id: a, do: emit, with: {type: a.b}}]\n");
    cr_assert(strstr(rep, "too many values"), "%s", rep);
    cr_assert_null(strstr(strstr(rep, "too many values") + 1, "too many values"), "%s", rep);
    free(rep);
}

/* ---- step kinds -------------------------------------------------------- */

static int check_custom(const json_t *with, Err *err)
{
    if (!json_object_get(with, "to"))
        return err_set(err, ERR_INVAL, "with.to: required");
    return 0;
}

Test(step_kinds, registry_and_custom_kinds)
{
    flow_step_kinds_builtin();
    flow_step_kinds_builtin();
    cr_assert_not_null(flow_step_kind_find("emit"));
    cr_assert_not_null(flow_step_kind_find("lua"));
    cr_assert_not_null(flow_step_kind_find("wait"));
    cr_assert_not_null(flow_step_kind_find("task.start"));
    cr_assert_null(flow_step_kind_find("mail"));
    static const FlowStepKind mail = { "mail", check_custom, NULL };
    static const FlowStepKind mail2 = { "mail", NULL, NULL };
    flow_step_kind_register(&mail);
    flow_step_kind_register(&mail2);
    cr_assert_eq(flow_step_kind_find("mail"), &mail);
    char list[512];
    flow_step_kinds_list(list, sizeof list);
    cr_assert_str_eq(list, "approval, email.send, emit, lua, mail, memory.context, "
                           "memory.record_fact, memory.renewals, memory.resolve, memory.search, memory.themes, "
                      "model.classify, model.complete, "
                           "model.draft, model.extract, model.summarize, task.start, wait, "
                           "webhook.post");
    char *rep = parse_fail("name: m\non: {event: a.b}\nsteps:\n"
                           "  - id: a\n    do: mail\n    with: {subject: x}\n");
    cr_assert_str_eq(rep, "t.yaml:6:12: steps[0].with.to: required");
    free(rep);
    FlowWorkflow *w = parse_ok("name: m\non: {event: a.b}\nsteps:\n"
                               "  - id: a\n    do: mail\n    with: {to: x}\n");
    flow_workflow_free(w);
}

/* ---- catalog ----------------------------------------------------------- */

typedef struct Reported {
    int n;
    char text[4096];
} Reported;

static void on_error(void *ctx, const char *path, const Err *e)
{
    Reported *r = ctx;
    r->n++;
    size_t used = strlen(r->text);
    snprintf(r->text + used, sizeof r->text - used, "%s\n", e->msg);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[2200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    spew(path, text);
}

Test(catalog, builtins_overrides_and_bad_files)
{
    char *data = test_tmpdir();
    Reported rep = { 0 };
    FlowCatalog c = { 0 };
    Err e = { 0 };
    /* No workflows dir: the built-ins. */
    cr_assert_eq(flow_catalog_load(data, &c, on_error, &rep, &e), 0, "%s", e.msg);
    cr_assert_eq(rep.n, 0, "%s", rep.text);
    cr_assert_eq(c.n, flow__builtins_count);
    const FlowWorkflow *lead = flow_catalog_find(&c, "lead-from-form");
    cr_assert_not_null(lead);
    cr_assert(lead->builtin);
    cr_assert_str_eq(lead->path, "builtin:lead-from-form");
    flow_catalog_done(&c);

    char wdir[1024];
    snprintf(wdir, sizeof wdir, "%s/workflows", data);
    cr_assert_eq(mkdir(wdir, 0700), 0);
    write_file(wdir, "lead-from-form.yaml",
               "name: lead-from-form\nenabled: true\non: {event: form.submitted}\n"
               "steps: [{id: a, do: emit, with: {type: lead.captured}}]\n");
    write_file(wdir, "zeta.yaml",
               "name: zeta\non: {schedule: '@daily'}\nsteps: [{id: a, do: wait, with: "
               "{duration: 1d}}]\n");
    write_file(wdir, "alpha.yaml",
               "name: alpha\non: {event: a.b}\nsteps: [{id: a, do: emit, with: {type: a.b}}]\n");
    write_file(wdir, "mismatch.yaml",
               "name: other\non: {event: a.b}\nsteps: [{id: a, do: emit, with: {type: a.b}}]\n");
    write_file(wdir, "broken.yaml", "name: broken\non: {event: a.b}\n");
    write_file(wdir, "README.md", "not a workflow\n");
    write_file(wdir, ".hidden.yaml", "nope\n");
    cr_assert_eq(flow_catalog_load(data, &c, on_error, &rep, &e), 0, "%s", e.msg);
    cr_assert_eq(rep.n, 2, "%s", rep.text);
    char want[2048];
    snprintf(want, sizeof want,
             "%s/workflows/broken.yaml:1:1: missing required key 'steps'\n"
             "%s/workflows/mismatch.yaml:1:7: name: 'other' differs from the file name "
             "'mismatch'\n",
             data, data);
    cr_assert_str_eq(rep.text, want);
    cr_assert_eq(c.n, flow__builtins_count + 2);
    for (size_t i = 1; i < c.n; i++)
        cr_assert_lt(strcmp(c.items[i - 1]->name, c.items[i]->name), 0);
    lead = flow_catalog_find(&c, "lead-from-form");
    cr_assert_not(lead->builtin);
    cr_assert(lead->enabled);
    cr_assert_str_eq(lead->steps[0].id, "a");
    cr_assert_not_null(flow_catalog_find(&c, "alpha"));
    cr_assert_not_null(flow_catalog_find(&c, "zeta"));
    cr_assert_null(flow_catalog_find(&c, "mismatch"));
    cr_assert_null(flow_catalog_find(&c, "other"));
    cr_assert_null(flow_catalog_find(&c, "broken"));
    flow_catalog_done(&c);
    flow_catalog_done(&c); /* twice is fine */
    test_rmdir(data);
}

Test(catalog, check_refs_scripts_and_workflows)
{
    char *data = test_tmpdir();
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/agents", data);
    cr_assert_eq(mkdir(dir, 0700), 0);
    write_file(dir, "good.lua", "local x = args.weight or 1\nreturn x * 2\n");
    write_file(dir, "bad.lua", "local x = \nreturn x +\n");
    FlowCatalog c = { 0 };
    Err e = { 0 };
    cr_assert_eq(flow_catalog_load(data, &c, NULL, NULL, &e), 0);
    FlowWorkflow *w = parse_ok("name: refs\non: {event: a.b}\nsteps:\n"
                               "  - {id: a, do: lua, with: {script: good}}\n"
                               "  - {id: b, do: lua, with: {script: bad}}\n"
                               "  - {id: c, do: lua, with: {script: missing}}\n"
                               "  - {id: d, do: task.start, with: {workflow: lead-from-form}}\n"
                               "  - {id: f, do: task.start, with: {workflow: nowhere}}\n");
    cr_assert_eq(flow_workflow_check_refs(w, data, &c, &e), ERR_INVAL);
    cr_assert(strstr(e.msg, "t.yaml: steps[1].with.script: agents/bad.lua:"), "%s", e.msg);
    cr_assert(strstr(e.msg, "\nt.yaml: steps[2].with.script: no script DATA/agents/missing.lua\n"),
              "%s", e.msg);
    cr_assert(strstr(e.msg, "\nt.yaml: steps[4].with.workflow: no workflow named 'nowhere'"),
              "%s", e.msg);
    cr_assert_null(strstr(e.msg, "steps[0]"), "%s", e.msg);
    cr_assert_null(strstr(e.msg, "steps[3]"), "%s", e.msg);
    flow_workflow_free(w);
    w = parse_ok("name: refs\non: {event: a.b}\nsteps:\n"
                 "  - {id: a, do: lua, with: {script: good}}\n"
                 "  - {id: d, do: task.start, with: {workflow: lead-from-form}}\n");
    cr_assert_eq(flow_workflow_check_refs(w, data, &c, &e), 0, "%s", e.msg);
    flow_workflow_free(w);
    flow_catalog_done(&c);
    test_rmdir(data);
}

/* ---- gates and effects ------------------------------------------------- */

static const char *gated_yaml =
    "name: gated\n"
    "on: {event: lead.created}\n"
    "steps:\n"
    "  - id: mail\n"
    "    do: email.send\n"
    "    with: {to: \"{{ event.data.email }}\", subject: Hi, text: Hello}\n"
    "    purpose: marketing\n"
    "    approval:\n"
    "      policy: auto\n"
    "      min_confidence: 0.8\n"
    "      confidence: \"{{ 0.5 }}\"\n"
    "      deadline: 1h\n"
    "      on_deadline: escalate\n"
    "      on_reject: rejected\n"
    "  - id: hook\n"
    "    do: webhook.post\n"
    "    with: {url: \"https://example.com/x\", body: {a: 1}}\n"
    "    compensate: {do: webhook.post, with: {url: \"https://example.com/undo\", body: {}}}\n"
    "  - id: rejected\n"
    "    needs: [mail]\n"
    "    do: emit\n"
    "    with: {type: lead.rejected}\n";

Test(gates, approval_purpose_and_compensate_are_canonical)
{
    FlowWorkflow *w = NULL, *r = NULL;
    Err e = { 0 };
    cr_assert_eq(flow_workflow_parse(gated_yaml, strlen(gated_yaml), "g.yaml", &w, &e), 0, "%s",
                 e.msg);
    const json_t *a = w->steps[0].approval;
    cr_assert_not_null(a);
    cr_assert_str_eq(json_string_value(json_object_get(a, "policy")), "auto");
    cr_assert_float_eq(json_number_value(json_object_get(a, "min_confidence")), 0.8, 1e-9);
    cr_assert_eq(json_integer_value(json_object_get(a, "deadline_ms")), 3600000);
    cr_assert_str_eq(json_string_value(json_object_get(a, "on_deadline")), "escalate");
    cr_assert_str_eq(json_string_value(json_object_get(a, "on_reject")), "rejected");
    cr_assert_str_eq(w->steps[0].purpose, "marketing");
    /* an effect step without `approval` asks: policy always */
    cr_assert_str_eq(json_string_value(json_object_get(w->steps[1].approval, "policy")), "always");
    cr_assert_str_eq(json_string_value(json_object_get(w->steps[1].compensate, "do")),
                     "webhook.post");
    cr_assert_null(w->steps[2].approval, "an emit step has no gate");
    cr_assert(flow_kind_is_effect("email.send") && flow_kind_is_effect("webhook.post") &&
              !flow_kind_is_effect("approval") && !flow_kind_is_effect("emit"));
    /* the stored definition gives the same workflow and version */
    cr_assert_eq(flow_workflow_from_json(w->definition, &r, &e), 0, "%s", e.msg);
    cr_assert_str_eq(r->version, w->version);
    cr_assert(json_equal(r->steps[0].approval, a));
    cr_assert(json_equal(r->steps[1].compensate, w->steps[1].compensate));
    cr_assert_str_eq(r->steps[0].purpose, "marketing");
    flow_workflow_free(r);
    /* and each of them is part of the version */
    const char *edits[][2] = { { "policy: auto", "policy: always" },
                               { "purpose: marketing", "purpose: transactional" },
                               { "/undo", "/undo2" } };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        const char *at = strstr(gated_yaml, edits[i][0]);
        Buf y;
        buf_init(&y, 0);
        buf_append(&y, gated_yaml, (size_t)(at - gated_yaml));
        buf_puts(&y, edits[i][1]);
        buf_puts(&y, at + strlen(edits[i][0]));
        FlowWorkflow *c = NULL;
        cr_assert_eq(flow_workflow_parse(y.ptr, y.len, "g.yaml", &c, &e), 0, "%s", e.msg);
        cr_assert_str_neq(c->version, w->version, "'%s' kept the version", edits[i][1]);
        flow_workflow_free(c);
        buf_done(&y);
    }
    flow_workflow_free(w);
}

/* A goal's composed graph goes through the workflow validator: a good one
 * becomes the workflow goal-ID on goal.approved; a bad one is refused with
 * every problem, by path, without positions in a document the operator
 * never saw; no effect may turn its approval off. */
Test(flow_workflow, goal_graph_composed_and_refused)
{
    json_t *g = NULL;
    Err err = { 0 };
    const char *good = "{\"description\": \"Note it.\", \"steps\": ["
                       "{\"id\": \"a\", \"do\": \"model.summarize\", \"with\": {\"text\": \"x\"}},"
                       "{\"id\": \"b\", \"do\": \"wait\", \"needs\": [\"a\"],"
                       " \"with\": {\"duration\": \"1h\"}}]}";
    cr_assert_eq(core_json_parse(good, strlen(good), &g, &err), 0, "%s", err.msg);
    FlowWorkflow *w = NULL;
    cr_assert_eq(flow__goal_compose("01ABCDEFGHJKMNPQRSTVWXYZ00", "note it", g, NULL, NULL, &w, &err),
                 0, "%s", err.msg);
    cr_assert_str_eq(w->name, "goal-01abcdefghjkmnpqrstvwxyz00");
    cr_assert_str_eq(w->on_event, "goal.approved");
    cr_assert_str_eq(w->description, "Note it.");
    cr_assert_eq(w->n_steps, 2);
    /* the stored definition validates again, to the same version */
    FlowWorkflow *again = NULL;
    cr_assert_eq(flow_workflow_from_json(w->definition, &again, &err), 0, "%s", err.msg);
    cr_assert_str_eq(again->version, w->version);
    flow_workflow_free(again);
    flow_workflow_free(w);
    json_decref(g);

    static const struct {
        const char *graph, *want;
    } bad[] = {
        { "[]", "plan: the graph must be an object with 'steps'" },
        { "{\"description\": \"x\"}", "plan: steps: required" },
        { "{\"steps\": [{\"id\": \"a\", \"do\": \"send_mail\"}]}",
          "plan: steps[0].do: unknown step kind 'send_mail'" },
        { "{\"steps\": [{\"id\": \"a\", \"do\": \"emit\", \"needs\": [\"b\"], \"with\": {\"type\": \"x.y\"}},"
          " {\"id\": \"b\", \"do\": \"emit\", \"needs\": [\"a\"], \"with\": {\"type\": \"x.z\"}}]}",
          "needs form a cycle" },
        { "{\"steps\": [{\"id\": \"m\", \"do\": \"email.send\", \"with\": {\"to\": \"a@b.example\","
          " \"subject\": \"s\", \"text\": \"t\"}, \"approval\": {\"policy\": \"auto\", \"min_confidence\": 0.5}}]}",
          "plan: steps[0].approval.policy: 'auto'" },
        /* what would start workflows (with gates of their own) or send
         * after the approval without asking again */
        { "{\"steps\": [{\"id\": \"s\", \"do\": \"model.summarize\", \"with\": {\"text\": \"x\"}},"
          " {\"id\": \"e\", \"do\": \"emit\", \"with\": {\"type\": \"form.submitted\"}}]}",
          "plan: steps[1].do: 'emit' (step 'e')" },
        { "{\"steps\": [{\"id\": \"t\", \"do\": \"task.start\", \"with\": {\"workflow\": \"x\"}}]}",
          "plan: steps[0].do: 'task.start' (step 't')" },
        { "{\"steps\": [{\"id\": \"h\", \"do\": \"webhook.post\","
          " \"with\": {\"url\": \"https://a.example/\", \"body\": {}}, \"compensate\": {\"do\": \"webhook.post\", \"with\": {\"url\":"
          " \"https://b.example/\", \"body\": {}}}}]}",
          "plan: steps[0].compensate (step 'h')" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        g = NULL;
        cr_assert_eq(core_json_parse(bad[i].graph, strlen(bad[i].graph), &g, &err), 0);
        w = NULL;
        Err e = { 0 };
        cr_assert_eq(flow__goal_compose("01ABCDEFGHJKMNPQRSTVWXYZ00", "x", g, NULL, NULL, &w, &e),
                     ERR_INVAL, "case %zu was accepted", i);
        cr_assert_null(w);
        cr_assert(strstr(e.msg, bad[i].want), "case %zu: '%s' not in: %s", i, bad[i].want, e.msg);
        cr_assert_null(strstr(e.msg, "plan:1"), "case %zu: a position: %s", i, e.msg);
        json_decref(g);
    }
}
