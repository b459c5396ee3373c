-- Projection "items": short-term memory items (emails, forms, notes) and
-- their full-text index (docs/memory.md, "Items and search").
CREATE TABLE items (
    id         INTEGER PRIMARY KEY,  -- the event's seq
    event_id   TEXT NOT NULL,
    contact_id TEXT,                 -- the person it is about, as first resolved (merges are followed when reading); NULL: none
    kind       TEXT NOT NULL,        -- email | form | note
    text       TEXT NOT NULL,        -- subject + body, or the form's message fields; at most 64 KiB
    at         TEXT NOT NULL,        -- occurred_at
    expires_at TEXT NOT NULL         -- at + the kind's TTL
);
CREATE INDEX items_contact ON items(contact_id, id) WHERE contact_id IS NOT NULL;
CREATE INDEX items_at ON items(at);

-- The full-text index, an external-content FTS5 table over items (rowid =
-- items.id), kept in step by triggers: the projection only writes items, and
-- a rebuild's DELETE FROM items or a snapshot's reload keep it equal. It is
-- not one of the projection's tables (replay --check digests items).
CREATE VIRTUAL TABLE items_fts USING fts5(text, content = 'items', content_rowid = 'id',
                                          tokenize = 'unicode61 remove_diacritics 2');
CREATE TRIGGER items_fts_insert AFTER INSERT ON items BEGIN
    INSERT INTO items_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER items_fts_delete AFTER DELETE ON items BEGIN
    INSERT INTO items_fts(items_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER items_fts_update AFTER UPDATE OF text ON items BEGIN
    INSERT INTO items_fts(items_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO items_fts(rowid, text) VALUES (new.id, new.text);
END;
