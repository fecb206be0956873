//! Online backup into one zstd archive while a writer and readers keep working; restore
//! verifies every checksum before anything is visible and refuses damaged archives.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use maxsimdb::sql::Session;
use maxsimdb::testing::{crash_doc, crash_setup, run_op, CrashModel, InFlight};
use maxsimdb::{Database, DocId, Error, HnswParams, SearchRequest};

fn small_db(path: &std::path::Path) -> (Database, CrashModel) {
    let db = Database::builder(path).flush_threshold_tokens(40).open().unwrap();
    crash_setup(&db).unwrap();
    let mut model = CrashModel::default();
    for op in [
        InFlight::Insert((1..=12).map(|i| (i, 0)).collect()),
        InFlight::Flush,
        InFlight::Insert(vec![(20, 0), (21, 0)]),
        InFlight::Update(3, 1500),
        InFlight::Delete(4),
    ] {
        run_op(&db, &op).unwrap();
        model.apply(&op);
    }
    (db, model)
}

#[test]
fn backup_while_writing_restores_a_consistent_database() {
    let dir = tempfile::tempdir().unwrap();
    let (db, mut model) = small_db(&dir.path().join("live.msdb"));
    db.create_hnsw_index("c", "mean", HnswParams::default()).unwrap();
    // A writer inserting batches of 3 and a reader searching, during the backup.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut next = 1000;
            while !stop.load(Ordering::Relaxed) {
                run_op(&db, &InFlight::Insert((next..next + 3).map(|i| (i, 0)).collect())).unwrap();
                next += 3;
            }
        })
    };
    let reader = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                db.search("c", &SearchRequest::maxsim(crash_doc(1, 0).tokens).limit(3)).unwrap();
                n += 1;
            }
            n
        })
    };
    let archive = dir.path().join("b.msdb.zst");
    let mut calls = 0;
    let report = db
        .backup(&archive, |done, total| {
            calls += 1;
            assert!(done <= total);
        })
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(reader.join().unwrap() > 0);
    assert!(calls > 0 && report.files >= 3 && report.archive_bytes > 0, "{report:?}");
    assert!(matches!(db.backup(&archive, |_, _| {}), Err(Error::AlreadyExists { .. })));

    let target = dir.path().join("restored.msdb");
    let r = Database::restore(&archive, &target, |_, _| {}).unwrap();
    assert_eq!((r.files, r.bytes), (report.files, report.bytes));
    assert!(matches!(Database::restore(&archive, &target, |_, _| {}), Err(Error::AlreadyExists { .. })));
    let copy = Database::open(&target).unwrap();
    // Everything acknowledged before the backup started is there; of the concurrent
    // writer's batches, whole batches only.
    let stats = copy.stats("c").unwrap();
    let extra = stats.docs as usize - model.live.len();
    assert_eq!(extra % 3, 0, "a torn batch in the snapshot: {extra} extra documents");
    for id in (1000..1000 + extra as i64).step_by(3) {
        let batch = InFlight::Insert((id..id + 3).map(|i| (i, 0)).collect());
        model.apply(&batch);
    }
    model.verify(&copy, None).unwrap();
    assert!(copy.check().unwrap().problems.is_empty());
    assert_eq!(copy.get("c", &DocId::Int(4)).unwrap(), None, "the delete is in the snapshot");
}

#[test]
fn every_damaged_byte_of_an_archive_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = small_db(&dir.path().join("db.msdb"));
    let archive = dir.path().join("a.msdb.zst");
    db.backup(&archive, |_, _| {}).unwrap();
    let original = std::fs::read(&archive).unwrap();
    // Every byte of a small archive would take minutes in a debug build: every byte of the
    // first and last 256 (headers, manifest, checksums) and 400 spread over the rest.
    let n = original.len();
    let mut spots: Vec<usize> = (0..256.min(n)).chain(n.saturating_sub(256)..n).collect();
    spots.extend((0..400).map(|k| k * n / 400));
    spots.sort_unstable();
    spots.dedup();
    let target = dir.path().join("t.msdb");
    for (i, &at) in spots.iter().enumerate() {
        let mut bytes = original.clone();
        bytes[at] ^= 1 << (i % 8);
        std::fs::write(&archive, &bytes).unwrap();
        match Database::restore(&archive, &target, |_, _| {}) {
            Err(Error::Corruption { path, .. }) => assert_eq!(path, archive),
            other => panic!("flip at byte {at} of {n}: {other:?}"),
        }
        assert!(!target.exists(), "a refused archive leaves nothing behind");
        assert!(!dir.path().join("t.msdb.restoring").exists());
    }
    for keep in [0, 10, n / 2, n - 1] {
        std::fs::write(&archive, &original[..keep]).unwrap();
        assert!(
            matches!(Database::restore(&archive, &target, |_, _| {}), Err(Error::Corruption { .. })),
            "{keep}"
        );
    }
    std::fs::write(&archive, &original).unwrap();
    Database::restore(&archive, &target, |_, _| {}).unwrap();
    assert!(Database::open(&target).unwrap().check().unwrap().problems.is_empty());
}

#[test]
fn backup_and_restore_statements() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = small_db(&dir.path().join("db.msdb"));
    let s = Session::new(db);
    let archive = dir.path().join("s.msdb.zst");
    let target = dir.path().join("s.msdb");
    let out = s.execute(&format!("BACKUP TO '{}'", archive.display())).unwrap();
    assert!(out[0].message.as_deref().unwrap().starts_with("backed up"), "{out:?}");
    let out =
        s.execute(&format!("RESTORE FROM '{}' INTO '{}'", archive.display(), target.display())).unwrap();
    assert!(out[0].message.as_deref().unwrap().contains("every checksum verified"), "{out:?}");
    let copy = Session::new(Database::open(&target).unwrap());
    let rows = copy.execute("SELECT id FROM c WHERE id = 3 ORDER BY bm25('k3x1500') LIMIT 5").unwrap();
    assert_eq!(rows[0].rows.len(), 1, "the restored full-text index answers");
    let err = s.execute(&format!(
        "RESTORE FROM '{}' INTO '{}'",
        dir.path().join("db.msdb/catalog.sqlite").display(),
        dir.path().join("x").display()
    ));
    assert!(matches!(err, Err(Error::Corruption { .. })), "{err:?}");
}

/// A backup verifies what it copies: a damaged segment or index side file stops it with
/// a corruption error naming the file, and no archive is left; the undamaged database
/// backs up and restores.
#[test]
fn backup_refuses_to_copy_a_damaged_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.msdb");
    let (db, _) = small_db(&path);
    db.create_hnsw_index("c", "mean", HnswParams::default()).unwrap();
    drop(db);
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(path.join("segments"))
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten().map(|e| e.path()))
        .collect();
    for ext in ["seg", "hnsw"] {
        let victim = files.iter().find(|p| p.extension().is_some_and(|e| e == ext)).unwrap();
        let original = std::fs::read(victim).unwrap();
        let mut bad = original.clone();
        let at = bad.len() / 2;
        bad[at] ^= 0x08;
        std::fs::write(victim, &bad).unwrap();
        let db = Database::open(&path).unwrap();
        let dest = dir.path().join(format!("{ext}.msdb.zst"));
        let err = db.backup(&dest, |_, _| {}).unwrap_err();
        assert!(matches!(err, Error::Corruption { .. }), "{ext}: {err}");
        let name = victim.file_name().unwrap().to_string_lossy().into_owned();
        assert!(err.to_string().contains(&name) && err.to_string().contains("BACKUP refuses"), "{err}");
        assert!(!dest.exists(), "no archive of a damaged database");
        drop(db);
        std::fs::write(victim, &original).unwrap();
    }
    let db = Database::open(&path).unwrap();
    let dest = dir.path().join("ok.msdb.zst");
    db.backup(&dest, |_, _| {}).unwrap();
    Database::restore(&dest, dir.path().join("r.msdb"), |_, _| {}).unwrap();
}

/// `Database::interrupt` from the progress callback stops a backup and an export: no
/// archive or file (nor its `.tmp`) is left, and the next run, with no interrupt pending,
/// completes.
#[test]
fn an_interrupted_backup_or_export_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = small_db(&dir.path().join("live.msdb"));
    // More documents than one export batch (1,024), so there is a boundary to stop at.
    run_op(&db, &InFlight::Insert((100..1300).map(|i| (i, 0)).collect())).unwrap();
    let archive = dir.path().join("b.zst");
    let err = db.backup(&archive, |_, _| db.interrupt()).unwrap_err();
    assert!(matches!(err, Error::Interrupted(_)), "{err}");
    assert!(err.to_string().contains("no archive was written"), "{err}");
    let file = dir.path().join("c.parquet");
    let err = db
        .export_parquet("c", &file, |done, total| {
            if done < total {
                db.interrupt()
            }
        })
        .unwrap_err();
    assert!(matches!(err, Error::Interrupted(_)), "{err}");
    let mut left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    left.sort();
    assert_eq!(left, ["live.msdb"]);
    db.interrupt(); // sent while nothing runs: the next operation starts afresh
    assert!(db.backup(&archive, |_, _| {}).unwrap().files > 0);
    assert_eq!(db.export_parquet("c", &file, |_, _| {}).unwrap().docs, db.count("c", None).unwrap());
}
