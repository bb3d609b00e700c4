//! `drover plan [DIR]`: what an apply would change, shown as text, JSON or Markdown, and
//! optionally saved for `drover apply FILE`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::cli::args::PlanFormat;
use crate::cli::config::{Config, StateSettings};
use crate::cli::{Error, Outcome};
use crate::clock;
use crate::instance::InstanceId;
use crate::load::Limits;
use crate::plan::change::{ChangeKind, Reason};
use crate::plan::saved::SavedPlan;
use crate::plan::target::Target;
use crate::plan::{Plan, PlanOptions, plan};
use crate::report::plan::{self as render, PlanView};
use crate::resolve::Resolved;
use crate::state::{InstanceDetail, detail_of};

/// Everything `plan` was asked.
#[derive(Debug)]
pub struct Request<'a> {
    pub dir: &'a Path,
    pub format: PlanFormat,
    pub out: Option<&'a Path>,
    pub targets: &'a [String],
    pub replace: &'a [String],
    pub force: bool,
    pub detailed_exitcode: bool,
    pub state: StateSettings,
    pub limits: Limits,
}

pub fn run(request: &Request<'_>, config: &Config) -> Result<Outcome, Error> {
    let options = PlanOptions {
        targets: parse_targets(request.targets)?,
        replace: parse_targets(request.replace)?,
        force: request.force,
    };
    let Some(evaluation) =
        super::evaluate_valid(request.dir, &request.limits, "nothing planned", config)?
    else {
        return Ok(Outcome::Invalid);
    };
    let Some(resolved) = evaluation.resolved.as_ref() else {
        return Ok(Outcome::Invalid);
    };
    // Saving a plan promises it can be applied: hold the writer lock while reading state,
    // as an apply would.
    let _lock = match request.out {
        Some(_) => Some(request.state.lock(config, "drover plan -o")?),
        None => None,
    };
    let store = request.state.store();
    let recorded = store.snapshot()?;
    let mut plan = plan(&resolved.instances, &recorded, &options);
    if !plan.unmatched.is_empty() {
        return Err(unmatched(&plan.unmatched));
    }
    let recorded_details = store.details(plan.changes.iter().map(|c| &c.id))?;
    note_undo(&mut plan, &recorded_details);
    crate::plan::order_removals(&mut plan, &recorded_details);
    let desired_details = desired_details(&plan, resolved);
    let view = PlanView {
        plan: &plan,
        desired: &desired_details,
        recorded: &recorded_details,
        redactor: &resolved.redactor,
    };
    let text = match request.format {
        PlanFormat::Text => render::text(&view, config.stdout_style),
        PlanFormat::Json => render::json(&view),
        PlanFormat::Markdown => render::markdown(&view),
    };
    config.output.stdout(&text);
    if let Some(out) = request.out {
        save(out, plan.clone(), request.dir)?;
        config
            .output
            .stderr(&format!("saved the plan to {}\n", out.display()));
    }
    let outcome = if request.detailed_exitcode && !plan.is_empty() {
        Outcome::Changes
    } else {
        Outcome::Success
    };
    // The process ends right after this: freeing 50,000 instances one by one would cost a
    // fifth of the run, and the OS reclaims it all at once anyway.
    std::mem::forget(recorded);
    std::mem::forget(evaluation);
    Ok(outcome)
}

pub fn parse_targets(texts: &[String]) -> Result<Vec<Target>, Error> {
    texts
        .iter()
        .map(|t| {
            Target::parse(t).map_err(|message| Error::Usage {
                message: format!("invalid target: {message}"),
                help: "examples: --target web-1/nginx/config, --target 'web-*/nginx/*', --target host=web-1, --target workflow=nginx".to_owned(),
            })
        })
        .collect()
}

pub fn unmatched(targets: &[String]) -> Error {
    let list = targets
        .iter()
        .map(|t| format!("`{t}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Error::Usage {
        message: format!("no instance matches {list}"),
        help:
            "check the spelling against `drover graph` or `drover state list`; nothing was planned"
                .to_owned(),
    }
}

/// Removals say whether they run an undo, which only the recorded details know.
pub fn note_undo(plan: &mut Plan, recorded: &BTreeMap<InstanceId, InstanceDetail>) {
    for change in plan
        .changes
        .iter_mut()
        .filter(|c| c.kind == ChangeKind::Remove)
    {
        let has_undo = recorded.get(&change.id).is_some_and(|d| d.undo.is_some());
        change.reasons = vec![Reason::NoLongerDesired { has_undo }];
    }
}

pub fn desired_details(plan: &Plan, resolved: &Resolved) -> BTreeMap<InstanceId, InstanceDetail> {
    let planned: std::collections::BTreeSet<&InstanceId> =
        plan.changes.iter().map(|c| &c.id).collect();
    resolved
        .instances
        .iter()
        .filter(|i| planned.contains(&i.id))
        .map(|i| (i.id.clone(), detail_of(i, &resolved.redactor)))
        .collect()
}

fn save(out: &Path, plan: Plan, dir: &Path) -> Result<(), Error> {
    // Absolute, so `drover apply FILE` finds the same manifests from any directory.
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let saved = SavedPlan::new(plan, dir.display().to_string(), clock::now());
    let text = serde_json::to_string_pretty(&saved).unwrap_or_default() + "\n";
    std::fs::write(out, text).map_err(|source| Error::Write {
        path: out.to_owned(),
        source,
    })
}
