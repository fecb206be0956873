"""Threads searching while one inserts (the GIL is released inside), and read-only
handles in this process beside a writer in another."""

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from conftest import random_docs

import maxsimdb


def test_threads_search_while_one_inserts(db):
    dim = 16
    coll = db.create_collection("c", dim=dim)
    first = random_docs(200, dim, seed=1)
    coll.insert([f"a{i}" for i in range(200)], tokens=first)
    later = random_docs(400, dim, seed=2)
    errors, counts = [], []
    done = threading.Event()

    def writer():
        try:
            for b in range(0, 400, 20):
                coll.insert([f"b{i}" for i in range(b, b + 20)], tokens=later[b:b + 20])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            done.set()

    def reader(seed):
        rng = np.random.default_rng(seed)
        try:
            while not done.is_set() or len(counts) < 8:
                i = int(rng.integers(200))
                res = coll.search(first[i], k=5, plan="exact")
                # A document always finds itself first (unit vectors: score = its length);
                # documents inserted meanwhile can only tie, never beat it.
                assert res.scores[0] >= len(first[i]) - 1e-3 and len(res) == 5
                counts.append(coll.count())
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert counts == sorted(counts) or all(200 <= c <= 600 for c in counts)
    assert all(200 <= c <= 600 for c in counts) and coll.count() == 600


WRITER = textwrap.dedent("""
    import sys, numpy as np, maxsimdb
    db = maxsimdb.open(sys.argv[1])
    c = db.create_collection("c", dim=4, columns={"n": "INTEGER"})
    c.insert(["a", "b"], tokens=[np.eye(4, dtype=np.float32)[:2], np.eye(4, dtype=np.float32)[2:]], columns={"n": [1, 2]})
    print("ready", flush=True)
    sys.stdin.readline()
    c.insert(["c"], tokens=[np.ones((1, 4), np.float32)], columns={"n": [3]})
    print("more", flush=True)
    sys.stdin.readline()
    db.close()
""")


def test_read_only_handles_beside_a_writer_process(tmp_path):
    path = str(tmp_path / "shared.msdb")
    w = subprocess.Popen([sys.executable, "-c", WRITER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert w.stdout.readline().strip() == "ready"
        with pytest.raises(maxsimdb.LockedError, match="read-only"):
            maxsimdb.open(path)
        with maxsimdb.open(path, read_only=True) as ro, maxsimdb.open(path, read_only=True) as ro2:
            c = ro["c"]
            assert c.count() == 2 and ro2["c"].count() == 2
            q = np.eye(4, dtype=np.float32)[:1]
            assert c.search(q, k=1).ids == ["a"]
            with pytest.raises(maxsimdb.ReadOnlyError):
                c.delete(["a"])
            w.stdin.write("\n")
            w.stdin.flush()
            assert w.stdout.readline().strip() == "more"
            # The writer's commit is visible to the open read-only handle.
            assert c.count() == 3 and c.get("c")["columns"]["n"] == 3
            assert c.search(np.ones((1, 4), np.float32), k=1).ids == ["c"]
        w.stdin.write("\n")
        w.stdin.flush()
        assert w.wait(timeout=60) == 0
    finally:
        if w.poll() is None:
            w.kill()
    with maxsimdb.open(path) as db:  # the lock is gone with the writer
        assert db["c"].count() == 3
