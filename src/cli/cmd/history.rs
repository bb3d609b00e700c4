//! `drover history`: past runs, newest first.

use std::fmt::Write as _;

use crate::cli::args::Format;
use crate::cli::config::{Config, StateSettings};
use crate::cli::{Error, Outcome};
use crate::run::RunRecord;

pub fn run(
    settings: &StateSettings,
    limit: usize,
    format: Format,
    config: &Config,
) -> Result<Outcome, Error> {
    if !settings.store().exists()? && format == Format::Human {
        config.output.stdout(&format!(
            "no runs recorded: there is no state file at {}\n",
            settings.path.display()
        ));
        config.output.stderr(&format!(
            "{}\n",
            config
                .stderr_style
                .help(&format!("help: {}", super::states_nearby()))
        ));
        return Ok(Outcome::Success);
    }
    let runs: Vec<RunRecord> = settings
        .store()
        .runs_now()?
        .into_iter()
        .take(limit)
        .collect();
    let text = match format {
        Format::Json => crate::report::runs::history_json(&runs),
        Format::Human if runs.is_empty() => {
            format!("no runs recorded in {}\n", settings.path.display())
        }
        Format::Human => table(&runs),
    };
    config.output.stdout(&text);
    Ok(Outcome::Success)
}

/// One line per run; who ran it (`user@host`) and the commit (`+dirty` when the manifests
/// differed from it) are `-` when not recorded.
fn table(runs: &[RunRecord]) -> String {
    let printable = crate::report::style::printable;
    let rows: Vec<(String, String)> = runs
        .iter()
        .map(|run| {
            (
                run.who()
                    .map_or_else(|| "-".to_owned(), |w| printable(&w).into_owned()),
                run.short_commit().unwrap_or_else(|| "-".to_owned()),
            )
        })
        .collect();
    let by = rows
        .iter()
        .map(|(by, _)| by.chars().count())
        .fold(2, usize::max);
    let commit = rows.iter().map(|(_, c)| c.len()).fold(6, usize::max);
    let mut out = format!(
        "{:<4}  {:11}  {:20}  {:>9}  {:>7}  {:>6}  {:>7}  {:by$}  {:commit$}  COMMAND\n",
        "RUN", "STATUS", "STARTED", "DURATION", "CHANGED", "FAILED", "SKIPPED", "BY", "COMMIT"
    );
    for (run, (who, short)) in runs.iter().zip(&rows) {
        let duration = run
            .finished_at
            .map(|f| format!("{:.1}s", duration_secs(f.0 - run.started_at.0)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<4}  {:11}  {:20}  {duration:>9}  {:>7}  {:>6}  {:>7}  {who:by$}  {short:commit$}  {}",
            run.id.to_string(),
            run.status.as_str(),
            run.started_at.to_string(),
            run.changed,
            run.failed,
            run.skipped,
            printable(&run.command)
        );
    }
    out
}

#[expect(
    clippy::cast_precision_loss,
    reason = "run durations are far below 2^52 ms"
)]
pub fn duration_secs(ms: i64) -> f64 {
    ms.max(0) as f64 / 1000.0
}
