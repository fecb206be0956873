//! Integration tests: one binary, one module per topic.

mod common;
mod crash;
mod corruption;
mod crud;
mod errors;
mod migrations;
mod search;
mod snapshot;
