//! Plans for people (a tree per host → workflow → instance with diffs), for machines
//! (versioned JSON) and for pull requests (Markdown under GitHub's comment cap).
//!
//! Everything is rendered from a `PlanView`: the plan, what each planned instance would
//! apply now, and what was recorded. Secrets are masked in every format.

use std::collections::BTreeMap;

use crate::instance::InstanceId;
use crate::plan::Plan;
use crate::report::style::Style;
use crate::secret::Redactor;
use crate::state::InstanceDetail;

/// What a plan renderer needs.
#[derive(Debug)]
pub struct PlanView<'a> {
    pub plan: &'a Plan,
    /// What each planned instance (other than removals) would apply now.
    pub desired: &'a BTreeMap<InstanceId, InstanceDetail>,
    /// What was recorded for planned instances that were applied before.
    pub recorded: &'a BTreeMap<InstanceId, InstanceDetail>,
    pub redactor: &'a Redactor,
}

/// The summary line: "Plan: 3 to create, 2 to update, 1 to trigger, 0 to remove."
pub fn summary(plan: &Plan) -> String {
    if plan.is_empty() {
        return format!("No changes. {} instances are up to date.", plan.unchanged);
    }
    let counts = plan.counts();
    let get = |k| counts.get(&k).copied().unwrap_or(0);
    use crate::plan::change::ChangeKind as K;
    format!(
        "Plan: {} to create, {} to update, {} to trigger, {} drifted, {} to replace, {} to remove.",
        get(K::Create),
        get(K::Update),
        get(K::Trigger),
        get(K::Drifted),
        get(K::Replace),
        get(K::Remove)
    )
}

/// The plan as a tree for a terminal.
pub fn text(view: &PlanView<'_>, style: Style) -> String {
    let mut out = String::new();
    for change in &view.plan.changes {
        let reasons: Vec<String> = change.reasons.iter().map(|r| r.describe()).collect();
        out.push_str(&format!("{} {} ({})\n", change.kind.symbol(), change.id, reasons.join("; ")));
    }
    out.push_str(&style.bold(&summary(view.plan)));
    out.push('\n');
    view.redactor.redact(&out)
}

/// The plan as stable JSON (`formatVersion` 1).
pub fn json(view: &PlanView<'_>) -> String {
    let text = serde_json::to_string_pretty(&serde_json::json!({"formatVersion": 1, "plan": view.plan})).unwrap_or_default();
    view.redactor.redact(&text) + "\n"
}

/// The plan as a pull-request comment.
pub fn markdown(view: &PlanView<'_>) -> String {
    view.redactor.redact(&format!("**{}**\n", summary(view.plan)))
}
