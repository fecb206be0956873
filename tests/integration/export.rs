//! EXPORT / IMPORT as Apache Parquet: bit-exact round trips (f32 and f16), files written
//! by other tools, bad files refused whole, consistency under a concurrent writer, and
//! pyarrow reading what we write.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int32Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use maxsimdb::sql::Session;
use maxsimdb::testing::Rng;
use maxsimdb::{
    CollectionSpec, ColumnType, Database, DocId, Document, Dtype, Error, IdType, StoredDocument, Value,
    VectorSpec,
};

use crate::common::{doc, spec, tempdb, DIM};

/// Every live document, by id.
fn all_docs(db: &Database, coll: &str, ids: &[DocId]) -> BTreeMap<String, StoredDocument> {
    ids.iter().filter_map(|id| db.get(coll, id).unwrap()).map(|d| (d.id.to_string(), d)).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A collection with flushed and pending documents, NULLs, JSON, a deleted document and
/// awkward floats (-0.0, subnormals, extremes).
fn populated(db: &Database, dtype: Dtype) -> Vec<DocId> {
    db.create_collection(&spec("c", dtype)).unwrap();
    let mut rng = Rng::new(7);
    let mut ids = Vec::new();
    let mut docs = Vec::new();
    for i in 0..40 {
        let mut d = doc(&mut rng, &format!("d{i}"), 1 + i % 9, 1990 + i as i64);
        if i % 3 == 0 {
            d = d.set("rating", 0.25 * i as f64).set("meta", serde_json::json!({"i": i, "tags": ["a", "b"]}));
        }
        if i == 5 {
            let tiny = if dtype == Dtype::F32 { f32::from_bits(1) } else { 6.0e-8 };
            d.tokens[0] = -0.0;
            d.tokens[1] = tiny;
            d.tokens[2] = if dtype == Dtype::F32 { f32::MAX } else { 65504.0 };
            d.tokens[3] = 1.0 / 3.0;
        }
        ids.push(d.id.clone());
        docs.push(d);
    }
    db.insert("c", &docs[..30]).unwrap();
    db.flush("c").unwrap();
    db.insert("c", &docs[30..]).unwrap(); // pending
    db.delete("c", &[DocId::from("d7"), DocId::from("d33")]).unwrap();
    ids
}

fn round_trip(dtype: Dtype) {
    let (dir, db) = tempdb();
    let ids = populated(&db, dtype);
    let before = all_docs(&db, "c", &ids);
    assert_eq!(before.len(), 38);
    let file = dir.path().join("c.parquet");
    let mut calls = 0;
    let r = db
        .export_parquet("c", &file, |_, total| {
            calls += 1;
            assert_eq!(total, 38);
        })
        .unwrap();
    assert!(calls >= 2, "progress reported");
    assert_eq!(r.docs, 38);
    assert_eq!(r.tokens, before.values().map(|d| (d.tokens.len() / DIM) as u64).sum::<u64>());
    assert!(r.file_bytes > 0 && !dir.path().join("c.parquet.tmp").exists());

    // Into a fresh database: the collection is created from the spec in the file.
    let other = Database::open(dir.path().join("other.msdb")).unwrap();
    let mut phases = Vec::new();
    let ir =
        other.import_parquet("copy", &file, |phase, done, total| phases.push((phase, done, total))).unwrap();
    assert_eq!(phases.first().map(|p| p.0), Some("checked"));
    assert_eq!(phases.last(), Some(&("imported", 38, 38)));
    assert!(ir.created && ir.ignored.is_empty(), "{ir:?}");
    assert_eq!((ir.docs, ir.tokens), (38, r.tokens));
    let mut want = spec("copy", dtype);
    want.vectors.dtype = dtype;
    assert_eq!(other.describe("copy").unwrap(), want);
    let after = all_docs(&other, "copy", &ids);
    assert_eq!(after.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>());
    for (id, a) in &before {
        let b = &after[id];
        assert_eq!(bits(&a.tokens), bits(&b.tokens), "{id}: token bits");
        assert_eq!(a.pooled.len(), b.pooled.len());
        for (p, q) in a.pooled.iter().zip(&b.pooled) {
            assert_eq!((&p.0, bits(&p.1)), (&q.0, bits(&q.1)), "{id}: pooled bits");
        }
        assert_eq!(a.values, b.values, "{id}: scalar values");
    }
    assert_eq!(bits(&after["d5"].tokens[..1]), [(-0.0f32).to_bits()]);
    // Searching the copy gives the original's answer.
    let q = before["d12"].tokens.clone();
    let hits = |db: &Database, c: &str| {
        db.search(c, &maxsimdb::SearchRequest::maxsim(q.clone()).limit(5))
            .unwrap()
            .into_iter()
            .map(|h| (h.id, h.score.to_bits()))
            .collect::<Vec<_>>()
    };
    assert_eq!(hits(&db, "c"), hits(&other, "copy"));
}

#[test]
fn f32_collections_round_trip_bit_exactly() {
    round_trip(Dtype::F32);
}

#[test]
fn f16_collections_round_trip_bit_exactly() {
    round_trip(Dtype::F16);
}

#[test]
fn integer_ids_and_empty_collections_round_trip() {
    let (dir, db) = tempdb();
    db.create_collection(&small(IdType::Integer)).unwrap();
    let empty = dir.path().join("empty.parquet");
    assert_eq!(db.export_parquet("f", &empty, |_, _| {}).unwrap().docs, 0);
    let r = db.import_parquet("f0", &empty, |_, _, _| {}).unwrap();
    assert!(r.created && r.docs == 0);
    assert_eq!(db.describe("f0").unwrap().id_type, IdType::Integer);
    let docs: Vec<Document> = (0..5)
        .map(|i| Document::new(i64::MAX - i).tokens(vec![i as f32, -1.5, 0.25]).set("title", format!("t{i}")))
        .collect();
    db.insert("f", &docs).unwrap();
    let file = dir.path().join("ints.parquet");
    db.export_parquet("f", &file, |_, _| {}).unwrap();
    db.import_parquet("f1", &file, |_, _, _| {}).unwrap();
    for d in &docs {
        let got = db.get("f1", &d.id).unwrap().unwrap();
        assert_eq!((got.tokens, got.values), (d.tokens.clone(), d.values.clone()));
    }
}

#[test]
fn colliding_names_round_trip() {
    let (dir, db) = tempdb();
    let spec = CollectionSpec::new(
        "n",
        VectorSpec::new(2).pooled("mean", 2).pooled("id", 2).pooled("tokens", 2).dtype(Dtype::F32),
    )
    .column("tokens", ColumnType::Text)
    .column("mean", ColumnType::Integer);
    db.create_collection(&spec).unwrap();
    let d = Document::new("a")
        .tokens(vec![1.0, 2.0, 3.0, 4.0])
        .pooled("mean", vec![5.0, 6.0])
        .pooled("id", vec![7.0, 8.0])
        .pooled("tokens", vec![9.0, 10.0])
        .set("tokens", "words")
        .set("mean", 11i64);
    db.insert("n", std::slice::from_ref(&d)).unwrap();
    let file = dir.path().join("n.parquet");
    db.export_parquet("n", &file, |_, _| {}).unwrap();
    let other = Database::open(dir.path().join("o.msdb")).unwrap();
    other.import_parquet("n", &file, |_, _, _| {}).unwrap();
    assert_eq!(other.get("n", &d.id).unwrap(), db.get("n", &d.id).unwrap());
    let got = other.get("n", &d.id).unwrap().unwrap();
    assert_eq!(got.tokens, d.tokens);
    assert_eq!(got.pooled, d.pooled);
}

#[test]
fn export_and_import_through_sql() {
    let (dir, db) = tempdb();
    let ids = populated(&db, Dtype::F16);
    let s = Session::new(db.clone());
    let file = dir.path().join("e.parquet");
    let f = file.display().to_string();
    let msg = s.execute(&format!("EXPORT c TO '{f}'")).unwrap().remove(0).message.unwrap();
    assert!(msg.starts_with("exported 38 documents"), "{msg}");
    let e = s.execute(&format!("EXPORT c TO '{f}'")).unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e}");
    let e = s.execute(&format!("EXPORT c TO '{}'", dir.path().join("e.jsonl").display())).unwrap_err();
    assert!(e.to_string().contains("*.parquet"), "{e}");
    let e = s.execute(&format!("EXPORT nope TO '{}'", dir.path().join("n.parquet").display())).unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    assert!(!dir.path().join("n.parquet").exists() && !dir.path().join("n.parquet.tmp").exists());
    // IMPORT recognises Parquet by its magic bytes, whatever the file is called.
    let renamed = dir.path().join("e.data");
    std::fs::copy(&file, &renamed).unwrap();
    s.execute("CREATE COLLECTION c2 (year INTEGER, title TEXT, rating REAL, meta JSON) WITH (dim = 16, pooled = 'mean:16')")
        .unwrap();
    let msg = s
        .execute(&format!("IMPORT INTO c2 FROM '{}'", renamed.display()))
        .unwrap()
        .remove(0)
        .message
        .unwrap();
    assert!(msg.starts_with("imported 38 documents"), "{msg}");
    assert_eq!(all_docs(&db, "c2", &ids).len(), 38);
    // Importing the same file again: every id exists, nothing changes.
    let e = s.execute(&format!("IMPORT INTO c2 FROM '{f}'")).unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e}");
    assert_eq!(db.stats("c2").unwrap().docs, 38);
}

/// Write `batch` as a Parquet file with arrow-rs directly (no maxsimdb metadata): what
/// another tool would produce.
fn write_foreign(path: &Path, batch: &RecordBatch) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// One row of a foreign file: id, token vectors, title.
type Row<'a> = (i32, Vec<Vec<f64>>, Option<&'a str>);

/// Lists of lists of float64 (what pandas and Spark write), int32 ids, an extra column.
fn foreign_batch(rows: &[Row<'_>]) -> RecordBatch {
    let mut ids = Int32Builder::new();
    let mut toks = ListBuilder::new(ListBuilder::new(Float64Builder::new()));
    let mut titles = StringBuilder::new();
    let mut extra = StringBuilder::new();
    for (id, t, title) in rows {
        ids.append_value(*id);
        for v in t {
            toks.values().values().append_slice(v);
            toks.values().append(true);
        }
        toks.append(true);
        titles.append_option(*title);
        extra.append_value("x");
    }
    RecordBatch::try_from_iter([
        ("id", Arc::new(ids.finish()) as ArrayRef),
        ("tokens", Arc::new(toks.finish()) as ArrayRef),
        ("title", Arc::new(titles.finish()) as ArrayRef),
        ("source", Arc::new(extra.finish()) as ArrayRef),
    ])
    .unwrap()
}

fn small(id_type: IdType) -> CollectionSpec {
    CollectionSpec::new("f", VectorSpec::new(3).dtype(Dtype::F32))
        .id_type(id_type)
        .column("title", ColumnType::Text)
}

#[test]
fn files_from_other_tools_import() {
    let (dir, db) = tempdb();
    db.create_collection(&small(IdType::Integer)).unwrap();
    let path = dir.path().join("foreign.parquet");
    write_foreign(
        &path,
        &foreign_batch(&[
            (1, vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0]], Some("one")),
            (2, vec![vec![0.5, 0.5, 0.0]], None),
        ]),
    );
    let r = db.import_parquet("f", &path, |_, _, _| {}).unwrap();
    assert_eq!((r.docs, r.tokens, r.created), (2, 3, false));
    assert_eq!(r.ignored, ["source"]);
    let d = db.get("f", &DocId::Int(1)).unwrap().unwrap();
    assert_eq!(d.tokens, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    assert_eq!(d.values, [("title".to_string(), Value::Text("one".into()))]);
    let d = db.get("f", &DocId::Int(2)).unwrap().unwrap();
    assert_eq!(d.values, [("title".to_string(), Value::Null)]);
    // No spec in the file and no collection: say what to do.
    let e = db.import_parquet("missing", &path, |_, _, _| {}).unwrap_err();
    assert!(e.to_string().contains("CREATE COLLECTION"), "{e}");
}

#[test]
fn a_bad_file_changes_nothing() {
    let (dir, db) = tempdb();
    db.create_collection(&small(IdType::Integer)).unwrap();
    db.insert("f", &[Document::new(9).tokens(vec![1.0, 0.0, 0.0])]).unwrap();
    let ok = vec![vec![1.0, 0.0, 0.0]];
    let cases: Vec<(&str, Vec<Row<'_>>, &str)> = vec![
        ("nan", vec![(1, ok.clone(), None), (2, vec![vec![f64::NAN, 0.0, 0.0]], None)], "row 1"),
        ("dim", vec![(1, ok.clone(), None), (2, vec![vec![1.0, 0.0]], None)], "token_dim is 3"),
        ("twice", vec![(1, ok.clone(), None), (1, ok.clone(), None)], "twice in the file"),
        ("exists", vec![(1, ok.clone(), None), (9, ok.clone(), None)], "9"),
        ("empty", vec![(1, ok.clone(), None), (2, vec![], None)], "row 1"),
    ];
    for (name, rows, says) in cases {
        let path = dir.path().join(format!("{name}.parquet"));
        write_foreign(&path, &foreign_batch(&rows));
        let e = db.import_parquet("f", &path, |_, _, _| {}).unwrap_err();
        assert!(e.to_string().contains(says), "{name}: {e}");
        assert_eq!(db.stats("f").unwrap().docs, 1, "{name}: nothing inserted");
    }
    // Not Parquet at all; a truncated export.
    let junk = dir.path().join("junk.parquet");
    std::fs::write(&junk, b"PAR1 this is not parquet").unwrap();
    let e = db.import_parquet("f", &junk, |_, _, _| {}).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("Parquet"), "{e}");
    let (_d2, src) = tempdb();
    populated(&src, Dtype::F32);
    let full = dir.path().join("full.parquet");
    src.export_parquet("c", &full, |_, _| {}).unwrap();
    let bytes = std::fs::read(&full).unwrap();
    std::fs::write(&junk, &bytes[..bytes.len() / 2]).unwrap();
    let e = db.import_parquet("fresh", &junk, |_, _, _| {}).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    assert!(matches!(db.describe("fresh"), Err(Error::NotFound { .. })));
    // A spec-carrying file whose rows fail: the collection it created is dropped again.
    let mut bad = bytes.clone();
    let n = bad.len();
    bad[n / 3] ^= 0x40; // page data: zstd or the decoder refuses it, or a value changes
    std::fs::write(&junk, &bad).unwrap();
    match db.import_parquet("fresh", &junk, |_, _, _| {}) {
        Err(_) => assert!(matches!(db.describe("fresh"), Err(Error::NotFound { .. }))),
        Ok(r) => assert_eq!(r.docs, 38),
    }
}

#[test]
fn export_during_writes_is_one_snapshot() {
    let (dir, db) = tempdb();
    db.create_collection(&spec("c", Dtype::F16)).unwrap();
    let mut rng = Rng::new(3);
    let base: Vec<Document> = (0..50).map(|i| doc(&mut rng, &format!("base{i}"), 3, 2000)).collect();
    db.insert("c", &base).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let batches = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (db, stop, batches) = (db.clone(), stop.clone(), batches.clone());
        std::thread::spawn(move || {
            let mut rng = Rng::new(4);
            let mut b = 0;
            while !stop.load(Ordering::Relaxed) {
                batches.store(b, Ordering::Relaxed);
                let docs: Vec<Document> =
                    (0..4).map(|j| doc(&mut rng, &format!("w{b}_{j}"), 2, 2001)).collect();
                db.insert("c", &docs).unwrap();
                if b % 5 == 0 {
                    db.flush("c").unwrap();
                }
                b += 1;
            }
            b
        })
    };
    let mut got = Vec::new();
    for k in 0..3 {
        while batches.load(Ordering::Relaxed) < 3 * (k + 1) {
            std::thread::yield_now();
        }
        let file = dir.path().join(format!("s{k}.parquet"));
        let r = db.export_parquet("c", &file, |_, _| {}).unwrap();
        got.push((file, r.docs));
    }
    stop.store(true, Ordering::Relaxed);
    assert!(writer.join().unwrap() > 0);
    for (file, n) in got {
        let other = Database::open(dir.path().join(format!("{}.msdb", file.display()))).unwrap();
        other.import_parquet("c", &file, |_, _, _| {}).unwrap();
        assert_eq!(other.stats("c").unwrap().docs, n);
        // Every batch of the concurrent writer is in whole or not at all.
        let mut per_batch: BTreeMap<String, usize> = BTreeMap::new();
        let ids = file_ids(&file);
        assert_eq!(ids.len() as u64, n);
        for id in ids {
            if let Some(b) = id.strip_prefix('w') {
                *per_batch.entry(b.split('_').next().unwrap().to_string()).or_default() += 1;
            }
        }
        assert!(per_batch.len() >= 2, "the export saw the writer's batches: {per_batch:?}");
        assert!(per_batch.values().all(|&c| c == 4), "{per_batch:?}");
    }
}

/// The `id` column of a Parquet file of text ids.
fn file_ids(path: &Path) -> Vec<String> {
    use arrow_array::cast::AsArray;
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(path).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let mut out = Vec::new();
    for b in r {
        let b = b.unwrap();
        out.extend(b.column_by_name("id").unwrap().as_string::<i32>().iter().map(|s| s.unwrap().to_string()));
    }
    out
}

/// pyarrow (another implementation) reads an export: schema types, ids, values, vectors,
/// and the spec in the file metadata.
#[test]
fn pyarrow_reads_an_export() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let has = std::process::Command::new(&python)
        .args(["-c", "import pyarrow.parquet"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have pyarrow: python3 -m pip install pyarrow (.ci/run does)"
        );
        eprintln!("\n*** SKIPPED pyarrow_reads_an_export: `{python} -c 'import pyarrow'` failed; pip install pyarrow ***\n");
        return;
    }
    let (dir, db) = tempdb();
    let ids = populated(&db, Dtype::F32);
    let file = dir.path().join("c.parquet");
    db.export_parquet("c", &file, |_, _| {}).unwrap();
    // What pyarrow must see, as JSON.
    let docs = all_docs(&db, "c", &ids);
    let want: Vec<serde_json::Value> = docs
        .values()
        .map(|d| {
            serde_json::json!({
                "id": d.id.to_string(),
                "tokens": d.tokens.chunks(DIM).map(|r| r.iter().map(|x| f64::from(*x)).collect::<Vec<_>>()).collect::<Vec<_>>(),
                "mean": d.pooled[0].1.iter().map(|x| f64::from(*x)).collect::<Vec<_>>(),
                "year": match &d.values[0].1 { Value::Integer(y) => Some(*y), _ => None },
                "title": match &d.values[1].1 { Value::Text(t) => Some(t.clone()), _ => None },
            })
        })
        .collect();
    let want_path = dir.path().join("want.json");
    std::fs::write(&want_path, serde_json::to_vec(&want).unwrap()).unwrap();
    let script = r#"
import json, sys
import pyarrow as pa, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
s = t.schema
assert s.field("id").type == pa.string(), s
assert s.field("year").type == pa.int64(), s
assert s.field("rating").type == pa.float64(), s
tok, mean = s.field("tokens").type, s.field("mean").type
assert pa.types.is_list(tok) and pa.types.is_fixed_size_list(tok.value_type), tok
assert tok.value_type.list_size == 16 and tok.value_type.value_type == pa.float32(), tok
assert pa.types.is_fixed_size_list(mean) and mean.list_size == 16 and mean.value_type == pa.float32(), mean
spec = json.loads(pq.read_metadata(sys.argv[1]).metadata[b"maxsimdb.spec"])
assert spec["vectors"]["token_dim"] == 16 and spec["columns"][0]["name"] == "year", spec
rows = {r["id"]: r for r in t.to_pylist()}
want = json.load(open(sys.argv[2]))
assert len(rows) == len(want), (len(rows), len(want))
for w in want:
    r = rows[w["id"]]
    assert r["tokens"] == w["tokens"], w["id"]
    assert r["mean"] == w["mean"], w["id"]
    assert r["year"] == w["year"] and r["title"] == w["title"], (r, w)
print("pyarrow read", len(rows), "rows,", sum(len(r["tokens"]) for r in rows.values()), "token vectors")
"#;
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&file)
        .arg(&want_path)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pyarrow check failed:\n{text}");
    assert!(text.contains("pyarrow read 38 rows"), "{text}");
}

/// A flipped byte anywhere in a file we exported never imports silently with changed
/// vectors: Parquet's decoding or the content checksum in the file's metadata
/// (`maxsimdb.content_xxh3`, verified before anything is inserted) refuses it.
#[test]
fn damaged_exports_never_import_changed_vectors() {
    let (dir, db) = tempdb();
    let ids = populated(&db, Dtype::F32);
    let before = all_docs(&db, "c", &ids);
    let file = dir.path().join("c.parquet");
    db.export_parquet("c", &file, |_, _| {}).unwrap();
    let original = std::fs::read(&file).unwrap();
    let mut rng = Rng::new(3);
    let (mut refused, mut same) = (0, 0);
    for n in 0..60 {
        let mut bad = original.clone();
        // The data pages: past the 4-byte magic, before the footer.
        let at = 4 + rng.below((original.len() * 3 / 4) as u64) as usize;
        bad[at] ^= 1 + rng.below(255) as u8;
        let f = dir.path().join(format!("bad{n}.parquet"));
        std::fs::write(&f, &bad).unwrap();
        let coll = format!("r{n}");
        match db.import_parquet(&coll, &f, |_, _, _| {}) {
            Err(_) => {
                refused += 1;
                assert!(db.describe(&coll).is_err(), "nothing created");
            }
            Ok(_) => {
                let after = all_docs(&db, &coll, &ids);
                assert_eq!(after.len(), before.len());
                for (id, d) in &before {
                    assert_eq!(
                        bits(&after[id].tokens),
                        bits(&d.tokens),
                        "byte {at}: vectors of {id} changed silently"
                    );
                }
                same += 1;
            }
        }
    }
    assert!(refused > 0, "{refused} refused, {same} identical");
    // The undamaged file still imports.
    db.import_parquet("ok", &file, |_, _, _| {}).unwrap();
}
