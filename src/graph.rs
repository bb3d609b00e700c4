//! `InstanceGraph`: the DAG of resolved instances, and its DOT rendering for `drover graph`.
//!
//! Edges point from an instance to what must happen before it: `needs` (solid) and
//! `triggeredBy` (dashed). Cycles cannot occur here: `load::check` rejected them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::instance::InstanceId;
use crate::resolve::{Action, ResolvedInstance};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeKind {
    Needs,
    TriggeredBy,
}

/// Instances as a petgraph graph; node weights index into the instance list.
#[derive(Debug)]
pub struct InstanceGraph<'a> {
    pub graph: DiGraph<&'a ResolvedInstance, EdgeKind>,
    pub index: BTreeMap<&'a InstanceId, NodeIndex>,
}

impl<'a> InstanceGraph<'a> {
    pub fn build(instances: &'a [ResolvedInstance]) -> InstanceGraph<'a> {
        let mut graph = DiGraph::with_capacity(instances.len(), instances.len());
        let index: BTreeMap<&InstanceId, NodeIndex> = instances
            .iter()
            .map(|i| (&i.id, graph.add_node(i)))
            .collect();
        for instance in instances {
            let Some(&from) = index.get(&instance.id) else {
                continue;
            };
            let edges = instance.needs.iter().map(|d| (d, EdgeKind::Needs)).chain(
                instance
                    .triggered_by
                    .iter()
                    .map(|d| (d, EdgeKind::TriggeredBy)),
            );
            for (dependency, kind) in edges {
                if let Some(&to) = index.get(dependency) {
                    graph.add_edge(from, to, kind);
                }
            }
        }
        InstanceGraph { graph, index }
    }

    /// DOT text: one cluster per host, instances labelled `workflow/task` and their kind.
    pub fn to_dot(&self, keep: impl Fn(&InstanceId) -> bool) -> String {
        let mut by_host: BTreeMap<&str, Vec<&ResolvedInstance>> = BTreeMap::new();
        for instance in self.graph.node_weights().filter(|i| keep(&i.id)) {
            by_host
                .entry(instance.id.host.as_str())
                .or_default()
                .push(instance);
        }
        let mut out = String::from(
            "digraph drover {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
        );
        for (host, instances) in &by_host {
            let _ = writeln!(
                out,
                "  subgraph \"cluster_{host}\" {{\n    label=\"{host}\";"
            );
            for instance in instances {
                let _ = writeln!(
                    out,
                    "    \"{}\" [label=\"{}/{}\\n{}\"];",
                    instance.id,
                    instance.id.workflow,
                    instance.id.task_part(),
                    kind_name(&instance.action)
                );
            }
            out.push_str("  }\n");
        }
        for edge in self.graph.raw_edges() {
            let (Some(from), Some(to)) = (
                self.graph.node_weight(edge.source()),
                self.graph.node_weight(edge.target()),
            ) else {
                continue;
            };
            if !keep(&from.id) || !keep(&to.id) {
                continue;
            }
            // Drawn in execution order: the dependency points at what waits for it.
            let attrs = match edge.weight {
                EdgeKind::Needs => "",
                EdgeKind::TriggeredBy => " [style=dashed, label=\"triggers\"]",
            };
            let _ = writeln!(out, "  \"{}\" -> \"{}\"{attrs};", to.id, from.id);
        }
        out.push_str("}\n");
        out
    }
}

fn kind_name(action: &Action) -> &'static str {
    match action {
        Action::Run { .. } => "run",
        Action::File { .. } => "file",
        Action::Directory { .. } => "directory",
        Action::Link { .. } => "link",
        Action::Line { .. } => "line",
        Action::Block { .. } => "block",
        Action::Package { .. } => "package",
        Action::Service { .. } => "service",
        Action::Sysctl { .. } => "sysctl",
        Action::Cron { .. } => "cron",
        Action::User(_) => "user",
        Action::Group(_) => "group",
        Action::Archive { .. } => "archive",
    }
}
