-- Projection "identity": contacts, their identities (email, phone, payment
-- customer id) and organisations, resolved from every event that names a
-- person (docs/memory.md). Merges and unmerges are events too.
CREATE TABLE contacts (
    id          TEXT PRIMARY KEY,   -- "c" + 25 hex: from the first identity seen
    name        TEXT,               -- the first name given
    email       TEXT,               -- the first email address
    phone       TEXT,
    org_id      TEXT,
    merged_into TEXT,               -- merged away: the contact it joined
    first_seq   INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    last_at     TEXT,               -- when the last event naming it occurred
    last_type   TEXT,               -- and its type
    events      INTEGER NOT NULL    -- events naming it
) WITHOUT ROWID;
CREATE INDEX contacts_org ON contacts(org_id) WHERE org_id IS NOT NULL;

CREATE TABLE identities (
    kind          TEXT NOT NULL,    -- email | phone | payment
    value         TEXT NOT NULL,    -- normalised: lower-case address, +digits, the id
    contact_id    TEXT NOT NULL,    -- where it points now (a merge moves it)
    first_contact TEXT NOT NULL,    -- where it pointed first (an unmerge restores it)
    seq           INTEGER NOT NULL,
    PRIMARY KEY (kind, value)
) WITHOUT ROWID;
CREATE INDEX identities_contact ON identities(contact_id);

CREATE TABLE orgs (
    id        TEXT PRIMARY KEY,     -- "o" + 25 hex of the domain
    domain    TEXT NOT NULL UNIQUE,
    name      TEXT,                 -- a company name given with it, if any
    first_seq INTEGER NOT NULL
) WITHOUT ROWID;

-- Facts about contacts: (subject, key, value, confidence, source event,
-- observed_at). A newer fact supersedes an older one of the same key and
-- kind of source without deleting it; a different value from another kind
-- of source stands beside it as a conflict until the operator records one.
CREATE TABLE facts (
    id            INTEGER PRIMARY KEY,  -- the order facts were observed in
    contact_id    TEXT NOT NULL,        -- where it belongs now (merges move it)
    first_contact TEXT NOT NULL,        -- where it was recorded (unmerges restore it)
    key           TEXT NOT NULL,        -- name, email, phone, company, role, payment_total...
    value         TEXT NOT NULL,        -- JSON
    confidence    REAL NOT NULL,
    source        TEXT NOT NULL,        -- form, email, payment, subscription, calendar, import, step, operator
    source_seq    INTEGER NOT NULL,     -- the event it comes from
    observed_at   TEXT NOT NULL,
    superseded_by INTEGER               -- the fact that replaced it, NULL while current
);
CREATE INDEX facts_current ON facts(contact_id, key) WHERE superseded_by IS NULL;
CREATE INDEX facts_contact ON facts(contact_id, key, id);
