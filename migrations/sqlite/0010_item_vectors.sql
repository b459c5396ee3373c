-- Item vectors made by a remote embed model (docs/memory.md, "Vectors"): a
-- derived index keyed by (model, item), outside the ledger and outside
-- replay --check (no projection owns it). Vectors of the local embedder are
-- not stored: it is deterministic and cheap, so they are computed when
-- searched.
CREATE TABLE item_vectors (
    model   TEXT NOT NULL,      -- PROVIDER/MODEL that made it
    item_id INTEGER NOT NULL,   -- items.id
    dim     INTEGER NOT NULL,
    vec     BLOB NOT NULL,      -- dim float32, in the machine's byte order
    PRIMARY KEY (model, item_id)
) WITHOUT ROWID;
