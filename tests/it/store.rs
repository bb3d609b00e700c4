//! The state store on real redb files: records, triggers, runs, retention, schema versions,
//! the writer lock across processes, and readers while another process has the file open.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use drover::hash::SpecHash;
use drover::instance::InstanceId;
use drover::run::{Event, EventKind, RunRecord, RunStatus};
use drover::state::{Outcome, RunId, Timestamp};
use drover::store::lock::{Holder, WriterLock};
use drover::store::retention::Retention;
use drover::store::{Error, InstanceWrite, Store};

use crate::harness::Drover;

fn id(text: &str) -> InstanceId {
    InstanceId::parse(text).unwrap()
}

fn write(store: &Store, instance: &str, outcome: Outcome, fires: &[InstanceId]) {
    store
        .record(&InstanceWrite {
            id: &id(instance),
            spec_hash: SpecHash::of(&instance),
            outcome,
            finished_at: Timestamp(1_000),
            duration_ms: 5,
            run: Some(RunId(1)),
            detail: None,
            fires,
        })
        .unwrap();
}

fn run_record(started: i64) -> RunRecord {
    RunRecord {
        id: RunId(0),
        status: RunStatus::Pending,
        started_at: Timestamp(started),
        finished_at: None,
        trigger: "cli".to_owned(),
        command: "drover apply".to_owned(),
        user: None,
        host: None,
        commit: None,
        commit_author: None,
        commit_subject: None,
        dirty: None,
        manifest_digest: None,
        planned: 2,
        changed: 1,
        failed: 0,
        skipped: 0,
    }
}

#[test]
fn the_state_file_is_private_and_records_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path().join(".drover/state.redb"));
    assert!(
        store.snapshot().unwrap().instances.is_empty(),
        "a missing file reads as empty"
    );
    assert!(!store.exists().unwrap(), "reading does not create the file");
    write(
        &store,
        "web-1/nginx/config",
        Outcome::Succeeded,
        &[id("web-1/nginx/reload")],
    );
    write(&store, "web-1/nginx/install", Outcome::Failed, &[]);
    let mode = std::fs::metadata(store.path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(dir.path().join(".drover"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    let recorded = store.snapshot().unwrap();
    assert_eq!(recorded.instances.len(), 2);
    assert_eq!(
        recorded.instances[&id("web-1/nginx/install")].outcome,
        Outcome::Failed
    );
    let pending = &recorded.pending_triggers[&id("web-1/nginx/reload")];
    assert_eq!(
        pending
            .sources
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["web-1/nginx/config"]
    );
    // The trigger stays pending through a failure of its target, and clears on success.
    write(&store, "web-1/nginx/reload", Outcome::Failed, &[]);
    assert!(
        store
            .snapshot()
            .unwrap()
            .pending_triggers
            .contains_key(&id("web-1/nginx/reload"))
    );
    write(&store, "web-1/nginx/reload", Outcome::Succeeded, &[]);
    assert!(store.snapshot().unwrap().pending_triggers.is_empty());
    assert_eq!(
        store
            .forget(&[id("web-1/nginx/install"), id("web-9/x/y")])
            .unwrap(),
        [id("web-1/nginx/install")]
    );
    assert_eq!(store.snapshot().unwrap().instances.len(), 2);
}

#[test]
fn runs_are_ordered_and_their_status_only_moves_forward() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path().join("state.redb"));
    let run = store.begin_run(run_record(10)).unwrap();
    assert_eq!(run, RunId(1));
    let event = Event {
        at: Timestamp(11),
        kind: EventKind::InstanceStarted { id: id("a/b/c") },
    };
    store.append_event(run, &event).unwrap();
    store
        .finish_run(run, RunStatus::Succeeded, Timestamp(20), |r| r.changed = 1)
        .unwrap();
    let error = store
        .finish_run(run, RunStatus::Failed, Timestamp(21), |_| {})
        .unwrap_err();
    assert!(matches!(error, Error::RunStatus { .. }), "{error}");
    let (record, events) = store.run(run).unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Succeeded);
    let kinds: Vec<String> = events.iter().map(|e| format!("{:?}", e.kind)).collect();
    assert_eq!(kinds.len(), 3);
    assert!(
        kinds[0].starts_with("RunStarted") && kinds[2].starts_with("RunFinished"),
        "{kinds:?}"
    );
    assert_eq!(store.begin_run(run_record(30)).unwrap(), RunId(2));
}

#[test]
fn retention_prunes_old_runs_and_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path().join("state.redb"));
    for i in 0..10 {
        let run = store.begin_run(run_record(i * 1_000)).unwrap();
        store
            .finish_run(run, RunStatus::Succeeded, Timestamp(i * 1_000 + 1), |_| {})
            .unwrap();
    }
    let pruned = store
        .prune(
            Retention {
                keep_runs: 3,
                max_age_ms: i64::MAX,
            },
            Timestamp(100_000),
        )
        .unwrap();
    assert_eq!(pruned, 7);
    let left: Vec<u64> = store.runs().unwrap().iter().map(|r| r.id.0).collect();
    assert_eq!(left, [10, 9, 8]);
    assert!(store.run(RunId(1)).unwrap().is_none());
    // By age: everything older than 1.5 s before "now" goes, but the newest run stays.
    let pruned = store
        .prune(
            Retention {
                keep_runs: 100,
                max_age_ms: 1_500,
            },
            Timestamp(100_000),
        )
        .unwrap();
    assert_eq!(pruned, 2);
    assert_eq!(store.runs().unwrap().len(), 1);
}

#[test]
fn an_uninitialised_file_is_upgraded_and_a_newer_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Version 0: a file redb created but drover never initialised (a first run killed at
    // the wrong moment).
    let path = dir.path().join("state.redb");
    drop(redb::Database::create(&path).unwrap());
    let store = Store::at(&path);
    assert!(store.snapshot().unwrap().instances.is_empty());
    write(&store, "a/b/c", Outcome::Succeeded, &[]);
    assert_eq!(store.snapshot().unwrap().instances.len(), 1);
    // A file from a newer drover is refused, not misread.
    {
        let db = redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(drover::store::tables::META)
            .unwrap()
            .insert("schemaVersion", 99)
            .unwrap();
        tx.commit().unwrap();
    }
    let error = store.snapshot().unwrap_err();
    assert!(matches!(error, Error::TooNew { found: 99, .. }), "{error}");
    assert!(error.help().unwrap().contains("newer drover"));
}

fn site_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(crate::harness::root().join("manifests/demo")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

fn holder(pid: u32) -> Holder {
    Holder {
        pid,
        host: "test-host".to_owned(),
        command: "drover apply".to_owned(),
        since: Timestamp(0),
    }
}

fn state_of(dir: &Path) -> std::path::PathBuf {
    dir.join(".drover/state.redb")
}

#[test]
fn a_second_writer_fails_naming_the_holder_or_waits_for_it() {
    let dir = site_copy();
    let lock = WriterLock::acquire(
        &state_of(dir.path()),
        &holder(std::process::id()),
        Duration::ZERO,
    )
    .unwrap();
    let out = dir.path().join("p.plan");
    let run = Drover::new()
        .args(["plan", "--color", "never", "-o"])
        .arg_path(&out)
        .arg_path(dir.path())
        .run()
        .expect_code(1);
    let stderr = run.stderr();
    assert!(
        stderr.contains(&format!(
            "is locked by pid {} on test-host (`drover apply`)",
            std::process::id()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--lock-timeout"), "{stderr}");
    assert!(!out.exists());
    // Read-only commands are not blocked by the writer lock.
    Drover::new()
        .args(["plan"])
        .arg_path(dir.path())
        .run()
        .expect_code(0);
    // With a timeout, the second writer waits for the first to finish.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(lock);
    });
    Drover::new()
        .args(["plan", "--lock-timeout", "20s", "-o"])
        .arg_path(&out)
        .arg_path(dir.path())
        .run()
        .expect_code(0);
    releaser.join().unwrap();
    assert!(out.exists());
}

#[test]
fn a_lock_left_by_a_dead_process_is_taken_over_with_a_warning() {
    let dir = site_copy();
    // A holder that died leaves its text but not its flock.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    std::fs::create_dir_all(dir.path().join(".drover")).unwrap();
    let text = serde_json::to_string(&holder(dead_pid)).unwrap();
    std::fs::write(dir.path().join(".drover/state.redb.lock"), text).unwrap();
    let run = Drover::new()
        .args(["plan", "--color", "never", "-o"])
        .arg_path(dir.path().join("p.plan"))
        .arg_path(dir.path())
        .run()
        .expect_code(0);
    assert!(
        run.stderr().contains(&format!(
            "warning: took over the state lock left by pid {dead_pid} on test-host"
        )),
        "{}",
        run.stderr()
    );
    // `state unlock` has nothing left to do.
    let run = Drover::new()
        .args(["state", "unlock", "--dir"])
        .arg_path(dir.path())
        .run()
        .expect_code(0);
    assert!(run.stdout().contains("not locked"), "{}", run.stdout());
}

#[test]
fn readers_wait_while_another_process_has_the_file_open() {
    let dir = site_copy();
    let store = Store::at(state_of(dir.path()));
    write(&store, "localhost/hello/motd", Outcome::Succeeded, &[]);
    // Hold the database open (as a writer mid-commit would) for a moment.
    let db = redb::Database::open(store.path()).unwrap();
    let holder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        drop(db);
    });
    let run = Drover::new()
        .args(["state", "list", "--dir"])
        .arg_path(dir.path())
        .run()
        .expect_code(0);
    holder.join().unwrap();
    assert!(
        run.stdout().contains("localhost/hello/motd"),
        "{}",
        run.stdout()
    );
}
