//! `drover drift [DIR]`: probe the hosts, show what differs from what was applied, record
//! the report; exit 0 (no drift), 2 (drift, with `--detailed-exitcode`) or 1 (a host or an
//! instance could not be probed).

use crate::cli::args::{DriftArgs, PlanFormat};
use crate::cli::config::{Config, StateSettings};
use crate::cli::{Error, Outcome};
use crate::load::Limits;
use crate::reconcile::{self, Session};
use crate::report::drift as render;

pub fn run(request: &DriftArgs, config: &Config) -> Result<Outcome, Error> {
    let targets = super::plan::parse_targets(&request.targets)?;
    let limits: Limits = (&request.limits).into();
    let Some(evaluation) = super::evaluate_valid(&request.dir, &limits, "nothing probed", config)?
    else {
        return Ok(Outcome::Invalid);
    };
    let state = StateSettings::new(&request.state, &request.dir)?;
    let mut session = Session::new(reconcile::Settings {
        state: state.path.clone(),
        lock_timeout: state.lock_timeout,
        ssh: crate::cli::config::ssh_defaults(false)?,
        parallelism: request.parallelism as usize,
        per_host: 1,
        fail_fast: false,
    })?;
    // The report and the findings are written to the state file: one writer at a time.
    let _lock = super::lock(&session, "drover drift", config)?;
    let report = session.drift_round(&request.dir, &evaluation, &targets)?;
    session.close();
    let text = match request.format {
        PlanFormat::Text => render::text(&report, config.stdout_style),
        PlanFormat::Json => render::json(&report),
        PlanFormat::Markdown => render::markdown(&report),
    };
    config.output.stdout(&evaluation.redactor().redact(&text));
    Ok(if report.has_errors() {
        Outcome::Failed
    } else if report.has_drift() && request.detailed_exitcode {
        Outcome::Changes
    } else {
        Outcome::Success
    })
}
