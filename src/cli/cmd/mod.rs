//! One file per subcommand; each takes validated arguments and a `Config` and returns an
//! `Outcome` or a `cli::Error`.

pub mod apply;
pub mod completions;
pub mod graph;
pub mod history;
pub mod init;
pub mod plan;
pub mod schema;
pub mod show;
pub mod state;
pub mod validate;

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
    let lock = session.lock(command, crate::cli::config::hostname())?;
    if let Some(previous) = &lock.taken_over_from {
        config.output.stderr(&format!(
            "{}: took over the state lock left by {previous}, which is no longer running\n",
            config.stderr_style.warning("warning")
        ));
    }
    Ok(lock)
}
