"""The binding answers as the shell does on the same database, and a SciFact slice runs
end to end with the real model (all-MiniLM-L6-v2 from scripts/get-model.sh)."""

import json
import math
import os
import subprocess

import numpy as np
from conftest import MODELS, SCIFACT, random_docs, require, shell_binary

import maxsimdb


def shell(path, sql):
    exe = shell_binary()
    require(exe is not None, "the shell binary is not built (cargo build --bin maxsimdb)")
    out = subprocess.run([exe, path, "--read-only", "--format", "json", "-c", sql], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_results_equal_the_shells(tmp_path):
    path = str(tmp_path / "s.msdb")
    docs = random_docs(120, 8, seed=3)
    with maxsimdb.open(path) as db:
        c = db.create_collection("c", dim=8, columns={"year": "INTEGER"})
        c.insert([f"d{i}" for i in range(120)], tokens=docs, columns={"year": [1900 + i for i in range(120)]})
        queries = random_docs(4, 8, seed=4)
        mine = [c.search(q, k=7, where="year >= 1950") for q in queries]
        rows = db.execute("SELECT id, score FROM c WHERE year >= ? ORDER BY maxsim(?) LIMIT 7", [1950, queries[0]])
    for q, res in zip(queries, mine):
        lit = json.dumps(q.tolist())
        out = shell(path, f"SELECT id, score FROM c WHERE year >= 1950 ORDER BY maxsim('{lit}') LIMIT 7")
        got = out[-1]["rows"]
        assert [r["id"] for r in got] == list(res.ids)
        np.testing.assert_allclose([r["score"] for r in got], res.scores, rtol=1e-5, atol=1e-5)
    assert [r["id"] for r in rows] == list(mine[0].ids)


def load_jsonl(name):
    with open(os.path.join(SCIFACT, name)) as f:
        return [json.loads(line) for line in f]


def test_scifact_slice_with_the_real_model(tmp_path):
    require(os.path.isfile(os.path.join(MODELS, "all-MiniLM-L6-v2", "model.safetensors")),
            "all-MiniLM-L6-v2 is not in the model cache (scripts/get-model.sh)")
    require(os.path.isdir(SCIFACT), "SciFact is not at ../shared/datasets/scifact")
    corpus = {d["_id"]: d for d in load_jsonl("corpus.jsonl")}
    queries = {q["_id"]: q["text"] for q in load_jsonl("queries.jsonl")}
    qrels = {}
    with open(os.path.join(SCIFACT, "qrels.tsv")) as f:
        next(f)
        for line in f:
            q, d, s = line.split()
            qrels.setdefault(q, {})[d] = int(s)
    # 25 judged queries, their relevant documents, and the first 150 others as distractors.
    qids = [q for q in queries if q in qrels][:25]
    keep = {d for q in qids for d in qrels[q]} | set(list(corpus)[:150])
    ids = sorted(keep, key=int)
    path = str(tmp_path / "sf.msdb")
    with maxsimdb.open(path) as db:
        sf = db.create_collection("sf", columns={"title": "TEXT", "text": "TEXT"}, model="all-MiniLM-L6-v2",
                                  embed=["title", "text"], pooled=["model"], ids="integer")
        seen = []
        n = sf.insert_text([int(i) for i in ids], {"title": [corpus[i]["title"] for i in ids],
                                                  "text": [corpus[i]["text"] for i in ids]},
                           progress=lambda done, total: seen.append((done, total)))
        assert n == len(ids) == sf.count() and seen[-1] == (len(ids), len(ids))
        doc = sf.get(int(ids[0]))
        assert doc["tokens"].shape[1] == 384 and doc["pooled"]["model"].shape == (384,)
        ndcg = []
        results = {}
        for q in qids:
            res = sf.search(queries[q], k=10)
            results[q] = res
            gains = [1.0 if str(i) in qrels[q] else 0.0 for i in res.ids]
            ideal = sorted([1.0] * len(qrels[q]), reverse=True)[:10]
            dcg = sum(g / math.log2(r + 2) for r, g in enumerate(gains))
            ndcg.append(dcg / sum(g / math.log2(r + 2) for r, g in enumerate(ideal)))
        # MaxSim with MiniLM scores 0.707 nDCG@10 on all of SciFact; a 300-document slice
        # is easier. A broken encoder, tokenizer or scorer lands far below.
        assert np.mean(ndcg) > 0.6, np.mean(ndcg)
        dense = sf.search(queries[qids[0]], field="model", k=5)
        assert dense.plan == "exact" and len(dense) == 5
    # The shell, with its own copy of the model, ranks the same documents with the same scores.
    for q in qids[:3]:
        text = queries[q].replace("'", "''")
        got = shell(path, f"SELECT id, score FROM sf ORDER BY maxsim('{text}') LIMIT 10")[-1]["rows"]
        assert [int(r["id"]) for r in got] == [int(i) for i in results[q].ids]
        np.testing.assert_allclose([r["score"] for r in got], results[q].scores, rtol=1e-4)
