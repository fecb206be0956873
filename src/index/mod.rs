//! Candidate generation for MaxSim at scale: building blocks whose results are always
//! re-scored exactly (ALGORITHMS.md §2).

pub mod hnsw;
pub mod hopfield;
pub mod muvera;
pub mod plaid;
