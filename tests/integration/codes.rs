//! Codes-only token storage (`WITH (tokens = 'plaid2')`): the codec trained from the
//! collection's own tokens, segments that keep centroid ids and residual codes only,
//! exact search over the stored representation, VACUUM re-encoding and re-training, the
//! PLAID index sharing the codes, damage to the codec file.

use maxsimdb::testing::Rng;
use maxsimdb::{CollectionSpec, Database, DocId, Document, Error, Plan, SearchRequest, VectorSpec};

const D: usize = 32;
const TOPICS: usize = 24;

fn near(rng: &mut Rng, c: &[f32], noise: f32) -> Vec<f32> {
    let s = noise / (D as f32).sqrt();
    let mut v: Vec<f32> = c.iter().map(|x| x + s * rng.normal()).collect();
    maxsimdb::testing::normalize(&mut v);
    v
}

/// `n` documents of 8–23 tokens, each token near one of three topics of the document.
fn corpus(rng: &mut Rng, topics: &[f32], first: usize, n: usize) -> Vec<Document> {
    (first..first + n)
        .map(|i| {
            let len = 8 + rng.below(16) as usize;
            let pick: Vec<usize> = (0..3).map(|_| rng.below((topics.len() / D) as u64) as usize).collect();
            let t: Vec<f32> = (0..len)
                .flat_map(|j| near(rng, &topics[pick[j % 3] * D..(pick[j % 3] + 1) * D], 0.5))
                .collect();
            Document::new(format!("d{i}")).tokens(t)
        })
        .collect()
}

/// Six query tokens near random topics.
fn query(rng: &mut Rng, topics: &[f32]) -> Vec<f32> {
    (0..6)
        .flat_map(|_| {
            let t = rng.below(TOPICS as u64) as usize;
            near(rng, &topics[t * D..(t + 1) * D], 0.5)
        })
        .collect()
}

fn codes_spec(nbits: u8) -> CollectionSpec {
    CollectionSpec::new("c", VectorSpec::new(D).codes(nbits))
}

/// The codec is trained at 4,096 tokens here (the default waits for a full training
/// sample of 262,144).
fn open(dir: &tempfile::TempDir) -> Database {
    Database::builder(dir.path().join("codes.msdb")).codec_min_tokens(4096).open().unwrap()
}

fn maxsim(q: &[f32], d: &[f32]) -> f32 {
    q.chunks_exact(D)
        .map(|qi| {
            d.chunks_exact(D)
                .map(|di| qi.iter().zip(di).map(|(a, b)| a * b).sum::<f32>())
                .fold(f32::MIN, f32::max)
        })
        .sum()
}

fn exact(db: &Database, q: &[f32], k: usize) -> Vec<(String, f32)> {
    let out = db.search("c", &SearchRequest::maxsim(q.to_vec()).limit(k).plan(Plan::Exact)).unwrap();
    out.into_iter().map(|h| (h.id.to_string(), h.score)).collect()
}

fn stored_tokens(db: &Database, id: &str) -> Vec<f32> {
    db.get("c", &DocId::from(id)).unwrap().unwrap().tokens
}

#[test]
fn codes_only_round_trip_and_exact_search_equal_a_brute_force_over_decoded_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    db.create_collection(&codes_spec(2)).unwrap();
    let mut rng = Rng::new(5);
    let topics = rng.unit_vectors(TOPICS, D);
    let docs = corpus(&mut rng, &topics, 0, 600);
    db.insert("c", &docs).unwrap();
    db.flush("c").unwrap();
    let info = db.token_codec("c").unwrap().expect("trained at the first flush with enough tokens");
    assert_eq!(info.nbits, 2);
    let tokens: usize = docs.iter().map(|d| d.tokens.len() / D).sum();
    assert!(tokens >= 4096, "{tokens}");
    assert_eq!(info.trained_tokens, tokens as u64);
    // PLAID's centroid rule: 2^floor(log2(16 sqrt(N))).
    assert_eq!(info.centroids, 1 << ((16.0 * (tokens as f64).sqrt()).log2().floor() as u32));
    assert!(info.train_error > 0.0 && info.train_error < 0.1, "{info:?}");
    // A codes-only segment keeps 2 B of centroid id + 8 B of residual per token (d = 32,
    // 2 bits) plus row ids and offsets: far below the 64 B of f16.
    let st = db.stats("c").unwrap();
    let per_token = st.segment_bytes as f64 / st.segment_tokens as f64;
    assert!(per_token < 14.0, "{per_token} bytes per token");
    // Stored tokens are decoded codes: unit rows close to what was inserted, not equal.
    let mut worst = 0f32;
    for d in docs.iter().take(50) {
        let got = stored_tokens(&db, &d.id.to_string());
        assert_eq!(got.len(), d.tokens.len());
        for (a, b) in d.tokens.chunks_exact(D).zip(got.chunks_exact(D)) {
            let norm: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-3);
            worst = worst.max(1.0 - a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>());
        }
    }
    assert!(worst > 0.0 && worst < 0.3, "1 - cos = {worst}");
    // Exact search = brute force MaxSim over the decoded vectors.
    let decoded: Vec<(String, Vec<f32>)> =
        docs.iter().map(|d| (d.id.to_string(), stored_tokens(&db, &d.id.to_string()))).collect();
    let mut overlap = 0;
    for _ in 0..10 {
        let q: Vec<f32> = query(&mut rng, &topics);
        let got = exact(&db, &q, 10);
        let mut want: Vec<(String, f32)> =
            decoded.iter().map(|(id, t)| (id.clone(), maxsim(&q, t))).collect();
        want.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (g, w) in got.iter().zip(&want) {
            assert!((g.1 - w.1).abs() < 1e-3, "{g:?} vs {w:?}");
        }
        // And close to exact over the original vectors.
        let mut orig: Vec<(String, f32)> =
            docs.iter().map(|d| (d.id.to_string(), maxsim(&q, &d.tokens))).collect();
        orig.sort_by(|a, b| b.1.total_cmp(&a.1));
        overlap += got.iter().filter(|g| orig[..10].iter().any(|o| o.0 == g.0)).count();
    }
    assert!(overlap >= 80, "recall@10 against the original vectors: {overlap}/100");
    // Reopening reads the codec from its file.
    drop(db);
    let db = open(&dir);
    assert_eq!(db.token_codec("c").unwrap().unwrap().id, info.id);
    assert_eq!(stored_tokens(&db, "d7"), decoded[7].1);
}

#[test]
fn inserts_before_the_codec_stay_vectors_until_vacuum_encodes_them_ids_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    db.create_collection(&codes_spec(4)).unwrap();
    let mut rng = Rng::new(8);
    let topics = rng.unit_vectors(TOPICS, D);
    let early = corpus(&mut rng, &topics, 0, 20);
    db.insert("c", &early).unwrap();
    db.flush("c").unwrap();
    assert!(db.token_codec("c").unwrap().is_none(), "too few tokens to train");
    // The early segment holds f16 vectors: what was inserted, to f16 precision.
    let got = stored_tokens(&db, "d3");
    assert!(got.iter().zip(&early[3].tokens).all(|(a, b)| (a - b).abs() < 1e-3));
    let later = corpus(&mut rng, &topics, 20, 500);
    db.insert("c", &later).unwrap();
    db.flush("c").unwrap();
    let info = db.token_codec("c").unwrap().expect("trained now");
    // Trained on the early vectors too.
    let all: usize = early.iter().chain(&later).map(|d| d.tokens.len() / D).sum();
    assert_eq!(info.trained_tokens, all as u64);
    let before: Vec<Vec<f32>> = (0..520).map(|i| stored_tokens(&db, &format!("d{i}"))).collect();
    assert!(before[3].iter().zip(&early[3].tokens).all(|(a, b)| (a - b).abs() < 1e-3), "still f16");
    db.delete("c", &[DocId::from("d100")]).unwrap();
    assert!(db.compact("c").unwrap());
    let st = db.stats("c").unwrap();
    assert_eq!((st.segments, st.docs), (1, 519));
    assert_eq!(db.token_codec("c").unwrap().unwrap().id, info.id, "no drift: same codec");
    for (i, b) in before.iter().enumerate() {
        let id = format!("d{i}");
        if i == 100 {
            assert!(db.get("c", &DocId::from(id.as_str())).unwrap().is_none());
            continue;
        }
        let after = stored_tokens(&db, &id);
        if i < 20 {
            // Encoded now: an approximation of the f16 vectors.
            let cos: f32 = after[..D].iter().zip(&b[..D]).map(|(x, y)| x * y).sum();
            assert!(after != *b && cos > 0.9, "{id}: cos {cos}");
        } else {
            // Codes of the same codec are copied, never re-encoded.
            assert_eq!(after, *b, "{id}");
        }
    }
    // Nothing left to do.
    assert!(!db.compact("c").unwrap());
}

#[test]
fn vacuum_retrains_when_new_data_drifts_and_rewrites_every_segment() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    db.create_collection(&codes_spec(2)).unwrap();
    let mut rng = Rng::new(13);
    // Old data around 4 topics; new data around 24 others.
    let old_topics = rng.unit_vectors(4, D);
    let new_topics = rng.unit_vectors(TOPICS, D);
    let old = corpus(&mut rng, &old_topics, 0, 400);
    db.insert("c", &old).unwrap();
    db.flush("c").unwrap();
    let first = db.token_codec("c").unwrap().unwrap();
    let new = corpus(&mut rng, &new_topics, 400, 400);
    db.insert("c", &new).unwrap();
    db.flush("c").unwrap();
    let drifted = db.token_codec("c").unwrap().unwrap();
    assert_eq!(drifted.id, first.id);
    let e = drifted.new_data_error.unwrap();
    assert!(e > 1.25 * first.train_error, "new data error {e} vs training {}", first.train_error);
    assert!(db.compact("c").unwrap());
    let second = db.token_codec("c").unwrap().unwrap();
    assert_ne!(second.id, first.id, "re-trained");
    assert_eq!(
        second.trained_tokens as usize,
        old.iter().chain(&new).map(|d| d.tokens.len() / D).sum::<usize>()
    );
    let st = db.stats("c").unwrap();
    assert_eq!((st.segments, st.docs), (1, 800));
    // Every document is still there under its id, and found by its own tokens.
    for i in (0..800).step_by(37) {
        let id = format!("d{i}");
        let d = if i < 400 { &old[i] } else { &new[i - 400] };
        let hits = exact(&db, &d.tokens[..4 * D], 3);
        assert_eq!(hits[0].0, id);
    }
    // The old codec's file is retired, and the database reopens on the new one.
    drop(db);
    let db = open(&dir);
    assert_eq!(db.token_codec("c").unwrap().unwrap().id, second.id);
    assert!(db.check().unwrap().problems.is_empty());
}

#[test]
fn plaid_index_on_codes_shares_them_and_auto_meets_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    db.create_collection(&codes_spec(2)).unwrap();
    let mut rng = Rng::new(21);
    let topics = rng.unit_vectors(TOPICS, D);
    let docs = corpus(&mut rng, &topics, 0, 1500);
    for chunk in docs.chunks(500) {
        db.insert("c", chunk).unwrap();
        db.flush("c").unwrap();
    }
    let seg_bytes = db.stats("c").unwrap().segment_bytes;
    let info = db.create_plaid_index("c", maxsimdb::PlaidOptions::default()).unwrap();
    let tokens = db.stats("c").unwrap().segment_tokens;
    // Inverted lists only (≤ 4 B per token, plus the list offsets): the codes are the
    // segments' own.
    let per_token = info.bytes as f64 / tokens as f64;
    assert!(per_token <= 6.0, "{per_token} side-file bytes per token");
    assert_eq!(db.stats("c").unwrap().segment_bytes, seg_bytes, "no segment rewritten");
    let mut hit = 0;
    for _ in 0..20 {
        let q: Vec<f32> = query(&mut rng, &topics);
        let want = exact(&db, &q, 10);
        let got = db
            .search_explained(
                "c",
                &SearchRequest::maxsim(q.clone())
                    .limit(10)
                    .plan(Plan::Plaid)
                    .plaid_params(maxsimdb::index::plaid::SearchParams::exhaustive()),
            )
            .unwrap();
        // Exhaustive PLAID over the shared codes = exact over the stored representation.
        for (g, w) in got.hits.iter().zip(&want) {
            assert!((g.score - w.1).abs() < 1e-4);
        }
        let auto = db.search_explained("c", &SearchRequest::maxsim(q).limit(10)).unwrap();
        if let Some(r) = auto.recall.filter(|r| r.used) {
            assert!(r.calibrated >= r.target, "{r:?}");
        }
        hit += auto.hits.iter().filter(|h| want.iter().any(|w| w.0 == h.id.to_string())).count();
    }
    assert!(hit >= 180, "Auto recall@10 against exact: {hit}/200");
    // New segments get inverted-list side files as they are flushed.
    db.insert("c", &corpus(&mut rng, &topics, 1500, 300)).unwrap();
    db.flush("c").unwrap();
    let ix = db.indexes("c").unwrap().into_iter().find(|i| i.kind == "plaid").unwrap();
    assert_eq!(ix.segments_indexed, 4);
    // After VACUUM too (here without re-training).
    assert!(db.compact("c").unwrap());
    let ix = db.indexes("c").unwrap().into_iter().find(|i| i.kind == "plaid").unwrap();
    assert_eq!(ix.segments_indexed, 1);
    assert!(db.check().unwrap().problems.is_empty());
}

#[test]
fn a_damaged_codec_file_is_reported_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    db.create_collection(&codes_spec(2)).unwrap();
    let mut rng = Rng::new(3);
    let topics = rng.unit_vectors(TOPICS, D);
    let docs = corpus(&mut rng, &topics, 0, 400);
    db.insert("c", &docs).unwrap();
    db.flush("c").unwrap();
    drop(db);
    let codec = walk(dir.path()).into_iter().find(|p| p.extension().is_some_and(|e| e == "tokens")).unwrap();
    let mut bytes = std::fs::read(&codec).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&codec, &bytes).unwrap();
    let db = open(&dir);
    let err = db.search("c", &SearchRequest::maxsim(docs[0].tokens.clone()).plan(Plan::Exact)).unwrap_err();
    assert!(matches!(err, Error::Corruption { .. }), "{err}");
    assert!(err.to_string().contains("codec"), "{err}");
    let report = db.check().unwrap();
    assert!(report.problems.iter().any(|p| p.contains(".tokens")), "{:?}", report.problems);
}

#[test]
fn sql_creates_describes_and_explains_codes_only_storage() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let s = maxsimdb::sql::Session::new(db.clone());
    s.execute("CREATE COLLECTION c WITH (dim = 32, tokens = 'plaid2')").unwrap();
    let d = s.execute("DESCRIBE c").unwrap();
    assert!(format!("{d:?}").contains("PLAID2[32] (codes only)"), "{d:?}");
    let err = s.execute("CREATE COLLECTION e WITH (dim = 32, tokens = 'plaid3')").unwrap_err();
    assert!(err.to_string().contains("'plaid4', 'plaid2' or 'plaid1'"), "{err}");
    let mut rng = Rng::new(2);
    let topics = rng.unit_vectors(TOPICS, D);
    db.insert("c", &corpus(&mut rng, &topics, 0, 400)).unwrap();
    let q: Vec<String> = topics[..D].iter().map(|x| format!("{x}")).collect();
    let e = s
        .execute(&format!(
            "EXPLAIN SELECT id FROM c ORDER BY maxsim('[[{}]]') LIMIT 3 WITH (plan = 'exact')",
            q.join(",")
        ))
        .unwrap();
    let text = format!("{e:?}");
    assert!(
        text.contains("plaid2 codes only") && text.contains("exact over the stored representation"),
        "{text}"
    );
    // SHOW INDEXES says that PLAID shares the token codec (its own options do not apply).
    db.flush("c").unwrap();
    s.execute("CREATE INDEX ON c USING plaid WITH (centroids = 4096)").unwrap();
    let k = db.token_codec("c").unwrap().unwrap();
    let shown = format!("{:?}", s.execute("SHOW INDEXES ON c").unwrap());
    assert!(
        shown.contains(&format!("shares the collection's token codec: {} centroids, 2 bits", k.centroids)),
        "{shown}"
    );
}

#[test]
fn codec_centroids_sets_the_codec_size_and_is_refused_without_codes() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let s = maxsimdb::sql::Session::new(db.clone());
    s.execute("CREATE COLLECTION c WITH (dim = 32, tokens = 'plaid2', codec_centroids = 40)").unwrap();
    assert_eq!(db.describe("c").unwrap().vectors.codec_centroids, Some(40));
    let err = s.execute("CREATE COLLECTION e WITH (dim = 32, codec_centroids = 40)").unwrap_err();
    assert!(err.to_string().contains("tokens = 'plaid2'"), "{err}");
    let err = s
        .execute("CREATE COLLECTION e WITH (dim = 32, tokens = 'plaid2', codec_centroids = 70000)")
        .unwrap_err();
    assert!(err.to_string().contains("between 1 and 65536"), "{err}");
    let mut rng = Rng::new(8);
    let topics = rng.unit_vectors(TOPICS, D);
    db.insert("c", &corpus(&mut rng, &topics, 0, 400)).unwrap();
    db.flush("c").unwrap();
    let info = db.token_codec("c").unwrap().expect("trained at the flush");
    // PLAID's rule would give 2^⌊log₂(16·√N)⌋ (1,024 for these ~6,000 tokens).
    assert_eq!(info.centroids, 40);
    assert!(maxsimdb::index::plaid::default_centroids(info.trained_tokens as usize) > 40);
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}
