CREATE TABLE c1_docs (_row INTEGER PRIMARY KEY AUTOINCREMENT, _id TEXT NOT NULL UNIQUE, _seg INTEGER, "year" INTEGER, "title" TEXT, "rating" REAL, "meta" TEXT);
CREATE TABLE c1_pending (_row INTEGER PRIMARY KEY, ntok INTEGER NOT NULL, tokens BLOB NOT NULL, pooled BLOB NOT NULL);
CREATE TABLE c1_tomb (_row INTEGER PRIMARY KEY, _seg INTEGER NOT NULL);
CREATE INDEX c1_tomb_by_seg ON c1_tomb(_seg);
CREATE TABLE collections (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE COLLATE NOCASE,
    spec       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE fulltext_log (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id INTEGER NOT NULL,
    row           INTEGER NOT NULL
);
CREATE TABLE indexes (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    kind          TEXT    NOT NULL,
    params        TEXT    NOT NULL,
    data          BLOB    NOT NULL,
    created_at    INTEGER NOT NULL, file TEXT, state TEXT NOT NULL DEFAULT 'ready', calibration TEXT,
    UNIQUE (collection_id, kind)
);
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE retired_files (
    path       TEXT PRIMARY KEY,
    retired_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE segments (
    id             INTEGER PRIMARY KEY,
    collection_id  INTEGER NOT NULL REFERENCES collections(id),
    file           TEXT NOT NULL,
    doc_count      INTEGER NOT NULL,
    token_count    INTEGER NOT NULL,
    bytes          INTEGER NOT NULL,
    format_version INTEGER NOT NULL,
    created_at     INTEGER NOT NULL
, quant_error REAL);
CREATE INDEX segments_by_collection ON segments(collection_id);
CREATE TABLE side_files (
    segment_id INTEGER NOT NULL,
    index_id   INTEGER NOT NULL,
    file       TEXT    NOT NULL,
    bytes      INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (segment_id, index_id)
) WITHOUT ROWID;
CREATE INDEX side_files_by_index ON side_files(index_id);
CREATE TABLE sqlite_sequence(name,seq);
CREATE TABLE token_codecs (
    id             INTEGER PRIMARY KEY,
    collection_id  INTEGER NOT NULL,
    file           TEXT    NOT NULL,
    content_sum    INTEGER NOT NULL,
    nbits          INTEGER NOT NULL,
    centroids      INTEGER NOT NULL,
    trained_tokens INTEGER NOT NULL,
    train_error    REAL    NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX token_codecs_by_collection ON token_codecs(collection_id);
