//! The daemon (`drover watch`): keeps a fleet converged for months.
//!
//! A loop on top of the reconcile layer: a change under the manifest directory (or SIGHUP)
//! starts a round, load → plan → apply with the semantics of `drover apply --auto-approve`;
//! changes that arrive during a round coalesce into one next round. Every `drift_interval`
//! the hosts are probed as `drover drift` does, and a round repairs what drifted with policy
//! `fix` (`warn` is only reported). A bad edit (invalid YAML, a template error, a cycle) is
//! reported and applies nothing; the last good desired state keeps being enforced (its drift
//! repaired) until a good edit replaces it. A task that keeps failing is left alone for a
//! growing while (`retry`), not tried every round. SIGTERM/SIGINT drain the running round
//! (running tasks finish, then are killed after a grace period; everything is recorded) and
//! stop. The store is open only during a round, so `status`, `history`, `plan` from other
//! processes work while it runs; the writer lock stays with the daemon, so a `drover apply`
//! waits and then says who holds it.

pub mod bounded;
pub mod git;
pub mod http;
pub mod live;
pub mod retry;
pub mod wake;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::time::Instant as Clock;

use tokio::sync::mpsc;

use crate::evaluate::{Evaluation, evaluate};
use crate::instance::InstanceId;
use crate::load::Limits;
use crate::plan::{PlanOptions, RepairDrift};
use crate::reconcile::{self, RunLabel, Session, Source};
use crate::report::apply::InstanceStatus;

use retry::Retry;
use wake::Wake;

/// How the daemon is set up.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    pub limits: Limits,
    /// How long the directory must be quiet before a change starts a round.
    pub debounce: Duration,
    /// How often the hosts are probed for drift; `None`: never.
    pub drift_interval: Option<Duration>,
    /// The command line, recorded with each run.
    pub command: String,
    /// The user and host the daemon runs as and on, recorded with each run.
    pub user: String,
    pub host: String,
    /// Where to serve `/healthz`, `/status`, `/metrics`, `/runs` (none: no HTTP).
    pub listen: Option<std::net::SocketAddr>,
    /// The state file, read by `/runs`.
    pub state: PathBuf,
    /// Git mode: the manifests are `dir` inside a checkout of this branch (not watched:
    /// polled, and fetched at once on `POST /hooks/git`).
    pub git: Option<git::GitSource>,
    /// The secret `POST /hooks/git` signatures are checked with (`DROVER_WEBHOOK_SECRET`).
    pub webhook_secret: Option<Vec<u8>>,
    /// The bearer token `GET /state` requires (`DROVER_API_TOKEN`; none: `/state` is off).
    pub api_token: Option<Vec<u8>>,
}

/// Why a round ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Start,
    Changed,
    Reload,
    Drift,
    Retry,
    /// Git mode: the poll timer.
    Poll,
    /// Git mode: `POST /hooks/git`.
    Push,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Start => "start",
            Reason::Changed => "manifests changed",
            Reason::Reload => "SIGHUP",
            Reason::Drift => "drift check",
            Reason::Retry => "retry of failed tasks",
            Reason::Poll => "git poll",
            Reason::Push => "git push announced",
        }
    }
}

/// What the daemon reports as it goes; the caller logs it.
#[derive(Debug, Clone)]
pub enum Event {
    Watching {
        dir: PathBuf,
    },
    /// The manifests have errors: nothing was applied from them.
    Invalid {
        reason: Reason,
        summary: String,
        /// The first errors, rendered on one line each.
        errors: Vec<String>,
        /// Whether a last good desired state is still enforced.
        keeping: bool,
    },
    /// Nothing to do.
    Converged {
        reason: Reason,
        unchanged: usize,
    },
    Applied {
        reason: Reason,
        run: u64,
        changed: usize,
        failed: usize,
        skipped: usize,
        duration: Duration,
    },
    /// Git mode: the checkout now holds a new commit.
    Fetched {
        commit: crate::run::Commit,
    },
    /// Failing instances left alone this round, with how long they still wait.
    Deferred {
        instances: Vec<(InstanceId, Duration)>,
    },
    DriftChecked {
        probed: usize,
        drifted: usize,
        unknown: usize,
        /// Drifted instances whose policy is `fix`: the next round repairs them.
        to_repair: usize,
    },
    /// A round could not run (the store, the lock, the runtime); the daemon goes on.
    Error {
        message: String,
    },
    /// The first round (or a reload) finished: the daemon is ready.
    Ready,
    /// SIGHUP: a reload round starts.
    Reloading,
    Stopping,
}

/// The daemon's state between rounds.
struct Daemon<'a> {
    session: &'a mut Session,
    settings: &'a Settings,
    sink: &'a mut dyn FnMut(Event),
    live: live::Live,
    /// The last desired state that loaded without error: what is enforced.
    last_good: Option<Evaluation>,
    retry: Retry,
    stop: bool,
    /// Moved by the signals: once `graceful` is cancelled, nothing new starts.
    shutdown: crate::apply::Shutdown,
    /// Wake-ups that came during a round: the next round runs at once.
    again: Option<Reason>,
    /// Git mode: the commit the checkout holds.
    commit: Option<crate::run::Commit>,
}

/// The spec hash of every desired instance, by id.
fn spec_hashes(
    evaluation: &Evaluation,
) -> std::collections::BTreeMap<&InstanceId, crate::hash::SpecHash> {
    evaluation
        .resolved
        .iter()
        .flat_map(|r| r.instances.iter().map(|i| (&i.id, i.spec_hash)))
        .collect()
}

/// What a failing instance's backoff is keyed on: its spec (an edit retries at once), or,
/// for a removal, which has no spec any more, its id alone.
fn backoff_key(
    specs: &std::collections::BTreeMap<&InstanceId, crate::hash::SpecHash>,
    id: &InstanceId,
) -> crate::hash::SpecHash {
    specs
        .get(id)
        .copied()
        .unwrap_or_else(|| crate::hash::SpecHash::of(&("removal", id.to_string())))
}

/// How long open HTTP connections may delay the end of the daemon.
const HTTP_DRAIN: Duration = Duration::from_secs(2);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Wake(#[from] wake::Error),
    #[error(transparent)]
    Listen(#[from] http::ListenError),
}

/// Runs the daemon until SIGTERM/SIGINT; returns when the last round has drained.
pub fn run(
    session: &mut Session,
    settings: &Settings,
    state_dir: Option<PathBuf>,
    sink: &mut dyn FnMut(Event),
) -> Result<(), StartError> {
    let handle = session.handle();
    let watched = settings.git.is_none().then_some(settings.dir.as_path());
    let shutdown = session.shutdown();
    let mut wakes = wake::start(
        &handle,
        watched,
        state_dir,
        settings.debounce,
        shutdown.clone(),
    )?;
    let live = live::Live::new(crate::clock::now());
    let stop_http = tokio_util::sync::CancellationToken::new();
    let server = match settings.listen {
        Some(addr) => Some(http::serve(
            &handle,
            addr,
            http::App {
                live: live.clone(),
                state: settings.state.clone(),
                api_token: settings.api_token.clone(),
                hook: settings.git.as_ref().map(|_| http::Hook {
                    secret: settings.webhook_secret.clone(),
                    wake: wakes.tx.clone(),
                }),
            },
            stop_http.clone(),
        )?),
        None => None,
    };
    let mut daemon = Daemon {
        session,
        settings,
        sink,
        live,
        last_good: None,
        retry: Retry::default(),
        stop: false,
        shutdown,
        again: None,
        commit: None,
    };
    daemon.emit(Event::Watching {
        dir: settings.dir.clone(),
    });
    daemon.round(Reason::Start, &mut wakes.rx);
    daemon.emit(Event::Ready);
    let mut next_drift = settings.drift_interval.map(|d| now() + d);
    let poll = settings.git.as_ref().map(|g| g.poll);
    let mut next_poll = poll.map(|p| now() + p);
    while !daemon.stopping() {
        if let Some(reason) = daemon.again.take() {
            daemon.round(reason, &mut wakes.rx);
            continue;
        }
        let retry_due = daemon.retry.next_due(now());
        let due = Due {
            drift: next_drift,
            retry: retry_due,
            poll: next_poll,
        };
        let wake = daemon.session.block_on(next_wake(&mut wakes.rx, due));
        match wake {
            Woke::Stop => break,
            Woke::Round(Reason::Reload) => {
                daemon.emit(Event::Reloading);
                daemon.round(Reason::Reload, &mut wakes.rx);
                daemon.emit(Event::Ready);
            }
            Woke::Round(reason) => {
                if reason == Reason::Poll {
                    next_poll = poll.map(|p| now() + p);
                }
                daemon.round(reason, &mut wakes.rx);
            }
            Woke::Drift => {
                daemon.drift_check();
                next_drift = settings.drift_interval.map(|d| now() + d);
                if !daemon.stopping() {
                    daemon.round(Reason::Drift, &mut wakes.rx);
                }
            }
        }
    }
    daemon.emit(Event::Stopping);
    stop_http.cancel();
    if let Some(mut server) = server {
        // Graceful shutdown waits for open connections: a client that holds one must not
        // hold the daemon (systemd's stop timeout is short).
        let drained = daemon
            .session
            .block_on(async { tokio::time::timeout(HTTP_DRAIN, &mut server).await.is_ok() });
        if !drained {
            server.abort();
        }
    }
    Ok(())
}

/// Now, from tokio's clock (the one the waits use).
fn now() -> Instant {
    Clock::now().into_std()
}

enum Woke {
    Round(Reason),
    Drift,
    Stop,
}

/// When the timers are due.
struct Due {
    drift: Option<Instant>,
    retry: Option<Instant>,
    poll: Option<Instant>,
}

/// Waits for the next reason to act; wake-ups already queued are taken together.
async fn next_wake(rx: &mut mpsc::Receiver<Wake>, due: Due) -> Woke {
    let at = |when: Option<Instant>| async move {
        match when {
            Some(when) => tokio::time::sleep_until(tokio::time::Instant::from_std(when)).await,
            None => std::future::pending().await,
        }
    };
    let first = tokio::select! {
        wake = rx.recv() => wake.unwrap_or(Wake::Stop),
        () = at(due.drift) => return Woke::Drift,
        () = at(due.retry) => return Woke::Round(Reason::Retry),
        () = at(due.poll) => return Woke::Round(Reason::Poll),
    };
    let mut wakes = vec![first];
    while let Ok(more) = rx.try_recv() {
        wakes.push(more);
    }
    if wakes.contains(&Wake::Stop) {
        Woke::Stop
    } else if wakes.contains(&Wake::Reload) {
        Woke::Round(Reason::Reload)
    } else if wakes.contains(&Wake::Pushed) {
        Woke::Round(Reason::Push)
    } else {
        Woke::Round(Reason::Changed)
    }
}

impl Daemon<'_> {
    /// A stop was asked (SIGTERM/SIGINT): nothing new starts.
    fn stopping(&self) -> bool {
        self.stop || self.shutdown.graceful.is_cancelled()
    }

    /// Records an event for `/status` and the metrics, then hands it to the caller.
    fn emit(&mut self, event: Event) {
        self.live.record(&event, crate::clock::now());
        (self.sink)(event);
    }

    /// One round: load, plan, apply. Errors are reported, never fatal.
    fn round(&mut self, reason: Reason, rx: &mut mpsc::Receiver<Wake>) {
        self.live.busy(&format!("round ({})", reason.as_str()));
        if !self.fetch(reason) {
            return;
        }
        let Some(mut evaluation) = self.desired(reason) else {
            return;
        };
        let options = PlanOptions {
            repair: RepairDrift::FixOnly,
            ..PlanOptions::default()
        };
        let dir = self.settings.dir.clone();
        // Facts of hosts that have none recorded are gathered; recorded ones are kept (a
        // `drover apply --refresh` renews them).
        if let Err(error) = self
            .session
            .settle_facts(&dir, &mut evaluation, false, true)
        {
            self.error(&error);
            return;
        }
        let mut round = match self
            .session
            .plan_round(&dir, evaluation, Source::Fresh(&options))
        {
            Ok(round) => round,
            Err(error) => {
                self.error(&error);
                return;
            }
        };
        let deferred = self.defer_failing(&mut round);
        if !deferred.is_empty() {
            self.emit(Event::Deferred {
                instances: deferred.clone(),
            });
        }
        if self.stopping() {
            return;
        }
        if round.plan.is_empty() {
            if !deferred.is_empty() {
                // Only failing instances wait: not a success to report.
                self.last_good = Some(round.evaluation);
                return;
            }
            self.emit(Event::Converged {
                reason,
                unchanged: round.plan.unchanged,
            });
            self.last_good = Some(round.evaluation);
            self.count_instances();
            return;
        }
        let (console, mut events) = mpsc::channel(1024);
        // The report says everything; live output has no reader in a daemon.
        let drain = self
            .session
            .spawn(async move { while events.recv().await.is_some() {} });
        let label = self.label();
        let started = now();
        let applied = self.session.apply_round(&round, label, console);
        self.session.wait(drain);
        match applied {
            Ok(report) => {
                let now = now();
                let specs = spec_hashes(&round.evaluation);
                for instance in &report.instances {
                    match instance.status {
                        InstanceStatus::Failed | InstanceStatus::TimedOut => {
                            let spec = backoff_key(&specs, &instance.id);
                            self.retry.failed(&instance.id, spec, now);
                        }
                        InstanceStatus::Changed
                        | InstanceStatus::Unchanged
                        | InstanceStatus::Removed => self.retry.succeeded(&instance.id),
                        InstanceStatus::Cancelled
                        | InstanceStatus::Skipped
                        | InstanceStatus::NotTriggered
                        | InstanceStatus::Stale => {}
                    }
                }
                self.emit(Event::Applied {
                    reason,
                    run: report.run.0,
                    changed: report.count(InstanceStatus::Changed)
                        + report.count(InstanceStatus::Removed),
                    failed: report
                        .instances
                        .iter()
                        .filter(|i| i.status.is_failure())
                        .count(),
                    skipped: report.count(InstanceStatus::Skipped),
                    duration: started.elapsed(),
                });
            }
            Err(error) => self.error(&error),
        }
        self.last_good = Some(round.evaluation);
        self.count_instances();
        self.take_what_came(rx);
    }

    /// What came during a round: a stop ends the daemon once the round has drained;
    /// anything else starts the next round at once (nothing is lost).
    fn take_what_came(&mut self, rx: &mut mpsc::Receiver<Wake>) {
        let mut came = Vec::new();
        while let Ok(wake) = rx.try_recv() {
            came.push(wake);
        }
        if came.contains(&Wake::Stop) {
            self.stop = true;
        } else if came.contains(&Wake::Reload) {
            self.again = Some(Reason::Reload);
        } else if came.contains(&Wake::Pushed) {
            self.again = Some(Reason::Push);
        } else if !came.is_empty() {
            self.again = Some(Reason::Changed);
        }
    }

    /// How a run is recorded. In git mode the commit is the checkout's (clean by
    /// construction); otherwise, when the directory is in a git work tree, the commit it is
    /// at, looked up for each run since the tree changes under the daemon.
    fn label(&self) -> RunLabel {
        let commit = match &self.settings.git {
            Some(_) => self.commit.clone(),
            None => self.session.block_on(crate::provenance::work_tree(
                &self.settings.dir,
                std::slice::from_ref(&self.settings.state),
                &self.shutdown.graceful,
            )),
        };
        RunLabel {
            trigger: "watch".to_owned(),
            command: self.settings.command.clone(),
            user: Some(self.settings.user.clone()),
            host: Some(self.settings.host.clone()),
            commit,
        }
    }

    /// Git mode: brings the checkout to the branch's tip when the round is about new
    /// commits. False when there is nothing to do: a poll that found no new commit, or no
    /// checkout at all yet.
    fn fetch(&mut self, reason: Reason) -> bool {
        let Some(source) = self.settings.git.clone() else {
            return true;
        };
        if matches!(reason, Reason::Drift | Reason::Retry) && self.commit.is_some() {
            return true;
        }
        match self.session.block_on(source.sync(&self.shutdown.graceful)) {
            Ok(commit) => {
                let new = self.commit.as_ref().is_none_or(|c| c.sha != commit.sha);
                if new {
                    self.emit(Event::Fetched {
                        commit: commit.clone(),
                    });
                }
                self.commit = Some(commit);
                new || reason != Reason::Poll
            }
            Err(error) => {
                self.emit(Event::Error {
                    message: format!(
                        "cannot fetch {} ({}): {}",
                        git::shown(&source.url),
                        source.branch,
                        crate::transport::error_chain(&error)
                    ),
                });
                // The checkout may be half updated: read nothing from it; the last good state
                // keeps being enforced by drift checks until a fetch works.
                false
            }
        }
    }

    /// The desired state to enforce: the directory as it is now if it is valid; otherwise
    /// nothing new is applied, but a drift repair still enforces the last good state.
    fn desired(&mut self, reason: Reason) -> Option<Evaluation> {
        let evaluation = match evaluate(&self.settings.dir, &self.settings.limits) {
            Ok(evaluation) if !evaluation.has_errors() => {
                self.live.revision(&reconcile::digest(&evaluation), true);
                return Some(evaluation);
            }
            Ok(evaluation) => {
                self.live.revision(&reconcile::digest(&evaluation), false);
                let redactor = evaluation.redactor();
                let errors: Vec<String> = evaluation
                    .diagnostics
                    .iter()
                    .filter(|d| d.is_error())
                    .take(5)
                    .map(|d| redactor.redact(&d.one_line()))
                    .collect();
                (
                    crate::report::diagnostics::summary(&evaluation.diagnostics)
                        .unwrap_or_default(),
                    errors,
                )
            }
            Err(error) => (crate::transport::error_chain(&error), Vec::new()),
        };
        let (summary, errors) = evaluation;
        self.emit(Event::Invalid {
            reason,
            summary,
            errors,
            keeping: self.last_good.is_some(),
        });
        match reason {
            Reason::Drift | Reason::Retry => self.last_good.clone(),
            Reason::Start | Reason::Changed | Reason::Reload | Reason::Poll | Reason::Push => None,
        }
    }

    /// Takes out of the plan the failing instances still left alone, and what depends on
    /// them (it would otherwise run as if they had succeeded).
    fn defer_failing(&self, round: &mut reconcile::Round) -> Vec<(InstanceId, Duration)> {
        let now = now();
        let specs = spec_hashes(&round.evaluation);
        let mut deferred = Vec::new();
        let mut out: BTreeSet<InstanceId> = BTreeSet::new();
        for change in &round.plan.changes {
            let spec = backoff_key(&specs, &change.id);
            if let Some(wait) = self.retry.waiting(&change.id, spec, now) {
                deferred.push((change.id.clone(), wait));
                out.insert(change.id.clone());
            }
        }
        if out.is_empty() {
            return deferred;
        }
        // Changes are in dependency order: one pass carries the deferral down.
        for change in &round.plan.changes {
            if change.after.iter().any(|a| out.contains(a)) {
                out.insert(change.id.clone());
            }
        }
        round.plan.changes.retain(|c| !out.contains(&c.id));
        deferred
    }

    /// Updates the instances-by-state metrics from the record and the last good state.
    fn count_instances(&mut self) {
        let Some((resolved, desired)) = self
            .last_good
            .as_ref()
            .and_then(|e| e.resolved.as_ref().zip(e.desired.as_ref()))
        else {
            return;
        };
        let Ok(recorded) = self.session.recorded() else {
            return;
        };
        self.live.ssh_connections(self.session.open_connections());
        let hosts: Vec<_> = desired.hosts.keys().cloned().collect();
        let table =
            crate::report::status::compute(&resolved.instances, &hosts, &recorded, &[], None);
        self.live.instances(&table);
    }

    /// Probes the hosts of the last good desired state and reports what drifted.
    fn drift_check(&mut self) {
        self.live.busy("drift check");
        let Some(evaluation) = self.last_good.as_ref() else {
            return;
        };
        let dir = self.settings.dir.clone();
        match self.session.drift_round(&dir, evaluation, &[]) {
            Ok(report) => {
                let to_repair = report
                    .instances
                    .iter()
                    .filter(|i| {
                        i.status == crate::drift::Status::Drifted
                            && i.policy == crate::model::workflow::DriftPolicy::Fix
                    })
                    .count();
                self.emit(Event::DriftChecked {
                    probed: report.summary.probed,
                    drifted: report.summary.drifted,
                    unknown: report.summary.unknown,
                    to_repair,
                });
                self.count_instances();
            }
            Err(error) => self.error(&error),
        }
    }

    fn error(&mut self, error: &reconcile::Error) {
        let mut message = crate::transport::error_chain(error);
        if let Some(help) = error.help() {
            message.push_str("; ");
            message.push_str(&help);
        }
        self.emit(Event::Error { message });
    }
}
