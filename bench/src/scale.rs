//! `scale` suite: synthetic clustered token vectors, approximate search vs exact.
//!
//! Generator (documented so figures can be reproduced): `T = max(16, docs / 50)` topic
//! vectors uniform on the unit sphere in d = 128; document `i` has `U[32, 300]` tokens, each
//! drawn from its main topic `i mod T` (p = 0.6) or one of two random secondary topics
//! (p = 0.25, 0.15), as `norm(topic + g/√d)` with `g ~ N(0, I)` (cos to the topic ≈ 0.7).
//! A query takes 32 random tokens of a random document, each `norm(token + 0.5·g/√d)`.
//! Seeds are fixed. Candidate generators here are the PLAID codec/search and MUVERA FDEs
//! (brute-force FDE dot products, then exact rerank of the top 200) as standalone indexes;
//! they are not yet wired into the database (no HNSW, no planner).

use std::time::Instant;

use maxsimdb::index::muvera::{Muvera, MuveraParams};
use maxsimdb::index::plaid::{Codec, CodecParams, PlaidIndex, SearchParams};
use maxsimdb::scoring::{DocRef, PreparedQuery, Scored, TopK};
use maxsimdb::testing::{normalize, Rng};
use rayon::prelude::*;
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

fn corpus(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let t = (n / 50).max(16);
    let mut rng = Rng::new(seed);
    let topics = rng.unit_vectors(t, DIM);
    (0..n)
        .map(|i| {
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
                d.extend(token(&mut rng, &topics[tp * DIM..(tp + 1) * DIM], 1.0));
            }
            d
        })
        .collect()
}

fn exact_top(q: &[f32], docs: &[Vec<f32>], k: usize) -> Vec<u32> {
    let pq = PreparedQuery::new(q, DIM, None).expect("query");
    let top = docs
        .par_iter()
        .enumerate()
        .fold(
            || TopK::new(k),
            |mut t, (i, d)| {
                t.push(Scored { score: pq.maxsim(DocRef::F32(d)), row: i as u64 });
                t
            },
        )
        .reduce(|| TopK::new(k), TopK::merge);
    top.into_sorted().into_iter().map(|s| s.row as u32).collect()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

pub fn run(args: &Args) -> Result<(), String> {
    let n: usize = args.get("docs", 10_000)?;
    let nq: usize = args.get("queries", 50)?;
    let nbits: u8 = args.get("nbits", 2)?;
    let k = 10;
    let t = Instant::now();
    let docs = corpus(n, 17);
    let tokens: usize = docs.iter().map(|d| d.len() / DIM).sum();
    eprintln!("generated {n} documents, {tokens} token vectors in {:.1} s", t.elapsed().as_secs_f64());
    let mut rng = Rng::new(99);
    let queries: Vec<Vec<f32>> = (0..nq)
        .map(|_| {
            let d = &docs[rng.below(n as u64) as usize];
            let len = d.len() / DIM;
            (0..32)
                .flat_map(|_| {
                    let j = rng.below(len as u64) as usize;
                    token(&mut rng, &d[j * DIM..(j + 1) * DIM], 0.5)
                })
                .collect()
        })
        .collect();
    let t = Instant::now();
    let truth: Vec<Vec<u32>> = queries.iter().map(|q| exact_top(q, &docs, k)).collect();
    let exact_ms = t.elapsed().as_secs_f64() * 1e3 / nq as f64;
    eprintln!("exact: {exact_ms:.0} ms/query");

    // PLAID codec + index.
    let centroids: usize = args.get("centroids", 4096)?;
    let t = Instant::now();
    let flat: Vec<f32> = docs.iter().flatten().copied().collect();
    let codec =
        Codec::train(&flat, DIM, CodecParams { nbits, centroids: Some(centroids), ..CodecParams::default() })
            .map_err(|e| e.to_string())?;
    drop(flat);
    let refs: Vec<&[f32]> = docs.iter().map(Vec::as_slice).collect();
    let index = PlaidIndex::build(codec, &refs);
    let build_s = t.elapsed().as_secs_f64();
    eprintln!("PLAID build: {build_s:.1} s");
    let mut params = SearchParams::for_k(k);
    params.ncells = args.get("ncells", params.ncells)?;
    params.ndocs = args.get("ndocs", params.ndocs)?;
    params.centroid_threshold = args.get("threshold", params.centroid_threshold)?;
    // PLAID candidates, exact rerank on the stored (here: original f32) vectors — what the
    // database does, since its segments keep the vectors.
    let (mut lat, mut recall, mut stages) = (Vec::new(), 0.0, [0usize; 3]);
    let wall = Instant::now();
    for (q, want) in queries.iter().zip(&truth) {
        let t = Instant::now();
        let (cands, st) = index.candidates(q, k, params);
        let pq = PreparedQuery::new(q, DIM, None).map_err(|e| e.to_string())?;
        let top = cands
            .par_iter()
            .fold(
                || TopK::new(k),
                |mut t, &i| {
                    t.push(Scored { score: pq.maxsim(DocRef::F32(&docs[i])), row: i as u64 });
                    t
                },
            )
            .reduce(|| TopK::new(k), TopK::merge);
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        stages.iter_mut().zip(st).for_each(|(a, b)| *a += b);
        recall +=
            top.into_sorted().iter().filter(|s| want.contains(&(s.row as u32))).count() as f64 / k as f64;
    }
    let qps = nq as f64 / wall.elapsed().as_secs_f64();
    // PLAID with the rerank on decompressed vectors (ColBERTv2 / next-plaid style).
    let mut dec_recall = 0.0;
    for (q, want) in queries.iter().zip(&truth) {
        let (hits, _) = index.search(q, k, params);
        dec_recall += hits.iter().filter(|h| want.contains(&h.1)).count() as f64 / k as f64;
    }

    // MUVERA FDEs, brute force over FDEs, exact rerank of the top 200.
    let t = Instant::now();
    let m = Muvera::new(MuveraParams::new(DIM)).map_err(|e| e.to_string())?;
    let fdes: Vec<Vec<f32>> = docs.par_iter().map(|d| m.encode_doc(d)).collect();
    let muvera_build_s = t.elapsed().as_secs_f64();
    let (mut mu_recall, mut mu_lat) = (0.0, Vec::new());
    for (q, want) in queries.iter().zip(&truth) {
        let t = Instant::now();
        let fq = m.encode_query(q);
        let mut cand: Vec<(f32, usize)> = fdes
            .par_iter()
            .enumerate()
            .map(|(i, f)| (f.iter().zip(&fq).map(|(a, b)| a * b).sum::<f32>(), i))
            .collect();
        let nth = 199.min(cand.len() - 1);
        cand.select_nth_unstable_by(nth, |a, b| b.0.total_cmp(&a.0));
        let pq = PreparedQuery::new(q, DIM, None).map_err(|e| e.to_string())?;
        let mut top = TopK::new(k);
        for &(_, i) in cand.iter().take(200) {
            top.push(Scored { score: pq.maxsim(DocRef::F32(&docs[i])), row: i as u64 });
        }
        mu_lat.push(t.elapsed().as_secs_f64() * 1e3);
        mu_recall +=
            top.into_sorted().iter().filter(|s| want.contains(&(s.row as u32))).count() as f64 / k as f64;
    }
    let bpt = index.bytes_per_token();
    let out = json!({
        "docs": n,
        "token_vectors": tokens,
        "generator": "clustered topics, see bench/src/scale.rs",
        "method": format!("plaid nbits={nbits} centroids={centroids} ncells={} ndocs={} t_cs={}", params.ncells, params.ndocs, params.centroid_threshold),
        "recall_at_10_vs_exact": recall / nq as f64,
        "recall_at_10_decompressed_rerank": dec_recall / nq as f64,
        "p50_ms": pct(&mut lat.clone(), 0.5),
        "p99_ms": pct(&mut lat, 0.99),
        "qps": qps,
        "candidates_per_stage": stages.iter().map(|s| *s as f64 / nq as f64).collect::<Vec<_>>(),
        "bytes_per_token_vector": bpt,
        "total_bytes_per_token": bpt + 2.0 * DIM as f64,
        "build_s": build_s,
        "exact_ms_per_query": exact_ms,
        "muvera_recall_at_10": mu_recall / nq as f64,
        "muvera_p50_ms": pct(&mut mu_lat, 0.5),
        "muvera_build_s": muvera_build_s,
        "peak_rss_mb": peak_rss_mb(),
    });
    report(args, "scale (standalone PLAID + MUVERA vs exact MaxSim)", &out);
    Ok(())
}
