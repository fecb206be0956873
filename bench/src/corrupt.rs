//! `corrupt` suite: single-byte flips (`--flips N` per artefact range, default 20) and
//! one truncation per file, over every artefact of a small database — catalog, each
//! segment section (tokens, pooled vectors, HNSW graph, PLAID codes, …) and each
//! full-text index file — each classified as detected, harmless, silent or panic, and
//! detected damage as repaired or not by a writable open (`maxsimdb::testing::corrupt`).

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
    let out = json!({
        "trials": trials,
        "detected": detected,
        "panics": panics,
        "silent_outside_catalog": silent_checked,
        "seconds": started.elapsed().as_secs_f64(),
        "kinds": kinds,
    });
    report(args, "corrupt (byte flips and truncations of every artefact)", &out);
    if panics == 0 && silent_checked == 0 {
        Ok(())
    } else {
        Err(format!("{panics} panics, {silent_checked} silent damages outside the catalog"))
    }
}
