//! Integration tests: one binary, one module per topic.

mod backup;
mod calibration;
mod codes;
#[cfg(feature = "embed")]
mod colbert;
mod common;
mod compat;
mod concurrency;
mod corruption;
mod crash;
mod crud;
#[cfg(feature = "embed")]
mod embed;
mod errors;
#[cfg(feature = "embed")]
mod evaluate;
#[cfg(feature = "parquet")]
mod export;
mod faults;
#[cfg(feature = "fulltext")]
mod fulltext;
mod hnsw;
mod hopfield;
mod migrations;
#[cfg(all(feature = "embed", feature = "parquet"))]
mod modernbert;
mod plaid;
mod search;
mod shell;
mod sidefiles;
mod snapshot;
