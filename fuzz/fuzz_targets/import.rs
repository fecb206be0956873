//! IMPORT of arbitrary JSONL and CSV files into a collection with vector and scalar
//! columns. Errors are fine (and must leave nothing half-imported); panics are not.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use maxsimdb::sql::Session;
use maxsimdb::Database;

struct Env {
    _dir: tempfile::TempDir,
    session: Session,
    jsonl: std::path::PathBuf,
    csv: std::path::PathBuf,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path().join("f.msdb")).flush_threshold_tokens(1 << 20).open().unwrap();
        let session = Session::new(db);
        session
            .execute("CREATE COLLECTION c (title TEXT, year INTEGER, rating REAL, meta JSON) WITH (dim = 2, pooled = 'mean:2')")
            .unwrap();
        Env { jsonl: dir.path().join("in.jsonl"), csv: dir.path().join("in.csv"), _dir: dir, session }
    })
}

fuzz_target!(|data: &[u8]| {
    let e = env();
    for path in [&e.jsonl, &e.csv] {
        std::fs::write(path, data).unwrap();
        let _ = e.session.execute(&format!("IMPORT INTO c FROM '{}'", path.display()));
    }
    // Keep the collection small: the fuzzer measures the parser, not the database size.
    let _ = e.session.execute("DELETE FROM c");
});
