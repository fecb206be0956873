//! Candidate generation for MaxSim at scale: building blocks whose results are always
//! re-scored exactly (ALGORITHMS.md §2).
//!
//! Each index turns vectors into bytes ([`SectionSink`]: numbered sections of a side file)
//! and bytes back into views ([`Sections`]). Where the bytes live — a side file per
//! segment (format v3) or sections embedded in a format v2 segment — is the database
//! layer's business; this module never touches files.

pub mod hnsw;
pub mod hopfield;
pub mod muvera;
pub mod plaid;

use half::f16;

/// Read access to the numbered sections of one index part (one segment's side file, or
/// the embedded sections of a v2 segment). `verify` asks for the section's checksum to be
/// checked (the implementation caches the verdict). Errors are descriptions; the caller
/// names the file.
pub trait Sections {
    /// Section `tag` as bytes; `Ok(None)` when absent.
    ///
    /// # Errors
    /// A checksum mismatch or a length that is not a whole number of elements.
    fn u8s(&self, tag: u32, verify: bool) -> Result<Option<&[u8]>, String>;
    /// Section `tag` as little-endian u16.
    ///
    /// # Errors
    /// As [`Sections::u8s`].
    fn u16s(&self, tag: u32, verify: bool) -> Result<Option<&[u16]>, String>;
    /// Section `tag` as little-endian u32.
    ///
    /// # Errors
    /// As [`Sections::u8s`].
    fn u32s(&self, tag: u32, verify: bool) -> Result<Option<&[u32]>, String>;
    /// Section `tag` as little-endian u64.
    ///
    /// # Errors
    /// As [`Sections::u8s`].
    fn u64s(&self, tag: u32, verify: bool) -> Result<Option<&[u64]>, String>;
    /// Section `tag` as f16.
    ///
    /// # Errors
    /// As [`Sections::u8s`].
    fn f16s(&self, tag: u32, verify: bool) -> Result<Option<&[f16]>, String>;
}

/// Where an index writes its sections, one after another.
pub trait SectionSink {
    /// Start section `tag` (ends the previous one).
    ///
    /// # Errors
    /// I/O errors of the file behind the sink.
    fn begin(&mut self, tag: u32) -> crate::Result<()>;
    /// Append bytes to the current section.
    ///
    /// # Errors
    /// I/O errors of the file behind the sink.
    fn put(&mut self, bytes: &[u8]) -> crate::Result<()>;
}

/// Write `v` as little-endian elements into the current section, in bounded chunks.
pub(crate) fn put_le<T: Copy, const N: usize>(
    sink: &mut dyn SectionSink,
    v: &[T],
    le: impl Fn(T) -> [u8; N],
) -> crate::Result<()> {
    let mut buf = Vec::with_capacity(N * 16_384);
    for chunk in v.chunks(16_384) {
        buf.clear();
        chunk.iter().for_each(|&x| buf.extend_from_slice(&le(x)));
        sink.put(&buf)?;
    }
    Ok(())
}

/// `Err` when section `tag` is absent.
pub(crate) fn required<T>(tag: u32, v: Option<T>) -> Result<T, String> {
    v.ok_or_else(|| format!("section {tag} is missing"))
}
