//! `StateSnapshot`: the recorded state as one JSON document, for planning elsewhere.
//!
//! The daemon serves it at `GET /state`; `plan --state-from` and `drift --state-from` read
//! it instead of a state file, so a CI job plans against what the fleet really had applied
//! without a copy of the store and without writing anything. It holds what planning reads:
//! every instance's record, pending triggers, drift findings, each instance's detail (its
//! recorded action, for diffs and undo), and the newest drift report. It holds no secret: nothing in the store
//! does (file content that held one is withheld, commands are masked).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hash::SpecHash;
use crate::instance::InstanceId;
use crate::state::{
    DriftFinding, InstanceDetail, Outcome, PendingTrigger, Recorded, RecordedAction,
    RecordedInstance, RecordedText, RunId, Timestamp,
};

/// Version of the snapshot's JSON shape; a reader refuses a newer one.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateSnapshot {
    pub format_version: u32,
    pub taken_at: Timestamp,
    pub instances: BTreeMap<InstanceId, SnapshotInstance>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending_triggers: BTreeMap<InstanceId, PendingTrigger>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub drift: BTreeMap<InstanceId, DriftFinding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drift_check: Option<crate::plan::DriftChecked>,
    /// The newest drift report, as recorded (without file diffs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drift_report: Option<crate::drift::DriftReport>,
    /// Each host's facts as last gathered (decision 0018); a plan against the snapshot
    /// renders `host.facts` and decides `when` with them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<crate::model::meta::HostName, crate::facts::Gathered>,
}

/// One instance as recorded: the planner's record and its detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotInstance {
    /// Left out for an instance a secret went into: a hash of it could be used to guess
    /// the secret offline. A plan against the snapshot says such an instance may change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_hash: Option<SpecHash>,
    pub outcome: Outcome,
    pub finished_at: Timestamp,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo_check_hash: Option<SpecHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<InstanceDetail>,
}

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the state snapshot is not valid JSON of the expected shape")]
    Shape(#[from] serde_json::Error),
    #[error(
        "the state snapshot has format version {found}; this drover reads up to {FORMAT_VERSION}"
    )]
    TooNew { found: u32 },
}

impl StateSnapshot {
    /// Builds a snapshot from what a store read in one transaction.
    pub fn new(
        taken_at: Timestamp,
        recorded: Recorded,
        mut details: BTreeMap<InstanceId, InstanceDetail>,
    ) -> StateSnapshot {
        let instances = recorded
            .instances
            .into_iter()
            .map(|(id, r)| {
                let mut detail = details.remove(&id);
                let sensitive = detail.as_ref().is_some_and(holds_secret);
                if let Some(detail) = detail.as_mut().filter(|_| sensitive) {
                    withhold_hashes(detail);
                }
                let instance = SnapshotInstance {
                    spec_hash: (!sensitive).then_some(r.spec_hash),
                    outcome: r.outcome,
                    finished_at: r.finished_at,
                    duration_ms: r.duration_ms,
                    run: r.run,
                    undo_check_hash: recorded.undo_check.get(&id).copied().filter(|_| !sensitive),
                    detail,
                };
                (id, instance)
            })
            .collect();
        StateSnapshot {
            format_version: FORMAT_VERSION,
            taken_at,
            instances,
            pending_triggers: recorded.pending_triggers,
            drift: recorded.drift,
            last_drift_check: recorded.last_drift_check,
            last_drift_report: None,
            facts: BTreeMap::new(),
        }
    }

    /// Reads a snapshot's JSON, refusing a newer format.
    pub fn from_json(bytes: &[u8]) -> Result<StateSnapshot, ReadError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Version {
            format_version: u32,
        }
        let version: Version = serde_json::from_slice(bytes)?;
        if version.format_version > FORMAT_VERSION {
            return Err(ReadError::TooNew {
                found: version.format_version,
            });
        }
        Ok(serde_json::from_slice(bytes)?)
    }

    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialising cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// What the planner reads, as a store would give it.
    pub fn recorded(&self) -> Recorded {
        let mut recorded = Recorded {
            pending_triggers: self.pending_triggers.clone(),
            drift: self.drift.clone(),
            last_drift_check: self.last_drift_check.clone(),
            ..Recorded::default()
        };
        for (id, instance) in &self.instances {
            if instance.spec_hash.is_none() {
                recorded.spec_withheld.insert(id.clone());
            }
            recorded.instances.insert(
                id.clone(),
                RecordedInstance {
                    // Withheld: no desired spec hashes to this, so it is never "unchanged".
                    spec_hash: instance
                        .spec_hash
                        .unwrap_or_else(|| SpecHash::from_bytes([0; 32])),
                    outcome: instance.outcome,
                    finished_at: instance.finished_at,
                    duration_ms: instance.duration_ms,
                    run: instance.run,
                },
            );
            if let Some(hash) = instance.undo_check_hash {
                recorded.undo_check.insert(id.clone(), hash);
            }
        }
        recorded
    }

    /// The recorded details of `ids` (those the snapshot has).
    pub fn details<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a InstanceId>,
    ) -> BTreeMap<InstanceId, InstanceDetail> {
        ids.into_iter()
            .filter_map(|id| {
                let detail = self.instances.get(id)?.detail.clone()?;
                Some((id.clone(), detail))
            })
            .collect()
    }
}

/// Whether a secret went into what was recorded (records made before drover said so are
/// recognised by their withheld content).
fn holds_secret(detail: &InstanceDetail) -> bool {
    detail.sensitive
        || detail.undo_masked
        || matches!(&detail.action, RecordedAction::File { content, .. } if *content == RecordedText::withheld(usize::try_from(content.size).unwrap_or(usize::MAX)))
}

/// Drops what could be matched against guesses of a secret: the content's hash and size.
fn withhold_hashes(detail: &mut InstanceDetail) {
    if let RecordedAction::File {
        content,
        content_hash,
        ..
    } = &mut detail.action
    {
        content_hash.clear();
        content.size = 0;
    }
    detail.undo_check_hash = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> InstanceId {
        InstanceId::parse(text).expect("a valid instance id")
    }

    #[test]
    fn a_snapshot_gives_back_what_the_store_read() {
        let mut recorded = Recorded::default();
        let record = RecordedInstance {
            spec_hash: SpecHash::of(&"spec"),
            outcome: Outcome::Succeeded,
            finished_at: Timestamp(1_700_000_000_000),
            duration_ms: 12,
            run: Some(RunId(3)),
        };
        recorded.instances.insert(id("web-1/app/config"), record);
        recorded
            .undo_check
            .insert(id("web-1/app/config"), SpecHash::of(&"undo"));
        recorded.drift.insert(
            id("web-1/app/config"),
            DriftFinding {
                summary: "content differs".to_owned(),
                found_at: Timestamp(5),
            },
        );
        let snapshot = StateSnapshot::new(Timestamp(9), recorded, BTreeMap::new());
        let read = StateSnapshot::from_json(snapshot.to_json().as_bytes()).expect("reads back");
        assert_eq!(read, snapshot);
        let again = read.recorded();
        assert_eq!(again.instances.get(&id("web-1/app/config")), Some(&record));
        assert_eq!(again.undo_check.len(), 1);
        assert_eq!(again.drift.len(), 1);
    }

    #[test]
    fn a_newer_format_is_refused_by_name() {
        let error = StateSnapshot::from_json(br#"{"formatVersion": 99, "takenAt": 0}"#)
            .expect_err("too new");
        assert!(matches!(error, ReadError::TooNew { found: 99 }));
        assert!(StateSnapshot::from_json(b"<html>").is_err());
    }
}
