//! The C API called from Rust, as C would call it. The C program in `bindings/c/tests/`
//! covers every function under valgrind; these run with `cargo test` everywhere.

use std::ffi::{c_char, CStr, CString};
use std::ptr::{null, null_mut};

use super::*;

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn take(p: *mut c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: a string from the library, freed right after.
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    // SAFETY: allocated by the library.
    unsafe { msdb_free(p) };
    Some(s)
}

/// The token vectors of [`with_doc`]'s document: (1, 0) and (0, 1).
const TOKENS: [f32; 4] = [1.0, 0.0, 0.0, 1.0];

/// `f` on a document of a `dim = 2, pooled = 'mean:2'` collection: tokens [`TOKENS`],
/// mean (0.7, 0.7), text id `id` (or integer `int_id`) and `values` as JSON text.
fn with_doc<R>(id: Option<&str>, int_id: i64, values: &str, f: impl FnOnce(&msdb_doc) -> R) -> R {
    let id = id.map(c);
    let mean = c("mean");
    let data = [0.7f32, 0.7];
    let pooled = [msdb_pooled { name: mean.as_ptr(), data: data.as_ptr(), dim: 2 }];
    let vals = c(values);
    let doc = msdb_doc {
        size: std::mem::size_of::<msdb_doc>(),
        id: id.as_ref().map_or(null(), |s| s.as_ptr()),
        int_id,
        tokens: TOKENS.as_ptr(),
        n_tokens: 2,
        dim: 2,
        pooled: pooled.as_ptr(),
        n_pooled: 1,
        values_json: vals.as_ptr(),
        values: null(),
        n_values: 0,
    };
    f(&doc)
}

fn open(dir: &std::path::Path) -> *mut msdb_db {
    let path = c(dir.join("t.msdb").to_str().unwrap());
    let mut db = null_mut();
    // SAFETY: valid arguments.
    assert_eq!(unsafe { msdb_db_open(path.as_ptr(), null(), &mut db, null_mut()) }, MSDB_OK);
    db
}

#[test]
fn version_and_status_names_match_the_crate() {
    // SAFETY: static strings.
    let v = unsafe { CStr::from_ptr(msdb_version()) }.to_str().unwrap();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        format!("{MSDB_VERSION_MAJOR}.{MSDB_VERSION_MINOR}.{MSDB_VERSION_PATCH}"),
        env!("CARGO_PKG_VERSION")
    );
    // SAFETY: static strings.
    let name = |s| unsafe { CStr::from_ptr(msdb_status_name(s)) }.to_str().unwrap();
    assert_eq!(name(MSDB_SYNTAX), "MSDB_SYNTAX");
    assert_eq!(name(MSDB_MISUSE), "MSDB_MISUSE");
    assert_eq!(name(12345), "MSDB_UNKNOWN");
    assert_eq!(MSDB_SYNTAX, crate::ErrorCode::Syntax as i32);
}

#[test]
fn status_codes_are_the_error_codes() {
    use crate::ErrorCode as E;
    let pairs = [
        (MSDB_OK, E::Ok),
        (MSDB_INTERNAL, E::Internal),
        (MSDB_INVALID_ARGUMENT, E::InvalidArgument),
        (MSDB_DIMENSION_MISMATCH, E::DimensionMismatch),
        (MSDB_NOT_FOUND, E::NotFound),
        (MSDB_ALREADY_EXISTS, E::AlreadyExists),
        (MSDB_CORRUPTION, E::Corruption),
        (MSDB_INCOMPATIBLE_FORMAT, E::IncompatibleFormat),
        (MSDB_LOCKED, E::Locked),
        (MSDB_READ_ONLY, E::ReadOnly),
        (MSDB_IO, E::Io),
        (MSDB_CATALOG, E::Catalog),
        (MSDB_NOT_AVAILABLE, E::NotAvailable),
        (MSDB_SYNTAX, E::Syntax),
        (MSDB_MISUSE, E::Misuse),
        (MSDB_INTERRUPTED, E::Interrupted),
        (MSDB_BUSY, E::Busy),
    ];
    for (c, e) in pairs {
        assert_eq!(c, e as i32, "{e:?}");
    }
}

#[test]
fn panics_become_internal_errors_with_their_message() {
    let code = status(&guarded("test_fn", || panic!("boom {}", 7)));
    assert_eq!(code, MSDB_INTERNAL);
    let msg = take(msdb_last_errmsg()).unwrap();
    assert!(msg.contains("test_fn panicked: boom 7"), "{msg}");
    assert_eq!(status(&guarded("test_fn", || Ok(MSDB_OK))), MSDB_OK);
    assert!(msdb_last_errmsg().is_null());
}

#[test]
fn insert_search_and_statements_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let ddl = c("CREATE COLLECTION p (year INTEGER) WITH (dim = 2, pooled = 'mean:2', id = 'integer')");
    // SAFETY: valid arguments throughout.
    unsafe {
        assert_eq!(msdb_db_exec(db, ddl.as_ptr()), MSDB_OK, "{:?}", take(msdb_db_errmsg(db)));
        let tokens = TOKENS;
        let coll = c("p");
        with_doc(None, 42, r#"{"year": 2020}"#, |doc| {
            assert_eq!(
                msdb_db_insert(db, coll.as_ptr(), doc, 1, 0),
                MSDB_OK,
                "{:?}",
                take(msdb_db_errmsg(db))
            );
            assert_eq!(msdb_db_insert(db, coll.as_ptr(), doc, 1, 0), MSDB_ALREADY_EXISTS);
            assert!(take(msdb_db_errmsg(db)).unwrap().contains("42"));
            assert_eq!(msdb_db_insert(db, coll.as_ptr(), doc, 1, MSDB_INSERT_UPSERT), MSDB_OK);
        });
        assert!(msdb_db_errmsg(db).is_null());
        let filter = c("year >= 2020");
        let q = msdb_query {
            size: std::mem::size_of::<msdb_query>(),
            kind: MSDB_QUERY_MAXSIM,
            vectors: tokens.as_ptr(),
            n_vectors: 2,
            dim: 2,
            text: null(),
            field: null(),
            filter: filter.as_ptr(),
            columns: null(),
        };
        let mut hits = [msdb_hit { score: 0.0, int_id: 0, id: null_mut(), values_json: null_mut() }; 4];
        let mut n = 99;
        assert_eq!(msdb_db_search(db, coll.as_ptr(), &q, hits.as_mut_ptr(), 4, &mut n), MSDB_OK);
        assert_eq!(n, 1);
        assert_eq!((hits[0].int_id, hits[0].score), (42, 2.0));
        assert_eq!(CStr::from_ptr(hits[0].id).to_str().unwrap(), "42");
        msdb_hits_free(hits.as_mut_ptr(), n);
        assert!(hits[0].id.is_null());

        let sql = c("SELECT id, year, score FROM p ORDER BY maxsim(?) LIMIT ?");
        let mut st = null_mut();
        assert_eq!(msdb_stmt_prepare(db, sql.as_ptr(), &mut st), MSDB_OK, "{:?}", take(msdb_db_errmsg(db)));
        let mut np = 0;
        assert_eq!(msdb_stmt_param_count(st, &mut np), MSDB_OK);
        assert_eq!(np, 2);
        assert_eq!(msdb_stmt_bind_matrix(st, 1, tokens.as_ptr(), 2, 2), MSDB_OK);
        assert_eq!(msdb_stmt_bind_int64(st, 2, 5), MSDB_OK);
        assert_eq!(msdb_stmt_bind_int64(st, 3, 5), MSDB_INVALID_ARGUMENT);
        assert_eq!(msdb_stmt_step(st), MSDB_ROW, "{:?}", take(msdb_stmt_errmsg(st)));
        let (mut id, mut score) = (0i64, 0f64);
        assert_eq!(msdb_stmt_column_int64(st, 0, &mut id), MSDB_OK);
        assert_eq!(msdb_stmt_score(st, &mut score), MSDB_OK);
        assert_eq!((id, score), (42, 2.0));
        assert_eq!(msdb_stmt_step(st), MSDB_DONE);
        assert_eq!(msdb_stmt_step(st), MSDB_DONE);
        assert_eq!(msdb_stmt_column_int64(st, 0, &mut id), MSDB_MISUSE);
        assert_eq!(msdb_stmt_finalize(st), MSDB_OK);
        assert_eq!(msdb_stmt_finalize(st), MSDB_MISUSE);
        assert_eq!(msdb_stmt_step(st), MSDB_MISUSE);
        assert_eq!(msdb_db_close(db), MSDB_OK);
        assert_eq!(msdb_db_close(db), MSDB_MISUSE);
        assert_eq!(msdb_db_exec(db, ddl.as_ptr()), MSDB_MISUSE);
        assert!(take(msdb_db_errmsg(db)).unwrap().contains("not an open database handle"));
    }
}

#[test]
fn null_pointers_are_misuse_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    // SAFETY: deliberately NULL arguments, which every entry point must reject.
    unsafe {
        assert_eq!(msdb_db_exec(db, null()), MSDB_MISUSE);
        assert_eq!(msdb_db_exec(null_mut(), null()), MSDB_MISUSE);
        assert_eq!(msdb_db_open(null(), null(), null_mut(), null_mut()), MSDB_MISUSE);
        let q = msdb_query {
            size: std::mem::size_of::<msdb_query>(),
            kind: 0,
            vectors: null(),
            n_vectors: 3,
            dim: 2,
            text: null(),
            field: null(),
            filter: null(),
            columns: null(),
        };
        let mut n = 0;
        let coll = c("nope");
        assert_eq!(msdb_db_search(db, coll.as_ptr(), &q, null_mut(), 4, &mut n), MSDB_MISUSE);
        assert_eq!(msdb_stmt_step(null_mut()), MSDB_MISUSE);
        assert_eq!(msdb_stmt_finalize(null_mut()), MSDB_OK);
        assert_eq!(msdb_db_close(null_mut()), MSDB_OK);
        msdb_hits_free(null_mut(), 3);
        msdb_free(null_mut());
        assert_eq!(msdb_db_close(db), MSDB_OK);
    }
}

#[test]
fn open_refuses_an_empty_path_and_a_missing_parent_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = null_mut();
    let mut msg = null_mut();
    let empty = c("");
    // SAFETY: valid arguments throughout.
    unsafe {
        assert_eq!(msdb_db_open(empty.as_ptr(), null(), &mut db, &mut msg), MSDB_INVALID_ARGUMENT);
        assert!(take(msg).unwrap().contains("empty database path"));
        let deep = dir.path().join("typo/no/such/app.msdb");
        let path = c(deep.to_str().unwrap());
        assert_eq!(msdb_db_open(path.as_ptr(), null(), &mut db, &mut msg), MSDB_IO);
        assert!(take(msg).unwrap().contains("does not exist: create it first"));
        assert!(!dir.path().join("typo").exists(), "nothing was created");
        let o = msdb_open_options {
            size: std::mem::size_of::<msdb_open_options>(),
            flags: MSDB_OPEN_CREATE_PARENTS,
            ..Default::default()
        };
        assert_eq!(msdb_db_open(path.as_ptr(), &o, &mut db, &mut msg), MSDB_OK, "{:?}", take(msg));
        assert!(deep.join("catalog.sqlite").exists());
        assert_eq!(msdb_db_close(db), MSDB_OK);
    }
}

/// A REAL sent as JSON text comes back bit-exact (correctly rounded parsing); NaN is refused
/// at bind; a query with no vectors, or a dense query with two, is an error saying so.
#[test]
fn values_read_back_exactly_and_bad_queries_fail_early() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let ddl = c("CREATE COLLECTION p (r REAL) WITH (dim = 2, pooled = 'mean:2')");
    // SAFETY: valid arguments throughout.
    unsafe {
        assert_eq!(msdb_db_exec(db, ddl.as_ptr()), MSDB_OK, "{:?}", take(msdb_db_errmsg(db)));
        let tokens = TOKENS;
        let text = "0.097264783048820247";
        let coll = c("p");
        let rc = with_doc(Some("a"), 0, &format!(r#"{{"r": {text}}}"#), |doc| {
            msdb_db_insert(db, coll.as_ptr(), doc, 1, 0)
        });
        assert_eq!(rc, MSDB_OK, "{:?}", take(msdb_db_errmsg(db)));
        let sql = c(&format!("SELECT r FROM p WHERE r = {text}"));
        let mut st = null_mut();
        assert_eq!(msdb_stmt_prepare(db, sql.as_ptr(), &mut st), MSDB_OK);
        assert_eq!(
            msdb_stmt_step(st),
            MSDB_ROW,
            "the literal finds the JSON value: {:?}",
            take(msdb_stmt_errmsg(st))
        );
        let mut r = 0f64;
        assert_eq!(msdb_stmt_column_double(st, 0, &mut r), MSDB_OK);
        assert_eq!(r.to_bits(), text.parse::<f64>().unwrap().to_bits());
        assert_eq!(msdb_stmt_finalize(st), MSDB_OK);

        let sql = c("SELECT id FROM p WHERE r = ?");
        assert_eq!(msdb_stmt_prepare(db, sql.as_ptr(), &mut st), MSDB_OK);
        assert_eq!(msdb_stmt_bind_double(st, 1, f64::NAN), MSDB_INVALID_ARGUMENT);
        assert!(take(msdb_stmt_errmsg(st)).unwrap().contains("not a finite number"));
        assert_eq!(msdb_stmt_bind_double(st, 1, f64::INFINITY), MSDB_INVALID_ARGUMENT);
        assert_eq!(msdb_stmt_finalize(st), MSDB_OK);

        let mut q = msdb_query {
            size: std::mem::size_of::<msdb_query>(),
            kind: MSDB_QUERY_MAXSIM,
            vectors: tokens.as_ptr(),
            n_vectors: 0,
            dim: 2,
            text: null(),
            field: null(),
            filter: null(),
            columns: null(),
        };
        let mut hits = [msdb_hit { score: 0.0, int_id: 0, id: null_mut(), values_json: null_mut() }; 4];
        let mut n = 0;
        assert_eq!(
            msdb_db_search(db, coll.as_ptr(), &q, hits.as_mut_ptr(), 4, &mut n),
            MSDB_INVALID_ARGUMENT
        );
        assert!(take(msdb_db_errmsg(db)).unwrap().contains("at least one query vector"));
        q.kind = MSDB_QUERY_DENSE;
        q.n_vectors = 2;
        assert_eq!(
            msdb_db_search(db, coll.as_ptr(), &q, hits.as_mut_ptr(), 4, &mut n),
            MSDB_INVALID_ARGUMENT
        );
        assert!(take(msdb_db_errmsg(db)).unwrap().contains("exactly one vector"));
        q.n_vectors = 1;
        assert_eq!(msdb_db_search(db, coll.as_ptr(), &q, hits.as_mut_ptr(), 4, &mut n), MSDB_OK);
        assert_eq!(n, 1);
        msdb_hits_free(hits.as_mut_ptr(), n);
        assert_eq!(msdb_db_close(db), MSDB_OK);
    }
}

/// `msdb_changes` counts what the last changing statement or direct write did (statements
/// through exec and prepared ones alike; a SELECT leaves it as it was); `msdb_db_count`
/// counts documents, with a filter.
#[test]
fn changes_and_counts_are_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut n = 99u64;
    // SAFETY: valid arguments throughout.
    unsafe {
        assert_eq!(msdb_changes(db, &mut n), MSDB_OK);
        assert_eq!(n, 0);
        let sql = c("CREATE COLLECTION p (year INTEGER) WITH (dim = 2);
                     INSERT INTO p (id, year, tokens) VALUES ('a', 2001, '[[1,0]]'), ('b', 2002, '[[0,1]]'),
                                                             ('c', 2003, '[[1,0]]')");
        assert_eq!(msdb_db_exec(db, sql.as_ptr()), MSDB_OK, "{:?}", take(msdb_db_errmsg(db)));
        assert_eq!(msdb_changes(db, &mut n), MSDB_OK);
        assert_eq!(n, 3);
        let coll = c("p");
        assert_eq!(msdb_db_count(db, coll.as_ptr(), null(), &mut n), MSDB_OK);
        assert_eq!(n, 3);
        let f = c("year >= 2002");
        assert_eq!(msdb_db_count(db, coll.as_ptr(), f.as_ptr(), &mut n), MSDB_OK);
        assert_eq!(n, 2);
        let bad = c("year >>= 1");
        assert_eq!(msdb_db_count(db, coll.as_ptr(), bad.as_ptr(), &mut n), MSDB_SYNTAX);
        // The lent message (not freed by the caller), as the copy says.
        let lent = CStr::from_ptr(msdb_errmsg(db)).to_str().unwrap().to_string();
        assert!(lent.contains("syntax"), "{lent}");
        assert_eq!(take(msdb_db_errmsg(db)).unwrap(), lent);
        assert_eq!(msdb_changes(db, &mut n), MSDB_OK);
        assert!(!msdb_errmsg(db).is_null(), "msdb_changes leaves the last error alone");
        assert_eq!(msdb_db_count(db, coll.as_ptr(), null(), &mut n), MSDB_OK);
        assert!(msdb_errmsg(db).is_null());
        let mut st = null_mut();
        let upd = c("UPDATE p SET year = 1999 WHERE year >= ?");
        assert_eq!(msdb_stmt_prepare(db, upd.as_ptr(), &mut st), MSDB_OK);
        assert_eq!(msdb_stmt_bind_int64(st, 1, 2002), MSDB_OK);
        assert_eq!(msdb_stmt_step(st), MSDB_DONE, "{:?}", take(msdb_stmt_errmsg(st)));
        assert_eq!(msdb_stmt_finalize(st), MSDB_OK);
        assert_eq!(msdb_changes(db, &mut n), MSDB_OK);
        assert_eq!(n, 2);
        let sel = c("SELECT id FROM p");
        assert_eq!(msdb_db_exec(db, sel.as_ptr()), MSDB_OK);
        assert_eq!(msdb_changes(db, &mut n), MSDB_OK);
        assert_eq!(n, 2, "a SELECT changes nothing");
        let del = c("DELETE FROM p WHERE year = 1999");
        assert_eq!(msdb_db_exec(db, del.as_ptr()), MSDB_OK);
        assert_eq!(msdb_changes(db, &mut n), MSDB_OK);
        assert_eq!(n, 2);
        assert_eq!(msdb_changes(null(), &mut n), MSDB_MISUSE);
        assert_eq!(msdb_db_close(db), MSDB_OK);
    }
}

/// `msdb_interrupt` from another thread stops a long IMPORT run through `msdb_db_exec`:
/// `MSDB_INTERRUPTED`, the committed batches kept (a multiple of 1,000 documents).
#[test]
fn interrupt_stops_an_import_from_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let file = dir.path().join("d.jsonl");
    let total = 100_000;
    let lines: String = (0..total).map(|i| format!("{{\"id\": \"d{i}\", \"tokens\": [[1, 0]]}}\n")).collect();
    std::fs::write(&file, lines).unwrap();
    // SAFETY: valid arguments throughout; the handle is shared across threads as the
    // header allows (calls on one handle from several threads are safe).
    unsafe {
        let ddl = c("CREATE COLLECTION p WITH (dim = 2)");
        assert_eq!(msdb_db_exec(db, ddl.as_ptr()), MSDB_OK);
        let handle = db as usize;
        let path = dir.path().join("t.msdb");
        let stopper = std::thread::spawn(move || {
            // Once a batch is visible to a reader, interrupt.
            loop {
                let seen =
                    crate::Database::open_read_only(&path).and_then(|r| r.count("p", None)).unwrap_or(0);
                if seen > 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            assert_eq!(msdb_interrupt(handle as *const msdb_db), MSDB_OK);
        });
        let import = c(&format!("IMPORT INTO p FROM '{}'", file.display()));
        let rc = msdb_db_exec(db, import.as_ptr());
        stopper.join().unwrap();
        assert_eq!(rc, MSDB_INTERRUPTED, "{:?}", take(msdb_db_errmsg(db)));
        assert!(take(msdb_db_errmsg(db)).unwrap().contains("documents are committed"));
        let coll = c("p");
        let mut n = 0u64;
        assert_eq!(msdb_db_count(db, coll.as_ptr(), null(), &mut n), MSDB_OK);
        assert!(n > 0 && n < total && n.is_multiple_of(1000), "{n}");
        assert_eq!(msdb_interrupt(null()), MSDB_MISUSE);
        assert_eq!(msdb_db_close(db), MSDB_OK);
    }
}
