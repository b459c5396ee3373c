/* Goals (goals.h): from the operator's words to a proposal in the inbox,
 * and from an approved proposal to the event the planner starts a task on.
 *
 * The invariant: no task exists for a goal before the operator approved it.
 * The proposal is an approval (kind "goal") in the one inbox; approving it
 * appends approval.decided and goal.approved in one request, and only the
 * planner (engine.c), on goal.approved, appends task.created. A composed
 * graph is checked by the workflow validator when it is proposed and again
 * when it is approved (an edit may change it), so nothing the validator
 * refuses ever reaches the ledger as a definition. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "flow/effects.h"
#include "flow/engine_int.h"
#include "core/json.h"
#include "flow/goals.h"
#include "flow/workflow_int.h"
#include "model/local.h"

#define GOAL_ROUTE "plan"
#define GOAL_DOC_MAX (16 * 1024)  /* bytes of one workflow's text for matching */
#define GOAL_DESCRIPTION_MAX 500  /* bytes of a composed graph's description */
#define GOAL_TITLE_MAX 100        /* bytes of the goal in the inbox title */
#define GOAL_PLAN_TOKENS 2000     /* output budget of a plan (a composed graph fits) */

static const char *str(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* Keys of goal.approved's data that are the goal's own; an input key of
 * the same name is left out of the trigger data (it stays in task.input). */
static bool reserved_key(const char *k)
{
    static const char *const keys[] = { "goal", "approval", "workflow", "kind", "version",
                                        "definition", "by", "input", NULL };
    for (int i = 0; keys[i]; i++)
        if (!strcmp(k, keys[i]))
            return true;
    return false;
}

/* n bytes of s at most, cut back to a UTF-8 character boundary. */
static size_t utf8_cut(const char *s, size_t n)
{
    size_t len = strlen(s);
    if (len <= n)
        return len;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

void flow__goal_workflow_name(const char *goal, char out[FLOW_NAME_MAX + 1])
{
    size_t n = snprintf(out, FLOW_NAME_MAX + 1, "goal-%s", goal);
    for (size_t i = 0; i < n && out[i]; i++)
        if (out[i] >= 'A' && out[i] <= 'Z')
            out[i] = (char)(out[i] - 'A' + 'a');
}

/* ---- the catalog in words ---------------------------------------------- */

/* The comment lines that open a workflow file (its documentation),
 * without the '#'. */
static void file_comments(const char *text, size_t len, Buf *out)
{
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n == 0 || p[0] != '#')
            break;
        buf_append(out, p + 1, n - 1);
        buf_putc(out, ' ');
        p += n + 1;
    }
}

/* The text of the file a workflow came from: a built-in's embedded file or
 * DATA/workflows/NAME.yaml (at most FLOW_WORKFLOW_MAX_BYTES). */
static void workflow_comments(const FlowWorkflow *w, Buf *out)
{
    if (w->builtin) {
        for (size_t i = 0; i < flow__builtins_count; i++) {
            const EmbeddedFile *f = &flow__builtins[i];
            size_t n = strlen(w->name);
            if (!strncmp(f->name, w->name, n) && !strcmp(f->name + n, ".yaml"))
                file_comments(f->data, f->len, out);
        }
        return;
    }
    FILE *fp = w->path ? fopen(w->path, "rb") : NULL;
    if (!fp)
        return;
    char *text = xmalloc(FLOW_WORKFLOW_MAX_BYTES + 1);
    size_t n = fread(text, 1, FLOW_WORKFLOW_MAX_BYTES, fp);
    fclose(fp);
    file_comments(text, n, out);
    free(text);
}

static void trigger_text(const FlowWorkflow *w, Buf *out)
{
    if (w->on_schedule)
        buf_printf(out, "on schedule %s%s%s", w->on_schedule, w->timezone ? " " : "",
                   w->timezone ? w->timezone : "");
    else
        buf_printf(out, "on event %s", w->on_event ? w->on_event : "?");
}

/* What the local tier matches a goal against: the name (as words) and the
 * description, twice (they say what the workflow is for), the file's
 * opening comments, the trigger and the steps. */
static char *workflow_doc(const FlowWorkflow *w)
{
    Buf b;
    buf_init(&b, GOAL_DOC_MAX);
    for (int rep = 0; rep < 2; rep++) {
        for (const char *p = w->name; *p; p++)
            buf_putc(&b, *p == '-' || *p == '_' ? ' ' : *p);
        buf_puts(&b, ". ");
        if (w->description)
            buf_printf(&b, "%s ", w->description);
    }
    workflow_comments(w, &b);
    buf_putc(&b, ' ');
    trigger_text(w, &b);
    for (size_t i = 0; i < w->n_steps; i++) {
        buf_printf(&b, " %s %s", w->steps[i].id, w->steps[i].kind);
    }
    for (char *p = b.ptr; p && *p; p++) /* event types and kinds as words */
        if (*p == '.' || *p == '_')
            *p = ' ';
    return buf_steal(&b);
}

/* ---- composing a graph -------------------------------------------------- */

/* "plan:LINE:COL: rest" lines -> "plan: rest": the document the validator
 * read was made here, so its positions mean nothing to the operator; the
 * paths (steps[1].do) do. */
static char *strip_positions(const char *report)
{
    Buf b;
    buf_init(&b, 0);
    const char *p = report;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        const char *q = p;
        if (!strncmp(q, "plan:", 5)) {
            const char *r = q + 5;
            while (r < p + n && *r >= '0' && *r <= '9')
                r++;
            if (*r == ':') {
                r++;
                while (r < p + n && *r >= '0' && *r <= '9')
                    r++;
                if (*r == ':') {
                    buf_puts(&b, "plan:");
                    q = r + 1;
                }
            }
        }
        buf_append(&b, q, (size_t)(p + n - q));
        if (!nl)
            break;
        buf_putc(&b, '\n');
        p = nl + 1;
    }
    return buf_steal(&b);
}

/* Kinds a goal's graph may not use: they start workflows (task.start
 * directly, emit through an event some workflow is triggered by) whose own
 * gates may be auto or never, out of the operator's sight. */
static bool kind_refused(const char *kind)
{
    return !strcmp(kind, "task.start") || !strcmp(kind, "emit");
}

int flow__goal_graph_check(const FlowWorkflow *w, Err *err)
{
    /* Whatever the graph says, what it would send waits for the operator:
     * a planner must not be able to turn an approval off or get around it. */
    Buf b;
    buf_init(&b, 0);
    for (size_t i = 0; i < w->n_steps; i++) {
        const FlowStepDef *s = &w->steps[i];
        const char *policy = json_string_value(json_object_get(s->approval, "policy"));
        if ((flow_kind_is_effect(s->kind) || !strcmp(s->kind, "approval")) && policy &&
            strcmp(policy, "always"))
            buf_printf(&b, "%splan: steps[%zu].approval.policy: '%s': a goal's graph asks "
                           "the operator before anything leaves (policy always)",
                       b.len ? "\n" : "", i, policy);
        if (kind_refused(s->kind))
            buf_printf(&b, "%splan: steps[%zu].do: '%s' (step '%s'): a goal's graph may not "
                           "start workflows or append events (what they start would not wait "
                           "for this approval); name a workflow of the catalog instead",
                       b.len ? "\n" : "", i, s->kind, s->id);
        if (s->compensate)
            buf_printf(&b, "%splan: steps[%zu].compensate (step '%s'): a goal's graph may not "
                           "set a compensation (it would be sent without asking again)",
                       b.len ? "\n" : "", i, s->id);
    }
    if (b.len) {
        err_set(err, ERR_INVAL, "%s", buf_cstr(&b));
        buf_done(&b);
        return ERR_INVAL;
    }
    buf_done(&b);
    return 0;
}

int flow__goal_compose(const char *goal, const char *text, const json_t *graph,
                       const char *data_dir, const FlowCatalog *cat, FlowWorkflow **ret,
                       Err *err)
{
    if (!json_is_object(graph))
        return err_set(err, ERR_INVAL, "plan: the graph must be an object with 'steps'");
    const json_t *steps = json_object_get(graph, "steps");
    const json_t *desc = json_object_get(graph, "description");
    if (!steps)
        return err_set(err, ERR_INVAL, "plan: steps: required (a list of {id, do, with, needs})");
    if (desc && !json_is_null(desc) && !json_is_string(desc))
        return err_set(err, ERR_INVAL, "plan: description: must be a string");
    char name[FLOW_NAME_MAX + 1];
    flow__goal_workflow_name(goal, name);
    const char *d = json_is_string(desc) && json_string_length(desc) ? json_string_value(desc)
                                                                     : text;
    json_t *dj = json_stringn(d, utf8_cut(d, GOAL_DESCRIPTION_MAX));
    json_t *doc = json_pack("{s:s, s:o, s:{s:s}, s:O}", "name", name, "description",
                            dj ? dj : json_string(""), "on", "event", "goal.approved", "steps",
                            steps);
    char *yaml = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(doc);
    if (!yaml)
        return err_set(err, ERR_INVAL, "plan: the graph cannot be written out");
    FlowWorkflow *w = NULL;
    char *report = NULL;
    flow_step_kinds_builtin();
    int rc = flow_workflow_parse_report(yaml, strlen(yaml), "plan", &w, &report, err);
    free(yaml);
    if (rc < 0) {
        if (report) {
            char *clean = strip_positions(report);
            err_set(err, ERR_INVAL, "%s", clean);
            free(clean);
        } else if (err->code != ERR_TOOBIG) {
            char *clean = strip_positions(err->msg);
            err_set(err, ERR_INVAL, "%s", clean);
            free(clean);
        }
        free(report);
        return err->code ? err->code : ERR_INVAL;
    }
    free(report);
    if (flow__goal_graph_check(w, err) < 0) {
        flow_workflow_free(w);
        return ERR_INVAL;
    }
    if ((data_dir || cat) && flow_workflow_check_refs(w, data_dir, cat, err) < 0) {
        flow_workflow_free(w);
        return err->code;
    }
    *ret = w;
    return 0;
}

/* ---- the proposal ------------------------------------------------------- */

static char *plan_prompt(const char *text, const FlowCatalog *cat, const json_t *kinds)
{
    Buf b;
    buf_init(&b, 0);
    buf_printf(&b, "Goal: %s\n\nWorkflows you may start (name: what it does; trigger):\n", text);
    for (size_t i = 0; i < cat->n; i++) {
        const FlowWorkflow *w = cat->items[i];
        buf_printf(&b, "- %s: %s; ", w->name, w->description ? w->description : "");
        trigger_text(w, &b);
        buf_putc(&b, '\n');
    }
    buf_puts(&b, "\nStep kinds for a new graph (kind: what it does and its `with` inputs):\n");
    size_t i;
    const json_t *k;
    json_array_foreach(kinds, i, k) if (!kind_refused(str(k, "kind")))
        buf_printf(&b, "- %s: %s\n", str(k, "kind"), str(k, "inputs") ? str(k, "inputs") : "");
    buf_puts(&b,
             "\nAnswer with one JSON object, either\n"
             "  {\"workflow\": \"NAME\", \"input\": {...}} to start one workflow above (input"
             " becomes its trigger event's data), or\n"
             "  {\"description\": \"...\", \"steps\": [{\"id\": \"a\", \"do\": \"KIND\","
             " \"with\": {...}, \"needs\": [\"ID\"]}]} to compose a new task graph of the step"
             " kinds above.\n"
             "Step ids are 1-64 of a-z, 0-9, - and _. A step without needs runs after the step"
             " before it. Strings in with may hold {{ lua }}: event.data.text is the goal,"
             " steps.ID.output the output of an earlier step. Every mail and webhook waits for"
             " the operator's approval by itself; a new graph keeps every approval policy"
             " always and sets no compensate."
             " To start a workflow, name it (the first form).\n");
    return buf_steal(&b);
}

static const char *plan_system =
    "You are the planner of Bureau, the operating system of a one-person company. You turn "
    "the operator's goal into a task graph of known workflows and step kinds. The operator "
    "approves your plan before anything runs.";

static json_t *plan_schema(void)
{
    return json_pack("{s:s, s:{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}}}", "type", "object",
                     "properties", "workflow", "type", "string", "input", "type", "object",
                     "description", "type", "string", "steps", "type", "array");
}

/* The trigger data a matched workflow gets from the goal: the text (as
 * text, message and subject), and the first email address in it. */
static json_t *default_input(const char *text)
{
    json_t *in = json_pack("{s:s, s:s}", "text", text, "message", text);
    const char *nl = strchr(text, '\n');
    size_t n = utf8_cut(text, 120);
    if (nl && (size_t)(nl - text) < n)
        n = (size_t)(nl - text);
    json_object_set_new(in, "subject", json_stringn(text, n));
    json_t *x = NULL;
    Err e = { 0 };
    if (local_extract(text, strlen(text), core_time_now_ms(), &x, &e) == 0) {
        const char *email = json_string_value(json_array_get(json_object_get(x, "emails"), 0));
        if (email)
            json_object_set_new(in, "email", json_string(email));
    }
    json_decref(x);
    return in;
}

static json_t *steps_summary(const FlowWorkflow *w)
{
    json_t *list = json_array();
    for (size_t i = 0; i < w->n_steps; i++) {
        char line[2 * FLOW_NAME_MAX + 8];
        snprintf(line, sizeof line, "%s: %s", w->steps[w->order[i]].id, w->steps[w->order[i]].kind);
        json_array_append_new(list, json_string(line));
    }
    return list;
}

typedef struct Plan {
    const char *goal, *text, *by;
    const ModelResult *res;
    json_t *proposed;  /* goal.proposed data, or NULL */
    json_t *preview;   /* the approval's preview */
    json_t *refused;   /* goal.refused data, or NULL */
} Plan;

static void refuse(Plan *p, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void refuse(Plan *p, const char *reason, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->refused = json_pack("{s:s, s:s, s:s}", "goal", p->goal, "reason", reason, "error", msg);
    if (p->res && p->res->provider[0]) {
        json_object_set_new(p->refused, "provider", json_string(p->res->provider));
        json_object_set_new(p->refused, "model", json_string(p->res->model));
        json_object_set_new(p->refused, "cost_usd", json_real(p->res->cost_usd));
    }
}

/* A model's score or confidence as a number in [0, 1] (a model may say
 * 7 or -1), or NULL when it gave none. */
static json_t *unit_score(const json_t *v)
{
    if (!json_is_number(v))
        return NULL;
    double x = json_number_value(v);
    return json_real(isnan(x) || x < 0 ? 0 : x > 1 ? 1 : x);
}

/* A workflow of the catalog, named by the model or matched by the local
 * tier. */
static void propose_match(Plan *p, const FlowWorkflow *w, const json_t *out)
{
    json_t *input = default_input(p->text);
    const json_t *given = json_object_get(out, "input");
    const char *k;
    json_t *v;
    size_t n = json_object_size(input);
    json_object_foreach((json_t *)given, k, v) {
        if (reserved_key(k) || n >= FLOW_GOAL_INPUT_MAX)
            continue;
        json_object_set(input, k, v);
        n = json_object_size(input);
    }
    json_t *score = unit_score(json_object_get(out, "score"));
    if (!score)
        score = unit_score(json_object_get(out, "confidence"));
    Buf trig;
    buf_init(&trig, 0);
    trigger_text(w, &trig);
    p->preview = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:s, s:o, s:O}", "goal", p->goal,
                           "text", p->text, "kind", "workflow", "workflow", w->name, "version",
                           w->version, "description", w->description, "trigger", buf_cstr(&trig),
                           "steps", steps_summary(w), "input", input);
    buf_done(&trig);
    p->proposed = json_pack("{s:s, s:s, s:s, s:s, s:o}", "goal", p->goal, "kind", "workflow",
                            "workflow", w->name, "version", w->version, "input", input);
    if (score) {
        json_object_set(p->preview, "score", score);
        json_object_set(p->proposed, "score", score);
        json_decref(score);
    }
    /* The task will start without asking the workflow's `where` (the
     * operator chose it); say when the goal's data would not pass it. */
    if (w->on_where) {
        FlowLua *L = NULL;
        Err le = { 0 };
        bool yes = false;
        json_t *env = json_pack("{s:{s:s, s:O}}", "event", "type", "goal.approved", "data",
                                input);
        if (flow_lua_new(NULL, &L, &le) == 0 &&
            (flow_lua_test(L, w->on_where, "on.where", env, &yes, &le) < 0 || !yes)) {
            char warn[600];
            snprintf(warn, sizeof warn,
                     "the workflow's trigger condition does not hold for this input (%.300s): "
                     "edit the input, or its steps run without what they expect",
                     w->on_where);
            json_object_set_new(p->preview, "warning", json_string(warn));
        }
        flow_lua_free(L);
        json_decref(env);
    }
    /* The operator approves the workflow, not each of its effects: say
     * which of them would not wait for a decision of their own. */
    Buf gates;
    buf_init(&gates, 0);
    json_t *policies = json_array();
    for (size_t i = 0; i < w->n_steps; i++) {
        const FlowStepDef *s = &w->steps[i];
        if (!flow_kind_is_effect(s->kind) && strcmp(s->kind, "approval"))
            continue;
        const char *policy = json_string_value(json_object_get(s->approval, "policy"));
        policy = policy ? policy : "always";
        json_array_append_new(policies, json_pack("{s:s, s:s, s:s}", "step", s->id, "kind",
                                                  s->kind, "policy", policy));
        if (strcmp(policy, "always"))
            buf_printf(&gates, "%s%s (%s, policy %s)", gates.len ? ", " : "", s->id, s->kind,
                       policy);
    }
    if (json_array_size(policies))
        json_object_set_new(p->preview, "approvals", policies);
    else
        json_decref(policies);
    if (gates.len) {
        const char *prev = json_string_value(json_object_get(p->preview, "warning"));
        char warn[1400];
        snprintf(warn, sizeof warn,
                 "%s%sthese steps of the workflow do not always ask before they act: %.900s",
                 prev ? prev : "", prev ? "; " : "", buf_cstr(&gates));
        json_object_set_new(p->preview, "warning", json_string(warn));
    }
    buf_done(&gates);
    if (json_object_get(out, "ranking")) {
        json_object_set(p->preview, "ranking", json_object_get(out, "ranking"));
        json_object_set(p->proposed, "ranking", json_object_get(out, "ranking"));
    }
}

static void propose_graph(Plan *p, const FlowWorkflow *w, const json_t *out)
{
    const json_t *desc = json_object_get(w->definition, "description");
    p->preview = json_pack("{s:s, s:s, s:s, s:s, s:s, s:O, s:O}", "goal", p->goal, "text",
                           p->text, "kind", "composed", "workflow", w->name, "version",
                           w->version, "description", desc ? desc : json_null(), "steps",
                           json_object_get(out, "steps"));
    p->proposed = json_pack("{s:s, s:s, s:s, s:s, s:O}", "goal", p->goal, "kind", "composed",
                            "workflow", w->name, "version", w->version, "definition",
                            w->definition);
    json_t *conf = unit_score(json_object_get(out, "confidence"));
    if (conf)
        json_object_set_new(p->proposed, "score", conf);
}

static void plan_outcome(Plan *p, const char *data_dir, const FlowCatalog *cat)
{
    const ModelResult *res = p->res;
    if (res->status != MODEL_CALL_OK) {
        refuse(p, "model", "the plan route gave no plan: %s",
               res->error[0] ? res->error : "no answer");
        return;
    }
    const json_t *out = res->output;
    if (!json_is_object(out)) {
        refuse(p, "model", "the plan route answered %s, not a JSON object",
               core_json_type_name(out));
        return;
    }
    const json_t *steps = json_object_get(out, "steps");
    const char *name = str(out, "workflow");
    if (steps && !json_is_null(steps)) {
        FlowWorkflow *w = NULL;
        Err e = { 0 };
        if (flow__goal_compose(p->goal, p->text, out, data_dir, cat, &w, &e) < 0) {
            refuse(p, "invalid", "%s", e.msg);
            json_object_set(p->refused, "graph", (json_t *)out);
            return;
        }
        propose_graph(p, w, out);
        flow_workflow_free(w);
        return;
    }
    if (name) {
        const FlowWorkflow *w = flow_catalog_find(cat, name);
        if (!w) {
            refuse(p, "invalid", "the plan names no workflow of the catalog: '%.64s'", name);
            return;
        }
        propose_match(p, w, out);
        return;
    }
    /* the local tier's "nothing is close enough" */
    const json_t *rank = json_object_get(out, "ranking");
    if (!json_is_array(rank)) {
        refuse(p, "invalid", "the plan names neither a workflow nor steps");
        return;
    }
    const json_t *best = json_array_get(rank, 0);
    if (best)
        refuse(p, "no_match",
               "no workflow matches this goal (the closest, %s, scores %.3f, below %.3f); "
               "say it with the words of a workflow's description, or give the plan route a "
               "model that composes new graphs (docs/goals.md)",
               str(best, "workflow"), json_number_value(json_object_get(best, "score")),
               json_number_value(json_object_get(out, "threshold")));
    else
        refuse(p, "no_match", "no workflow matches this goal (the catalog is empty)");
    json_object_set(p->refused, "ranking", (json_t *)rank);
    json_object_set_new(p->refused, "score",
                        json_real(json_number_value(json_object_get(best, "score"))));
}

static int append_events(Ledger *l, Event **evs, size_t n, Err *err)
{
    LedgerAppendResult r[4];
    int rc = ledger_append(l, evs, n, r, err);
    return rc;
}

static int event_new(Ledger *l, const char *type, json_t *data, const char *key, Event **ret,
                     Err *err)
{
    int rc = ledger_event_new(type, "operator", NULL, data, key, ledger_limits(l), ret, err);
    json_decref(data);
    return rc;
}

int flow_goal_submit(Ledger *l, Store *rd, ModelRouter *router, const char *data_dir,
                     const char *text, const char *by, json_t **ret, Err *err)
{
    while (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r')
        text++;
    size_t len = strlen(text);
    while (len && (text[len - 1] == ' ' || text[len - 1] == '\t' || text[len - 1] == '\n' ||
                   text[len - 1] == '\r'))
        len--;
    if (len == 0)
        return err_set(err, ERR_INVAL, "text: empty: say what you want done");
    if (len > FLOW_GOAL_TEXT_MAX)
        return err_set(err, ERR_INVAL, "text: %zu bytes, more than %d", len, FLOW_GOAL_TEXT_MAX);
    json_t *tj = json_stringn(text, len);
    if (!tj)
        return err_set(err, ERR_INVAL, "text: not valid UTF-8");
    /* the catalog first: a goal that cannot be planned is not recorded
     * (once submitted, it is always proposed or refused) */
    FlowCatalog cat = { 0 };
    flow_step_kinds_builtin();
    int rc = flow_catalog_load(data_dir, &cat, NULL, NULL, err);
    if (rc < 0) {
        json_decref(tj);
        return rc;
    }
    char goal[CORE_ULID_LEN + 1];
    core_ulid_new(goal);
    Event *ev = NULL;
    rc = event_new(l, "goal.submitted", json_pack("{s:s, s:O, s:s}", "goal", goal, "text", tj,
                                                  "by", by),
                   NULL, &ev, err);
    if (rc == 0)
        rc = append_events(l, &ev, 1, err);
    if (rc < 0) {
        flow_catalog_done(&cat);
        json_decref(tj);
        return rc;
    }
    const char *t = json_string_value(tj);
    json_t *wfs = json_array();
    for (size_t i = 0; i < cat.n; i++) {
        const FlowWorkflow *w = cat.items[i];
        char *doc = workflow_doc(w);
        Buf sum;
        buf_init(&sum, 0);
        for (const char *c = w->name; *c; c++)
            buf_putc(&sum, *c == '-' || *c == '_' ? ' ' : *c);
        buf_printf(&sum, ". %s", w->description ? w->description : "");
        json_array_append_new(wfs, json_pack("{s:s, s:s, s:s}", "name", w->name, "text", doc,
                                             "summary", buf_cstr(&sum)));
        buf_done(&sum);
        free(doc);
    }
    json_t *context = json_pack("{s:s, s:o}", "goal", t, "workflows", wfs);
    json_t *kinds = flow_step_kinds_describe();
    char *prompt = plan_prompt(t, &cat, kinds);
    json_t *schema = plan_schema();
    ModelCall call = { .route = GOAL_ROUTE, .force = true,
                       .req = { .task = GOAL_ROUTE, .system = plan_system, .prompt = prompt,
                                .schema = schema, .context = context,
                                .max_output_tokens = GOAL_PLAN_TOKENS } };
    ModelResult res = { 0 };
    Err cerr = { 0 };
    if (model_router_call(router, rd, &call, &res, &cerr) < 0) {
        res.status = MODEL_CALL_FAILED;
        snprintf(res.error, sizeof res.error, "%s", cerr.msg);
    }
    Plan p = { .goal = goal, .text = t, .by = by, .res = &res };
    plan_outcome(&p, data_dir, &cat);

    Event *evs[2] = { 0 };
    size_t n = 0;
    if (p.proposed) {
        char approval[CORE_ULID_LEN + 1], key[128], mode[FLOW_MODE_MAX];
        snprintf(key, sizeof key, "approval:goal:%s", goal);
        flow__gate_id('a', key, approval);
        Err merr = { 0 };
        flow_mode_get(rd, mode, &merr); /* "sandbox" when it cannot be read */
        json_object_set_new(p.proposed, "approval", json_string(approval));
        json_object_set_new(p.proposed, "provider", json_string(res.provider));
        json_object_set_new(p.proposed, "model", json_string(res.model));
        json_object_set_new(p.proposed, "cost_usd", json_real(res.cost_usd));
        char title[GOAL_TITLE_MAX + 16];
        size_t cut = utf8_cut(t, GOAL_TITLE_MAX);
        snprintf(title, sizeof title, "Goal: %.*s%s", (int)cut, t, cut < strlen(t) ? "…" : "");
        json_t *a = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:O, s:s, s:s, s:s, s:s, s:f}",
                              "approval", approval, "task", goal, "step", "goal", "attempt", 1,
                              "kind", "goal", "goal", goal, "preview", p.preview, "policy",
                              "always", "mode", mode, "title", title, "model", res.model, "cost",
                              res.cost_usd);
        const json_t *score = json_object_get(p.proposed, "score");
        if (json_is_number(score)) {
            json_object_set_new(a, "confidence", json_real(json_number_value(score)));
            json_object_set_new(a, "confidence_source",
                                json_string(strcmp(res.provider, "local")
                                                ? "the plan route's model"
                                                : "similarity of the goal to the workflow"));
        }
        snprintf(key, sizeof key, "goal.proposed:%s", goal);
        rc = event_new(l, "goal.proposed", json_incref(p.proposed), key, &evs[n], err);
        if (rc == 0)
            n++;
        snprintf(key, sizeof key, "approval.requested:goal:%s", goal);
        if (rc == 0) {
            if ((rc = event_new(l, "approval.requested", a, key, &evs[n], err)) == 0)
                n++;
        } else {
            json_decref(a);
        }
        if (rc < 0 && err->code == ERR_TOOBIG) {
            /* a graph too large for the ledger is refused, not lost */
            for (size_t i = 0; i < n; i++)
                ledger_event_free(evs[i]);
            n = 0;
            refuse(&p, "invalid", "the plan is too large to record: %s", err->msg);
            rc = 0;
        }
    }
    if (rc == 0 && !n && p.refused) {
        char key[128];
        snprintf(key, sizeof key, "goal.refused:%s", goal);
        rc = event_new(l, "goal.refused", json_incref(p.refused), key, &evs[0], err);
        if (rc == ERR_TOOBIG && json_object_get(p.refused, "graph")) {
            /* the refusal is kept, without the oversized answer */
            json_object_del(p.refused, "graph");
            json_object_set_new(p.refused, "graph_omitted", json_string(err->msg));
            err->code = 0;
            rc = event_new(l, "goal.refused", json_incref(p.refused), key, &evs[0], err);
        }
        if (rc == 0)
            n = 1;
    }
    if (rc == 0 && n)
        rc = append_events(l, evs, n, err);
    else
        for (size_t i = 0; i < n; i++)
            ledger_event_free(evs[i]);
    if (rc == 0)
        rc = flow_goal_get(rd, goal, ret, err);
    if (rc == 0 && p.refused)
        json_object_set(*ret, "reason", json_object_get(p.refused, "reason"));
    if (rc == 0 && p.refused && !json_object_get(*ret, "graph") &&
        json_object_get(p.refused, "graph"))
        json_object_set(*ret, "graph", json_object_get(p.refused, "graph"));
    model_result_done(&res);
    json_decref(p.proposed);
    json_decref(p.preview);
    json_decref(p.refused);
    json_decref(schema);
    json_decref(kinds);
    json_decref(context);
    free(prompt);
    flow_catalog_done(&cat);
    json_decref(tj);
    return rc;
}

/* ---- the decision --------------------------------------------------------- */

int flow__goal_approved_event(const char *goal, const char *approval, const json_t *payload,
                              const char *by, const EventLimits *lim, Event **ret, Err *err)
{
    const char *kind = str(payload, "kind"), *text = str(payload, "text");
    if (!json_is_object(payload) || !kind)
        return err_set(err, ERR_INVAL, "payload.kind: required: workflow or composed");
    json_t *d = NULL;
    if (!strcmp(kind, "composed")) {
        FlowWorkflow *w = NULL;
        Err e = { 0 };
        if (flow__goal_compose(goal, text ? text : "", payload, NULL, NULL, &w, &e) < 0)
            return err_set(err, ERR_INVAL, "payload: %s", e.msg);
        d = json_pack("{s:s, s:s, s:s, s:s, s:s, s:O, s:s}", "goal", goal, "approval", approval,
                      "kind", kind, "workflow", w->name, "version", w->version, "definition",
                      w->definition, "by", by);
        flow_workflow_free(w);
    } else if (!strcmp(kind, "workflow")) {
        const char *name = str(payload, "workflow");
        const json_t *input = json_object_get(payload, "input");
        if (!name || !flow__name_ok(name))
            return err_set(err, ERR_INVAL, "payload.workflow: a workflow name is required");
        if (input && !json_is_object(input))
            return err_set(err, ERR_INVAL, "payload.input: must be an object");
        if (json_object_size(input) > FLOW_GOAL_INPUT_MAX)
            return err_set(err, ERR_INVAL, "payload.input: more than %d keys",
                           FLOW_GOAL_INPUT_MAX);
        d = json_object();
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)input, k, v) if (!reserved_key(k))
            json_object_set(d, k, v);
        json_object_set_new(d, "input", input ? json_incref((json_t *)input) : json_object());
        json_object_set_new(d, "goal", json_string(goal));
        json_object_set_new(d, "approval", json_string(approval));
        json_object_set_new(d, "kind", json_string(kind));
        json_object_set_new(d, "workflow", json_string(name));
        json_object_set_new(d, "by", json_string(by));
        /* the version the operator saw: the planner runs no other */
        const char *version = str(payload, "version");
        if (version)
            json_object_set_new(d, "version", json_string(version));
    } else {
        return err_set(err, ERR_INVAL, "payload.kind: '%.32s' is not workflow or composed", kind);
    }
    if (text && !json_object_get(d, "text"))
        json_object_set_new(d, "text", json_string(text));
    char key[128];
    snprintf(key, sizeof key, "goal.approved:%s", goal);
    int rc = ledger_event_new("goal.approved", "operator", NULL, d, key, lim, ret, err);
    json_decref(d);
    return rc;
}

/* ---- reading ------------------------------------------------------------ */

#define GOAL_COLS                                                                              \
    "g.id, g.text, g.status, g.kind, g.workflow, g.version, g.score, g.provider, g.model,"     \
    " g.cost_usd, g.approval_id, g.task_id, t.status, g.error, g.by_whom, g.decided_by,"       \
    " g.submitted_at, g.updated_at"

static json_t *real_col(StoreStmt *st, int col)
{
    return store_col_text(st, col, NULL) ? json_real(store_col_real(st, col)) : json_null();
}

static json_t *goal_json(StoreStmt *st)
{
    static const char *const names[] = { "id", "text", "status", "kind", "workflow", "version",
                                         NULL, "provider", "model", NULL, "approval", "task",
                                         "task_status", "error", "by", "decided_by",
                                         "submitted_at", "updated_at" };
    json_t *g = json_object();
    for (int i = 0; i < 18; i++) {
        if (i == 6)
            json_object_set_new(g, "score", real_col(st, i));
        else if (i == 9)
            json_object_set_new(g, "cost_usd", real_col(st, i));
        else
            json_object_set_new(g, names[i], flow__col_text(st, i));
    }
    return g;
}

int flow_goals_list(Store *rd, int64_t limit, json_t **ret, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT " GOAL_COLS " FROM goals g LEFT JOIN tasks t ON t.id = g.task_id"
                           " ORDER BY g.submitted_seq DESC LIMIT ?1",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_int(st, 1, limit > 0 ? limit : 100);
    json_t *list = json_array();
    while ((rc = store_step(st, err)) == STORE_ROW)
        json_array_append_new(list, goal_json(st));
    store_stmt_done(st);
    if (rc < 0) {
        json_decref(list);
        return rc;
    }
    *ret = list;
    return 0;
}

int flow_goal_get(Store *rd, const char *id, json_t **ret, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT " GOAL_COLS ", a.preview, a.payload, a.status"
                           " FROM goals g LEFT JOIN tasks t ON t.id = g.task_id"
                           " LEFT JOIN approvals a ON a.id = g.approval_id WHERE g.id = ?1",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, id, strlen(id));
    json_t *g = NULL;
    if ((rc = store_step(st, err)) == STORE_ROW) {
        g = goal_json(st);
        json_object_set_new(g, "proposal", flow__col_json(st, 18));
        json_object_set_new(g, "decided", flow__col_json(st, 19));
        json_object_set_new(g, "approval_status", flow__col_text(st, 20));
    }
    store_stmt_done(st);
    if (!g)
        return rc < 0 ? rc : err_set(err, ERR_NOTFOUND, "no goal '%.40s'", id);
    *ret = g;
    return 0;
}

/* ---- the "goals" projection --------------------------------------------- */

static const char *const tables[] = { "goals", NULL };

/* The task a goal's approval started: the planner's task.created on
 * goal.approved. */
static int apply_created(Store *tx, const Event *ev, Err *err)
{
    CoreJsonMember m[128];
    int n = core_json_members(ev->data, ev->data_len, m, 128);
    int64_t trigger = 0;
    if (n < 0 || !core_json_member_int(core_json_member(m, n, "trigger_seq"), &trigger))
        return 0;
    char *task = core_json_member_string(core_json_member(m, n, "task"));
    char *wf = core_json_member_string(core_json_member(m, n, "workflow"));
    int rc = store_execf(tx, err,
                         "UPDATE goals SET status = 'started', task_id = ?1, updated_at = ?2"
                         " WHERE approved_seq = ?3 AND status = 'approved' AND workflow = ?4",
                         "ssis", task, ev->received_at, trigger, wf);
    free(task);
    free(wf);
    return rc;
}

static int apply(Store *tx, const Event *ev, Err *err)
{
    const char *t = ev->type;
    bool goal = !strncmp(t, "goal.", 5), decided = !strcmp(t, "approval.decided");
    bool created = !strcmp(t, "task.created");
    if (!goal && !decided && !created)
        return 0;
    if (created) /* every task's: read without building a tree */
        return apply_created(tx, ev, err);
    json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (!d)
        return 0;
    const char *id = str(d, "goal"), *at = ev->received_at;
    int rc = 0;
    char score[32] = "", cost[32] = "";
    if (json_is_number(json_object_get(d, "score")))
        snprintf(score, sizeof score, "%.17g", json_number_value(json_object_get(d, "score")));
    if (json_is_number(json_object_get(d, "cost_usd")))
        snprintf(cost, sizeof cost, "%.17g", json_number_value(json_object_get(d, "cost_usd")));
    if (!id) {
        rc = 0;
    } else if (!strcmp(t, "goal.submitted")) {
        rc = store_execf(tx, err,
                         "INSERT OR IGNORE INTO goals(id, text, status, by_whom, submitted_seq,"
                         " submitted_at, updated_at) VALUES (?1, ?2, 'submitted', ?3, ?4, ?5, ?5)",
                         "sssis", id, str(d, "text") ? str(d, "text") : "", str(d, "by"),
                         ev->seq, at);
    } else if (!strcmp(t, "goal.proposed")) {
        rc = store_execf(tx, err,
                         "UPDATE goals SET status = 'proposed', kind = ?2, workflow = ?3,"
                         " version = ?4, score = CAST(nullif(?5, '') AS REAL), provider = ?6,"
                         " model = ?7, cost_usd = CAST(nullif(?8, '') AS REAL), approval_id = ?9,"
                         " updated_at = ?10 WHERE id = ?1 AND status = 'submitted'",
                         "ssssssssss", id, str(d, "kind"), str(d, "workflow"), str(d, "version"),
                         score, str(d, "provider"), str(d, "model"), cost, str(d, "approval"),
                         at);
    } else if (!strcmp(t, "goal.refused")) {
        rc = store_execf(tx, err,
                         "UPDATE goals SET status = 'refused', error = ?2, provider = ?3,"
                         " model = ?4, cost_usd = CAST(nullif(?5, '') AS REAL), updated_at = ?6"
                         " WHERE id = ?1 AND status = 'submitted'",
                         "ssssss", id, str(d, "error"), str(d, "provider"), str(d, "model"), cost,
                         at);
    } else if (decided) {
        if (!strcmp(str(d, "decision") ? str(d, "decision") : "", "reject"))
            rc = store_execf(tx, err,
                             "UPDATE goals SET status = 'rejected', decided_by = ?2, error = ?3,"
                             " updated_at = ?4 WHERE id = ?1 AND status = 'proposed'",
                             "ssss", id, str(d, "by"), str(d, "reason"), at);
    } else if (!strcmp(t, "goal.approved")) {
        rc = store_execf(tx, err,
                         "UPDATE goals SET status = 'approved', approved_seq = ?2, decided_by = ?3,"
                         " workflow = ?4, version = coalesce(?5, version), updated_at = ?6"
                         " WHERE id = ?1 AND status = 'proposed'",
                         "sissss", id, ev->seq, str(d, "by"), str(d, "workflow"),
                         str(d, "version"), at);
    } else if (!strcmp(t, "goal.failed")) {
        rc = store_execf(tx, err,
                         "UPDATE goals SET status = 'failed', error = ?2, updated_at = ?3"
                         " WHERE id = ?1 AND status = 'approved'",
                         "sss", id, str(d, "error"), at);
    }
    json_decref(d);
    return rc;
}

static const Projection goals_projection = {
    .name = "goals",
    .version = 1,
    .tables = tables,
    .apply = apply,
};

void flow__goals_projection_register(void)
{
    ledger_projection_register(&goals_projection);
}
