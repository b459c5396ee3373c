-- Projection "models": what model calls cost, the answer cache and the
-- labelled examples the local classifier learns from (docs/models.md). All
-- from model.called and model.labeled events.
CREATE TABLE model_spend (
    day        TEXT NOT NULL,     -- UTC day of the call (YYYY-MM-DD)
    route      TEXT NOT NULL,
    provider   TEXT NOT NULL,
    workflow   TEXT NOT NULL,     -- '' when none
    customer   TEXT NOT NULL,     -- the subject (contact:ID), '' when none
    calls      INTEGER NOT NULL,
    failures   INTEGER NOT NULL,
    cache_hits INTEGER NOT NULL,
    tokens_in  INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    cost_usd   REAL NOT NULL,
    saved_usd  REAL NOT NULL,
    latency_ms INTEGER NOT NULL,  -- the sum, for means
    PRIMARY KEY (day, route, provider, workflow, customer)
) WITHOUT ROWID;

CREATE TABLE model_cache (
    key        TEXT PRIMARY KEY,  -- SHA-256 of the canonical request
    route      TEXT NOT NULL,
    provider   TEXT NOT NULL,
    model      TEXT NOT NULL,
    output     TEXT NOT NULL,     -- JSON
    cost_usd   REAL NOT NULL,     -- what the call cost (a hit saves it)
    seq        INTEGER NOT NULL,
    expires_at TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE model_examples (
    seq        INTEGER PRIMARY KEY, -- the model.labeled event
    event_seq  INTEGER NOT NULL,    -- the event labelled
    label      TEXT NOT NULL,
    text       TEXT NOT NULL
);
CREATE INDEX model_examples_event ON model_examples(event_seq);
