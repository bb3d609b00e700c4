//! The reconcile layer: the plan/apply pipeline as a library the CLI and the daemon call
//! round after round.
//!
//! A `Session` owns what lives longer than a round: the state file's location and writer
//! lock, the host transports (SSH connections stay open across rounds), the async runtime
//! and the shutdown tokens. `plan_round` turns an evaluated manifest directory (or a saved
//! plan) and the recorded state into a complete `Round`; `apply_round` applies it with the
//! store open once for the whole round. Nothing here prints: the caller renders the round
//! and the console events.

pub mod drift;
pub mod facts;
pub mod fleet;
pub mod signals;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::apply::{self, ApplyOptions, ConsoleEvent, Shutdown};
use crate::evaluate::Evaluation;
use crate::hash::SpecHash;
use crate::instance::InstanceId;
use crate::model::desired::Desired;
use crate::model::meta::HostName;
use crate::plan::saved::{SavedPlan, Stale, stale};
use crate::plan::{self as planner, Plan, PlanOptions};
use crate::report::apply::ApplyReport;
use crate::report::plan::PlanView;
use crate::resolve::Resolved;
use crate::schedule::{self, RolloutSlot, rollout_batches};
use crate::state::{InstanceDetail, detail_of};
use crate::store::Store;
use crate::store::lock::{Holder, WriterLock};

pub use fleet::{Fleet, SshDefaults};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error("cannot start the async runtime")]
    Runtime { source: std::io::Error },
    #[error("the apply stopped")]
    Apply(#[source] apply::Error),
    #[error("no instance matches {}", list(targets))]
    Unmatched { targets: Vec<String> },
    #[error("the manifests are not valid")]
    Invalid,
    /// An apply or a drift check was asked of a session that reads a fetched snapshot.
    #[error("this session reads a state snapshot and writes nothing")]
    ReadOnly,
    /// The facts probe failed on hosts that need facts and have none recorded.
    #[error("cannot gather the facts of {}", failures.iter().map(|(h, why)| format!("{h} ({why})")).collect::<Vec<_>>().join(", "))]
    Facts { failures: Vec<(HostName, String)> },
}

fn list(targets: &[String]) -> String {
    targets
        .iter()
        .map(|t| format!("`{t}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Error {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            Error::Unmatched { .. } => Some(
                "check the spelling against `drover graph` or `drover state list`; nothing was planned"
                    .to_owned(),
            ),
            Error::Store(error)
            | Error::Apply(
                apply::Error::Store(error)
                | apply::Error::ReportNotSaved { source: error, .. }
                | apply::Error::StateLost { source: error, .. },
            ) => error.help(),
            Error::ReadOnly => Some("apply where the state file is (the daemon applies on merge)".to_owned()),
            Error::Facts { .. } => Some(
                "templates or `when` on these hosts use `host.facts`, so nothing was done without them; make the hosts reachable and run again".to_owned(),
            ),
            Error::Runtime { .. } | Error::Apply(_) | Error::Invalid => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a session is set up with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub state: PathBuf,
    pub lock_timeout: Duration,
    pub ssh: SshDefaults,
    pub parallelism: usize,
    pub per_host: usize,
    pub fail_fast: bool,
}

/// The long-lived resources of reconciling one state file.
#[derive(Debug)]
pub struct Session {
    settings: Settings,
    store: Store,
    /// Read instead of the store when set (`--state-from`): nothing is written then.
    snapshot: Option<std::sync::Arc<crate::snapshot::StateSnapshot>>,
    fleet: Fleet,
    runtime: tokio::runtime::Runtime,
    shutdown: Shutdown,
}

/// Where a round's plan comes from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// Plan afresh against the recorded state.
    Fresh(&'a PlanOptions),
    /// Apply exactly a saved plan, refusing its stale instances.
    Saved(&'a SavedPlan),
}

/// A planned round: the evaluation it came from and a complete plan, with everything needed
/// to show it and to apply it.
#[derive(Debug)]
pub struct Round {
    pub dir: PathBuf,
    pub evaluation: Evaluation,
    pub plan: Plan,
    /// Recorded details of the planned instances (for diffs and undo).
    pub recorded: BTreeMap<InstanceId, InstanceDetail>,
    /// What each planned instance would apply now.
    pub desired: BTreeMap<InstanceId, InstanceDetail>,
    /// Instances of a saved plan whose inputs changed since; they are not applied.
    pub stale: Vec<Stale>,
    /// The plan as shown, where it says more than the plan applied: stale instances of a
    /// saved plan marked refused, removals whose undo cannot reach a host that left the
    /// manifests. Only the reasons differ; the apply reads `plan` (its trigger reasons gate
    /// what runs).
    shown: Option<Plan>,
}

impl Round {
    pub fn view(&self) -> PlanView<'_> {
        PlanView {
            plan: self.shown.as_ref().unwrap_or(&self.plan),
            desired: &self.desired,
            recorded: &self.recorded,
            redactor: self.resolved().map_or(&EMPTY_REDACTOR, |r| &r.redactor),
        }
    }

    fn resolved(&self) -> Option<&Resolved> {
        self.evaluation.resolved.as_ref()
    }

    /// A digest of the resolved desired state: the spec hashes of every instance.
    pub fn digest(&self) -> String {
        digest(&self.evaluation)
    }
}

/// Where a plan reads the recorded state: a read transaction of the state file (none when
/// there is no file yet), or a snapshot fetched from a daemon.
trait RecordedReader {
    fn recorded(&self) -> crate::store::Result<crate::state::Recorded>;
    fn details<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a InstanceId>,
    ) -> crate::store::Result<BTreeMap<InstanceId, crate::state::InstanceDetail>>;
}

impl RecordedReader for Option<&redb::ReadTransaction> {
    fn recorded(&self) -> crate::store::Result<crate::state::Recorded> {
        match self {
            Some(tx) => crate::store::snapshot_in(tx),
            None => Ok(crate::state::Recorded::default()),
        }
    }

    fn details<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a InstanceId>,
    ) -> crate::store::Result<BTreeMap<InstanceId, crate::state::InstanceDetail>> {
        match self {
            Some(tx) => crate::store::details_in(tx, ids),
            None => Ok(BTreeMap::new()),
        }
    }
}

impl RecordedReader for &crate::snapshot::StateSnapshot {
    fn recorded(&self) -> crate::store::Result<crate::state::Recorded> {
        Ok(crate::snapshot::StateSnapshot::recorded(self))
    }

    fn details<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a InstanceId>,
    ) -> crate::store::Result<BTreeMap<InstanceId, crate::state::InstanceDetail>> {
        Ok(crate::snapshot::StateSnapshot::details(self, ids))
    }
}

type Planned = (
    Plan,
    Vec<Stale>,
    BTreeMap<InstanceId, crate::state::InstanceDetail>,
);

/// A removal with an `undo` whose host left the manifests cannot run it (nothing says how to
/// reach the host any more): the plan says so, as the apply will.
fn mark_hosts_gone(
    plan: &mut crate::plan::Plan,
    hosts: &BTreeMap<crate::model::meta::HostName, crate::model::desired::Host>,
) {
    use crate::plan::change::{ChangeKind, Reason};
    for change in &mut plan.changes {
        if change.kind != ChangeKind::Remove || hosts.contains_key(&change.id.host) {
            continue;
        }
        for reason in &mut change.reasons {
            if *reason == (Reason::NoLongerDesired { has_undo: true }) {
                *reason = Reason::HostGone;
            }
        }
    }
}

/// Plans (or checks a saved plan) against one reading of the recorded state, and reads the
/// details of what the plan changes.
fn plan_from(
    reader: &impl RecordedReader,
    resolved: &Resolved,
    source: Source<'_>,
) -> crate::store::Result<Planned> {
    let mut recorded = reader.recorded()?;
    let (plan, stale) = match source {
        Source::Fresh(options) => {
            let plan = planner::plan(&resolved.instances, &recorded, options);
            // Removals need the details of what goes (its undo, what needed it): read them
            // only when there are removals, and plan again with them.
            let gone: Vec<InstanceId> = plan
                .changes
                .iter()
                .filter(|c| c.kind == crate::plan::change::ChangeKind::Remove)
                .map(|c| c.id.clone())
                .collect();
            if gone.is_empty() {
                (plan, Vec::new())
            } else {
                recorded.no_longer_desired = reader.details(&gone)?;
                (
                    planner::plan(&resolved.instances, &recorded, options),
                    Vec::new(),
                )
            }
        }
        Source::Saved(saved) => (
            saved.plan.clone(),
            stale(&saved.plan, &resolved.instances, &recorded),
        ),
    };
    // The process may end soon after (`plan`): the recorded state is big on a big fleet,
    // and freeing it piece by piece costs more than the OS does at exit.
    std::mem::forget(recorded);
    let details = if plan.unmatched.is_empty() {
        reader.details(plan.changes.iter().map(|c| &c.id))?
    } else {
        BTreeMap::new()
    };
    Ok((plan, stale, details))
}

static EMPTY_REDACTOR: std::sync::LazyLock<crate::secret::Redactor> =
    std::sync::LazyLock::new(crate::secret::Redactor::default);

/// A digest of the resolved desired state: the spec hashes of every instance.
pub fn digest(evaluation: &Evaluation) -> String {
    let hashes: Vec<(String, String)> = evaluation
        .resolved
        .iter()
        .flat_map(|r| {
            r.instances
                .iter()
                .map(|i| (i.id.to_string(), i.spec_hash.to_hex()))
        })
        .collect();
    SpecHash::of(&hashes).short()
}

/// How a run is described in the history.
#[derive(Debug, Clone)]
pub struct RunLabel {
    /// `cli` or `watch`.
    pub trigger: String,
    /// The command line as `crate::provenance::command_line` records it.
    pub command: String,
    /// Who started the run, and on which host.
    pub user: Option<String>,
    pub host: Option<String>,
    pub commit: Option<crate::run::Commit>,
}

impl Session {
    pub fn new(settings: Settings) -> Result<Session> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Runtime { source })?;
        Ok(Session {
            store: Store::at(&settings.state),
            snapshot: None,
            settings,
            fleet: Fleet::default(),
            runtime,
            shutdown: Shutdown::default(),
        })
    }

    /// Plans against `snapshot` (fetched from a daemon) instead of the state file: the
    /// session then reads nothing from it and writes nothing anywhere.
    pub fn read_snapshot(&mut self, snapshot: crate::snapshot::StateSnapshot) {
        self.snapshot = Some(std::sync::Arc::new(snapshot));
    }

    /// Takes the writer lock for `command`, waiting up to the session's lock timeout.
    pub fn lock(&self, command: &str, host: String) -> Result<WriterLock> {
        let me = Holder {
            pid: std::process::id(),
            host,
            command: command.to_owned(),
            since: crate::clock::now(),
        };
        Ok(WriterLock::acquire(
            &self.settings.state,
            &me,
            self.settings.lock_timeout,
        )?)
    }

    /// Plans a round over a valid evaluation of `dir`: one read of the recorded state.
    pub fn plan_round(
        &self,
        dir: &Path,
        evaluation: Evaluation,
        source: Source<'_>,
    ) -> Result<Round> {
        let Some(resolved) = evaluation.resolved.as_ref() else {
            return Err(Error::Invalid);
        };
        // One read transaction (or one snapshot): the plan and the details it shows see the
        // same state.
        let (plan, stale, recorded_details) = match &self.snapshot {
            Some(snapshot) => plan_from(&snapshot.as_ref(), resolved, source)?,
            None => self
                .store
                .read_at_once(|tx| plan_from(&tx, resolved, source))?,
        };
        if !plan.unmatched.is_empty() {
            return Err(Error::Unmatched {
                targets: plan.unmatched.clone(),
            });
        }
        let mut desired = desired_details(&plan, resolved);
        let hosts = evaluation.desired.as_ref().map(|d| &d.hosts);
        let host_gone = plan.changes.iter().any(|c| {
            c.kind == crate::plan::change::ChangeKind::Remove
                && hosts.is_some_and(|h| !h.contains_key(&c.id.host))
        });
        let shown = (host_gone || !stale.is_empty()).then(|| {
            let mut shown = plan.clone();
            if let Some(hosts) = hosts {
                mark_hosts_gone(&mut shown, hosts);
            }
            // A stale instance of a saved plan is shown as refused, without what the
            // manifests say now (that was not reviewed, and will not be applied).
            for refused in &stale {
                if let Some(change) = shown.changes.iter_mut().find(|c| c.id == refused.id) {
                    change.reasons = vec![crate::plan::change::Reason::Stale {
                        why: refused.why.to_owned(),
                    }];
                }
            }
            shown
        });
        for refused in &stale {
            desired.remove(&refused.id);
        }
        Ok(Round {
            dir: dir.to_owned(),
            evaluation,
            plan,
            recorded: recorded_details,
            desired,
            stale,
            shown,
        })
    }

    /// Applies a round: the store is opened once, outcomes are committed in groups (each
    /// before anything that depends on it starts), and SSH connections stay open for the
    /// next round. Console events (live output, progress, signals) go to `console`.
    pub fn apply_round(
        &mut self,
        round: &Round,
        label: RunLabel,
        console: mpsc::Sender<ConsoleEvent>,
    ) -> Result<ApplyReport> {
        if self.snapshot.is_some() {
            return Err(Error::ReadOnly);
        }
        let (Some(resolved), Some(desired)) = (
            round.evaluation.resolved.as_ref(),
            round.evaluation.desired.as_ref(),
        ) else {
            return Err(Error::Invalid);
        };
        let hosts = self.fleet.transports(
            desired,
            &self.settings.ssh,
            &round.dir,
            self.settings.per_host,
        );
        let stale_ids: BTreeMap<InstanceId, &'static str> =
            round.stale.iter().map(|s| (s.id.clone(), s.why)).collect();
        let request = apply::Request {
            plan: &round.plan,
            resolved,
            recorded: &round.recorded,
            stale: &stale_ids,
            rollout: rollout_slots(desired, &round.plan),
            hosts: &hosts,
            options: ApplyOptions {
                limits: schedule::Limits {
                    parallelism: self.settings.parallelism.max(1),
                    per_host: self.settings.per_host.max(1),
                },
                fail_fast: self.settings.fail_fast,
                trigger: label.trigger,
                command: label.command,
                user: label.user,
                host: label.host,
                commit: label.commit,
                manifest_digest: round.digest(),
            },
        };
        let store = self.store.open()?;
        let shutdown = self.shutdown.clone();
        let result = self.runtime.block_on(async {
            let signals = tokio::spawn(signals::watch(shutdown.clone(), console.clone()));
            let result = apply::apply(request, &store, &shutdown, console).await;
            signals.abort();
            result
        });
        let closed = store.close();
        let report = result.map_err(Error::Apply)?;
        if let Err(source @ crate::store::Error::Replaced { .. }) = closed {
            return Err(Error::Apply(crate::apply::Error::StateLost {
                report: Box::new(report),
                source,
            }));
        }
        closed?;
        // The round ended without a store error: this is the last good state.
        if let Err(error) = self.store.save_backup() {
            tracing::warn!(%error, "the state backup was not updated");
        }
        Ok(report)
    }

    /// Ends the session: says goodbye to open SSH connections.
    pub fn close(mut self) {
        let mut fleet = std::mem::take(&mut self.fleet);
        self.runtime.block_on(async move { fleet.close().await });
    }

    /// The session's shutdown tokens: whoever owns the signals (the daemon) moves them.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// SSH connections open now, kept across rounds.
    pub fn open_connections(&self) -> usize {
        self.fleet.open_connections()
    }

    /// What the state file records now (one read transaction).
    pub fn recorded(&self) -> Result<crate::state::Recorded> {
        Ok(self.store.snapshot()?)
    }

    /// Waits for a future on the session's runtime (the daemon's idle wait, for one).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The session's runtime, for what must live on it between rounds (signal listeners).
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime.handle().clone()
    }

    /// Runs a future on the session's runtime (the console printer, for one).
    pub fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.spawn(future)
    }

    /// Waits for a task spawned on the session's runtime.
    pub fn wait<T>(&self, handle: tokio::task::JoinHandle<T>) -> Option<T> {
        self.runtime.block_on(handle).ok()
    }
}

/// What each planned instance (other than removals) would apply now.
fn desired_details(plan: &Plan, resolved: &Resolved) -> BTreeMap<InstanceId, InstanceDetail> {
    let planned: BTreeSet<&InstanceId> = plan.changes.iter().map(|c| &c.id).collect();
    resolved
        .instances
        .iter()
        .filter(|i| planned.contains(&i.id))
        .map(|i| (i.id.clone(), detail_of(i, &resolved.redactor)))
        .collect()
}

/// Rollout batch of each planned instance whose workflow has a `rollout`.
fn rollout_slots(desired: &Desired, plan: &Plan) -> BTreeMap<InstanceId, RolloutSlot> {
    let mut slots = BTreeMap::new();
    for workflow in desired.workflows.values() {
        let Some(rollout) = &workflow.rollout else {
            continue;
        };
        let hosts: Vec<HostName> = desired
            .selected_hosts(workflow)
            .map(|h| h.name.clone())
            .collect();
        let batches = rollout_batches(&hosts, &rollout.batch);
        let batch_of: BTreeMap<&HostName, usize> = batches
            .iter()
            .enumerate()
            .flat_map(|(i, b)| b.iter().map(move |h| (h, i)))
            .collect();
        for change in plan
            .changes
            .iter()
            .filter(|c| c.id.workflow == workflow.name)
        {
            if let Some(&batch) = batch_of.get(&change.id.host) {
                slots.insert(
                    change.id.clone(),
                    RolloutSlot {
                        workflow: workflow.name.clone(),
                        batch,
                        max_failures: rollout.max_failures,
                    },
                );
            }
        }
    }
    slots
}
