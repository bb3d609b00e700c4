//! Host facts for a round: which hosts need them, the cache in the state file, and the
//! facts probe (one `sh -s` command per host, hosts in parallel) for the hosts that have
//! none cached, or for all of them with `--refresh` (decision 0018).
//!
//! Only hosts with an instance whose template or `when` uses facts are looked at, so a
//! fleet that uses none never reads the cache, and cached facts mean no host is contacted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::apply::HostTransport;
use crate::diagnostic::Diagnostic;
use crate::evaluate::{Evaluation, with_facts};
use crate::facts::{self, Facts, Gathered};
use crate::model::meta::HostName;
use crate::transport::CounterSnapshot;

use super::drift::{Limits, run_script};
use super::{Error, Result, Session};

/// Longest the facts probe may take on one host.
pub const FACTS_DEADLINE: Duration = Duration::from_secs(60);

/// What settling a round's facts did.
#[derive(Debug, Clone, Default)]
pub struct FactsRound {
    /// Hosts whose facts were gathered now (one command each).
    pub gathered: Vec<HostName>,
    /// Hosts whose recorded facts were used.
    pub cached: Vec<HostName>,
    /// Hosts whose facts are not known here (a snapshot without them): what uses them is
    /// planned as "may change".
    pub unknown: Vec<HostName>,
    /// Hosts the probe failed on, whose recorded facts were used instead, with why.
    pub stale: Vec<(HostName, String)>,
    /// Hosts the probe failed on with no recorded facts, in a plan that applies nothing:
    /// their facts are not known (also in `unknown`), with why.
    pub unreachable: Vec<(HostName, String)>,
    /// What the transports did for the probe.
    pub contacts: CounterSnapshot,
    /// Problems that resolving with the real facts found (see `evaluate::with_facts`).
    pub diagnostics: Vec<Diagnostic>,
}

impl Session {
    /// Puts the hosts' facts into a valid evaluation: recorded ones, gathered ones for the
    /// hosts that need facts and have none recorded (all that need them with `refresh`),
    /// or, planning from a snapshot, the snapshot's. With `record` (the caller holds the
    /// writer lock) gathered facts are recorded at once; a plan without the lock uses them
    /// for this round only, and never creates a state file. A host whose probe fails falls
    /// back on its recorded facts; without any, it is an error for a round that may apply
    /// (`record`), and for a plain plan its facts are not known: what uses them "may change",
    /// as a plan in CI that cannot reach every host expects.
    pub fn settle_facts(
        &mut self,
        dir: &Path,
        evaluation: &mut Evaluation,
        refresh: bool,
        record: bool,
    ) -> Result<FactsRound> {
        let mut round = FactsRound::default();
        let wanted = match (&evaluation.resolved, evaluation.facts_settled) {
            (Some(resolved), false) => resolved.facts_wanted.clone(),
            (None, _) | (Some(_), true) => return Ok(round),
        };
        if wanted.is_empty() {
            evaluation.facts_settled = true;
            return Ok(round);
        }
        let recorded = match &self.snapshot {
            Some(snapshot) => snapshot.facts.clone(),
            None => self.store.facts()?,
        };
        let to_gather: Vec<HostName> = if self.snapshot.is_some() {
            Vec::new()
        } else {
            wanted
                .iter()
                .filter(|h| refresh || !recorded.contains_key(*h))
                .cloned()
                .collect()
        };
        let gathered = self.gather(dir, evaluation, &to_gather, record, &mut round)?;
        let mut known: BTreeMap<HostName, Facts> = recorded
            .into_iter()
            .filter(|(host, _)| !gathered.contains_key(host))
            .map(|(host, g)| (host, g.facts))
            .collect();
        for host in &wanted {
            if gathered.contains_key(host) {
                round.gathered.push(host.clone());
            } else if known.contains_key(host) {
                round.cached.push(host.clone());
            } else {
                round.unknown.push(host.clone());
            }
        }
        known.extend(gathered.into_iter().map(|(host, g)| (host, g.facts)));
        tracing::info!(
            gathered = round.gathered.len(),
            cached = round.cached.len(),
            unknown = round.unknown.len(),
            commands = round.contacts.commands,
            "settled host facts"
        );
        round.diagnostics = with_facts(evaluation, known);
        Ok(round)
    }

    /// Runs the facts probe on `hosts` and records what it found; a host it failed on is
    /// an error unless it has recorded facts (then `round.stale` says so).
    fn gather(
        &mut self,
        dir: &Path,
        evaluation: &Evaluation,
        hosts: &[HostName],
        record: bool,
        round: &mut FactsRound,
    ) -> Result<BTreeMap<HostName, Gathered>> {
        let Some(desired) = evaluation.desired.as_ref().filter(|_| !hosts.is_empty()) else {
            return Ok(BTreeMap::new());
        };
        let transports =
            self.fleet
                .transports(desired, &self.settings.ssh, dir, self.settings.per_host);
        let picked: Vec<(HostName, Option<HostTransport>)> = hosts
            .iter()
            .map(|h| (h.clone(), transports.get(h).cloned()))
            .collect();
        let before = contacts(&picked);
        let force = self.shutdown.force.clone();
        let parallelism = self.settings.parallelism.max(1);
        let answers = self
            .runtime
            .block_on(probe_all(&picked, parallelism, &force));
        round.contacts = since(contacts(&picked), before);
        let now = crate::clock::now();
        let mut gathered = BTreeMap::new();
        let mut failed = Vec::new();
        for (host, answer) in answers {
            match answer {
                Ok(facts) => {
                    gathered.insert(host, Gathered::new(facts, now));
                }
                Err(why) => failed.push((host, why)),
            }
        }
        if record && !gathered.is_empty() {
            self.store.record_facts(&gathered)?;
        }
        let recorded = if failed.is_empty() {
            BTreeSet::new()
        } else {
            self.store.facts()?.into_keys().collect()
        };
        let (stale, lost): (Vec<_>, Vec<_>) =
            failed.into_iter().partition(|(h, _)| recorded.contains(h));
        round.stale = stale;
        if lost.is_empty() {
            Ok(gathered)
        } else if record {
            Err(Error::Facts { failures: lost })
        } else {
            round.unreachable = lost;
            Ok(gathered)
        }
    }
}

/// The counters of the distinct transports of `hosts` (local hosts share one).
fn contacts(hosts: &[(HostName, Option<HostTransport>)]) -> CounterSnapshot {
    let mut total = CounterSnapshot::default();
    let mut local_seen = false;
    for (_, transport) in hosts {
        let Some(transport) = transport else { continue };
        if matches!(transport, HostTransport::Local(_)) {
            if local_seen {
                continue;
            }
            local_seen = true;
        }
        if let Some(c) = transport.counters() {
            total.connections += c.connections;
            total.channels += c.channels;
            total.commands += c.commands;
            total.files_written += c.files_written;
            total.files_read += c.files_read;
        }
    }
    total
}

fn since(after: CounterSnapshot, before: CounterSnapshot) -> CounterSnapshot {
    CounterSnapshot {
        connections: after.connections.saturating_sub(before.connections),
        channels: after.channels.saturating_sub(before.channels),
        commands: after.commands.saturating_sub(before.commands),
        files_written: after.files_written.saturating_sub(before.files_written),
        files_read: after.files_read.saturating_sub(before.files_read),
    }
}

type Answer = std::result::Result<Facts, String>;

/// The facts probe on every host at once (at most `parallelism` at a time).
async fn probe_all(
    hosts: &[(HostName, Option<HostTransport>)],
    parallelism: usize,
    force: &CancellationToken,
) -> Vec<(HostName, Answer)> {
    let slots = Arc::new(tokio::sync::Semaphore::new(parallelism));
    let mut tasks = tokio::task::JoinSet::new();
    for (host, transport) in hosts {
        let (host, transport) = (host.clone(), transport.clone());
        let slots = Arc::clone(&slots);
        let force = force.clone();
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let answer = match transport {
                Some(transport) => probe(&host, &transport, &force).await,
                None => Err("the host is not in the manifests".to_owned()),
            };
            (host, answer)
        });
    }
    let mut out = Vec::with_capacity(hosts.len());
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(answer) => out.push(answer),
            // A panicked probe task is a bug; its host shows as missing below.
            Err(error) => tracing::error!(%error, "a facts probe stopped"),
        }
    }
    for (host, _) in hosts {
        if !out.iter().any(|(h, _)| h == host) {
            out.push((host.clone(), Err("the facts probe stopped".to_owned())));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// One host's facts: one command, its answer parsed.
async fn probe(host: &HostName, transport: &HostTransport, force: &CancellationToken) -> Answer {
    let nonce = crate::transport::nonce();
    let limits = Limits {
        deadline: FACTS_DEADLINE,
        answer: facts::ANSWER_LIMIT,
    };
    let output = run_script(transport, facts::script(&nonce), limits, force).await?;
    facts::parse(host, &nonce, &output.stdout.bytes).map_err(|error| {
        use crate::transport::ExitStatus;
        let status = match output.status {
            ExitStatus::Code { code: 0 } => String::new(),
            ExitStatus::Code { code } => format!(" (exit status {code})"),
            ExitStatus::Signal { signal } => format!(" (killed by signal {signal})"),
            ExitStatus::TimedOut => format!(" (it ran longer than {}s)", FACTS_DEADLINE.as_secs()),
            ExitStatus::Cancelled => " (cancelled)".to_owned(),
        };
        format!("{error}{status}")
    })
}
