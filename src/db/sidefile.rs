//! Index side files: the glue between storage's opaque containers and `index/`'s sections.
//!
//! Every index of a segment is one side file, `segments/<collection>/<segment>-<index>.<kind>`
//! (a [`crate::storage::container`] file whose header names the segment id and the
//! segment's content checksum). Shared index state — the PLAID codec, MUVERA's random
//! matrices — is one per-index file, `segments/<collection>/ix<n>.<kind>`. The catalog
//! names both (`side_files`, `indexes.file`); a file it does not name is garbage.
//!
//! Format v2 segments carried their indexes as embedded sections; [`IndexPart::Legacy`]
//! reads those through the same [`Sections`] interface until compaction rewrites the
//! segment.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use half::f16;

use super::index::{HnswState, MuveraState, PlaidState};
use super::Inner;
use crate::catalog::{CollectionRow, SideFileRow};
use crate::index::{hnsw, muvera, plaid, SectionSink, Sections};
use crate::storage::container::{self, Container, ContainerHeader, ContainerWriter};
use crate::storage::mmap::Pod;
use crate::storage::segment::SegmentReader;
use crate::{Error, Result};

/// One index of a collection, loaded (what a side file is built for).
#[derive(Clone)]
pub(crate) enum IndexDef {
    Plaid(PlaidState),
    Hnsw(HnswState),
    Muvera(MuveraState),
}

impl IndexDef {
    /// Catalog id.
    pub fn id(&self) -> i64 {
        match self {
            IndexDef::Plaid(p) => p.id,
            IndexDef::Hnsw(h) => h.id,
            IndexDef::Muvera(m) => m.id,
        }
    }

    /// File extension and container kind tag.
    pub fn ext(&self) -> &'static str {
        match self {
            IndexDef::Plaid(_) => "plaid",
            IndexDef::Hnsw(_) => "hnsw",
            IndexDef::Muvera(_) => "muvera",
        }
    }

    /// Whether the format v2 segment `r` carries this index's sections itself.
    pub fn legacy_in(&self, r: &SegmentReader) -> bool {
        let id = self.id() as u32;
        match self {
            IndexDef::Plaid(_) => r.legacy_sections().any(|(k, i, _)| k == plaid::tags::CODES && i == id),
            IndexDef::Muvera(_) => r.legacy_sections().any(|(k, i, _)| k == muvera::tags::GRAPH && i == id),
            IndexDef::Hnsw(h) => {
                matches!(r.legacy_section::<u32>(hnsw::GRAPH_TAG, h.pooled as u32, false),
                    Ok(Some(w)) if w.get(1) == Some(&id))
            }
        }
    }

    /// The `index` field of this index's embedded sections in a v2 segment.
    fn legacy_index(&self) -> u32 {
        match self {
            IndexDef::Hnsw(h) => h.pooled as u32,
            other => other.id() as u32,
        }
    }

    /// Bytes of this index's embedded sections in the v2 segment `r`.
    pub fn legacy_bytes(&self, r: &SegmentReader) -> u64 {
        let tags: &[u32] = match self {
            IndexDef::Plaid(_) => {
                &[plaid::tags::RESIDUALS, plaid::tags::CODES, plaid::tags::IVF_OFFSETS, plaid::tags::IVF_DOCS]
            }
            IndexDef::Hnsw(_) => &[hnsw::GRAPH_TAG],
            IndexDef::Muvera(_) => &[muvera::tags::FDE, muvera::tags::GRAPH],
        };
        let ix = self.legacy_index();
        r.legacy_sections().filter(|(k, i, _)| tags.contains(k) && *i == ix).map(|(_, _, l)| l).sum()
    }

    /// Encode the index's sections for segment `r` into `sink`.
    fn write(&self, r: &SegmentReader, sink: &mut dyn SectionSink) -> Result<()> {
        let n = r.doc_count();
        match self {
            IndexDef::Plaid(p) => match segment_codes(p, r) {
                Some((codes, _)) => plaid::write_ivf_sections(&p.codec, codes, r.offsets(), sink),
                None => plaid::write_sections(&p.codec, n, |i| r.doc_tokens(i).into_f32(), r.offsets(), sink),
            },
            IndexDef::Hnsw(h) => {
                hnsw::write_sections(n, |i| r.pooled(h.pooled, i).to_f32(), h.params, h.id as u32, sink)
            }
            IndexDef::Muvera(m) => muvera::write_sections(
                &m.encoder,
                n,
                |i| r.doc_tokens(i).into_f32(),
                m.hnsw,
                m.id as u32,
                sink,
            ),
        }
    }
}

/// The codes and residuals of a codes-only segment encoded with the PLAID index's codec
/// (the collection's token codec): the index then reads them from the segment.
pub(crate) fn segment_codes<'a>(p: &PlaidState, r: &'a SegmentReader) -> Option<(&'a [u16], &'a [u8])> {
    if p.token_ref.is_none() || r.codec_ref() != p.token_ref {
        return None;
    }
    Some((r.all_codes()?, r.all_records()?))
}

impl SectionSink for ContainerWriter {
    fn begin(&mut self, tag: u32) -> Result<()> {
        ContainerWriter::begin(self, tag)
    }
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        ContainerWriter::put(self, bytes)
    }
}

fn describe(e: Error) -> String {
    e.to_string()
}

impl Sections for Container {
    fn u8s(&self, tag: u32, verify: bool) -> std::result::Result<Option<&[u8]>, String> {
        self.section(tag, verify).map_err(describe)
    }
    fn u16s(&self, tag: u32, verify: bool) -> std::result::Result<Option<&[u16]>, String> {
        self.section(tag, verify).map_err(describe)
    }
    fn u32s(&self, tag: u32, verify: bool) -> std::result::Result<Option<&[u32]>, String> {
        self.section(tag, verify).map_err(describe)
    }
    fn u64s(&self, tag: u32, verify: bool) -> std::result::Result<Option<&[u64]>, String> {
        self.section(tag, verify).map_err(describe)
    }
    fn f16s(&self, tag: u32, verify: bool) -> std::result::Result<Option<&[f16]>, String> {
        self.section(tag, verify).map_err(describe)
    }
}

/// The embedded sections of one index in a format v2 segment.
struct Legacy {
    reader: Arc<SegmentReader>,
    index: u32,
}

impl Legacy {
    fn get<T: Pod>(&self, tag: u32, verify: bool) -> std::result::Result<Option<&[T]>, String> {
        self.reader.legacy_section(tag, self.index, verify).map_err(describe)
    }
}

impl Sections for Legacy {
    fn u8s(&self, tag: u32, verify: bool) -> std::result::Result<Option<&[u8]>, String> {
        self.get(tag, verify)
    }
    fn u16s(&self, tag: u32, verify: bool) -> std::result::Result<Option<&[u16]>, String> {
        self.get(tag, verify)
    }
    fn u32s(&self, tag: u32, verify: bool) -> std::result::Result<Option<&[u32]>, String> {
        self.get(tag, verify)
    }
    fn u64s(&self, tag: u32, verify: bool) -> std::result::Result<Option<&[u64]>, String> {
        self.get(tag, verify)
    }
    fn f16s(&self, tag: u32, verify: bool) -> std::result::Result<Option<&[f16]>, String> {
        self.get(tag, verify)
    }
}

/// One segment's part of one index: a side file, or a v2 segment's embedded sections.
/// Opened once per process; the first search that uses it validates checksums and
/// structure, and the verdict is kept.
pub(crate) struct IndexPart {
    source: Source,
    /// Structure and checksums checked (`Err` = damaged: the segment is searched exactly).
    pub validated: OnceLock<std::result::Result<(), String>>,
}

enum Source {
    Side(Container),
    Legacy(Legacy),
}

impl IndexPart {
    /// The sections of this part.
    pub fn sections(&self) -> &dyn Sections {
        match &self.source {
            Source::Side(c) => c,
            Source::Legacy(l) => l,
        }
    }

    /// The file the part lives in.
    pub fn path(&self) -> &Path {
        match &self.source {
            Source::Side(c) => c.path(),
            Source::Legacy(l) => l.reader.path(),
        }
    }

    /// Check every byte (CHECK): all sections' checksums, then the structure.
    pub fn verify_all(
        &self,
        check: impl FnOnce(&dyn Sections) -> std::result::Result<(), String>,
    ) -> Result<()> {
        let bad = |w: String| Error::corruption(self.path(), w);
        if let Source::Side(c) = &self.source {
            c.verify_all()?;
        }
        check(self.sections()).map_err(bad)
    }
}

/// The part of index `ix` for segment `r`: from its side file `side` (the catalog's row),
/// or from the segment's embedded v2 sections; `None` when the segment is not indexed.
/// `Err` holds why an existing part cannot be used (damaged or mismatched side file).
/// Cached per process.
pub(crate) fn open_part(
    inner: &Inner,
    r: &Arc<SegmentReader>,
    ix: &IndexDef,
    side: Option<&SideFileRow>,
) -> Option<std::result::Result<Arc<IndexPart>, String>> {
    let key = (r.path().to_path_buf(), ix.id());
    if let Ok(cache) = inner.parts.lock() {
        if let Some(p) = cache.get(&key) {
            return Some(p.clone());
        }
    }
    let part = load_part(inner, r, ix, side)?.map(Arc::new).map_err(describe);
    if let Ok(mut cache) = inner.parts.lock() {
        cache.insert(key, part.clone());
    }
    Some(part)
}

/// [`open_part`] without the cache.
fn load_part(
    inner: &Inner,
    r: &Arc<SegmentReader>,
    ix: &IndexDef,
    side: Option<&SideFileRow>,
) -> Option<Result<IndexPart>> {
    let source = match side {
        Some(f) => {
            let path = inner.root.join(&f.file);
            Container::open(&path).and_then(|c| {
                let h = c.header();
                let ok = h.kind == container::kind_tag(ix.ext())
                    && h.owner_id == f.segment_id as u64
                    && h.owner_sum == r.content_sum()
                    && h.index_id == ix.id() as u64;
                if ok {
                    Ok(Source::Side(c))
                } else {
                    Err(Error::corruption(&path, "side file belongs to another segment or index"))
                }
            })
        }
        None if ix.legacy_in(r) => Ok(Source::Legacy(Legacy { reader: r.clone(), index: ix.legacy_index() })),
        None => return None,
    };
    Some(source.map(|source| IndexPart { source, validated: OnceLock::new() }))
}

/// Check the sections `s` of index `ix` for segment `r`: checksums of what searches read
/// and the structure (`full`: every section's checksum, as CHECK wants).
pub(crate) fn validate(
    ix: &IndexDef,
    s: &dyn Sections,
    r: &SegmentReader,
    full: bool,
) -> std::result::Result<(), String> {
    let (n, id) = (r.doc_count(), ix.id() as u32);
    let found = match ix {
        IndexDef::Plaid(p) => {
            if full {
                s.u8s(plaid::tags::RESIDUALS, true)?;
            }
            let seg = segment_codes(p, r);
            // Searches read the segment's codes; its residuals are verified per block
            // when reranking reads them (CHECK verifies them all).
            if seg.is_some() {
                if full { r.verify_tokens() } else { r.verify_codes() }.map_err(describe)?;
            }
            plaid::open_view(&p.codec, s, r.offsets(), seg, true).map(|_| true)?
        }
        IndexDef::Hnsw(_) => hnsw::open_graph(s, id, n, true)?.is_some(),
        IndexDef::Muvera(m) => muvera::open_view(s, id, n, m.encoder.out_dim(), true)?.is_some(),
    };
    if found {
        Ok(())
    } else {
        Err("the sections belong to another index".into())
    }
}

/// CHECK of one index part: every checksum and the structure, on a fresh open (not the
/// cache). `Ok(false)` when the segment has no part of this index.
pub(crate) fn check_part(
    inner: &Inner,
    r: &Arc<SegmentReader>,
    ix: &IndexDef,
    side: Option<&SideFileRow>,
) -> Result<bool> {
    let Some(part) = load_part(inner, r, ix, side) else { return Ok(false) };
    let part = part?;
    part.verify_all(|s| validate(ix, s, r, true))?;
    Ok(true)
}

/// File name of the side file of index `index` for segment `seg` of collection `c`.
pub(crate) fn side_file_name(c: i64, seg: i64, index: i64, ext: &str) -> String {
    format!("segments/{c}/{seg}-{index}.{ext}")
}

/// Build and publish the side file of `ix` for the segment `r` (id `seg`) of `c`; returns
/// the catalog row to commit. On error nothing is left behind.
pub(crate) fn write_side_file(
    inner: &Inner,
    c: &CollectionRow,
    seg: i64,
    r: &SegmentReader,
    ix: &IndexDef,
) -> Result<SideFileRow> {
    let file = side_file_name(c.id, seg, ix.id(), ix.ext());
    let header = ContainerHeader {
        kind: container::kind_tag(ix.ext()),
        owner_id: seg as u64,
        owner_sum: r.content_sum(),
        index_id: ix.id() as u64,
    };
    let bytes = container::write_container(&inner.root.join(&file), &header, |w| ix.write(r, w))?;
    Ok(SideFileRow { segment_id: seg, index_id: ix.id(), file, bytes: bytes as i64 })
}

/// The one section of a per-index state file (`plaid::tags::CODEC`,
/// `muvera::tags::ENCODER`: both 1).
const STATE_TAG: u32 = plaid::tags::CODEC;

/// Write a per-index state file (`ix<n>.<ext>` in the collection's directory) holding
/// `state` as section 1; returns its path relative to the root.
pub(crate) fn write_state_file(inner: &Inner, c: i64, n: i64, ext: &str, state: &[u8]) -> Result<String> {
    let dir = crate::storage::collection_dir(&inner.root, c);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let file = format!("segments/{c}/ix{n}.{ext}");
    let header = ContainerHeader { kind: container::kind_tag(ext), owner_id: 0, owner_sum: 0, index_id: 0 };
    container::write_container(&inner.root.join(&file), &header, |w| {
        w.begin(STATE_TAG)?;
        w.put(state)
    })?;
    Ok(file)
}

/// Read a per-index state file written by [`write_state_file`] (checksums verified).
pub(crate) fn read_state_file(inner: &Inner, file: &str) -> Result<Vec<u8>> {
    let path = inner.root.join(file);
    let c = Container::open(&path)?;
    c.section::<u8>(STATE_TAG, true)?
        .map(<[u8]>::to_vec)
        .ok_or_else(|| Error::corruption(&path, "index state section missing"))
}
