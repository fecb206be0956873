//! The statement tree the parser produces and the executor runs.

use super::*;

/// A parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Statement {
    CreateCollection(CollectionSpec),
    DropCollection(String),
    CreateIndex {
        coll: String,
        kind: String,
        field: Option<String>,
        opts: Vec<(String, Value)>,
    },
    DropIndex {
        coll: String,
        kind: String,
    },
    ShowCollections,
    ShowIndexes(String),
    Describe(String),
    Insert {
        coll: String,
        rows: Vec<Vec<(String, Value)>>,
    },
    Import {
        coll: String,
        path: String,
    },
    Export {
        coll: String,
        path: String,
    },
    Update {
        coll: String,
        sets: Vec<(String, Value)>,
        filter: Filter,
    },
    Delete {
        coll: String,
        filter: Option<Filter>,
    },
    Select {
        coll: String,
        items: Vec<String>,
        req: SearchRequest,
        explain: bool,
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
}
