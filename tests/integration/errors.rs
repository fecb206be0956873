//! Bad input gets a clear, typed error and leaves the database exactly as it was.

use maxsimdb::testing::Rng;
use maxsimdb::{CollectionSpec, ColumnType, Document, Dtype, Error, ErrorCode, Value, VectorSpec};

use crate::common::{doc, spec, tempdb, DIM};

#[test]
fn bad_documents_are_rejected_without_side_effects() {
    let (_d, db) = tempdb();
    let mut rng = Rng::new(20);
    db.create_collection(&spec("c", Dtype::F16)).unwrap();
    db.insert("c", &[doc(&mut rng, "exists", 3, 1)]).unwrap();
    db.flush("c").unwrap();
    let good = doc(&mut rng, "new", 3, 1);
    let with_tokens = |t: Vec<f32>| Document { tokens: t, ..good.clone() };
    let mut nan = good.tokens.clone();
    nan[5] = f32::NAN;
    let mut inf = good.tokens.clone();
    inf[0] = f32::INFINITY;
    let cases: Vec<(&str, Vec<Document>, ErrorCode)> = vec![
        ("wrong token dim", vec![with_tokens(vec![0.1; DIM + 1])], ErrorCode::DimensionMismatch),
        ("NaN", vec![with_tokens(nan)], ErrorCode::InvalidArgument),
        ("infinity", vec![with_tokens(inf)], ErrorCode::InvalidArgument),
        ("f16 overflow", vec![with_tokens(vec![70000.0; DIM])], ErrorCode::InvalidArgument),
        ("empty token matrix", vec![with_tokens(vec![])], ErrorCode::InvalidArgument),
        (
            "duplicate id",
            vec![good.clone(), Document { id: "exists".into(), ..good.clone() }],
            ErrorCode::AlreadyExists,
        ),
        ("duplicate in batch", vec![good.clone(), good.clone()], ErrorCode::AlreadyExists),
        (
            "wrong pooled dim",
            vec![Document { pooled: vec![("mean".into(), vec![0.0; 3])], ..good.clone() }],
            ErrorCode::DimensionMismatch,
        ),
        ("missing pooled", vec![Document { pooled: vec![], ..good.clone() }], ErrorCode::InvalidArgument),
        ("unknown pooled", vec![good.clone().pooled("other", vec![0.0; DIM])], ErrorCode::NotFound),
        ("unknown column", vec![good.clone().set("nope", 1)], ErrorCode::NotFound),
        ("wrong column type", vec![good.clone().set("title", 5)], ErrorCode::InvalidArgument),
        ("bad JSON", vec![good.clone().set("meta", "{not json")], ErrorCode::InvalidArgument),
        ("column twice", vec![good.clone().set("year", 2)], ErrorCode::InvalidArgument),
        (
            "integer id in text collection",
            vec![Document { id: 5.into(), ..good.clone() }],
            ErrorCode::InvalidArgument,
        ),
        ("empty id", vec![Document { id: "".into(), ..good.clone() }], ErrorCode::InvalidArgument),
    ];
    let before = (db.stats("c").unwrap(), db.info().unwrap().generation);
    for (what, docs, code) in cases {
        let err = db.insert("c", &docs).expect_err(what);
        assert_eq!(err.code(), code, "{what}: {err}");
        assert!(!err.to_string().is_empty());
        assert_eq!(
            (db.stats("c").unwrap(), db.info().unwrap().generation),
            before,
            "{what} changed the database"
        );
    }
    assert_eq!(db.get("c", &"new".into()).unwrap(), None);
    let err = db.insert("nope", std::slice::from_ref(&good)).unwrap_err();
    assert!(matches!(err, Error::NotFound { kind: "collection", .. }), "{err}");
    assert_eq!(
        db.update("c", &"exists".into(), &[("year".into(), Value::Text("x".into()))]).unwrap_err().code(),
        ErrorCode::InvalidArgument
    );
}

#[test]
fn bad_collection_specs_are_rejected() {
    let (_d, db) = tempdb();
    let bad = [
        CollectionSpec::new("1abc", VectorSpec::new(4)),
        CollectionSpec::new("a b", VectorSpec::new(4)),
        CollectionSpec::new("x; DROP TABLE meta", VectorSpec::new(4)),
        CollectionSpec::new("ok", VectorSpec::new(0)),
        CollectionSpec::new("ok", VectorSpec::new(100_000)),
        CollectionSpec::new("ok", VectorSpec::new(4)).column("id", ColumnType::Text),
        CollectionSpec::new("ok", VectorSpec::new(4))
            .column("a", ColumnType::Text)
            .column("A", ColumnType::Text),
        CollectionSpec::new("ok", VectorSpec::new(4).pooled("m", 4).pooled("m", 8)),
        CollectionSpec::new("ok", VectorSpec::new(4).pooled("m\"x", 4)),
    ];
    for s in bad {
        let e = db.create_collection(&s).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_) | Error::AlreadyExists { .. }), "{s:?}: {e}");
    }
    assert!(db.collections().unwrap().is_empty());
    assert!(matches!(ColumnType::parse("BLOB"), Err(Error::InvalidArgument(_))));
    assert!(matches!(Dtype::parse("int4"), Err(Error::InvalidArgument(_))));
}

#[test]
fn error_codes_are_stable() {
    assert_eq!(ErrorCode::Ok as i32, 0);
    assert_eq!(ErrorCode::InvalidArgument as i32, 2);
    assert_eq!(ErrorCode::Corruption as i32, 6);
    assert_eq!(ErrorCode::Locked as i32, 8);
    assert_eq!(ErrorCode::NotAvailable as i32, 12);
}

/// The README's bad-input table, row by row, through the language (what the shell, the
/// C API and the bindings run) and the Rust API: each gets its error code and changes
/// nothing. (Invalid UTF-8 in a statement is the C API's and the shell's to catch: both
/// are tested in `bindings/c/tests/test_capi.c` and `shell.rs`.)
#[test]
fn the_bad_input_table_holds() {
    use maxsimdb::sql::Session;
    let (dir, db) = tempdb();
    let s = Session::new(db.clone());
    s.execute("CREATE COLLECTION c (title TEXT, year INTEGER, meta JSON) WITH (dim = 2, pooled = 'mean:2')")
        .unwrap();
    s.execute("INSERT INTO c (id, title, year, tokens, mean) VALUES ('a', 'x', 1, '[[1,0]]', '[1,0]')")
        .unwrap();
    let bad_utf8 = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad_utf8,
        b"{\"id\": \"b\", \"title\": \"\xff\xfe\", \"tokens\": [[1,0]], \"mean\": [1,0]}\n",
    )
    .unwrap();
    let rows: Vec<(&str, String, ErrorCode)> = vec![
        (
            "wrong dimension",
            "INSERT INTO c (id, tokens, mean) VALUES ('b', '[[1,0,0]]', '[1,0]')".into(),
            ErrorCode::DimensionMismatch,
        ),
        (
            "wrong query dimension",
            "SELECT id FROM c ORDER BY maxsim('[[1,0,0]]') LIMIT 1".into(),
            ErrorCode::DimensionMismatch,
        ),
        (
            "NaN (overflowing literal)",
            "INSERT INTO c (id, tokens, mean) VALUES ('b', '[[1e999,0]]', '[1,0]')".into(),
            ErrorCode::InvalidArgument,
        ),
        (
            "empty document",
            "INSERT INTO c (id, tokens, mean) VALUES ('b', '[]', '[1,0]')".into(),
            ErrorCode::InvalidArgument,
        ),
        (
            "malformed JSON vector",
            "INSERT INTO c (id, tokens, mean) VALUES ('b', '[[1,0]', '[1,0]')".into(),
            ErrorCode::InvalidArgument,
        ),
        (
            "vector of strings",
            "SELECT id FROM c ORDER BY dense(mean, '[\"a\", 1]') LIMIT 1".into(),
            ErrorCode::InvalidArgument,
        ),
        (
            "unknown collection",
            "SELECT id FROM nope ORDER BY maxsim('[[1,0]]') LIMIT 1".into(),
            ErrorCode::NotFound,
        ),
        (
            "unknown column",
            "SELECT id FROM c WHERE nope = 1 ORDER BY maxsim('[[1,0]]') LIMIT 1".into(),
            ErrorCode::NotFound,
        ),
        (
            "unknown pooled vector",
            "SELECT id FROM c ORDER BY dense(other, '[1,0]') LIMIT 1".into(),
            ErrorCode::NotFound,
        ),
        (
            "duplicate id",
            "INSERT INTO c (id, tokens, mean) VALUES ('a', '[[1,0]]', '[1,0]')".into(),
            ErrorCode::AlreadyExists,
        ),
        (
            "oversized LIMIT",
            "SELECT id FROM c ORDER BY maxsim('[[1,0]]') LIMIT 100000".into(),
            ErrorCode::InvalidArgument,
        ),
        (
            "negative LIMIT",
            "SELECT id FROM c ORDER BY maxsim('[[1,0]]') LIMIT -1".into(),
            ErrorCode::InvalidArgument,
        ),
        (
            "invalid UTF-8 in an imported file",
            format!("IMPORT INTO c FROM '{}'", bad_utf8.display()),
            ErrorCode::InvalidArgument,
        ),
        ("hostile SQL: ATTACH", "ATTACH DATABASE '/tmp/x' AS x".into(), ErrorCode::Syntax),
        ("hostile SQL: PRAGMA", "PRAGMA writable_schema = 1".into(), ErrorCode::Syntax),
        (
            "hostile SQL: injection in a literal",
            "SELECT id FROM c WHERE title = 'x'' OR 1=1 --' ORDER BY maxsim('[[1,0]]') LIMIT 5".into(),
            ErrorCode::Ok,
        ),
        (
            "hostile SQL: function in WHERE",
            "SELECT id FROM c WHERE load_extension('x') ORDER BY maxsim('[[1,0]]') LIMIT 1".into(),
            ErrorCode::InvalidArgument,
        ),
        (
            "hostile SQL: subquery",
            "DELETE FROM c WHERE id IN (SELECT id FROM c)".into(),
            ErrorCode::InvalidArgument,
        ),
        ("hostile SQL: stacked DROP TABLE", "FLUSH c; DROP TABLE c1_docs".into(), ErrorCode::Syntax),
    ];
    let before = (db.stats("c").unwrap(), db.info().unwrap().generation);
    for (what, sql, code) in rows {
        match s.execute(&sql) {
            Ok(r) => {
                assert_eq!(code, ErrorCode::Ok, "{what}: accepted");
                // The quote stays inside the literal: no row has that title.
                assert!(r.iter().all(|r| r.rows.is_empty()), "{what}: {r:?}");
            }
            Err(e) => assert_eq!(e.code(), code, "{what}: {e}"),
        }
        let now = (db.stats("c").unwrap(), db.info().unwrap().generation);
        // The stacked statement flushes before it fails: only that may move the generation.
        if !what.contains("stacked") {
            assert_eq!(now, before, "{what} changed the database");
        }
    }
    let huge = Document::new("big")
        .tokens(vec![0.5; 2 * (maxsimdb::MAX_TOKENS_PER_DOC + 1)])
        .pooled("mean", vec![1.0, 0.0]);
    assert_eq!(
        db.insert("c", &[huge]).unwrap_err().code(),
        ErrorCode::InvalidArgument,
        "very large document"
    );
}

/// Regression (fuzz target `capi_stmt`, artifact crash-369495b6…): a placeholder with a
/// huge number made `msdb_stmt_prepare` allocate a parameter slot for every number up to
/// it and run out of memory. It is now an error.
#[test]
fn a_huge_parameter_number_is_an_error_not_an_allocation() {
    use maxsimdb::sql::{prepare, MAX_PARAMS};
    let sql = format!("SELECT id FROM c ORDER BY maxsim(?{}) LIMIT 1", u64::MAX / 3);
    assert_eq!(prepare(&sql).unwrap_err().code(), ErrorCode::InvalidArgument);
    let fuzzed = b"$er6666666666666666666666666666666666666666666666666666666666666?6666666666&&66666666666666666666666?666SE\x05 ";
    let err = prepare(std::str::from_utf8(fuzzed).unwrap()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    assert_eq!(
        prepare(&format!("SELECT id FROM c ORDER BY maxsim(?{MAX_PARAMS}) LIMIT 1")).unwrap(),
        MAX_PARAMS
    );
}

/// A path that is a regular file, or a non-empty directory without a catalog, is refused
/// (and left untouched) instead of being adopted as a database.
#[test]
fn a_file_or_a_foreign_directory_is_not_adopted_as_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "mine").unwrap();
    let e = maxsimdb::Database::open(&file).unwrap_err();
    assert!(e.to_string().contains("is a file, not a database directory"), "{e}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
    let foreign = dir.path().join("photos");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("a.jpg"), "x").unwrap();
    let e = maxsimdb::Database::open(&foreign).unwrap_err();
    assert!(e.to_string().contains("no maxsimdb catalog"), "{e}");
    let names: Vec<_> = std::fs::read_dir(&foreign).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(names.len(), 1, "nothing written: {names:?}");
    // An empty directory is fine, and so is reopening a database.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    drop(maxsimdb::Database::open(&empty).unwrap());
    drop(maxsimdb::Database::open(&empty).unwrap());
}
