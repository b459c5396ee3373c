/* The model step kinds: model.classify, model.extract, model.summarize,
 * model.complete and model.draft. Each call goes through the router (its
 * route is the kind's task class unless `with.route` names another); the
 * output carries what the call answered plus confidence, provider, model
 * and cost, for an approval to show. A route that defers to the batch
 * window makes the step wait for it (wait_kind 'batch'); a call parked by a
 * budget puts the task in the inbox. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <sys/stat.h>

#include "core/embedded.h"
#include "flow/engine_int.h"
#include "flow/workflow_int.h"
#include "model/router.h"

#define DRAFT_SYSTEM                                                                           \
    "You write the reply a careful independent professional would send. Below is a draft "    \
    "filled from a template with the facts at hand. Rewrite it as a natural, concise reply in " \
    "the same language, keeping every fact and every citation mark like [1] where it "        \
    "belongs. Answer with the reply's text only."

static json_t *output_of(const ModelResult *res);

extern const EmbeddedFile flow__templates[];
extern const size_t flow__templates_count;

/* DATA/templates/NAME.lua, else the built-in of that name; NULL with the
 * reason in why. */
static char *template_source(const FlowStepRun *r, const char *name, size_t *len, char *why,
                             size_t size)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/templates/%s.lua", r->data_dir, name);
    FILE *f = fopen(path, "rb");
    if (f) {
        struct stat sb;
        if (fstat(fileno(f), &sb) < 0 || sb.st_size > FLOW_SCRIPT_MAX_BYTES) {
            fclose(f);
            snprintf(why, size, "%.400s: larger than %d bytes", path, FLOW_SCRIPT_MAX_BYTES);
            return NULL;
        }
        char *src = xmalloc((size_t)sb.st_size + 1);
        *len = fread(src, 1, (size_t)sb.st_size, f);
        fclose(f);
        src[*len] = '\0';
        return src;
    }
    if (errno != ENOENT) {
        snprintf(why, size, "%.400s: %s", path, strerror(errno));
        return NULL;
    }
    char file[FLOW_NAME_MAX + 8];
    snprintf(file, sizeof file, "%s.lua", name);
    for (size_t i = 0; i < flow__templates_count; i++)
        if (!strcmp(flow__templates[i].name, file)) {
            *len = flow__templates[i].len;
            char *src = xmalloc(*len + 1);
            memcpy(src, flow__templates[i].data, *len);
            src[*len] = '\0';
            return src;
        }
    snprintf(why, size, "with.template: no template '%s' (DATA/templates/%s.lua, or a built-in: "
                        "reply)", name, name);
    return NULL;
}

/* model.draft: the template, filled from the step's context, is the local
 * draft; the route's provider may rewrite it (the local tier keeps it). */
static int step_draft(FlowStepRun *r)
{
    const json_t *in = r->inputs;
    const char *name = json_string_value(json_object_get(in, "template"));
    if (!name)
        name = "reply";
    if (!flow__name_ok(name))
        return flow__step_fail(r, false, "with.template: '%s' is not a template name", name);
    char why[512];
    size_t len = 0;
    char *src = template_source(r, name, &len, why, sizeof why);
    if (!src)
        return flow__step_fail(r, false, "%s", why);
    json_t *env = json_copy(r->env);
    const json_t *args = json_object_get(in, "args"), *sources = json_object_get(in, "sources");
    json_object_set_new(env, "args", args ? json_incref((json_t *)args) : json_object());
    json_object_set_new(env, "sources", sources ? json_incref((json_t *)sources) : json_array());
    char chunk[FLOW_NAME_MAX + 16], version[CORE_SHA256_HEX + 1], tname[FLOW_NAME_MAX + 32];
    snprintf(chunk, sizeof chunk, "templates/%s.lua", name);
    core_sha256_hex(src, len, version);
    snprintf(tname, sizeof tname, "%s@%.12s", name, version); /* the template's version */
    json_t *draft = NULL;
    Err err = { 0 };
    int rc = flow_lua_run(r->lua, src, len, chunk, env, &draft, &err);
    json_decref(env);
    free(src);
    if (rc < 0)
        return flow__step_fail(r, rc == ERR_SCRIPT, "%s", err.msg);
    if (json_is_string(draft)) {
        json_t *t = json_pack("{s:O}", "text", draft);
        json_decref(draft);
        draft = t;
    }
    const char *text = json_string_value(json_object_get(draft, "text"));
    if (!json_is_object(draft) || !text) {
        json_decref(draft);
        return flow__step_fail(r, false, "%s must return a string or a table with text", chunk);
    }
    if (!r->router) {
        json_decref(draft);
        return flow__step_fail(r, true, "the model router is not running");
    }
    const char *route = json_string_value(json_object_get(in, "route"));
    const char *system = json_string_value(json_object_get(in, "prompt"));
    ModelCall call = {
        .route = route ? route : "draft", .workflow = r->wf->name, .customer = r->subject,
        .task_id = r->task_id, .step_id = r->step->id, .force = r->resume,
        .template_name = tname,
        .req = { .task = "draft", .prompt = text, .system = system ? system : DRAFT_SYSTEM },
    };
    ModelResult res;
    if (model_router_call(r->router, r->rd, &call, &res, &err) < 0) {
        model_result_done(&res);
        json_decref(draft);
        return flow__step_fail(r, false, "%s", err.msg);
    }
    rc = 0;
    if (res.status == MODEL_CALL_OK) {
        json_t *o = output_of(&res);
        /* the provider's text; the template's subject and citations */
        json_t *t = json_object_get(o, "text");
        if (!json_is_string(t))
            json_object_set(o, "text", json_object_get(draft, "text"));
        json_object_set(o, "template_text", json_object_get(draft, "text"));
        if (json_object_get(draft, "subject"))
            json_object_set(o, "subject", json_object_get(draft, "subject"));
        json_object_set_new(o, "citations", json_object_get(draft, "citations")
                                                ? json_incref(json_object_get(draft, "citations"))
                                                : json_array());
        json_object_set_new(o, "template", json_string(tname));
        r->outcome = FLOW_DONE;
        r->output = o;
    } else if (res.status == MODEL_CALL_DEFERRED) {
        r->outcome = FLOW_WAIT;
        r->wait_kind = "batch";
        r->wait_until_ms = res.deferred_until_ms;
    } else {
        r->force_inbox = res.status == MODEL_CALL_PARKED;
        rc = flow__step_fail(r, res.status == MODEL_CALL_FAILED, "%s", res.error);
    }
    model_result_done(&res);
    json_decref(draft);
    return rc;
}

/* The output: the answer's fields (an object), or {text} / {vector}, and
 * how it was obtained. */
static json_t *output_of(const ModelResult *res)
{
    json_t *o;
    if (json_is_object(res->output))
        o = json_deep_copy(res->output);
    else if (json_is_array(res->output))
        o = json_pack("{s:O}", "vector", res->output);
    else
        o = json_pack("{s:O}", "text", res->output);
    json_object_set_new(o, "provider", json_string(res->provider));
    json_object_set_new(o, "model", json_string(res->model));
    json_object_set_new(o, "cost_usd", json_real(res->cost_usd));
    json_object_set_new(o, "cached", json_boolean(res->cached));
    json_object_set_new(o, "latency_ms", json_integer(res->latency_ms));
    if (!json_object_get(o, "confidence"))
        json_object_set_new(o, "confidence", json_null());
    return o;
}

static const char *task_of(const char *kind)
{
    return kind + strlen("model."); /* classify, extract, summarize, complete, draft */
}

int flow__step_model(FlowStepRun *r)
{
    const char *task = task_of(r->step->kind);
    if (!strcmp(task, "draft"))
        return step_draft(r);
    const json_t *in = r->inputs;
    const char *route = json_string_value(json_object_get(in, "route"));
    const char *text = json_string_value(json_object_get(in, !strcmp(task, "complete") ||
                                                                !strcmp(task, "draft")
                                                            ? "prompt"
                                                            : "text"));
    if (!text)
        return flow__step_fail(r, false, "with.%s: a string is required",
                               !strcmp(task, "complete") || !strcmp(task, "draft") ? "prompt"
                                                                                   : "text");
    if (!r->router)
        return flow__step_fail(r, true, "the model router is not running");
    ModelCall call = {
        .route = route ? route : task,
        .workflow = r->wf->name,
        .customer = r->subject,
        .task_id = r->task_id,
        .step_id = r->step->id,
        .force = r->resume, /* woken by the batch window (or bureau batch run) */
        .req = { .task = task,
                 .prompt = text,
                 .system = json_string_value(json_object_get(in, "system")),
                 .schema = json_object_get(in, "schema"),
                 .labels = json_object_get(in, "labels") },
    };
    const json_t *max = json_object_get(in, "max_chars");
    if (json_is_integer(max) && json_integer_value(max) > 0)
        call.req.max_output_tokens = (int)((json_integer_value(max) + 3) / 4);
    ModelResult res;
    Err err = { 0 };
    if (model_router_call(r->router, r->rd, &call, &res, &err) < 0) {
        model_result_done(&res);
        return flow__step_fail(r, false, "%s", err.msg);
    }
    int rc = 0;
    switch (res.status) {
    case MODEL_CALL_OK:
        r->outcome = FLOW_DONE;
        r->output = output_of(&res);
        break;
    case MODEL_CALL_DEFERRED:
        r->outcome = FLOW_WAIT;
        r->wait_kind = "batch";
        r->wait_until_ms = res.deferred_until_ms;
        break;
    case MODEL_CALL_PARKED:
        r->force_inbox = true;
        rc = flow__step_fail(r, false, "%s", res.error);
        break;
    case MODEL_CALL_FAILED:
        rc = flow__step_fail(r, true, "%s", res.error);
        break;
    }
    model_result_done(&res);
    return rc;
}
