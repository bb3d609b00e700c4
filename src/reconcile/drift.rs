//! Drift checks: probe the hosts (one script, one round trip each, in parallel), compare, and
//! record the report and each instance's finding in one transaction.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::apply::HostTransport;
use crate::drift::probe::{self, Seen};
use crate::drift::{
    self, DriftReport, FORMAT_VERSION, HostDrift, HostProbe, InstanceDrift, Status,
};
use crate::evaluate::Evaluation;
use crate::instance::InstanceId;
use crate::plan::target::Target;
use crate::secret::Redactor;
use crate::state::DriftFinding;
use crate::transport::{CommandLine, ExecOutput, ExecRequest, Transport};

use super::{Error, Result, Session};

/// Longest a whole host's probe may take; a `check` has its own, shorter, limit inside.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(300);
/// Bytes of a probe's answer read: room for the capped contents of many drifted files.
const ANSWER_LIMIT: usize = 32 * 1024 * 1024;

impl Session {
    /// Probes every converged instance of `evaluation` (or those `targets` name) and records
    /// what was found.
    pub fn drift_round(
        &mut self,
        dir: &Path,
        evaluation: &Evaluation,
        targets: &[Target],
    ) -> Result<DriftReport> {
        let (Some(resolved), Some(desired)) =
            (evaluation.resolved.as_ref(), evaluation.desired.as_ref())
        else {
            return Err(Error::Invalid);
        };
        if self.snapshot.is_some() {
            return Err(Error::ReadOnly);
        }
        let recorded = self.store.snapshot()?;
        let wanted = |id: &InstanceId| targets.is_empty() || targets.iter().any(|t| t.matches(id));
        let (probes, mut summary) = drift::select(&resolved.instances, &recorded, wanted);
        let transports =
            self.fleet
                .transports(desired, &self.settings.ssh, dir, self.settings.per_host);
        let force = self.shutdown.force.clone();
        let parallelism = self.settings.parallelism.max(1);
        let answers = self
            .runtime
            .block_on(probe_all(&probes, &transports, parallelism, &force));
        let mut hosts = Vec::new();
        let mut instances = Vec::new();
        let mut findings = Vec::new();
        for (probe, answer) in probes.iter().zip(answers) {
            let host = host_drift(
                probe,
                answer,
                &resolved.redactor,
                &mut instances,
                &mut findings,
            );
            hosts.push(host);
        }
        for instance in &instances {
            match instance.status {
                Status::Drifted => summary.drifted += 1,
                Status::Unknown => summary.unknown += 1,
                Status::InSync => {}
            }
        }
        summary.in_sync = summary.probed - summary.drifted - summary.unknown;
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        let report = DriftReport {
            format_version: FORMAT_VERSION,
            checked_at: crate::clock::now(),
            targets: targets.iter().map(ToString::to_string).collect(),
            summary,
            hosts,
            instances,
        };
        let findings: Vec<(InstanceId, Option<DriftFinding>)> = findings
            .into_iter()
            .map(|(id, summary)| {
                let finding = summary.map(|summary| DriftFinding {
                    summary,
                    found_at: report.checked_at,
                });
                (id, finding)
            })
            .collect();
        // Secrets never reach the state file: every text of the stored report is masked
        // (a path or a check's name may be rendered from one), not only what is printed.
        let stored = masked(&report.for_storage(), &resolved.redactor);
        self.store.record_drift_report(&stored, &findings)?;
        Ok(report)
    }
}

/// A host's answer: its output and how long it took, or why there was none.
struct Answered {
    result: std::result::Result<(String, ExecOutput), String>,
    duration: Duration,
}

async fn probe_all(
    probes: &[HostProbe<'_>],
    transports: &BTreeMap<crate::model::meta::HostName, HostTransport>,
    parallelism: usize,
    force: &CancellationToken,
) -> Vec<Answered> {
    let slots = Arc::new(tokio::sync::Semaphore::new(parallelism));
    let mut tasks = Vec::with_capacity(probes.len());
    for probe in probes {
        let nonce = crate::transport::nonce();
        let script = probe::script(&nonce, &probe.groups);
        let transport = transports.get(&probe.host).cloned();
        let slots = Arc::clone(&slots);
        let force = force.clone();
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            let started = Instant::now();
            let result = match transport {
                Some(transport) => run_script(&transport, script, Limits::PROBE, &force)
                    .await
                    .map(|out| (nonce, out)),
                None => Err("the host is not in the manifests".to_owned()),
            };
            Answered {
                result,
                duration: started.elapsed(),
            }
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.unwrap_or_else(|e| Answered {
            result: Err(format!("the probe stopped: {e}")),
            duration: Duration::ZERO,
        }));
    }
    out
}

/// How long a script may run and how much of its answer is read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) deadline: Duration,
    pub(super) answer: usize,
}

impl Limits {
    const PROBE: Limits = Limits {
        deadline: PROBE_DEADLINE,
        answer: ANSWER_LIMIT,
    };
}

/// Runs one script through `sh -s`: one command, whatever the number of instances (the
/// drift probe, the facts probe).
pub(super) async fn run_script(
    transport: &HostTransport,
    script: String,
    limits: Limits,
    force: &CancellationToken,
) -> std::result::Result<ExecOutput, String> {
    let request = ExecRequest {
        command: CommandLine::Argv(vec!["sh".to_owned(), "-s".to_owned()]),
        stdin: Some(script.into_bytes()),
        env: BTreeMap::new(),
        r#become: None,
        timeout: Some(limits.deadline),
        output: None,
        capture_limit: limits.answer,
    };
    let result = match transport {
        HostTransport::Local(t) => t.exec(request, force).await,
        HostTransport::Ssh(t) => t.exec(request, force).await,
        HostTransport::Chained(t) => t.exec(request, force).await,
        #[cfg(test)]
        HostTransport::Fake(t) => t.exec(request, force).await,
        HostTransport::Unreachable(reason) => return Err(reason.clone()),
    };
    result.map_err(|e| crate::transport::error_chain(&e))
}

/// Turns one host's answer into its line of the report, its drifted instances, and the
/// finding to record for each probed instance (`None`: in sync).
fn host_drift(
    probe: &HostProbe<'_>,
    answered: Answered,
    redactor: &Redactor,
    instances: &mut Vec<InstanceDrift>,
    findings: &mut Vec<(InstanceId, Option<String>)>,
) -> HostDrift {
    let mut host = HostDrift {
        host: probe.host.clone(),
        round_trips: 0,
        duration_ms: u64::try_from(answered.duration.as_millis()).unwrap_or(u64::MAX),
        probed: probe.instances.len(),
        drifted: 0,
        unknown: 0,
        error: None,
    };
    let answer = match answered.result {
        Ok((nonce, output)) => {
            host.round_trips = 1;
            let answer = probe::parse(&nonce, &output.stdout.bytes, &probe.groups);
            if !answer.done {
                let stderr = String::from_utf8_lossy(&output.stderr.bytes);
                let tail = stderr
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                host.error = Some(redactor.redact(&format!(
                    "the probe did not finish ({}){}",
                    describe_status(output.status),
                    if tail.is_empty() {
                        String::new()
                    } else {
                        format!(": {tail}")
                    }
                )));
            }
            answer
        }
        Err(why) => {
            host.error = Some(redactor.redact(&why));
            probe::Answer::default()
        }
    };
    let mut seen: Vec<Vec<&Seen>> = vec![Vec::new(); probe.instances.len()];
    for (look, owner) in probe.owner.iter().enumerate() {
        if let (Some(found), Some(slot)) = (answer.seen.get(&look), seen.get_mut(*owner)) {
            slot.push(found);
        }
    }
    let unreachable = Seen::Unknown(host.error.clone().unwrap_or_default());
    for (instance, seen) in probe.instances.iter().zip(seen) {
        let seen = if seen.is_empty() {
            vec![&unreachable]
        } else {
            seen
        };
        let (status, found, error) = drift::compare(instance, &seen, redactor);
        match status {
            Status::InSync => findings.push((instance.id.clone(), None)),
            Status::Drifted => {
                host.drifted += 1;
                let summary: Vec<String> = found.iter().map(drift::Finding::summary).collect();
                findings.push((
                    instance.id.clone(),
                    Some(redactor.redact(&summary.join("; "))),
                ));
            }
            // What could not be looked at keeps whatever was found before.
            Status::Unknown => host.unknown += 1,
        }
        if status != Status::InSync {
            instances.push(InstanceDrift {
                id: instance.id.clone(),
                host: instance.id.host.clone(),
                kind: instance.action.kind_name().to_owned(),
                policy: instance.drift,
                status,
                findings: found,
                error,
            });
        }
    }
    host
}

fn describe_status(status: crate::transport::ExitStatus) -> String {
    match status {
        crate::transport::ExitStatus::Code { code } => format!("exit status {code}"),
        crate::transport::ExitStatus::Signal { signal } => format!("killed by signal {signal}"),
        crate::transport::ExitStatus::TimedOut => {
            format!("it ran longer than {}s", PROBE_DEADLINE.as_secs())
        }
        crate::transport::ExitStatus::Cancelled => "cancelled".to_owned(),
    }
}

/// `report` with every string in it masked by `redactor`.
fn masked(report: &DriftReport, redactor: &crate::secret::Redactor) -> DriftReport {
    fn walk(value: &mut serde_json::Value, redactor: &crate::secret::Redactor) {
        use serde_json::Value;
        match value {
            Value::String(text) => *text = redactor.redact(text),
            Value::Array(items) => {
                for item in items {
                    walk(item, redactor);
                }
            }
            Value::Object(fields) => {
                for field in fields.values_mut() {
                    walk(field, redactor);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    // Were the round trip through JSON ever to fail, only the counts are kept.
    let counts_only = || DriftReport {
        hosts: Vec::new(),
        instances: Vec::new(),
        targets: Vec::new(),
        ..report.clone()
    };
    let Ok(mut value) = serde_json::to_value(report) else {
        return counts_only();
    };
    walk(&mut value, redactor);
    // Masking only replaces text inside strings, so the shape still decodes.
    serde_json::from_value(value).unwrap_or_else(|_| counts_only())
}
