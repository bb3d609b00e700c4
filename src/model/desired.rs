//! `Desired`: the validated desired state, what every later stage works from.
//!
//! Only `load` builds it, after every check passed; its invariants (unique names, known
//! references, no cycles, exactly one kind per task) are not re-checked downstream.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::duration::HumanDuration;
use crate::model::host::{HostDefaultsSpec, HostSpec};
use crate::model::meta::{DefaultsName, HostName, TaskName, WorkflowName};
use crate::model::selector::HostSelector;
use crate::model::task_kind::{Command, TaskKind};
use crate::model::vars::Vars;
use crate::model::workflow::{DriftPolicy, ForEach, Retries, Rollout};
use crate::source::{JsonPointer, SourceFile};

/// Where a host, workflow or task was declared: the file, the document in it, and the
/// pointer within the document. Later stages use it to locate their own diagnostics.
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: Arc<SourceFile>,
    pub document: usize,
    pub pointer: JsonPointer,
}

impl Origin {
    #[must_use]
    pub fn push(&self, token: impl std::fmt::Display) -> Origin {
        Origin {
            file: self.file.clone(),
            document: self.document,
            pointer: self.pointer.push(token),
        }
    }
}

/// The whole validated desired state.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub hosts: BTreeMap<HostName, Host>,
    pub workflows: BTreeMap<WorkflowName, Workflow>,
}

#[derive(Debug, Clone)]
pub struct Host {
    pub name: HostName,
    pub labels: BTreeMap<String, String>,
    /// The host's own settings, completed from the `HostDefaults` that match it.
    pub spec: HostSpec,
    /// Vars the host takes from `HostDefaults` documents (names it does not set itself).
    pub inherited: Vec<VarLayer>,
    pub origin: Origin,
}

/// Vars declared together, with where they were declared (`origin` points at the `vars`
/// mapping): secret files are read relative to that file, and problems are located there.
#[derive(Debug, Clone)]
pub struct VarLayer {
    pub vars: Vars,
    pub origin: Origin,
}

/// A `HostDefaults` document, once decoded.
#[derive(Debug, Clone)]
pub struct HostDefaults {
    pub name: DefaultsName,
    pub spec: HostDefaultsSpec,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: WorkflowName,
    pub labels: BTreeMap<String, String>,
    pub hosts: HostSelector,
    pub needs: Vec<WorkflowName>,
    pub vars: Vars,
    pub rollout: Option<Rollout>,
    pub tasks: Vec<Task>,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub name: TaskName,
    /// Vars of this task alone; they override every other var of the same name.
    pub vars: Vars,
    /// One instance per item, when set.
    pub for_each: Option<ForEach>,
    pub needs: Vec<TaskName>,
    pub triggered_by: Vec<TaskName>,
    pub check: Option<Command>,
    pub undo: Option<Command>,
    pub timeout: Option<HumanDuration>,
    pub retries: Option<Retries>,
    pub drift: DriftPolicy,
    pub r#become: Option<String>,
    /// The facts a host must have for the task to run there (`when.facts`).
    pub when: Option<crate::model::workflow::FactConditions>,
    pub kind: TaskKind,
    pub origin: Origin,
}

impl Desired {
    /// The hosts a workflow runs on, in name order.
    pub fn selected_hosts<'a>(
        &'a self,
        workflow: &'a Workflow,
    ) -> impl Iterator<Item = &'a Host> + 'a {
        self.hosts
            .values()
            .filter(|h| workflow.hosts.matches(&h.name, &h.labels))
    }

    /// Number of task instances this desired state expands to.
    pub fn instance_count(&self) -> usize {
        self.workflows
            .values()
            .map(|w| self.selected_hosts(w).count() * w.tasks.len())
            .sum()
    }
}
