//! Segment writer (streams sections to a temporary file) and reader (zero-copy over mmap).
//! A segment holds vectors only; indexes are side files (`container.rs`). The embedded
//! index sections of format v2 segments are kept as opaque sections for `index/` to read.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use rayon::prelude::*;

use super::container::ContainerWriter;
use super::format::{self, Header, SectionEntry, SectionKind};
use super::mmap::{self, MappedFile, Pod};
use crate::types::{Dtype, VectorSpec};
pub use crate::vector::{Rows, VecRef};
use crate::{Error, Result};

/// Documents to write into a segment, in ascending row-id order. Iterated once per section.
pub trait SegmentSource {
    /// Number of documents.
    fn doc_count(&self) -> usize;
    /// Internal row id of document `i`.
    fn row_id(&self, i: usize) -> u64;
    /// Number of token vectors of document `i`.
    fn token_count(&self, i: usize) -> usize;
    /// Token matrix of document `i` (row-major).
    fn tokens(&self, i: usize) -> Rows<'_>;
    /// Pooled vector `p` of document `i`.
    fn pooled(&self, i: usize, p: usize) -> VecRef<'_>;
    /// Document `i` already encoded — (centroid ids, records, codec reference) — when the
    /// source holds codes; a writer with the same codec copies them instead of
    /// re-encoding (which would lose precision twice).
    fn codes(&self, _i: usize) -> Option<(&[u16], &[u8], [u8; 16])> {
        None
    }
}

/// A token codec as storage sees it: a u16 code plus `record_len` opaque bytes per token.
/// `db/codec.rs` implements it over the PLAID residual codec; storage never decodes
/// by itself.
pub trait TokenCodec: Send + Sync + std::fmt::Debug {
    /// What codes-only segments record in CODEC_REF: codec id, content checksum.
    fn codec_ref(&self) -> [u8; 16];
    /// Bytes per token besides its code.
    fn record_len(&self) -> usize;
    /// Encode `rows` (row-major, unit rows): append one code and one record per row.
    fn encode(&self, rows: &[f32], codes: &mut Vec<u16>, records: &mut Vec<u8>);
    /// Decode tokens `codes` with their `records` into `out` (`codes.len() × dim`).
    fn decode(&self, codes: &[u16], records: &[u8], out: &mut [f32]);
}

/// Streams a segment to `path` (a temporary name); see [`super::publish`].
struct SegmentWriter(ContainerWriter);

impl SegmentWriter {
    fn create(path: &Path, header: &Header) -> Result<Self> {
        ContainerWriter::with_header(path, &header.encode()).map(Self)
    }

    /// Write one section produced by `fill`, which appends bytes through the callback.
    fn section(
        &mut self,
        kind: SectionKind,
        index: u32,
        fill: impl FnOnce(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>,
    ) -> Result<()> {
        self.0.begin_indexed(kind as u32, index)?;
        fill(&mut |b: &[u8]| self.0.put(b))?;
        self.0.end()
    }

    fn finish(self) -> Result<u64> {
        self.0.finish()
    }
}

/// The TOKEN_BLOCK_SUMS of a TOKENS section written in pieces.
#[derive(Default)]
struct BlockSums {
    block: Vec<u8>,
    sums: Vec<u64>,
}

impl BlockSums {
    fn feed(&mut self, mut rest: &[u8]) {
        while !rest.is_empty() {
            let take = rest.len().min(format::TOKEN_BLOCK - self.block.len());
            self.block.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.block.len() == format::TOKEN_BLOCK {
                self.sums.push(xxhash_rust::xxh3::xxh3_64(&self.block));
                self.block.clear();
            }
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if !self.block.is_empty() {
            self.sums.push(xxhash_rust::xxh3::xxh3_64(&self.block));
        }
        self.sums.iter().flat_map(|x| x.to_le_bytes()).collect()
    }
}

/// Tokens encoded per call of [`TokenCodec::encode`] (one batched assignment).
const ENCODE_BATCH_TOKENS: usize = 8192;

/// Write `src` as a complete, fsynced segment file at `path` (which must not exist): token
/// vectors in `spec.dtype`, or, with `codec`, codes only (format v4, dtype 2). Returns the
/// file size.
///
/// # Errors
/// I/O errors; on error the partial file is left for the caller to remove.
pub fn write_segment(
    path: &Path,
    segment_id: u64,
    spec: &VectorSpec,
    src: &dyn SegmentSource,
    codec: Option<&dyn TokenCodec>,
) -> Result<u64> {
    let n = src.doc_count();
    let dim = spec.token_dim;
    let token_count: u64 = (0..n).map(|i| src.token_count(i) as u64).sum();
    let header = Header {
        format: format::FORMAT_VERSION,
        dtype: if codec.is_some() { format::DTYPE_CODES } else { spec.dtype.tag() },
        token_dim: dim as u32,
        doc_count: n as u64,
        token_count,
        segment_id,
        pooled_count: spec.pooled.len() as u32,
        record_len: codec.map_or(0, |c| c.record_len() as u32),
        pooled_dtype: if codec.is_some() { spec.dtype.tag() } else { 0 },
    };
    let mut w = SegmentWriter::create(path, &header)?;
    w.section(SectionKind::RowIds, 0, |put| (0..n).try_for_each(|i| put(&src.row_id(i).to_le_bytes())))?;
    w.section(SectionKind::TokenOffsets, 0, |put| {
        let mut acc = 0u64;
        put(&acc.to_le_bytes())?;
        (0..n).try_for_each(|i| {
            acc += src.token_count(i) as u64;
            put(&acc.to_le_bytes())
        })
    })?;
    let mut buf = Vec::new();
    let mut sums = BlockSums::default();
    let mut codes: Vec<u16> = Vec::new();
    w.section(SectionKind::Tokens, 0, |put| match codec {
        None => (0..n).try_for_each(|i| {
            buf.clear();
            src.tokens(i).as_ref().encode_into(spec.dtype, &mut buf);
            sums.feed(&buf);
            put(&buf)
        }),
        Some(codec) => {
            codes.reserve(token_count as usize);
            let mine = codec.codec_ref();
            let mut batch: Vec<f32> = Vec::new();
            let mut encode = |batch: &mut Vec<f32>,
                              codes: &mut Vec<u16>,
                              sums: &mut BlockSums,
                              put: &mut dyn FnMut(&[u8]) -> Result<()>| {
                if batch.is_empty() {
                    return Ok(());
                }
                buf.clear();
                codec.encode(batch, codes, &mut buf);
                batch.clear();
                sums.feed(&buf);
                put(&buf)
            };
            for i in 0..n {
                match src.codes(i) {
                    Some((c, r, of)) if of == mine => {
                        encode(&mut batch, &mut codes, &mut sums, put)?;
                        codes.extend_from_slice(c);
                        sums.feed(r);
                        put(r)?;
                    }
                    _ => {
                        batch.extend(src.tokens(i).into_f32());
                        if batch.len() >= ENCODE_BATCH_TOKENS * dim {
                            encode(&mut batch, &mut codes, &mut sums, put)?;
                        }
                    }
                }
            }
            encode(&mut batch, &mut codes, &mut sums, put)
        }
    })?;
    if codes.len() as u64 != token_count * u64::from(codec.is_some()) {
        return Err(Error::invalid("the token codec returned a wrong number of codes"));
    }
    w.section(SectionKind::TokenBlockSums, 0, |put| put(&sums.finish()))?;
    if let Some(codec) = codec {
        w.section(SectionKind::TokenCodes, 0, |put| {
            codes
                .chunks(1 << 16)
                .try_for_each(|c| put(&c.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()))
        })?;
        drop(codes);
        w.section(SectionKind::CodecRef, 0, |put| put(&codec.codec_ref()))?;
    }
    for p in 0..spec.pooled.len() {
        w.section(SectionKind::Pooled, p as u32, |put| {
            (0..n).try_for_each(|i| {
                buf.clear();
                src.pooled(i, p).encode_into(spec.dtype, &mut buf);
                put(&buf)
            })
        })?;
    }
    w.finish()
}

/// One section's location plus its lazily computed verification result.
#[derive(Debug)]
struct Section {
    entry: SectionEntry,
    verified: OnceLock<bool>,
}

/// A read-only view of a published segment file.
#[derive(Debug)]
pub struct SegmentReader {
    path: PathBuf,
    file: MappedFile,
    header: Header,
    /// Storage type of the vectors (TOKENS of a dense segment, POOLED of every segment).
    dtype: Dtype,
    dim: usize,
    /// Codes-only segments: TOKEN_CODES, the codec reference, and the codec attached by
    /// the database ([`SegmentReader::attach_codec`]).
    codes: Option<CodesPart>,
    rows: Range<usize>,
    offsets: Range<usize>,
    tokens: Section,
    /// Per-block checksums of TOKENS (v2): the section, and per block 0 = unchecked,
    /// 1 = good, 2 = damaged.
    token_blocks: Option<(Section, Vec<AtomicU8>)>,
    pooled: Vec<(Section, usize)>,
    /// Index sections embedded by format v2 (opaque here; `index/` reads them).
    legacy: Vec<Section>,
}

#[derive(Debug)]
struct CodesPart {
    codes: Section,
    codec_ref: [u8; 16],
    record_len: usize,
    codec: OnceLock<std::sync::Arc<dyn TokenCodec>>,
}

fn range(e: &SectionEntry) -> Range<usize> {
    e.offset as usize..(e.offset + e.len) as usize
}

impl SegmentReader {
    /// Open and validate the segment at `path`. Reads the header, footer, row ids and
    /// offsets; token and pooled data are verified on first use.
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the file when anything is inconsistent with the format
    /// or with `spec`; [`Error::IncompatibleFormat`] for an unsupported version.
    pub fn open(path: &Path, segment_id: u64, spec: &VectorSpec) -> Result<Self> {
        let file = MappedFile::open(path)?;
        let bytes = file.bytes();
        let header = Header::decode(path, bytes)?;
        let entries = format::decode_footer(path, bytes)?;
        let bad = |d: String| Error::corruption(path, d);
        if header.segment_id != segment_id {
            return Err(bad(format!("segment id {} != manifest id {segment_id}", header.segment_id)));
        }
        let is_codes = header.dtype == format::DTYPE_CODES && header.format >= 4;
        let dtype = Dtype::from_tag(if is_codes { header.pooled_dtype } else { header.dtype })
            .ok_or_else(|| bad("unknown dtype".into()))?;
        if dtype != spec.dtype || header.token_dim as usize != spec.token_dim {
            return Err(bad("dtype or token dimension differs from the collection spec".into()));
        }
        if is_codes && (spec.codes.is_none() || header.record_len == 0) {
            return Err(bad("codes-only segment in a collection that stores token vectors".into()));
        }
        let legacy: Vec<Section> = entries
            .iter()
            .filter(|e| format::LEGACY_INDEX_KINDS.contains(&e.kind))
            .map(|e| Section { entry: *e, verified: OnceLock::new() })
            .collect();
        if !legacy.is_empty() && header.format != 2 {
            return Err(bad("embedded index sections in a segment that is not format v2".into()));
        }
        let own = entries.iter().filter(|e| SectionKind::from_u32(e.kind).is_some()).count();
        if own + legacy.len() != entries.len() {
            return Err(bad("unknown section kind".into()));
        }
        let block_sums = entries.iter().find(|e| e.kind == SectionKind::TokenBlockSums as u32).copied();
        if header.pooled_count as usize != spec.pooled.len()
            || own != 3 + spec.pooled.len() + usize::from(block_sums.is_some()) + 2 * usize::from(is_codes)
        {
            return Err(bad("pooled section count differs from the collection spec".into()));
        }
        let find = |kind: SectionKind, index: u32| {
            entries
                .iter()
                .find(|e| e.kind == kind as u32 && e.index == index)
                .copied()
                .ok_or_else(|| bad(format!("missing section {}[{index}]", kind.name())))
        };
        let n = header.doc_count;
        let size = dtype.size() as u64;
        let expect_len = |e: &SectionEntry, want: Option<u64>| {
            if Some(e.len) == want {
                Ok(())
            } else {
                Err(bad(format!("section {} has wrong length {}", format::kind_name(e.kind), e.len)))
            }
        };
        let rows_e = find(SectionKind::RowIds, 0)?;
        expect_len(&rows_e, n.checked_mul(8))?;
        let offs_e = find(SectionKind::TokenOffsets, 0)?;
        expect_len(&offs_e, n.checked_add(1).and_then(|m| m.checked_mul(8)))?;
        let tok_e = find(SectionKind::Tokens, 0)?;
        let per_tok =
            if is_codes { u64::from(header.record_len) } else { u64::from(header.token_dim) * size };
        expect_len(&tok_e, header.token_count.checked_mul(per_tok))?;
        let codes = if is_codes {
            let codes_e = find(SectionKind::TokenCodes, 0)?;
            expect_len(&codes_e, header.token_count.checked_mul(2))?;
            let ref_e = find(SectionKind::CodecRef, 0)?;
            expect_len(&ref_e, Some(16))?;
            if xxhash_rust::xxh3::xxh3_128(&bytes[range(&ref_e)]) != ref_e.checksum {
                return Err(bad("checksum mismatch in section CODEC_REF".into()));
            }
            let mut codec_ref = [0u8; 16];
            codec_ref.copy_from_slice(&bytes[range(&ref_e)]);
            Some(CodesPart {
                codes: Section { entry: codes_e, verified: OnceLock::new() },
                codec_ref,
                record_len: header.record_len as usize,
                codec: OnceLock::new(),
            })
        } else {
            None
        };
        let mut pooled = Vec::new();
        for (i, p) in spec.pooled.iter().enumerate() {
            let e = find(SectionKind::Pooled, i as u32)?;
            expect_len(&e, n.checked_mul(p.dim as u64 * size))?;
            pooled.push((Section { entry: e, verified: OnceLock::new() }, p.dim));
        }
        for e in [&rows_e, &offs_e] {
            if xxhash_rust::xxh3::xxh3_128(&bytes[range(e)]) != e.checksum {
                return Err(bad(format!("checksum mismatch in section {}", format::kind_name(e.kind))));
            }
        }
        let token_blocks = match block_sums {
            None => None,
            Some(e) => {
                let blocks = tok_e.len.div_ceil(format::TOKEN_BLOCK as u64);
                expect_len(&e, blocks.checked_mul(8))?;
                let states = (0..blocks).map(|_| AtomicU8::new(0)).collect();
                Some((Section { entry: e, verified: OnceLock::new() }, states))
            }
        };
        let reader = Self {
            token_blocks,
            path: path.to_path_buf(),
            header,
            dtype,
            dim: spec.token_dim,
            codes,
            rows: range(&rows_e),
            offsets: range(&offs_e),
            tokens: Section { entry: tok_e, verified: OnceLock::new() },
            pooled,
            legacy,
            file,
        };
        reader.check_index()?;
        Ok(reader)
    }

    /// Row ids strictly increasing; offsets start at 0, strictly increase, end at token_count.
    fn check_index(&self) -> Result<()> {
        let rows = self.row_ids();
        if rows.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::corruption(&self.path, "row ids are not strictly increasing"));
        }
        let offs = self.offsets();
        let ok = offs.first() == Some(&0)
            && offs.last() == Some(&self.header.token_count)
            && offs.windows(2).all(|w| w[0] < w[1]);
        if !ok {
            return Err(Error::corruption(&self.path, "token offsets are inconsistent"));
        }
        Ok(())
    }

    fn slice<T: mmap::Pod>(&self, r: Range<usize>) -> &[T] {
        // Sections are 64-aligned in a page-aligned map and their lengths were checked
        // against the element size in `open`, so the cast cannot fail.
        mmap::cast(&self.file.bytes()[r]).unwrap_or(&[])
    }

    fn vec_ref(&self, r: Range<usize>) -> VecRef<'_> {
        match self.dtype {
            Dtype::F32 => VecRef::F32(self.slice(r)),
            Dtype::F16 => VecRef::F16(self.slice(r)),
        }
    }

    /// The file this segment was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of documents.
    pub fn doc_count(&self) -> usize {
        self.header.doc_count as usize
    }

    /// Number of token vectors.
    pub fn token_count(&self) -> u64 {
        self.header.token_count
    }

    /// File size in bytes.
    pub fn file_len(&self) -> u64 {
        self.file.bytes().len() as u64
    }

    /// Internal row ids, ascending.
    pub fn row_ids(&self) -> &[u64] {
        self.slice(self.rows.clone())
    }

    /// Token offsets (`doc_count + 1` entries).
    pub fn offsets(&self) -> &[u64] {
        self.slice(self.offsets.clone())
    }

    /// All token vectors of a dense segment (row-major); empty for a codes-only one.
    pub fn all_tokens(&self) -> VecRef<'_> {
        if self.codes.is_some() {
            return VecRef::F32(&[]);
        }
        self.vec_ref(range(&self.tokens.entry))
    }

    /// Token matrix of document `i`: borrowed from the map, or decoded by the attached
    /// codec in a codes-only segment.
    pub fn doc_tokens(&self, i: usize) -> Rows<'_> {
        let offs = self.offsets();
        let (a, b) = (offs[i] as usize, offs[i + 1] as usize);
        match &self.codes {
            None => {
                let base = self.tokens.entry.offset as usize;
                let s = self.dtype.size() * self.dim;
                Rows::Ref(self.vec_ref(base + a * s..base + b * s))
            }
            Some(cp) => {
                let mut out = vec![0f32; (b - a) * self.dim];
                // `Database::segment` attaches the codec before it hands the reader out.
                debug_assert!(cp.codec.get().is_some(), "codes-only segment read without its codec");
                if let (Some(codec), Some((codes, records))) = (cp.codec.get(), self.doc_codes(i)) {
                    codec.decode(codes, records, &mut out);
                }
                Rows::Owned(out)
            }
        }
    }

    /// Whether token vectors are stored as codes (format v4, dtype 2).
    pub fn is_codes(&self) -> bool {
        self.codes.is_some()
    }

    /// The codec reference of a codes-only segment (codec id, content checksum).
    pub fn codec_ref(&self) -> Option<[u8; 16]> {
        self.codes.as_ref().map(|c| c.codec_ref)
    }

    /// Attach the codec named by [`SegmentReader::codec_ref`] (once).
    ///
    /// # Errors
    /// [`Error::Corruption`] when `codec` is not the one the segment names or its record
    /// length differs.
    pub fn attach_codec(&self, codec: std::sync::Arc<dyn TokenCodec>) -> Result<()> {
        let Some(cp) = &self.codes else { return Ok(()) };
        if codec.codec_ref() != cp.codec_ref || codec.record_len() != cp.record_len {
            return Err(Error::corruption(&self.path, "the segment was encoded with another token codec"));
        }
        let _ = cp.codec.set(codec);
        Ok(())
    }

    /// The attached codec of a codes-only segment.
    pub fn codec(&self) -> Option<&std::sync::Arc<dyn TokenCodec>> {
        self.codes.as_ref().and_then(|c| c.codec.get())
    }

    /// Every token's code (codes-only segments).
    pub fn all_codes(&self) -> Option<&[u16]> {
        self.codes.as_ref().map(|c| self.slice(range(&c.codes.entry)))
    }

    /// Every token's record (codes-only segments).
    pub fn all_records(&self) -> Option<&[u8]> {
        self.codes.as_ref().map(|_| self.slice(range(&self.tokens.entry)))
    }

    /// Codes and records of document `i` (codes-only segments).
    pub fn doc_codes(&self, i: usize) -> Option<(&[u16], &[u8])> {
        let cp = self.codes.as_ref()?;
        let offs = self.offsets();
        let (a, b) = (offs[i] as usize, offs[i + 1] as usize);
        let codes: &[u16] = self.slice(range(&cp.codes.entry));
        let base = self.tokens.entry.offset as usize;
        Some((&codes[a..b], &self.file.bytes()[base + a * cp.record_len..base + b * cp.record_len]))
    }

    /// Verify TOKEN_CODES (cached; a no-op for dense segments).
    ///
    /// # Errors
    /// [`Error::Corruption`] on a checksum mismatch.
    pub fn verify_codes(&self) -> Result<()> {
        self.codes.as_ref().map_or(Ok(()), |c| self.verify(&c.codes))
    }

    /// Pooled vector `p` of document `i`.
    pub fn pooled(&self, p: usize, i: usize) -> VecRef<'_> {
        let (sec, dim) = &self.pooled[p];
        let s = self.dtype.size();
        let base = sec.entry.offset as usize + i * dim * s;
        self.vec_ref(base..base + dim * s)
    }

    fn verify(&self, sec: &Section) -> Result<()> {
        let ok = *sec.verified.get_or_init(|| {
            let r = range(&sec.entry);
            xxhash_rust::xxh3::xxh3_128(&self.file.bytes()[r]) == sec.entry.checksum
        });
        if ok {
            Ok(())
        } else {
            let what = format!(
                "checksum mismatch in section {}[{}]",
                format::kind_name(sec.entry.kind),
                sec.entry.index
            );
            Err(Error::corruption(&self.path, what))
        }
    }

    /// Verify the token section (once; later calls return the cached result).
    ///
    /// # Errors
    /// [`Error::Corruption`] on a checksum mismatch.
    pub fn verify_tokens(&self) -> Result<()> {
        self.verify_codes()?;
        self.verify(&self.tokens)
    }

    /// Verify the token vectors of documents `docs`: only the 64 KiB blocks they occupy when
    /// the segment has block checksums (v2), the whole section otherwise. Results are cached
    /// per block.
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the block on a mismatch.
    pub fn verify_doc_tokens(&self, docs: &[u32]) -> Result<()> {
        let Some((sums_sec, states)) = &self.token_blocks else { return self.verify_tokens() };
        self.verify_codes()?;
        if self.tokens.verified.get() == Some(&true) {
            return Ok(());
        }
        self.verify(sums_sec)?;
        let sums: &[u64] = self.slice(range(&sums_sec.entry));
        let row = self.codes.as_ref().map_or(self.dim * self.dtype.size(), |c| c.record_len) as u64;
        let offs = self.offsets();
        let mut need: Vec<usize> = Vec::new();
        for &d in docs {
            let (a, b) = (offs[d as usize] * row, offs[d as usize + 1] * row);
            if b <= a {
                continue;
            }
            let (first, last) =
                ((a / format::TOKEN_BLOCK as u64) as usize, ((b - 1) / format::TOKEN_BLOCK as u64) as usize);
            need.extend((first..=last).filter(|&k| states[k].load(Ordering::Relaxed) != 1));
        }
        need.sort_unstable();
        need.dedup();
        let base = self.tokens.entry.offset as usize;
        let end = base + self.tokens.entry.len as usize;
        let bytes = self.file.bytes();
        let bad = need.par_iter().find_any(|&&k| {
            let lo = base + k * format::TOKEN_BLOCK;
            let ok = xxhash_rust::xxh3::xxh3_64(&bytes[lo..(lo + format::TOKEN_BLOCK).min(end)]) == sums[k];
            states[k].store(if ok { 1 } else { 2 }, Ordering::Relaxed);
            !ok
        });
        match bad {
            None => Ok(()),
            Some(k) => Err(Error::corruption(&self.path, format!("checksum mismatch in TOKENS block {k}"))),
        }
    }

    /// Verify pooled section `p` (cached).
    ///
    /// # Errors
    /// [`Error::Corruption`] on a checksum mismatch.
    pub fn verify_pooled(&self, p: usize) -> Result<()> {
        self.verify(&self.pooled[p].0)
    }

    /// Verify every section.
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the first damaged section.
    pub fn verify_all(&self) -> Result<()> {
        self.verify_tokens()?;
        if let Some((sums, _)) = &self.token_blocks {
            self.verify(sums)?;
        }
        (0..self.pooled.len()).try_for_each(|p| self.verify_pooled(p))?;
        self.legacy.iter().try_for_each(|s| self.verify(s))
    }

    /// The trailer checksum, which identifies the file's content (side files record it).
    #[must_use]
    pub fn content_sum(&self) -> u64 {
        format::content_sum(self.file.bytes())
    }

    /// Format version of the file.
    #[must_use]
    pub fn format(&self) -> u32 {
        self.header.format
    }

    /// The embedded (format v2) index sections: kind, index, length.
    pub fn legacy_sections(&self) -> impl Iterator<Item = (u32, u32, u64)> + '_ {
        self.legacy.iter().map(|s| (s.entry.kind, s.entry.index, s.entry.len))
    }

    /// An embedded (format v2) index section as `&[T]`, checksum-verified on first use
    /// when `verify`: `Ok(None)` when the segment has none.
    ///
    /// # Errors
    /// [`Error::Corruption`] on a checksum mismatch or a ragged length.
    pub fn legacy_section<T: Pod>(&self, kind: u32, index: u32, verify: bool) -> Result<Option<&[T]>> {
        let Some(sec) = self.legacy.iter().find(|s| s.entry.kind == kind && s.entry.index == index) else {
            return Ok(None);
        };
        if verify {
            self.verify(sec)?;
        }
        match mmap::cast(&self.file.bytes()[range(&sec.entry)]) {
            Some(v) => Ok(Some(v)),
            None => Err(Error::corruption(&self.path, format!("section kind {kind} has a ragged length"))),
        }
    }
}

/// Verify a segment file by its own checksums alone (no collection spec needed): the
/// header, the section table and trailer, and every section's xxh3-128. What backups
/// check before they copy a segment.
///
/// # Errors
/// [`Error::Corruption`] naming the file and the damaged part.
pub fn verify_file(path: &Path) -> Result<()> {
    let file = MappedFile::open(path)?;
    let bytes = file.bytes();
    Header::decode(path, bytes)?;
    for e in format::decode_footer(path, bytes)? {
        if xxhash_rust::xxh3::xxh3_128(&bytes[range(&e)]) != e.checksum {
            return Err(Error::corruption(
                path,
                format!("checksum mismatch in section {}", format::kind_name(e.kind)),
            ));
        }
    }
    Ok(())
}
