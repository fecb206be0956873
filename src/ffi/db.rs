//! Database handles: open, close, execute, direct insert and search, flush.

use std::ffi::{c_char, c_int};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{
    alloc_string, lock, misuse, on_pool, opt_text, product, put, slice, status, text, LastError, MSDB_OK,
    REGISTRY,
};
use crate::sql::{parse_filter, Session};
use crate::{Database, DocId, Document, Error, Query, Result, SearchRequest, Value, MAX_LIMIT};

/// An open database (opaque). Any number of threads may call functions on one handle at
/// the same time; see the header's thread-safety notes.
pub struct msdb_db {
    _opaque: [u8; 0],
}

/// `msdb_open_options.flags`: open read-only (no write lock; any number of readers).
pub const MSDB_OPEN_READ_ONLY: u32 = 1;
/// `msdb_open_options.flags`: do not flush pending vectors into a segment at close.
pub const MSDB_OPEN_NO_FLUSH_ON_CLOSE: u32 = 2;
/// `msdb_open_options.flags`: create missing parent directories of a new database
/// (without it a missing parent is `MSDB_IO`, as SQLite refuses a path in no directory).
pub const MSDB_OPEN_CREATE_PARENTS: u32 = 4;

/// Options of `msdb_db_open`. A NULL pointer, or a struct with only `size` set, means the
/// defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct msdb_open_options {
    /// `sizeof(msdb_open_options)`: set it before the call (the library reads the fields that fit in it).
    pub size: usize,
    /// `MSDB_OPEN_*` flags, or 0.
    pub flags: u32,
    /// Pending token vectors that trigger an automatic flush; 0 = default (262,144).
    pub flush_threshold_tokens: u64,
    /// Milliseconds a segment file replaced by compaction stays for older snapshots;
    /// 0 = default (60,000).
    pub retire_grace_ms: u64,
}

/// `msdb_db_insert` flags: replace documents whose id exists instead of failing.
pub const MSDB_INSERT_UPSERT: u32 = 1;

/// One pooled vector of a document (`name` as declared by the collection).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct msdb_pooled {
    /// Name of the pooled vector (e.g. `"mean"`).
    pub name: *const c_char,
    /// `dim` floats.
    pub data: *const f32,
    /// Its dimension.
    pub dim: usize,
}

/// A document for `msdb_db_insert`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct msdb_doc {
    /// `sizeof(msdb_doc)`: set it before the call (the library reads the fields that fit in it).
    pub size: usize,
    /// Text id (NUL-terminated UTF-8), or NULL to use `int_id` (collections with INTEGER ids).
    pub id: *const c_char,
    /// Integer id, used when `id` is NULL.
    pub int_id: i64,
    /// Token vectors, row-major `n_tokens × dim`. NULL with `n_tokens` 0 for a collection
    /// that embeds its text columns itself (then `values_json` carries the text).
    pub tokens: *const f32,
    /// Number of token vectors.
    pub n_tokens: usize,
    /// Token dimension (must equal the collection's).
    pub dim: usize,
    /// `n_pooled` pooled vectors, or NULL.
    pub pooled: *const msdb_pooled,
    /// Number of pooled vectors.
    pub n_pooled: usize,
    /// Scalar columns as a JSON object (`{"year": 2020, "title": "…"}`), or NULL.
    pub values_json: *const c_char,
    /// Scalar columns as `n_values` typed values (no JSON to write), or NULL; may be
    /// given with `values_json` as long as no column appears in both.
    pub values: *const super::docs::msdb_value,
    /// Number of typed values.
    pub n_values: usize,
}

/// `msdb_query.kind`: late interaction (MaxSim) over the token vectors (the default).
pub const MSDB_QUERY_MAXSIM: u32 = 0;
/// `msdb_query.kind`: dot product with one pooled vector.
pub const MSDB_QUERY_DENSE: u32 = 1;
/// `msdb_query.kind`: BM25 over the full-text index (`text` only).
pub const MSDB_QUERY_BM25: u32 = 2;

/// A search for `msdb_db_search`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct msdb_query {
    /// `sizeof(msdb_query)`: set it before the call (the library reads the fields that fit in it).
    pub size: usize,
    /// `MSDB_QUERY_*`.
    pub kind: u32,
    /// Query vectors, row-major `n_vectors × dim` (MaxSim: the query's token vectors;
    /// dense: one vector). NULL to search by `text` instead.
    pub vectors: *const f32,
    /// Number of query vectors.
    pub n_vectors: usize,
    /// Their dimension (must equal the collection's).
    pub dim: usize,
    /// Query text, used when `vectors` is NULL: embedded with the collection's model
    /// (MaxSim, dense) or matched by BM25.
    pub text: *const c_char,
    /// Dense: the pooled vector to search; NULL = the collection's first.
    pub field: *const c_char,
    /// A filter in the language's WHERE syntax (`year >= 2020 AND lang = 'en'`), or NULL.
    pub filter: *const c_char,
    /// Scalar columns each hit carries in `msdb_hit.values_json`: comma-separated names
    /// (`"title,year"`), `"*"` for all, or NULL for none.
    pub columns: *const c_char,
}

/// One search result. `id` is allocated by the library: release the ids of a filled
/// array with `msdb_hits_free`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct msdb_hit {
    /// Score (MaxSim sum, dot product or BM25).
    pub score: f64,
    /// The id when the collection has INTEGER ids (else 0).
    pub int_id: i64,
    /// The id as text (integer ids in decimal).
    pub id: *mut c_char,
    /// The columns `msdb_query.columns` asked for, as a JSON object, or NULL when it asked
    /// for none. Released with the id by `msdb_hits_free`.
    pub values_json: *mut c_char,
}

/// What a `msdb_db *` token stands for.
pub(super) struct DbHandle {
    pub(super) session: Session,
    flush_on_close: bool,
    err: Mutex<LastError>,
    /// Documents changed by the last statement or direct write through this handle (or a
    /// statement prepared on it) that changes documents; `msdb_changes`.
    pub(super) changes: Arc<AtomicU64>,
}

impl DbHandle {
    fn new(db: Database, flush_on_close: bool) -> Self {
        Self {
            session: Session::new(db),
            flush_on_close,
            err: Mutex::new(LastError::default()),
            changes: Arc::new(AtomicU64::new(0)),
        }
    }

    pub(super) fn db(&self) -> &Database {
        self.session.database()
    }
}

fn register(h: DbHandle) -> *mut msdb_db {
    let mut reg = lock(&REGISTRY);
    let t = reg.token();
    reg.dbs.insert(t, Arc::new(h));
    t as *mut msdb_db
}

fn lookup_db(db: *const msdb_db, what: &str) -> Result<Arc<DbHandle>> {
    if db.is_null() {
        return Err(misuse(format!("{what}: the database handle is NULL")));
    }
    lock(&REGISTRY).dbs.get(&(db as usize)).cloned().ok_or_else(|| {
        misuse(format!("{what}: not an open database handle (closed already, or not from msdb_db_open)"))
    })
}

/// Run `f` on the handle `db`, recording the outcome as its last error.
pub(super) fn with_db(db: *const msdb_db, what: &str, f: impl FnOnce(&DbHandle) -> Result<c_int>) -> c_int {
    let h = match lookup_db(db, what) {
        Ok(h) => h,
        Err(e) => return status(&Err(e)),
    };
    let r = on_pool(what, || f(&h));
    let code = status(&r);
    lock(&h.err).set(code, r.as_ref().err());
    code
}

fn builder(path: &str, o: msdb_open_options) -> Result<crate::DatabaseBuilder> {
    if o.flags & !(MSDB_OPEN_READ_ONLY | MSDB_OPEN_NO_FLUSH_ON_CLOSE | MSDB_OPEN_CREATE_PARENTS) != 0 {
        return Err(Error::invalid(format!("unknown open flags {:#x}", o.flags)));
    }
    let mut b = Database::builder(path)
        .read_only(o.flags & MSDB_OPEN_READ_ONLY != 0)
        .create_parents(o.flags & MSDB_OPEN_CREATE_PARENTS != 0);
    if o.flush_threshold_tokens != 0 {
        b = b.flush_threshold_tokens(usize::try_from(o.flush_threshold_tokens).unwrap_or(usize::MAX));
    }
    if o.retire_grace_ms != 0 {
        b = b.retire_grace(Duration::from_millis(o.retire_grace_ms));
    }
    Ok(b.flush_on_close(o.flags & MSDB_OPEN_NO_FLUSH_ON_CLOSE == 0))
}

/// Open (creating if absent, unless read-only) the database directory `path`. Its parent
/// directory must exist (`MSDB_IO` otherwise) unless the flags hold
/// `MSDB_OPEN_CREATE_PARENTS`; an empty path is `MSDB_INVALID_ARGUMENT`.
///
/// On success `*out` is the new handle; on failure `*out` is NULL and, if `errmsg` is not
/// NULL, `*errmsg` is the message (free it with `msdb_free`; NULL on success).
///
/// # Safety
/// `path` is a NUL-terminated string; `options` is NULL or points to an options struct;
/// `out` is writable; `errmsg` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_db_open(
    path: *const c_char,
    options: *const msdb_open_options,
    out: *mut *mut msdb_db,
    errmsg: *mut *mut c_char,
) -> c_int {
    let r = on_pool("msdb_db_open", || {
        // SAFETY: caller contract.
        unsafe { put(out, std::ptr::null_mut(), "msdb_db_open: out")? };
        // SAFETY: caller contract.
        let path = unsafe { text(path, "msdb_db_open: path")? };
        let o = if options.is_null() {
            msdb_open_options::default()
        } else {
            // SAFETY: a valid options struct by the caller contract.
            unsafe { super::read_sized(options, "msdb_open_options")? }
        };
        let b = builder(path, o)?;
        let flush = o.flags & MSDB_OPEN_NO_FLUSH_ON_CLOSE == 0;
        let handle = register(DbHandle::new(b.open()?, flush));
        // SAFETY: checked writable above.
        unsafe { out.write_unaligned(handle) };
        Ok(MSDB_OK)
    });
    // SAFETY: caller contract for `errmsg`.
    unsafe { report_to(r, errmsg) }
}

/// The status of a call without a handle, its message also stored in `*errmsg` (NULL
/// on success) when `errmsg` is not NULL.
///
/// # Safety
/// `errmsg` is NULL or writable.
unsafe fn report_to(r: Result<c_int>, errmsg: *mut *mut c_char) -> c_int {
    let code = status(&r);
    if !errmsg.is_null() {
        let m = r.err().map_or(std::ptr::null_mut(), |e| alloc_string(&e.to_string()));
        // SAFETY: non-null and writable by the caller contract.
        unsafe { errmsg.write_unaligned(m) };
    }
    code
}

/// A second handle on the same open database, with its own last-error slot (give each
/// thread its own handle to read its own errors). Close each handle.
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_db_clone(db: *const msdb_db, out: *mut *mut msdb_db) -> c_int {
    with_db(db, "msdb_db_clone", |h| {
        let new = register(DbHandle::new(h.db().clone(), h.flush_on_close));
        // SAFETY: caller contract.
        unsafe { put(out, new, "msdb_db_clone: out") }.inspect_err(|_| {
            lock(&REGISTRY).dbs.remove(&(new as usize));
        })?;
        Ok(MSDB_OK)
    })
}

/// Close a handle: flush pending vectors (unless opened with
/// `MSDB_OPEN_NO_FLUSH_ON_CLOSE`) and release it. As `sqlite3_close`, a handle with live
/// statements (or cursors) prepared on it is not closed: the call returns `MSDB_BUSY`
/// naming how many, and the handle stays usable — finalize them first
/// (`msdb_db_finalize_statements` does all at once) or close with `msdb_db_close_v2`.
/// NULL is a no-op; a handle closed already is `MSDB_MISUSE`. The handle is released even
/// when the final flush fails (acknowledged writes are safe in the catalog and flushed at
/// the next open).
///
/// # Safety
/// None beyond passing a value obtained from this library (or NULL).
#[no_mangle]
pub unsafe extern "C" fn msdb_db_close(db: *mut msdb_db) -> c_int {
    if db.is_null() {
        return MSDB_OK;
    }
    let code = with_db(db, "msdb_db_close", |_| {
        let t = db as usize;
        let reg = lock(&REGISTRY);
        let stmts = reg.stmts.values().filter(|s| s.db_token == t).count();
        let cursors = reg.cursors.values().filter(|c| c.db_token == t).count();
        if stmts + cursors == 0 {
            return Ok(MSDB_OK);
        }
        Err(Error::Busy(format!(
            "msdb_db_close: {stmts} statement{} and {cursors} cursor{} are still open on this handle: finalize them (msdb_db_finalize_statements finalizes all), or close with msdb_db_close_v2",
            if stmts == 1 { "" } else { "s" },
            if cursors == 1 { "" } else { "s" },
        )))
    });
    if code != MSDB_OK {
        return code;
    }
    // SAFETY: forwarded.
    unsafe { msdb_db_close_v2(db) }
}

/// Close a handle even while statements or cursors prepared on it live (as
/// `sqlite3_close_v2`): the handle is released now; those statements and cursors stay
/// usable until finalized, and the database itself is released (flushed, unless opened
/// with `MSDB_OPEN_NO_FLUSH_ON_CLOSE`) when the last handle and statement on it are gone.
/// NULL is a no-op; a handle closed already is `MSDB_MISUSE`.
///
/// # Safety
/// None beyond passing a value obtained from this library (or NULL).
#[no_mangle]
pub unsafe extern "C" fn msdb_db_close_v2(db: *mut msdb_db) -> c_int {
    if db.is_null() {
        return MSDB_OK;
    }
    let h = match lock(&REGISTRY).dbs.remove(&(db as usize)) {
        Some(h) => h,
        None => return status(&Err(misuse("msdb_db_close: not an open database handle (closed twice?)"))),
    };
    status(&on_pool("msdb_db_close", || {
        if h.flush_on_close {
            h.db().clone().close()?;
        }
        Ok(MSDB_OK)
    }))
}

/// Finalize every statement and free every cursor prepared on this handle (documents
/// read through them stay valid until freed); `*n` (may be NULL) = how many. Their
/// handles become invalid (`MSDB_MISUSE`), as after `msdb_stmt_finalize`.
///
/// # Safety
/// `n` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_db_finalize_statements(db: *mut msdb_db, n: *mut usize) -> c_int {
    with_db(db, "msdb_db_finalize_statements", |_| {
        let t = db as usize;
        let mut reg = lock(&REGISTRY);
        let before = reg.stmts.len() + reg.cursors.len();
        reg.stmts.retain(|_, s| s.db_token != t);
        reg.cursors.retain(|_, c| c.db_token != t);
        let done = before - reg.stmts.len() - reg.cursors.len();
        drop(reg);
        if !n.is_null() {
            // SAFETY: non-null and writable by the caller contract.
            unsafe { n.write_unaligned(done) };
        }
        Ok(MSDB_OK)
    })
}

/// The status of the last call on this handle (`MSDB_OK` if it succeeded). A NULL or
/// closed handle gives `MSDB_MISUSE`.
#[no_mangle]
pub extern "C" fn msdb_db_errcode(db: *const msdb_db) -> c_int {
    match lookup_db(db, "msdb_db_errcode") {
        Ok(h) => lock(&h.err).code,
        Err(e) => status(&Err(e)),
    }
}

/// The message of the last failed call on this handle, or NULL if it succeeded; for a
/// NULL or closed handle, the calling thread's last message. Free it with `msdb_free`.
#[no_mangle]
pub extern "C" fn msdb_db_errmsg(db: *const msdb_db) -> *mut c_char {
    match lookup_db(db, "msdb_db_errmsg") {
        Ok(h) => lock(&h.err).errmsg(),
        Err(_) => super::msdb_last_errmsg(),
    }
}

/// The message of the last failed call on this handle, lent as `sqlite3_errmsg` lends
/// it: do not free it; it stays valid until the next call on this handle (from any
/// thread) or its close. NULL if that call succeeded; for a NULL or closed handle, the
/// calling thread's last message (valid until the thread's next call).
#[no_mangle]
pub extern "C" fn msdb_errmsg(db: *const msdb_db) -> *const c_char {
    match lookup_db(db, "msdb_errmsg") {
        // The message lives in the handle, which the registry keeps alive until close.
        Ok(h) => lock(&h.err).borrowed(),
        Err(_) => super::msdb_last_errmsg_ref(),
    }
}

/// Run one or more statements of the SQL-like language (separated by `;`), discarding
/// their rows; stops at the first error (earlier statements stay done). Use a prepared
/// statement to read results.
///
/// # Safety
/// `sql` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn msdb_db_exec(db: *mut msdb_db, sql: *const c_char) -> c_int {
    with_db(db, "msdb_db_exec", |h| {
        // SAFETY: caller contract.
        let sql = unsafe { text(sql, "msdb_db_exec: sql")? };
        h.session.execute_with(sql, &[], &mut |_, _| {}, &mut |r| {
            if let Some(n) = r.changes {
                h.changes.store(n, Ordering::SeqCst);
            }
        })?;
        Ok(MSDB_OK)
    })
}

/// `*out` = the documents changed (inserted, replaced, updated, deleted, imported) by the
/// most recent statement or direct write through this handle, or a statement prepared on
/// it, that changes documents (0 before any). Like `sqlite3_changes`, it does not touch
/// the handle's last error.
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_changes(db: *const msdb_db, out: *mut u64) -> c_int {
    let r = lookup_db(db, "msdb_changes").and_then(|h| {
        // SAFETY: caller contract.
        unsafe { put(out, h.changes.load(Ordering::SeqCst), "msdb_changes: out") }?;
        Ok(MSDB_OK)
    });
    status(&r)
}

/// Ask the long operation running on this database (an IMPORT, a CREATE INDEX, a BACKUP,
/// an EXPORT — through any handle or statement on it) to stop at its next batch boundary; it then returns
/// `MSDB_INTERRUPTED`, keeping what it committed (its message says how to finish). Like
/// `sqlite3_interrupt`: callable from any thread, does nothing when nothing long runs,
/// and does not touch the handle's last error.
#[no_mangle]
pub extern "C" fn msdb_interrupt(db: *const msdb_db) -> c_int {
    let r = lookup_db(db, "msdb_interrupt").map(|h| {
        h.db().interrupt();
        MSDB_OK
    });
    status(&r)
}

/// `*out` = the number of live documents of `collection` that match `filter` (the
/// language's WHERE syntax, `year >= 2020`; NULL: all of them).
///
/// # Safety
/// `collection` is a NUL-terminated string; `filter` is NULL or one; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_db_count(
    db: *mut msdb_db,
    collection: *const c_char,
    filter: *const c_char,
    out: *mut u64,
) -> c_int {
    with_db(db, "msdb_db_count", |h| {
        // SAFETY: caller contract.
        let coll = unsafe { text(collection, "msdb_db_count: collection")? };
        // SAFETY: caller contract.
        let filter = unsafe { opt_text(filter, "msdb_db_count: filter")? }.map(parse_filter).transpose()?;
        let n = h.db().count(coll, filter.as_ref())?;
        // SAFETY: caller contract.
        unsafe { put(out, n, "msdb_db_count: out") }?;
        Ok(MSDB_OK)
    })
}

/// Flush the pending vectors of `collection` (NULL: of every collection) into segments.
///
/// # Safety
/// `collection` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn msdb_db_flush(db: *mut msdb_db, collection: *const c_char) -> c_int {
    with_db(db, "msdb_db_flush", |h| {
        // SAFETY: caller contract.
        match unsafe { opt_text(collection, "msdb_db_flush: collection")? } {
            Some(c) => {
                h.db().flush(c)?;
            }
            None => {
                for spec in h.db().collections()? {
                    h.db().flush(&spec.name)?;
                }
            }
        }
        Ok(MSDB_OK)
    })
}

/// Read one C document.
///
/// # Safety
/// The pointers inside `d` follow `msdb_doc`'s documentation.
unsafe fn document(d: &msdb_doc, i: usize, spec: &crate::CollectionSpec) -> Result<Document> {
    let what = |f: &str| format!("msdb_db_insert: docs[{i}].{f}");
    // SAFETY: caller contract for every pointer below.
    let id = unsafe {
        super::docs::doc_id(&super::docs::msdb_id { id: d.id, int_id: d.int_id }, spec.id_type, &what("id"))?
    };
    if d.n_tokens > 0 && d.dim != spec.vectors.token_dim {
        return Err(Error::DimensionMismatch {
            what: what("dim"),
            expected: spec.vectors.token_dim,
            got: d.dim,
        });
    }
    let n = product(d.n_tokens, d.dim, &what("tokens"))?;
    // SAFETY: caller contract.
    let mut doc = Document::new(id).tokens(unsafe { slice(d.tokens, n, &what("tokens"))? }.to_vec());
    // SAFETY: caller contract.
    for (j, p) in unsafe { slice(d.pooled, d.n_pooled, &what("pooled"))? }.iter().enumerate() {
        let w = what(&format!("pooled[{j}]"));
        // SAFETY: caller contract.
        let name = unsafe { text(p.name, &format!("{w}.name"))? };
        // SAFETY: caller contract.
        doc = doc.pooled(name, unsafe { slice(p.data, p.dim, &format!("{w}.data"))? }.to_vec());
    }
    // SAFETY: caller contract.
    if let Some(json) = unsafe { opt_text(d.values_json, &what("values_json"))? } {
        let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)
            .map_err(|e| Error::invalid(format!("{}: expected a JSON object: {e}", what("values_json"))))?;
        for (k, v) in obj {
            let v = crate::sql::json_value(spec, &k, v);
            doc.values.push((k, v));
        }
    }
    // SAFETY: caller contract.
    for (k, v) in unsafe { super::docs::typed_values(d.values, d.n_values, &what("values"))? } {
        if doc.values.iter().any(|(n, _)| *n == k) {
            return Err(Error::invalid(format!("{}: column '{k}' is also in values_json", what("values"))));
        }
        doc.values.push((k, v));
    }
    Ok(doc)
}

/// Insert `n` documents into `collection` in one transaction (all or none).
/// `flags`: 0, or `MSDB_INSERT_UPSERT` to replace documents whose id exists. Documents
/// without token vectors in a collection that embeds text are embedded from their text
/// columns.
///
/// # Safety
/// `collection` is a NUL-terminated string; `docs` points to `n` documents whose
/// pointers follow `msdb_doc`'s documentation.
#[no_mangle]
pub unsafe extern "C" fn msdb_db_insert(
    db: *mut msdb_db,
    collection: *const c_char,
    docs: *const msdb_doc,
    n: usize,
    flags: u32,
) -> c_int {
    with_db(db, "msdb_db_insert", |h| {
        // SAFETY: caller contract.
        let coll = unsafe { text(collection, "msdb_db_insert: collection")? };
        // SAFETY: caller contract.
        let raw = unsafe { super::read_sized_array(docs, n, "msdb_db_insert: docs")? };
        if flags & !MSDB_INSERT_UPSERT != 0 {
            return Err(Error::invalid(format!("msdb_db_insert: unknown flags {flags:#x}")));
        }
        let spec = h.db().describe(coll)?;
        // SAFETY: caller contract.
        let docs = raw
            .iter()
            .enumerate()
            .map(|(i, d)| unsafe { document(d, i, &spec) })
            .collect::<Result<Vec<_>>>()?;
        let upsert = flags & MSDB_INSERT_UPSERT != 0;
        if spec.embedding.is_some() && !docs.is_empty() && docs.iter().all(|d| d.tokens.is_empty()) {
            insert_text(h.db(), coll, &docs, upsert)?;
        } else if upsert {
            h.db().upsert(coll, &docs)?;
        } else {
            h.db().insert(coll, &docs)?;
        }
        h.changes.store(docs.len() as u64, Ordering::SeqCst);
        Ok(MSDB_OK)
    })
}

#[cfg(feature = "embed")]
fn insert_text(db: &Database, coll: &str, docs: &[Document], upsert: bool) -> Result<()> {
    if upsert {
        db.upsert_text(coll, docs)
    } else {
        db.insert_text(coll, docs)
    }
}

#[cfg(not(feature = "embed"))]
fn insert_text(_: &Database, _: &str, _: &[Document], _: bool) -> Result<()> {
    Err(Error::NotAvailable("embedding text needs the `embed` cargo feature".into()))
}

/// The request a C query stands for.
///
/// # Safety
/// The pointers inside `q` follow `msdb_query`'s documentation.
unsafe fn request(q: &msdb_query, spec: &crate::CollectionSpec, limit: usize) -> Result<SearchRequest> {
    // SAFETY: caller contract (each helper checks NULL).
    let (text_q, field, filter) = unsafe {
        (
            opt_text(q.text, "msdb_query.text")?,
            opt_text(q.field, "msdb_query.field")?,
            opt_text(q.filter, "msdb_query.filter")?,
        )
    };
    let vectors = if q.vectors.is_null() {
        None
    } else {
        if q.dim != spec.vectors.token_dim && q.kind == MSDB_QUERY_MAXSIM {
            return Err(Error::DimensionMismatch {
                what: "msdb_query.dim".into(),
                expected: spec.vectors.token_dim,
                got: q.dim,
            });
        }
        if q.n_vectors == 0 {
            return Err(Error::invalid("msdb_query.n_vectors is 0: give at least one query vector"));
        }
        if q.kind == MSDB_QUERY_DENSE && q.n_vectors != 1 {
            return Err(Error::invalid(format!(
                "msdb_query.n_vectors is {}: a dense query takes exactly one vector",
                q.n_vectors
            )));
        }
        let n = product(q.n_vectors, q.dim, "msdb_query.vectors")?;
        // SAFETY: caller contract.
        Some(unsafe { slice(q.vectors, n, "msdb_query.vectors")? }.to_vec())
    };
    let field = || -> Result<String> {
        field.map(str::to_string).or_else(|| spec.vectors.pooled.first().map(|p| p.name.clone())).ok_or_else(
            || {
                Error::invalid(format!(
                    "collection '{}' stores no pooled vector for a dense query",
                    spec.name
                ))
            },
        )
    };
    let need_text =
        || text_q.map(str::to_string).ok_or_else(|| misuse("msdb_query: both vectors and text are NULL"));
    let query = match (q.kind, vectors) {
        (MSDB_QUERY_MAXSIM, Some(tokens)) => Query::MaxSim { tokens, mask: None },
        (MSDB_QUERY_MAXSIM, None) => Query::MaxSimText { text: need_text()? },
        (MSDB_QUERY_DENSE, Some(vector)) => Query::Dense { field: field()?, vector },
        (MSDB_QUERY_DENSE, None) => Query::DenseText { field: field()?, text: need_text()? },
        (MSDB_QUERY_BM25, None) => Query::Bm25 { text: need_text()? },
        (MSDB_QUERY_BM25, Some(_)) => {
            return Err(Error::invalid("msdb_query: a BM25 query takes text, not vectors"))
        }
        (k, _) => return Err(Error::invalid(format!("msdb_query.kind: unknown kind {k}"))),
    };
    let mut req = SearchRequest::new(query).limit(limit);
    if let Some(f) = filter {
        req = req.filter(parse_filter(f)?);
    }
    Ok(req)
}

/// Search `collection`: the best `capacity` hits (at most 10,000) go into `hits`, best
/// first, and `*n_hits` is how many were written. Release the hits' ids with
/// `msdb_hits_free(hits, *n_hits)`.
///
/// # Safety
/// `collection` is a NUL-terminated string; `query` points to a query whose pointers
/// follow `msdb_query`'s documentation; `hits` has room for `capacity` hits; `n_hits` is
/// writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_db_search(
    db: *mut msdb_db,
    collection: *const c_char,
    query: *const msdb_query,
    hits: *mut msdb_hit,
    capacity: usize,
    n_hits: *mut usize,
) -> c_int {
    with_db(db, "msdb_db_search", |h| {
        // SAFETY: caller contract.
        unsafe { put(n_hits, 0, "msdb_db_search: n_hits")? };
        // SAFETY: caller contract.
        let coll = unsafe { text(collection, "msdb_db_search: collection")? };
        if query.is_null() || hits.is_null() {
            return Err(misuse("msdb_db_search: query or hits is NULL"));
        }
        if capacity == 0 || capacity > MAX_LIMIT {
            return Err(Error::invalid(format!(
                "msdb_db_search: capacity must be 1..={MAX_LIMIT}, got {capacity}"
            )));
        }
        let spec = h.db().describe(coll)?;
        // SAFETY: non-null; the caller guarantees a valid query.
        let q = unsafe { super::read_sized(query, "msdb_query")? };
        // SAFETY: caller contract for the query's pointers.
        let req = unsafe { request(&q, &spec, capacity)? };
        // SAFETY: caller contract.
        let columns = match unsafe { opt_text(q.columns, "msdb_query.columns")? } {
            None => None,
            Some(c) if c.trim() == "*" => {
                Some(spec.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>())
            }
            Some(c) => Some(
                c.split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| {
                        spec.columns
                            .iter()
                            .find(|d| d.name.eq_ignore_ascii_case(c))
                            .map(|d| d.name.clone())
                            .ok_or_else(|| Error::NotFound {
                                kind: "column",
                                name: format!("{c} (msdb_query.columns)"),
                            })
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        let found = h.db().search(coll, &req)?;
        for (i, hit) in found.iter().take(capacity).enumerate() {
            let int_id = match hit.id {
                DocId::Int(v) => v,
                DocId::Text(_) => 0,
            };
            let values_json = columns.as_ref().map_or(std::ptr::null_mut(), |cols| {
                let obj: serde_json::Map<String, serde_json::Value> = cols
                    .iter()
                    .map(|c| {
                        let v = hit.values.iter().find(|(k, _)| k == c).map_or(&Value::Null, |(_, v)| v);
                        (c.clone(), super::docs::value_json(v))
                    })
                    .collect();
                alloc_string(&serde_json::Value::Object(obj).to_string())
            });
            let out = msdb_hit {
                score: f64::from(hit.score),
                int_id,
                id: alloc_string(&hit.id.to_string()),
                values_json,
            };
            // SAFETY: `hits` has room for `capacity` elements and i < capacity.
            unsafe { hits.add(i).write_unaligned(out) };
        }
        // SAFETY: checked writable above.
        unsafe { n_hits.write_unaligned(found.len().min(capacity)) };
        Ok(MSDB_OK)
    })
}

/// Free the ids (and `values_json`) of `n` hits filled by `msdb_db_search` and set them to
/// NULL (the array itself is the caller's). NULL `hits` is a no-op.
///
/// # Safety
/// `hits` is NULL or points to `n` hits filled by `msdb_db_search` (or with NULL ids).
#[no_mangle]
pub unsafe extern "C" fn msdb_hits_free(hits: *mut msdb_hit, n: usize) {
    if hits.is_null() {
        return;
    }
    for i in 0..n {
        // SAFETY: the caller guarantees `n` hits at `hits`.
        let h = unsafe { &mut *hits.add(i) };
        // SAFETY: ids come from `alloc_string` (or are NULL, a no-op).
        unsafe { super::msdb_free(h.id) };
        // SAFETY: as above (`alloc_string` or NULL).
        unsafe { super::msdb_free(h.values_json) };
        h.id = std::ptr::null_mut();
        h.values_json = std::ptr::null_mut();
    }
}

/// The value a bound float vector becomes: its JSON text, as the language takes vectors.
pub(super) fn vector_json(v: &[f32], rows: Option<usize>) -> Result<Value> {
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::invalid(format!("component {i} of the vector is {} (only finite values)", v[i])));
    }
    let json = match rows {
        None => serde_json::to_string(v)?,
        Some(r) => {
            let dim = v.len().checked_div(r).unwrap_or(0);
            serde_json::to_string(&v.chunks(dim.max(1)).collect::<Vec<_>>())?
        }
    };
    Ok(Value::Text(json))
}

/// Write a consistent snapshot of the open database into the new zstd archive `path`
/// (`BACKUP TO`), while other threads and processes keep reading and writing.
///
/// # Safety
/// `path` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn msdb_db_backup(db: *mut msdb_db, path: *const c_char) -> c_int {
    with_db(db, "msdb_db_backup", |h| {
        // SAFETY: caller contract.
        let path = unsafe { text(path, "msdb_db_backup: path")? };
        h.db().backup(path, |_, _| {})?;
        Ok(MSDB_OK)
    })
}

/// Restore the archive `archive` into the new directory `dir` (`RESTORE FROM … INTO`),
/// verifying every checksum before the directory appears. No handle is needed; the
/// message of a failure goes to `*errmsg` when `errmsg` is not NULL (free it with
/// `msdb_free`) and to `msdb_last_errmsg`.
///
/// # Safety
/// `archive` and `dir` are NUL-terminated strings; `errmsg` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_restore(
    archive: *const c_char,
    dir: *const c_char,
    errmsg: *mut *mut c_char,
) -> c_int {
    let r = on_pool("msdb_restore", || {
        // SAFETY: caller contract.
        let (archive, dir) =
            unsafe { (text(archive, "msdb_restore: archive")?, text(dir, "msdb_restore: dir")?) };
        Database::restore(archive, dir, |_, _| {})?;
        Ok(MSDB_OK)
    });
    // SAFETY: caller contract for `errmsg`.
    unsafe { report_to(r, errmsg) }
}

// SAFETY: repr(C), starts with its usize size, valid when zeroed (pointers NULL, numbers 0).
unsafe impl super::SizedStruct for msdb_open_options {}

// SAFETY: repr(C), starts with its usize size, valid when zeroed (pointers NULL, numbers 0).
unsafe impl super::SizedStruct for msdb_doc {}

// SAFETY: repr(C), starts with its usize size, valid when zeroed (pointers NULL, numbers 0).
unsafe impl super::SizedStruct for msdb_query {}
