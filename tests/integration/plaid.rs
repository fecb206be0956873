//! The token-level candidate generators inside collections — the PLAID index and the
//! MUVERA index: persisted in segments, kept up to date by flushes and compaction, chosen
//! by the planner, exact where it matters.

use maxsimdb::index::plaid::SearchParams;
use maxsimdb::testing::Rng;
use maxsimdb::{
    CollectionSpec, ColumnType, Database, Document, Dtype, Error, Filter, MuveraOptions, PlaidOptions, Plan,
    SearchRequest, VectorSpec,
};

const D: usize = 32;
const TOPICS: usize = 160;

/// Documents of 8–39 tokens, each token near one of the document's three random topics.
fn corpus(rng: &mut Rng, topics: &[f32], from: usize, n: usize) -> Vec<Document> {
    (from..from + n)
        .map(|i| {
            let len = 8 + rng.below(32) as usize;
            let mine = [0; 3].map(|_| rng.below(TOPICS as u64) as usize);
            let mut tokens = Vec::with_capacity(len * D);
            for _ in 0..len {
                let t = mine[rng.below(3) as usize];
                let mut v: Vec<f32> = topics[t * D..(t + 1) * D]
                    .iter()
                    .map(|x| x + 0.35 * rng.normal() / (D as f32).sqrt())
                    .collect();
                maxsimdb::testing::normalize(&mut v);
                tokens.extend(v);
            }
            Document::new(format!("d{i}")).tokens(tokens).set("bucket", (i % 10) as i64)
        })
        .collect()
}

fn setup(n: usize) -> (tempfile::TempDir, Database, Vec<Document>, Rng, Vec<f32>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("p.msdb")).unwrap();
    db.create_collection(
        &CollectionSpec::new("c", VectorSpec::new(D).dtype(Dtype::F16)).column("bucket", ColumnType::Integer),
    )
    .unwrap();
    let mut rng = Rng::new(3);
    let topics = rng.unit_vectors(TOPICS, D);
    let docs = corpus(&mut rng, &topics, 0, n);
    for chunk in docs.chunks(700) {
        db.insert("c", chunk).unwrap();
        db.flush("c").unwrap();
    }
    (dir, db, docs, rng, topics)
}

fn opts() -> PlaidOptions {
    PlaidOptions { centroids: Some(256), ..PlaidOptions::default() }
}

/// A query: 6 tokens taken from a document, perturbed.
fn query(rng: &mut Rng, docs: &[Document]) -> Vec<f32> {
    let d = &docs[rng.below(docs.len() as u64) as usize];
    let mut q: Vec<f32> =
        d.tokens.iter().take(6 * D).map(|x| x + 0.1 * rng.normal() / (D as f32).sqrt()).collect();
    q.chunks_exact_mut(D).for_each(maxsimdb::testing::normalize);
    q
}

fn ids(hits: &[maxsimdb::Hit]) -> Vec<String> {
    hits.iter().map(|h| h.id.to_string()).collect()
}

#[test]
fn plaid_index_is_persisted_planned_and_exact_where_it_matters() {
    let (dir, db, docs, mut rng, topics) = setup(3000);
    let info = db.create_plaid_index("c", opts()).unwrap();
    assert_eq!((info.kind.as_str(), info.centroids), ("plaid", 256));
    assert_eq!(info.segments_indexed, info.segments, "every segment has a PLAID side file");
    assert!(info.bytes > 0);
    assert!(matches!(db.create_plaid_index("c", opts()), Err(Error::AlreadyExists { .. })));

    let mut recall = 0usize;
    for _ in 0..20 {
        let q = query(&mut rng, &docs);
        let exact = db.search_explained("c", &SearchRequest::maxsim(q.clone()).plan(Plan::Exact)).unwrap();
        assert_eq!(exact.plan, Plan::Exact);
        // Exhaustive knobs: every document is a candidate, so the answer is the exact one.
        let all = db
            .search(
                "c",
                &SearchRequest::maxsim(q.clone()).plan(Plan::Plaid).plaid_params(SearchParams::exhaustive()),
            )
            .unwrap();
        assert_eq!(all, exact.hits);
        // Default knobs, chosen by the planner (3,000 indexed documents > AUTO_EXACT_MAX_DOCS).
        let auto = db.search_explained("c", &SearchRequest::maxsim(q.clone())).unwrap();
        assert_eq!(auto.plan, Plan::Plaid);
        let names: Vec<&str> = auto.stages.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            ["filter", "plaid_centroids", "plaid_probe", "plaid_pruned", "plaid_full", "exact"]
        );
        let mut n: Vec<u64> = auto.stages.iter().map(|s| s.docs).collect();
        assert_eq!(n.remove(1), 256, "centroids scored");
        assert_eq!(n[0], 3000);
        assert!(n[1] <= 3000 && n[2] <= n[1] && n[3] <= n[2] && n[4] == n[3], "{n:?}");
        assert!(n[4] < 3000, "PLAID scored fewer documents than exact: {n:?}");
        // What it returns carries exact scores.
        let every = db.search("c", &SearchRequest::maxsim(q).plan(Plan::Exact).limit(3000)).unwrap();
        for h in &auto.hits {
            let e = every.iter().find(|e| e.id == h.id).unwrap();
            assert_eq!(e.score, h.score);
        }
        let want = ids(&exact.hits);
        recall += ids(&auto.hits).iter().filter(|id| want.contains(id)).count();
    }
    eprintln!("recall@10 vs exact {recall}/200");
    assert!(recall * 100 >= 20 * 10 * 90, "recall@10 vs exact {recall}/200");

    // One candidate cut across the segments: five segments rerank as many documents as one
    // would (`ndocs` after the probe, `ndocs / 4` after the full interaction), not five times.
    assert!(info.segments >= 5, "{} segments", info.segments);
    let p = SearchParams { ncells: 2, centroid_threshold: 0.0, ndocs: 200 };
    let q = query(&mut rng, &docs);
    let cut = db.search_explained("c", &SearchRequest::maxsim(q).plan(Plan::Plaid).plaid_params(p)).unwrap();
    let n = |name: &str| cut.stages.iter().find(|s| s.name == name).unwrap().docs;
    assert!(n("plaid_probe") > 200, "the probe visits more than it keeps: {:?}", cut.stages);
    assert_eq!((n("plaid_pruned"), n("plaid_full"), n("exact")), (200, 50, 50), "{:?}", cut.stages);

    // Deletes and filters apply to PLAID candidates; a selective filter is planned exact.
    let q = query(&mut rng, &docs);
    let top = db.search("c", &SearchRequest::maxsim(q.clone())).unwrap();
    db.delete("c", &[top[0].id.clone()]).unwrap();
    let after = db.search_explained("c", &SearchRequest::maxsim(q.clone())).unwrap();
    assert!(!ids(&after.hits).contains(&top[0].id.to_string()));
    let f = Filter::eq("bucket", 3i64);
    let filtered = db.search_explained("c", &SearchRequest::maxsim(q.clone()).filter(f.clone())).unwrap();
    assert_eq!(filtered.plan, Plan::Exact, "300 allowed documents: exact is cheaper");
    let forced =
        db.search_explained("c", &SearchRequest::maxsim(q.clone()).filter(f).plan(Plan::Plaid)).unwrap();
    assert_eq!(forced.plan, Plan::Plaid);
    for h in &forced.hits {
        let i: usize = h.id.to_string()[1..].parse().unwrap();
        assert_eq!(i % 10, 3, "filter holds under PLAID");
    }

    // New documents: pending ones are scored exactly, flushed ones get codes.
    let extra = corpus(&mut rng, &topics, 3000, 50);
    db.insert("c", &extra).unwrap();
    let own = extra[7].tokens[..6 * D].to_vec();
    let hit = db.search("c", &SearchRequest::maxsim(own.clone()).plan(Plan::Plaid)).unwrap();
    assert_eq!(hit[0].id.to_string(), "d3007", "a pending document is found");
    db.flush("c").unwrap();
    let info = db.indexes("c").unwrap().remove(0);
    assert_eq!(info.segments_indexed, info.segments, "flush encodes with the index");
    let hit = db.search("c", &SearchRequest::maxsim(own.clone()).plan(Plan::Plaid)).unwrap();
    assert_eq!(hit[0].id.to_string(), "d3007", "and so is the flushed one");

    // Reopen: the index and its sections persist.
    let q = query(&mut rng, &docs);
    let before = db.search("c", &SearchRequest::maxsim(q.clone())).unwrap();
    db.close().unwrap();
    let db = Database::open(dir.path().join("p.msdb")).unwrap();
    assert_eq!(db.search("c", &SearchRequest::maxsim(q.clone())).unwrap(), before);
    assert!(db.check().unwrap().problems.is_empty());

    // Dropping the index returns the planner to exact; compaction drops the sections.
    assert!(db.drop_index("c", "plaid").unwrap());
    assert!(!db.drop_index("c", "plaid").unwrap());
    let out = db.search_explained("c", &SearchRequest::maxsim(q.clone())).unwrap();
    assert_eq!(out.plan, Plan::Exact);
    assert!(db.indexes("c").unwrap().is_empty());
}

/// Flip a byte in the middle of section `tag` of every side file with extension `ext`
/// (the section table has the segment layout: kind u32 | index u32 | offset u64 | len u64).
fn damage_side_files(db_dir: &std::path::Path, ext: &str, tag: u32) -> usize {
    let files: Vec<_> = std::fs::read_dir(db_dir.join("segments"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext) && p.to_string_lossy().contains('-'))
        .collect();
    for f in &files {
        let mut bytes = std::fs::read(f).unwrap();
        let n = bytes.len();
        let table = u64::from_le_bytes(bytes[n - 32..n - 24].try_into().unwrap()) as usize;
        let count = u32::from_le_bytes(bytes[n - 24..n - 20].try_into().unwrap()) as usize;
        let (off, len) = (0..count)
            .map(|i| &bytes[table + 40 * i..table + 40 * (i + 1)])
            .find(|e| u32::from_le_bytes(e[0..4].try_into().unwrap()) == tag)
            .map(|e| {
                let off = u64::from_le_bytes(e[8..16].try_into().unwrap()) as usize;
                (off, u64::from_le_bytes(e[16..24].try_into().unwrap()) as usize)
            })
            .unwrap_or_else(|| panic!("{} has a section {tag}", f.display()));
        bytes[off + len / 2] ^= 0x5a;
        std::fs::write(f, &bytes).unwrap();
    }
    files.len()
}

#[test]
fn damaged_side_files_fall_back_to_exact_and_are_reported() {
    // (side file, section tag, plan reading it): PLAID codes, MUVERA encodings and graph.
    for (ext, tag, plan) in
        [("plaid", 6, Plan::Plaid), ("muvera", 11, Plan::Muvera), ("muvera", 12, Plan::Muvera)]
    {
        let (dir, db, docs, mut rng, _) = setup(800);
        if plan == Plan::Plaid {
            db.create_plaid_index("c", opts()).unwrap();
        } else {
            db.create_muvera_index("c", MuveraOptions::default()).unwrap();
        }
        db.close().unwrap();
        assert_eq!(
            damage_side_files(&dir.path().join("p.msdb"), ext, tag),
            2,
            "two segments, two side files"
        );
        let db = Database::open(dir.path().join("p.msdb")).unwrap();
        let q = query(&mut rng, &docs);
        // The damaged parts are not used: every segment is scored exactly, and EXPLAIN says so.
        let out = db.search_explained("c", &SearchRequest::maxsim(q.clone()).plan(plan)).unwrap();
        let exact = db.search("c", &SearchRequest::maxsim(q).plan(Plan::Exact)).unwrap();
        assert_eq!(out.hits, exact, "{ext}[{tag}]");
        let stage = |n: &str| out.stages.iter().find(|s| s.name == n).map(|s| s.docs);
        assert_eq!(stage("damaged_index"), Some(2), "{:?}", out.stages);
        assert_eq!(stage("unindexed"), Some(800), "{:?}", out.stages);
        let problems = db.check().unwrap().problems;
        assert_eq!(problems.len(), 2, "CHECK names both side files: {problems:?}");
        assert!(
            problems.iter().all(|p| p.contains(&format!(".{ext}")) && p.contains("searched exactly")),
            "{problems:?}"
        );
    }
}

#[test]
fn muvera_index_finds_maxsim_candidates() {
    let (dir, db, docs, mut rng, topics) = setup(3000);
    let q0 = query(&mut rng, &docs);
    assert!(matches!(
        db.search("c", &SearchRequest::maxsim(q0.clone()).plan(Plan::Muvera)),
        Err(Error::NotAvailable(_))
    ));
    let bad = MuveraOptions { repetitions: 0, ..MuveraOptions::default() };
    assert!(matches!(db.create_muvera_index("c", bad), Err(Error::InvalidArgument(_))));
    let info = db.create_muvera_index("c", MuveraOptions::default()).unwrap();
    assert_eq!(info.kind, "muvera");
    assert_eq!(info.segments_indexed, info.segments, "every segment has a MUVERA side file");
    // 2,560 f16 per document plus the graph.
    assert!(info.bytes > 3000 * 2560 * 2, "{} bytes", info.bytes);
    assert!(info.params.contains("\"repetitions\":10"), "{}", info.params);
    assert!(matches!(
        db.create_muvera_index("c", MuveraOptions::default()),
        Err(Error::AlreadyExists { .. })
    ));

    let mut recall = 0usize;
    for _ in 0..20 {
        let q = query(&mut rng, &docs);
        let exact = db.search("c", &SearchRequest::maxsim(q.clone()).plan(Plan::Exact)).unwrap();
        // Auto uses MUVERA only at its calibrated recall and when it beats exact here.
        let chosen = db.search_explained("c", &SearchRequest::maxsim(q.clone())).unwrap();
        let r = chosen.recall.expect("calibrated at build");
        assert_eq!(chosen.plan == Plan::Muvera, r.used, "{r:?}");
        assert!(!r.used || r.calibrated >= r.target, "{r:?}");
        let auto = db
            .search_explained("c", &SearchRequest::maxsim(q.clone()).plan(Plan::Muvera).candidates(200))
            .unwrap();
        assert_eq!(auto.plan, Plan::Muvera);
        let names: Vec<&str> = auto.stages.iter().map(|s| s.name).collect();
        assert_eq!(names, ["filter", "muvera", "exact"]);
        // Each of the 5 segments (index builds no longer merge them) hands over 200.
        assert_eq!(auto.stages[1].docs, 200 * info.segments, "default candidates per segment");
        assert_eq!(auto.stages[2].docs, 200 * info.segments, "only the candidates are scored");
        let every = db.search("c", &SearchRequest::maxsim(q).plan(Plan::Exact).limit(3000)).unwrap();
        for h in &auto.hits {
            assert_eq!(every.iter().find(|e| e.id == h.id).unwrap().score, h.score);
        }
        let want = ids(&exact);
        recall += ids(&auto.hits).iter().filter(|id| want.contains(id)).count();
    }
    eprintln!("MUVERA recall@10 vs exact {recall}/200");
    assert!(recall * 100 >= 20 * 10 * 90, "recall@10 vs exact {recall}/200");

    // Deletes and filters hold; a selective filter is planned exact.
    let q = query(&mut rng, &docs);
    let top = db.search("c", &SearchRequest::maxsim(q.clone())).unwrap();
    db.delete("c", &[top[0].id.clone()]).unwrap();
    assert!(
        !ids(&db.search("c", &SearchRequest::maxsim(q.clone())).unwrap()).contains(&top[0].id.to_string())
    );
    let f = Filter::eq("bucket", 3i64);
    let out = db.search_explained("c", &SearchRequest::maxsim(q.clone()).filter(f.clone())).unwrap();
    assert_eq!(out.plan, Plan::Exact);
    let forced =
        db.search_explained("c", &SearchRequest::maxsim(q.clone()).filter(f).plan(Plan::Muvera)).unwrap();
    assert_eq!(forced.plan, Plan::Muvera);
    assert!(!forced.hits.is_empty());
    for h in &forced.hits {
        let i: usize = h.id.to_string()[1..].parse().unwrap();
        assert_eq!(i % 10, 3, "filter holds under MUVERA");
    }

    // Flushed documents get encodings; with a PLAID index too, Auto prefers PLAID.
    let extra = corpus(&mut rng, &topics, 3000, 50);
    db.insert("c", &extra).unwrap();
    db.flush("c").unwrap();
    let info = db.indexes("c").unwrap().remove(0);
    assert_eq!(info.segments_indexed, info.segments, "flush encodes with the index");
    let own = extra[7].tokens[..6 * D].to_vec();
    let hit = db.search("c", &SearchRequest::maxsim(own).plan(Plan::Muvera)).unwrap();
    assert_eq!(hit[0].id.to_string(), "d3007");
    db.create_plaid_index("c", opts()).unwrap();
    // Auto prefers PLAID to MUVERA (whether it beats exact search depends on the times
    // the calibration measured on this machine, so that part is not asserted).
    let auto = db.search_explained("c", &SearchRequest::maxsim(q.clone())).unwrap();
    assert!(matches!(auto.plan, Plan::Plaid | Plan::Exact), "{:?}", auto.plan);
    let before = db.search("c", &SearchRequest::maxsim(q.clone()).plan(Plan::Muvera)).unwrap();

    // Reopen: matrices and sections persist, the answer is the same.
    db.close().unwrap();
    let db = Database::open(dir.path().join("p.msdb")).unwrap();
    assert_eq!(db.search("c", &SearchRequest::maxsim(q.clone()).plan(Plan::Muvera)).unwrap(), before);
    assert!(db.check().unwrap().problems.is_empty());
    assert!(db.drop_index("c", "plaid").unwrap());
    assert!(db.drop_index("c", "muvera").unwrap());
    assert_eq!(db.search_explained("c", &SearchRequest::maxsim(q)).unwrap().plan, Plan::Exact);
}
