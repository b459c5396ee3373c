-- Projection "content": the pieces the content pipeline published and the
-- engagement reported for them later (docs/builtin-workflows.md,
-- "content-pipeline"), fed by content.published and by any event whose
-- data names a piece.
CREATE TABLE content_pieces (
    piece        TEXT PRIMARY KEY,    -- the publishing task's id
    title        TEXT NOT NULL,
    idea_seq     INTEGER,             -- the content.idea event, when known
    effect       TEXT,                -- the webhook.post effect that published it
    published_at TEXT NOT NULL,       -- the content.published event's occurred_at
    seq          INTEGER NOT NULL     -- that event
);
CREATE TABLE content_engagement (
    seq          INTEGER PRIMARY KEY, -- the event that reported it
    piece        TEXT NOT NULL,
    type         TEXT NOT NULL,       -- its type
    metric       TEXT NOT NULL,       -- data.metric, else the type
    value        REAL NOT NULL,       -- data.value or data.count, else 1
    occurred_at  TEXT NOT NULL
);
CREATE INDEX content_engagement_piece ON content_engagement(piece, metric);
