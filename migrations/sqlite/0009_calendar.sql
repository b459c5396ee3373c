-- Projection "calendar": the last known state of every VEVENT instance an
-- ICS feed produced (docs/calendar.md), fed by the calendar.event.* events
-- themselves. One row per (source, uid, recurrence_id): recurrence_id is ''
-- for a single event, else the instance's original start (RFC 3339 UTC, or a
-- date for an all-day series).
CREATE TABLE calendar_events (
    source        TEXT NOT NULL,        -- the event's source, e.g. ics:work
    uid           TEXT NOT NULL,
    recurrence_id TEXT NOT NULL DEFAULT '',
    sequence      INTEGER NOT NULL DEFAULT 0,
    last_modified TEXT,                 -- RFC 3339, NULL when the feed gives none
    digest        TEXT NOT NULL,        -- SHA-256 of the tracked fields (ics_event_digest)
    canceled      INTEGER NOT NULL DEFAULT 0,
    start         TEXT NOT NULL,        -- as in the event: RFC 3339 UTC, or a date when all-day
    "end"         TEXT NOT NULL,
    start_ms      INTEGER NOT NULL,     -- the same as ms since the epoch (a date: its UTC midnight)
    end_ms        INTEGER NOT NULL,
    revision      INTEGER NOT NULL,     -- calendar.event.* events applied to this row
    data          TEXT NOT NULL,        -- the event's data without changes/previous/reason
    seq           INTEGER NOT NULL,     -- the event that last changed the row
    PRIMARY KEY (source, uid, recurrence_id)
);
CREATE INDEX calendar_events_end ON calendar_events(source, end_ms);
