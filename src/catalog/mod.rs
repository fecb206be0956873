//! The SQLite catalog: the single source of truth for collections, documents, scalar
//! columns, pending vectors, tombstones and the segment manifest. This is the only module
//! that talks to rusqlite.

pub(crate) mod migrate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension, ToSql};

use crate::filter::Filter;
use crate::types::{CollectionSpec, ColumnType, DocId, IdType, Value};
use crate::{Error, Result};

pub use migrate::SCHEMA_VERSION;

/// A catalog connection.
pub(crate) struct Catalog {
    conn: Connection,
    /// Schema version of the file (below [`SCHEMA_VERSION`] only for a read-only handle on
    /// a catalog that a writer has not upgraded yet).
    schema: u32,
    /// Opened with SQLite's `immutable` flag: read-only media, see [`open_read_only`].
    immutable: bool,
}

/// The write-ahead log beside catalog `path` (present while a writer has the catalog open,
/// or after a crash; a clean close removes it).
fn wal_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push("-wal");
    PathBuf::from(p)
}

/// Open catalog `path` for reading. A WAL-mode SQLite file is read through its shared-memory
/// file (`-shm`), which SQLite creates beside it: on a directory this process cannot write
/// (read-only media, another user's files) that fails. Then, when no write-ahead log is
/// present — the catalog was closed cleanly and every change is in the main file — the file
/// is opened `immutable` (no locks, no `-shm`); the caller must keep writers out while it is
/// open (`Database::open` holds a shared lock on `LOCK`). With a log present a writer is
/// active or crashed and the file alone is not the truth: the error says what to do.
fn open_read_only(path: &Path) -> Result<(Connection, bool)> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    let err = match conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(())) {
        Ok(()) => return Ok((conn, false)),
        Err(e) => e,
    };
    let cannot_share = matches!(&err, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly));
    if !cannot_share {
        return Err(err.into());
    }
    drop(conn);
    if wal_path(path).exists() {
        return Err(Error::NotAvailable(format!(
            "cannot read {} while its write-ahead log is unapplied: this process cannot create the              catalog's shared-memory file beside it (directory not writable), which reading              alongside a writer needs. Close the writer (a clean close applies the log), or open              the database once with write access",
            path.display()
        )));
    }
    let text = path.to_str().ok_or_else(|| Error::invalid(format!("{} is not UTF-8", path.display())))?;
    let mut uri = String::from("file:");
    for ch in text.chars() {
        match ch {
            '%' | '?' | '#' => uri.push_str(&format!("%{:02X}", ch as u32)),
            _ => uri.push(ch),
        }
    }
    uri.push_str("?mode=ro&immutable=1");
    let conn = Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)?;
    Ok((conn, true))
}

/// A collection as recorded in the catalog.
#[derive(Debug, Clone)]
pub(crate) struct CollectionRow {
    pub id: i64,
    pub spec: CollectionSpec,
}

/// A manifest row.
#[derive(Debug, Clone)]
pub(crate) struct SegmentRow {
    pub id: i64,
    pub file: String,
    pub doc_count: i64,
    pub token_count: i64,
    pub bytes: i64,
    /// Mean 1 − cos of the tokens this segment's flush encoded from vectors (codes-only
    /// collections; `None` otherwise).
    pub quant_error: Option<f64>,
}

/// A token codec of a codes-only collection (`token_codecs`, schema 7).
#[derive(Debug, Clone)]
pub(crate) struct CodecRow {
    pub id: i64,
    pub collection_id: i64,
    pub file: String,
    /// xxh3-64 of the codec bytes (what segments' CODEC_REF records).
    pub content_sum: u64,
    pub nbits: u8,
    pub centroids: i64,
    pub trained_tokens: i64,
    /// Mean 1 − cos on held-out training tokens.
    pub train_error: f64,
}

/// A search index of a collection (its `data` blob, if any, is read by
/// [`Txn::index_data`] only).
#[derive(Debug, Clone)]
pub(crate) struct IndexRow {
    pub id: i64,
    pub kind: String,
    pub params: String,
    /// The per-index state file (PLAID codec, MUVERA matrices; schema 5+), relative to
    /// the database root.
    pub file: Option<String>,
    /// `ready`, or `building` while CREATE INDEX has segments left to cover.
    pub state: String,
    /// The recall calibration (JSON), if measured (schema 6+).
    pub calibration: Option<String>,
}

/// The side file of one (segment, index) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SideFileRow {
    pub segment_id: i64,
    pub index_id: i64,
    pub file: String,
    pub bytes: i64,
}

/// Vectors of a committed write not yet flushed into a segment.
#[derive(Debug, Clone)]
pub(crate) struct PendingRow {
    pub row: u64,
    pub tokens: Vec<u8>,
    pub pooled: Vec<u8>,
}

/// Where a document's vectors live: its row id and segment (`None` = pending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DocLoc {
    pub row: u64,
    pub seg: Option<i64>,
}

/// Scalar values of one row, with its id.
pub(crate) type RowValues = (DocId, Vec<(String, Value)>);

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Owned(SqlValue::Null),
            Value::Integer(i) => ToSqlOutput::Owned(SqlValue::Integer(*i)),
            Value::Real(r) => ToSqlOutput::Owned(SqlValue::Real(*r)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Json(j) => ToSqlOutput::Owned(SqlValue::Text(j.to_string())),
        })
    }
}

impl ToSql for DocId {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            DocId::Int(i) => ToSqlOutput::Owned(SqlValue::Integer(*i)),
            DocId::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

fn read_value(ty: ColumnType, v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) if ty == ColumnType::Real => Value::Real(i as f64),
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            let s = String::from_utf8_lossy(t).into_owned();
            if ty == ColumnType::Json {
                serde_json::from_str(&s).map_or(Value::Text(s), Value::Json)
            } else {
                Value::Text(s)
            }
        }
    }
}

/// The id (column `first`) and the scalar columns after it of a result row.
fn row_values(c: &CollectionRow, r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<RowValues> {
    let id = read_id(r.get_ref(first)?);
    let mut vals = Vec::with_capacity(c.spec.columns.len());
    for (i, col) in c.spec.columns.iter().enumerate() {
        vals.push((col.name.clone(), read_value(col.ty, r.get_ref(first + 1 + i)?)));
    }
    Ok((id, vals))
}

fn read_id(v: ValueRef<'_>) -> DocId {
    match v {
        ValueRef::Integer(i) => DocId::Int(i),
        other => DocId::Text(String::from_utf8_lossy(other.as_bytes().unwrap_or_default()).into_owned()),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
        || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

impl Catalog {
    /// Open (creating and migrating when writable) the catalog at `path`.
    pub fn open(path: &Path, read_only: bool) -> Result<Self> {
        Self::open_with_target(path, read_only, SCHEMA_VERSION)
    }

    /// Open, migrating only up to `target` (tests of the upgrade path use this).
    pub fn open_with_target(path: &Path, read_only: bool, target: u32) -> Result<Self> {
        let (mut conn, immutable) = if read_only {
            open_read_only(path)?
        } else {
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            (Connection::open_with_flags(path, flags)?, false)
        };
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        if !read_only {
            // Incremental auto-vacuum lets flushes give back the pages of the pending
            // vectors they moved into segments (`Catalog::reclaim`). It takes effect at
            // once on a new file; an older catalog is converted by one VACUUM.
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            if conn.query_row("PRAGMA auto_vacuum", [], |r| r.get::<_, i64>(0))? != 2 {
                conn.execute_batch("VACUUM")?;
            }
            migrate::migrate_to(&mut conn, path, target)?;
        }
        let v = migrate::version(&conn)?;
        // A read-only handle reads schema 2 (no `indexes` table: no index) and later.
        if v > SCHEMA_VERSION || (read_only && v < READ_ONLY_OLDEST_SCHEMA) {
            return Err(Error::IncompatibleFormat {
                path: path.to_path_buf(),
                found: v,
                oldest: if read_only { READ_ONLY_OLDEST_SCHEMA } else { 1 },
                newest: SCHEMA_VERSION,
            });
        }
        Ok(Self { conn, schema: v, immutable })
    }

    /// Whether this handle reads the file as immutable (read-only media).
    pub fn immutable(&self) -> bool {
        self.immutable
    }

    /// Begin a read transaction (a consistent snapshot in WAL mode).
    pub fn read(&mut self) -> Result<Txn<'_>> {
        let schema = self.schema;
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
        // Touch the schema so the snapshot is taken now, not at the first later read.
        tx.query_row("SELECT count(*) FROM meta", [], |_| Ok(()))?;
        Ok(Txn { tx, schema })
    }

    /// Begin a write transaction.
    pub fn write(&mut self) -> Result<Txn<'_>> {
        let schema = self.schema;
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        Ok(Txn { tx, schema })
    }

    /// Write a consistent copy of the catalog (one read transaction) to the new file `dest`.
    pub fn vacuum_into(&self, dest: &Path) -> Result<()> {
        let dest = dest.to_str().ok_or_else(|| Error::invalid(format!("{} is not UTF-8", dest.display())))?;
        self.conn.execute("VACUUM INTO ?1", [dest])?;
        Ok(())
    }

    /// The catalog's schema version.
    pub fn schema(&self) -> u32 {
        self.schema
    }

    /// Move the write-ahead log into the main file and empty it (at close: a closed
    /// database is then one self-contained file, and a damaged leftover log cannot
    /// silently roll it back).
    pub fn checkpoint(&self) -> Result<()> {
        self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Give free pages back to the file system when there are more than a few (after a
    /// flush moved pending vectors into a segment, or rows were deleted). Returns the
    /// pages released.
    pub fn reclaim(&self) -> Result<u64> {
        let free: i64 = self.conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        if free < 64 {
            return Ok(0);
        }
        // The pragma frees one page per step: step it to the end.
        let mut st = self.conn.prepare("PRAGMA incremental_vacuum")?;
        let mut rows = st.query([])?;
        while rows.next()?.is_some() {}
        drop(rows);
        drop(st);
        let left: i64 = self.conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        Ok((free - left).max(0) as u64)
    }

    /// Size of the catalog file in bytes (pages × page size, without the WAL).
    pub fn file_bytes(&self) -> Result<u64> {
        let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let size: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok((pages * size) as u64)
    }

    /// `PRAGMA integrity_check` results other than "ok".
    pub fn integrity_check(&self) -> Result<Vec<String>> {
        let mut st = self.conn.prepare("PRAGMA integrity_check")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        let v: Vec<String> = rows.collect::<rusqlite::Result<_>>()?;
        Ok(v.into_iter().filter(|s| s != "ok").collect())
    }
}

/// A catalog transaction; dropped without [`Txn::commit`] it rolls back.
pub(crate) struct Txn<'a> {
    tx: rusqlite::Transaction<'a>,
    schema: u32,
}

/// Segment format recorded in new manifest rows (`storage/format.rs` FORMAT_VERSION).
const SEGMENT_FORMAT: u32 = 4;

/// Oldest catalog schema a read-only handle opens without upgrading it.
const READ_ONLY_OLDEST_SCHEMA: u32 = 2;

/// File name of the catalog inside the database directory.
const CATALOG_FILE: &str = "catalog.sqlite";

fn docs(c: i64) -> String {
    format!("c{c}_docs")
}
fn pending(c: i64) -> String {
    format!("c{c}_pending")
}
fn tomb(c: i64) -> String {
    format!("c{c}_tomb")
}

impl Txn<'_> {
    /// Commit.
    pub fn commit(self) -> Result<()> {
        crate::storage::fault::point("catalog.commit", Path::new(CATALOG_FILE))?;
        Ok(self.tx.commit()?)
    }

    /// A `meta` value.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self.tx.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    /// Count one more committed write.
    pub fn bump_generation(&self) -> Result<()> {
        self.tx.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'", [])?;
        Ok(())
    }

    /// Reserve the next segment id.
    pub fn next_segment_id(&self) -> Result<i64> {
        let id: i64 = self.tx.query_row(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'next_segment_id'
             RETURNING CAST(value AS INTEGER) - 1",
            [],
            |r| r.get(0),
        )?;
        Ok(id)
    }

    /// Every collection, by name.
    pub fn collections(&self) -> Result<Vec<CollectionRow>> {
        let mut st = self.tx.prepare_cached("SELECT id, spec FROM collections ORDER BY name")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|r| {
            let (id, spec) = r?;
            Ok(CollectionRow { id, spec: serde_json::from_str(&spec)? })
        })
        .collect()
    }

    /// The collection `name`.
    pub fn collection(&self, name: &str) -> Result<CollectionRow> {
        let row: Option<(i64, String)> = self
            .tx
            .prepare_cached("SELECT id, spec FROM collections WHERE name = ?1")?
            .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let (id, spec) = row.ok_or_else(|| Error::NotFound { kind: "collection", name: name.to_string() })?;
        Ok(CollectionRow { id, spec: serde_json::from_str(&spec)? })
    }

    /// Create a collection and its tables.
    pub fn create_collection(&self, spec: &CollectionSpec) -> Result<i64> {
        let json = serde_json::to_string(spec)?;
        let res = self.tx.execute(
            "INSERT INTO collections(name, spec, created_at) VALUES (?1, ?2, ?3)",
            params![spec.name, json, now()],
        );
        match res {
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::AlreadyExists { kind: "collection", name: spec.name.clone() })
            }
            r => r?,
        };
        let id = self.tx.last_insert_rowid();
        let id_ty = match spec.id_type {
            IdType::Text => "TEXT",
            IdType::Integer => "INTEGER",
        };
        let cols: String =
            spec.columns.iter().map(|c| format!(", \"{}\" {}", c.name, c.ty.sql_type())).collect();
        self.tx.execute_batch(&format!(
            "CREATE TABLE {d} (_row INTEGER PRIMARY KEY AUTOINCREMENT, _id {id_ty} NOT NULL UNIQUE, _seg INTEGER{cols});
             CREATE TABLE {p} (_row INTEGER PRIMARY KEY, ntok INTEGER NOT NULL, tokens BLOB NOT NULL, pooled BLOB NOT NULL);
             CREATE TABLE {t} (_row INTEGER PRIMARY KEY, _seg INTEGER NOT NULL);
             CREATE INDEX {t}_by_seg ON {t}(_seg);",
            d = docs(id),
            p = pending(id),
            t = tomb(id),
        ))?;
        Ok(id)
    }

    /// Drop a collection's tables, manifest rows and catalog row; returns its segment files
    /// (relative paths) for retirement.
    pub fn drop_collection(&self, c: &CollectionRow) -> Result<Vec<SegmentRow>> {
        let segs = self.segments(c.id)?;
        self.tx.execute_batch(&format!(
            "DROP TABLE {}; DROP TABLE {}; DROP TABLE {};",
            docs(c.id),
            pending(c.id),
            tomb(c.id)
        ))?;
        for s in &segs {
            self.retire_side_files_of(s.id)?;
        }
        for ix in self.indexes(c.id)? {
            if let Some(f) = &ix.file {
                self.retire(f)?;
            }
        }
        for codec in self.token_codecs(c.id)? {
            self.remove_token_codec(&codec)?;
        }
        self.tx.execute("DELETE FROM segments WHERE collection_id = ?1", [c.id])?;
        self.tx.execute("DELETE FROM indexes WHERE collection_id = ?1", [c.id])?;
        if self.schema >= 4 {
            self.fulltext_detach(c.id)?;
        }
        self.tx.execute("DELETE FROM collections WHERE id = ?1", [c.id])?;
        Ok(segs)
    }

    /// The index of kind `kind` on collection `c`, if any.
    pub fn index(&self, c: i64, kind: &str) -> Result<Option<IndexRow>> {
        Ok(self.indexes(c)?.into_iter().find(|i| i.kind == kind))
    }

    /// Every index of collection `c`, by id (none on a schema-2 catalog read without
    /// upgrading). Reads no `data` blob.
    pub fn indexes(&self, c: i64) -> Result<Vec<IndexRow>> {
        if self.schema < 3 {
            return Ok(Vec::new());
        }
        let sql = match self.schema {
            6.. => "SELECT id, kind, params, file, state, calibration FROM indexes WHERE collection_id = ?1 ORDER BY id",
            5 => "SELECT id, kind, params, file, state, NULL FROM indexes WHERE collection_id = ?1 ORDER BY id",
            _ => "SELECT id, kind, params, NULL, 'ready', NULL FROM indexes WHERE collection_id = ?1 ORDER BY id",
        };
        let mut st = self.tx.prepare_cached(sql)?;
        let rows = st.query_map([c], |r| {
            Ok(IndexRow {
                id: r.get(0)?,
                kind: r.get(1)?,
                params: r.get(2)?,
                file: r.get(3)?,
                state: r.get(4)?,
                calibration: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The `data` blob of index `id` (the state of indexes created before schema 5).
    pub fn index_data(&self, id: i64) -> Result<Vec<u8>> {
        Ok(self.tx.query_row("SELECT data FROM indexes WHERE id = ?1", [id], |r| r.get(0))?)
    }

    /// Record a new index in state `building`; returns its id. Fails when one of that
    /// kind exists.
    pub fn add_index(&self, c: i64, kind: &str, params_json: &str) -> Result<i64> {
        if self.index(c, kind)?.is_some() {
            return Err(Error::AlreadyExists { kind: "index", name: kind.to_string() });
        }
        self.tx.execute(
            "INSERT INTO indexes(collection_id, kind, params, data, created_at, state)
             VALUES (?1, ?2, ?3, x'', ?4, 'building')",
            params![c, kind, params_json, now()],
        )?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Name the per-index state file of index `id`.
    pub fn set_index_file(&self, id: i64, file: &str) -> Result<()> {
        self.tx.execute("UPDATE indexes SET file = ?2 WHERE id = ?1", params![id, file])?;
        Ok(())
    }

    /// Record the recall calibration (JSON) of index `id`.
    pub fn set_index_calibration(&self, id: i64, json: &str) -> Result<()> {
        self.tx.execute("UPDATE indexes SET calibration = ?2 WHERE id = ?1", params![id, json])?;
        Ok(())
    }

    /// Set the state (`building` / `ready`) of index `id`.
    pub fn set_index_state(&self, id: i64, state: &str) -> Result<()> {
        self.tx.execute("UPDATE indexes SET state = ?2 WHERE id = ?1", params![id, state])?;
        Ok(())
    }

    /// Remove the index of kind `kind` on `c` with its side-file rows, retiring every file
    /// it owns; returns the removed row.
    pub fn remove_index(&self, c: i64, kind: &str) -> Result<Option<IndexRow>> {
        let Some(row) = self.index(c, kind)? else { return Ok(None) };
        if self.schema >= 5 {
            let files: Vec<String> = {
                let mut st = self.tx.prepare_cached("SELECT file FROM side_files WHERE index_id = ?1")?;
                let rows = st.query_map([row.id], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for f in files.iter().chain(row.file.as_ref()) {
                self.retire(f)?;
            }
            self.tx.execute("DELETE FROM side_files WHERE index_id = ?1", [row.id])?;
        }
        self.tx.execute("DELETE FROM indexes WHERE id = ?1", [row.id])?;
        Ok(Some(row))
    }

    /// The side files of collection `c`'s segments.
    pub fn side_files(&self, c: i64) -> Result<Vec<SideFileRow>> {
        if self.schema < 5 {
            return Ok(Vec::new());
        }
        let mut st = self.tx.prepare_cached(
            "SELECT f.segment_id, f.index_id, f.file, f.bytes FROM side_files f
             JOIN segments s ON s.id = f.segment_id WHERE s.collection_id = ?1
             ORDER BY f.segment_id, f.index_id",
        )?;
        let rows = st.query_map([c], |r| {
            Ok(SideFileRow { segment_id: r.get(0)?, index_id: r.get(1)?, file: r.get(2)?, bytes: r.get(3)? })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Record a published side file.
    pub fn add_side_file(&self, f: &SideFileRow) -> Result<()> {
        self.tx.execute(
            "INSERT INTO side_files(segment_id, index_id, file, bytes, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![f.segment_id, f.index_id, f.file, f.bytes, now()],
        )?;
        Ok(())
    }

    /// Forget and retire the side files of segment `seg`.
    fn retire_side_files_of(&self, seg: i64) -> Result<()> {
        if self.schema < 5 {
            return Ok(());
        }
        let files: Vec<String> = {
            let mut st = self.tx.prepare_cached("SELECT file FROM side_files WHERE segment_id = ?1")?;
            let rows = st.query_map([seg], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for f in &files {
            self.retire(f)?;
        }
        self.tx.execute("DELETE FROM side_files WHERE segment_id = ?1", [seg])?;
        Ok(())
    }
}

/// The full-text change log (used with the `fulltext` feature).
#[cfg_attr(not(feature = "fulltext"), allow(dead_code))]
impl Txn<'_> {
    /// Start logging the changes a full-text index over `columns` (validated column
    /// names) of `c` must follow: triggers on the documents table.
    pub fn fulltext_attach(&self, c: &CollectionRow, columns: &[String]) -> Result<()> {
        let (d, id) = (docs(c.id), c.id);
        let cols: Vec<String> = columns.iter().map(|n| format!("\"{n}\"")).collect();
        self.tx.execute_batch(&format!(
            "CREATE TRIGGER {d}_ft_ins AFTER INSERT ON {d} BEGIN \
               INSERT INTO fulltext_log(collection_id, row) VALUES ({id}, NEW._row); END;
             CREATE TRIGGER {d}_ft_upd AFTER UPDATE OF {} ON {d} BEGIN \
               INSERT INTO fulltext_log(collection_id, row) VALUES ({id}, NEW._row); END;
             CREATE TRIGGER {d}_ft_del AFTER DELETE ON {d} BEGIN \
               INSERT INTO fulltext_log(collection_id, row) VALUES ({id}, OLD._row); END;",
            cols.join(", ")
        ))?;
        Ok(())
    }

    /// Stop logging for `c` and forget its unapplied changes.
    pub fn fulltext_detach(&self, c: i64) -> Result<()> {
        let d = docs(c);
        self.tx.execute_batch(&format!(
            "DROP TRIGGER IF EXISTS {d}_ft_ins; DROP TRIGGER IF EXISTS {d}_ft_upd; DROP TRIGGER IF EXISTS {d}_ft_del;"
        ))?;
        self.tx.execute("DELETE FROM fulltext_log WHERE collection_id = ?1", [c])?;
        self.tx.execute("DELETE FROM meta WHERE key = ?1", [format!("fulltext_trimmed_{c}")])?;
        Ok(())
    }

    /// Logged changes of `c` after sequence number `after`: (seq, row), in order.
    pub fn fulltext_changes(&self, c: i64, after: i64) -> Result<Vec<(i64, u64)>> {
        if self.schema < 4 {
            return Ok(Vec::new());
        }
        let mut st = self.tx.prepare_cached(
            "SELECT seq, row FROM fulltext_log WHERE collection_id = ?1 AND seq > ?2 ORDER BY seq",
        )?;
        let rows = st.query_map([c, after], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Whether the change log holds entries of `c` (a catch-up empties it).
    pub fn fulltext_pending(&self, c: i64) -> Result<bool> {
        if self.schema < 4 {
            return Ok(false);
        }
        Ok(self.tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM fulltext_log WHERE collection_id = ?1)",
            [c],
            |r| r.get(0),
        )?)
    }

    /// The last sequence number handed out by the change log (0 when none).
    pub fn fulltext_last_seq(&self) -> Result<i64> {
        if self.schema < 4 {
            return Ok(0);
        }
        let v: Option<i64> = self
            .tx
            .query_row("SELECT seq FROM sqlite_sequence WHERE name = 'fulltext_log'", [], |r| r.get(0))
            .optional()?;
        Ok(v.unwrap_or(0))
    }

    /// Forget the applied changes of `c` (sequence numbers up to `upto`), remembering
    /// that the full-text index reflected `upto` when they were dropped.
    pub fn fulltext_trim(&self, c: i64, upto: i64) -> Result<()> {
        self.tx.execute("DELETE FROM fulltext_log WHERE collection_id = ?1 AND seq <= ?2", [c, upto])?;
        self.tx.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
            params![format!("fulltext_trimmed_{c}"), upto.to_string()],
        )?;
        Ok(())
    }

    /// The position up to which the change log of `c` was trimmed: a full-text index
    /// behind it has lost changes it can no longer replay, and must be rebuilt.
    pub fn fulltext_trimmed(&self, c: i64) -> Result<i64> {
        Ok(self.meta(&format!("fulltext_trimmed_{c}"))?.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    /// The text of `columns` of each of `rows` that exists, joined with newlines (NULLs
    /// skipped); `rows = None` reads every document, in row order.
    pub fn texts(
        &self,
        c: &CollectionRow,
        columns: &[String],
        rows: Option<&[u64]>,
    ) -> Result<Vec<(u64, String)>> {
        let cols: String = columns.iter().map(|n| format!(", \"{n}\"")).collect();
        let read = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(u64, String)> {
            let mut parts = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                if let Some(t) = r.get::<_, Option<String>>(i + 1)? {
                    parts.push(t);
                }
            }
            Ok((r.get::<_, i64>(0)? as u64, parts.join("\n")))
        };
        match rows {
            None => {
                let mut st =
                    self.tx.prepare(&format!("SELECT _row{cols} FROM {} ORDER BY _row", docs(c.id)))?;
                let out = st.query_map([], read)?.collect::<rusqlite::Result<_>>()?;
                Ok(out)
            }
            Some(rows) => {
                let mut st = self
                    .tx
                    .prepare_cached(&format!("SELECT _row{cols} FROM {} WHERE _row = ?1", docs(c.id)))?;
                let mut out = Vec::with_capacity(rows.len());
                for &row in rows {
                    if let Some(v) = st.query_row([row as i64], read).optional()? {
                        out.push(v);
                    }
                }
                Ok(out)
            }
        }
    }
}

impl Txn<'_> {
    /// The manifest of collection `c`, by segment id.
    pub fn segments(&self, c: i64) -> Result<Vec<SegmentRow>> {
        let sql = if self.schema >= 7 {
            "SELECT id, file, doc_count, token_count, bytes, quant_error FROM segments WHERE collection_id = ?1 ORDER BY id"
        } else {
            "SELECT id, file, doc_count, token_count, bytes, NULL FROM segments WHERE collection_id = ?1 ORDER BY id"
        };
        let mut st = self.tx.prepare_cached(sql)?;
        let rows = st.query_map([c], |r| {
            Ok(SegmentRow {
                id: r.get(0)?,
                file: r.get(1)?,
                doc_count: r.get(2)?,
                token_count: r.get(3)?,
                bytes: r.get(4)?,
                quant_error: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The token codecs of collection `c`, oldest first (the last encodes new segments).
    pub fn token_codecs(&self, c: i64) -> Result<Vec<CodecRow>> {
        if self.schema < 7 {
            return Ok(Vec::new());
        }
        let mut st = self.tx.prepare_cached(
            "SELECT id, collection_id, file, content_sum, nbits, centroids, trained_tokens, train_error
             FROM token_codecs WHERE collection_id = ?1 ORDER BY id",
        )?;
        let rows = st.query_map([c], |r| {
            Ok(CodecRow {
                id: r.get(0)?,
                collection_id: r.get(1)?,
                file: r.get(2)?,
                content_sum: r.get::<_, i64>(3)? as u64,
                nbits: r.get(4)?,
                centroids: r.get(5)?,
                trained_tokens: r.get(6)?,
                train_error: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Name a published codec file.
    pub fn add_token_codec(&self, row: &CodecRow) -> Result<()> {
        self.tx.execute(
            "INSERT INTO token_codecs(id, collection_id, file, content_sum, nbits, centroids, trained_tokens, train_error, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                row.id,
                row.collection_id,
                row.file,
                row.content_sum as i64,
                row.nbits,
                row.centroids,
                row.trained_tokens,
                row.train_error,
                now()
            ],
        )?;
        Ok(())
    }

    /// Forget codec `row` and retire its file (no segment needs it any more).
    pub fn remove_token_codec(&self, row: &CodecRow) -> Result<()> {
        self.retire(&row.file)?;
        self.tx.execute("DELETE FROM token_codecs WHERE id = ?1", [row.id])?;
        Ok(())
    }

    /// Every file the manifest names (relative to the database root).
    pub fn manifest_files(&self) -> Result<Vec<String>> {
        let sql = if self.schema >= 7 {
            "SELECT file FROM segments UNION ALL SELECT file FROM side_files
             UNION ALL SELECT file FROM indexes WHERE file IS NOT NULL
             UNION ALL SELECT file FROM token_codecs"
        } else if self.schema >= 5 {
            "SELECT file FROM segments UNION ALL SELECT file FROM side_files
             UNION ALL SELECT file FROM indexes WHERE file IS NOT NULL"
        } else {
            "SELECT file FROM segments"
        };
        let mut st = self.tx.prepare_cached(sql)?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Add a published segment to the manifest.
    pub fn add_segment(&self, c: i64, s: &SegmentRow) -> Result<()> {
        self.tx.execute(
            "INSERT INTO segments(id, collection_id, file, doc_count, token_count, bytes, format_version, created_at, quant_error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![s.id, c, s.file, s.doc_count, s.token_count, s.bytes, SEGMENT_FORMAT, now(), s.quant_error],
        )?;
        Ok(())
    }

    /// Replace segments `old` by `new` (compaction): every live row of `old` moves to
    /// `new`, their tombstones and manifest rows go, their files are retired.
    pub fn replace_segments(&self, c: i64, old: &[SegmentRow], new: Option<&SegmentRow>) -> Result<()> {
        if let Some(n) = new {
            self.add_segment(c, n)?;
        }
        for s in old {
            self.tx.execute(
                &format!("UPDATE {} SET _seg = ?1 WHERE _seg = ?2", docs(c)),
                params![new.map(|n| n.id), s.id],
            )?;
            self.tx.execute(&format!("DELETE FROM {} WHERE _seg = ?1", tomb(c)), [s.id])?;
            self.tx.execute("DELETE FROM segments WHERE id = ?1", [s.id])?;
            self.retire(&s.file)?;
            self.retire_side_files_of(s.id)?;
        }
        Ok(())
    }

    /// Mark a file for deletion after the grace period.
    pub fn retire(&self, file: &str) -> Result<()> {
        self.tx.execute(
            "INSERT OR REPLACE INTO retired_files(path, retired_at) VALUES (?1, ?2)",
            params![file, now()],
        )?;
        Ok(())
    }

    /// Retired files and when they were retired (unix seconds).
    pub fn retired(&self) -> Result<Vec<(String, i64)>> {
        let mut st = self.tx.prepare_cached("SELECT path, retired_at FROM retired_files")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Whether any file waits for deletion.
    pub fn has_retired(&self) -> Result<bool> {
        Ok(self.tx.query_row("SELECT EXISTS (SELECT 1 FROM retired_files)", [], |r| r.get(0))?)
    }

    /// Forget a retired file (after deleting it).
    pub fn forget_retired(&self, file: &str) -> Result<()> {
        self.tx.execute("DELETE FROM retired_files WHERE path = ?1", [file])?;
        Ok(())
    }

    /// Tombstoned rows of segment `seg`, ascending.
    pub fn tombstones(&self, c: i64, seg: i64) -> Result<Vec<u64>> {
        let mut st =
            self.tx.prepare_cached(&format!("SELECT _row FROM {} WHERE _seg = ?1 ORDER BY _row", tomb(c)))?;
        let rows = st.query_map([seg], |r| r.get::<_, i64>(0))?;
        rows.map(|r| Ok(r? as u64)).collect()
    }

    /// Number of tombstones of collection `c`.
    pub fn tombstone_count(&self, c: i64) -> Result<u64> {
        Ok(self.tx.query_row(&format!("SELECT count(*) FROM {}", tomb(c)), [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    /// Where document `id` lives.
    pub fn locate(&self, c: i64, id: &DocId) -> Result<Option<DocLoc>> {
        let mut st = self.tx.prepare_cached(&format!("SELECT _row, _seg FROM {} WHERE _id = ?1", docs(c)))?;
        Ok(st
            .query_row([id], |r| Ok(DocLoc { row: r.get::<_, i64>(0)? as u64, seg: r.get(1)? }))
            .optional()?)
    }

    /// Where row `row` lives: `None` when it does not exist, `Some(None)` while pending,
    /// `Some(Some(segment))` once flushed.
    pub fn row_segment(&self, c: i64, row: u64) -> Result<Option<Option<i64>>> {
        let mut st = self.tx.prepare_cached(&format!("SELECT _seg FROM {} WHERE _row = ?1", docs(c)))?;
        Ok(st.query_row([row as i64], |r| r.get::<_, Option<i64>>(0)).optional()?)
    }

    /// Insert the catalog row of a document. `row` forces the row id (bulk loads that
    /// write a segment first); `seg` is its segment, `None` while pending.
    pub fn insert_doc(
        &self,
        c: &CollectionRow,
        id: &DocId,
        values: &[(String, Value)],
        row: Option<u64>,
        seg: Option<i64>,
    ) -> Result<u64> {
        let mut cols = String::from("_row, _id, _seg");
        let mut marks = String::from("?1, ?2, ?3");
        for (i, (name, _)) in values.iter().enumerate() {
            // Names were resolved against the spec by the caller: validated identifiers.
            cols.push_str(&format!(", \"{name}\""));
            marks.push_str(&format!(", ?{}", i + 4));
        }
        let sql = format!("INSERT INTO {} ({cols}) VALUES ({marks})", docs(c.id));
        let mut st = self.tx.prepare_cached(&sql)?;
        let row_i64 = row.map(|r| r as i64);
        let mut p: Vec<&dyn ToSql> = vec![&row_i64, id, &seg];
        p.extend(values.iter().map(|(_, v)| v as &dyn ToSql));
        match st.execute(params_from_iter(p)) {
            Err(e) if is_unique_violation(&e) => {
                Err(Error::AlreadyExists { kind: "document", name: id.to_string() })
            }
            Err(e) => Err(e.into()),
            Ok(_) => Ok(self.tx.last_insert_rowid() as u64),
        }
    }

    /// Store the vectors of a pending row.
    pub fn insert_pending(&self, c: i64, row: u64, ntok: usize, tokens: &[u8], pooled: &[u8]) -> Result<()> {
        let mut st = self.tx.prepare_cached(&format!(
            "INSERT INTO {} (_row, ntok, tokens, pooled) VALUES (?1, ?2, ?3, ?4)",
            pending(c)
        ))?;
        st.execute(params![row as i64, ntok as i64, tokens, pooled])?;
        Ok(())
    }

    /// Remove a document: its catalog row, and its pending vectors or a tombstone for its
    /// segment row.
    pub fn remove_doc(&self, c: i64, loc: DocLoc) -> Result<()> {
        let row = loc.row as i64;
        self.tx.prepare_cached(&format!("DELETE FROM {} WHERE _row = ?1", docs(c)))?.execute([row])?;
        match loc.seg {
            None => self
                .tx
                .prepare_cached(&format!("DELETE FROM {} WHERE _row = ?1", pending(c)))?
                .execute([row])?,
            Some(s) => self
                .tx
                .prepare_cached(&format!("INSERT INTO {} (_row, _seg) VALUES (?1, ?2)", tomb(c)))?
                .execute([row, s])?,
        };
        Ok(())
    }

    /// Pending vectors, by row id; `rows` restricts to those rows (ascending).
    pub fn pending(&self, c: i64) -> Result<Vec<PendingRow>> {
        let mut st = self
            .tx
            .prepare_cached(&format!("SELECT _row, tokens, pooled FROM {} ORDER BY _row", pending(c)))?;
        let rows = st.query_map([], |r| {
            Ok(PendingRow { row: r.get::<_, i64>(0)? as u64, tokens: r.get(1)?, pooled: r.get(2)? })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Pending vectors of one row.
    pub fn pending_row(&self, c: i64, row: u64) -> Result<Option<PendingRow>> {
        let mut st =
            self.tx.prepare_cached(&format!("SELECT tokens, pooled FROM {} WHERE _row = ?1", pending(c)))?;
        Ok(st
            .query_row([row as i64], |r| Ok(PendingRow { row, tokens: r.get(0)?, pooled: r.get(1)? }))
            .optional()?)
    }

    /// (pending documents, pending token vectors).
    pub fn pending_stats(&self, c: i64) -> Result<(u64, u64)> {
        let (n, t): (i64, i64) = self.tx.query_row(
            &format!("SELECT count(*), coalesce(sum(ntok), 0) FROM {}", pending(c)),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((n as u64, t as u64))
    }

    /// Move every pending row up to `max_row` into segment `seg`.
    pub fn flush_pending(&self, c: i64, max_row: u64, seg: i64) -> Result<()> {
        let max = max_row as i64;
        self.tx.execute(
            &format!("UPDATE {} SET _seg = ?1 WHERE _seg IS NULL AND _row <= ?2", docs(c)),
            params![seg, max],
        )?;
        self.tx.execute(&format!("DELETE FROM {} WHERE _row <= ?1", pending(c)), [max])?;
        Ok(())
    }

    /// The largest row id ever handed out in collection `c` (AUTOINCREMENT sequence).
    pub fn last_row(&self, c: i64) -> Result<u64> {
        let v: Option<i64> = self
            .tx
            .query_row("SELECT seq FROM sqlite_sequence WHERE name = ?1", [docs(c)], |r| r.get(0))
            .optional()?;
        Ok(v.unwrap_or(0) as u64)
    }

    /// Number of live documents.
    pub fn doc_count(&self, c: i64) -> Result<u64> {
        Ok(self.tx.query_row(&format!("SELECT count(*) FROM {}", docs(c)), [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    /// Rows (with their segment) matching `filter`, ascending by row id.
    pub fn filter_rows(&self, c: &CollectionRow, filter: &Filter) -> Result<Vec<DocLoc>> {
        let mut params = Vec::new();
        let cond = filter.to_sql(&c.spec, &mut params)?;
        let sql = format!("SELECT _row, _seg FROM {} WHERE {cond} ORDER BY _row", docs(c.id));
        let mut st = self.tx.prepare(&sql)?;
        let rows = st.query_map(params_from_iter(params.iter()), |r| {
            Ok(DocLoc { row: r.get::<_, i64>(0)? as u64, seg: r.get(1)? })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Rows of the live documents passing `filter` (all for `None`), ordered by `order`
    /// (a column or `id`, descending when set; then by row, i.e. insertion order),
    /// `offset` skipped, at most `limit` (`None`: all).
    pub fn list_rows(
        &self,
        c: &CollectionRow,
        filter: Option<&Filter>,
        order: Option<(&str, bool)>,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<u64>> {
        let mut params = Vec::new();
        let cond = match filter {
            Some(f) => f.to_sql(&c.spec, &mut params)?,
            None => "1".to_string(),
        };
        let order = match order {
            Some((col, desc)) => format!(
                "{} {}, _row",
                crate::filter::order_column_sql(&c.spec, col)?,
                if desc { "DESC" } else { "ASC" }
            ),
            None => "_row".to_string(),
        };
        let limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT _row FROM {} WHERE {cond} ORDER BY {order} LIMIT {limit} OFFSET {offset}",
            docs(c.id)
        );
        let mut st = self.tx.prepare(&sql)?;
        let rows = st.query_map(params_from_iter(params.iter()), |r| Ok(r.get::<_, i64>(0)? as u64))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Number of live documents passing `filter` (all for `None`).
    pub fn count_rows(&self, c: &CollectionRow, filter: Option<&Filter>) -> Result<u64> {
        let Some(f) = filter else { return self.doc_count(c.id) };
        let mut params = Vec::new();
        let cond = f.to_sql(&c.spec, &mut params)?;
        let sql = format!("SELECT COUNT(*) FROM {} WHERE {cond}", docs(c.id));
        let n: i64 = self.tx.query_row(&sql, params_from_iter(params.iter()), |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Ids and scalar values of `rows`.
    pub fn fetch(&self, c: &CollectionRow, rows: &[u64]) -> Result<HashMap<u64, RowValues>> {
        let mut out = HashMap::with_capacity(rows.len());
        let cols: String = c.spec.columns.iter().map(|col| format!(", \"{}\"", col.name)).collect();
        let sql = format!("SELECT _row, _id{cols} FROM {} WHERE _row = ?1", docs(c.id));
        let mut st = self.tx.prepare_cached(&sql)?;
        for &row in rows {
            let got = st.query_row([row as i64], |r| row_values(c, r, 1)).optional()?;
            if let Some(v) = got {
                out.insert(row, v);
            }
        }
        Ok(out)
    }

    /// Up to `limit` live documents with a row id above `after`, ascending: where each
    /// lives, its id and scalar values (a full scan in bounded batches: export).
    #[cfg_attr(not(feature = "parquet"), expect(dead_code, reason = "used by EXPORT"))]
    pub fn scan(&self, c: &CollectionRow, after: u64, limit: usize) -> Result<Vec<(DocLoc, RowValues)>> {
        let cols: String = c.spec.columns.iter().map(|col| format!(", \"{}\"", col.name)).collect();
        let sql = format!(
            "SELECT _row, _seg, _id{cols} FROM {} WHERE _row > ?1 ORDER BY _row LIMIT ?2",
            docs(c.id)
        );
        let mut st = self.tx.prepare_cached(&sql)?;
        let rows = st.query_map(params![after as i64, limit as i64], |r| {
            Ok((DocLoc { row: r.get::<_, i64>(0)? as u64, seg: r.get(1)? }, row_values(c, r, 2)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Set scalar columns of document `id`; false when it does not exist.
    pub fn update_values(&self, c: &CollectionRow, id: &DocId, values: &[(String, Value)]) -> Result<bool> {
        if values.is_empty() {
            return Ok(self.locate(c.id, id)?.is_some());
        }
        let sets: Vec<String> =
            values.iter().enumerate().map(|(i, (n, _))| format!("\"{n}\" = ?{}", i + 2)).collect();
        let sql = format!("UPDATE {} SET {} WHERE _id = ?1", docs(c.id), sets.join(", "));
        let mut p: Vec<&dyn ToSql> = vec![id];
        p.extend(values.iter().map(|(_, v)| v as &dyn ToSql));
        Ok(self.tx.execute(&sql, params_from_iter(p))? > 0)
    }
}

/// The catalog file inside a database directory.
pub(crate) fn catalog_path(root: &Path) -> PathBuf {
    root.join(CATALOG_FILE)
}

/// Test hooks on raw catalogs (used through `crate::testing`).
pub(crate) mod hooks {
    use super::{Catalog, Connection, Result};
    use crate::types::CollectionSpec;
    use std::path::Path;

    /// Create a catalog at schema `version` holding collection `spec`.
    pub fn create_at_version(path: &Path, version: u32, spec: &CollectionSpec) -> Result<()> {
        let mut cat = Catalog::open_with_target(path, false, version)?;
        let tx = cat.write()?;
        tx.create_collection(spec)?;
        tx.commit()
    }

    /// Overwrite `PRAGMA user_version`.
    pub fn set_user_version(path: &Path, v: u32) -> Result<()> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "user_version", v)?;
        Ok(())
    }

    /// The schema (`sqlite_master`), one statement per line, sorted.
    pub fn schema(path: &Path) -> Result<String> {
        let conn = Connection::open(path)?;
        let mut st = conn.prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")?;
        let rows: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        Ok(rows.join(";\n") + ";\n")
    }
}
