//! Integration tests: one binary, one module per topic.

mod common;
mod corruption;
mod crash;
mod crud;
mod errors;
mod migrations;
mod search;
mod snapshot;
