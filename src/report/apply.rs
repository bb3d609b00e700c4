//! The apply report: what a run did to every planned instance, as data (stored with the run,
//! written by `--report`) and as the console summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::instance::InstanceId;
use crate::plan::change::ChangeKind;
use crate::report::style::Style;
use crate::run::RunStatus;
use crate::state::{RunId, Timestamp};

/// Version of the report document; bumped when a field changes meaning.
pub const FORMAT_VERSION: u32 = 1;

/// How one instance ended in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum InstanceStatus {
    Changed,
    Unchanged,
    Removed,
    Failed,
    TimedOut,
    Cancelled,
    /// Not run because something it needs did not succeed.
    Skipped,
    /// Planned as a trigger, but no source changed in this run.
    NotTriggered,
    /// In a saved plan whose inputs changed since: refused.
    Stale,
}

impl InstanceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Changed => "changed",
            InstanceStatus::Unchanged => "unchanged",
            InstanceStatus::Removed => "removed",
            InstanceStatus::Failed => "failed",
            InstanceStatus::TimedOut => "timed out",
            InstanceStatus::Cancelled => "cancelled",
            InstanceStatus::Skipped => "skipped",
            InstanceStatus::NotTriggered => "not triggered",
            InstanceStatus::Stale => "stale",
        }
    }

    pub fn is_failure(self) -> bool {
        matches!(
            self,
            InstanceStatus::Failed | InstanceStatus::TimedOut | InstanceStatus::Stale
        )
    }
}

/// Where a running apply stands, for the progress bar: counts, and what runs on each host.
#[derive(Debug, Default)]
pub struct Progress {
    pub done: usize,
    pub failed: usize,
    /// The instance running on each host (the latest started there).
    pub running: BTreeMap<String, String>,
}

impl Progress {
    pub fn started(&mut self, id: &InstanceId) {
        self.running.insert(
            id.host.to_string(),
            format!("{}/{}", id.workflow, id.task_part()),
        );
    }

    pub fn ended(&mut self, id: &InstanceId, status: InstanceStatus) {
        self.done += 1;
        self.failed += usize::from(status.is_failure());
        if self
            .running
            .get(id.host.as_str())
            .is_some_and(|r| *r == format!("{}/{}", id.workflow, id.task_part()))
        {
            self.running.remove(id.host.as_str());
        }
    }

    /// One line: failures, then up to three hosts with what they run.
    pub fn message(&self) -> String {
        let mut parts = Vec::new();
        if self.failed > 0 {
            parts.push(format!("{} failed", self.failed));
        }
        let hosts: Vec<String> = self
            .running
            .iter()
            .take(3)
            .map(|(host, task)| format!("{host}: {task}"))
            .collect();
        if !hosts.is_empty() {
            let more = self.running.len().saturating_sub(hosts.len());
            let tail = if more > 0 {
                format!(" (+{more} hosts)")
            } else {
                String::new()
            };
            parts.push(format!("{}{tail}", hosts.join(", ")));
        }
        parts.join(" · ")
    }
}

/// One command as the report keeps it (output capped and masked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandReport {
    pub command: String,
    /// `exit 0`, `signal 9`, `timed out`, `cancelled`.
    pub ended: String,
    pub stdout: String,
    pub stderr: String,
}

/// What happened to one planned instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceReport {
    pub id: InstanceId,
    pub change: ChangeKind,
    pub status: InstanceStatus,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<CommandReport>,
    #[serde(default)]
    pub duration_ms: u64,
    /// Time between becoming ready and starting (waiting for a worker slot).
    #[serde(default)]
    pub queue_wait_ms: u64,
    /// Which of the `--parallelism` workers ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<usize>,
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyReport {
    pub format_version: u32,
    pub run: RunId,
    pub status: RunStatus,
    /// `cli` or `watch`.
    pub trigger: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub manifest_digest: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub duration_ms: u64,
    pub instances: Vec<InstanceReport>,
    /// What the transports opened.
    pub contacts: Contacts,
}

/// What a run opened on hosts; a no-op run opens nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Contacts {
    pub connections: u64,
    pub channels: u64,
    pub commands: u64,
    pub files_written: u64,
    pub files_read: u64,
}

impl Contacts {
    /// What was opened since `before` (transports outlive a run).
    #[must_use]
    pub fn since(&self, before: &Contacts) -> Contacts {
        Contacts {
            connections: self.connections.saturating_sub(before.connections),
            channels: self.channels.saturating_sub(before.channels),
            commands: self.commands.saturating_sub(before.commands),
            files_written: self.files_written.saturating_sub(before.files_written),
            files_read: self.files_read.saturating_sub(before.files_read),
        }
    }
}

impl ApplyReport {
    pub fn count(&self, status: InstanceStatus) -> usize {
        self.instances.iter().filter(|i| i.status == status).count()
    }

    pub fn has_failures(&self) -> bool {
        self.instances.iter().any(|i| i.status.is_failure())
    }
}

/// "Apply complete: 3 changed, 1 failed, 2 skipped, 0 removed in 4.2s", then a line per host.
pub fn summary(report: &ApplyReport, style: Style) -> String {
    let secs = Duration::from_ms(report.duration_ms);
    let failed = report.count(InstanceStatus::Failed)
        + report.count(InstanceStatus::TimedOut)
        + report.count(InstanceStatus::Stale);
    let word = match report.status {
        RunStatus::Succeeded => style.success("Apply complete"),
        RunStatus::Cancelled | RunStatus::Interrupted => style.warning("Apply stopped"),
        RunStatus::Failed | RunStatus::Pending | RunStatus::Running => style.error("Apply failed"),
    };
    let mut out = format!(
        "{word}: {} changed, {} unchanged, {failed} failed, {} skipped, {} removed in {secs}.\n",
        report.count(InstanceStatus::Changed),
        report.count(InstanceStatus::Unchanged) + report.count(InstanceStatus::NotTriggered),
        report.count(InstanceStatus::Skipped) + report.count(InstanceStatus::Cancelled),
        report.count(InstanceStatus::Removed),
    );
    let mut hosts: BTreeMap<&str, BTreeMap<InstanceStatus, usize>> = BTreeMap::new();
    for instance in &report.instances {
        *hosts
            .entry(instance.id.host.as_str())
            .or_default()
            .entry(instance.status)
            .or_default() += 1;
    }
    for (host, counts) in &hosts {
        let parts: Vec<String> = counts
            .iter()
            .map(|(s, n)| format!("{n} {}", s.as_str()))
            .collect();
        let _ = writeln!(out, "  {host}: {}", parts.join(", "));
    }
    for instance in report.instances.iter().filter(|i| i.status.is_failure()) {
        let _ = writeln!(
            out,
            "  {} {}: {}",
            style.error("✗"),
            instance.id,
            crate::report::style::printable(instance.error.as_deref().unwrap_or("failed"))
        );
    }
    out
}

/// Milliseconds shown as seconds with one decimal.
struct Duration(u64);

impl Duration {
    fn from_ms(ms: u64) -> Duration {
        Duration(ms)
    }
}

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}s", self.0 / 1000, (self.0 % 1000) / 100)
    }
}

#[cfg(test)]
mod progress_tests {
    use super::*;

    #[test]
    fn progress_names_failures_and_what_runs_on_a_few_hosts() {
        let mut progress = Progress::default();
        let id = |s: &str| InstanceId::parse(s).unwrap();
        for host in ["a", "b", "c", "d"] {
            progress.started(&id(&format!("{host}/w/t")));
        }
        progress.ended(&id("d/w/t"), InstanceStatus::Failed);
        assert_eq!(progress.message(), "1 failed · a: w/t, b: w/t, c: w/t");
        progress.started(&id("e/w/u"));
        assert_eq!(
            progress.message(),
            "1 failed · a: w/t, b: w/t, c: w/t (+1 hosts)"
        );
        progress.ended(&id("a/w/t"), InstanceStatus::Changed);
        assert_eq!(progress.done, 2);
    }
}
