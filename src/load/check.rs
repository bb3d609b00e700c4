//! Checks across documents: unique names, known references, no dependency cycles, selectors
//! that select something, and the instance limit.
//!
//! Every check runs even when an earlier one failed, so one pass reports everything. The
//! checks only read the decoded documents; `Locator` maps their origins back to spans.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::diagnostic::{Diagnostic, Location};
use crate::load::yaml::Node;
use crate::model::desired::{Desired, Host, HostDefaults, Origin, Workflow};
use crate::model::meta::{HostName, TaskName, WorkflowName};
use crate::source::JsonPointer;

/// Finds the YAML tree of a document so checks can point into it.
pub trait Locator {
    fn tree(&self, origin: &Origin) -> Option<&Node>;

    fn at(&self, origin: &Origin, pointer: &JsonPointer) -> Location {
        let span = self
            .tree(origin)
            .map(|t| t.locate(pointer))
            .unwrap_or_default();
        Location {
            file: origin.file.clone(),
            span,
            pointer: Some(pointer.clone()),
        }
    }
}

/// Names declared by documents (or tasks) that failed their own checks. They exist as far
/// as references are concerned, so one mistake is reported once, not again at every use.
#[derive(Debug, Default)]
pub struct Declared {
    pub hosts: BTreeSet<String>,
    pub workflows: BTreeSet<String>,
    /// Broken tasks by workflow name.
    pub tasks: BTreeMap<String, BTreeSet<String>>,
}

/// Limits that keep one desired state within what a small controller can hold.
#[derive(Debug, Clone, Copy)]
pub struct CheckLimits {
    pub max_tasks_per_workflow: usize,
    pub max_instances: usize,
}

/// Runs every cross-document check and builds `Desired` from what passed.
pub fn check(
    hosts: Vec<Host>,
    defaults: Vec<HostDefaults>,
    workflows: Vec<Workflow>,
    declared: &Declared,
    locator: &dyn Locator,
    limits: CheckLimits,
    out: &mut Vec<Diagnostic>,
) -> Desired {
    let mut desired = Desired::default();
    let name_ptr = JsonPointer::root().push("metadata").push("name");
    for host in hosts {
        if let Some(first) = desired.hosts.get(&host.name) {
            out.push(duplicate(
                "host",
                host.name.as_str(),
                locator.at(&host.origin, &name_ptr),
                locator.at(&first.origin, &name_ptr),
            ));
        } else {
            desired.hosts.insert(host.name.clone(), host);
        }
    }
    let mut unique_defaults: BTreeMap<String, HostDefaults> = BTreeMap::new();
    for found in defaults {
        if let Some(first) = unique_defaults.get(found.name.as_str()) {
            out.push(duplicate(
                "host defaults",
                found.name.as_str(),
                locator.at(&found.origin, &name_ptr),
                locator.at(&first.origin, &name_ptr),
            ));
        } else {
            unique_defaults.insert(found.name.to_string(), found);
        }
    }
    let defaults: Vec<HostDefaults> = unique_defaults.into_values().collect();
    crate::load::defaults::apply(&mut desired.hosts, &defaults, locator, out);
    for workflow in workflows {
        if let Some(first) = desired.workflows.get(&workflow.name) {
            out.push(duplicate(
                "workflow",
                workflow.name.as_str(),
                locator.at(&workflow.origin, &name_ptr),
                locator.at(&first.origin, &name_ptr),
            ));
        } else {
            desired.workflows.insert(workflow.name.clone(), workflow);
        }
    }
    for workflow in desired.workflows.values() {
        check_tasks(&desired, workflow, declared, locator, limits, out);
        check_workflow_refs(&desired, workflow, declared, locator, out);
    }
    check_workflow_cycles(&desired, locator, out);
    let instances = desired.instance_count();
    if instances > limits.max_instances {
        out.push(
            Diagnostic::error(
                "manifest::limit",
                format!("the manifests expand to {instances} task instances, more than the limit of {}", limits.max_instances),
            )
            .with_help("split the fleet across several manifest directories, or raise the limit with --max-instances"),
        );
    }
    desired
}

fn duplicate(what: &str, name: &str, here: Location, first: Location) -> Diagnostic {
    Diagnostic::error(
        "manifest::duplicate-name",
        format!("{what} `{name}` is defined twice"),
    )
    .at(here)
    .with_label("second definition")
    .with_related(first, "first defined here")
    .with_help(format!(
        "{what} names must be unique; rename or remove one of them"
    ))
}

fn check_tasks(
    desired: &Desired,
    workflow: &Workflow,
    declared: &Declared,
    locator: &dyn Locator,
    limits: CheckLimits,
    out: &mut Vec<Diagnostic>,
) {
    let tasks_ptr = JsonPointer::root().push("spec").push("tasks");
    if workflow.tasks.len() > limits.max_tasks_per_workflow {
        out.push(
            Diagnostic::error(
                "manifest::limit",
                format!("workflow `{}` has {} tasks, more than the limit of {}", workflow.name, workflow.tasks.len(), limits.max_tasks_per_workflow),
            )
            .at(locator.at(&workflow.origin, &tasks_ptr))
            .with_label("too many tasks")
            .with_help("split it into several workflows linked by `needs`, or raise the limit with --max-tasks"),
        );
    }
    let index = unique_tasks(workflow, locator, out);
    let names: Vec<&str> = workflow.tasks.iter().map(|t| t.name.as_str()).collect();
    let broken = declared.tasks.get(workflow.name.as_str());
    let mut edges: Vec<Edge> = Vec::new();
    for (i, task) in workflow.tasks.iter().enumerate() {
        if task.timeout.is_some_and(|t| t.as_duration().is_zero()) {
            out.push(
                Diagnostic::error(
                    "manifest::zero-timeout",
                    format!("task `{}` has a timeout of zero: it would be killed as it starts", task.name),
                )
                .at(locator.at(&task.origin, &task.origin.pointer.push("timeout")))
                .with_label("zero")
                .with_help("give the longest the task may take, such as `30s` or `10m`, or leave `timeout` out for no limit"),
            );
        }
        for (field, targets) in [("needs", &task.needs), ("triggeredBy", &task.triggered_by)] {
            for (j, target) in targets.iter().enumerate() {
                let pointer = task.origin.pointer.push(field).push(j);
                match index.get(target) {
                    Some(&to) => edges.push(Edge {
                        from: i,
                        to,
                        field,
                        pointer,
                    }),
                    None if broken.is_some_and(|b| b.contains(target.as_str())) => {}
                    None => out.push(
                        Diagnostic::error(
                            if field == "needs" {
                                "manifest::unknown-need"
                            } else {
                                "manifest::unknown-trigger"
                            },
                            format!(
                                "task `{}` {} `{target}`, which is not a task of workflow `{}`",
                                task.name,
                                verb(field),
                                workflow.name
                            ),
                        )
                        .at(locator.at(&task.origin, &pointer))
                        .with_label("unknown task")
                        .with_suggestion(
                            target.as_str(),
                            names.iter().copied().filter(|n| *n != task.name.as_str()),
                            if desired.workflows.keys().any(|w| w.as_str() == target.as_str()) {
                                format!("`{target}` is a workflow: to wait for it, list it under the workflow's `spec.needs`")
                            } else {
                                format!("the tasks of `{}` are: {}", workflow.name, quoted(&names))
                            },
                        ),
                    ),
                }
            }
        }
    }
    task_cycles(workflow, &names, &edges, locator, out);
}

/// Reports duplicate task names; returns each name's first position.
fn unique_tasks<'w>(
    workflow: &'w Workflow,
    locator: &dyn Locator,
    out: &mut Vec<Diagnostic>,
) -> BTreeMap<&'w TaskName, usize> {
    let mut index: BTreeMap<&TaskName, usize> = BTreeMap::new();
    for (i, task) in workflow.tasks.iter().enumerate() {
        if let Some(&first) = index.get(&task.name) {
            let here = locator.at(&task.origin, &task.origin.pointer.push("name"));
            let there = workflow
                .tasks
                .get(first)
                .map(|t| locator.at(&t.origin, &t.origin.pointer.push("name")));
            let mut d = Diagnostic::error(
                "manifest::duplicate-name",
                format!(
                    "task `{}` is defined twice in workflow `{}`",
                    task.name, workflow.name
                ),
            )
            .at(here)
            .with_label("second definition")
            .with_help("task names must be unique within a workflow; rename or remove one of them");
            if let Some(there) = there {
                d = d.with_related(there, "first defined here");
            }
            out.push(d);
        } else {
            index.insert(&task.name, i);
        }
    }
    index
}

/// Reports every cycle among a workflow's tasks, naming each edge of it.
fn task_cycles(
    workflow: &Workflow,
    names: &[&str],
    edges: &[Edge],
    locator: &dyn Locator,
    out: &mut Vec<Diagnostic>,
) {
    for cycle in find_cycles(workflow.tasks.len(), edges) {
        let path: Vec<&str> = cycle
            .iter()
            .filter_map(|e| edges.get(*e))
            .filter_map(|e| names.get(e.from).copied())
            .collect();
        let described = describe_cycle(&path);
        let mut locations = cycle.iter().filter_map(|e| edges.get(*e)).map(|edge| {
            let from = workflow.tasks.get(edge.from);
            let to = names.get(edge.to).copied().unwrap_or_default();
            let label = format!(
                "`{}` {} `{to}`",
                from.map(|t| t.name.as_str()).unwrap_or_default(),
                verb(edge.field)
            );
            (from.map(|t| locator.at(&t.origin, &edge.pointer)), label)
        });
        let Some((Some(first), first_label)) = locations.next() else {
            continue;
        };
        let mut d = Diagnostic::error(
            "manifest::cycle",
            format!(
                "tasks of workflow `{}` form a dependency cycle: {described}",
                workflow.name
            ),
        )
        .at(first)
        .with_label(first_label)
        .with_help("remove one of these `needs` or `triggeredBy` entries; a cycle can never start");
        for (location, label) in locations {
            if let Some(location) = location {
                d = d.with_related(location, label);
            }
        }
        out.push(d);
    }
}

fn verb(field: &str) -> &'static str {
    if field == "needs" {
        "needs"
    } else {
        "is triggered by"
    }
}

fn check_workflow_refs(
    desired: &Desired,
    workflow: &Workflow,
    declared: &Declared,
    locator: &dyn Locator,
    out: &mut Vec<Diagnostic>,
) {
    needed_workflows(desired, workflow, declared, locator, out);
    let unknown_host = named_hosts(desired, workflow, declared, locator, out);
    selection(desired, workflow, declared, unknown_host, locator, out);
}

/// Workflows named in `spec.needs` exist.
fn needed_workflows(
    desired: &Desired,
    workflow: &Workflow,
    declared: &Declared,
    locator: &dyn Locator,
    out: &mut Vec<Diagnostic>,
) {
    let spec = JsonPointer::root().push("spec");
    let workflow_names: Vec<&str> = desired
        .workflows
        .keys()
        .map(WorkflowName::as_str)
        .filter(|w| *w != workflow.name.as_str())
        .collect();
    for (j, needed) in workflow.needs.iter().enumerate() {
        if !desired.workflows.contains_key(needed) && !declared.workflows.contains(needed.as_str())
        {
            out.push(
                Diagnostic::error(
                    "manifest::unknown-workflow",
                    format!(
                        "workflow `{}` needs `{needed}`, which is not a workflow",
                        workflow.name
                    ),
                )
                .at(locator.at(&workflow.origin, &spec.push("needs").push(j)))
                .with_label("unknown workflow")
                .with_suggestion(
                    needed.as_str(),
                    workflow_names.iter().copied(),
                    if workflow_names.is_empty() {
                        format!("define `{needed}` with a `kind: Workflow` document, or remove it from `needs`")
                    } else {
                        format!("the other workflows are: {}", quoted(&workflow_names))
                    },
                ),
            );
        }
    }
}

/// Hosts named in `spec.hosts.names` exist; returns whether one does not.
fn named_hosts(
    desired: &Desired,
    workflow: &Workflow,
    declared: &Declared,
    locator: &dyn Locator,
    out: &mut Vec<Diagnostic>,
) -> bool {
    let spec = JsonPointer::root().push("spec");
    let listed: BTreeSet<&str> = workflow
        .hosts
        .names
        .iter()
        .flatten()
        .map(HostName::as_str)
        .collect();
    // A host already in the list is never the one the user meant instead.
    let host_names: Vec<&str> = desired
        .hosts
        .keys()
        .map(HostName::as_str)
        .filter(|h| !listed.contains(h))
        .collect();
    let mut unknown_host = false;
    for (j, name) in workflow.hosts.names.iter().flatten().enumerate() {
        if declared.hosts.contains(name.as_str()) {
            unknown_host = true;
        } else if !desired.hosts.contains_key(name) {
            unknown_host = true;
            out.push(
                Diagnostic::error(
                    "manifest::unknown-host",
                    format!(
                        "workflow `{}` selects host `{name}`, which is not defined",
                        workflow.name
                    ),
                )
                .at(locator.at(&workflow.origin, &spec.push("hosts").push("names").push(j)))
                .with_label("unknown host")
                .with_help(match crate::diagnostic::suggest(name.as_str(), host_names.iter().copied()) {
                    Some(near) => format!("did you mean `{near}`? Otherwise define `{name}` with a `kind: Host` document"),
                    None => format!("define `{name}` with a `kind: Host` document, or remove it here"),
                }),
            );
        }
    }
    unknown_host
}

/// Warnings about what the selector picks: nothing at all, or hosts a needed workflow skips.
fn selection(
    desired: &Desired,
    workflow: &Workflow,
    declared: &Declared,
    unknown_host: bool,
    locator: &dyn Locator,
    out: &mut Vec<Diagnostic>,
) {
    let spec = JsonPointer::root().push("spec");
    let selected: BTreeSet<&HostName> = desired.selected_hosts(workflow).map(|h| &h.name).collect();
    // With hosts that failed their own checks, what a selector matches is not known.
    let hosts_known = declared.hosts.is_empty();
    if selected.is_empty() && !unknown_host && hosts_known && !workflow.hosts.is_empty() {
        out.push(
            Diagnostic::warning(
                "manifest::selects-nothing",
                format!(
                    "workflow `{}` selects no host; it will not run anywhere",
                    workflow.name
                ),
            )
            .at(locator.at(&workflow.origin, &spec.push("hosts")))
            .with_label("matches no host")
            .with_help(
                "check `matchLabels` and `matchExpressions` against the hosts' `metadata.labels`",
            ),
        );
    }
    for (j, needed) in workflow.needs.iter().enumerate() {
        let Some(needed_workflow) = desired.workflows.get(needed) else {
            continue;
        };
        let there: BTreeSet<&HostName> = desired
            .selected_hosts(needed_workflow)
            .map(|h| &h.name)
            .collect();
        let missing: Vec<&str> = selected.difference(&there).map(|h| h.as_str()).collect();
        if !missing.is_empty() && hosts_known {
            out.push(
                Diagnostic::warning(
                    "manifest::need-not-on-host",
                    format!(
                        "workflow `{}` needs `{needed}`, but `{needed}` does not run on {}",
                        workflow.name,
                        quoted(&missing)
                    ),
                )
                .at(locator.at(&workflow.origin, &spec.push("needs").push(j)))
                .with_label("not ordered on those hosts")
                .with_help(format!(
                    "`needs` orders workflows per host; on those hosts `{}` runs without waiting",
                    workflow.name
                )),
            );
        }
    }
}

fn check_workflow_cycles(desired: &Desired, locator: &dyn Locator, out: &mut Vec<Diagnostic>) {
    let workflows: Vec<&Workflow> = desired.workflows.values().collect();
    let index: BTreeMap<&WorkflowName, usize> = workflows
        .iter()
        .enumerate()
        .map(|(i, w)| (&w.name, i))
        .collect();
    let mut edges = Vec::new();
    for (i, workflow) in workflows.iter().enumerate() {
        for (j, needed) in workflow.needs.iter().enumerate() {
            if let Some(&to) = index.get(needed) {
                let pointer = JsonPointer::root().push("spec").push("needs").push(j);
                edges.push(Edge {
                    from: i,
                    to,
                    field: "needs",
                    pointer,
                });
            }
        }
    }
    for cycle in find_cycles(workflows.len(), &edges) {
        let cycle_edges: Vec<&Edge> = cycle.iter().filter_map(|e| edges.get(*e)).collect();
        let path: Vec<&str> = cycle_edges
            .iter()
            .filter_map(|e| workflows.get(e.from))
            .map(|w| w.name.as_str())
            .collect();
        let mut parts = cycle_edges.iter().filter_map(|edge| {
            let from = workflows.get(edge.from)?;
            let to = workflows.get(edge.to)?;
            Some((
                locator.at(&from.origin, &edge.pointer),
                format!("`{}` needs `{}`", from.name, to.name),
            ))
        });
        let Some((first, label)) = parts.next() else {
            continue;
        };
        let mut d = Diagnostic::error(
            "manifest::cycle",
            format!(
                "workflows form a dependency cycle: {}",
                describe_cycle(&path)
            ),
        )
        .at(first)
        .with_label(label)
        .with_help("remove one of these `needs` entries; a cycle can never start");
        for (location, label) in parts {
            d = d.with_related(location, label);
        }
        out.push(d);
    }
}

/// A dependency edge: `from` must wait for `to`, declared at `pointer` under `field`.
struct Edge {
    from: usize,
    to: usize,
    field: &'static str,
    pointer: JsonPointer,
}

/// Every dependency cycle, as the edges that close it, in order, starting from its
/// lowest-numbered node so the report is deterministic.
fn find_cycles(nodes: usize, edges: &[Edge]) -> Vec<Vec<usize>> {
    let mut graph: DiGraph<(), usize> = DiGraph::new();
    let ids: Vec<NodeIndex> = (0..nodes).map(|_| graph.add_node(())).collect();
    for (e, edge) in edges.iter().enumerate() {
        if let (Some(&a), Some(&b)) = (ids.get(edge.from), ids.get(edge.to)) {
            graph.add_edge(a, b, e);
        }
    }
    let mut cycles = Vec::new();
    for component in tarjan_scc(&graph) {
        let members: BTreeSet<usize> = component.iter().map(|n| n.index()).collect();
        let Some(&start) = members.first() else {
            continue;
        };
        let self_loop = edges.iter().position(|e| e.from == start && e.to == start);
        if members.len() == 1 {
            if let Some(e) = self_loop {
                cycles.push(vec![e]);
            }
            continue;
        }
        if let Some(path) = path_back(start, &members, edges) {
            cycles.push(path);
        }
    }
    cycles.sort();
    cycles
}

/// Breadth-first search for the shortest edge path from `start` back to itself inside one
/// strongly connected component.
fn path_back(start: usize, members: &BTreeSet<usize>, edges: &[Edge]) -> Option<Vec<usize>> {
    let mut came_by: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for (e, edge) in edges
            .iter()
            .enumerate()
            .filter(|(_, e)| e.from == node && members.contains(&e.to))
        {
            if edge.to == start {
                let mut path = vec![e];
                let mut at = node;
                while at != start {
                    let back = *came_by.get(&at)?;
                    path.push(back);
                    at = edges.get(back)?.from;
                }
                path.reverse();
                return Some(path);
            }
            if edge.to != start && !came_by.contains_key(&edge.to) {
                came_by.insert(edge.to, e);
                queue.push_back(edge.to);
            }
        }
    }
    None
}

fn describe_cycle(path: &[&str]) -> String {
    let mut parts: Vec<String> = path.iter().map(|n| format!("`{n}`")).collect();
    if let Some(first) = path.first() {
        parts.push(format!("`{first}`"));
    }
    parts.join(" → ")
}

/// Names in backticks, each once (a workflow may list a name twice: that is reported
/// on its own).
fn quoted(names: &[&str]) -> String {
    let mut seen = std::collections::BTreeSet::new();
    names
        .iter()
        .filter(|n| seen.insert(**n))
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(from: usize, to: usize) -> Edge {
        Edge {
            from,
            to,
            field: "needs",
            pointer: JsonPointer::root(),
        }
    }

    #[test]
    fn cycles_name_every_node_in_order() {
        // 0 → 1 → 2 → 0, and 3 → 3, and 4 → 0 outside any cycle.
        let edges = vec![edge(0, 1), edge(1, 2), edge(2, 0), edge(3, 3), edge(4, 0)];
        let cycles = find_cycles(5, &edges);
        assert_eq!(cycles, vec![vec![0, 1, 2], vec![3]]);
    }

    #[test]
    fn acyclic_graphs_have_no_cycles() {
        let edges = vec![edge(0, 1), edge(1, 2), edge(0, 2)];
        assert!(find_cycles(3, &edges).is_empty());
    }

    #[test]
    fn the_shortest_cycle_through_the_first_node_is_reported() {
        // 0 → 1 → 0 and 0 → 2 → 3 → 0 share node 0.
        let edges = vec![edge(0, 2), edge(2, 3), edge(3, 0), edge(0, 1), edge(1, 0)];
        assert_eq!(find_cycles(4, &edges), vec![vec![3, 4]]);
    }
}
