//! The C API (cargo feature `capi`): the `extern "C"` surface that `bindings/c/include/maxsimdb.h`
//! declares (generated from this module by cbindgen; see `bindings/c/README.md`).
//!
//! Rules every entry point follows:
//! - It returns an `int` status: `MSDB_OK` (0), one of the crate's stable [`crate::ErrorCode`]s,
//!   `MSDB_MISUSE` for a NULL argument or a closed handle, or `MSDB_ROW` / `MSDB_DONE` from
//!   `msdb_stmt_step`. Values come back through out-pointers.
//! - It checks every pointer before use and runs its body under `catch_unwind`: a panic
//!   becomes `MSDB_INTERNAL` with its message and never unwinds into C.
//! - Handles (`msdb_db *`, `msdb_stmt *`) are opaque tokens, never dereferenced: each is a
//!   key in a process-wide registry, issued once and never reused. A NULL, closed or
//!   foreign handle is therefore detected (`MSDB_MISUSE`) instead of being undefined
//!   behaviour, and closing twice is an error, not a double free.
//! - The message of a failed call is kept per handle (`msdb_db_errmsg`, `msdb_stmt_errmsg`)
//!   and per thread (`msdb_last_errmsg`); the copies these return, like every string the
//!   library allocates, are released with `msdb_free`.
//!
//! The safety contract for callers: pointers passed in are either NULL or valid for the
//! documented length, for the duration of the call; strings are NUL-terminated UTF-8.
#![allow(non_camel_case_types, reason = "C type names")]

mod db;
mod docs;
mod stmt;

pub use db::*;
pub use docs::*;
pub use stmt::*;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{Error, Result};

/// Major version of the library (also `msdb_version()`).
pub const MSDB_VERSION_MAJOR: u32 = 0;
/// Minor version of the library.
pub const MSDB_VERSION_MINOR: u32 = 1;
/// Patch version of the library.
pub const MSDB_VERSION_PATCH: u32 = 0;
/// `MAJOR × 1,000,000 + MINOR × 1,000 + PATCH` of the header (compare with
/// `msdb_version_number()` at run time).
pub const MSDB_VERSION_NUMBER: u32 = 1_000;

// Status codes: the values of `ErrorCode` (literals, so cbindgen can write them; the test
// `status_codes_are_the_error_codes` keeps them equal).

/// Success.
pub const MSDB_OK: c_int = 0;
/// Internal error (a caught panic, a poisoned lock).
pub const MSDB_INTERNAL: c_int = 1;
/// An argument is malformed or out of range; the message says what to do.
pub const MSDB_INVALID_ARGUMENT: c_int = 2;
/// A vector has the wrong dimension for the collection.
pub const MSDB_DIMENSION_MISMATCH: c_int = 3;
/// A collection, column, document or index does not exist.
pub const MSDB_NOT_FOUND: c_int = 4;
/// A collection or document id already exists.
pub const MSDB_ALREADY_EXISTS: c_int = 5;
/// A file failed validation (checksum, truncation).
pub const MSDB_CORRUPTION: c_int = 6;
/// The database was written by an unsupported format version.
pub const MSDB_INCOMPATIBLE_FORMAT: c_int = 7;
/// Another process holds the database open for writing.
pub const MSDB_LOCKED: c_int = 8;
/// A write on a database opened read-only.
pub const MSDB_READ_ONLY: c_int = 9;
/// An operating-system I/O error.
pub const MSDB_IO: c_int = 10;
/// An error of the SQLite catalog.
pub const MSDB_CATALOG: c_int = 11;
/// The operation needs a feature this build or collection lacks.
pub const MSDB_NOT_AVAILABLE: c_int = 12;
/// A statement does not parse; the message has the line and column.
pub const MSDB_SYNTAX: c_int = 13;
/// A NULL pointer, a closed or foreign handle, or a call out of order.
pub const MSDB_MISUSE: c_int = 14;
/// A long operation was interrupted; the message says what was kept.
pub const MSDB_INTERRUPTED: c_int = 15;
/// The handle is still in use: `msdb_db_close` on a handle with live statements or
/// cursors (finalize them, or use `msdb_db_close_v2`).
pub const MSDB_BUSY: c_int = 16;
/// `msdb_stmt_step`: a row is ready to be read.
pub const MSDB_ROW: c_int = 100;
/// `msdb_stmt_step`: the statement has run and has no more rows.
pub const MSDB_DONE: c_int = 101;

/// The library's version, `"MAJOR.MINOR.PATCH"` (static; do not free).
#[no_mangle]
pub extern "C" fn msdb_version() -> *const c_char {
    const V: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => panic!("version has a NUL"),
    };
    V.as_ptr()
}

/// The library's version as `MAJOR × 1,000,000 + MINOR × 1,000 + PATCH`, to compare with
/// the header's `MSDB_VERSION_NUMBER` (a program built against a newer header than the
/// library it runs with may use structs this library does not know).
#[no_mangle]
pub extern "C" fn msdb_version_number() -> u32 {
    MSDB_VERSION_MAJOR * 1_000_000 + MSDB_VERSION_MINOR * 1_000 + MSDB_VERSION_PATCH
}

/// Join the library's worker threads (as `sqlite3_shutdown`), so that nothing of the
/// library is left running — for leak checkers and for programs that unload it. Every
/// database handle, statement, document and cursor must be released first (`MSDB_BUSY`
/// naming what is still open otherwise). A later call into the library starts the workers
/// again. Not thread-safe with other calls: call it when no other thread uses the library.
#[no_mangle]
pub extern "C" fn msdb_shutdown() -> c_int {
    let r = (|| {
        let reg = lock(&REGISTRY);
        let live = [
            (reg.dbs.len(), "database handle"),
            (reg.stmts.len(), "statement"),
            (reg.docs.len(), "document"),
            (reg.cursors.len(), "cursor"),
        ];
        let open: Vec<String> = live
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}{}", if *n == 1 { "" } else { "s" }))
            .collect();
        drop(reg);
        if !open.is_empty() {
            return Err(Error::Busy(format!(
                "msdb_shutdown: {} still open: close, finalize or free them first",
                open.join(", ")
            )));
        }
        let Some(p) = lock(&POOL).take() else { return Ok(MSDB_OK) };
        let p = match Arc::try_unwrap(p) {
            Ok(p) => p,
            Err(p) => {
                *lock(&POOL) = Some(p);
                return Err(Error::Busy("msdb_shutdown: a call into the library is still running".into()));
            }
        };
        let threads = std::mem::take(&mut *lock(&p.threads));
        drop(p.pool); // the workers finish their loops and exit
        for t in threads {
            t.join().map_err(|_| Error::Internal("msdb_shutdown: a worker thread panicked".into()))?;
        }
        // The workers' work-stealing deques registered each thread with crossbeam-epoch's
        // global collector; an exited thread's entry is unlinked and freed only when
        // another thread walks that list. Walk it now (a few epochs, so the deferred frees
        // run), leaving nothing of the workers behind.
        for _ in 0..4 {
            crossbeam_epoch::pin().flush();
        }
        Ok(MSDB_OK)
    })();
    status(&r)
}

/// The name of a status code (`"MSDB_NOT_FOUND"`), or `"MSDB_UNKNOWN"` (static; do not free).
#[no_mangle]
pub extern "C" fn msdb_status_name(status: c_int) -> *const c_char {
    let name: &'static CStr = match status {
        MSDB_OK => c"MSDB_OK",
        MSDB_INTERNAL => c"MSDB_INTERNAL",
        MSDB_INVALID_ARGUMENT => c"MSDB_INVALID_ARGUMENT",
        MSDB_DIMENSION_MISMATCH => c"MSDB_DIMENSION_MISMATCH",
        MSDB_NOT_FOUND => c"MSDB_NOT_FOUND",
        MSDB_ALREADY_EXISTS => c"MSDB_ALREADY_EXISTS",
        MSDB_CORRUPTION => c"MSDB_CORRUPTION",
        MSDB_INCOMPATIBLE_FORMAT => c"MSDB_INCOMPATIBLE_FORMAT",
        MSDB_LOCKED => c"MSDB_LOCKED",
        MSDB_READ_ONLY => c"MSDB_READ_ONLY",
        MSDB_IO => c"MSDB_IO",
        MSDB_CATALOG => c"MSDB_CATALOG",
        MSDB_NOT_AVAILABLE => c"MSDB_NOT_AVAILABLE",
        MSDB_SYNTAX => c"MSDB_SYNTAX",
        MSDB_MISUSE => c"MSDB_MISUSE",
        MSDB_INTERRUPTED => c"MSDB_INTERRUPTED",
        MSDB_BUSY => c"MSDB_BUSY",
        MSDB_ROW => c"MSDB_ROW",
        MSDB_DONE => c"MSDB_DONE",
        _ => c"MSDB_UNKNOWN",
    };
    name.as_ptr()
}

/// Release a string the library allocated (error messages, hit ids). NULL is a no-op.
///
/// # Safety
/// `p` is NULL or a pointer returned by this library as "free with `msdb_free`", not
/// yet freed.
#[no_mangle]
pub unsafe extern "C" fn msdb_free(p: *mut c_char) {
    if !p.is_null() {
        // SAFETY: the caller passes a pointer from `CString::into_raw` (every string this
        // library hands out for freeing is made by `alloc_string`), freed once.
        drop(unsafe { CString::from_raw(p) });
    }
}

/// The message of the calling thread's last failed call (any handle, or none: a failed
/// open, a NULL handle), or NULL if none failed. Free it with `msdb_free`.
#[no_mangle]
pub extern "C" fn msdb_last_errmsg() -> *mut c_char {
    LAST_ERROR.with(|l| l.borrow().errmsg())
}

/// The message of the calling thread's last failed call, lent (do not free): valid until
/// the thread's next call into the library. NULL if none failed.
#[no_mangle]
pub extern "C" fn msdb_last_errmsg_ref() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().borrowed())
}

/// The last error of a handle or thread.
#[derive(Debug, Default, Clone)]
struct LastError {
    code: c_int,
    /// The message, NUL-terminated (what `msdb_errmsg` lends and `msdb_*_errmsg` copy).
    message: Option<CString>,
}

impl LastError {
    fn set(&mut self, code: c_int, e: Option<&Error>) {
        self.code = code;
        self.message = e.and_then(|e| nul_terminated(&e.to_string()));
    }

    /// A copy of the message for the caller to free.
    fn errmsg(&self) -> *mut c_char {
        self.message.clone().map_or(std::ptr::null_mut(), CString::into_raw)
    }

    /// The message itself, lent until it is next set.
    fn borrowed(&self) -> *const c_char {
        self.message.as_ref().map_or(std::ptr::null(), |m| m.as_ptr())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> = RefCell::new(LastError::default());
}

/// A copy of `s` for C, freed with `msdb_free` (interior NULs become `\0` text).
fn alloc_string(s: &str) -> *mut c_char {
    nul_terminated(s).map_or(std::ptr::null_mut(), CString::into_raw)
}

fn nul_terminated(s: &str) -> Option<CString> {
    CString::new(s.replace('\0', "\\0")).ok()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // State behind these locks stays consistent across a caught panic (every update is a
    // single assignment), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Handles issued and not yet closed, by their token.
struct Registry {
    next: usize,
    dbs: BTreeMap<usize, Arc<db::DbHandle>>,
    stmts: BTreeMap<usize, Arc<stmt::StmtHandle>>,
    docs: BTreeMap<usize, Arc<docs::DocData>>,
    cursors: BTreeMap<usize, Arc<docs::CursorData>>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    dbs: BTreeMap::new(),
    stmts: BTreeMap::new(),
    docs: BTreeMap::new(),
    cursors: BTreeMap::new(),
});

impl Registry {
    /// A fresh token: never 0, never reused, aligned like a pointer.
    fn token(&mut self) -> usize {
        self.next += 1;
        0x1000 + self.next * 16
    }
}

fn misuse(msg: impl Into<String>) -> Error {
    Error::Misuse(msg.into())
}

/// Status of a call's result, recorded as the thread's last error.
fn status(r: &Result<c_int>) -> c_int {
    let code = match r {
        Ok(c) => *c,
        Err(e) => e.code() as c_int,
    };
    LAST_ERROR.with(|l| l.borrow_mut().set(code, r.as_ref().err()));
    code
}

/// The worker threads the C API computes on: a library-owned rayon pool (one thread per
/// core) whose threads `msdb_shutdown` can join — rayon's global pool lives until the
/// process exits. Started at the first call that needs it (again after a shutdown).
struct LibPool {
    pool: rayon::ThreadPool,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

static POOL: Mutex<Option<Arc<LibPool>>> = Mutex::new(None);

fn lib_pool() -> Result<Arc<LibPool>> {
    let mut slot = lock(&POOL);
    if let Some(p) = slot.as_ref() {
        return Ok(Arc::clone(p));
    }
    let threads = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&threads);
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("maxsimdb-worker-{i}"))
        .spawn_handler(move |t| {
            let mut b = std::thread::Builder::new();
            if let Some(name) = t.name() {
                b = b.name(name.to_owned());
            }
            if let Some(size) = t.stack_size() {
                b = b.stack_size(size);
            }
            lock(&keep).push(b.spawn(|| t.run())?);
            Ok(())
        })
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the worker threads: {e}")))?;
    let handles = std::mem::take(&mut *lock(&threads));
    let p = Arc::new(LibPool { pool, threads: Mutex::new(handles) });
    *slot = Some(Arc::clone(&p));
    Ok(p)
}

/// A value moved to a pool thread while the thread that owns it waits for the result.
struct AssertSend<T>(T);
// SAFETY: used only by `on_pool`, whose caller blocks in `install` until the closure has
// run: the closure's borrows (raw pointers the C caller keeps valid for the call, a
// statement's lock guard held by the waiting thread) are used by one thread at a time.
unsafe impl<T> Send for AssertSend<T> {}

impl<T> AssertSend<T> {
    fn into_inner(self) -> T {
        self.0
    }
}

/// Run `f` on the library's worker pool (so its parallel work runs on threads
/// `msdb_shutdown` joins), as [`guarded`]. The calling thread waits; a call made from a
/// pool thread runs inline. For calls that may compute in parallel (database calls, a
/// statement's run); accessors stay on the caller's thread.
fn on_pool(what: &str, f: impl FnOnce() -> Result<c_int>) -> Result<c_int> {
    let pool = lib_pool()?;
    let job = AssertSend(f);
    pool.pool
        .install(move || {
            let f = job.into_inner();
            AssertSend(guarded(what, f))
        })
        .into_inner()
}

/// Run `f`, turning a panic into [`Error::Internal`] with the panic's message.
fn guarded(what: &str, f: impl FnOnce() -> Result<c_int>) -> Result<c_int> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(Error::Internal(format!("{what} panicked: {msg}")))
    })
}

/// A NUL-terminated UTF-8 argument.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the call.
unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(misuse(format!("{what} is NULL")));
    }
    // SAFETY: non-null, and the caller guarantees a NUL-terminated string.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| Error::invalid(format!("{what} is not valid UTF-8")))
}

/// An optional string argument (NULL → `None`).
///
/// # Safety
/// As [`text`].
unsafe fn opt_text<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { text(p, what) }.map(Some)
    }
}

/// `len` elements at `p` (NULL is allowed only when `len` is 0).
///
/// # Safety
/// `p` is NULL or valid for `len` reads of `T` for the call.
unsafe fn slice<'a, T>(p: *const T, len: usize, what: &str) -> Result<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(misuse(format!("{what} is NULL but its length is {len}")));
    }
    if !p.is_aligned() {
        return Err(misuse(format!("{what} is not aligned for its element type")));
    }
    if len.checked_mul(std::mem::size_of::<T>()).is_none_or(|b| b > isize::MAX as usize) {
        return Err(Error::invalid(format!("{what}: length {len} is too large")));
    }
    // SAFETY: non-null, aligned, size fits isize; the caller guarantees `len` valid elements.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Store `v` through an out-pointer.
///
/// # Safety
/// `p` is NULL or valid for one write of `T`.
unsafe fn put<T>(p: *mut T, v: T, what: &str) -> Result<()> {
    if p.is_null() {
        return Err(misuse(format!("{what} is NULL")));
    }
    // SAFETY: non-null, and the caller guarantees it is writable (write_unaligned: no
    // alignment assumption about caller memory).
    unsafe { p.write_unaligned(v) };
    Ok(())
}

/// A struct the caller fills whose first field is its `size` (`sizeof` in the caller's
/// header): the library reads the fields that fit in `size` and treats the rest as zero,
/// so a program built against an older header keeps working.
///
/// # Safety
/// Implementors are `repr(C)`, start with a `usize` size field, and are valid when zeroed.
unsafe trait SizedStruct: Copy {}

/// Read one sized struct at `p` (see [`SizedStruct`]).
///
/// # Safety
/// `p` is NULL or points to `size` readable bytes starting with the `size` field.
unsafe fn read_sized<T: SizedStruct>(p: *const T, what: &str) -> Result<T> {
    if p.is_null() {
        return Err(misuse(format!("{what} is NULL")));
    }
    // SAFETY: the first field is a usize (trait contract); read unaligned.
    let size = unsafe { p.cast::<usize>().read_unaligned() };
    // SAFETY: forwarded contract.
    unsafe { read_sized_at(p.cast::<u8>(), size, what) }
}

/// # Safety
/// `p` points to `size` readable bytes.
unsafe fn read_sized_at<T: SizedStruct>(p: *const u8, size: usize, what: &str) -> Result<T> {
    let ty = std::any::type_name::<T>().rsplit("::").next().unwrap_or("struct");
    if size < std::mem::size_of::<usize>() {
        return Err(misuse(format!("{what}.size is {size}: set it to sizeof({ty})")));
    }
    if size > std::mem::size_of::<T>() {
        return Err(Error::invalid(format!(
            "{what}.size is {size}, larger than this library's {ty} ({} bytes): the program was built against a newer header than the library it runs with",
            std::mem::size_of::<T>()
        )));
    }
    let mut out = std::mem::MaybeUninit::<T>::zeroed();
    // SAFETY: `size` bytes are readable (caller contract) and fit in `T`; a zeroed `T`
    // is valid (trait contract) and so is one with a prefix copied from a caller's `T`.
    unsafe {
        std::ptr::copy_nonoverlapping(p, out.as_mut_ptr().cast::<u8>(), size);
        Ok(out.assume_init())
    }
}

/// Read `n` sized structs laid out at the caller's stride (the first element's `size`;
/// every element must carry the same).
///
/// # Safety
/// `p` is NULL (with `n` 0) or points to `n` elements of the caller's struct.
unsafe fn read_sized_array<T: SizedStruct>(p: *const T, n: usize, what: &str) -> Result<Vec<T>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if p.is_null() {
        return Err(misuse(format!("{what} is NULL but its length is {n}")));
    }
    // SAFETY: the first element starts with its size (caller contract).
    let stride = unsafe { p.cast::<usize>().read_unaligned() };
    (0..n)
        .map(|i| {
            let w = format!("{what}[{i}]");
            let at =
                i.checked_mul(stride).ok_or_else(|| Error::invalid(format!("{what}: too many elements")))?;
            // SAFETY: element i lies at i × stride (caller contract).
            let q = unsafe { p.cast::<u8>().add(at) };
            // SAFETY: as above.
            let size = unsafe { q.cast::<usize>().read_unaligned() };
            if size != stride {
                return Err(misuse(format!(
                    "{w}.size is {size} but {what}[0].size is {stride}: set every element's size"
                )));
            }
            // SAFETY: as above.
            unsafe { read_sized_at(q, size, &w) }
        })
        .collect()
}

/// `rows × dim` floats (checked product).
fn product(rows: usize, dim: usize, what: &str) -> Result<usize> {
    rows.checked_mul(dim).ok_or_else(|| Error::invalid(format!("{what}: {rows} × {dim} overflows")))
}

#[cfg(test)]
mod tests;
