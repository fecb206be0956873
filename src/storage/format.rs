//! Byte-level specification of a segment file (`segments/<collection>/<segment>.seg`).
//!
//! ```text
//! offset 0                                                     all integers little-endian
//! ┌──────────────────────── header (64 bytes) ───────────────────────────┐
//! │ 0  magic        [u8; 8] = "MSDBSEG\x1a"                               │
//! │ 8  format       u32     = FORMAT_VERSION                              │
//! │ 12 header_len   u32     = 64                                          │
//! │ 16 dtype        u8      (0 = f32, 1 = f16, 2 = codes)                  │
//! │ 17 pooled_dtype u8      (codes: dtype of POOLED; else 0)  18..20 (0)   │
//! │ 20 token_dim    u32                                                    │
//! │ 24 doc_count    u64                                                    │
//! │ 32 token_count  u64                                                    │
//! │ 40 segment_id   u64                                                    │
//! │ 48 pooled_count u32     52 record_len u32 (codes: bytes per token; 0)  │
//! │ 56 checksum     u64     xxh3-64 of bytes 0..56                         │
//! └────────────────────────────────────────────────────────────────────────┘
//! sections, each starting on a 64-byte boundary (zero padding between):
//!   ROW_IDS       u64 × doc_count          internal row ids, strictly increasing
//!   TOKEN_OFFSETS u64 × (doc_count + 1)    offsets[0] = 0, strictly increasing, last = token_count
//!   TOKENS        dtype × token_count × token_dim
//!                 (dtype 2, v4: record_len opaque bytes per token — a residual code)
//!   v4, dtype 2 only:
//!   TOKEN_CODES   u16 × token_count        centroid id per token
//!   CODEC_REF     u64 codec id | u64 codec content checksum (16 bytes): the codec the
//!                 codes need (`db/codec.rs` resolves it; storage never decodes)
//!   POOLED[i]     dtype × doc_count × dim_i          (one per pooled vector, spec order)
//!   TOKEN_BLOCK_SUMS u64 × ⌈TOKENS bytes / 64 KiB⌉    xxh3-64 of each 64 KiB block of
//!                                                      TOKENS (v2+: searches verify only
//!                                                      the blocks they read)
//!   v2 only: embedded index sections (kinds 5–9, 11, 12), opaque to storage; `index/`
//!   knows their layout (PLAID codes, HNSW graphs, MUVERA encodings). v3 keeps every index
//!   in its own side file (`storage/container.rs`).
//! section table at table_offset (64-aligned), SECTION_ENTRY_LEN bytes per section:
//!   kind u32 | index u32 | offset u64 | length u64 | xxh3-128 of the section bytes (u128)
//! trailer (last 32 bytes of the file):
//!   table_offset u64 | section_count u32 | format u32 | xxh3-64 u64 | "MSDBEND\x1a"
//!   (the xxh3-64 covers the section table and the first 16 trailer bytes)
//! ```
//!
//! The header, trailer, table, `ROW_IDS` and `TOKEN_OFFSETS` are verified when the file is
//! opened (they are small); `TOKENS` and `POOLED` sections are verified on first use, so
//! opening a large database reads almost nothing.
//!
//! # Version changes
//! - v1: header, ROW_IDS, TOKEN_OFFSETS, TOKENS, POOLED.
//! - v2: TOKEN_BLOCK_SUMS, and the optional PLAID, HNSW_GRAPH and MUVERA sections. A v2
//!   build reads v1 files unchanged (they simply have no PLAID sections); a v1 build
//!   refuses v2 files by version.
//! - v3: a segment holds vectors only; every index is a side file per segment (a
//!   [`super::container`] file), built and dropped without rewriting the segment. A v3
//!   build reads v1 and v2 segments (the embedded index sections of a v2 segment stay
//!   usable until compaction rewrites it as v3); older builds refuse v3 files by version.
//! - v4: codes-only token storage: dtype 2, `record_len` in the header, TOKEN_CODES and
//!   CODEC_REF sections; dense segments keep the v3 layout. Side files and state files
//!   are unchanged. A v4 build reads v1–v3; older builds refuse v4 by version.

use crate::{Error, Result};
use std::path::Path;

/// Magic at offset 0.
pub const MAGIC: [u8; 8] = *b"MSDBSEG\x1a";
/// Magic in the last 8 bytes.
pub const END_MAGIC: [u8; 8] = *b"MSDBEND\x1a";
/// Version written by this build.
pub const FORMAT_VERSION: u32 = 4;
/// Oldest version this build reads.
pub const OLDEST_SUPPORTED_FORMAT_VERSION: u32 = 1;
/// Header length.
pub const HEADER_LEN: usize = 64;
/// Trailer length.
pub const TRAILER_LEN: usize = 32;
/// Length of one section-table entry.
pub const SECTION_ENTRY_LEN: usize = 40;
/// Section alignment.
pub const ALIGN: u64 = 64;

/// What a segment section holds. Kinds 5–9, 11 and 12 were index sections embedded in
/// format v2 segments: storage keeps them as opaque [`SectionEntry`]s (see
/// [`SectionKind::from_u32`] returning `None`) and `index/` interprets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum SectionKind {
    /// Internal row ids.
    RowIds = 1,
    /// Token offsets per document.
    TokenOffsets = 2,
    /// Token vectors.
    Tokens = 3,
    /// One pooled vector per document (`index` = pooled vector number).
    Pooled = 4,
    /// xxh3-64 per [`TOKEN_BLOCK`] bytes of the TOKENS section.
    TokenBlockSums = 10,
    /// Centroid id per token, u16 (codes-only segments).
    TokenCodes = 13,
    /// The codec a codes-only segment needs: id and content checksum (16 bytes).
    CodecRef = 14,
}

/// Bytes of TOKENS covered by one TOKEN_BLOCK_SUMS entry.
pub const TOKEN_BLOCK: usize = 64 * 1024;

/// Section kinds of format v2 that held index data inside the segment.
pub const LEGACY_INDEX_KINDS: [u32; 7] = [5, 6, 7, 8, 9, 11, 12];

impl SectionKind {
    /// The segment's own section kinds; `None` for anything else (legacy index sections).
    #[must_use]
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::RowIds),
            2 => Some(Self::TokenOffsets),
            3 => Some(Self::Tokens),
            4 => Some(Self::Pooled),
            10 => Some(Self::TokenBlockSums),
            13 => Some(Self::TokenCodes),
            14 => Some(Self::CodecRef),
            _ => None,
        }
    }

    /// Readable name for error messages.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::RowIds => "ROW_IDS",
            Self::TokenOffsets => "TOKEN_OFFSETS",
            Self::Tokens => "TOKENS",
            Self::Pooled => "POOLED",
            Self::TokenBlockSums => "TOKEN_BLOCK_SUMS",
            Self::TokenCodes => "TOKEN_CODES",
            Self::CodecRef => "CODEC_REF",
        }
    }
}

/// Readable name of section kind `kind` (a segment's own, or a number).
#[must_use]
pub fn kind_name(kind: u32) -> String {
    SectionKind::from_u32(kind).map_or_else(|| format!("section kind {kind}"), |k| k.name().to_string())
}

/// The decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Format version.
    pub format: u32,
    /// Storage type tag.
    pub dtype: u8,
    /// Token dimension.
    pub token_dim: u32,
    /// Documents in the segment.
    pub doc_count: u64,
    /// Token vectors in the segment.
    pub token_count: u64,
    /// Segment id (matches the catalog manifest).
    pub segment_id: u64,
    /// Number of pooled sections.
    pub pooled_count: u32,
    /// Bytes per token of a codes-only segment's TOKENS section (0 for vectors).
    pub record_len: u32,
    /// Storage type tag of the POOLED sections of a codes-only segment (0 otherwise: the
    /// pooled vectors use `dtype`).
    pub pooled_dtype: u8,
}

/// Header `dtype` tag of a codes-only segment.
pub const DTYPE_CODES: u8 = 2;

/// One entry of the section table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionEntry {
    /// Section kind: a [`SectionKind`] in segments, a tag its owner chooses in containers.
    pub kind: u32,
    /// Index (pooled vector number; 0 otherwise).
    pub index: u32,
    /// Byte offset in the file.
    pub offset: u64,
    /// Byte length.
    pub len: u64,
    /// xxh3-128 of the bytes.
    pub checksum: u128,
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

pub(crate) fn u128_at(b: &[u8], at: usize) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    u128::from_le_bytes(a)
}

impl Header {
    /// Encode into 64 bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.format.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[16] = self.dtype;
        b[17] = self.pooled_dtype;
        b[20..24].copy_from_slice(&self.token_dim.to_le_bytes());
        b[24..32].copy_from_slice(&self.doc_count.to_le_bytes());
        b[32..40].copy_from_slice(&self.token_count.to_le_bytes());
        b[40..48].copy_from_slice(&self.segment_id.to_le_bytes());
        b[48..52].copy_from_slice(&self.pooled_count.to_le_bytes());
        b[52..56].copy_from_slice(&self.record_len.to_le_bytes());
        let sum = xxhash_rust::xxh3::xxh3_64(&b[0..56]);
        b[56..64].copy_from_slice(&sum.to_le_bytes());
        b
    }

    /// Decode and validate the first 64 bytes of `file`.
    ///
    /// # Errors
    /// [`Error::Corruption`] on bad magic or checksum, [`Error::IncompatibleFormat`] on a
    /// version this build cannot read.
    pub fn decode(path: &Path, file: &[u8]) -> Result<Self> {
        if file.len() < HEADER_LEN + TRAILER_LEN {
            return Err(Error::corruption(path, format!("file too short ({} bytes)", file.len())));
        }
        let b = &file[..HEADER_LEN];
        if b[0..8] != MAGIC {
            return Err(Error::corruption(path, "bad magic: not a maxsimdb segment"));
        }
        if xxhash_rust::xxh3::xxh3_64(&b[0..56]) != u64_at(b, 56) {
            return Err(Error::corruption(path, "header checksum mismatch"));
        }
        let format = u32_at(b, 8);
        check_version(path, format)?;
        if u32_at(b, 12) as usize != HEADER_LEN {
            return Err(Error::corruption(path, "bad header length"));
        }
        Ok(Self {
            format,
            dtype: b[16],
            pooled_dtype: b[17],
            token_dim: u32_at(b, 20),
            doc_count: u64_at(b, 24),
            token_count: u64_at(b, 32),
            segment_id: u64_at(b, 40),
            pooled_count: u32_at(b, 48),
            record_len: u32_at(b, 52),
        })
    }
}

pub(crate) fn check_version(path: &Path, found: u32) -> Result<()> {
    if !(OLDEST_SUPPORTED_FORMAT_VERSION..=FORMAT_VERSION).contains(&found) {
        return Err(Error::IncompatibleFormat {
            path: path.to_path_buf(),
            found,
            oldest: OLDEST_SUPPORTED_FORMAT_VERSION,
            newest: FORMAT_VERSION,
        });
    }
    Ok(())
}

/// Encode the section table and trailer that end the file; `table_offset` is where the
/// table starts.
#[must_use]
pub fn encode_footer(entries: &[SectionEntry], table_offset: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * SECTION_ENTRY_LEN + TRAILER_LEN);
    for e in entries {
        out.extend_from_slice(&e.kind.to_le_bytes());
        out.extend_from_slice(&e.index.to_le_bytes());
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.len.to_le_bytes());
        out.extend_from_slice(&e.checksum.to_le_bytes());
    }
    out.extend_from_slice(&table_offset.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    let sum = xxhash_rust::xxh3::xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out.extend_from_slice(&END_MAGIC);
    out
}

/// Decode and validate the trailer and section table of `file`.
///
/// # Errors
/// [`Error::Corruption`] when the trailer, the table or any section bound is invalid.
pub fn decode_footer(path: &Path, file: &[u8]) -> Result<Vec<SectionEntry>> {
    let len = file.len();
    let t = &file[len - TRAILER_LEN..];
    if t[24..32] != END_MAGIC {
        return Err(Error::corruption(path, "bad end magic: file truncated or overwritten"));
    }
    let table_offset = u64_at(t, 0);
    let count = u32_at(t, 8) as usize;
    let table_end = len - TRAILER_LEN;
    let table_len = count.checked_mul(SECTION_ENTRY_LEN);
    let table_start = usize::try_from(table_offset).ok();
    let (Some(table_len), Some(table_start)) = (table_len, table_start) else {
        return Err(Error::corruption(path, "bad section table bounds"));
    };
    if table_start.checked_add(table_len) != Some(table_end) || table_start < HEADER_LEN {
        return Err(Error::corruption(path, "bad section table bounds"));
    }
    let table = &file[table_start..table_end];
    if xxhash_rust::xxh3::xxh3_64(&file[table_start..table_end + 16]) != u64_at(t, 16) {
        return Err(Error::corruption(path, "section table checksum mismatch"));
    }
    check_version(path, u32_at(t, 12))?;
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let e = &table[i * SECTION_ENTRY_LEN..(i + 1) * SECTION_ENTRY_LEN];
        let kind = u32_at(e, 0);
        let entry = SectionEntry {
            kind,
            index: u32_at(e, 4),
            offset: u64_at(e, 8),
            len: u64_at(e, 16),
            checksum: u128_at(e, 24),
        };
        let end = entry.offset.checked_add(entry.len);
        if !entry.offset.is_multiple_of(ALIGN)
            || entry.offset < HEADER_LEN as u64
            || end.is_none_or(|e| e > table_offset)
        {
            return Err(Error::corruption(path, format!("{} out of bounds", kind_name(kind))));
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// The xxh3-64 in the trailer of a file whose footer [`decode_footer`] accepted: it covers
/// the section table, which holds the xxh3-128 of every section, so it identifies the
/// file's content (side files record it for the segment they belong to).
#[must_use]
pub fn content_sum(file: &[u8]) -> u64 {
    u64_at(&file[file.len() - TRAILER_LEN..], 16)
}

/// Bytes of padding needed to bring `pos` to the next multiple of [`ALIGN`].
#[must_use]
pub fn padding(pos: u64) -> u64 {
    (ALIGN - pos % ALIGN) % ALIGN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_damage() {
        let h = Header {
            format: FORMAT_VERSION,
            dtype: 1,
            token_dim: 128,
            doc_count: 7,
            token_count: 99,
            segment_id: 3,
            pooled_count: 2,
            record_len: 0,
            pooled_dtype: 0,
        };
        let mut file = h.encode().to_vec();
        file.extend_from_slice(&encode_footer(&[], HEADER_LEN as u64));
        let p = Path::new("x.seg");
        assert_eq!(Header::decode(p, &file).unwrap(), h);
        assert!(decode_footer(p, &file).unwrap().is_empty());
        for i in 0..HEADER_LEN {
            let mut bad = file.clone();
            bad[i] ^= 1;
            assert!(matches!(Header::decode(p, &bad), Err(Error::Corruption { .. })), "byte {i}");
        }
        for i in HEADER_LEN..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 1;
            assert!(matches!(decode_footer(p, &bad), Err(Error::Corruption { .. })), "trailer byte {i}");
        }
    }

    #[test]
    fn padding_aligns_to_64() {
        assert_eq!(padding(0), 0);
        assert_eq!(padding(1), 63);
        assert_eq!(padding(64), 0);
        assert_eq!(padding(65), 63);
    }
}
