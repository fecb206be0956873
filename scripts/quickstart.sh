#!/usr/bin/env bash
# The main job end to end on a fresh machine: fetch the model, build, embed and index BEIR
# SciFact, answer queries. Extra arguments go to the example (e.g. --docs all).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/get-model.sh >/dev/null
exec cargo run --release --example scifact -- "$@"
