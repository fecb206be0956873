"""maxsimdb: an embedded multi-vector (late-interaction, ColBERT-style) retrieval database.

numpy in, numpy out::

    import numpy as np
    import maxsimdb

    with maxsimdb.open("demo.msdb") as db:
        docs = db.create_collection("docs", dim=128, pooled={"mean": 128}, columns={"year": "INTEGER"})
        docs.insert(["a", "b"], tokens=[np.random.rand(30, 128).astype(np.float32),
                                        np.random.rand(12, 128).astype(np.float32)],
                    columns={"year": [2020, 2024]})
        res = docs.search(np.random.rand(32, 128).astype(np.float32), k=10, where="year > 2021")
        print(res.ids, res.scores)

The heavy work (search, insert, embedding, import, backup) runs in Rust with the GIL
released, so Python threads search in parallel. Errors raise subclasses of
:class:`maxsimdb.Error` (see :mod:`maxsimdb._errors`).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Union

import numpy as np

from . import _native
from ._errors import (
    AlreadyExistsError,
    BusyError,
    CatalogError,
    CorruptionError,
    DimensionMismatchError,
    Error,
    IncompatibleFormatError,
    InternalError,
    InvalidArgumentError,
    IoError,
    LockedError,
    MisuseError,
    NotAvailableError,
    NotFoundError,
    OperationInterruptedError,
    ReadOnlyError,
    SqlSyntaxError,
)

__version__ = _native.version()

__all__ = [
    "open", "Database", "Collection", "SearchResult", "Hit", "Rows", "Error", "InternalError",
    "InvalidArgumentError", "DimensionMismatchError", "NotFoundError", "AlreadyExistsError", "CorruptionError",
    "IncompatibleFormatError", "LockedError", "ReadOnlyError", "IoError", "CatalogError", "NotAvailableError",
    "SqlSyntaxError", "MisuseError", "OperationInterruptedError", "BusyError", "__version__",
]

#: A progress callback: ``f(done, total)`` (``total`` is None when unknown), or a tqdm bar.
Progress = Union[Callable[[int, Optional[int]], Any], Any, None]
Id = Union[str, int]


def _progress(p: Progress) -> Optional[Callable[[int, Optional[int]], Any]]:
    """A callable ``(done, total)`` for the extension: a callable as it is; an object with
    ``update`` (a tqdm bar) gets its ``total`` set and is advanced by the difference."""
    if p is None or callable(p):
        return p
    if not hasattr(p, "update"):
        raise InvalidArgumentError(f"progress must be a callable f(done, total) or a tqdm bar, got {type(p).__name__}")
    last = [0]

    def bar(done: int, total: Optional[int]) -> None:
        if total is not None and getattr(p, "total", None) != total:
            p.total = total
            if hasattr(p, "refresh"):
                p.refresh()
        p.update(done - last[0])
        last[0] = done

    return bar


def _sql_literal(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (int, float)):
        return repr(v)
    return "'" + str(v).replace("'", "''") + "'"


def _scalar(v: Any) -> Any:
    """A column value: numpy arrays become lists (JSON), numpy scalars Python numbers."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _param(v: Any) -> Any:
    """Statement parameters: a numpy array becomes the JSON text of its values (what
    ``maxsim(?)``, ``dense(field, ?)`` and vector literals take, as the C API's
    ``msdb_stmt_bind_matrix`` binds it), numpy scalars Python numbers."""
    if isinstance(v, np.ndarray):
        if not np.issubdtype(v.dtype, np.number):
            raise InvalidArgumentError(f"a numpy parameter must be numeric, got dtype {v.dtype}")
        if not np.all(np.isfinite(v)):
            raise InvalidArgumentError("a vector parameter has NaN or infinite components (only finite values)")
        return json.dumps(v.astype(np.float32).tolist())
    if isinstance(v, np.generic):
        return v.item()
    return v


class Rows(List[Dict[str, Any]]):
    """The rows of a statement (a list of dicts, one per row, keys in column order), with
    ``columns``, the statement's ``message`` (``"inserted 3 documents"``) and ``changes``
    (documents inserted/updated/deleted, or None)."""

    columns: List[str]
    message: Optional[str]
    changes: Optional[int]

    def __init__(self, columns: List[str], rows: List[List[Any]], message: Optional[str], changes: Optional[int]):
        super().__init__(dict(zip(columns, r)) for r in rows)
        self.columns, self.message, self.changes = columns, message, changes


class Hit(NamedTuple):
    """One search result."""

    id: Id
    score: float
    columns: Dict[str, Any]


class SearchResult:
    """Hits of a search, best first: ``ids`` (numpy int64 for integer ids, else a list of
    str), ``scores`` (numpy float32), ``columns`` (column name → list of values) and the
    ``plan`` that ran (``exact``, ``plaid``, ``muvera``, ``hnsw``, ``bm25``, ``hybrid``).
    Iterating yields :class:`Hit` tuples."""

    __slots__ = ("ids", "scores", "columns", "plan")

    def __init__(self, ids: Any, scores: np.ndarray, columns: Dict[str, List[Any]], plan: str) -> None:
        self.ids, self.scores, self.columns, self.plan = ids, scores, columns, plan

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, i: int) -> Hit:
        return Hit(_py_id(self.ids[i]), float(self.scores[i]), {k: v[i] for k, v in self.columns.items()})

    def __iter__(self) -> Iterator[Hit]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"SearchResult({len(self)} hits, plan={self.plan!r}, ids={list(self.ids)[:5]!r}…)"


def _py_id(i: Any) -> Id:
    return int(i) if isinstance(i, np.integer) else i


class Collection:
    """A collection of a :class:`Database` (``db.collection(name)``, ``db[name]``, or the
    return value of :meth:`Database.create_collection`)."""

    def __init__(self, db: "Database", name: str) -> None:
        self.db, self.name = db, name

    def __repr__(self) -> str:
        return f"Collection({self.name!r})"

    def __len__(self) -> int:
        return self.count()

    @property
    def spec(self) -> Dict[str, Any]:
        """The collection's definition (columns, vector layout, model), as stored."""
        return json.loads(self.db._db.describe(self.name))

    @property
    def dim(self) -> int:
        """The token vectors' dimension."""
        return int(self.spec["vectors"]["token_dim"])

    def insert(
        self,
        ids: Sequence[Id],
        tokens: Optional[Sequence[np.ndarray]] = None,
        pooled: Optional[Mapping[str, np.ndarray]] = None,
        columns: Optional[Mapping[str, Sequence[Any]]] = None,
        *,
        upsert: bool = False,
    ) -> int:
        """Insert documents: ``tokens[i]`` is document i's ``(n_i, dim)`` float32/float16
        array, ``pooled[name]`` an ``(N, d)`` array (one row per id), ``columns[name]`` a
        sequence of N values (None = NULL; lists/dicts go to JSON columns). A collection
        with a model embeds its text columns when no tokens are given. An existing id is an
        :class:`AlreadyExistsError` (nothing of the batch is stored) unless ``upsert``.
        Returns the number of documents."""
        return self.db._db.insert(self.name, _ids(ids), tokens, _pooled(pooled), _columns(columns), upsert)

    def upsert(self, ids: Sequence[Id], tokens: Optional[Sequence[np.ndarray]] = None,
               pooled: Optional[Mapping[str, np.ndarray]] = None,
               columns: Optional[Mapping[str, Sequence[Any]]] = None) -> int:
        """:meth:`insert` that replaces documents whose id exists."""
        return self.insert(ids, tokens, pooled, columns, upsert=True)

    def insert_text(self, ids: Sequence[Id], columns: Mapping[str, Sequence[Any]], *,
                    progress: Progress = None, upsert: bool = False) -> int:
        """Insert documents of a collection with a model (``create_collection(model=...)``):
        the text columns are embedded in-process. Without ``upsert`` the documents stream in
        committed batches of 1,000 with ``progress(done, total)`` after each (a callable or a
        tqdm bar); an interrupted import keeps the committed batches."""
        if upsert:
            return self.db._db.insert(self.name, _ids(ids), None, None, _columns(columns), True)
        return self.db._db.import_text(self.name, _ids(ids), _columns(columns) or {}, _progress(progress))

    def search(
        self,
        query: Union[np.ndarray, str],
        k: int = 10,
        *,
        where: Optional[str] = None,
        plan: Optional[str] = None,
        mode: Optional[str] = None,
        field: Optional[str] = None,
        recall: Optional[float] = None,
        candidates: Optional[int] = None,
        ef: Optional[int] = None,
        fusion_k: Optional[float] = None,
    ) -> SearchResult:
        """The ``k`` best documents for ``query``: a ``(n, dim)`` array of query token
        vectors (MaxSim), a 1-D array with ``field=`` (dense search over that pooled
        vector), or text (embedded by the collection's model; ``mode="bm25"`` or
        ``"hybrid"`` need a full-text index). ``where`` is a SQL filter (``"year > 2000 AND
        lang = 'en'"``); ``plan`` one of ``auto`` (default), ``exact``, ``plaid``,
        ``muvera``, ``hnsw``; ``recall`` the recall target an approximate plan must have
        been calibrated to under ``auto``."""
        (ids, scores, columns), plan_ran = self.db._db.search(self.name, query, k, where, plan, mode, field, recall,
                                                             candidates, ef, fusion_k)
        return SearchResult(ids, scores, columns, plan_ran)

    def get(self, id: Id, *, vectors: bool = True) -> Optional[Dict[str, Any]]:
        """The document ``id``, or None: ``{"id", "columns": {...}, "tokens": (n, dim)
        float32 array, "pooled": {name: array}}`` (no vectors unless ``vectors``)."""
        return self.db._db.get(self.name, _py_id(id), vectors)

    def __contains__(self, id: Id) -> bool:
        return self.get(id, vectors=False) is not None

    def delete(self, ids: Optional[Sequence[Id]] = None, *, where: Optional[str] = None) -> int:
        """Delete the documents with these ids, or those matching ``where``; returns the
        number deleted."""
        return self.db._db.delete(self.name, None if ids is None else _ids(ids), where)

    def update(self, values: Mapping[str, Any], *, id: Optional[Id] = None, where: Optional[str] = None) -> int:
        """Set scalar columns of document ``id`` or of those matching ``where``."""
        return self.db._db.update(self.name, {k: _scalar(v) for k, v in values.items()},
                                  None if id is None else _py_id(id), where)

    def count(self, where: Optional[str] = None) -> int:
        """Live documents (matching ``where``)."""
        return self.db._db.count(self.name, where)

    def flush(self) -> bool:
        """Write pending vectors to an immutable segment (also done automatically)."""
        return self.db._db.flush(self.name)

    def compact(self) -> bool:
        """Merge segments and drop deleted rows."""
        return self.db._db.compact(self.name)

    def stats(self) -> Dict[str, Any]:
        """Documents, segments, bytes on disk per part."""
        return self.db._db.stats(self.name)

    def create_index(self, kind: str, field: Optional[str] = None, *, progress: Progress = None,
                     **options: Any) -> Rows:
        """``CREATE INDEX ON <collection> USING kind[(field)] WITH (options)``: ``plaid``
        (``nbits``, ``centroids``…), ``muvera``, ``hnsw`` (with ``field``, a pooled vector),
        ``fulltext`` (``columns``, ``stemmer``…)."""
        using = f"{kind}({field})" if field else kind
        with_ = ""
        if options:
            with_ = " WITH (" + ", ".join(f"{k} = {_sql_literal(v)}" for k, v in options.items()) + ")"
        return self.db.execute(f"CREATE INDEX ON {self.name} USING {using}{with_}", progress=progress)

    def export_parquet(self, path: str, *, progress: Progress = None) -> Dict[str, Any]:
        """Write the collection to a Parquet file (vectors as f32; the spec in its
        metadata); returns docs, tokens, row_groups, file_bytes, seconds."""
        return self.db._db.export_parquet(self.name, str(path), _progress(progress))

    def import_parquet(self, path: str, *, progress: Progress = None) -> Dict[str, Any]:
        """Read documents from a Parquet file (e.g. one :meth:`export_parquet` wrote)."""
        return self.db._db.import_parquet(self.name, str(path), _progress(progress))


def _ids(ids: Any) -> List[Any]:
    if isinstance(ids, (str, bytes)):
        raise InvalidArgumentError("ids must be a sequence of ids, not one str (wrap it: [id])")
    if isinstance(ids, np.ndarray):
        return ids.tolist()
    return [_py_id(i) for i in ids]


def _pooled(p: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    if p is None:
        return None
    out = {}
    for k, v in p.items():
        if isinstance(v, (list, tuple)) and v and isinstance(v[0], np.ndarray):
            v = np.stack(v)
        out[k] = v
    return out


def _columns(c: Optional[Mapping[str, Sequence[Any]]]) -> Optional[Dict[str, List[Any]]]:
    if c is None:
        return None
    return {k: (v.tolist() if isinstance(v, np.ndarray) else [_scalar(x) for x in v]) for k, v in c.items()}


class Database:
    """A maxsimdb database (a ``*.msdb`` directory). Use :func:`open`. One writer process
    at a time; any number of read-only handles, in this process or others. Thread-safe."""

    def __init__(self, path: str, *, read_only: bool = False, flush_threshold_tokens: Optional[int] = None,
                 create_parents: bool = False) -> None:
        try:
            self._db = _native.Database(str(path), read_only, flush_threshold_tokens, create_parents)
        except IoError as e:
            if "create it first" in str(e) and not create_parents:
                raise IoError(f"{e}, or pass create_parents=True") from None
            raise

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("read-only" if self.read_only else "open")
        return f"maxsimdb.Database({self.path!r}, {state})"

    @property
    def path(self) -> str:
        return self._db.path

    @property
    def closed(self) -> bool:
        return self._db.closed

    @property
    def read_only(self) -> bool:
        return self._db.read_only

    def close(self) -> None:
        """Flush pending vectors and close; later calls raise :class:`MisuseError`."""
        self._db.close()

    def interrupt(self) -> None:
        """Stop the long operation running on this database (from another thread) at its
        next batch boundary; it raises :class:`OperationInterruptedError`."""
        self._db.interrupt()

    def execute(self, sql: str, params: Optional[Sequence[Any]] = None, *, arrow: bool = False,
                progress: Progress = None) -> Any:
        """Run SQL (the shell's language; several statements separated by ``;``). Returns the
        last statement's :class:`Rows` (list of dicts), or a ``pyarrow.Table`` with
        ``arrow=True``. ``params`` bind ``?``/``?N``/``:name`` placeholders in order; numpy
        arrays bind as vectors (``maxsim(?)``). ``progress`` reports IMPORT/CREATE INDEX."""
        ps = None if params is None else [_param(p) for p in params]
        results = self._db.execute(sql, ps, _progress(progress))
        rows = Rows(*results[-1]) if results else Rows([], [], None, None)
        if arrow:
            import pyarrow as pa

            return pa.Table.from_pylist(list(rows), schema=None) if rows else pa.table(
                {c: pa.array([], type=pa.null()) for c in rows.columns})
        return rows

    def collections(self) -> List[str]:
        """Names of the collections."""
        return self._db.collections()

    def collection(self, name: str) -> Collection:
        """The collection ``name`` (:class:`NotFoundError` if there is none)."""
        self._db.describe(name)
        return Collection(self, name)

    __getitem__ = collection

    def __contains__(self, name: str) -> bool:
        return name in self.collections()

    def create_collection(
        self,
        name: str,
        *,
        dim: Optional[int] = None,
        columns: Optional[Mapping[str, str]] = None,
        pooled: Union[Mapping[str, int], Sequence[str], None] = None,
        tokens: Optional[str] = None,
        ids: Optional[str] = None,
        model: Optional[str] = None,
        embed: Union[str, Sequence[str], None] = None,
        recall: Optional[float] = None,
        if_not_exists: bool = False,
        **options: Any,
    ) -> Collection:
        """Create a collection (``CREATE COLLECTION``): ``columns`` name → ``TEXT``,
        ``INTEGER``, ``REAL`` or ``JSON``; ``pooled`` name → dimension (or, with a model, a
        list of pooling names such as ``["model", "max"]``); ``tokens`` the token storage
        (``f16`` default, ``f32``, ``plaid4``/``plaid2``/``plaid1`` codes only); ``ids``
        ``"text"`` or ``"integer"``; ``model`` + ``embed`` (text columns) to embed in-process;
        ``recall`` the recall target of approximate plans. Other SQL options
        (``query_maxlen``, ``token_pool_factor``, ``codec_centroids``, ``dtype``) pass
        through ``options``."""
        opts: Dict[str, Any] = {}
        if dim is not None:
            opts["dim"] = int(dim)
        if pooled:
            if isinstance(pooled, Mapping):
                opts["pooled"] = ",".join(f"{k}:{int(v)}" for k, v in pooled.items())
            else:
                opts["pooled"] = ",".join(pooled)
        for key, v in (("tokens", tokens), ("id", ids), ("model", model), ("recall", recall)):
            if v is not None:
                opts[key] = v
        if embed is not None:
            opts["embed"] = embed if isinstance(embed, str) else ",".join(embed)
        opts.update(options)
        cols = ", ".join(f"{c} {t}" for c, t in (columns or {}).items())
        sql = f"CREATE COLLECTION {'IF NOT EXISTS ' if if_not_exists else ''}{name}" + (f" ({cols})" if cols else "")
        if opts:
            sql += " WITH (" + ", ".join(f"{k} = {_sql_literal(v)}" for k, v in opts.items()) + ")"
        self.execute(sql)
        return Collection(self, name)

    def drop_collection(self, name: str) -> None:
        """Drop a collection and its files."""
        self.execute(f"DROP COLLECTION {name}")

    def import_parquet(self, collection: str, path: str, *, progress: Progress = None) -> Dict[str, Any]:
        """Read documents from a Parquet file into ``collection``, creating it from the spec
        in the file's metadata when it does not exist (a file :meth:`Collection.export_parquet`
        wrote); returns docs, tokens, created, seconds."""
        return self._db.import_parquet(collection, str(path), _progress(progress))

    def backup(self, dest: str, *, progress: Progress = None) -> Dict[str, Any]:
        """A consistent snapshot of the live database into one archive (``RESTORE`` or the
        shell's ``.restore`` read it); returns files, bytes, archive_bytes, seconds."""
        return self._db.backup(str(dest), _progress(progress))


def open(path: str, read_only: bool = False, *, flush_threshold_tokens: Optional[int] = None,
         create_parents: bool = False) -> Database:
    """Open (or create) the database at ``path``; ``read_only`` opens an existing one
    without the write lock (beside a writer in another process). Use as a context manager
    to flush and close."""
    return Database(path, read_only=read_only, flush_threshold_tokens=flush_threshold_tokens,
                    create_parents=create_parents)
