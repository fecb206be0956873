//! Schema migrations, embedded in the binary and applied at open, keyed on
//! `PRAGMA user_version`.

use rusqlite::Connection;

use crate::{Error, Result};

/// Every migration in order; entry `i` upgrades schema version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_retired_files.sql"),
    include_str!("../../migrations/0003_indexes.sql"),
    include_str!("../../migrations/0004_fulltext.sql"),
    include_str!("../../migrations/0005_side_files.sql"),
    include_str!("../../migrations/0006_calibration.sql"),
    include_str!("../../migrations/0007_token_codecs.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Current `user_version` of the catalog.
pub(crate) fn version(conn: &Connection) -> Result<u32> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get::<_, u32>(0))?)
}

/// Upgrade `conn` to `target` in one transaction. Records `format_version`,
/// `created_with_version` (on creation) and `last_upgraded_by` in `meta`.
pub(crate) fn migrate_to(conn: &mut Connection, path: &std::path::Path, target: u32) -> Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
    let current = version(&tx)?;
    if current > SCHEMA_VERSION {
        return Err(Error::IncompatibleFormat {
            path: path.to_path_buf(),
            found: current,
            oldest: 1,
            newest: SCHEMA_VERSION,
        });
    }
    if current >= target {
        return Ok(());
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().take(target as usize).skip(current as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as u32 + 1)?;
    }
    let ver = env!("CARGO_PKG_VERSION");
    if current == 0 {
        tx.execute("INSERT INTO meta(key, value) VALUES ('created_with_version', ?1)", [ver])?;
    }
    tx.execute(
        "INSERT INTO meta(key, value) VALUES ('format_version', ?1), ('last_upgraded_by', ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        rusqlite::params![target.to_string(), ver],
    )?;
    tx.commit()?;
    Ok(())
}
