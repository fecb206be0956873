use maxsimdb::testing::{catalog_schema, create_database_at_schema, set_schema_version, Rng};
use maxsimdb::{Database, Dtype, Error, SCHEMA_VERSION};

use crate::common::{doc, spec};

#[test]
fn open_from_empty_records_versions() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("new.msdb")).unwrap();
    let info = db.info().unwrap();
    assert_eq!(info.schema_version, SCHEMA_VERSION);
    assert_eq!(info.created_with_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.generation, 0);
}

#[test]
fn upgrades_from_every_earlier_schema_version() {
    for v in 1..SCHEMA_VERSION {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(format!("v{v}.msdb"));
        create_database_at_schema(&root, v, &spec("old", Dtype::F16)).unwrap();
        // A read-only handle cannot upgrade: it reads schema 2 (no indexes) as it is and
        // refuses schema 1.
        let ro = Database::open_read_only(&root);
        if v >= 2 {
            assert_eq!(ro.unwrap().describe("old").unwrap(), spec("old", Dtype::F16));
        } else {
            assert!(matches!(ro, Err(Error::IncompatibleFormat { .. })), "schema {v}");
        }
        let db = Database::open(&root).unwrap();
        assert_eq!(db.info().unwrap().schema_version, SCHEMA_VERSION);
        assert_eq!(db.describe("old").unwrap(), spec("old", Dtype::F16), "data written at v{v} survives");
        let mut rng = Rng::new(v as u64);
        db.insert("old", &[doc(&mut rng, "a", 3, 1)]).unwrap();
        db.flush("old").unwrap();
        db.insert("old", &[doc(&mut rng, "b", 3, 1)]).unwrap();
        db.flush("old").unwrap();
        assert!(db.compact("old").unwrap(), "compaction uses the v2 retired-files table");
        assert_eq!(db.stats("old").unwrap().docs, 2);
        assert!(db.info().unwrap().generation > 0);
    }
}

#[test]
fn newer_catalog_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("future.msdb");
    drop(Database::open(&root).unwrap());
    set_schema_version(&root, SCHEMA_VERSION + 1).unwrap();
    let err = Database::open(&root).unwrap_err();
    assert!(matches!(err, Error::IncompatibleFormat { found, .. } if found == SCHEMA_VERSION + 1), "{err}");
    assert!(err.to_string().contains("supports"), "{err}");
}

#[test]
fn catalog_schema_snapshot() {
    // Changing the schema needs a new migration; update the snapshot deliberately.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s.msdb");
    let db = Database::open(&root).unwrap();
    db.create_collection(&spec("c", Dtype::F16)).unwrap();
    let got = catalog_schema(&root).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/integration/schema.snapshot.sql");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, &got).unwrap();
    }
    let want = std::fs::read_to_string(path).expect("snapshot file (run with UPDATE_SNAPSHOTS=1 to create)");
    assert_eq!(got, want, "catalog schema changed; add a migration and rerun with UPDATE_SNAPSHOTS=1");
}
