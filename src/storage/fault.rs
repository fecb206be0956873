//! Fault injection on the write path, for tests (`maxsimdb::testing::fault`).
//!
//! Named points sit before every write, fsync, rename and commit of the write path:
//! segment bytes (`segment.write`), the segment's fsync (`segment.fsync`), its rename
//! into place (`segment.rename`), the directory fsync that makes the rename durable
//! (`dir.fsync`), catalog transactions (`catalog.commit`) and full-text commits
//! (`fulltext.commit`). A test arms the calling thread to fail the N-th point it passes
//! (with EIO, or ENOSPC and every later point too, like a disk that stays full), runs an
//! operation, and checks that the database is consistent. Unarmed, a point costs one
//! thread-local read; other threads are never affected.

use std::cell::RefCell;
use std::path::Path;

use crate::{Error, Result};

/// The error an armed point injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `EIO` at the chosen point only (a failed write or fsync).
    Io,
    /// `ENOSPC` at the chosen point and every point after it, until disarmed.
    DiskFull,
}

#[derive(Debug)]
struct Plan {
    fail_at: Option<usize>,
    fault: Fault,
    hits: Vec<&'static str>,
}

thread_local! {
    static PLAN: RefCell<Option<Plan>> = const { RefCell::new(None) };
}

/// Arm the calling thread: record every point passed, and fail the `fail_at`-th (from 0;
/// `None`: only record).
pub fn arm(fail_at: Option<usize>, fault: Fault) {
    PLAN.with(|p| *p.borrow_mut() = Some(Plan { fail_at, fault, hits: Vec::new() }));
}

/// Disarm the calling thread; returns the points passed since [`arm`], in order.
pub fn disarm() -> Vec<&'static str> {
    PLAN.with(|p| p.borrow_mut().take().map(|p| p.hits).unwrap_or_default())
}

/// A fault point: `Err` (an I/O error on `path`) when the armed plan says so.
pub(crate) fn point(name: &'static str, path: &Path) -> Result<()> {
    PLAN.with(|p| {
        let mut p = p.borrow_mut();
        let Some(plan) = p.as_mut() else { return Ok(()) };
        let i = plan.hits.len();
        plan.hits.push(name);
        let fail = match (plan.fail_at, plan.fault) {
            (Some(at), Fault::Io) => i == at,
            (Some(at), Fault::DiskFull) => i >= at,
            (None, _) => false,
        };
        if !fail {
            return Ok(());
        }
        let (errno, what) = match plan.fault {
            Fault::Io => (5, "injected I/O error"),
            Fault::DiskFull => (28, "injected disk full"),
        };
        let os = std::io::Error::from_raw_os_error(errno);
        Err(Error::io(path, std::io::Error::new(os.kind(), format!("{what} at {name}: {os}"))))
    })
}
