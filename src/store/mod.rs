//! The state store: one redb file (default `<manifests>/.drover/state.redb`, created 0600).
//!
//! redb locks its file exclusively, so the store never stays open: every operation opens
//! the file, runs one transaction, commits durably and closes. Readers (`plan`, `status`,
//! `history`) therefore work while an apply runs, retrying for a moment if they meet the
//! apply mid-commit (`docs/decisions/0004-store-access.md`). Writers also take the
//! `lock::WriterLock`, which serialises whole applies. Nothing here plans or applies.

pub mod facts;
pub mod lock;
pub mod open;
pub mod retention;
pub mod tables;

pub use open::OpenStore;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use redb::{
    Database, DatabaseError, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction,
};

use crate::hash::SpecHash;
use crate::instance::InstanceId;
use crate::run::{Event, EventKind, RunRecord, RunStatus};
use crate::state::{
    DriftFinding, InstanceDetail, Outcome, PendingTrigger, Recorded, RecordedInstance, RunId,
    Timestamp,
};
use lock::Holder;
use tables::{
    DETAILS, DRIFT, DRIFT_REPORTS, EVENTS, INSTANCES, REPORTS, RUNS, SCHEMA_VERSION, TRIGGERS,
    UNDO_CHECK,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the state directory {path}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the state file {path}")]
    Open {
        path: PathBuf,
        source: DatabaseError,
    },
    #[error(
        "the state file {path} stayed busy for {waited:?}: another drover process kept it open"
    )]
    Busy { path: PathBuf, waited: Duration },
    #[error(
        "the state file {path} was written by a newer drover (schema version {found}; this drover knows up to {known})"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    #[error("cannot read the state file")]
    Read { source: redb::Error },
    #[error("cannot write the state file")]
    Write { source: redb::Error },
    #[error("the state file holds a record drover cannot decode: {what}")]
    Corrupt { what: String },
    #[error("cannot use the lock file {path}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", locked_message(path, holder.as_ref(), *waited))]
    Locked {
        path: PathBuf,
        holder: Option<Holder>,
        waited: Duration,
    },
    #[error("run {run} is {from}; it cannot become {to}")]
    RunStatus {
        run: RunId,
        from: &'static str,
        to: &'static str,
    },
    #[error("there is no run {run}")]
    NoRun { run: RunId },
    #[error("cannot encode a record for the state file")]
    Encode { source: serde_json::Error },
    #[error("cannot commit to the state file: {message}")]
    Commit {
        message: String,
        /// The operating system's reason, when the commit failed on I/O (a full disk).
        io: Option<std::io::ErrorKind>,
    },
    #[error("the state file {path} is damaged ({detail})")]
    Damaged { path: PathBuf, detail: String },
    #[error("cannot save the backup {path}")]
    Backup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot look at {path}")]
    Access {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the state file {path} is {}, but {backup} holds the state of a successful apply: the recorded state was lost",
        if *empty { "empty" } else { "missing" }
    )]
    LostWithBackup {
        path: PathBuf,
        backup: PathBuf,
        empty: bool,
    },
    #[error(
        "the state file {path} was deleted or replaced while this apply ran: what it recorded went with the old file"
    )]
    Replaced { path: PathBuf },
}

fn locked_message(path: &Path, holder: Option<&Holder>, waited: Duration) -> String {
    let who = holder.map_or_else(|| "another drover process".to_owned(), |h| format!("{h}"));
    let waited = if waited.is_zero() {
        String::new()
    } else {
        format!(" (waited {waited:?})")
    };
    format!(
        "the state file {} is locked by {who}{waited}",
        path.display()
    )
}

impl Error {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            Error::Locked { .. } => Some("wait for it to finish, or pass --lock-timeout 5m to wait; if that process hangs, stop it (its lock is released when it exits)".to_owned()),
            Error::Busy { .. } => Some("retry in a moment".to_owned()),
            Error::TooNew { .. } => Some("use the newer drover that wrote it, or point --state at another file".to_owned()),
            Error::Corrupt { .. } => Some("restore the state file from a backup (drover keeps the last good state beside it, as <state>.backup), or move it and that backup aside to start afresh (drover will then re-apply everything once)".to_owned()),
            Error::Damaged { path, .. } => Some(restore_help(path)),
            Error::Commit { io: Some(kind), .. } => io_help(*kind),
            Error::Lock { source, .. } | Error::CreateDir { source, .. } => io_help(source.kind()),
            Error::Open { path, source } if is_unreadable_content(source) => Some(restore_help(path)),
            Error::Write { source: redb::Error::Io(e) }
            | Error::Open { source: DatabaseError::Storage(redb::StorageError::Io(e)), .. } => io_help(e.kind()),
            Error::Access { source, .. } => Some(match source.kind() {
                std::io::ErrorKind::PermissionDenied => "drover's user may not enter that directory or read that file: run as the user that owns the state, or fix the permissions (the state is 0600 in a 0700 directory)".to_owned(),
                _ => "check the path given with --state (or the manifest directory's .drover/)".to_owned(),
            }),
            Error::LostWithBackup { path, backup, .. } => Some(format!(
                "restore it: `cp {} {}`; or, to start afresh (every instance planned as new, and its tasks run again), move {} aside too",
                backup.display(),
                path.display(),
                backup.display()
            )),
            Error::Replaced { .. } => Some("the tasks of this apply ran; the next plan shows them again as not recorded: restore the state file you replaced, or apply again (tasks that are idempotent change nothing)".to_owned()),
            Error::Read { source } | Error::Write { source } if is_damage(source) => {
                Some("the state file looks damaged; run the command again, and if it fails the same way restore the backup drover keeps beside it (see `ls <state>.backup`) or move the file aside to start afresh".to_owned())
            }
            Error::Open { .. }
            | Error::Read { .. }
            | Error::Write { .. }
            | Error::RunStatus { .. }
            | Error::NoRun { .. }
            | Error::Encode { .. }
            | Error::Commit { .. }
            | Error::Backup { .. } => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to do about an I/O failure writing the state.
fn io_help(kind: std::io::ErrorKind) -> Option<String> {
    match kind {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => Some(
            "the disk holding the state file is full: free some space and run again; nothing of the failed commit was kept, and the state file still opens".to_owned(),
        ),
        std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied => Some(
            "the state file cannot be written here; read-only commands (plan, history, show, state list) still work; to apply, make it writable or point --state at a writable place".to_owned(),
        ),
        _ => None,
    }
}

impl Error {
    /// The operating system's reason behind this error, if it is an I/O failure.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            Error::Commit { io, .. } => *io,
            Error::Write {
                source: redb::Error::Io(e),
            }
            | Error::Read {
                source: redb::Error::Io(e),
            } => Some(e.kind()),
            Error::Lock { source, .. }
            | Error::CreateDir { source, .. }
            | Error::Backup { source, .. }
            | Error::Access { source, .. } => Some(source.kind()),
            Error::Open { .. }
            | Error::Busy { .. }
            | Error::TooNew { .. }
            | Error::Read { .. }
            | Error::Write { .. }
            | Error::Corrupt { .. }
            | Error::Locked { .. }
            | Error::RunStatus { .. }
            | Error::NoRun { .. }
            | Error::Encode { .. }
            | Error::Damaged { .. }
            | Error::LostWithBackup { .. }
            | Error::Replaced { .. } => None,
        }
    }
}

/// How to recover from a damaged state file: the backup of the last good state, or a fresh
/// start.
fn restore_help(path: &Path) -> String {
    let backup = open::backup_path(path);
    if backup.exists() {
        format!(
            "restore the last good state, saved after the last successful apply: `cp {} {}`; or move the damaged file and that backup aside to start afresh (every instance is then planned as new)",
            backup.display(),
            path.display()
        )
    } else {
        format!(
            "move {} aside to start afresh (every instance is then planned as new); no backup exists yet",
            path.display()
        )
    }
}

/// Whether a redb error says the file's content is inconsistent.
fn is_damage(error: &redb::Error) -> bool {
    matches!(error, redb::Error::Corrupted(_))
}

/// How long an operation waits for another process that has the file open mid-commit.
/// Drift reports kept: a daemon checking every 5 minutes keeps the last eight hours.
pub const DRIFT_REPORTS_KEPT: u64 = 100;

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What to record after an attempt at one instance.
#[derive(Debug)]
pub struct InstanceWrite<'a> {
    pub id: &'a InstanceId,
    pub spec_hash: SpecHash,
    pub outcome: Outcome,
    pub finished_at: Timestamp,
    pub duration_ms: u64,
    pub run: Option<RunId>,
    pub detail: Option<&'a InstanceDetail>,
    /// Instances this one's change triggers: recorded as pending until each succeeds.
    pub fires: &'a [InstanceId],
}

/// What `Store::log` does to an instance alongside its event.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    None,
    Record(&'a InstanceWrite<'a>),
    Forget(&'a InstanceId),
}

/// A handle on a state file; cheap, and holds nothing open.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
    /// Set once this handle (or a clone) found the file at the current schema version, so
    /// later writes do not read the version again (an apply writes twice per instance).
    current: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Store {
    pub fn at(path: impl Into<PathBuf>) -> Store {
        Store {
            path: path.into(),
            current: std::sync::Arc::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether there is recorded state to read. A missing or empty file holds nothing yet
    /// (an empty one is what a first run killed before redb's first write leaves), unless
    /// the backup of a successful apply is beside it: then the state was lost (deleted,
    /// truncated), and reading it as empty would plan everything as new, run it all again
    /// and overwrite that backup. A path drover may not look at is an error, not "absent".
    pub fn exists(&self) -> Result<bool> {
        let access = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Access { path, source }
        };
        let (len, found) = match std::fs::metadata(&self.path) {
            Ok(meta) => (meta.len(), true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, false),
            Err(e) => return Err(access(&self.path)(e)),
        };
        if len > 0 {
            return Ok(true);
        }
        let backup = open::backup_path(&self.path);
        match std::fs::metadata(&backup) {
            Ok(meta) if meta.len() > 0 => Err(Error::LostWithBackup {
                path: self.path.clone(),
                backup,
                empty: found,
            }),
            Ok(_) => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(access(&backup)(e)),
        }
    }

    /// Everything the planner needs. A missing state file reads as empty (and is not created).
    pub fn snapshot(&self) -> Result<Recorded> {
        self.reading(Recorded::default(), snapshot_in)
    }

    /// The whole recorded state as one snapshot, read in one transaction (empty when there
    /// is no state file yet): what the daemon serves at `/state`.
    pub fn export(&self, taken_at: Timestamp) -> Result<crate::snapshot::StateSnapshot> {
        self.read_at_once(|tx| {
            let Some(tx) = tx else {
                return Ok(crate::snapshot::StateSnapshot::new(
                    taken_at,
                    Recorded::default(),
                    BTreeMap::new(),
                ));
            };
            let recorded = snapshot_in(tx)?;
            let details = details_in(tx, recorded.instances.keys())?;
            let mut snapshot = crate::snapshot::StateSnapshot::new(taken_at, recorded, details);
            snapshot.last_drift_report = last_drift_report_in(tx)?;
            snapshot.facts = facts::facts_in(tx)?;
            Ok(snapshot)
        })
    }

    /// The recorded details of these instances (those that have any).
    pub fn details<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a InstanceId>,
    ) -> Result<BTreeMap<InstanceId, InstanceDetail>> {
        self.reading(BTreeMap::new(), |tx| details_in(tx, ids))
    }

    /// Records the outcome of one attempt, durably, in one transaction.
    pub fn record(&self, write: &InstanceWrite<'_>) -> Result<()> {
        self.write(|tx| record_in(tx, write))
    }

    /// Records many outcomes in one transaction (imports, tests, benchmarks); an apply
    /// records each instance on its own so a crash loses none that finished.
    pub fn record_all(&self, writes: &[InstanceWrite<'_>]) -> Result<()> {
        self.write(|tx| writes.iter().try_for_each(|w| record_in(tx, w)))
    }

    /// Appends a run event and, in the same transaction, records an instance's outcome or
    /// forgets it: what an apply does as each instance starts or ends (one commit, not two).
    pub fn log(&self, run: RunId, event: &Event, change: Change<'_>) -> Result<()> {
        self.write(|tx| log_in(tx, run, event, change))
    }

    /// Records (or clears, with `None`) a drift finding.
    pub fn record_drift(&self, id: &InstanceId, finding: Option<&DriftFinding>) -> Result<()> {
        self.write(|tx| {
            let mut drift = tx.open_table(DRIFT).map_err(write_err)?;
            let key = id.to_string();
            match finding {
                Some(f) => drift
                    .insert(key.as_str(), encode(f)?.as_slice())
                    .map(|_| ()),
                None => drift.remove(key.as_str()).map(|_| ()),
            }
            .map_err(write_err)
        })
    }

    /// Records a drift check in one transaction: the report (keeping the newest
    /// `DRIFT_REPORTS_KEPT`), and for every probed instance its finding, or none when it was
    /// found in sync. Returns the report's id.
    pub fn record_drift_report(
        &self,
        report: &crate::drift::DriftReport,
        findings: &[(InstanceId, Option<DriftFinding>)],
    ) -> Result<u64> {
        self.write(|tx| {
            let mut reports = tx.open_table(DRIFT_REPORTS).map_err(write_err)?;
            let id = reports
                .last()
                .map_err(write_err)?
                .map_or(1, |(k, _)| k.value() + 1);
            reports
                .insert(id, encode(report)?.as_slice())
                .map_err(write_err)?;
            let old: Vec<u64> = reports
                .range(..id.saturating_sub(DRIFT_REPORTS_KEPT - 1))
                .map_err(write_err)?
                .filter_map(|entry| entry.ok().map(|(k, _)| k.value()))
                .collect();
            for key in old {
                reports.remove(key).map_err(write_err)?;
            }
            let mut drift = tx.open_table(DRIFT).map_err(write_err)?;
            for (instance, finding) in findings {
                let key = instance.to_string();
                match finding {
                    Some(f) => drift
                        .insert(key.as_str(), encode(f)?.as_slice())
                        .map(|_| ()),
                    None => drift.remove(key.as_str()).map(|_| ()),
                }
                .map_err(write_err)?;
            }
            Ok(id)
        })
    }

    /// The newest drift report, if any drift check was recorded.
    pub fn last_drift_report(&self) -> Result<Option<crate::drift::DriftReport>> {
        self.reading(None, last_drift_report_in)
    }

    /// Forgets instances entirely; returns those that were recorded.
    pub fn forget(&self, ids: &[InstanceId]) -> Result<Vec<InstanceId>> {
        if !self.exists()? {
            return Ok(Vec::new());
        }
        self.write(|tx| {
            let mut forgotten = Vec::new();
            for id in ids {
                if forget_in(tx, id)? {
                    forgotten.push(id.clone());
                }
            }
            Ok(forgotten)
        })
    }

    /// Starts a run: a new id, status running, and its first event.
    pub fn begin_run(&self, record: RunRecord) -> Result<RunId> {
        self.write(|tx| begin_run_in(tx, record))
    }

    /// Appends an event to a running run.
    pub fn append_event(&self, run: RunId, event: &Event) -> Result<()> {
        self.write(|tx| append(tx, run, event))
    }

    /// Ends a run; its status may only move forward.
    pub fn finish_run(
        &self,
        run: RunId,
        status: RunStatus,
        at: Timestamp,
        update: impl FnOnce(&mut RunRecord),
    ) -> Result<()> {
        self.write(|tx| finish_run_in(tx, run, status, at, update))
    }

    /// Marks runs still `running` as `interrupted`: called by a writer holding the lock, so
    /// their process is gone (killed, power loss). Returns the runs it marked.
    pub fn mark_interrupted_runs(&self, now: Timestamp) -> Result<Vec<RunId>> {
        self.write(|tx| mark_interrupted_in(tx, now))
    }

    /// Keeps the full report of a run, for `drover show`.
    pub fn save_report(
        &self,
        run: RunId,
        report: &crate::report::apply::ApplyReport,
    ) -> Result<()> {
        self.write(|tx| save_report_in(tx, run, report))
    }

    /// The full report of a run, if one was kept.
    pub fn report(&self, run: RunId) -> Result<Option<crate::report::apply::ApplyReport>> {
        self.reading(None, |tx| {
            let Some(table) = open_read(tx, REPORTS)? else {
                return Ok(None);
            };
            let Some(value) = table.get(run.0).map_err(read)? else {
                return Ok(None);
            };
            decode(value.value(), &format!("the report of run {run}")).map(Some)
        })
    }

    /// The runs, as they stand now: a run still marked running while nobody holds the
    /// writer lock lost its process (the next writer records that), and reads as interrupted.
    pub fn runs_now(&self) -> Result<Vec<RunRecord>> {
        let mut runs = self.runs()?;
        self.as_seen_now(&mut runs);
        Ok(runs)
    }

    /// Marks as interrupted the runs still marked running while nobody holds the lock.
    pub fn as_seen_now(&self, runs: &mut [RunRecord]) {
        // Asking who holds the lock takes it for a moment: only when it matters.
        if runs.iter().any(|r| !r.status.is_terminal())
            && lock::WriterLock::holder(&self.path).is_none()
        {
            for run in runs.iter_mut().filter(|r| !r.status.is_terminal()) {
                run.status = crate::run::RunStatus::Interrupted;
            }
        }
    }

    /// Every run, newest first.
    pub fn runs(&self) -> Result<Vec<RunRecord>> {
        self.reading(Vec::new(), |tx| {
            let Some(table) = open_read(tx, RUNS)? else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for entry in table.iter().map_err(read)?.rev() {
                let (key, value) = entry.map_err(read)?;
                out.push(decode(value.value(), &format!("run {}", key.value()))?);
            }
            Ok(out)
        })
    }

    /// One run and its events in order.
    pub fn run(&self, run: RunId) -> Result<Option<(RunRecord, Vec<Event>)>> {
        self.reading(None, |tx| {
            let Some(runs) = open_read(tx, RUNS)? else {
                return Ok(None);
            };
            let Some(value) = runs.get(run.0).map_err(read)? else {
                return Ok(None);
            };
            let record: RunRecord = decode(value.value(), &format!("run {run}"))?;
            let mut events = Vec::new();
            if let Some(table) = open_read(tx, EVENTS)? {
                for entry in table.range((run.0, 0)..(run.0 + 1, 0)).map_err(read)? {
                    let (_, value) = entry.map_err(read)?;
                    events.push(decode(value.value(), &format!("an event of run {run}"))?);
                }
            }
            Ok(Some((record, events)))
        })
    }

    /// Runs `f` on a read transaction, or returns `empty` when there is no state file yet.
    pub(crate) fn reading<T>(
        &self,
        empty: T,
        f: impl FnOnce(&ReadTransaction) -> Result<T>,
    ) -> Result<T> {
        guarded(&self.path, || {
            let Some(opened) = self.open_existing()? else {
                return Ok(empty);
            };
            let tx = opened.db.begin_read().map_err(read)?;
            f(&tx)
        })
    }

    /// Runs `f` on one read transaction of the file, or on `None` when there is no file yet:
    /// for a caller that reads several tables and must see them at one moment.
    pub fn read_at_once<T>(
        &self,
        f: impl FnOnce(Option<&ReadTransaction>) -> Result<T>,
    ) -> Result<T> {
        guarded(&self.path, || {
            let Some(opened) = self.open_existing()? else {
                return f(None);
            };
            let tx = opened.db.begin_read().map_err(read)?;
            f(Some(&tx))
        })
    }

    /// Runs `f` on a read transaction of a file that must exist.
    pub(crate) fn reading_or_fail<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T>,
    ) -> Result<T> {
        guarded(&self.path, || {
            let opened = self.open_existing()?.ok_or_else(|| Error::Commit {
                message: format!("{} disappeared", self.path.display()),
                io: None,
            })?;
            let tx = opened.db.begin_read().map_err(read)?;
            f(&tx)
        })
    }

    /// Runs one write transaction and commits it durably.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&WriteTransaction) -> Result<T>) -> Result<T> {
        guarded(&self.path, || {
            let opened = self.open_for_write_guarded()?;
            let tx = opened.db.begin_write().map_err(write_err)?;
            let out = f(&tx)?;
            tx.commit().map_err(write_err)?;
            Ok(out)
        })
    }

    /// Opens the file if it exists, checking its schema version.
    fn open_existing(&self) -> Result<Option<Opened<ReadDb>>> {
        if !self.exists()? {
            return Ok(None);
        }
        let opened = match self.with_retry(|| redb::Builder::new().open(&self.path)) {
            Ok(Opened { db, _knock: knock }) => Opened {
                db: ReadDb::ReadWrite(db),
                _knock: knock,
            },
            // A read-only file or filesystem still reads (if it was closed cleanly).
            Err(Error::Open { source, .. }) if is_read_only(&source) => Opened {
                db: ReadDb::ReadOnly(redb::ReadOnlyDatabase::open(&self.path).map_err(
                    |source| Error::Open {
                        path: self.path.clone(),
                        source,
                    },
                )?),
                _knock: None,
            },
            Err(error) => return Err(error),
        };
        let version = tables::version_of(&opened.db.begin_read().map_err(read)?)?;
        if version > SCHEMA_VERSION {
            return Err(Error::TooNew {
                path: self.path.clone(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        // An older file is read as it is; the next write upgrades it.
        Ok(Some(opened))
    }

    /// Opens the file for writing (see `open_for_write_guarded`), for a holder that keeps it.
    pub(crate) fn open_for_write(&self) -> Result<Database> {
        Ok(self.open_for_write_guarded()?.db)
    }

    /// Opens the file for writing, creating it (0600, in a 0700 directory) and upgrading
    /// its schema as needed.
    fn open_for_write_guarded(&self) -> Result<Opened> {
        self.tighten_permissions();
        if !self.exists()?
            && let Some(dir) = self
                .path
                .parent()
                .filter(|d| !d.as_os_str().is_empty() && !d.exists())
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| Error::CreateDir {
                    path: dir.to_owned(),
                    source,
                })?;
        }
        let opened = self.with_retry(|| {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&self.path)
                .map_err(|e| DatabaseError::Storage(redb::StorageError::Io(e)))?;
            redb::Builder::new().create_file(file)
        })?;
        if self.current.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(opened);
        }
        let version = tables::version(&opened.db)?;
        if version > SCHEMA_VERSION {
            return Err(Error::TooNew {
                path: self.path.clone(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if version < SCHEMA_VERSION {
            let tx = opened.db.begin_write().map_err(write_err)?;
            tables::migrate(&tx, version)?;
            tx.commit().map_err(write_err)?;
        }
        self.current
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(opened)
    }

    /// A state file (or its lock) that others can read is a leak waiting to happen: secrets
    /// never reach it, but hosts, commands and outputs do. Tightened to 0600 with a warning.
    fn tighten_permissions(&self) {
        use std::os::unix::fs::PermissionsExt as _;
        for path in [self.path.clone(), lock::lock_path(&self.path)] {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                let tightened =
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).is_ok();
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:04o}"),
                    tightened,
                    "the state file was readable by others; it is now 0600"
                );
            }
        }
    }

    /// Retries an open while another process holds the file. A process that holds it for a
    /// whole round (`OpenStore`) lets readers in when they knock: a shared lock on
    /// `<state>.readers`, kept until this open is dropped.
    fn with_retry(
        &self,
        mut open: impl FnMut() -> std::result::Result<Database, DatabaseError>,
    ) -> Result<Opened> {
        let mut waited = Duration::ZERO;
        let mut pause = Duration::from_millis(2);
        let mut knock: Option<std::fs::File> = None;
        loop {
            match open() {
                Ok(db) => return Ok(Opened { db, _knock: knock }),
                Err(DatabaseError::DatabaseAlreadyOpen) if waited < BUSY_TIMEOUT => {
                    if knock.is_none() {
                        knock = self.knock();
                    }
                    std::thread::sleep(pause);
                    waited += pause;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(DatabaseError::DatabaseAlreadyOpen) => {
                    return Err(Error::Busy {
                        path: self.path.clone(),
                        waited,
                    });
                }
                Err(source) => {
                    return Err(Error::Open {
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Asks the process holding the file to let us in (see `open`).
    fn knock(&self) -> Option<std::fs::File> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(open::readers_path(&self.path))
            .ok()?;
        file.lock_shared().ok()?;
        Some(file)
    }
}

/// An open database and, when we had to ask the holder to let us in, the shared lock that
/// keeps it out until we are done. Fields drop in order: the database closes first.
struct Opened<D = Database> {
    db: D,
    _knock: Option<std::fs::File>,
}

/// A database opened for reading: read-write when we may (redb repairs a file left by a
/// crash only then), read-only when the file or its filesystem is read-only.
enum ReadDb {
    ReadWrite(Database),
    ReadOnly(redb::ReadOnlyDatabase),
}

impl ReadDb {
    fn begin_read(&self) -> std::result::Result<ReadTransaction, redb::TransactionError> {
        match self {
            ReadDb::ReadWrite(db) => db.begin_read(),
            ReadDb::ReadOnly(db) => db.begin_read(),
        }
    }
}

/// What the planner needs, read in one transaction.
fn last_drift_report_in(tx: &ReadTransaction) -> Result<Option<crate::drift::DriftReport>> {
    let Some(table) = open_read(tx, DRIFT_REPORTS)? else {
        return Ok(None);
    };
    let Some((_, value)) = table.last().map_err(read)? else {
        return Ok(None);
    };
    decode(value.value(), "drift report").map(Some)
}

pub(crate) fn snapshot_in(tx: &ReadTransaction) -> Result<Recorded> {
    let mut recorded = Recorded::default();
    if let Some(table) = open_read(tx, INSTANCES)? {
        for entry in table.iter().map_err(read)? {
            let (key, value) = entry.map_err(read)?;
            let id = parse_id(key.value())?;
            let (hash, outcome, finished, duration, run) = value.value();
            let outcome = Outcome::from_code(outcome)
                .ok_or_else(|| corrupt(format!("outcome code {outcome} of {id}")))?;
            let run = (run != 0).then_some(RunId(run));
            let spec_hash = SpecHash::from_bytes(hash);
            recorded.instances.insert(
                id,
                RecordedInstance {
                    spec_hash,
                    outcome,
                    finished_at: Timestamp(finished),
                    duration_ms: duration,
                    run,
                },
            );
        }
    }
    recorded.pending_triggers = read_json_table(tx, TRIGGERS)?;
    recorded.drift = read_json_table(tx, DRIFT)?;
    recorded.last_drift_check = last_drift_check_in(tx)?;
    if let Some(table) = open_read(tx, UNDO_CHECK)? {
        for entry in table.iter().map_err(read)? {
            let (key, value) = entry.map_err(read)?;
            recorded
                .undo_check
                .insert(parse_id(key.value())?, SpecHash::from_bytes(value.value()));
        }
    }
    Ok(recorded)
}

pub(crate) fn details_in<'a>(
    tx: &ReadTransaction,
    ids: impl IntoIterator<Item = &'a InstanceId>,
) -> Result<BTreeMap<InstanceId, InstanceDetail>> {
    let Some(table) = open_read(tx, DETAILS)? else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    for id in ids {
        if let Some(value) = table.get(id.to_string().as_str()).map_err(read)? {
            out.insert(id.clone(), decode(value.value(), &id.to_string())?);
        }
    }
    Ok(out)
}

/// An event and, with it, an instance's outcome or its removal.
pub(crate) fn log_in(
    tx: &WriteTransaction,
    run: RunId,
    event: &Event,
    change: Change<'_>,
) -> Result<()> {
    match change {
        Change::None => {}
        Change::Record(write) => record_in(tx, write)?,
        Change::Forget(id) => forget_in(tx, id).map(|_| ())?,
    }
    append(tx, run, event)
}

pub(crate) fn begin_run_in(tx: &WriteTransaction, mut record: RunRecord) -> Result<RunId> {
    let id = tables::next_run_id(tx)?;
    record.id = RunId(id);
    record.status = RunStatus::Running;
    tx.open_table(RUNS)
        .map_err(write_err)?
        .insert(id, encode(&record)?.as_slice())
        .map_err(write_err)?;
    append(
        tx,
        RunId(id),
        &Event {
            at: record.started_at,
            kind: EventKind::RunStarted,
        },
    )?;
    Ok(RunId(id))
}

pub(crate) fn finish_run_in(
    tx: &WriteTransaction,
    run: RunId,
    status: RunStatus,
    at: Timestamp,
    update: impl FnOnce(&mut RunRecord),
) -> Result<()> {
    let mut runs = tx.open_table(RUNS).map_err(write_err)?;
    let bytes = runs
        .get(run.0)
        .map_err(write_err)?
        .map(|v| v.value().to_vec())
        .ok_or(Error::NoRun { run })?;
    let mut record: RunRecord = decode(&bytes, &format!("run {run}"))?;
    if !record.status.may_become(status) {
        return Err(Error::RunStatus {
            run,
            from: record.status.as_str(),
            to: status.as_str(),
        });
    }
    record.status = status;
    record.finished_at = Some(at);
    update(&mut record);
    runs.insert(run.0, encode(&record)?.as_slice())
        .map_err(write_err)?;
    drop(runs);
    append(
        tx,
        run,
        &Event {
            at,
            kind: EventKind::RunFinished { status },
        },
    )
}

pub(crate) fn mark_interrupted_in(tx: &WriteTransaction, now: Timestamp) -> Result<Vec<RunId>> {
    let mut stuck = Vec::new();
    {
        let runs = tx.open_table(RUNS).map_err(write_err)?;
        for entry in runs.iter().map_err(write_err)? {
            let (key, value) = entry.map_err(write_err)?;
            let record: RunRecord = decode(value.value(), &format!("run {}", key.value()))?;
            if !record.status.is_terminal() {
                stuck.push(record.id);
            }
        }
    }
    for run in &stuck {
        finish_run_in(tx, *run, RunStatus::Interrupted, now, |_| {})?;
    }
    Ok(stuck)
}

pub(crate) fn save_report_in(
    tx: &WriteTransaction,
    run: RunId,
    report: &crate::report::apply::ApplyReport,
) -> Result<()> {
    tx.open_table(REPORTS)
        .map_err(write_err)?
        .insert(run.0, encode(report)?.as_slice())
        .map_err(write_err)?;
    Ok(())
}

fn record_in(tx: &WriteTransaction, write: &InstanceWrite<'_>) -> Result<()> {
    let key = write.id.to_string();
    let mut instances = tx.open_table(INSTANCES).map_err(write_err)?;
    let value = (
        *write.spec_hash.as_bytes(),
        write.outcome.to_code(),
        write.finished_at.0,
        write.duration_ms,
        write.run.map_or(0, |r| r.0),
    );
    instances.insert(key.as_str(), value).map_err(write_err)?;
    if let Some(detail) = write.detail {
        let mut details = tx.open_table(DETAILS).map_err(write_err)?;
        details
            .insert(key.as_str(), encode(detail)?.as_slice())
            .map_err(write_err)?;
        let mut undo_check = tx.open_table(UNDO_CHECK).map_err(write_err)?;
        match detail.undo_check_hash {
            Some(hash) => undo_check
                .insert(key.as_str(), *hash.as_bytes())
                .map(|_| ()),
            None => undo_check.remove(key.as_str()).map(|_| ()),
        }
        .map_err(write_err)?;
    }
    let mut triggers = tx.open_table(TRIGGERS).map_err(write_err)?;
    if write.outcome == Outcome::Succeeded {
        triggers.remove(key.as_str()).map_err(write_err)?;
        tx.open_table(DRIFT)
            .map_err(write_err)?
            .remove(key.as_str())
            .map_err(write_err)?;
    }
    drop(triggers);
    arm_triggers_in(tx, write.id, write.fires, write.run.unwrap_or(RunId(0)))?;
    Ok(())
}

/// Before `source` may change its host, records it as a pending trigger of each of
/// `targets`, so a crash between the change and its record cannot lose the restart. Returns
/// the targets it was not pending on yet (to take back if the source changes nothing).
pub(crate) fn arm_triggers_in(
    tx: &WriteTransaction,
    source: &InstanceId,
    targets: &[InstanceId],
    run: RunId,
) -> Result<Vec<InstanceId>> {
    let mut table = tx.open_table(TRIGGERS).map_err(write_err)?;
    let mut armed = Vec::new();
    for target in targets {
        let key = target.to_string();
        let existing = table
            .get(key.as_str())
            .map_err(write_err)?
            .map(|v| v.value().to_vec());
        let mut pending: PendingTrigger = match existing {
            Some(bytes) => decode(&bytes, &key)?,
            None => PendingTrigger {
                sources: BTreeSet::new(),
                since: run,
            },
        };
        if pending.sources.insert(source.clone()) {
            table
                .insert(key.as_str(), encode(&pending)?.as_slice())
                .map_err(write_err)?;
            armed.push(target.clone());
        }
    }
    Ok(armed)
}

/// Takes back what `arm_triggers_in` added when the source turned out to change nothing.
pub(crate) fn disarm_triggers_in(
    tx: &WriteTransaction,
    source: &InstanceId,
    armed: &[InstanceId],
) -> Result<()> {
    let mut table = tx.open_table(TRIGGERS).map_err(write_err)?;
    for target in armed {
        let key = target.to_string();
        let existing = table
            .get(key.as_str())
            .map_err(write_err)?
            .map(|v| v.value().to_vec());
        let Some(bytes) = existing else { continue };
        let mut pending: PendingTrigger = decode(&bytes, &key)?;
        pending.sources.remove(source);
        if pending.sources.is_empty() {
            table.remove(key.as_str()).map_err(write_err)?;
        } else {
            table
                .insert(key.as_str(), encode(&pending)?.as_slice())
                .map_err(write_err)?;
        }
    }
    Ok(())
}

/// Removes everything recorded about an instance; returns whether it was recorded.
fn forget_in(tx: &WriteTransaction, id: &InstanceId) -> Result<bool> {
    let key = id.to_string();
    let found = tx
        .open_table(INSTANCES)
        .map_err(write_err)?
        .remove(key.as_str())
        .map_err(write_err)?
        .is_some();
    tx.open_table(DETAILS)
        .map_err(write_err)?
        .remove(key.as_str())
        .map_err(write_err)?;
    tx.open_table(TRIGGERS)
        .map_err(write_err)?
        .remove(key.as_str())
        .map_err(write_err)?;
    tx.open_table(DRIFT)
        .map_err(write_err)?
        .remove(key.as_str())
        .map_err(write_err)?;
    tx.open_table(UNDO_CHECK)
        .map_err(write_err)?
        .remove(key.as_str())
        .map_err(write_err)?;
    Ok(found)
}

fn append(tx: &WriteTransaction, run: RunId, event: &Event) -> Result<()> {
    let mut events = tx.open_table(EVENTS).map_err(write_err)?;
    let seq = match events
        .range((run.0, 0)..(run.0 + 1, 0))
        .map_err(write_err)?
        .next_back()
    {
        Some(entry) => entry.map_err(write_err)?.0.value().1 + 1,
        None => 0,
    };
    events
        .insert((run.0, seq), encode(event)?.as_slice())
        .map_err(write_err)?;
    Ok(())
}

thread_local! {
    /// Set while this thread runs store code under `guarded`: a panic there is a damaged
    /// file, reported as an error, so the panic hook stays quiet.
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the current thread is inside `guarded` (the CLI's panic hook asks).
pub fn in_guarded_call() -> bool {
    GUARDED.with(std::cell::Cell::get)
}

/// Runs store code that may meet a damaged file: redb panics on some corrupted pages
/// (`unwrap` in its B-tree code), and a panic must become a clear error, not a crash.
pub(crate) fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let outer = GUARDED.with(|g| g.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(outer));
    match result {
        Ok(result) => result,
        Err(payload) => {
            let detail = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the storage engine stopped on an inconsistency".to_owned());
            Err(Error::Damaged {
                path: path.to_owned(),
                detail,
            })
        }
    }
}

/// Whether opening failed because the file is not (or no longer) a redb database.
fn is_unreadable_content(error: &DatabaseError) -> bool {
    matches!(
        error,
        DatabaseError::Storage(redb::StorageError::Io(e))
            if matches!(e.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof)
    ) || matches!(
        error,
        DatabaseError::Storage(redb::StorageError::Corrupted(_))
    )
}

/// Whether opening failed only because the file or its filesystem is read-only.
fn is_read_only(error: &DatabaseError) -> bool {
    matches!(
        error,
        DatabaseError::Storage(redb::StorageError::Io(e))
            if matches!(e.kind(), std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem)
    )
}

/// Opens a table for reading; a table that was never created reads as absent.
/// The newest recorded drift check: when it ran, what it could not judge, what it was
/// limited to.
fn last_drift_check_in(tx: &ReadTransaction) -> Result<Option<crate::plan::DriftChecked>> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Unknown {
        #[serde(default)]
        unknown: usize,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        checked_at: Timestamp,
        summary: Unknown,
        #[serde(default)]
        targets: Vec<String>,
    }
    let Some(table) = open_read(tx, DRIFT_REPORTS)? else {
        return Ok(None);
    };
    let Some((_, value)) = table.last().map_err(read)? else {
        return Ok(None);
    };
    let at: Head = decode(value.value(), "drift report")?;
    Ok(Some(crate::plan::DriftChecked {
        at: at.checked_at,
        fresh: false,
        unknown: at.summary.unknown,
        targets: at.targets,
    }))
}

pub(crate) fn open_read<K: redb::Key + 'static, V: redb::Value + 'static>(
    tx: &ReadTransaction,
    table: redb::TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>> {
    match tx.open_table(table) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(read(e)),
    }
}

fn read_json_table<T: serde::de::DeserializeOwned>(
    tx: &ReadTransaction,
    table: redb::TableDefinition<&str, &[u8]>,
) -> Result<BTreeMap<InstanceId, T>> {
    let mut out = BTreeMap::new();
    if let Some(table) = open_read(tx, table)? {
        for entry in table.iter().map_err(read)? {
            let (key, value) = entry.map_err(read)?;
            out.insert(parse_id(key.value())?, decode(value.value(), key.value())?);
        }
    }
    Ok(out)
}

fn parse_id(text: &str) -> Result<InstanceId> {
    InstanceId::parse(text).map_err(|e| corrupt(format!("instance key {text:?}: {e}")))
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|source| Error::Encode { source })
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(format!("{what}: {e}")))
}

pub(crate) fn corrupt(what: String) -> Error {
    Error::Corrupt { what }
}

pub(crate) fn read(e: impl Into<redb::Error>) -> Error {
    Error::Read { source: e.into() }
}

pub(crate) fn write_err(e: impl Into<redb::Error>) -> Error {
    Error::Write { source: e.into() }
}
