//! `Recorded`: what the store knows about past applies, as plain data the planner reads.
//!
//! The store produces these values and persists them; this module only defines them and
//! the pure helpers around them (fingerprints for saved plans, what to record for an
//! instance). It never touches the database.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::account::{GroupAccount, UserAccount};
use crate::hash::SpecHash;
use crate::instance::InstanceId;
use crate::model::duration::FileMode;
use crate::model::task_kind::{ArchiveFormat, OnTrigger, PackageState, PathState, ServiceState};
use crate::resolve::{Action, Connection, ResolvedInstance};
use crate::secret::Redactor;

/// Milliseconds since the Unix epoch. The core receives it; only the shell reads the clock.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Days since 1970-01-01 → (year, month, day), the proleptic Gregorian calendar.
    fn civil(days: i64) -> (i64, i64, i64) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        (year, month, day)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC, to the second: `2026-11-20T14:03:07Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.0.div_euclid(1000);
        let (days, secs) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
        let (y, m, d) = Timestamp::civil(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    }
}

/// A run's number, counting from 1 in each store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RunId(pub u64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How the last attempt of an instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    /// Started but never finished: the process died mid-attempt.
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed out",
            Outcome::Cancelled => "cancelled",
            Outcome::Interrupted => "interrupted",
        }
    }

    pub fn to_code(self) -> u8 {
        match self {
            Outcome::Succeeded => 0,
            Outcome::Failed => 1,
            Outcome::TimedOut => 2,
            Outcome::Cancelled => 3,
            Outcome::Interrupted => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<Outcome> {
        Some(match code {
            0 => Outcome::Succeeded,
            1 => Outcome::Failed,
            2 => Outcome::TimedOut,
            3 => Outcome::Cancelled,
            4 => Outcome::Interrupted,
            _ => return None,
        })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The compact record the planner needs for every instance: kept small so a no-op plan
/// over a large fleet reads little.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedInstance {
    pub spec_hash: SpecHash,
    pub outcome: Outcome,
    pub finished_at: Timestamp,
    pub duration_ms: u64,
    pub run: Option<RunId>,
}

/// What was applied, in enough detail to diff against and to undo; read only for the
/// instances a plan shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDetail {
    pub action: RecordedAction,
    /// The undo command, with secrets masked: secrets never reach the store in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<String>,
    /// Masking changed the undo command, so it cannot run as recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub undo_masked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// Whether the host connection ran commands through `sudo`, and as whom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#become: Option<String>,
    pub connection: String,
    /// What the instance needed when it was applied: a removal of it runs only after the
    /// removals of what needed it (reverse order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<InstanceId>,
    /// A hash of the `undo` and `check` commands as resolved (secrets included, hashed only):
    /// they are outside the spec hash, so an edit of them alone is found by this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo_check_hash: Option<SpecHash>,
    /// A secret went into it (its content, command, undo or check): its hashes could be
    /// used to guess the secret, so they are never served outside the store.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

/// The hash of an instance's `undo` and `check`, or `None` when it has neither.
pub fn undo_check_hash(instance: &ResolvedInstance) -> Option<SpecHash> {
    (instance.undo.is_some() || instance.check.is_some())
        .then(|| SpecHash::of(&(instance.undo.as_deref(), instance.check.as_deref())))
}

/// `Action` as recorded: file bytes become capped, redacted text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum RecordedAction {
    Run {
        command: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        creates: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unless: Option<String>,
    },
    File {
        path: String,
        content: RecordedText,
        content_hash: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<FileMode>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
    },
    Directory {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<FileMode>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        state: PathState,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        recursive: bool,
    },
    Link {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        state: PathState,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        force: bool,
    },
    Line {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        line: Option<String>,
        #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
        r#match: Option<String>,
        state: PathState,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        create: bool,
    },
    Block {
        path: String,
        marker: String,
        content: RecordedText,
        content_hash: String,
        state: PathState,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        create: bool,
    },
    Package {
        names: Vec<String>,
        state: PackageState,
    },
    Service {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<ServiceState>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        enabled: Option<bool>,
        on_trigger: OnTrigger,
    },
    Sysctl {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        state: PathState,
        file: String,
    },
    Cron {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schedule: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        command: Option<String>,
        user: String,
        state: PathState,
        path: String,
    },
    User(UserAccount),
    Group(GroupAccount),
    Archive {
        source: String,
        dest: String,
        format: ArchiveFormat,
        sha256: String,
        marker: String,
        #[serde(default)]
        state: PathState,
    },
}

/// File content kept for diffs: at most `MAX_RECORDED_CONTENT` bytes, secrets masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedText {
    pub text: String,
    #[serde(default)]
    pub truncated: bool,
    /// Not UTF-8: only its hash and size are meaningful.
    #[serde(default)]
    pub binary: bool,
    pub size: u64,
}

/// Largest file content the store keeps for diffs.
pub const MAX_RECORDED_CONTENT: usize = 256 * 1024;

impl RecordedText {
    /// Content that holds a secret: only its size is kept.
    pub fn withheld(size: usize) -> RecordedText {
        RecordedText {
            text: "(holds a secret; not shown)\n".to_owned(),
            truncated: false,
            binary: false,
            size: size as u64,
        }
    }

    pub fn new(bytes: &[u8], redactor: &Redactor) -> RecordedText {
        let size = bytes.len() as u64;
        let Ok(text) = std::str::from_utf8(bytes) else {
            return RecordedText {
                text: String::new(),
                truncated: false,
                binary: true,
                size,
            };
        };
        // Mask before cutting, so a secret across the cut is never stored in part.
        let mut text = redactor.redact(text);
        let mut end = text.len().min(MAX_RECORDED_CONTENT);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let truncated = end < text.len();
        text.truncate(end);
        RecordedText {
            text,
            truncated,
            binary: false,
            size,
        }
    }
}

/// What the store should keep about an instance it applies (or that a plan shows).
#[expect(
    clippy::too_many_lines,
    reason = "one arm per task kind, each a plain field-by-field copy"
)]
pub fn detail_of(instance: &ResolvedInstance, redactor: &Redactor) -> InstanceDetail {
    let action = match &instance.action {
        Action::Run {
            command,
            creates,
            unless,
        } => RecordedAction::Run {
            command: redactor.redact(command),
            creates: creates.as_deref().map(|c| redactor.redact(c)),
            unless: unless.as_deref().map(|u| redactor.redact(u)),
        },
        Action::File {
            path,
            content,
            content_hash,
            mode,
            owner,
            group,
        } => RecordedAction::File {
            path: redactor.redact(path),
            // Content made from a secret is not kept, even masked: a transformed secret may
            // not match any mask, and a diff line by line could show it.
            content: if instance.sensitive {
                RecordedText::withheld(content.len())
            } else {
                RecordedText::new(content, redactor)
            },
            content_hash: content_hash.clone(),
            mode: *mode,
            owner: owner.as_deref().map(|o| redactor.redact(o)),
            group: group.as_deref().map(|g| redactor.redact(g)),
        },
        Action::Directory {
            path,
            mode,
            owner,
            group,
            state,
            recursive,
        } => RecordedAction::Directory {
            path: redactor.redact(path),
            mode: *mode,
            owner: owner.as_deref().map(|o| redactor.redact(o)),
            group: group.as_deref().map(|g| redactor.redact(g)),
            state: *state,
            recursive: *recursive,
        },
        Action::Link {
            path,
            target,
            state,
            force,
        } => RecordedAction::Link {
            path: redactor.redact(path),
            target: target.as_deref().map(|t| redactor.redact(t)),
            state: *state,
            force: *force,
        },
        Action::Line {
            path,
            line,
            r#match,
            state,
            create,
        } => RecordedAction::Line {
            path: redactor.redact(path),
            line: line.as_deref().map(|l| redactor.redact(l)),
            r#match: r#match.as_deref().map(|m| redactor.redact(m)),
            state: *state,
            create: *create,
        },
        Action::Block {
            path,
            marker,
            content,
            content_hash,
            state,
            create,
        } => RecordedAction::Block {
            path: redactor.redact(path),
            marker: redactor.redact(marker),
            // As for a file: content made from a secret is not kept, even masked.
            content: if instance.sensitive {
                RecordedText::withheld(content.len())
            } else {
                RecordedText::new(content.as_bytes(), redactor)
            },
            content_hash: content_hash.clone(),
            state: *state,
            create: *create,
        },
        Action::Package { names, state } => RecordedAction::Package {
            names: names.clone(),
            state: *state,
        },
        Action::Service {
            name,
            state,
            enabled,
            on_trigger,
        } => RecordedAction::Service {
            name: name.clone(),
            state: *state,
            enabled: *enabled,
            on_trigger: *on_trigger,
        },
        Action::Sysctl {
            name,
            value,
            state,
            file,
        } => RecordedAction::Sysctl {
            name: redactor.redact(name),
            value: value.as_deref().map(|v| redactor.redact(v)),
            state: *state,
            file: redactor.redact(file),
        },
        Action::Cron {
            name,
            schedule,
            command,
            user,
            state,
            path,
        } => RecordedAction::Cron {
            name: redactor.redact(name),
            schedule: schedule.as_deref().map(|s| redactor.redact(s)),
            command: command.as_deref().map(|c| redactor.redact(c)),
            user: redactor.redact(user),
            state: *state,
            path: redactor.redact(path),
        },
        Action::User(user) => RecordedAction::User(user.redacted(redactor)),
        Action::Group(group) => RecordedAction::Group(group.redacted(redactor)),
        Action::Archive {
            source,
            dest,
            format,
            sha256,
            marker,
            state,
            ..
        } => RecordedAction::Archive {
            source: redactor.redact(source),
            dest: redactor.redact(dest),
            format: *format,
            sha256: sha256.clone(),
            marker: redactor.redact(marker),
            state: *state,
        },
    };
    InstanceDetail {
        action,
        // Secrets never reach the store in clear. An undo that needs one cannot be kept
        // runnable; it is marked so the apply refuses it with a clear message.
        undo: instance.undo.as_deref().map(|u| redactor.redact(u)),
        undo_masked: instance
            .undo
            .as_deref()
            .is_some_and(|u| redactor.contains_secret(u)),
        check: instance.check.as_deref().map(|c| redactor.redact(c)),
        r#become: instance.r#become.clone(),
        connection: connection_text(&instance.connection),
        needs: instance
            .needs
            .iter()
            .chain(&instance.triggered_by)
            .cloned()
            .collect(),
        undo_check_hash: undo_check_hash(instance),
        sensitive: instance.sensitive
            || [&instance.undo, &instance.check]
                .into_iter()
                .flatten()
                .any(|c| redactor.contains_secret(c)),
    }
}

/// How a person reads a connection: `local`, or `ssh deploy@10.0.0.5:22`.
pub fn connection_text(connection: &Connection) -> String {
    match connection {
        Connection::Local => "local".to_owned(),
        Connection::Ssh {
            address,
            port,
            user,
        } => {
            let user = user.as_deref().map(|u| format!("{u}@")).unwrap_or_default();
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            format!("ssh {user}{address}{port}")
        }
    }
}

/// A trigger that fired but whose target has not yet succeeded since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingTrigger {
    /// The instances whose change fired it.
    pub sources: BTreeSet<InstanceId>,
    /// The run in which it first fired.
    pub since: RunId,
}

/// What the last drift probe found for an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftFinding {
    pub summary: String,
    pub found_at: Timestamp,
}

/// Everything the planner needs to know about the past.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub instances: BTreeMap<InstanceId, RecordedInstance>,
    pub pending_triggers: BTreeMap<InstanceId, PendingTrigger>,
    pub drift: BTreeMap<InstanceId, DriftFinding>,
    /// The newest recorded drift check: when, and how far it saw.
    pub last_drift_check: Option<crate::plan::DriftChecked>,
    /// The recorded `undo_check_hash` of instances that have an `undo` or a `check`.
    pub undo_check: BTreeMap<InstanceId, SpecHash>,
    /// Details of the recorded instances the desired state no longer has (their undo, and
    /// what they needed, which orders their removal); loaded by the caller of `plan` for
    /// the removals a first plan found, before planning again.
    pub no_longer_desired: BTreeMap<InstanceId, InstanceDetail>,
    /// Instances whose recorded spec hash was withheld (a snapshot served elsewhere does
    /// not carry the hashes of specs a secret went into): they may have changed.
    pub spec_withheld: BTreeSet<InstanceId>,
}

impl Recorded {
    /// A short hash of everything recorded about one instance. A saved plan stores it per
    /// instance; when it differs at apply time, that instance's plan is stale.
    pub fn fingerprint(&self, id: &InstanceId) -> String {
        let instance = self
            .instances
            .get(id)
            .map(|r| (r.spec_hash, r.outcome.to_code(), r.run.map(|r| r.0)));
        SpecHash::of(&(instance, self.pending_triggers.get(id), self.drift.get(id))).short()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_rfc3339() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp(1_795_651_387_000).to_string(),
            "2026-11-26T00:03:07Z"
        );
        assert_eq!(
            Timestamp(951_782_400_000).to_string(),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn outcomes_round_trip_through_codes() {
        for outcome in [
            Outcome::Succeeded,
            Outcome::Failed,
            Outcome::TimedOut,
            Outcome::Cancelled,
            Outcome::Interrupted,
        ] {
            assert_eq!(Outcome::from_code(outcome.to_code()), Some(outcome));
        }
        assert_eq!(Outcome::from_code(99), None);
    }

    #[test]
    fn recorded_text_is_capped_and_redacted() {
        let secret = crate::secret::Secret::new("hunter2".to_owned());
        let redactor = Redactor::new([&secret]);
        let text = RecordedText::new(b"password=hunter2\n", &redactor);
        assert_eq!(text.text, "password=***\n");
        let big = vec![b'a'; MAX_RECORDED_CONTENT + 10];
        let capped = RecordedText::new(&big, &redactor);
        assert!(capped.truncated);
        assert_eq!(capped.text.len(), MAX_RECORDED_CONTENT);
        assert!(RecordedText::new(&[0xff, 0xfe], &redactor).binary);
    }
}
