//! Runs and their events: the append-only history of what drover did, as plain data.
//!
//! The store persists them; `history` and `show` render them. A run's status only moves
//! forward: pending → running → succeeded | failed | cancelled | interrupted.

use serde::{Deserialize, Serialize};

use crate::instance::InstanceId;
use crate::state::{Outcome, RunId, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RunStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// The process ended without finishing the run (killed, power loss).
    Interrupted,
}

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Pending | RunStatus::Running)
    }

    /// Whether a run in `self` may move to `next`: only forward, and never out of an end.
    pub fn may_become(self, next: RunStatus) -> bool {
        match self {
            RunStatus::Pending => next != RunStatus::Pending,
            RunStatus::Running => next.is_terminal(),
            RunStatus::Succeeded
            | RunStatus::Failed
            | RunStatus::Cancelled
            | RunStatus::Interrupted => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// The git commit a run's manifests came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Commit {
    pub sha: String,
    pub author: String,
    pub subject: String,
}

/// One run: an apply (or, later, a drift check) and what started it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub id: RunId,
    pub status: RunStatus,
    pub started_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// `cli` or `watch`.
    pub trigger: String,
    /// The command line, for people reading the history.
    pub command: String,
    /// The git commit of the manifests, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Its author (`Name <email>`) and subject line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_subject: Option<String>,
    /// A digest of the manifests the run applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    /// Instances planned, and how many ended each way.
    #[serde(default)]
    pub planned: usize,
    #[serde(default)]
    pub changed: usize,
    #[serde(default)]
    pub failed: usize,
    #[serde(default)]
    pub skipped: usize,
}

/// One thing that happened in a run, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub at: Timestamp,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum EventKind {
    RunStarted,
    InstanceStarted {
        id: InstanceId,
    },
    InstanceFinished {
        id: InstanceId,
        outcome: Outcome,
        changed: bool,
    },
    InstanceSkipped {
        id: InstanceId,
        because: InstanceId,
    },
    RunFinished {
        status: RunStatus,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_only_moves_forward() {
        assert!(RunStatus::Pending.may_become(RunStatus::Running));
        assert!(RunStatus::Running.may_become(RunStatus::Succeeded));
        assert!(!RunStatus::Running.may_become(RunStatus::Pending));
        assert!(!RunStatus::Succeeded.may_become(RunStatus::Failed));
        assert!(!RunStatus::Interrupted.may_become(RunStatus::Running));
    }
}
