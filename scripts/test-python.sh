#!/usr/bin/env bash
# The Python package (bindings/python): build its abi3 wheel with maturin, install it into
# a fresh virtualenv (nothing else of the repository on its path) and run the pytest suite
# there. Run by scripts/test.sh after the Rust tests, so the wheel's build reuses their
# target/ (the dev profile: dependencies at opt-level 3, our crates at 1) and the shell
# binary the shell-equality test compares against.
#
# Needs python3 with venv and pip, and maturin (PATH, or `python3 -m pip install maturin`;
# .ci/run installs it). PY_VENV (default target/py-venv) is recreated on every run.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${MATURIN:-}" ]; then
    maturin=("$MATURIN")
elif command -v maturin >/dev/null; then
    maturin=(maturin)
elif python3 -m maturin --version >/dev/null 2>&1; then
    maturin=(python3 -m maturin)
else
    echo "maturin not found: python3 -m pip install maturin (or set MATURIN)" >&2
    exit 1
fi

wheels=target/wheels
rm -rf "$wheels"
echo "== build the wheel (maturin, dev profile)"
"${maturin[@]}" build --profile dev --locked -m bindings/python/Cargo.toml -o "$wheels"
wheel=$(ls "$wheels"/maxsimdb-*.whl)

venv=${PY_VENV:-target/py-venv}
echo "== install $wheel into a fresh virtualenv ($venv)"
python3 -m venv --clear "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel" pytest tqdm pyarrow

# The shell the equality tests compare with (cargo test built it); every resource the
# suite can skip for (shell, SciFact, the real model) must be there.
cargo build --locked --bin maxsimdb
echo "== pytest (from the wheel in $venv)"
cd bindings/python/tests
MAXSIMDB_SHELL="$PWD/../../../target/debug/maxsimdb" MAXSIMDB_REQUIRE_ALL=1 \
    "../../../$venv/bin/python" -m pytest -q -p no:cacheprovider .
