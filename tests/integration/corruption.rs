//! Every byte flip in a section, and every truncation, of a segment file is reported as a
//! corruption error naming the file: never a panic, never silently wrong results.

use std::path::{Path, PathBuf};

use maxsimdb::storage::format::{decode_footer, HEADER_LEN, TRAILER_LEN};
use maxsimdb::testing::Rng;
use maxsimdb::{Database, Dtype, Error, SearchRequest};

use crate::common::{doc, spec, DIM};

fn build(root: &Path) -> PathBuf {
    let db = Database::open(root).unwrap();
    db.create_collection(&spec("c", Dtype::F16)).unwrap();
    let mut rng = Rng::new(30);
    let docs: Vec<_> = (0..40).map(|i| doc(&mut rng, &format!("d{i}"), 3 + i % 9, 2000)).collect();
    db.insert("c", &docs).unwrap();
    db.flush("c").unwrap();
    db.close().unwrap();
    let dir = root.join("segments/1");
    let f = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    assert!(f.extension().is_some_and(|e| e == "seg"));
    f
}

/// Open and run both kinds of search; the first error wins.
fn probe(root: &Path) -> maxsimdb::Result<()> {
    let db = Database::open(root)?;
    let mut rng = Rng::new(31);
    db.search("c", &SearchRequest::maxsim(rng.unit_vectors(3, DIM)))?;
    db.search("c", &SearchRequest::dense("mean", rng.unit_vectors(1, DIM)))?;
    Ok(())
}

fn expect_corruption(root: &Path, seg: &Path, what: &str) {
    let err = probe(root).expect_err(what);
    match &err {
        Error::Corruption { path, .. } => assert_eq!(path, seg, "{what}: error names the file"),
        other => panic!("{what}: expected a corruption error, got {other}"),
    }
    let db = Database::open(root).unwrap();
    let report = db.check().unwrap();
    assert_eq!(report.problems.len(), 1, "{what}: CHECK reports it: {:?}", report.problems);
    assert!(report.problems[0].contains(&seg.display().to_string()));
}

#[test]
fn byte_flips_in_every_section_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("db");
    let seg = build(&root);
    let original = std::fs::read(&seg).unwrap();
    probe(&root).expect("undamaged database works");
    let entries = decode_footer(&seg, &original).unwrap();
    let len = original.len();
    let table_start = len - TRAILER_LEN - entries.len() * 40;
    let mut spots: Vec<(String, usize)> = vec![
        ("header magic".into(), 0),
        ("header field".into(), 25),
        ("section table".into(), table_start + 10),
        ("trailer".into(), len - 20),
        ("end magic".into(), len - 3),
    ];
    for e in &entries {
        let (a, b) = (e.offset as usize, (e.offset + e.len) as usize);
        for (tag, at) in [("first", a), ("middle", (a + b) / 2), ("last", b - 1)] {
            spots.push((format!("{:?}[{}] {tag} byte", e.kind, e.index), at));
        }
    }
    for (what, at) in spots {
        let mut bytes = original.clone();
        bytes[at] ^= 0x5A;
        std::fs::write(&seg, &bytes).unwrap();
        expect_corruption(&root, &seg, &what);
    }
    std::fs::write(&seg, &original).unwrap();
    probe(&root).expect("restored database works again");
}

#[test]
fn truncation_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("db");
    let seg = build(&root);
    let original = std::fs::read(&seg).unwrap();
    for keep in [0, 10, HEADER_LEN, HEADER_LEN + TRAILER_LEN, original.len() / 2, original.len() - 1] {
        std::fs::write(&seg, &original[..keep]).unwrap();
        expect_corruption(&root, &seg, &format!("truncated to {keep} bytes"));
    }
    // Appended garbage moves the trailer: also detected.
    let mut longer = original.clone();
    longer.extend_from_slice(&[0u8; 64]);
    std::fs::write(&seg, &longer).unwrap();
    expect_corruption(&root, &seg, "appended bytes");
}

#[test]
fn missing_segment_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("db");
    let seg = build(&root);
    std::fs::remove_file(&seg).unwrap();
    let err = probe(&root).unwrap_err();
    assert!(matches!(&err, Error::Io { path, .. } if path == &seg), "{err}");
}

/// A search verifies only the 64 KiB token blocks it reads: damage in one block fails the
/// searches that score a document there (naming the block) and no other; CHECK finds it.
#[test]
fn token_damage_is_found_block_by_block() {
    use maxsimdb::storage::format::SectionKind;
    use maxsimdb::{Filter, Plan};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("db");
    {
        let db = Database::open(&root).unwrap();
        db.create_collection(&spec("c", Dtype::F16)).unwrap();
        let mut rng = Rng::new(32);
        let docs: Vec<_> = (0..2000).map(|i| doc(&mut rng, &format!("d{i}"), 8, 2000)).collect();
        db.insert("c", &docs).unwrap();
        db.flush("c").unwrap();
    }
    let seg = std::fs::read_dir(root.join("segments/1")).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&seg).unwrap();
    let tokens = decode_footer(&seg, &bytes)
        .unwrap()
        .into_iter()
        .find(|e| e.kind == SectionKind::Tokens as u32)
        .unwrap();
    // Every document has 8 tokens of 16 f16 values: document 1990 starts here.
    let at = tokens.offset as usize + 1990 * 8 * DIM * 2 + 5;
    bytes[at] ^= 0x5A;
    std::fs::write(&seg, &bytes).unwrap();
    let db = Database::open(&root).unwrap();
    let q = Rng::new(1).unit_vectors(2, DIM);
    let only = |id: &str| SearchRequest::maxsim(q.clone()).filter(Filter::eq("id", id)).plan(Plan::Exact);
    assert_eq!(db.search("c", &only("d0")).unwrap().len(), 1, "an intact block is served");
    let err = db.search("c", &only("d1990")).unwrap_err();
    assert!(matches!(err, Error::Corruption { .. }) && err.to_string().contains("block"), "{err}");
    assert!(db.search("c", &SearchRequest::maxsim(q.clone())).is_err(), "a full scan reads the block");
    assert!(!db.check().unwrap().problems.is_empty());
}

/// Every artefact (catalog, each segment section, each full-text file), flipped and
/// truncated: no panic ever; segment and full-text damage always detected (or harmless:
/// the same answers); full-text damage repaired by a writable open. The `corrupt` bench
/// suite runs the same sweep with many more flips.
#[test]
fn every_artefact_damaged_is_detected_or_harmless_never_a_panic() {
    use maxsimdb::testing::corrupt::{build_base, sweep};
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.msdb");
    build_base(&base).unwrap();
    let res = sweep(&base, dir.path(), 1, 11);
    for (kind, o) in &res {
        assert_eq!(o.panics, 0, "{kind}: {o:?}");
        if ["segment", "fulltext", "side", "state"].iter().any(|p| kind.starts_with(p)) {
            assert_eq!(o.silent, 0, "{kind}: undetected damage changed answers: {o:?}");
        }
        if kind.starts_with("fulltext") {
            assert_eq!(o.repaired, o.detected, "{kind}: rebuilt from the catalog: {o:?}");
        }
    }
    for kind in [
        "segment TOKENS",
        "side hnsw section 9",
        "side plaid section 6",
        "side plaid header",
        "side muvera table+trailer",
        "state plaid section 1",
        "state muvera header",
        "state tokens section 1",
        "segment TOKEN_CODES",
        "segment CODEC_REF",
        "fulltext",
        "catalog",
    ] {
        assert!(res.get(kind).is_some_and(|o| o.trials > 0), "{kind} not covered: {res:?}");
    }
    // Every flip of a segment or of an index file (side files, state files) is caught.
    for prefix in ["segment ", "side ", "state "] {
        let (detected, trials) = res
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .fold((0, 0), |(d, t), (_, o)| (d + o.detected, t + o.trials));
        assert_eq!(detected, trials, "every {prefix}flip is caught by a checksum: {res:?}");
    }
}
