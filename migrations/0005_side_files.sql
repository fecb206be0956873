-- Schema version 5 (segment format v3): every index of a segment is its own side file.
--
-- `side_files` names the side file of (segment, index): a row exists only once the file
-- was published (temp, fsync, rename, directory fsync), in the same transaction that adds
-- the segment (flush, compaction) or after the segment (CREATE INDEX builds one per
-- existing segment). A segment without a row for an index is searched exactly.
-- `indexes.file` names the index's shared state (the PLAID codec, MUVERA's matrices) as a
-- per-index file, read once per process instead of a catalog blob read per query (NULL on
-- indexes created by schema 3–4, whose state stays in `data`). `indexes.state` is
-- 'building' while CREATE INDEX still has segments to cover (re-running it resumes) and
-- 'ready' after.

CREATE TABLE side_files (
    segment_id INTEGER NOT NULL,
    index_id   INTEGER NOT NULL,
    file       TEXT    NOT NULL,
    bytes      INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (segment_id, index_id)
) WITHOUT ROWID;
CREATE INDEX side_files_by_index ON side_files(index_id);

ALTER TABLE indexes ADD COLUMN file TEXT;
ALTER TABLE indexes ADD COLUMN state TEXT NOT NULL DEFAULT 'ready';
