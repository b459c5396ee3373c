-- Projection "goals": the operator's goals, what the planner proposed for
-- each and what became of it (docs/goals.md). Rebuilt by replay like every
-- projection; the task a goal started is in `tasks`.
CREATE TABLE goals (
    id            TEXT PRIMARY KEY,  -- ULID
    text          TEXT NOT NULL,
    status        TEXT NOT NULL,     -- submitted|proposed|refused|approved|rejected|started|failed
    kind          TEXT,              -- workflow (a catalog workflow) | composed (a new graph)
    workflow      TEXT,              -- the matched workflow, or goal-ID for a composed graph
    version       TEXT,              -- the proposed definition's version
    score         REAL,              -- similarity or the model's confidence
    provider      TEXT,
    model         TEXT,
    cost_usd      REAL,
    approval_id   TEXT,
    task_id       TEXT,
    error         TEXT,              -- refused or failed: why
    by_whom       TEXT,              -- who submitted it
    decided_by    TEXT,
    submitted_seq INTEGER NOT NULL,
    approved_seq  INTEGER,           -- the goal.approved event (the task's trigger)
    submitted_at  TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX goals_submitted ON goals(submitted_seq);
CREATE INDEX goals_approved ON goals(approved_seq);
