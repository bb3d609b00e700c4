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
    if let Some(source) = &request.state_from {
        return recorded_elsewhere(request, source, config);
    }
    let limits: Limits = (&request.limits).into();
    let Some(mut evaluation) =
        super::evaluate_valid(&request.dir, &limits, "nothing probed", config)?
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
    super::settle_facts(
        &mut session,
        &request.dir,
        &mut evaluation,
        (false, true),
        config,
    )?;
    let report = session.drift_round(&request.dir, &evaluation, &targets)?;
    session.close();
    let text = match request.format {
        PlanFormat::Text => render::text(&report, config.stdout_style),
        PlanFormat::Json => render::json(&report),
        PlanFormat::Markdown => render::markdown(&report),
    };
    config.output.stdout(&evaluation.redactor().redact(&text));
    Ok(outcome(&report, request.detailed_exitcode))
}

fn outcome(report: &crate::drift::DriftReport, detailed_exitcode: bool) -> Outcome {
    if report.has_errors() {
        Outcome::Failed
    } else if report.has_drift() && detailed_exitcode {
        Outcome::Changes
    } else {
        Outcome::Success
    }
}

/// `--state-from`: the drift report a daemon recorded last (it probes on its timer, from
/// where the hosts are reachable); nothing probed, nothing written.
fn recorded_elsewhere(
    request: &DriftArgs,
    source: &str,
    config: &Config,
) -> Result<Outcome, Error> {
    // The report is the daemon's, about the manifests it follows: no directory is read.
    if request.dir != std::path::Path::new(".") {
        return Err(Error::Usage {
            message: format!(
                "{} would not be read: with --state-from, the report is the one the daemon recorded for its own manifests",
                request.dir.display()
            ),
            help: "leave the directory out with --state-from, or run `drover drift DIR` where the hosts are reachable".to_owned(),
        });
    }
    let source = crate::cli::state_from::Source::parse(source);
    let token = crate::cli::config::api_token();
    let (snapshot, from) = crate::cli::state_from::fetch(&source, token.as_deref())?;
    let Some(report) = snapshot.last_drift_report else {
        return Err(Error::Usage {
            message: format!("the state {from} served holds no drift check yet"),
            help: "the daemon probes every --drift-interval (5 min by default; 0 turns it off); run `drover drift` where the hosts are reachable to probe now".to_owned(),
        });
    };
    config.output.stderr(&format!(
        "the drift check {from} recorded at {}\n",
        report.checked_at
    ));
    let text = match request.format {
        PlanFormat::Text => render::text(&report, config.stdout_style),
        PlanFormat::Json => render::json(&report),
        PlanFormat::Markdown => render::markdown(&report),
    };
    config.output.stdout(&text);
    Ok(outcome(&report, request.detailed_exitcode))
}
