//! One file per subcommand; each takes validated arguments and a `Config` and returns an
//! `Outcome` or a `cli::Error`.

pub mod apply;
pub mod comment;
pub mod completions;
pub mod drift;
pub mod graph;
pub mod history;
pub mod init;
pub mod plan;
pub mod schema;
pub mod show;
pub mod state;
pub mod status;
pub mod validate;
pub mod watch;

use std::path::Path;

use crate::cli::Error;
use crate::cli::config::Config;
use crate::evaluate::{Evaluation, evaluate};
use crate::load::Limits;
use crate::report::diagnostics;

/// Evaluates the manifests for a command that needs them valid: prints any diagnostics on
/// stderr and returns the evaluation only when there is no error.
pub fn evaluate_valid(
    dir: &Path,
    limits: &Limits,
    what: &str,
    config: &Config,
) -> Result<Option<Evaluation>, Error> {
    let evaluation = evaluate(dir, limits)?;
    if !evaluation.diagnostics.is_empty() {
        config.output.stderr(&diagnostics::human(
            &evaluation.diagnostics,
            config.stderr_style,
            &evaluation.redactor(),
        ));
    }
    if evaluation.has_errors() || evaluation.resolved.is_none() {
        let summary = diagnostics::summary(&evaluation.diagnostics).unwrap_or_default();
        config.output.stderr(&format!(
            "{}: {} is not valid ({summary}); {what}\n",
            config.stderr_style.error("error"),
            dir.display()
        ));
        return Ok(None);
    }
    Ok(Some(evaluation))
}

/// Takes the session's writer lock, warning when it was left by a process that died.
pub fn lock(
    session: &crate::reconcile::Session,
    command: &str,
    config: &Config,
) -> Result<crate::store::lock::WriterLock, Error> {
    let lock = session.lock(command, crate::provenance::host())?;
    if let Some(previous) = &lock.taken_over_from {
        config.output.stderr(&format!(
            "{}: took over the state lock left by {previous}, which is no longer running\n",
            config.stderr_style.warning("warning")
        ));
    }
    Ok(lock)
}

/// When the state file a read-only command looks at does not exist: the states found under
/// the current directory (a newcomer who applied `manifests/demo` from the repository root and
/// then runs `drover show 1` there), or where states live.
pub fn states_nearby() -> String {
    let mut found = Vec::new();
    find_states(Path::new("."), 3, &mut found);
    found.sort();
    match found.first() {
        Some(dir) => format!(
            "found {}: pass `--dir {}` (or `--state FILE`)",
            found
                .iter()
                .map(|d| d.join(".drover/state.redb").display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            dir.display()
        ),
        None => "a state lives beside the manifests it was applied from (DIR/.drover/state.redb): pass --dir DIR, or --state FILE".to_owned(),
    }
}

/// Manifest directories under `dir` (to `depth` levels) that hold a state file.
fn find_states(dir: &Path, depth: usize, found: &mut Vec<std::path::PathBuf>) {
    if dir.join(".drover").join("state.redb").is_file() {
        found.push(dir.strip_prefix(".").unwrap_or(dir).to_owned());
    }
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(std::result::Result::ok) {
        let name = entry.file_name();
        let hidden = name.to_string_lossy().starts_with('.');
        if !hidden && entry.file_type().is_ok_and(|t| t.is_dir()) {
            find_states(&entry.path(), depth - 1, found);
        }
        if found.len() >= 5 {
            return;
        }
    }
}

/// Plans a round; with `refresh`, gathers the hosts' facts again and probes the hosts for
/// drift first (recording what was found), so that the plan repairs what drifted. Facts
/// gathered are recorded only with `record_facts` (the caller holds the writer lock).
pub fn plan_round(
    session: &mut crate::reconcile::Session,
    dir: &Path,
    evaluation: Evaluation,
    source: crate::reconcile::Source<'_>,
    (refresh, record_facts): (bool, bool),
    config: &Config,
) -> Result<crate::reconcile::Round, Error> {
    let targets = match source {
        crate::reconcile::Source::Fresh(options) => options.targets.as_slice(),
        crate::reconcile::Source::Saved(_) => &[],
    };
    let mut evaluation = evaluation;
    settle_facts(
        session,
        dir,
        &mut evaluation,
        (refresh, record_facts),
        config,
    )?;
    let checked = if refresh {
        Some(probe_for_drift(session, dir, &evaluation, targets, config)?)
    } else {
        None
    };
    let mut round = session.plan_round(dir, evaluation, source)?;
    if checked.is_some() {
        round.plan.drift_checked = checked;
    }
    Ok(round)
}

/// Puts the hosts' facts into the evaluation (gathering those not recorded, or all with
/// `refresh`; recording them with `record`, when the writer lock is held) and says on stderr what was gathered, what could not be, and any problem the
/// real facts revealed in the templates.
pub fn settle_facts(
    session: &mut crate::reconcile::Session,
    dir: &Path,
    evaluation: &mut Evaluation,
    (refresh, record): (bool, bool),
    config: &Config,
) -> Result<(), Error> {
    let round = session.settle_facts(dir, evaluation, refresh, record)?;
    let warning = config.stderr_style.warning("warning");
    for (host, why) in &round.unreachable {
        config.output.stderr(&format!(
            "{warning}: cannot gather the facts of {host} ({}); what uses them is planned as \"may change\"\n",
            crate::report::style::printable(why)
        ));
    }
    for (host, why) in &round.stale {
        config.output.stderr(&format!(
            "{warning}: cannot gather the facts of {host} ({}); using those recorded earlier\n",
            crate::report::style::printable(why)
        ));
    }
    if !round.gathered.is_empty() {
        let plural = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        config.output.stderr(&format!(
            "gathered the facts of {} ({}, {})\n",
            plural(round.gathered.len() as u64, "host"),
            plural(round.contacts.commands, "command"),
            plural(round.contacts.connections, "new connection"),
        ));
    }
    if !round.unknown.is_empty() {
        let hosts: Vec<String> = round.unknown.iter().map(ToString::to_string).collect();
        config.output.stderr(&format!(
            "note: the facts of {} are not known here; what uses them may change\n",
            hosts.join(", ")
        ));
    }
    if !round.diagnostics.is_empty() {
        config.output.stderr(&diagnostics::human(
            &round.diagnostics,
            config.stderr_style,
            &evaluation.redactor(),
        ));
    }
    Ok(())
}

/// Probes the hosts for drift, records what was found, and says on stderr what the probe
/// found and could not see.
fn probe_for_drift(
    session: &mut crate::reconcile::Session,
    dir: &Path,
    evaluation: &Evaluation,
    targets: &[crate::plan::target::Target],
    config: &Config,
) -> Result<crate::plan::DriftChecked, Error> {
    let report = session.drift_round(dir, evaluation, targets)?;
    let redactor = evaluation.redactor();
    for host in &report.hosts {
        if let Some(error) = &host.error {
            config.output.stderr(&format!(
                "{}: cannot probe {} for drift: {}\n",
                config.stderr_style.warning("warning"),
                host.host,
                crate::report::style::printable(&redactor.redact(error))
            ));
        }
    }
    let unknown = report.instances.iter().filter(|i| {
        i.status == crate::drift::Status::Unknown
            && !report
                .hosts
                .iter()
                .any(|h| h.host == i.host && h.error.is_some())
    });
    for instance in unknown.take(10) {
        config.output.stderr(&format!(
            "{}: cannot tell whether {} drifted: {}\n",
            config.stderr_style.warning("warning"),
            instance.id,
            crate::report::style::printable(
                &redactor.redact(instance.error.as_deref().unwrap_or_default())
            )
        ));
    }
    config.output.stderr(&format!(
        "{}\n",
        redactor.redact(&crate::report::drift::summary(&report))
    ));
    Ok(crate::plan::DriftChecked {
        at: report.checked_at,
        fresh: true,
        unknown: report.summary.unknown,
        targets: report.targets.clone(),
    })
}
