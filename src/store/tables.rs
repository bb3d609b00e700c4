//! The redb tables, their key and value encodings, and the schema version.
//!
//! Instance records the planner reads for every instance are fixed-width tuples (fast to
//! scan); everything read only for a few instances is versioned JSON. Opening a store
//! written by a newer drover is refused rather than guessed at.

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::store::Error;

/// Bump when a table changes meaning, and add the step to `migrate`.
pub const SCHEMA_VERSION: u32 = 3;

pub const META: TableDefinition<&str, u32> = TableDefinition::new("meta");
/// Instance id → (spec hash, outcome code, finished at ms, duration ms, run id or 0).
pub const INSTANCES: TableDefinition<&str, ([u8; 32], u8, i64, u64, u64)> =
    TableDefinition::new("instances");
/// Instance id → JSON `InstanceDetail`.
pub const DETAILS: TableDefinition<&str, &[u8]> = TableDefinition::new("details");
/// Triggered instance id → JSON `PendingTrigger`.
pub const TRIGGERS: TableDefinition<&str, &[u8]> = TableDefinition::new("triggers");
/// Instance id → JSON `DriftFinding`.
pub const DRIFT: TableDefinition<&str, &[u8]> = TableDefinition::new("drift");
/// Run id → JSON `RunRecord`.
pub const RUNS: TableDefinition<u64, &[u8]> = TableDefinition::new("runs");
/// Run id → JSON `ApplyReport` (output capped, secrets masked).
pub const REPORTS: TableDefinition<u64, &[u8]> = TableDefinition::new("reports");
/// Instance id → hash of its `undo` and `check` (only instances that have one); version 2.
pub const UNDO_CHECK: TableDefinition<&str, [u8; 32]> = TableDefinition::new("undo_check");
/// Drift check id → JSON `DriftReport` (the newest `DRIFT_REPORTS_KEPT`); version 3.
pub const DRIFT_REPORTS: TableDefinition<u64, &[u8]> = TableDefinition::new("drift_reports");
/// Host name → JSON `facts::Gathered`. Created by its first write and read as empty when
/// absent, so it needs no schema version of its own (decision 0018).
pub const FACTS: TableDefinition<&str, &[u8]> = TableDefinition::new("facts");
/// (run id, sequence) → JSON `Event`.
pub const EVENTS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("events");

const VERSION_KEY: &str = "schemaVersion";

/// Reads the schema version; a store that was created but never initialised reads as 0.
pub fn version(db: &redb::Database) -> Result<u32, Error> {
    let tx = db
        .begin_read()
        .map_err(|e| Error::Read { source: e.into() })?;
    version_of(&tx)
}

/// The schema version, read in a read transaction.
pub fn version_of(tx: &redb::ReadTransaction) -> Result<u32, Error> {
    let table = match tx.open_table(META) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(Error::Read { source: e.into() }),
    };
    let value = table
        .get(VERSION_KEY)
        .map_err(|e| Error::Read { source: e.into() })?;
    Ok(value.map_or(0, |v| v.value()))
}

/// Brings the tables to `SCHEMA_VERSION` inside `tx`.
///
/// Version 0 is a file redb created but drover never initialised (a first run killed at the
/// wrong moment, or an empty file): every table is created. Later versions add their step
/// here, each taking the layout of the version before it.
pub fn migrate(tx: &WriteTransaction, from: u32) -> Result<(), Error> {
    let write = |e: redb::TableError| Error::Write { source: e.into() };
    if from == 0 {
        tx.open_table(INSTANCES).map_err(write)?;
        tx.open_table(DETAILS).map_err(write)?;
        tx.open_table(TRIGGERS).map_err(write)?;
        tx.open_table(DRIFT).map_err(write)?;
        tx.open_table(RUNS).map_err(write)?;
        tx.open_table(EVENTS).map_err(write)?;
        tx.open_table(REPORTS).map_err(write)?;
    }
    if from < 2 {
        // Version 2 records `undo`/`check` hashes; older records have none, so their next
        // plan refreshes the instances that have an `undo` or a `check` (no host contact).
        tx.open_table(UNDO_CHECK).map_err(write)?;
    }
    if from < 3 {
        // Version 3 keeps drift reports; older files have none.
        tx.open_table(DRIFT_REPORTS).map_err(write)?;
    }
    let mut meta = tx.open_table(META).map_err(write)?;
    meta.insert(VERSION_KEY, SCHEMA_VERSION)
        .map_err(|e| Error::Write { source: e.into() })?;
    Ok(())
}

/// The run id after the highest one recorded.
pub fn next_run_id(tx: &WriteTransaction) -> Result<u64, Error> {
    let runs = tx
        .open_table(RUNS)
        .map_err(|e| Error::Write { source: e.into() })?;
    let last = runs.last().map_err(|e| Error::Write { source: e.into() })?;
    Ok(last.map_or(1, |(k, _)| k.value() + 1))
}
