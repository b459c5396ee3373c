-- The ledger: one append-only, hash-chained row per event.
-- seq is the row id, assigned by the single writer as head + 1.
-- idempotency_key holds the SHA-256 (hex) of the key given from outside; the
-- writer keeps it unique (see the idempotency table below).
-- data is the canonical JSON text; data_hash = SHA-256(data);
-- hash = SHA-256(prev_hash || header || data_hash), see docs/internals/ledger.md.
CREATE TABLE events (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    type            TEXT NOT NULL,
    source          TEXT NOT NULL,
    subject         TEXT,
    occurred_at     TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    consent         TEXT NOT NULL,
    idempotency_key TEXT,
    trace_id        TEXT NOT NULL,
    data            TEXT NOT NULL,
    data_hash       TEXT NOT NULL,
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL
);
CREATE INDEX events_type ON events(type, seq);
CREATE INDEX events_source ON events(source, seq);
CREATE INDEX events_subject ON events(subject, seq) WHERE subject IS NOT NULL;

-- Bookkeeping the writer updates with every commit, kept in one small table
-- so that it costs one page per commit:
--   '@head'  seq and hash of the last event (a removed tail is detected, and
--            the writer finds the last hash at once);
--   '@keys'  seq up to which idempotency keys are in the idempotency table
--            (newer keys are looked up in the events after it);
--   NAME     each projection's version and checkpoint (the last seq applied).
CREATE TABLE ledger_state (
    name    TEXT PRIMARY KEY,
    version INTEGER NOT NULL DEFAULT 0,
    seq     INTEGER NOT NULL,
    hash    TEXT
) WITHOUT ROWID;
INSERT INTO ledger_state(name, seq, hash)
    VALUES ('@head', 0, '0000000000000000000000000000000000000000000000000000000000000000');
INSERT INTO ledger_state(name, seq) VALUES ('@keys', 0);

-- Idempotency keys of events up to '@keys', moved here by the writer in
-- sorted batches: random keys inserted one commit at a time would dirty one
-- index page per event.
CREATE TABLE idempotency (
    key TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
) WITHOUT ROWID;

-- Projection snapshots: a projection's tables as JSON at a seq, so that a
-- rebuild can start there instead of at the first event.
CREATE TABLE projection_snapshots (
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    state      TEXT NOT NULL,
    state_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (name, seq)
);

-- Reactor checkpoints, written in the same transaction as what they emit.
CREATE TABLE reactors (
    name TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL
);

-- Leases: which process runs a named job (e.g. the reactors) right now.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);

-- Projection "counts": events per type, source and UTC day of received_at.
CREATE TABLE event_counts (
    day    TEXT NOT NULL,
    type   TEXT NOT NULL,
    source TEXT NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (day, type, source)
) WITHOUT ROWID;
