//! JSONL and CSV import, beside the Parquet import, so that Rust and C users have it as
//! well as the shell: one document per line (JSONL) or row (CSV), with `id`, scalar
//! columns, and either `tokens` (a JSON matrix) plus pooled vectors (JSON arrays, by the
//! spec's names) or — for a collection with a model — the text columns to embed.
//!
//! Also the conversion every text interface shares: named fields (`INSERT` columns, a JSON
//! object, a CSV row) into a [`Document`] ([`document_from_fields`]).

use std::path::Path;

use super::Database;
use crate::types::{CollectionSpec, ColumnType, DocId, Document, IdType, Value};
use crate::{Error, Result};

/// A JSON array of numbers.
pub(crate) fn vector(s: &str) -> Result<Vec<f32>> {
    serde_json::from_str::<Vec<f32>>(s)
        .map_err(|e| Error::invalid(format!("expected a JSON array of numbers like '[0.1, 0.2]': {e}")))
}

/// A JSON matrix (array of arrays) flattened row-major, or `None` when `s` is not JSON
/// (then it is text to embed).
pub(crate) fn matrix(s: &str) -> Result<Option<Vec<f32>>> {
    if !s.trim_start().starts_with('[') {
        return Ok(None);
    }
    let rows: Vec<Vec<f32>> = serde_json::from_str(s).map_err(|e| {
        Error::invalid(format!("expected a JSON matrix like '[[0.1, 0.2], [0.3, 0.4]]': {e}"))
    })?;
    Ok(Some(rows.into_iter().flatten().collect()))
}

/// The value of a JSON field for column `column` of `spec`: numbers, strings, booleans
/// (as 0/1) and null map to scalars; arrays and objects stay JSON for a JSON column and
/// become their JSON text otherwise.
pub(crate) fn json_value(spec: &CollectionSpec, column: &str, v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Integer(i64::from(b)),
        serde_json::Value::Number(n) => {
            n.as_i64().map_or_else(|| Value::Real(n.as_f64().unwrap_or(0.0)), Value::Integer)
        }
        serde_json::Value::String(s) => Value::Text(s),
        other @ (serde_json::Value::Array(_) | serde_json::Value::Object(_)) => {
            if spec.columns.iter().any(|c| c.name == column && c.ty == ColumnType::Json) {
                Value::Json(other)
            } else {
                Value::Text(other.to_string())
            }
        }
    }
}

/// A document from named fields: `id`, `tokens` (JSON matrix text), pooled vectors of
/// `spec` (JSON array text, matched by name), and scalar columns (everything else).
///
/// # Errors
/// [`Error::InvalidArgument`] for a missing or mistyped id, a malformed matrix or vector.
pub(crate) fn document_from_fields(spec: &CollectionSpec, fields: Vec<(String, Value)>) -> Result<Document> {
    let mut id: Option<DocId> = None;
    let mut d = Document::new(DocId::Int(0));
    for (c, v) in fields {
        if c.eq_ignore_ascii_case("id") {
            id = Some(match v {
                Value::Integer(i) => DocId::Int(i),
                Value::Text(s) => DocId::from(s.as_str()),
                _ => return Err(Error::invalid("id must be text or an integer")),
            });
        } else if c.eq_ignore_ascii_case("tokens") {
            let Value::Text(s) = v else { return Err(Error::invalid("tokens must be a JSON matrix string")) };
            d.tokens = matrix(&s)?
                .ok_or_else(|| Error::invalid("tokens must be a JSON matrix like '[[0.1, 0.2]]'"))?;
        } else if let Some(p) = spec.vectors.pooled.iter().find(|p| p.name.eq_ignore_ascii_case(&c)) {
            let Value::Text(s) = v else {
                return Err(Error::invalid(format!("{c} must be a JSON array string")));
            };
            d.pooled.push((p.name.clone(), vector(&s)?));
        } else {
            d.values.push((c, v));
        }
    }
    d.id = id.ok_or_else(|| Error::invalid("INSERT needs an id column"))?;
    Ok(d)
}

/// True when `path` starts with the Parquet magic `PAR1`.
pub(crate) fn is_parquet(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    Ok(f.read_exact(&mut magic).is_ok() && &magic == b"PAR1")
}

/// An import file read one document at a time (memory bounded by one line or record, not
/// by the file): JSONL, or CSV (RFC 4180, read by the `csv` crate: quoted fields may hold
/// commas, quotes as `""` and line breaks; header row first). A UTF-8 byte-order mark is
/// skipped. Each document comes with the line it (its record) starts on.
struct FileDocs<'a> {
    spec: &'a CollectionSpec,
    path: &'a Path,
    source: Source,
    /// JSONL keys that name nothing in the collection, each with the first line it is on.
    unknown: Vec<(String, usize)>,
}

enum Source {
    Jsonl {
        reader: std::io::BufReader<std::fs::File>,
        line: usize,
        offset: usize,
        buf: Vec<u8>,
    },
    Csv {
        reader: Box<csv::Reader<std::io::BufReader<std::fs::File>>>,
        header: Vec<String>,
        record: csv::StringRecord,
    },
}

impl<'a> FileDocs<'a> {
    fn open(spec: &'a CollectionSpec, path: &'a Path) -> Result<Self> {
        use std::io::BufRead;
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, f);
        if reader.fill_buf().map_err(|e| Error::io(path, e))?.starts_with(b"\xef\xbb\xbf") {
            reader.consume(3);
        }
        let source = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
            let mut rd = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(reader);
            let header: Vec<String> =
                rd.headers().map_err(|e| csv_error(path, e))?.iter().map(str::to_string).collect();
            for h in &header {
                check_key(spec, path, 1, h)?;
            }
            Source::Csv { reader: Box::new(rd), header, record: csv::StringRecord::new() }
        } else {
            Source::Jsonl { reader, line: 0, offset: 0, buf: Vec::new() }
        };
        Ok(Self { spec, path, source, unknown: Vec::new() })
    }

    /// The next document, or `None` at the end of the file.
    fn next_doc(&mut self) -> Result<Option<(usize, Document)>> {
        let (spec, path) = (self.spec, self.path);
        match &mut self.source {
            Source::Jsonl { reader, line, offset, buf } => loop {
                use std::io::BufRead;
                buf.clear();
                let n = reader.read_until(b'\n', buf).map_err(|e| Error::io(path, e))?;
                if n == 0 {
                    return Ok(None);
                }
                *line += 1;
                let text = std::str::from_utf8(buf).map_err(|e| {
                    Error::invalid(format!(
                        "{}: line {line} is not valid UTF-8 (byte {}); convert the file to UTF-8",
                        path.display(),
                        *offset + e.valid_up_to()
                    ))
                })?;
                *offset += n;
                if text.trim().is_empty() {
                    continue;
                }
                let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
                    .map_err(|e| Error::invalid(format!("{}: line {line}: {e}", path.display())))?;
                let mut fields = Vec::new();
                for (k, v) in obj {
                    if check_key(spec, path, *line, &k).is_err() {
                        if !self.unknown.iter().any(|(u, _)| *u == k) {
                            self.unknown.push((k, *line));
                        }
                        continue;
                    }
                    let k = if k == "_id" { "id".to_string() } else { k };
                    let val = json_value(spec, &k, v);
                    fields.push((k, val));
                }
                let d = document_from_fields(spec, fields).map_err(|e| at_line(path, *line, &e))?;
                return Ok(Some((*line, d)));
            },
            Source::Csv { reader, header, record } => loop {
                if !reader.read_record(record).map_err(|e| csv_error(path, e))? {
                    return Ok(None);
                }
                let line = record.position().map_or(0, |p| p.line() as usize);
                if record.iter().all(|f| f.trim().is_empty()) && record.len() <= 1 {
                    continue;
                }
                if record.len() != header.len() {
                    return Err(Error::invalid(format!(
                        "{}: line {line} has {} fields, the header {}",
                        path.display(),
                        record.len(),
                        header.len()
                    )));
                }
                let typed = header.iter().zip(record.iter()).map(|(h, f)| {
                    let f = f.to_string();
                    let parse_int = |f: String| f.parse().map(Value::Integer).unwrap_or(Value::Text(f));
                    let ty = spec.columns.iter().find(|c| c.name.eq_ignore_ascii_case(h)).map(|c| c.ty);
                    let v = match ty {
                        Some(ColumnType::Integer | ColumnType::Real | ColumnType::Json) if f.is_empty() => {
                            Value::Null
                        }
                        Some(ColumnType::Integer) => parse_int(f),
                        Some(ColumnType::Real) => f.parse().map(Value::Real).unwrap_or(Value::Text(f)),
                        _ if h.eq_ignore_ascii_case("id") && spec.id_type == IdType::Integer => parse_int(f),
                        _ => Value::Text(f),
                    };
                    (h.clone(), v)
                });
                let d = document_from_fields(spec, typed.collect()).map_err(|e| at_line(path, line, &e))?;
                return Ok(Some((line, d)));
            },
        }
    }
}

/// A CSV reading error, naming the file (and, for bad UTF-8, the line).
fn csv_error(path: &Path, e: csv::Error) -> Error {
    if let csv::ErrorKind::Utf8 { pos: Some(pos), .. } = e.kind() {
        return Error::invalid(format!(
            "{}: line {} is not valid UTF-8; convert the file to UTF-8",
            path.display(),
            pos.line()
        ));
    }
    Error::invalid(format!("{}: {e}", path.display()))
}

/// `file: line N: error` (as the Parquet import names rows).
fn at_line(path: &Path, line: usize, e: &Error) -> Error {
    Error::invalid(format!("{}: line {line}: {e}", path.display()))
}

/// A field name must name something of `spec`: `id` (`_id`), `tokens`, a pooled vector or
/// a column (a typo like `titel` is an error, not a silently dropped value).
fn check_key(spec: &CollectionSpec, path: &Path, line: usize, k: &str) -> Result<()> {
    let known = ["id", "_id", "tokens"].iter().any(|r| r.eq_ignore_ascii_case(k))
        || spec.columns.iter().any(|c| c.name.eq_ignore_ascii_case(k))
        || spec.vectors.pooled.iter().any(|p| p.name.eq_ignore_ascii_case(k));
    if known {
        return Ok(());
    }
    let mut names: Vec<&str> = vec!["id", "tokens"];
    names.extend(spec.vectors.pooled.iter().map(|p| p.name.as_str()));
    names.extend(spec.columns.iter().map(|c| c.name.as_str()));
    Err(Error::invalid(format!(
        "{}: line {line}: unknown field '{k}': collection '{}' has {}",
        path.display(),
        spec.name,
        names.join(", ")
    )))
}

/// What an import does with a document whose id exists already (`IMPORT … ON CONFLICT
/// SKIP | REPLACE`; the default is an error, and nothing of the file is imported).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnConflict {
    /// The import fails, naming the line; nothing is imported.
    #[default]
    Error,
    /// The existing document is kept, the file's is skipped (resume an interrupted import).
    Skip,
    /// The file's document replaces the existing one (upsert).
    Replace,
}

impl Database {
    /// Import a JSONL (`.jsonl`, one JSON object per line) or CSV (`.csv`, a header row)
    /// file into `collection`: `id`, scalar columns, `tokens` as a JSON matrix and pooled
    /// vectors as JSON arrays — or, for a collection with a model and no `tokens`, the
    /// text columns, embedded. [`Database::import_file_with`] with [`OnConflict::Error`].
    ///
    /// # Errors
    /// As [`Database::import_file_with`].
    pub fn import_file(
        &self,
        collection: &str,
        path: impl AsRef<Path>,
        progress: impl FnMut(usize),
    ) -> Result<usize> {
        self.import_file_with(collection, path, OnConflict::Error, progress)
    }

    /// [`Database::import_file`], all or nothing: every line is parsed and validated
    /// (fields known to the collection, dimensions, values, ids unique in the file and —
    /// unless `on_conflict` says otherwise — new to the collection) before the first
    /// document is inserted; then the documents go in in batches of 1,000,
    /// `progress(done)` after each, and should a batch still fail (I/O), the batches
    /// already inserted are deleted again. A process killed during the import keeps the
    /// batches committed so far: run it again with [`OnConflict::Skip`] to finish it. A
    /// UTF-8 byte-order mark is accepted. Returns the documents inserted or replaced
    /// (skipped ones not counted).
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::InvalidArgument`] naming the file and line (bad UTF-8, bad
    /// JSON, an unknown field, a malformed row, a wrong dimension, an id that exists),
    /// and the errors of [`Database::insert`].
    pub fn import_file_with(
        &self,
        collection: &str,
        path: impl AsRef<Path>,
        on_conflict: OnConflict,
        progress: impl FnMut(usize),
    ) -> Result<usize> {
        Ok(self.import_file_report(collection, path.as_ref(), on_conflict, progress)?.0)
    }

    /// [`Database::import_file_with`], also returning the JSONL keys that named nothing in
    /// the collection and were left out, each with the first line it is on (the shell
    /// reports them).
    ///
    /// # Errors
    /// As [`Database::import_file_with`].
    pub fn import_file_report(
        &self,
        collection: &str,
        path: &Path,
        on_conflict: OnConflict,
        mut progress: impl FnMut(usize),
    ) -> Result<(usize, Vec<(String, usize)>)> {
        use std::collections::{HashMap, HashSet};
        self.interrupted();
        let spec = self.describe(collection)?;
        let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| Ok((m.len(), m.modified()?))).ok();
        let before = stamp(path);
        // Pass 1: parse and validate every line before writing anything, keeping only the
        // ids (memory follows the number of documents, not their vectors).
        let mut file = FileDocs::open(&spec, path)?;
        let mut seen: HashMap<DocId, usize> = HashMap::new();
        let mut any_tokens = false;
        let mut first_untokened = None;
        let mut existing: HashSet<DocId> = HashSet::new();
        let mut unchecked: Vec<(usize, DocId)> = Vec::new();
        loop {
            let next = file.next_doc()?;
            if unchecked.len() == 1000 || (next.is_none() && !unchecked.is_empty()) {
                self.existing_ids(collection, path, on_conflict, &mut unchecked, &mut existing)?;
            }
            let Some((line, d)) = next else { break };
            if let Some(first) = seen.insert(d.id.clone(), line) {
                return Err(at_line(
                    path,
                    line,
                    &Error::invalid(format!("document id {} is also on line {first}", d.id)),
                ));
            }
            let checked = if spec.embedding.is_some() && d.tokens.is_empty() {
                first_untokened.get_or_insert(line);
                crate::validate::id(&spec, &d.id)
                    .and_then(|()| crate::validate::values(&spec, &d.values).map(drop))
            } else {
                any_tokens = true;
                crate::validate::document(&spec, &d).map(drop)
            };
            checked.map_err(|e| at_line(path, line, &e))?;
            unchecked.push((line, d.id));
        }
        let unknown = std::mem::take(&mut file.unknown);
        drop(file);
        if let (true, Some(line)) = (any_tokens, first_untokened) {
            return Err(at_line(
                path,
                line,
                &Error::invalid(
                    "no tokens, while other lines have them: give every line its tokens, or none (the collection then embeds its text columns)",
                ),
            ));
        }
        let embed_text = spec.embedding.is_some() && !any_tokens;
        let total = seen.len() - existing.len();
        drop(seen);
        if self.interrupted() {
            return Err(Error::Interrupted(format!("{}: nothing was imported", path.display())));
        }
        // Pass 2: read the file again and write it in batches.
        if stamp(path) != before {
            return Err(Error::invalid(format!(
                "{} changed while it was being read: nothing was imported (import it again)",
                path.display()
            )));
        }
        let mut file = FileDocs::open(&spec, path)?;
        let failed = std::cell::RefCell::new(None);
        let mut docs = std::iter::from_fn(|| match file.next_doc() {
            Ok(d) => d.map(|(_, d)| d),
            Err(e) => {
                *failed.borrow_mut() = Some(e);
                None
            }
        })
        .filter(|d| !existing.contains(&d.id));
        let changed = |e: Error| {
            Error::invalid(format!(
                "{} changed during the import ({e}); check what was imported",
                path.display()
            ))
        };
        if embed_text {
            #[cfg(feature = "embed")]
            {
                let n = self.import_text(collection, docs, progress)?;
                return match failed.into_inner() {
                    Some(e) => Err(changed(e)),
                    None => Ok((n, unknown)),
                };
            }
            #[cfg(not(feature = "embed"))]
            return Err(Error::NotAvailable(
                "importing text to embed needs the `embed` cargo feature".into(),
            ));
        }
        let mut done = 0;
        let mut inserted: Vec<DocId> = Vec::new();
        loop {
            let batch: Vec<Document> = docs.by_ref().take(1000).collect();
            let result = match failed.borrow_mut().take() {
                Some(e) => Err(changed(e)),
                None if batch.is_empty() => break,
                None if on_conflict == OnConflict::Replace => self.upsert(collection, &batch),
                None => self.insert(collection, &batch),
            };
            if let Err(e) = result {
                // All or nothing: take back the batches that went in (a replace cannot
                // be taken back: what it replaced is gone, and the error says so).
                if on_conflict == OnConflict::Replace && done > 0 {
                    return Err(Error::invalid(format!(
                        "{}: the import failed after replacing {done} documents ({e}); run it again to finish",
                        path.display()
                    )));
                }
                if !inserted.is_empty() {
                    self.delete(collection, &inserted)?;
                }
                return Err(e);
            }
            done += batch.len();
            if on_conflict != OnConflict::Replace {
                inserted.extend(batch.into_iter().map(|d| d.id));
            }
            progress(done);
            if done < total && self.interrupted() {
                let again = if on_conflict == OnConflict::Replace { "REPLACE" } else { "SKIP" };
                return Err(Error::Interrupted(format!(
                    "{}: {done} of {total} documents are committed, the rest is not imported: run the \
                     IMPORT again with ON CONFLICT {again} to finish",
                    path.display()
                )));
            }
        }
        Ok((done, unknown))
    }

    /// Look up which of `ids` exist in `collection` (emptying `ids`): an error naming the
    /// first one's line under [`OnConflict::Error`], else remembered in `existing` (skipped
    /// later; a replace needs no lookup).
    fn existing_ids(
        &self,
        collection: &str,
        path: &Path,
        on_conflict: OnConflict,
        ids: &mut Vec<(usize, DocId)>,
        existing: &mut std::collections::HashSet<DocId>,
    ) -> Result<()> {
        let ids = std::mem::take(ids);
        if on_conflict == OnConflict::Replace || ids.is_empty() {
            return Ok(());
        }
        let values: Vec<Value> = ids
            .iter()
            .map(|(_, id)| match id {
                DocId::Int(i) => Value::Integer(*i),
                DocId::Text(t) => Value::Text(t.clone()),
            })
            .collect();
        let req = super::query::ListRequest::new()
            .filter(crate::Filter::is_in(crate::ID_COLUMN, values))
            .limit(ids.len());
        let found: std::collections::HashSet<DocId> =
            self.list(collection, &req)?.into_iter().map(|h| h.id).collect();
        if on_conflict == OnConflict::Error {
            if let Some((line, id)) = ids.iter().find(|(_, id)| found.contains(id)) {
                return Err(at_line(
                    path,
                    *line,
                    &Error::invalid(format!(
                        "document {id} already exists: nothing was imported (IMPORT … ON CONFLICT SKIP keeps it, ON CONFLICT REPLACE replaces it)"
                    )),
                ));
            }
        }
        existing.extend(found);
        Ok(())
    }
}
