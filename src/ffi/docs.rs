//! Documents through the C API: typed scalar values, reading documents back (by id or by
//! iterating a collection), and the direct calls for what the Rust API does besides insert
//! and search (create / drop a collection from a spec struct, delete, update, compact,
//! statistics).

use std::ffi::{c_char, c_int, CString};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::db::{msdb_db, with_db, DbHandle};
use super::stmt::{MSDB_TYPE_INTEGER, MSDB_TYPE_JSON, MSDB_TYPE_NULL, MSDB_TYPE_REAL, MSDB_TYPE_TEXT};
use super::{
    guarded, lock, misuse, opt_text, put, slice, status, text, MSDB_DONE, MSDB_OK, MSDB_ROW, REGISTRY,
};
use crate::sql::parse_filter;
use crate::{
    CollectionSpec, ColumnType, DocId, EmbeddingSpec, Error, IdType, ListRequest, Result, StoredDocument,
    Value, VectorSpec,
};

/// A typed scalar value of one column: in `msdb_doc.values` and `msdb_db_update` (the
/// caller's strings, copied during the call), and as read from a document by
/// `msdb_document_value` (the document's strings, lent until `msdb_document_free`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct msdb_value {
    /// Column name (NUL-terminated UTF-8).
    pub name: *const c_char,
    /// `MSDB_TYPE_NULL`, `_INTEGER`, `_REAL`, `_TEXT` or `_JSON`.
    pub kind: c_int,
    /// The value of an INTEGER.
    pub int_value: i64,
    /// The value of a REAL (finite).
    pub real_value: f64,
    /// TEXT, or the JSON text of a JSON value (NUL-terminated UTF-8); NULL otherwise.
    pub text: *const c_char,
}

/// A document id: text, or an integer when `id` is NULL.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct msdb_id {
    /// Text id (NUL-terminated UTF-8), or NULL to use `int_id`.
    pub id: *const c_char,
    /// Integer id, used when `id` is NULL.
    pub int_id: i64,
}

/// A column of `msdb_collection_spec`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct msdb_column_def {
    /// Column name.
    pub name: *const c_char,
    /// `MSDB_TYPE_INTEGER`, `_REAL`, `_TEXT` or `_JSON`.
    pub kind: c_int,
}

/// A pooled vector of `msdb_collection_spec`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct msdb_pooled_def {
    /// Its name (a pooling operator's name, e.g. `"mean"`, for a collection with a model).
    pub name: *const c_char,
    /// Its dimension (0 with a model: taken from the model).
    pub dim: usize,
}

/// `msdb_collection_spec.flags`: documents have INTEGER ids (default: TEXT).
pub const MSDB_SPEC_INTEGER_IDS: u32 = 1;

/// A collection for `msdb_db_create_collection` (what `CREATE COLLECTION` declares).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct msdb_collection_spec {
    /// `sizeof(msdb_collection_spec)`: set it before the call (the library reads the fields that fit in it).
    pub size: usize,
    /// Collection name.
    pub name: *const c_char,
    /// Token vector dimension (0 with a model: taken from the model).
    pub token_dim: usize,
    /// Token storage: NULL or `"f16"` (default), `"f32"`, `"plaid4"`, `"plaid2"`, `"plaid1"`.
    pub tokens: *const c_char,
    /// `n_pooled` pooled vectors, or NULL.
    pub pooled: *const msdb_pooled_def,
    /// Number of pooled vectors.
    pub n_pooled: usize,
    /// `n_columns` scalar columns, or NULL.
    pub columns: *const msdb_column_def,
    /// Number of columns.
    pub n_columns: usize,
    /// `MSDB_SPEC_*` flags, or 0.
    pub flags: u32,
    /// Embedding model (folder path or cached name), or NULL for your own vectors.
    pub model: *const c_char,
    /// With a model: the text columns it embeds, comma-separated (`"title,abstract"`).
    pub embed_columns: *const c_char,
    /// Recall target of approximate plans (0: the default, 0.95).
    pub recall: f64,
}

/// Statistics of a collection (`msdb_db_stats`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct msdb_stats {
    /// Live documents.
    pub docs: u64,
    /// Documents whose vectors are not yet in a segment.
    pub pending_docs: u64,
    /// Pending token vectors.
    pub pending_tokens: u64,
    /// Segment files.
    pub segments: u64,
    /// Token vectors in segments (deleted rows not yet compacted included).
    pub segment_tokens: u64,
    /// Deleted rows still in segments.
    pub tombstones: u64,
    /// Bytes of segment files.
    pub segment_bytes: u64,
    /// Bytes of every index's files.
    pub index_bytes: u64,
    /// Bytes of the catalog file (shared by all collections).
    pub catalog_bytes: u64,
}

/// A document read back (opaque): `msdb_db_get`, `msdb_cursor_next`. Release it with
/// `msdb_document_free`; everything its accessors lend stays valid until then.
pub struct msdb_document {
    _opaque: [u8; 0],
}

/// An iteration over a collection's documents (opaque): `msdb_db_scan`.
pub struct msdb_cursor {
    _opaque: [u8; 0],
}

/// What a `msdb_document *` stands for: the document and NUL-terminated copies of its
/// strings.
pub(super) struct DocData {
    id: CString,
    int_id: i64,
    token_dim: usize,
    doc: StoredDocument,
    names: Vec<CString>,
    texts: Vec<Option<CString>>,
    pooled_names: Vec<CString>,
    json: CString,
}

/// What a `msdb_cursor *` stands for: the matching ids (a snapshot taken by
/// `msdb_db_scan`) and the next position.
pub(super) struct CursorData {
    /// The token of the database handle it was opened on.
    pub(super) db_token: usize,
    db: Arc<DbHandle>,
    collection: String,
    ids: Vec<DocId>,
    next: Mutex<usize>,
}

fn cstring(s: &str) -> CString {
    super::nul_terminated(s).unwrap_or_default()
}

fn doc_data(doc: StoredDocument, token_dim: usize) -> DocData {
    let (id, int_id) = match &doc.id {
        DocId::Int(i) => (cstring(&i.to_string()), *i),
        DocId::Text(t) => (cstring(t), 0),
    };
    let texts = doc
        .values
        .iter()
        .map(|(_, v)| match v {
            Value::Text(t) => Some(cstring(t)),
            Value::Json(j) => Some(cstring(&j.to_string())),
            _ => None,
        })
        .collect();
    let obj: serde_json::Map<String, serde_json::Value> =
        doc.values.iter().map(|(k, v)| (k.clone(), value_json(v))).collect();
    DocData {
        id,
        int_id,
        token_dim,
        names: doc.values.iter().map(|(k, _)| cstring(k)).collect(),
        texts,
        pooled_names: doc.pooled.iter().map(|(k, _)| cstring(k)).collect(),
        json: cstring(&serde_json::Value::Object(obj).to_string()),
        doc,
    }
}

pub(super) fn value_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Real(r) => serde_json::Value::from(*r),
        Value::Text(t) => serde_json::Value::from(t.as_str()),
        Value::Json(j) => j.clone(),
    }
}

fn register_doc(d: DocData) -> *mut msdb_document {
    let mut reg = lock(&REGISTRY);
    let t = reg.token();
    reg.docs.insert(t, Arc::new(d));
    t as *mut msdb_document
}

/// Run `f` on the document handle `doc` (errors go to the thread's last error).
fn with_doc(doc: *const msdb_document, what: &str, f: impl FnOnce(&DocData) -> Result<c_int>) -> c_int {
    let r = guarded(what, || {
        let d = lock(&REGISTRY).docs.get(&(doc as usize)).cloned().ok_or_else(|| {
            misuse(format!("{what}: not a document handle (NULL, freed already, or not from this library)"))
        })?;
        f(&d)
    });
    status(&r)
}

/// A C id.
///
/// # Safety
/// The pointers inside `id` follow `msdb_id`'s documentation.
pub(super) unsafe fn doc_id(id: &msdb_id, id_type: IdType, what: &str) -> Result<DocId> {
    // SAFETY: caller contract.
    Ok(match unsafe { opt_text(id.id, what)? } {
        Some(s) if id_type == IdType::Integer => {
            DocId::Int(s.parse().map_err(|_| Error::invalid(format!("{what}: '{s}' is not an integer id")))?)
        }
        Some(s) => DocId::Text(s.to_string()),
        None => DocId::Int(id.int_id),
    })
}

/// C typed values as `(column, value)` pairs.
///
/// # Safety
/// `values` is NULL (with `n` 0) or points to `n` values whose pointers follow
/// `msdb_value`'s documentation.
pub(super) unsafe fn typed_values(
    values: *const msdb_value,
    n: usize,
    what: &str,
) -> Result<Vec<(String, Value)>> {
    // SAFETY: caller contract.
    let raw = unsafe { slice(values, n, what)? };
    let mut out: Vec<(String, Value)> = Vec::with_capacity(raw.len());
    for (i, v) in raw.iter().enumerate() {
        let w = format!("{what}[{i}]");
        // SAFETY: caller contract.
        let name = unsafe { text(v.name, &format!("{w}.name"))? }.to_string();
        let value = match v.kind {
            MSDB_TYPE_NULL => Value::Null,
            MSDB_TYPE_INTEGER => Value::Integer(v.int_value),
            MSDB_TYPE_REAL if v.real_value.is_finite() => Value::Real(v.real_value),
            MSDB_TYPE_REAL => {
                return Err(Error::invalid(format!("{w}: REAL value {} (only finite values)", v.real_value)))
            }
            // SAFETY: caller contract.
            MSDB_TYPE_TEXT => Value::Text(unsafe { text(v.text, &format!("{w}.text"))? }.to_string()),
            MSDB_TYPE_JSON => {
                // SAFETY: caller contract.
                let t = unsafe { text(v.text, &format!("{w}.text"))? };
                Value::Json(
                    serde_json::from_str(t)
                        .map_err(|e| Error::invalid(format!("{w}: not valid JSON: {e}")))?,
                )
            }
            k => return Err(Error::invalid(format!("{w}.kind: unknown type {k} (use MSDB_TYPE_*)"))),
        };
        if out.iter().any(|(n, _)| *n == name) {
            return Err(Error::invalid(format!("{w}: column '{name}' is given twice")));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// Read document `id` (or `int_id` when `id` is NULL) of `collection`: `*out` is a new
/// document handle, or NULL with `MSDB_OK` when the collection has no such document.
/// Release it with `msdb_document_free`.
///
/// # Safety
/// `collection` is a NUL-terminated string; `id` is NULL or one; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_db_get(
    db: *mut msdb_db,
    collection: *const c_char,
    id: *const c_char,
    int_id: i64,
    out: *mut *mut msdb_document,
) -> c_int {
    with_db(db, "msdb_db_get", |h| {
        // SAFETY: caller contract.
        unsafe { put(out, std::ptr::null_mut(), "msdb_db_get: out")? };
        // SAFETY: caller contract.
        let coll = unsafe { text(collection, "msdb_db_get: collection")? };
        let spec = h.db().describe(coll)?;
        // SAFETY: caller contract.
        let id = unsafe { doc_id(&msdb_id { id, int_id }, spec.id_type, "msdb_db_get: id")? };
        if let Some(d) = h.db().get(coll, &id)? {
            // SAFETY: checked writable above.
            unsafe { out.write_unaligned(register_doc(doc_data(d, spec.vectors.token_dim))) };
        }
        Ok(MSDB_OK)
    })
}

/// The document's id: `*id` its text (integer ids in decimal; lent), `*int_id` the
/// integer id (0 for text ids). Either pointer may be NULL.
///
/// # Safety
/// `id` and `int_id` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_document_id(
    doc: *const msdb_document,
    id: *mut *const c_char,
    int_id: *mut i64,
) -> c_int {
    with_doc(doc, "msdb_document_id", |d| {
        if !id.is_null() {
            // SAFETY: non-null and writable by the caller contract.
            unsafe { id.write_unaligned(d.id.as_ptr()) };
        }
        if !int_id.is_null() {
            // SAFETY: as above.
            unsafe { int_id.write_unaligned(d.int_id) };
        }
        Ok(MSDB_OK)
    })
}

/// The token vectors: `*data` points to `*n_tokens × *dim` floats, row-major (lent; the
/// stored vectors as f32, decoded from f16 or codes). A document stored without vectors
/// has 0 tokens.
///
/// # Safety
/// `data`, `n_tokens` and `dim` are writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_document_tokens(
    doc: *const msdb_document,
    data: *mut *const f32,
    n_tokens: *mut usize,
    dim: *mut usize,
) -> c_int {
    with_doc(doc, "msdb_document_tokens", |d| {
        let n = d.doc.tokens.len().checked_div(d.token_dim).unwrap_or(0);
        // SAFETY: caller contract for the three out-pointers.
        unsafe {
            put(data, d.doc.tokens.as_ptr(), "msdb_document_tokens: data")?;
            put(n_tokens, n, "msdb_document_tokens: n_tokens")?;
            put(dim, d.token_dim, "msdb_document_tokens: dim")?;
        }
        Ok(MSDB_OK)
    })
}

/// `*out` = the number of pooled vectors (the collection's, in spec order).
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_document_pooled_count(doc: *const msdb_document, out: *mut usize) -> c_int {
    with_doc(doc, "msdb_document_pooled_count", |d| {
        // SAFETY: caller contract.
        unsafe { put(out, d.doc.pooled.len(), "msdb_document_pooled_count: out")? };
        Ok(MSDB_OK)
    })
}

/// Pooled vector `i` (from 0): its name, `*dim` floats at `*data` (both lent). `name` may
/// be NULL.
///
/// # Safety
/// `name` is NULL or writable; `data` and `dim` are writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_document_pooled(
    doc: *const msdb_document,
    i: usize,
    name: *mut *const c_char,
    data: *mut *const f32,
    dim: *mut usize,
) -> c_int {
    with_doc(doc, "msdb_document_pooled", |d| {
        let (_, v) = d.doc.pooled.get(i).ok_or_else(|| {
            Error::invalid(format!(
                "msdb_document_pooled: index {i}, but the document has {}",
                d.doc.pooled.len()
            ))
        })?;
        if !name.is_null() {
            // SAFETY: non-null and writable by the caller contract.
            unsafe { name.write_unaligned(d.pooled_names[i].as_ptr()) };
        }
        // SAFETY: caller contract.
        unsafe {
            put(data, v.as_ptr(), "msdb_document_pooled: data")?;
            put(dim, v.len(), "msdb_document_pooled: dim")?;
        }
        Ok(MSDB_OK)
    })
}

/// `*out` = the number of scalar columns (every column of the collection, in order).
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_document_value_count(doc: *const msdb_document, out: *mut usize) -> c_int {
    with_doc(doc, "msdb_document_value_count", |d| {
        // SAFETY: caller contract.
        unsafe { put(out, d.doc.values.len(), "msdb_document_value_count: out")? };
        Ok(MSDB_OK)
    })
}

/// Scalar column `i` (from 0) as a typed value; its `name` and `text` are lent.
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_document_value(
    doc: *const msdb_document,
    i: usize,
    out: *mut msdb_value,
) -> c_int {
    with_doc(doc, "msdb_document_value", |d| {
        let (_, v) = d.doc.values.get(i).ok_or_else(|| {
            Error::invalid(format!(
                "msdb_document_value: index {i}, but the document has {} columns",
                d.doc.values.len()
            ))
        })?;
        let mut val = msdb_value {
            name: d.names[i].as_ptr(),
            kind: MSDB_TYPE_NULL,
            int_value: 0,
            real_value: 0.0,
            text: d.texts[i].as_ref().map_or(std::ptr::null(), |t| t.as_ptr()),
        };
        match v {
            Value::Null => {}
            Value::Integer(x) => (val.kind, val.int_value) = (MSDB_TYPE_INTEGER, *x),
            Value::Real(x) => (val.kind, val.real_value) = (MSDB_TYPE_REAL, *x),
            Value::Text(_) => val.kind = MSDB_TYPE_TEXT,
            Value::Json(_) => val.kind = MSDB_TYPE_JSON,
        }
        // SAFETY: caller contract.
        unsafe { put(out, val, "msdb_document_value: out")? };
        Ok(MSDB_OK)
    })
}

/// The scalar columns as one JSON object (`{"year": 2020, "title": "…"}`; lent).
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_document_values_json(
    doc: *const msdb_document,
    out: *mut *const c_char,
) -> c_int {
    with_doc(doc, "msdb_document_values_json", |d| {
        // SAFETY: caller contract.
        unsafe { put(out, d.json.as_ptr(), "msdb_document_values_json: out")? };
        Ok(MSDB_OK)
    })
}

/// Release a document handle (and everything its accessors lent). NULL is a no-op;
/// freeing twice is `MSDB_MISUSE`.
#[no_mangle]
pub extern "C" fn msdb_document_free(doc: *mut msdb_document) -> c_int {
    if doc.is_null() {
        return MSDB_OK;
    }
    let r = guarded("msdb_document_free", || {
        lock(&REGISTRY).docs.remove(&(doc as usize)).map(|_| MSDB_OK).ok_or_else(|| {
            misuse("msdb_document_free: not a document handle (freed already, or not from this library)")
        })
    });
    status(&r)
}

/// Iterate the live documents of `collection` that match `filter` (the WHERE syntax;
/// NULL: all), in insertion order. The set of ids is taken now; documents deleted before
/// `msdb_cursor_next` reaches them are skipped, updates made meanwhile are seen. Release
/// the cursor with `msdb_cursor_free`.
///
/// # Safety
/// `collection` is a NUL-terminated string; `filter` is NULL or one; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_db_scan(
    db: *mut msdb_db,
    collection: *const c_char,
    filter: *const c_char,
    out: *mut *mut msdb_cursor,
) -> c_int {
    let handle = lock(&REGISTRY).dbs.get(&(db as usize)).cloned();
    let h_token = db as usize;
    with_db(db, "msdb_db_scan", |h| {
        // SAFETY: caller contract.
        unsafe { put(out, std::ptr::null_mut(), "msdb_db_scan: out")? };
        // SAFETY: caller contract.
        let coll = unsafe { text(collection, "msdb_db_scan: collection")? };
        let mut req = ListRequest::new();
        // SAFETY: caller contract.
        if let Some(f) = unsafe { opt_text(filter, "msdb_db_scan: filter")? } {
            req = req.filter(parse_filter(f)?);
        }
        let ids = h.db().list(coll, &req)?.into_iter().map(|hit| hit.id).collect();
        let db = handle.ok_or_else(|| misuse("msdb_db_scan: the database handle was closed"))?;
        let c = CursorData { db_token: h_token, db, collection: coll.to_string(), ids, next: Mutex::new(0) };
        let mut reg = lock(&REGISTRY);
        let t = reg.token();
        reg.cursors.insert(t, Arc::new(c));
        drop(reg);
        // SAFETY: checked writable above.
        unsafe { out.write_unaligned(t as *mut msdb_cursor) };
        Ok(MSDB_OK)
    })
}

/// The next document of a scan: `MSDB_ROW` with `*out` a new document handle (release it
/// with `msdb_document_free`), or `MSDB_DONE` with `*out` NULL at the end (again on every
/// further call).
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_cursor_next(cursor: *mut msdb_cursor, out: *mut *mut msdb_document) -> c_int {
    let r = super::on_pool("msdb_cursor_next", || {
        // SAFETY: caller contract.
        unsafe { put(out, std::ptr::null_mut(), "msdb_cursor_next: out")? };
        let c = lock(&REGISTRY).cursors.get(&(cursor as usize)).cloned().ok_or_else(|| {
            misuse("msdb_cursor_next: not a cursor (NULL, freed already, or not from msdb_db_scan)")
        })?;
        let db = c.db.db();
        let dim = db.describe(&c.collection)?.vectors.token_dim;
        let mut next = lock(&c.next);
        while let Some(id) = c.ids.get(*next) {
            *next += 1;
            if let Some(d) = db.get(&c.collection, id)? {
                // SAFETY: checked writable above.
                unsafe { out.write_unaligned(register_doc(doc_data(d, dim))) };
                return Ok(MSDB_ROW);
            }
        }
        Ok(MSDB_DONE)
    });
    status(&r)
}

/// Release a cursor. NULL is a no-op; freeing twice is `MSDB_MISUSE`. Documents it
/// returned stay valid until they are freed.
#[no_mangle]
pub extern "C" fn msdb_cursor_free(cursor: *mut msdb_cursor) -> c_int {
    if cursor.is_null() {
        return MSDB_OK;
    }
    let r =
        guarded("msdb_cursor_free", || {
            lock(&REGISTRY).cursors.remove(&(cursor as usize)).map(|_| MSDB_OK).ok_or_else(|| {
                misuse("msdb_cursor_free: not a cursor (freed already, or not from msdb_db_scan)")
            })
        });
    status(&r)
}

/// The Rust spec a C spec stands for.
///
/// # Safety
/// The pointers inside `s` follow `msdb_collection_spec`'s documentation.
unsafe fn collection_spec(s: &msdb_collection_spec) -> Result<CollectionSpec> {
    const W: &str = "msdb_collection_spec";
    if s.flags & !MSDB_SPEC_INTEGER_IDS != 0 {
        return Err(Error::invalid(format!("{W}.flags: unknown flags {:#x}", s.flags)));
    }
    // SAFETY: caller contract for every pointer below.
    let name = unsafe { text(s.name, &format!("{W}.name"))? };
    let mut vectors = VectorSpec::new(s.token_dim);
    // SAFETY: as above.
    if let Some(t) = unsafe { opt_text(s.tokens, &format!("{W}.tokens"))? } {
        vectors = vectors.with_token_storage(t)?;
    }
    // SAFETY: as above.
    for (i, p) in unsafe { slice(s.pooled, s.n_pooled, &format!("{W}.pooled"))? }.iter().enumerate() {
        // SAFETY: as above.
        vectors = vectors.pooled(unsafe { text(p.name, &format!("{W}.pooled[{i}].name"))? }, p.dim);
    }
    let mut spec = CollectionSpec::new(name, vectors);
    // SAFETY: as above.
    for (i, c) in unsafe { slice(s.columns, s.n_columns, &format!("{W}.columns"))? }.iter().enumerate() {
        let w = format!("{W}.columns[{i}]");
        let ty = match c.kind {
            MSDB_TYPE_INTEGER => ColumnType::Integer,
            MSDB_TYPE_REAL => ColumnType::Real,
            MSDB_TYPE_TEXT => ColumnType::Text,
            MSDB_TYPE_JSON => ColumnType::Json,
            k => {
                return Err(Error::invalid(format!(
                    "{w}.kind: {k} is not a column type (MSDB_TYPE_INTEGER, _REAL, _TEXT or _JSON)"
                )))
            }
        };
        // SAFETY: as above.
        spec = spec.column(unsafe { text(c.name, &format!("{w}.name"))? }, ty);
    }
    if s.flags & MSDB_SPEC_INTEGER_IDS != 0 {
        spec = spec.id_type(IdType::Integer);
    }
    // SAFETY: as above.
    let (model, embed) = unsafe {
        (opt_text(s.model, &format!("{W}.model"))?, opt_text(s.embed_columns, &format!("{W}.embed_columns"))?)
    };
    match (model, embed) {
        (Some(m), Some(cols)) => {
            let cols: Vec<&str> = cols.split(',').map(str::trim).filter(|c| !c.is_empty()).collect();
            spec = spec.embedding(EmbeddingSpec::new(m, &cols));
        }
        (Some(_), None) => {
            return Err(Error::invalid(format!(
                "{W}: a model needs embed_columns (the text columns it embeds)"
            )))
        }
        (None, Some(_)) => return Err(Error::invalid(format!("{W}: embed_columns needs a model"))),
        (None, None) => {}
    }
    if s.recall != 0.0 {
        if !(s.recall > 0.0 && s.recall <= 1.0) {
            return Err(Error::invalid(format!(
                "{W}.recall: {} is not in (0, 1] (0: the default)",
                s.recall
            )));
        }
        spec = spec.recall_target(s.recall as f32);
    }
    Ok(spec)
}

/// Create a collection (what `CREATE COLLECTION` does).
///
/// # Safety
/// `spec` points to a spec whose pointers follow `msdb_collection_spec`'s documentation.
#[no_mangle]
pub unsafe extern "C" fn msdb_db_create_collection(
    db: *mut msdb_db,
    spec: *const msdb_collection_spec,
) -> c_int {
    with_db(db, "msdb_db_create_collection", |h| {
        if spec.is_null() {
            return Err(misuse("msdb_db_create_collection: spec is NULL"));
        }
        // SAFETY: non-null; the caller guarantees a valid spec.
        let s = unsafe { super::read_sized(spec, "msdb_collection_spec")? };
        // SAFETY: caller contract for the spec's pointers.
        h.db().create_collection(&unsafe { collection_spec(&s)? })?;
        Ok(MSDB_OK)
    })
}

/// Drop a collection and its files (`DROP COLLECTION`).
///
/// # Safety
/// `collection` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn msdb_db_drop_collection(db: *mut msdb_db, collection: *const c_char) -> c_int {
    with_db(db, "msdb_db_drop_collection", |h| {
        // SAFETY: caller contract.
        h.db().drop_collection(unsafe { text(collection, "msdb_db_drop_collection: collection")? })?;
        Ok(MSDB_OK)
    })
}

/// A C filter: the WHERE syntax, or NULL for every document.
///
/// # Safety
/// `filter` is NULL or a NUL-terminated string.
unsafe fn filter_or_all(filter: *const c_char, what: &str) -> Result<crate::Filter> {
    // SAFETY: caller contract.
    match unsafe { opt_text(filter, what)? } {
        Some(f) => parse_filter(f),
        None => Ok(crate::sql::every_document()),
    }
}

fn report_changes(h: &DbHandle, n: u64, out: *mut u64) -> Result<c_int> {
    h.changes.store(n, Ordering::SeqCst);
    if !out.is_null() {
        // SAFETY: non-null and writable by the caller contract.
        unsafe { out.write_unaligned(n) };
    }
    Ok(MSDB_OK)
}

/// Delete `n` documents by id in one transaction; `*deleted` (may be NULL) = how many
/// existed. Ids that do not exist are not an error.
///
/// # Safety
/// `collection` is a NUL-terminated string; `ids` points to `n` ids; `deleted` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_db_delete(
    db: *mut msdb_db,
    collection: *const c_char,
    ids: *const msdb_id,
    n: usize,
    deleted: *mut u64,
) -> c_int {
    with_db(db, "msdb_db_delete", |h| {
        // SAFETY: caller contract.
        let coll = unsafe { text(collection, "msdb_db_delete: collection")? };
        let spec = h.db().describe(coll)?;
        // SAFETY: caller contract.
        let ids = unsafe { slice(ids, n, "msdb_db_delete: ids")? }
            .iter()
            .enumerate()
            // SAFETY: caller contract.
            .map(|(i, id)| unsafe { doc_id(id, spec.id_type, &format!("msdb_db_delete: ids[{i}]")) })
            .collect::<Result<Vec<_>>>()?;
        let n = h.db().delete(coll, &ids)?;
        report_changes(h, n, deleted)
    })
}

/// Delete every document matching `filter` (the WHERE syntax; NULL: every document);
/// `*deleted` (may be NULL) = how many.
///
/// # Safety
/// `collection` is a NUL-terminated string; `filter` is NULL or one; `deleted` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_db_delete_where(
    db: *mut msdb_db,
    collection: *const c_char,
    filter: *const c_char,
    deleted: *mut u64,
) -> c_int {
    with_db(db, "msdb_db_delete_where", |h| {
        // SAFETY: caller contract.
        let coll = unsafe { text(collection, "msdb_db_delete_where: collection")? };
        // SAFETY: caller contract.
        let f = unsafe { filter_or_all(filter, "msdb_db_delete_where: filter")? };
        let n = h.db().delete_where(coll, &f)?;
        report_changes(h, n, deleted)
    })
}

/// Set `n` scalar columns of document `id` (vectors unchanged); `MSDB_NOT_FOUND` when
/// there is no such document.
///
/// # Safety
/// `collection` is a NUL-terminated string; `id` points to an id; `values` points to `n`
/// values.
#[no_mangle]
pub unsafe extern "C" fn msdb_db_update(
    db: *mut msdb_db,
    collection: *const c_char,
    id: *const msdb_id,
    values: *const msdb_value,
    n: usize,
) -> c_int {
    with_db(db, "msdb_db_update", |h| {
        // SAFETY: caller contract.
        let coll = unsafe { text(collection, "msdb_db_update: collection")? };
        if id.is_null() {
            return Err(misuse("msdb_db_update: id is NULL"));
        }
        let spec = h.db().describe(coll)?;
        // SAFETY: non-null; caller contract for its pointers.
        let id = unsafe { doc_id(&id.read_unaligned(), spec.id_type, "msdb_db_update: id")? };
        // SAFETY: caller contract.
        let vals = unsafe { typed_values(values, n, "msdb_db_update: values")? };
        h.db().update(coll, &id, &vals)?;
        report_changes(h, 1, std::ptr::null_mut())
    })
}

/// Set `n` scalar columns of every document matching `filter` (NULL: every document), in
/// one transaction; `*updated` (may be NULL) = how many.
///
/// # Safety
/// `collection` is a NUL-terminated string; `filter` is NULL or one; `values` points to
/// `n` values; `updated` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_db_update_where(
    db: *mut msdb_db,
    collection: *const c_char,
    filter: *const c_char,
    values: *const msdb_value,
    n: usize,
    updated: *mut u64,
) -> c_int {
    with_db(db, "msdb_db_update_where", |h| {
        // SAFETY: caller contract.
        let coll = unsafe { text(collection, "msdb_db_update_where: collection")? };
        // SAFETY: caller contract.
        let f = unsafe { filter_or_all(filter, "msdb_db_update_where: filter")? };
        // SAFETY: caller contract.
        let vals = unsafe { typed_values(values, n, "msdb_db_update_where: values")? };
        let n = h.db().update_where(coll, &f, &vals)?;
        report_changes(h, n, updated)
    })
}

/// Compact `collection` (`VACUUM`): merge its segments without deleted rows. `*compacted`
/// (may be NULL) = 1 if anything changed, 0 if there was nothing to do.
///
/// # Safety
/// `collection` is a NUL-terminated string; `compacted` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_db_compact(
    db: *mut msdb_db,
    collection: *const c_char,
    compacted: *mut c_int,
) -> c_int {
    with_db(db, "msdb_db_compact", |h| {
        // SAFETY: caller contract.
        let done = h.db().compact(unsafe { text(collection, "msdb_db_compact: collection")? })?;
        if !compacted.is_null() {
            // SAFETY: non-null and writable by the caller contract.
            unsafe { compacted.write_unaligned(c_int::from(done)) };
        }
        Ok(MSDB_OK)
    })
}

/// Statistics of `collection` into `*out`.
///
/// # Safety
/// `collection` is a NUL-terminated string; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn msdb_db_stats(
    db: *mut msdb_db,
    collection: *const c_char,
    out: *mut msdb_stats,
) -> c_int {
    with_db(db, "msdb_db_stats", |h| {
        // SAFETY: caller contract.
        let s = h.db().stats(unsafe { text(collection, "msdb_db_stats: collection")? })?;
        let st = msdb_stats {
            docs: s.docs,
            pending_docs: s.pending_docs,
            pending_tokens: s.pending_tokens,
            segments: s.segments,
            segment_tokens: s.segment_tokens,
            tombstones: s.tombstones,
            segment_bytes: s.segment_bytes,
            index_bytes: s.index_bytes.iter().map(|(_, b)| b).sum(),
            catalog_bytes: s.catalog_bytes,
        };
        // SAFETY: caller contract.
        unsafe { put(out, st, "msdb_db_stats: out")? };
        Ok(MSDB_OK)
    })
}

// SAFETY: repr(C), starts with its usize size, valid when zeroed (pointers NULL, numbers 0).
unsafe impl super::SizedStruct for msdb_collection_spec {}
