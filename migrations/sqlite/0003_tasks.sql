-- Projection "tasks": workflow tasks and their steps, built from task.created,
-- step.completed, step.failed, step.skipped, step.waiting and task.action
-- events (docs/internals/flow_engine.md). The runner reads these tables; the
-- state machine lives in the projection so that replay rebuilds it.
CREATE TABLE tasks (
    id              TEXT PRIMARY KEY,
    workflow        TEXT NOT NULL,
    version         TEXT NOT NULL,
    status          TEXT NOT NULL,  -- queued|running|inbox|succeeded|failed|canceled
    trigger_seq     INTEGER NOT NULL,
    created_seq     INTEGER NOT NULL,
    depth           INTEGER NOT NULL,
    concurrency_key TEXT,
    input           TEXT,           -- JSON or NULL
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,  -- the last change of status
    finished_at     TEXT,
    error           TEXT
);
CREATE INDEX tasks_status ON tasks(status, created_seq);
CREATE INDEX tasks_workflow ON tasks(workflow, created_seq);
CREATE INDEX tasks_key ON tasks(concurrency_key, created_seq) WHERE concurrency_key IS NOT NULL;

-- Definitions by version: the first task.created of a version carries it;
-- later ones name the version only. task_definition_steps holds what a new
-- task's step rows are made of.
CREATE TABLE task_definitions (
    version    TEXT PRIMARY KEY,
    workflow   TEXT NOT NULL,
    definition TEXT NOT NULL,
    steps      INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE task_definition_steps (
    version  TEXT NOT NULL,
    pos      INTEGER NOT NULL,
    step_id  TEXT NOT NULL,
    kind     TEXT NOT NULL,
    needs    TEXT NOT NULL,
    has_if   INTEGER NOT NULL,
    on_error TEXT NOT NULL,
    PRIMARY KEY (version, pos)
) WITHOUT ROWID;

CREATE TABLE task_steps (
    task_id      TEXT NOT NULL,
    step_id      TEXT NOT NULL,
    pos          INTEGER NOT NULL,  -- index in the definition
    kind         TEXT NOT NULL,
    needs        TEXT NOT NULL,     -- step ids, comma-separated
    has_if       INTEGER NOT NULL,
    on_error     TEXT NOT NULL,
    status       TEXT NOT NULL,     -- pending|ready|waiting|succeeded|failed|skipped|canceled
    skip_reason  TEXT,              -- skipped: condition|upstream|operator
    attempts     INTEGER NOT NULL DEFAULT 0,
    output       TEXT,              -- JSON
    inputs       TEXT,              -- JSON: the rendered `with` of the last failed attempt
    error        TEXT,
    started_at   TEXT,
    finished_at  TEXT,
    wake_at      TEXT,              -- waiting: retry time, wait end or wait timeout
    wait_kind    TEXT,              -- waiting: retry|duration|event|inbox
    wait_event   TEXT,              -- wait on an event: its type
    wait_where   TEXT,              -- and the Lua predicate
    PRIMARY KEY (task_id, step_id)
) WITHOUT ROWID;
CREATE INDEX task_steps_status ON task_steps(status, wake_at);

-- Workflows enabled or disabled by the operator (workflow.enabled / .disabled)
-- and the last slot each schedule fired (schedule.fired).
CREATE TABLE workflow_settings (
    name        TEXT PRIMARY KEY,
    enabled     INTEGER,
    changed_at  TEXT,
    last_slot   TEXT
) WITHOUT ROWID;
