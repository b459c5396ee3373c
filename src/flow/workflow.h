/* Workflow definitions: YAML files in DATA/workflows/ (*.yaml) and the
 * built-ins shipped inside the binary, parsed, validated and turned into
 * one canonical JSON definition whose SHA-256 is the workflow's version.
 *
 * A task stores the definition it started with (in `task.created`), so the
 * runner rebuilds its FlowWorkflow from that JSON with flow_workflow_from_json
 * and a running task keeps its version when the file changes.
 *
 * Validation names FILE:LINE:COL for every problem: unknown or missing keys,
 * wrong types, a bad cron or timezone, unknown step kinds, duplicate step
 * ids, unknown or cyclic `needs`, Lua syntax errors (in `on.where`,
 * `concurrency`, `if`, and every `{{ }}` inside `with`), bad durations. */
#ifndef BUREAU_FLOW_WORKFLOW_H
#define BUREAU_FLOW_WORKFLOW_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/crypto.h"
#include "core/embedded.h"
#include "core/err.h"
#include "flow/flow_cron.h"

#define FLOW_WORKFLOW_MAX_BYTES (256 * 1024) /* one workflow file */
#define FLOW_MAX_STEPS 64
#define FLOW_SCRIPT_MAX_BYTES (1024 * 1024) /* one DATA/agents/NAME.lua */
#define FLOW_NAME_MAX 64   /* workflow names and step ids: [a-z0-9_-], 1-64 */
#define FLOW_EVENT_PATTERN_MAX 128   /* `on.event`, `wait`'s `event` */
#define FLOW_DURATION_MAX_MS (366LL * 24 * 3600 * 1000)
#define FLOW_RETRY_MAX 100
#define FLOW_PROBLEMS_MAX 30         /* problem lines reported per file */
#define FLOW_CATALOG_MAX_FILES 1000  /* *.yaml files read from DATA/workflows/ */

typedef enum FlowOnError {
    FLOW_ON_ERROR_FAIL,     /* the task fails (default) */
    FLOW_ON_ERROR_CONTINUE, /* the step counts as failed, the task goes on */
    FLOW_ON_ERROR_INBOX,    /* the task waits in the operator's inbox */
} FlowOnError;

typedef struct FlowStepDef {
    char *id;           /* unique within the workflow */
    char *kind;         /* `do`: a registered step kind */
    json_t *with;       /* inputs (any JSON; strings may hold {{ }}), never NULL */
    char *if_expr;      /* Lua predicate, or NULL */
    char **needs;       /* step ids; default: the step before (none for the first) */
    size_t n_needs;
    size_t *need_idx;   /* needs as indexes into FlowWorkflow.steps */
    int retry_max;      /* retries after the first attempt, default 0 */
    int64_t backoff_ms; /* first retry delay, doubled each time, default 1000 */
    int64_t max_delay_ms; /* cap of the delay, default 3600000 */
    int64_t timeout_ms;   /* 0: the kind's default */
    FlowOnError on_error;
    /* Human in the loop and effects (docs/effects.md). approval is the
     * canonical gate: {policy: always|never|auto, min_confidence, deadline_ms,
     * on_deadline: remind|escalate, on_reject: cancel|compensate|STEP, and the
     * preview's confidence, confidence_source, sources, model, cost (values
     * or {{ }} templates)}; NULL for a step that is not gated (an effect step
     * without `approval` is gated with the defaults: policy always). */
    json_t *approval;
    char *purpose;        /* effect steps: "transactional" (default) or "marketing" */
    json_t *compensate;   /* {do: KIND, with: {...}} overriding the kind's compensation, or NULL */
} FlowStepDef;

typedef struct FlowWorkflow {
    char *name;          /* [a-z0-9_-]{1,64} */
    char *description;   /* may be NULL */
    bool enabled;        /* `enabled`, default true (a file's own default) */
    char *on_event;      /* trigger: an event type ("x.y"), or "x.*" for a prefix; or NULL */
    char *on_where;      /* Lua predicate over `event`, or NULL */
    char *on_schedule;   /* trigger: a cron expression, or NULL */
    char *timezone;      /* with on_schedule; NULL = UTC */
    FlowCron cron;       /* parsed on_schedule */
    char *concurrency;   /* Lua expression giving the key, or NULL */
    FlowStepDef *steps;
    size_t n_steps;
    size_t *order;       /* a topological order of steps (indexes) */
    json_t *definition;  /* canonical JSON of the whole definition */
    char version[CORE_SHA256_HEX + 1]; /* SHA-256 of the canonical JSON text */
    char *path;          /* the file it came from, "builtin:NAME" for a built-in */
    bool builtin;
} FlowWorkflow;

/* Whether kind is an effect (its payload leaves Bureau through the outbox). */
bool flow_kind_is_effect(const char *kind);

/* The step kinds validation accepts; the runner registers their handlers
 * (flow/engine.h). check, when set, validates a step's `with` statically:
 * it returns <0 with a message naming the input (e.g. "with.duration: ..."). */
typedef struct FlowStepKind {
    const char *name;
    int (*check)(const json_t *with, Err *err);
    const char *inputs; /* what it does and its `with` inputs, in words (the planner's
                         * catalog for a model composing a graph); may be NULL */
} FlowStepKind;

/* Registers k (static storage). The same name twice keeps the first.
 * Thread-safe; meant for start-up. */
void flow_step_kind_register(const FlowStepKind *k);
const FlowStepKind *flow_step_kind_find(const char *name);
/* Registers the built-in kinds with their checks: emit, lua, wait,
 * task.start. Idempotent; flow_workflow_parse and flow_workflow_from_json
 * call it themselves, so the built-ins' checks win over a later
 * registration of the same name. */
void flow_step_kinds_builtin(void);
/* The registered kinds as [{kind, inputs}] (a new reference). */
json_t *flow_step_kinds_describe(void);
/* Writes the registered kinds' names, sorted, joined by ", " (truncated to
 * size). */
void flow_step_kinds_list(char *out, size_t size);

/* Parses YAML text (at most FLOW_WORKFLOW_MAX_BYTES); path names it in
 * errors ("path:line:col: message"). */
int flow_workflow_parse(const char *text, size_t len, const char *path, FlowWorkflow **ret,
                        Err *err);
/* The same, and on a validation failure *ret_report (when not NULL) is
 * every problem line, sorted by position, at most FLOW_PROBLEMS_MAX of them
 * and then "... and N more problems" (caller frees). err->msg holds as many
 * whole lines as fit in ERR_MSG_MAX. *ret_report is NULL on success and on
 * failures that are not about the content (size). */
int flow_workflow_parse_report(const char *text, size_t len, const char *path,
                               FlowWorkflow **ret, char **ret_report, Err *err);
/* Reads and parses a file (ERR_IO when it cannot be read, ERR_TOOBIG above
 * FLOW_WORKFLOW_MAX_BYTES). */
int flow_workflow_load(const char *path, FlowWorkflow **ret, Err *err);
/* From a stored canonical definition (as in task.created); errors name the
 * JSON path ("steps[1].retry.max: ..."), all at once as in parsing. The
 * result's definition and version are recomputed: for a definition made by
 * flow_workflow_parse they are identical to the stored ones. path is
 * "json:NAME". */
int flow_workflow_from_json(const json_t *def, FlowWorkflow **ret, Err *err);
void flow_workflow_free(FlowWorkflow *w);

/* "3d", "12h", "30m", "45s", "500ms", "1w" (one unit, integer count);
 * positive and at most FLOW_DURATION_MAX_MS, else ERR_INVAL. */
int flow_duration_parse(const char *s, int64_t *ret_ms, Err *err);

/* Every validation problem of one file is reported at once, one per line
 * in err->msg (as many as fit; flow_workflow_parse_report gives them all),
 * each "path:line:col: message", with err->code ERR_INVAL. */

/* The set of workflows of a data dir: the built-ins, overridden by files of
 * the same name in DATA/workflows/. A file that does not validate, whose
 * `name` differs from its file name (without .yaml), or that is too large,
 * is kept out of the set and reported through on_error (which may be NULL);
 * files past the first FLOW_CATALOG_MAX_FILES (by name) too. items are
 * sorted by name. Fails only when DATA/workflows/ exists but cannot be
 * read. data_dir may be NULL (the built-ins only). */
typedef struct FlowCatalog {
    FlowWorkflow **items;
    size_t n;
} FlowCatalog;

int flow_catalog_load(const char *data_dir, FlowCatalog *ret,
                      void (*on_error)(void *ctx, const char *path, const Err *e), void *ctx,
                      Err *err);
void flow_catalog_done(FlowCatalog *c);
const FlowWorkflow *flow_catalog_find(const FlowCatalog *c, const char *name);

/* The built-in workflow files (the files of workflows/, embedded at build time;
 * name is the file name, e.g. "lead-from-form.yaml"). */
extern const EmbeddedFile flow__builtins[];
extern const size_t flow__builtins_count;

/* With a data dir: also checks references (lua steps' scripts exist in
 * DATA/agents/NAME.lua and compile; task.start names a known workflow).
 * data_dir NULL skips the scripts, cat NULL the workflows. Every problem is
 * one line "PATH: steps[N].with.KEY: message" in err->msg (ERR_INVAL). */
int flow_workflow_check_refs(const FlowWorkflow *w, const char *data_dir,
                             const FlowCatalog *cat, Err *err);

#endif
