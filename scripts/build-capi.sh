#!/usr/bin/env bash
# Builds the C libraries so that they export the C API and nothing else:
#
#   target/$PROFILE/capi/libmaxsimdb.a        static library: one object whose only global
#                                             symbols are msdb_* (the bundled SQLite, zstd,
#                                             hnsw_rs and Rust symbols are local to it)
#   target/$PROFILE/capi/libmaxsimdb.so.0     shared library, SONAME libmaxsimdb.so.0 (the
#                                             ABI major version), dynamic symbols msdb_* only
#   target/$PROFILE/capi/libmaxsimdb.so       -> libmaxsimdb.so.0 (for -lmaxsimdb)
#   target/$PROFILE/capi/native-libs.txt      the system libraries a static link needs
#
#   scripts/build-capi.sh               (PROFILE=release for an optimised build)
#
# How: cargo builds the Rust staticlib; `ld -r` joins its members into one relocatable
# object; objcopy makes every global symbol but msdb_* local; the static library is that
# object, and the shared library is linked from it with a version script. (rustc's own
# cdylib exports every #[no_mangle] symbol of every dependency, e.g. hnsw_rs's C API,
# and a staticlib exports everything, SQLite included: an application that also links
# the system SQLite would silently call ours.) Needs ld, objcopy, readelf, cc, python3.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
profile="${PROFILE:-debug}"
release_flag=()
[ "$profile" = release ] && release_flag=(--release)
target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="$target_dir/$profile"
dir="$out/capi"
major="$(sed -n 's/^pub const MSDB_VERSION_MAJOR: u32 = \([0-9]*\);/\1/p' src/ffi/mod.rs)"
[ -n "$major" ] || { echo "MSDB_VERSION_MAJOR not found in src/ffi/mod.rs" >&2; exit 1; }
mkdir -p "$dir"
log="$dir/rustc.log"

cargo rustc --lib --locked "${release_flag[@]}" --crate-type staticlib -- --print native-static-libs \
    2> "$log" || { cat "$log" >&2; exit 1; }
native_libs="$(sed -n 's/.*native-static-libs: //p' "$log" | tail -1)"
[ -n "$native_libs" ] || native_libs="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"
echo "$native_libs" > "$dir/native-libs.txt"

ld -r --whole-archive "$out/libmaxsimdb.a" -o "$dir/all.o"
readelf -Ws "$dir/all.o" | awk '($5 == "GLOBAL" || $5 == "WEAK") && $7 != "UND" && $8 ~ /^msdb_/ { print $8 }' \
    | sort -u > "$dir/exports.txt"
[ -s "$dir/exports.txt" ] || { echo "no msdb_ symbols in $out/libmaxsimdb.a" >&2; exit 1; }
objcopy --keep-global-symbols="$dir/exports.txt" "$dir/all.o" "$dir/maxsimdb.o"
rm -f "$dir/all.o"
# The archive is written by a few lines of Python, not ar: some binutils installs load an
# LLVM plugin that fails on this object while indexing it.
python3 - "$dir/libmaxsimdb.a" "$dir/maxsimdb.o" "$dir/exports.txt" <<'PY'
import os, struct, sys
out, obj, syms = sys.argv[1], sys.argv[2], open(sys.argv[3]).read().split()
def header(name, size):
    return b"%-16s%-12d%-6d%-6d%-8o%-10d`\n" % (name, 0, 0, 0, 0o644, size)
names = b"".join(s.encode() + b"\0" for s in syms)
index_size = 4 + 4 * len(syms) + len(names)
pad = index_size % 2
member_at = 8 + 60 + index_size + pad
with open(out + ".tmp", "wb") as f:
    f.write(b"!<arch>\n")
    f.write(header(b"/", index_size))
    f.write(struct.pack(">I", len(syms)) + struct.pack(">I", member_at) * len(syms) + names)
    f.write(b"\n" * pad)
    size = os.path.getsize(obj)
    f.write(header(b"maxsimdb.o/", size))
    with open(obj, "rb") as o:
        while chunk := o.read(1 << 24):
            f.write(chunk)
    f.write(b"\n" * (size % 2))
os.replace(out + ".tmp", out)
PY
printf '{ global: msdb_*; local: *; };\n' > "$dir/exports.map"
# shellcheck disable=SC2086 # the native libraries are separate words
cc -shared -o "$dir/libmaxsimdb.so.$major" "$dir/maxsimdb.o" -Wl,-soname,"libmaxsimdb.so.$major" \
    -Wl,--version-script="$dir/exports.map" $native_libs
ln -sf "libmaxsimdb.so.$major" "$dir/libmaxsimdb.so"
rm -f "$dir/maxsimdb.o"
echo "built $dir/libmaxsimdb.a and $dir/libmaxsimdb.so.$major ($(wc -l < "$dir/exports.txt") msdb_ symbols)"
