"""Every call of the Python API: collections, numpy in and out (dtypes, shapes, layouts),
search against a numpy reference, SQL, errors, backup/export, progress."""

import io
import json
import os

import numpy as np
import pytest
from conftest import maxsim, random_docs

import maxsimdb


def make(db, name="docs", dim=8, n=40, tokens="f32", ids="text"):
    coll = db.create_collection(name, dim=dim, pooled={"mean": dim},
                                columns={"title": "TEXT", "year": "INTEGER", "w": "REAL", "meta": "JSON"},
                                tokens=tokens, ids=ids)
    docs = random_docs(n, dim)
    keys = [f"d{i}" for i in range(n)] if ids == "text" else list(range(100, 100 + n))
    coll.insert(keys, tokens=docs, pooled={"mean": np.stack([d.mean(axis=0) for d in docs])},
                columns={"title": [f"paper {i}" for i in range(n)], "year": np.arange(1990, 1990 + n),
                         "w": [i / 4 for i in range(n)], "meta": [{"i": i, "tags": ["x"] * (i % 3)} for i in range(n)]})
    return coll, keys, docs


def test_open_close_and_context_manager(tmp_path):
    path = str(tmp_path / "a.msdb")
    with maxsimdb.open(path) as db:
        assert not db.closed and not db.read_only and db.path == path
        db.create_collection("c", dim=2)
        assert db.collections() == ["c"] and "c" in db and "nope" not in db
        assert repr(db).endswith("open)")
    assert db.closed
    with pytest.raises(maxsimdb.MisuseError, match="closed"):
        db.collections()
    db.close()  # idempotent
    with maxsimdb.open(path, read_only=True) as ro:
        assert ro.read_only and ro.collections() == ["c"]
        with pytest.raises(maxsimdb.ReadOnlyError):
            ro.collection("c").insert(["a"], tokens=[np.ones((1, 2), np.float32)])
    with pytest.raises(maxsimdb.Error) as e:
        maxsimdb.open(str(tmp_path / "missing.msdb"), read_only=True)
    assert e.value.code in (4, 10)


def test_create_collection_options(db):
    c = db.create_collection("c", dim=4, pooled={"mean": 4, "cls": 4}, columns={"t": "TEXT"}, tokens="f32",
                             ids="integer", recall=0.99)
    spec = c.spec
    assert spec["vectors"]["token_dim"] == 4 and c.dim == 4
    assert [p["name"] for p in spec["vectors"]["pooled"]] == ["mean", "cls"]
    assert spec["id_type"] == "INTEGER" and abs(spec["recall_target"] - 0.99) < 1e-6
    with pytest.raises(maxsimdb.AlreadyExistsError):
        db.create_collection("c", dim=4)
    assert db.create_collection("c", dim=4, if_not_exists=True).name == "c"
    with pytest.raises(maxsimdb.InvalidArgumentError, match="dim"):
        db.create_collection("nodim")
    with pytest.raises(maxsimdb.InvalidArgumentError, match="unknown collection option"):
        db.create_collection("bad", dim=2, colour="red")
    db.drop_collection("c")
    assert db.collections() == []
    with pytest.raises(maxsimdb.NotFoundError):
        db.collection("c")
    with pytest.raises(LookupError):  # NotFoundError is a LookupError
        db["c"]


def test_insert_search_matches_numpy_reference(db):
    coll, keys, docs = make(db)
    rng = np.random.default_rng(7)
    for _ in range(5):
        q = rng.standard_normal((4, 8)).astype(np.float32)
        res = coll.search(q, k=10, plan="exact")
        want = sorted(((maxsim(q, d), k) for k, d in zip(keys, docs)), reverse=True)[:10]
        assert list(res.ids) == [k for _, k in want]
        np.testing.assert_allclose(res.scores, [s for s, _ in want], rtol=1e-5, atol=1e-5)
        assert res.scores.dtype == np.float32 and res.plan == "exact" and len(res) == 10
    hit = res[0]
    assert hit.id == res.ids[0] and hit.columns["title"].startswith("paper ")
    assert [h.id for h in res] == list(res.ids)


def test_filter_columns_and_dense(db):
    coll, keys, docs = make(db)
    q = docs[3]
    res = coll.search(q, k=50, where="year >= 2010 AND title != 'paper 25'")
    assert len(res) == 19
    assert all(y >= 2010 for y in res.columns["year"]) and "d25" not in res.ids
    assert set(res.columns) == {"title", "year", "w", "meta"}
    i = list(res.ids).index("d30")
    assert res.columns["meta"][i] == {"i": 30, "tags": []} and res.columns["w"][i] == 7.5
    mean = np.stack([d.mean(axis=0) for d in docs])
    dense = coll.search(mean[5], field="mean", k=3)
    want = np.argsort(-(mean @ mean[5]))[:3]
    assert list(dense.ids) == [keys[j] for j in want]
    with pytest.raises(maxsimdb.InvalidArgumentError, match="field"):
        coll.search(mean[5], mode="dense")
    with pytest.raises(maxsimdb.NotFoundError, match="it has: mean"):
        coll.search(mean[5], field="nope")
    with pytest.raises(maxsimdb.SqlSyntaxError):
        coll.search(q, where="year >")
    with pytest.raises(maxsimdb.InvalidArgumentError, match="unknown plan"):
        coll.search(q, plan="fast")
    with pytest.raises(maxsimdb.InvalidArgumentError, match="unknown mode"):
        coll.search(q, mode="magic")


def test_integer_ids_come_back_as_int64(db):
    coll, keys, docs = make(db, ids="integer")
    res = coll.search(docs[0], k=5)
    assert isinstance(res.ids, np.ndarray) and res.ids.dtype == np.int64 and res.ids[0] == 100
    assert res[0].id == 100 and isinstance(res[0].id, int)
    assert coll.get(np.int64(101))["id"] == 101
    with pytest.raises(maxsimdb.InvalidArgumentError, match="integers"):
        coll.insert(["x"], tokens=[docs[0]])
    assert coll.delete(np.array([100, 101])) == 2


def test_dtypes_layouts_and_round_trip(db):
    coll = db.create_collection("c", dim=4, tokens="f32")
    base = np.arange(48, dtype=np.float32).reshape(6, 8) / 10
    strided = base[:, ::2]                      # not contiguous: walked by strides
    fortran = np.asfortranarray(base[:3, :4])   # column-major
    half = base[:2, :4].astype(np.float16)      # widened to f32 while read
    assert not strided.flags["C_CONTIGUOUS"] and not fortran.flags["C_CONTIGUOUS"]
    coll.insert(["s", "f", "h"], tokens=[strided, fortran, half])
    np.testing.assert_array_equal(coll.get("s")["tokens"], strided)
    np.testing.assert_array_equal(coll.get("f")["tokens"], fortran)
    np.testing.assert_array_equal(coll.get("h")["tokens"], half.astype(np.float32))
    got = coll.get("s")
    assert got["tokens"].dtype == np.float32 and got["tokens"].shape == (6, 4)
    assert coll.get("s", vectors=False).keys() == {"id", "columns"}
    assert coll.get("missing") is None and "s" in coll and "missing" not in coll


@pytest.mark.parametrize("bad, exc, match", [
    (lambda: [np.zeros((2, 5), np.float32)], maxsimdb.DimensionMismatchError, r"expected 4 columns, got shape \(2, 5\)"),
    (lambda: [np.zeros((2, 4), np.float64)], maxsimdb.InvalidArgumentError, "float64.*astype"),
    (lambda: [np.zeros((2, 4), np.int32)], maxsimdb.InvalidArgumentError, "int32"),
    (lambda: [np.zeros(4, np.float32)], maxsimdb.InvalidArgumentError, r"2-D .* got shape \(4,\)"),
    (lambda: [np.zeros((1, 2, 4), np.float32)], maxsimdb.InvalidArgumentError, "2-D"),
    (lambda: [[[0.0] * 4]], maxsimdb.InvalidArgumentError, "numpy array"),
    (lambda: [np.zeros((1, 4), np.float32)] * 2, maxsimdb.InvalidArgumentError, "2 arrays for 1 ids"),
    (lambda: [np.full((1, 4), np.nan, np.float32)], maxsimdb.InvalidArgumentError, "finite|NaN"),
])
def test_wrong_arrays_are_clear_errors(db, bad, exc, match):
    coll = db.create_collection("c", dim=4)
    with pytest.raises(exc, match=match):
        coll.insert(["a"], tokens=bad())
    assert coll.count() == 0


def test_wrong_pooled_and_columns(db):
    coll = db.create_collection("c", dim=2, pooled={"mean": 2}, columns={"t": "TEXT"})
    t = [np.ones((1, 2), np.float32)] * 2
    with pytest.raises(maxsimdb.InvalidArgumentError, match="1 rows for 2 ids"):
        coll.insert(["a", "b"], tokens=t, pooled={"mean": np.ones((1, 2), np.float32)})
    with pytest.raises(maxsimdb.NotFoundError, match="pooled vector 'max'"):
        coll.insert(["a", "b"], tokens=t, pooled={"max": np.ones((2, 2), np.float32)})
    with pytest.raises(maxsimdb.InvalidArgumentError, match="1 values for 2 ids"):
        coll.insert(["a", "b"], tokens=t, pooled={"mean": np.ones((2, 2), np.float32)}, columns={"t": ["x"]})
    with pytest.raises(maxsimdb.InvalidArgumentError, match="cannot store"):
        coll.insert(["a", "b"], tokens=t, pooled={"mean": np.ones((2, 2), np.float32)}, columns={"t": [object(), 1]})
    with pytest.raises(maxsimdb.InvalidArgumentError, match="not one str"):
        coll.insert("ab", tokens=t)
    # A list of 1-D pooled rows works like a 2-D array.
    assert coll.insert(["a", "b"], tokens=t, pooled={"mean": [np.ones(2, np.float32)] * 2}) == 2


def test_duplicates_upsert_update_delete(db):
    coll, keys, docs = make(db, n=10)
    with pytest.raises(maxsimdb.AlreadyExistsError, match="d3"):
        coll.insert(["new", "d3"], tokens=[docs[0], docs[1]], pooled={"mean": np.zeros((2, 8), np.float32)})
    assert coll.get("new") is None, "a failed batch stores nothing"
    coll.upsert(["d3"], tokens=[docs[0]], pooled={"mean": np.zeros((1, 8), np.float32)}, columns={"year": [1]})
    np.testing.assert_allclose(coll.get("d3")["tokens"], docs[0])
    assert coll.get("d3")["columns"]["year"] == 1 and coll.get("d3")["columns"]["title"] is None
    assert coll.update({"title": "renamed", "w": np.float32(2.5)}, id="d4") == 1
    assert coll.get("d4")["columns"]["title"] == "renamed" and coll.get("d4")["columns"]["w"] == 2.5
    # d3's year is now 1, so d5..d9 (1995..1999) match.
    assert coll.update({"year": 0}, where="year >= 1995") == 5
    assert coll.count(where="year = 0") == 5
    assert coll.delete(["d0", "d1", "zz"]) == 2
    assert coll.delete(where="year = 0") == 5
    assert len(coll) == 3
    with pytest.raises(maxsimdb.InvalidArgumentError, match="one of them"):
        coll.delete()
    coll.flush()
    coll.compact()
    s = coll.stats()
    assert s["docs"] == 3 and s["segments"] >= 1 and s["tombstones"] == 0


def test_execute_rows_params_and_arrow(db):
    coll, keys, docs = make(db, n=12)
    rows = db.execute("SELECT id, year, score FROM docs WHERE year < ? ORDER BY maxsim(?) LIMIT 3", [2000, docs[2]])
    assert rows.columns == ["id", "year", "score"] and rows[0]["id"] == "d2"
    assert abs(rows[0]["score"] - maxsim(docs[2], docs[2])) < 1e-4
    named = db.execute("SELECT id FROM docs WHERE year = :y OR title = :t ORDER BY id", [1991, "paper 5"])
    assert [r["id"] for r in named] == ["d1", "d5"]
    r = db.execute("DELETE FROM docs WHERE year > 1999")
    assert r.changes == 2 and "deleted 2" in r.message and list(r) == []
    table = db.execute("SELECT id, year, w FROM docs ORDER BY id LIMIT 4", arrow=True)
    assert table.column_names == ["id", "year", "w"] and table.num_rows == 4
    assert table.column("year").to_pylist() == [1990, 1991, 1992, 1993]
    with pytest.raises(maxsimdb.SqlSyntaxError, match="line 1"):
        db.execute("SELEC 1")
    with pytest.raises(maxsimdb.InvalidArgumentError, match="finite"):
        db.execute("SELECT id FROM docs ORDER BY maxsim(?)", [np.full((1, 8), np.inf)])
    with pytest.raises(maxsimdb.NotFoundError):
        db.execute("SELECT id FROM nope")


def test_backup_export_import_and_progress(db, tmp_path):
    coll, keys, docs = make(db, n=25)
    calls = []
    rep = db.backup(str(tmp_path / "b.zst"), progress=lambda done, total: calls.append((done, total)))
    assert rep["files"] >= 1 and os.path.getsize(tmp_path / "b.zst") == rep["archive_bytes"]
    assert calls and calls[-1][0] == calls[-1][1] and all(a <= b for (a, _), (b, _) in zip(calls, calls[1:]))
    tqdm = pytest.importorskip("tqdm")
    with tqdm.tqdm(file=io.StringIO()) as bar:
        ex = coll.export_parquet(str(tmp_path / "c.parquet"), progress=bar)
        assert bar.n == 25 and bar.total == 25
    assert ex["docs"] == 25 and ex["tokens"] == sum(len(d) for d in docs)
    meta = json.loads(__import__("pyarrow.parquet").parquet.read_metadata(tmp_path / "c.parquet").metadata[b"maxsimdb.spec"])
    assert meta["name"] == "docs"
    with maxsimdb.open(str(tmp_path / "copy.msdb")) as other:
        rep = other.import_parquet("docs", str(tmp_path / "c.parquet"))
        assert rep["docs"] == 25 and rep["created"]
        np.testing.assert_array_equal(other["docs"].get("d7")["tokens"], coll.get("d7")["tokens"])
        q = docs[9]
        assert list(other["docs"].search(q).ids) == list(coll.search(q).ids)


def test_a_raising_progress_callback_stops_and_is_raised(db, tmp_path):
    make(db, n=5)

    def boom(done, total):
        raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt, match="stop"):
        db.backup(str(tmp_path / "b.zst"), progress=boom)
    with pytest.raises(maxsimdb.InvalidArgumentError, match="callable"):
        db.backup(str(tmp_path / "b2.zst"), progress=42)


def test_error_hierarchy_mirrors_codes():
    codes = {c.code: c for c in [maxsimdb.InternalError, maxsimdb.InvalidArgumentError, maxsimdb.DimensionMismatchError,
                                 maxsimdb.NotFoundError, maxsimdb.AlreadyExistsError, maxsimdb.CorruptionError,
                                 maxsimdb.IncompatibleFormatError, maxsimdb.LockedError, maxsimdb.ReadOnlyError,
                                 maxsimdb.IoError, maxsimdb.CatalogError, maxsimdb.NotAvailableError,
                                 maxsimdb.SqlSyntaxError, maxsimdb.MisuseError, maxsimdb.OperationInterruptedError,
                                 maxsimdb.BusyError]}
    assert sorted(codes) == list(range(1, 17))
    assert all(issubclass(c, maxsimdb.Error) for c in codes.values())
    assert issubclass(maxsimdb.DimensionMismatchError, ValueError) and issubclass(maxsimdb.IoError, OSError)
    # The names are the C API's (bindings/c/include/maxsimdb.h).
    header = open(os.path.join(os.path.dirname(__file__), "..", "..", "c", "include", "maxsimdb.h")).read()
    for code, cls in codes.items():
        assert f"#define {cls.name} {code}" in header, cls.name


def test_indexes_and_every_plan(db):
    coll, keys, docs = make(db, n=300)
    built = coll.create_index("plaid", progress=lambda done, total: None)
    assert "created index plaid" in built.message
    coll.create_index("hnsw", field="mean")
    coll.create_index("fulltext", columns="title")
    kinds = {r["kind"]: r["state"] for r in db.execute("SHOW INDEXES ON docs")}
    assert kinds == {"plaid": "ready", "hnsw:mean": "ready", "fulltext": "ready"}
    q = docs[42][:3]
    exact = coll.search(q, k=5, plan="exact")
    assert exact.plan == "exact" and exact.ids[0] == "d42"
    for plan in ("plaid", "auto"):
        res = coll.search(q, k=5, plan=plan)
        assert res.ids[0] == "d42" and res.plan in ("plaid", "exact")
        # Whatever the plan, scores are exact MaxSim of the documents returned.
        for i, s in zip(res.ids, res.scores):
            assert abs(s - maxsim(q, docs[keys.index(i)])) < 1e-4
    dense = coll.search(docs[7].mean(axis=0), field="mean", k=3, plan="hnsw", ef=64)
    assert dense.plan == "hnsw" and dense.ids[0] == "d7"
    bm25 = coll.search("paper 123", mode="bm25", k=3)
    assert bm25.plan == "bm25" and bm25.ids[0] == "d123"
    with pytest.raises(maxsimdb.InvalidArgumentError, match="unknown plan 'warp'"):
        coll.search(q, plan="warp")
    with pytest.raises(maxsimdb.InvalidArgumentError, match="text query"):
        coll.search(q, mode="bm25")
    with pytest.raises(maxsimdb.InvalidArgumentError, match="field="):
        coll.search(docs[0][0], mode="dense")
    with pytest.raises(maxsimdb.NotFoundError, match="pooled vector 'max'"):
        coll.search(docs[0][0], field="max")
    with pytest.raises(maxsimdb.InvalidArgumentError, match="no embedding model"):
        coll.search("paper 1", k=3)  # text MaxSim needs a model; this collection has none
    db.execute("DROP INDEX plaid ON docs")
    assert coll.search(q, k=5, plan="auto").plan == "exact"


@pytest.mark.parametrize("op", ["backup", "export"])
def test_interrupt_from_a_progress_callback(db, tmp_path, op):
    coll, keys, docs = make(db, n=30)
    for b in range(3):  # more than one batch/file to stop between
        more = random_docs(400, 8, seed=b + 1)
        coll.insert([f"x{b}_{i}" for i in range(400)], tokens=more,
                    pooled={"mean": np.stack([d.mean(axis=0) for d in more])})
        coll.flush()
    dest = tmp_path / "out"
    calls = []

    def stop(done, total):
        calls.append(done)
        db.interrupt()

    with pytest.raises(maxsimdb.OperationInterruptedError, match="run it again"):
        if op == "backup":
            db.backup(str(dest), progress=stop)
        else:
            coll.export_parquet(str(dest), progress=stop)
    assert calls and not os.path.exists(dest) and os.listdir(tmp_path) == ["t.msdb"]
    # An interrupt sent while nothing runs does not stop the next operation.
    db.interrupt()
    rep = db.backup(str(dest)) if op == "backup" else coll.export_parquet(str(dest))
    assert os.path.getsize(dest) > 0 and rep


def test_create_parents_and_flush_threshold(tmp_path):
    deep = tmp_path / "a" / "b" / "c.msdb"
    with pytest.raises(maxsimdb.IoError, match="create_parents=True"):
        maxsimdb.open(str(deep))
    with maxsimdb.open(str(deep), create_parents=True, flush_threshold_tokens=10) as db:
        coll = db.create_collection("c", dim=8)
        coll.insert(["a", "b", "c"], tokens=random_docs(3, 8, lo=5, hi=6))  # 15 tokens > 10
        s = coll.stats()  # flushed by the threshold, not by a call
        assert s["segments"] == 1 and s["pending_docs"] == 0


def test_evaluate_statement_from_python(db, tmp_path):
    coll, keys, docs = make(db, n=60)
    with open(tmp_path / "q.jsonl", "w") as f:
        for i in range(20):
            f.write(json.dumps({"_id": f"q{i}", "tokens": docs[i][:2].tolist()}) + "\n")
    with open(tmp_path / "qrels.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(20)))
    rows = db.execute(f"EVALUATE docs WITH (queries = '{tmp_path / 'q.jsonl'}', qrels = '{tmp_path / 'qrels.tsv'}', "
                      f"permutations = 500, bootstrap = 200, chart = '{tmp_path / 'lab.svg'}')")
    by = {r["candidate"]: r for r in rows}
    assert by["maxsim"]["ndcg_at_10"] > 0.9 and rows[0]["verdict"] == "best"
    assert "Recommended:" in rows.message and (tmp_path / "lab.svg").read_text().startswith("<svg")
