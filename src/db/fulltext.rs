//! Full-text (BM25) indexes: a tantivy index per collection over the text columns the
//! user declares, kept in step with the catalog.
//!
//! The index is derived state under `fulltext/<collection id>/`. The catalog is the truth:
//! triggers log the row id of every insert, delete and text update of an indexed
//! collection into `fulltext_log` in the same transaction as the write
//! (`migrations/0004_fulltext.sql`). After each write call, and at open, the writer
//! applies the logged rows past the sequence number stored in tantivy's last commit
//! payload (delete the row's tantivy document, add the current text if the row still
//! exists), commits tantivy with the new sequence number, then trims the log. A crash at
//! any point leaves log entries that are applied again — idempotently — next time; an
//! index that is missing, unreadable, or built for another index id is rebuilt from the
//! catalog.
//!
//! All declared columns go into one field (like Anserini's "flat" SciFact runs: title and
//! text as one document), analysed by tantivy's simple tokenizer, lowercasing, an optional
//! stop-word list and a Snowball stemmer. Queries are analysed the same way and become a
//! disjunction of term queries (no query syntax: user text can never be a parse error).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tantivy::collector::{FilterCollector, TopDocs};
use tantivy::query::{BooleanQuery, Occur, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, Term};

use super::{lock_or, Database, Inner};
use crate::catalog::{Catalog, CollectionRow, IndexRow, Txn};
use crate::error::IoContext;
use crate::types::ColumnType;
use crate::{Error, Result};

/// Catalog `kind` of the full-text index.
pub(crate) const FULLTEXT: &str = "fulltext";

/// Name the analyser is registered under in every opened tantivy index.
const TOKENIZER: &str = "msdb";

/// Indexing memory of the tantivy writer (one thread).
const WRITER_HEAP: usize = 64 << 20;

/// Options of [`Database::create_fulltext_index`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct FullTextOptions {
    /// Text columns to index (their values are joined into one field); empty = every
    /// `Text` column of the collection.
    pub columns: Vec<String>,
    /// Snowball stemmer language (`english`, `french`, `german`, … — tantivy's list), or
    /// `none` for no stemming. Default `english`.
    pub language: String,
    /// Lowercase tokens (default true).
    pub lowercase: bool,
    /// Drop the language's stop words (default true; BM25 baselines on BEIR use them).
    pub stopwords: bool,
}

impl Default for FullTextOptions {
    fn default() -> Self {
        Self { columns: Vec::new(), language: "english".into(), lowercase: true, stopwords: true }
    }
}

fn language(name: &str) -> Result<Option<Language>> {
    use Language::*;
    let all = [
        ("arabic", Arabic),
        ("danish", Danish),
        ("dutch", Dutch),
        ("english", English),
        ("finnish", Finnish),
        ("french", French),
        ("german", German),
        ("greek", Greek),
        ("hungarian", Hungarian),
        ("italian", Italian),
        ("norwegian", Norwegian),
        ("portuguese", Portuguese),
        ("romanian", Romanian),
        ("russian", Russian),
        ("spanish", Spanish),
        ("swedish", Swedish),
        ("tamil", Tamil),
        ("turkish", Turkish),
    ];
    if name.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    all.into_iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, l)| Some(l)).ok_or_else(|| {
        Error::invalid(format!(
            "unknown full-text language '{name}': use none or one of {}",
            all.map(|(n, _)| n).join(", ")
        ))
    })
}

fn analyzer(opts: &FullTextOptions) -> Result<TextAnalyzer> {
    let lang = language(&opts.language)?;
    let mut b = TextAnalyzer::builder(SimpleTokenizer::default()).filter_dynamic(RemoveLongFilter::limit(40));
    if opts.lowercase {
        b = b.filter_dynamic(LowerCaser);
    }
    if opts.stopwords {
        if let Some(sw) = StopWordFilter::new(lang.unwrap_or(Language::English)) {
            b = b.filter_dynamic(sw);
        }
    }
    if let Some(l) = lang {
        b = b.filter_dynamic(Stemmer::new(l));
    }
    Ok(b.build())
}

/// What tantivy's last commit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Payload {
    /// The catalog index this tantivy index was built for.
    index_id: i64,
    /// Every change-log entry up to this sequence number is applied.
    seq: i64,
}

/// An opened tantivy index.
pub(crate) struct FullText {
    index_id: i64,
    index: Index,
    reader: IndexReader,
    row: Field,
    body: Field,
    /// The tantivy writer (writer process only, created on first use).
    writer: Mutex<Option<IndexWriter>>,
}

fn schema() -> (Schema, Field, Field) {
    let mut b = Schema::builder();
    let row = b.add_u64_field("row", INDEXED | FAST);
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(TOKENIZER)
        .set_index_option(IndexRecordOption::WithFreqsAndPositions);
    let body = b.add_text_field("body", TextOptions::default().set_indexing_options(indexing));
    (b.build(), row, body)
}

fn terr(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::corruption(path, format!("full-text index: {e}"))
}

pub(crate) fn dir(root: &Path, collection_id: i64) -> PathBuf {
    root.join("fulltext").join(collection_id.to_string())
}

impl FullText {
    fn wrap(path: &Path, index: Index, index_id: i64, opts: FullTextOptions) -> Result<Self> {
        index.tokenizers().register(TOKENIZER, analyzer(&opts)?);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| terr(path, e))?;
        let (_, row, body) = schema();
        Ok(Self { index_id, index, reader, row, body, writer: Mutex::new(None) })
    }

    /// Open the index at `path`, verifying the checksums of its live files.
    fn open(path: &Path, index_id: i64, opts: FullTextOptions) -> Result<Self> {
        // The writer's background merges may replace segment files while they are read
        // here: a read that fails (a file vanished) is retried from fresh metadata; files
        // that fail their checksums are damage, reported at once.
        let mut attempt = 0;
        let index = loop {
            attempt += 1;
            match Self::open_verified(path) {
                Err(_) if attempt < 4 => std::thread::sleep(std::time::Duration::from_millis(20)),
                Err(e) => return Err(e),
                Ok(verified) => break verified?,
            }
        };
        Self::wrap(path, index, index_id, opts)
    }

    /// `Err`: the index could not be read (perhaps transiently); `Ok(Err)`: it was read
    /// and some live files fail their checksums (tantivy's footers) — damaged data must
    /// never reach tantivy's decoders. One pass over the index per process.
    fn open_verified(path: &Path) -> Result<Result<Index>> {
        let index = Index::open_in_dir(path).map_err(|e| terr(path, e))?;
        if index.schema() != schema().0 {
            return Ok(Err(terr(path, "unexpected schema")));
        }
        let damaged = index.validate_checksum().map_err(|e| terr(path, e))?;
        if !damaged.is_empty() {
            let mut names: Vec<String> = damaged.iter().map(|p| p.display().to_string()).collect();
            names.sort();
            return Ok(Err(terr(path, format!("files fail their checksums: {}", names.join(", ")))));
        }
        Ok(Ok(index))
    }

    /// Create an empty index at `path` (whatever was there is removed).
    fn create(path: &Path, index_id: i64, opts: FullTextOptions) -> Result<Self> {
        if path.exists() {
            std::fs::remove_dir_all(path).at(path)?;
        }
        std::fs::create_dir_all(path).at(path)?;
        let index = Index::create_in_dir(path, schema().0).map_err(|e| terr(path, e))?;
        Self::wrap(path, index, index_id, opts)
    }

    fn payload(&self) -> Option<Payload> {
        let metas = self.index.load_metas().ok()?;
        serde_json::from_str(metas.payload.as_deref()?).ok()
    }

    /// The change-log position this index reflects (`None`: built for another index id,
    /// or never committed).
    fn applied(&self) -> Option<i64> {
        self.payload().filter(|p| p.index_id == self.index_id).map(|p| p.seq)
    }

    /// Replace the documents of `rows` (`None` text: the row is gone) and commit with `seq`.
    fn apply(&self, path: &Path, rows: impl Iterator<Item = (u64, Option<String>)>, seq: i64) -> Result<()> {
        let mut guard = lock_or(&self.writer)?;
        if guard.is_none() {
            *guard = Some(self.index.writer_with_num_threads(1, WRITER_HEAP).map_err(|e| terr(path, e))?);
        }
        let w = guard.as_mut().ok_or_else(Error::poisoned)?;
        for (row, text) in rows {
            w.delete_term(Term::from_field_u64(self.row, row));
            if let Some(t) = text {
                w.add_document(doc!(self.row => row, self.body => t)).map_err(|e| terr(path, e))?;
            }
        }
        let json =
            serde_json::to_string(&Payload { index_id: self.index_id, seq }).map_err(|e| terr(path, e))?;
        crate::storage::fault::point("fulltext.commit", path)?;
        let mut commit = w.prepare_commit().map_err(|e| terr(path, e))?;
        commit.set_payload(&json);
        commit.commit().map_err(|e| terr(path, e))?;
        self.reader.reload().map_err(|e| terr(path, e))
    }

    /// The query's terms after analysis (repeats kept: a repeated word weighs more).
    fn terms(&self, text: &str) -> Result<Vec<String>> {
        let mut a = self
            .index
            .tokenizers()
            .get(TOKENIZER)
            .ok_or_else(|| Error::invalid("full-text analyser missing"))?;
        let mut stream = a.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        Ok(out)
    }

    /// BM25 top `limit` (row, score), best first, over `allowed` rows when given.
    fn search(
        &self,
        path: &Path,
        text: &str,
        limit: usize,
        allowed: Option<Arc<HashSet<u64>>>,
    ) -> Result<Vec<(u64, f32)>> {
        // Commits of another process become visible here.
        self.reader.reload().map_err(|e| terr(path, e))?;
        let terms = self.terms(text)?;
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let clauses = terms
            .iter()
            .map(|t| {
                let q = TermQuery::new(Term::from_field_text(self.body, t), IndexRecordOption::WithFreqs);
                (Occur::Should, Box::new(q) as Box<dyn tantivy::query::Query>)
            })
            .collect();
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top = TopDocs::with_limit(limit).order_by_score();
        let found = match allowed {
            None => searcher.search(&query, &top),
            Some(set) => searcher
                .search(&query, &FilterCollector::new("row".into(), move |r: u64| set.contains(&r), top)),
        }
        .map_err(|e| terr(path, e))?;
        let mut out = Vec::with_capacity(found.len());
        for (score, addr) in found {
            let col = searcher
                .segment_reader(addr.segment_ord)
                .fast_fields()
                .u64("row")
                .map_err(|e| terr(path, e))?;
            if let Some(row) = col.first(addr.doc_id) {
                out.push((row, score));
            }
        }
        // Equal scores in row order (tantivy breaks ties by its internal address, which
        // background merges change).
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(out)
    }
}

/// The full-text index row of `c` and its options, if it has one.
pub(crate) fn fulltext_row(tx: &Txn<'_>, c: &CollectionRow) -> Result<Option<(IndexRow, FullTextOptions)>> {
    let Some(row) = tx.index(c.id, FULLTEXT)? else { return Ok(None) };
    let opts = serde_json::from_str(&row.params).unwrap_or_default();
    Ok(Some((row, opts)))
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
        })
        .unwrap_or(0)
}

impl Inner {
    /// The opened index of `c` for catalog index `row` (cached); a writer rebuilds it when
    /// it cannot be opened, a reader reports the problem.
    fn fulltext(&self, c: &CollectionRow, row: &IndexRow, opts: &FullTextOptions) -> Result<Arc<FullText>> {
        let mut cache = lock_or(&self.fulltext)?;
        if let Some(ft) = cache.get(&c.id).filter(|f| f.index_id == row.id) {
            return Ok(ft.clone());
        }
        let path = dir(&self.root, c.id);
        let ft = match FullText::open(&path, row.id, opts.clone()) {
            Ok(ft) => ft,
            Err(_) if self.writer.is_some() => FullText::create(&path, row.id, opts.clone())?,
            Err(e) => {
                return Err(Error::NotAvailable(format!(
                    "{e}; open the database for writing once to rebuild it from the catalog"
                )))
            }
        };
        let ft = Arc::new(ft);
        cache.insert(c.id, ft.clone());
        Ok(ft)
    }
}

impl Database {
    /// Build a full-text (BM25) index on `collection` over `opts.columns` (default: every
    /// text column). From then on every insert, update and delete is reflected in it
    /// before the write call returns, and [`crate::Query::Bm25`] and
    /// [`crate::Query::Hybrid`] can use it.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`], [`Error::NotFound`] for an unknown collection or column,
    /// [`Error::InvalidArgument`] for a non-text column, no text column, or an unknown
    /// language; I/O errors.
    pub fn create_fulltext_index(&self, collection: &str, opts: FullTextOptions) -> Result<super::IndexInfo> {
        analyzer(&opts)?;
        let mut w = self.writer()?;
        let c = {
            let tx = w.write()?;
            let c = tx.collection(collection)?;
            if tx.index(c.id, FULLTEXT)?.is_some() {
                return Err(Error::AlreadyExists {
                    kind: "index",
                    name: format!("fulltext on '{collection}'"),
                });
            }
            let mut opts = opts;
            if opts.columns.is_empty() {
                opts.columns = c
                    .spec
                    .columns
                    .iter()
                    .filter(|col| col.ty == ColumnType::Text)
                    .map(|col| col.name.clone())
                    .collect();
                if opts.columns.is_empty() {
                    return Err(Error::invalid(format!(
                        "collection '{collection}' has no text column to index: declare one (ColumnType::Text)"
                    )));
                }
            }
            for name in &opts.columns {
                let col = c
                    .spec
                    .columns
                    .iter()
                    .find(|col| col.name.eq_ignore_ascii_case(name))
                    .ok_or_else(|| Error::NotFound { kind: "column", name: name.to_string() })?;
                if col.ty != ColumnType::Text {
                    return Err(Error::invalid(format!("column '{name}' is not a text column")));
                }
            }
            let json = serde_json::to_string(&opts).map_err(|e| Error::invalid(e.to_string()))?;
            let id = tx.add_index(c.id, FULLTEXT, &json)?;
            tx.set_index_state(id, "ready")?;
            tx.fulltext_attach(&c, &opts.columns)?;
            tx.bump_generation()?;
            tx.commit()?;
            c
        };
        self.fulltext_rebuild_locked(&mut w, &c)?;
        drop(w);
        self.index_info(collection, FULLTEXT)
    }

    /// Rebuild the full-text index of `collection` from the catalog (after damage, or to
    /// reclaim space).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown collection or when it has no full-text index,
    /// [`Error::ReadOnly`], I/O errors.
    pub fn rebuild_fulltext_index(&self, collection: &str) -> Result<()> {
        let mut w = self.writer()?;
        let c = w.read()?.collection(collection)?;
        self.fulltext_rebuild_locked(&mut w, &c)
    }

    fn fulltext_rebuild_locked(&self, w: &mut Catalog, c: &CollectionRow) -> Result<()> {
        let (row, opts, seq, texts) = {
            let tx = w.read()?;
            let (row, opts) = fulltext_row(&tx, c)?.ok_or_else(|| Error::NotFound {
                kind: "index",
                name: format!("fulltext on '{}'", c.spec.name),
            })?;
            let seq = tx.fulltext_last_seq()?;
            let texts = tx.texts(c, &opts.columns, None)?;
            (row, opts, seq, texts)
        };
        let path = dir(&self.inner.root, c.id);
        lock_or(&self.inner.fulltext)?.remove(&c.id);
        let ft = Arc::new(FullText::create(&path, row.id, opts)?);
        ft.apply(&path, texts.into_iter().map(|(r, t)| (r, Some(t))), seq)?;
        lock_or(&self.inner.fulltext)?.insert(c.id, ft);
        let tx = w.write()?;
        tx.fulltext_trim(c.id, seq)?;
        tx.commit()
    }

    /// Apply the logged changes of `c` to its full-text index (writer lock held).
    pub(super) fn fulltext_catch_up(&self, w: &mut Catalog, c: &CollectionRow) -> Result<()> {
        let Some((row, opts)) = fulltext_row(&w.read()?, c)? else { return Ok(()) };
        let ft = self.inner.fulltext(c, &row, &opts)?;
        let trimmed = w.read()?.fulltext_trimmed(c.id)?;
        // Never committed, built for another index, or older than what the log still
        // holds (e.g. an index directory restored from a copy): rebuild.
        let Some(applied) = ft.applied().filter(|&a| a >= trimmed) else {
            return self.fulltext_rebuild_locked(w, c);
        };
        let (changes, texts) = {
            let tx = w.read()?;
            let changes = tx.fulltext_changes(c.id, applied)?;
            let rows: Vec<u64> =
                changes.iter().map(|&(_, r)| r).collect::<HashSet<_>>().into_iter().collect();
            let texts: HashMap<u64, String> = tx.texts(c, &opts.columns, Some(&rows))?.into_iter().collect();
            (changes, texts)
        };
        let Some(&(last, _)) = changes.last() else { return Ok(()) };
        let mut rows: Vec<u64> = changes.iter().map(|&(_, r)| r).collect();
        rows.sort_unstable();
        rows.dedup();
        let path = dir(&self.inner.root, c.id);
        let mut texts = texts;
        ft.apply(&path, rows.into_iter().map(|r| (r, texts.remove(&r))), last)?;
        let tx = w.write()?;
        tx.fulltext_trim(c.id, last)?;
        tx.commit()
    }

    /// After a committed write: bring the full-text index along. A failure here does not
    /// undo the write (it is committed); the change log keeps the entries and the next
    /// write, search in this process, or open applies them.
    pub(super) fn fulltext_after_write(&self, w: &mut Catalog, c: &CollectionRow) {
        let _ = self.fulltext_catch_up(w, c);
    }

    /// At open (writer): catch every full-text index up with the catalog.
    pub(super) fn fulltext_catch_up_all(&self, w: &mut Catalog) -> Result<()> {
        let colls = w.read()?.collections()?;
        for c in &colls {
            self.fulltext_catch_up(w, c)?;
        }
        Ok(())
    }

    /// CHECK of the full-text index of `c`, if any: `Some(problem)` when it is missing,
    /// unreadable or fails its checksums. A writable handle then rebuilds it from the
    /// catalog (and says so).
    pub(super) fn fulltext_check(&self, c: &CollectionRow) -> Result<Option<String>> {
        let Some((row, opts)) = self.with_reader(|cat| fulltext_row(&cat.read()?, c))? else {
            return Ok(None);
        };
        let path = dir(&self.inner.root, c.id);
        let Err(e) = FullText::open(&path, row.id, opts) else { return Ok(None) };
        if self.inner.writer.is_none() {
            return Ok(Some(e.to_string()));
        }
        let mut w = self.writer()?;
        self.fulltext_rebuild_locked(&mut w, c)?;
        Ok(Some(format!("{e} (rebuilt from the catalog)")))
    }

    /// Forget the full-text state of collection `c` (index or collection dropped).
    pub(super) fn fulltext_forget(&self, collection_id: i64) -> Result<()> {
        lock_or(&self.inner.fulltext)?.remove(&collection_id);
        let path = dir(&self.inner.root, collection_id);
        if path.exists() {
            std::fs::remove_dir_all(&path).at(&path)?;
        }
        Ok(())
    }

    /// Bytes of the full-text index of `c` on disk.
    pub(super) fn fulltext_bytes(&self, collection_id: i64) -> u64 {
        dir_bytes(&dir(&self.inner.root, collection_id))
    }

    /// BM25 over the snapshot `tx`: (row, score) best first, `allowed` rows only when
    /// given. In a writer process, changes logged but not yet applied (a failed catch-up)
    /// are applied first when the writer is free.
    pub(super) fn fulltext_search(
        &self,
        tx: &Txn<'_>,
        c: &CollectionRow,
        text: &str,
        limit: usize,
        allowed: Option<HashSet<u64>>,
    ) -> Result<Vec<(u64, f32)>> {
        let (row, opts) = fulltext_row(tx, c)?.ok_or_else(|| {
            Error::NotAvailable(format!(
                "BM25 needs a full-text index on '{}': CREATE INDEX ON {0} USING fulltext (Rust: Database::create_fulltext_index)",
                c.spec.name
            ))
        })?;
        // A successful catch-up empties the collection's log, so logged entries mean a
        // failed one: retry it here when the writer is free (it may rebuild the index).
        if let Some(w) = &self.inner.writer {
            if tx.fulltext_pending(c.id)? {
                if let Ok(mut g) = w.try_lock() {
                    let _ = self.fulltext_catch_up(&mut g, c);
                }
            }
        }
        let ft = self.inner.fulltext(c, &row, &opts)?;
        // Over-fetch a little: rows deleted in this snapshot but still in tantivy are
        // dropped by the caller.
        ft.search(&dir(&self.inner.root, c.id), text, limit + 16, allowed.map(Arc::new))
    }
}
