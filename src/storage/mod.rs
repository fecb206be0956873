//! Segment files: naming, the publish protocol, and garbage collection.
//!
//! A segment is written to `<id>.seg.tmp`, fsynced, renamed to `<id>.seg`, and the
//! directory is fsynced; only then does a catalog transaction add it to the manifest.
//! That transaction is the commit point: a file without a manifest row is garbage and is
//! removed by the next writer to open the database.

pub mod container;
pub mod fault;
pub mod format;
pub mod mmap;
pub mod segment;

use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::Result;

/// Directory holding the segments of collection `coll`.
pub(crate) fn collection_dir(root: &Path, coll: i64) -> PathBuf {
    root.join("segments").join(coll.to_string())
}

/// Final file name of segment `id`.
pub(crate) fn segment_file_name(id: i64) -> String {
    format!("{id}.seg")
}

/// fsync a directory so that renames and creations in it are durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    fault::point("dir.fsync", dir)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Create the new file `dest` whole or not at all: refuse an existing one, let `write` fill
/// (and fsync) `dest.tmp`, then publish it; on any error nothing is left behind.
pub(crate) fn create_atomically<T>(dest: &Path, write: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    if dest.exists() {
        return Err(crate::Error::AlreadyExists { kind: "file", name: dest.display().to_string() });
    }
    let tmp = std::path::PathBuf::from(format!("{}.tmp", dest.display()));
    let _ = std::fs::remove_file(&tmp);
    write(&tmp).and_then(|v| publish(&tmp, dest).map(|()| v)).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Atomically publish `tmp` as `dest` (same directory): rename, then fsync the directory.
pub(crate) fn publish(tmp: &Path, dest: &Path) -> Result<()> {
    fault::point("segment.rename", dest)?;
    std::fs::rename(tmp, dest).at(dest)?;
    // A bare file name has the empty path as its parent: the current directory.
    fsync_dir(dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
}
