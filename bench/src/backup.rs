//! `backup` suite: online backup of an existing database (`--db PATH`, opened read-only,
//! so it may be in use), its throughput and archive size, search latency while it runs
//! against idle (`--queries N` MaxSim queries of 32 random unit tokens, one at a time,
//! `--limit` 10), then restore throughput into a scratch directory (`--scratch DIR`,
//! default the system temp dir).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use maxsimdb::testing::Rng;
use maxsimdb::{Database, SearchRequest};
use serde_json::json;

use crate::{report, Args};

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0)
}

pub fn run(args: &Args) -> Result<(), String> {
    let path = args.opt("db").ok_or("--db PATH (an existing database) is required")?;
    let queries: usize = args.get("queries", 200)?;
    let scratch =
        tempfile::tempdir_in(args.opt("scratch").unwrap_or(&std::env::temp_dir().display().to_string()))
            .map_err(|e| e.to_string())?;
    let db = Database::open_read_only(path).map_err(|e| e.to_string())?;
    let coll = db.collections().map_err(|e| e.to_string())?.into_iter().next().ok_or("no collection")?;
    let dim = coll.vectors.token_dim;
    let mut rng = Rng::new(5);
    let qs: Vec<Vec<f32>> = (0..queries).map(|_| rng.unit_vectors(32, dim)).collect();
    let search = |q: &Vec<f32>| -> Result<f64, String> {
        let t = Instant::now();
        db.search(&coll.name, &SearchRequest::maxsim(q.clone()).limit(10)).map_err(|e| e.to_string())?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    // Warm the page cache and the segment readers, then measure idle.
    for q in qs.iter().take(5) {
        search(q)?;
    }
    let mut idle = qs.iter().map(search).collect::<Result<Vec<_>, _>>()?;
    // The same queries while a backup runs (on a second handle).
    let archive = scratch.path().join("backup.msdb.zst");
    let done = Arc::new(AtomicBool::new(false));
    let backup = {
        let (db, archive, done) = (db.clone(), archive.clone(), done.clone());
        std::thread::spawn(move || {
            let r = db.backup(&archive, |_, _| {});
            done.store(true, Ordering::Relaxed);
            r
        })
    };
    let mut during = Vec::new();
    let mut i = 0;
    while !done.load(Ordering::Relaxed) {
        during.push(search(&qs[i % qs.len()])?);
        i += 1;
    }
    let b = backup.join().map_err(|_| "backup panicked")?.map_err(|e| e.to_string())?;
    let target = scratch.path().join("restored.msdb");
    let r = Database::restore(&archive, &target, |_, _| {}).map_err(|e| e.to_string())?;
    let mb = b.bytes as f64 / 1e6;
    let (idle_p50, idle_p99) = (pct(&mut idle, 0.5), pct(&mut idle, 0.99));
    let (during_p50, during_p99) = (pct(&mut during, 0.5), pct(&mut during, 0.99));
    let out = json!({
        "docs": db.stats(&coll.name).map_err(|e| e.to_string())?.docs,
        "database_mb": mb,
        "archive_mb": b.archive_bytes as f64 / 1e6,
        "archive_ratio": b.archive_bytes as f64 / b.bytes as f64,
        "backup_s": b.seconds,
        "backup_mb_s": mb / b.seconds,
        "restore_s": r.seconds,
        "restore_mb_s": mb / r.seconds,
        "idle_p50_ms": idle_p50,
        "idle_p99_ms": idle_p99,
        "during_backup_queries": during.len(),
        "during_backup_p50_ms": during_p50,
        "during_backup_p99_ms": during_p99,
        "p99_ratio": during_p99 / idle_p99,
    });
    report(args, "backup (online, zstd) and restore (verified)", &out);
    Ok(())
}
