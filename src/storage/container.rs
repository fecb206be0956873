//! Opaque checksummed containers: the files that hold every index of a segment (its *side
//! files*) and the shared state of an index (a PLAID codec, MUVERA's matrices). Storage
//! knows no index type: a container is a kind tag, the id and content checksum of the
//! file it belongs to, and numbered sections whose meaning its owner (`index/`) defines.
//!
//! ```text
//! offset 0                                                     all integers little-endian
//! ┌──────────────────────── header (64 bytes) ───────────────────────────┐
//! │ 0  magic       [u8; 8] = "MSDBSID\x1a"                                │
//! │ 8  format      u32     = FORMAT_VERSION (3 or later)                  │
//! │ 12 header_len  u32     = 64                                           │
//! │ 16 kind        [u8; 8] owner's tag, e.g. "plaid\0\0\0" (opaque here)  │
//! │ 24 owner_id    u64     segment id (0 for per-index files)             │
//! │ 32 owner_sum   u64     the segment's content checksum                 │
//! │                        (`format::content_sum`; 0 for per-index files) │
//! │ 40 index_id    u64     catalog id of the index                        │
//! │ 48 reserved    u64 (0)                                                │
//! │ 56 checksum    u64     xxh3-64 of bytes 0..56                         │
//! └────────────────────────────────────────────────────────────────────────┘
//! sections, each on a 64-byte boundary (zero padding between), tags chosen by the owner
//! section table + trailer: exactly as in a segment (`format.rs`): per section
//!   tag u32 | index u32 | offset u64 | length u64 | xxh3-128 (u128)
//! and the 32-byte trailer table_offset | count | format | xxh3-64 | "MSDBEND\x1a"
//! ```
//!
//! Opening checks the header, trailer and table (so every byte outside the sections is
//! covered); each section is verified against its xxh3-128 on first use and the verdict is
//! cached. A container is published like a segment (temp file, fsync, rename, directory
//! fsync) and becomes live only when a catalog transaction names it.

use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::format::{self, SectionEntry, HEADER_LEN};
use super::mmap::{self, MappedFile, Pod};
use crate::error::IoContext;
use crate::{Error, Result};

/// Magic at offset 0 of a container.
pub const MAGIC: [u8; 8] = *b"MSDBSID\x1a";

/// Who a container belongs to and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerHeader {
    /// The owner's kind tag (opaque to storage).
    pub kind: [u8; 8],
    /// Segment id (0 for a per-index file).
    pub owner_id: u64,
    /// Content checksum of that segment ([`format::content_sum`]; 0 for a per-index file).
    pub owner_sum: u64,
    /// Catalog id of the index.
    pub index_id: u64,
}

impl ContainerHeader {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&format::FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.kind);
        b[24..32].copy_from_slice(&self.owner_id.to_le_bytes());
        b[32..40].copy_from_slice(&self.owner_sum.to_le_bytes());
        b[40..48].copy_from_slice(&self.index_id.to_le_bytes());
        let sum = xxhash_rust::xxh3::xxh3_64(&b[0..56]);
        b[56..64].copy_from_slice(&sum.to_le_bytes());
        b
    }

    fn decode(path: &Path, file: &[u8]) -> Result<Self> {
        if file.len() < HEADER_LEN + format::TRAILER_LEN {
            return Err(Error::corruption(path, format!("file too short ({} bytes)", file.len())));
        }
        let b = &file[..HEADER_LEN];
        if b[0..8] != MAGIC {
            return Err(Error::corruption(path, "bad magic: not a maxsimdb side file"));
        }
        if xxhash_rust::xxh3::xxh3_64(&b[0..56]) != format::u64_at(b, 56) {
            return Err(Error::corruption(path, "header checksum mismatch"));
        }
        let version = format::u32_at(b, 8);
        if version < 3 {
            return Err(Error::corruption(path, format!("side file format {version} (they start at 3)")));
        }
        format::check_version(path, version)?;
        if format::u32_at(b, 12) as usize != HEADER_LEN || b[48..56] != [0; 8] {
            return Err(Error::corruption(path, "bad header length or reserved bytes"));
        }
        let mut kind = [0u8; 8];
        kind.copy_from_slice(&b[16..24]);
        Ok(Self {
            kind,
            owner_id: format::u64_at(b, 24),
            owner_sum: format::u64_at(b, 32),
            index_id: format::u64_at(b, 40),
        })
    }
}

/// The tag `name` padded with zeros to 8 bytes (at most 8 bytes).
#[must_use]
pub fn kind_tag(name: &str) -> [u8; 8] {
    let mut t = [0u8; 8];
    let b = name.as_bytes();
    t[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
    t
}

/// Streams a container to a temporary path, one section at a time.
pub struct ContainerWriter {
    path: PathBuf,
    out: BufWriter<std::fs::File>,
    pos: u64,
    entries: Vec<SectionEntry>,
    open: Option<(u32, u32, u64, xxhash_rust::xxh3::Xxh3)>,
}

impl ContainerWriter {
    /// Create `path` (which must not exist) and write the header.
    ///
    /// # Errors
    /// I/O errors.
    pub fn create(path: &Path, header: &ContainerHeader) -> Result<Self> {
        Self::with_header(path, &header.encode())
    }

    /// Create `path` and write `header` (64 bytes): the segment writer shares everything
    /// after its own header with containers.
    pub(crate) fn with_header(path: &Path, header: &[u8]) -> Result<Self> {
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).at(path)?;
        let mut w = Self {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
            entries: Vec::new(),
            open: None,
        };
        w.raw(header)?;
        Ok(w)
    }

    fn raw(&mut self, b: &[u8]) -> Result<()> {
        super::fault::point("segment.write", &self.path)?;
        self.out.write_all(b).at(&self.path)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn align(&mut self) -> Result<()> {
        let pad = format::padding(self.pos) as usize;
        self.raw(&[0u8; 64][..pad])
    }

    /// Start section `tag` (ends the open one).
    ///
    /// # Errors
    /// I/O errors.
    pub fn begin(&mut self, tag: u32) -> Result<()> {
        self.begin_indexed(tag, 0)
    }

    /// Start section `tag` with table field `index` (segments number their pooled
    /// sections; containers always use 0).
    pub(crate) fn begin_indexed(&mut self, tag: u32, index: u32) -> Result<()> {
        self.end()?;
        self.align()?;
        self.open = Some((tag, index, self.pos, xxhash_rust::xxh3::Xxh3::new()));
        Ok(())
    }

    /// Append bytes to the open section.
    ///
    /// # Errors
    /// I/O errors; [`Error::Internal`] when no section is open.
    pub fn put(&mut self, b: &[u8]) -> Result<()> {
        match &mut self.open {
            Some((_, _, _, h)) => h.update(b),
            None => return Err(Error::Internal("container write outside a section".into())),
        }
        self.raw(b)
    }

    /// End the open section (if any).
    ///
    /// # Errors
    /// None today; kept fallible for symmetry with `begin`.
    pub fn end(&mut self) -> Result<()> {
        if let Some((kind, index, offset, h)) = self.open.take() {
            let len = self.pos - offset;
            self.entries.push(SectionEntry { kind, index, offset, len, checksum: h.digest128() });
        }
        Ok(())
    }

    /// Write the table and trailer and fsync. Returns the file size.
    ///
    /// # Errors
    /// I/O errors; the caller removes the partial file.
    pub fn finish(mut self) -> Result<u64> {
        self.end()?;
        self.align()?;
        let footer = format::encode_footer(&self.entries, self.pos);
        self.raw(&footer)?;
        let file = self.out.into_inner().map_err(|e| Error::io(&self.path, e.into_error()))?;
        super::fault::point("segment.fsync", &self.path)?;
        file.sync_all().at(&self.path)?;
        Ok(self.pos)
    }
}

/// Write a container at `dest` whole or not at all: `fill` streams its sections into a
/// temporary file that is then fsynced and published (renamed, directory fsynced). Returns
/// the file size. On error nothing is left behind.
///
/// # Errors
/// I/O errors and those of `fill`.
pub fn write_container(
    dest: &Path,
    header: &ContainerHeader,
    fill: impl FnOnce(&mut ContainerWriter) -> Result<()>,
) -> Result<u64> {
    let tmp = PathBuf::from(format!("{}.tmp", dest.display()));
    let _ = std::fs::remove_file(&tmp);
    let res = ContainerWriter::create(&tmp, header).and_then(|mut w| {
        fill(&mut w)?;
        let n = w.finish()?;
        super::publish(&tmp, dest)?;
        Ok(n)
    });
    res.inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// A published container, memory-mapped.
#[derive(Debug)]
pub struct Container {
    path: PathBuf,
    file: MappedFile,
    header: ContainerHeader,
    sections: Vec<(SectionEntry, OnceLock<bool>)>,
}

impl Container {
    /// Open `path` and validate header, table and trailer (sections are verified on first
    /// use).
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the file, [`Error::IncompatibleFormat`], I/O errors.
    pub fn open(path: &Path) -> Result<Self> {
        let file = MappedFile::open(path)?;
        let header = ContainerHeader::decode(path, file.bytes())?;
        let entries = format::decode_footer(path, file.bytes())?;
        let mut tags: Vec<u32> = entries.iter().map(|e| e.kind).collect();
        tags.sort_unstable();
        if tags.windows(2).any(|w| w[0] == w[1]) || entries.iter().any(|e| e.index != 0) {
            return Err(Error::corruption(path, "duplicate or indexed section in a side file"));
        }
        // Padding between sections must be zero, so that no byte of the file is outside
        // every check.
        let mut spans: Vec<Range<usize>> = entries.iter().map(Self::range).collect();
        spans.sort_by_key(|r| r.start);
        let table = file.bytes().len() - format::TRAILER_LEN - entries.len() * format::SECTION_ENTRY_LEN;
        let mut at = HEADER_LEN;
        for r in spans.iter().chain(std::iter::once(&(table..table))) {
            if r.start < at || file.bytes()[at..r.start].iter().any(|&b| b != 0) {
                return Err(Error::corruption(path, "overlapping sections or non-zero padding"));
            }
            at = r.end;
        }
        let sections = entries.into_iter().map(|e| (e, OnceLock::new())).collect();
        Ok(Self { path: path.to_path_buf(), file, header, sections })
    }

    /// The file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its header.
    #[must_use]
    pub fn header(&self) -> &ContainerHeader {
        &self.header
    }

    /// File size in bytes.
    #[must_use]
    pub fn file_len(&self) -> u64 {
        self.file.bytes().len() as u64
    }

    fn find(&self, tag: u32) -> Option<&(SectionEntry, OnceLock<bool>)> {
        self.sections.iter().find(|(e, _)| e.kind == tag)
    }

    fn range(e: &SectionEntry) -> Range<usize> {
        e.offset as usize..(e.offset + e.len) as usize
    }

    /// Section `tag` as `&[T]`, checksum-verified on first use when `verify` (cached):
    /// `Ok(None)` when absent.
    ///
    /// # Errors
    /// [`Error::Corruption`] on a checksum mismatch or a length that is not a whole number
    /// of `T`.
    pub fn section<T: Pod>(&self, tag: u32, verify: bool) -> Result<Option<&[T]>> {
        let Some((e, verdict)) = self.find(tag) else { return Ok(None) };
        let bytes = &self.file.bytes()[Self::range(e)];
        if verify && !*verdict.get_or_init(|| xxhash_rust::xxh3::xxh3_128(bytes) == e.checksum) {
            return Err(Error::corruption(&self.path, format!("checksum mismatch in section {tag}")));
        }
        match mmap::cast(bytes) {
            Some(v) => Ok(Some(v)),
            None => Err(Error::corruption(&self.path, format!("section {tag} has a ragged length"))),
        }
    }

    /// Verify every section.
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the first damaged section.
    pub fn verify_all(&self) -> Result<()> {
        for (e, _) in &self.sections {
            self.section::<u8>(e.kind, true)?;
        }
        Ok(())
    }

    /// Byte ranges of the file: header, each section, table + trailer (for tests that
    /// damage every region).
    #[must_use]
    pub fn regions(&self) -> Vec<(String, Range<usize>)> {
        let mut out = vec![("header".to_string(), 0..HEADER_LEN)];
        let mut end = HEADER_LEN;
        for (e, _) in &self.sections {
            out.push((format!("section {}", e.kind), Self::range(e)));
            end = end.max(Self::range(e).end);
        }
        let len = self.file.bytes().len();
        let table = len - format::TRAILER_LEN - self.sections.len() * format::SECTION_ENTRY_LEN;
        out.push(("table+trailer".to_string(), table..len));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ContainerHeader {
        ContainerHeader { kind: kind_tag("test"), owner_id: 7, owner_sum: 99, index_id: 3 }
    }

    #[test]
    fn container_roundtrip_and_every_byte_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("7-3.test");
        write_container(&path, &header(), |w| {
            w.begin(1)?;
            w.put(&[1, 2, 3, 4])?;
            w.put(&[5, 6, 7, 8])?;
            w.begin(9)?;
            w.put(&42u64.to_le_bytes())
        })
        .unwrap();
        assert!(!dir.path().join("7-3.test.tmp").exists());
        let c = Container::open(&path).unwrap();
        assert_eq!(c.header(), &header());
        assert_eq!(c.section::<u32>(1, true).unwrap().unwrap(), &[0x0403_0201, 0x0807_0605]);
        assert_eq!(c.section::<u64>(9, true).unwrap().unwrap(), &[42]);
        assert!(c.section::<u8>(5, true).unwrap().is_none());
        c.verify_all().unwrap();
        let good = std::fs::read(&path).unwrap();
        drop(c);
        // Every byte of the file, changed in turn, is detected at open or at verification
        // (padding included: it must be zero).
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x5a;
            std::fs::write(&path, &bad).unwrap();
            let detected = Container::open(&path).and_then(|c| c.verify_all()).is_err();
            assert!(detected, "byte {i} changed and not detected");
        }
    }
}
