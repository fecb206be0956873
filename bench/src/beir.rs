//! `beir` suite: embed a BEIR dataset with the in-process model, index it, and run every
//! query in each mode (`maxsim`, `dense`, and `plaid` = PLAID candidates reranked exactly
//! on the stored vectors). Document text is title + " " + text.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use maxsimdb::index::plaid::{Codec, CodecParams, PlaidIndex, SearchParams};
use maxsimdb::{
    CollectionSpec, ColumnType, Database, DocId, Document, Dtype, EmbeddingSpec, Filter, SearchRequest,
    VectorSpec,
};
use serde_json::{json, Value};

use crate::metrics::{ndcg_at, recall_at};
use crate::{report, Args};

fn read_jsonl(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| e.to_string()))
        .collect()
}

fn read_qrels(path: &Path) -> Result<HashMap<String, HashMap<String, i32>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut q: HashMap<String, HashMap<String, i32>> = HashMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() >= 3 {
            q.entry(f[0].to_string()).or_default().insert(f[1].to_string(), f[2].trim().parse().unwrap_or(0));
        }
    }
    Ok(q)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

pub fn run(args: &Args) -> Result<(), String> {
    let data = PathBuf::from(args.opt("data").unwrap_or("../shared/datasets/scifact"));
    let model = args.opt("model").unwrap_or("all-MiniLM-L6-v2").to_string();
    let max_docs: usize = args.get("docs", usize::MAX)?;
    let max_queries: usize = args.get("queries", usize::MAX)?;
    let modes: Vec<String> =
        args.opt("modes").unwrap_or("maxsim,dense").split(',').map(str::to_string).collect();
    let corpus = read_jsonl(&data.join("corpus.jsonl"))?;
    let queries = read_jsonl(&data.join("queries.jsonl"))?;
    let qrels = read_qrels(&data.join("qrels.tsv"))?;
    let e = |e: maxsimdb::Error| e.to_string();

    // `--db PATH` keeps the database; an existing one is reused (no re-indexing).
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = args.opt("db").map_or_else(|| tmp.path().join("beir.msdb"), Into::into);
    let reuse = path.join("catalog.sqlite").exists();
    let db = Database::open(&path).map_err(e)?;
    let mut index_s = 0.0;
    if !reuse {
        let spec = CollectionSpec::new("beir", VectorSpec::new(0).pooled("model", 0).dtype(Dtype::F16))
            .column("title", ColumnType::Text)
            .column("text", ColumnType::Text)
            .embedding(EmbeddingSpec::new(model.clone(), &["title", "text"]));
        db.create_collection(&spec).map_err(e)?;
        let docs: Vec<Document> = corpus
            .iter()
            .take(max_docs)
            .map(|d| {
                Document::new(d["_id"].as_str().unwrap_or_default())
                    .set("title", d["title"].as_str().unwrap_or_default())
                    .set("text", d["text"].as_str().unwrap_or_default())
            })
            .collect();
        let total = docs.len();
        let started = Instant::now();
        db.import_text("beir", docs, |n| {
            eprint!(
                "\rembedding + indexing: {n}/{total} documents ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        })
        .map_err(e)?;
        db.flush("beir").map_err(e)?;
        index_s = started.elapsed().as_secs_f64();
        eprintln!();
    }
    let stats = db.stats("beir").map_err(e)?;

    // PLAID over the stored token vectors (built in memory here; candidates are reranked
    // exactly inside the database with an id filter).
    let plaid = if modes.iter().any(|m| m == "plaid") {
        let t = Instant::now();
        let ids: Vec<String> =
            corpus.iter().take(max_docs).map(|d| d["_id"].as_str().unwrap_or_default().to_string()).collect();
        let vecs: Vec<Vec<f32>> = ids
            .iter()
            .map(|id| {
                db.get("beir", &DocId::from(id.as_str())).map(|d| d.map(|d| d.tokens).unwrap_or_default())
            })
            .collect::<Result<_, _>>()
            .map_err(e)?;
        let dim = db.describe("beir").map_err(e)?.vectors.token_dim;
        let flat: Vec<f32> = vecs.iter().flatten().copied().collect();
        let centroids: usize = args.get("plaid-centroids", 4096)?;
        let nbits: u8 = args.get("plaid-nbits", 2)?;
        let codec = Codec::train(
            &flat,
            dim,
            CodecParams { nbits, centroids: Some(centroids), ..CodecParams::default() },
        )
        .map_err(e)?;
        drop(flat);
        let refs: Vec<&[f32]> = vecs.iter().map(Vec::as_slice).collect();
        let index = PlaidIndex::build(codec, &refs);
        eprintln!(
            "PLAID index ({nbits}-bit, {centroids} centroids) built in {:.0} s, {:.1} B/token",
            t.elapsed().as_secs_f64(),
            index.bytes_per_token()
        );
        Some((index, ids, t.elapsed().as_secs_f64()))
    } else {
        None
    };

    let mut out_modes = serde_json::Map::new();
    let judged: Vec<&Value> = queries
        .iter()
        .filter(|q| qrels.contains_key(q["_id"].as_str().unwrap_or_default()))
        .take(max_queries)
        .collect();
    for mode in &modes {
        let mut ndcg = 0.0;
        let mut recall = 0.0;
        let mut lat = Vec::with_capacity(judged.len());
        let t_all = Instant::now();
        for q in &judged {
            let text = q["text"].as_str().unwrap_or_default();
            let t = Instant::now();
            let req = match mode.as_str() {
                "maxsim" => SearchRequest::maxsim_text(text),
                "dense" => SearchRequest::dense_text("model", text),
                "plaid" => {
                    let (index, ids, _) = plaid.as_ref().ok_or("plaid index missing")?;
                    let enc = db.encoder(&model).map_err(e)?;
                    let q = enc.encode_queries(&[text]).map_err(e)?.remove(0);
                    let (cands, _) = index.candidates(&q, 100, SearchParams::for_k(100));
                    let allowed: Vec<DocId> = cands.iter().map(|&i| DocId::from(ids[i].as_str())).collect();
                    SearchRequest::maxsim(q).filter(Filter::ids(&allowed))
                }
                other => {
                    return Err(format!("mode '{other}' is not available yet (modes: maxsim, dense, plaid)"))
                }
            };
            let hits = db.search("beir", &req.limit(100)).map_err(e)?;
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            let ranking: Vec<String> = hits.iter().map(|h| h.id.to_string()).collect();
            let rel = &qrels[q["_id"].as_str().unwrap_or_default()];
            ndcg += ndcg_at(&ranking, rel, 10);
            recall += recall_at(&ranking, rel, 100);
        }
        let n = judged.len().max(1) as f64;
        let wall = t_all.elapsed().as_secs_f64();
        lat.sort_by(f64::total_cmp);
        out_modes.insert(
            mode.clone(),
            json!({
                "ndcg_at_10": ndcg / n,
                "recall_at_100": recall / n,
                "p50_ms": percentile(&lat, 0.5),
                "p99_ms": percentile(&lat, 0.99),
                "qps": judged.len() as f64 / wall,
                "queries": judged.len(),
            }),
        );
        eprintln!("{mode}: nDCG@10 {:.4}", ndcg / n);
    }
    let mut out = json!({
        "dataset": data.display().to_string(),
        "model": model,
        "docs": stats.docs,
        "token_vectors": stats.segment_tokens,
        "index_s": index_s,
        "embed_tokens_per_s": if reuse { 0.0 } else { stats.segment_tokens as f64 / index_s },
        "reused_database": reuse,
        "bytes_per_token_vector": stats.segment_bytes as f64 / stats.segment_tokens.max(1) as f64,
        "modes": Value::Object(out_modes),
    });
    if let Some((index, _, build_s)) = &plaid {
        out["plaid_build_s"] = json!(build_s);
        out["plaid_bytes_per_token"] = json!(index.bytes_per_token());
    }
    report(args, "beir", &out);
    Ok(())
}
