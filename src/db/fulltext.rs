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
use tantivy::fieldnorm::FieldNormReader;
use tantivy::postings::Postings;
use tantivy::query::{BooleanQuery, Occur, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer, Token,
    TokenFilter, TokenStream, Tokenizer,
};
use tantivy::{doc, DocSet, Index, IndexReader, IndexWriter, ReloadPolicy, Term, TERMINATED};

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
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// `snowball` (default: the Snowball stemmer of `language`; for English that is
    /// Porter2), `porter` (Porter's 1980 algorithm as Snowball publishes it, English only —
    /// the stemmer of Lucene/Anserini BM25 runs) or `none`.
    pub stemmer: String,
    /// BM25 term-frequency saturation `k1` (default 1.2, as tantivy and Lucene; Anserini's
    /// BEIR runs use 0.9). A query-time setting, stored with the index.
    pub k1: f32,
    /// BM25 length normalisation `b` in [0, 1] (default 0.75; Anserini's BEIR runs 0.4).
    pub b: f32,
}

/// tantivy's own BM25 constants: with these the index is scored by tantivy (block-max
/// WAND); any other `k1`/`b` by [`FullText::search_bm25`].
const TANTIVY_K1: f32 = 1.2;
const TANTIVY_B: f32 = 0.75;

impl Default for FullTextOptions {
    fn default() -> Self {
        Self {
            columns: Vec::new(),
            language: "english".into(),
            lowercase: true,
            stopwords: true,
            stemmer: "snowball".into(),
            k1: TANTIVY_K1,
            b: TANTIVY_B,
        }
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

/// The analyser `opts` describe, after checking every option (the error names the
/// option as the SQL `WITH (…)` spells it).
fn analyzer(opts: &FullTextOptions) -> Result<TextAnalyzer> {
    let lang = language(&opts.language)?;
    if !(opts.k1.is_finite() && opts.k1 >= 0.0) {
        return Err(Error::invalid(format!(
            "k1 = {} is out of range: use a number >= 0 (default 1.2)",
            opts.k1
        )));
    }
    if !(0.0..=1.0).contains(&opts.b) {
        return Err(Error::invalid(format!(
            "b = {} is out of range: use a number in [0, 1] (default 0.75)",
            opts.b
        )));
    }
    let mut b = TextAnalyzer::builder(SimpleTokenizer::default()).filter_dynamic(RemoveLongFilter::limit(40));
    if opts.lowercase {
        b = b.filter_dynamic(LowerCaser);
    }
    if opts.stopwords {
        if let Some(sw) = StopWordFilter::new(lang.unwrap_or(Language::English)) {
            b = b.filter_dynamic(sw);
        }
    }
    match opts.stemmer.to_ascii_lowercase().as_str() {
        "snowball" => {
            if let Some(l) = lang {
                b = b.filter_dynamic(Stemmer::new(l));
            }
        }
        "porter" => {
            if lang.is_some_and(|l| l != Language::English) {
                return Err(Error::invalid(format!(
                    "stemmer = 'porter' stems English only, not {}: use stemmer = 'snowball' for it",
                    opts.language
                )));
            }
            b = b.filter_dynamic(PorterStemmer);
        }
        "none" => {}
        other => {
            return Err(Error::invalid(format!(
                "unknown stemmer '{other}': use 'snowball' (default), 'porter' or 'none'"
            )))
        }
    }
    Ok(b.build())
}

/// Porter's 1980 stemmer (Snowball's `porter`) as a tantivy token filter; tokens are
/// lowercased before it.
#[derive(Clone)]
struct PorterStemmer;

impl TokenFilter for PorterStemmer {
    type Tokenizer<T: Tokenizer> = PorterFilter<T>;

    fn transform<T: Tokenizer>(self, inner: T) -> PorterFilter<T> {
        PorterFilter { inner }
    }
}

#[derive(Clone)]
struct PorterFilter<T> {
    inner: T,
}

impl<T: Tokenizer> Tokenizer for PorterFilter<T> {
    type TokenStream<'a> = PorterStream<T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        PorterStream {
            tail: self.inner.token_stream(text),
            stemmer: frostem::Stemmer::new(frostem::Algorithm::Porter),
        }
    }
}

struct PorterStream<T> {
    tail: T,
    stemmer: frostem::Stemmer,
}

impl<T: TokenStream> TokenStream for PorterStream<T> {
    fn advance(&mut self) -> bool {
        if !self.tail.advance() {
            return false;
        }
        let token = self.tail.token_mut();
        let stem = match self.stemmer.stem(&token.text) {
            std::borrow::Cow::Owned(s) => Some(s),
            std::borrow::Cow::Borrowed(b) if b.len() == token.text.len() => None,
            std::borrow::Cow::Borrowed(b) => Some(b.to_string()),
        };
        if let Some(s) = stem {
            token.text = s;
        }
        true
    }

    fn token(&self) -> &Token {
        self.tail.token()
    }

    fn token_mut(&mut self) -> &mut Token {
        self.tail.token_mut()
    }
}

/// A tantivy directory on read-only media: every call goes to the memory-mapped directory
/// except the lock, which is a no-op — tantivy takes its meta lock (a file it creates) to
/// read `meta.json` consistently with a committing writer, and no writer can run here.
#[derive(Debug, Clone)]
struct ReadOnlyMedia(tantivy::directory::MmapDirectory);

impl tantivy::Directory for ReadOnlyMedia {
    fn get_file_handle(
        &self,
        path: &Path,
    ) -> std::result::Result<Arc<dyn tantivy::directory::FileHandle>, tantivy::directory::error::OpenReadError>
    {
        self.0.get_file_handle(path)
    }
    fn delete(&self, path: &Path) -> std::result::Result<(), tantivy::directory::error::DeleteError> {
        self.0.delete(path)
    }
    fn exists(&self, path: &Path) -> std::result::Result<bool, tantivy::directory::error::OpenReadError> {
        self.0.exists(path)
    }
    fn open_write(
        &self,
        path: &Path,
    ) -> std::result::Result<tantivy::directory::WritePtr, tantivy::directory::error::OpenWriteError> {
        self.0.open_write(path)
    }
    fn atomic_read(
        &self,
        path: &Path,
    ) -> std::result::Result<Vec<u8>, tantivy::directory::error::OpenReadError> {
        self.0.atomic_read(path)
    }
    fn atomic_write(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        self.0.atomic_write(path, data)
    }
    fn sync_directory(&self) -> std::io::Result<()> {
        self.0.sync_directory()
    }
    fn acquire_lock(
        &self,
        _lock: &tantivy::directory::Lock,
    ) -> std::result::Result<tantivy::directory::DirectoryLock, tantivy::directory::error::LockError> {
        Ok(tantivy::directory::DirectoryLock::from(Box::new(())))
    }
    fn watch(
        &self,
        cb: tantivy::directory::WatchCallback,
    ) -> tantivy::Result<tantivy::directory::WatchHandle> {
        self.0.watch(cb)
    }
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
    /// BM25 `k1` and `b` of the index's options.
    k1: f32,
    b: f32,
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
        Ok(Self { index_id, index, reader, row, body, k1: opts.k1, b: opts.b, writer: Mutex::new(None) })
    }

    /// Open the index at `path`, verifying the checksums of its live files. `immutable`:
    /// the database is read from media this process cannot write, with writers kept out
    /// (see `Catalog::immutable`), so tantivy's reader lock file is neither possible nor needed.
    fn open(path: &Path, index_id: i64, opts: FullTextOptions, immutable: bool) -> Result<Self> {
        // The writer's background merges may replace segment files while they are read
        // here: a read that fails (a file vanished) is retried from fresh metadata; files
        // that fail their checksums are damage, reported at once.
        let mut attempt = 0;
        let index = loop {
            attempt += 1;
            match Self::open_verified(path, immutable) {
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
    fn open_verified(path: &Path, immutable: bool) -> Result<Result<Index>> {
        let index = if immutable {
            let dir = tantivy::directory::MmapDirectory::open(path).map_err(|e| terr(path, e))?;
            Index::open(ReadOnlyMedia(dir))
        } else {
            Index::open_in_dir(path)
        }
        .map_err(|e| terr(path, e))?;
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
        if (self.k1, self.b) != (TANTIVY_K1, TANTIVY_B) {
            return self.search_bm25(path, &terms, self.k1, self.b, limit, allowed.as_deref());
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

impl FullText {
    /// BM25 with any `k1` and `b`, term at a time over every posting of the query's terms
    /// (tantivy 0.27 fixes k1 = 1.2, b = 0.75 in its scorer). Everything else is tantivy's
    /// formula: idf = ln(1 + (N − n + 0.5) / (n + 0.5)) over every document of the
    /// searcher (deleted ones included until merged away, as tantivy counts them), the
    /// field length quantised as tantivy stores it (one byte, exact up to 40 tokens), the
    /// average length over the whole index, and a repeated query term counted again.
    fn search_bm25(
        &self,
        path: &Path,
        terms: &[String],
        k1: f32,
        b: f32,
        limit: usize,
        allowed: Option<&HashSet<u64>>,
    ) -> Result<Vec<(u64, f32)>> {
        let searcher = self.reader.searcher();
        let segments = searcher.segment_readers();
        let docs: u64 = segments.iter().map(|s| u64::from(s.max_doc())).sum();
        let mut tokens = 0u64;
        for s in segments {
            tokens += s.inverted_index(self.body).map_err(|e| terr(path, e))?.total_num_tokens();
        }
        if docs == 0 {
            return Ok(Vec::new());
        }
        let average = tokens as f32 / docs as f32;
        let norm: Vec<f32> = (0..=255u8)
            .map(|id| k1 * (1.0 - b + b * FieldNormReader::id_to_fieldnorm(id) as f32 / average))
            .collect();
        let mut weights = Vec::with_capacity(terms.len());
        for t in terms {
            let term = Term::from_field_text(self.body, t);
            let n = searcher.doc_freq(&term).map_err(|e| terr(path, e))?;
            let idf = (1.0 + ((docs - n) as f32 + 0.5) / (n as f32 + 0.5)).ln();
            weights.push((term, idf * (1.0 + k1)));
        }
        let mut out = Vec::new();
        for s in segments {
            let inverted = s.inverted_index(self.body).map_err(|e| terr(path, e))?;
            let lengths = s.get_fieldnorms_reader(self.body).map_err(|e| terr(path, e))?;
            let mut score: HashMap<u32, f32> = HashMap::new();
            for (term, weight) in &weights {
                let Some(mut postings) =
                    inverted.read_postings(term, IndexRecordOption::WithFreqs).map_err(|e| terr(path, e))?
                else {
                    continue;
                };
                let mut doc = postings.doc();
                while doc != TERMINATED {
                    let tf = postings.term_freq() as f32;
                    *score.entry(doc).or_default() +=
                        weight * (tf / (tf + norm[lengths.fieldnorm_id(doc) as usize]));
                    doc = postings.advance();
                }
            }
            let rows = s.fast_fields().u64("row").map_err(|e| terr(path, e))?;
            let alive = s.alive_bitset();
            for (doc, sc) in score {
                if alive.is_some_and(|a| !a.is_alive(doc)) {
                    continue;
                }
                if let Some(row) = rows.first(doc).filter(|r| allowed.is_none_or(|set| set.contains(r))) {
                    out.push((row, sc));
                }
            }
        }
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out.truncate(limit);
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
        let ft = match FullText::open(&path, row.id, opts.clone(), self.immutable) {
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
        let Err(e) = FullText::open(&path, row.id, opts, self.inner.immutable) else { return Ok(None) };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn index(dir: &Path, opts: FullTextOptions) -> FullText {
        FullText::create(dir, 1, opts).unwrap()
    }

    fn analysed(opts: &FullTextOptions, text: &str) -> Vec<String> {
        let mut a = analyzer(opts).unwrap();
        let mut s = a.token_stream(text);
        let mut out = Vec::new();
        while s.advance() {
            out.push(s.token().text.clone());
        }
        out
    }

    /// At tantivy's k1 and b, the term-at-a-time scorer ranks and scores as tantivy does —
    /// across several segments, with deleted documents, repeated query terms and fields
    /// longer than the one-byte length is exact for.
    #[test]
    fn own_bm25_equals_tantivy_at_its_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let ft = index(dir.path(), FullTextOptions { stemmer: "none".into(), ..FullTextOptions::default() });
        let vocab: Vec<String> = (0..60).map(|i| format!("w{i}")).collect();
        let mut rng = Rng::new(7);
        let mut seq = 0;
        for batch in 0..3u64 {
            let rows = (0..150u64).map(|i| {
                let len = 1 + rng.below(if i % 5 == 0 { 300 } else { 30 });
                // Zipf-like: low word numbers are frequent.
                let text: Vec<&str> = (0..len)
                    .map(|_| {
                        let top = rng.below(60) + 1;
                        vocab[rng.below(top) as usize].as_str()
                    })
                    .collect();
                (batch * 1000 + i, Some(text.join(" ")))
            });
            seq += 1;
            ft.apply(dir.path(), rows, seq).unwrap();
        }
        // Delete a few rows of the first segment.
        seq += 1;
        ft.apply(dir.path(), (0..40u64).step_by(3).map(|r| (r, None)), seq).unwrap();
        ft.reader.reload().unwrap();
        for q in ["w0", "w3 w17", "w42 w42 w5", "w59 w1 w2 w30 nosuch"] {
            let terms = ft.terms(q).unwrap();
            let theirs = ft.search(dir.path(), q, 50, None).unwrap();
            let ours = ft.search_bm25(dir.path(), &terms, TANTIVY_K1, TANTIVY_B, 50, None).unwrap();
            assert_eq!(theirs.len(), ours.len(), "{q}");
            assert!(!ours.iter().any(|&(r, _)| r < 40 && r % 3 == 0), "deleted rows found for {q}");
            for (i, (t, o)) in theirs.iter().zip(&ours).enumerate() {
                assert!((t.1 - o.1).abs() <= 1e-5 * t.1.abs().max(1.0), "{q} rank {i}: {t:?} vs {o:?}");
            }
            // Same documents at each score (ties may order alike only by row, as both do).
            let ids = |v: &[(u64, f32)]| v.iter().map(|p| p.0).collect::<Vec<_>>();
            let cut = theirs.last().map_or(0.0, |p| p.1) + 1e-4;
            let above = |v: &[(u64, f32)]| ids(&v.iter().copied().filter(|p| p.1 > cut).collect::<Vec<_>>());
            assert_eq!(above(&theirs), above(&ours), "{q}");
            // A filter keeps only its rows, in the same order.
            let allowed: HashSet<u64> = ids(&ours).into_iter().step_by(2).collect();
            let filtered =
                ft.search_bm25(dir.path(), &terms, TANTIVY_K1, TANTIVY_B, 50, Some(&allowed)).unwrap();
            assert!(filtered.iter().all(|p| allowed.contains(&p.0)));
            assert_eq!(filtered.len(), allowed.len());
        }
    }

    /// k1 and b do what BM25 says: b = 0 ignores document length, b = 1 normalises fully;
    /// k1 = 0 makes a term's weight its idf whatever its frequency.
    #[test]
    fn k1_and_b_change_scores_as_bm25_defines_them() {
        let dir = tempfile::tempdir().unwrap();
        let ft = index(dir.path(), FullTextOptions { stemmer: "none".into(), ..FullTextOptions::default() });
        let rows = [
            (1, "apple pear"),
            (2, "apple pear plum fig kiwi lime lemon date"),
            (3, "apple apple apple pear"),
            (4, "banana cherry"),
        ];
        ft.apply(dir.path(), rows.iter().map(|&(r, t)| (r, Some(t.to_string()))), 1).unwrap();
        let terms = ft.terms("apple").unwrap();
        let score = |k1, b| -> HashMap<u64, f32> {
            ft.search_bm25(dir.path(), &terms, k1, b, 10, None).unwrap().into_iter().collect()
        };
        let flat = score(1.2, 0.0);
        assert!((flat[&1] - flat[&2]).abs() < 1e-6, "{flat:?}");
        assert!(flat[&3] > flat[&1]);
        let full = score(1.2, 1.0);
        assert!(full[&1] > full[&2] * 1.5, "{full:?}");
        let binary = score(0.0, 0.75);
        assert!(
            (binary[&1] - binary[&3]).abs() < 1e-6 && (binary[&1] - binary[&2]).abs() < 1e-6,
            "{binary:?}"
        );
        let idf = (1.0f32 + (4.0 - 3.0 + 0.5) / (3.0 + 0.5)).ln();
        assert!((binary[&1] - idf).abs() < 1e-6, "{} vs {idf}", binary[&1]);
        assert!(!binary.contains_key(&4));
    }

    /// `stemmer = 'porter'` stems as Snowball's Porter (1980) does and `snowball` (English)
    /// as Porter2, on SciFact words where the two differ (tests/fixtures/porter.tsv, made by
    /// PyStemmer: scripts/gen-porter-fixture.py).
    #[test]
    fn porter_and_snowball_stem_as_the_reference() {
        let porter =
            FullTextOptions { stemmer: "porter".into(), stopwords: false, ..FullTextOptions::default() };
        let snowball = FullTextOptions { stopwords: false, ..FullTextOptions::default() };
        let none = FullTextOptions { stemmer: "none".into(), stopwords: false, ..FullTextOptions::default() };
        let table = include_str!("../../tests/fixtures/porter.tsv");
        let mut n = 0;
        for line in table.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(analysed(&porter, f[0]), [f[1]], "porter of {}", f[0]);
            assert_eq!(analysed(&snowball, f[0]), [f[2]], "snowball of {}", f[0]);
            assert_eq!(analysed(&none, f[0]), [f[0]]);
            n += 1;
        }
        assert!(n > 400, "{n} words");
    }

    #[test]
    fn bad_options_say_what_to_use() {
        let err = |o: FullTextOptions| analyzer(&o).err().map(|e| e.to_string()).unwrap_or_default();
        let d = FullTextOptions::default;
        assert!(err(FullTextOptions { stemmer: "lovins".into(), ..d() }).contains("use 'snowball'"));
        assert!(err(FullTextOptions { stemmer: "porter".into(), language: "french".into(), ..d() })
            .contains("English only"));
        assert!(err(FullTextOptions { k1: -1.0, ..d() }).contains("k1 = -1"));
        assert!(err(FullTextOptions { b: 1.5, ..d() }).contains("[0, 1]"));
        assert!(err(FullTextOptions { k1: f32::NAN, ..d() }).contains("k1"));
        assert!(analyzer(&FullTextOptions { stemmer: "porter".into(), ..d() }).is_ok());
    }
}
