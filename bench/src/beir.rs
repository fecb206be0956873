//! `beir` suite: embed a BEIR dataset with the in-process model, index it, and run every
//! query in each mode. Document text is title + " " + text. Modes:
//! - `maxsim`: exact MaxSim of the query's token vectors (`--plan auto`: the planner may
//!   use the PLAID index if one was built; `hybrid` and `hopfield` follow the same flag);
//! - `dense`: exact dot product of the model's pooled vectors;
//! - `plaid`: the database's PLAID index (`create_plaid_index`, `--plaid-nbits`,
//!   `--plaid-centroids`), candidates reranked exactly on the stored vectors;
//! - `bm25`: the database's full-text index over title + text (stop words, lowercasing;
//!   `--k1` (1.2), `--b` (0.75), `--stemmer snowball|porter|none` (snowball: English
//!   Porter2); `--modes bm25` alone embeds nothing: each document gets one placeholder
//!   token vector and no model is loaded);
//! - `hybrid`: `--hybrid-parts` (default `bm25,maxsim`) fused by `--fusion rrf` (k = 60)
//!   or `weighted` (equal weights), each part contributing its top 100;
//! - `hopfield`: MaxSim with Hopfield query refinement (`--beta`, default 20; `--alpha`,
//!   default 0.5; memory = the top 10 documents' token vectors);
//! - `hopfield_dense`: dense search with Hopfield refinement (same knobs).
//!
//! `--chart FILE` writes an SVG bar chart of nDCG@10 and recall@100 per mode.

use std::path::{Path, PathBuf};
use std::time::Instant;

use maxsimdb::eval::{ndcg_at, read_qrels, recall_at};
use maxsimdb::{
    CollectionSpec, ColumnType, Database, Document, Dtype, EmbeddingSpec, FullTextOptions, Fusion,
    PlaidOptions, Plan, Query, Refine, SearchRequest, VectorSpec,
};
use serde_json::{json, Value};

use crate::{report, Args};

pub(crate) fn read_jsonl(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| e.to_string()))
        .collect()
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
        args.opt("modes").unwrap_or("maxsim,dense,bm25,hybrid").split(',').map(str::to_string).collect();
    let corpus = read_jsonl(&data.join("corpus.jsonl"))?;
    let queries = read_jsonl(&data.join("queries.jsonl"))?;
    let e = |e: maxsimdb::Error| e.to_string();
    let qrels = read_qrels(&data.join("qrels.tsv")).map_err(e)?;

    // `--db PATH` keeps the database; an existing one is reused (no re-indexing).
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = args.opt("db").map_or_else(|| tmp.path().join("beir.msdb"), Into::into);
    let reuse = path.join("catalog.sqlite").exists();
    let db = Database::open(&path).map_err(e)?;
    let mut index_s = 0.0;
    // `--tokens plaid2` (plaid1, plaid4): codes-only token storage (the codec is trained
    // from the collection's first 262,144 tokens; VACUUM then encodes the f16 segments
    // written before it existed).
    let storage = args.opt("tokens").unwrap_or("f16").to_string();
    let codes = crate::token_codes(&storage)?;
    let text_only = modes.iter().all(|m| m == "bm25");
    if !reuse {
        let docs: Vec<Document> = corpus
            .iter()
            .take(max_docs)
            .map(|d| {
                Document::new(d["_id"].as_str().unwrap_or_default())
                    .set("title", d["title"].as_str().unwrap_or_default())
                    .set("text", d["text"].as_str().unwrap_or_default())
            })
            .collect();
        let text = |vectors: VectorSpec| {
            CollectionSpec::new("beir", vectors)
                .column("title", ColumnType::Text)
                .column("text", ColumnType::Text)
        };
        if text_only {
            // BM25 alone needs no model: one placeholder token vector per document.
            db.create_collection(&text(VectorSpec::new(1).dtype(Dtype::F32))).map_err(e)?;
            let docs: Vec<Document> = docs.into_iter().map(|d| d.tokens(vec![1.0])).collect();
            let started = Instant::now();
            db.insert("beir", &docs).map_err(e)?;
            db.flush("beir").map_err(e)?;
            index_s = started.elapsed().as_secs_f64();
        } else {
            let mut vectors = VectorSpec::new(0).pooled("model", 0).dtype(Dtype::F16);
            if let Some(b) = codes {
                vectors = vectors.codes(b);
            }
            let spec = text(vectors).embedding(EmbeddingSpec::new(model.clone(), &["title", "text"]));
            db.create_collection(&spec).map_err(e)?;
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
            if codes.is_some() {
                db.compact("beir").map_err(e)?;
            }
            index_s = started.elapsed().as_secs_f64();
            eprintln!();
        }
    }
    let stats = db.stats("beir").map_err(e)?;
    let mut extra = serde_json::Map::new();
    extra.insert("tokens".into(), json!(storage));
    extra.insert(
        "segment_bytes_per_token".into(),
        json!(stats.segment_bytes as f64 / stats.segment_tokens.max(1) as f64),
    );
    if let Some(k) = db.token_codec("beir").map_err(e)? {
        extra.insert("codec_centroids".into(), json!(k.centroids));
        extra.insert("codec_train_error".into(), json!(k.train_error));
    }

    // Indexes the modes need (built once; a reused database keeps them).
    let has = |kind: &str| -> Result<bool, String> {
        Ok(db.indexes("beir").map_err(e)?.iter().any(|i| i.kind == kind))
    };
    let wants = |m: &str| modes.iter().any(|x| x == m);
    if wants("plaid") && !has("plaid")? {
        let t = Instant::now();
        let nbits: u8 = args.get("plaid-nbits", 2)?;
        let centroids: usize = args.get("plaid-centroids", 4096)?;
        let info = db
            .create_plaid_index(
                "beir",
                PlaidOptions { nbits, centroids: Some(centroids), ..PlaidOptions::default() },
            )
            .map_err(e)?;
        let s = t.elapsed().as_secs_f64();
        eprintln!("PLAID index ({nbits}-bit, {} centroids) built in {s:.0} s", info.centroids);
        extra.insert("plaid_build_s".into(), json!(s));
        extra.insert(
            "plaid_bytes_per_token".into(),
            json!(info.bytes as f64 / stats.segment_tokens.max(1) as f64),
        );
    }
    let hybrid_parts: Vec<String> =
        args.opt("hybrid-parts").unwrap_or("bm25,maxsim").split(',').map(str::to_string).collect();
    let d = FullTextOptions::default();
    let bm25 = FullTextOptions {
        k1: args.get("k1", d.k1)?,
        b: args.get("b", d.b)?,
        stemmer: args.opt("stemmer").unwrap_or(&d.stemmer).to_string(),
        ..d
    };
    extra.insert("bm25".into(), json!({"k1": bm25.k1, "b": bm25.b, "stemmer": bm25.stemmer}));
    // A reused database whose full-text index has other options gets a new one.
    if let Some(old) = db.indexes("beir").map_err(e)?.into_iter().find(|i| i.kind == "fulltext") {
        let same = serde_json::from_str::<FullTextOptions>(&old.params)
            .is_ok_and(|o| (o.k1, o.b, &o.stemmer) == (bm25.k1, bm25.b, &bm25.stemmer));
        if !same {
            db.drop_index("beir", "fulltext").map_err(e)?;
        }
    }
    if (wants("bm25") || wants("hybrid")) && !has("fulltext")? {
        let t = Instant::now();
        let info = db.create_fulltext_index("beir", bm25.clone()).map_err(e)?;
        let s = t.elapsed().as_secs_f64();
        eprintln!("full-text index built in {s:.1} s ({} bytes)", info.bytes);
        extra.insert("fulltext_build_s".into(), json!(s));
        extra.insert("fulltext_bytes".into(), json!(info.bytes));
    }
    // MaxSim-based modes run exactly unless `--plan auto` (the planner then uses the PLAID
    // index when one exists).
    let plan = match args.opt("plan").unwrap_or("exact") {
        "exact" => Plan::Exact,
        "auto" => Plan::Auto,
        other => return Err(format!("unknown plan '{other}' (exact, auto)")),
    };
    let refine =
        Refine { beta: args.get("beta", 20.0)?, alpha: args.get("alpha", 0.5)?, ..Refine::default() };
    let fusion = match args.opt("fusion").unwrap_or("rrf") {
        "rrf" => Fusion::Rrf { k: 60.0 },
        "weighted" => Fusion::Weighted { weights: vec![1.0; hybrid_parts.len()] },
        other => return Err(format!("unknown fusion '{other}' (rrf, weighted)")),
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
            let part = |name: &str| -> Result<Query, String> {
                Ok(match name {
                    "bm25" => Query::Bm25 { text: text.to_string() },
                    "maxsim" => Query::MaxSimText { text: text.to_string() },
                    "dense" => Query::DenseText { field: "model".into(), text: text.to_string() },
                    other => return Err(format!("unknown hybrid part '{other}' (bm25, maxsim, dense)")),
                })
            };
            let req = match mode.as_str() {
                "maxsim" => SearchRequest::maxsim_text(text).plan(plan),
                "dense" => SearchRequest::dense_text("model", text),
                "plaid" => SearchRequest::maxsim_text(text).plan(Plan::Plaid),
                "bm25" => SearchRequest::bm25(text),
                "hybrid" => SearchRequest::hybrid(
                    hybrid_parts.iter().map(|p| part(p)).collect::<Result<_, _>>()?,
                    fusion.clone(),
                )
                .plan(plan),
                "hopfield" => SearchRequest::maxsim_text(text).refine(refine).plan(plan),
                "hopfield_dense" => SearchRequest::dense_text("model", text).refine(refine),
                other => {
                    return Err(format!(
                        "unknown mode '{other}' (modes: maxsim, dense, plaid, bm25, hybrid, hopfield, hopfield_dense)"
                    ))
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
        "hopfield_refine": { "beta": refine.beta, "alpha": refine.alpha, "top_k": refine.top_k },
        "hybrid": { "parts": hybrid_parts, "fusion": format!("{fusion:?}") },
        "plan": format!("{plan:?}"),
    });
    for (k, v) in extra {
        out[k] = v;
    }
    // `--chart FILE`: nDCG@10 and recall@100 per mode.
    if let Some(path) = args.opt("chart") {
        let rows: Vec<(String, f64, f64)> = modes
            .iter()
            .map(|m| {
                let r = &out["modes"][m];
                (
                    m.clone(),
                    r["ndcg_at_10"].as_f64().unwrap_or(0.0),
                    r["recall_at_100"].as_f64().unwrap_or(0.0),
                )
            })
            .collect();
        let name = data.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        crate::chart::modes(
            path,
            &format!("{name}: quality per mode ({model}, {} queries)", judged.len()),
            &rows,
        )?;
        eprintln!("chart written to {path}");
    }
    report(args, "beir", &out);
    Ok(())
}
