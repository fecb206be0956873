//! Format v3: every index is a side file per segment. Building an index never touches a
//! segment, an interrupted build resumes, dropping an index deletes its files, and the
//! space of replaced files and flushed pending rows comes back without a reopen.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use maxsimdb::index::plaid::SearchParams;
use maxsimdb::testing::fault::{self, Fault};
use maxsimdb::testing::Rng;
use maxsimdb::{
    Database, Dtype, HnswParams, IndexProgress, IndexSpec, MuveraOptions, PlaidOptions, Plan, SearchRequest,
    MAX_LIMIT,
};

use crate::common::{doc, spec, DIM};

/// Every file under `segments/` with (inode, length, xxh3 of its bytes).
fn files(root: &Path) -> BTreeMap<PathBuf, (u64, u64, u128)> {
    let mut out = BTreeMap::new();
    for d in std::fs::read_dir(root.join("segments")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            let m = std::fs::metadata(&p).unwrap();
            let sum = xxhash_rust::xxh3::xxh3_128(&std::fs::read(&p).unwrap());
            out.insert(p.strip_prefix(root).unwrap().to_path_buf(), (m.ino(), m.len(), sum));
        }
    }
    out
}

fn segs(f: &BTreeMap<PathBuf, (u64, u64, u128)>) -> BTreeMap<PathBuf, (u64, u64, u128)> {
    f.iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "seg"))
        .map(|(p, v)| (p.clone(), *v))
        .collect()
}

fn with_ext(f: &BTreeMap<PathBuf, (u64, u64, u128)>, ext: &str) -> usize {
    f.keys().filter(|p| p.extension().is_some_and(|e| e == ext)).count()
}

/// Three flushed segments of 40 documents each.
fn three_segments(root: &Path) -> Database {
    let db = Database::builder(root).retire_grace(Duration::ZERO).open().unwrap();
    db.create_collection(&spec("c", Dtype::F16)).unwrap();
    let mut rng = Rng::new(5);
    for s in 0..3 {
        let docs: Vec<_> = (0..40).map(|i| doc(&mut rng, &format!("s{s}d{i}"), 2 + i % 5, 2000)).collect();
        db.insert("c", &docs).unwrap();
        db.flush("c").unwrap();
    }
    db
}

fn exhaustive(q: &[f32]) -> SearchRequest {
    SearchRequest::maxsim(q.to_vec())
        .limit(MAX_LIMIT)
        .plan(Plan::Plaid)
        .plaid_params(SearchParams::exhaustive())
}

#[test]
fn create_and_drop_index_never_touch_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("v3.msdb");
    let db = three_segments(&root);
    let before = files(&root);
    assert_eq!(segs(&before).len(), 3);

    let mut seen: Vec<IndexProgress> = Vec::new();
    let plaid = IndexSpec::Plaid(PlaidOptions { centroids: Some(16), ..PlaidOptions::default() });
    let info = db.create_index("c", &plaid, &mut |p| seen.push(p)).unwrap();
    assert!(info.ready && info.segments_indexed == 3 && info.bytes > 0, "{info:?}");
    assert_eq!(seen.len(), 4, "one report before the first segment and one after each: {seen:?}");
    assert!(seen
        .windows(2)
        .all(|w| w[0].segments_done < w[1].segments_done && w[0].tokens_done < w[1].tokens_done));
    assert_eq!((seen[3].segments_done, seen[3].tokens_done), (3, seen[3].tokens));
    db.create_hnsw_index("c", "mean", HnswParams::default()).unwrap();
    db.create_muvera_index("c", MuveraOptions { repetitions: 2, ..MuveraOptions::default() }).unwrap();

    let after = files(&root);
    assert_eq!(segs(&after), segs(&before), "segment files byte-identical, same inodes");
    assert_eq!((with_ext(&after, "plaid"), with_ext(&after, "hnsw"), with_ext(&after, "muvera")), (4, 3, 4));

    // Exhaustive PLAID over the side files is exact; a new flush writes every side file.
    let q = Rng::new(9).unit_vectors(4, DIM);
    let exact = db.search("c", &SearchRequest::maxsim(q.clone()).limit(MAX_LIMIT).plan(Plan::Exact)).unwrap();
    assert_eq!(db.search("c", &exhaustive(&q)).unwrap(), exact);
    db.insert("c", &[doc(&mut Rng::new(77), "new", 3, 2001)]).unwrap();
    db.flush("c").unwrap();
    let st = db.stats("c").unwrap();
    let kinds: Vec<&str> = st.index_bytes.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["plaid", "hnsw:mean", "muvera"]);
    assert!(st.index_bytes.iter().all(|(_, b)| *b > 0) && st.catalog_bytes > 0, "{st:?}");
    for i in db.indexes("c").unwrap() {
        assert_eq!((i.segments_indexed, i.segments), (4, 4), "{i:?}");
    }

    // DROP INDEX deletes its side files and state file (grace 0) and nothing else.
    let with_all = files(&root);
    assert!(db.drop_index("c", "plaid").unwrap());
    let dropped = files(&root);
    assert_eq!(with_ext(&dropped, "plaid"), 0);
    assert_eq!(segs(&dropped), segs(&with_all));
    assert_eq!(dropped.len(), with_all.len() - 5, "4 side files and the codec file are gone");
    assert!(!db.stats("c").unwrap().index_bytes.iter().any(|(k, _)| k == "plaid"));
}

#[test]
fn an_interrupted_index_build_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("resume.msdb");
    let db = three_segments(&root);
    let plaid = IndexSpec::Plaid(PlaidOptions { centroids: Some(16), ..PlaidOptions::default() });
    // Trace a build on a twin database to find the fault points, then fail the rename of
    // the second segment's side file (the first one is committed by then).
    let twin_root = dir.path().join("twin.msdb");
    let twin = three_segments(&twin_root);
    fault::arm(None, Fault::Io);
    twin.create_index("c", &plaid, &mut |_| {}).unwrap();
    let trace = fault::disarm();
    let renames: Vec<usize> =
        trace.iter().enumerate().filter(|(_, p)| **p == "segment.rename").map(|(i, _)| i).collect();
    assert_eq!(renames.len(), 4, "codec file + 3 side files: {trace:?}");
    fault::arm(Some(renames[2]), Fault::Io);
    let err = db.create_index("c", &plaid, &mut |_| {}).unwrap_err();
    fault::disarm();
    assert!(err.to_string().contains("injected"), "{err}");

    let info = db.indexes("c").unwrap().remove(0);
    assert!(!info.ready && info.segments_indexed == 1, "{info:?}");
    let first_side = files(&root)
        .into_iter()
        .find(|(p, _)| p.extension().is_some_and(|e| e == "plaid") && p.to_string_lossy().contains('-'))
        .unwrap();
    // Searches use what exists and score the rest exactly; EXPLAIN says how many.
    let q = Rng::new(3).unit_vectors(3, DIM);
    let exact = db.search("c", &SearchRequest::maxsim(q.clone()).limit(MAX_LIMIT).plan(Plan::Exact)).unwrap();
    let out = db.search_explained("c", &exhaustive(&q)).unwrap();
    assert_eq!(out.hits, exact);
    assert_eq!(
        out.stages.iter().find(|s| s.name == "unindexed").map(|s| s.docs),
        Some(80),
        "{:?}",
        out.stages
    );
    assert!(
        !dir.path()
            .join("resume.msdb/segments/1")
            .read_dir()
            .unwrap()
            .any(|e| { e.unwrap().path().to_string_lossy().ends_with(".tmp") }),
        "no temporary file left behind"
    );

    // Reopen (as after a kill) and run it again: only the two missing side files are built.
    drop(db);
    let db = Database::builder(&root).retire_grace(Duration::ZERO).open().unwrap();
    let mut seen = Vec::new();
    let info = db.create_index("c", &plaid, &mut |p| seen.push(p.segments_done)).unwrap();
    assert!(info.ready && info.segments_indexed == 3, "{info:?}");
    assert_eq!(seen, [0, 1, 2, 3]);
    let now = files(&root);
    assert_eq!(now.get(&first_side.0), Some(&first_side.1), "the committed side file was kept, not rebuilt");
    let out = db.search_explained("c", &exhaustive(&q)).unwrap();
    assert_eq!(out.hits, exact);
    assert!(!out.stages.iter().any(|s| s.name == "unindexed"), "{:?}", out.stages);
    assert!(matches!(db.create_index("c", &plaid, &mut |_| {}), Err(maxsimdb::Error::AlreadyExists { .. })));
}

#[test]
fn replaced_files_and_catalog_pages_come_back_without_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("space.msdb");
    let db = Database::builder(&root).retire_grace(Duration::from_secs(1)).open().unwrap();
    db.create_collection(&spec("c", Dtype::F32)).unwrap();
    let mut rng = Rng::new(8);
    for s in 0..3 {
        let docs: Vec<_> = (0..200).map(|i| doc(&mut rng, &format!("s{s}d{i}"), 40, 2000)).collect();
        db.insert("c", &docs).unwrap();
        let pending = std::fs::metadata(root.join("catalog.sqlite")).unwrap().len();
        db.flush("c").unwrap();
        let st = db.stats("c").unwrap();
        // 200 × 40 × 16 f32 = 512 KB of pending vectors went into the segment; the
        // catalog gives those pages back (it would otherwise stay at its peak).
        assert!(
            st.catalog_bytes < 256 * 1024,
            "catalog {} bytes after flush {s} (file was {pending})",
            st.catalog_bytes
        );
    }
    db.create_plaid_index("c", PlaidOptions { centroids: Some(16), ..PlaidOptions::default() }).unwrap();
    let before = files(&root);
    assert!(db.compact("c").unwrap());
    let replaced: Vec<&PathBuf> = before.keys().filter(|p| !p.to_string_lossy().contains("ix")).collect();
    assert_eq!(replaced.len(), 6, "3 segments + 3 side files: {before:?}");
    // No further call: the writer's reaper deletes them once the grace period (1 s) passed.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while replaced.iter().any(|p| root.join(p).exists()) {
        assert!(std::time::Instant::now() < deadline, "replaced files still on disk");
        std::thread::sleep(Duration::from_millis(100));
    }
    let now = files(&root);
    assert_eq!(
        (with_ext(&now, "seg"), with_ext(&now, "plaid")),
        (1, 2),
        "the new segment, its side file, the codec"
    );
}

/// `Database::interrupt` during CREATE INDEX stops the build after the segment it is on:
/// the side files written stay, the index says it is not ready, and the same call again
/// finishes it (exhaustive PLAID then equals exact search).
#[test]
fn an_interrupted_index_build_keeps_its_side_files_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("i.msdb");
    let db = three_segments(&root);
    let plaid = IndexSpec::Plaid(PlaidOptions { centroids: Some(16), ..PlaidOptions::default() });
    let err = db
        .create_index("c", &plaid, &mut |p| {
            if p.segments_done == 1 {
                db.interrupt();
            }
        })
        .unwrap_err();
    assert_eq!(err.code(), maxsimdb::ErrorCode::Interrupted, "{err}");
    assert!(err.to_string().contains("after 1 of 3 segments"), "{err}");
    let info = &db.indexes("c").unwrap()[0];
    assert_eq!((info.ready, info.segments_indexed, info.segments), (false, 1, 3), "{info:?}");
    assert_eq!(with_ext(&files(&root), "plaid"), 2, "one side file and the codec");
    // An interrupt with nothing running does not stop the next build.
    db.interrupt();
    let info = db.create_index("c", &plaid, &mut |_| {}).unwrap();
    assert!(info.ready && info.segments_indexed == 3, "{info:?}");
    let q = Rng::new(9).unit_vectors(4, DIM);
    let exact = db.search("c", &SearchRequest::maxsim(q.clone()).limit(MAX_LIMIT).plan(Plan::Exact)).unwrap();
    assert_eq!(db.search("c", &exhaustive(&q)).unwrap(), exact);
}
