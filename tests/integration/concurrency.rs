//! One writer process inserting, deleting, flushing and compacting while reader threads
//! (same process) and reader processes (read-only handles) search: every search sees
//! whole batches (no torn reads), every reader keeps making progress during the writes,
//! and a second writer process is refused with "database is locked".

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use maxsimdb::testing::Rng;
use maxsimdb::{Database, Document, Dtype, Error, Filter, SearchRequest, MAX_LIMIT};

use crate::common::{doc, spec, DIM};

const CHILD_ENV: &str = "MAXSIMDB_CONCURRENCY_CHILD";

/// Searches `db` until `stop()`; panics on a torn read. Returns the number of searches.
fn search_loop(db: &Database, mut stop: impl FnMut() -> bool) -> usize {
    let q = Rng::new(1).unit_vectors(2, DIM);
    let mut n = 0;
    while !stop() {
        match db.search("c", &SearchRequest::maxsim(q.clone()).limit(MAX_LIMIT)) {
            // The writer inserts batches of 5 and deletes whole batches.
            Ok(hits) => assert_eq!(hits.len() % 5, 0, "torn read: {} hits", hits.len()),
            // Before the writer's first commit the collection may not exist yet.
            Err(Error::NotFound { .. }) => {}
            Err(e) => panic!("reader failed: {e}"),
        }
        n += 1;
    }
    n
}

fn spawn_child(role: &str, path: &std::path::Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "concurrency::child_process", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{role}|{}", path.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Creates the file that stops the reader processes when dropped (also on a panic).
struct StopFile(std::path::PathBuf);

impl Drop for StopFile {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, b"");
    }
}

/// The child's `RESULT ...` line.
fn result_of(child: std::process::Child) -> String {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "child failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no result in {text}"))
        .to_string()
}

#[test]
fn readers_in_threads_and_processes_see_whole_batches_while_one_writer_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Database::builder(&path).flush_threshold_tokens(60).open().unwrap();
    db.create_collection(&spec("c", Dtype::F16)).unwrap();
    db.insert("c", &(0..5).map(|i| doc(&mut Rng::new(9), &format!("seed{i}"), 3, 1)).collect::<Vec<_>>())
        .unwrap();

    let _stop_children = StopFile(path.join("STOP"));
    let procs: Vec<_> = (0..2).map(|_| spawn_child("reader", &path)).collect();
    // Each reader process says READY once it has searched; start writing after that.
    let mut procs: Vec<_> = procs
        .into_iter()
        .map(|mut c| {
            let mut out = BufReader::new(c.stdout.as_mut().unwrap());
            let mut line = String::new();
            // The harness's "test … " has no newline: READY may end that line.
            while !line.trim_end().ends_with("READY") {
                line.clear();
                assert!(out.read_line(&mut line).unwrap() > 0, "reader process ended before READY");
            }
            c
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || search_loop(&db, || stop.load(Ordering::Relaxed)))
        })
        .collect();

    let mut rng = Rng::new(2);
    for b in 0..60 {
        let docs: Vec<Document> = (0..5).map(|i| doc(&mut rng, &format!("b{b}_{i}"), 3, b)).collect();
        db.insert("c", &docs).unwrap();
        if b % 7 == 3 {
            db.delete_where("c", &Filter::eq("year", b - 2)).unwrap();
        }
        if b % 10 == 9 {
            db.flush("c").unwrap();
            db.compact("c").unwrap();
        }
        if b == 30 {
            let second = spawn_child("writer", &path);
            let msg = result_of(second);
            assert!(msg.contains("database is locked"), "second writer: {msg}");
        }
    }
    drop(_stop_children);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        assert!(t.join().unwrap() > 0, "a reader thread made no progress");
    }
    for c in procs.drain(..) {
        let searches: usize = result_of(c).parse().unwrap();
        assert!(searches > 1, "a reader process made no progress during the writes");
    }
}

/// Reader process (`reader|PATH`: search until PATH/STOP exists, print the count) or
/// second writer (`writer|PATH`: try to open for writing, print the error).
#[test]
#[ignore = "child process spawned by readers_in_threads_and_processes_see_whole_batches_while_one_writer_works"]
fn child_process() {
    let spec = std::env::var(CHILD_ENV).expect("only run as the concurrency test's child");
    let (role, path) = spec.split_once('|').unwrap();
    let path = std::path::Path::new(path);
    // Straight to the process's stdout (the test harness may capture `println!`).
    let say = |line: String| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    if role == "writer" {
        match Database::open(path) {
            Ok(_) => say("RESULT opened: the lock did not hold".into()),
            Err(e) => say(format!("RESULT {e}")),
        }
        return;
    }
    let db = Database::open_read_only(path).unwrap();
    let mut first = true;
    search_loop(&db, || !std::mem::take(&mut first));
    say("READY".into());
    // The STOP file ends the loop; a bound on time ends it if the parent died.
    let started = std::time::Instant::now();
    let n = search_loop(&db, || path.join("STOP").exists() || started.elapsed().as_secs() > 60);
    say(format!("RESULT {n}"));
}
