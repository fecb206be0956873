#!/usr/bin/env bash
# Formatting and lints, as run before every commit: rustfmt check, then clippy on every
# target of the workspace with warnings as errors. (CI runs the format check and the tests;
# clippy's separate check build of every dependency would add ~5 minutes on 2 cores.)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
