-- Schema version 3: search indexes of a collection. One row per index; `kind` is 'plaid'
-- (token codec: centroids + residual quantiles, in `data`) for now. Segments written while
-- an index exists carry its sections, tagged with `id`; a segment without them (written
-- before the index, or by an older format) is searched exactly until compaction rewrites it.

CREATE TABLE indexes (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    kind          TEXT    NOT NULL,
    params        TEXT    NOT NULL,
    data          BLOB    NOT NULL,
    created_at    INTEGER NOT NULL,
    UNIQUE (collection_id, kind)
);
