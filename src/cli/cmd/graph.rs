//! `drover graph [DIR]`: the task-instance DAG in Graphviz DOT on stdout.

use std::path::Path;

use crate::cli::config::Config;
use crate::cli::{Error, Outcome};
use crate::graph::InstanceGraph;
use crate::load::Limits;

pub fn run(
    dir: &Path,
    hosts: &[String],
    workflows: &[String],
    limits: &Limits,
    config: &Config,
) -> Result<Outcome, Error> {
    let Some(evaluation) = super::evaluate_valid(dir, limits, "no graph drawn", config)? else {
        return Ok(Outcome::Invalid);
    };
    let Some(resolved) = evaluation.resolved.as_ref() else {
        return Ok(Outcome::Invalid);
    };
    let mut unknown = Vec::new();
    if let Some(desired) = &evaluation.desired {
        unknown.extend(
            hosts
                .iter()
                .filter(|h| !desired.hosts.keys().any(|k| k.as_str() == h.as_str()))
                .map(|h| format!("host `{h}`")),
        );
        unknown.extend(
            workflows
                .iter()
                .filter(|w| !desired.workflows.keys().any(|k| k.as_str() == w.as_str()))
                .map(|w| format!("workflow `{w}`")),
        );
    }
    if !unknown.is_empty() {
        config.output.stderr(&format!(
            "{}: no {} in {}\n",
            config.stderr_style.warning("warning"),
            unknown.join(", "),
            dir.display()
        ));
    }
    let graph = InstanceGraph::build(&resolved.instances);
    let dot = graph.to_dot(|id| {
        (hosts.is_empty() || hosts.iter().any(|h| h == id.host.as_str()))
            && (workflows.is_empty() || workflows.iter().any(|w| w == id.workflow.as_str()))
    });
    config.output.stdout(&dot);
    Ok(Outcome::Success)
}
