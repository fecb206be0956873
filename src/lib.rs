//! # maxsimdb
//!
//! An embedded multi-vector retrieval database: what SQLite is to SQL, maxsimdb is to
//! late-interaction (ColBERT-style) retrieval. One library in your process keeps, per
//! document, token-level embeddings and pooled embeddings in memory-mapped, immutable,
//! checksummed segment files, with a SQLite catalog as the single source of truth, and
//! answers exact MaxSim and dense queries with SIMD kernels.
//!
//! ```
//! use maxsimdb::{CollectionSpec, ColumnType, Database, Document, Filter, SearchRequest, VectorSpec};
//!
//! # fn main() -> maxsimdb::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let db = Database::open(dir.path().join("demo.msdb"))?;
//! let spec = CollectionSpec::new("papers", VectorSpec::new(2).pooled("mean", 2))
//!     .column("year", ColumnType::Integer);
//! db.create_collection(&spec)?;
//! db.insert("papers", &[
//!     Document::new("a").tokens(vec![1.0, 0.0, 0.0, 1.0]).pooled("mean", vec![0.7, 0.7]).set("year", 2020),
//!     Document::new("b").tokens(vec![0.0, 1.0]).pooled("mean", vec![0.0, 1.0]).set("year", 2024),
//! ])?;
//! // Two query tokens: [1,0] and [0,1]. Document "a" matches both (score 2), "b" one (score 1).
//! let hits = db.search("papers", &SearchRequest::maxsim(vec![1.0, 0.0, 0.0, 1.0]).limit(5))?;
//! assert_eq!(hits[0].id, "a".into());
//! assert_eq!(hits[0].score, 2.0);
//! let recent = db.search("papers", &SearchRequest::maxsim(vec![1.0, 0.0])
//!     .filter(Filter::gte("year", 2022)))?;
//! assert_eq!(recent.len(), 1);
//! db.flush("papers")?; // pending vectors → an immutable segment file
//! # Ok(()) }
//! ```
//!
//! ## Core concepts
//! - [`Database`]: a directory (`*.msdb`) holding `catalog.sqlite` and `segments/`. One
//!   writer process at a time (a `LOCK` file); any number of read-only handles.
//! - A collection ([`CollectionSpec`]) has scalar columns and a [`VectorSpec`]: token
//!   dimension, named pooled vectors, storage type (f32 or f16).
//! - A [`Document`] has a user id ([`DocId`], never renumbered), scalar values, a token
//!   matrix and pooled vectors.
//! - Writes commit to the catalog (pending vectors); [`Database::flush`] turns them into an
//!   immutable segment; [`Database::compact`] merges segments and drops deleted rows.
//! - [`Database::search`] takes a [`SearchRequest`]: exact MaxSim or dense scoring, a
//!   [`Filter`] evaluated by SQLite, and a limit.
#![deny(unsafe_code, unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

mod catalog;
mod db;
#[cfg(feature = "embed")]
pub mod embed;
mod error;
pub mod eval;
#[cfg(feature = "capi")]
#[allow(unsafe_code, reason = "the C API: raw pointers from C, #[no_mangle] entry points")]
pub mod ffi;
mod filter;
pub mod index;
#[doc(hidden)]
pub mod rng;
pub mod scoring;
pub mod sql;
#[doc(hidden)]
pub mod storage;
#[doc(hidden)]
pub mod testing;
mod types;
mod validate;
pub mod vector;

pub use catalog::SCHEMA_VERSION;
#[cfg(feature = "fulltext")]
pub use db::FullTextOptions;
pub use db::{
    BackupReport, CalibratedSetting, Calibration, CheckReport, CodecInfo, CollectionStats, Database,
    DatabaseBuilder, DatabaseInfo, Fusion, HnswParams, HopfieldLookup, HopfieldResult, IndexInfo,
    IndexProgress, IndexSpec, Interrupt, ListRequest, MuveraOptions, OnConflict, PlaidOptions, Plan,
    PlanRecall, Query, Refine, SearchOutput, SearchRequest, StageStats, AUTO_EXACT_MAX_DOCS,
    DEFAULT_CODEC_MIN_TOKENS, DEFAULT_FLUSH_THRESHOLD_TOKENS, DEFAULT_RETIRE_GRACE, MAX_LIMIT,
};
#[cfg(feature = "embed")]
pub use db::{EvalOptions, EvalReport, EvalRow};
#[cfg(feature = "parquet")]
pub use db::{ExportReport, ImportReport};
pub use error::{Error, ErrorCode, Result};
pub use filter::{CmpOp, Filter, ID_COLUMN};
pub use index::hopfield::{HopfieldParams, Recall};
pub use types::{
    CollectionSpec, ColumnDef, ColumnType, DocId, Document, Dtype, EmbeddingSpec, Hit, IdType, PooledSpec,
    StoredDocument, Value, VectorSpec, DEFAULT_RECALL_TARGET, MAX_DIM, MAX_TOKENS_PER_DOC,
};

/// The README's code examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
