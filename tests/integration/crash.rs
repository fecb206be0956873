//! SIGKILL a writer at random moments (inserts, upserts, deletes, flushes, compactions),
//! reopen, and compare with the acknowledged operations. `MAXSIMDB_CRASH_TRIALS` sets
//! the number of trials (default 30); the bench suite `crash` runs thousands.

use std::process::{Command, Stdio};

use maxsimdb::testing::crash_trials;

const CHILD_ENV: &str = "MAXSIMDB_CRASH_CHILD";

#[test]
fn killed_writer_loses_no_acknowledged_write() {
    let trials = std::env::var("MAXSIMDB_CRASH_TRIALS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.msdb");
    let exe = std::env::current_exe().unwrap();
    let report = crash_trials(&path, trials, 0xC0FFEE, |seed, start| {
        Command::new(&exe)
            .args(["--exact", "crash::child_process", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, format!("{}|{seed}|{start}", path.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    });
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert_eq!(report.trials, trials);
    assert_eq!(report.open_failures, 0);
    assert!(report.acked_ops > trials, "the children made progress: {} acks", report.acked_ops);
}

/// The writer process of `killed_writer_loses_no_acknowledged_write`; it never returns.
#[test]
#[ignore = "child process spawned by killed_writer_loses_no_acknowledged_write"]
fn child_process() {
    let spec = std::env::var(CHILD_ENV).expect("only run as the crash test's child");
    let mut parts = spec.split('|');
    let path = parts.next().unwrap();
    let seed = parts.next().unwrap().parse().unwrap();
    let start = parts.next().unwrap().parse().unwrap();
    if let Err(e) = maxsimdb::testing::crash_child(path.as_ref(), seed, start) {
        panic!("crash child failed: {e}");
    }
}
