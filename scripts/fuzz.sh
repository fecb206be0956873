#!/usr/bin/env bash
# Fuzz every target (or the ones named) for SECONDS each (default 600) with cargo-fuzz
# (libFuzzer + AddressSanitizer; needs the nightly toolchain). Seeds are committed in
# fuzz/seeds/<target>/; the growing corpus stays in fuzz/corpus/<target>/ (ignored);
# a crash lands in fuzz/artifacts/<target>/ and makes this script fail — turn it into a
# regression test (tests/integration/errors.rs) before fixing it.
#
#   scripts/fuzz.sh                 # all four targets, 10 minutes each
#   scripts/fuzz.sh 60 sql_parse    # one target, one minute
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(sql_parse segment_decode import capi_stmt)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    echo "== $t: ${secs}s"
    # Unknown input sizes: -max_len 4096 covers statements, small segments and imports.
    cargo +nightly fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$secs" -max_len=4096 -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
        2>&1 | tee "fuzz/last-$t.log" | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss|==[0-9]+==ERROR|SUMMARY)" || true
    if ls "fuzz/artifacts/$t"/crash-* "fuzz/artifacts/$t"/timeout-* "fuzz/artifacts/$t"/leak-* >/dev/null 2>&1; then
        echo "$t: found a failure, see fuzz/artifacts/$t and fuzz/last-$t.log" >&2
        exit 1
    fi
done
