//! The statement tree the parser produces and the executor runs.

use super::*;

/// A parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Statement {
    CreateCollection {
        spec: CollectionSpec,
        if_not_exists: bool,
    },
    DropCollection {
        name: String,
        if_exists: bool,
    },
    CreateIndex {
        coll: String,
        kind: String,
        field: Option<String>,
        opts: Vec<(String, Value)>,
        if_not_exists: bool,
    },
    DropIndex {
        coll: String,
        kind: String,
        if_exists: bool,
    },
    ShowCollections,
    ShowIndexes(String),
    Describe(String),
    /// `replace`: `INSERT OR REPLACE` (upsert).
    Insert {
        coll: String,
        rows: Vec<Vec<(String, Value)>>,
        replace: bool,
    },
    Import {
        coll: String,
        path: String,
        on_conflict: crate::OnConflict,
    },
    Export {
        coll: String,
        path: String,
    },
    /// `filter: None`: every document (as `DELETE` without `WHERE`).
    Update {
        coll: String,
        sets: Vec<(String, Value)>,
        filter: Option<Filter>,
    },
    Delete {
        coll: String,
        filter: Option<Filter>,
    },
    /// A search (`ORDER BY` a score function); `offset` hits skipped.
    Select {
        coll: String,
        items: Vec<String>,
        req: SearchRequest,
        offset: usize,
        explain: bool,
    },
    /// A listing: no score function.
    List {
        coll: String,
        items: Vec<String>,
        req: ListRequest,
    },
    /// `SELECT COUNT(*) FROM coll [WHERE …]`.
    Count {
        coll: String,
        filter: Option<Filter>,
    },
    /// `known` is `Some` when the cue has unknown (null) components: completion.
    Hopfield {
        coll: String,
        field: String,
        vector: Vec<f32>,
        known: Option<Vec<bool>>,
        opts: Vec<(String, Value)>,
    },
    Flush(String),
    Vacuum(String),
    Backup(String),
    Restore {
        from: String,
        into: String,
    },
    Check,
    Stats(String),
    /// `EVALUATE coll [WITH (queries = '…', qrels = '…', sample = n, …)]`: the pooling lab.
    Evaluate {
        coll: String,
        opts: Vec<(String, Value)>,
    },
}
