//! Borrowed vectors in either storage type, and L2 normalisation: a leaf module that the
//! storage, index, scoring and validation layers all speak.

use std::ops::Range;

use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::types::Dtype;

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
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            VecRef::F32(v) => v.len(),
            VecRef::F16(v) => v.len(),
        }
    }

    /// True when there are no components.
    #[must_use]
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
    #[must_use]
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            VecRef::F32(v) => v.to_vec(),
            VecRef::F16(v) => v.to_f32_vec(),
        }
    }

    /// Append the components, converted to `dtype`, as little-endian bytes.
    pub fn encode_into(&self, dtype: Dtype, out: &mut Vec<u8>) {
        match (self, dtype) {
            (VecRef::F32(v), Dtype::F32) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            (VecRef::F16(v), Dtype::F16) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            (VecRef::F32(v), Dtype::F16) => {
                let mut h = vec![f16::ZERO; v.len()];
                h.convert_from_f32_slice(v);
                h.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
            }
            (VecRef::F16(v), Dtype::F32) => {
                v.iter().for_each(|x| out.extend_from_slice(&x.to_f32().to_le_bytes()));
            }
        }
    }
}

/// L2-normalise in place (a zero vector stays zero). Part of the on-disk format: MUVERA
/// encodings and PLAID centroids are stored normalised by this function.
pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

/// Token rows as a segment hands them out: borrowed from the map (vectors), or decoded
/// into memory (codes-only segments).
#[derive(Debug, Clone)]
pub enum Rows<'a> {
    /// Borrowed vectors.
    Ref(VecRef<'a>),
    /// Decoded vectors.
    Owned(Vec<f32>),
}

impl Rows<'_> {
    /// The rows as a borrowed vector.
    #[must_use]
    pub fn as_ref(&self) -> VecRef<'_> {
        match self {
            Rows::Ref(v) => *v,
            Rows::Owned(v) => VecRef::F32(v),
        }
    }

    /// Number of components.
    #[must_use]
    pub fn len(&self) -> usize {
        self.as_ref().len()
    }

    /// True when there are no components.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copy (or move) into an f32 vector.
    #[must_use]
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Rows::Ref(v) => v.to_f32(),
            Rows::Owned(v) => v.clone(),
        }
    }

    /// Into an f32 vector without copying decoded rows.
    #[must_use]
    pub fn into_f32(self) -> Vec<f32> {
        match self {
            Rows::Ref(v) => v.to_f32(),
            Rows::Owned(v) => v,
        }
    }
}
