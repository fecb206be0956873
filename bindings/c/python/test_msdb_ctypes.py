"""Tests of the ctypes binding: run by bindings/c/tests/run.sh (MAXSIMDB_LIB set), or
`python3 -m unittest discover -s bindings/c/python` after building the library."""

import math
import os
import tempfile
import threading
import unittest

import msdb_ctypes as maxsimdb


def tokens(i):
    """Document i: one token at angle 0.1 i and one shared token (-1, 0)."""
    return [[math.cos(0.1 * i), math.sin(0.1 * i)], [-1.0, 0.0]]


class BindingTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.tmp.name, "py.msdb")
        self.db = maxsimdb.Database(self.path)
        self.db.execute("CREATE COLLECTION docs (title TEXT, year INTEGER, meta JSON) "
                        "WITH (dim = 2, pooled = 'mean:2')")
        self.db.insert("docs", [
            {"id": f"d{i}", "tokens": tokens(i), "pooled": {"mean": tokens(i)[0]},
             "title": f"paper {i}", "year": 2000 + i, "meta": {"n": i}}
            for i in range(30)
        ])

    def tearDown(self):
        self.db.close()
        self.tmp.cleanup()

    def test_insert_then_search_finds_the_nearest_documents(self):
        q = [[math.cos(0.72), math.sin(0.72)], [-1.0, 0.0]]  # between d7 and d8, nearer d7
        hits = self.db.search("docs", tokens=q, k=3)
        self.assertEqual([h[0] for h in hits], ["d7", "d8", "d6"])
        self.assertAlmostEqual(hits[0][1], 1 + math.cos(0.02), places=2)
        self.assertEqual(self.db.search("docs", tokens=q, k=2, filter="year < 2007")[0][0], "d6")
        dense = self.db.search("docs", vector=q[0], k=1)
        self.assertEqual(dense[0][0], "d7")
        self.db.flush()
        self.assertEqual(self.db.search("docs", tokens=q, k=1)[0][0], "d7")

    def test_statements_with_parameters_return_typed_rows(self):
        rows = self.db.query(
            "SELECT id, title, year, meta, score FROM docs WHERE year >= ? ORDER BY maxsim(?) LIMIT ?",
            [2020, tokens(3), 2])
        self.assertEqual([r["id"] for r in rows], ["d20", "d21"])
        self.assertEqual(rows[0]["title"], "paper 20")
        self.assertEqual(rows[0]["year"], 2020)
        self.assertEqual(rows[0]["meta"], {"n": 20})
        self.assertIsInstance(rows[0]["score"], float)
        self.db.query("INSERT INTO docs (id, year, tokens, mean) VALUES (?, ?, ?, ?)",
                      ["new", None, [[0.0, 1.0]], [0.0, 1.0]])
        rows = self.db.query("SELECT id, year FROM docs ORDER BY dense(mean, ?) LIMIT 1", [[0.0, 1.0]])
        self.assertEqual(rows, [{"id": "new", "year": None}])

    def test_errors_carry_the_status_code_and_message(self):
        with self.assertRaises(maxsimdb.Error) as e:
            self.db.insert("docs", [{"id": "bad", "tokens": [[1.0, 0.0, 0.0]]}])
        self.assertEqual((e.exception.code, e.exception.name), (3, "MSDB_DIMENSION_MISMATCH"))
        with self.assertRaises(maxsimdb.Error) as e:
            self.db.query("SELEC id FROM docs")
        self.assertEqual(e.exception.code, 13)
        self.assertIn("line 1", e.exception.message)
        with self.assertRaises(maxsimdb.Error) as e:
            self.db.insert("docs", [{"id": "d1", "tokens": tokens(1), "pooled": {"mean": [1.0, 0.0]}}])
        self.assertEqual(e.exception.name, "MSDB_ALREADY_EXISTS")
        with self.assertRaises(maxsimdb.Error) as e:
            maxsimdb.Database(self.path)  # this process already holds the write lock
        self.assertEqual(e.exception.name, "MSDB_LOCKED")

    def test_readers_and_threads(self):
        self.db.flush()
        reader = maxsimdb.Database(self.path, read_only=True)
        try:
            self.assertEqual(reader.search("docs", tokens=tokens(12), k=1)[0][0], "d12")
            with self.assertRaises(maxsimdb.Error) as e:
                reader.execute("DELETE FROM docs")
            self.assertEqual(e.exception.name, "MSDB_READ_ONLY")
        finally:
            reader.close()
        found = {}

        def work(i):
            found[i] = self.db.search("docs", tokens=tokens(i), k=1)[0][0]

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(found, {i: f"d{i}" for i in range(8)})

    def test_a_closed_database_is_reported_not_crashed(self):
        self.db.close()
        with self.assertRaises(maxsimdb.Error) as e:
            self.db.search("docs", tokens=tokens(1))
        self.assertEqual(e.exception.name, "MSDB_MISUSE")
        self.assertIn("not an open database handle", e.exception.message)
        self.db.close()  # a second close is a no-op in Python
        with maxsimdb.Database(self.path) as again:
            self.assertEqual(again.search("docs", tokens=tokens(4), k=1)[0][0], "d4")
        self.assertTrue(maxsimdb.version().count(".") == 2)


if __name__ == "__main__":
    unittest.main()
