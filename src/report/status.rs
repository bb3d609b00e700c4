//! `drover status`: per host, how its instances stand against the manifests and the record
//! (converged, drifted, failed, pending, to remove), the last run that touched it, and what
//! the last drift check found there.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::drift::DriftReport;
use crate::model::meta::HostName;
use crate::resolve::ResolvedInstance;
use crate::run::{RunRecord, RunStatus};
use crate::state::{Outcome, Recorded, Timestamp};

/// Version of the JSON status; bumped when a field changes meaning.
pub const FORMAT_VERSION: u32 = 1;

/// One host's standing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostStatus {
    pub host: String,
    /// Applied with the current spec, last attempt succeeded, no drift recorded.
    pub converged: usize,
    /// Converged by the record, but the last drift check found the host differs.
    pub drifted: usize,
    /// The last attempt did not succeed.
    pub failed: usize,
    /// New, edited, or owed a triggered run: the next apply runs them.
    pub pending: usize,
    /// Recorded but no longer in the manifests: the next apply removes them.
    pub to_remove: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_drift_check: Option<LastDriftCheck>,
}

/// The newest run that recorded an instance of the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastRun {
    pub run: u64,
    pub at: Timestamp,
    pub status: RunStatus,
}

/// What the newest drift check found on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastDriftCheck {
    pub at: Timestamp,
    pub probed: usize,
    pub drifted: usize,
    /// Probed instances that check could not judge.
    pub unknown: usize,
    /// The `--target`s it was limited to; empty: all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every host of the manifests (and every host the record still has), by name.
pub fn compute(
    desired: &[ResolvedInstance],
    hosts: &[HostName],
    recorded: &Recorded,
    runs: &[RunRecord],
    drift: Option<&DriftReport>,
) -> Vec<HostStatus> {
    let mut out: BTreeMap<String, HostStatus> = hosts
        .iter()
        .map(|h| {
            let name = h.to_string();
            let status = HostStatus {
                host: name.clone(),
                ..HostStatus::default()
            };
            (name, status)
        })
        .collect();
    let mut newest_run: BTreeMap<String, u64> = BTreeMap::new();
    for instance in desired {
        let host = instance.id.host.to_string();
        let entry = out.entry(host.clone()).or_insert_with(|| HostStatus {
            host: host.clone(),
            ..HostStatus::default()
        });
        let record = recorded.instances.get(&instance.id);
        match record {
            Some(r) if r.outcome != Outcome::Succeeded => entry.failed += 1,
            Some(r)
                if r.spec_hash == instance.spec_hash
                    && !recorded.pending_triggers.contains_key(&instance.id) =>
            {
                if recorded.drift.contains_key(&instance.id) {
                    entry.drifted += 1;
                } else {
                    entry.converged += 1;
                }
            }
            Some(_) | None => entry.pending += 1,
        }
        if let Some(run) = record.and_then(|r| r.run) {
            let newest = newest_run.entry(host).or_default();
            *newest = (*newest).max(run.0);
        }
    }
    let desired_ids: std::collections::BTreeSet<_> = desired.iter().map(|i| &i.id).collect();
    for (id, record) in &recorded.instances {
        if desired_ids.contains(id) {
            continue;
        }
        let host = id.host.to_string();
        out.entry(host.clone())
            .or_insert_with(|| HostStatus {
                host: host.clone(),
                ..HostStatus::default()
            })
            .to_remove += 1;
        if let Some(run) = record.run {
            let newest = newest_run.entry(host).or_default();
            *newest = (*newest).max(run.0);
        }
    }
    for (host, status) in &mut out {
        status.last_run = newest_run.get(host).and_then(|id| {
            let run = runs.iter().find(|r| r.id.0 == *id)?;
            Some(LastRun {
                run: *id,
                at: run.finished_at.unwrap_or(run.started_at),
                status: run.status,
            })
        });
        status.last_drift_check = drift.and_then(|report| {
            let probe = report.hosts.iter().find(|h| h.host.as_str() == host)?;
            Some(LastDriftCheck {
                at: report.checked_at,
                probed: probe.probed,
                drifted: probe.drifted,
                unknown: probe.unknown,
                targets: report.targets.clone(),
                error: probe.error.clone(),
            })
        });
    }
    out.into_values().collect()
}

/// A table for a terminal.
pub fn text(hosts: &[HostStatus], drift: Option<&DriftReport>) -> String {
    let mut out = format!(
        "{:<24} {:>9} {:>7} {:>6} {:>7} {:>9}  {:<32}  LAST DRIFT CHECK\n",
        "HOST", "CONVERGED", "DRIFTED", "FAILED", "PENDING", "TO REMOVE", "LAST RUN"
    );
    for host in hosts {
        let run = host.last_run.as_ref().map_or_else(
            || "never".to_owned(),
            |r| format!("{} {} {}", r.run, r.status.as_str(), r.at),
        );
        let check = host.last_drift_check.as_ref().map_or_else(
            || "not probed".to_owned(),
            |c| match &c.error {
                Some(error) => format!("{}: {}", c.at, crate::report::style::printable(error)),
                None if c.unknown > 0 => format!(
                    "{}: {} of {} drifted, {} unknown",
                    c.at, c.drifted, c.probed, c.unknown
                ),
                None => format!("{}: {} of {} drifted", c.at, c.drifted, c.probed),
            },
        );
        let _ = writeln!(
            out,
            "{:<24} {:>9} {:>7} {:>6} {:>7} {:>9}  {:<32}  {}",
            crate::report::style::printable(&host.host),
            host.converged,
            host.drifted,
            host.failed,
            host.pending,
            host.to_remove,
            run,
            check
        );
    }
    let _ = writeln!(
        out,
        "\n{}",
        match drift {
            Some(report) => format!(
                "DRIFTED counts the findings recorded for each instance since its last apply; the last check ran at {}{}. `drover drift` probes again.",
                report.checked_at,
                if report.targets.is_empty() {
                    String::new()
                } else {
                    format!(" (of {} only)", report.targets.join(", "))
                }
            ),
            None => "No drift check recorded yet: `drover drift` probes the hosts.".to_owned(),
        }
    );
    out
}

/// The status as versioned JSON.
pub fn json(hosts: &[HostStatus], drift: Option<&DriftReport>) -> String {
    let doc = serde_json::json!({
        "formatVersion": FORMAT_VERSION,
        "lastDriftCheck": drift.map(|d| d.checked_at),
        "hosts": hosts,
    });
    let mut text = serde_json::to_string_pretty(&doc)
        .unwrap_or_else(|e| format!("{{\"error\": \"the status could not be serialised: {e}\"}}"));
    text.push('\n');
    text
}
