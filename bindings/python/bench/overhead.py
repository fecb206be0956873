"""The Python binding's overhead: insert and exact-search throughput through the Python
package against the Rust API, on the same data, in one script.

    maturin build --release -m bindings/python/Cargo.toml -o dist && pip install dist/maxsimdb-*.whl
    cargo build --release -p maxsimdb-bench
    python bindings/python/bench/overhead.py [--docs 20000] [--queries 300] [--json]

It draws unit-norm token matrices with numpy (seeded), writes them to a scratch folder,
runs the bench runner's `binding` suite on them (the Rust API: same collection, batches,
queries and k), then does the same through `maxsimdb` from Python, checks that both
returned the same top-k ids for every query, and prints both sides and their ratio.
Build both in release: a dev-profile wheel measures the compiler, not the binding.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import maxsimdb

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--min-tokens", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--query-tokens", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bench", default=os.path.join(ROOT, "target", "release", "maxsimdb-bench"),
                    help="the bench runner binary (cargo build --release -p maxsimdb-bench)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    a = ap.parse_args()

    rng = np.random.default_rng(a.seed)
    lens = rng.integers(a.min_tokens, a.max_tokens + 1, a.docs).astype(np.uint32)
    tokens = rng.standard_normal((int(lens.sum()), a.dim)).astype(np.float32)
    tokens /= np.linalg.norm(tokens, axis=1, keepdims=True)
    # Queries: tokens of random documents plus noise, so each has a clear nearest document.
    picks = rng.integers(0, int(lens.sum()), (a.queries, a.query_tokens))
    queries = tokens[picks] + 0.3 * rng.standard_normal((a.queries, a.query_tokens, a.dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=2, keepdims=True)
    docs = np.split(tokens, np.cumsum(lens)[:-1].astype(np.int64))
    ids = [f"d{i}" for i in range(a.docs)]

    with tempfile.TemporaryDirectory() as scratch:
        lens.astype("<u4").tofile(os.path.join(scratch, "lens.u32"))
        tokens.astype("<f4").tofile(os.path.join(scratch, "tokens.f32"))
        queries.astype("<f4").tofile(os.path.join(scratch, "queries.f32"))
        with open(os.path.join(scratch, "meta.json"), "w") as f:
            json.dump({"dim": a.dim, "batch": a.batch, "k": a.k, "query_tokens": a.query_tokens}, f)
        out = subprocess.run([a.bench, "binding", "--data", scratch, "--json"], check=True,
                             capture_output=True, text=True).stdout
        rust = json.loads(out.strip().splitlines()[-1])
        with open(os.path.join(scratch, "rust_top.json")) as f:
            rust_top = json.load(f)

        with maxsimdb.open(os.path.join(scratch, "py.msdb")) as db:
            coll = db.create_collection("docs", dim=a.dim)
            t = time.perf_counter()
            for s in range(0, a.docs, a.batch):
                coll.insert(ids[s:s + a.batch], tokens=docs[s:s + a.batch])
            coll.flush()
            insert_s = time.perf_counter() - t
            lat, same = [], 0
            t = time.perf_counter()
            for qi, q in enumerate(queries):
                s = time.perf_counter()
                res = coll.search(q, k=a.k, plan="exact")
                lat.append((time.perf_counter() - s) * 1e3)
                same += list(res.ids) == rust_top[qi]
            search_s = time.perf_counter() - t

    py = {
        "insert_s": insert_s,
        "insert_docs_s": a.docs / insert_s,
        "insert_tokens_s": int(lens.sum()) / insert_s,
        "search_qps": a.queries / search_s,
        "search_p50_ms": float(np.median(lat)),
    }
    res = {
        "docs": a.docs, "tokens": int(lens.sum()), "dim": a.dim, "batch": a.batch, "queries": a.queries,
        "query_tokens": a.query_tokens, "k": a.k, "same_top_k": same, "rust": rust, "python": py,
        "python_vs_rust_insert": py["insert_docs_s"] / rust["insert_docs_s"],
        "python_vs_rust_search": py["search_qps"] / rust["search_qps"],
        "python_search_overhead_ms": py["search_p50_ms"] - rust["search_p50_ms"],
    }
    print(f"{a.docs} docs, {int(lens.sum())} tokens of d = {a.dim}; {a.queries} queries of {a.query_tokens} tokens, k = {a.k}")
    print(f"{'':24} {'Rust API':>12} {'Python':>12} {'Python/Rust':>12}")
    for key in ("insert_docs_s", "insert_tokens_s", "search_qps"):
        print(f"{key:24} {rust[key]:12.1f} {py[key]:12.1f} {py[key] / rust[key]:12.3f}")
    print(f"{'search_p50_ms':24} {rust['search_p50_ms']:12.3f} {py['search_p50_ms']:12.3f}")
    print(f"same top-{a.k} ids for {same} of {a.queries} queries")
    if a.json:
        print(json.dumps(res))
    if same != a.queries:
        sys.exit("the Python and Rust results differ")


if __name__ == "__main__":
    main()
