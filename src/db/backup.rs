//! Online backup to one zstd-compressed archive, and restore with every checksum verified
//! before anything becomes visible.
//!
//! Archive format (version 1): one zstd frame (content checksum on) holding
//!
//! ```text
//! b"MSDBBAK\x01"                                  magic + format version
//! entry*:  u8 kind (1 = file)  u32 LE name length  name (UTF-8, '/'-separated, relative)
//!          u64 LE length  bytes
//! manifest: u8 2  u32 LE length  JSON {"format": 1, "maxsimdb": "0.1.0",
//!          "schema_version": N, "created_unix": T,
//!          "files": [{"name": …, "bytes": …, "xxh3": "<32 hex digits>"}]}
//! u8 0                                            end
//! ```
//!
//! followed, outside the zstd frame, by a 24-byte trailer: the xxh3-128 of every byte
//! before it (little-endian) and `b"MSDBEND\x01"`. Restore checks the trailer before it
//! decodes anything, so any damaged byte — even one zstd itself would ignore, such as an
//! unused bit of the frame header — is refused.
//!
//! Consistency while readers and the writer keep working: the full-text files are opened
//! first (they are derived state: restored as they were, and caught up or rebuilt from the
//! catalog at the first writable open, which detects an index older than the catalog);
//! the catalog is snapshotted in one read transaction with SQLite's `VACUUM INTO` (which,
//! unlike the page-copying backup API, never restarts while the writer commits); every
//! segment the snapshot's manifest names is opened right away — segment files are
//! immutable and a compaction retires, not deletes, the files it replaces, so an open
//! handle reads the exact bytes the snapshot refers to.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::Database;
use crate::catalog::{self, Catalog};
use crate::error::IoContext;
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"MSDBBAK\x01";
const KIND_END: u8 = 0;
const KIND_FILE: u8 = 1;
const KIND_MANIFEST: u8 = 2;
const MAX_NAME: usize = 4096;
const END_MAGIC: &[u8; 8] = b"MSDBEND\x01";
const TRAILER: u64 = 24;

/// Hashes what passes through to the archive file.
struct Hashing<W> {
    inner: W,
    hasher: xxhash_rust::xxh3::Xxh3,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// What a backup or restore did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackupReport {
    /// Files in the archive.
    pub files: usize,
    /// Bytes of those files (the database's size).
    pub bytes: u64,
    /// Bytes of the archive.
    pub archive_bytes: u64,
    /// Wall time in seconds.
    pub seconds: f64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct FileEntry {
    name: String,
    bytes: u64,
    xxh3: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    maxsimdb: String,
    schema_version: u32,
    created_unix: u64,
    files: Vec<FileEntry>,
}

/// A file to archive: its name in the archive and an open handle (read later).
struct Source {
    name: String,
    file: File,
    len: u64,
}

fn open_source(root: &Path, rel: &str) -> Result<Source> {
    let path = root.join(rel);
    let file = File::open(&path).at(&path)?;
    let len = file.metadata().at(&path)?.len();
    Ok(Source { name: rel.replace('\\', "/"), file, len })
}

/// Files under `dir` (relative to `root`), recursively, in a stable order.
fn files_under(root: &Path, dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return Ok(out) };
    for e in rd {
        let p = e.at(dir)?.path();
        if p.is_dir() {
            out.extend(files_under(root, &p)?);
        } else if let Ok(rel) = p.strip_prefix(root) {
            let name = rel.to_string_lossy().into_owned();
            // Lock files of tantivy's writer are process state, not data.
            if !name.ends_with(".lock") {
                out.push(name);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Check a segment or container file's checksums; a damaged one stops the backup with
/// an error naming it and what to do.
fn verify_before_copy(path: &Path) -> Result<()> {
    let res = if path.extension().is_some_and(|e| e == "seg") {
        crate::storage::segment::verify_file(path)
    } else {
        crate::storage::container::Container::open(path).and_then(|c| c.verify_all())
    };
    res.map_err(|e| match e {
        Error::Corruption { path, detail } => Error::Corruption {
            path,
            detail: format!(
                "{detail}; BACKUP refuses to copy a damaged file (run CHECK to list the damage; restore an \
                 older backup, or DROP and re-create the index the file belongs to)"
            ),
        },
        other => other,
    })
}

fn hex(v: u128) -> String {
    format!("{v:032x}")
}

/// Writes entries into the archive, hashing each file's bytes.
struct ArchiveWriter<W: Write> {
    out: W,
    done: u64,
}

impl<W: Write> ArchiveWriter<W> {
    fn header(&mut self, kind: u8, name: &str, len: u64) -> std::io::Result<()> {
        self.out.write_all(&[kind])?;
        self.out.write_all(&(name.len() as u32).to_le_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&len.to_le_bytes())
    }

    /// Copy one file. `stop()` is asked after every 1 MiB: when it says so the copy ends
    /// with an [`std::io::ErrorKind::Interrupted`] error (the caller reports
    /// [`Error::Interrupted`]).
    fn file(
        &mut self,
        s: &mut Source,
        progress: &mut dyn FnMut(u64),
        stop: &dyn Fn() -> bool,
    ) -> std::io::Result<FileEntry> {
        self.header(KIND_FILE, &s.name, s.len)?;
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut left = s.len;
        while left > 0 {
            let n = s.file.read(&mut buf[..(left.min(1 << 20)) as usize])?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{} shrank", s.name),
                ));
            }
            hasher.update(&buf[..n]);
            self.out.write_all(&buf[..n])?;
            left -= n as u64;
            self.done += n as u64;
            progress(self.done);
            if stop() {
                return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "interrupted"));
            }
        }
        Ok(FileEntry { name: s.name.clone(), bytes: s.len, xxh3: hex(hasher.digest128()) })
    }
}

impl Database {
    /// Write a consistent snapshot of the whole database — catalog, segments (with their
    /// index sections), full-text indexes — into one zstd-compressed archive at `dest`,
    /// while readers and the writer keep working. `progress(done, total)` is called with
    /// bytes of database files archived so far. The archive appears atomically (written
    /// to `dest.tmp`, fsynced, renamed). [`Database::interrupt`] stops it within a MiB.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if `dest` exists; [`Error::Interrupted`]; I/O and catalog
    /// errors (then no archive is left behind).
    pub fn backup(&self, dest: impl AsRef<Path>, mut progress: impl FnMut(u64, u64)) -> Result<BackupReport> {
        let dest = dest.as_ref();
        let started = Instant::now();
        let snapshot = PathBuf::from(format!("{}.catalog.tmp", dest.display()));
        let mut report = crate::storage::create_atomically(dest, |tmp| {
            let _ = std::fs::remove_file(&snapshot);
            let res = self.backup_into(tmp, &snapshot, &mut progress);
            let _ = std::fs::remove_file(&snapshot);
            res
        })?;
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    fn backup_into(
        &self,
        tmp: &Path,
        snapshot: &Path,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<BackupReport> {
        let root = &self.inner.root;
        self.interrupted();
        // 1. Full-text files first (derived state; see the module docs).
        let mut sources = Vec::new();
        for rel in files_under(root, &root.join("fulltext"))? {
            match open_source(root, &rel) {
                Ok(s) => sources.push(s),
                // Replaced by a merge between listing and opening: the index is caught up
                // or rebuilt at restore either way.
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        // 2. The catalog, in one read transaction.
        self.with_reader(|cat| cat.vacuum_into(snapshot))?;
        let mut snap = Catalog::open(snapshot, true)?;
        let schema_version = snap.schema();
        let manifest = snap.read()?.manifest_files()?;
        drop(snap);
        // 3. Every segment (and side file, state file, codec) the snapshot names, opened
        // now and verified by its own checksums: a backup never copies damage silently.
        for rel in &manifest {
            sources.push(open_source(root, rel)?);
            verify_before_copy(&root.join(rel))?;
        }
        let catalog_len = std::fs::metadata(snapshot).at(snapshot)?.len();
        sources.insert(
            0,
            Source {
                name: "catalog.sqlite".into(),
                file: File::open(snapshot).at(snapshot)?,
                len: catalog_len,
            },
        );
        let total: u64 = sources.iter().map(|s| s.len).sum();
        let out = File::create(tmp).at(tmp)?;
        let sink =
            Hashing { inner: BufWriter::with_capacity(1 << 20, out), hasher: xxhash_rust::xxh3::Xxh3::new() };
        let mut enc = zstd::stream::Encoder::new(sink, 3).at(tmp)?;
        enc.include_checksum(true).at(tmp)?;
        let mut w = ArchiveWriter { out: enc, done: 0 };
        w.out.write_all(MAGIC).at(tmp)?;
        let mut files = Vec::with_capacity(sources.len());
        for s in &mut sources {
            match w.file(s, &mut |d| progress(d, total), &|| self.interrupted()) {
                Ok(f) => files.push(f),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                    return Err(Error::Interrupted(format!(
                        "BACKUP stopped after {} of {total} bytes; no archive was written: run it again",
                        w.done
                    )))
                }
                Err(e) => return Err(Error::io(&root.join(&s.name), e)),
            }
        }
        let manifest = Manifest {
            format: 1,
            maxsimdb: env!("CARGO_PKG_VERSION").into(),
            schema_version,
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            files,
        };
        let json = serde_json::to_vec(&manifest)?;
        w.header(KIND_MANIFEST, "MANIFEST.json", json.len() as u64).at(tmp)?;
        w.out.write_all(&json).at(tmp)?;
        w.out.write_all(&[KIND_END]).at(tmp)?;
        let mut sink = w.out.finish().at(tmp)?;
        let digest = sink.hasher.digest128();
        sink.inner.write_all(&digest.to_le_bytes()).at(tmp)?;
        sink.inner.write_all(END_MAGIC).at(tmp)?;
        let file = sink.inner.into_inner().map_err(|e| Error::io(tmp, e.into_error()))?;
        file.sync_all().at(tmp)?;
        let archive_bytes = file.metadata().at(tmp)?.len();
        Ok(BackupReport { files: manifest.files.len(), bytes: total, archive_bytes, seconds: 0.0 })
    }

    /// Restore the archive `archive` (made by [`Database::backup`]) into the new directory
    /// `into`. Everything is unpacked into a staging directory next to it and every
    /// file's length and checksum (and the archive's own) is verified before the staging
    /// directory is renamed into place: a damaged archive leaves nothing behind.
    /// `progress(done, total)` counts compressed bytes read.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if `into` exists; [`Error::Corruption`] for a damaged,
    /// truncated or foreign archive (naming what failed); [`Error::IncompatibleFormat`]
    /// for an archive of a newer format; I/O errors.
    pub fn restore(
        archive: impl AsRef<Path>,
        into: impl AsRef<Path>,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<BackupReport> {
        let (archive, into) = (archive.as_ref(), into.as_ref());
        if into.exists() {
            return Err(Error::AlreadyExists { kind: "directory", name: into.display().to_string() });
        }
        let started = Instant::now();
        let staging = PathBuf::from(format!("{}.restoring", into.display()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).at(&staging)?;
        }
        std::fs::create_dir_all(&staging).at(&staging)?;
        let res = unpack(archive, &staging, &mut progress);
        match res {
            Ok(mut report) => {
                std::fs::rename(&staging, into).at(into)?;
                crate::storage::fsync_dir(
                    into.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")),
                )?;
                report.seconds = started.elapsed().as_secs_f64();
                Ok(report)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                Err(e)
            }
        }
    }
}

/// Counts compressed bytes for progress.
struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

/// Check the archive's trailer against a hash of everything before it; returns the
/// archive's length.
fn verify_trailer(archive: &Path) -> Result<u64> {
    let bad = |detail: &str| Error::corruption(archive, detail);
    let mut file = File::open(archive).at(archive)?;
    let len = file.metadata().at(archive)?.len();
    if len < TRAILER + 8 {
        return Err(bad("too short to be a maxsimdb backup archive"));
    }
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut left = len - TRAILER;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let k = left.min(buf.len() as u64) as usize;
        file.read_exact(&mut buf[..k]).at(archive)?;
        hasher.update(&buf[..k]);
        left -= k as u64;
    }
    let mut trailer = [0u8; TRAILER as usize];
    file.read_exact(&mut trailer).at(archive)?;
    if &trailer[16..] != END_MAGIC {
        return Err(bad("no maxsimdb archive trailer at the end: not an archive, or truncated"));
    }
    let mut want = [0u8; 16];
    want.copy_from_slice(&trailer[..16]);
    if u128::from_le_bytes(want) != hasher.digest128() {
        return Err(bad("the archive's checksum does not match its bytes: it is damaged"));
    }
    Ok(len)
}

/// A relative path made only of normal components, under one of the database's parts.
fn safe_name(name: &str) -> bool {
    let p = Path::new(name);
    let normal = p.components().all(|c| matches!(c, Component::Normal(_)));
    normal && (name == "catalog.sqlite" || name.starts_with("segments/") || name.starts_with("fulltext/"))
}

fn unpack(archive: &Path, staging: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<BackupReport> {
    let bad = |detail: String| Error::corruption(archive, detail);
    let archive_bytes = verify_trailer(archive)?;
    let file = File::open(archive).at(archive)?;
    let body = BufReader::with_capacity(1 << 20, file).take(archive_bytes - TRAILER);
    let counting = Counting { inner: body, n: 0 };
    let mut z = zstd::stream::Decoder::with_buffer(BufReader::new(counting))
        .map_err(|e| bad(format!("not a zstd archive: {e}")))?;
    let io = |e: std::io::Error| bad(format!("archive damaged or truncated: {e}"));
    let mut magic = [0u8; 8];
    z.read_exact(&mut magic).map_err(io)?;
    if magic[..7] != MAGIC[..7] {
        return Err(bad("not a maxsimdb backup archive".into()));
    }
    if magic[7] != MAGIC[7] {
        return Err(Error::IncompatibleFormat {
            path: archive.into(),
            found: u32::from(magic[7]),
            oldest: 1,
            newest: 1,
        });
    }
    let mut seen: Vec<FileEntry> = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let manifest: Manifest = loop {
        let mut kind = [0u8; 1];
        z.read_exact(&mut kind).map_err(io)?;
        let mut len4 = [0u8; 4];
        z.read_exact(&mut len4).map_err(io)?;
        let name_len = u32::from_le_bytes(len4) as usize;
        if name_len > MAX_NAME {
            return Err(bad(format!("entry name of {name_len} bytes")));
        }
        let mut name = vec![0u8; name_len];
        z.read_exact(&mut name).map_err(io)?;
        let name = String::from_utf8(name).map_err(|_| bad("entry name is not UTF-8".into()))?;
        let mut len8 = [0u8; 8];
        z.read_exact(&mut len8).map_err(io)?;
        let len = u64::from_le_bytes(len8);
        match kind[0] {
            KIND_FILE => {
                if !safe_name(&name) || seen.iter().any(|f| f.name == name) {
                    return Err(bad(format!("unexpected entry name '{name}'")));
                }
                let path = staging.join(&name);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).at(dir)?;
                }
                let mut out = BufWriter::with_capacity(1 << 20, File::create(&path).at(&path)?);
                let mut hasher = xxhash_rust::xxh3::Xxh3::new();
                let mut left = len;
                while left > 0 {
                    let k = (left.min(buf.len() as u64)) as usize;
                    z.read_exact(&mut buf[..k]).map_err(io)?;
                    hasher.update(&buf[..k]);
                    out.write_all(&buf[..k]).at(&path)?;
                    left -= k as u64;
                    progress(z.get_ref().get_ref().n, archive_bytes);
                }
                let f = out.into_inner().map_err(|e| Error::io(&path, e.into_error()))?;
                f.sync_all().at(&path)?;
                seen.push(FileEntry { name, bytes: len, xxh3: hex(hasher.digest128()) });
            }
            KIND_MANIFEST if name == "MANIFEST.json" && len < (64 << 20) => {
                let mut json = vec![0u8; len as usize];
                z.read_exact(&mut json).map_err(io)?;
                break serde_json::from_slice(&json).map_err(|e| bad(format!("manifest: {e}")))?;
            }
            k => return Err(bad(format!("unknown entry kind {k} ('{name}')"))),
        }
    };
    let mut end = [0u8; 1];
    z.read_exact(&mut end).map_err(io)?;
    // Reading past the end checks zstd's own content checksum and that nothing follows.
    let mut rest = Vec::new();
    z.read_to_end(&mut rest).map_err(io)?;
    if end[0] != KIND_END || !rest.is_empty() {
        return Err(bad("bytes after the end of the archive".into()));
    }
    if manifest.format != 1 {
        return Err(Error::IncompatibleFormat {
            path: archive.into(),
            found: manifest.format,
            oldest: 1,
            newest: 1,
        });
    }
    for want in &manifest.files {
        match seen.iter().find(|f| f.name == want.name) {
            Some(got) if got == want => {}
            Some(got) => {
                return Err(bad(format!(
                    "{}: {} bytes with checksum {}, the manifest says {} bytes with {}",
                    want.name, got.bytes, got.xxh3, want.bytes, want.xxh3
                )))
            }
            None => return Err(bad(format!("{} is in the manifest but not in the archive", want.name))),
        }
    }
    if seen.len() != manifest.files.len() {
        return Err(bad("the archive holds files its manifest does not list".into()));
    }
    if !seen.iter().any(|f| f.name == "catalog.sqlite") {
        return Err(bad("the archive has no catalog".into()));
    }
    let cat = catalog::catalog_path(staging);
    Catalog::open(&cat, true)?;
    Ok(BackupReport {
        files: seen.len(),
        bytes: seen.iter().map(|f| f.bytes).sum(),
        archive_bytes,
        seconds: 0.0,
    })
}
