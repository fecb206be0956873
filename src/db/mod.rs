//! [`Database`]: opening, locking, collections, statistics, integrity checks and garbage
//! collection. Writes live in `write.rs`, reads in `search.rs`.

mod backup;
mod calibrate;
mod candidates;
mod codec;
#[cfg(feature = "embed")]
mod embed;
#[cfg(feature = "embed")]
mod evaluate;
#[cfg(feature = "fulltext")]
mod fulltext;
mod fusion;
mod hopfield;
pub(crate) mod import;
mod index;
#[cfg(feature = "parquet")]
mod parquet;
mod plan;
mod query;
mod refine;
mod rerank;
mod search;
mod sidefile;
mod snapshot;
mod write;

pub use crate::index::hnsw::HnswParams;
pub use backup::BackupReport;
pub use calibrate::{CalibratedSetting, Calibration};
pub use codec::CodecInfo;
#[cfg(feature = "embed")]
pub use evaluate::{EvalOptions, EvalReport, EvalRow};
#[cfg(feature = "fulltext")]
pub use fulltext::FullTextOptions;
pub use hopfield::{HopfieldLookup, HopfieldResult};
pub use import::OnConflict;
pub use index::{IndexInfo, IndexProgress, IndexSpec, MuveraOptions, PlaidOptions};
#[cfg(feature = "parquet")]
pub use parquet::{ExportReport, ImportReport};
pub use query::{
    Fusion, ListRequest, Plan, PlanRecall, Query, Refine, SearchOutput, SearchRequest, StageStats,
    AUTO_EXACT_MAX_DOCS, MAX_LIMIT,
};

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::catalog::{self, Catalog, CollectionRow, SegmentRow};
use crate::error::IoContext;
use crate::storage::segment::SegmentReader;
use crate::types::CollectionSpec;
use crate::{Error, Result};

/// Default number of pending token vectors that triggers an automatic flush.
pub const DEFAULT_FLUSH_THRESHOLD_TOKENS: usize = 262_144;
/// Default token count at which a codes-only collection trains its codec.
pub const DEFAULT_CODEC_MIN_TOKENS: usize = 262_144;

/// Dropping the last handle flushes a collection once `flush_threshold_tokens /
/// CLOSE_FLUSH_FRACTION` token vectors are pending.
const CLOSE_FLUSH_FRACTION: usize = 16;
/// Default time a retired segment file is kept for readers of older snapshots.
pub const DEFAULT_RETIRE_GRACE: Duration = Duration::from_secs(60);

/// Options for opening a database; see [`Database::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct DatabaseBuilder {
    path: PathBuf,
    read_only: bool,
    flush_threshold_tokens: usize,
    retire_grace: Duration,
    flush_on_close: bool,
    codec_min_tokens: usize,
    create_parents: bool,
}

impl DatabaseBuilder {
    /// Open read-only: no write lock is taken, so any number of readers may run beside
    /// one writer process.
    pub fn read_only(mut self, yes: bool) -> Self {
        self.read_only = yes;
        self
    }

    /// Flush pending vectors into a segment once this many token vectors are pending
    /// (default [`DEFAULT_FLUSH_THRESHOLD_TOKENS`]). A single insert batch at least this
    /// large is written straight to a new segment.
    pub fn flush_threshold_tokens(mut self, n: usize) -> Self {
        self.flush_threshold_tokens = n.max(1);
        self
    }

    /// How long files replaced by compaction stay on disk for readers of older snapshots
    /// (default [`DEFAULT_RETIRE_GRACE`]).
    pub fn retire_grace(mut self, d: Duration) -> Self {
        self.retire_grace = d;
        self
    }

    /// A codes-only collection trains its codec once it holds this many token vectors
    /// (default [`DEFAULT_CODEC_MIN_TOKENS`], one full training sample); until then its
    /// segments store f16 vectors, which VACUUM encodes later.
    pub fn codec_min_tokens(mut self, n: usize) -> Self {
        self.codec_min_tokens = n.max(1);
        self
    }

    /// Flush pending vectors when the last handle is dropped (default true): each
    /// collection holding at least 1/16 of the flush threshold pending (16,384 token
    /// vectors by default; fewer stay pending — durable and searched — so that many short
    /// sessions, e.g. one shell `-c INSERT` each, do not leave a segment each).
    /// [`Database::close`] flushes everything.
    pub fn flush_on_close(mut self, yes: bool) -> Self {
        self.flush_on_close = yes;
        self
    }

    /// Create missing parent directories of a new database's directory (default false:
    /// as SQLite, the directory that will hold the database must exist, so a typo in a
    /// path is an error rather than a new tree).
    pub fn create_parents(mut self, yes: bool) -> Self {
        self.create_parents = yes;
        self
    }

    /// Open the database (creating the directory and catalog when writable and absent).
    ///
    /// # Errors
    /// [`Error::Locked`] when another process holds the write lock; [`Error::NotFound`]
    /// for a missing database opened read-only; [`Error::IncompatibleFormat`] for a
    /// catalog written by a newer version; [`Error::Io`] and [`Error::Catalog`].
    pub fn open(self) -> Result<Database> {
        let root = self.path.clone();
        if root.as_os_str().is_empty() {
            return Err(Error::invalid("empty database path: name the database directory, e.g. app.msdb"));
        }
        let cat_path = catalog::catalog_path(&root);
        if root.is_file() {
            return Err(Error::invalid(format!(
                "{} is a file, not a database directory (a maxsimdb database is a directory: \
                 give a new path, e.g. {}.msdb)",
                root.display(),
                root.display()
            )));
        }
        // An existing directory with other files and no catalog is not ours to adopt.
        // (A lone LOCK is what a crash between creating the directory and the catalog
        // leaves behind.)
        let foreign = |d: std::fs::ReadDir| d.flatten().any(|e| e.file_name() != "LOCK");
        if !cat_path.exists() && std::fs::read_dir(&root).is_ok_and(foreign) {
            return Err(Error::invalid(format!(
                "{} is a directory that holds other files and no maxsimdb catalog: refusing to \
                 turn it into a database (give a new or empty directory)",
                root.display()
            )));
        }
        let lock = if self.read_only {
            if !cat_path.exists() {
                return Err(Error::NotFound { kind: "database", name: root.display().to_string() });
            }
            None
        } else {
            if !root.exists() && !self.create_parents {
                if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
                    let msg = format!(
                        "the directory to hold the new database does not exist: create it first (mkdir -p {})",
                        parent.display()
                    );
                    return Err(Error::io(parent, std::io::Error::new(std::io::ErrorKind::NotFound, msg)));
                }
            }
            std::fs::create_dir_all(&root).at(&root)?;
            Some(acquire_lock(&root)?)
        };
        let writer =
            if self.read_only { None } else { Some(Arc::new(Mutex::new(Catalog::open(&cat_path, false)?))) };
        // A read-only open checks the catalog version now rather than at first use.
        let first_reader = Catalog::open(&cat_path, true)?;
        // On read-only media the catalog is read as immutable: keep writers out meanwhile.
        let lock = match lock {
            None if first_reader.immutable() => shared_lock(&root)?,
            lock => lock,
        };
        let inner = Inner {
            root,
            opts: self,
            lock,
            writer,
            readers: Mutex::new(Vec::new()),
            segments: Mutex::new(HashMap::new()),
            parts: Mutex::new(HashMap::new()),
            codecs: Mutex::new(HashMap::new()),
            muveras: Mutex::new(HashMap::new()),
            token_codecs: Mutex::new(HashMap::new()),
            reaper: Mutex::new(None),
            interrupt: Interrupt::default(),
            immutable: first_reader.immutable(),
            #[cfg(feature = "embed")]
            encoders: Mutex::new(HashMap::new()),
            #[cfg(feature = "fulltext")]
            fulltext: Mutex::new(HashMap::new()),
        };
        lock_or(&inner.readers)?.push(first_reader);
        let db = Database { inner: Arc::new(inner) };
        if let Some(wc) = &db.inner.writer {
            let mut w = lock_or(wc)?;
            db.collect_garbage(&mut w, true)?;
            // Derived state catches up with the catalog (after a crash, or a write whose
            // catch-up failed).
            #[cfg(feature = "fulltext")]
            db.fulltext_catch_up_all(&mut w)?;
            drop(w);
            let reaper = Reaper::spawn(db.inner.root.clone(), db.inner.opts.retire_grace, wc.clone());
            *lock_or(&db.inner.reaper)? = reaper;
        }
        Ok(db)
    }
}

/// How long opening waits for the writer lock before reporting [`Error::Locked`]. A lock
/// held by a live writer is not released in this time; the wait covers a lock that is
/// about to go away — e.g. a child process that another thread is spawning inherits the
/// lock's file description between `fork` and `exec` for a moment after this process
/// closed its database.
const LOCK_WAIT: Duration = Duration::from_millis(250);

fn acquire_lock(root: &Path) -> Result<File> {
    let path = root.join("LOCK");
    let f = match std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let hint = format!("{e}: this user cannot write the database; open it read-only (--read-only)");
            return Err(Error::io(&path, std::io::Error::new(e.kind(), hint)));
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    let start = std::time::Instant::now();
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked { path: root.to_path_buf() }),
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
    }
}

/// A shared lock on `root`'s LOCK for a reader of an immutable catalog (a writer takes it
/// exclusively, so none can start while such a reader is open). `None` when there is no
/// LOCK file (and so no writer of this database has ever run here).
fn shared_lock(root: &Path) -> Result<Option<File>> {
    let path = root.join("LOCK");
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    match f.try_lock_shared() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked { path: root.to_path_buf() }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// A handle that interrupts the long operation a [`Database`] is running (IMPORT, CREATE
/// INDEX, BACKUP, EXPORT) at its next batch boundary; what was committed stays. Cheap to clone, `Send`
/// and `Sync`; [`Interrupt::interrupt`] is one atomic store, so a signal handler may call it.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<std::sync::atomic::AtomicBool>);

impl Interrupt {
    /// Ask the running long operation to stop at its next batch boundary.
    pub fn interrupt(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether an interrupt is pending (taking it). Each long operation takes it once as
    /// it starts — an interrupt sent while nothing long ran must not stop the next one —
    /// and then at every batch boundary.
    pub(crate) fn take(&self) -> bool {
        self.0.swap(false, std::sync::atomic::Ordering::SeqCst)
    }
}

/// A cached index part, or why it cannot be used.
type PartEntry = std::result::Result<Arc<sidefile::IndexPart>, String>;

#[track_caller]
fn lock_or<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    m.lock().map_err(|_| Error::poisoned())
}

struct Inner {
    root: PathBuf,
    opts: DatabaseBuilder,
    /// The writer's exclusive LOCK, or a reader's shared one on read-only media.
    #[expect(dead_code, reason = "held for its file lock until the database closes")]
    lock: Option<File>,
    writer: Option<Arc<Mutex<Catalog>>>,
    readers: Mutex<Vec<Catalog>>,
    /// Set by [`Database::interrupt`], taken by the long operation it stops.
    interrupt: Interrupt,
    /// Read from media this process cannot write (the catalog opened `immutable`).
    immutable: bool,
    segments: Mutex<HashMap<i64, Arc<SegmentReader>>>,
    /// Opened index parts (side files, or v2 embedded sections) by (segment file, index
    /// id); `Err` = damaged, searched exactly.
    parts: Mutex<HashMap<(PathBuf, i64), PartEntry>>,
    /// PLAID codecs by index id (immutable once committed).
    codecs: Mutex<HashMap<i64, Arc<crate::index::plaid::Codec>>>,
    /// MUVERA encoders by index id (immutable once committed).
    muveras: Mutex<HashMap<i64, Arc<crate::index::muvera::Muvera>>>,
    /// Token codecs of codes-only collections by codec id (immutable once committed).
    token_codecs: codec::CodecCache,
    /// The background reaper of a writable handle.
    reaper: Mutex<Option<Reaper>>,
    #[cfg(feature = "embed")]
    encoders: Mutex<HashMap<String, Arc<crate::embed::colbert::TokenEncoder>>>,
    /// Opened full-text indexes by collection id.
    #[cfg(feature = "fulltext")]
    fulltext: Mutex<HashMap<i64, Arc<fulltext::FullText>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(r) = self.reaper.get_mut().ok().and_then(Option::take) {
            r.stop();
        }
        let Some(w) = &self.writer else { return };
        let Ok(mut cat) = w.lock() else { return };
        // Best effort: committed writes are durable in the catalog whether or not this
        // flush happens; use `Database::close` to see errors.
        if self.opts.flush_on_close {
            let min = self.opts.flush_threshold_tokens / CLOSE_FLUSH_FRACTION;
            let _ = write::flush_all_at_least(self, &mut cat, min);
        }
        // Idle pooled readers first, so that nothing holds the log open.
        if let Ok(mut readers) = self.readers.lock() {
            readers.clear();
        }
        let _ = cat.checkpoint();
    }
}

/// An open maxsimdb database (a directory). Cheap to clone; all clones share one
/// connection pool and segment cache. `Send + Sync`: share it between threads.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("root", &self.inner.root)
            .field("read_only", &self.inner.opts.read_only)
            .finish()
    }
}

/// Counts and sizes of one collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionStats {
    /// Collection name.
    pub name: String,
    /// Live documents.
    pub docs: u64,
    /// Documents whose vectors are still pending (not yet in a segment).
    pub pending_docs: u64,
    /// Pending token vectors.
    pub pending_tokens: u64,
    /// Segment files.
    pub segments: u64,
    /// Token vectors in segments (including deleted rows not yet compacted).
    pub segment_tokens: u64,
    /// Deleted rows still present in segments.
    pub tombstones: u64,
    /// Bytes of segment files.
    pub segment_bytes: u64,
    /// Bytes on disk per index (`plaid`, `hnsw:<field>`, `muvera`, `fulltext`): side files
    /// (or the embedded sections of format v2 segments) plus the index's state file.
    pub index_bytes: Vec<(String, u64)>,
    /// Bytes of the catalog file (shared by every collection of the database).
    pub catalog_bytes: u64,
}

/// Versions and counters of a database, from its catalog's `meta` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseInfo {
    /// Catalog schema version (`PRAGMA user_version`).
    pub schema_version: u32,
    /// maxsimdb version that created the database.
    pub created_with_version: String,
    /// Number of committed writes so far.
    pub generation: u64,
}

/// Result of [`Database::check`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Segment files verified.
    pub segments_checked: u64,
    /// Bytes of segment files verified.
    pub bytes_checked: u64,
    /// Every problem found (empty when the database is sound).
    pub problems: Vec<String>,
}

impl Database {
    /// Open or create the database at `path` for reading and writing.
    ///
    /// # Errors
    /// As [`DatabaseBuilder::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder(path).open()
    }

    /// Open an existing database read-only.
    ///
    /// # Errors
    /// As [`DatabaseBuilder::open`].
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder(path).read_only(true).open()
    }

    /// Options for opening the database at `path`.
    pub fn builder(path: impl AsRef<Path>) -> DatabaseBuilder {
        DatabaseBuilder {
            path: path.as_ref().to_path_buf(),
            read_only: false,
            flush_threshold_tokens: DEFAULT_FLUSH_THRESHOLD_TOKENS,
            retire_grace: DEFAULT_RETIRE_GRACE,
            flush_on_close: true,
            codec_min_tokens: DEFAULT_CODEC_MIN_TOKENS,
            create_parents: false,
        }
    }

    /// The database directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.root
    }

    /// Whether this handle was opened read-only.
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        self.inner.opts.read_only
    }

    /// Stop the long operation running on this database (`import_file*`, `import_text`,
    /// `create_index`, `backup`, `export_parquet`) at its next batch boundary, with [`Error::Interrupted`]; batches
    /// committed before it stay (the error says how many and how to finish). Callable
    /// from any thread; see [`Database::interrupt_handle`] for signal handlers. With no
    /// long operation running it does nothing (the next one starts afresh).
    pub fn interrupt(&self) {
        self.inner.interrupt.interrupt();
    }

    /// A handle for [`Database::interrupt`] that outlives borrows (e.g. stored for a
    /// Ctrl-C handler).
    #[must_use]
    pub fn interrupt_handle(&self) -> Interrupt {
        self.inner.interrupt.clone()
    }

    /// Whether [`Database::interrupt`] was called since the last check (taking it).
    pub(crate) fn interrupted(&self) -> bool {
        self.inner.interrupt.take()
    }

    /// Flush everything and close. Dropping the last handle does the same but cannot
    /// report errors.
    ///
    /// # Errors
    /// Errors of the final flush.
    pub fn close(self) -> Result<()> {
        if let Some(w) = &self.inner.writer {
            write::flush_all(&self.inner, &mut *lock_or(w)?)?;
        }
        Ok(())
    }

    fn writer(&self) -> Result<MutexGuard<'_, Catalog>> {
        lock_or(self.inner.writer.as_ref().ok_or(Error::ReadOnly)?)
    }

    /// Run `f` on a pooled read-only catalog connection.
    fn with_reader<T>(&self, f: impl FnOnce(&mut Catalog) -> Result<T>) -> Result<T> {
        let pooled = lock_or(&self.inner.readers)?.pop();
        let mut cat = match pooled {
            Some(c) => c,
            None => Catalog::open(&catalog::catalog_path(&self.inner.root), true)?,
        };
        let out = f(&mut cat);
        lock_or(&self.inner.readers)?.push(cat);
        out
    }

    /// Open (or take from the cache) the reader of a manifest segment.
    fn segment(&self, c: &CollectionRow, s: &SegmentRow) -> Result<Arc<SegmentReader>> {
        if let Some(r) = lock_or(&self.inner.segments)?.get(&s.id) {
            return Ok(r.clone());
        }
        let r = Arc::new(SegmentReader::open(&self.inner.root.join(&s.file), s.id as u64, &c.spec.vectors)?);
        if r.is_codes() {
            let rows = self.with_reader(|cat| cat.read()?.token_codecs(c.id))?;
            codec::attach(&self.inner, &r, &rows)?;
        }
        lock_or(&self.inner.segments)?.insert(s.id, r.clone());
        Ok(r)
    }

    /// Create a collection.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for bad names or dimensions, [`Error::AlreadyExists`],
    /// [`Error::ReadOnly`].
    pub fn create_collection(&self, spec: &CollectionSpec) -> Result<()> {
        #[cfg_attr(not(feature = "embed"), allow(unused_mut))]
        let mut spec = spec.clone();
        if spec.embedding.is_some() {
            #[cfg(feature = "embed")]
            self.complete_embedding_spec(&mut spec)?;
            #[cfg(not(feature = "embed"))]
            return Err(Error::NotAvailable("embedding models need the `embed` cargo feature".into()));
        }
        let spec = &spec;
        spec.validate()?;
        let mut w = self.writer()?;
        let tx = w.write()?;
        tx.create_collection(spec)?;
        tx.bump_generation()?;
        tx.commit()
    }

    /// Drop a collection and all its documents. Its segment files are retired and deleted
    /// after the grace period.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::ReadOnly`].
    pub fn drop_collection(&self, name: &str) -> Result<()> {
        let mut w = self.writer()?;
        let c = {
            let tx = w.write()?;
            let c = tx.collection(name)?;
            for s in tx.drop_collection(&c)? {
                tx.retire(&s.file)?;
            }
            tx.bump_generation()?;
            tx.commit()?;
            c
        };
        #[cfg(feature = "fulltext")]
        self.fulltext_forget(c.id)?;
        let _ = c;
        self.collect_garbage(&mut w, false)
    }

    /// Versions and the write generation of the database.
    ///
    /// # Errors
    /// Catalog errors.
    pub fn info(&self) -> Result<DatabaseInfo> {
        self.with_reader(|c| {
            let tx = c.read()?;
            let get = |k: &str| tx.meta(k).map(Option::unwrap_or_default);
            Ok(DatabaseInfo {
                schema_version: get("format_version")?.parse().unwrap_or(0),
                created_with_version: get("created_with_version")?,
                generation: get("generation")?.parse().unwrap_or(0),
            })
        })
    }

    /// Every collection's spec, by name.
    ///
    /// # Errors
    /// Catalog errors.
    pub fn collections(&self) -> Result<Vec<CollectionSpec>> {
        self.with_reader(|c| Ok(c.read()?.collections()?.into_iter().map(|r| r.spec).collect()))
    }

    /// The spec of collection `name`.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub fn describe(&self, name: &str) -> Result<CollectionSpec> {
        self.with_reader(|c| Ok(c.read()?.collection(name)?.spec))
    }

    /// Counts and sizes of collection `name`.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub fn stats(&self, name: &str) -> Result<CollectionStats> {
        self.with_reader(|c| {
            let tx = c.read()?;
            let coll = tx.collection(name)?;
            let segs = tx.segments(coll.id)?;
            let (pending_docs, pending_tokens) = tx.pending_stats(coll.id)?;
            let docs = tx.doc_count(coll.id)?;
            let tombstones = tx.tombstone_count(coll.id)?;
            drop(tx);
            let catalog_bytes = c.file_bytes()?;
            Ok(CollectionStats {
                name: coll.spec.name.clone(),
                docs,
                pending_docs,
                pending_tokens,
                segments: segs.len() as u64,
                segment_tokens: segs.iter().map(|s| s.token_count as u64).sum(),
                tombstones,
                segment_bytes: segs.iter().map(|s| s.bytes as u64).sum(),
                index_bytes: Vec::new(),
                catalog_bytes,
            })
        })
        .and_then(|mut st| {
            st.index_bytes = self.indexes(name)?.into_iter().map(|i| (i.kind, i.bytes)).collect();
            Ok(st)
        })
    }

    /// Verify every checksum of every segment, of every full-text index, and the
    /// catalog's integrity. A full-text index that fails is rebuilt from the catalog when
    /// the handle is writable (the report says so).
    ///
    /// # Errors
    /// Only errors that prevent checking at all; damage is reported in the report.
    pub fn check(&self) -> Result<CheckReport> {
        #[cfg_attr(not(feature = "fulltext"), expect(unused_mut, reason = "extended by the full-text check"))]
        let mut report = self.check_segments()?;
        #[cfg(feature = "fulltext")]
        for c in self.with_reader(|cat| cat.read()?.collections())? {
            report.problems.extend(self.fulltext_check(&c)?);
        }
        Ok(report)
    }

    fn check_segments(&self) -> Result<CheckReport> {
        self.with_reader(|cat| {
            let mut report = CheckReport { problems: cat.integrity_check()?, ..CheckReport::default() };
            let tx = cat.read()?;
            for coll in tx.collections()? {
                let defs = index::index_defs(&self.inner, &tx, &coll);
                let sides = tx.side_files(coll.id)?;
                let codecs = tx.token_codecs(coll.id)?;
                for s in tx.segments(coll.id)? {
                    let path = self.inner.root.join(&s.file);
                    let opened = SegmentReader::open(&path, s.id as u64, &coll.spec.vectors)
                        .and_then(|r| codec::attach(&self.inner, &r, &codecs).map(|()| Arc::new(r)));
                    report.segments_checked += 1;
                    report.bytes_checked += s.bytes as u64;
                    let problem = match &opened {
                        Ok(r) => r.verify_all().err().map(|e| e.to_string()),
                        Err(e) => Some(e.to_string()),
                    };
                    report.problems.extend(problem);
                    let (Ok(r), Ok(defs)) = (&opened, &defs) else { continue };
                    for d in defs {
                        let side = sides.iter().find(|f| f.segment_id == s.id && f.index_id == d.id());
                        match sidefile::check_part(&self.inner, r, d, side) {
                            Ok(_) => report.bytes_checked += side.map_or(0, |f| f.bytes as u64),
                            Err(e) => report.problems.push(format!(
                                "{e} (index {} of segment {}: that segment is searched exactly)",
                                d.ext(),
                                s.id
                            )),
                        }
                    }
                }
                if let Err(e) = defs {
                    report.problems.push(e.to_string());
                }
            }
            Ok(report)
        })
    }

    /// Delete retired files past their grace period and, at open, files that neither the
    /// manifest nor the retired list names.
    fn collect_garbage(&self, cat: &mut Catalog, at_open: bool) -> Result<()> {
        let tx = cat.write()?;
        let manifest: HashSet<String> = tx.manifest_files()?.into_iter().collect();
        let keep = reap_retired(&tx, &self.inner.root, self.inner.opts.retire_grace)?;
        if at_open {
            self.remove_unknown_files(&manifest, &keep)?;
        }
        tx.commit()?;
        let live = |path: &Path| {
            let rel = path.strip_prefix(&self.inner.root).map(|p| p.to_string_lossy().into_owned());
            rel.is_ok_and(|p| manifest.contains(&p))
        };
        lock_or(&self.inner.segments)?.retain(|_, r| live(r.path()));
        lock_or(&self.inner.parts)?.retain(|(seg, _), _| live(seg));
        Ok(())
    }

    /// Remove files under `segments/` that are neither in the manifest nor retired:
    /// leftovers of flushes or compactions that crashed before their commit.
    fn remove_unknown_files(&self, manifest: &HashSet<String>, retired: &HashSet<String>) -> Result<()> {
        let seg_root = self.inner.root.join("segments");
        let Ok(dirs) = std::fs::read_dir(&seg_root) else { return Ok(()) };
        for dir in dirs.flatten() {
            let Ok(files) = std::fs::read_dir(dir.path()) else { continue };
            for f in files.flatten() {
                let path = f.path();
                let rel = path.strip_prefix(&self.inner.root).map(|p| p.to_string_lossy().into_owned());
                if rel.is_ok_and(|r| !manifest.contains(&r) && !retired.contains(&r)) {
                    remove_file(&path)?;
                }
            }
        }
        Ok(())
    }
}

/// Delete the retired files of `tx`'s catalog whose grace period has passed and forget
/// them; returns the ones still waiting.
fn reap_retired(tx: &catalog::Txn<'_>, root: &Path, grace: Duration) -> Result<HashSet<String>> {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let grace = grace.as_secs() as i64;
    let mut keep: HashSet<String> = HashSet::new();
    for (file, at) in tx.retired()? {
        if now - at >= grace {
            remove_file(&root.join(&file))?;
            tx.forget_retired(&file)?;
        } else {
            keep.insert(file);
        }
    }
    Ok(keep)
}

/// The writer's background reaper: deletes retired files once their grace period has
/// passed, so that space comes back without another write or a reopen. It shares the
/// writer's catalog connection (taking it only when no write holds it) and is stopped and
/// joined first thing when the database closes.
struct Reaper {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Reaper {
    fn spawn(root: PathBuf, grace: Duration, writer: Arc<Mutex<Catalog>>) -> Option<Self> {
        let period = (grace / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let halt = stop.clone();
        let run = move || {
            while !halt.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::park_timeout(period);
                let Ok(mut cat) = writer.try_lock() else { continue };
                let _ = cat.write().and_then(|tx| {
                    if tx.has_retired()? {
                        reap_retired(&tx, &root, grace)?;
                    }
                    tx.commit()
                });
            }
        };
        let thread = std::thread::Builder::new().name("maxsimdb-reaper".into()).spawn(run).ok()?;
        Some(Self { stop, thread })
    }

    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}
