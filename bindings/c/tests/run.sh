#!/usr/bin/env bash
# Builds the C libraries, checks the committed header and the exported symbols, links
# beside the system SQLite, compiles the C test against the shared and the static library
# and runs it three times: static, static under ASan + UBSan + LeakSanitizer, shared under
# valgrind memcheck when valgrind is installed (zero errors, zero leaks); then the C
# README's example and the Python binding's test.
#
#   bindings/c/tests/run.sh            (from anywhere; uses target/debug)
#   PROFILE=release bindings/c/tests/run.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
cd "$root"
profile="${PROFILE:-debug}"
release_flag=()
[ "$profile" = release ] && release_flag=(--release)
target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="$target_dir/$profile"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== header: bindings/c/include/maxsimdb.h matches src/ffi"
if command -v cbindgen >/dev/null; then
    cbindgen --config bindings/c/cbindgen.toml --output bindings/c/include/maxsimdb.h --verify src/ffi/mod.rs \
        2> >(grep -v "^WARN: Skip" >&2) || {
        echo "the committed header is out of date: regenerate it (command in bindings/c/cbindgen.toml)" >&2
        exit 1
    }
else
    echo "cbindgen not installed: header check skipped (cargo install cbindgen --version 0.29.2)" >&2
fi

echo "== libraries: libmaxsimdb.so.0 + libmaxsimdb.a ($profile, scripts/build-capi.sh)"
PROFILE="$profile" scripts/build-capi.sh
out="$out/capi"
native_libs="$(cat "$out/native-libs.txt")"

echo "== exported symbols: msdb_* only, SONAME libmaxsimdb.so.0"
foreign="$(nm -D --defined-only "$out/libmaxsimdb.so" | awk '$3 !~ /^msdb_/ { print $3 }')"
[ -z "$foreign" ] || { echo "libmaxsimdb.so exports foreign symbols:" >&2; echo "$foreign" | head >&2; exit 1; }
readelf -d "$out/libmaxsimdb.so" | grep -q 'Library soname: \[libmaxsimdb.so.0\]' || {
    echo "libmaxsimdb.so has no SONAME libmaxsimdb.so.0" >&2; exit 1; }
foreign="$(readelf -Ws "$out/libmaxsimdb.a" | awk '($5 == "GLOBAL" || $5 == "WEAK") && $7 != "UND" && $8 !~ /^msdb_/ { print $8 }')"
[ -z "$foreign" ] || { echo "libmaxsimdb.a defines foreign global symbols:" >&2; echo "$foreign" | head >&2; exit 1; }
echo "$(nm -D --defined-only "$out/libmaxsimdb.so" | wc -l) dynamic symbols, all msdb_*"

cc_flags=(-std=c11 -Wall -Wextra -Werror -O1 -g -I bindings/c/include)
echo "== compile: shared and static"
cc "${cc_flags[@]}" bindings/c/tests/test_capi.c -o "$work/test_shared" -L "$out" -lmaxsimdb -lm -lpthread \
    -Wl,-rpath,"$out"
# shellcheck disable=SC2086 # the native libraries are separate words
cc "${cc_flags[@]}" bindings/c/tests/test_capi.c -o "$work/test_static" "$out/libmaxsimdb.a" $native_libs
# The static binary must not need the shared library.
if ldd "$work/test_static" | grep -q libmaxsimdb; then
    echo "test_static links libmaxsimdb.so" >&2
    exit 1
fi

echo "== beside the system SQLite (static and shared)"
if [ -f /usr/include/sqlite3.h ] && { [ -e /usr/lib/x86_64-linux-gnu/libsqlite3.so ] || [ -e /usr/lib/libsqlite3.so ] || ldconfig -p | grep -q 'libsqlite3.so '; }; then
    # shellcheck disable=SC2086 # the native libraries are separate words
    cc "${cc_flags[@]}" bindings/c/tests/system_sqlite.c -o "$work/sqlite_static" "$out/libmaxsimdb.a" -lsqlite3 $native_libs
    cc "${cc_flags[@]}" bindings/c/tests/system_sqlite.c -o "$work/sqlite_shared" -L "$out" -lmaxsimdb -lsqlite3 -lm \
        -Wl,-rpath,"$out"
    mkdir "$work/sq1" "$work/sq2"
    "$work/sqlite_static" "$work/sq1"
    "$work/sqlite_shared" "$work/sq2"
else
    echo "the system SQLite (libsqlite3-dev) is not installed: link test skipped" >&2
fi

echo "== run: static"
mkdir "$work/static" && "$work/test_static" "$work/static"
echo "== run: static, under AddressSanitizer + UndefinedBehaviorSanitizer (leaks included)"
# shellcheck disable=SC2086 # the native libraries are separate words
cc "${cc_flags[@]}" -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
    bindings/c/tests/test_capi.c -o "$work/test_asan" "$out/libmaxsimdb.a" $native_libs
mkdir "$work/asan" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 "$work/test_asan" "$work/asan"
echo "== run: shared$(command -v valgrind >/dev/null && echo ', under valgrind memcheck')"
mkdir "$work/shared"
if command -v valgrind >/dev/null; then
    valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect,possible \
        --errors-for-leak-kinds=definite,indirect,possible --track-origins=yes \
        "$work/test_shared" "$work/shared"
else
    echo "valgrind not installed: memcheck skipped" >&2
    "$work/test_shared" "$work/shared"
fi

echo "== the example program of bindings/c/README.md"
sed -n '/^```c$/,/^```$/p' bindings/c/README.md | sed '1d;$d' > "$work/example.c"
cc "${cc_flags[@]}" "$work/example.c" -o "$work/example" -L "$out" -lmaxsimdb -lm -Wl,-rpath,"$out"
(cd "$work" && ./example) | tee "$work/example.out"
printf 'a 2.000\nb 1.000\ntitle: Cats purr, 2 x 2 tokens\nlisted a\nlisted b\nDogs bark 1.000\n' | diff - "$work/example.out"

echo "== ctypes example (bindings/c/python)"
MAXSIMDB_LIB="$out/libmaxsimdb.so" python3 -m unittest discover -s bindings/c/python -p 'test_*.py' -v
