//! `crash` suite: `--trials N` SIGKILLs of a writer at random points, each followed by a
//! reopen and a comparison with the acknowledged operations. A fresh database is started
//! every `--reset` trials (default 100) so verification cost stays bounded.

use std::process::{Command, Stdio};

use serde_json::json;

use crate::{report, Args};

pub fn run(args: &Args) -> Result<(), String> {
    let trials: usize = args.get("trials", 200)?;
    let reset: usize = args.get("reset", 100)?.max(1);
    // `--tokens plaid4` (or plaid2, plaid1): the workload on a codes-only collection.
    let tokens: String = args.get("tokens", "f16".to_string())?;
    crate::token_codes(&tokens)?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut total = maxsimdb::testing::CrashReport::default();
    let mut round = 0u64;
    while total.trials < trials {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("crash.msdb");
        let n = reset.min(trials - total.trials);
        let r = maxsimdb::testing::crash_trials(&path, n, 0xBEEF + round, |seed, start| {
            Command::new(&exe)
                .args(["crash-child", "--path", &path.display().to_string()])
                .args(["--seed", &seed.to_string(), "--start", &start.to_string()])
                .args(["--tokens", &tokens])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn crash child")
        });
        total.trials += r.trials;
        total.acked_ops += r.acked_ops;
        total.open_failures += r.open_failures;
        total.recovery.extend(r.recovery);
        total.failures.extend(r.failures);
        round += 1;
        eprint!("\rcrash trials: {}/{trials}", total.trials);
        if r.trials < n {
            break;
        }
    }
    eprintln!();
    for f in &total.failures {
        eprintln!("FAILURE: {f}");
    }
    let mut rec: Vec<f64> = total.recovery.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    rec.sort_by(f64::total_cmp);
    let out = json!({
        "tokens": tokens,
        "trials": total.trials,
        "acked_ops": total.acked_ops,
        "lost_writes": total.failures.len() - total.open_failures,
        "open_failures": total.open_failures,
        "recovery_ms_p50": rec.get(rec.len() / 2).copied().unwrap_or(0.0),
        "recovery_ms_max": rec.last().copied().unwrap_or(0.0),
    });
    report(
        args,
        "crash (SIGKILL during insert/upsert/update/delete/flush/compact and full-text catch-up)",
        &out,
    );
    if total.failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} failed trials", total.failures.len()))
    }
}

pub fn child(args: &Args) -> Result<(), String> {
    let path = args.opt("path").ok_or("--path is required")?;
    let seed = args.get("seed", 1u64)?;
    let start = args.get("start", 1i64)?;
    let codes = crate::token_codes(&args.get("tokens", "f16".to_string())?)?;
    maxsimdb::testing::crash_child(path.as_ref(), seed, start, codes).map_err(|e| e.to_string())
}
