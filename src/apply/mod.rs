//! `apply`: drives the sans-IO `Schedule` with a `JoinSet` of attempts, recording every
//! outcome durably before the schedule acts on it.
//!
//! The loop only moves things around: which instance may start is `schedule`'s decision,
//! how a task kind acts is `task`'s, what is remembered is `store`'s. Shutdown is two
//! tokens: the first stops launching (running attempts finish and are recorded), the second
//! kills what runs.

mod ahead;
pub mod attempt;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::instance::InstanceId;
use crate::model::meta::HostName;
use crate::plan::Plan;
use crate::plan::change::{ChangeKind, PlannedChange, Reason};
use crate::report::apply::{ApplyReport, CommandReport, Contacts, InstanceReport, InstanceStatus};
use crate::resolve::{Resolved, ResolvedInstance};
use crate::run::{Event, EventKind, RunRecord, RunStatus};
use crate::schedule::{self, Finished, Node, Schedule, ScheduleOptions, Settled};
use crate::secret::Redactor;
use crate::state::{InstanceDetail, Outcome, RunId, detail_of};
use crate::store::{self, Change, InstanceWrite, OpenStore};
use crate::task::{Applied, Failure};
use crate::transport::{ExitStatus, Stream};

pub use attempt::HostTransport;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error("an attempt at {instance} crashed")]
    Attempt {
        instance: String,
        source: tokio::task::JoinError,
    },
    #[error("the scheduler stopped with {left} instances unsettled")]
    Stuck { left: usize },
    /// Every outcome was recorded and the run ended, but its report could not be stored
    /// (a full disk, most likely); the report is here instead.
    #[error("run {} ended and every outcome is recorded, but its report could not be saved", report.run)]
    ReportNotSaved {
        report: Box<ApplyReport>,
        source: crate::store::Error,
    },
    /// The run ended, but the state file was deleted or replaced while it ran: its outcomes
    /// went into a file that is gone. The report is here instead.
    #[error("run {} ended, but nothing of it is recorded", report.run)]
    StateLost {
        report: Box<ApplyReport>,
        source: crate::store::Error,
    },
}

impl Error {
    /// The report of a run that ended although this error came after it (its report or
    /// its outcomes could not be kept): what ran, to show before the error.
    pub fn ended_report(&self) -> Option<&ApplyReport> {
        match self {
            Error::ReportNotSaved { report, .. } | Error::StateLost { report, .. } => Some(report),
            _ => None,
        }
    }
}

/// What the console is told while a run goes on.
#[derive(Debug, Clone)]
pub enum ConsoleEvent {
    Started {
        id: InstanceId,
    },
    Output {
        id: InstanceId,
        stream: Stream,
        line: String,
    },
    Retrying {
        id: InstanceId,
        attempt: u32,
        delay: Duration,
    },
    Ended {
        id: InstanceId,
        status: InstanceStatus,
        summary: String,
    },
    Draining {
        running: usize,
    },
    /// The first SIGINT/SIGTERM: nothing new starts; running attempts finish (after a
    /// SIGTERM, for a few seconds at most).
    Stopping {
        by_term: bool,
    },
    /// The second: running attempts are killed.
    Killing,
}

/// The two stages of stopping.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Stop launching; let running attempts finish and record them.
    pub graceful: CancellationToken,
    /// Kill running attempts (their process groups) and record them cancelled.
    pub force: CancellationToken,
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub limits: schedule::Limits,
    pub fail_fast: bool,
    pub trigger: String,
    pub command: String,
    /// Who started the run, and on which host.
    pub user: Option<String>,
    pub host: Option<String>,
    pub commit: Option<crate::run::Commit>,
    pub manifest_digest: String,
}

/// Everything a run applies.
#[derive(Debug)]
pub struct Request<'a> {
    pub plan: &'a Plan,
    pub resolved: &'a Resolved,
    /// Recorded details of planned instances (removals need their undo).
    pub recorded: &'a BTreeMap<InstanceId, InstanceDetail>,
    /// Planned instances refused because their inputs changed since a saved plan.
    /// With why each is stale.
    pub stale: &'a BTreeMap<InstanceId, &'static str>,
    /// Rollout position of each planned instance.
    pub rollout: BTreeMap<InstanceId, schedule::RolloutSlot>,
    pub hosts: &'a BTreeMap<HostName, HostTransport>,
    pub options: ApplyOptions,
}

/// Applies a plan; returns the report (also stored with the run).
pub async fn apply(
    request: Request<'_>,
    store: &OpenStore,
    shutdown: &Shutdown,
    console: mpsc::Sender<ConsoleEvent>,
) -> Result<ApplyReport, Error> {
    let started = Instant::now();
    let started_at = clock::now();
    // Transports live across rounds; this run's contacts are what their counters gained.
    let contacts_before = contacts(request.hosts);
    let record = run_record(&request, started_at);
    let now = clock::now();
    let run = store
        .write(move |tx| {
            store::mark_interrupted_in(tx, now)?;
            store::begin_run_in(tx, record)
        })
        .await?;
    let span = tracing::info_span!("run", id = run.0);
    tracing::info!(parent: &span, planned = request.plan.changes.len(), "run started");
    let mut driver = Driver::new(&request, store.clone(), run, console);
    tracing::Instrument::instrument(driver.drive(&request, shutdown), span.clone()).await?;
    let status = if driver.reports.values().any(|r| r.status.is_failure()) {
        RunStatus::Failed
    } else if shutdown.graceful.is_cancelled() {
        RunStatus::Cancelled
    } else {
        RunStatus::Succeeded
    };
    let finished_at = clock::now();
    let report = ApplyReport {
        format_version: crate::report::apply::FORMAT_VERSION,
        run,
        status,
        trigger: request.options.trigger.clone(),
        commit: request.options.commit.as_ref().map(|c| c.sha.clone()),
        manifest_digest: request.options.manifest_digest.clone(),
        started_at,
        finished_at,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        instances: request
            .plan
            .changes
            .iter()
            .filter_map(|c| driver.reports.remove(&c.id))
            .collect(),
        contacts: contacts(request.hosts).since(&contacts_before),
    };
    let changed = report.count(InstanceStatus::Changed) + report.count(InstanceStatus::Removed);
    let failed = report
        .instances
        .iter()
        .filter(|i| i.status.is_failure())
        .count();
    let skipped = report.count(InstanceStatus::Skipped) + report.count(InstanceStatus::Cancelled);
    let counts = move |r: &mut RunRecord| {
        r.changed = changed;
        r.failed = failed;
        r.skipped = skipped;
    };
    let saved = report.clone();
    let ended = store
        .write(move |tx| {
            store::finish_run_in(tx, run, status, finished_at, counts)?;
            store::save_report_in(tx, run, &saved)?;
            store::retention::prune_in(
                tx,
                crate::store::retention::Retention::default(),
                finished_at,
            )
            .map(|_| ())
        })
        .await;
    if let Err(source) = ended {
        // The report is the large part (a full disk): end the run without it, so the history
        // is right; every outcome is already recorded.
        store
            .write(move |tx| store::finish_run_in(tx, run, status, finished_at, counts))
            .await?;
        return Err(Error::ReportNotSaved {
            report: Box::new(report),
            source,
        });
    }
    Ok(report)
}

fn run_record(request: &Request<'_>, started_at: crate::state::Timestamp) -> RunRecord {
    RunRecord {
        id: RunId(0),
        status: RunStatus::Pending,
        started_at,
        finished_at: None,
        trigger: request.options.trigger.clone(),
        command: request.options.command.clone(),
        user: request.options.user.clone(),
        host: request.options.host.clone(),
        commit: request.options.commit.as_ref().map(|c| c.sha.clone()),
        commit_author: request.options.commit.as_ref().map(|c| c.author.clone()),
        commit_subject: request.options.commit.as_ref().map(|c| c.subject.clone()),
        dirty: request.options.commit.as_ref().and_then(|c| c.dirty),
        manifest_digest: Some(request.options.manifest_digest.clone()),
        planned: request.plan.changes.len(),
        changed: 0,
        failed: 0,
        skipped: 0,
    }
}

fn contacts(hosts: &BTreeMap<HostName, HostTransport>) -> Contacts {
    let mut total = Contacts::default();
    for counters in hosts.values().filter_map(HostTransport::counters) {
        total.connections += counters.connections;
        total.channels += counters.channels;
        total.commands += counters.commands;
        total.files_written += counters.files_written;
        total.files_read += counters.files_read;
    }
    total
}

/// What an attempt hands back to the loop.
struct Done {
    id: InstanceId,
    /// Whether the outcome reached the store (durably) before the attempt handed it back.
    persisted: Result<(), Error>,
    result: Result<Applied, Failure>,
    attempts: u32,
    duration: Duration,
    worker: usize,
    /// Sent behind another task of its chain, it was skipped by the host because that task
    /// failed: it never ran, and nothing was recorded.
    withdrawn: bool,
}

struct Driver {
    store: OpenStore,
    run: RunId,
    console: mpsc::Sender<ConsoleEvent>,
    changes: BTreeMap<InstanceId, PlannedChange>,
    instances: BTreeMap<InstanceId, Arc<ResolvedInstance>>,
    /// Source → the desired instances it triggers (in the plan or not).
    triggers: BTreeMap<InstanceId, Vec<InstanceId>>,
    /// Instances that reported a change in this run.
    changed: BTreeSet<InstanceId>,
    redactor: Redactor,
    reports: BTreeMap<InstanceId, InstanceReport>,
    /// When each instance finished, to compute how long its dependents queued.
    finished_at: BTreeMap<InstanceId, Instant>,
    started: Instant,
    /// Which worker slots are busy; an attempt takes the lowest free one.
    workers: Vec<bool>,
    /// The running attempts by task: what to record if one ends without a result.
    tasks: BTreeMap<tokio::task::Id, (InstanceId, ChangeKind, usize)>,
    /// Sending a host's chain of tasks ahead of their results (`ahead`).
    ahead: ahead::Ahead,
}

impl Driver {
    fn new(
        request: &Request<'_>,
        store: OpenStore,
        run: RunId,
        console: mpsc::Sender<ConsoleEvent>,
    ) -> Driver {
        let mut triggers: BTreeMap<InstanceId, Vec<InstanceId>> = BTreeMap::new();
        for instance in &request.resolved.instances {
            for source in &instance.triggered_by {
                triggers
                    .entry(source.clone())
                    .or_default()
                    .push(instance.id.clone());
            }
        }
        let planned: BTreeSet<&InstanceId> = request.plan.changes.iter().map(|c| &c.id).collect();
        Driver {
            store,
            run,
            console,
            changes: request
                .plan
                .changes
                .iter()
                .map(|c| (c.id.clone(), c.clone()))
                .collect(),
            instances: request
                .resolved
                .instances
                .iter()
                .filter(|i| planned.contains(&i.id))
                .map(|i| (i.id.clone(), Arc::new(i.clone())))
                .collect(),
            triggers,
            changed: BTreeSet::new(),
            redactor: request.resolved.redactor.clone(),
            reports: BTreeMap::new(),
            finished_at: BTreeMap::new(),
            started: Instant::now(),
            workers: vec![false; request.options.limits.parallelism.max(1)],
            tasks: BTreeMap::new(),
            ahead: ahead::Ahead::default(),
        }
    }

    async fn drive(&mut self, request: &Request<'_>, shutdown: &Shutdown) -> Result<(), Error> {
        let nodes = self.nodes(request);
        let mut schedule = Schedule::new(
            nodes,
            request.options.limits,
            ScheduleOptions {
                fail_fast: request.options.fail_fast,
            },
        );
        let mut running: JoinSet<Done> = JoinSet::new();
        let mut draining = false;
        // After a forced stop, attempts get `FORCE_GRACE` to end (their process groups are
        // being killed); whatever still hangs then (a frozen connection) is abandoned.
        let mut abandon_at: Option<Instant> = None;
        let mut abandoned = false;
        loop {
            let progressed = !draining
                && self
                    .start_ready(request, shutdown, &mut schedule, &mut running)
                    .await?;
            if schedule.is_done() {
                return Ok(());
            }
            if running.is_empty() {
                if progressed {
                    continue;
                }
                return Err(Error::Stuck {
                    left: schedule.unsettled(),
                });
            }
            tokio::select! {
                joined = running.join_next_with_id() => {
                    let Some(joined) = joined else { continue };
                    let done = match joined {
                        Ok((task, done)) => {
                            self.tasks.remove(&task);
                            done
                        }
                        Err(error) => self.ended_without_result(request, error).await?,
                    };
                    self.conclude(done, &mut schedule).await?;
                    if !draining {
                        self.send_ahead(request, shutdown, &mut schedule, &mut running).await?;
                    }
                }
                () = shutdown.force.cancelled(), if abandon_at.is_none() => {
                    abandon_at = Some(Instant::now() + FORCE_GRACE);
                }
                () = sleep_until_or_never(abandon_at), if !abandoned => {
                    abandoned = true;
                    running.abort_all();
                }
                () = shutdown.graceful.cancelled(), if !draining => {
                    draining = true;
                    let _ = self.console.send(ConsoleEvent::Draining { running: running.len() }).await;
                    let settled = schedule.cancel_pending();
                    self.settle(settled).await?;
                }
            }
        }
    }

    /// Starts what the schedule says may start; stale instances fail in place instead (their
    /// report already says why) so their dependents are skipped. Returns whether anything
    /// started or settled.
    async fn start_ready(
        &mut self,
        request: &Request<'_>,
        shutdown: &Shutdown,
        schedule: &mut Schedule,
        running: &mut JoinSet<Done>,
    ) -> Result<bool, Error> {
        let (ready, settled) = schedule.take_ready();
        let progressed = !ready.is_empty() || !settled.is_empty();
        self.settle(settled).await?;
        for id in ready {
            if self.changes.get(&id).map(|c| c.kind) == Some(ChangeKind::Refresh) {
                // Only its undo or check changed: record them; the host is not contacted.
                self.adopt_durably(&id).await?;
                let settled = schedule.finish(
                    &id,
                    Finished {
                        succeeded: true,
                        changed: false,
                    },
                );
                self.settle(settled).await?;
            } else if request.stale.contains_key(&id) {
                let settled = schedule.finish(
                    &id,
                    Finished {
                        succeeded: false,
                        changed: false,
                    },
                );
                self.settle(settled).await?;
            } else {
                self.launch(request, shutdown, running, id, None).await?;
            }
        }
        self.send_ahead(request, shutdown, schedule, running)
            .await?;
        Ok(progressed)
    }

    /// Schedule nodes, in plan order: planned instances with their in-plan dependencies and
    /// the path they manage (instances of a host that manage the same path take turns in
    /// that order); stale ones are settled as failures before anything starts, so their
    /// dependents are skipped.
    fn nodes(&mut self, request: &Request<'_>) -> Vec<Node> {
        let mut nodes = Vec::with_capacity(request.plan.changes.len());
        for change in &request.plan.changes {
            let only_if_changed = only_if_changed(change);
            nodes.push(Node {
                id: change.id.clone(),
                after: change.after.clone(),
                only_if_changed,
                rollout: request.rollout.get(&change.id).cloned(),
                resource: self
                    .instances
                    .get(&change.id)
                    .and_then(|i| crate::claim::turn(i)),
            });
            if let Some(why) = request.stale.get(&change.id) {
                self.reports.insert(
                    change.id.clone(),
                    Driver::report(
                        change,
                        InstanceStatus::Stale,
                        Some(format!(
                            "stale: {why} since the plan was saved; run `drover plan` again"
                        )),
                    ),
                );
            }
        }
        nodes
    }

    fn report(
        change: &PlannedChange,
        status: InstanceStatus,
        error: Option<String>,
    ) -> InstanceReport {
        InstanceReport {
            id: change.id.clone(),
            change: change.kind,
            status,
            attempts: 0,
            summary: String::new(),
            error,
            diff: None,
            commands: Vec::new(),
            duration_ms: 0,
            queue_wait_ms: 0,
            worker: None,
        }
    }

    /// Records instances that settled without running (skipped, cancelled, not triggered).
    async fn settle(&mut self, settled: Vec<(InstanceId, Settled)>) -> Result<(), Error> {
        for (id, how) in settled {
            let Some(change) = self.changes.get(&id) else {
                continue;
            };
            if self.reports.contains_key(&id) {
                continue;
            }
            let (status, error, event) = match &how {
                Settled::Skipped { because } => (
                    InstanceStatus::Skipped,
                    Some(format!("{because} did not succeed")),
                    Some(EventKind::InstanceSkipped {
                        id: id.clone(),
                        because: because.clone(),
                    }),
                ),
                Settled::NotTriggered => (InstanceStatus::NotTriggered, None, None),
                Settled::Cancelled { reason } => (
                    InstanceStatus::Cancelled,
                    Some(match reason {
                        crate::schedule::CancelReason::FailFast => {
                            "--fail-fast stopped the run after a failure".to_owned()
                        }
                        crate::schedule::CancelReason::Interrupted => {
                            "the apply was interrupted".to_owned()
                        }
                        crate::schedule::CancelReason::RolloutStopped {
                            workflow,
                            failed_hosts,
                        } => {
                            format!(
                                "the rollout of {workflow} stopped after {failed_hosts} failed hosts"
                            )
                        }
                        crate::schedule::CancelReason::Deadlock => {
                            "its dependencies can never finish".to_owned()
                        }
                    }),
                    None,
                ),
            };
            let report = Driver::report(change, status, error.clone());
            self.reports.insert(id.clone(), report);
            if how == Settled::NotTriggered
                && matches!(change.kind, ChangeKind::Create | ChangeKind::Update)
            {
                self.adopt(&id)?;
            }
            if let Some(kind) = event {
                let (run, at) = (self.run, clock::now());
                // A skip is derived from outcomes already durable; losing its event to a
                // crash loses nothing the next plan needs.
                self.store.write_lazy(move |tx| {
                    store::log_in(tx, run, &crate::run::Event { at, kind }, Change::None)
                })?;
            }
            let _ = self
                .console
                .send(ConsoleEvent::Ended {
                    id,
                    status,
                    summary: error.unwrap_or_else(|| "no trigger fired".to_owned()),
                })
                .await;
        }
        Ok(())
    }

    /// An attempt that ended without handing back its result: abandoned after a forced stop
    /// (recorded cancelled: what it started on the host may still run) or crashed (recorded
    /// failed). Either way it is recorded, and its dependents are skipped.
    async fn ended_without_result(
        &mut self,
        request: &Request<'_>,
        error: tokio::task::JoinError,
    ) -> Result<Done, Error> {
        let Some((id, kind, worker)) = self.tasks.remove(&error.id()) else {
            return Err(Error::Attempt {
                instance: "an attempt drover does not know".to_owned(),
                source: error,
            });
        };
        let result = if error.is_cancelled() {
            Err(Failure::Cancelled {
                commands: Vec::new(),
            })
        } else {
            Err(Failure::Failed {
                message: "drover's attempt at it crashed (an internal error); it is recorded failed and will be planned again".to_owned(),
                commands: Vec::new(),
            })
        };
        // Recorded at once, outside the chain order (`ahead::Order`): that order keeps a
        // success from being durable before what it was sent behind; a failure recorded
        // early is harmless, since a failed instance is planned again anyway.
        let persist = self.persist_for(request, &id, kind);
        let persisted = persist.record(&result, Duration::ZERO).await;
        Ok(Done {
            id,
            persisted,
            result,
            attempts: 1,
            duration: Duration::ZERO,
            worker,
            withdrawn: false,
        })
    }

    /// Records an instance's current details (its undo and check) without running it, and
    /// reports it unchanged.
    async fn adopt_durably(&mut self, id: &InstanceId) -> Result<(), Error> {
        let (Some(write), Some(change)) = (self.adoption(id), self.changes.get(id)) else {
            return Ok(());
        };
        let mut report = Driver::report(change, InstanceStatus::Unchanged, None);
        "undo/check recorded; the host was not contacted".clone_into(&mut report.summary);
        self.store.write(write).await?;
        let _ = self
            .console
            .send(ConsoleEvent::Ended {
                id: id.clone(),
                status: InstanceStatus::Unchanged,
                summary: report.summary.clone(),
            })
            .await;
        self.reports.insert(id.clone(), report);
        Ok(())
    }

    /// Records a new or edited trigger-only task as applied without running it: nothing
    /// asked it to run, and the next plan must not see it as new again. Lazy: losing it to a
    /// crash only plans it once more, still gated on its sources.
    fn adopt(&self, id: &InstanceId) -> Result<(), Error> {
        match self.adoption(id) {
            Some(write) => Ok(self.store.write_lazy(write)?),
            None => Ok(()),
        }
    }

    /// The write that records `id` as applied with its current details, without running it.
    fn adoption(
        &self,
        id: &InstanceId,
    ) -> Option<impl FnOnce(&redb::WriteTransaction) -> store::Result<()> + Send + 'static> {
        let instance = self.instances.get(id)?;
        let detail = detail_of(instance, &self.redactor);
        let (run, at, id, spec_hash) = (self.run, clock::now(), id.clone(), instance.spec_hash);
        let event = Event {
            at,
            kind: EventKind::InstanceFinished {
                id: id.clone(),
                outcome: Outcome::Succeeded,
                changed: false,
            },
        };
        Some(move |tx: &redb::WriteTransaction| {
            let write = InstanceWrite {
                id: &id,
                spec_hash,
                outcome: Outcome::Succeeded,
                finished_at: at,
                duration_ms: 0,
                run: Some(run),
                detail: Some(&detail),
                fires: &[],
            };
            store::log_in(tx, run, &event, Change::Record(&write))
        })
    }

    /// Records the start durably, then spawns the attempt; `behind` is the running instance
    /// of its chain it is sent behind, if any.
    async fn launch(
        &mut self,
        request: &Request<'_>,
        shutdown: &Shutdown,
        running: &mut JoinSet<Done>,
        id: InstanceId,
        behind: Option<InstanceId>,
    ) -> Result<(), Error> {
        let Some(change) = self.changes.get(&id).cloned() else {
            return Ok(());
        };
        let worker = self.workers.iter().position(|busy| !busy).unwrap_or(0);
        if let Some(slot) = self.workers.get_mut(worker) {
            *slot = true;
        }
        let transport = request.hosts.get(&id.host).cloned().unwrap_or_else(|| {
            HostTransport::Unreachable(format!("host {} is not in the manifests any more, so its undo cannot run; run it by hand if needed, then `drover state forget '{}/*/*'`", id.host, id.host))
        });
        let chained = self.ahead.link_for(
            &id,
            behind.as_ref(),
            &transport,
            self.instances.get(&id).map(AsRef::as_ref),
            change.kind,
        );
        let order = self.ahead.order(&id, behind.as_ref());
        let transport = match &chained {
            Some(link) => HostTransport::Chained(link.clone()),
            None => transport,
        };
        let triggered = change
            .reasons
            .iter()
            .any(|r| matches!(r, Reason::PendingTrigger { .. }))
            || self
                .instances
                .get(&id)
                .is_some_and(|i| i.triggered_by.iter().any(|s| self.changed.contains(s)));
        let ctx = attempt::AttemptContext {
            transport,
            triggered,
            graceful: shutdown.graceful.clone(),
            force: shutdown.force.clone(),
            console: self.console.clone(),
            redactor: self.redactor.clone(),
            seed: jitter_seed(self.run, &id),
        };
        let armed = self.mark_started(&id, change.kind).await?;
        let _ = self
            .console
            .send(ConsoleEvent::Started { id: id.clone() })
            .await;
        let queue_from = change
            .after
            .iter()
            .filter_map(|d| self.finished_at.get(d))
            .max()
            .copied()
            .unwrap_or(self.started);
        let wait = queue_from.elapsed();
        if let Some(report) = self.reports.get_mut(&id) {
            report.queue_wait_ms = millis(wait);
        } else {
            let mut report = Driver::report(&change, InstanceStatus::Failed, None);
            report.queue_wait_ms = millis(wait);
            self.reports.insert(id.clone(), report);
        }
        let mut persist = self.persist_for(request, &id, change.kind);
        persist.armed = armed;
        match (change.kind, self.instances.get(&id).cloned()) {
            (ChangeKind::Remove, _) | (_, None) => {
                let detail = request.recorded.get(&id).cloned();
                let task_key = (id.clone(), change.kind, worker);
                let span = tracing::info_span!("instance", id = %id, host = %id.host);
                let handle = running.spawn(tracing::Instrument::instrument(
                    async move {
                        let begun = Instant::now();
                        let result = match &detail {
                            Some(detail) => attempt::undo(&id, detail, ctx).await,
                            None => Ok(Applied {
                                changed: true,
                                summary: "forgotten".to_owned(),
                                ..Applied::default()
                            }),
                        };
                        let duration = begun.elapsed();
                        let persisted = order
                            .record(false, || persist.record(&result, duration))
                            .await;
                        tracing::info!(ok = result.is_ok(), ?duration, "undo ended");
                        Done {
                            id,
                            persisted,
                            result,
                            attempts: 1,
                            duration,
                            worker,
                            withdrawn: false,
                        }
                    },
                    span,
                ));
                self.tasks.insert(handle.id(), task_key);
            }
            (_, Some(instance)) => {
                let task_key = (id.clone(), change.kind, worker);
                let span = tracing::info_span!("instance", id = %id, host = %id.host);
                let handle = running.spawn(tracing::Instrument::instrument(
                    async move {
                        let begun = Instant::now();
                        let (result, attempts) = attempt::run(instance, ctx).await;
                        let duration = begun.elapsed();
                        if let Some(link) = &chained {
                            link.end(result.is_ok());
                        }
                        let withdrawn = ahead::withdrawn(&result);
                        let persisted = order
                            .record(withdrawn, || persist.record(&result, duration))
                            .await;
                        tracing::info!(ok = result.is_ok(), attempts, ?duration, "attempt ended");
                        Done {
                            id,
                            persisted,
                            result,
                            attempts,
                            duration,
                            worker,
                            withdrawn,
                        }
                    },
                    span,
                ));
                self.tasks.insert(handle.id(), task_key);
            }
        }
        Ok(())
    }

    /// Before an attempt starts, its record says "interrupted": if drover dies now, the next
    /// plan runs it again. The finished attempt overwrites it.
    async fn mark_started(
        &self,
        id: &InstanceId,
        kind: ChangeKind,
    ) -> Result<Vec<InstanceId>, Error> {
        let armed = self.arm_triggers(id).await?;
        let (run, at) = (self.run, clock::now());
        let event = Event {
            at,
            kind: EventKind::InstanceStarted { id: id.clone() },
        };
        // Every other kind of change is planned again after a crash by what is already
        // recorded (no record, another hash, a failed outcome, a pending trigger or drift);
        // only a forced replacement needs the marker.
        let marker = self
            .instances
            .get(id)
            .filter(|_| kind == ChangeKind::Replace)
            .map(|i| i.spec_hash);
        let id = id.clone();
        match marker {
            Some(spec_hash) => {
                self.store
                    .write(move |tx| {
                        let write = InstanceWrite {
                            id: &id,
                            spec_hash,
                            outcome: Outcome::Interrupted,
                            finished_at: at,
                            duration_ms: 0,
                            run: Some(run),
                            detail: None,
                            fires: &[],
                        };
                        store::log_in(tx, run, &event, Change::Record(&write))
                    })
                    .await?;
            }
            // The start event only tells the history; it rides with the next durable commit.
            None => self
                .store
                .write_lazy(move |tx| store::log_in(tx, run, &event, Change::None))?,
        }
        Ok(armed)
    }

    /// A task that triggers others may change its host the moment it starts: its triggers
    /// are recorded pending, durably, before it does (and taken back if it changes nothing).
    async fn arm_triggers(&self, id: &InstanceId) -> Result<Vec<InstanceId>, Error> {
        let Some(targets) = self.triggers.get(id).filter(|t| !t.is_empty()).cloned() else {
            return Ok(Vec::new());
        };
        if !self.instances.contains_key(id) {
            return Ok(Vec::new());
        }
        let (run, source) = (self.run, id.clone());
        Ok(self
            .store
            .write(move |tx| store::arm_triggers_in(tx, &source, &targets, run))
            .await?)
    }

    /// Records a finished attempt durably; returns what the schedule must learn.
    async fn record(&mut self, mut done: Done) -> Result<(InstanceId, Finished), Error> {
        if let Some(slot) = self.workers.get_mut(done.worker) {
            *slot = false;
        }
        self.finished_at.insert(done.id.clone(), Instant::now());
        let Some(change) = self.changes.get(&done.id) else {
            return Ok((
                done.id,
                Finished {
                    succeeded: false,
                    changed: false,
                },
            ));
        };
        let (outcome, status, changed) = classify(change.kind, &done.result);
        if changed {
            self.changed.insert(done.id.clone());
        }
        // The attempt's own task recorded it durably before handing it back.
        std::mem::replace(&mut done.persisted, Ok(()))?;
        let report = self.instance_report(&done, change, status);
        let summary = report
            .error
            .clone()
            .unwrap_or_else(|| report.summary.clone());
        self.reports.insert(done.id.clone(), report);
        let _ = self
            .console
            .send(ConsoleEvent::Ended {
                id: done.id.clone(),
                status,
                summary,
            })
            .await;
        Ok((
            done.id,
            Finished {
                succeeded: outcome == Outcome::Succeeded,
                changed,
            },
        ))
    }

    /// What the attempt's task needs to record its outcome on its own, so outcomes that end
    /// together wait for one shared commit instead of one after another.
    fn persist_for(&self, request: &Request<'_>, id: &InstanceId, kind: ChangeKind) -> Persist {
        let instance = self.instances.get(id).cloned();
        Persist {
            store: self.store.clone(),
            run: self.run,
            id: id.clone(),
            kind,
            // A failed attempt keeps the previous details: the host is in an unknown state,
            // and the next plan should still diff against what last succeeded.
            detail: instance
                .as_ref()
                .map(|i| detail_of(i, &request.resolved.redactor)),
            spec_hash: instance.map(|i| i.spec_hash),
            fires: self.triggers.get(id).cloned().unwrap_or_default(),
            armed: Vec::new(),
        }
    }

    fn instance_report(
        &self,
        done: &Done,
        change: &PlannedChange,
        status: InstanceStatus,
    ) -> InstanceReport {
        let (summary, error, diff, commands) = match &done.result {
            Ok(applied) => (
                applied.summary.clone(),
                None,
                applied.diff.clone(),
                applied.commands.as_slice(),
            ),
            Err(failure) => (
                String::new(),
                Some(failure.message()),
                None,
                failure.commands(),
            ),
        };
        let mask = |text: String| self.redactor.redact(&text);
        InstanceReport {
            id: done.id.clone(),
            change: change.kind,
            status,
            attempts: done.attempts,
            summary: mask(summary),
            error: error.map(mask),
            // The host's old content may hold an old secret the redactor cannot know.
            diff: if self.instances.get(&done.id).is_some_and(|i| i.sensitive) {
                diff.map(|_| "(the content holds a secret; no diff is shown)".to_owned())
            } else {
                diff.map(mask)
            },
            commands: commands
                .iter()
                .map(|c| CommandReport {
                    command: mask(c.command.clone()),
                    ended: ended(c.status),
                    stdout: mask(c.stdout.text()),
                    stderr: mask(c.stderr.text()),
                })
                .collect(),
            duration_ms: millis(done.duration),
            queue_wait_ms: self.reports.get(&done.id).map_or(0, |r| r.queue_wait_ms),
            worker: Some(done.worker),
        }
    }
}

/// The sources whose change makes `change` run, when it runs only on a trigger: a trigger
/// without a pending restart, or a new or edited task that has `triggeredBy`.
fn only_if_changed(change: &PlannedChange) -> Option<Vec<InstanceId>> {
    if let Some(sources) = change.reasons.iter().find_map(|r| {
        let Reason::OnlyIfTriggered { sources } = r else {
            return None;
        };
        Some(sources.clone())
    }) {
        return Some(sources);
    }
    let pending = change
        .reasons
        .iter()
        .any(|r| matches!(r, Reason::PendingTrigger { .. }));
    (change.kind == ChangeKind::Trigger && !pending).then(|| {
        change
            .reasons
            .iter()
            .filter_map(|r| {
                let Reason::TriggeredBy { sources } = r else {
                    return None;
                };
                Some(sources.clone())
            })
            .flatten()
            .collect()
    })
}

/// How an attempt's result is recorded and reported: (outcome, status, changed).
fn classify(
    kind: ChangeKind,
    result: &Result<Applied, Failure>,
) -> (Outcome, InstanceStatus, bool) {
    match result {
        Ok(applied) if kind == ChangeKind::Remove => {
            (Outcome::Succeeded, InstanceStatus::Removed, applied.changed)
        }
        Ok(applied) => (
            Outcome::Succeeded,
            if applied.changed {
                InstanceStatus::Changed
            } else {
                InstanceStatus::Unchanged
            },
            applied.changed,
        ),
        Err(Failure::TimedOut { .. }) => (Outcome::TimedOut, InstanceStatus::TimedOut, false),
        Err(Failure::Cancelled { .. }) => (Outcome::Cancelled, InstanceStatus::Cancelled, false),
        Err(Failure::Failed { .. } | Failure::Transport { .. }) => {
            (Outcome::Failed, InstanceStatus::Failed, false)
        }
    }
}

/// Records one instance's outcome durably, from the attempt's own task.
struct Persist {
    store: OpenStore,
    run: RunId,
    id: InstanceId,
    kind: ChangeKind,
    /// What to record as applied if the attempt succeeds; `None` for removals.
    detail: Option<InstanceDetail>,
    spec_hash: Option<crate::hash::SpecHash>,
    /// Instances this one triggers when it changes.
    fires: Vec<InstanceId>,
    /// Triggers recorded pending before it started; taken back if it succeeds unchanged.
    armed: Vec<InstanceId>,
}

impl Persist {
    /// Queues the outcome's write at once (so writes queued after it never commit before
    /// it) and returns the wait for its commit.
    fn record(
        self,
        result: &Result<Applied, Failure>,
        duration: Duration,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'static>> {
        let (outcome, _, changed) = classify(self.kind, result);
        let (run, at, id) = (self.run, clock::now(), self.id);
        let event = Event {
            at,
            kind: EventKind::InstanceFinished {
                id: id.clone(),
                outcome,
                changed,
            },
        };
        let Some(spec_hash) = self.spec_hash.filter(|_| self.kind != ChangeKind::Remove) else {
            let forget = self.kind == ChangeKind::Remove && outcome == Outcome::Succeeded;
            let written = self.store.write(move |tx| {
                let change = if forget {
                    Change::Forget(&id)
                } else {
                    Change::None
                };
                store::log_in(tx, run, &event, change)
            });
            return Box::pin(async move { Ok(written.await?) });
        };
        let detail = self.detail.filter(|_| outcome == Outcome::Succeeded);
        let fires = if changed { self.fires } else { Vec::new() };
        // Unchanged and succeeded: it did not touch the host, so nothing is owed. A failure
        // keeps them: the host may have changed before it failed.
        let disarm = if outcome == Outcome::Succeeded && !changed {
            self.armed
        } else {
            Vec::new()
        };
        let duration_ms = millis(duration);
        let written = self.store.write(move |tx| {
            let write = InstanceWrite {
                id: &id,
                spec_hash,
                outcome,
                finished_at: at,
                duration_ms,
                run: Some(run),
                detail: detail.as_ref(),
                fires: &fires,
            };
            store::disarm_triggers_in(tx, &id, &disarm)?;
            store::log_in(tx, run, &event, Change::Record(&write))
        });
        Box::pin(async move { Ok(written.await?) })
    }
}

/// How long attempts get to end after a forced stop before they are abandoned.
const FORCE_GRACE: Duration = Duration::from_secs(5);

/// Sleeps until `at`, or forever without one.
async fn sleep_until_or_never(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn ended(status: ExitStatus) -> String {
    match status {
        ExitStatus::Code { code } => format!("exit {code}"),
        ExitStatus::Signal { signal } => format!("signal {signal}"),
        ExitStatus::TimedOut => "timed out".to_owned(),
        ExitStatus::Cancelled => "cancelled".to_owned(),
    }
}

/// Retry jitter is seeded by run and instance, so delays differ across instances (no
/// thundering herd) yet are reproducible.
fn jitter_seed(run: RunId, id: &InstanceId) -> u64 {
    let hash = crate::hash::SpecHash::of(&(run.0, id));
    let bytes = hash.as_bytes();
    u64::from_le_bytes([
        bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
    ])
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
