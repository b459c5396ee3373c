-- Projection "quality": model quality from the operator's own decisions
-- (docs/models.md, "Quality"). From model.called, approval.requested,
-- approval.decided and model.canary.*.

-- The draft of each (task, step) of model.draft: the call that answered it,
-- the cost of all its attempts, and (a route with a shadow) its request.
CREATE TABLE model_drafts (
    task_id    TEXT NOT NULL,
    step_id    TEXT NOT NULL,
    seq        INTEGER NOT NULL,  -- the latest model.called of the draft
    answered   INTEGER NOT NULL,  -- 1: a call answered (the columns below are its)
    route      TEXT NOT NULL,
    provider   TEXT NOT NULL,
    model      TEXT NOT NULL,
    template   TEXT NOT NULL,     -- NAME@VERSION
    workflow   TEXT NOT NULL,
    role       TEXT NOT NULL,     -- incumbent | canary
    cost_usd   REAL NOT NULL,     -- every attempt of the draft
    latency_ms INTEGER NOT NULL,
    system     TEXT,              -- the request, for a shadow run
    prompt     TEXT,
    max_output_tokens INTEGER,
    PRIMARY KEY (task_id, step_id)
) WITHOUT ROWID;

-- One row per approval of a task with a draft: what the operator decided.
CREATE TABLE model_outcomes (
    approval_id   TEXT PRIMARY KEY,
    task_id       TEXT NOT NULL,
    step_id       TEXT NOT NULL,  -- the approval's step
    draft_step    TEXT NOT NULL,  -- the model.draft step it showed
    requested_seq INTEGER NOT NULL,
    route         TEXT NOT NULL,
    provider      TEXT NOT NULL,
    model         TEXT NOT NULL,
    template      TEXT NOT NULL,
    workflow      TEXT NOT NULL,
    role          TEXT NOT NULL,
    cost_usd      REAL NOT NULL,
    latency_ms    INTEGER NOT NULL,
    drafted       TEXT NOT NULL,  -- the previewed body (at most 16 KiB)
    decision      TEXT,           -- approve | edit | reject; NULL while pending
    decided_by    TEXT,
    reason        TEXT,
    sent          TEXT,           -- the body that was approved (approve, edit)
    edit_distance REAL,           -- normalised, 0..1 (approve: 0; reject: NULL)
    decided_seq   INTEGER,
    decided_at    TEXT
);
CREATE INDEX model_outcomes_draft ON model_outcomes(task_id, draft_step);
CREATE INDEX model_outcomes_route ON model_outcomes(route, decided_seq);

-- Shadow runs: a challenger's answer to a draft's request, never used.
CREATE TABLE model_shadows (
    task_id      TEXT NOT NULL,
    step_id      TEXT NOT NULL,   -- the draft step
    provider     TEXT NOT NULL,
    route        TEXT NOT NULL,
    model        TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    outcome      TEXT NOT NULL,   -- the call's (ok, failed, timeout...)
    cost_usd     REAL NOT NULL,
    latency_ms   INTEGER NOT NULL,
    disagreement REAL,            -- normalised edit distance to the sent body
    at           TEXT NOT NULL,
    PRIMARY KEY (task_id, step_id, provider)
) WITHOUT ROWID;

-- The last canary decision of each route.
CREATE TABLE model_canaries (
    route     TEXT PRIMARY KEY,
    candidate TEXT NOT NULL,
    state     TEXT NOT NULL,      -- promoted | rolled_back
    seq       INTEGER NOT NULL,
    at        TEXT NOT NULL,
    by        TEXT NOT NULL,
    reason    TEXT NOT NULL
) WITHOUT ROWID;
