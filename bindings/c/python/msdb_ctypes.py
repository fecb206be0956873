"""A thin ctypes binding over the C API (bindings/c/include/maxsimdb.h): an example of
calling the C library from another language. The Python package is ``bindings/python``
(PyO3, numpy in and out); this module stays as the C API's worked example and is tested.

No compiler and no dependencies beyond the standard library: it loads ``libmaxsimdb.so``
(``.dylib`` on macOS) from ``$MAXSIMDB_LIB``, else from the repository's ``target/release/capi``
or ``target/debug/capi`` (or those folders' parents), else from the system library path. Build it with::

    PROFILE=release scripts/build-capi.sh

Example::

    import msdb_ctypes
    with msdb_ctypes.Database("demo.msdb") as db:
        db.execute("CREATE COLLECTION docs (year INTEGER) WITH (dim = 2, pooled = 'mean:2')")
        db.insert("docs", [{"id": "a", "tokens": [[1, 0], [0, 1]], "pooled": {"mean": [0.7, 0.7]}, "year": 2020}])
        print(db.search("docs", tokens=[[1, 0]], k=5))          # [('a', 1.0)]
        print(db.query("SELECT id, year, score FROM docs ORDER BY maxsim(?) LIMIT ?", [[[1, 0]], 5]))

Errors raise :class:`Error` with the library's status ``code`` (see ``maxsimdb.h``).
"""

import ctypes
import ctypes.util
import json
import os
import sys
from ctypes import POINTER, Structure, byref, c_char_p, c_double, c_float, c_int, c_int64, c_size_t, c_uint32
from ctypes import c_uint64, c_void_p

MSDB_OK, MSDB_ROW, MSDB_DONE = 0, 100, 101
MSDB_OPEN_READ_ONLY = 1
MSDB_INSERT_UPSERT = 1
QUERY_KINDS = {"maxsim": 0, "dense": 1, "bm25": 2}
TYPE_NULL, TYPE_INTEGER, TYPE_REAL, TYPE_TEXT, TYPE_JSON = range(5)


class Error(Exception):
    """A failed call: ``code`` is the status (``MSDB_*``), ``name`` its name."""

    def __init__(self, code, name, message):
        super().__init__(f"{name}: {message}")
        self.code, self.name, self.message = code, name, message


class _OpenOptions(Structure):
    _fields_ = [("size", c_size_t), ("flags", c_uint32), ("flush_threshold_tokens", c_uint64),
                ("retire_grace_ms", c_uint64)]


class _Pooled(Structure):
    _fields_ = [("name", c_char_p), ("data", POINTER(c_float)), ("dim", c_size_t)]


class _Doc(Structure):
    _fields_ = [
        ("size", c_size_t), ("id", c_char_p), ("int_id", c_int64), ("tokens", POINTER(c_float)), ("n_tokens", c_size_t),
        ("dim", c_size_t), ("pooled", POINTER(_Pooled)), ("n_pooled", c_size_t), ("values_json", c_char_p),
        ("values", c_void_p), ("n_values", c_size_t),
    ]


class _Query(Structure):
    _fields_ = [
        ("size", c_size_t), ("kind", c_uint32), ("vectors", POINTER(c_float)), ("n_vectors", c_size_t), ("dim", c_size_t),
        ("text", c_char_p), ("field", c_char_p), ("filter", c_char_p), ("columns", c_char_p),
    ]


class _Hit(Structure):
    _fields_ = [("score", c_double), ("int_id", c_int64), ("id", c_void_p), ("values_json", c_void_p)]


def _library_path():
    if os.environ.get("MAXSIMDB_LIB"):
        return os.environ["MAXSIMDB_LIB"]
    name = {"darwin": "libmaxsimdb.dylib", "win32": "maxsimdb.dll"}.get(sys.platform, "libmaxsimdb.so")
    # this file is bindings/c/python/msdb_ctypes.py: the repository root is three folders up
    root = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
    for profile in ("release", "debug"):
        for sub in ("capi", ""):  # scripts/build-capi.sh puts the libraries in capi/
            p = os.path.join(root, "target", profile, sub, name)
            if os.path.exists(p):
                return p
    found = ctypes.util.find_library("maxsimdb")
    if found is None:
        raise OSError("libmaxsimdb not found: build it (PROFILE=release scripts/build-capi.sh) "
                      "or set MAXSIMDB_LIB to its path")
    return found


def _load():
    lib = ctypes.CDLL(_library_path())
    sigs = {
        "msdb_version": (c_char_p, []),
        "msdb_status_name": (c_char_p, [c_int]),
        "msdb_free": (None, [c_void_p]),
        "msdb_last_errmsg": (c_void_p, []),
        "msdb_db_open": (c_int, [c_char_p, POINTER(_OpenOptions), POINTER(c_void_p), POINTER(c_void_p)]),
        "msdb_db_close": (c_int, [c_void_p]),
        "msdb_db_errmsg": (c_void_p, [c_void_p]),
        "msdb_db_exec": (c_int, [c_void_p, c_char_p]),
        "msdb_db_flush": (c_int, [c_void_p, c_char_p]),
        "msdb_db_insert": (c_int, [c_void_p, c_char_p, POINTER(_Doc), c_size_t, c_uint32]),
        "msdb_db_search": (c_int, [c_void_p, c_char_p, POINTER(_Query), POINTER(_Hit), c_size_t,
                                   POINTER(c_size_t)]),
        "msdb_hits_free": (None, [POINTER(_Hit), c_size_t]),
        "msdb_stmt_prepare": (c_int, [c_void_p, c_char_p, POINTER(c_void_p)]),
        "msdb_stmt_finalize": (c_int, [c_void_p]),
        "msdb_stmt_errmsg": (c_void_p, [c_void_p]),
        "msdb_stmt_bind_null": (c_int, [c_void_p, c_size_t]),
        "msdb_stmt_bind_int64": (c_int, [c_void_p, c_size_t, c_int64]),
        "msdb_stmt_bind_double": (c_int, [c_void_p, c_size_t, c_double]),
        "msdb_stmt_bind_text": (c_int, [c_void_p, c_size_t, c_char_p]),
        "msdb_stmt_bind_vector": (c_int, [c_void_p, c_size_t, POINTER(c_float), c_size_t]),
        "msdb_stmt_bind_matrix": (c_int, [c_void_p, c_size_t, POINTER(c_float), c_size_t, c_size_t]),
        "msdb_stmt_step": (c_int, [c_void_p]),
        "msdb_stmt_column_count": (c_int, [c_void_p, POINTER(c_size_t)]),
        "msdb_stmt_column_name": (c_int, [c_void_p, c_size_t, POINTER(c_char_p)]),
        "msdb_stmt_column_type": (c_int, [c_void_p, c_size_t, POINTER(c_int)]),
        "msdb_stmt_column_int64": (c_int, [c_void_p, c_size_t, POINTER(c_int64)]),
        "msdb_stmt_column_double": (c_int, [c_void_p, c_size_t, POINTER(c_double)]),
        "msdb_stmt_column_text": (c_int, [c_void_p, c_size_t, POINTER(c_void_p), POINTER(c_size_t)]),
    }
    for name, (res, args) in sigs.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    return lib


_lib = _load()


def version():
    """The library's version string."""
    return _lib.msdb_version().decode()


def _take(ptr):
    """A library-allocated message as str (freed)."""
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr).decode("utf-8", "replace")
    finally:
        _lib.msdb_free(ptr)


def _check(rc, errmsg_ptr):
    if rc != MSDB_OK:
        raise Error(rc, _lib.msdb_status_name(rc).decode(), _take(errmsg_ptr) or "")
    _lib.msdb_free(errmsg_ptr)


def _floats(rows):
    """A flat float array and (rows, dim) from a vector or a matrix (list of lists)."""
    if rows and isinstance(rows[0], (list, tuple)):
        dim = len(rows[0])
        if any(len(r) != dim for r in rows):
            raise ValueError("all rows of a matrix need the same length")
        flat = [float(x) for r in rows for x in r]
        return (c_float * len(flat))(*flat), len(rows), dim
    return (c_float * len(rows))(*[float(x) for x in rows]), 1, len(rows)


class Database:
    """An open database directory (created if absent unless ``read_only``)."""

    def __init__(self, path, read_only=False, flush_threshold_tokens=0):
        opts = _OpenOptions(ctypes.sizeof(_OpenOptions), MSDB_OPEN_READ_ONLY if read_only else 0,
                            flush_threshold_tokens, 0)
        handle, err = c_void_p(), c_void_p()
        rc = _lib.msdb_db_open(os.fsencode(path), byref(opts), byref(handle), byref(err))
        _check(rc, err.value)
        self._db, self._open = handle, True

    def _call(self, rc):
        if rc != MSDB_OK:
            # msdb_db_errmsg falls back to this thread's last message for a closed handle.
            raise Error(rc, _lib.msdb_status_name(rc).decode(), _take(_lib.msdb_db_errmsg(self._db)) or "")

    def execute(self, sql):
        """Run one or more statements, discarding their rows."""
        self._call(_lib.msdb_db_exec(self._db, sql.encode()))

    def query(self, sql, params=()):
        """Run one statement with parameters (``?``); return its rows as dicts."""
        stmt = c_void_p()
        self._call(_lib.msdb_stmt_prepare(self._db, sql.encode(), byref(stmt)))
        try:
            for i, p in enumerate(params, start=1):
                self._stmt_call(stmt, self._bind(stmt, i, p))
            rows = []
            while True:
                rc = _lib.msdb_stmt_step(stmt)
                if rc == MSDB_DONE:
                    return rows
                if rc != MSDB_ROW:
                    self._stmt_call(stmt, rc)
                rows.append(self._row(stmt))
        finally:
            _lib.msdb_stmt_finalize(stmt)

    @staticmethod
    def _stmt_call(stmt, rc):
        if rc != MSDB_OK:
            raise Error(rc, _lib.msdb_status_name(rc).decode(), _take(_lib.msdb_stmt_errmsg(stmt)) or "")

    @staticmethod
    def _bind(stmt, i, p):
        if p is None:
            return _lib.msdb_stmt_bind_null(stmt, i)
        if isinstance(p, (bool, int)):
            return _lib.msdb_stmt_bind_int64(stmt, i, int(p))
        if isinstance(p, float):
            return _lib.msdb_stmt_bind_double(stmt, i, p)
        if isinstance(p, str):
            return _lib.msdb_stmt_bind_text(stmt, i, p.encode())
        data, rows, dim = _floats(list(p))
        if p and isinstance(p[0], (list, tuple)):
            return _lib.msdb_stmt_bind_matrix(stmt, i, data, rows, dim)
        return _lib.msdb_stmt_bind_vector(stmt, i, data, dim)

    def _row(self, stmt):
        n = c_size_t()
        self._stmt_call(stmt, _lib.msdb_stmt_column_count(stmt, byref(n)))
        row = {}
        for c in range(n.value):
            name, ty = c_char_p(), c_int()
            self._stmt_call(stmt, _lib.msdb_stmt_column_name(stmt, c, byref(name)))
            self._stmt_call(stmt, _lib.msdb_stmt_column_type(stmt, c, byref(ty)))
            if ty.value == TYPE_INTEGER:
                v = c_int64()
                self._stmt_call(stmt, _lib.msdb_stmt_column_int64(stmt, c, byref(v)))
                value = v.value
            elif ty.value == TYPE_REAL:
                v = c_double()
                self._stmt_call(stmt, _lib.msdb_stmt_column_double(stmt, c, byref(v)))
                value = v.value
            elif ty.value == TYPE_NULL:
                value = None
            else:
                p, ln = c_void_p(), c_size_t()
                self._stmt_call(stmt, _lib.msdb_stmt_column_text(stmt, c, byref(p), byref(ln)))
                value = ctypes.string_at(p, ln.value).decode()
                if ty.value == TYPE_JSON:
                    value = json.loads(value)
            row[name.value.decode()] = value
        return row

    def insert(self, collection, docs, upsert=False):
        """Insert documents (all or none). Each is a dict: ``id`` (str or int), ``tokens``
        (list of token vectors), ``pooled`` ({name: vector}), and scalar columns."""
        keep = []  # keeps the ctypes buffers alive for the call
        arr = (_Doc * len(docs))()
        for d, doc in zip(arr, docs):
            d.size = ctypes.sizeof(_Doc)
            if isinstance(doc["id"], int):
                d.int_id = doc["id"]
            else:
                d.id = str(doc["id"]).encode()
            if doc.get("tokens"):
                data, d.n_tokens, d.dim = _floats([list(t) for t in doc["tokens"]])
                d.tokens = data
                keep.append(data)
            pooled = doc.get("pooled", {})
            parr = (_Pooled * len(pooled))()
            for p, (name, vec) in zip(parr, pooled.items()):
                data, _, p.dim = _floats(list(vec))
                p.name, p.data = name.encode(), data
                keep.append(data)
            d.pooled, d.n_pooled = parr, len(pooled)
            keep.append(parr)
            values = {k: v for k, v in doc.items() if k not in ("id", "tokens", "pooled")}
            d.values_json = json.dumps(values).encode() if values else None
        flags = MSDB_INSERT_UPSERT if upsert else 0
        self._call(_lib.msdb_db_insert(self._db, collection.encode(), arr, len(docs), flags))

    def search(self, collection, tokens=None, vector=None, text=None, kind=None, field=None, filter=None, k=10):
        """The best ``k`` documents as ``[(id, score)]``: MaxSim with ``tokens``, dense with
        ``vector`` (pooled ``field``), or by ``text`` (``kind`` "maxsim", "dense", "bm25")."""
        kind = kind or ("dense" if vector is not None else "maxsim")
        q = _Query(size=ctypes.sizeof(_Query), kind=QUERY_KINDS[kind])
        vecs = tokens if tokens is not None else ([vector] if vector is not None else None)
        if vecs is not None:
            data, q.n_vectors, q.dim = _floats([list(v) for v in vecs])
            q.vectors = data
        q.text = text.encode() if text is not None else None
        q.field = field.encode() if field else None
        q.filter = filter.encode() if filter else None
        hits, n = (_Hit * k)(), c_size_t()
        self._call(_lib.msdb_db_search(self._db, collection.encode(), byref(q), hits, k, byref(n)))
        try:
            return [(ctypes.string_at(h.id).decode(), h.score) for h in hits[: n.value]]
        finally:
            _lib.msdb_hits_free(hits, n.value)

    def flush(self, collection=None):
        """Turn pending vectors into segments (of one collection, or all)."""
        self._call(_lib.msdb_db_flush(self._db, collection.encode() if collection else None))

    def close(self):
        """Flush and close (once; closing again is a no-op). Calls on a closed database
        raise ``Error`` with code 14 (misuse): the library recognises the closed handle."""
        if self._open:
            self._open = False
            rc = _lib.msdb_db_close(self._db)
            if rc != MSDB_OK:
                raise Error(rc, _lib.msdb_status_name(rc).decode(), _take(_lib.msdb_last_errmsg()) or "")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
