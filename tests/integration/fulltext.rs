//! Full-text (BM25) indexes, hybrid fusion, and the full-text index's crash recovery.

use std::process::{Command, Stdio};

use maxsimdb::testing::Rng;
use maxsimdb::{
    CollectionSpec, ColumnType, Database, DocId, Document, Error, Filter, FullTextOptions, Fusion, Plan,
    Query, SearchRequest, Value, VectorSpec,
};

const D: usize = 8;

fn spec() -> CollectionSpec {
    CollectionSpec::new("c", VectorSpec::new(D).pooled("mean", D))
        .column("title", ColumnType::Text)
        .column("body", ColumnType::Text)
        .column("year", ColumnType::Integer)
}

fn text_doc(rng: &mut Rng, id: &str, title: &str, body: &str, year: i64) -> Document {
    let t = rng.unit_vectors(3, D);
    Document::new(id)
        .tokens(t.clone())
        .pooled("mean", t[..D].to_vec())
        .set("title", title)
        .set("body", body)
        .set("year", year)
}

fn ids(h: &[maxsimdb::Hit]) -> Vec<String> {
    h.iter().map(|h| h.id.to_string()).collect()
}

fn bm25(db: &Database, q: &str) -> Vec<String> {
    ids(&db.search("c", &SearchRequest::bm25(q).limit(50)).unwrap())
}

/// The documents matching `q`, as a sorted set (BM25 statistics — and so the order of
/// near-ties — change when tantivy merges away deleted documents).
fn matching(db: &Database, q: &str) -> Vec<String> {
    let mut v = bm25(db, q);
    v.sort();
    v
}

fn corpus(db: &Database, rng: &mut Rng) {
    let docs = [
        ("a", "Cats and dogs", "The cat sat on the mat. Cats purr.", 2001),
        ("b", "Dog training", "Training a dog takes patience; dogs learn fast.", 2002),
        ("c", "Birds", "Birds fly south in winter.", 2003),
        ("d", "Running", "He was running and runs every day.", 2004),
        ("e", "Mats", "A mat, another mat, and more mats.", 2005),
    ];
    let docs: Vec<Document> = docs.iter().map(|(id, t, b, y)| text_doc(rng, id, t, b, *y)).collect();
    db.insert("c", &docs).unwrap();
}

#[test]
fn bm25_follows_every_write_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.msdb");
    let db = Database::open(&path).unwrap();
    db.create_collection(&spec()).unwrap();
    let mut rng = Rng::new(1);
    corpus(&db, &mut rng);
    assert!(matches!(db.search("c", &SearchRequest::bm25("cat")), Err(Error::NotAvailable(_))));
    let bad = FullTextOptions { columns: vec!["year".into()], ..FullTextOptions::default() };
    assert!(matches!(db.create_fulltext_index("c", bad), Err(Error::InvalidArgument(_))));
    let bad = FullTextOptions { language: "klingon".into(), ..FullTextOptions::default() };
    assert!(matches!(db.create_fulltext_index("c", bad), Err(Error::InvalidArgument(_))));
    let info = db.create_fulltext_index("c", FullTextOptions::default()).unwrap();
    assert_eq!(info.kind, "fulltext");
    assert!(info.bytes > 0);
    assert!(info.params.contains("\"title\"") && info.params.contains("\"body\""), "{}", info.params);

    // Stemming, lowercasing, both columns, stop words.
    assert_eq!(bm25(&db, "cat")[0], "a");
    assert_eq!(bm25(&db, "CATS"), bm25(&db, "cat"));
    assert_eq!(bm25(&db, "run"), ["d"], "running/runs stem to run");
    assert!(bm25(&db, "training").contains(&"b".to_string()), "title column indexed");
    assert!(bm25(&db, "the and of").is_empty(), "only stop words: no hits");
    assert!(bm25(&db, "").is_empty());
    assert!(bm25(&db, "zebra").is_empty());
    // Query syntax is not interpreted: this is just words.
    assert_eq!(bm25(&db, "cat:(\"mat\" AND -dog"), bm25(&db, "cat mat dog"));
    // Term frequency: "mat" three times beats once; scores come best first.
    let hits = db.search("c", &SearchRequest::bm25("mat").limit(10)).unwrap();
    assert_eq!(ids(&hits), ["e", "a"]);
    assert!(hits[0].score > hits[1].score && hits[1].score > 0.0);
    let out = db.search_explained("c", &SearchRequest::bm25("mat")).unwrap();
    assert_eq!(out.plan, Plan::Bm25);
    assert_eq!(out.stages.iter().map(|s| s.name).collect::<Vec<_>>(), ["filter", "bm25"]);

    // Filters apply.
    let f = Filter::gte("year", 2005i64);
    assert_eq!(ids(&db.search("c", &SearchRequest::bm25("mat").filter(f)).unwrap()), ["e"]);

    // Insert, update (text and non-text), upsert, delete: visible as soon as the call returns.
    db.insert("c", &[text_doc(&mut rng, "f", "Zebras", "Zebra stripes", 2006)]).unwrap();
    assert_eq!(bm25(&db, "zebra"), ["f"]);
    db.update("c", &DocId::from("c"), &[("body".into(), Value::Text("Penguins swim".into()))]).unwrap();
    assert_eq!(bm25(&db, "birds"), ["c"], "the title is unchanged");
    assert_eq!(bm25(&db, "penguin"), ["c"]);
    assert!(!bm25(&db, "winter").contains(&"c".to_string()));
    db.update("c", &DocId::from("c"), &[("year".into(), Value::Integer(1999))]).unwrap();
    assert_eq!(bm25(&db, "penguin"), ["c"]);
    db.upsert("c", &[text_doc(&mut rng, "a", "Lions", "Lions roar", 2001)]).unwrap();
    assert!(!bm25(&db, "cat").contains(&"a".to_string()));
    assert_eq!(bm25(&db, "lion"), ["a"]);
    assert_eq!(db.delete("c", &[DocId::from("e")]).unwrap(), 1);
    assert!(!bm25(&db, "mat").contains(&"e".to_string()));
    db.delete_where("c", &Filter::eq("year", 2002i64)).unwrap();
    assert!(bm25(&db, "dog").is_empty());
    // Flush and compaction move vectors, not text: nothing changes.
    let before = matching(&db, "penguin lion zebra run");
    assert_eq!(before, ["a", "c", "d", "f"]);
    db.flush("c").unwrap();
    db.compact("c").unwrap();
    assert_eq!(matching(&db, "penguin lion zebra run"), before);

    // Reopen (read-write, then read-only): same answers.
    db.close().unwrap();
    let db = Database::open(&path).unwrap();
    assert_eq!(matching(&db, "penguin lion zebra run"), before);
    drop(db);
    let ro = Database::open_read_only(&path).unwrap();
    assert_eq!(matching(&ro, "penguin lion zebra run"), before);
    drop(ro);

    // A lost or damaged index directory is rebuilt from the catalog at open.
    std::fs::remove_dir_all(path.join("fulltext")).unwrap();
    let db = Database::open(&path).unwrap();
    assert_eq!(matching(&db, "penguin lion zebra run"), before);
    db.rebuild_fulltext_index("c").unwrap();
    assert_eq!(matching(&db, "penguin lion zebra run"), before);

    // Dropping the index: BM25 is unavailable again, and the directory is gone.
    assert!(db.drop_index("c", "fulltext").unwrap());
    assert!(matches!(db.search("c", &SearchRequest::bm25("lion")), Err(Error::NotAvailable(_))));
    assert!(!path.join("fulltext").join("1").exists());
}

#[test]
fn a_stale_index_copy_is_detected_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.msdb");
    let db = Database::open(&path).unwrap();
    db.create_collection(&spec()).unwrap();
    let mut rng = Rng::new(2);
    corpus(&db, &mut rng);
    db.create_fulltext_index("c", FullTextOptions::default()).unwrap();
    db.close().unwrap();
    // Keep a copy of the index as it is now, write more, then put the old copy back: the
    // catalog knows the index has applied (and trimmed) changes the copy lacks.
    let ft = path.join("fulltext");
    let copy = dir.path().join("ft-copy");
    copy_dir(&ft, &copy);
    let db = Database::open(&path).unwrap();
    db.insert("c", &[text_doc(&mut rng, "z", "Zebras", "Zebra stripes", 2006)]).unwrap();
    db.delete("c", &[DocId::from("a")]).unwrap();
    db.close().unwrap();
    std::fs::remove_dir_all(&ft).unwrap();
    copy_dir(&copy, &ft);
    let db = Database::open(&path).unwrap();
    assert_eq!(bm25(&db, "zebra"), ["z"]);
    assert!(!bm25(&db, "cat").contains(&"a".to_string()));
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn hybrid_fuses_rankings_by_rrf_and_weights() {
    let (_dir, db) = crate::common::tempdb();
    db.create_collection(&spec()).unwrap();
    let mut rng = Rng::new(3);
    let words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"];
    let docs: Vec<Document> = (0..200)
        .map(|i| {
            let body: Vec<&str> = (0..6).map(|_| words[rng.below(words.len() as u64) as usize]).collect();
            text_doc(&mut rng, &format!("d{i}"), "doc", &body.join(" "), 2000 + i % 10)
        })
        .collect();
    db.insert("c", &docs).unwrap();
    db.create_fulltext_index(
        "c",
        FullTextOptions { columns: vec!["body".into()], ..FullTextOptions::default() },
    )
    .unwrap();
    let q = rng.unit_vectors(2, D);
    let parts =
        vec![Query::Bm25 { text: "alpha gamma".into() }, Query::MaxSim { tokens: q.clone(), mask: None }];
    let depth = 50;
    let bm = db.search("c", &SearchRequest::bm25("alpha gamma").limit(depth)).unwrap();
    let ms = db.search("c", &SearchRequest::maxsim(q.clone()).limit(depth)).unwrap();

    // RRF scores are Σ 1/(60 + rank) over the parts' rankings.
    let out = db
        .search_explained(
            "c",
            &SearchRequest::hybrid(parts.clone(), Fusion::Rrf { k: 60.0 }).candidates(depth).limit(20),
        )
        .unwrap();
    assert_eq!(out.plan, Plan::Hybrid);
    assert_eq!(out.stages.iter().map(|s| s.name).collect::<Vec<_>>(), ["bm25", "maxsim", "fusion"]);
    assert_eq!(out.hits.len(), 20);
    for h in &out.hits {
        let rr = |list: &[maxsimdb::Hit]| {
            list.iter().position(|x| x.id == h.id).map_or(0.0, |r| 1.0 / (60.0 + r as f32 + 1.0))
        };
        assert!((h.score - (rr(&bm) + rr(&ms))).abs() < 1e-6, "{}", h.id);
    }
    assert!(out.hits.windows(2).all(|w| w[0].score >= w[1].score));
    // A document first in both lists is first.
    let both = bm.iter().find(|b| ms.iter().take(3).any(|m| m.id == b.id));
    if let Some(b) = both {
        let top_sum = 1.0 / 61.0 * 2.0;
        assert!(out.hits[0].score <= top_sum + 1e-6);
        assert!(ids(&out.hits).contains(&b.id.to_string()));
    }

    // Weighted fusion with weight only on one part reproduces that part's ranking.
    let w = db
        .search(
            "c",
            &SearchRequest::hybrid(parts.clone(), Fusion::Weighted { weights: vec![0.0, 1.0] }).limit(10),
        )
        .unwrap();
    assert_eq!(ids(&w), ids(&ms[..10]));
    assert!((w[0].score - 1.0).abs() < 1e-6, "normalised: the best scores 1");

    // Filters apply to every part.
    let f = Filter::eq("year", 2003i64);
    let hits =
        db.search("c", &SearchRequest::hybrid(parts.clone(), Fusion::default()).filter(f).limit(50)).unwrap();
    assert!(!hits.is_empty());
    for h in &hits {
        assert!(h.values.iter().any(|(k, v)| k == "year" && *v == Value::Integer(2003)));
    }

    // Errors.
    let bad = Fusion::Weighted { weights: vec![1.0] };
    assert!(matches!(
        db.search("c", &SearchRequest::hybrid(parts.clone(), bad)),
        Err(Error::InvalidArgument(_))
    ));
    let nested = vec![Query::Hybrid { parts: parts.clone(), fusion: Fusion::default() }];
    assert!(matches!(
        db.search("c", &SearchRequest::hybrid(nested, Fusion::default())),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        db.search("c", &SearchRequest::hybrid(vec![], Fusion::default())),
        Err(Error::InvalidArgument(_))
    ));
    db.drop_index("c", "fulltext").unwrap();
    assert!(matches!(
        db.search("c", &SearchRequest::hybrid(parts, Fusion::default())),
        Err(Error::NotAvailable(_))
    ));
}

const CHILD_ENV: &str = "MAXSIMDB_FULLTEXT_CHILD";

/// Words a child writes: document `i` of generation `g` carries the word `w{i}x{g}`
/// (letters only after stemming: `wNxM` is kept whole by the simple tokenizer).
fn word(i: u64, generation: u64) -> String {
    format!("w{i}x{generation}")
}

#[test]
fn killed_writer_leaves_a_full_text_index_that_matches_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.msdb");
    {
        let db = Database::open(&path).unwrap();
        db.create_collection(&spec()).unwrap();
        db.create_fulltext_index("c", FullTextOptions::default()).unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng::new(7);
    let trials = std::env::var("MAXSIMDB_CRASH_TRIALS").ok().and_then(|s| s.parse().ok()).unwrap_or(12usize);
    let mut most_live = 0;
    for t in 0..trials {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "fulltext::fulltext_child_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{}|{t}", path.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(150 + rng.below(500)));
        child.kill().unwrap();
        child.wait().unwrap();
        // Reopen: every live document is found by its current word, and only by it.
        let db = Database::open(&path).unwrap();
        let live =
            db.search("c", &SearchRequest::maxsim(vec![1.0; D]).plan(Plan::Exact).limit(10_000)).unwrap();
        most_live = most_live.max(live.len());
        for h in &live {
            let body = h.values.iter().find(|(k, _)| k == "body").map(|(_, v)| v.clone()).unwrap();
            let Value::Text(body) = body else { panic!("body is text") };
            let found = bm25(&db, &body);
            assert_eq!(found.first(), Some(&h.id.to_string()), "trial {t}: '{body}' finds its document");
        }
        // Deleted documents' words find nothing; the index holds exactly the live set.
        let all_words: Vec<String> = (0..400).flat_map(|i| (0..=t as u64).map(move |g| word(i, g))).collect();
        let hits = db.search("c", &SearchRequest::bm25(all_words.join(" ")).limit(10_000)).unwrap();
        let mut a = ids(&hits);
        let mut b = ids(&live);
        a.sort();
        b.sort();
        assert_eq!(a, b, "trial {t}: BM25 sees exactly the live documents");
    }
    assert!(most_live >= 20, "the children made progress ({most_live} live documents at most)");
}

/// The writer of `killed_writer_leaves_a_full_text_index_that_matches_the_catalog`.
#[test]
#[ignore = "child process spawned by killed_writer_leaves_a_full_text_index_that_matches_the_catalog"]
fn fulltext_child_process() {
    let spec = std::env::var(CHILD_ENV).expect("only run as the full-text crash test's child");
    let (path, generation) = spec.split_once('|').unwrap();
    let generation: u64 = generation.parse().unwrap();
    let db = Database::open(path).unwrap();
    let mut rng = Rng::new(generation + 100);
    loop {
        let i = rng.below(400);
        let id = format!("d{i}");
        match rng.below(10) {
            0..=5 => {
                let d = text_doc(&mut rng, &id, "", &word(i, generation), 2000);
                db.upsert("c", &[d]).unwrap();
            }
            6..=7 => {
                let _ = db.update(
                    "c",
                    &DocId::from(id.as_str()),
                    &[("body".into(), Value::Text(word(i, generation)))],
                );
            }
            8 => {
                db.delete("c", &[DocId::from(id.as_str())]).unwrap();
            }
            _ => {
                db.flush("c").unwrap();
            }
        }
    }
}

/// `WITH (k1, b, stemmer)` through SQL: the options are stored with the index, used after
/// reopening, and change ranking and matching as BM25 and the stemmers define.
#[test]
fn bm25_parameters_and_stemmer_come_from_create_index_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut rng = Rng::new(3);
    let run = |db: &Database, sql: &str| maxsimdb::sql::Session::new(db.clone()).execute(sql).unwrap();
    let scores = |db: &Database, coll: &str, q: &str| -> Vec<(String, f32)> {
        db.search(coll, &SearchRequest::bm25(q).limit(10))
            .unwrap()
            .into_iter()
            .map(|h| (h.id.to_string(), h.score))
            .collect()
    };
    {
        let db = Database::open(&path).unwrap();
        for (name, with) in
            [("flat", "k1 = 0.9, b = 0.0"), ("norm", "k1 = 0.9, b = 1.0"), ("porter", "stemmer = 'porter'")]
        {
            db.create_collection(&CollectionSpec { name: name.into(), ..spec() }).unwrap();
            let docs: Vec<Document> = [
                ("short", "Abruptly", "a generalization"),
                ("long", "Abrupt", "a generalization of many many other longer words in a body"),
            ]
            .iter()
            .map(|(id, t, b)| text_doc(&mut rng, id, t, b, 2000))
            .collect();
            db.insert(name, &docs).unwrap();
            run(&db, &format!("CREATE INDEX ON {name} USING fulltext WITH ({with});"));
        }
        // b = 0: length does not matter, both documents score alike for a word both have.
        let flat = scores(&db, "flat", "generalization");
        assert_eq!(flat.len(), 2);
        assert!((flat[0].1 - flat[1].1).abs() < 1e-6, "{flat:?}");
        // b = 1: the short document wins clearly.
        let norm = scores(&db, "norm", "generalization");
        assert_eq!(norm[0].0, "short");
        assert!(norm[0].1 > norm[1].1 * 1.5, "{norm:?}");
        // Porter keeps "abruptli" apart from "abrupt" (Porter2 stems both to "abrupt").
        assert_eq!(ids_of(&scores(&db, "porter", "abruptly")), ["short"]);
        assert_eq!(ids_of(&scores(&db, "flat", "abruptly")).len(), 2);
        drop(db);
    }
    let db = Database::open(&path).unwrap();
    let norm = scores(&db, "norm", "generalization");
    assert!(norm[0].1 > norm[1].1 * 1.5, "after reopen: {norm:?}");
    assert_eq!(ids_of(&scores(&db, "porter", "abruptly")), ["short"]);
    let s = maxsimdb::sql::Session::new(db.clone());
    let e = s.execute("CREATE INDEX ON flat USING fulltext WITH (stemmer = 'lovins');").unwrap_err();
    assert!(e.to_string().contains("unknown stemmer 'lovins'"), "{e}");
    db.create_collection(&CollectionSpec { name: "x".into(), ..spec() }).unwrap();
    let e = s.execute("CREATE INDEX ON x USING fulltext WITH (b = 2);").unwrap_err();
    assert!(e.to_string().contains("b = 2 is out of range"), "{e}");
}

fn ids_of(v: &[(String, f32)]) -> Vec<&str> {
    v.iter().map(|p| p.0.as_str()).collect()
}
