//! `drover status [DIR]`: per host, how its instances stand, the last run that touched it and
//! the last drift check. Reads the manifests and the state file (recorded host facts
//! included); contacts no host.

use crate::cli::args::{Format, StatusArgs};
use crate::cli::config::{Config, StateSettings};
use crate::cli::{Error, Outcome};
use crate::load::Limits;
use crate::report::status;

pub fn run(request: &StatusArgs, config: &Config) -> Result<Outcome, Error> {
    let limits: Limits = (&request.limits).into();
    let Some(mut evaluation) =
        super::evaluate_valid(&request.dir, &limits, "no status computed", config)?
    else {
        return Ok(Outcome::Invalid);
    };
    let settings = StateSettings::new(&request.state, &request.dir)?;
    let store = settings.store();
    // The recorded facts decide `when` here (no host is contacted for missing ones).
    if evaluation
        .resolved
        .as_ref()
        .is_some_and(|r| !r.facts_wanted.is_empty())
    {
        let facts = store
            .facts()?
            .into_iter()
            .map(|(h, g)| (h, g.facts))
            .collect();
        crate::evaluate::with_facts(&mut evaluation, facts);
    }
    let (Some(resolved), Some(desired)) = (&evaluation.resolved, &evaluation.desired) else {
        return Ok(Outcome::Invalid);
    };
    let recorded = store.snapshot()?;
    let runs = store.runs_now()?;
    let drift = store.last_drift_report()?;
    let hosts: Vec<_> = desired.hosts.keys().cloned().collect();
    let table = status::compute(
        &resolved.instances,
        &hosts,
        &recorded,
        &runs,
        drift.as_ref(),
    );
    let text = match request.format {
        Format::Human => status::text(&table, drift.as_ref()),
        Format::Json => status::json(&table, drift.as_ref()),
    };
    config.output.stdout(&evaluation.redactor().redact(&text));
    Ok(Outcome::Success)
}
