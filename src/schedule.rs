//! `Schedule`: which planned instances may start now, as a plain state machine.
//!
//! The async driver in `apply` starts what `take_ready` returns and reports each outcome
//! through `finish`; this module decides everything else (readiness, limits, skips, triggers,
//! rollout batches, cancellation) and does no I/O, reads no clock and spawns nothing.
//!
//! An instance becomes ready as soon as everything in its `after` has succeeded (not level by
//! level); a failure settles its dependents as skipped, naming the failure. Instances of one
//! host that share a `resource` (a path they manage) take turns: each waits until the one
//! given before it has ended, however it ended, so they never run at the same time and run
//! in the order given (decision 0021). Every operation costs O(log n) per instance or edge it
//! touches, so a whole run is O((nodes + edges) log n).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::instance::InstanceId;
use crate::model::meta::{HostName, WorkflowName};
use crate::model::workflow::BatchSize;

/// How many instances may run at once: overall (`--parallelism`) and on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// At least 1; 0 is treated as 1 so that a run cannot stall.
    pub parallelism: usize,
    /// At least 1; 0 is treated as 1 so that a run cannot stall.
    pub per_host: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleOptions {
    /// After the first failure, cancel everything not yet started.
    pub fail_fast: bool,
}

/// One instance to schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: InstanceId,
    /// Instances of the same schedule that must finish successfully first.
    pub after: Vec<InstanceId>,
    /// Some(sources) when the instance runs only because these sources change in this run:
    /// if none of them reports `changed`, it settles as `NotTriggered` instead of running.
    pub only_if_changed: Option<Vec<InstanceId>>,
    /// Rollout position: workflow key, batch index (0-based), failures tolerated.
    pub rollout: Option<RolloutSlot>,
    /// What it manages on its host that others may manage too (a path): the instances of a
    /// host with the same resource run one at a time, in the order given, each once the one
    /// before it has ended. Unlike `after`, a failure there does not skip it.
    pub resource: Option<String>,
}

/// Where an instance sits in its workflow's rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutSlot {
    pub workflow: WorkflowName,
    /// 0-based; see `rollout_batches`.
    pub batch: usize,
    /// Failed hosts tolerated; the first node of a workflow decides it.
    pub max_failures: u32,
}

/// What the driver reports when an instance it started has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    pub succeeded: bool,
    /// The instance changed the host (what `only_if_changed` listens for).
    pub changed: bool,
}

/// How an instance ended without the driver running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Something it comes after did not succeed; `because` is the instance that failed (or
    /// was cancelled) at the root of the chain.
    Skipped {
        because: InstanceId,
    },
    /// None of its trigger sources changed, so there was nothing to do.
    NotTriggered,
    Cancelled {
        reason: CancelReason,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelReason {
    /// `--fail-fast` and something failed.
    FailFast,
    /// Ctrl-C: `cancel_pending`.
    Interrupted,
    /// More hosts failed in this workflow's rollout than `maxFailures` allows.
    RolloutStopped {
        workflow: WorkflowName,
        failed_hosts: usize,
    },
    /// Nothing was running and nothing could start: the `after` lists (or rollout batches)
    /// wait on each other. A validated plan never does this; it is settled rather than hung.
    Deadlock,
}

/// Splits a workflow's hosts (already in name order) into rollout batches.
///
/// A count is the batch size; a percentage `p%` gives `ceil(hosts × p / 100)`, at least 1.
/// A percentage that does not parse (the schema rejects those) is treated as 1 host per batch,
/// the most careful reading.
pub fn rollout_batches(hosts: &[HostName], batch: &BatchSize) -> Vec<Vec<HostName>> {
    let size = match batch {
        BatchSize::Count(count) => usize::try_from(*count).unwrap_or(usize::MAX),
        BatchSize::Percent(text) => percent_batch_size(hosts.len(), text),
    };
    hosts
        .chunks(size.max(1))
        .map(<[HostName]>::to_vec)
        .collect()
}

fn percent_batch_size(n_hosts: usize, text: &str) -> usize {
    let Some(percent) = text
        .trim()
        .strip_suffix('%')
        .and_then(|p| p.trim().parse::<u64>().ok())
    else {
        return 1;
    };
    let n_hosts = u64::try_from(n_hosts).unwrap_or(u64::MAX);
    let size = n_hosts.saturating_mul(percent.clamp(1, 100)).div_ceil(100);
    usize::try_from(size).unwrap_or(usize::MAX).max(1)
}

/// Where an instance is in its life. Settled states never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Something in `after` has not succeeded yet.
    Waiting,
    /// Everything in `after` succeeded; the next `take_ready` decides what happens.
    Queued,
    /// Waiting for the earlier rollout batches of its workflow to settle.
    Held,
    /// May start as soon as the limits allow.
    Ready,
    Running,
    /// Ran and succeeded, or settled as `NotTriggered` (`changed: false`).
    Succeeded {
        changed: bool,
    },
    /// Failed, skipped or cancelled: its dependents were settled when it was.
    Unsuccessful,
}

impl State {
    fn is_unstarted(self) -> bool {
        matches!(
            self,
            State::Waiting | State::Queued | State::Held | State::Ready
        )
    }
}

#[derive(Debug)]
struct Entry {
    id: InstanceId,
    host: usize,
    /// How many of `after` (and trigger sources) have not succeeded yet.
    pending: usize,
    /// `after` and trigger sources that are in the schedule.
    deps: Vec<usize>,
    /// Instances that list this one; emptied once used (each is used once, at settling).
    dependents: Vec<usize>,
    /// Known trigger sources; `None` when the instance always runs.
    sources: Option<Vec<usize>>,
    /// The instance before it on its resource, while that one's turn has not passed on
    /// (counted in `pending`).
    follows: Option<usize>,
    /// The instance after it on its resource, until its turn passes on.
    follower: Option<usize>,
    /// (rollout index, batch).
    rollout: Option<(usize, usize)>,
    state: State,
    /// When it was skipped: the instance whose failure it was skipped for.
    skipped_for: Option<InstanceId>,
}

#[derive(Debug, Default)]
struct Host {
    running: usize,
    /// Ready instances by position, so the host always offers its earliest one.
    ready: BTreeSet<usize>,
    /// This host's key in `Schedule::eligible`, if it is there.
    eligible_key: Option<usize>,
}

#[derive(Debug)]
struct Rollout {
    workflow: WorkflowName,
    max_failures: u32,
    /// Every instance of each batch, for cancelling later batches.
    members: BTreeMap<usize, Vec<usize>>,
    /// Unsettled instances per batch; the first key is the open batch.
    unsettled: BTreeMap<usize, usize>,
    /// Instances whose `after` succeeded but whose batch is not open yet.
    held: BTreeMap<usize, Vec<usize>>,
    failed_hosts: BTreeSet<usize>,
    stopped: bool,
}

impl Rollout {
    fn new(slot: &RolloutSlot) -> Rollout {
        Rollout {
            workflow: slot.workflow.clone(),
            max_failures: slot.max_failures,
            members: BTreeMap::new(),
            unsettled: BTreeMap::new(),
            held: BTreeMap::new(),
            failed_hosts: BTreeSet::new(),
            stopped: false,
        }
    }

    /// A batch may start once every earlier batch has settled.
    fn is_open(&self, batch: usize) -> bool {
        self.unsettled
            .first_key_value()
            .is_none_or(|(&first, _)| first >= batch)
    }

    fn is_over_budget(&self) -> bool {
        u32::try_from(self.failed_hosts.len()).unwrap_or(u32::MAX) > self.max_failures
    }

    /// Counts one settled instance of `batch`; returns the held instances of the batch that
    /// opens because of it.
    fn settle_one(&mut self, batch: usize) -> Vec<usize> {
        let was_open = self.is_open(batch);
        let Some(count) = self.unsettled.get_mut(&batch) else {
            return Vec::new();
        };
        *count = count.saturating_sub(1);
        if *count > 0 {
            return Vec::new();
        }
        self.unsettled.remove(&batch);
        match self.unsettled.first_key_value() {
            Some((&next, _)) if was_open => self.held.remove(&next).unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// The ready queue of one apply. See the module doc.
#[derive(Debug)]
pub struct Schedule {
    entries: Vec<Entry>,
    index: BTreeMap<InstanceId, usize>,
    hosts: Vec<Host>,
    rollouts: Vec<Rollout>,
    /// Hosts with a ready instance and a free slot, keyed by (earliest ready position, host),
    /// so the next start is the earliest startable instance without scanning blocked hosts.
    eligible: BTreeSet<(usize, usize)>,
    /// Instances whose `after` just succeeded, for `take_ready` to admit.
    queue: VecDeque<usize>,
    limits: Limits,
    options: ScheduleOptions,
    running: usize,
    unsettled: usize,
    /// Everything not started was cancelled (fail-fast, Ctrl-C or deadlock) for this reason;
    /// nothing new starts.
    closed: Option<CancelReason>,
}

impl Schedule {
    /// Builds the schedule. Ids must be unique: a later duplicate of an id is dropped.
    /// Ids in `after` or `only_if_changed` that are not in `nodes` count as satisfied (and
    /// as unchanged sources).
    pub fn new(nodes: Vec<Node>, limits: Limits, options: ScheduleOptions) -> Schedule {
        let nodes = without_duplicates(nodes);
        let index: BTreeMap<InstanceId, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (node.id.clone(), i))
            .collect();
        let mut schedule = Schedule {
            entries: Vec::with_capacity(nodes.len()),
            index,
            hosts: Vec::new(),
            rollouts: Vec::new(),
            eligible: BTreeSet::new(),
            queue: VecDeque::new(),
            limits: Limits {
                parallelism: limits.parallelism.max(1),
                per_host: limits.per_host.max(1),
            },
            options,
            running: 0,
            unsettled: nodes.len(),
            closed: None,
        };
        schedule.add_entries(&nodes);
        schedule.link(&nodes);
        schedule
    }

    fn add_entries(&mut self, nodes: &[Node]) {
        let mut host_index: BTreeMap<&HostName, usize> = BTreeMap::new();
        let mut rollout_index: BTreeMap<&WorkflowName, usize> = BTreeMap::new();
        for (i, node) in nodes.iter().enumerate() {
            let n_hosts = host_index.len();
            let host = *host_index.entry(&node.id.host).or_insert(n_hosts);
            if host == self.hosts.len() {
                self.hosts.push(Host::default());
            }
            let rollout = node
                .rollout
                .as_ref()
                .map(|slot| self.place_in_rollout(&mut rollout_index, slot, i));
            let sources = node.only_if_changed.as_ref().map(|s| self.known(s));
            self.entries.push(Entry {
                id: node.id.clone(),
                host,
                pending: 0,
                deps: Vec::new(),
                dependents: Vec::new(),
                sources,
                follows: None,
                follower: None,
                rollout,
                state: State::Waiting,
                skipped_for: None,
            });
        }
    }

    /// Adds instance `i` to its workflow's rollout (the first slot seen creates it); returns
    /// (rollout index, batch).
    fn place_in_rollout<'a>(
        &mut self,
        rollout_index: &mut BTreeMap<&'a WorkflowName, usize>,
        slot: &'a RolloutSlot,
        i: usize,
    ) -> (usize, usize) {
        let n_rollouts = rollout_index.len();
        let r = *rollout_index.entry(&slot.workflow).or_insert(n_rollouts);
        if r == self.rollouts.len() {
            self.rollouts.push(Rollout::new(slot));
        }
        if let Some(rollout) = self.rollouts.get_mut(r) {
            rollout.members.entry(slot.batch).or_default().push(i);
            *rollout.unsettled.entry(slot.batch).or_default() += 1;
        }
        (r, slot.batch)
    }

    /// Positions of the ids that are in the schedule, in order, without repeats.
    fn known(&self, ids: &[InstanceId]) -> Vec<usize> {
        let mut res: Vec<usize> = ids
            .iter()
            .filter_map(|d| self.index.get(d).copied())
            .collect();
        res.sort_unstable();
        res.dedup();
        res
    }

    /// Records edges; trigger sources are waited for like `after` (the plan lists them in
    /// both), because whether a source changed is only known once it has finished. Each
    /// instance with a resource follows the one given last before it on the same host.
    fn link(&mut self, nodes: &[Node]) {
        let mut last: BTreeMap<(usize, &str), usize> = BTreeMap::new();
        for (i, node) in nodes.iter().enumerate() {
            let mut deps = node.after.clone();
            deps.extend(node.only_if_changed.iter().flatten().cloned());
            let deps = self.known(&deps);
            for &d in &deps {
                if let Some(upstream) = self.entries.get_mut(d) {
                    upstream.dependents.push(i);
                }
            }
            let follows = match (&node.resource, self.entries.get(i)) {
                (Some(resource), Some(entry)) => last.insert((entry.host, resource), i),
                _ => None,
            };
            if let Some(before) = follows.and_then(|b| self.entries.get_mut(b)) {
                before.follower = Some(i);
            }
            if let Some(entry) = self.entries.get_mut(i) {
                entry.pending = deps.len() + usize::from(follows.is_some());
                entry.follows = follows;
                entry.deps.clone_from(&deps);
                if entry.pending == 0 {
                    entry.state = State::Queued;
                    self.queue.push_back(i);
                }
            }
        }
    }

    /// Instances that may start now, in the order given to `new` among the ready ones, never
    /// exceeding the limits; the caller must start every one. Also returns instances that
    /// settled without running (`NotTriggered`, or `Cancelled(Deadlock)` when nothing can move),
    /// for the driver to record.
    pub fn take_ready(&mut self) -> (Vec<InstanceId>, Vec<(InstanceId, Settled)>) {
        let mut settled = Vec::new();
        while let Some(i) = self.queue.pop_front() {
            if self.state(i) == Some(State::Queued) {
                self.admit(i, &mut settled);
            }
        }
        let started = self.start_ready();
        if started.is_empty() && self.running == 0 && self.unsettled > 0 {
            self.cancel_all(&CancelReason::Deadlock, &mut settled);
        }
        (started, settled)
    }

    /// Records the outcome of a running instance; returns every instance that settled because
    /// of it. Unknown or not-running ids are ignored (nothing returned).
    pub fn finish(&mut self, id: &InstanceId, finished: Finished) -> Vec<(InstanceId, Settled)> {
        let mut out = Vec::new();
        let Some(i) = self.stop_running(id) else {
            return out;
        };
        if finished.succeeded {
            self.set_state(
                i,
                State::Succeeded {
                    changed: finished.changed,
                },
            );
            self.release_dependents(i);
        } else {
            self.set_state(i, State::Unsuccessful);
            self.skip_dependents(i, id, &mut out);
            self.count_rollout_failure(i, &mut out);
            if self.options.fail_fast {
                self.cancel_all(&CancelReason::FailFast, &mut out);
            }
        }
        // Last, so that a batch does not open before this failure has been counted.
        self.retire(i);
        out
    }

    /// Ctrl-C: cancels everything not yet started; running instances keep running and are
    /// still reported through `finish`.
    pub fn cancel_pending(&mut self) -> Vec<(InstanceId, Settled)> {
        let mut out = Vec::new();
        self.cancel_all(&CancelReason::Interrupted, &mut out);
        out
    }

    /// Starts, ahead of time, the next instance of a chain of running instances (`chain`,
    /// in the order they were sent; its last one is where the next goes behind): the
    /// earliest instance on the same host, waiting (for its `after` or its resource's turn)
    /// only for members of the chain, that no trigger decides, outside any rollout, and that
    /// `may` accepts, when the limits have room. The driver sends it behind the chain, and
    /// the host runs it only if what is before it succeeded; if not, the driver gives it
    /// back with `withdraw`.
    pub fn speculate(
        &mut self,
        chain: &[InstanceId],
        may: impl Fn(&InstanceId) -> bool,
    ) -> Option<InstanceId> {
        // The cheap refusals first: this runs after every result, for every open chain.
        let tail = self.entries.get(*self.index.get(chain.last()?)?)?;
        if tail.state != State::Running || self.closed.is_some() {
            return None;
        }
        let host = tail.host;
        let room = self.running < self.limits.parallelism
            && self
                .hosts
                .get(host)
                .is_some_and(|h| h.running < self.limits.per_host);
        if !room {
            return None;
        }
        let members: Vec<usize> = chain
            .iter()
            .filter_map(|id| self.index.get(id).copied())
            .collect();
        // How many of each candidate's unfinished dependencies are in the chain.
        let mut waits_on_chain: BTreeMap<usize, usize> = BTreeMap::new();
        for &m in &members {
            let Some(member) = self.entries.get(m).filter(|e| e.state == State::Running) else {
                continue;
            };
            for &d in member.dependents.iter().chain(&member.follower) {
                *waits_on_chain.entry(d).or_default() += 1;
            }
        }
        let next = waits_on_chain.into_iter().find_map(|(d, in_chain)| {
            self.entries
                .get(d)
                .is_some_and(|e| {
                    e.state == State::Waiting
                        && e.pending == in_chain
                        && e.host == host
                        && e.sources.is_none()
                        && e.rollout.is_none()
                        && may(&e.id)
                })
                .then_some(d)
        })?;
        self.set_state(next, State::Running);
        self.running += 1;
        if let Some(h) = self.hosts.get_mut(host) {
            h.running += 1;
        }
        self.refresh_host(host);
        self.id(next)
    }

    /// Takes back an instance started by `speculate` that the host did not run (something
    /// before it failed, or was itself taken back): it waits again for its dependencies, is
    /// queued if they have all succeeded, or is skipped if one of them failed. Returns what
    /// settled.
    pub fn withdraw(&mut self, id: &InstanceId) -> Vec<(InstanceId, Settled)> {
        let mut out = Vec::new();
        let Some(i) = self.stop_running(id) else {
            return out;
        };
        if let Some(reason) = self.closed.clone() {
            self.set_state(i, State::Waiting);
            self.settle_unstarted(i, Settled::Cancelled { reason }, &mut out);
            self.skip_dependents(i, id, &mut out);
            return out;
        }
        // Its dependencies may have ended while it was out: count again what it waits for.
        // The turn before it on its resource, if any, has not passed on yet; however it
        // ends, it never skips this one.
        let (deps, turn) = self
            .entries
            .get(i)
            .map(|e| (e.deps.clone(), e.follows.is_some()))
            .unwrap_or_default();
        // Named as the ordinary path names it: the failure at the root, not a dependency
        // that was skipped for it.
        let failed = deps
            .iter()
            .find(|&&d| self.state(d) == Some(State::Unsuccessful))
            .and_then(|&d| {
                let entry = self.entries.get(d)?;
                Some(
                    entry
                        .skipped_for
                        .clone()
                        .unwrap_or_else(|| entry.id.clone()),
                )
            });
        let pending = deps
            .iter()
            .filter(|&&d| !matches!(self.state(d), Some(State::Succeeded { .. })))
            .count()
            + usize::from(turn);
        if let Some(because) = failed {
            self.set_state(i, State::Waiting);
            let settled = Settled::Skipped {
                because: because.clone(),
            };
            self.settle_unstarted(i, settled, &mut out);
            self.skip_dependents(i, &because, &mut out);
        } else if let Some(entry) = self.entries.get_mut(i) {
            entry.pending = pending;
            if pending == 0 {
                entry.state = State::Queued;
                self.queue.push_back(i);
            } else {
                entry.state = State::Waiting;
            }
        }
        out
    }

    /// Nothing is waiting, ready or running: every instance has settled.
    pub fn is_done(&self) -> bool {
        self.unsettled == 0
    }

    pub fn running(&self) -> usize {
        self.running
    }

    /// Instances not yet settled (running ones included).
    pub fn unsettled(&self) -> usize {
        self.unsettled
    }

    /// Frees the slots of a running instance; `None` if `id` is unknown or not running.
    fn stop_running(&mut self, id: &InstanceId) -> Option<usize> {
        let &i = self.index.get(id)?;
        let entry = self.entries.get(i).filter(|e| e.state == State::Running)?;
        let host = entry.host;
        self.running = self.running.saturating_sub(1);
        if let Some(h) = self.hosts.get_mut(host) {
            h.running = h.running.saturating_sub(1);
        }
        self.refresh_host(host);
        Some(i)
    }

    fn state(&self, i: usize) -> Option<State> {
        self.entries.get(i).map(|e| e.state)
    }

    fn set_state(&mut self, i: usize, state: State) {
        if let Some(entry) = self.entries.get_mut(i) {
            entry.state = state;
        }
    }

    fn id(&self, i: usize) -> Option<InstanceId> {
        self.entries.get(i).map(|e| e.id.clone())
    }

    /// An instance whose `after` succeeded: hold it for its batch, settle it as `NotTriggered`,
    /// or make it ready.
    fn admit(&mut self, i: usize, out: &mut Vec<(InstanceId, Settled)>) {
        let Some(entry) = self.entries.get(i) else {
            return;
        };
        let host = entry.host;
        if let Some((r, batch)) = entry.rollout
            && let Some(rollout) = self.rollouts.get_mut(r)
            && !rollout.is_open(batch)
        {
            rollout.held.entry(batch).or_default().push(i);
            self.set_state(i, State::Held);
            return;
        }
        if !self.is_triggered(i) {
            self.set_state(i, State::Succeeded { changed: false });
            if let Some(id) = self.id(i) {
                out.push((id, Settled::NotTriggered));
            }
            self.release_dependents(i);
            self.retire(i);
            return;
        }
        self.set_state(i, State::Ready);
        if let Some(h) = self.hosts.get_mut(host) {
            h.ready.insert(i);
        }
        self.refresh_host(host);
    }

    fn is_triggered(&self, i: usize) -> bool {
        let Some(sources) = self.entries.get(i).and_then(|e| e.sources.as_ref()) else {
            return true;
        };
        sources
            .iter()
            .any(|&s| self.state(s) == Some(State::Succeeded { changed: true }))
    }

    fn start_ready(&mut self) -> Vec<InstanceId> {
        let mut started = Vec::new();
        while self.running < self.limits.parallelism {
            let Some((_, host)) = self.eligible.pop_first() else {
                break;
            };
            let Some(h) = self.hosts.get_mut(host) else {
                continue;
            };
            h.eligible_key = None;
            let Some(i) = h.ready.pop_first() else {
                continue;
            };
            h.running += 1;
            self.running += 1;
            self.set_state(i, State::Running);
            self.refresh_host(host);
            started.extend(self.id(i));
        }
        started
    }

    /// Puts the host in `eligible` under its earliest ready instance, or takes it out when it
    /// has none or no free slot.
    fn refresh_host(&mut self, host: usize) {
        let per_host = self.limits.per_host;
        let Some(h) = self.hosts.get_mut(host) else {
            return;
        };
        if let Some(old) = h.eligible_key.take() {
            self.eligible.remove(&(old, host));
        }
        if h.running < per_host
            && let Some(&first) = h.ready.first()
        {
            h.eligible_key = Some(first);
            self.eligible.insert((first, host));
        }
    }

    /// `i` succeeded (or was not triggered): dependents with nothing else pending are queued.
    fn release_dependents(&mut self, i: usize) {
        let dependents = self
            .entries
            .get_mut(i)
            .map(|e| std::mem::take(&mut e.dependents))
            .unwrap_or_default();
        for d in dependents {
            let Some(entry) = self.entries.get_mut(d) else {
                continue;
            };
            if entry.state != State::Waiting {
                continue;
            }
            entry.pending = entry.pending.saturating_sub(1);
            if entry.pending == 0 {
                entry.state = State::Queued;
                self.queue.push_back(d);
            }
        }
    }

    /// Skips every not-started instance downstream of `root`, naming `because`.
    fn skip_dependents(
        &mut self,
        root: usize,
        because: &InstanceId,
        out: &mut Vec<(InstanceId, Settled)>,
    ) {
        let mut stack = self.take_dependents(root);
        while let Some(d) = stack.pop() {
            if !self.state(d).is_some_and(State::is_unstarted) {
                continue;
            }
            let settled = Settled::Skipped {
                because: because.clone(),
            };
            self.settle_unstarted(d, settled, out);
            stack.extend(self.take_dependents(d));
        }
    }

    fn take_dependents(&mut self, i: usize) -> Vec<usize> {
        self.entries
            .get_mut(i)
            .map(|e| std::mem::take(&mut e.dependents))
            .unwrap_or_default()
    }

    /// Counts the failed host in its rollout; past the budget, cancels every later batch and
    /// skips what depends on those.
    fn count_rollout_failure(&mut self, i: usize, out: &mut Vec<(InstanceId, Settled)>) {
        let Some(entry) = self.entries.get(i) else {
            return;
        };
        let (host, Some((r, batch))) = (entry.host, entry.rollout) else {
            return;
        };
        let Some(rollout) = self.rollouts.get_mut(r) else {
            return;
        };
        rollout.failed_hosts.insert(host);
        if rollout.stopped || !rollout.is_over_budget() {
            return;
        }
        rollout.stopped = true;
        let reason = CancelReason::RolloutStopped {
            workflow: rollout.workflow.clone(),
            failed_hosts: rollout.failed_hosts.len(),
        };
        let later: Vec<usize> = rollout
            .members
            .range(batch.saturating_add(1)..)
            .flat_map(|(_, members)| members.iter().copied())
            .collect();
        // Cancel the whole later batches first, so their own members are Cancelled, not Skipped.
        let mut cancelled = Vec::new();
        for m in later {
            if self.state(m).is_some_and(State::is_unstarted) {
                let settled = Settled::Cancelled {
                    reason: reason.clone(),
                };
                self.settle_unstarted(m, settled, out);
                cancelled.push(m);
            }
        }
        for m in cancelled {
            if let Some(id) = self.id(m) {
                self.skip_dependents(m, &id, out);
            }
        }
    }

    /// Cancels everything not yet started, once: afterwards nothing new can become startable.
    fn cancel_all(&mut self, reason: &CancelReason, out: &mut Vec<(InstanceId, Settled)>) {
        if self.closed.is_some() {
            return;
        }
        self.closed = Some(reason.clone());
        for i in 0..self.entries.len() {
            if self.state(i).is_some_and(State::is_unstarted) {
                let settled = Settled::Cancelled {
                    reason: reason.clone(),
                };
                self.settle_unstarted(i, settled, out);
            }
        }
        self.queue.clear();
    }

    fn settle_unstarted(
        &mut self,
        i: usize,
        settled: Settled,
        out: &mut Vec<(InstanceId, Settled)>,
    ) {
        let Some(entry) = self.entries.get_mut(i) else {
            return;
        };
        let (was, host) = (entry.state, entry.host);
        entry.state = State::Unsuccessful;
        if let Settled::Skipped { because } = &settled {
            entry.skipped_for = Some(because.clone());
        }
        out.push((entry.id.clone(), settled));
        if was == State::Ready {
            if let Some(h) = self.hosts.get_mut(host) {
                h.ready.remove(&i);
            }
            self.refresh_host(host);
        }
        self.retire(i);
    }

    /// Bookkeeping for an instance that has just settled: counts, its resource's turn, and
    /// rollout batches that open.
    fn retire(&mut self, i: usize) {
        self.unsettled = self.unsettled.saturating_sub(1);
        self.pass_turn(i);
        let Some((r, batch)) = self.entries.get(i).and_then(|e| e.rollout) else {
            return;
        };
        let released = self
            .rollouts
            .get_mut(r)
            .map(|rollout| rollout.settle_one(batch))
            .unwrap_or_default();
        for h in released {
            if self.state(h) == Some(State::Held) {
                self.set_state(h, State::Queued);
                self.queue.push_back(h);
            }
        }
    }

    /// `i` has settled: the instance after it on its resource may go. When `i` settled
    /// before its own turn came (skipped or cancelled while the one before it had not ended),
    /// the one after it waits for that one instead, so a resource never has two instances
    /// running. Runs once per instance (from `retire`), so links only ever join instances
    /// whose turn has not passed on.
    fn pass_turn(&mut self, i: usize) {
        let Some(entry) = self.entries.get_mut(i) else {
            return;
        };
        let (before, next) = (entry.follows.take(), entry.follower.take());
        if let Some(earlier) = before.and_then(|b| self.entries.get_mut(b)) {
            earlier.follower = next;
        }
        let Some(n) = next else {
            return;
        };
        let Some(later) = self.entries.get_mut(n) else {
            return;
        };
        later.follows = before;
        // A running one was sent ahead behind `i` (`speculate`); `withdraw` counts again.
        if before.is_some() || later.state != State::Waiting {
            return;
        }
        later.pending = later.pending.saturating_sub(1);
        if later.pending == 0 {
            later.state = State::Queued;
            self.queue.push_back(n);
        }
    }
}

fn without_duplicates(nodes: Vec<Node>) -> Vec<Node> {
    let mut seen = BTreeSet::new();
    nodes
        .into_iter()
        .filter(|node| seen.insert(node.id.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use expect_test::{Expect, expect};
    use proptest::prelude::*;

    use super::*;

    fn id(text: &str) -> InstanceId {
        InstanceId::parse(text).unwrap()
    }

    fn ids(texts: &[&str]) -> Vec<InstanceId> {
        texts.iter().map(|t| id(t)).collect()
    }

    fn node(text: &str, after: &[&str]) -> Node {
        Node {
            id: id(text),
            after: ids(after),
            only_if_changed: None,
            rollout: None,
            resource: None,
        }
    }

    /// An instance that comes after its sources and runs only if one of them changed.
    fn triggered(text: &str, sources: &[&str]) -> Node {
        Node {
            only_if_changed: Some(ids(sources)),
            ..node(text, sources)
        }
    }

    fn schedule(
        nodes: Vec<Node>,
        parallelism: usize,
        per_host: usize,
        fail_fast: bool,
    ) -> Schedule {
        Schedule::new(
            nodes,
            Limits {
                parallelism,
                per_host,
            },
            ScheduleOptions { fail_fast },
        )
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ending {
        Ran(Finished),
        Settled(Settled),
    }

    impl Ending {
        fn is_success(&self) -> bool {
            matches!(
                self,
                Ending::Ran(Finished {
                    succeeded: true,
                    ..
                }) | Ending::Settled(Settled::NotTriggered)
            )
        }

        fn is_change(&self) -> bool {
            *self
                == Ending::Ran(Finished {
                    succeeded: true,
                    changed: true,
                })
        }

        /// What a skip may name: a failure or a cancellation, never another skip.
        fn is_root_cause(&self) -> bool {
            matches!(
                self,
                Ending::Ran(Finished {
                    succeeded: false,
                    ..
                }) | Ending::Settled(Settled::Cancelled { .. })
            )
        }

        fn describe(&self) -> String {
            match self {
                Ending::Ran(f) if !f.succeeded => "failed".to_owned(),
                Ending::Ran(f) if f.changed => "ok".to_owned(),
                Ending::Ran(_) => "ok (unchanged)".to_owned(),
                Ending::Settled(Settled::Skipped { because }) => {
                    format!("skipped because {because}")
                }
                Ending::Settled(Settled::NotTriggered) => "not triggered".to_owned(),
                Ending::Settled(Settled::Cancelled { reason }) => match reason {
                    CancelReason::FailFast => "cancelled (fail-fast)".to_owned(),
                    CancelReason::Interrupted => "cancelled (interrupted)".to_owned(),
                    CancelReason::Deadlock => "cancelled (deadlock)".to_owned(),
                    CancelReason::RolloutStopped {
                        workflow,
                        failed_hosts,
                    } => format!(
                        "cancelled (rollout of {workflow} stopped: {failed_hosts} failed hosts)"
                    ),
                },
            }
        }
    }

    /// What a simulated driver saw: when each instance started and ended (in event steps),
    /// and the most instances it ever had running, overall and on one host.
    #[derive(Debug, Default)]
    struct Run {
        step: usize,
        started: BTreeMap<InstanceId, usize>,
        ended: BTreeMap<InstanceId, (usize, Ending)>,
        max_running: usize,
        max_per_host: usize,
    }

    impl Run {
        fn end(&mut self, id: &InstanceId, ending: Ending) {
            self.step += 1;
            let step = self.step;
            assert!(
                self.ended.insert(id.clone(), (step, ending)).is_none(),
                "{id} settled twice"
            );
        }

        fn settle(&mut self, settled: Vec<(InstanceId, Settled)>) {
            for (id, s) in settled {
                self.end(&id, Ending::Settled(s));
            }
        }

        fn summary(&self) -> String {
            self.ended
                .iter()
                .map(|(id, (_, ending))| format!("{id} {}\n", ending.describe()))
                .collect::<Vec<_>>()
                .concat()
        }

        fn start_order(&self) -> Vec<String> {
            let mut order: Vec<(&usize, &InstanceId)> =
                self.started.iter().map(|(id, step)| (step, id)).collect();
            order.sort();
            order.into_iter().map(|(_, id)| id.to_string()).collect()
        }
    }

    /// A driver loop like `apply`'s: start everything ready, then finish one running instance
    /// (chosen by `pick`) with the outcome `outcome` gives, until the schedule is done.
    fn drive(
        schedule: &mut Schedule,
        mut outcome: impl FnMut(&InstanceId) -> Finished,
        mut pick: impl FnMut(usize) -> usize,
    ) -> Run {
        let mut run = Run::default();
        let mut running: Vec<InstanceId> = Vec::new();
        let mut per_host: BTreeMap<HostName, usize> = BTreeMap::new();
        loop {
            let (started, settled) = schedule.take_ready();
            run.settle(settled);
            for id in started {
                run.step += 1;
                assert!(
                    run.started.insert(id.clone(), run.step).is_none(),
                    "{id} started twice"
                );
                let on_host = per_host.entry(id.host.clone()).or_default();
                *on_host += 1;
                run.max_per_host = run.max_per_host.max(*on_host);
                running.push(id);
            }
            run.max_running = run.max_running.max(running.len());
            assert_eq!(schedule.running(), running.len());
            if running.is_empty() {
                assert!(
                    schedule.is_done(),
                    "nothing running but the schedule is not done"
                );
                return run;
            }
            let id = running.swap_remove(pick(running.len()) % running.len());
            *per_host.get_mut(&id.host).unwrap() -= 1;
            let finished = outcome(&id);
            run.end(&id, Ending::Ran(finished));
            run.settle(schedule.finish(&id, finished));
        }
    }

    /// Everything succeeds and changes its host, except the listed failures and no-ops.
    fn script(fails: &[&str], unchanged: &[&str]) -> impl FnMut(&InstanceId) -> Finished {
        let fails: BTreeSet<InstanceId> = ids(fails).into_iter().collect();
        let unchanged: BTreeSet<InstanceId> = ids(unchanged).into_iter().collect();
        move |id| Finished {
            succeeded: !fails.contains(id),
            changed: !fails.contains(id) && !unchanged.contains(id),
        }
    }

    fn first(_: usize) -> usize {
        0
    }

    fn last(n: usize) -> usize {
        n - 1
    }

    /// A deterministic "random" finish order.
    fn shuffled(seed: u64) -> impl FnMut(usize) -> usize {
        let mut state = seed | 1;
        move |n| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % u64::try_from(n).unwrap()).unwrap()
        }
    }

    fn check(nodes: Vec<Node>, fails: &[&str], fail_fast: bool, expect: &Expect) -> Run {
        let mut s = schedule(nodes, 4, 2, fail_fast);
        let run = drive(&mut s, script(fails, &[]), first);
        expect.assert_eq(&run.summary());
        run
    }

    fn finish_ok(s: &mut Schedule, text: &str) -> Vec<(InstanceId, Settled)> {
        s.finish(
            &id(text),
            Finished {
                succeeded: true,
                changed: true,
            },
        )
    }

    fn started(s: &mut Schedule) -> Vec<String> {
        let (started, settled) = s.take_ready();
        assert!(settled.is_empty(), "{settled:?}");
        started.iter().map(ToString::to_string).collect()
    }

    const OK: Finished = Finished {
        succeeded: true,
        changed: true,
    };
    const FAILED: Finished = Finished {
        succeeded: false,
        changed: false,
    };

    #[test]
    fn a_chain_is_sent_ahead_within_the_host_limit_and_takes_what_waits_only_on_it() {
        let mut s = schedule(
            vec![
                node("h/w/a", &[]),
                node("h/w/b", &["h/w/a"]),
                node("h/w/c", &["h/w/b"]),
                node("h/w/side", &["h/w/a"]),
                node("h/w/late", &["h/w/c", "h/w/other"]),
                node("h/w/other", &[]),
                node("g/w/elsewhere", &["h/w/a"]),
            ],
            8,
            3,
            false,
        );
        let (ready, _) = s.take_ready();
        assert_eq!(ready, ids(&["h/w/a", "h/w/other"]));
        let a = ids(&["h/w/a"]);
        // `b` and `side` wait only on `a`; the earliest goes first. The host has one slot left.
        assert_eq!(s.speculate(&a, |_| true), Some(id("h/w/b")));
        assert_eq!(s.speculate(&ids(&["h/w/a", "h/w/b"]), |_| true), None);
        assert_eq!(s.running(), 3);
        // Nothing on another host, nothing `may` refuses.
        let mut t = schedule(
            vec![node("h/w/a", &[]), node("g/w/x", &["h/w/a"])],
            8,
            8,
            false,
        );
        t.take_ready();
        assert_eq!(t.speculate(&a, |_| true), None);
        let mut u = schedule(
            vec![node("h/w/a", &[]), node("h/w/x", &["h/w/a"])],
            8,
            8,
            false,
        );
        u.take_ready();
        assert_eq!(u.speculate(&a, |_| false), None);
    }

    #[test]
    fn a_withdrawn_instance_is_queued_again_skipped_or_waits_as_its_dependencies_ended() {
        let chain = || {
            let mut s = schedule(
                vec![
                    node("h/w/a", &[]),
                    node("h/w/b", &["h/w/a"]),
                    node("h/w/c", &["h/w/b"]),
                ],
                8,
                8,
                false,
            );
            s.take_ready();
            assert_eq!(s.speculate(&ids(&["h/w/a"]), |_| true), Some(id("h/w/b")));
            assert_eq!(
                s.speculate(&ids(&["h/w/a", "h/w/b"]), |_| true),
                Some(id("h/w/c"))
            );
            s
        };
        // `a` succeeded (on a retry): `b` is queued again, `c` waits for it again.
        let mut s = chain();
        assert!(s.finish(&id("h/w/a"), OK).is_empty());
        assert!(s.withdraw(&id("h/w/b")).is_empty());
        assert!(s.withdraw(&id("h/w/c")).is_empty());
        assert_eq!(s.take_ready().0, ids(&["h/w/b"]));
        s.finish(&id("h/w/b"), OK);
        assert_eq!(s.take_ready().0, ids(&["h/w/c"]));
        s.finish(&id("h/w/c"), OK);
        assert!(s.is_done());
        // `a` failed: both are skipped because of it (`c` names the failure, not `b`, as
        // the ordinary path does).
        let mut s = chain();
        assert!(s.finish(&id("h/w/a"), FAILED).is_empty());
        let b = s.withdraw(&id("h/w/b"));
        let c = s.withdraw(&id("h/w/c"));
        let skipped = Settled::Skipped {
            because: id("h/w/a"),
        };
        assert_eq!(b, vec![(id("h/w/b"), skipped.clone())]);
        assert_eq!(c, vec![(id("h/w/c"), skipped)]);
        assert!(s.is_done());
    }

    /// An instance of `text` managing `resource`.
    fn on(resource: &str, text: &str, after: &[&str]) -> Node {
        Node {
            resource: Some(resource.to_owned()),
            ..node(text, after)
        }
    }

    #[test]
    fn edits_of_one_path_take_turns_in_the_order_given_and_a_failure_skips_none() {
        let nodes = vec![
            node("h/w/seed", &[]),
            on("/f", "h/w/l1", &["h/w/seed"]),
            on("/f", "h/w/l2", &["h/w/seed"]),
            on("/f", "h/w/l3", &["h/w/seed"]),
            on("/g", "h/w/other", &["h/w/seed"]),
            on("/f", "h/w/b1", &["h/w/seed"]),
            on("/f", "g/w/l1", &[]),
        ];
        for seed in 0..20 {
            let mut s = schedule(nodes.clone(), 8, 8, false);
            let run = drive(&mut s, script(&["h/w/l2"], &[]), shuffled(seed));
            check_turns(&nodes, &run).unwrap();
            expect![[r#"
                g/w/l1 ok
                h/w/b1 ok
                h/w/l1 ok
                h/w/l2 failed
                h/w/l3 ok
                h/w/other ok
                h/w/seed ok
            "#]]
            .assert_eq(&run.summary());
            let order: Vec<String> = run
                .start_order()
                .into_iter()
                .filter(|i| i.starts_with("h/w/l") || i.starts_with("h/w/b"))
                .collect();
            assert_eq!(order, ["h/w/l1", "h/w/l2", "h/w/l3", "h/w/b1"]);
        }
        // Another host's edit of the same path and another path of this host do not wait.
        let mut s = schedule(nodes, 8, 8, false);
        assert_eq!(started(&mut s), ["h/w/seed", "g/w/l1"]);
        finish_ok(&mut s, "h/w/seed");
        assert_eq!(started(&mut s), ["h/w/l1", "h/w/other"]);
    }

    #[test]
    fn a_turn_skipped_early_goes_back_to_the_one_still_running_before_it() {
        let mut s = schedule(
            vec![
                on("/f", "h/w/a", &[]),
                node("h/w/x", &[]),
                on("/f", "h/w/b", &["h/w/x"]),
                on("/f", "h/w/c", &[]),
            ],
            8,
            8,
            false,
        );
        assert_eq!(started(&mut s), ["h/w/a", "h/w/x"]);
        let skipped = s.finish(&id("h/w/x"), FAILED);
        assert_eq!(
            skipped,
            [(
                id("h/w/b"),
                Settled::Skipped {
                    because: id("h/w/x")
                }
            )]
        );
        // `b` is out of the way, but `a` still runs: `c` waits for it.
        assert!(started(&mut s).is_empty());
        finish_ok(&mut s, "h/w/a");
        assert_eq!(started(&mut s), ["h/w/c"]);
        finish_ok(&mut s, "h/w/c");
        assert!(s.is_done());
    }

    #[test]
    fn the_next_turn_is_sent_ahead_behind_its_predecessor_and_not_skipped_with_it() {
        let mut s = schedule(
            vec![
                on("/f", "h/w/a", &[]),
                on("/f", "h/w/b", &[]),
                on("/f", "h/w/c", &[]),
            ],
            8,
            8,
            false,
        );
        assert_eq!(started(&mut s), ["h/w/a"]);
        // `b` waits only for `a`'s turn: it may go behind it in the same shell, and `c`
        // behind `b`, never beside them.
        assert_eq!(s.speculate(&ids(&["h/w/a"]), |_| true), Some(id("h/w/b")));
        assert_eq!(
            s.speculate(&ids(&["h/w/a", "h/w/b"]), |_| true),
            Some(id("h/w/c"))
        );
        // `a` fails: the host skips what was behind it; both are queued again, in turn.
        assert!(s.finish(&id("h/w/a"), FAILED).is_empty());
        assert!(s.withdraw(&id("h/w/b")).is_empty());
        assert!(s.withdraw(&id("h/w/c")).is_empty());
        assert_eq!(started(&mut s), ["h/w/b"]);
        s.finish(&id("h/w/b"), OK);
        assert_eq!(started(&mut s), ["h/w/c"]);
        s.finish(&id("h/w/c"), OK);
        assert!(s.is_done());
    }

    /// 1,000 hosts × 50 edits of one file each, no `after` at all.
    #[test]
    fn fifty_thousand_edits_of_one_file_per_host_run_one_at_a_time_per_host() {
        let nodes: Vec<Node> = (0..1_000)
            .flat_map(|h| (0..50).map(move |t| on("/etc/hosts", &format!("h{h}/w/t{t}"), &[])))
            .collect();
        let mut s = schedule(nodes, 32, 4, false);
        let run = drive(&mut s, script(&["h7/w/t10"], &[]), shuffled(42));
        assert_eq!(run.ended.len(), 50_000);
        assert_eq!(run.started.len(), 50_000, "a failure skips no turn");
        assert_eq!(run.max_per_host, 1);
        assert_eq!(run.max_running, 32);
        assert!(s.is_done());
    }

    #[test]
    fn an_instance_starts_as_soon_as_its_own_after_succeeded() {
        let mut s = schedule(
            vec![
                node("a/w/slow", &[]),
                node("b/w/quick", &[]),
                node("b/w/next", &["b/w/quick"]),
                node("a/w/last", &["a/w/slow", "b/w/next"]),
            ],
            8,
            8,
            false,
        );
        assert_eq!(started(&mut s), ["a/w/slow", "b/w/quick"]);
        assert!(finish_ok(&mut s, "b/w/quick").is_empty());
        // `a/w/slow` is still running: no waiting for the whole first level.
        assert_eq!(started(&mut s), ["b/w/next"]);
        finish_ok(&mut s, "b/w/next");
        assert!(started(&mut s).is_empty());
        finish_ok(&mut s, "a/w/slow");
        assert_eq!(started(&mut s), ["a/w/last"]);
        assert!(!s.is_done());
        finish_ok(&mut s, "a/w/last");
        assert!(s.is_done());
        assert_eq!(s.running(), 0);
    }

    #[test]
    fn ready_instances_start_in_the_order_given() {
        let mut s = schedule(
            vec![
                node("c/w/one", &[]),
                node("a/w/two", &[]),
                node("b/w/three", &[]),
                node("a/w/four", &[]),
            ],
            3,
            1,
            false,
        );
        // `a/w/four` is second on host a (per_host 1), so it waits though a slot is free.
        assert_eq!(started(&mut s), ["c/w/one", "a/w/two", "b/w/three"]);
        finish_ok(&mut s, "a/w/two");
        assert_eq!(started(&mut s), ["a/w/four"]);
    }

    #[test]
    fn a_failure_skips_the_whole_chain_naming_the_original_failure() {
        check(
            vec![
                node("a/w/one", &[]),
                node("a/w/two", &["a/w/one"]),
                node("a/w/three", &["a/w/two"]),
                node("b/x/four", &["a/w/three"]),
            ],
            &["a/w/one"],
            false,
            &expect![[r#"
                a/w/one failed
                a/w/three skipped because a/w/one
                a/w/two skipped because a/w/one
                b/x/four skipped because a/w/one
            "#]],
        );
    }

    #[test]
    fn a_failure_skips_a_diamond_once() {
        check(
            vec![
                node("a/w/top", &[]),
                node("a/w/left", &["a/w/top"]),
                node("a/w/right", &["a/w/top"]),
                node("a/w/bottom", &["a/w/left", "a/w/right"]),
            ],
            &["a/w/top"],
            false,
            &expect![[r#"
                a/w/bottom skipped because a/w/top
                a/w/left skipped because a/w/top
                a/w/right skipped because a/w/top
                a/w/top failed
            "#]],
        );
        check(
            vec![
                node("a/w/top", &[]),
                node("a/w/left", &["a/w/top"]),
                node("a/w/right", &["a/w/top"]),
                node("a/w/bottom", &["a/w/left", "a/w/right"]),
            ],
            &["a/w/left", "a/w/right"],
            false,
            &expect![[r#"
                a/w/bottom skipped because a/w/left
                a/w/left failed
                a/w/right failed
                a/w/top ok
            "#]],
        );
    }

    #[test]
    fn independent_branches_go_on_after_a_failure() {
        check(
            vec![
                node("a/w/install", &[]),
                node("a/w/config", &["a/w/install"]),
                node("b/w/install", &[]),
                node("b/w/config", &["b/w/install"]),
                node("a/x/other", &[]),
            ],
            &["a/w/install"],
            false,
            &expect![[r#"
                a/w/config skipped because a/w/install
                a/w/install failed
                a/x/other ok
                b/w/config ok
                b/w/install ok
            "#]],
        );
    }

    #[test]
    fn fail_fast_cancels_exactly_the_not_yet_started() {
        let mut s = schedule(
            vec![
                node("a/w/one", &[]),
                node("b/w/one", &[]),
                node("a/w/two", &["a/w/one"]),
                node("c/w/one", &[]),
                node("b/w/two", &["b/w/one"]),
            ],
            2,
            1,
            true,
        );
        assert_eq!(started(&mut s), ["a/w/one", "b/w/one"]);
        let settled = s.finish(
            &id("a/w/one"),
            Finished {
                succeeded: false,
                changed: false,
            },
        );
        // The failure's dependent is skipped; the rest not started is cancelled; `b/w/one`
        // keeps running.
        let fail_fast = Settled::Cancelled {
            reason: CancelReason::FailFast,
        };
        assert_eq!(
            settled,
            [
                (
                    id("a/w/two"),
                    Settled::Skipped {
                        because: id("a/w/one")
                    }
                ),
                (id("c/w/one"), fail_fast.clone()),
                (id("b/w/two"), fail_fast),
            ]
        );
        assert_eq!(s.running(), 1);
        assert!(!s.is_done());
        assert!(started(&mut s).is_empty());
        // A later success releases nothing, and a second Ctrl-C-style cancel finds nothing.
        assert!(finish_ok(&mut s, "b/w/one").is_empty());
        assert!(s.cancel_pending().is_empty());
        assert!(s.is_done());
    }

    #[test]
    fn without_fail_fast_a_failure_cancels_nothing() {
        let run = check(
            vec![
                node("a/w/one", &[]),
                node("b/w/one", &[]),
                node("c/w/one", &[]),
            ],
            &["a/w/one"],
            false,
            &expect![[r#"
                a/w/one failed
                b/w/one ok
                c/w/one ok
            "#]],
        );
        assert_eq!(run.started.len(), 3);
    }

    #[test]
    fn limits_are_never_exceeded_in_any_finish_order() {
        let nodes: Vec<Node> = (0..6)
            .flat_map(|h| {
                (0..8).map(move |t| {
                    let after = if t % 3 == 0 {
                        Vec::new()
                    } else {
                        vec![format!("h{h}/w/t{}", t - 1)]
                    };
                    let after: Vec<&str> = after.iter().map(String::as_str).collect();
                    node(&format!("h{h}/w/t{t}"), &after)
                })
            })
            .collect();
        for (parallelism, per_host) in [(1, 1), (3, 1), (5, 2), (32, 3), (4, 8)] {
            for order in 0..4u64 {
                let mut s = schedule(nodes.clone(), parallelism, per_host, false);
                let run = match order {
                    0 => drive(&mut s, script(&[], &[]), first),
                    1 => drive(&mut s, script(&[], &[]), last),
                    _ => drive(&mut s, script(&["h2/w/t1"], &[]), shuffled(order)),
                };
                assert!(run.max_running <= parallelism, "{parallelism}/{per_host}");
                assert!(run.max_per_host <= per_host, "{parallelism}/{per_host}");
                // The limits are also reached: the scheduler does not hold back.
                assert_eq!(run.max_running, parallelism.min(6 * per_host.min(3)));
                assert_eq!(run.ended.len(), 48);
            }
        }
    }

    #[test]
    fn zero_limits_count_as_one() {
        let mut s = schedule(
            vec![node("a/w/one", &[]), node("b/w/one", &[])],
            0,
            0,
            false,
        );
        let run = drive(&mut s, script(&[], &[]), first);
        assert_eq!(run.max_running, 1);
        assert_eq!(run.ended.len(), 2);
    }

    #[test]
    fn a_triggered_instance_is_not_triggered_when_no_source_changed() {
        let mut s = schedule(
            vec![
                node("a/w/config", &[]),
                node("a/w/unit", &[]),
                triggered("a/w/restart", &["a/w/config", "a/w/unit"]),
                node("a/w/check", &["a/w/restart"]),
            ],
            4,
            4,
            false,
        );
        let run = drive(&mut s, script(&[], &["a/w/config", "a/w/unit"]), first);
        // Not triggered counts as success: `check` still runs.
        expect![[r#"
            a/w/check ok
            a/w/config ok (unchanged)
            a/w/restart not triggered
            a/w/unit ok (unchanged)
        "#]]
        .assert_eq(&run.summary());
    }

    #[test]
    fn a_triggered_instance_runs_when_one_source_changed() {
        let mut s = schedule(
            vec![
                node("a/w/config", &[]),
                node("a/w/unit", &[]),
                triggered("a/w/restart", &["a/w/config", "a/w/unit"]),
            ],
            4,
            4,
            false,
        );
        let run = drive(&mut s, script(&[], &["a/w/config"]), first);
        expect![[r#"
            a/w/config ok (unchanged)
            a/w/restart ok
            a/w/unit ok
        "#]]
        .assert_eq(&run.summary());
    }

    #[test]
    fn not_triggered_cascades_and_is_reported_by_take_ready() {
        let mut s = schedule(
            vec![
                node("a/w/config", &[]),
                triggered("a/w/reload", &["a/w/config"]),
                triggered("a/w/announce", &["a/w/reload"]),
                node("a/w/after", &["a/w/announce"]),
            ],
            4,
            4,
            false,
        );
        assert_eq!(started(&mut s), ["a/w/config"]);
        let settled = s.finish(
            &id("a/w/config"),
            Finished {
                succeeded: true,
                changed: false,
            },
        );
        assert!(
            settled.is_empty(),
            "NotTriggered is only reported by take_ready"
        );
        let (started, settled) = s.take_ready();
        assert_eq!(started, ids(&["a/w/after"]));
        assert_eq!(
            settled,
            [
                (id("a/w/reload"), Settled::NotTriggered),
                (id("a/w/announce"), Settled::NotTriggered),
            ]
        );
    }

    #[test]
    fn a_triggered_instance_is_skipped_when_its_source_failed() {
        check(
            vec![
                node("a/w/config", &[]),
                triggered("a/w/restart", &["a/w/config"]),
            ],
            &["a/w/config"],
            false,
            &expect![[r#"
                a/w/config failed
                a/w/restart skipped because a/w/config
            "#]],
        );
    }

    #[test]
    fn sources_outside_the_schedule_never_count_as_changed() {
        check(
            vec![triggered("a/w/restart", &["a/w/config"])],
            &[],
            false,
            &expect![[r#"
                a/w/restart not triggered
            "#]],
        );
    }

    /// `n_hosts` hosts `h1`… with `install → config` each, in a `web` rollout.
    fn rollout_fleet(n_hosts: usize, batch: &BatchSize, max_failures: u32) -> Vec<Node> {
        let hosts: Vec<HostName> = (1..=n_hosts)
            .map(|n| HostName::parse(&format!("h{n}")).unwrap())
            .collect();
        let mut nodes = Vec::new();
        for (b, batch_hosts) in rollout_batches(&hosts, batch).iter().enumerate() {
            for host in batch_hosts {
                for (task, after) in [
                    ("install", vec![]),
                    ("config", vec![format!("{host}/web/install")]),
                ] {
                    let after: Vec<&str> = after.iter().map(String::as_str).collect();
                    nodes.push(Node {
                        rollout: Some(RolloutSlot {
                            workflow: WorkflowName::parse("web").unwrap(),
                            batch: b,
                            max_failures,
                        }),
                        ..node(&format!("{host}/web/{task}"), &after)
                    });
                }
            }
        }
        nodes
    }

    fn batch_of(nodes: &[Node], id: &InstanceId) -> usize {
        nodes
            .iter()
            .find(|n| &n.id == id)
            .unwrap()
            .rollout
            .as_ref()
            .unwrap()
            .batch
    }

    #[test]
    fn rollout_batches_run_in_order() {
        let nodes = rollout_fleet(5, &BatchSize::Count(2), 0);
        let mut s = schedule(nodes.clone(), 32, 4, false);
        let run = drive(&mut s, script(&[], &[]), shuffled(7));
        assert_eq!(run.ended.len(), 10);
        // Every instance of a batch ends before any instance of a later batch starts.
        for (started, &start) in &run.started {
            for (ended, (end, _)) in &run.ended {
                if batch_of(&nodes, ended) < batch_of(&nodes, started) {
                    assert!(end < &start, "{started} started before {ended} ended");
                }
            }
        }
        assert_eq!(run.max_running, 2, "a batch of two hosts runs both at once");
    }

    #[test]
    fn rollout_stops_after_the_failure_budget_is_spent() {
        let nodes = rollout_fleet(5, &BatchSize::Count(2), 0);
        let mut s = schedule(nodes, 32, 4, false);
        let run = drive(&mut s, script(&["h1/web/install"], &[]), first);
        expect![[r#"
            h1/web/config skipped because h1/web/install
            h1/web/install failed
            h2/web/config ok
            h2/web/install ok
            h3/web/config cancelled (rollout of web stopped: 1 failed hosts)
            h3/web/install cancelled (rollout of web stopped: 1 failed hosts)
            h4/web/config cancelled (rollout of web stopped: 1 failed hosts)
            h4/web/install cancelled (rollout of web stopped: 1 failed hosts)
            h5/web/config cancelled (rollout of web stopped: 1 failed hosts)
            h5/web/install cancelled (rollout of web stopped: 1 failed hosts)
        "#]]
        .assert_eq(&run.summary());
    }

    #[test]
    fn rollout_within_budget_runs_every_batch() {
        let nodes = rollout_fleet(5, &BatchSize::Count(2), 1);
        let mut s = schedule(nodes, 32, 4, false);
        let run = drive(&mut s, script(&["h1/web/install"], &[]), first);
        expect![[r#"
            h1/web/config skipped because h1/web/install
            h1/web/install failed
            h2/web/config ok
            h2/web/install ok
            h3/web/config ok
            h3/web/install ok
            h4/web/config ok
            h4/web/install ok
            h5/web/config ok
            h5/web/install ok
        "#]]
        .assert_eq(&run.summary());
    }

    #[test]
    fn rollout_counts_failed_hosts_not_failed_instances() {
        let mut nodes = rollout_fleet(4, &BatchSize::Count(1), 1);
        // Two independent failures on h1 are one failed host; the one on h2 is the second.
        for n in &mut nodes {
            n.after.clear();
        }
        let mut s = schedule(nodes, 32, 4, false);
        let run = drive(
            &mut s,
            script(&["h1/web/install", "h1/web/config", "h2/web/config"], &[]),
            first,
        );
        expect![[r#"
            h1/web/config failed
            h1/web/install failed
            h2/web/config failed
            h2/web/install ok
            h3/web/config cancelled (rollout of web stopped: 2 failed hosts)
            h3/web/install cancelled (rollout of web stopped: 2 failed hosts)
            h4/web/config cancelled (rollout of web stopped: 2 failed hosts)
            h4/web/install cancelled (rollout of web stopped: 2 failed hosts)
        "#]]
        .assert_eq(&run.summary());
    }

    #[test]
    fn a_stopped_rollout_skips_what_depends_on_its_cancelled_batches() {
        let mut nodes = rollout_fleet(2, &BatchSize::Count(1), 0);
        nodes.push(node("h2/app/deploy", &["h2/web/config"]));
        nodes.push(node("h1/app/deploy", &["h1/web/install"]));
        let mut s = schedule(nodes, 32, 4, false);
        let run = drive(&mut s, script(&["h1/web/config"], &[]), first);
        expect![[r#"
            h1/app/deploy ok
            h1/web/config failed
            h1/web/install ok
            h2/app/deploy skipped because h2/web/config
            h2/web/config cancelled (rollout of web stopped: 1 failed hosts)
            h2/web/install cancelled (rollout of web stopped: 1 failed hosts)
        "#]]
        .assert_eq(&run.summary());
    }

    #[test]
    fn cancel_pending_cancels_waiting_and_ready_but_not_running() {
        let mut s = schedule(
            vec![
                node("a/w/one", &[]),
                node("a/w/two", &[]),
                node("a/w/three", &["a/w/one"]),
            ],
            1,
            1,
            false,
        );
        assert_eq!(started(&mut s), ["a/w/one"]);
        let interrupted = Settled::Cancelled {
            reason: CancelReason::Interrupted,
        };
        assert_eq!(
            s.cancel_pending(),
            [
                (id("a/w/two"), interrupted.clone()),
                (id("a/w/three"), interrupted)
            ]
        );
        assert_eq!(s.running(), 1);
        assert!(!s.is_done());
        assert!(
            started(&mut s).is_empty(),
            "nothing new starts after Ctrl-C"
        );
        assert!(finish_ok(&mut s, "a/w/one").is_empty());
        assert!(s.is_done());
        assert!(s.cancel_pending().is_empty());
    }

    #[test]
    fn unknown_ids_in_after_count_as_satisfied() {
        let mut s = schedule(vec![node("a/w/one", &["z/w/elsewhere"])], 1, 1, false);
        assert_eq!(started(&mut s), ["a/w/one"]);
    }

    #[test]
    fn finish_of_an_unknown_or_not_running_id_is_a_no_op() {
        let mut s = schedule(
            vec![node("a/w/one", &[]), node("a/w/two", &["a/w/one"])],
            1,
            1,
            false,
        );
        let failed = Finished {
            succeeded: false,
            changed: false,
        };
        assert!(s.finish(&id("z/w/unknown"), failed).is_empty());
        assert!(
            s.finish(&id("a/w/two"), failed).is_empty(),
            "waiting, not running"
        );
        assert!(
            s.finish(&id("a/w/one"), failed).is_empty(),
            "ready, not started yet"
        );
        assert_eq!(started(&mut s), ["a/w/one"]);
        assert_eq!(s.finish(&id("a/w/one"), failed).len(), 1);
        assert!(
            s.finish(&id("a/w/one"), failed).is_empty(),
            "already finished"
        );
        assert!(s.is_done());
    }

    #[test]
    fn a_duplicate_id_is_scheduled_once() {
        let mut s = schedule(
            vec![node("a/w/one", &[]), node("a/w/one", &[])],
            4,
            4,
            false,
        );
        let run = drive(&mut s, script(&[], &[]), first);
        assert_eq!(run.ended.len(), 1);
    }

    #[test]
    fn an_empty_schedule_is_done() {
        let mut s = schedule(Vec::new(), 1, 1, false);
        assert!(s.is_done());
        assert_eq!(s.take_ready(), (Vec::new(), Vec::new()));
    }

    #[test]
    fn a_cycle_is_cancelled_as_a_deadlock_instead_of_hanging() {
        let mut s = schedule(
            vec![
                node("a/w/free", &[]),
                node("a/w/one", &["a/w/two"]),
                node("a/w/two", &["a/w/one"]),
                node("a/w/three", &["a/w/three"]),
            ],
            4,
            4,
            false,
        );
        let run = drive(&mut s, script(&[], &[]), first);
        expect![[r#"
            a/w/free ok
            a/w/one cancelled (deadlock)
            a/w/three cancelled (deadlock)
            a/w/two cancelled (deadlock)
        "#]]
        .assert_eq(&run.summary());
    }

    /// Floods the queue: 1,000 hosts × 50 chained tasks, parallelism 32, per host 4.
    #[test]
    fn a_flood_of_fifty_thousand_instances_settles_without_deadlock() {
        let mut nodes = Vec::with_capacity(50_000);
        for h in 0..1_000 {
            for t in 0..50 {
                let after = if t == 0 {
                    Vec::new()
                } else {
                    vec![id(&format!("h{h}/w/t{}", t - 1))]
                };
                nodes.push(Node {
                    after,
                    ..node(&format!("h{h}/w/t{t}"), &[])
                });
            }
        }
        let mut s = schedule(nodes, 32, 4, false);
        let run = drive(&mut s, script(&["h7/w/t10"], &[]), shuffled(42));
        assert_eq!(run.ended.len(), 50_000);
        assert_eq!(run.started.len(), 50_000 - 39);
        let skipped = run
            .ended
            .values()
            .filter(|(_, e)| matches!(e, Ending::Settled(Settled::Skipped { .. })))
            .count();
        assert_eq!(skipped, 39);
        assert_eq!(run.max_running, 32);
        assert_eq!(run.max_per_host, 1, "a chain runs one at a time");
        assert!(s.is_done());
    }

    /// Floods the per-host queues: 5 hosts × 2,000 independent tasks.
    #[test]
    fn a_flood_on_few_hosts_is_held_to_the_per_host_limit() {
        let nodes: Vec<Node> = (0..5)
            .flat_map(|h| (0..2_000).map(move |t| node(&format!("h{h}/w/t{t}"), &[])))
            .collect();
        let mut s = schedule(nodes, 32, 4, false);
        let run = drive(&mut s, script(&[], &[]), shuffled(3));
        assert_eq!(run.ended.len(), 10_000);
        assert_eq!(run.max_per_host, 4);
        assert_eq!(run.max_running, 20);
        assert_eq!(
            run.start_order().first().map(String::as_str),
            Some("h0/w/t0")
        );
    }

    fn hosts(names: &[&str]) -> Vec<HostName> {
        names.iter().map(|n| HostName::parse(n).unwrap()).collect()
    }

    fn sizes(n_hosts: usize, batch: &BatchSize) -> Vec<usize> {
        let names: Vec<String> = (0..n_hosts).map(|n| format!("h{n}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        rollout_batches(&hosts(&names), batch)
            .iter()
            .map(Vec::len)
            .collect()
    }

    fn percent(p: &str) -> BatchSize {
        BatchSize::Percent(p.to_owned())
    }

    #[test]
    fn rollout_batches_by_count() {
        assert_eq!(
            rollout_batches(&hosts(&["a", "b", "c"]), &BatchSize::Count(2)),
            [hosts(&["a", "b"]), hosts(&["c"])]
        );
        assert_eq!(sizes(4, &BatchSize::Count(1)), [1, 1, 1, 1]);
        assert_eq!(sizes(4, &BatchSize::Count(10)), [4]);
        assert_eq!(sizes(3, &BatchSize::Count(0)), [1, 1, 1], "0 is read as 1");
        assert!(sizes(0, &BatchSize::Count(2)).is_empty());
    }

    #[test]
    fn rollout_batches_by_percentage_round_up() {
        assert_eq!(sizes(10, &percent("25%")), [3, 3, 3, 1]);
        assert_eq!(sizes(4, &percent("25%")), [1, 1, 1, 1]);
        assert_eq!(sizes(10, &percent("100%")), [10]);
        assert_eq!(sizes(10, &percent("1%")), [1; 10], "at least one host");
        assert_eq!(sizes(3, &percent("50%")), [2, 1]);
        assert!(sizes(0, &percent("50%")).is_empty());
    }

    #[test]
    fn rollout_batches_read_a_bad_percentage_carefully() {
        assert_eq!(sizes(3, &percent("half")), [1, 1, 1]);
        assert_eq!(sizes(3, &percent("0%")), [1, 1, 1]);
        assert_eq!(sizes(3, &percent("250%")), [3]);
    }

    /// One random instance: its host, earlier instances it may come after, what happens when
    /// it runs (0 fails, 1 succeeds without change, else changes), and whether it is triggered.
    type Spec = (usize, Vec<prop::sample::Index>, u8, bool);

    /// `resources` gives each instance (by position) a resource or none.
    fn random_nodes(specs: &[Spec], rollout: Option<u32>, resources: &[Option<u8>]) -> Vec<Node> {
        let mut nodes: Vec<Node> = Vec::new();
        for (i, (host, deps, _, trigger)) in specs.iter().enumerate() {
            let mut after: Vec<InstanceId> = Vec::new();
            for d in deps.iter().filter(|_| i > 0).map(|d| d.index(i)) {
                let dep = &nodes[d];
                // With rollouts, edges never point to a later batch, as in a real plan
                // (batches follow host names on every workflow).
                if rollout.is_none() || specs[d].0 <= *host {
                    after.push(dep.id.clone());
                }
            }
            let workflow = if i % 2 == 0 { "even" } else { "odd" };
            let slot = rollout
                .filter(|_| i % 2 == 0)
                .map(|max_failures| RolloutSlot {
                    workflow: WorkflowName::parse(workflow).unwrap(),
                    batch: *host,
                    max_failures,
                });
            nodes.push(Node {
                id: id(&format!("h{host}/{workflow}/t{i}")),
                only_if_changed: (*trigger && !after.is_empty()).then(|| after.clone()),
                after,
                rollout: slot,
                resource: resources
                    .get(i)
                    .copied()
                    .flatten()
                    .map(|r| format!("/r{r}")),
            });
        }
        nodes
    }

    fn check_run(nodes: &[Node], run: &Run, limits: Limits) -> Result<(), TestCaseError> {
        prop_assert_eq!(run.ended.len(), nodes.len());
        prop_assert!(run.max_running <= limits.parallelism.max(1));
        prop_assert!(run.max_per_host <= limits.per_host.max(1));
        check_turns(nodes, run)?;
        for n in nodes {
            let (end, ending) = &run.ended[&n.id];
            if let Some(&start) = run.started.get(&n.id) {
                prop_assert!(matches!(ending, Ending::Ran(_)));
                for a in &n.after {
                    let (a_end, a_ending) = &run.ended[a];
                    prop_assert!(
                        *a_end < start && a_ending.is_success(),
                        "{} before {a}",
                        n.id
                    );
                }
                if let Some(sources) = &n.only_if_changed {
                    prop_assert!(
                        sources.iter().any(|s| run.ended[s].1.is_change()),
                        "{} ran though no source changed",
                        n.id
                    );
                }
                if let Some(slot) = &n.rollout {
                    for m in nodes.iter().filter(|m| {
                        m.rollout
                            .as_ref()
                            .is_some_and(|r| r.workflow == slot.workflow && r.batch < slot.batch)
                    }) {
                        prop_assert!(
                            run.ended[&m.id].0 < start,
                            "{} started before {} settled",
                            n.id,
                            m.id
                        );
                    }
                }
            } else {
                prop_assert!(matches!(ending, Ending::Settled(_)));
            }
            match ending {
                Ending::Settled(Settled::Skipped { because }) => {
                    let root = &run.ended[because].1;
                    prop_assert!(root.is_root_cause(), "{} skipped because of {root:?}", n.id);
                    prop_assert!(n.after.iter().any(|a| !run.ended[a].1.is_success()));
                    prop_assert!(run.ended[because].0 < *end);
                }
                Ending::Settled(Settled::NotTriggered) => {
                    let sources = n.only_if_changed.as_ref().unwrap();
                    prop_assert!(
                        !sources.iter().any(|s| run.ended[s].1.is_change()),
                        "{} not triggered though a source changed",
                        n.id
                    );
                }
                Ending::Settled(Settled::Cancelled { reason }) => {
                    prop_assert_ne!(reason, &CancelReason::Deadlock);
                }
                Ending::Ran(_) => {}
            }
        }
        Ok(())
    }

    /// Instances of a host that share a resource start only once every one given before
    /// them has ended, whatever its outcome.
    fn check_turns(nodes: &[Node], run: &Run) -> Result<(), TestCaseError> {
        for (k, n) in nodes.iter().enumerate() {
            let (Some(resource), Some(&start)) = (&n.resource, run.started.get(&n.id)) else {
                continue;
            };
            for m in nodes.iter().take(k) {
                if m.id.host == n.id.host && m.resource.as_ref() == Some(resource) {
                    prop_assert!(
                        run.ended[&m.id].0 < start,
                        "{} started before {} (same resource) ended",
                        n.id,
                        m.id
                    );
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Random DAGs, outcomes, limits and finish orders: limits hold, every instance
        /// settles exactly once, in an order that respects `after`, triggers and rollouts.
        #[test]
        fn limits_hold_and_every_instance_settles_exactly_once(
            specs in prop::collection::vec((0..4usize, prop::collection::vec(any::<prop::sample::Index>(), 0..3), 0..8u8, any::<bool>()), 1..40),
            parallelism in 0..6usize,
            per_host in 0..4usize,
            fail_fast in any::<bool>(),
            rollout in prop::option::of(0..3u32),
            resources in prop::collection::vec(prop::option::weighted(0.8, 0..2u8), 40),
            seed in any::<u64>(),
        ) {
            let nodes = random_nodes(&specs, rollout, &resources);
            let fates: BTreeMap<InstanceId, u8> = nodes.iter().zip(&specs).map(|(n, s)| (n.id.clone(), s.2)).collect();
            let limits = Limits { parallelism, per_host };
            let mut s = Schedule::new(nodes.clone(), limits, ScheduleOptions { fail_fast });
            let run = drive(&mut s, |id| Finished { succeeded: fates[id] != 0, changed: fates[id] > 1 }, shuffled(seed));
            check_run(&nodes, &run, limits)?;
            if !fail_fast && fates.values().all(|&f| f != 0) {
                prop_assert!(run.ended.values().all(|(_, e)| e.is_success()));
            }
        }
    }
}
