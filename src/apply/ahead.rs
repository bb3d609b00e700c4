//! Sending a host's chain of tasks ahead of their results.
//!
//! When instance B needs only A (or waits only for A's turn on a path they share, decision
//! 0021), on the same host, and A is one operation whose exit status says whether it
//! succeeded (`task::is_one_operation`), B is started while A still runs: its first operation
//! goes into the same remote shell right behind A's, and the host runs it only if A's exited
//! 0 (`transport::ssh::chain`). The host then works through the chain back to back; drover
//! records the outcomes as they come back, in chain order.
//!
//! What still holds: an outcome is durable before the outcome of anything sent behind it is
//! recorded or reported (`Order`), and before anything that depends on it is started in the
//! ordinary way. A task sent behind one that failed is skipped by the host and comes back
//! `withdrawn`: it is taken back (`Schedule::withdraw`) as if it had never started, so it is
//! skipped, or queued again if its predecessor succeeded on a retry. Sending ahead counts
//! against `--per-host` and `--parallelism` like any running task, so at most that many
//! tasks per host are in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{Done, Driver, Error, HostTransport, Request, Shutdown};
use crate::instance::InstanceId;
use crate::plan::change::ChangeKind;
use crate::resolve::ResolvedInstance;
use crate::schedule::Schedule;
use crate::task::{self, Applied, Failure};
use crate::transport::ErrorKind;
use crate::transport::ssh::SshTransport;
use crate::transport::ssh::chain::ChainLink;

/// The driver's record of chains in flight.
#[derive(Default)]
pub(super) struct Ahead {
    /// Running instances that go through a chain's shell: their chain and link.
    links: BTreeMap<InstanceId, (usize, Arc<ChainLink>)>,
    /// Each chain's running instances, in the order they were sent.
    chains: BTreeMap<usize, Vec<InstanceId>>,
    /// Chains whose last instance is one operation: more may be sent behind it.
    open: BTreeSet<usize>,
    /// Each chain's host (its transport), to count a host's chains.
    hosts: BTreeMap<usize, Arc<SshTransport>>,
    next_chain: usize,
    /// Running instances sent behind another → that other one.
    behind: BTreeMap<InstanceId, InstanceId>,
    /// A result that came back before the result of the instance it was sent behind was
    /// recorded, by that instance.
    held: BTreeMap<InstanceId, Done>,
    /// Each running instance's "outcome queued for the store" signal, for what is sent
    /// behind it.
    durable: BTreeMap<InstanceId, watch::Receiver<bool>>,
}

/// Whether an attempt ended because the host skipped it (it was sent behind a failure).
pub(super) fn withdrawn(result: &Result<Applied, Failure>) -> bool {
    matches!(
        result,
        Err(Failure::Transport {
            kind: ErrorKind::Withdrawn,
            ..
        })
    )
}

/// Makes an attempt queue its outcome's write only after the one it was sent behind queued
/// its own, and tells the one sent behind it when it has. The store commits writes in the
/// order they are queued, so an outcome is never durable before the one it was sent behind.
pub(super) struct Order {
    before: Option<watch::Receiver<bool>>,
    queued: watch::Sender<bool>,
}

impl Order {
    pub(super) async fn record<F>(
        self,
        withdrawn: bool,
        persist: impl FnOnce() -> F,
    ) -> Result<(), Error>
    where
        F: Future<Output = Result<(), Error>>,
    {
        if let Some(mut before) = self.before {
            // An error means that attempt is gone (abandoned): nothing left to wait for.
            let _ = before.wait_for(|queued| *queued).await;
        }
        if withdrawn {
            self.queued.send_replace(true);
            return Ok(());
        }
        let committed = persist();
        self.queued.send_replace(true);
        committed.await
    }
}

impl Ahead {
    /// The chain link an instance about to start goes through: behind `behind`'s, or the
    /// start of a new chain when it is one operation over SSH; `None` otherwise.
    pub(super) fn link_for(
        &mut self,
        id: &InstanceId,
        behind: Option<&InstanceId>,
        transport: &HostTransport,
        instance: Option<&ResolvedInstance>,
        kind: ChangeKind,
    ) -> Option<Arc<ChainLink>> {
        let one_operation = instance.is_some_and(task::is_one_operation);
        let (chain, link) = match (behind, transport) {
            (Some(parent), _) => {
                let (chain, before) = self.links.get(parent)?;
                (*chain, before.behind())
            }
            (None, HostTransport::Ssh(ssh))
                if one_operation && kind != ChangeKind::Remove && self.room_for_chain(ssh) =>
            {
                self.next_chain += 1;
                self.hosts.insert(self.next_chain, ssh.clone());
                (self.next_chain, ChainLink::start(ssh.clone()))
            }
            (None, _) => return None,
        };
        self.links.insert(id.clone(), (chain, link.clone()));
        self.chains.entry(chain).or_default().push(id.clone());
        if one_operation {
            self.open.insert(chain);
        } else {
            self.open.remove(&chain);
        }
        if let Some(parent) = behind {
            self.behind.insert(id.clone(), parent.clone());
        }
        Some(link)
    }

    /// Whether the host may have one more chain. A chain holds one of the host's channels
    /// for as long as it lives, and a task in it whose operation must go outside the shell
    /// waits for another channel; so chains leave at least one channel to the operations that
    /// hold theirs only while they run, or they could wait on each other for ever.
    fn room_for_chain(&self, ssh: &Arc<SshTransport>) -> bool {
        let chains = self.hosts.values().filter(|h| Arc::ptr_eq(h, ssh)).count();
        chains + 1 < ssh.target().max_channels
    }

    /// The recording order of an instance about to start.
    pub(super) fn order(&mut self, id: &InstanceId, behind: Option<&InstanceId>) -> Order {
        let (queued, watch) = watch::channel(false);
        let before = behind.and_then(|p| self.durable.get(p).cloned());
        if self.links.contains_key(id) {
            self.durable.insert(id.clone(), watch);
        }
        Order { before, queued }
    }

    /// Whether `done` must wait for the result of the instance it was sent behind.
    fn must_wait(&self, done: &Done) -> Option<InstanceId> {
        self.behind
            .get(&done.id)
            .filter(|parent| self.links.contains_key(*parent))
            .cloned()
    }

    /// Forgets a concluded instance.
    fn forget(&mut self, id: &InstanceId) {
        if let Some((chain, link)) = self.links.remove(id) {
            // Normally said by its attempt already; an abandoned attempt never says it.
            link.end_if_open();
            let members = self.chains.entry(chain).or_default();
            members.retain(|m| m != id);
            if members.is_empty() {
                self.chains.remove(&chain);
                self.open.remove(&chain);
                self.hosts.remove(&chain);
            }
        }
        self.durable.remove(id);
        self.behind.remove(id);
    }
}

impl Driver {
    /// Starts, behind every chain's last sent instance, what may be sent ahead of it.
    pub(super) async fn send_ahead(
        &mut self,
        request: &Request<'_>,
        shutdown: &Shutdown,
        schedule: &mut Schedule,
        running: &mut JoinSet<Done>,
    ) -> Result<(), Error> {
        let open: Vec<usize> = self.ahead.open.iter().copied().collect();
        for chain in open {
            while self.ahead.open.contains(&chain) {
                let Some(members) = self.ahead.chains.get(&chain) else {
                    break;
                };
                let Some(last) = members.last().cloned() else {
                    break;
                };
                let Some(next) = schedule.speculate(members, |id| self.may_send_ahead(request, id))
                else {
                    break;
                };
                tracing::debug!(id = %next, behind = %last, "sent ahead");
                self.launch(request, shutdown, running, next, Some(last))
                    .await?;
            }
        }
        Ok(())
    }

    /// Whether an instance may be started before what it needs has ended: it runs on the
    /// host (not a removal or a refresh, not stale), and no trigger decides how it runs or is
    /// fired by it.
    fn may_send_ahead(&self, request: &Request<'_>, id: &InstanceId) -> bool {
        let runs = self.changes.get(id).is_some_and(|c| {
            !matches!(
                c.kind,
                ChangeKind::Remove | ChangeKind::Refresh | ChangeKind::MayChange
            )
        });
        // One that fires triggers arms them durably before it starts; taken back unrun, it
        // would leave them armed.
        let fires = self.triggers.get(id).is_some_and(|t| !t.is_empty());
        runs && !fires
            && !request.stale.contains_key(id)
            && self
                .instances
                .get(id)
                .is_some_and(|i| i.triggered_by.is_empty())
    }

    /// Acts on a finished attempt: records it (or, withdrawn, takes it back) once what it
    /// was sent behind has been; then does the same for what was waiting on it.
    pub(super) async fn conclude(
        &mut self,
        done: Done,
        schedule: &mut Schedule,
    ) -> Result<(), Error> {
        let mut next = Some(done);
        while let Some(done) = next.take() {
            if let Some(parent) = self.ahead.must_wait(&done) {
                self.ahead.held.insert(parent, done);
                return Ok(());
            }
            let id = done.id.clone();
            self.ahead.forget(&id);
            if done.withdrawn {
                if let Some(slot) = self.workers.get_mut(done.worker) {
                    *slot = false;
                }
                // Its placeholder report goes: it is reported when it really ends.
                self.reports.remove(&id);
                let settled = schedule.withdraw(&id);
                self.settle(settled).await?;
            } else {
                let (id, finished) = self.record(done).await?;
                let settled = schedule.finish(&id, finished);
                self.settle(settled).await?;
            }
            next = self.ahead.held.remove(&id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::ssh::SshTarget;

    fn host(name: &str, max_channels: usize) -> Arc<SshTransport> {
        SshTransport::new(SshTarget {
            host: name.to_owned(),
            address: "127.0.0.1".to_owned(),
            port: 22,
            user: "u".to_owned(),
            identity: None,
            known_hosts: "/nonexistent".into(),
            accept_new: false,
            connect_timeout: std::time::Duration::from_secs(1),
            max_channels,
            keepalive: std::time::Duration::from_secs(15),
            jump: None,
        })
    }

    #[test]
    fn a_hosts_chains_leave_one_channel_to_operations_outside_them() {
        let (a, b) = (host("a", 3), host("b", 1));
        let mut ahead = Ahead::default();
        assert!(ahead.room_for_chain(&a));
        ahead.hosts.insert(1, a.clone());
        assert!(ahead.room_for_chain(&a));
        ahead.hosts.insert(2, a.clone());
        // Two chains hold two of a's three channels: a third could starve the operations
        // the chains' tasks make outside their shells.
        assert!(!ahead.room_for_chain(&a));
        // Another host counts its own; with one channel, it never chains.
        assert!(!ahead.room_for_chain(&b));
        ahead.hosts.remove(&1);
        assert!(ahead.room_for_chain(&a));
    }
}
