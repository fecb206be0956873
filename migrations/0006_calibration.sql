-- Schema version 6: the recall calibration of an approximate index. At build, the database
-- draws sample queries from its own documents, measures recall@10 against exact search for
-- a ladder of parameter settings (PLAID ncells/ndocs/threshold; MUVERA candidates; HNSW
-- ef) and stores the results here as JSON; `Plan::Auto` uses an index only with the
-- cheapest setting that reaches the collection's (or the query's) recall target. NULL: not
-- calibrated (indexes built before schema 6 are calibrated at their first use by a
-- writer, or with `Database::calibrate_index`).

ALTER TABLE indexes ADD COLUMN calibration TEXT;
