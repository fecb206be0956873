//! The crate's single error type and its stable numeric codes.
//!
//! Refer to results as `crate::Result<T>`. Every variant carries typed data; the
//! message is rendered by `Display`. [`Error::code`] gives the stable integer that the
//! C API returns and the CLI uses as its exit status.

use std::path::{Path, PathBuf};

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in maxsimdb.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A vector has the wrong number of components.
    #[error("dimension mismatch for {what}: expected {expected}, got {got}")]
    DimensionMismatch {
        /// What was checked (e.g. `token vectors`, `pooled vector 'mean'`).
        what: String,
        /// Dimension the collection declares.
        expected: usize,
        /// Dimension that was supplied.
        got: usize,
    },
    /// An argument is malformed or out of range; the message says what to do.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A named object does not exist.
    #[error("{kind} '{name}' not found")]
    NotFound {
        /// Kind of object (`collection`, `column`, `document`, ...).
        kind: &'static str,
        /// Its name or id.
        name: String,
    },
    /// A named object already exists (duplicate collection name, duplicate document id).
    #[error("{kind} '{name}' already exists")]
    AlreadyExists {
        /// Kind of object.
        kind: &'static str,
        /// Its name or id.
        name: String,
    },
    /// A file on disk failed validation: bad magic, checksum mismatch, truncation.
    #[error("corruption in {}: {detail}", path.display())]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// A file or database was written by an unsupported format version.
    #[error("incompatible format of {}: version {found}, this build supports {oldest}..={newest}", path.display())]
    IncompatibleFormat {
        /// File or database directory.
        path: PathBuf,
        /// Version found on disk.
        found: u32,
        /// Oldest version this build reads.
        oldest: u32,
        /// Newest version this build reads and writes.
        newest: u32,
    },
    /// Another process holds the write lock of the database.
    #[error("database is locked: another process has {} open for writing (open it read-only, or close the other writer)", path.display())]
    Locked {
        /// Database directory.
        path: PathBuf,
    },
    /// A write was attempted on a database opened read-only.
    #[error("database is open read-only: to write, open it without --read-only (Rust: Database::open)")]
    ReadOnly,
    /// The operation needs a feature this build or this collection does not have.
    #[error("not available: {0}")]
    NotAvailable(String),
    /// An operating-system I/O error, with the file it concerns.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// File or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An error reported by the SQLite catalog. (SQLite's "corrupt" and "not a database"
    /// become [`Error::Corruption`] of `catalog.sqlite`.)
    #[error("catalog error: {0}")]
    Catalog(#[source] rusqlite::Error),
    /// A JSON value could not be encoded or decoded.
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
    /// A statement of the SQL-like language does not parse.
    #[error("syntax error at line {line}, column {column}: {message}\n  in: {statement}")]
    Syntax {
        /// What was expected or found.
        message: String,
        /// The statement (from its start).
        statement: String,
        /// Line of the error, from 1.
        line: u64,
        /// Column of the error, from 1.
        column: u64,
    },
    /// An API was called out of order or with a null, closed or foreign handle (the C
    /// API's `MSDB_MISUSE`); the message names the call and the argument.
    #[error("misuse: {0}")]
    Misuse(String),
    /// A long operation stopped at a batch boundary because [`crate::Database::interrupt`]
    /// was called (Ctrl-C in the shell); the message says what was kept and how to finish.
    #[error("interrupted: {0}")]
    Interrupted(String),
    /// The object is still in use (the C API's `MSDB_BUSY`: closing a database handle that
    /// has live statements or cursors); the message says what to finalize.
    #[error("busy: {0}")]
    Busy(String),
    /// An internal failure (a panic caught at the C API boundary).
    #[error("internal error: {0}")]
    Internal(String),
    /// A lock was poisoned by a panic in another thread.
    #[error("internal lock poisoned at {0}")]
    LockPoisoned(&'static std::panic::Location<'static>),
}

/// Stable numeric error codes (C status codes, CLI exit statuses). Never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Success.
    Ok = 0,
    /// Internal error (lock poisoning, unexpected state).
    Internal = 1,
    /// Invalid argument.
    InvalidArgument = 2,
    /// Dimension mismatch.
    DimensionMismatch = 3,
    /// Object not found.
    NotFound = 4,
    /// Object already exists.
    AlreadyExists = 5,
    /// Corrupted file.
    Corruption = 6,
    /// Incompatible format version.
    IncompatibleFormat = 7,
    /// Database locked by another writer.
    Locked = 8,
    /// Database opened read-only.
    ReadOnly = 9,
    /// I/O error.
    Io = 10,
    /// Catalog (SQLite) error.
    Catalog = 11,
    /// Feature not available.
    NotAvailable = 12,
    /// Statement syntax error.
    Syntax = 13,
    /// API misuse: a null pointer, a closed handle, a call out of order (C API).
    Misuse = 14,
    /// A long operation was interrupted (Ctrl-C, `Database::interrupt`).
    Interrupted = 15,
    /// Still in use: a database handle with live statements or cursors (C API close).
    Busy = 16,
}

impl Error {
    /// The stable code of this error.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::DimensionMismatch { .. } => ErrorCode::DimensionMismatch,
            Error::InvalidArgument(_) | Error::Json(_) => ErrorCode::InvalidArgument,
            Error::NotFound { .. } => ErrorCode::NotFound,
            Error::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            Error::Corruption { .. } => ErrorCode::Corruption,
            Error::IncompatibleFormat { .. } => ErrorCode::IncompatibleFormat,
            Error::Locked { .. } => ErrorCode::Locked,
            Error::ReadOnly => ErrorCode::ReadOnly,
            Error::NotAvailable(_) => ErrorCode::NotAvailable,
            Error::Io { .. } => ErrorCode::Io,
            Error::Catalog(_) => ErrorCode::Catalog,
            Error::Syntax { .. } => ErrorCode::Syntax,
            Error::Misuse(_) => ErrorCode::Misuse,
            Error::Interrupted(_) => ErrorCode::Interrupted,
            Error::Busy(_) => ErrorCode::Busy,
            Error::LockPoisoned(_) | Error::Internal(_) => ErrorCode::Internal,
        }
    }

    /// A corruption error for `path`.
    pub(crate) fn corruption(path: &Path, detail: impl Into<String>) -> Self {
        Error::Corruption { path: path.to_path_buf(), detail: detail.into() }
    }

    /// An invalid-argument error.
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    /// An I/O error on `path`.
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.to_path_buf(), source }
    }

    /// A lock-poisoning error recorded at the caller's location.
    #[track_caller]
    pub(crate) fn poisoned() -> Self {
        Error::LockPoisoned(std::panic::Location::caller())
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
        match &e {
            rusqlite::Error::SqliteFailure(f, _) if matches!(f.code, DatabaseCorrupt | NotADatabase) => {
                Error::Corruption {
                    path: PathBuf::from("catalog.sqlite"),
                    detail: format!("{e}: the catalog is damaged; restore the database from a backup"),
                }
            }
            _ => Error::Catalog(e),
        }
    }
}

/// Attach a path to `std::io::Result`s.
pub(crate) trait IoContext<T> {
    /// Map the error into [`Error::Io`] naming `path`.
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
