//! SIGKILL a writer at random moments (inserts, upserts, deletes, flushes, compactions),
//! reopen, and compare with the acknowledged operations. `MAXSIMDB_CRASH_TRIALS` sets
//! the number of trials (default 30); the bench suite `crash` runs thousands.

use std::process::{Command, Stdio};

use maxsimdb::testing::crash_trials;

const CHILD_ENV: &str = "MAXSIMDB_CRASH_CHILD";

#[test]
fn killed_writer_loses_no_acknowledged_write() {
    let trials = std::env::var("MAXSIMDB_CRASH_TRIALS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    trials_on("f16", trials);
}

/// The same workload on a codes-only collection (`tokens = 'plaid4'`): the codec is
/// trained, published and re-trained (VACUUM on drift) while the writer is killed at
/// random moments; every acknowledged document must read back (as codes: tokens at cos ≥ 0.8
/// each, ≥ 0.9 on average, to what was written) and CHECK must stay clean.
#[test]
fn killed_writer_loses_nothing_in_a_codes_only_collection() {
    let trials = std::env::var("MAXSIMDB_CRASH_TRIALS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    trials_on("plaid4", trials);
}

fn trials_on(tokens: &str, trials: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.msdb");
    let exe = std::env::current_exe().unwrap();
    let report = crash_trials(&path, trials, 0xC0FFEE, |seed, start| {
        Command::new(&exe)
            .args(["--exact", "crash::child_process", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, format!("{}|{seed}|{start}|{tokens}", path.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    });
    assert!(report.failures.is_empty(), "{tokens}: {:#?}", report.failures);
    assert_eq!(report.trials, trials);
    assert_eq!(report.open_failures, 0);
    assert!(report.acked_ops > trials, "the children made progress: {} acks", report.acked_ops);
    if tokens != "f16" {
        // The workload got past the codec's training.
        let db = maxsimdb::Database::open(&path).unwrap();
        assert!(db.token_codec("c").unwrap().is_some(), "{tokens}: no codec was trained");
    }
}

/// The writer process of the crash tests; it never returns.
#[test]
#[ignore = "child process spawned by the crash tests"]
fn child_process() {
    let spec = std::env::var(CHILD_ENV).expect("only run as the crash test's child");
    let mut parts = spec.split('|');
    let path = parts.next().unwrap();
    let seed = parts.next().unwrap().parse().unwrap();
    let start = parts.next().unwrap().parse().unwrap();
    let codes = maxsimdb::VectorSpec::new(1).with_token_storage(parts.next().unwrap()).unwrap().codes;
    if let Err(e) = maxsimdb::testing::crash_child(path.as_ref(), seed, start, codes) {
        panic!("crash child failed: {e}");
    }
}
