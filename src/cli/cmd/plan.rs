//! `drover plan [DIR]`: what an apply would change, shown as text, JSON or Markdown, and
//! optionally saved for `drover apply FILE`.

use std::path::Path;

use crate::cli::args::PlanFormat;
use crate::cli::config::{Config, StateSettings};
use crate::cli::{Error, Outcome};
use crate::clock;
use crate::load::Limits;
use crate::plan::saved::SavedPlan;
use crate::plan::target::Target;
use crate::plan::{Plan, PlanOptions};
use crate::reconcile::{self, Session, Source};
use crate::report::plan as render;

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
    pub refresh: bool,
    /// Plan against a daemon's `/state` or a snapshot file instead of the state file.
    pub state_from: Option<&'a str>,
    pub state: StateSettings,
    pub limits: Limits,
}

pub fn run(request: &Request<'_>, config: &Config) -> Result<Outcome, Error> {
    let options = PlanOptions {
        targets: parse_targets(request.targets)?,
        replace: parse_targets(request.replace)?,
        force: request.force,
        repair: crate::plan::RepairDrift::WarnAndFix,
    };
    let Some(evaluation) =
        super::evaluate_valid(request.dir, &request.limits, "nothing planned", config)?
    else {
        return Ok(Outcome::Invalid);
    };
    let mut session = Session::new(reconcile::Settings {
        state: request.state.path.clone(),
        lock_timeout: request.state.lock_timeout,
        ssh: crate::cli::config::ssh_defaults(false)?,
        parallelism: 1,
        per_host: 1,
        fail_fast: false,
    })?;
    if let Some(source) = request.state_from {
        let source = crate::cli::state_from::Source::parse(source);
        let token = crate::cli::config::api_token();
        let (snapshot, from) = crate::cli::state_from::fetch(&source, token.as_deref())?;
        config.output.stderr(&format!(
            "planning against the state from {from}, as of {}\n",
            snapshot.taken_at
        ));
        // A saved snapshot may be old: the fleet has moved on since, and the plan with it.
        let age_hours = (clock::now().0 - snapshot.taken_at.0) / 3_600_000;
        if age_hours >= 1 {
            config.output.stderr(&format!(
                "{}: that snapshot is {age_hours} h old; `drover state pull` a fresh one, or plan against the daemon's URL\n",
                config.stderr_style.warning("warning")
            ));
        }
        session.read_snapshot(snapshot);
    }
    // Saving a plan promises it can be applied: hold the writer lock while reading state,
    // as an apply would; so does a refresh, which records what it found. (Neither goes
    // with --state-from.)
    let lock = match (request.out, request.refresh) {
        (Some(_), _) => Some(super::lock(&session, "drover plan -o", config)?),
        (None, true) => Some(super::lock(&session, "drover plan --refresh", config)?),
        (None, false) => None,
    };
    // Facts gathered under the lock are recorded; without it they serve this plan only.
    let locked = lock.is_some();
    let round = super::plan_round(
        &mut session,
        request.dir,
        evaluation,
        Source::Fresh(&options),
        (request.refresh, locked),
        config,
    )?;
    let view = round.view();
    let text = match request.format {
        PlanFormat::Text => render::text(&view, config.stdout_style),
        PlanFormat::Json => render::json(&view),
        PlanFormat::Markdown => render::markdown(&view),
    };
    config.output.stdout(&text);
    if let Some(out) = request.out {
        save(out, round.plan.clone(), request.dir)?;
        config
            .output
            .stderr(&format!("saved the plan to {}\n", out.display()));
    }
    let blind = round
        .plan
        .drift_checked
        .as_ref()
        .is_some_and(|c| c.fresh && c.unknown > 0);
    // A refresh that could not see everything is an error, as `drift` says: the plan
    // cannot promise the hosts it did not see.
    let outcome = if blind {
        Outcome::Failed
    } else if request.detailed_exitcode && !round.plan.is_empty() {
        Outcome::Changes
    } else {
        Outcome::Success
    };
    // The process ends right after this: freeing 50,000 instances one by one would cost a
    // fifth of the run, and the OS reclaims it all at once anyway.
    std::mem::forget(round);
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

fn save(out: &Path, plan: Plan, dir: &Path) -> Result<(), Error> {
    // Absolute, so `drover apply FILE` finds the same manifests from any directory.
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let saved = SavedPlan::new(plan, dir.display().to_string(), clock::now());
    let text = serde_json::to_string_pretty(&saved).map_err(|e| Error::Write {
        path: out.to_owned(),
        source: std::io::Error::other(e),
    })? + "\n";
    std::fs::write(out, text).map_err(|source| Error::Write {
        path: out.to_owned(),
        source,
    })
}
