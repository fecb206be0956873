//! `binding` suite: the Rust half of the Python binding's overhead measurement.
//! `bindings/python/bench/overhead.py` writes the data to `--data DIR`, runs this suite on
//! it, and times the Python API on the same data in the same script; the ratio of the two
//! is the binding's cost. The work is the same on both sides: create a collection
//! (`dim` from `meta.json`, f16 tokens), insert the documents in batches of `batch`,
//! flush, then answer every query once with exact MaxSim, k results, one thread.
//!
//! Files (little-endian): `meta.json` `{dim, batch, k, query_tokens}`, `lens.u32` (tokens
//! per document), `tokens.f32` (all documents' token rows, row-major), `queries.f32`
//! (`query_tokens` rows per query). Writes `rust_top.json` (each query's ids, best first)
//! so the script can check that both sides returned the same documents.

use std::path::Path;
use std::time::Instant;

use maxsimdb::{CollectionSpec, Database, Document, Plan, SearchRequest, VectorSpec};
use serde_json::json;

use crate::{report, Args};

fn read_le<T: Copy>(path: &Path, from: fn([u8; 4]) -> T) -> Result<Vec<T>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() % 4 != 0 {
        return Err(format!(
            "{}: {} bytes is not a whole number of 4-byte values",
            path.display(),
            bytes.len()
        ));
    }
    Ok(bytes.chunks_exact(4).map(|c| from([c[0], c[1], c[2], c[3]])).collect())
}

pub fn run(args: &Args) -> Result<(), String> {
    let dir = Path::new(
        args.opt("data").ok_or("--data DIR (written by bindings/python/bench/overhead.py) is required")?,
    );
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("meta.json"))
            .map_err(|e| format!("{}: {e}", dir.join("meta.json").display()))?,
    )
    .map_err(|e| e.to_string())?;
    let field = |k: &str| meta[k].as_u64().map(|v| v as usize).ok_or(format!("meta.json: {k} missing"));
    let (dim, batch, k, qlen) = (field("dim")?, field("batch")?, field("k")?, field("query_tokens")?);
    let lens = read_le(&dir.join("lens.u32"), u32::from_le_bytes)?;
    let tokens = read_le(&dir.join("tokens.f32"), f32::from_le_bytes)?;
    let queries = read_le(&dir.join("queries.f32"), f32::from_le_bytes)?;
    let total: usize = lens.iter().map(|&n| n as usize).sum();
    if tokens.len() != total * dim || queries.is_empty() || queries.len() % (qlen * dim) != 0 {
        return Err("tokens.f32 / queries.f32 do not match lens.u32 and meta.json".into());
    }

    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let db = Database::open(scratch.path().join("rust.msdb")).map_err(|e| e.to_string())?;
    db.create_collection(&CollectionSpec::new("docs", VectorSpec::new(dim))).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let mut at = 0;
    for (b, chunk) in lens.chunks(batch.max(1)).enumerate() {
        let docs: Vec<Document> = chunk
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let n = n as usize * dim;
                let d = Document::new(format!("d{}", b * batch + i)).tokens(tokens[at..at + n].to_vec());
                at += n;
                d
            })
            .collect();
        db.insert("docs", &docs).map_err(|e| e.to_string())?;
    }
    db.flush("docs").map_err(|e| e.to_string())?;
    let insert_s = t.elapsed().as_secs_f64();

    let mut lat = Vec::new();
    let mut top = Vec::new();
    let t = Instant::now();
    for q in queries.chunks_exact(qlen * dim) {
        let s = Instant::now();
        let hits = db
            .search("docs", &SearchRequest::maxsim(q.to_vec()).limit(k).plan(Plan::Exact))
            .map_err(|e| e.to_string())?;
        lat.push(s.elapsed().as_secs_f64() * 1e3);
        top.push(hits.iter().map(|h| h.id.to_string()).collect::<Vec<_>>());
    }
    let search_s = t.elapsed().as_secs_f64();
    std::fs::write(dir.join("rust_top.json"), serde_json::to_vec(&top).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    lat.sort_by(f64::total_cmp);
    let p50 = lat[lat.len() / 2];
    let out = json!({
        "docs": lens.len(),
        "tokens": total,
        "dim": dim,
        "batch": batch,
        "insert_s": insert_s,
        "insert_docs_s": lens.len() as f64 / insert_s,
        "insert_tokens_s": total as f64 / insert_s,
        "queries": top.len(),
        "search_qps": top.len() as f64 / search_s,
        "search_p50_ms": p50,
    });
    report(args, "Rust API: insert and exact search (the binding suite's baseline)", &out);
    Ok(())
}
