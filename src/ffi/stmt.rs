//! Prepared statements: bind, step through rows, read columns.

use std::ffi::{c_char, c_int, CString};
use std::sync::{Arc, Mutex};

use super::db::{msdb_db, vector_json, with_db};
use super::{
    guarded, lock, misuse, nul_terminated, product, put, slice, status, text, LastError, MSDB_DONE, MSDB_OK,
    MSDB_ROW, REGISTRY,
};
use crate::sql::{Session, StatementResult};
use crate::{Error, Result, Value};

/// A prepared statement (opaque). Use one statement from one thread at a time.
pub struct msdb_stmt {
    _opaque: [u8; 0],
}

/// `msdb_stmt_column_type`: SQL NULL.
pub const MSDB_TYPE_NULL: c_int = 0;
/// `msdb_stmt_column_type`: 64-bit integer.
pub const MSDB_TYPE_INTEGER: c_int = 1;
/// `msdb_stmt_column_type`: double.
pub const MSDB_TYPE_REAL: c_int = 2;
/// `msdb_stmt_column_type`: UTF-8 text.
pub const MSDB_TYPE_TEXT: c_int = 3;
/// `msdb_stmt_column_type`: JSON (read it with `msdb_stmt_column_text`).
pub const MSDB_TYPE_JSON: c_int = 4;

/// What a `msdb_stmt *` token stands for.
pub(super) struct StmtHandle {
    /// The token of the database handle it was prepared on (`msdb_db_close` is busy while
    /// it lives).
    pub(super) db_token: usize,
    session: Session,
    /// Named parameters (`:name`) and their indices.
    param_names: Vec<(String, usize)>,
    /// The changes counter of the database handle it was prepared on (`msdb_changes`).
    changes: Arc<std::sync::atomic::AtomicU64>,
    sql: String,
    st: Mutex<StmtState>,
}

#[derive(Default)]
struct StmtState {
    params: Vec<Value>,
    /// The result once run (`None`: not run since prepare or reset).
    result: Option<StatementResult>,
    /// The current row (`Some(len)` once the rows are exhausted).
    row: Option<usize>,
    names: Vec<CString>,
    /// NUL-terminated text of the current row's cells, made on first request.
    cells: Vec<Option<Vec<u8>>>,
    /// The current row's vector cells as floats (rows, dim, values), made on first request.
    vectors: Vec<Option<(usize, usize, Vec<f32>)>>,
    message: Option<CString>,
    err: LastError,
}

impl StmtState {
    fn result(&self, what: &str) -> Result<&StatementResult> {
        self.result
            .as_ref()
            .ok_or_else(|| misuse(format!("{what}: the statement has not run: call msdb_stmt_step")))
    }

    fn current(&self, what: &str) -> Result<&[Value]> {
        let r = self.result(what)?;
        self.row
            .and_then(|i| r.rows.get(i))
            .map(Vec::as_slice)
            .ok_or_else(|| misuse(format!("{what}: no current row (msdb_stmt_step did not return MSDB_ROW)")))
    }

    fn cell(&self, col: usize, what: &str) -> Result<&Value> {
        let row = self.current(what)?;
        row.get(col)
            .ok_or_else(|| Error::invalid(format!("{what}: column {col} out of range (0..{})", row.len())))
    }

    fn reset(&mut self) {
        let params = std::mem::take(&mut self.params);
        let err = std::mem::take(&mut self.err);
        *self = StmtState { params, err, ..StmtState::default() };
    }
}

fn lookup_stmt(stmt: *const msdb_stmt, what: &str) -> Result<Arc<StmtHandle>> {
    if stmt.is_null() {
        return Err(misuse(format!("{what}: the statement handle is NULL")));
    }
    lock(&REGISTRY).stmts.get(&(stmt as usize)).cloned().ok_or_else(|| {
        misuse(format!(
            "{what}: not a live statement handle (finalized already, or not from msdb_stmt_prepare)"
        ))
    })
}

/// Run `f` on the statement, recording the outcome as its last error.
fn with_stmt(
    stmt: *const msdb_stmt,
    what: &str,
    f: impl FnOnce(&StmtHandle, &mut StmtState) -> Result<c_int>,
) -> c_int {
    let h = match lookup_stmt(stmt, what) {
        Ok(h) => h,
        Err(e) => return status(&Err(e)),
    };
    let mut st = lock(&h.st);
    let r = guarded(what, || f(&h, &mut st));
    let code = status(&r);
    st.err.set(code, r.as_ref().err());
    code
}

/// Prepare one statement of the SQL-like language; `?`, `?N` and `:name` mark parameters
/// (bound with `msdb_stmt_bind_*`, numbered from 1 as in SQLite: `?N` is N, `:name` keeps
/// the index of its first appearance, `?` and a new name take one more than the largest so
/// far; `msdb_stmt_bind_parameter_index` finds a name's). Unbound ones are NULL. Syntax
/// errors before the first parameter are reported here (on the database handle); errors
/// that depend on bound values, when it runs. On failure `*out` is NULL. A string of
/// several statements is `MSDB_INVALID_ARGUMENT`: use `msdb_stmt_prepare_v2`.
///
/// # Safety
/// `sql` is a NUL-terminated string; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_stmt_prepare(
    db: *mut msdb_db,
    sql: *const c_char,
    out: *mut *mut msdb_stmt,
) -> c_int {
    // SAFETY: caller contract (`put` checks NULL; the call below reports it).
    let _ = unsafe { put(out, std::ptr::null_mut(), "out") };
    // SAFETY: caller contract, forwarded.
    with_db(db, "msdb_stmt_prepare", |h| unsafe {
        prepare(h.session.clone(), h.changes.clone(), db as usize, sql, out, None)
    })
}

/// Prepare the first statement of `sql` (which may hold several) and set `*tail` to the
/// rest: the text after that statement and its `;`, a pointer into `sql` (at its NUL when
/// nothing follows). As `sqlite3_prepare_v2`, a `sql` with no statement left (only
/// whitespace, comments or `;`) gives `MSDB_OK` with `*out` NULL, so a loop
/// `while (*tail)` runs a script statement by statement. `tail` may be NULL.
///
/// # Safety
/// `sql` is a NUL-terminated string; `out` is writable; `tail` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_stmt_prepare_v2(
    db: *mut msdb_db,
    sql: *const c_char,
    out: *mut *mut msdb_stmt,
    tail: *mut *const c_char,
) -> c_int {
    // SAFETY: caller contract (`put` checks NULL; the call below reports it).
    let _ = unsafe { put(out, std::ptr::null_mut(), "out") };
    // SAFETY: caller contract, forwarded.
    with_db(db, "msdb_stmt_prepare_v2", |h| unsafe {
        prepare(h.session.clone(), h.changes.clone(), db as usize, sql, out, Some(tail))
    })
}

/// # Safety
/// As [`msdb_stmt_prepare`].
unsafe fn prepare(
    session: Session,
    changes: Arc<std::sync::atomic::AtomicU64>,
    db_token: usize,
    sql: *const c_char,
    out: *mut *mut msdb_stmt,
    tail: Option<*mut *const c_char>,
) -> Result<c_int> {
    // SAFETY: caller contract.
    unsafe { put(out, std::ptr::null_mut(), "msdb_stmt_prepare: out")? };
    // SAFETY: caller contract.
    let text_sql = unsafe { text(sql, "msdb_stmt_prepare: sql")? };
    let (p, first) = match tail {
        None => {
            let p = crate::sql::prepare_one(text_sql)?;
            (p, text_sql)
        }
        Some(tail) => {
            let found = crate::sql::prepare_first(text_sql)?;
            let end = found.as_ref().map_or(text_sql.len(), |p| p.end);
            if !tail.is_null() {
                // SAFETY: `end` ≤ the string's length: a pointer into the caller's string
                // (at its NUL when nothing follows); `tail` is writable by the contract.
                unsafe { tail.write_unaligned(sql.add(end)) };
            }
            match found {
                None => return Ok(MSDB_OK),
                Some(p) => (p, &text_sql[..end]),
            }
        }
    };
    let st = StmtState { params: vec![Value::Null; p.params], ..StmtState::default() };
    let handle = StmtHandle {
        db_token,
        session,
        param_names: p.names,
        changes,
        sql: first.to_string(),
        st: Mutex::new(st),
    };
    let token = {
        let mut reg = lock(&REGISTRY);
        let t = reg.token();
        reg.stmts.insert(t, Arc::new(handle));
        t
    };
    // SAFETY: checked writable above.
    unsafe { out.write_unaligned(token as *mut msdb_stmt) };
    Ok(MSDB_OK)
}

/// Release a statement. NULL is a no-op; finalizing twice is `MSDB_MISUSE`.
#[no_mangle]
pub extern "C" fn msdb_stmt_finalize(stmt: *mut msdb_stmt) -> c_int {
    if stmt.is_null() {
        return MSDB_OK;
    }
    match lock(&REGISTRY).stmts.remove(&(stmt as usize)) {
        Some(_) => MSDB_OK,
        None => status(&Err(misuse("msdb_stmt_finalize: not a live statement handle (finalized twice?)"))),
    }
}

/// `*out` = the index (from 1) of the named parameter `name` (`":year"`, or `"year"`),
/// for the `msdb_stmt_bind_*` calls; `MSDB_NOT_FOUND` if the statement has no such name.
///
/// # Safety
/// `name` is a NUL-terminated string; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_stmt_bind_parameter_index(
    stmt: *mut msdb_stmt,
    name: *const c_char,
    out: *mut usize,
) -> c_int {
    with_stmt(stmt, "msdb_stmt_bind_parameter_index", |h, _| {
        // SAFETY: caller contract.
        let n = unsafe { text(name, "msdb_stmt_bind_parameter_index: name")? };
        let bare = n.strip_prefix([':', '$']).unwrap_or(n);
        let i = h.param_names.iter().find(|(k, _)| k == bare).map(|(_, i)| *i).ok_or_else(|| {
            Error::NotFound {
                kind: "parameter",
                name: format!(
                    "{n} (the statement's named parameters: {})",
                    if h.param_names.is_empty() {
                        "none".to_string()
                    } else {
                        h.param_names.iter().map(|(k, _)| format!(":{k}")).collect::<Vec<_>>().join(", ")
                    }
                ),
            }
        })?;
        // SAFETY: caller contract.
        unsafe { put(out, i, "msdb_stmt_bind_parameter_index: out")? };
        Ok(MSDB_OK)
    })
}

/// The number of parameters the statement takes.
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_stmt_param_count(stmt: *mut msdb_stmt, out: *mut usize) -> c_int {
    with_stmt(stmt, "msdb_stmt_param_count", |_, st| {
        // SAFETY: caller contract.
        unsafe { put(out, st.params.len(), "msdb_stmt_param_count: out")? };
        Ok(MSDB_OK)
    })
}

/// Bind parameter `index` (from 1) to `v`.
fn bind(stmt: *mut msdb_stmt, what: &str, index: usize, v: impl FnOnce() -> Result<Value>) -> c_int {
    with_stmt(stmt, what, |_, st| {
        if st.result.is_some() {
            return Err(misuse(format!(
                "{what}: the statement is running: call msdb_stmt_reset before binding"
            )));
        }
        let n = st.params.len();
        let slot = index
            .checked_sub(1)
            .and_then(|i| st.params.get_mut(i))
            .ok_or_else(|| Error::invalid(format!("{what}: parameter index {index} out of range 1..={n}")))?;
        *slot = v()?;
        Ok(MSDB_OK)
    })
}

/// Bind NULL to parameter `index` (from 1).
#[no_mangle]
pub extern "C" fn msdb_stmt_bind_null(stmt: *mut msdb_stmt, index: usize) -> c_int {
    bind(stmt, "msdb_stmt_bind_null", index, || Ok(Value::Null))
}

/// Bind an integer to parameter `index` (from 1).
#[no_mangle]
pub extern "C" fn msdb_stmt_bind_int64(stmt: *mut msdb_stmt, index: usize, value: i64) -> c_int {
    bind(stmt, "msdb_stmt_bind_int64", index, || Ok(Value::Integer(value)))
}

/// Bind a double to parameter `index` (from 1). The value must be finite (NaN and ±inf
/// are `MSDB_INVALID_ARGUMENT` here, not at step).
#[no_mangle]
pub extern "C" fn msdb_stmt_bind_double(stmt: *mut msdb_stmt, index: usize, value: f64) -> c_int {
    bind(stmt, "msdb_stmt_bind_double", index, || {
        if value.is_finite() {
            Ok(Value::Real(value))
        } else {
            Err(Error::invalid(format!("msdb_stmt_bind_double: {value} is not a finite number")))
        }
    })
}

/// Bind text (copied) to parameter `index` (from 1).
///
/// # Safety
/// `value` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn msdb_stmt_bind_text(
    stmt: *mut msdb_stmt,
    index: usize,
    value: *const c_char,
) -> c_int {
    // SAFETY: caller contract.
    bind(stmt, "msdb_stmt_bind_text", index, || Ok(Value::Text(unsafe { text(value, "value")? }.to_string())))
}

/// Bind a float vector (copied) where the language takes a vector (`dense(field, ?)`,
/// a pooled column of `INSERT`, `HOPFIELD`). Values must be finite.
///
/// # Safety
/// `data` is valid for `len` floats.
#[no_mangle]
pub unsafe extern "C" fn msdb_stmt_bind_vector(
    stmt: *mut msdb_stmt,
    index: usize,
    data: *const f32,
    len: usize,
) -> c_int {
    bind(stmt, "msdb_stmt_bind_vector", index, || {
        // SAFETY: caller contract.
        vector_json(unsafe { slice(data, len, "data")? }, None)
    })
}

/// Bind a matrix of `rows × dim` floats (row-major, copied) where the language takes a
/// token matrix (`maxsim(?)`, the `tokens` column of `INSERT`).
///
/// # Safety
/// `data` is valid for `rows × dim` floats.
#[no_mangle]
pub unsafe extern "C" fn msdb_stmt_bind_matrix(
    stmt: *mut msdb_stmt,
    index: usize,
    data: *const f32,
    rows: usize,
    dim: usize,
) -> c_int {
    bind(stmt, "msdb_stmt_bind_matrix", index, || {
        if rows == 0 || dim == 0 {
            return Err(Error::invalid(format!("a matrix needs rows and columns, got {rows} × {dim}")));
        }
        // SAFETY: caller contract.
        vector_json(unsafe { slice(data, product(rows, dim, "data")?, "data")? }, Some(rows))
    })
}

/// Set every parameter back to NULL.
#[no_mangle]
pub extern "C" fn msdb_stmt_clear_bindings(stmt: *mut msdb_stmt) -> c_int {
    with_stmt(stmt, "msdb_stmt_clear_bindings", |_, st| {
        if st.result.is_some() {
            return Err(misuse("msdb_stmt_clear_bindings: call msdb_stmt_reset first"));
        }
        st.params.iter_mut().for_each(|p| *p = Value::Null);
        Ok(MSDB_OK)
    })
}

/// Run the statement (on the first call after prepare or reset) and move to the next
/// row: `MSDB_ROW` when a row is ready, `MSDB_DONE` when there are no more (again on
/// every further call, until `msdb_stmt_reset`), or an error status — then nothing was
/// done and the statement is as if reset.
#[no_mangle]
pub extern "C" fn msdb_stmt_step(stmt: *mut msdb_stmt) -> c_int {
    with_stmt(stmt, "msdb_stmt_step", |h, st| {
        if st.result.is_none() {
            let mut results = Vec::new();
            let params = &st.params;
            super::on_pool("msdb_stmt_step", || {
                h.session
                    .execute_with(&h.sql, params, &mut |_, _| {}, &mut |r| results.push(r))
                    .map(|()| MSDB_OK)
            })?;
            let r = results.pop().unwrap_or_default();
            if let Some(n) = r.changes {
                h.changes.store(n, std::sync::atomic::Ordering::SeqCst);
            }
            st.names = r.columns.iter().filter_map(|c| nul_terminated(c)).collect();
            st.message = r.message.as_deref().and_then(nul_terminated);
            st.result = Some(r);
        }
        let rows = st.result("msdb_stmt_step")?.rows.len();
        let next = st.row.map_or(0, |i| (i + 1).min(rows));
        st.row = Some(next);
        st.cells.clear();
        st.vectors.clear();
        if next < rows {
            st.cells.resize(st.names.len(), None);
            st.vectors.resize(st.names.len(), None);
            Ok(MSDB_ROW)
        } else {
            Ok(MSDB_DONE)
        }
    })
}

/// Make the statement ready to run again (bindings are kept). Pointers read from its
/// rows become invalid.
#[no_mangle]
pub extern "C" fn msdb_stmt_reset(stmt: *mut msdb_stmt) -> c_int {
    with_stmt(stmt, "msdb_stmt_reset", |_, st| {
        st.reset();
        Ok(MSDB_OK)
    })
}

/// The number of result columns (0 for statements that return no table). Before the
/// first `msdb_stmt_step` it comes from the statement's text and the collection's columns
/// (with the current bindings), without running it; `msdb_stmt_column_name` likewise.
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_stmt_column_count(stmt: *mut msdb_stmt, out: *mut usize) -> c_int {
    with_stmt(stmt, "msdb_stmt_column_count", |h, st| {
        let n = match &st.result {
            Some(r) => r.columns.len(),
            None => {
                let cols = h.session.result_columns(&h.sql, &st.params)?;
                st.names = cols.iter().filter_map(|c| nul_terminated(c)).collect();
                cols.len()
            }
        };
        // SAFETY: caller contract.
        unsafe { put(out, n, "msdb_stmt_column_count: out")? };
        Ok(MSDB_OK)
    })
}

/// The name of result column `col` (from 0). The string belongs to the statement: valid
/// until it is reset or finalized.
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_stmt_column_name(
    stmt: *mut msdb_stmt,
    col: usize,
    out: *mut *const c_char,
) -> c_int {
    with_stmt(stmt, "msdb_stmt_column_name", |h, st| {
        if st.result.is_none() {
            let cols = h.session.result_columns(&h.sql, &st.params)?;
            st.names = cols.iter().filter_map(|c| nul_terminated(c)).collect();
        }
        let n = st.names.len();
        let name = st.names.get(col).ok_or_else(|| {
            Error::invalid(format!("msdb_stmt_column_name: column {col} out of range (0..{n})"))
        })?;
        // SAFETY: caller contract.
        unsafe { put(out, name.as_ptr(), "msdb_stmt_column_name: out")? };
        Ok(MSDB_OK)
    })
}

/// The type (`MSDB_TYPE_*`) of column `col` in the current row.
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_stmt_column_type(stmt: *mut msdb_stmt, col: usize, out: *mut c_int) -> c_int {
    with_stmt(stmt, "msdb_stmt_column_type", |_, st| {
        let t = match st.cell(col, "msdb_stmt_column_type")? {
            Value::Null => super::stmt::MSDB_TYPE_NULL,
            Value::Integer(_) => MSDB_TYPE_INTEGER,
            Value::Real(_) => MSDB_TYPE_REAL,
            Value::Text(_) => MSDB_TYPE_TEXT,
            Value::Json(_) => MSDB_TYPE_JSON,
        };
        // SAFETY: caller contract.
        unsafe { put(out, t, "msdb_stmt_column_type: out")? };
        Ok(MSDB_OK)
    })
}

/// A numeric cell as f64 (NULL reads as 0).
fn number(v: &Value, what: &str, col: usize) -> Result<f64> {
    #[expect(clippy::cast_precision_loss, reason = "reading an integer as a double, like SQLite")]
    match v {
        Value::Null => Ok(0.0),
        Value::Integer(i) => Ok(*i as f64),
        Value::Real(r) => Ok(*r),
        _ => Err(Error::invalid(format!(
            "{what}: column {col} is not a number: read it with msdb_stmt_column_text"
        ))),
    }
}

/// Column `col` of the current row as an integer (REAL is truncated, NULL reads as 0;
/// TEXT/JSON is `MSDB_INVALID_ARGUMENT`).
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_stmt_column_int64(stmt: *mut msdb_stmt, col: usize, out: *mut i64) -> c_int {
    const WHAT: &str = "msdb_stmt_column_int64";
    with_stmt(stmt, WHAT, |_, st| {
        let v = match st.cell(col, WHAT)? {
            Value::Integer(i) => *i,
            #[expect(clippy::cast_possible_truncation, reason = "documented truncation, saturating")]
            other => number(other, WHAT, col)? as i64,
        };
        // SAFETY: caller contract.
        unsafe { put(out, v, "msdb_stmt_column_int64: out")? };
        Ok(MSDB_OK)
    })
}

/// Column `col` of the current row as a double (NULL reads as 0; TEXT/JSON is
/// `MSDB_INVALID_ARGUMENT`).
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_stmt_column_double(stmt: *mut msdb_stmt, col: usize, out: *mut f64) -> c_int {
    const WHAT: &str = "msdb_stmt_column_double";
    with_stmt(stmt, WHAT, |_, st| {
        let v = number(st.cell(col, WHAT)?, WHAT, col)?;
        // SAFETY: caller contract.
        unsafe { put(out, v, "msdb_stmt_column_double: out")? };
        Ok(MSDB_OK)
    })
}

/// Column `col` of the current row as UTF-8 text (numbers rendered, JSON as JSON text;
/// NULL gives a NULL pointer and length 0). The text belongs to the statement: valid
/// until the next step, reset or finalize. `len` may be NULL; the text may contain NUL
/// bytes only if the stored text does (then use `len`).
///
/// # Safety
/// `out` is writable; `len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_stmt_column_text(
    stmt: *mut msdb_stmt,
    col: usize,
    out: *mut *const c_char,
    len: *mut usize,
) -> c_int {
    const WHAT: &str = "msdb_stmt_column_text";
    with_stmt(stmt, WHAT, |_, st| {
        let text = match st.cell(col, WHAT)? {
            Value::Null => None,
            Value::Integer(i) => Some(i.to_string()),
            Value::Real(r) => Some(r.to_string()),
            Value::Text(s) => Some(s.clone()),
            Value::Json(j) => Some(j.to_string()),
        };
        let (ptr, n) = match text {
            None => (std::ptr::null(), 0),
            Some(s) => {
                let n = s.len();
                let slot = &mut st.cells[col];
                let bytes = slot.get_or_insert_with(|| {
                    let mut b = s.into_bytes();
                    b.push(0);
                    b
                });
                (bytes.as_ptr().cast::<c_char>(), n)
            }
        };
        // SAFETY: caller contract.
        unsafe { put(out, ptr, "msdb_stmt_column_text: out")? };
        if !len.is_null() {
            // SAFETY: non-null and writable by the caller contract.
            unsafe { len.write_unaligned(n) };
        }
        Ok(MSDB_OK)
    })
}

/// Column `col` of the current row as floats: a vector column of `SELECT` (`tokens`: a
/// `rows × dim` row-major matrix; a pooled vector: `rows` 1). The floats are exactly the
/// stored (f32, or decoded f16 / codes) values and belong to the statement: valid until the
/// next step, reset or finalize. NULL gives a NULL pointer and 0 rows; a cell that is not a
/// vector (an array of numbers, or an array of equally long such arrays) is
/// `MSDB_INVALID_ARGUMENT`. `rows` and `dim` may be NULL.
///
/// # Safety
/// `out` is writable; `rows` and `dim` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_stmt_column_vector(
    stmt: *mut msdb_stmt,
    col: usize,
    out: *mut *const f32,
    rows: *mut usize,
    dim: *mut usize,
) -> c_int {
    const WHAT: &str = "msdb_stmt_column_vector";
    with_stmt(stmt, WHAT, |_, st| {
        let parsed = match st.cell(col, WHAT)? {
            Value::Null => None,
            Value::Json(j) => Some(json_floats(j).ok_or_else(|| {
                Error::invalid(format!("{WHAT}: column {col} is JSON but not a vector or matrix of numbers"))
            })?),
            Value::Text(t) => Some(
                serde_json::from_str::<serde_json::Value>(t)
                    .ok()
                    .as_ref()
                    .and_then(json_floats)
                    .ok_or_else(|| Error::invalid(format!("{WHAT}: column {col} is text, not a vector")))?,
            ),
            _ => return Err(Error::invalid(format!("{WHAT}: column {col} is a number, not a vector"))),
        };
        let (ptr, r, d) = match parsed {
            None => (std::ptr::null(), 0, 0),
            Some(v) => {
                let slot = st.vectors[col].get_or_insert(v);
                (slot.2.as_ptr(), slot.0, slot.1)
            }
        };
        // SAFETY: caller contract.
        unsafe { put(out, ptr, "msdb_stmt_column_vector: out")? };
        for (p, v) in [(rows, r), (dim, d)] {
            if !p.is_null() {
                // SAFETY: non-null and writable by the caller contract.
                unsafe { p.write_unaligned(v) };
            }
        }
        Ok(MSDB_OK)
    })
}

/// A JSON array of numbers (1 × n) or of equally long arrays of numbers (rows × dim).
fn json_floats(j: &serde_json::Value) -> Option<(usize, usize, Vec<f32>)> {
    let arr = j.as_array()?;
    let nums = |a: &[serde_json::Value]| {
        a.iter().map(|x| x.as_f64().map(|v| v as f32)).collect::<Option<Vec<f32>>>()
    };
    if arr.first().is_some_and(serde_json::Value::is_array) {
        let dim = arr[0].as_array()?.len();
        let mut out = Vec::with_capacity(arr.len() * dim);
        for row in arr {
            let r = row.as_array()?;
            if r.len() != dim {
                return None;
            }
            out.extend(nums(r)?);
        }
        Some((arr.len(), dim, out))
    } else {
        Some((1, arr.len(), nums(arr)?))
    }
}

/// The `score` column of the current row (a search's relevance score).
/// `MSDB_NOT_FOUND` if the result has no such column.
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_stmt_score(stmt: *mut msdb_stmt, out: *mut f64) -> c_int {
    const WHAT: &str = "msdb_stmt_score";
    with_stmt(stmt, WHAT, |_, st| {
        let col = st
            .result(WHAT)?
            .columns
            .iter()
            .position(|c| c == "score")
            .ok_or_else(|| Error::NotFound { kind: "column", name: "score".into() })?;
        let v = number(st.cell(col, WHAT)?, WHAT, col)?;
        // SAFETY: caller contract.
        unsafe { put(out, v, "msdb_stmt_score: out")? };
        Ok(MSDB_OK)
    })
}

/// The one-line summary of a statement that has run (`"inserted 3 documents"`), or
/// NULL if it has none. Valid until the statement is reset or finalized.
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_stmt_message(stmt: *mut msdb_stmt, out: *mut *const c_char) -> c_int {
    with_stmt(stmt, "msdb_stmt_message", |_, st| {
        st.result("msdb_stmt_message")?;
        let p = st.message.as_ref().map_or(std::ptr::null(), |m| m.as_ptr());
        // SAFETY: caller contract.
        unsafe { put(out, p, "msdb_stmt_message: out")? };
        Ok(MSDB_OK)
    })
}

/// The status of the last call on this statement. A NULL or finalized handle gives
/// `MSDB_MISUSE`.
#[no_mangle]
pub extern "C" fn msdb_stmt_errcode(stmt: *const msdb_stmt) -> c_int {
    match lookup_stmt(stmt, "msdb_stmt_errcode") {
        Ok(h) => lock(&h.st).err.code,
        Err(e) => status(&Err(e)),
    }
}

/// The message of the last failed call on this statement, or NULL; for a NULL or
/// finalized handle, the calling thread's last message. Free it with `msdb_free`.
#[no_mangle]
pub extern "C" fn msdb_stmt_errmsg(stmt: *const msdb_stmt) -> *mut c_char {
    match lookup_stmt(stmt, "msdb_stmt_errmsg") {
        Ok(h) => lock(&h.st).err.errmsg(),
        Err(_) => super::msdb_last_errmsg(),
    }
}
