//! Quick start: create a database, insert documents with token-level and pooled vectors,
//! flush, and run exact MaxSim, filtered and dense searches.
//!
//! `cargo run --release --example quickstart [PATH]`

use maxsimdb::testing::Rng;
use maxsimdb::{CollectionSpec, ColumnType, Database, Document, Filter, SearchRequest, VectorSpec};

fn main() -> maxsimdb::Result<()> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "quickstart.msdb".into());
    let _ = std::fs::remove_dir_all(&path);
    let db = Database::open(&path)?;
    let dim = 64;
    let spec = CollectionSpec::new("papers", VectorSpec::new(dim).pooled("mean", dim))
        .column("title", ColumnType::Text)
        .column("year", ColumnType::Integer);
    db.create_collection(&spec)?;

    // 1,000 documents of 20-120 random unit token vectors ("bring your own embeddings").
    let mut rng = Rng::new(42);
    let mut docs = Vec::new();
    for i in 0..1000 {
        let n = 20 + rng.below(100) as usize;
        let tokens = rng.unit_vectors(n, dim);
        let mut mean = vec![0f32; dim];
        for row in tokens.chunks_exact(dim) {
            mean.iter_mut().zip(row).for_each(|(m, x)| *m += x);
        }
        maxsimdb::testing::normalize(&mut mean);
        docs.push(
            Document::new(format!("paper-{i}"))
                .tokens(tokens)
                .pooled("mean", mean)
                .set("title", format!("Paper number {i}"))
                .set("year", 2000 + (i % 25) as i64),
        );
    }
    db.insert("papers", &docs)?;
    db.flush("papers")?;
    let stats = db.stats("papers")?;
    println!(
        "{} documents, {} token vectors in {} segment(s)",
        stats.docs, stats.segment_tokens, stats.segments
    );

    // A query made of 8 tokens of paper-7 plus noise finds paper-7 first.
    let target = &docs[7];
    let mut q: Vec<f32> = target.tokens[..8 * dim].iter().map(|x| x + 0.05 * rng.normal()).collect();
    for row in q.chunks_exact_mut(dim) {
        maxsimdb::testing::normalize(row);
    }
    println!("\nMaxSim top 3:");
    for h in db.search("papers", &SearchRequest::maxsim(q.clone()).limit(3))? {
        println!(
            "  {:<10} score {:.3}  {}",
            h.id.to_string(),
            h.score,
            h.get("title").map(ToString::to_string).unwrap_or_default()
        );
    }
    println!("\nMaxSim top 3 with year >= 2020:");
    for h in db.search("papers", &SearchRequest::maxsim(q).filter(Filter::gte("year", 2020)).limit(3))? {
        println!(
            "  {:<10} score {:.3}  year {}",
            h.id.to_string(),
            h.score,
            h.get("year").map(ToString::to_string).unwrap_or_default()
        );
    }
    println!("\nDense (pooled 'mean') top 3:");
    let mean = target.pooled[0].1.clone();
    for h in db.search("papers", &SearchRequest::dense("mean", mean).limit(3))? {
        println!("  {:<10} score {:.3}", h.id.to_string(), h.score);
    }
    db.close()?;
    println!("\ndatabase written to {path}/");
    Ok(())
}
