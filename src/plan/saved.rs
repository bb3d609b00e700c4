//! Saved plans (`drover plan -o FILE`) and the check that refuses stale parts of them.
//!
//! A saved plan records, per planned instance, the spec hash it applies and the fingerprint
//! of the recorded state it was computed from. At apply time only the instances whose own
//! inputs changed are stale; unrelated edits and applies do not invalidate the plan (finer
//! than Terraform, whose saved plan goes stale on any state change).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::instance::InstanceId;
use crate::plan::Plan;
use crate::plan::change::ChangeKind;
use crate::resolve::ResolvedInstance;
use crate::state::{Recorded, Timestamp};

/// Version of the saved-plan format; bumped when a field changes meaning.
pub const FORMAT_VERSION: u32 = 1;

/// The file `drover plan -o` writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedPlan {
    /// Always "drover-plan": tells a saved plan from other JSON at a glance.
    pub kind: String,
    pub format_version: u32,
    pub drover_version: String,
    pub created_at: Timestamp,
    /// The manifest directory the plan was made from, as given.
    pub manifests: String,
    pub plan: Plan,
}

impl SavedPlan {
    pub fn new(plan: Plan, manifests: String, created_at: Timestamp) -> SavedPlan {
        SavedPlan {
            kind: "drover-plan".to_owned(),
            format_version: FORMAT_VERSION,
            drover_version: env!("CARGO_PKG_VERSION").to_owned(),
            created_at,
            manifests,
            plan,
        }
    }
}

/// One planned instance that can no longer be applied as planned, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stale {
    pub id: InstanceId,
    pub why: &'static str,
}

/// The planned instances whose inputs changed since the plan was saved.
pub fn stale(plan: &Plan, desired: &[ResolvedInstance], recorded: &Recorded) -> Vec<Stale> {
    let current: BTreeMap<&InstanceId, &ResolvedInstance> =
        desired.iter().map(|d| (&d.id, d)).collect();
    let mut out = Vec::new();
    for change in &plan.changes {
        let now = current.get(&change.id);
        let why = match (change.kind, now) {
            (ChangeKind::Remove, Some(_)) => Some("it is desired again"),
            (ChangeKind::Remove, None) => None,
            (_, None) => Some("it is no longer in the manifests"),
            (_, Some(instance)) if Some(instance.spec_hash) != change.spec_hash => {
                Some("its manifests changed")
            }
            (_, Some(_)) => None,
        };
        let why = why.or_else(|| {
            (recorded.fingerprint(&change.id) != change.recorded_fingerprint)
                .then_some("its recorded state changed (another apply ran)")
        });
        if let Some(why) = why {
            out.push(Stale {
                id: change.id.clone(),
                why,
            });
        }
    }
    out
}
