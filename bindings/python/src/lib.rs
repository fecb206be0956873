//! `maxsimdb._native`: the Python extension module (PyO3), a thin layer over
//! [`maxsimdb::Database`] and [`maxsimdb::sql::Session`]. The package's Python code
//! (`python/maxsimdb/`) builds the idiomatic API on top of it: `open()`, `Collection`,
//! `SearchResult`, `Rows`, the exception hierarchy (`_errors.py`, which this module raises
//! by error code) and progress adapters.
//!
//! Rules kept here:
//! - Every call that reads files, computes or waits for a lock runs with the GIL released
//!   (`Python::detach`); arguments are converted to Rust values first, under the GIL.
//! - numpy arrays are read from their buffer (a C-contiguous float32 array is one memcpy
//!   into the document; float16 is widened while read; other strides are walked); vectors
//!   read back are handed to numpy without a copy (`PyArray::from_vec`, then a reshape
//!   view).
//! - A progress callback runs with the GIL re-acquired; if it raises, the operation is
//!   interrupted at its next batch boundary and the callback's exception is raised.

use std::path::PathBuf;
use std::sync::{Mutex, RwLock};

use maxsimdb::sql::Session;
use maxsimdb::{
    Database, DocId, Document, ErrorCode, Filter, Fusion, Hit, IdType, Plan, Query, SearchRequest, Value,
};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

/// A Python exception of the package's hierarchy (`maxsimdb._errors.from_code`) for a
/// status code and message.
fn py_error(code: ErrorCode, message: String) -> PyErr {
    Python::attach(|py| {
        let made = py
            .import("maxsimdb._errors")
            .and_then(|m| m.getattr("from_code"))
            .and_then(|f| f.call1((code as i32, message.clone())));
        match made {
            Ok(v) => PyErr::from_value(v),
            Err(_) => PyException::new_err(message),
        }
    })
}

fn err(e: maxsimdb::Error) -> PyErr {
    py_error(e.code(), e.to_string())
}

fn invalid(message: impl Into<String>) -> PyErr {
    py_error(ErrorCode::InvalidArgument, message.into())
}

/// The first error of a progress callback, and the database to interrupt when it happens.
struct Progress {
    callback: Option<Py<PyAny>>,
    error: Mutex<Option<PyErr>>,
}

impl Progress {
    fn new(callback: Option<Py<PyAny>>) -> Self {
        Self { callback: callback.filter(|c| Python::attach(|py| !c.is_none(py))), error: Mutex::new(None) }
    }

    /// Call the callback with `(done, total)` (`total` None when unknown); on an exception
    /// keep it and interrupt `db` (long operations stop at their next batch).
    fn report(&self, db: &Database, done: u64, total: Option<u64>) {
        let Some(cb) = &self.callback else { return };
        let mut slot = self.error.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_some() {
            return;
        }
        if let Err(e) = Python::attach(|py| cb.call1(py, (done, total)).map(drop)) {
            *slot = Some(e);
            db.interrupt();
        }
    }

    /// The callback's exception if it raised (it wins over the interruption it caused),
    /// else `r` converted.
    fn finish<T>(self, r: maxsimdb::Result<T>) -> PyResult<T> {
        match self.error.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
            Some(e) => Err(e),
            None => r.map_err(err),
        }
    }
}

/// A Python scalar (or nested list/dict) as a [`Value`]: None, bool/int, float, str;
/// lists, tuples and dicts become JSON.
fn to_value(v: &Bound<'_, PyAny>) -> PyResult<Value> {
    if v.is_none() {
        Ok(Value::Null)
    } else if v.is_instance_of::<PyBool>() {
        Ok(Value::Integer(i64::from(v.extract::<bool>()?)))
    } else if v.is_instance_of::<PyInt>() {
        Ok(Value::Integer(v.extract::<i64>()?))
    } else if v.is_instance_of::<PyFloat>() {
        Ok(Value::Real(v.extract::<f64>()?))
    } else if v.is_instance_of::<PyString>() {
        Ok(Value::Text(v.extract::<String>()?))
    } else if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() || v.is_instance_of::<PyDict>() {
        Ok(Value::Json(to_json(v)?))
    } else {
        Err(invalid(format!(
            "cannot store a value of type {} (use None, int, float, str, or a list/dict for JSON)",
            v.get_type().name()?
        )))
    }
}

fn to_json(v: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    use serde_json::Value as J;
    Ok(if v.is_none() {
        J::Null
    } else if v.is_instance_of::<PyBool>() {
        J::Bool(v.extract()?)
    } else if v.is_instance_of::<PyInt>() {
        J::from(v.extract::<i64>()?)
    } else if v.is_instance_of::<PyFloat>() {
        let f: f64 = v.extract()?;
        serde_json::Number::from_f64(f)
            .map(J::Number)
            .ok_or_else(|| invalid(format!("{f} cannot be stored in JSON")))?
    } else if v.is_instance_of::<PyString>() {
        J::String(v.extract()?)
    } else if let Ok(d) = v.cast::<PyDict>() {
        let mut m = serde_json::Map::new();
        for (k, x) in d.iter() {
            let k: String = k.extract().map_err(|_| invalid("JSON object keys must be str"))?;
            m.insert(k, to_json(&x)?);
        }
        J::Object(m)
    } else if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        J::Array(v.try_iter()?.map(|x| to_json(&x?)).collect::<PyResult<_>>()?)
    } else {
        return Err(invalid(format!("cannot store a value of type {} in JSON", v.get_type().name()?)));
    })
}

fn json_to_py(py: Python<'_>, v: &serde_json::Value) -> PyResult<Py<PyAny>> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => py.None(),
        J::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        J::Number(n) => match n.as_i64() {
            Some(i) => i.into_pyobject(py)?.into_any().unbind(),
            None => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any().unbind(),
        },
        J::String(s) => s.into_pyobject(py)?.into_any().unbind(),
        J::Array(a) => {
            let items = a.iter().map(|x| json_to_py(py, x)).collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any().unbind()
        }
        J::Object(o) => {
            let d = PyDict::new(py);
            for (k, x) in o {
                d.set_item(k, json_to_py(py, x)?)?;
            }
            d.into_any().unbind()
        }
    })
}

fn value_to_py(py: Python<'_>, v: &Value) -> PyResult<Py<PyAny>> {
    Ok(match v {
        Value::Null => py.None(),
        Value::Integer(i) => i.into_pyobject(py)?.into_any().unbind(),
        Value::Real(r) => r.into_pyobject(py)?.into_any().unbind(),
        Value::Text(s) => s.into_pyobject(py)?.into_any().unbind(),
        Value::Json(j) => json_to_py(py, j)?,
        #[allow(unreachable_patterns, reason = "Value may grow variants")]
        other => other.to_string().into_pyobject(py)?.into_any().unbind(),
    })
}

fn id_to_py(py: Python<'_>, id: &DocId) -> PyResult<Py<PyAny>> {
    Ok(match id {
        DocId::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        DocId::Text(s) => s.into_pyobject(py)?.into_any().unbind(),
    })
}

fn repr(v: &Bound<'_, PyAny>) -> String {
    v.repr().map_or_else(|_| "?".into(), |r| r.to_string())
}

fn to_id(v: &Bound<'_, PyAny>, id_type: IdType) -> PyResult<DocId> {
    match id_type {
        IdType::Integer => {
            if v.is_instance_of::<PyString>() || v.is_instance_of::<PyFloat>() {
                return Err(invalid(format!("ids of this collection are integers, got {}", repr(v))));
            }
            v.extract::<i64>()
                .map(DocId::Int)
                .map_err(|_| invalid(format!("ids of this collection are integers, got {}", repr(v))))
        }
        _ => v
            .extract::<String>()
            .map(DocId::Text)
            .map_err(|_| invalid(format!("ids of this collection are text (str), got {}", repr(v)))),
    }
}

/// A 2-D float32/float16 array as row-major f32 and its row count, with `dim` columns.
fn matrix(v: &Bound<'_, PyAny>, what: &str, dim: usize) -> PyResult<(Vec<f32>, usize)> {
    let Ok(arr) = v.cast::<numpy::PyUntypedArray>() else {
        return Err(invalid(format!(
            "{what} must be a numpy array of shape (n, {dim}), dtype float32 or float16; got {}",
            v.get_type().name()?
        )));
    };
    let shape = arr.shape().to_vec();
    if shape.len() != 2 {
        return Err(invalid(format!("{what} must be 2-D (n, {dim}), got shape {}", shape_str(&shape))));
    }
    if shape[1] != dim {
        return Err(py_error(
            ErrorCode::DimensionMismatch,
            format!("dimension mismatch for {what}: expected {dim} columns, got shape {}", shape_str(&shape)),
        ));
    }
    if let Ok(a) = v.extract::<PyReadonlyArray2<'_, f32>>() {
        // One memcpy when the rows are laid out C-contiguously; otherwise (a slice with
        // steps, a column-major array: `as_slice` accepts Fortran order too, which would
        // read it transposed) walk the elements in logical row-major order.
        let data = match a.as_slice() {
            Ok(s) if a.is_c_contiguous() => s.to_vec(),
            _ => a.as_array().iter().copied().collect(),
        };
        return Ok((data, shape[0]));
    }
    if let Ok(a) = v.extract::<PyReadonlyArray2<'_, half::f16>>() {
        return Ok((a.as_array().iter().map(|x| x.to_f32()).collect(), shape[0]));
    }
    Err(invalid(format!(
        "{what} must have dtype float32 or float16, got {} (convert with .astype(numpy.float32))",
        arr.dtype().str()?
    )))
}

/// A 1-D float32/float16 array of `dim` values.
fn vector(v: &Bound<'_, PyAny>, what: &str, dim: usize) -> PyResult<Vec<f32>> {
    let Ok(arr) = v.cast::<numpy::PyUntypedArray>() else {
        return Err(invalid(format!(
            "{what} must be a numpy array of shape ({dim},), got {}",
            v.get_type().name()?
        )));
    };
    if arr.ndim() != 1 {
        return Err(invalid(format!("{what} must be 1-D ({dim},), got shape {}", shape_str(arr.shape()))));
    }
    if arr.shape()[0] != dim {
        return Err(py_error(
            ErrorCode::DimensionMismatch,
            format!("dimension mismatch for {what}: expected {dim}, got {}", arr.shape()[0]),
        ));
    }
    if let Ok(a) = v.extract::<PyReadonlyArray1<'_, f32>>() {
        return Ok(a.as_array().to_vec());
    }
    if let Ok(a) = v.extract::<PyReadonlyArray1<'_, half::f16>>() {
        return Ok(a.as_array().iter().map(|x| x.to_f32()).collect());
    }
    Err(invalid(format!(
        "{what} must have dtype float32 or float16, got {} (convert with .astype(numpy.float32))",
        arr.dtype().str()?
    )))
}

/// A Python dict from `"key" => value` pairs (the report dicts of stats, backup, export
/// and import).
macro_rules! dict {
    ($py:expr, $($k:literal => $v:expr),+ $(,)?) => {{
        let d = PyDict::new($py);
        $(d.set_item($k, $v)?;)+
        d
    }};
}

/// A shape as Python prints it: `(2, 5)`, `(4,)`.
fn shape_str(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    }
}

fn len_of(v: &Bound<'_, PyAny>, what: &str) -> PyResult<usize> {
    v.len().map_err(|_| invalid(format!("{what} must be a sequence")))
}

fn filter(expr: Option<&str>) -> PyResult<Option<Filter>> {
    expr.map(|e| maxsimdb::sql::parse_filter(e).map_err(err)).transpose()
}

fn plan(name: Option<&str>) -> PyResult<Plan> {
    Ok(match name.map(str::to_ascii_lowercase).as_deref() {
        None | Some("auto") => Plan::Auto,
        Some("exact") => Plan::Exact,
        Some("plaid") => Plan::Plaid,
        Some("muvera") => Plan::Muvera,
        Some("hnsw") => Plan::Hnsw,
        Some(other) => {
            return Err(invalid(format!(
                "unknown plan '{other}': use 'auto', 'exact', 'plaid', 'muvera' or 'hnsw'"
            )))
        }
    })
}

/// A database handle. Thread-safe: calls from several Python threads run concurrently
/// (searches in parallel with one writer), each with the GIL released.
#[pyclass(frozen, module = "maxsimdb._native", name = "Database")]
struct Database_ {
    db: RwLock<Option<Database>>,
    path: String,
}

impl Database_ {
    fn db(&self) -> PyResult<Database> {
        self.db
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(|| py_error(ErrorCode::Misuse, format!("the database {} is closed", self.path)))
    }

    fn spec(&self, py: Python<'_>, collection: &str) -> PyResult<maxsimdb::CollectionSpec> {
        let db = self.db()?;
        py.detach(|| db.describe(collection)).map_err(err)
    }
}

/// Hits for Python: ids (numpy int64 or a list of str), scores (numpy float32), and
/// columns (name → list of values).
type HitArrays<'py> = (Py<PyAny>, Bound<'py, PyArray1<f32>>, Bound<'py, PyDict>);

fn hits_out<'py>(py: Python<'py>, hits: &[Hit], id_type: IdType) -> PyResult<HitArrays<'py>> {
    let ids: Py<PyAny> = match id_type {
        IdType::Integer => PyArray1::from_vec(
            py,
            hits.iter().map(|h| if let DocId::Int(i) = h.id { i } else { 0 }).collect(),
        )
        .into_any()
        .unbind(),
        _ => PyList::new(py, hits.iter().map(|h| h.id.to_string()))?.into_any().unbind(),
    };
    let scores = PyArray1::from_vec(py, hits.iter().map(|h| h.score).collect());
    let columns = PyDict::new(py);
    if let Some(first) = hits.first() {
        for (ci, (name, _)) in first.values.iter().enumerate() {
            let col = hits
                .iter()
                .map(|h| h.values.get(ci).map_or_else(|| Ok(py.None()), |(_, v)| value_to_py(py, v)))
                .collect::<PyResult<Vec<_>>>()?;
            columns.set_item(name, PyList::new(py, col)?)?;
        }
    }
    Ok((ids, scores, columns))
}

#[pymethods]
impl Database_ {
    #[new]
    #[pyo3(signature = (path, read_only = false, flush_threshold_tokens = None, create_parents = false))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        read_only: bool,
        flush_threshold_tokens: Option<usize>,
        create_parents: bool,
    ) -> PyResult<Self> {
        let shown = path.display().to_string();
        let db = py
            .detach(|| {
                let mut b = Database::builder(&path).read_only(read_only).create_parents(create_parents);
                if let Some(n) = flush_threshold_tokens {
                    b = b.flush_threshold_tokens(n);
                }
                b.open()
            })
            .map_err(err)?;
        Ok(Self { db: RwLock::new(Some(db)), path: shown })
    }

    /// Flush and close (idempotent). Calls on a closed handle raise `MisuseError`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let db = self.db.write().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        match db {
            Some(db) => py.detach(|| db.close()).map_err(err),
            None => Ok(()),
        }
    }

    #[getter]
    fn closed(&self) -> bool {
        self.db.read().unwrap_or_else(std::sync::PoisonError::into_inner).is_none()
    }

    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    #[getter]
    fn read_only(&self) -> PyResult<bool> {
        Ok(self.db()?.is_read_only())
    }

    /// Stop the long operation running on this database at its next batch boundary.
    fn interrupt(&self) -> PyResult<()> {
        self.db()?.interrupt();
        Ok(())
    }

    /// Run every statement of `sql`; returns one `(columns, rows, message, changes)` per
    /// statement. `params` are bound to `?`, `?N` and `:name` placeholders in order.
    #[pyo3(signature = (sql, params = None, progress = None))]
    #[allow(clippy::type_complexity, reason = "the tuple the Python layer unpacks")]
    fn execute(
        &self,
        py: Python<'_>,
        sql: &str,
        params: Option<&Bound<'_, PyAny>>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Vec<(Vec<String>, Vec<Vec<Py<PyAny>>>, Option<String>, Option<u64>)>> {
        let params: Vec<Value> = match params {
            None => Vec::new(),
            Some(p) if p.is_none() => Vec::new(),
            Some(p) => p.try_iter()?.map(|x| to_value(&x?)).collect::<PyResult<_>>()?,
        };
        let db = self.db()?;
        let progress = Progress::new(progress);
        let mut results = Vec::new();
        let r = py.detach(|| {
            let session = Session::new(db.clone());
            session.execute_with(
                sql,
                &params,
                &mut |done, _unit| progress.report(&db, done as u64, None),
                &mut |r| results.push(r),
            )
        });
        progress.finish(r)?;
        results
            .into_iter()
            .map(|r| {
                let rows = r
                    .rows
                    .iter()
                    .map(|row| row.iter().map(|v| value_to_py(py, v)).collect::<PyResult<Vec<_>>>())
                    .collect::<PyResult<Vec<_>>>()?;
                Ok((r.columns, rows, r.message, r.changes))
            })
            .collect()
    }

    /// Names of the collections.
    fn collections(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let db = self.db()?;
        let specs = py.detach(|| db.collections()).map_err(err)?;
        Ok(specs.into_iter().map(|s| s.name).collect())
    }

    /// The collection's spec as JSON text (the Python layer parses it).
    fn describe(&self, py: Python<'_>, collection: &str) -> PyResult<String> {
        let spec = self.spec(py, collection)?;
        serde_json::to_string(&spec).map_err(|e| invalid(e.to_string()))
    }

    /// Insert (or with `upsert`, replace) documents given as numpy arrays.
    #[pyo3(signature = (collection, ids, tokens = None, pooled = None, columns = None, upsert = false))]
    #[allow(clippy::too_many_arguments, reason = "Python keyword arguments")]
    fn insert(
        &self,
        py: Python<'_>,
        collection: &str,
        ids: &Bound<'_, PyAny>,
        tokens: Option<&Bound<'_, PyAny>>,
        pooled: Option<&Bound<'_, PyDict>>,
        columns: Option<&Bound<'_, PyDict>>,
        upsert: bool,
    ) -> PyResult<usize> {
        let spec = self.spec(py, collection)?;
        let n = len_of(ids, "ids")?;
        let mut docs = ids
            .try_iter()?
            .map(|id| Ok(Document::new(to_id(&id?, spec.id_type)?)))
            .collect::<PyResult<Vec<_>>>()?;
        let dim = spec.vectors.token_dim;
        if let Some(t) = tokens.filter(|t| !t.is_none()) {
            let got = len_of(t, "tokens")?;
            if got != n {
                return Err(invalid(format!(
                    "tokens has {got} arrays for {n} ids (one (n_i, {dim}) array per id)"
                )));
            }
            for (i, (doc, m)) in docs.iter_mut().zip(t.try_iter()?).enumerate() {
                doc.tokens = matrix(&m?, &format!("tokens[{i}]"), dim)?.0;
            }
        }
        if let Some(p) = pooled {
            for (name, arr) in p.iter() {
                let name: String = name.extract().map_err(|_| invalid("pooled keys must be str"))?;
                let Some(ps) = spec.vectors.pooled.iter().find(|s| s.name == name) else {
                    let known: Vec<_> = spec.vectors.pooled.iter().map(|s| s.name.as_str()).collect();
                    return Err(py_error(
                        ErrorCode::NotFound,
                        format!(
                            "pooled vector '{name}' not found in {collection} (it has: {})",
                            known.join(", ")
                        ),
                    ));
                };
                let (data, rows) = matrix(&arr, &format!("pooled['{name}']"), ps.dim)?;
                if rows != n {
                    return Err(invalid(format!("pooled['{name}'] has {rows} rows for {n} ids")));
                }
                for (doc, row) in docs.iter_mut().zip(data.chunks_exact(ps.dim.max(1))) {
                    doc.pooled.push((name.clone(), row.to_vec()));
                }
            }
        }
        if let Some(c) = columns {
            for (name, vals) in c.iter() {
                let name: String = name.extract().map_err(|_| invalid("column names must be str"))?;
                let got = len_of(&vals, &format!("columns['{name}']"))?;
                if got != n {
                    return Err(invalid(format!("columns['{name}'] has {got} values for {n} ids")));
                }
                for (doc, v) in docs.iter_mut().zip(vals.try_iter()?) {
                    doc.values.push((name.clone(), to_value(&v?)?));
                }
            }
        }
        let db = self.db()?;
        let text = spec.embedding.is_some() && tokens.is_none_or(|t| t.is_none());
        py.detach(|| match (text, upsert) {
            (true, false) => db.insert_text(collection, &docs),
            (true, true) => db.upsert_text(collection, &docs),
            (false, false) => db.insert(collection, &docs),
            (false, true) => db.upsert(collection, &docs),
        })
        .map_err(err)?;
        Ok(n)
    }

    /// Search; returns `(ids, scores, columns, plan)`: ids as a numpy int64 array (integer
    /// ids) or a list of str, scores float32, columns a dict of lists.
    #[pyo3(signature = (collection, query, k = 10, r#where = None, plan = None, mode = None, field = None,
                        recall = None, candidates = None, ef = None, fusion_k = None))]
    #[allow(clippy::too_many_arguments, reason = "Python keyword arguments")]
    fn search<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        query: &Bound<'py, PyAny>,
        k: usize,
        r#where: Option<&str>,
        plan: Option<&str>,
        mode: Option<&str>,
        field: Option<String>,
        recall: Option<f32>,
        candidates: Option<usize>,
        ef: Option<usize>,
        fusion_k: Option<f32>,
    ) -> PyResult<(HitArrays<'py>, String)> {
        let spec = self.spec(py, collection)?;
        let text = if query.is_instance_of::<PyString>() { Some(query.extract::<String>()?) } else { None };
        let default_mode = if field.is_some() { "dense" } else { "maxsim" };
        let mode = mode.unwrap_or(default_mode).to_ascii_lowercase();
        let pooled_dim = |f: &str| {
            spec.vectors.pooled.iter().find(|p| p.name == f).map(|p| p.dim).ok_or_else(|| {
                let known: Vec<_> = spec.vectors.pooled.iter().map(|p| p.name.as_str()).collect();
                py_error(
                    ErrorCode::NotFound,
                    format!("pooled vector '{f}' not found in {collection} (it has: {})", known.join(", ")),
                )
            })
        };
        let q = match (mode.as_str(), text) {
            ("maxsim", Some(t)) => Query::MaxSimText { text: t },
            ("maxsim", None) => {
                Query::MaxSim { tokens: matrix(query, "query", spec.vectors.token_dim)?.0, mask: None }
            }
            ("dense", t) => {
                let f =
                    field.ok_or_else(|| invalid("a dense search needs field= (the pooled vector's name)"))?;
                match t {
                    Some(t) => Query::DenseText { field: f, text: t },
                    None => {
                        let d = pooled_dim(&f)?;
                        Query::Dense { vector: vector(query, "query", d)?, field: f }
                    }
                }
            }
            ("bm25", Some(t)) => Query::Bm25 { text: t },
            ("hybrid", Some(t)) => {
                let mut parts = vec![Query::MaxSimText { text: t.clone() }, Query::Bm25 { text: t.clone() }];
                if let Some(f) = field {
                    parts.push(Query::DenseText { field: f, text: t });
                }
                Query::Hybrid { parts, fusion: Fusion::Rrf { k: fusion_k.unwrap_or(60.0) } }
            }
            ("bm25" | "hybrid", None) => {
                return Err(invalid(format!("a {mode} search takes a text query (str)")))
            }
            (other, _) => {
                return Err(invalid(format!(
                    "unknown mode '{other}': use 'maxsim', 'dense', 'bm25' or 'hybrid'"
                )))
            }
        };
        let mut req = SearchRequest::new(q).limit(k).plan(self::plan(plan)?);
        if let Some(f) = filter(r#where)? {
            req = req.filter(f);
        }
        if let Some(r) = recall {
            req = req.recall(r);
        }
        if let Some(c) = candidates {
            req = req.candidates(c);
        }
        if let Some(e) = ef {
            req = req.ef(e);
        }
        let db = self.db()?;
        let out = py.detach(|| db.search_explained(collection, &req)).map_err(err)?;
        Ok((hits_out(py, &out.hits, spec.id_type)?, format!("{:?}", out.plan).to_ascii_lowercase()))
    }

    /// One document: `None` when absent, else a dict with id, columns and (with
    /// `vectors`) tokens `(n, dim)` float32 and pooled vectors.
    #[pyo3(signature = (collection, id, vectors = true))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        id: &Bound<'py, PyAny>,
        vectors: bool,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let spec = self.spec(py, collection)?;
        let id = to_id(id, spec.id_type)?;
        let db = self.db()?;
        let Some(doc) = py.detach(|| db.get(collection, &id)).map_err(err)? else { return Ok(None) };
        let out = PyDict::new(py);
        out.set_item("id", id_to_py(py, &doc.id)?)?;
        let cols = PyDict::new(py);
        for (name, v) in &doc.values {
            cols.set_item(name, value_to_py(py, v)?)?;
        }
        out.set_item("columns", cols)?;
        if vectors {
            let dim = spec.vectors.token_dim.max(1);
            let n = doc.tokens.len() / dim;
            out.set_item("tokens", PyArray1::from_vec(py, doc.tokens).reshape([n, dim])?)?;
            let pooled = PyDict::new(py);
            for (name, v) in doc.pooled {
                pooled.set_item(name, PyArray1::from_vec(py, v))?;
            }
            out.set_item("pooled", pooled)?;
        }
        Ok(Some(out))
    }

    /// Delete by ids (`ids` given) or by filter; returns the number deleted.
    #[pyo3(signature = (collection, ids = None, r#where = None))]
    fn delete(
        &self,
        py: Python<'_>,
        collection: &str,
        ids: Option<&Bound<'_, PyAny>>,
        r#where: Option<&str>,
    ) -> PyResult<u64> {
        let db = self.db()?;
        match (ids.filter(|i| !i.is_none()), r#where) {
            (Some(ids), None) => {
                let spec = self.spec(py, collection)?;
                let ids = ids.try_iter()?.map(|i| to_id(&i?, spec.id_type)).collect::<PyResult<Vec<_>>>()?;
                py.detach(|| db.delete(collection, &ids)).map_err(err)
            }
            (None, Some(w)) => {
                let f = filter(Some(w))?.unwrap_or(Filter::And(Vec::new()));
                py.detach(|| db.delete_where(collection, &f)).map_err(err)
            }
            _ => Err(invalid("delete takes ids or where= (one of them)")),
        }
    }

    /// Set scalar columns of the documents with `id` or matching `where`.
    #[pyo3(signature = (collection, values, id = None, r#where = None))]
    fn update(
        &self,
        py: Python<'_>,
        collection: &str,
        values: &Bound<'_, PyDict>,
        id: Option<&Bound<'_, PyAny>>,
        r#where: Option<&str>,
    ) -> PyResult<u64> {
        let vals = values
            .iter()
            .map(|(k, v)| {
                Ok((k.extract::<String>().map_err(|_| invalid("column names must be str"))?, to_value(&v)?))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let db = self.db()?;
        match (id.filter(|i| !i.is_none()), r#where) {
            (Some(id), None) => {
                let spec = self.spec(py, collection)?;
                let id = to_id(id, spec.id_type)?;
                py.detach(|| db.update(collection, &id, &vals)).map_err(err)?;
                Ok(1)
            }
            (None, Some(w)) => {
                let f = filter(Some(w))?.unwrap_or(Filter::And(Vec::new()));
                py.detach(|| db.update_where(collection, &f, &vals)).map_err(err)
            }
            _ => Err(invalid("update takes id or where= (one of them)")),
        }
    }

    /// Live documents (passing `where`).
    #[pyo3(signature = (collection, r#where = None))]
    fn count(&self, py: Python<'_>, collection: &str, r#where: Option<&str>) -> PyResult<u64> {
        let f = filter(r#where)?;
        let db = self.db()?;
        py.detach(|| db.count(collection, f.as_ref())).map_err(err)
    }

    fn flush(&self, py: Python<'_>, collection: &str) -> PyResult<bool> {
        let db = self.db()?;
        py.detach(|| db.flush(collection)).map_err(err)
    }

    fn compact(&self, py: Python<'_>, collection: &str) -> PyResult<bool> {
        let db = self.db()?;
        py.detach(|| db.compact(collection)).map_err(err)
    }

    fn stats<'py>(&self, py: Python<'py>, collection: &str) -> PyResult<Bound<'py, PyDict>> {
        let db = self.db()?;
        let s = py.detach(|| db.stats(collection)).map_err(err)?;
        Ok(dict!(py,
            "name" => s.name,
            "docs" => s.docs,
            "pending_docs" => s.pending_docs,
            "pending_tokens" => s.pending_tokens,
            "segments" => s.segments,
            "segment_tokens" => s.segment_tokens,
            "tombstones" => s.tombstones,
            "segment_bytes" => s.segment_bytes,
            "index_bytes" => s.index_bytes.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
            "catalog_bytes" => s.catalog_bytes,
        ))
    }

    /// Consistent snapshot into one archive; `progress(done_bytes, total_bytes)`.
    #[pyo3(signature = (dest, progress = None))]
    fn backup<'py>(
        &self,
        py: Python<'py>,
        dest: PathBuf,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let db = self.db()?;
        let progress = Progress::new(progress);
        let r = py.detach(|| db.backup(&dest, |done, total| progress.report(&db, done, Some(total))));
        let r = progress.finish(r)?;
        Ok(dict!(py,
            "files" => r.files,
            "bytes" => r.bytes,
            "archive_bytes" => r.archive_bytes,
            "seconds" => r.seconds,
        ))
    }

    /// Export a collection to Parquet (f32 vectors); `progress(done_docs, total_docs)`.
    #[pyo3(signature = (collection, dest, progress = None))]
    fn export_parquet<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        dest: PathBuf,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let db = self.db()?;
        let progress = Progress::new(progress);
        let r = py.detach(|| {
            db.export_parquet(collection, &dest, |done, total| progress.report(&db, done, Some(total)))
        });
        let r = progress.finish(r)?;
        Ok(dict!(py,
            "docs" => r.docs,
            "tokens" => r.tokens,
            "row_groups" => r.row_groups,
            "file_bytes" => r.file_bytes,
            "seconds" => r.seconds,
        ))
    }

    /// Import a Parquet file (one maxsimdb exported, or any with an id column and
    /// vectors); `progress(done_rows, total_rows)`.
    #[pyo3(signature = (collection, path, progress = None))]
    fn import_parquet<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        path: PathBuf,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let db = self.db()?;
        let progress = Progress::new(progress);
        let r = py.detach(|| {
            db.import_parquet(collection, &path, |_stage, done, total| {
                progress.report(&db, done, Some(total))
            })
        });
        let r = progress.finish(r)?;
        Ok(dict!(py,
            "docs" => r.docs,
            "tokens" => r.tokens,
            "created" => r.created,
            "seconds" => r.seconds,
        ))
    }

    /// Stream text documents into a text collection in committed batches;
    /// `progress(done, None)` after each batch.
    #[pyo3(signature = (collection, ids, columns, progress = None))]
    fn import_text(
        &self,
        py: Python<'_>,
        collection: &str,
        ids: &Bound<'_, PyAny>,
        columns: &Bound<'_, PyDict>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<usize> {
        let spec = self.spec(py, collection)?;
        let n = len_of(ids, "ids")?;
        let mut docs = ids
            .try_iter()?
            .map(|id| Ok(Document::new(to_id(&id?, spec.id_type)?)))
            .collect::<PyResult<Vec<_>>>()?;
        for (name, vals) in columns.iter() {
            let name: String = name.extract().map_err(|_| invalid("column names must be str"))?;
            let got = len_of(&vals, &format!("columns['{name}']"))?;
            if got != n {
                return Err(invalid(format!("columns['{name}'] has {got} values for {n} ids")));
            }
            for (doc, v) in docs.iter_mut().zip(vals.try_iter()?) {
                doc.values.push((name.clone(), to_value(&v?)?));
            }
        }
        let db = self.db()?;
        let progress = Progress::new(progress);
        let r = py.detach(|| {
            db.import_text(collection, docs, |done| progress.report(&db, done as u64, Some(n as u64)))
        });
        progress.finish(r)
    }
}

/// The version of the maxsimdb library inside the module.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Database_>()?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    Ok(())
}
