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

/// The documents of a CSV file's text (RFC 4180, read by the `csv` crate: quoted fields
/// may hold commas, quotes as `""` and line breaks; header row first), each with the line
/// its record starts on. An empty cell of an INTEGER, REAL or JSON column is NULL.
fn csv_documents(spec: &CollectionSpec, path: &Path, text: &str) -> Result<Vec<(usize, Document)>> {
    let bad = |e: csv::Error| Error::invalid(format!("{}: {e}", path.display()));
    let mut rd = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(text.as_bytes());
    let header: Vec<String> = rd.headers().map_err(bad)?.iter().map(str::to_string).collect();
    for h in &header {
        check_key(spec, path, 1, h)?;
    }
    let mut docs = Vec::new();
    for rec in rd.records() {
        let rec = rec.map_err(bad)?;
        let line = rec.position().map_or(0, |p| p.line() as usize);
        if rec.iter().all(|f| f.trim().is_empty()) && rec.len() <= 1 {
            continue;
        }
        if rec.len() != header.len() {
            return Err(Error::invalid(format!(
                "{}: line {line} has {} fields, the header {}",
                path.display(),
                rec.len(),
                header.len()
            )));
        }
        let typed = header.iter().zip(rec.iter()).map(|(h, f)| {
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
        docs.push((line, d));
    }
    Ok(docs)
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

/// The documents of a JSONL file's text, with their line numbers; keys that name nothing
/// in `spec` (BEIR's `metadata`, or a typo like `titel`) are left out and reported in
/// `unknown` with the first line they are on.
fn jsonl_documents(
    spec: &CollectionSpec,
    path: &Path,
    text: &str,
    unknown: &mut Vec<(String, usize)>,
) -> Result<Vec<(usize, Document)>> {
    let mut docs = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
            .map_err(|e| Error::invalid(format!("{}: line {}: {e}", path.display(), n + 1)))?;
        let mut fields = Vec::new();
        for (k, v) in obj {
            if check_key(spec, path, n + 1, &k).is_err() {
                if !unknown.iter().any(|(u, _)| *u == k) {
                    unknown.push((k, n + 1));
                }
                continue;
            }
            let k = if k == "_id" { "id".to_string() } else { k };
            let val = json_value(spec, &k, v);
            fields.push((k, val));
        }
        let d = document_from_fields(spec, fields).map_err(|e| at_line(path, n + 1, &e))?;
        docs.push((n + 1, d));
    }
    Ok(docs)
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
        let mut unknown = Vec::new();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let line = 1 + e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count();
            Error::invalid(format!(
                "{}: line {line} is not valid UTF-8 (byte {at}); convert the file to UTF-8",
                path.display()
            ))
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let spec = self.describe(collection)?;
        let mut docs = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
            csv_documents(&spec, path, text)?
        } else {
            jsonl_documents(&spec, path, text, &mut unknown)?
        };
        let embed_text = spec.embedding.is_some() && docs.iter().all(|(_, d)| d.tokens.is_empty());
        // Validate everything before writing anything.
        let mut seen = std::collections::HashMap::with_capacity(docs.len());
        for (line, d) in &docs {
            if let Some(first) = seen.insert(d.id.clone(), *line) {
                return Err(at_line(
                    path,
                    *line,
                    &Error::invalid(format!("document id {} is also on line {first}", d.id)),
                ));
            }
            let checked = if embed_text {
                crate::validate::id(&spec, &d.id)
                    .and_then(|()| crate::validate::values(&spec, &d.values).map(drop))
            } else {
                crate::validate::document(&spec, d).map(drop)
            };
            checked.map_err(|e| at_line(path, *line, &e))?;
        }
        if on_conflict != OnConflict::Replace {
            let ids: Vec<Value> = docs
                .iter()
                .map(|(_, d)| match &d.id {
                    DocId::Int(i) => Value::Integer(*i),
                    DocId::Text(t) => Value::Text(t.clone()),
                })
                .collect();
            let existing: std::collections::HashSet<DocId> = if ids.is_empty() {
                Default::default()
            } else {
                let req =
                    super::query::ListRequest::new().filter(crate::Filter::is_in(crate::ID_COLUMN, ids));
                self.list(collection, &req)?.into_iter().map(|h| h.id).collect()
            };
            if on_conflict == OnConflict::Error {
                if let Some((line, d)) = docs.iter().find(|(_, d)| existing.contains(&d.id)) {
                    return Err(at_line(
                        path,
                        *line,
                        &Error::invalid(format!(
                            "document {} already exists: nothing was imported (IMPORT … ON CONFLICT SKIP keeps it, ON CONFLICT REPLACE replaces it)",
                            d.id
                        )),
                    ));
                }
            }
            docs.retain(|(_, d)| !existing.contains(&d.id));
        }
        let docs: Vec<Document> = docs.into_iter().map(|(_, d)| d).collect();
        let total = docs.len();
        if embed_text {
            #[cfg(feature = "embed")]
            return Ok((self.import_text(collection, docs, progress)?, unknown));
            #[cfg(not(feature = "embed"))]
            return Err(Error::NotAvailable(
                "importing text to embed needs the `embed` cargo feature".into(),
            ));
        }
        for (i, chunk) in docs.chunks(1000).enumerate() {
            let done = if on_conflict == OnConflict::Replace {
                self.upsert(collection, chunk)
            } else {
                self.insert(collection, chunk)
            };
            if let Err(e) = done {
                // All or nothing: take back the batches that went in (a replace cannot
                // be taken back: what it replaced is gone, and the error says so).
                if on_conflict != OnConflict::Replace && i > 0 {
                    let ids: Vec<DocId> = docs[..i * 1000].iter().map(|d| d.id.clone()).collect();
                    self.delete(collection, &ids)?;
                    return Err(e);
                }
                if i > 0 {
                    return Err(Error::invalid(format!(
                        "{}: the import failed after replacing {} documents ({e}); run it again to finish",
                        path.display(),
                        i * 1000
                    )));
                }
                return Err(e);
            }
            progress((i * 1000 + chunk.len()).min(total));
        }
        Ok((total, unknown))
    }
}
