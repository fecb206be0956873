//! Encoder throughput probe: `cargo run --release --example embed_speed [N] [BATCH]`.
use std::time::Instant;

fn main() -> maxsimdb::Result<()> {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(64);
    let batch: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let dir = maxsimdb::embed::resolve_model("all-MiniLM-L6-v2")?;
    let mut enc = maxsimdb::embed::Encoder::load(&dir)?;
    enc.batch_size = batch;
    let text = "late interaction retrieval with token level embeddings and exact maxsim scoring ".repeat(30);
    let texts: Vec<&str> = (0..n).map(|_| text.as_str()).collect();
    let t = Instant::now();
    let out = enc.encode(&texts)?;
    let tokens: usize = out.iter().map(|e| e.token_ids.len()).sum();
    let s = t.elapsed().as_secs_f64();
    println!("{n} texts, {tokens} tokens, batch {batch}: {s:.2} s, {:.0} tokens/s", tokens as f64 / s);
    Ok(())
}
