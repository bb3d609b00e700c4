//! The apply driver against `FakeTransport`: durability before dependents, skips, retries
//! decided by failure kind, and cancellation, with no process and no host.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::state::Outcome;
use crate::store::Store;
use crate::transport::fake::{FakeTransport, Scripted};

/// A manifest directory with one local host and the given tasks, evaluated.
fn evaluated(dir: &std::path::Path, tasks: &str) -> crate::evaluate::Evaluation {
    std::fs::write(
        dir.join("m.yaml"),
        format!(
            "apiVersion: drover/v1\nkind: Host\nmetadata: {{name: h}}\nspec: {{transport: local}}\n---\napiVersion: drover/v1\nkind: Workflow\nmetadata: {{name: w}}\nspec:\n  hosts: {{names: [h]}}\n  tasks:\n{tasks}"
        ),
    )
    .unwrap();
    let evaluation = crate::evaluate::evaluate(dir, &crate::load::Limits::default()).unwrap();
    assert!(!evaluation.has_errors(), "{:?}", evaluation.diagnostics);
    evaluation
}

/// An apply of `plan` with one attempt per instance at most `parallelism` at once.
fn request<'a>(
    plan: &'a crate::plan::Plan,
    resolved: &'a crate::resolve::Resolved,
    hosts: &'a BTreeMap<HostName, HostTransport>,
    (recorded, stale): (
        &'a BTreeMap<crate::instance::InstanceId, crate::state::InstanceDetail>,
        &'a BTreeMap<crate::instance::InstanceId, &'static str>,
    ),
    parallelism: usize,
) -> Request<'a> {
    Request {
        plan,
        resolved,
        recorded,
        stale,
        rollout: BTreeMap::new(),
        hosts,
        options: ApplyOptions {
            limits: schedule::Limits {
                parallelism,
                per_host: parallelism,
            },
            fail_fast: false,
            trigger: "test".to_owned(),
            command: "test".to_owned(),
            user: None,
            host: None,
            commit: None,
            manifest_digest: String::new(),
        },
    }
}

/// Applies everything the manifests plan, through `fake`; returns the report and the store.
async fn apply_with(
    tasks: &str,
    fake: impl FnOnce(Store) -> FakeTransport,
    shutdown: &Shutdown,
) -> (ApplyReport, Store, Arc<FakeTransport>) {
    let dir = tempfile::tempdir().unwrap();
    let evaluation = evaluated(dir.path(), tasks);
    let resolved = evaluation.resolved.as_ref().unwrap();
    let plan = crate::plan::plan(
        &resolved.instances,
        &crate::state::Recorded::default(),
        &crate::plan::PlanOptions::default(),
    );
    let store = Store::at(dir.path().join("state.redb"));
    let fake = Arc::new(fake(store.clone()));
    let hosts: BTreeMap<HostName, HostTransport> = evaluation
        .desired
        .as_ref()
        .unwrap()
        .hosts
        .keys()
        .map(|h| (h.clone(), HostTransport::Fake(fake.clone())))
        .collect();
    let (recorded, stale) = (BTreeMap::new(), BTreeMap::new());
    let request = request(&plan, resolved, &hosts, (&recorded, &stale), 4);
    let open = store.open().unwrap();
    let (tx, mut rx) = mpsc::channel(1024);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let report = apply(request, &open, shutdown, tx).await.unwrap();
    drain.await.unwrap();
    tokio::task::spawn_blocking(move || open.close().unwrap())
        .await
        .unwrap();
    // Keep the directory alive as long as the store is read.
    std::mem::forget(dir);
    (report, store, fake)
}

fn status_of(report: &ApplyReport, task: &str) -> &'static str {
    report
        .instances
        .iter()
        .find(|i| i.id.task.to_string() == task)
        .map_or("missing", |i| i.status.as_str())
}

const CHAIN: &str = "    - {name: a, run: \"echo a\"}\n    - {name: b, needs: [a], run: \"echo b\"}\n    - {name: c, needs: [b], run: \"echo c\"}\n    - {name: d, run: \"echo d\"}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_is_durable_before_any_dependent_starts() {
    let (report, _, fake) = apply_with(
        CHAIN,
        |store| {
            FakeTransport::new(Duration::from_millis(5)).on_call(move |call| {
                // At the moment a dependent starts, what it needs is committed: a fresh
                // handle on the file (another reader) sees it.
                let needs: &[&str] = match call {
                    "echo b" => &["h/w/a"],
                    "echo c" => &["h/w/a", "h/w/b"],
                    _ => &[],
                };
                if needs.is_empty() {
                    return;
                }
                let open_store = store.clone();
                let recorded = std::thread::spawn(move || open_store.snapshot().unwrap())
                    .join()
                    .unwrap();
                for need in needs {
                    let id = crate::instance::InstanceId::parse(need).unwrap();
                    assert_eq!(
                        recorded.instances.get(&id).map(|r| r.outcome),
                        Some(Outcome::Succeeded),
                        "{call} started before {need} was durable"
                    );
                }
            })
        },
        &Shutdown::default(),
    )
    .await;
    assert_eq!(report.status, RunStatus::Succeeded);
    let calls = fake.calls();
    let at = |c: &str| calls.iter().position(|x| x == c).unwrap();
    assert!(at("echo a") < at("echo b") && at("echo b") < at("echo c"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_skips_dependents_and_independent_branches_go_on() {
    let (report, store, _) = apply_with(
        CHAIN,
        |_| FakeTransport::new(Duration::ZERO).script("echo b", &[Scripted::Exit(3)]),
        &Shutdown::default(),
    )
    .await;
    assert_eq!(status_of(&report, "a"), "changed");
    assert_eq!(status_of(&report, "b"), "failed");
    assert_eq!(status_of(&report, "c"), "skipped");
    assert_eq!(status_of(&report, "d"), "changed");
    let recorded = store.snapshot().unwrap();
    assert!(
        !recorded
            .instances
            .contains_key(&crate::instance::InstanceId::parse("h/w/c").unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_transport_failures_are_retried_and_permanent_ones_never() {
    let tasks = "    - {name: flaky, run: \"echo flaky\", retries: {attempts: 3, backoff: 1ms}}\n    - {name: refused, run: \"echo refused\", retries: {attempts: 3, backoff: 1ms}}\n";
    let (report, _, fake) = apply_with(
        tasks,
        |_| {
            FakeTransport::new(Duration::ZERO)
                .script("echo flaky", &[Scripted::Lost, Scripted::Exit(0)])
                .script("echo refused", &[Scripted::HostKeyRefused])
        },
        &Shutdown::default(),
    )
    .await;
    let calls = fake.calls();
    assert_eq!(calls.iter().filter(|c| *c == "echo flaky").count(), 2);
    assert_eq!(calls.iter().filter(|c| *c == "echo refused").count(), 1);
    assert_eq!(status_of(&report, "flaky"), "changed");
    assert_eq!(status_of(&report, "refused"), "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_apply_starts_nothing_more_and_records_the_rest_cancelled() {
    let shutdown = Shutdown::default();
    let graceful = shutdown.graceful.clone();
    let (report, _, fake) = apply_with(
        CHAIN,
        move |_| {
            FakeTransport::new(Duration::from_millis(20)).on_call(move |call| {
                if call == "echo a" {
                    graceful.cancel();
                }
            })
        },
        &shutdown,
    )
    .await;
    assert_eq!(report.status, RunStatus::Cancelled);
    assert!(!fake.calls().contains(&"echo b".to_owned()));
    assert_eq!(status_of(&report, "a"), "changed");
    assert_eq!(status_of(&report, "b"), "cancelled");
}

const TRIGGERED: &str = "    - {name: conf, file: {path: /etc/x.conf, content: \"x\"}}\n    - {name: reload, triggeredBy: [conf], run: \"echo reload\"}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_runs_when_its_source_changed_and_is_recorded_pending_first() {
    let (report, _, fake) = apply_with(
        TRIGGERED,
        |store| {
            FakeTransport::new(Duration::ZERO).on_call(move |call| {
                if call == "echo reload" {
                    // The restart is owed durably before it runs: a crash now loses nothing.
                    let open_store = store.clone();
                    let recorded = std::thread::spawn(move || open_store.snapshot().unwrap())
                        .join()
                        .unwrap();
                    let id = crate::instance::InstanceId::parse("h/w/reload").unwrap();
                    assert!(recorded.pending_triggers.contains_key(&id));
                }
            })
        },
        &Shutdown::default(),
    )
    .await;
    assert_eq!(status_of(&report, "conf"), "changed");
    assert_eq!(status_of(&report, "reload"), "changed");
    assert!(fake.calls().contains(&"echo reload".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_whose_source_did_not_change_does_not_run() {
    let (report, _, fake) = apply_with(
        TRIGGERED,
        |_| FakeTransport::new(Duration::ZERO).script("sync /etc/x.conf", &[Scripted::Same]),
        &Shutdown::default(),
    )
    .await;
    assert_eq!(status_of(&report, "conf"), "unchanged");
    assert_eq!(status_of(&report, "reload"), "not triggered");
    assert!(!fake.calls().contains(&"echo reload".to_owned()));
}

/// Runs the plan of `tasks` one instance at a time and "crashes" (drops the apply) the moment
/// the call `crash_at` starts; returns what the store then holds, and the resolved instances.
async fn crash_at(
    tasks: &str,
    crash_at: &'static str,
) -> (crate::state::Recorded, Arc<crate::resolve::Resolved>) {
    let dir = tempfile::tempdir().unwrap();
    let evaluation = evaluated(dir.path(), tasks);
    let store = Store::at(dir.path().join("state.redb"));
    let (crashed_tx, crashed_rx) = tokio::sync::oneshot::channel::<()>();
    let crashed_tx = std::sync::Mutex::new(Some(crashed_tx));
    let fake = Arc::new(
        FakeTransport::new(Duration::from_millis(50)).on_call(move |call| {
            if call == crash_at
                && let Some(tx) = crashed_tx.lock().unwrap().take()
            {
                let _ = tx.send(());
            }
        }),
    );
    let hosts: BTreeMap<HostName, HostTransport> = evaluation
        .desired
        .as_ref()
        .unwrap()
        .hosts
        .keys()
        .map(|h| (h.clone(), HostTransport::Fake(fake.clone())))
        .collect();
    let resolved = Arc::new(evaluation.resolved.unwrap());
    let open = store.open().unwrap();
    let run = {
        let open = open.clone();
        let resolved = Arc::clone(&resolved);
        tokio::spawn(async move {
            let plan = crate::plan::plan(
                &resolved.instances,
                &crate::state::Recorded::default(),
                &crate::plan::PlanOptions::default(),
            );
            let (recorded, stale) = (BTreeMap::new(), BTreeMap::new());
            let request = request(&plan, &resolved, &hosts, (&recorded, &stale), 1);
            let (tx, mut rx) = mpsc::channel(1024);
            tokio::spawn(async move { while rx.recv().await.is_some() {} });
            let _ = apply(request, &open, &Shutdown::default(), tx).await;
        })
    };
    crashed_rx.await.unwrap();
    run.abort();
    let _ = run.await;
    tokio::task::spawn_blocking(move || drop(open))
        .await
        .unwrap();
    let recorded = store.snapshot().unwrap();
    std::mem::forget(dir);
    (recorded, resolved)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_call_leaves_a_plan_of_exactly_what_had_not_finished() {
    // Crash the moment each command of the chain starts in turn; what the next plan runs is
    // that command's instance and what depends on it, never what finished.
    for (call, expect) in [
        ("echo a", &["h/w/a", "h/w/b", "h/w/c"][..]),
        ("echo b", &["h/w/b", "h/w/c"][..]),
        ("echo c", &["h/w/c"][..]),
    ] {
        let (recorded, resolved) = crash_at(CHAIN, call).await;
        let again = crate::plan::plan(
            &resolved.instances,
            &recorded,
            &crate::plan::PlanOptions::default(),
        );
        let planned: Vec<String> = again
            .changes
            .iter()
            .map(|c| c.id.to_string())
            .filter(|id| id != "h/w/d")
            .collect();
        assert_eq!(planned, expect, "crash at `{call}`");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_a_source_writes_keeps_its_restart_owed() {
    // Killed after the file may have changed but before its outcome was recorded: the
    // restart is already pending, so the next apply runs it even if the file is then
    // found up to date.
    let (recorded, resolved) = crash_at(TRIGGERED, "sync /etc/x.conf").await;
    let reload = crate::instance::InstanceId::parse("h/w/reload").unwrap();
    assert!(recorded.pending_triggers.contains_key(&reload));
    let again = crate::plan::plan(
        &resolved.instances,
        &recorded,
        &crate::plan::PlanOptions::default(),
    );
    let change = again.changes.iter().find(|c| c.id == reload).unwrap();
    assert!(only_if_changed(change).is_none(), "{change:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_changed_nothing_owes_no_restart() {
    let (_, store, _) = apply_with(
        TRIGGERED,
        |_| FakeTransport::new(Duration::ZERO).script("sync /etc/x.conf", &[Scripted::Same]),
        &Shutdown::default(),
    )
    .await;
    assert!(store.snapshot().unwrap().pending_triggers.is_empty());
}
