//! `drover validate [DIR]`: load and resolve, report every diagnostic, exit 0 or 1.

use std::path::Path;

use crate::cli::args::Format;
use crate::cli::config::Config;
use crate::cli::{Error, Outcome};
use crate::evaluate::{Evaluation, evaluate};
use crate::load::Limits;
use crate::report::diagnostics;

pub fn run(dir: &Path, format: Format, limits: &Limits, config: &Config) -> Result<Outcome, Error> {
    let evaluation = evaluate(dir, limits)?;
    let redactor = evaluation.redactor();
    match format {
        Format::Json => config
            .output
            .stdout(&diagnostics::json(&evaluation.diagnostics, &redactor)),
        Format::Human => {
            if !evaluation.diagnostics.is_empty() {
                config.output.stderr(&diagnostics::human(
                    &evaluation.diagnostics,
                    config.stderr_style,
                    &redactor,
                ));
            }
            if evaluation.has_errors() {
                let summary = diagnostics::summary(&evaluation.diagnostics).unwrap_or_default();
                let line = format!(
                    "{}: {} is not valid: {summary}\n",
                    config.stderr_style.error("error"),
                    dir.display()
                );
                config.output.stderr(&line);
            } else {
                config
                    .output
                    .stdout(&format!("{}\n", success_line(dir, &evaluation, config)));
            }
            if let Some(note) = facts_note(&evaluation) {
                config.output.stderr(&note);
            }
        }
    }
    Ok(if evaluation.has_errors() {
        Outcome::Invalid
    } else {
        Outcome::Success
    })
}

fn success_line(dir: &Path, evaluation: &Evaluation, config: &Config) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let (hosts, workflows) = evaluation
        .desired
        .as_ref()
        .map_or((0, 0), |d| (d.hosts.len(), d.workflows.len()));
    let instances = evaluation
        .resolved
        .as_ref()
        .map_or(0, |r| r.instances.len());
    let warnings = diagnostics::summary(&evaluation.diagnostics)
        .map(|w| format!(" ({w})"))
        .unwrap_or_default();
    format!(
        "{} {}: {}, {}, {}, {}{warnings}",
        config.stdout_style.success("valid"),
        dir.display(),
        plural(evaluation.files, "file"),
        plural(hosts, "host"),
        plural(workflows, "workflow"),
        plural(instances, "task instance"),
    )
}

/// `validate` contacts no host: templates that use `host.facts` were rendered with
/// stand-ins and every `when` was taken as holding, so every task was checked (decision
/// 0018). Says so, once.
fn facts_note(evaluation: &Evaluation) -> Option<String> {
    let wanted = &evaluation.resolved.as_ref()?.facts_wanted;
    if wanted.is_empty() {
        return None;
    }
    let n = wanted.len();
    Some(format!(
        "note: host facts were not gathered (validate contacts no host): templates that use `host.facts` on {n} host{} were checked with stand-in facts, and every `when` was taken as holding; what renders only with the real facts is judged when `plan` gathers them\n",
        if n == 1 { "" } else { "s" }
    ))
}
