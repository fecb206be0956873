#!/usr/bin/env bash
# Every test: the Rust workspace (unit, integration, doc tests), then the C API
# (header check, C test against the shared and static library under valgrind, the C
# README's example with the ctypes example), then the Python package (its wheel in a fresh
# virtualenv, pytest). This is what .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked
bindings/c/tests/run.sh
scripts/test-python.sh
