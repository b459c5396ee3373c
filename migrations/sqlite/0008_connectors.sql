-- Projection "connectors": each pull connector's cursor and counts, from
-- connector.cursor / connector.failed / connector.recovered events
-- (docs/connectors.md). Rebuilt by replay like every projection.
CREATE TABLE connectors (
    name          TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    source        TEXT NOT NULL,               -- its events' source
    cursor        TEXT NOT NULL DEFAULT '{}',  -- JSON, the kind's own shape
    cursor_seq    INTEGER NOT NULL DEFAULT 0,  -- the connector.cursor event that set it
    events        INTEGER NOT NULL DEFAULT 0,  -- email.* / calendar.* events stored from it
    last_event_at TEXT,                        -- received_at of the last of them
    failing       INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    last_error_at TEXT
) STRICT;
CREATE INDEX connectors_source ON connectors(source);

-- Events appended per connector per UTC day (of received_at).
CREATE TABLE connector_days (
    name   TEXT NOT NULL,
    day    TEXT NOT NULL,
    events INTEGER NOT NULL,
    PRIMARY KEY (name, day)
) STRICT;

-- Not a projection: what the running poller last saw (like leases, state of
-- the process, not of the log). Written after every poll.
CREATE TABLE connector_polls (
    name            TEXT PRIMARY KEY,
    last_attempt_at TEXT NOT NULL,
    last_success_at TEXT,
    failures        INTEGER NOT NULL DEFAULT 0,  -- consecutive
    next_at         TEXT
) STRICT;
