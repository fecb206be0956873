//! `kernel` suite: MaxSim kernel throughput vs a naive loop and the FMA roofline, and
//! exact search over a flushed 100k-document database.

use std::time::{Duration, Instant};

use half::f16;
use maxsimdb::scoring::{scalar, DocRef, PreparedQuery};
use maxsimdb::testing::Rng;
use maxsimdb::{CollectionSpec, Database, Document, Dtype, SearchRequest, VectorSpec};
use rayon::prelude::*;
use serde_json::json;

use crate::{report, roofline, Args};

const LQ: usize = 32;
const DIM: usize = 128;

/// Fast random unit vectors (uniform then normalised; direction is all that matters).
fn unit_rows(rng: &mut Rng, n: usize, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n * dim).map(|_| rng.unit() * 2.0 - 1.0).collect();
    for r in v.chunks_exact_mut(dim) {
        maxsimdb::testing::normalize(r);
    }
    v
}

/// Run `f` (which returns flops done) repeatedly for at least `min`; GFLOP/s.
fn rate(min: Duration, mut f: impl FnMut() -> f64) -> f64 {
    f();
    let t = Instant::now();
    let mut flops = 0.0;
    while t.elapsed() < min {
        flops += f();
    }
    flops / t.elapsed().as_secs_f64() / 1e9
}

pub fn run(args: &Args) -> Result<(), String> {
    let n_docs: usize = args.get("kernel-docs", 1500)?;
    let mut rng = Rng::new(1);
    let docs: Vec<Vec<f32>> = (0..n_docs)
        .map(|_| {
            let len = 64 + rng.below(193) as usize;
            unit_rows(&mut rng, len, DIM)
        })
        .collect();
    let docs16: Vec<Vec<f16>> = docs.iter().map(|d| d.iter().map(|&x| f16::from_f32(x)).collect()).collect();
    let q = PreparedQuery::new(&unit_rows(&mut rng, LQ, DIM), DIM, None).map_err(|e| e.to_string())?;
    let tokens: usize = docs.iter().map(|d| d.len() / DIM).sum();
    let flops_all = 2.0 * (LQ * DIM * tokens) as f64;
    let sec = Duration::from_secs(2);

    let gflops_f32 = rate(sec, || {
        docs.iter().map(|d| q.maxsim(DocRef::F32(d))).sum::<f32>();
        flops_all
    });
    let gflops_f16 = rate(sec, || {
        std::hint::black_box(docs16.iter().map(|d| q.maxsim(DocRef::F16(d))).sum::<f32>());
        flops_all
    });
    let all_threads = rate(sec, || {
        std::hint::black_box(docs16.par_iter().map(|d| q.maxsim(DocRef::F16(d))).sum::<f32>());
        flops_all
    });
    let naive_docs = &docs[..40.min(docs.len())];
    let qrows = unit_rows(&mut Rng::new(1), LQ, DIM);
    let naive = rate(sec, || {
        std::hint::black_box(naive_docs.iter().map(|d| scalar::maxsim(&qrows, d, DIM)).sum::<f32>());
        naive_docs.iter().map(|d| 2.0 * (LQ * d.len()) as f64).sum()
    });
    let (peak, peak_isa) = roofline::fma_peak_gflops();
    let gflops = gflops_f16;
    let mut out = json!({
        "isa": q.isa().name(),
        "threads": rayon::current_num_threads(),
        "gflops": gflops,
        "gflops_f32_docs": gflops_f32,
        "gflops_all_threads": all_threads,
        "naive_gflops": naive,
        "roofline_gflops": peak,
        "roofline_isa": peak_isa,
        "ratio_to_roofline": gflops / peak,
        "speedup_vs_naive": gflops / naive,
        "doc_tokens_per_s": gflops * 1e9 / (2.0 * (LQ * DIM) as f64),
    });
    if args.opt("skip-exact").is_none() {
        let exact = exact(args)?;
        out.as_object_mut().unwrap().extend(exact.as_object().unwrap().clone());
    }
    report(args, "kernel (Lq=32, d=128, doc lengths 64-256, f16 documents unless noted)", &out);
    Ok(())
}

/// Build (or reuse with `--db`) a flushed database of `--exact-docs` × 128 tokens × 128-d
/// f16 documents, reopen it, and time exact MaxSim queries.
fn exact(args: &Args) -> Result<serde_json::Value, String> {
    let n: usize = args.get("exact-docs", 100_000)?;
    let ntok: usize = args.get("exact-tokens", 128)?;
    let queries: usize = args.get("exact-queries", 10)?;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = args.opt("db").map_or_else(|| tmp.path().join("exact.msdb"), Into::into);
    let e = |e: maxsimdb::Error| e.to_string();
    let mut build_s = 0.0;
    if !path.exists() {
        let t = Instant::now();
        let db = Database::open(&path).map_err(e)?;
        db.create_collection(&CollectionSpec::new("docs", VectorSpec::new(DIM).dtype(Dtype::F16)))
            .map_err(e)?;
        let mut rng = Rng::new(7);
        let batch = maxsimdb::DEFAULT_FLUSH_THRESHOLD_TOKENS.div_ceil(ntok);
        let mut id = 0;
        while id < n {
            let m = batch.min(n - id);
            let docs: Vec<Document> = (id..id + m)
                .map(|i| Document::new(i.to_string()).tokens(unit_rows(&mut rng, ntok, DIM)))
                .collect();
            db.insert("docs", &docs).map_err(e)?;
            id += m;
            eprint!("\rbuilding exact database: {id}/{n} documents");
        }
        eprintln!();
        db.close().map_err(e)?;
        build_s = t.elapsed().as_secs_f64();
    }
    let t = Instant::now();
    let db = Database::open_read_only(&path).map_err(e)?;
    let stats = db.stats("docs").map_err(e)?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut rng = Rng::new(99);
    let req = |rng: &mut Rng| SearchRequest::maxsim(unit_rows(rng, LQ, DIM)).limit(10);
    let t = Instant::now();
    db.search("docs", &req(&mut rng)).map_err(e)?;
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut lat: Vec<f64> = (0..queries)
        .map(|_| {
            let r = req(&mut rng);
            let t = Instant::now();
            db.search("docs", &r).map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()
        .map_err(e)?;
    lat.sort_by(f64::total_cmp);
    let p50 = lat[lat.len() / 2];
    Ok(json!({
        "exact_docs": stats.docs,
        "exact_tokens": stats.segment_tokens,
        "exact_segments": stats.segments,
        "exact_build_s": build_s,
        "exact_open_ms": open_ms,
        "exact_first_query_ms": first_ms,
        "exact_p50_ms": p50,
        "exact_max_ms": lat[lat.len() - 1],
        "exact_docs_per_s": stats.docs as f64 / (p50 / 1e3),
    }))
}
