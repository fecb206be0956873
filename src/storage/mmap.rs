//! The only place in the crate that maps files or reinterprets bytes as typed slices.
//!
//! # Safety
//!
//! Memory-mapping a file is sound only while nobody modifies or truncates it. maxsimdb's
//! rule is *write once, read many*: a segment file is written under a temporary name,
//! fsynced, renamed into place and never opened for writing again; it is deleted only after
//! it has left the manifest and a grace period has passed (deleting an mmapped file on
//! Unix keeps the mapping valid). Users must not modify files under a database directory
//! (README, "Durability contract"). Every mapping made here relies on that rule.
//!
//! Byte reinterpretation is limited to the sealed [`Pod`] types (`u8`, `u16`, `u64`, `f32`,
//! `half::f16`): every bit pattern is a valid value of each, they have no padding, and
//! [`cast`] checks alignment and length before viewing bytes as `&[T]`. On-disk integers
//! are little-endian; the crate refuses to build on big-endian targets.

#![expect(unsafe_code, reason = "the crate's one place for mmap and byte views; see # Safety")]

#[cfg(not(target_endian = "little"))]
compile_error!("maxsimdb's on-disk format is little-endian; big-endian targets are not supported");

use std::fs::File;
use std::path::Path;

use crate::error::IoContext;
use crate::{Error, Result};

mod sealed {
    pub trait Sealed {}
}

/// Plain-old-data types that may be viewed from raw bytes.
pub trait Pod: sealed::Sealed + Copy + 'static {}
macro_rules! pod {
    ($($t:ty),*) => {$(impl sealed::Sealed for $t {} impl Pod for $t {})*};
}
pod!(u8, u16, u32, u64, f32, half::f16);

/// A read-only memory map of a whole file.
#[derive(Debug)]
pub struct MappedFile {
    map: memmap2::Mmap,
}

impl MappedFile {
    /// Map `path` read-only.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be opened or mapped, [`Error::Corruption`] when it
    /// is empty.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).at(path)?;
        let len = file.metadata().at(path)?.len();
        if len == 0 {
            return Err(Error::corruption(path, "empty file"));
        }
        // SAFETY: the file is a published segment, which is never written or truncated
        // again (write-once rule in the module docs), so the mapped bytes cannot change
        // under the shared references we hand out.
        let map = unsafe { memmap2::Mmap::map(&file) }.at(path)?;
        Ok(Self { map })
    }

    /// The mapped bytes.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}

/// View `bytes` as `&[T]`; `None` when the length is not a multiple of `size_of::<T>()` or
/// the start is misaligned for `T`.
#[must_use]
pub fn cast<T: Pod>(bytes: &[u8]) -> Option<&[T]> {
    let size = std::mem::size_of::<T>();
    if !bytes.len().is_multiple_of(size)
        || !(bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>())
    {
        return None;
    }
    // SAFETY: alignment and length were checked above; `T: Pod` accepts every bit pattern
    // and has no padding; the returned slice borrows `bytes`, so the lifetime is tied to it.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) })
}

/// View a typed slice as its bytes.
#[must_use]
pub fn as_bytes<T: Pod>(v: &[T]) -> &[u8] {
    // SAFETY: `T: Pod` has no padding, so every byte of the slice is initialised; u8 has
    // alignment 1; the length is the exact byte size of the slice.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// View `half::f16` values as simsimd's f16 type.
#[must_use]
pub fn as_simsimd_f16(v: &[half::f16]) -> &[simsimd::f16] {
    // SAFETY: `half::f16` and `simsimd::f16` are both `#[repr(transparent)]` wrappers
    // around `u16`, so they have identical size, alignment and valid bit patterns.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<simsimd::f16>(), v.len()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cast_checks_alignment_and_length() {
        let v: Vec<u64> = vec![1, 2, 3];
        let b = as_bytes(&v);
        assert_eq!(cast::<u64>(b), Some(&[1u64, 2, 3][..]));
        assert!(cast::<u64>(&b[1..9]).is_none(), "misaligned view must be refused");
        assert!(cast::<u64>(&b[..7]).is_none(), "partial element must be refused");
    }
}
