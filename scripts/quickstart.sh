#!/usr/bin/env bash
# The main job end to end on a fresh machine, through the `maxsimdb` shell: fetch the
# model, build, import BEIR SciFact (or your own JSONL) with in-process embeddings, build a
# full-text index, and answer queries with MaxSim, BM25 and hybrid search.
#
#   scripts/quickstart.sh                 first 2,000 SciFact abstracts into scifact.msdb/
#   scripts/quickstart.sh --docs all      all 5,183
#   scripts/quickstart.sh --data F.jsonl  your documents: one JSON object per line with
#                                         "_id" (or "id"), "title" and "text"
set -euo pipefail
cd "$(dirname "$0")/.."
DOCS=2000
DATA=../shared/datasets/scifact/corpus.jsonl
while [ $# -gt 0 ]; do
    case "$1" in
        --docs) DOCS="$2"; shift 2 ;;
        --data) DATA="$2"; shift 2 ;;
        *) echo "usage: $0 [--docs N|all] [--data FILE.jsonl]" >&2; exit 2 ;;
    esac
done
DB=scifact.msdb
scripts/get-model.sh >/dev/null
cargo build --release --bin maxsimdb
M=target/release/maxsimdb
if [ ! -d "$DB" ]; then
    SLICE="$DATA"
    if [ "$DOCS" != all ]; then
        SLICE="$(mktemp --suffix .jsonl)"
        head -n "$DOCS" "$DATA" > "$SLICE"
    fi
    echo "importing $(wc -l < "$SLICE") documents into $DB (embedding on the CPU; a progress line shows the rate)"
    "$M" "$DB" --format table -c "
        CREATE COLLECTION scifact (title TEXT, text TEXT)
            WITH (model = 'all-MiniLM-L6-v2', embed = 'title,text', pooled = 'model');
        IMPORT INTO scifact FROM '$SLICE';
        CREATE INDEX ON scifact USING fulltext;
        STATS scifact;"
fi
for q in "0-dimensional biomaterials show inductive properties." \
         "1/2000 in UK have abnormal PrP positivity." \
         "ALDH1 expression is associated with poorer prognosis in breast cancer."; do
    echo
    echo "== $q"
    for f in maxsim bm25 hybrid; do
        echo "-- ORDER BY $f"
        "$M" "$DB" --format table -c "SELECT id, score, title FROM scifact ORDER BY $f('${q//\'/\'\'}') LIMIT 3"
    done
done
echo
echo "Explore it: $M $DB   (then .help)"
