//! The C API's statement entry point on arbitrary bytes: prepare, bind what it asks
//! for, step through every row reading every column, finalize — as a C caller would.
#![no_main]

use std::ffi::{c_char, CString};
use std::ptr::{null, null_mut};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use maxsimdb::ffi::*;

/// The handle, and the directory that must outlive it.
struct Db(*mut msdb_db, #[allow(dead_code)] tempfile::TempDir);
// SAFETY: the handle is a registry token, valid from any thread.
unsafe impl Send for Db {}
// SAFETY: as above; the library serializes calls on one handle.
unsafe impl Sync for Db {}

fn db() -> *mut msdb_db {
    static DB: OnceLock<Db> = OnceLock::new();
    DB.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = CString::new(dir.path().join("f.msdb").to_str().unwrap()).unwrap();
        let mut db = null_mut();
        // SAFETY: valid arguments.
        unsafe {
            assert_eq!(msdb_db_open(path.as_ptr(), null(), &mut db, null_mut()), MSDB_OK);
            let ddl = c"CREATE COLLECTION c (title TEXT, year INTEGER) WITH (dim = 2, pooled = 'mean:2'); \
                        INSERT INTO c (id, title, year, tokens, mean) VALUES ('a', 'x', 1, '[[1,0]]', '[1,0]')";
            assert_eq!(msdb_db_exec(db, ddl.as_ptr()), MSDB_OK);
        }
        Db(db, dir)
    })
    .0
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = CString::new(data) else { return };
    let db = db();
    let mut st = null_mut();
    // SAFETY: valid handles and buffers throughout; the library checks the rest.
    unsafe {
        if msdb_stmt_prepare(db, sql.as_ptr(), &mut st) != MSDB_OK {
            msdb_free(msdb_db_errmsg(db));
            return;
        }
        let mut n = 0usize;
        msdb_stmt_param_count(st, &mut n);
        let v = [1.0f32, 0.0];
        for i in 1..=n.min(8) {
            match i % 4 {
                0 => msdb_stmt_bind_int64(st, i, 3),
                1 => msdb_stmt_bind_matrix(st, i, v.as_ptr(), 1, 2),
                2 => msdb_stmt_bind_text(st, i, c"x".as_ptr()),
                _ => msdb_stmt_bind_vector(st, i, v.as_ptr(), 2),
            };
        }
        for _ in 0..100 {
            if msdb_stmt_step(st) != MSDB_ROW {
                break;
            }
            let mut cols = 0usize;
            msdb_stmt_column_count(st, &mut cols);
            for c in 0..cols {
                let (mut p, mut len, mut t, mut d) = (null::<c_char>(), 0usize, 0, 0f64);
                msdb_stmt_column_type(st, c, &mut t);
                msdb_stmt_column_text(st, c, &mut p, &mut len);
                msdb_stmt_column_double(st, c, &mut d);
            }
        }
        msdb_free(msdb_stmt_errmsg(st));
        msdb_stmt_finalize(st);
    }
});
