//! `next-plaid-bench VECTORS QUERIES TRUTH NBITS INDEX_DIR`: build a next-plaid index over
//! the documents in VECTORS, answer QUERIES, compare with TRUTH; print one JSON line.
//!
//! File formats (little-endian): VECTORS and QUERIES: `u32 dim, u32 count`, then per item
//! `u32 rows` and `rows × dim` f32. TRUTH: per query, `u32 k` then `k` u32 document numbers.

use std::io::{BufReader, Read};
use std::time::Instant;

use ndarray::Array2;

fn u32_of(r: &mut impl Read) -> u32 {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).expect("truncated input");
    u32::from_le_bytes(b)
}

fn matrices(path: &str) -> Vec<Array2<f32>> {
    let mut r = BufReader::new(std::fs::File::open(path).expect("open vectors"));
    let (dim, count) = (u32_of(&mut r) as usize, u32_of(&mut r) as usize);
    (0..count)
        .map(|_| {
            let rows = u32_of(&mut r) as usize;
            let mut bytes = vec![0u8; rows * dim * 4];
            r.read_exact(&mut bytes).expect("truncated vectors");
            let v: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            Array2::from_shape_vec((rows, dim), v).expect("shape")
        })
        .collect()
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (docs, queries) = (matrices(&a[1]), matrices(&a[2]));
    let mut tr = BufReader::new(std::fs::File::open(&a[3]).expect("open truth"));
    let truth: Vec<Vec<i64>> = (0..queries.len())
        .map(|_| {
            let k = u32_of(&mut tr);
            (0..k).map(|_| i64::from(u32_of(&mut tr))).collect()
        })
        .collect();
    let nbits: usize = a[4].parse().expect("nbits");
    let dir = &a[5];
    let config = next_plaid::IndexConfig { nbits, ..Default::default() };
    let t = Instant::now();
    next_plaid::index::create_index_with_kmeans_files(&docs, dir, &config).expect("next-plaid build");
    let build_s = t.elapsed().as_secs_f64();
    drop(docs);
    let index = next_plaid::MmapIndex::load(dir).expect("next-plaid load");
    let params = next_plaid::SearchParameters { top_k: 10, ..Default::default() };
    // Warm-up, then one query at a time (as the maxsimdb figures are measured).
    let _ = index.search(&queries[0], &params, None);
    let (mut recall, t) = (0.0, Instant::now());
    for (q, want) in queries.iter().zip(&truth) {
        let r = index.search(q, &params, None).expect("next-plaid search");
        recall += r.passage_ids.iter().filter(|d| want.contains(d)).count() as f64 / want.len().max(1) as f64;
    }
    let qps = queries.len() as f64 / t.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "next_plaid_build_s": build_s,
            "next_plaid_qps": qps,
            "next_plaid_recall_at_10": recall / queries.len() as f64,
            "next_plaid_partitions": index.num_partitions(),
        })
    );
}
