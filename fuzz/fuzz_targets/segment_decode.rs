//! The segment decoder on arbitrary bytes (seeded with real segment files): open,
//! verify every checksum, read every document's vectors. Errors are fine; panics,
//! out-of-bounds reads and hangs are not.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use maxsimdb::storage::segment::SegmentReader;
use maxsimdb::VectorSpec;

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap())
}

fuzz_target!(|data: &[u8]| {
    let path = dir().path().join("s.seg");
    std::fs::write(&path, data).unwrap();
    // The seeds are written with this spec (scripts/fuzz.sh): dim 4, pooled "mean" of 4.
    for spec in [VectorSpec::new(4).pooled("mean", 4), VectorSpec::new(4)] {
        if let Ok(r) = SegmentReader::open(&path, 1, &spec) {
            let _ = r.verify_all();
            for i in 0..r.doc_count().min(64) {
                let _ = r.doc_tokens(i).to_f32();
                if !spec.pooled.is_empty() {
                    let _ = r.pooled(0, i).to_f32();
                }
            }
        }
    }
});
