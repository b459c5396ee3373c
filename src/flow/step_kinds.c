/* The registry of step kinds (workflow.h) and the static checks of the
 * built-in kinds' inputs. A check names each input it refuses as
 * "with.KEY: message", one problem per line, so that the YAML loader can
 * place every line at that key. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow/flow_lua.h"
#include "flow/workflow.h"
#include "flow/workflow_int.h"
#include "ledger/event.h"

#define KINDS_MAX 64

static pthread_mutex_t kinds_lock = PTHREAD_MUTEX_INITIALIZER;
static const FlowStepKind *kinds[KINDS_MAX];
static size_t n_kinds;

void flow_step_kind_register(const FlowStepKind *k)
{
    pthread_mutex_lock(&kinds_lock);
    bool known = false;
    for (size_t i = 0; i < n_kinds; i++)
        known |= !strcmp(kinds[i]->name, k->name);
    if (!known) {
        if (n_kinds == KINDS_MAX) { /* a fixed set compiled in: a programmer error */
            fprintf(stderr, "flow: more than %d step kinds\n", KINDS_MAX);
            abort();
        }
        kinds[n_kinds++] = k;
    }
    pthread_mutex_unlock(&kinds_lock);
}

const FlowStepKind *flow_step_kind_find(const char *name)
{
    const FlowStepKind *k = NULL;
    pthread_mutex_lock(&kinds_lock);
    for (size_t i = 0; i < n_kinds && !k; i++)
        if (!strcmp(kinds[i]->name, name))
            k = kinds[i];
    pthread_mutex_unlock(&kinds_lock);
    return k;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

json_t *flow_step_kinds_describe(void)
{
    json_t *list = json_array();
    pthread_mutex_lock(&kinds_lock);
    for (size_t i = 0; i < n_kinds; i++)
        json_array_append_new(list, json_pack("{s:s, s:s?}", "kind", kinds[i]->name, "inputs",
                                              kinds[i]->inputs));
    pthread_mutex_unlock(&kinds_lock);
    return list;
}

void flow_step_kinds_list(char *out, size_t size)
{
    const char *names[KINDS_MAX];
    pthread_mutex_lock(&kinds_lock);
    size_t n = n_kinds;
    for (size_t i = 0; i < n; i++)
        names[i] = kinds[i]->name;
    pthread_mutex_unlock(&kinds_lock);
    qsort(names, n, sizeof *names, name_cmp);
    size_t used = 0;
    if (size)
        out[0] = '\0';
    for (size_t i = 0; i < n && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%s", i ? ", " : "", names[i]);
}

/* ---- checks of the built-in kinds -------------------------------------- */

/* Appends one problem line to err (ERR_INVAL); lines past ERR_MSG_MAX are
 * dropped. */
static void add(Err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(Err *err, const char *fmt, ...)
{
    size_t used = err->code ? strlen(err->msg) : 0;
    if (!err->code)
        err->msg[0] = '\0';
    err->code = ERR_INVAL;
    if (used && used + 1 < ERR_MSG_MAX)
        err->msg[used++] = '\n';
    va_list ap;
    va_start(ap, fmt);
    if (used < ERR_MSG_MAX)
        vsnprintf(err->msg + used, ERR_MSG_MAX - used, fmt, ap);
    va_end(ap);
}

static bool with_object(const json_t *with, Err *err)
{
    if (json_is_object(with))
        return true;
    add(err, "with: must be a mapping, not %s",
        json_is_array(with) ? "a list" : json_is_string(with) ? "a string" : "a value");
    return false;
}

/* Reports keys of with not in allowed (NULL-terminated). */
static void only_keys(const json_t *with, const char *const *allowed, const char *list, Err *err)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)with, k, v) {
        bool ok = false;
        for (int i = 0; allowed[i]; i++)
            ok |= !strcmp(allowed[i], k);
        if (!ok)
            add(err, "with.%s: unknown key (allowed: %s)", k, list);
    }
}

/* A present, non-null string input, or NULL (with a problem when required
 * or of another type). */
static const char *str_input(const json_t *with, const char *key, bool required, Err *err)
{
    json_t *v = json_object_get(with, key);
    if (!v || json_is_null(v)) {
        if (required)
            add(err, "with: missing required input '%s'", key);
        return NULL;
    }
    if (!json_is_string(v)) {
        add(err, "with.%s: must be a string", key);
        return NULL;
    }
    return json_string_value(v);
}

static void object_input(const json_t *with, const char *key, Err *err)
{
    json_t *v = json_object_get(with, key);
    if (v && !json_is_null(v) && !json_is_object(v) &&
        !(json_is_string(v) && flow_lua_is_template(json_string_value(v))))
        add(err, "with.%s: must be a mapping (or a {{ }} template giving one)", key);
}

static int ret(Err *err)
{
    return err->code ? ERR_INVAL : 0;
}

/* emit: {type, data?, subject?}; type an event type or a template. */
static int check_emit(const json_t *with, Err *err)
{
    Err local;
    if (!err)
        err = &local;
    static const char *const keys[] = { "type", "data", "subject", NULL };
    err->code = 0;
    if (!with_object(with, err))
        return ret(err);
    only_keys(with, keys, "type, data, subject", err);
    const char *type = str_input(with, "type", true, err);
    if (type && !flow_lua_is_template(type) && !ledger_type_valid(type, strlen(type)))
        add(err, "with.type: '%s' is not an event type (like \"lead.captured\": lower-case "
                 "segments joined by '.')", type);
    object_input(with, "data", err);
    str_input(with, "subject", false, err);
    return ret(err);
}

/* lua: {script: NAME, args?: {...}}. */
static int check_lua(const json_t *with, Err *err)
{
    Err local;
    if (!err)
        err = &local;
    static const char *const keys[] = { "script", "args", NULL };
    err->code = 0;
    if (!with_object(with, err))
        return ret(err);
    only_keys(with, keys, "script, args", err);
    const char *script = str_input(with, "script", true, err);
    if (script && !flow__name_ok(script))
        add(err, "with.script: '%s': name a script of DATA/agents/ without .lua "
                 "(1-%d of a-z, 0-9, - and _)", script, FLOW_NAME_MAX);
    object_input(with, "args", err);
    return ret(err);
}

static void duration_input(const json_t *with, const char *key, Err *err)
{
    const char *s = str_input(with, key, false, err);
    int64_t ms;
    Err de = { 0 };
    if (s && !flow_lua_is_template(s) && flow_duration_parse(s, &ms, &de) < 0)
        add(err, "with.%s: %s", key, de.msg);
}

/* wait: {duration} or {event, where?, timeout?}. */
static int check_wait(const json_t *with, Err *err)
{
    Err local;
    if (!err)
        err = &local;
    static const char *const keys[] = { "duration", "event", "where", "timeout", NULL };
    err->code = 0;
    if (!with_object(with, err))
        return ret(err);
    only_keys(with, keys, "duration, or event, where and timeout", err);
    json_t *d = json_object_get(with, "duration"), *e = json_object_get(with, "event");
    if (!d == !e) {
        add(err, "with: give exactly one of 'duration' or 'event'");
        return ret(err);
    }
    if (d) {
        duration_input(with, "duration", err);
        if (json_object_get(with, "where"))
            add(err, "with.where: only with 'event'");
        if (json_object_get(with, "timeout"))
            add(err, "with.timeout: only with 'event' (a wait for a duration ends by itself)");
        return ret(err);
    }
    const char *type = str_input(with, "event", true, err);
    if (type && !flow__event_pattern_ok(type))
        add(err, "with.event: '%s' is not an event type (segments of a-z, 0-9, _ and - "
                 "joined by '.', or a prefix ending in \".*\")", type);
    const char *where = str_input(with, "where", false, err);
    int line = 0;
    Err le = { 0 };
    if (where && !flow_lua_is_template(where) &&
        flow_lua_check_expr(where, "with.where", &line, &le) < 0)
        add(err, "with.where: Lua syntax error: %s", flow__lua_message(le.msg));
    duration_input(with, "timeout", err);
    return ret(err);
}

/* task.start: {workflow: NAME, input?: {...}}. */
static int check_task_start(const json_t *with, Err *err)
{
    Err local;
    if (!err)
        err = &local;
    static const char *const keys[] = { "workflow", "input", NULL };
    err->code = 0;
    if (!with_object(with, err))
        return ret(err);
    only_keys(with, keys, "workflow, input", err);
    const char *wf = str_input(with, "workflow", true, err);
    if (wf && !flow__name_ok(wf))
        add(err, "with.workflow: '%s' is not a workflow name (1-%d of a-z, 0-9, - and _)", wf,
            FLOW_NAME_MAX);
    object_input(with, "input", err);
    return ret(err);
}

/* A string input, or a template (strings are checked again when rendered). */
static void string_or_list_input(const json_t *with, const char *key, bool required, Err *err)
{
    json_t *v = json_object_get(with, key);
    if (!v || json_is_null(v)) {
        if (required)
            add(err, "with: missing required input '%s'", key);
        return;
    }
    if (json_is_string(v))
        return;
    if (!json_is_array(v)) {
        add(err, "with.%s: must be a string or a list of strings", key);
        return;
    }
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) if (!json_is_string(x))
        add(err, "with.%s[%zu]: must be a string", key, i);
}

/* email.send: {to, cc?, subject, text, html?, in_reply_to?, references?}. */
static int check_email_send(const json_t *with, Err *err)
{
    Err local;
    if (!err)
        err = &local;
    static const char *const keys[] = { "to", "cc", "subject", "text", "html", "in_reply_to",
                                         "references", NULL };
    err->code = 0;
    if (!with_object(with, err))
        return ret(err);
    only_keys(with, keys, "to, cc, subject, text, html, in_reply_to, references", err);
    string_or_list_input(with, "to", true, err);
    string_or_list_input(with, "cc", false, err);
    str_input(with, "subject", true, err);
    str_input(with, "text", true, err);
    str_input(with, "html", false, err);
    str_input(with, "in_reply_to", false, err);
    string_or_list_input(with, "references", false, err);
    return ret(err);
}

/* webhook.post: {url, body, secret_env?}. */
static int check_webhook_post(const json_t *with, Err *err)
{
    Err local;
    if (!err)
        err = &local;
    static const char *const keys[] = { "url", "body", "secret_env", NULL };
    err->code = 0;
    if (!with_object(with, err))
        return ret(err);
    only_keys(with, keys, "url, body, secret_env", err);
    const char *url = str_input(with, "url", true, err);
    if (url && !flow_lua_is_template(url) && strncmp(url, "http://", 7) &&
        strncmp(url, "https://", 8))
        add(err, "with.url: '%.200s' is not an http:// or https:// URL", url);
    if (!json_object_get(with, "body"))
        add(err, "with: missing required input 'body'");
    const char *env = str_input(with, "secret_env", false, err);
    for (const char *p = env; p && *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || *p == '_' || (p > env && *p >= '0' && *p <= '9'))) {
            add(err, "with.secret_env: '%.128s' is not an environment variable name", env);
            break;
        }
    return ret(err);
}

/* approval: {payload, title?}: the payload is what the operator approves
 * (and may edit); it is the step's output once approved. */
static int check_approval_step(const json_t *with, Err *err)
{
    Err local;
    if (!err)
        err = &local;
    static const char *const keys[] = { "payload", "title", NULL };
    err->code = 0;
    if (!with_object(with, err))
        return ret(err);
    only_keys(with, keys, "payload, title", err);
    if (!json_object_get(with, "payload"))
        add(err, "with: missing required input 'payload'");
    str_input(with, "title", false, err);
    return ret(err);
}

/* model.*: the text (or prompt) to work on, and the route's name. */
static int check_model(const json_t *with, Err *err, const char *main_key,
                       const char *const *keys, const char *list)
{
    Err local;
    if (!err)
        err = &local;
    err->code = 0;
    if (!with_object(with, err))
        return ret(err);
    only_keys(with, keys, list, err);
    if (main_key)
        str_input(with, main_key, true, err);
    const char *route = str_input(with, "route", false, err);
    if (route && !flow_lua_is_template(route) && !flow__name_ok(route))
        add(err, "with.route: '%s' is not a route name", route);
    return ret(err);
}

static int check_classify(const json_t *with, Err *err)
{
    static const char *const keys[] = { "text", "labels", "route", NULL };
    int rc = check_model(with, err, "text", keys, "text, labels, route");
    const json_t *l = json_object_get(with, "labels");
    if (err && l && !json_is_array(l) && !(json_is_string(l) && flow_lua_is_template(json_string_value(l))))
        add(err, "with.labels: must be a list of labels");
    return err && err->code ? ERR_INVAL : rc;
}

static int check_extract(const json_t *with, Err *err)
{
    static const char *const keys[] = { "text", "route", NULL };
    return check_model(with, err, "text", keys, "text, route");
}

static int check_summarize(const json_t *with, Err *err)
{
    static const char *const keys[] = { "text", "max_chars", "route", NULL };
    return check_model(with, err, "text", keys, "text, max_chars, route");
}

static int check_complete(const json_t *with, Err *err)
{
    static const char *const keys[] = { "prompt", "system", "schema", "route", NULL };
    int rc = check_model(with, err, "prompt", keys, "prompt, system, schema, route");
    if (err)
        object_input(with, "schema", err);
    return err && err->code ? ERR_INVAL : rc;
}

static int check_draft(const json_t *with, Err *err)
{
    static const char *const keys[] = { "template", "args", "sources", "prompt", "route", NULL };
    int rc = check_model(with, err, NULL, keys, "template, args, sources, prompt, route");
    const char *t = err ? str_input(with, "template", false, err) : NULL;
    if (t && !flow_lua_is_template(t) && !flow__name_ok(t))
        add(err, "with.template: '%s': name a template of DATA/templates/ without .lua", t);
    if (err)
        object_input(with, "args", err);
    return err && err->code ? ERR_INVAL : rc;
}

static int check_resolve(const json_t *with, Err *err)
{
    static const char *const keys[] = { "who", NULL };
    return check_model(with, err, "who", keys, "who");
}

static int check_context(const json_t *with, Err *err)
{
    static const char *const keys[] = { "who", "query", "budget", NULL };
    return check_model(with, err, "who", keys, "who, query, budget");
}

static int check_search(const json_t *with, Err *err)
{
    static const char *const keys[] = { "query", "subject", "kinds", "since", "k", NULL };
    return check_model(with, err, "query", keys, "query, subject, kinds, since, k");
}

static int check_themes(const json_t *with, Err *err)
{
    static const char *const keys[] = { "types", "since", "max", NULL };
    return check_model(with, err, NULL, keys, "types, since, max");
}

static int check_renewals(const json_t *with, Err *err)
{
    static const char *const keys[] = { "within", NULL };
    return check_model(with, err, NULL, keys, "within");
}

static int check_record_fact(const json_t *with, Err *err)
{
    Err local;
    if (!err)
        err = &local;
    static const char *const keys[] = { "who", "key", "value", "confidence", NULL };
    err->code = 0;
    if (!with_object(with, err))
        return ret(err);
    only_keys(with, keys, "who, key, value, confidence", err);
    str_input(with, "who", true, err);
    str_input(with, "key", true, err);
    if (!json_object_get(with, "value"))
        add(err, "with: missing required input 'value'");
    return ret(err);
}

static const FlowStepKind builtin_kinds[] = {
    { "emit", check_emit, "append an event: type (lower-case segments joined by '.'), data?, subject?" },
    { "lua", check_lua, "run DATA/agents/SCRIPT.lua: script, args?" },
    { "wait", check_wait,
      "pause: duration (3d), or event (a type), where? (Lua over e), timeout?" },
    { "task.start", check_task_start, "start a workflow of the catalog: workflow, input?" },
    { "approval", check_approval_step,
      "wait for the operator to approve a payload: title?, payload; output: the approved payload" },
    { "email.send", check_email_send,
      "send a mail after approval: to, subject, text, cc?, html?, in_reply_to?, references?" },
    { "webhook.post", check_webhook_post, "POST JSON after approval: url, body, secret_env?" },
    { "model.classify", check_classify, "label a text: text, labels?, route?; output {label, confidence}" },
    { "model.extract", check_extract,
      "find emails, phones, money, dates, urls, name, company in text: text, route?" },
    { "model.summarize", check_summarize, "summarise: text, max_chars?, route?; output {summary}" },
    { "model.complete", check_complete, "free text or JSON: prompt, system?, schema?, route?; output {text}" },
    { "model.draft", check_draft,
      "draft a message from a template: template?, args?, sources?, prompt?, route?; output {subject, text}" },
    { "memory.resolve", check_resolve, "the contact profile of who (an email or contact id): who" },
    { "memory.record_fact", check_record_fact, "record a fact on a contact: who, key, value, confidence?" },
    { "memory.context", check_context,
      "what memory holds on a contact, with sources: who, query?, budget?" },
    { "memory.search", check_search, "search memory: query, subject?, kinds?, since?, k?" },
    { "memory.themes", check_themes,
      "group recent events by theme: types (event types), since?, max?; output {themes, total, text}" },
    { "memory.renewals", check_renewals,
      "announce retainers and subscriptions ending soon as renewal.due: within (30d)" },
};

static void register_builtins(void)
{
    for (size_t i = 0; i < sizeof builtin_kinds / sizeof builtin_kinds[0]; i++)
        flow_step_kind_register(&builtin_kinds[i]);
}

void flow_step_kinds_builtin(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_builtins);
}
