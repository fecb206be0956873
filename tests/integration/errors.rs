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
