//! `PlannedChange`: one instance in a plan, what will happen to it, and why.

use serde::{Deserialize, Serialize};

use crate::hash::SpecHash;
use crate::instance::InstanceId;
use crate::model::meta::HostName;
use crate::state::{Outcome, RunId};

/// What the apply will do to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChangeKind {
    /// Never applied: run it.
    Create,
    /// Its spec changed, or its last attempt did not succeed: run it again.
    Update,
    /// A task it is triggered by is in this plan (or fired earlier and is still pending).
    Trigger,
    /// A drift probe found the host differs: run it again.
    Drifted,
    /// No longer desired: run its recorded `undo`, or just forget it.
    Remove,
    /// Forced by `--replace` or `--force`.
    Replace,
    /// Only its `undo` or `check` changed: record them; the host is not contacted.
    Refresh,
    /// Its rendering needs a secret that is not available where this plan was made: it
    /// may change or not (like Terraform's "known after apply"). Never applied as such.
    MayChange,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 8] = [
        ChangeKind::Create,
        ChangeKind::Update,
        ChangeKind::Trigger,
        ChangeKind::Drifted,
        ChangeKind::Remove,
        ChangeKind::Replace,
        ChangeKind::Refresh,
        ChangeKind::MayChange,
    ];

    /// The one-character mark in the text plan, like Terraform's.
    pub fn symbol(self) -> &'static str {
        match self {
            ChangeKind::Create => "+",
            ChangeKind::Update => "~",
            ChangeKind::Trigger => "!",
            ChangeKind::Drifted => "≠",
            ChangeKind::Remove => "-",
            ChangeKind::Replace => "±",
            ChangeKind::Refresh => "*",
            ChangeKind::MayChange => "?",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Create => "create",
            ChangeKind::Update => "update",
            ChangeKind::Trigger => "trigger",
            ChangeKind::Drifted => "drifted",
            ChangeKind::Remove => "remove",
            ChangeKind::Replace => "replace",
            ChangeKind::Refresh => "refresh",
            ChangeKind::MayChange => "may change",
        }
    }
}

/// Why an instance is in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "reason",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Reason {
    /// Never applied before.
    New,
    /// The resolved spec differs from what was applied.
    SpecChanged { from: SpecHash, to: SpecHash },
    /// The last attempt did not succeed.
    LastAttempt { outcome: Outcome },
    /// These instances change in this plan and trigger it.
    TriggeredBy { sources: Vec<InstanceId> },
    /// A trigger fired in an earlier run and the instance has not succeeded since.
    PendingTrigger {
        sources: Vec<InstanceId>,
        since: RunId,
    },
    /// The last drift probe found the host differs.
    Drift { summary: String },
    /// Recorded but no longer in the manifests.
    NoLongerDesired { has_undo: bool },
    /// In a saved plan being applied, its inputs changed since the plan was saved: it is
    /// refused, not applied.
    Stale { why: String },
    /// Recorded with an `undo`, but its host is no longer in the manifests either: nothing
    /// says how to reach it, so the undo cannot run and the apply fails the removal.
    HostGone,
    /// `--replace` or `--force` asked for it.
    Forced,
    /// Its `undo` or `check` changed, and nothing else.
    UndoOrCheckChanged,
    /// New or edited, but it has `triggeredBy`: it runs only if one of these changes in this
    /// run; otherwise it is recorded as applied without running.
    OnlyIfTriggered { sources: Vec<InstanceId> },
    /// Its rendering needs these secrets (variable names), not available here.
    UnavailableSecret { secrets: Vec<String> },
    /// Its rendering or its `when` uses the facts of its host, not known here.
    UnavailableFacts { host: HostName },
    /// A secret went into what was applied, so the state it was planned against (a
    /// daemon's snapshot) does not carry its spec hash.
    SpecWithheld,
}

impl Reason {
    /// The reason as a short phrase for the text plan.
    pub fn describe(&self) -> String {
        let ids = |v: &[InstanceId]| {
            v.iter()
                .map(|i| format!("{}/{}", i.workflow, i.task_part()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Reason::New => "new".to_owned(),
            Reason::SpecChanged { from, to } => {
                format!("spec changed ({} → {})", from.short(), to.short())
            }
            Reason::LastAttempt { outcome } => format!("last attempt {outcome}"),
            Reason::TriggeredBy { sources } => format!("triggered by {}", ids(sources)),
            Reason::UndoOrCheckChanged => {
                "undo or check changed; recorded without contacting the host".to_owned()
            }
            Reason::OnlyIfTriggered { sources } => {
                format!("runs only if {} changes", ids(sources))
            }
            Reason::PendingTrigger { sources, since } => {
                format!("trigger pending since run {since} from {}", ids(sources))
            }
            Reason::Drift { summary } => format!("drifted: {summary}"),
            Reason::NoLongerDesired { has_undo: true } => {
                "no longer desired; runs its undo".to_owned()
            }
            Reason::NoLongerDesired { has_undo: false } => {
                "no longer desired; no undo recorded, so it is only forgotten".to_owned()
            }
            Reason::Stale { why } => {
                format!("stale: {why} since the plan was saved; it will not be applied")
            }
            Reason::HostGone => "no longer desired, and its host is gone from the manifests: its undo cannot run, so the apply fails it (run the undo by hand if needed, then `drover state forget`)".to_owned(),
            Reason::Forced => "replacement requested".to_owned(),
            Reason::SpecWithheld => {
                "a secret went into what was applied; its hash is not served, so it cannot be compared here".to_owned()
            }
            Reason::UnavailableFacts { host } => {
                format!("depends on the facts of {host}, not known here")
            }
            Reason::UnavailableSecret { secrets } => {
                let names: Vec<String> = secrets.iter().map(|s| format!("`{s}`")).collect();
                let noun = if secrets.len() == 1 {
                    "secret"
                } else {
                    "secrets"
                };
                format!("depends on {noun} {}, not available here", names.join(", "))
            }
        }
    }
}

/// One instance in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedChange {
    pub id: InstanceId,
    pub kind: ChangeKind,
    pub reasons: Vec<Reason>,
    /// The spec hash the change applies (`None` for a removal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_hash: Option<SpecHash>,
    /// `Recorded::fingerprint` of the instance when planned; see `saved`.
    pub recorded_fingerprint: String,
    /// Instances of this plan that must finish first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<InstanceId>,
}
