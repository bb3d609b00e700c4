//! `plan(desired, recorded, options) -> Plan`: the minimal, dependency-ordered set of
//! instances an apply must touch. Pure and deterministic: the same inputs give the same plan,
//! byte for byte.
//!
//! An instance whose spec hash matches the record, whose last attempt succeeded, with no
//! pending trigger or drift, is unchanged and absent from the plan; nothing contacts its host.

pub mod change;
pub mod saved;
pub mod target;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::instance::InstanceId;
use crate::model::workflow::DriftPolicy;
use crate::resolve::ResolvedInstance;
use crate::state::{Outcome, Recorded};

use change::{ChangeKind, PlannedChange, Reason};
use target::Target;

/// What the user asked for beyond "converge everything".
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Only these instances (and what they need); empty means all.
    pub targets: Vec<Target>,
    /// Re-run these even if unchanged (`--replace`).
    pub replace: Vec<Target>,
    /// Re-run everything selected (`--force`).
    pub force: bool,
    /// Which drifted instances to repair.
    pub repair: RepairDrift,
}

/// Which recorded drift findings a plan repairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RepairDrift {
    /// `warn` and `fix`: a person asked for the plan (`plan`, `apply`).
    #[default]
    WarnAndFix,
    /// Only `fix`: the daemon, acting on its own; `warn` is reported, not repaired.
    FixOnly,
}

/// A plan: changes in the order they may run (removals first), and what was left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub changes: Vec<PlannedChange>,
    /// Desired instances that need nothing.
    pub unchanged: usize,
    /// Changes left out because `--target` did not select them.
    #[serde(default)]
    pub outside_targets: usize,
    /// Targets (`--target`, `--replace`) that matched no instance; the CLI refuses them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmatched: Vec<String>,
    /// When the hosts were last probed for drift (`None`: never); the summary says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_checked: Option<DriftChecked>,
}

/// The drift check a plan's findings come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftChecked {
    pub at: crate::state::Timestamp,
    /// Probed for this plan (`--refresh`), not read from an earlier check.
    pub fresh: bool,
    /// Instances that check could not judge (a host down, `sudo` refused).
    #[serde(default)]
    pub unknown: usize,
    /// The `--target`s it was limited to; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// How many changes of each kind, in `ChangeKind::ALL` order.
    pub fn counts(&self) -> BTreeMap<ChangeKind, usize> {
        let mut counts: BTreeMap<ChangeKind, usize> =
            ChangeKind::ALL.iter().map(|k| (*k, 0)).collect();
        for change in &self.changes {
            *counts.entry(change.kind).or_default() += 1;
        }
        counts
    }
}

/// Computes the plan.
pub fn plan(desired: &[ResolvedInstance], recorded: &Recorded, options: &PlanOptions) -> Plan {
    let mut changes: BTreeMap<usize, (ChangeKind, Vec<Reason>)> = BTreeMap::new();
    let position: BTreeMap<&InstanceId, usize> = desired
        .iter()
        .enumerate()
        .map(|(i, d)| (&d.id, i))
        .collect();
    let mut unmatched: Vec<String> = Vec::new();
    let replace = matching(desired, &options.replace, &mut unmatched);
    for (i, instance) in desired.iter().enumerate() {
        let forced = options.force || replace.contains(&i);
        if let Some(change) = own_change(instance, recorded, forced, options.repair) {
            changes.insert(i, change);
        }
    }
    propagate_triggers(desired, &position, &mut changes);
    uncertain_triggers(&position, &mut changes);
    gate_handlers(desired, &mut changes);
    let removals = removals(recorded, &position);
    let unchanged = desired.len() - changes.len();
    let all_changes = changes.len() + removals.len();
    // Targets narrow the plan to what they name and what that needs.
    let (changes, removals) = if options.targets.is_empty() {
        (changes, removals)
    } else {
        let selected = matching(desired, &options.targets, &mut unmatched);
        // A target may name what is only recorded (a removal): it matched after all.
        unmatched.retain(|t| {
            !removals.iter().any(|r| {
                options
                    .targets
                    .iter()
                    .any(|target| target.to_string() == *t && target.matches(&r.id))
            })
        });
        let keep = with_dependencies(desired, &position, &selected);
        let removals = removals
            .into_iter()
            .filter(|r| options.targets.iter().any(|t| t.matches(&r.id)))
            .collect();
        (
            changes
                .into_iter()
                .filter(|(i, _)| keep.contains(i))
                .collect(),
            removals,
        )
    };
    let ordered = order(desired, &position, &changes);
    let mut planned: Vec<PlannedChange> = removals;
    let in_plan: BTreeSet<&InstanceId> = ordered
        .iter()
        .filter_map(|i| desired.get(*i))
        .map(|d| &d.id)
        .collect();
    for i in ordered {
        let (Some(instance), Some((kind, reasons))) = (desired.get(i), changes.get(&i)) else {
            continue;
        };
        let after: Vec<InstanceId> = instance
            .needs
            .iter()
            .chain(&instance.triggered_by)
            .filter(|d| in_plan.contains(d))
            .cloned()
            .collect();
        planned.push(PlannedChange {
            id: instance.id.clone(),
            kind: *kind,
            reasons: reasons.clone(),
            // Rendered from a stand-in for a secret, the hash is not the real one: none.
            spec_hash: (instance.unavailable_secrets.is_empty() && !instance.unavailable_facts)
                .then_some(instance.spec_hash),
            recorded_fingerprint: recorded.fingerprint(&instance.id),
            after,
        });
    }
    unmatched.sort();
    unmatched.dedup();
    let outside_targets = all_changes - planned.len();
    let mut plan = Plan {
        unchanged,
        outside_targets,
        changes: planned,
        unmatched,
        drift_checked: recorded.last_drift_check.clone(),
    };
    order_removals(&mut plan, &recorded.no_longer_desired);
    plan
}

/// Orders removals, which the planner sees without their old dependencies: a removal waits
/// for the removals of what needed it (recorded in `details`), and every other change on
/// the same host waits for that host's removals (a renamed task must not have its new file
/// deleted by the old one's undo).
fn order_removals(plan: &mut Plan, details: &BTreeMap<InstanceId, crate::state::InstanceDetail>) {
    let removals: Vec<InstanceId> = plan
        .changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Remove)
        .map(|c| c.id.clone())
        .collect();
    if removals.is_empty() {
        return;
    }
    for change in &mut plan.changes {
        if change.kind == ChangeKind::Remove {
            let dependents = removals.iter().filter(|r| {
                details
                    .get(*r)
                    .is_some_and(|d| d.needs.contains(&change.id))
            });
            change.after.extend(dependents.cloned());
        } else {
            change.after.extend(
                removals
                    .iter()
                    .filter(|r| r.host == change.id.host)
                    .cloned(),
            );
        }
    }
}

/// The change an instance needs on its own account (not because of a trigger).
fn own_change(
    instance: &ResolvedInstance,
    recorded: &Recorded,
    forced: bool,
    repair: RepairDrift,
) -> Option<(ChangeKind, Vec<Reason>)> {
    // A trigger still pending from an earlier run rides along with any other change, so
    // the service it restarts is restarted even when the task also changed on its own.
    let pending =
        recorded
            .pending_triggers
            .get(&instance.id)
            .map(|pending| Reason::PendingTrigger {
                sources: pending.sources.iter().cloned().collect(),
                since: pending.since,
            });
    let with_pending = |kind: ChangeKind, mut reasons: Vec<Reason>| {
        reasons.extend(pending.clone());
        Some((kind, reasons))
    };
    if forced {
        return with_pending(ChangeKind::Replace, vec![Reason::Forced]);
    }
    if !instance.unavailable_secrets.is_empty() || instance.unavailable_facts {
        // Rendered from stand-ins (secrets or facts not available here): what it would
        // apply is not known, so a recorded success "may change".
        let unknown = if instance.unavailable_secrets.is_empty() {
            Reason::UnavailableFacts {
                host: instance.id.host.clone(),
            }
        } else {
            Reason::UnavailableSecret {
                secrets: instance.unavailable_secrets.clone(),
            }
        };
        return match recorded.instances.get(&instance.id) {
            None => with_pending(ChangeKind::Create, vec![Reason::New, unknown]),
            Some(record) if record.outcome != Outcome::Succeeded => with_pending(
                ChangeKind::Update,
                vec![
                    Reason::LastAttempt {
                        outcome: record.outcome,
                    },
                    unknown,
                ],
            ),
            Some(_) => with_pending(ChangeKind::MayChange, vec![unknown]),
        };
    }
    let Some(record) = recorded.instances.get(&instance.id) else {
        return with_pending(ChangeKind::Create, vec![Reason::New]);
    };
    if recorded.spec_withheld.contains(&instance.id) && record.outcome == Outcome::Succeeded {
        return with_pending(ChangeKind::MayChange, vec![Reason::SpecWithheld]);
    }
    let mut reasons = Vec::new();
    if record.spec_hash != instance.spec_hash {
        reasons.push(Reason::SpecChanged {
            from: record.spec_hash,
            to: instance.spec_hash,
        });
    }
    if record.outcome != Outcome::Succeeded {
        reasons.push(Reason::LastAttempt {
            outcome: record.outcome,
        });
    }
    if !reasons.is_empty() {
        return with_pending(ChangeKind::Update, reasons);
    }

    let repaired = match instance.drift {
        DriftPolicy::Ignore => false,
        DriftPolicy::Warn => repair == RepairDrift::WarnAndFix,
        DriftPolicy::Fix => true,
    };
    if repaired && let Some(finding) = recorded.drift.get(&instance.id) {
        return with_pending(
            ChangeKind::Drifted,
            vec![Reason::Drift {
                summary: finding.summary.clone(),
            }],
        );
    }
    if pending.is_none()
        && (instance.undo.is_some() || instance.check.is_some() || !recorded.undo_check.is_empty())
        && crate::state::undo_check_hash(instance) != recorded.undo_check.get(&instance.id).copied()
    {
        return Some((ChangeKind::Refresh, vec![Reason::UndoOrCheckChanged]));
    }
    pending.map(|reason| (ChangeKind::Trigger, vec![reason]))
}

/// Adds `Trigger` changes for instances whose `triggeredBy` sources are in the plan, until
/// nothing more fires (a triggered task that runs may trigger another).
/// A task with `triggeredBy` runs only when a source changes (or when forced): new or edited,
/// it waits for its sources instead of running on its own account.
fn gate_handlers(
    desired: &[ResolvedInstance],
    changes: &mut BTreeMap<usize, (ChangeKind, Vec<Reason>)>,
) {
    for (i, (kind, reasons)) in changes.iter_mut() {
        let Some(instance) = desired.get(*i) else {
            continue;
        };
        let on_its_own_account = reasons.iter().all(|r| {
            matches!(
                r,
                Reason::New | Reason::SpecChanged { .. } | Reason::TriggeredBy { .. }
            )
        });
        if !instance.triggered_by.is_empty()
            && matches!(kind, ChangeKind::Create | ChangeKind::Update)
            && on_its_own_account
        {
            reasons.push(Reason::OnlyIfTriggered {
                sources: instance.triggered_by.clone(),
            });
        }
    }
}

/// A trigger whose every source only may change only may run: it is "may change" too; one
/// that may change on its own but is triggered by a certain change will run: a trigger.
/// Repeated until nothing moves, so declaration order does not matter.
fn uncertain_triggers(
    position: &BTreeMap<&InstanceId, usize>,
    changes: &mut BTreeMap<usize, (ChangeKind, Vec<Reason>)>,
) {
    let uncertain = |id: &InstanceId, changes: &BTreeMap<usize, (ChangeKind, Vec<Reason>)>| {
        position
            .get(id)
            .and_then(|p| changes.get(p))
            .is_none_or(|(kind, _)| *kind == ChangeKind::MayChange)
    };
    loop {
        let mut moved = Vec::new();
        for (i, (kind, reasons)) in changes.iter() {
            let sources: Vec<&InstanceId> = reasons
                .iter()
                .filter_map(|r| match r {
                    Reason::TriggeredBy { sources } => Some(sources.iter()),
                    _ => None,
                })
                .flatten()
                .collect();
            if sources.is_empty() {
                continue;
            }
            let certain = sources.iter().any(|s| !uncertain(s, changes));
            let own_changes = reasons
                .iter()
                .any(|r| !matches!(r, Reason::TriggeredBy { .. }));
            match kind {
                ChangeKind::Trigger if !certain && !own_changes => {
                    moved.push((*i, ChangeKind::MayChange));
                }
                ChangeKind::MayChange if certain => moved.push((*i, ChangeKind::Trigger)),
                _ => {}
            }
        }
        if moved.is_empty() {
            break;
        }
        for (i, kind) in moved {
            if let Some(entry) = changes.get_mut(&i) {
                entry.0 = kind;
            }
        }
    }
}

fn propagate_triggers(
    desired: &[ResolvedInstance],
    position: &BTreeMap<&InstanceId, usize>,
    changes: &mut BTreeMap<usize, (ChangeKind, Vec<Reason>)>,
) {
    let triggered: Vec<usize> = desired
        .iter()
        .enumerate()
        .filter(|(_, d)| !d.triggered_by.is_empty())
        .map(|(i, _)| i)
        .collect();
    if triggered.is_empty() {
        return;
    }
    loop {
        let mut grew = false;
        for &i in &triggered {
            let Some(instance) = desired.get(i) else {
                continue;
            };
            let sources: Vec<InstanceId> = instance
                .triggered_by
                .iter()
                .filter(|s| position.get(s).is_some_and(|p| changes.contains_key(p)))
                .cloned()
                .collect();
            if sources.is_empty() {
                continue;
            }
            let entry = changes.entry(i).or_insert_with(|| {
                grew = true;
                (ChangeKind::Trigger, Vec::new())
            });
            if !entry
                .1
                .iter()
                .any(|r| matches!(r, Reason::TriggeredBy { .. }))
            {
                entry.1.push(Reason::TriggeredBy { sources });
            }
        }
        if !grew {
            break;
        }
    }
}

/// Recorded instances that are no longer desired, sorted by id.
fn removals(recorded: &Recorded, position: &BTreeMap<&InstanceId, usize>) -> Vec<PlannedChange> {
    recorded
        .instances
        .keys()
        .filter(|id| !position.contains_key(id))
        .map(|id| PlannedChange {
            id: id.clone(),
            kind: ChangeKind::Remove,
            reasons: vec![Reason::NoLongerDesired {
                has_undo: recorded
                    .no_longer_desired
                    .get(id)
                    .is_some_and(|d| d.undo.is_some()),
            }],
            spec_hash: None,
            recorded_fingerprint: recorded.fingerprint(id),
            after: Vec::new(),
        })
        .collect()
}

/// Positions of the instances any target names; targets that name nothing are recorded.
fn matching(
    desired: &[ResolvedInstance],
    targets: &[Target],
    unmatched: &mut Vec<String>,
) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    for target in targets {
        let before = out.len();
        out.extend(
            desired
                .iter()
                .enumerate()
                .filter(|(_, d)| target.matches(&d.id))
                .map(|(i, _)| i),
        );
        if out.len() == before && !desired.iter().any(|d| target.matches(&d.id)) {
            unmatched.push(target.to_string());
        }
    }
    out
}

/// `selected` and everything it needs, transitively.
fn with_dependencies(
    desired: &[ResolvedInstance],
    position: &BTreeMap<&InstanceId, usize>,
    selected: &BTreeSet<usize>,
) -> BTreeSet<usize> {
    let mut keep = selected.clone();
    let mut stack: Vec<usize> = selected.iter().copied().collect();
    while let Some(i) = stack.pop() {
        let Some(instance) = desired.get(i) else {
            continue;
        };
        for dependency in instance.needs.iter().chain(&instance.triggered_by) {
            if let Some(&p) = position.get(dependency)
                && keep.insert(p)
            {
                stack.push(p);
            }
        }
    }
    keep
}

/// The planned positions in dependency order: Kahn's algorithm over the whole desired graph
/// (so order through unplanned instances still holds), ready instances taken in manifest
/// order, then filtered to the plan.
fn order(
    desired: &[ResolvedInstance],
    position: &BTreeMap<&InstanceId, usize>,
    changes: &BTreeMap<usize, (ChangeKind, Vec<Reason>)>,
) -> Vec<usize> {
    if changes.is_empty() {
        return Vec::new();
    }
    let mut waiting: Vec<usize> = vec![0; desired.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); desired.len()];
    for (i, instance) in desired.iter().enumerate() {
        for dependency in instance.needs.iter().chain(&instance.triggered_by) {
            if let Some(&p) = position.get(dependency) {
                if let Some(w) = waiting.get_mut(i) {
                    *w += 1;
                }
                if let Some(d) = dependents.get_mut(p) {
                    d.push(i);
                }
            }
        }
    }
    let mut ready: BTreeSet<usize> = waiting
        .iter()
        .enumerate()
        .filter(|(_, w)| **w == 0)
        .map(|(i, _)| i)
        .collect();
    let mut out = Vec::with_capacity(changes.len());
    while let Some(i) = ready.pop_first() {
        if changes.contains_key(&i) {
            out.push(i);
        }
        for &next in dependents.get(i).map(Vec::as_slice).unwrap_or_default() {
            if let Some(w) = waiting.get_mut(next) {
                *w -= 1;
                if *w == 0 {
                    ready.insert(next);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
