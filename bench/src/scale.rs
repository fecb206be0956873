//! `scale` suite: synthetic clustered token vectors in a database, approximate search vs
//! exact.
//!
//! Generator (documented so figures can be reproduced): `T = max(16, docs / 50)` topic
//! vectors uniform on the unit sphere in d = 128; document `i` has `U[32, 300]` tokens, each
//! drawn from its main topic `i mod T` (p = 0.6) or one of two random secondary topics
//! (p = 0.25, 0.15), as `norm(topic + g/√d)` with `g ~ N(0, I)` (cos to the topic ≈ 0.7).
//! A query takes 32 random tokens of a random document, each `norm(token + 0.5·g/√d)`.
//! Seeds are fixed.
//!
//! The documents are generated in batches and inserted into a database (f16 vectors, a mean
//! pooled vector; `--db PATH` keeps it, default a temporary directory), so memory stays
//! bounded. The truth is the database's exact MaxSim ([`Plan::Exact`]); the PLAID index is
//! built with [`Database::create_plaid_index`] (train on a sample, rewrite the segments
//! with codes) and searched with [`Plan::Plaid`], as a user would. `--muvera true` then
//! also builds the database's MUVERA index ([`Database::create_muvera_index`], default
//! options: FDEs in an HNSW graph per segment) and measures [`Plan::Muvera`] (200
//! candidates reranked exactly) against the same truth.
//!
//! `--tokens plaid2` (or `plaid1`, `plaid4`) stores the tokens as codes only (the
//! collection's codec, trained at the first flush; the PLAID index shares it). The truth is
//! then exact MaxSim over the original f32 vectors, regenerated from the seed and scored
//! streaming (never stored), and `exact_codes_recall_at_10` says what exact search over
//! the stored codes keeps of it.
//!
//! `--chart FILE` sweeps PLAID's `ncells` (1, 2, 4) × `ndocs` (128 … 4,096) on the same
//! queries (JSON field `sweep`) and writes an SVG of recall@10 against p50 latency, with
//! exact search and, when the `next-plaid` feature is on, next-plaid's point.

use std::time::Instant;

use maxsimdb::index::plaid::SearchParams;
use maxsimdb::testing::{normalize, Rng};
use maxsimdb::{
    CollectionSpec, Database, Document, Dtype, MuveraOptions, PlaidOptions, Plan, SearchRequest, VectorSpec,
};
use serde_json::json;

use crate::{report, Args};

const DIM: usize = 128;

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn token(rng: &mut Rng, center: &[f32], noise: f32) -> Vec<f32> {
    let s = noise / (DIM as f32).sqrt();
    let mut v: Vec<f32> = center.iter().map(|c| c + s * rng.normal()).collect();
    normalize(&mut v);
    v
}

/// The documented generator, one document at a time.
struct Corpus {
    rng: Rng,
    topics: Vec<f32>,
    t: usize,
    i: usize,
}

impl Corpus {
    fn new(n: usize, seed: u64) -> Self {
        let t = (n / 50).max(16);
        let mut rng = Rng::new(seed);
        let topics = rng.unit_vectors(t, DIM);
        Self { rng, topics, t, i: 0 }
    }

    /// The next `count` documents, generated in parallel and identical to `count` calls of
    /// a sequential generator: a document takes `3 + len · (1 + 2·d)` draws (its length,
    /// two secondary topics, then per token a topic draw and `d` Box–Muller normals of two
    /// draws each), so each document's start in the stream is found by reading its length
    /// and skipping the rest ([`Rng::skip`]).
    fn next_batch(&mut self, count: usize) -> Vec<Vec<f32>> {
        self.next_batch_where(count, |_| true)
    }

    /// [`Corpus::next_batch`], generating only the documents `keep` selects (by index;
    /// the others come back empty): a reused database needs only its query documents.
    fn next_batch_where(&mut self, count: usize, keep: impl Fn(usize) -> bool + Sync) -> Vec<Vec<f32>> {
        use rayon::prelude::*;
        let starts: Vec<(usize, Rng)> = (0..count)
            .map(|j| {
                let start = self.rng.clone();
                let len = 32 + self.rng.below(269);
                self.rng.skip(2 + len * (1 + 2 * DIM as u64));
                (self.i + j, start)
            })
            .collect();
        self.i += count;
        let (topics, t) = (&self.topics, self.t);
        starts
            .into_par_iter()
            .map(|(i, mut rng)| if keep(i) { Self::doc(&mut rng, topics, t, i) } else { Vec::new() })
            .collect()
    }

    fn doc(rng: &mut Rng, topics: &[f32], t: usize, i: usize) -> Vec<f32> {
        let len = 32 + rng.below(269) as usize;
        let (t1, t2) = (rng.below(t as u64) as usize, rng.below(t as u64) as usize);
        let mut d = Vec::with_capacity(len * DIM);
        for _ in 0..len {
            let u = rng.unit();
            let tp = if u < 0.6 {
                i % t
            } else if u < 0.85 {
                t1
            } else {
                t2
            };
            d.extend(token(rng, &topics[tp * DIM..(tp + 1) * DIM], 1.0));
        }
        d
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p).map_or(0, |rd| {
        rd.flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => dir_bytes(&e.path()),
                _ => e.metadata().map_or(0, |m| m.len()),
            })
            .sum()
    })
}

fn mean(d: &[f32]) -> Vec<f32> {
    let mut m = vec![0f32; DIM];
    for r in d.chunks_exact(DIM) {
        m.iter_mut().zip(r).for_each(|(a, b)| *a += b);
    }
    normalize(&mut m);
    m
}

pub fn run(args: &Args) -> Result<(), String> {
    let e = |e: maxsimdb::Error| e.to_string();
    let n: usize = args.get("docs", 10_000)?;
    let nq: usize = args.get("queries", 50)?;
    let nbits: u8 = args.get("nbits", 2)?;
    let centroids: usize = args.get("centroids", 4096)?;
    let with_muvera = args.get("muvera", false)?;
    let storage: String = args.get("tokens", "f16".to_string())?;
    let codes = crate::token_codes(&storage)?;
    let nbits = codes.unwrap_or(nbits);
    let batch: usize = args.get("batch", 2000)?;
    // `--topics-of N`: the first `--docs` documents of the `N`-document corpus (its topic
    // structure, `N / 50` topics): a smaller run in the regime of a bigger one.
    let topics_of: usize = args.get("topics-of", n)?;
    if topics_of < n {
        return Err(format!("--topics-of {topics_of} must be at least --docs {n}"));
    }
    let k = 10;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path: std::path::PathBuf =
        args.get("db", tmp.path().join("scale.msdb").display().to_string())?.into();
    let reuse = path.exists();
    let db = Database::open(&path).map_err(e)?;

    // Queries come from documents chosen up front (the corpus is never held in memory).
    let mut rng = Rng::new(99);
    let qdocs: Vec<usize> = (0..nq).map(|_| rng.below(n as u64) as usize).collect();
    let mut queries: Vec<Vec<f32>> = vec![Vec::new(); nq];
    let t = Instant::now();
    let mut tokens = 0usize;
    if !reuse {
        let mut vectors = VectorSpec::new(DIM).pooled("mean", DIM).dtype(Dtype::F16);
        if let Some(b) = codes {
            vectors = vectors.codes(b);
            // `--codec-centroids K`: the codec's size (default: PLAID's rule on the
            // tokens of the first flush, i.e. of the first `--batch`).
            if let Some(k) = args.opt("codec-centroids") {
                vectors = vectors.codec_centroids(k.parse().map_err(|_| format!("--codec-centroids {k}"))?);
            }
        }
        db.create_collection(&CollectionSpec::new("scale", vectors)).map_err(e)?;
    }
    let mut gen = Corpus::new(topics_of, 17);
    let mut done = 0;
    while done < n {
        let count = (done + batch).min(n) - done;
        let docs: Vec<Vec<f32>> =
            if reuse { gen.next_batch_where(count, |i| qdocs.contains(&i)) } else { gen.next_batch(count) };
        for (j, d) in docs.iter().enumerate() {
            tokens += d.len() / DIM;
            for (qi, &qd) in qdocs.iter().enumerate() {
                if qd == done + j {
                    let len = d.len() / DIM;
                    queries[qi] = (0..32)
                        .flat_map(|_| {
                            let t = rng.below(len as u64) as usize;
                            token(&mut rng, &d[t * DIM..(t + 1) * DIM], 0.5)
                        })
                        .collect();
                }
            }
        }
        if !reuse {
            let batch_docs: Vec<Document> = docs
                .into_iter()
                .enumerate()
                .map(|(j, d)| Document::new(format!("d{}", done + j)).pooled("mean", mean(&d)).tokens(d))
                .collect();
            db.insert("scale", &batch_docs).map_err(e)?;
        }
        done = (done + batch).min(n);
        eprint!(
            "\rgenerated + inserted {done}/{n} documents ({:.0} s, peak RSS {:.0} MB)",
            t.elapsed().as_secs_f64(),
            peak_rss_mb()
        );
    }
    db.flush("scale").map_err(e)?;
    let ingest_s = t.elapsed().as_secs_f64();
    if reuse {
        let st = db.stats("scale").map_err(e)?;
        tokens = (st.segment_tokens + st.pending_tokens) as usize;
    }
    eprintln!("\n{n} documents, {tokens} token vectors");

    // Exact truth: the database's exact search (f16), or for codes, exact over the
    // original f32 vectors.
    // `--exact-queries N`: the database's exact search on the first N queries only (at a
    // million documents one exact query over codes takes tens of seconds).
    let n_exact: usize = args.get("exact-queries", nq)?;
    let t = Instant::now();
    let exact_db: Vec<Vec<String>> = queries
        .iter()
        .take(n_exact.max(1))
        .map(|q| {
            let hits = db.search("scale", &SearchRequest::maxsim(q.clone()).limit(k).plan(Plan::Exact))?;
            Ok(hits.into_iter().map(|h| h.id.to_string()).collect())
        })
        .collect::<maxsimdb::Result<_>>()
        .map_err(e)?;
    let exact_ms = t.elapsed().as_secs_f64() * 1e3 / exact_db.len() as f64;
    eprintln!("exact ({storage}): {exact_ms:.0} ms/query");
    let truth = if codes.is_some() { f32_truth(n, topics_of, &queries, k)? } else { exact_db.clone() };
    let recall_of = |got: &[Vec<String>]| -> f64 {
        got.iter()
            .zip(&truth)
            .map(|(g, w)| g.iter().filter(|id| w.contains(id)).count() as f64 / k as f64)
            .sum::<f64>()
            / got.len().max(1) as f64
    };
    let exact_codes_recall = recall_of(&exact_db);
    if codes.is_some() {
        eprintln!("exact over {storage} codes: recall@10 {exact_codes_recall:.3} against exact over f32");
    }

    // Dense (pooled-vector) query latency with no index: the baseline for the same figure
    // once the PLAID index exists (an index must not slow other query kinds down).
    let dense_p50 = |db: &Database| -> Result<f64, String> {
        let mut ms: Vec<f64> = Vec::new();
        for _ in 0..5 {
            for q in queries.iter().take(nq.min(30)) {
                let t = Instant::now();
                db.search("scale", &SearchRequest::dense("mean", mean(q)).limit(k).plan(Plan::Exact))
                    .map_err(e)?;
                ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        ms.sort_by(f64::total_cmp);
        Ok(ms[ms.len() / 2])
    };
    let dense_p50_no_index = dense_p50(&db)?;

    // VACUUM first (merges the ingest's segments into one, as a user loading a collection
    // would before CREATE INDEX; index builds themselves never rewrite segments), then the
    // PLAID index: a side file per segment.
    let t = Instant::now();
    if !reuse && args.get("compact", true)? {
        db.compact("scale").map_err(e)?;
    }
    let compact_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let had_index = db.indexes("scale").map_err(e)?.iter().any(|i| i.kind == "plaid" && i.ready);
    let info = match db.indexes("scale").map_err(e)?.into_iter().find(|i| i.kind == "plaid") {
        Some(i) if reuse && i.ready => i,
        _ => db
            .create_index(
                "scale",
                &maxsimdb::IndexSpec::Plaid(PlaidOptions {
                    nbits,
                    centroids: Some(centroids),
                    ..PlaidOptions::default()
                }),
                &mut |p| {
                    eprint!(
                        "\rPLAID index: {}/{} segments ({:.0} s)",
                        p.segments_done,
                        p.segments,
                        t.elapsed().as_secs_f64()
                    );
                },
            )
            .map_err(e)?,
    };
    eprintln!();
    let index_build_s = if had_index { 0.0 } else { t.elapsed().as_secs_f64() };
    let build_s = index_build_s + compact_s;
    let dense_p50_with_plaid = dense_p50(&db)?;
    eprintln!(
        "dense p50: {dense_p50_no_index:.2} ms without an index, {dense_p50_with_plaid:.2} ms with PLAID"
    );
    eprintln!("PLAID build: {build_s:.1} s ({} centroids)", info.centroids);
    let mut params = SearchParams::for_k(k);
    params.ncells = args.get("ncells", params.ncells)?;
    params.ndocs = args.get("ndocs", params.ndocs)?;
    params.centroid_threshold = args.get("threshold", params.centroid_threshold)?;

    // Reopen: what a fresh process pays before its first answer.
    db.close().map_err(e)?;
    let t = Instant::now();
    let db = Database::open(&path).map_err(e)?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let req = |q: &Vec<f32>| SearchRequest::maxsim(q.clone()).limit(k).plan(Plan::Plaid).plaid_params(params);
    let t = Instant::now();
    db.search("scale", &req(&queries[0])).map_err(e)?;
    let first_query_ms = t.elapsed().as_secs_f64() * 1e3;

    let (mut lat, mut recall, mut stages, mut stage_us) = (Vec::new(), 0.0, vec![0u64; 6], vec![0u64; 6]);
    // PLAID against the database's own exact search (over the stored representation), on
    // the queries that have it: what the approximate plan itself loses.
    let mut recall_vs_db = 0.0;
    let wall = Instant::now();
    for (qi, (q, want)) in queries.iter().zip(&truth).enumerate() {
        let t = Instant::now();
        let out = db.search_explained("scale", &req(q)).map_err(e)?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        if let Some(w) = exact_db.get(qi) {
            recall_vs_db +=
                out.hits.iter().filter(|h| w.contains(&h.id.to_string())).count() as f64 / k as f64;
        }
        stages.iter_mut().zip(&out.stages).for_each(|(a, s)| *a += s.docs);
        stage_us.iter_mut().zip(&out.stages).for_each(|(a, s)| *a += s.micros);
        recall += out.hits.iter().filter(|h| want.contains(&h.id.to_string())).count() as f64 / k as f64;
    }
    let qps = nq as f64 / wall.elapsed().as_secs_f64();
    // A second operating point in the same run: ColBERT's `ndocs 256` (fewer candidates).
    let fast = SearchParams { ndocs: 256, ..params };
    let (mut fast_recall, wall) = (0.0, Instant::now());
    for (q, want) in queries.iter().zip(&truth) {
        let hits = db.search("scale", &req(q).plaid_params(fast)).map_err(e)?;
        fast_recall += hits.iter().filter(|h| want.contains(&h.id.to_string())).count() as f64 / k as f64;
    }
    let fast_qps = nq as f64 / wall.elapsed().as_secs_f64();
    // `--chart FILE`: a sweep of PLAID's parameters (ncells × ndocs, while the index
    // exists: it is dropped below), each point recall@10 against the truth and p50
    // latency over the same queries, plus exact search; next-plaid's point on the same
    // axes when its feature is on.
    let chart = args.opt("chart").map(str::to_string);
    let mut sweep: Vec<crate::chart::Series> = Vec::new();
    let mut points = Vec::new();
    if chart.is_some() {
        for ncells in [1usize, 2, 4] {
            let mut line = Vec::new();
            for ndocs in [128usize, 256, 512, 1024, 2048, 4096] {
                let p = SearchParams { ncells, ndocs, ..params };
                let (mut lat, mut rec) = (Vec::new(), 0.0);
                for (q, want) in queries.iter().zip(&truth) {
                    let t = Instant::now();
                    let hits = db.search("scale", &req(q).plaid_params(p)).map_err(e)?;
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                    rec += hits.iter().filter(|h| want.contains(&h.id.to_string())).count() as f64 / k as f64;
                }
                let (p50, r) = (pct(&mut lat, 0.5), rec / nq as f64);
                eprintln!("sweep: ncells {ncells} ndocs {ndocs}: recall@10 {r:.3}, p50 {p50:.2} ms");
                points.push(json!({"ncells": ncells, "ndocs": ndocs, "recall_at_10": r, "p50_ms": p50}));
                line.push((format!("{ndocs}"), p50, r));
            }
            sweep.push((format!("PLAID ncells {ncells} (labels: ndocs)"), line));
        }
        let (mut lat, mut rec) = (Vec::new(), 0.0);
        for (q, want) in queries.iter().zip(&truth) {
            let t = Instant::now();
            let hits = db
                .search("scale", &SearchRequest::maxsim(q.clone()).limit(k).plan(Plan::Exact))
                .map_err(e)?;
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            rec += hits.iter().filter(|h| want.contains(&h.id.to_string())).count() as f64 / k as f64;
        }
        let (p50, r) = (pct(&mut lat, 0.5), rec / nq as f64);
        points.push(json!({"plan": "exact", "recall_at_10": r, "p50_ms": p50}));
        sweep.push((format!("exact ({storage})"), vec![("exact".into(), p50, r)]));
    }
    let index_bpt = info.bytes as f64 / tokens as f64;
    // Everything a reader needs: the live segments, the index side files and state files,
    // and the catalog (retired files awaiting their grace period are not counted).
    let st = db.stats("scale").map_err(e)?;
    let total_bytes =
        st.segment_bytes + st.index_bytes.iter().map(|(_, b)| b).sum::<u64>() + dir_bytes(&path)
            - dir_bytes(&path.join("segments"));
    // The same figure once more with the index dropped (same segments, same process):
    // separates what the index costs other queries from drift between the two runs above.
    let dense_p50_with_plaid_again = dense_p50(&db)?;
    let dense_p50_after_drop = if reuse || args.opt("db").is_some() {
        f64::NAN
    } else {
        // (Last use of the PLAID index in this run; a kept `--db` keeps it.)
        db.drop_index("scale", "plaid").map_err(e)?;
        dense_p50(&db)?
    };
    eprintln!(
        "dense p50: {dense_p50_with_plaid_again:.3} ms with PLAID, {dense_p50_after_drop:.3} ms after DROP INDEX"
    );
    let mut out = json!({
        "docs": n,
        "token_vectors": tokens,
        "generator": "clustered topics, see bench/src/scale.rs",
        "method": format!("database PLAID index nbits={nbits} centroids={} ncells={} ndocs={} t_cs={}; exact rerank on {}", info.centroids, params.ncells, params.ndocs, params.centroid_threshold, if codes.is_some() { format!("decoded {storage} codes (codes-only storage)") } else { "stored f16 vectors".into() }),
        "tokens": storage,
        "truth": if codes.is_some() { "exact MaxSim over the original f32 vectors" } else { "exact MaxSim over the stored f16 vectors" },
        "exact_codes_recall_at_10": exact_codes_recall,
        "recall_at_10_vs_exact": recall / nq as f64,
        "recall_at_10_vs_exact_stored": recall_vs_db / exact_db.len() as f64,
        "topics_of": topics_of,
        "p50_ms": pct(&mut lat.clone(), 0.5),
        "p99_ms": pct(&mut lat, 0.99),
        "qps": qps,
        "candidates_per_stage": stages.iter().map(|s| *s as f64 / nq as f64).collect::<Vec<_>>(),
        "ms_per_stage": stage_us.iter().map(|s| *s as f64 / 1e3 / nq as f64).collect::<Vec<_>>(),
        "bytes_per_token_vector": index_bpt,
        "total_bytes_per_token": total_bytes as f64 / tokens as f64,
        "build_s": build_s,
        "compact_s": compact_s,
        "index_build_s": index_build_s,
        "dense_p50_ms_no_index": dense_p50_no_index,
        "dense_p50_ms_with_plaid": dense_p50_with_plaid,
        "dense_p50_ms_with_plaid_again": dense_p50_with_plaid_again,
        "dense_p50_ms_after_drop_index": dense_p50_after_drop,
        "ingest_s": ingest_s,
        "open_ms": open_ms,
        "first_query_ms": first_query_ms,
        "exact_ms_per_query": exact_ms,
        "exact_queries": exact_db.len(),
        "ndocs256_qps": fast_qps,
        "ndocs256_recall_at_10_vs_exact": fast_recall / nq as f64,
        "reused_database": reuse,
        "peak_rss_mb": peak_rss_mb(),
    });
    if with_muvera {
        let t = Instant::now();
        let info = match db.indexes("scale").map_err(e)?.into_iter().find(|i| i.kind == "muvera") {
            Some(i) => i,
            None => db.create_muvera_index("scale", MuveraOptions::default()).map_err(e)?,
        };
        out["muvera_build_s"] = json!(t.elapsed().as_secs_f64());
        let (mut recall, mut lat, wall) = (0.0, Vec::new(), Instant::now());
        for (q, want) in queries.iter().zip(&truth) {
            let t = Instant::now();
            let req = SearchRequest::maxsim(q.clone()).limit(k).plan(Plan::Muvera);
            let hits = db.search("scale", &req).map_err(e)?;
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            recall += hits.iter().filter(|h| want.contains(&h.id.to_string())).count() as f64 / k as f64;
        }
        out["muvera_qps"] = json!(nq as f64 / wall.elapsed().as_secs_f64());
        out["muvera_recall_at_10"] = json!(recall / nq as f64);
        out["muvera_p50_ms"] = json!(pct(&mut lat.clone(), 0.5));
        out["muvera_p99_ms"] = json!(pct(&mut lat, 0.99));
        out["muvera_bytes_per_token_vector"] = json!(info.bytes as f64 / tokens as f64);
        out["muvera_method"] =
            json!(format!("database MUVERA index {}; 200 candidates per segment, exact rerank", info.params));
    }
    if !points.is_empty() {
        out["sweep"] = json!(points);
    }
    #[cfg(feature = "next-plaid")]
    if args.get("next-plaid", true)? {
        next_plaid(n, topics_of, &queries, &truth, nbits, &mut out)?;
    }
    if let Some(path) = chart {
        let mut peer = Vec::new();
        if let (Some(qps), Some(r)) =
            (out["next_plaid_qps"].as_f64(), out["next_plaid_recall_at_10"].as_f64())
        {
            peer.push(("next-plaid (1/QPS)".to_string(), 1e3 / qps, r));
        }
        let title = format!("scale: {n} documents, {nq} queries, {storage} tokens: recall against latency");
        crate::chart::recall_latency(&path, &title, &sweep, &peer)?;
        eprintln!("chart written to {path}");
    }
    report(args, "scale (database PLAID index vs exact MaxSim)", &out);
    Ok(())
}

/// Exact top-`k` of every query over the original f32 vectors, regenerated from the seed
/// and scored streaming (one document in memory per worker at a time).
fn f32_truth(n: usize, topics_of: usize, queries: &[Vec<f32>], k: usize) -> Result<Vec<Vec<String>>, String> {
    use maxsimdb::scoring::{DocRef, PreparedQuery};
    use rayon::prelude::*;
    let t = Instant::now();
    let prepared: Vec<PreparedQuery> = queries
        .iter()
        .map(|q| PreparedQuery::new(q, DIM, None))
        .collect::<maxsimdb::Result<_>>()
        .map_err(|e| e.to_string())?;
    let mut gen = Corpus::new(topics_of, 17);
    let mut best: Vec<Vec<(f32, usize)>> = vec![Vec::new(); queries.len()];
    let chunk = 4096;
    let mut done = 0;
    while done < n {
        let docs: Vec<Vec<f32>> = gen.next_batch((done + chunk).min(n) - done);
        let scores: Vec<Vec<f32>> =
            docs.par_iter().map(|d| prepared.iter().map(|q| q.maxsim(DocRef::F32(d))).collect()).collect();
        for (j, s) in scores.iter().enumerate() {
            for (qi, &v) in s.iter().enumerate() {
                best[qi].push((v, done + j));
            }
        }
        for b in &mut best {
            b.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            b.truncate(k);
        }
        done += docs.len();
        eprint!("\rf32 truth: {done}/{n} documents ({:.0} s)", t.elapsed().as_secs_f64());
    }
    eprintln!();
    Ok(best.into_iter().map(|b| b.into_iter().map(|(_, d)| format!("d{d}")).collect()).collect())
}

/// Run next-plaid on the same vectors (regenerated from the same seed, as f32) through the
/// helper crate `bench/next-plaid` (its own workspace: see its Cargo.toml) and merge its
/// figures into `out`.
#[cfg(feature = "next-plaid")]
fn next_plaid(
    n: usize,
    topics_of: usize,
    queries: &[Vec<f32>],
    truth: &[Vec<String>],
    nbits: u8,
    out: &mut serde_json::Value,
) -> Result<(), String> {
    use std::io::Write;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let io = |e: std::io::Error| e.to_string();
    let write_mats = |path: &std::path::Path, count: usize, mut item: Box<dyn FnMut() -> Vec<f32> + '_>| {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
        f.write_all(&(DIM as u32).to_le_bytes()).map_err(io)?;
        f.write_all(&(count as u32).to_le_bytes()).map_err(io)?;
        for _ in 0..count {
            let v = item();
            f.write_all(&((v.len() / DIM) as u32).to_le_bytes()).map_err(io)?;
            for x in v {
                f.write_all(&x.to_le_bytes()).map_err(io)?;
            }
        }
        f.flush().map_err(io)
    };
    let (docs_p, q_p, t_p) =
        (dir.path().join("docs.bin"), dir.path().join("q.bin"), dir.path().join("truth.bin"));
    let mut gen = Corpus::new(topics_of, 17);
    let mut batch: std::vec::IntoIter<Vec<f32>> = Vec::new().into_iter();
    write_mats(
        &docs_p,
        n,
        Box::new(move || {
            batch.next().unwrap_or_else(|| {
                batch = gen.next_batch(4096).into_iter();
                batch.next().unwrap_or_default()
            })
        }),
    )?;
    let mut qi = queries.iter();
    write_mats(&q_p, queries.len(), Box::new(move || qi.next().cloned().unwrap_or_default()))?;
    let mut f = std::fs::File::create(&t_p).map_err(io)?;
    for want in truth {
        f.write_all(&(want.len() as u32).to_le_bytes()).map_err(io)?;
        for id in want {
            let d: u32 = id.trim_start_matches('d').parse().map_err(|_| format!("bad id {id}"))?;
            f.write_all(&d.to_le_bytes()).map_err(io)?;
        }
    }
    eprintln!("next-plaid: building and running bench/next-plaid …");
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/next-plaid/Cargo.toml");
    let run = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["run", "--release", "--quiet", "--manifest-path", manifest, "--"])
        .args([&docs_p, &q_p, &t_p])
        .arg(nbits.to_string())
        .arg(dir.path().join("index"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(io)?;
    if !run.status.success() {
        return Err(format!("next-plaid helper failed ({})", run.status));
    }
    let line = String::from_utf8_lossy(&run.stdout);
    let np: serde_json::Value = serde_json::from_str(line.lines().last().unwrap_or(""))
        .map_err(|e| format!("next-plaid output: {e}"))?;
    for (k, v) in np.as_object().into_iter().flatten() {
        out[k] = v.clone();
    }
    let ours = out["qps"].as_f64().unwrap_or(0.0);
    let theirs = np["next_plaid_qps"].as_f64().unwrap_or(f64::NAN);
    out["qps_ratio_vs_next_plaid"] = serde_json::json!(ours / theirs);
    let fast = out["ndocs256_qps"].as_f64().unwrap_or(0.0);
    out["ndocs256_qps_ratio_vs_next_plaid"] = serde_json::json!(fast / theirs);
    let build = out["build_s"].as_f64().unwrap_or(f64::NAN);
    out["build_speedup_vs_next_plaid"] =
        serde_json::json!(np["next_plaid_build_s"].as_f64().unwrap_or(f64::NAN) / build);
    Ok(())
}

/// `codec` suite: how well the token codec describes the `scale` generator's vectors in the
/// regime of a `--topics-of N`-document corpus (default 1,000,000: 20,000 topics), trained
/// as a codes-only collection trains it — on the first `--docs` documents (default 20,000,
/// the 1M run's first batch) — for each codebook size of `--centroids-list`. Per size:
/// training time, encoding throughput, and on `--check-tokens` tokens of later documents
/// the share whose two-level assignment finds the exhaustive nearest centroid, and the
/// quantisation error (`1 − cos(x, decode(encode(x)))`) with either assignment.
pub fn codec(args: &Args) -> Result<(), String> {
    use maxsimdb::index::plaid::{self, Codec, CodecParams};
    let topics_of: usize = args.get("topics-of", 1_000_000)?;
    let n: usize = args.get("docs", 20_000)?;
    let check: usize = args.get("check-tokens", 20_000)?;
    let nbits: u8 = args.get("nbits", 2)?;
    let list: String = args.get("centroids-list", "16384,65536".to_string())?;
    let ks: Vec<usize> = list
        .split(',')
        .map(|k| k.trim().parse().map_err(|_| format!("--centroids-list {list}")))
        .collect::<Result<_, _>>()?;
    let mut gen = Corpus::new(topics_of, 17);
    let docs = gen.next_batch(n);
    let train: Vec<f32> = docs.into_iter().flatten().collect();
    let later: Vec<f32> = gen.next_batch(check / 100 + 1).into_iter().flatten().take(check * DIM).collect();
    let (ntrain, ncheck) = (train.len() / DIM, later.len() / DIM);
    eprintln!("{ntrain} training tokens ({} topics), {ncheck} check tokens", (topics_of / 50).max(16));
    let mut rows = Vec::new();
    for &k in &ks {
        // The database's rule (db/codec.rs): k-means on max(262,144, 16·K) tokens.
        let params = CodecParams {
            nbits,
            centroids: Some(k),
            sample: (16 * k).max(262_144),
            ..CodecParams::default()
        };
        let t = Instant::now();
        let codec = Codec::train(&train, DIM, params).map_err(|e| e.to_string())?;
        let train_s = t.elapsed().as_secs_f64();
        let _ = codec.assign_many(&later[..DIM]); // builds the two-level search
        let t = Instant::now();
        let (fast, bits) = codec.encode_many(&later);
        let encode_tps = ncheck as f64 / t.elapsed().as_secs_f64();
        let best = plaid::assign(codec.centroids(), DIM, &later);
        let same = fast.iter().zip(&best).filter(|(a, b)| a == b).count() as f64 / ncheck as f64;
        let err = |codes: &[u32], bits: &[u8]| {
            let rb = codec.residual_bytes();
            let mut out = vec![0f32; DIM];
            let mut sum = 0.0f64;
            for (i, x) in later.chunks_exact(DIM).enumerate() {
                codec.decode(codes[i], &bits[i * rb..(i + 1) * rb], &mut out);
                sum += 1.0 - f64::from(x.iter().zip(&out).map(|(a, b)| a * b).sum::<f32>());
            }
            sum / ncheck as f64
        };
        // `--shapes G:P,…`: other two-level shapes (cells, cells probed) on the same codec.
        let mut shapes = Vec::new();
        if let Some(list) = args.opt("shapes") {
            for sh in list.split(',') {
                // G:P or G:P:W (W: refinement window, 0 = none).
                let v: Vec<usize> = sh
                    .split(':')
                    .map(|x| x.parse().map_err(|_| format!("--shapes {sh}")))
                    .collect::<Result<_, _>>()?;
                let (g, p, w) = match v[..] {
                    [g, p] => (g, p, 0),
                    [g, p, w] => (g, p, w),
                    _ => return Err(format!("--shapes {sh}: G:P or G:P:W")),
                };
                let a = plaid::Assigner::with_shape(codec.centroids(), DIM, g, p).refine_window(w);
                let t = Instant::now();
                let got = a.assign(&later);
                let tps = ncheck as f64 / t.elapsed().as_secs_f64();
                let same = got.iter().zip(&best).filter(|(a, b)| a == b).count() as f64 / ncheck as f64;
                eprintln!(
                    "  shape {g}:{p}:{w}: finds nearest {same:.3}, {tps:.0} tokens/s (assignment only)"
                );
                shapes.push(json!({"cells": g, "probe": p, "window": w, "finds_nearest": same, "assign_tokens_per_s": tps}));
            }
        }
        let exact_bits: Vec<u8> =
            later.chunks_exact(DIM).zip(&best).flat_map(|(x, &c)| codec.quantize(c, x)).collect();
        let row = json!({
            "centroids": k,
            "train_s": train_s,
            "encode_tokens_per_s": encode_tps,
            "two_level_finds_nearest": same,
            "quant_error_two_level": err(&fast, &bits),
            "quant_error_exhaustive": err(&best, &exact_bits),
            "shapes": shapes,
        });
        eprintln!("{row}");
        rows.push(row);
    }
    let out = json!({
        "topics_of": topics_of, "training_docs": n, "training_tokens": ntrain, "check_tokens": ncheck,
        "nbits": nbits, "codecs": rows,
    });
    report(args, "codec", &out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_generation_equals_the_sequential_stream() {
        let mut seq = Corpus::new(100, 17);
        let want: Vec<Vec<f32>> = (0..40)
            .map(|i| {
                let (rng, topics, t) = (&mut seq.rng, &seq.topics, seq.t);
                Corpus::doc(rng, topics, t, i)
            })
            .collect();
        let mut par = Corpus::new(100, 17);
        let mut got = par.next_batch(15);
        got.extend(par.next_batch(25));
        assert_eq!(got, want);
    }
}
