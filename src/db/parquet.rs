//! EXPORT and IMPORT of a collection as Apache Parquet (feature `parquet`), the columnar
//! format Spark, Ray, DuckDB, Polars, pandas/pyarrow and BigQuery read.
//!
//! File layout (one row per live document, zstd-compressed pages, float components
//! `BYTE_STREAM_SPLIT`-encoded, row groups of at most [`ROW_GROUP_BYTES`] uncompressed):
//!
//! | column | Arrow type | |
//! |---|---|---|
//! | `id` | `int64` or `utf8` | the document id (`IdType`) |
//! | each scalar column | `utf8` (TEXT, JSON as text), `int64`, `float64` | nullable |
//! | `tokens` | `list<fixed_size_list<float32, token_dim>>` | token vectors, one row per token |
//! | each pooled vector | `fixed_size_list<float32, dim>` | named after the vector |
//!
//! Field metadata `maxsimdb.role` (`id`, `column`, `tokens`, `pooled`) and `maxsimdb.name`
//! say what each column is. Names stay unique: when a scalar column is called `tokens` the
//! token vectors are `_tokens`, and a pooled vector named like a scalar column, `id` or
//! `tokens` is `_pooled_<name>` (column names cannot start with `_`). File metadata `maxsimdb.spec` holds the collection spec (JSON: columns,
//! vector layout, embedding model and its weights hash), `maxsimdb.format` the layout
//! version (1) and `maxsimdb.version` the library version. A codes-only collection
//! (`tokens = 'plaid2'` …) exports its token vectors decoded from the codes, and the file
//! says so in `maxsimdb.tokens_lossy` (importing them re-encodes an approximation).
//! `maxsimdb.content_xxh3` ([`CONTENT_KEY`]) checksums every row's id and vectors; import
//! verifies it for files that carry it.
//!
//! Vectors are always written as float32: an f32 collection round-trips bit for bit, and so
//! does an f16 one (every f16 widens exactly to f32 and narrows back to the same bits on
//! import into an f16 collection). Index structures — PLAID centroids and residual codes,
//! HNSW graphs, MUVERA sketches, the full-text index — are derived state and are not
//! exported: create the indexes again after an import.
//!
//! Import accepts what other tools write, too: `id` (or `_id`), scalar columns matched by
//! name, `tokens` as a list of fixed-size lists or a list of lists (Spark, pandas), pooled
//! vectors as fixed-size lists or lists, elements float32, float16 or float64 (narrowed).
//! It reads the file twice: first every row is decoded and validated (ids new and unique,
//! dimensions, finite values, column types), and only then inserted, so a bad file changes
//! nothing.

use std::collections::HashSet;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::builder::{Float64Builder, Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt8Type,
};
use arrow_array::{Array, ArrayRef, FixedSizeListArray, Float32Array, ListArray, RecordBatch};
use arrow_schema::{DataType, Field, FieldRef, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::Database;
use crate::catalog::CollectionRow;
use crate::error::IoContext;
use crate::types::{CollectionSpec, ColumnType, DocId, Document, IdType, Value};
use crate::{Error, Result};

/// File metadata key of the collection spec (JSON).
pub const SPEC_KEY: &str = "maxsimdb.spec";
/// File metadata key of the content checksum: xxh3-128 over every row's id, token
/// vectors and pooled vectors (spec order), as written; import verifies it.
pub const CONTENT_KEY: &str = "maxsimdb.content_xxh3";

/// The running content checksum of [`CONTENT_KEY`].
#[derive(Default)]
struct ContentSum(xxhash_rust::xxh3::Xxh3);

impl ContentSum {
    fn add(&mut self, id: &DocId, tokens: &[f32], pooled: &[f32]) {
        let id = id.to_string();
        self.0.update(&(id.len() as u64).to_le_bytes());
        self.0.update(id.as_bytes());
        for v in [tokens, pooled] {
            self.0.update(&(v.len() as u64).to_le_bytes());
            v.iter().for_each(|x| self.0.update(&x.to_le_bytes()));
        }
    }

    fn hex(&self) -> String {
        format!("{:032x}", self.0.digest128())
    }
}

/// File metadata key present when the token vectors were decoded from codes (lossy).
pub const LOSSY_KEY: &str = "maxsimdb.tokens_lossy";
/// File metadata key of the layout version.
pub const FORMAT_KEY: &str = "maxsimdb.format";
/// Field metadata key saying what a column is: `id`, `column`, `tokens` or `pooled`.
pub const ROLE_KEY: &str = "maxsimdb.role";
/// Field metadata key of the collection-side name of a column or pooled vector.
pub const NAME_KEY: &str = "maxsimdb.name";
/// Documents per record batch written.
const EXPORT_BATCH: usize = 1024;
/// A row group is closed once this many uncompressed bytes are buffered.
pub const ROW_GROUP_BYTES: usize = 128 << 20;
/// zstd level of the pages.
const ZSTD_LEVEL: i32 = 1;

/// What [`Database::export_parquet`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportReport {
    /// Documents written.
    pub docs: u64,
    /// Token vectors written.
    pub tokens: u64,
    /// Row groups in the file.
    pub row_groups: usize,
    /// Size of the Parquet file.
    pub file_bytes: u64,
    /// Size of the vectors as float32 (what the file holds uncompressed, vectors only).
    pub vector_bytes: u64,
    /// Wall time.
    pub seconds: f64,
}

/// What [`Database::import_parquet`] read.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportReport {
    /// Documents inserted.
    pub docs: u64,
    /// Token vectors read from the file (0 when the collection's model embedded the text).
    pub tokens: u64,
    /// True when the file had no `tokens` column and the model computed the vectors.
    pub embedded: bool,
    /// True when the collection was created from the spec stored in the file.
    pub created: bool,
    /// File columns that match nothing in the collection (not imported).
    pub ignored: Vec<String>,
    /// Wall time.
    pub seconds: f64,
}

/// Where each part of a document sits in the file's schema.
struct Layout {
    id: usize,
    /// (file column, collection column name, type).
    columns: Vec<(usize, String, ColumnType)>,
    tokens: Option<usize>,
    /// (file column, pooled vector name, dim).
    pooled: Vec<(usize, String, usize)>,
}

fn role(f: &Field) -> Option<&str> {
    f.metadata().get(ROLE_KEY).map(String::as_str)
}

impl Layout {
    /// The Arrow schema an export of `spec` writes.
    fn export_schema(spec: &CollectionSpec) -> Schema {
        let meta = |role: &str, name: &str| -> std::collections::HashMap<String, String> {
            [(ROLE_KEY.to_string(), role.to_string()), (NAME_KEY.to_string(), name.to_string())].into()
        };
        // Names are unique: `tokens` is `_tokens` when a scalar column has that name, and a
        // pooled vector named like a column, `id` or `tokens` is `_pooled_<name>` (no
        // column name starts with '_').
        let column = |n: &str| spec.columns.iter().any(|c| c.name.eq_ignore_ascii_case(n));
        let id_type = match spec.id_type {
            IdType::Integer => DataType::Int64,
            IdType::Text => DataType::Utf8,
        };
        let mut fields = vec![Field::new("id", id_type, false).with_metadata(meta("id", "id"))];
        for c in &spec.columns {
            let ty = match c.ty {
                ColumnType::Integer => DataType::Int64,
                ColumnType::Real => DataType::Float64,
                ColumnType::Text | ColumnType::Json => DataType::Utf8,
            };
            let mut m = meta("column", &c.name);
            if c.ty == ColumnType::Json {
                m.insert("maxsimdb.type".into(), "json".into());
            }
            fields.push(Field::new(&c.name, ty, true).with_metadata(m));
        }
        fields.push(
            Field::new(
                if column("tokens") { "_tokens" } else { "tokens" },
                DataType::List(token_item(spec.vectors.token_dim)),
                false,
            )
            .with_metadata(meta("tokens", "tokens")),
        );
        for p in &spec.vectors.pooled {
            fields.push(
                Field::new(
                    if column(&p.name) || ["id", "tokens"].iter().any(|r| r.eq_ignore_ascii_case(&p.name)) {
                        format!("_pooled_{}", p.name)
                    } else {
                        p.name.clone()
                    },
                    vector_type(p.dim),
                    false,
                )
                .with_metadata(meta("pooled", &p.name)),
            );
        }
        Schema::new(fields)
    }

    /// Match a file's columns to collection `spec`: by `maxsimdb.role`/`maxsimdb.name`
    /// metadata when present, else by name (case-insensitive). Returns the layout and the
    /// names of file columns that match nothing.
    fn match_file(schema: &Schema, spec: &CollectionSpec, path: &str) -> Result<(Self, Vec<String>)> {
        let mut l = Layout { id: usize::MAX, columns: Vec::new(), tokens: None, pooled: Vec::new() };
        let mut ignored = Vec::new();
        for (i, f) in schema.fields().iter().enumerate() {
            let name = f.metadata().get(NAME_KEY).map_or(f.name().as_str(), String::as_str);
            let column = spec.columns.iter().find(|c| c.name.eq_ignore_ascii_case(name));
            let pooled = spec.vectors.pooled.iter().find(|p| p.name.eq_ignore_ascii_case(name));
            match (role(f), column, pooled) {
                (Some("id"), ..) => l.id = i,
                (Some("tokens"), ..) => l.tokens = Some(i),
                (Some("column") | None, Some(c), _) => l.columns.push((i, c.name.clone(), c.ty)),
                (None, ..) if name == "id" || name == "_id" => l.id = i,
                (None, ..) if name.eq_ignore_ascii_case("tokens") => l.tokens = Some(i),
                (Some("pooled") | None, _, Some(p)) => l.pooled.push((i, p.name.clone(), p.dim)),
                _ => ignored.push(f.name().clone()),
            }
        }
        if l.id == usize::MAX {
            return Err(Error::invalid(format!(
                "{path}: no 'id' column; the file's columns are: {}",
                schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        if l.tokens.is_none() && spec.embedding.is_none() {
            return Err(Error::invalid(format!(
                "{path}: no 'tokens' column, and collection '{}' has no embedding model to compute token \
                 vectors from text",
                spec.name
            )));
        }
        Ok((l, ignored))
    }

    /// The documents of one record batch.
    fn documents(&self, b: &RecordBatch, spec: &CollectionSpec, first_row: u64) -> Result<Vec<Document>> {
        let row_err =
            |i: usize, what: String| Error::invalid(format!("row {}: {what}", first_row + i as u64));
        let id_col = b.column(self.id);
        let mut docs = Vec::with_capacity(b.num_rows());
        for i in 0..b.num_rows() {
            let id = match scalar(id_col, i).map_err(|e| row_err(i, format!("id: {e}")))? {
                Value::Integer(v) => match spec.id_type {
                    IdType::Integer => DocId::Int(v),
                    IdType::Text => DocId::Text(v.to_string()),
                },
                Value::Text(s) if spec.id_type == IdType::Text => DocId::Text(s),
                Value::Null => return Err(row_err(i, "the id is null".into())),
                other => {
                    return Err(row_err(
                        i,
                        format!("id {other:?} does not fit the collection's {:?} ids", spec.id_type),
                    ))
                }
            };
            let mut d = Document::new(id);
            for (col, name, ty) in &self.columns {
                let v = scalar(b.column(*col), i).map_err(|e| row_err(i, format!("column {name}: {e}")))?;
                let v = match (ty, v) {
                    (ColumnType::Json, Value::Text(s)) => Value::Json(
                        serde_json::from_str(&s)
                            .map_err(|e| row_err(i, format!("column {name} is not valid JSON: {e}")))?,
                    ),
                    (ColumnType::Real, Value::Integer(n)) => Value::Real(n as f64),
                    (_, v) => v,
                };
                d.values.push((name.clone(), v));
            }
            if let Some(t) = self.tokens {
                let m = element(b.column(t), i)
                    .and_then(|rows| matrix(&rows, spec.vectors.token_dim))
                    .map_err(|e| row_err(i, format!("tokens: {e}")))?;
                d.tokens = m;
            }
            for (col, name, dim) in &self.pooled {
                let v = element(b.column(*col), i)
                    .and_then(|v| floats(&v))
                    .map_err(|e| row_err(i, format!("pooled vector {name}: {e}")))?;
                if v.len() != *dim {
                    return Err(row_err(
                        i,
                        format!("pooled vector {name} has {} components, not {dim}", v.len()),
                    ));
                }
                d.pooled.push((name.clone(), v));
            }
            docs.push(d);
        }
        Ok(docs)
    }
}

fn token_item(dim: usize) -> FieldRef {
    Arc::new(Field::new("item", vector_type(dim), false))
}

fn vector_type(dim: usize) -> DataType {
    DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), dim as i32)
}

/// Row `i` of a scalar column as a [`Value`] (integers of any width, floats, strings).
fn scalar(a: &ArrayRef, i: usize) -> std::result::Result<Value, String> {
    if a.is_null(i) {
        return Ok(Value::Null);
    }
    Ok(match a.data_type() {
        DataType::Int64 => Value::Integer(a.as_primitive::<Int64Type>().value(i)),
        DataType::Int32 => Value::Integer(a.as_primitive::<Int32Type>().value(i).into()),
        DataType::Int16 => Value::Integer(a.as_primitive::<Int16Type>().value(i).into()),
        DataType::Int8 => Value::Integer(a.as_primitive::<Int8Type>().value(i).into()),
        DataType::UInt32 => Value::Integer(a.as_primitive::<UInt32Type>().value(i).into()),
        DataType::UInt16 => Value::Integer(a.as_primitive::<UInt16Type>().value(i).into()),
        DataType::UInt8 => Value::Integer(a.as_primitive::<UInt8Type>().value(i).into()),
        DataType::Float64 => Value::Real(a.as_primitive::<Float64Type>().value(i)),
        DataType::Float32 => Value::Real(a.as_primitive::<Float32Type>().value(i).into()),
        DataType::Utf8 => Value::Text(a.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Value::Text(a.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => Value::Text(a.as_string_view().value(i).to_string()),
        other => return Err(format!("type {other} is not supported (use integers, floats or strings)")),
    })
}

/// Element `i` of a list column (fixed-size, 32- or 64-bit offsets).
fn element(a: &ArrayRef, i: usize) -> std::result::Result<ArrayRef, String> {
    if a.is_null(i) {
        return Err("null".into());
    }
    match a.data_type() {
        DataType::FixedSizeList(..) => Ok(a.as_fixed_size_list().value(i)),
        DataType::List(_) => Ok(a.as_list::<i32>().value(i)),
        DataType::LargeList(_) => Ok(a.as_list::<i64>().value(i)),
        other => Err(format!("type {other} is not a list of vectors")),
    }
}

/// The components of one vector (float32, float16 or float64 elements, no nulls).
fn floats(a: &ArrayRef) -> std::result::Result<Vec<f32>, String> {
    if a.null_count() > 0 {
        return Err("a component is null".into());
    }
    match a.data_type() {
        DataType::Float32 => Ok(a.as_primitive::<Float32Type>().values().to_vec()),
        DataType::Float16 => {
            Ok(a.as_primitive::<Float16Type>().values().iter().map(|h| h.to_f32()).collect())
        }
        DataType::Float64 => Ok(a.as_primitive::<Float64Type>().values().iter().map(|&x| x as f32).collect()),
        other => Err(format!("components of type {other} (use float32, float16 or float64)")),
    }
}

/// A document's token matrix: a list of `dim`-component vectors, flattened row-major.
fn matrix(rows: &ArrayRef, dim: usize) -> std::result::Result<Vec<f32>, String> {
    if let DataType::FixedSizeList(_, n) = rows.data_type() {
        if *n as usize != dim {
            return Err(format!("token vectors have {n} components; the collection's token_dim is {dim}"));
        }
        if rows.null_count() > 0 {
            return Err("a token vector is null".into());
        }
        return floats(rows.as_fixed_size_list().values());
    }
    let mut out = Vec::with_capacity(rows.len() * dim);
    for j in 0..rows.len() {
        let v = floats(&element(rows, j)?)?;
        if v.len() != dim {
            return Err(format!(
                "token vector {j} has {} components; the collection's token_dim is {dim}",
                v.len()
            ));
        }
        out.extend_from_slice(&v);
    }
    Ok(out)
}

fn write_err(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> Error + '_ {
    move |e| Error::io(path, std::io::Error::other(e.to_string()))
}

fn read_err(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> Error + '_ {
    move |e| Error::invalid(format!("{}: not a readable Parquet file: {e}", path.display()))
}

/// One record batch of documents for `schema`.
fn export_batch(
    schema: &Arc<Schema>,
    spec: &CollectionSpec,
    ids: &[DocId],
    values: &[Vec<(String, Value)>],
    tokens: &[Vec<f32>],
    pooled: &[Vec<f32>],
) -> Result<RecordBatch> {
    let n = ids.len();
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    cols.push(match spec.id_type {
        IdType::Integer => Arc::new(
            ids.iter()
                .map(|d| match d {
                    DocId::Int(i) => Some(*i),
                    DocId::Text(_) => None,
                })
                .collect::<arrow_array::Int64Array>(),
        ),
        IdType::Text => {
            Arc::new(ids.iter().map(|d| Some(d.to_string())).collect::<arrow_array::StringArray>())
        }
    });
    for (ci, c) in spec.columns.iter().enumerate() {
        let vals = values.iter().map(|v| &v[ci].1);
        cols.push(match c.ty {
            ColumnType::Integer => {
                let mut b = Int64Builder::with_capacity(n);
                for v in vals {
                    b.append_option(match v {
                        Value::Integer(i) => Some(*i),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
            ColumnType::Real => {
                let mut b = Float64Builder::with_capacity(n);
                for v in vals {
                    b.append_option(match v {
                        Value::Real(x) => Some(*x),
                        Value::Integer(i) => Some(*i as f64),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
            ColumnType::Text | ColumnType::Json => {
                let mut b = StringBuilder::with_capacity(n, 64 * n);
                for v in vals {
                    match v {
                        Value::Null => b.append_null(),
                        Value::Text(s) => b.append_value(s),
                        Value::Json(j) => b.append_value(j.to_string()),
                        Value::Integer(i) => b.append_value(i.to_string()),
                        Value::Real(x) => b.append_value(x.to_string()),
                    }
                }
                Arc::new(b.finish())
            }
        });
    }
    let dim = spec.vectors.token_dim;
    let mut offsets = Vec::with_capacity(n + 1);
    offsets.push(0i32);
    let mut flat = Vec::with_capacity(tokens.iter().map(Vec::len).sum());
    for t in tokens {
        flat.extend_from_slice(t);
        offsets.push(i32::try_from(flat.len() / dim).map_err(|_| Error::invalid("export batch too large"))?);
    }
    let inner = FixedSizeListArray::try_new(
        Arc::new(Field::new("item", DataType::Float32, false)),
        dim as i32,
        Arc::new(Float32Array::from(flat)),
        None,
    )
    .map_err(|e| Error::Internal(format!("token array: {e}")))?;
    let list = ListArray::try_new(token_item(dim), arrow_buffer_offsets(offsets), Arc::new(inner), None)
        .map_err(|e| Error::Internal(format!("token list: {e}")))?;
    cols.push(Arc::new(list));
    let mut start = 0;
    for p in &spec.vectors.pooled {
        let v: Vec<f32> = pooled.iter().flat_map(|all| all[start..start + p.dim].iter().copied()).collect();
        start += p.dim;
        cols.push(Arc::new(
            FixedSizeListArray::try_new(
                Arc::new(Field::new("item", DataType::Float32, false)),
                p.dim as i32,
                Arc::new(Float32Array::from(v)),
                None,
            )
            .map_err(|e| Error::Internal(format!("pooled array: {e}")))?,
        ));
    }
    RecordBatch::try_new(schema.clone(), cols).map_err(|e| Error::Internal(format!("record batch: {e}")))
}

fn arrow_buffer_offsets(offsets: Vec<i32>) -> arrow_buffer::OffsetBuffer<i32> {
    arrow_buffer::OffsetBuffer::new(offsets.into())
}

impl Database {
    /// Write every live document of `collection` — ids, scalar columns, token vectors,
    /// pooled vectors — to the Parquet file `dest` (layout in the module docs), from one
    /// consistent snapshot while readers and the writer keep working. `progress(done,
    /// total)` counts documents. The file appears atomically (written to `dest.tmp`,
    /// fsynced, renamed). [`Database::interrupt`] stops it between batches.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if `dest` exists, [`Error::NotFound`] for an unknown
    /// collection, [`Error::Corruption`] for a damaged segment, [`Error::Interrupted`],
    /// I/O errors (then no file is left behind).
    pub fn export_parquet(
        &self,
        collection: &str,
        dest: impl AsRef<Path>,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<ExportReport> {
        let dest = dest.as_ref();
        let started = Instant::now();
        let mut r =
            crate::storage::create_atomically(dest, |tmp| self.export_into(collection, tmp, &mut progress))?;
        r.file_bytes = std::fs::metadata(dest).at(dest)?.len();
        r.seconds = started.elapsed().as_secs_f64();
        Ok(r)
    }

    fn export_into(
        &self,
        collection: &str,
        tmp: &Path,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<ExportReport> {
        self.interrupted();
        self.with_reader(|cat| {
            let tx = cat.read()?;
            let c: CollectionRow = tx.collection(collection)?;
            // Open every segment of this snapshot now (a compaction retires, never
            // overwrites, files), and check it before copying anything out of it.
            let mut readers = std::collections::HashMap::new();
            for s in tx.segments(c.id)? {
                let r = self.segment(&c, &s)?;
                r.verify_all()?;
                readers.insert(s.id, r);
            }
            let total = tx.doc_count(c.id)?;
            let spec = &c.spec;
            let schema = Arc::new(Layout::export_schema(spec));
            let spec_json = serde_json::to_string(spec).map_err(|e| Error::Internal(e.to_string()))?;
            let mut props = WriterProperties::builder();
            // Vector components as byte planes (BYTE_STREAM_SPLIT): the exponent bytes of
            // similar floats, and the zero low bytes of values that came from f16, line up
            // for zstd. No min/max statistics for them (nobody filters on a component).
            let parquet_schema =
                parquet::arrow::ArrowSchemaConverter::new().convert(&schema).map_err(write_err(tmp))?;
            for col in parquet_schema.columns() {
                if col.physical_type() == parquet::basic::Type::FLOAT {
                    props = props
                        .set_column_encoding(col.path().clone(), parquet::basic::Encoding::BYTE_STREAM_SPLIT)
                        .set_column_statistics_enabled(col.path().clone(), EnabledStatistics::None);
                }
            }
            let props = props
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).map_err(write_err(tmp))?))
                .set_dictionary_enabled(false)
                .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
                .set_created_by(format!("maxsimdb {}", env!("CARGO_PKG_VERSION")))
                .set_key_value_metadata(Some({
                    let mut kv = vec![
                        KeyValue::new(SPEC_KEY.to_string(), spec_json),
                        KeyValue::new(FORMAT_KEY.to_string(), "1".to_string()),
                        KeyValue::new("maxsimdb.version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                    ];
                    if let Some(b) = spec.vectors.codes {
                        kv.push(KeyValue::new(
                            LOSSY_KEY.to_string(),
                            format!(
                                "token vectors decoded from {} codes (centroid + {b}-bit residual per \
                                 dimension): an approximation of the vectors that were inserted",
                                spec.vectors.token_storage()
                            ),
                        ));
                    }
                    kv
                }))
                .build();
            let file = File::create(tmp).at(tmp)?;
            let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(write_err(tmp))?;
            let dim = spec.vectors.token_dim;
            let pooled_dims: usize = spec.vectors.pooled.iter().map(|p| p.dim).sum();
            let (mut after, mut done, mut ntok) = (0u64, 0u64, 0u64);
            let mut content = ContentSum::default();
            progress(0, total);
            loop {
                let rows = tx.scan(&c, after, EXPORT_BATCH)?;
                let Some(last) = rows.last() else { break };
                after = last.0.row;
                let (mut ids, mut values, mut tokens, mut pooled) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for (loc, (id, vals)) in rows {
                    let reader = match loc.seg {
                        None => None,
                        Some(seg) => Some(
                            readers
                                .get(&seg)
                                .ok_or_else(|| Error::NotFound { kind: "segment", name: seg.to_string() })?
                                .as_ref(),
                        ),
                    };
                    let (t, p) = super::search::doc_vectors(&tx, &c, loc.row, reader)?;
                    debug_assert_eq!(p.len(), pooled_dims);
                    ntok += (t.len() / dim) as u64;
                    ids.push(id);
                    values.push(vals);
                    tokens.push(t);
                    pooled.push(p);
                }
                for ((id, t), p) in ids.iter().zip(&tokens).zip(&pooled) {
                    content.add(id, t, p);
                }
                let b = export_batch(&schema, spec, &ids, &values, &tokens, &pooled)?;
                w.write(&b).map_err(write_err(tmp))?;
                done += ids.len() as u64;
                progress(done, total);
                if done < total && self.interrupted() {
                    return Err(Error::Interrupted(format!(
                        "EXPORT of {collection} stopped after {done} of {total} documents; no file was \
                         written: run it again"
                    )));
                }
            }
            w.append_key_value_metadata(KeyValue::new(CONTENT_KEY.to_string(), content.hex()));
            let meta = w.finish().map_err(write_err(tmp))?;
            w.inner().sync_all().at(tmp)?;
            Ok(ExportReport {
                docs: done,
                tokens: ntok,
                row_groups: meta.num_row_groups(),
                file_bytes: 0,
                vector_bytes: (ntok * dim as u64 + done * pooled_dims as u64) * 4,
                seconds: 0.0,
            })
        })
    }

    /// Insert the documents of the Parquet file `path` into `collection` (layout in the
    /// module docs; files from other tools work when their columns are named `id`,
    /// `tokens`, the scalar columns and the pooled vectors). When `collection` does not
    /// exist and the file was written by [`Database::export_parquet`], the collection is
    /// created from the spec the file carries. Without a `tokens` column, a collection
    /// with an embedding model computes the vectors from the text columns.
    ///
    /// Every row is decoded and validated before the first insert: a bad file (wrong
    /// dimension, NaN, an id that exists or repeats, a value of the wrong type) is refused
    /// with the row number and nothing is inserted. `progress(phase, done, total)` counts
    /// documents: `phase` is `"checked"` during the validating pass, then `"imported"`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unreadable file or a bad row, [`Error::NotFound`]
    /// for an unknown collection when the file carries no spec, [`Error::AlreadyExists`]
    /// for an id that exists, [`Error::ReadOnly`].
    pub fn import_parquet(
        &self,
        collection: &str,
        path: impl AsRef<Path>,
        mut progress: impl FnMut(&'static str, u64, u64),
    ) -> Result<ImportReport> {
        let path = path.as_ref();
        let started = Instant::now();
        let open = || -> Result<ParquetRecordBatchReaderBuilder<File>> {
            ParquetRecordBatchReaderBuilder::try_new(File::open(path).at(path)?).map_err(read_err(path))
        };
        let builder = open()?;
        let total = builder.metadata().file_metadata().num_rows().max(0) as u64;
        let file_spec = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == SPEC_KEY).and_then(|k| k.value.clone()));
        drop(builder);
        let mut created = false;
        let spec = match self.describe(collection) {
            Ok(s) => s,
            Err(Error::NotFound { kind: "collection", .. }) if file_spec.is_some() => {
                let mut s: CollectionSpec = serde_json::from_str(file_spec.as_deref().unwrap_or_default())
                    .map_err(|e| {
                        Error::invalid(format!("{}: bad {SPEC_KEY} metadata: {e}", path.display()))
                    })?;
                s.name = collection.to_string();
                self.create_collection(&s)?;
                created = true;
                self.describe(collection)?
            }
            Err(Error::NotFound { kind: "collection", name }) => {
                return Err(Error::invalid(format!(
                    "collection '{name}' does not exist and {} does not say how to create it (no {SPEC_KEY} \
                     metadata): CREATE COLLECTION first",
                    path.display()
                )))
            }
            Err(e) => return Err(e),
        };
        let res = self.import_checked(&spec, path, &open, total, &mut progress);
        match res {
            Ok((docs, tokens, embedded, ignored)) => Ok(ImportReport {
                docs,
                tokens,
                embedded,
                created,
                ignored,
                seconds: started.elapsed().as_secs_f64(),
            }),
            Err(e) => {
                if created {
                    let _ = self.drop_collection(collection);
                }
                Err(e)
            }
        }
    }

    /// Pass 1 validates every row, pass 2 inserts; returns (docs, tokens, embedded from
    /// text, ignored columns).
    fn import_checked(
        &self,
        spec: &CollectionSpec,
        path: &Path,
        open: &dyn Fn() -> Result<ParquetRecordBatchReaderBuilder<File>>,
        total: u64,
        progress: &mut dyn FnMut(&'static str, u64, u64),
    ) -> Result<(u64, u64, bool, Vec<String>)> {
        let shown = path.display().to_string();
        let builder = open()?;
        let (layout, ignored) = Layout::match_file(builder.schema(), spec, &shown)?;
        let batches =
            |b: ParquetRecordBatchReaderBuilder<File>| b.with_batch_size(256).build().map_err(read_err(path));
        let embed_text = layout.tokens.is_none();
        // Pass 1: decode and validate everything; ids must be new and unique.
        let want_sum = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == CONTENT_KEY).and_then(|k| k.value.clone()));
        let mut content = ContentSum::default();
        let mut seen = HashSet::new();
        let mut row = 0u64;
        for b in batches(builder)? {
            let b = b.map_err(|e| Error::invalid(format!("{shown}: {e}")))?;
            let docs = layout.documents(&b, spec, row)?;
            let ids: Vec<DocId> = docs.iter().map(|d| d.id.clone()).collect();
            for (k, d) in docs.iter().enumerate() {
                let at = |e: Error| Error::invalid(format!("{shown}: row {}: {e}", row + k as u64));
                if !seen.insert(d.id.clone()) {
                    return Err(at(Error::AlreadyExists {
                        kind: "document (twice in the file)",
                        name: d.id.to_string(),
                    }));
                }
                if !embed_text {
                    crate::validate::document(spec, d).map_err(at)?;
                }
            }
            for d in &docs {
                let pooled: Vec<f32> = spec
                    .vectors
                    .pooled
                    .iter()
                    .flat_map(|p| {
                        d.pooled
                            .iter()
                            .find(|(n, _)| n.eq_ignore_ascii_case(&p.name))
                            .map_or(&[][..], |(_, v)| v)
                    })
                    .copied()
                    .collect();
                content.add(&d.id, &d.tokens, &pooled);
            }
            if let Some(id) = self.first_existing(&spec.name, &ids)? {
                return Err(Error::AlreadyExists { kind: "document", name: format!("{id} (in {shown})") });
            }
            row += b.num_rows() as u64;
            progress("checked", row, total);
        }
        // A file we wrote carries the checksum of its ids and vectors: a flipped byte that
        // Parquet's own decoding let through (it writes no page checksums) is caught here.
        if let Some(want) = want_sum {
            if content.hex() != want {
                return Err(Error::corruption(
                    path,
                    format!(
                        "the ids and vectors read back differ from what was exported ({CONTENT_KEY} \
                         {want}, read {}): the file is damaged; export it again",
                        content.hex()
                    ),
                ));
            }
        }
        // Pass 2: insert, a segment's worth of tokens per batch.
        let limit = self.inner.opts.flush_threshold_tokens.max(1);
        let (mut done, mut ntok) = (0u64, 0u64);
        let mut batch: Vec<Document> = Vec::new();
        let mut batch_tokens = 0usize;
        let mut flush = |batch: &mut Vec<Document>, done: &mut u64| -> Result<()> {
            if batch.is_empty() {
                return Ok(());
            }
            if embed_text {
                #[cfg(feature = "embed")]
                self.insert_text(&spec.name, batch)?;
                #[cfg(not(feature = "embed"))]
                return Err(Error::NotAvailable(
                    "importing text to embed needs the `embed` cargo feature".into(),
                ));
            } else {
                self.insert(&spec.name, batch)?;
            }
            *done += batch.len() as u64;
            batch.clear();
            progress("imported", *done, total);
            Ok(())
        };
        let mut row = 0u64;
        for b in batches(open()?)? {
            let b = b.map_err(|e| Error::invalid(format!("{shown}: {e}")))?;
            for d in layout.documents(&b, spec, row)? {
                let n = d.tokens.len() / spec.vectors.token_dim;
                ntok += n as u64;
                batch_tokens += n;
                batch.push(d);
                if batch_tokens >= limit || (embed_text && batch.len() >= 256) {
                    flush(&mut batch, &mut done)?;
                    batch_tokens = 0;
                }
            }
            row += b.num_rows() as u64;
        }
        flush(&mut batch, &mut done)?;
        Ok((done, ntok, embed_text, ignored))
    }

    /// The first of `ids` that exists in `collection`.
    fn first_existing(&self, collection: &str, ids: &[DocId]) -> Result<Option<DocId>> {
        self.with_reader(|cat| {
            let tx = cat.read()?;
            let c = tx.collection(collection)?;
            for id in ids {
                if tx.locate(c.id, id)?.is_some() {
                    return Ok(Some(id.clone()));
                }
            }
            Ok(None)
        })
    }
}
