-- Schema version 2: files replaced by compaction or dropped with a collection are retired,
-- not deleted at once, so a reader whose snapshot still names them can open them; the
-- writer deletes them after a grace period. `generation` counts committed writes, so
-- derived state (indexes) can record which catalog state it reflects.

CREATE TABLE retired_files (
    path       TEXT PRIMARY KEY,
    retired_at INTEGER NOT NULL
) WITHOUT ROWID;

INSERT OR IGNORE INTO meta(key, value) VALUES ('generation', '0');
