//! The write path: insert, upsert, delete, update, flush and compaction.
//!
//! A write is acknowledged when its catalog transaction commits: the document row and its
//! pending vectors (or, for a bulk batch, the manifest row of a segment published just
//! before) become visible together. Flush and compaction publish a segment file and the
//! side file of every index of the collection first (temp → fsync → rename → fsync dir)
//! and then commit one catalog transaction that names them all; a crash between the two
//! leaves only unnamed files, removed at the next open.

use std::collections::HashSet;
use std::sync::Arc;

use super::codec::{self, Measuring, TokenCodec};
use super::sidefile::{self, IndexDef};
use super::{Database, Inner};
use crate::catalog::{Catalog, CodecRow, CollectionRow, PendingRow, SegmentRow, SideFileRow};
use crate::error::IoContext;
use crate::filter::Filter;
use crate::storage;
use crate::storage::segment::{self, Rows, SegmentReader, SegmentSource, VecRef};
use crate::types::{DocId, Document, Dtype, Value};
use crate::validate::{self, Decoded, PreparedDoc};
use crate::{Error, Result};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Insert,
    Upsert,
}

/// In-memory documents (a bulk batch or the pending rows) as a segment source.
struct MemSource {
    rows: Vec<u64>,
    tokens: Vec<Decoded>,
    pooled: Vec<Decoded>,
    dims: Vec<usize>,
    dim: usize,
}

impl MemSource {
    fn new<'a>(
        dtype: Dtype,
        dim: usize,
        dims: Vec<usize>,
        docs: impl Iterator<Item = (u64, &'a [u8], &'a [u8])>,
    ) -> Self {
        let mut s = Self { rows: Vec::new(), tokens: Vec::new(), pooled: Vec::new(), dims, dim };
        for (row, t, p) in docs {
            s.rows.push(row);
            s.tokens.push(Decoded::from_bytes(t, dtype));
            s.pooled.push(Decoded::from_bytes(p, dtype));
        }
        s
    }
}

impl SegmentSource for MemSource {
    fn doc_count(&self) -> usize {
        self.rows.len()
    }
    fn row_id(&self, i: usize) -> u64 {
        self.rows[i]
    }
    fn token_count(&self, i: usize) -> usize {
        self.tokens[i].as_ref().len() / self.dim
    }
    fn tokens(&self, i: usize) -> Rows<'_> {
        Rows::Ref(self.tokens[i].as_ref())
    }
    fn pooled(&self, i: usize, p: usize) -> VecRef<'_> {
        let start: usize = self.dims[..p].iter().sum();
        self.pooled[i].slice(start..start + self.dims[p])
    }
}

/// Live rows of several segments, merged in row order (compaction).
struct MergeSource {
    readers: Vec<Arc<SegmentReader>>,
    docs: Vec<(u64, usize, usize)>,
}

impl SegmentSource for MergeSource {
    fn doc_count(&self) -> usize {
        self.docs.len()
    }
    fn row_id(&self, i: usize) -> u64 {
        self.docs[i].0
    }
    fn token_count(&self, i: usize) -> usize {
        let (_, s, d) = self.docs[i];
        let o = self.readers[s].offsets();
        (o[d + 1] - o[d]) as usize
    }
    fn tokens(&self, i: usize) -> Rows<'_> {
        let (_, s, d) = self.docs[i];
        self.readers[s].doc_tokens(d)
    }
    fn pooled(&self, i: usize, p: usize) -> VecRef<'_> {
        let (_, s, d) = self.docs[i];
        self.readers[s].pooled(p, d)
    }
    fn codes(&self, i: usize) -> Option<(&[u16], &[u8], [u8; 16])> {
        let (_, s, d) = self.docs[i];
        let r = &self.readers[s];
        let (c, rec) = r.doc_codes(d)?;
        Some((c, rec, r.codec_ref()?))
    }
}

/// A published segment with the side files of its indexes, not yet committed.
pub(super) struct Published {
    pub seg: SegmentRow,
    pub sides: Vec<SideFileRow>,
    /// A token codec trained for this segment, committed with it.
    pub codec: Option<CodecRow>,
}

impl Published {
    /// Name it all in the catalog (inside the caller's transaction).
    fn add_to(&self, tx: &crate::catalog::Txn<'_>, c: i64) -> Result<()> {
        if let Some(k) = &self.codec {
            tx.add_token_codec(k)?;
        }
        tx.add_segment(c, &self.seg)?;
        self.sides.iter().try_for_each(|f| tx.add_side_file(f))
    }

    /// Remove the files again (their commit failed).
    fn unpublish(&self, inner: &Inner) {
        let files = std::iter::once(&self.seg.file)
            .chain(self.sides.iter().map(|s| &s.file))
            .chain(self.codec.iter().map(|k| &k.file));
        for f in files {
            let _ = std::fs::remove_file(inner.root.join(f));
        }
    }
}

/// How the next segment of `c` stores its tokens.
struct Encoding {
    /// The codec (`None`: token vectors in the collection's dtype).
    codec: Option<Arc<TokenCodec>>,
    /// Whether `codec` was trained just now (its row is committed with the segment).
    fresh: bool,
}

/// Decide [`Encoding`] for a segment of `c` made from `src`: vectors for a collection
/// that stores them; else the current codec, or — when there is none and the collection
/// now has enough tokens (`src` plus vector segments written before, unless `whole`: `src`
/// is every document, as in compaction) — a codec trained now (`retrain`: train one even
/// though a codec exists).
fn encoding_for(
    inner: &Inner,
    cat: &mut Catalog,
    c: &CollectionRow,
    src: &dyn SegmentSource,
    whole: bool,
    retrain: bool,
) -> Result<Encoding> {
    if c.spec.vectors.codes.is_none() {
        return Ok(Encoding { codec: None, fresh: false });
    }
    let (current, segs) = {
        let tx = cat.read()?;
        (codec::current(inner, &tx, c)?, tx.segments(c.id)?)
    };
    if current.is_some() && !retrain {
        return Ok(Encoding { codec: current, fresh: false });
    }
    // Without a codec every segment holds vectors: the manifest's token counts say
    // whether there are enough to train on, before any segment is opened.
    let src_tokens: usize = (0..src.doc_count()).map(|i| src.token_count(i)).sum();
    let seg_tokens: usize = if whole { 0 } else { segs.iter().map(|s| s.token_count as usize).sum() };
    if src_tokens + seg_tokens < inner.opts.codec_min_tokens {
        return Ok(Encoding { codec: None, fresh: false });
    }
    let mut more: Vec<SegmentReader> = Vec::new();
    if !whole {
        for s in &segs {
            let r = SegmentReader::open(&inner.root.join(&s.file), s.id as u64, &c.spec.vectors)?;
            if !r.is_codes() {
                more.push(r);
            }
        }
    }
    let extra: Vec<ReaderSource<'_>> = more.iter().map(ReaderSource).collect();
    let mut sources: Vec<&dyn SegmentSource> = vec![src];
    sources.extend(extra.iter().map(|s| s as &dyn SegmentSource));
    let id = reserve_segment_id(cat)?;
    Ok(Encoding { codec: Some(codec::train(inner, c, id, &sources)?), fresh: true })
}

/// A PLAID index of a codes-only collection shares the token codec: a segment written
/// with a codec trained just now gets side files made with that codec.
fn with_codec(mut ix: Vec<IndexDef>, enc: &Encoding) -> Vec<IndexDef> {
    if let (true, Some(k)) = (enc.fresh, &enc.codec) {
        for d in &mut ix {
            if let IndexDef::Plaid(p) = d {
                p.codec = k.codec.clone();
                p.token_ref = Some(segment::TokenCodec::codec_ref(k.as_ref()));
            }
        }
    }
    ix
}

/// Every document of a (vector) segment as a source of training tokens.
pub(super) struct ReaderSource<'a>(&'a SegmentReader);

/// Readers as segment sources.
pub(super) fn reader_sources(readers: &[Arc<SegmentReader>]) -> Vec<ReaderSource<'_>> {
    readers.iter().map(|r| ReaderSource(r)).collect()
}

impl SegmentSource for ReaderSource<'_> {
    fn doc_count(&self) -> usize {
        self.0.doc_count()
    }
    fn row_id(&self, i: usize) -> u64 {
        self.0.row_ids()[i]
    }
    fn token_count(&self, i: usize) -> usize {
        let o = self.0.offsets();
        (o[i + 1] - o[i]) as usize
    }
    fn tokens(&self, i: usize) -> Rows<'_> {
        self.0.doc_tokens(i)
    }
    fn pooled(&self, i: usize, p: usize) -> VecRef<'_> {
        self.0.pooled(p, i)
    }
}

/// Write `src` as segment `id` of collection `c`, then the side file of every index in
/// `ix`, and publish them. Returns the rows to commit. On error nothing is left behind.
fn publish_segment(
    inner: &Inner,
    c: &CollectionRow,
    id: i64,
    src: &dyn SegmentSource,
    ix: &[IndexDef],
    enc: &Encoding,
) -> Result<Published> {
    let dir = storage::collection_dir(&inner.root, c.id);
    std::fs::create_dir_all(&dir).at(&dir)?;
    let name = storage::segment_file_name(id);
    let tmp = dir.join(format!("{name}.tmp"));
    let dest = dir.join(&name);
    let _ = std::fs::remove_file(&tmp);
    let measuring = enc.codec.as_deref().map(Measuring::new);
    let written = segment::write_segment(
        &tmp,
        id as u64,
        &c.spec.vectors,
        src,
        measuring.as_ref().map(|m| m as &dyn segment::TokenCodec),
    )
    .and_then(|bytes| storage::publish(&tmp, &dest).map(|()| bytes));
    let fresh_codec = enc.codec.as_ref().filter(|_| enc.fresh).map(|k| k.row.clone());
    let bytes = match written {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            if let Some(k) = &fresh_codec {
                let _ = std::fs::remove_file(inner.root.join(&k.file));
            }
            return Err(e);
        }
    };
    let token_count = (0..src.doc_count()).map(|i| src.token_count(i)).sum::<usize>();
    let seg = SegmentRow {
        id,
        file: format!("segments/{}/{name}", c.id),
        doc_count: src.doc_count() as i64,
        token_count: token_count as i64,
        bytes: bytes as i64,
        quant_error: measuring.as_ref().and_then(Measuring::mean_error),
    };
    let mut out = Published { seg, sides: Vec::new(), codec: fresh_codec };
    if ix.is_empty() {
        return Ok(out);
    }
    let opened = SegmentReader::open(&dest, id as u64, &c.spec.vectors).and_then(|r| {
        if let Some(k) = &enc.codec {
            r.attach_codec(k.clone())?;
        }
        Ok(r)
    });
    let sides = opened.and_then(|r| {
        ix.iter().try_for_each(|d| {
            out.sides.push(sidefile::write_side_file(inner, c, id, &r, d)?);
            Ok(())
        })
    });
    match sides {
        Ok(()) => Ok(out),
        Err(e) => {
            out.unpublish(inner);
            Err(e)
        }
    }
}

/// The indexes whose side files a new segment of `c` gets.
fn write_indexes(inner: &Inner, tx: &crate::catalog::Txn<'_>, c: &CollectionRow) -> Result<Vec<IndexDef>> {
    super::index::index_defs_for_writes(inner, tx, c)
}

pub(super) fn reserve_segment_id(cat: &mut Catalog) -> Result<i64> {
    let tx = cat.write()?;
    let id = tx.next_segment_id()?;
    tx.commit()?;
    Ok(id)
}

/// Flush the pending vectors of collection `c` into a new segment.
fn flush_collection(inner: &Inner, cat: &mut Catalog, c: &CollectionRow) -> Result<bool> {
    let (pending, ix): (Vec<PendingRow>, _) = {
        let tx = cat.read()?;
        (tx.pending(c.id)?, write_indexes(inner, &tx, c)?)
    };
    let Some(max_row) = pending.last().map(|p| p.row) else { return Ok(false) };
    let id = reserve_segment_id(cat)?;
    let dims = c.spec.vectors.pooled.iter().map(|p| p.dim).collect();
    let src = MemSource::new(
        c.spec.vectors.dtype,
        c.spec.vectors.token_dim,
        dims,
        pending.iter().map(|p| (p.row, p.tokens.as_slice(), p.pooled.as_slice())),
    );
    drop(pending);
    let enc = encoding_for(inner, cat, c, &src, false, false)?;
    let ix = with_codec(ix, &enc);
    let new = publish_segment(inner, c, id, &src, &ix, &enc)?;
    let commit = (|| {
        let tx = cat.write()?;
        new.add_to(&tx, c.id)?;
        tx.flush_pending(c.id, max_row, new.seg.id)?;
        tx.bump_generation()?;
        tx.commit()
    })();
    commit.inspect_err(|_| new.unpublish(inner))?;
    // The pending rows' pages are free now: give them back.
    let _ = cat.reclaim();
    Ok(true)
}

/// Flush every collection (used at close).
pub(super) fn flush_all(inner: &Inner, cat: &mut Catalog) -> Result<()> {
    flush_all_at_least(inner, cat, 0)
}

/// Flush the collections holding at least `min_tokens` pending token vectors (the
/// others' pending rows stay in the catalog: durable, searched exactly, flushed by a
/// later write), so that many short sessions do not leave a segment each.
pub(super) fn flush_all_at_least(inner: &Inner, cat: &mut Catalog, min_tokens: usize) -> Result<()> {
    let colls = cat.read()?.collections()?;
    for c in &colls {
        let (_, pending) = cat.read()?.pending_stats(c.id)?;
        if pending > 0 && pending as usize >= min_tokens {
            flush_collection(inner, cat, c)?;
        }
    }
    Ok(())
}

impl Database {
    /// Insert documents atomically: all of them or, on any error, none.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] for an id that exists (or repeats in the batch);
    /// [`Error::DimensionMismatch`], [`Error::InvalidArgument`] (empty token matrix,
    /// NaN/inf, wrong id type, bad column value), [`Error::NotFound`] for an unknown
    /// collection or column, [`Error::ReadOnly`].
    pub fn insert(&self, collection: &str, docs: &[Document]) -> Result<()> {
        self.write_docs(collection, docs, Mode::Insert)
    }

    /// Insert documents, replacing any existing document with the same id (its old
    /// vectors become tombstones). Atomic like [`Database::insert`].
    ///
    /// # Errors
    /// As [`Database::insert`], except that existing ids are replaced.
    pub fn upsert(&self, collection: &str, docs: &[Document]) -> Result<()> {
        self.write_docs(collection, docs, Mode::Upsert)
    }

    fn write_docs(&self, name: &str, docs: &[Document], mode: Mode) -> Result<()> {
        let mut w = self.writer()?;
        let c = w.read()?.collection(name)?;
        self.write_docs_locked(&mut w, &c, docs, mode)?;
        self.after_write(&mut w, &c);
        Ok(())
    }

    /// Bring derived state (the full-text index) along after a committed write.
    fn after_write(&self, w: &mut Catalog, c: &CollectionRow) {
        #[cfg(feature = "fulltext")]
        self.fulltext_after_write(w, c);
        let _ = (w, c);
    }

    fn write_docs_locked(
        &self,
        w: &mut Catalog,
        c: &CollectionRow,
        docs: &[Document],
        mode: Mode,
    ) -> Result<()> {
        let c = c.clone();
        let mut seen = HashSet::with_capacity(docs.len());
        let mut prepared = Vec::with_capacity(docs.len());
        for d in docs {
            if !seen.insert(&d.id) {
                return Err(Error::AlreadyExists {
                    kind: "document (twice in one batch)",
                    name: d.id.to_string(),
                });
            }
            prepared.push(validate::document(&c.spec, d)?);
        }
        if prepared.is_empty() {
            return Ok(());
        }
        let tokens: usize = prepared.iter().map(|p| p.ntok).sum();
        let threshold = self.inner.opts.flush_threshold_tokens;
        if tokens >= threshold {
            return self.write_segment_direct(w, &c, prepared, mode);
        }
        let tx = w.write()?;
        for p in &prepared {
            if mode == Mode::Upsert {
                if let Some(loc) = tx.locate(c.id, &p.id)? {
                    tx.remove_doc(c.id, loc)?;
                }
            }
            let row = tx.insert_doc(&c, &p.id, &p.values, None, None)?;
            tx.insert_pending(c.id, row, p.ntok, &p.tokens, &p.pooled)?;
        }
        tx.bump_generation()?;
        let (_, pending_tokens) = tx.pending_stats(c.id)?;
        tx.commit()?;
        if pending_tokens as usize >= threshold {
            // The write is committed (acknowledged) whatever happens now; a failed flush
            // leaves the vectors pending, searchable, and flushed by a later write.
            let _ = flush_collection(&self.inner, w, &c);
        }
        Ok(())
    }

    /// A batch large enough to fill a segment skips the pending table: the segment is
    /// published first, then one transaction adds the rows and the manifest entry.
    fn write_segment_direct(
        &self,
        cat: &mut Catalog,
        c: &CollectionRow,
        docs: Vec<PreparedDoc>,
        mode: Mode,
    ) -> Result<()> {
        let (base, ix) = {
            let tx = cat.read()?;
            (tx.last_row(c.id)?, write_indexes(&self.inner, &tx, c)?)
        };
        let id = reserve_segment_id(cat)?;
        let dims = c.spec.vectors.pooled.iter().map(|p| p.dim).collect();
        let dtype = c.spec.vectors.dtype;
        let src = MemSource::new(
            dtype,
            c.spec.vectors.token_dim,
            dims,
            docs.iter()
                .enumerate()
                .map(|(i, d)| (base + 1 + i as u64, d.tokens.as_slice(), d.pooled.as_slice())),
        );
        let enc = encoding_for(&self.inner, cat, c, &src, false, false)?;
        let ix = with_codec(ix, &enc);
        let new = publish_segment(&self.inner, c, id, &src, &ix, &enc)?;
        drop(src);
        let commit = (|| {
            let tx = cat.write()?;
            for (i, d) in docs.iter().enumerate() {
                if mode == Mode::Upsert {
                    if let Some(loc) = tx.locate(c.id, &d.id)? {
                        tx.remove_doc(c.id, loc)?;
                    }
                }
                tx.insert_doc(c, &d.id, &d.values, Some(base + 1 + i as u64), Some(new.seg.id))?;
            }
            new.add_to(&tx, c.id)?;
            tx.bump_generation()?;
            tx.commit()
        })();
        commit.inspect_err(|_| new.unpublish(&self.inner))
    }

    /// Delete documents by id; returns how many existed.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown collection, [`Error::InvalidArgument`] for an id
    /// of the wrong type, [`Error::ReadOnly`].
    pub fn delete(&self, collection: &str, ids: &[DocId]) -> Result<u64> {
        let mut w = self.writer()?;
        let tx = w.write()?;
        let c = tx.collection(collection)?;
        let mut n = 0;
        for id in ids {
            validate::id(&c.spec, id)?;
            if let Some(loc) = tx.locate(c.id, id)? {
                tx.remove_doc(c.id, loc)?;
                n += 1;
            }
        }
        tx.bump_generation()?;
        tx.commit()?;
        self.after_write(&mut w, &c);
        Ok(n)
    }

    /// Delete every document matching `filter`; returns how many.
    ///
    /// # Errors
    /// As [`Database::delete`], plus filter errors (unknown column, bad value).
    pub fn delete_where(&self, collection: &str, filter: &Filter) -> Result<u64> {
        let mut w = self.writer()?;
        let tx = w.write()?;
        let c = tx.collection(collection)?;
        let locs = tx.filter_rows(&c, filter)?;
        for loc in &locs {
            tx.remove_doc(c.id, *loc)?;
        }
        tx.bump_generation()?;
        tx.commit()?;
        self.after_write(&mut w, &c);
        Ok(locs.len() as u64)
    }

    /// Set scalar columns of every document matching `filter`, atomically (one
    /// transaction); returns how many.
    ///
    /// # Errors
    /// As [`Database::update`], plus filter errors.
    pub fn update_where(&self, collection: &str, filter: &Filter, values: &[(String, Value)]) -> Result<u64> {
        let mut w = self.writer()?;
        let tx = w.write()?;
        let c = tx.collection(collection)?;
        let values = validate::values(&c.spec, values)?;
        let rows: Vec<u64> = tx.filter_rows(&c, filter)?.into_iter().map(|l| l.row).collect();
        let ids: Vec<DocId> = {
            let mut vals = tx.fetch(&c, &rows)?;
            rows.iter().filter_map(|r| vals.remove(r).map(|(id, _)| id)).collect()
        };
        for id in &ids {
            tx.update_values(&c, id, &values)?;
        }
        tx.bump_generation()?;
        tx.commit()?;
        self.after_write(&mut w, &c);
        Ok(ids.len() as u64)
    }

    /// Set scalar columns of document `id` (vectors are unchanged).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown collection, column or document;
    /// [`Error::InvalidArgument`] for a value of the wrong type.
    pub fn update(&self, collection: &str, id: &DocId, values: &[(String, Value)]) -> Result<()> {
        let mut w = self.writer()?;
        let tx = w.write()?;
        let c = tx.collection(collection)?;
        validate::id(&c.spec, id)?;
        let values = validate::values(&c.spec, values)?;
        if !tx.update_values(&c, id, &values)? {
            return Err(Error::NotFound { kind: "document", name: id.to_string() });
        }
        tx.bump_generation()?;
        tx.commit()?;
        self.after_write(&mut w, &c);
        Ok(())
    }

    /// Write the pending vectors of `collection` into a new segment. Returns false when
    /// nothing was pending.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::ReadOnly`], I/O errors (the database is unchanged).
    pub fn flush(&self, collection: &str) -> Result<bool> {
        let mut w = self.writer()?;
        let c = w.read()?.collection(collection)?;
        flush_collection(&self.inner, &mut w, &c)
    }

    /// Compact `collection`: merge all its segments into one without deleted rows. User
    /// ids never change; internal row ids are kept. Returns false when there was nothing
    /// to do (at most one segment and no tombstones).
    ///
    /// # Errors
    /// [`Error::Corruption`] when a source segment is damaged (nothing is changed),
    /// [`Error::NotFound`], [`Error::ReadOnly`], I/O errors.
    pub fn compact(&self, collection: &str) -> Result<bool> {
        let mut w = self.writer()?;
        self.compact_locked(&mut w, collection, false)
    }

    /// [`Database::compact`] with the writer held; `force` rewrites even a single clean
    /// segment.
    pub(super) fn compact_locked(&self, w: &mut Catalog, collection: &str, force: bool) -> Result<bool> {
        let (c, segs, dead, ix) = {
            let tx = w.read()?;
            let c = tx.collection(collection)?;
            let segs = tx.segments(c.id)?;
            let dead: Vec<Vec<u64>> =
                segs.iter().map(|s| tx.tombstones(c.id, s.id)).collect::<Result<_>>()?;
            let ix = write_indexes(&self.inner, &tx, &c)?;
            (c, segs, dead, ix)
        };
        let readers: Vec<Arc<SegmentReader>> =
            segs.iter().map(|s| self.segment(&c, s)).collect::<Result<_>>()?;
        // Codes-only collections: whether the codec must be trained again, and whether a
        // segment still holds vectors (written before the codec) or another codec's codes.
        let current = if c.spec.vectors.codes.is_some() {
            let tx = w.read()?;
            codec::current(&self.inner, &tx, &c)?
        } else {
            None
        };
        let retrain = current.as_ref().is_some_and(|k| codec::needs_retraining(k, &segs));
        let stale = c.spec.vectors.codes.is_some() && {
            let want = current.as_deref().map(segment::TokenCodec::codec_ref);
            let tokens: i64 = segs.iter().map(|s| s.token_count).sum();
            readers.iter().any(|r| r.codec_ref() != want)
                && (want.is_some() || tokens >= self.inner.opts.codec_min_tokens as i64)
        };
        // A lone format v2 segment counts as not clean: compaction moves its embedded
        // indexes into side files (the lazy upgrade).
        let clean = segs.len() <= 1
            && dead.iter().all(Vec::is_empty)
            && readers.iter().all(|r| r.format() >= 3)
            && !retrain
            && !stale;
        if segs.is_empty() || (clean && !force) {
            return Ok(false);
        }
        let mut docs = Vec::new();
        for (si, (r, dead)) in readers.iter().zip(&dead).enumerate() {
            r.verify_all()?;
            let dead: HashSet<u64> = dead.iter().copied().collect();
            docs.extend(
                r.row_ids()
                    .iter()
                    .enumerate()
                    .filter(|(_, row)| !dead.contains(row))
                    .map(|(d, &row)| (row, si, d)),
            );
        }
        docs.sort_unstable_by_key(|d| d.0);
        let src = MergeSource { readers, docs };
        let mut used: Option<i64> = None;
        let new = if src.docs.is_empty() {
            None
        } else {
            let enc = encoding_for(&self.inner, w, &c, &src, true, retrain)?;
            used = enc.codec.as_ref().map(|k| k.row.id);
            let ix = with_codec(ix, &enc);
            let id = reserve_segment_id(w)?;
            Some(publish_segment(&self.inner, &c, id, &src, &ix, &enc)?)
        };
        drop(src);
        let commit = (|| {
            let tx = w.write()?;
            if let Some(k) = new.as_ref().and_then(|n| n.codec.as_ref()) {
                tx.add_token_codec(k)?;
            }
            tx.replace_segments(c.id, &segs, new.as_ref().map(|n| &n.seg))?;
            if let Some(n) = &new {
                n.sides.iter().try_for_each(|f| tx.add_side_file(f))?;
            }
            // Every segment of the collection is the new one now: codecs it does not
            // use are needed no more.
            if let Some(u) = used {
                for k in tx.token_codecs(c.id)?.iter().filter(|k| k.id != u) {
                    tx.remove_token_codec(k)?;
                }
            }
            tx.bump_generation()?;
            tx.commit()
        })();
        if let Err(e) = commit {
            if let Some(n) = &new {
                n.unpublish(&self.inner);
            }
            return Err(e);
        }
        let _ = w.reclaim();
        self.collect_garbage(w, false)?;
        // The merged segment may answer differently: measure the indexes again.
        self.calibrate_all(w, collection)?;
        Ok(true)
    }
}
