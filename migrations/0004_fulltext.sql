-- Schema version 4: the change log that keeps full-text indexes (tantivy, derived state
-- under fulltext/<collection id>/) in step with the catalog.
--
-- While a collection has a full-text index, triggers on its c{N}_docs table (created with
-- the index, named c{N}_ft_ins / _upd / _del) append the row id of every inserted,
-- deleted, or text-updated document here, in the same transaction as the write. The
-- writer applies entries past the sequence number recorded in the tantivy commit, commits
-- tantivy with the new number, then deletes the applied entries; a crash anywhere in
-- between leaves entries that are applied again (idempotently) at the next write or open.

CREATE TABLE fulltext_log (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id INTEGER NOT NULL,
    row           INTEGER NOT NULL
);
