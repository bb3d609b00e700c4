//! The `Workflow` kind: a DAG of tasks applied to the hosts a selector picks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::facts::FactName;
use crate::model::duration::HumanDuration;
use crate::model::meta::{Metadata, TaskName, WorkflowName};
use crate::model::selector::HostSelector;
use crate::model::task_kind::{
    ArchiveSpec, BlockSpec, Command, CronSpec, DirectorySpec, FileSpec, GroupSpec, LineSpec,
    LinkSpec, PackageSpec, RunSpec, ServiceSpec, SysctlSpec, UserSpec,
};
use crate::model::vars::Vars;

/// A `Workflow` document.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "drover Workflow")]
pub struct WorkflowDocument {
    pub api_version: super::ApiVersion,
    pub kind: WorkflowKind,
    pub metadata: Metadata<WorkflowName>,
    pub spec: WorkflowSpec,
}

/// The `kind` of a `Workflow` document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum WorkflowKind {
    Workflow,
}

/// `spec` of a `Workflow`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkflowSpec {
    /// Which hosts this workflow runs on.
    pub hosts: HostSelector,
    /// Workflows that must be converged on a host before this one starts there.
    #[serde(default)]
    pub needs: Vec<WorkflowName>,
    /// Variables templates see; host variables override them.
    #[serde(default)]
    pub vars: Vars,
    /// Apply to hosts in batches and stop when too many fail.
    pub rollout: Option<Rollout>,
    /// The tasks, each run once per selected host.
    #[schemars(length(min = 1))]
    pub tasks: Vec<TaskSpec>,
}

/// `rollout`: hosts are applied batch by batch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollout {
    /// Hosts per batch: a count (`2`) or a share of the selected hosts (`"25%"`).
    pub batch: BatchSize,
    /// Failed hosts tolerated before the rollout stops (default 0).
    #[serde(default)]
    pub max_failures: u32,
}

/// A batch size: a count of hosts, or a percentage of them such as `"25%"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum BatchSize {
    Count(#[schemars(range(min = 1))] u32),
    Percent(#[schemars(regex(pattern = r"^(100|[1-9][0-9]?)%$"))] String),
}

/// What to do when a probe finds a task's host state differs from what was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DriftPolicy {
    /// Never probe this task.
    Ignore,
    /// Report the drift and plan its repair (the default).
    #[default]
    Warn,
    /// Report it and plan its repair; `drover watch` also repairs it on its own.
    Fix,
}

/// `retries`: how often and how patiently a failing task is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retries {
    /// Attempts in all, the first included.
    #[schemars(range(min = 1, max = 100))]
    pub attempts: u32,
    /// Delay before the second attempt; it doubles (with jitter) after each failure.
    #[serde(default = "default_backoff")]
    pub backoff: HumanDuration,
}

fn default_backoff() -> HumanDuration {
    HumanDuration::from_duration(std::time::Duration::from_secs(1))
}

/// One task of a workflow. Exactly one of `run`, `file`, `directory`, `link`, `line`,
/// `block`, `package`, `service`, `sysctl`, `cron`, `user`, `group` or `archive` is set; the
/// loader checks it and turns the thirteen optional
/// fields into a `TaskKind`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskSpec {
    pub name: TaskName,
    /// Tasks of this workflow that must succeed first.
    #[serde(default)]
    pub needs: Vec<TaskName>,
    /// Variables for this task's templates; they override workflow, host and defaults
    /// variables of the same name.
    #[serde(default)]
    pub vars: Vars,
    /// One instance per item: a list, a map, or `{{ expression }}` that yields one. Templates
    /// see the item as `item` (for a map, `item.key` and `item.value`); instance ids carry the
    /// item's key: `web-1/nginx/vhost[api]`.
    pub for_each: Option<ForEach>,
    /// Tasks of this workflow whose change, in the same apply, makes this task run.
    #[serde(default)]
    pub triggered_by: Vec<TaskName>,
    /// Drift probe: a read-only command `drover drift` runs on the host; exit 0 means the
    /// host is still as applied.
    pub check: Option<Command>,
    /// Run when the task is removed from the manifests.
    pub undo: Option<Command>,
    /// Kill the task after this long.
    pub timeout: Option<HumanDuration>,
    pub retries: Option<Retries>,
    #[serde(default)]
    pub drift: DriftPolicy,
    /// Run this task as this user through `sudo -n` (overrides the host's `become`).
    pub r#become: Option<String>,
    /// Limit the task to the hosts whose facts match; elsewhere it has no instance.
    pub when: Option<When>,
    /// Run a command.
    pub run: Option<RunSpec>,
    /// Manage a file.
    pub file: Option<FileSpec>,
    /// Manage a directory.
    pub directory: Option<DirectorySpec>,
    /// Manage a symbolic link.
    pub link: Option<LinkSpec>,
    /// Manage one line of a file.
    pub line: Option<LineSpec>,
    /// Manage a marked block of lines in a file.
    pub block: Option<BlockSpec>,
    /// Install or remove packages.
    pub package: Option<PackageSpec>,
    /// Manage a service (systemd or OpenRC).
    pub service: Option<ServiceSpec>,
    /// Set and persist a kernel parameter.
    pub sysctl: Option<SysctlSpec>,
    /// Manage a named cron entry.
    pub cron: Option<CronSpec>,
    /// Manage a local user account.
    pub user: Option<UserSpec>,
    /// Manage a local group.
    pub group: Option<GroupSpec>,
    /// Unpack a tar or zip archive into a directory.
    pub archive: Option<ArchiveSpec>,
}

/// `forEach` of a task.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ForEach {
    /// Items in order; each is keyed by itself (a string or number) or by its `name`.
    List(Vec<serde_json::Value>),
    /// Items keyed by the map's keys.
    Map(std::collections::BTreeMap<String, serde_json::Value>),
    /// `{{ expression }}`, evaluated per host, that yields a list or a map.
    Expression(String),
}

/// `when`: the hosts a task runs on, among those its workflow selects (decision 0018).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct When {
    /// Facts the host must have: each named fact equals one of the values given (or one
    /// of the space-separated words of the fact, as in `osFamily`).
    pub facts: FactConditions,
}

/// `when.facts`: a value or a list of values per fact; every fact named must match.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FactConditions {
    /// `ID` of `/etc/os-release` (`debian`, `ubuntu`, `alpine`).
    pub os: Option<FactValues>,
    /// `VERSION_ID` of `/etc/os-release`, quoted in YAML (`"12"`, `"22.04"`).
    pub os_version: Option<FactValues>,
    /// `ID_LIKE` of `/etc/os-release`, or `ID` without one (`debian`, `rhel`).
    pub os_family: Option<FactValues>,
    /// `uname -m` (`x86_64`, `aarch64`).
    pub arch: Option<FactValues>,
    /// `uname -n`.
    pub hostname: Option<FactValues>,
    /// `apt`, `dnf`, `yum`, `apk`, `zypper`, `pacman` or `unknown`.
    pub package_manager: Option<FactValues>,
    /// `systemd`, `openrc` or `unknown`.
    pub init: Option<FactValues>,
}

impl FactConditions {
    /// The facts named, with their values.
    pub fn iter(&self) -> impl Iterator<Item = (FactName, &FactValues)> {
        [
            (FactName::Os, &self.os),
            (FactName::OsVersion, &self.os_version),
            (FactName::OsFamily, &self.os_family),
            (FactName::Arch, &self.arch),
            (FactName::Hostname, &self.hostname),
            (FactName::PackageManager, &self.package_manager),
            (FactName::Init, &self.init),
        ]
        .into_iter()
        .filter_map(|(name, values)| values.as_ref().map(|v| (name, v)))
    }
}

/// A text (quote versions: `"22.04"`), or a list of texts any of which may match.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum FactValues {
    One(String),
    Any(#[schemars(length(min = 1))] Vec<String>),
}
