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
        let tokens = [1.0f32, 0.0, 0.0, 1.0];
        let mean = c("mean");
        let pooled = [msdb_pooled { name: mean.as_ptr(), data: [0.7f32, 0.7].as_ptr(), dim: 2 }];
        let vals = c(r#"{"year": 2020}"#);
        let doc = msdb_doc {
            id: null(),
            int_id: 42,
            tokens: tokens.as_ptr(),
            n_tokens: 2,
            dim: 2,
            pooled: pooled.as_ptr(),
            n_pooled: 1,
            values_json: vals.as_ptr(),
        };
        let coll = c("p");
        assert_eq!(msdb_db_insert(db, coll.as_ptr(), &doc, 1, 0), MSDB_OK, "{:?}", take(msdb_db_errmsg(db)));
        assert_eq!(msdb_db_insert(db, coll.as_ptr(), &doc, 1, 0), MSDB_ALREADY_EXISTS);
        assert!(take(msdb_db_errmsg(db)).unwrap().contains("42"));
        assert_eq!(msdb_db_insert(db, coll.as_ptr(), &doc, 1, MSDB_INSERT_UPSERT), MSDB_OK);
        assert!(msdb_db_errmsg(db).is_null());
        let filter = c("year >= 2020");
        let q = msdb_query {
            kind: MSDB_QUERY_MAXSIM,
            vectors: tokens.as_ptr(),
            n_vectors: 2,
            dim: 2,
            text: null(),
            field: null(),
            filter: filter.as_ptr(),
        };
        let mut hits = [msdb_hit { score: 0.0, int_id: 0, id: null_mut() }; 4];
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
            kind: 0,
            vectors: null(),
            n_vectors: 3,
            dim: 2,
            text: null(),
            field: null(),
            filter: null(),
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
