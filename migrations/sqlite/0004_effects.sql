-- Projection "effects": approvals, the effect outbox, the install's mode and
-- recorded consent (docs/effects.md, docs/internals/effects.md). Rebuilt by
-- replay like every projection; the outbox executor reads it.
CREATE TABLE approvals (
    id                TEXT PRIMARY KEY,
    task_id           TEXT NOT NULL,
    step_id           TEXT NOT NULL,   -- "compensate:EFFECT" for a correction draft
    attempt           INTEGER NOT NULL,
    kind              TEXT NOT NULL,   -- approval | email.send | webhook.post
    status            TEXT NOT NULL,   -- pending|approved|edited|rejected|canceled
    preview           TEXT NOT NULL,   -- JSON: the exact payload that would leave
    sources           TEXT,            -- JSON list
    confidence        REAL,
    confidence_source TEXT,
    model             TEXT,
    cost              REAL,
    policy            TEXT NOT NULL,
    deadline          TEXT,
    on_deadline       TEXT,
    escalated         INTEGER NOT NULL DEFAULT 0,
    reminders         INTEGER NOT NULL DEFAULT 0,
    compensates       TEXT,            -- the effect a correction draft compensates
    payload           TEXT,            -- JSON: the decided payload (approve: the preview)
    diff              TEXT,            -- JSON: what an edit changed
    reason            TEXT,
    decided_by        TEXT,
    requested_seq     INTEGER NOT NULL,
    decided_seq       INTEGER,
    requested_at      TEXT NOT NULL,
    decided_at        TEXT
);
CREATE INDEX approvals_status ON approvals(status, requested_seq);
CREATE INDEX approvals_task ON approvals(task_id, step_id);

CREATE TABLE effects (
    id            TEXT PRIMARY KEY,
    task_id       TEXT NOT NULL,
    step_id       TEXT NOT NULL,
    attempt       INTEGER NOT NULL,  -- the step's attempt that requested it
    kind          TEXT NOT NULL,     -- email.send | webhook.post
    status        TEXT NOT NULL,     -- requested|held|captured|delivered|uncertain|failed|canceled|compensated
    payload       TEXT NOT NULL,     -- JSON
    delivery_key  TEXT NOT NULL,     -- the idempotency key the peer sees ("TASK:STEP")
    purpose       TEXT NOT NULL,     -- transactional | marketing
    mode          TEXT NOT NULL,     -- the mode when it was requested
    compensation  TEXT,              -- JSON {do, with}: how to undo it, or NULL
    compensates   TEXT,              -- the effect this one compensates
    approval_id   TEXT,
    hold_until    TEXT,              -- held: the undo window ends then
    next_at       TEXT,              -- requested: not before (a retry's backoff)
    deliveries    INTEGER NOT NULL DEFAULT 0, -- attempts begun (effect.started)
    in_flight     INTEGER NOT NULL DEFAULT 0, -- begun, no result recorded
    code          INTEGER,
    detail        TEXT,
    message_id    TEXT,
    requested_seq INTEGER NOT NULL,
    requested_at  TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX effects_status ON effects(status, next_at);
CREATE INDEX effects_task ON effects(task_id, requested_seq);

-- Key/value settings of the install: 'mode' (sandbox|production).
CREATE TABLE install_settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    changed_at TEXT NOT NULL
) WITHOUT ROWID;

-- The latest recorded consent per email address (lower case).
CREATE TABLE consents (
    email   TEXT PRIMARY KEY,
    consent TEXT NOT NULL,           -- none | transactional | marketing
    seq     INTEGER NOT NULL,
    at      TEXT NOT NULL
) WITHOUT ROWID;

-- Sagas: compensation of a task's effects, newest first.
ALTER TABLE tasks ADD COLUMN compensation TEXT;   -- NULL | running | done
ALTER TABLE task_steps ADD COLUMN run_anyway INTEGER NOT NULL DEFAULT 0; -- on_reject target
