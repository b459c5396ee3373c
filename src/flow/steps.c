/* The built-in step kinds: emit, lua, wait and task.start. A handler gets
 * the rendered inputs and the task context and decides: done (with an
 * output and events to append), wait, or fail. Handlers never append: the
 * runner appends what they return together with the step's own event. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "flow/engine_int.h"


int flow__step_fail(FlowStepRun *r, bool retryable, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
    r->outcome = FLOW_FAIL;
    r->retryable = retryable;
    return 0;
}

void flow__source(const char *workflow, char out[FLOW_NAME_MAX + 16])
{
    snprintf(out, FLOW_NAME_MAX + 16, "workflow:%s", workflow);
}

void flow__step_emit(FlowStepRun *r, Event *ev)
{
    r->emit = xrealloc(r->emit, (r->n_emit + 1) * sizeof *r->emit);
    r->emit[r->n_emit++] = ev;
}

/* emit: with {type, data, subject?}. The event carries `caused_by` so that
 * the planner can stop chains of workflows at the depth limit. */
static int step_emit(FlowStepRun *r)
{
    const char *type = json_string_value(json_object_get(r->inputs, "type"));
    json_t *data = json_object_get(r->inputs, "data");
    const json_t *subj = json_object_get(r->inputs, "subject");
    if (!type || !ledger_type_valid(type, strlen(type)))
        return flow__step_fail(r, false, "with.type: '%s' is not an event type", type ? type : "(none)");
    if (ledger_type_reserved(type))
        return flow__step_fail(r, false, "with.type: '%s' is reserved for Bureau's own events", type);
    if (data && !json_is_object(data))
        return flow__step_fail(r, false, "with.data: must be an object, not %s", core_json_type_name(data));
    if (subj && !json_is_null(subj) && !json_is_string(subj))
        return flow__step_fail(r, false, "with.subject: must be a string");
    json_t *d = data ? json_deep_copy(data) : json_object();
    json_object_set_new(d, "caused_by",
                        json_pack("{s:s, s:s, s:s, s:i}", "task", r->task_id, "step", r->step->id,
                                  "workflow", r->wf->name, "depth", r->depth));
    char key[160], source[FLOW_NAME_MAX + 16];
    snprintf(key, sizeof key, "emit:%s:%s", r->task_id, r->step->id);
    flow__source(r->wf->name, source);
    const char *subject = json_string_value(subj);
    if (subject && !*subject)
        subject = NULL;
    Event *ev = NULL;
    Err err = { 0 };
    int rc = ledger_event_new(type, source, subject ? subject : r->subject, d, key, r->limits,
                              &ev, &err);
    json_decref(d);
    if (rc < 0)
        return flow__step_fail(r, false, "%s", err.msg);
    flow__step_emit(r, ev);
    r->outcome = FLOW_DONE;
    r->output = json_pack("{s:s}", "type", type);
    return 0;
}

/* lua: with {script: NAME, args}. DATA/agents/NAME.lua sees args, event,
 * steps and task; what it returns is the output. */
static int step_lua(FlowStepRun *r)
{
    const char *name = json_string_value(json_object_get(r->inputs, "script"));
    if (!name || !*name || strchr(name, '/') || strchr(name, '.'))
        return flow__step_fail(r, false, "with.script: a script name is required ([a-z0-9_-])");
    char path[4096];
    snprintf(path, sizeof path, "%s/agents/%s.lua", r->data_dir, name);
    /* read(2), not stdio: a step reads its script every time, and a FILE
     * costs a 4 KiB buffer and a read more (bench_flow) */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return flow__step_fail(r, false, "with.script: %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) < 0 || sb.st_size > FLOW_SCRIPT_MAX_BYTES) {
        close(fd);
        return flow__step_fail(r, false, "with.script: %s is larger than %d bytes", path,
                    FLOW_SCRIPT_MAX_BYTES);
    }
    char *src = xmalloc((size_t)sb.st_size + 1);
    size_t n = 0;
    ssize_t got = 1;
    while (n <= (size_t)sb.st_size && got != 0) { /* a byte more than its size: it grew */
        got = read(fd, src + n, (size_t)sb.st_size + 1 - n);
        if (got < 0 && errno != EINTR) {
            int e = errno;
            close(fd);
            free(src);
            return flow__step_fail(r, true, "with.script: %s: %s", path, strerror(e));
        }
        n += got > 0 ? (size_t)got : 0;
    }
    close(fd);
    if (n > (size_t)sb.st_size) { /* it grew while we read it */
        free(src);
        return flow__step_fail(r, true, "with.script: %s changed while being read", path);
    }
    json_t *env = json_copy(r->env);
    json_t *args = json_object_get(r->inputs, "args");
    json_object_set_new(env, "args", args ? json_incref(args) : json_object());
    char chunk[FLOW_NAME_MAX + 16];
    snprintf(chunk, sizeof chunk, "agents/%s.lua", name);
    Err err = { 0 };
    json_t *out = NULL;
    int rc = flow_lua_run(r->lua, src, n, chunk, env, &out, &err);
    json_decref(env);
    free(src);
    if (rc < 0) /* a runtime error may pass; a syntax error will not */
        return flow__step_fail(r, rc == ERR_SCRIPT, "%s", err.msg);
    r->outcome = FLOW_DONE;
    r->output = out;
    return 0;
}

/* wait: with {duration} or with {event, where?, timeout?}. */
static int step_wait(FlowStepRun *r)
{
    const char *dur = json_string_value(json_object_get(r->inputs, "duration"));
    const char *type = json_string_value(json_object_get(r->inputs, "event"));
    Err err = { 0 };
    int64_t ms = 0;
    if (dur) {
        if (flow_duration_parse(dur, &ms, &err) < 0)
            return flow__step_fail(r, false, "with.duration: %s", err.msg);
        r->outcome = FLOW_WAIT;
        r->wait_kind = "duration";
        r->wait_until_ms = r->now_ms + ms;
        return 0;
    }
    if (!type)
        return flow__step_fail(r, false, "with: a duration or an event is required");
    const char *timeout = json_string_value(json_object_get(r->inputs, "timeout"));
    if (timeout && flow_duration_parse(timeout, &ms, &err) < 0)
        return flow__step_fail(r, false, "with.timeout: %s", err.msg);
    const char *where = json_string_value(json_object_get(r->inputs, "where"));
    r->outcome = FLOW_WAIT;
    r->wait_kind = "event";
    r->wait_until_ms = timeout ? r->now_ms + ms : 0;
    r->wait_event = xstrdup(type);
    r->wait_where = where ? xstrdup(where) : NULL;
    return 0;
}

/* task.start: with {workflow, input}. The child starts at once, one level
 * deeper; this step does not wait for it. */
static int step_task_start(FlowStepRun *r)
{
    const char *name = json_string_value(json_object_get(r->inputs, "workflow"));
    const FlowWorkflow *w = name && r->catalog ? flow_catalog_find(r->catalog, name) : NULL;
    if (!w)
        return flow__step_fail(r, false, "with.workflow: no workflow named '%s'", name ? name : "(none)");
    if (w->n_steps == 0)
        return flow__step_fail(r, false, "with.workflow: '%s' has no steps", name);
    if (r->depth_max > 0 && r->depth + 1 > r->depth_max)
        return flow__step_fail(r, false, "the causal depth limit (%d) is reached: no task '%s' at depth %d",
                    r->depth_max, name, r->depth + 1);
    json_t *input = json_object_get(r->inputs, "input");
    const json_t *ev = json_object_get(r->env, "event");
    int64_t trigger = json_integer_value(json_object_get(ev, "seq"));
    char child[CORE_ULID_LEN + 1], key[160];
    core_ulid_new(child);
    snprintf(key, sizeof key, "task:%s:%s", r->task_id, r->step->id);
    Event *te = NULL;
    Err err = { 0 };
    if (flow__task_event(w, child, trigger, r->depth + 1, NULL, input, r->subject, key,
                         !r->rd || !flow__version_stored(r->rd, w->version), r->limits, &te,
                         &err) < 0)
        return flow__step_fail(r, false, "%s", err.msg);
    flow__step_emit(r, te);
    r->outcome = FLOW_DONE;
    r->output = json_pack("{s:s, s:s}", "task", child, "workflow", name);
    return 0;
}

FlowStepHandler flow__step_handler(const char *kind)
{
    if (!strcmp(kind, "emit"))
        return step_emit;
    if (!strcmp(kind, "lua"))
        return step_lua;
    if (!strcmp(kind, "wait"))
        return step_wait;
    if (!strcmp(kind, "task.start"))
        return step_task_start;
    if (!strcmp(kind, "approval") || flow_kind_is_effect(kind))
        return flow__step_gate;
    if (!strncmp(kind, "model.", 6))
        return flow__step_model;
    if (!strcmp(kind, "memory.resolve") || !strcmp(kind, "memory.record_fact") ||
        !strcmp(kind, "memory.context") || !strcmp(kind, "memory.search") ||
        !strcmp(kind, "memory.themes") || !strcmp(kind, "memory.renewals"))
        return flow__step_memory;
    return NULL;
}

void flow__step_run_done(FlowStepRun *r)
{
    json_decref(r->output);
    for (size_t i = 0; i < r->n_emit; i++)
        ledger_event_free(r->emit[i]);
    free(r->emit);
    free(r->wait_event);
    free(r->wait_where);
    json_decref(r->compensation);
    r->compensation = NULL;
    r->output = NULL;
    r->emit = NULL;
    r->n_emit = 0;
    r->wait_event = r->wait_where = NULL;
}

bool flow__version_stored(Store *rd, const char *version)
{
    int64_t n = 0;
    Err err = { 0 };
    return store_query_int(rd, "SELECT count(*) FROM task_definitions WHERE version = ?1", version,
                           0, &n, &err) == 0 && n > 0;
}

int flow__task_event(const FlowWorkflow *wf, const char *task_id, int64_t trigger_seq, int depth,
                     const char *concurrency_key, const json_t *input, const char *subject,
                     const char *key, bool with_definition, const EventLimits *lim, Event **ret,
                     Err *err)
{
    json_t *d = json_pack("{s:s, s:s, s:s, s:I, s:i}", "task", task_id, "workflow", wf->name,
                          "version", wf->version, "trigger_seq", (json_int_t)trigger_seq, "depth",
                          depth);
    if (with_definition)
        json_object_set(d, "definition", wf->definition);
    if (concurrency_key)
        json_object_set_new(d, "concurrency_key", json_string(concurrency_key));
    if (input && !json_is_null(input))
        json_object_set(d, "input", (json_t *)input);
    char source[FLOW_NAME_MAX + 16];
    flow__source(wf->name, source);
    int rc = ledger_event_new("task.created", source, subject, d, key, lim, ret, err);
    json_decref(d);
    return rc;
}
