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
    /// Whether the manifest directory differed from the commit (edits or untracked files);
    /// `None` when that could not be told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty: Option<bool>,
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
    /// The command line as typed, each word shell-quoted where needed and credentials
    /// masked, so that it can be pasted again.
    pub command: String,
    /// The user and the host that ran it (absent from runs recorded before they were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The git commit of the manifests, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Its author (`Name <email>`) and subject line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_subject: Option<String>,
    /// Whether the manifest directory differed from that commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty: Option<bool>,
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

impl RunRecord {
    /// `user@host`, or whichever of the two is known.
    pub fn who(&self) -> Option<String> {
        match (&self.user, &self.host) {
            (Some(user), Some(host)) => Some(format!("{user}@{host}")),
            (Some(one), None) | (None, Some(one)) => Some(one.clone()),
            (None, None) => None,
        }
    }

    /// The commit's first 12 hex digits, with `+dirty` when the manifests differed from it.
    pub fn short_commit(&self) -> Option<String> {
        let sha = self.commit.as_deref()?;
        let short = sha.get(..12).unwrap_or(sha);
        let mark = if self.dirty == Some(true) {
            "+dirty"
        } else {
            ""
        };
        Some(format!("{short}{mark}"))
    }
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

    fn record() -> RunRecord {
        RunRecord {
            id: RunId(1),
            status: RunStatus::Succeeded,
            started_at: Timestamp(0),
            finished_at: None,
            trigger: "cli".to_owned(),
            command: "drover apply .".to_owned(),
            user: None,
            host: None,
            commit: None,
            commit_author: None,
            commit_subject: None,
            dirty: None,
            manifest_digest: None,
            planned: 0,
            changed: 0,
            failed: 0,
            skipped: 0,
        }
    }

    #[test]
    fn who_and_short_commit_say_what_is_known() {
        let mut run = record();
        assert_eq!(run.who(), None);
        assert_eq!(run.short_commit(), None);
        run.host = Some("edge-1".to_owned());
        assert_eq!(run.who().as_deref(), Some("edge-1"));
        run.user = Some("ops".to_owned());
        assert_eq!(run.who().as_deref(), Some("ops@edge-1"));
        run.commit = Some("0123456789abcdef0123456789abcdef01234567".to_owned());
        assert_eq!(run.short_commit().as_deref(), Some("0123456789ab"));
        run.dirty = Some(true);
        assert_eq!(run.short_commit().as_deref(), Some("0123456789ab+dirty"));
    }

    #[test]
    fn records_written_before_user_host_and_dirty_still_read() {
        let old = r#"{"id":3,"status":"succeeded","startedAt":0,"trigger":"cli","command":"drover apply","commit":"abc","planned":1}"#;
        let run: RunRecord = serde_json::from_str(old).unwrap();
        assert_eq!((run.user, run.host, run.dirty), (None, None, None));
        assert_eq!(run.commit.as_deref(), Some("abc"));
        let json = serde_json::to_value(record()).unwrap();
        assert!(
            json.get("user").is_none() && json.get("dirty").is_none(),
            "{json}"
        );
    }
}
