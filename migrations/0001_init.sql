-- maxsimdb catalog, schema version 1.
-- Never edit a released migration; add a new numbered file instead.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- One row per collection. `spec` is the JSON CollectionSpec (columns, vector layout).
-- Per collection N the catalog also holds:
--   c{N}_docs     (_row INTEGER PRIMARY KEY AUTOINCREMENT, _id UNIQUE, _seg, user columns...)
--   c{N}_pending  (_row, ntok, tokens BLOB, pooled BLOB)   vectors not yet in a segment
--   c{N}_tomb     (_row, _seg)                            deleted rows of published segments
CREATE TABLE collections (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE COLLATE NOCASE,
    spec       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- The segment manifest: a segment file is live iff it has a row here.
CREATE TABLE segments (
    id             INTEGER PRIMARY KEY,
    collection_id  INTEGER NOT NULL REFERENCES collections(id),
    file           TEXT NOT NULL,
    doc_count      INTEGER NOT NULL,
    token_count    INTEGER NOT NULL,
    bytes          INTEGER NOT NULL,
    format_version INTEGER NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX segments_by_collection ON segments(collection_id);
INSERT INTO meta(key, value) VALUES ('next_segment_id', '1');
