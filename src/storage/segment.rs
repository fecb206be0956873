//! Segment writer (streams sections to a temporary file) and reader (zero-copy over mmap).

use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use rayon::prelude::*;

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::format::{self, Header, SectionEntry, SectionKind};
use super::mmap::{self, MappedFile};
use crate::error::IoContext;
use crate::index::hnsw::{self, GraphView, HnswParams};
use crate::index::muvera::Muvera;
use crate::index::plaid::{self, Codec, PlaidView};
use crate::types::{Dtype, VectorSpec};
use crate::{Error, Result};

/// A borrowed vector (or matrix) in either storage type.
#[derive(Debug, Clone, Copy)]
pub enum VecRef<'a> {
    /// f32 components.
    F32(&'a [f32]),
    /// f16 components.
    F16(&'a [f16]),
}

impl VecRef<'_> {
    /// Number of components.
    pub fn len(&self) -> usize {
        match self {
            VecRef::F32(v) => v.len(),
            VecRef::F16(v) => v.len(),
        }
    }

    /// True when there are no components.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The components in `r`.
    #[must_use]
    pub fn slice(&self, r: Range<usize>) -> Self {
        match self {
            VecRef::F32(v) => VecRef::F32(&v[r]),
            VecRef::F16(v) => VecRef::F16(&v[r]),
        }
    }

    /// Copy into a new f32 vector.
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            VecRef::F32(v) => v.to_vec(),
            VecRef::F16(v) => v.to_f32_vec(),
        }
    }

    /// Append the components, converted to `dtype`, as little-endian bytes.
    pub fn encode_into(&self, dtype: Dtype, out: &mut Vec<u8>) {
        match (self, dtype) {
            (VecRef::F32(v), Dtype::F32) => out.extend_from_slice(mmap::as_bytes(v)),
            (VecRef::F16(v), Dtype::F16) => out.extend_from_slice(mmap::as_bytes(v)),
            (VecRef::F32(v), Dtype::F16) => {
                let mut h = vec![f16::ZERO; v.len()];
                h.convert_from_f32_slice(v);
                out.extend_from_slice(mmap::as_bytes(&h));
            }
            (VecRef::F16(v), Dtype::F32) => out.extend_from_slice(mmap::as_bytes(&v.to_f32_vec())),
        }
    }
}

/// Documents to write into a segment, in ascending row-id order. Iterated once per section.
pub trait SegmentSource {
    /// Number of documents.
    fn doc_count(&self) -> usize;
    /// Internal row id of document `i`.
    fn row_id(&self, i: usize) -> u64;
    /// Token matrix of document `i` (row-major).
    fn tokens(&self, i: usize) -> VecRef<'_>;
    /// Pooled vector `p` of document `i`.
    fn pooled(&self, i: usize, p: usize) -> VecRef<'_>;
}

/// Streams a segment to `path` (a temporary name); see [`super::publish`].
struct SegmentWriter {
    path: PathBuf,
    out: BufWriter<std::fs::File>,
    pos: u64,
    entries: Vec<SectionEntry>,
}

impl SegmentWriter {
    fn create(path: &Path, header: &Header) -> Result<Self> {
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).at(path)?;
        let mut w = Self {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
            entries: Vec::new(),
        };
        w.raw(&header.encode())?;
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

    /// Write one section produced by `fill`, which appends bytes through the callback.
    fn section(
        &mut self,
        kind: SectionKind,
        index: u32,
        fill: impl FnOnce(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>,
    ) -> Result<()> {
        self.align()?;
        let offset = self.pos;
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        fill(&mut |b: &[u8]| {
            hasher.update(b);
            self.raw(b)
        })?;
        let len = self.pos - offset;
        self.entries.push(SectionEntry { kind, index, offset, len, checksum: hasher.digest128() });
        Ok(())
    }

    fn finish(mut self) -> Result<u64> {
        self.align()?;
        let footer = format::encode_footer(&self.entries, self.pos);
        self.raw(&footer)?;
        let file = self.out.into_inner().map_err(|e| Error::io(&self.path, e.into_error()))?;
        super::fault::point("segment.fsync", &self.path)?;
        file.sync_all().at(&self.path)?;
        Ok(self.pos)
    }
}

/// Index sections to build while writing a segment.
#[derive(Default)]
pub struct SegmentIndexes<'a> {
    /// PLAID: (index id, codec): the token vectors are encoded into the PLAID sections.
    pub plaid: Option<(u32, &'a Codec)>,
    /// HNSW: (pooled vector number, index id, parameters): a graph over that pooled vector.
    pub hnsw: Vec<(usize, u32, HnswParams)>,
    /// MUVERA: (index id, encoder, graph parameters): unit-length encodings of every
    /// document and an HNSW graph over them.
    pub muvera: Option<(u32, &'a Muvera, HnswParams)>,
}

/// Documents encoded per parallel batch while writing MUVERA sections (bounds the f32 copy
/// of their token vectors).
const FDE_BATCH: usize = 1024;

/// Unit-length MUVERA encodings of every document of `src`, `n × out_dim` row-major.
fn muvera_encodings(src: &dyn SegmentSource, m: &Muvera) -> Vec<f16> {
    let n = src.doc_count();
    let mut out = Vec::with_capacity(n * m.out_dim());
    for start in (0..n).step_by(FDE_BATCH) {
        let docs: Vec<Vec<f32>> =
            (start..(start + FDE_BATCH).min(n)).map(|i| src.tokens(i).to_f32()).collect();
        let fdes: Vec<Vec<f32>> = docs
            .par_iter()
            .map(|d| {
                let mut f = m.encode_doc(d);
                crate::testing::normalize(&mut f);
                f
            })
            .collect();
        fdes.iter().for_each(|f| out.extend(f.iter().map(|&x| f16::from_f32(x))));
    }
    out
}

/// Write `src` as a complete, fsynced segment file at `path` (which must not exist), with
/// the index sections `ix` asks for. Returns the file size.
///
/// # Errors
/// I/O errors; on error the partial file is left for the caller to remove.
pub fn write_segment(
    path: &Path,
    segment_id: u64,
    spec: &VectorSpec,
    src: &dyn SegmentSource,
    ix: &SegmentIndexes<'_>,
) -> Result<u64> {
    let n = src.doc_count();
    let token_count: u64 = (0..n).map(|i| (src.tokens(i).len() / spec.token_dim) as u64).sum();
    let header = Header {
        format: format::FORMAT_VERSION,
        dtype: spec.dtype.tag(),
        token_dim: spec.token_dim as u32,
        doc_count: n as u64,
        token_count,
        segment_id,
        pooled_count: spec.pooled.len() as u32,
    };
    let mut w = SegmentWriter::create(path, &header)?;
    w.section(SectionKind::RowIds, 0, |put| (0..n).try_for_each(|i| put(&src.row_id(i).to_le_bytes())))?;
    w.section(SectionKind::TokenOffsets, 0, |put| {
        let mut acc = 0u64;
        put(&acc.to_le_bytes())?;
        (0..n).try_for_each(|i| {
            acc += (src.tokens(i).len() / spec.token_dim) as u64;
            put(&acc.to_le_bytes())
        })
    })?;
    let mut buf = Vec::new();
    let (mut block, mut sums) = (Vec::with_capacity(format::TOKEN_BLOCK), Vec::new());
    w.section(SectionKind::Tokens, 0, |put| {
        (0..n).try_for_each(|i| {
            buf.clear();
            src.tokens(i).encode_into(spec.dtype, &mut buf);
            let mut rest = buf.as_slice();
            while !rest.is_empty() {
                let take = rest.len().min(format::TOKEN_BLOCK - block.len());
                block.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if block.len() == format::TOKEN_BLOCK {
                    sums.push(xxhash_rust::xxh3::xxh3_64(&block));
                    block.clear();
                }
            }
            put(&buf)
        })
    })?;
    if !block.is_empty() {
        sums.push(xxhash_rust::xxh3::xxh3_64(&block));
    }
    drop(block);
    w.section(SectionKind::TokenBlockSums, 0, |put| {
        put(&sums.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
    })?;
    for p in 0..spec.pooled.len() {
        w.section(SectionKind::Pooled, p as u32, |put| {
            (0..n).try_for_each(|i| {
                buf.clear();
                src.pooled(i, p).encode_into(spec.dtype, &mut buf);
                put(&buf)
            })
        })?;
    }
    for &(p, id, params) in &ix.hnsw {
        let words = hnsw::build(n, |i| src.pooled(i, p).to_f32(), params, id);
        w.section(SectionKind::HnswGraph, p as u32, |put| {
            put(&words.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
        })?;
    }
    if let Some((id, m, params)) = ix.muvera {
        let fde = muvera_encodings(src, m);
        let dim = m.out_dim();
        w.section(SectionKind::MuveraFde, id, |put| {
            fde.chunks(1 << 16)
                .try_for_each(|c| put(&c.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()))
        })?;
        let words = hnsw::build(n, |i| fde[i * dim..(i + 1) * dim].to_f32_vec(), params, id);
        drop(fde);
        w.section(SectionKind::MuveraGraph, id, |put| {
            put(&words.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
        })?;
    }
    if let Some((ix, codec)) = ix.plaid {
        let mut codes = Vec::new();
        w.section(SectionKind::PlaidResiduals, ix, |put| {
            codes = codec.encode_stream(n, |i| src.tokens(i).to_f32(), put)?;
            Ok(())
        })?;
        let le = |put: &mut dyn FnMut(&[u8]) -> Result<()>, bytes: Vec<u8>| put(&bytes);
        w.section(SectionKind::PlaidCodes, ix, |put| {
            le(put, codes.iter().flat_map(|c| c.to_le_bytes()).collect())
        })?;
        let mut offsets = vec![0u64];
        for i in 0..n {
            offsets.push(offsets[i] + (src.tokens(i).len() / spec.token_dim) as u64);
        }
        let (ivf_offsets, ivf_docs) = plaid::build_ivf(&codes, &offsets, codec.num_centroids());
        w.section(SectionKind::PlaidIvfOffsets, ix, |put| {
            le(put, ivf_offsets.iter().flat_map(|c| c.to_le_bytes()).collect())
        })?;
        w.section(SectionKind::PlaidIvfDocs, ix, |put| {
            le(put, ivf_docs.iter().flat_map(|c| c.to_le_bytes()).collect())
        })?;
    }
    w.finish()
}

/// A cached verification result (`Err` holds the problem).
type Verdict = OnceLock<std::result::Result<(), String>>;

/// The PLAID sections of a segment, located at open and validated on first use.
#[derive(Debug)]
struct PlaidSections {
    index_id: u32,
    residuals: SectionEntry,
    codes: SectionEntry,
    ivf_offsets: SectionEntry,
    ivf_docs: SectionEntry,
    /// Checksums and structure verified (`Err` holds the problem), per codec shape.
    verified: OnceLock<std::result::Result<(), String>>,
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
    dtype: Dtype,
    dim: usize,
    rows: Range<usize>,
    offsets: Range<usize>,
    tokens: Section,
    /// Per-block checksums of TOKENS (v2): the section, and per block 0 = unchecked,
    /// 1 = good, 2 = damaged.
    token_blocks: Option<(Section, Vec<AtomicU8>)>,
    pooled: Vec<(Section, usize)>,
    plaid: Option<PlaidSections>,
    /// HNSW graphs: pooled vector number, section, verification (checksum + structure).
    hnsw: Vec<(usize, SectionEntry, Verdict)>,
    /// MUVERA encodings and their graph, verified together on first use.
    muvera: Option<(SectionEntry, SectionEntry, Verdict)>,
}

/// The MUVERA sections of a segment: unit-length encodings and the graph over them.
#[derive(Debug, Clone)]
pub struct MuveraView<'a> {
    /// The graph (node `i` = local document `i`).
    pub graph: GraphView<'a>,
    fde: &'a [f16],
    dim: usize,
}

impl MuveraView<'_> {
    /// `q · FDE(doc)` (the stored encoding is unit length).
    #[must_use]
    pub fn dot(&self, q: &[f32], doc: u32) -> f32 {
        let at = doc as usize * self.dim;
        crate::scoring::dot(q, VecRef::F16(&self.fde[at..at + self.dim]))
    }
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
        let dtype = Dtype::from_tag(header.dtype).ok_or_else(|| bad("unknown dtype".into()))?;
        if dtype != spec.dtype || header.token_dim as usize != spec.token_dim {
            return Err(bad("dtype or token dimension differs from the collection spec".into()));
        }
        let plaid_count = entries.iter().filter(|e| e.kind.is_plaid()).count();
        let hnsw: Vec<_> = entries
            .iter()
            .filter(|e| e.kind == SectionKind::HnswGraph)
            .map(|e| (e.index as usize, *e, OnceLock::new()))
            .collect();
        if hnsw.iter().any(|(p, e, _)| *p >= spec.pooled.len() || !e.len.is_multiple_of(4))
            || (!hnsw.is_empty() && header.format < 2)
        {
            return Err(bad("HNSW graph section for an unknown pooled vector or ragged".into()));
        }
        let block_sums = entries.iter().find(|e| e.kind == SectionKind::TokenBlockSums).copied();
        let fde = entries.iter().find(|e| e.kind == SectionKind::MuveraFde).copied();
        let fde_graph = entries.iter().find(|e| e.kind == SectionKind::MuveraGraph).copied();
        let muvera = match (fde, fde_graph) {
            (None, None) => None,
            (Some(f), Some(g))
                if f.index == g.index
                    && header.format >= 2
                    && g.len.is_multiple_of(4)
                    && (header.doc_count == 0 || f.len.is_multiple_of(2 * header.doc_count)) =>
            {
                Some((f, g, OnceLock::new()))
            }
            _ => return Err(bad("MUVERA sections are incomplete, mismatched or ragged".into())),
        };
        if header.pooled_count as usize != spec.pooled.len()
            || entries.len()
                != 3 + spec.pooled.len()
                    + plaid_count
                    + hnsw.len()
                    + usize::from(block_sums.is_some())
                    + 2 * usize::from(muvera.is_some())
        {
            return Err(bad("pooled section count differs from the collection spec".into()));
        }
        let find = |kind: SectionKind, index: u32| {
            entries
                .iter()
                .find(|e| e.kind == kind && e.index == index)
                .copied()
                .ok_or_else(|| bad(format!("missing section {}[{index}]", kind.name())))
        };
        let n = header.doc_count;
        let size = dtype.size() as u64;
        let expect_len = |e: &SectionEntry, want: Option<u64>| {
            if Some(e.len) == want {
                Ok(())
            } else {
                Err(bad(format!("section {} has wrong length {}", e.kind.name(), e.len)))
            }
        };
        let rows_e = find(SectionKind::RowIds, 0)?;
        expect_len(&rows_e, n.checked_mul(8))?;
        let offs_e = find(SectionKind::TokenOffsets, 0)?;
        expect_len(&offs_e, n.checked_add(1).and_then(|m| m.checked_mul(8)))?;
        let tok_e = find(SectionKind::Tokens, 0)?;
        let per_tok = u64::from(header.token_dim) * size;
        expect_len(&tok_e, header.token_count.checked_mul(per_tok))?;
        let mut pooled = Vec::new();
        for (i, p) in spec.pooled.iter().enumerate() {
            let e = find(SectionKind::Pooled, i as u32)?;
            expect_len(&e, n.checked_mul(p.dim as u64 * size))?;
            pooled.push((Section { entry: e, verified: OnceLock::new() }, p.dim));
        }
        let plaid = match entries.iter().find(|e| e.kind.is_plaid()).map(|e| e.index) {
            None => None,
            Some(ix) => {
                let p = PlaidSections {
                    index_id: ix,
                    residuals: find(SectionKind::PlaidResiduals, ix)?,
                    codes: find(SectionKind::PlaidCodes, ix)?,
                    ivf_offsets: find(SectionKind::PlaidIvfOffsets, ix)?,
                    ivf_docs: find(SectionKind::PlaidIvfDocs, ix)?,
                    verified: OnceLock::new(),
                };
                if plaid_count != 4 || header.format < 2 {
                    return Err(bad("PLAID sections are incomplete or in a v1 file".into()));
                }
                expect_len(&p.codes, header.token_count.checked_mul(2))?;
                if !p.ivf_offsets.len.is_multiple_of(8) || !p.ivf_docs.len.is_multiple_of(4) {
                    return Err(bad("PLAID inverted lists have a ragged length".into()));
                }
                Some(p)
            }
        };
        for e in [&rows_e, &offs_e] {
            if xxhash_rust::xxh3::xxh3_128(&bytes[range(e)]) != e.checksum {
                return Err(bad(format!("checksum mismatch in section {}", e.kind.name())));
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
            rows: range(&rows_e),
            offsets: range(&offs_e),
            tokens: Section { entry: tok_e, verified: OnceLock::new() },
            pooled,
            plaid,
            hnsw,
            muvera,
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

    /// All token vectors of the segment (row-major).
    pub fn all_tokens(&self) -> VecRef<'_> {
        self.vec_ref(range(&self.tokens.entry))
    }

    /// Token matrix of document `i`.
    pub fn doc_tokens(&self, i: usize) -> VecRef<'_> {
        let offs = self.offsets();
        let (a, b) = (offs[i] as usize * self.dim, offs[i + 1] as usize * self.dim);
        let base = self.tokens.entry.offset as usize;
        let s = self.dtype.size();
        self.vec_ref(base + a * s..base + b * s)
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
            let what = format!("checksum mismatch in section {}[{}]", sec.entry.kind.name(), sec.entry.index);
            Err(Error::corruption(&self.path, what))
        }
    }

    /// Verify the token section (once; later calls return the cached result).
    ///
    /// # Errors
    /// [`Error::Corruption`] on a checksum mismatch.
    pub fn verify_tokens(&self) -> Result<()> {
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
        if self.tokens.verified.get() == Some(&true) {
            return Ok(());
        }
        self.verify(sums_sec)?;
        let sums: &[u64] = self.slice(range(&sums_sec.entry));
        let (offs, row) = (self.offsets(), (self.dim * self.dtype.size()) as u64);
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
        let plaid = self.plaid.iter().flat_map(|p| [&p.residuals, &p.codes, &p.ivf_offsets, &p.ivf_docs]);
        let muvera = self.muvera.iter().flat_map(|(f, g, _)| [f, g]);
        for e in plaid.chain(self.hnsw.iter().map(|(_, e, _)| e)).chain(muvera) {
            if xxhash_rust::xxh3::xxh3_128(&self.file.bytes()[range(e)]) != e.checksum {
                let what = format!("checksum mismatch in section {}[{}]", e.kind.name(), e.index);
                return Err(Error::corruption(&self.path, what));
            }
        }
        Ok(())
    }

    /// The index id of the HNSW graph over pooled vector `p`, if the segment has one.
    pub fn hnsw_index_id(&self, p: usize) -> Option<u32> {
        let (_, e, _) = self.hnsw.iter().find(|(q, _, _)| *q == p)?;
        let words: &[u32] = self.slice(range(e));
        words.get(1).copied()
    }

    /// Bytes of the HNSW graph over pooled vector `p`.
    pub fn hnsw_bytes(&self, p: usize) -> u64 {
        self.hnsw.iter().find(|(q, _, _)| *q == p).map_or(0, |(_, e, _)| e.len)
    }

    /// The HNSW graph over pooled vector `p` built for index `index_id`: `None` when the
    /// segment has none for that index. Checksum and structure are verified on first use.
    ///
    /// # Errors
    /// [`Error::Corruption`] when the section is damaged.
    pub fn hnsw(&self, p: usize, index_id: u32) -> Result<Option<GraphView<'_>>> {
        let Some((_, e, verified)) = self.hnsw.iter().find(|(q, _, _)| *q == p) else { return Ok(None) };
        let words: &[u32] = self.slice(range(e));
        if words.get(1) != Some(&index_id) {
            return Ok(None);
        }
        let verdict = verified.get_or_init(|| {
            if xxhash_rust::xxh3::xxh3_128(&self.file.bytes()[range(e)]) != e.checksum {
                return Err(format!("checksum mismatch in section HNSW_GRAPH[{p}]"));
            }
            GraphView::parse(words, true).map(|_| ())
        });
        match verdict {
            Ok(()) => GraphView::parse(words, false).map(Some).map_err(|w| Error::corruption(&self.path, w)),
            Err(what) => Err(Error::corruption(&self.path, what.clone())),
        }
    }

    /// The id of the MUVERA index whose sections this segment carries, if any.
    pub fn muvera_index_id(&self) -> Option<u32> {
        self.muvera.as_ref().map(|(f, _, _)| f.index)
    }

    /// Bytes of the MUVERA sections (encodings and graph).
    pub fn muvera_bytes(&self) -> u64 {
        self.muvera.as_ref().map_or(0, |(f, g, _)| f.len + g.len)
    }

    /// The MUVERA encodings (of dimension `dim`) and graph built for index `index_id`:
    /// `None` when the segment carries none for that index. Checksums and structure are
    /// verified on first use.
    ///
    /// # Errors
    /// [`Error::Corruption`] when the sections are damaged or do not fit `dim`.
    pub fn muvera(&self, index_id: u32, dim: usize) -> Result<Option<MuveraView<'_>>> {
        let Some((f, g, verified)) = self.muvera.as_ref().filter(|(f, _, _)| f.index == index_id) else {
            return Ok(None);
        };
        let n = self.doc_count();
        let words: &[u32] = self.slice(range(g));
        let verdict = verified.get_or_init(|| {
            for e in [f, g] {
                if xxhash_rust::xxh3::xxh3_128(&self.file.bytes()[range(e)]) != e.checksum {
                    return Err(format!("checksum mismatch in section {}[{}]", e.kind.name(), e.index));
                }
            }
            if f.len != (n * dim * 2) as u64 {
                return Err(format!("MUVERA_FDE holds {} bytes, expected {n} × {dim} f16", f.len));
            }
            let graph = GraphView::parse(words, true)?;
            if graph.len() != n || graph.index_id() != index_id {
                return Err("MUVERA graph does not cover the segment's documents".into());
            }
            Ok(())
        });
        if let Err(what) = verdict {
            return Err(Error::corruption(&self.path, what.clone()));
        }
        let graph = GraphView::parse(words, false).map_err(|w| Error::corruption(&self.path, w))?;
        Ok(Some(MuveraView { graph, fde: self.slice(range(f)), dim }))
    }

    /// The id of the PLAID index whose sections this segment carries, if any.
    pub fn plaid_index_id(&self) -> Option<u32> {
        self.plaid.as_ref().map(|p| p.index_id)
    }

    /// Bytes of the PLAID sections (codes, residuals, inverted lists).
    pub fn plaid_bytes(&self) -> u64 {
        self.plaid.as_ref().map_or(0, |p| p.residuals.len + p.codes.len + p.ivf_offsets.len + p.ivf_docs.len)
    }

    /// The PLAID view of this segment for index `index_id` with `codec`: `None` when the
    /// segment carries no sections of that index (written before it, or by an older
    /// format). Checksums and structure are verified on first use.
    ///
    /// # Errors
    /// [`Error::Corruption`] when the sections are damaged or do not fit the codec.
    pub fn plaid<'a>(&'a self, index_id: u32, codec: &'a Codec) -> Result<Option<PlaidView<'a>>> {
        let Some(p) = self.plaid.as_ref().filter(|p| p.index_id == index_id) else { return Ok(None) };
        let view = PlaidView {
            codec,
            codes: self.slice(range(&p.codes)),
            residuals: &self.file.bytes()[range(&p.residuals)],
            offsets: self.offsets(),
            ivf_offsets: self.slice(range(&p.ivf_offsets)),
            ivf_docs: self.slice(range(&p.ivf_docs)),
        };
        // The residuals are not read by searches (they rerank on the stored vectors); they
        // are verified by `verify_all` / `Database::check`, not here.
        let verdict = p.verified.get_or_init(|| {
            for e in [&p.codes, &p.ivf_offsets, &p.ivf_docs] {
                if xxhash_rust::xxh3::xxh3_128(&self.file.bytes()[range(e)]) != e.checksum {
                    return Err(format!("checksum mismatch in section {}[{}]", e.kind.name(), e.index));
                }
            }
            view.validate()
        });
        match verdict {
            Ok(()) => Ok(Some(view)),
            Err(what) => Err(Error::corruption(&self.path, what.clone())),
        }
    }
}
