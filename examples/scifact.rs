//! The main job end to end: embed and index BEIR SciFact with the in-process model, then
//! answer a few of its queries with MaxSim (late interaction) and dense search.
//!
//! `cargo run --release --example scifact -- [--data DIR] [--docs N|all] [--db PATH]`
//! (run `scripts/get-model.sh` first, or use `scripts/quickstart.sh`, which does both).

use std::collections::HashMap;
use std::io::Write;
use std::time::Instant;

use maxsimdb::{CollectionSpec, ColumnType, Database, Document, EmbeddingSpec, SearchRequest, VectorSpec};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data = arg("--data").unwrap_or_else(|| "../shared/datasets/scifact".into());
    let docs_arg = arg("--docs").unwrap_or_else(|| "2000".into());
    let max_docs = if docs_arg == "all" { usize::MAX } else { docs_arg.parse()? };
    let path = arg("--db").unwrap_or_else(|| "scifact.msdb".into());
    let model = arg("--model").unwrap_or_else(|| "all-MiniLM-L6-v2".into());
    if let Err(e) = maxsimdb::embed::resolve_model(&model) {
        eprintln!("{e}\nfetch the model first: scripts/get-model.sh");
        std::process::exit(2);
    }
    let read = |f: &str| std::fs::read_to_string(format!("{data}/{f}"));
    let corpus: Vec<serde_json::Value> =
        read("corpus.jsonl")?.lines().take(max_docs).map(serde_json::from_str).collect::<Result<_, _>>()?;
    let queries: Vec<serde_json::Value> =
        read("queries.jsonl")?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let mut qrels: HashMap<String, Vec<String>> = HashMap::new();
    for line in read("qrels.tsv")?.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        qrels.entry(f[0].to_string()).or_default().push(f[1].to_string());
    }

    let _ = std::fs::remove_dir_all(&path);
    let db = Database::open(&path)?;
    let spec = CollectionSpec::new("scifact", VectorSpec::new(0).pooled("model", 0))
        .column("title", ColumnType::Text)
        .column("text", ColumnType::Text)
        .embedding(EmbeddingSpec::new(model, &["title", "text"]));
    db.create_collection(&spec)?;
    let total = corpus.len();
    let ids: std::collections::HashSet<String> =
        corpus.iter().map(|d| d["_id"].as_str().unwrap_or_default().to_string()).collect();
    let docs = corpus.iter().map(|d| {
        Document::new(d["_id"].as_str().unwrap_or_default())
            .set("title", d["title"].as_str().unwrap_or_default())
            .set("text", d["text"].as_str().unwrap_or_default())
    });
    let t = Instant::now();
    db.import_text("scifact", docs, |n| {
        let rate = n as f64 / t.elapsed().as_secs_f64();
        eprint!(
            "\rindexing SciFact: {n}/{total} documents ({rate:.1} docs/s, ~{:.0} s left)   ",
            (total - n) as f64 / rate
        );
        let _ = std::io::stderr().flush();
    })?;
    db.flush("scifact")?;
    let st = db.stats("scifact")?;
    eprintln!(
        "\nindexed {} documents, {} token vectors, in {:.0} s → {path}/",
        st.docs,
        st.segment_tokens,
        t.elapsed().as_secs_f64()
    );

    // Queries whose relevant document is in the indexed slice.
    let answerable = queries.iter().filter(|q| {
        qrels.get(q["_id"].as_str().unwrap_or_default()).is_some_and(|r| r.iter().any(|d| ids.contains(d)))
    });
    for q in answerable.take(3) {
        let text = q["text"].as_str().unwrap_or_default();
        let relevant = &qrels[q["_id"].as_str().unwrap_or_default()];
        println!("\nquery: {text}");
        for (mode, req) in [
            ("maxsim", SearchRequest::maxsim_text(text)),
            ("dense", SearchRequest::dense_text("model", text)),
        ] {
            let t = Instant::now();
            let hits = db.search("scifact", &req.limit(3))?;
            println!("  {mode} ({:.0} ms):", t.elapsed().as_secs_f64() * 1e3);
            for h in hits {
                let mark = if relevant.contains(&h.id.to_string()) { "✓" } else { " " };
                let title = h.get("title").map(ToString::to_string).unwrap_or_default();
                println!(
                    "   {mark} {:>6.3}  [{}] {}",
                    h.score,
                    h.id,
                    title.chars().take(90).collect::<String>()
                );
            }
        }
    }
    println!("\n✓ = judged relevant in SciFact's qrels");
    Ok(())
}
