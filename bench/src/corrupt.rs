//! `corrupt` suite: single-byte flips (`--flips N` per artefact range, default 20) and
//! one truncation per file, over every artefact of a small database — catalog, each
//! segment section (tokens, pooled vectors, HNSW graph, PLAID codes, …) and each
//! full-text index file — each classified as detected, harmless, silent or panic, and
//! detected damage as repaired or not by a writable open (`maxsimdb::testing::corrupt`).
//! With `--archive true`, also every byte of a backup archive of that database, each
//! changed to another value (XOR with a random non-zero byte) in turn, restored: every one
//! must be refused, with nothing left behind.

use serde_json::json;

use crate::{report, Args};

pub fn run(args: &Args) -> Result<(), String> {
    let flips: usize = args.get("flips", 20)?;
    let seed: u64 = args.get("seed", 7)?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let base = dir.path().join("base.msdb");
    maxsimdb::testing::corrupt::build_base(&base).map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let res = maxsimdb::testing::corrupt::sweep(&base, dir.path(), flips, seed);
    let mut kinds = serde_json::Map::new();
    let (mut trials, mut detected, mut panics, mut silent_checked) = (0, 0, 0, 0);
    for (kind, o) in &res {
        println!(
            "{kind:<32} trials {:>5}  detected {:>5}  harmless {:>4}  silent {:>3}  panics {}  repaired {}",
            o.trials, o.detected, o.harmless, o.silent, o.panics, o.repaired
        );
        trials += o.trials;
        detected += o.detected;
        panics += o.panics;
        if !kind.starts_with("catalog") {
            silent_checked += o.silent;
        }
        kinds.insert(
            kind.clone(),
            json!({"trials": o.trials, "detected": o.detected, "harmless": o.harmless, "silent": o.silent,
                   "panics": o.panics, "repaired": o.repaired}),
        );
    }
    let archive =
        if args.get("archive", false)? { Some(archive_sweep(&base, dir.path(), seed)?) } else { None };
    let out = json!({
        "archive": archive,
        "trials": trials,
        "detected": detected,
        "panics": panics,
        "silent_outside_catalog": silent_checked,
        "seconds": started.elapsed().as_secs_f64(),
        "kinds": kinds,
    });
    report(args, "corrupt (byte flips and truncations of every artefact)", &out);
    let archive_missed = out["archive"]["accepted_positions"].as_array().map_or(0, Vec::len);
    if archive_missed > 0 {
        return Err(format!("{archive_missed} damaged archive bytes were not refused"));
    }
    if panics == 0 && silent_checked == 0 {
        Ok(())
    } else {
        Err(format!("{panics} panics, {silent_checked} silent damages outside the catalog"))
    }
}

/// Restore an archive of `base` once per byte position, that byte changed.
fn archive_sweep(
    base: &std::path::Path,
    scratch: &std::path::Path,
    seed: u64,
) -> Result<serde_json::Value, String> {
    use maxsimdb::{Database, Error};
    let e = |e: maxsimdb::Error| e.to_string();
    let archive = scratch.join("sweep.msdb.zst");
    Database::open_read_only(base).map_err(e)?.backup(&archive, |_, _| {}).map_err(e)?;
    let original = std::fs::read(&archive).map_err(|e| e.to_string())?;
    let target = scratch.join("sweep-restored.msdb");
    let mut rng = maxsimdb::testing::Rng::new(seed);
    let started = std::time::Instant::now();
    let (mut refused, mut accepted) = (0u64, Vec::new());
    for at in 0..original.len() {
        let mut b = original.clone();
        b[at] ^= 1 + rng.below(255) as u8;
        std::fs::write(&archive, &b).map_err(|e| e.to_string())?;
        match Database::restore(&archive, &target, |_, _| {}) {
            Err(Error::Corruption { .. }) if !target.exists() => refused += 1,
            other => {
                accepted.push(at);
                eprintln!("byte {at}: {other:?}");
                let _ = std::fs::remove_dir_all(&target);
            }
        }
        if at % 10_000 == 0 {
            eprint!("\rarchive sweep: {at}/{} bytes", original.len());
        }
    }
    eprintln!();
    Ok(json!({
        "archive_bytes": original.len(),
        "trials": original.len(),
        "refused": refused,
        "accepted_positions": accepted,
        "seconds": started.elapsed().as_secs_f64(),
    }))
}
