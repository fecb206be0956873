//! Input validation: everything a write needs is checked here, before the catalog is
//! touched, so bad input leaves the database exactly as it was.

use half::f16;

use crate::types::{CollectionSpec, ColumnType, DocId, Document, Dtype, IdType, Value, MAX_TOKENS_PER_DOC};
use crate::vector::VecRef;
use crate::{Error, Result};

/// Largest finite f16 value.
const F16_MAX: f32 = 65504.0;

/// Reject NaN and infinite values.
pub(crate) fn finite(what: &str, v: &[f32]) -> Result<()> {
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::invalid(format!("{what} has a non-finite value ({}) at index {i}", v[i])));
    }
    Ok(())
}

fn fits(what: &str, v: &[f32], dtype: Dtype) -> Result<()> {
    finite(what, v)?;
    if dtype == Dtype::F16 {
        if let Some(i) = v.iter().position(|x| x.abs() > F16_MAX) {
            return Err(Error::invalid(format!(
                "{what} value {} at index {i} overflows f16 storage (|x| <= 65504); use a f32 collection",
                v[i]
            )));
        }
    }
    Ok(())
}

/// A document checked against its collection and encoded for storage.
#[derive(Debug, Clone)]
pub(crate) struct PreparedDoc {
    pub id: DocId,
    pub values: Vec<(String, Value)>,
    pub ntok: usize,
    /// Token vectors in the storage type, little-endian.
    pub tokens: Vec<u8>,
    /// Pooled vectors in spec order, concatenated, in the storage type.
    pub pooled: Vec<u8>,
}

/// Owned decoded vectors (pending blobs have no alignment guarantee, so they are copied).
#[derive(Debug, Default, Clone)]
pub(crate) enum Decoded {
    /// Nothing decoded yet.
    #[default]
    Empty,
    /// f32 data.
    F32(Vec<f32>),
    /// f16 data.
    F16(Vec<f16>),
}

impl Decoded {
    /// Decode into a new value.
    pub fn from_bytes(bytes: &[u8], dtype: Dtype) -> Self {
        match dtype {
            Dtype::F32 => Decoded::F32(
                bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            ),
            Dtype::F16 => {
                Decoded::F16(bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]])).collect())
            }
        }
    }

    /// Borrow as a [`VecRef`].
    pub fn as_ref(&self) -> VecRef<'_> {
        match self {
            Decoded::F32(v) => VecRef::F32(v),
            Decoded::F16(v) => VecRef::F16(v),
            Decoded::Empty => VecRef::F32(&[]),
        }
    }

    /// A sub-range of components.
    pub fn slice(&self, r: std::ops::Range<usize>) -> VecRef<'_> {
        match self {
            Decoded::F32(v) => VecRef::F32(&v[r]),
            Decoded::F16(v) => VecRef::F16(&v[r]),
            Decoded::Empty => VecRef::F32(&[]),
        }
    }
}

/// Check the id's type against the collection.
pub(crate) fn id(spec: &CollectionSpec, id: &DocId) -> Result<()> {
    match (spec.id_type, id) {
        (IdType::Text, DocId::Text(s)) if s.is_empty() => {
            Err(Error::invalid("document id must not be empty"))
        }
        (IdType::Text, DocId::Text(_)) | (IdType::Integer, DocId::Int(_)) => Ok(()),
        (want, _) => Err(Error::invalid(format!(
            "document id {} has the wrong type: collection '{}' has {} ids",
            match id {
                DocId::Text(s) => format!("'{}'", s.replace('\'', "''")),
                DocId::Int(i) => i.to_string(),
            },
            spec.name,
            format!("{want:?}").to_uppercase()
        ))),
    }
}

/// Resolve column names (case-insensitive) and check each value against its type.
pub(crate) fn values(spec: &CollectionSpec, values: &[(String, Value)]) -> Result<Vec<(String, Value)>> {
    let mut out: Vec<(String, Value)> = Vec::with_capacity(values.len());
    for (name, v) in values {
        let def = spec.column_def(name)?;
        if out.iter().any(|(n, _)| *n == def.name) {
            return Err(Error::invalid(format!("column '{}' is set twice", def.name)));
        }
        let v = match (def.ty, v) {
            (_, Value::Null) => Value::Null,
            (ColumnType::Text, Value::Text(_)) | (ColumnType::Integer, Value::Integer(_)) => v.clone(),
            (ColumnType::Real, Value::Real(r)) if r.is_finite() => v.clone(),
            (ColumnType::Real, Value::Integer(i)) => Value::Real(*i as f64),
            (ColumnType::Json, Value::Json(_)) => v.clone(),
            (ColumnType::Json, Value::Text(s)) => Value::Json(
                serde_json::from_str(s)
                    .map_err(|e| Error::invalid(format!("column '{}' expects JSON: {e}", def.name)))?,
            ),
            (ty, v) => {
                return Err(Error::invalid(format!(
                    "column '{}' is {}; cannot store {}",
                    def.name,
                    format!("{ty:?}").to_uppercase(),
                    v.sql_literal()
                )))
            }
        };
        out.push((def.name.clone(), v));
    }
    Ok(out)
}

/// Validate `doc` against `spec` and encode its vectors.
pub(crate) fn document(spec: &CollectionSpec, doc: &Document) -> Result<PreparedDoc> {
    id(spec, &doc.id)?;
    let v = &spec.vectors;
    let what = |s: &str| format!("{s} of document {}", doc.id);
    if doc.tokens.is_empty() {
        return Err(Error::invalid(format!(
            "document {} has no token vectors; every document needs at least one",
            doc.id
        )));
    }
    if !doc.tokens.len().is_multiple_of(v.token_dim) {
        return Err(Error::DimensionMismatch {
            what: what("token vectors"),
            expected: v.token_dim,
            got: doc.tokens.len() % v.token_dim,
        });
    }
    let ntok = doc.tokens.len() / v.token_dim;
    if ntok > MAX_TOKENS_PER_DOC {
        return Err(Error::invalid(format!(
            "{} has {ntok} tokens; the limit is {MAX_TOKENS_PER_DOC}",
            what("token matrix")
        )));
    }
    fits(&what("token vectors"), &doc.tokens, v.dtype)?;
    let mut tokens = Vec::with_capacity(doc.tokens.len() * v.dtype.size());
    VecRef::F32(&doc.tokens).encode_into(v.dtype, &mut tokens);
    let mut pooled = Vec::new();
    for (name, _) in &doc.pooled {
        v.pooled_index(name)?;
    }
    for p in &v.pooled {
        let mut given = doc.pooled.iter().filter(|(n, _)| n.eq_ignore_ascii_case(&p.name));
        let (Some((_, vec)), None) = (given.next(), given.next()) else {
            return Err(Error::invalid(format!(
                "document {} must supply pooled vector '{}' exactly once",
                doc.id, p.name
            )));
        };
        if vec.len() != p.dim {
            return Err(Error::DimensionMismatch {
                what: what(&format!("pooled vector '{}'", p.name)),
                expected: p.dim,
                got: vec.len(),
            });
        }
        fits(&what(&format!("pooled vector '{}'", p.name)), vec, v.dtype)?;
        VecRef::F32(vec).encode_into(v.dtype, &mut pooled);
    }
    Ok(PreparedDoc { id: doc.id.clone(), values: values(spec, &doc.values)?, ntok, tokens, pooled })
}
