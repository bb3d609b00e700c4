//! Drift: what the hosts look like now, against what drover last applied there.
//!
//! An instance is probed when its last apply succeeded with the spec it has now (anything
//! else is a pending change that `plan` shows already), its policy is not `ignore`, and its
//! kind can be looked at: a file (existence, content hash, mode, owner, group), a directory
//! (a directory and not a link to one, mode, owner, group; or absent), a link (its target; or
//! no link), a line or block edit (whether its program would change the file), packages (installed or not), a service (active, enabled), a user or group
//! (exists or not, and the ids, groups, shell, home and comment the task sets), an archive's
//! marker (present, holding the archive's SHA-256; not the files unpacked) and any task's `check`
//! command (exit 0 is in sync). A `run` without `check` has no probe and is never called drifted.
//!
//! This module is pure: `select` picks what to probe and builds each host's script (through
//! `probe`), `compare` turns a host's answer into findings. `reconcile::drift` runs the
//! scripts and records the report.

mod account;
pub mod probe;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::instance::InstanceId;
use crate::model::meta::HostName;
use crate::model::task_kind::{PackageState, PathState};
use crate::model::workflow::DriftPolicy;
use crate::report::diff::{self, Options};
use crate::report::style::Style;
use crate::resolve::{Action, ResolvedInstance};
use crate::secret::Redactor;
use crate::state::{Outcome, Recorded, Timestamp};

use probe::{Group, Look, Seen};

/// Version of the JSON drift report; bumped when a field changes meaning.
pub const FORMAT_VERSION: u32 = 1;
/// Seconds a `check` may run before the probe kills it, when the task gives no timeout.
pub const CHECK_TIMEOUT_SECS: u64 = 60;

/// One thing a probe found different from what was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Finding {
    /// The file is gone.
    Missing { path: String },
    /// Something other than a regular file is at the path.
    NotAFile { path: String },
    /// A directory or link task found another kind of entry at its path; `expected` and
    /// `found` read "a directory", "a symbolic link to /x", "a file".
    WrongType {
        path: String,
        expected: String,
        found: String,
    },
    /// Something is at a path that should be absent (for a link: a symbolic link).
    Unexpected { path: String, found: String },
    /// A `line` or `block` edit would change the file: `what` says how it differs.
    Edit { path: String, what: String },
    Content {
        path: String,
        /// Unified diff from the applied content to the content found, secrets masked;
        /// absent when the content is withheld (it holds a secret) or binary.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        diff: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// `field` is `mode`, `owner`, `group`, or a link's `target`.
    Attribute {
        path: String,
        field: String,
        applied: String,
        found: String,
    },
    Package {
        name: String,
        applied: PackageState,
        found: String,
    },
    /// `field` is `state` or `enabled`.
    Service {
        name: String,
        field: String,
        applied: String,
        found: String,
    },
    Check {
        command: String,
        status: i32,
        output: String,
    },
}

impl Finding {
    /// One line: "mode 644 → 777", "content differs".
    pub fn summary(&self) -> String {
        match self {
            Finding::Missing { path } => format!("{path} is missing"),
            Finding::NotAFile { path } => format!("{path} is no longer a regular file"),
            Finding::WrongType {
                path,
                expected,
                found,
            } => format!("{path} is {found}, not {expected}"),
            Finding::Unexpected { path, found } => {
                format!("{path} should be absent but is {found}")
            }
            Finding::Edit { path, what } => format!("{path}: {what}"),
            Finding::Content { path, .. } => format!("{path}: content differs"),
            Finding::Attribute {
                path,
                field,
                applied,
                found,
            } => format!("{path}: {field} {applied} → {found}"),
            Finding::Package {
                name,
                applied,
                found,
            } => {
                let applied = match applied {
                    PackageState::Present => "installed",
                    PackageState::Absent => "absent",
                };
                format!("package {name}: {applied} → {found}")
            }
            Finding::Service {
                name,
                field,
                applied,
                found,
            } => format!("service {name}: {field} {applied} → {found}"),
            Finding::Check {
                command, status, ..
            } => format!("check `{command}` exited with status {status}"),
        }
    }
}

/// How a probed instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    InSync,
    Drifted,
    /// The probe could not tell (host unreachable, `sudo` refused, unreadable file).
    Unknown,
}

/// A probed instance that is not in sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDrift {
    pub id: InstanceId,
    pub host: HostName,
    pub kind: String,
    pub policy: DriftPolicy,
    pub status: Status,
    pub findings: Vec<Finding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What probing one host cost and found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostDrift {
    pub host: HostName,
    /// Remote operations the probe made (one command each): 1 when the host answered.
    pub round_trips: u32,
    pub duration_ms: u64,
    pub probed: usize,
    pub drifted: usize,
    /// Probed instances the probe could not judge.
    #[serde(default)]
    pub unknown: usize,
    /// Why the host could not be probed at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Counts over every desired instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub probed: usize,
    pub in_sync: usize,
    pub drifted: usize,
    pub unknown: usize,
    /// Not probed because a change is pending for them (new, edited, failed last time).
    pub pending: usize,
    /// Not probed because their policy is `ignore`.
    pub ignored: usize,
    /// Not probed because nothing about them can be looked at (`run` without `check`).
    pub no_probe: usize,
}

/// A drift check: what every host showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftReport {
    pub format_version: u32,
    pub checked_at: Timestamp,
    /// `--target`s the check was limited to; empty: every instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    pub summary: Summary,
    pub hosts: Vec<HostDrift>,
    /// Drifted and unknown instances only, by id.
    pub instances: Vec<InstanceDrift>,
}

impl DriftReport {
    pub fn has_drift(&self) -> bool {
        self.summary.drifted > 0
    }

    pub fn has_errors(&self) -> bool {
        self.summary.unknown > 0 || self.hosts.iter().any(|h| h.error.is_some())
    }

    /// What is kept in the state file: findings without their diffs and outputs (the
    /// terminal and the PR comment had them), and at most `STORED_INSTANCES` instances, so
    /// that a check of a badly drifted fleet every few minutes does not grow the file by
    /// megabytes each time.
    #[must_use]
    pub fn for_storage(&self) -> DriftReport {
        let mut stored = self.clone();
        stored.instances.truncate(STORED_INSTANCES);
        for instance in &mut stored.instances {
            for finding in &mut instance.findings {
                match finding {
                    Finding::Content { diff, .. } => *diff = None,
                    Finding::Check { output, .. } => output.clear(),
                    Finding::Missing { .. }
                    | Finding::NotAFile { .. }
                    | Finding::WrongType { .. }
                    | Finding::Unexpected { .. }
                    | Finding::Edit { .. }
                    | Finding::Attribute { .. }
                    | Finding::Package { .. }
                    | Finding::Service { .. } => {}
                }
            }
        }
        stored
    }
}

/// Most instances a stored drift report lists (the counts cover them all).
pub const STORED_INSTANCES: usize = 1_000;

/// What to probe on one host.
#[derive(Debug)]
pub struct HostProbe<'a> {
    pub host: HostName,
    /// The probed instances; look `i` of the groups belongs to `instances[owner[i]]`.
    pub instances: Vec<&'a ResolvedInstance>,
    pub owner: Vec<usize>,
    pub groups: Vec<Group<'a>>,
}

/// Picks the instances to probe (by host) and counts those left out.
pub fn select<'a>(
    desired: &'a [ResolvedInstance],
    recorded: &Recorded,
    wanted: impl Fn(&InstanceId) -> bool,
) -> (Vec<HostProbe<'a>>, Summary) {
    let mut summary = Summary::default();
    let mut hosts: BTreeMap<&HostName, HostProbe<'a>> = BTreeMap::new();
    for instance in desired.iter().filter(|i| wanted(&i.id)) {
        let converged = recorded
            .instances
            .get(&instance.id)
            .is_some_and(|r| r.spec_hash == instance.spec_hash && r.outcome == Outcome::Succeeded);
        if !converged {
            summary.pending += 1;
            continue;
        }
        if instance.drift == DriftPolicy::Ignore {
            summary.ignored += 1;
            continue;
        }
        let looks = looks(instance);
        if looks.is_empty() {
            summary.no_probe += 1;
            continue;
        }
        summary.probed += 1;
        let host = hosts.entry(&instance.id.host).or_insert_with(|| HostProbe {
            host: instance.id.host.clone(),
            instances: Vec::new(),
            owner: Vec::new(),
            groups: Vec::new(),
        });
        let position = host.instances.len();
        host.instances.push(instance);
        let r#become = instance.r#become.as_deref();
        let group = host
            .groups
            .iter()
            .position(|g| g.r#become == r#become)
            .unwrap_or_else(|| {
                host.groups.push(Group {
                    r#become,
                    looks: Vec::new(),
                });
                host.groups.len() - 1
            });
        for look in looks {
            let index = host.owner.len();
            host.owner.push(position);
            if let Some(group) = host.groups.get_mut(group) {
                group.looks.push((index, look));
            }
        }
    }
    (hosts.into_values().collect(), summary)
}

/// What can be looked at for an instance.
fn looks(instance: &ResolvedInstance) -> Vec<Look<'_>> {
    let mut out = Vec::new();
    match &instance.action {
        Action::File { path, content, .. } => out.push(Look::File {
            path,
            sha256: sha256_hex(content),
        }),
        Action::Directory { path, .. } | Action::Link { path, .. } => {
            out.push(Look::Entry { path });
        }
        Action::Line { path, .. } | Action::Block { path, .. } => {
            if let Some((_, edit, _)) = crate::edit::of(&instance.action) {
                out.push(Look::Edit { path, edit });
            }
        }
        Action::Package { names, .. } => out.push(Look::Package { names }),
        Action::Service {
            name,
            state,
            enabled,
            ..
        } if state.is_some() || enabled.is_some() => out.push(Look::Service { name }),
        Action::Service { .. } | Action::Run { .. } => {}
        Action::Sysctl { .. } | Action::Cron { .. } => system_looks(&instance.action, &mut out),
        Action::User(user) => out.push(Look::User { name: &user.name }),
        Action::Group(group) => out.push(Look::Group { name: &group.name }),
        // Only the marker is looked at: the files unpacked are the host's to change.
        Action::Archive {
            marker,
            sha256,
            state: PathState::Present,
            ..
        } => out.push(Look::File {
            path: marker,
            sha256: sha256_hex(crate::resolve::archive_marker_content(sha256).as_bytes()),
        }),
        Action::Archive {
            marker,
            state: PathState::Absent,
            ..
        } => out.push(Look::Entry { path: marker }),
    }
    if let Some(command) = &instance.check {
        out.push(Look::Check {
            command,
            timeout_secs: instance
                .timeout
                .map_or(CHECK_TIMEOUT_SECS, |t| t.as_duration().as_secs().max(1)),
        });
    }
    out
}

/// What a `sysctl` or `cron` task is probed on: present, its persisted file (and a
/// parameter's live value); absent, whether anything is at the file's path.
fn system_looks<'a>(action: &'a Action, out: &mut Vec<Look<'a>>) {
    match action {
        Action::Sysctl {
            name,
            value: Some(value),
            state: PathState::Present,
            file,
        } => {
            out.push(Look::Sysctl { name });
            out.push(Look::File {
                path: file,
                sha256: sha256_hex(crate::resolve::sysctl_file_content(name, value).as_bytes()),
            });
        }
        Action::Cron {
            schedule: Some(schedule),
            command: Some(command),
            user,
            state: PathState::Present,
            path,
            ..
        } => out.push(Look::File {
            path,
            sha256: sha256_hex(
                crate::resolve::cron_file_content(schedule, user, command).as_bytes(),
            ),
        }),
        Action::Sysctl { file: path, .. } | Action::Cron { path, .. } => {
            out.push(Look::Entry { path });
        }
        Action::Run { .. }
        | Action::File { .. }
        | Action::Directory { .. }
        | Action::Link { .. }
        | Action::Line { .. }
        | Action::Block { .. }
        | Action::Package { .. }
        | Action::Service { .. }
        | Action::User(_)
        | Action::Group(_)
        | Action::Archive { .. } => {}
    }
}

pub use crate::hash::sha256_hex;

/// The drift of one instance from what its looks saw. Anything that was not clearly seen
/// (an answer of the wrong kind, a package the answer skipped, a check that timed out or
/// could not run) makes the instance unknown, never in sync.
pub fn compare(
    instance: &ResolvedInstance,
    seen: &[&Seen],
    redactor: &Redactor,
) -> (Status, Vec<Finding>, Option<String>) {
    let mut findings = Vec::new();
    let mut unknown = Vec::new();
    for seen in seen {
        match (&instance.action, seen) {
            (_, Seen::Unknown(why)) => unknown.push(why.clone()),
            (
                _,
                Seen::Check {
                    status,
                    under_timeout,
                    output,
                },
            ) => {
                check_findings(
                    instance,
                    *status,
                    *under_timeout,
                    output,
                    redactor,
                    &mut findings,
                    &mut unknown,
                );
            }
            (
                Action::File {
                    path,
                    content,
                    mode,
                    owner,
                    group,
                    ..
                },
                Seen::FileAbsent | Seen::NotRegular | Seen::Unreadable | Seen::File { .. },
            ) => file_findings(
                FileWant {
                    path,
                    content,
                    mode: mode.map(crate::model::duration::FileMode::bits),
                    owner: owner.as_deref(),
                    group: group.as_deref(),
                    sensitive: instance.sensitive,
                },
                seen,
                redactor,
                &mut findings,
                &mut unknown,
            ),
            (Action::Sysctl { .. } | Action::Cron { .. }, seen) => {
                system_findings(instance, seen, redactor, &mut findings, &mut unknown);
            }
            (Action::User(user), Seen::User(found)) => {
                findings.extend(account::user_findings(user, found.as_ref()));
            }
            (Action::Group(group), Seen::Group { gid }) => {
                findings.extend(account::group_findings(group, *gid));
            }
            (
                Action::Archive { marker, sha256, .. },
                Seen::FileAbsent | Seen::NotRegular | Seen::Unreadable | Seen::File { .. },
            ) => archive_findings(marker, sha256, seen, redactor, &mut findings, &mut unknown),
            // An archive is looked at as an entry only when absent (its marker must be gone).
            (
                Action::Directory { .. } | Action::Link { .. } | Action::Archive { .. },
                Seen::Entry(entry),
            ) => {
                findings.extend(entry_findings(&instance.action, entry));
            }
            (
                Action::Line { path, state, .. } | Action::Block { path, state, .. },
                Seen::Edit(edited),
            ) => match edit_finding(path, *state, *edited) {
                Ok(finding) => findings.extend(finding),
                Err(why) => unknown.push(why),
            },
            (Action::Package { names, state }, Seen::Packages(found)) => {
                package_findings(names, *state, found, &mut findings, &mut unknown);
            }
            (
                Action::Service {
                    name,
                    state,
                    enabled,
                    ..
                },
                Seen::Service {
                    active,
                    enabled: found,
                },
            ) => service_findings(name, *state, *enabled, active, found, &mut findings),
            (_, other) => unknown.push(format!(
                "the probe answered {} for a {} task",
                probe::describe(other),
                instance.action.kind_name()
            )),
        }
    }
    verdict(findings, &unknown, redactor)
}

/// Drifted when something differs; unknown when anything was not clearly seen.
fn verdict(
    findings: Vec<Finding>,
    unknown: &[String],
    redactor: &Redactor,
) -> (Status, Vec<Finding>, Option<String>) {
    let status = if !unknown.is_empty() {
        Status::Unknown
    } else if findings.is_empty() {
        Status::InSync
    } else {
        Status::Drifted
    };
    let error = (!unknown.is_empty()).then(|| redactor.redact(&unknown.join("; ")));
    (status, findings, error)
}

/// A `line` or `block` task's file as its probe found it: missing (unless the edit removes),
/// not a file, or the status of the edit's program on it. `Err`: a status that says nothing.
fn edit_finding(
    path: &str,
    state: PathState,
    edited: probe::Edited,
) -> Result<Option<Finding>, String> {
    use probe::Edited;
    let path = path.to_owned();
    Ok(match (state, edited) {
        (PathState::Absent, Edited::Absent) | (_, Edited::Status(crate::edit::UNCHANGED)) => None,
        (PathState::Present, Edited::Absent) => Some(Finding::Missing { path }),
        (_, Edited::NotAFile) => Some(Finding::NotAFile { path }),
        (_, Edited::Status(status)) => match crate::edit::drifted(status) {
            Some(what) => Some(Finding::Edit {
                path,
                what: what.to_owned(),
            }),
            None => {
                return Err(format!(
                    "`awk` could not read {path} (exit status {status}); is `match` a valid extended regular expression?"
                ));
            }
        },
    })
}

/// A directory or link task's path as the probe found it, against what was applied.
fn entry_findings(action: &Action, entry: &probe::Entry) -> Vec<Finding> {
    match action {
        Action::Directory {
            path,
            mode,
            owner,
            group,
            state,
            ..
        } => {
            let mode = mode.map(crate::model::duration::FileMode::bits);
            directory_findings(
                path,
                *state,
                mode,
                [owner.as_deref(), group.as_deref()],
                entry,
            )
        }
        Action::Link {
            path,
            target,
            state,
            ..
        } => link_findings(path, target.as_deref(), *state, entry),
        Action::Run { .. }
        | Action::File { .. }
        | Action::Line { .. }
        | Action::Block { .. }
        | Action::Package { .. }
        | Action::Service { .. }
        | Action::User(_)
        | Action::Group(_) => Vec::new(),
        // Present, these are probed as files; absent, any entry at the path is unexpected
        // (for an archive: its marker, which says something unpacked is still there).
        Action::Sysctl { file: path, .. }
        | Action::Cron { path, .. }
        | Action::Archive { marker: path, .. } => match entry {
            probe::Entry::Absent => Vec::new(),
            found => vec![Finding::Unexpected {
                path: path.clone(),
                found: found.describe(),
            }],
        },
    }
}

/// A `sysctl` or `cron` task's answer: a live value, its persisted file, or (absent) what
/// is at the file's path.
fn system_findings(
    instance: &ResolvedInstance,
    seen: &Seen,
    redactor: &Redactor,
    findings: &mut Vec<Finding>,
    unknown: &mut Vec<String>,
) {
    match (&instance.action, seen) {
        (Action::Sysctl { name, value, .. }, Seen::Sysctl { value: found }) => {
            findings.extend(sysctl_findings(name, value.as_deref(), found.as_deref()));
        }
        (_, Seen::FileAbsent | Seen::NotRegular | Seen::Unreadable | Seen::File { .. }) => {
            if let Some((path, content, mode)) = persisted(&instance.action) {
                let want = FileWant {
                    path,
                    content: content.as_bytes(),
                    mode,
                    owner: None,
                    group: None,
                    sensitive: instance.sensitive,
                };
                file_findings(want, seen, redactor, findings, unknown);
            }
        }
        (_, Seen::Entry(entry)) => findings.extend(entry_findings(&instance.action, entry)),
        (_, other) => unknown.push(format!(
            "the probe answered {} for a {} task",
            probe::describe(other),
            instance.action.kind_name()
        )),
    }
}

/// The file a present `sysctl` or `cron` task writes: its path, content and mode.
fn persisted(action: &Action) -> Option<(&str, String, Option<u32>)> {
    match action {
        Action::Sysctl {
            name,
            value: Some(value),
            file,
            ..
        } => Some((file, crate::resolve::sysctl_file_content(name, value), None)),
        Action::Cron {
            schedule: Some(schedule),
            command: Some(command),
            user,
            path,
            ..
        } => Some((
            path,
            crate::resolve::cron_file_content(schedule, user, command),
            Some(CRON_MODE),
        )),
        Action::Sysctl { .. }
        | Action::Cron { .. }
        | Action::Run { .. }
        | Action::File { .. }
        | Action::Directory { .. }
        | Action::Link { .. }
        | Action::Line { .. }
        | Action::Block { .. }
        | Action::Package { .. }
        | Action::Service { .. }
        | Action::User(_)
        | Action::Group(_)
        | Action::Archive { .. } => None,
    }
}

/// The mode of a cron entry's file, as the `cron` task sets it.
const CRON_MODE: u32 = 0o644;

/// A kernel parameter's live value against the applied one (both whitespace normalized).
fn sysctl_findings(name: &str, applied: Option<&str>, found: Option<&str>) -> Vec<Finding> {
    match (applied, found) {
        (Some(applied), Some(found)) if applied != found => vec![Finding::Attribute {
            path: name.to_owned(),
            field: "value".to_owned(),
            applied: applied.to_owned(),
            found: found.to_owned(),
        }],
        (Some(_), None) => vec![Finding::Missing {
            path: name.to_owned(),
        }],
        (Some(_) | None, _) => Vec::new(),
    }
}

/// A directory: present and not a link to one, with the mode and `[owner, group]` applied;
/// or absent.
fn directory_findings(
    path: &str,
    state: PathState,
    mode: Option<u32>,
    [owner, group]: [Option<&str>; 2],
    entry: &probe::Entry,
) -> Vec<Finding> {
    use probe::Entry;
    let path = path.to_owned();
    let (uid, gid, found_owner, found_group, found_mode) = match (state, entry) {
        (PathState::Absent, Entry::Absent) => return Vec::new(),
        (PathState::Absent, found) => {
            return vec![Finding::Unexpected {
                path,
                found: found.describe(),
            }];
        }
        (PathState::Present, Entry::Absent) => return vec![Finding::Missing { path }],
        (PathState::Present, found @ (Entry::Link { .. } | Entry::Other)) => {
            return vec![Finding::WrongType {
                path,
                expected: "a directory".to_owned(),
                found: found.describe(),
            }];
        }
        (
            PathState::Present,
            Entry::Directory {
                mode,
                uid,
                gid,
                owner,
                group,
            },
        ) => (*uid, *gid, owner, group, *mode),
    };
    let mut findings = Vec::new();
    if let Some(mode) = mode.filter(|m| *m != found_mode) {
        findings.push(Finding::Attribute {
            path: path.clone(),
            field: "mode".to_owned(),
            applied: format!("{mode:04o}"),
            found: format!("{found_mode:04o}"),
        });
    }
    for (field, applied, id, name) in [
        ("owner", owner, uid, found_owner),
        ("group", group, gid, found_group),
    ] {
        if let Some(applied) = applied.filter(|a| !same_account(a, id, name)) {
            findings.push(Finding::Attribute {
                path: path.clone(),
                field: field.to_owned(),
                applied: applied.to_owned(),
                found: name.clone(),
            });
        }
    }
    findings
}

/// A link: a symbolic link reading exactly `target`; or, absent, no symbolic link (anything
/// else at the path is not the task's and is left alone).
fn link_findings(
    path: &str,
    target: Option<&str>,
    state: PathState,
    entry: &probe::Entry,
) -> Vec<Finding> {
    use probe::Entry;
    let path = path.to_owned();
    let finding = match (state, entry) {
        (PathState::Absent, Entry::Absent | Entry::Directory { .. } | Entry::Other) => {
            return Vec::new();
        }
        (PathState::Absent, found @ Entry::Link { .. }) => Finding::Unexpected {
            path,
            found: found.describe(),
        },
        (PathState::Present, Entry::Link { target: found }) => {
            if target == Some(found.as_str()) {
                return Vec::new();
            }
            Finding::Attribute {
                path,
                field: "target".to_owned(),
                applied: target.unwrap_or_default().to_owned(),
                found: found.clone(),
            }
        }
        (PathState::Present, Entry::Absent) => Finding::Missing { path },
        (PathState::Present, found @ (Entry::Directory { .. } | Entry::Other)) => {
            Finding::WrongType {
                path,
                expected: "a symbolic link".to_owned(),
                found: found.describe(),
            }
        }
    };
    vec![finding]
}

/// A numeric owner is compared with the number, a name with the name.
fn same_account(applied: &str, id: u32, name: &str) -> bool {
    match applied.parse::<u32>() {
        Ok(number) => number == id,
        Err(_) => applied == name,
    }
}

/// Every package asked about must be answered exactly once.
fn package_findings(
    names: &[String],
    state: PackageState,
    found: &[(String, bool)],
    findings: &mut Vec<Finding>,
    unknown: &mut Vec<String>,
) {
    for name in names {
        let answers: Vec<bool> = found
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, installed)| *installed)
            .collect();
        match answers.as_slice() {
            [installed] if probe::package_matches(state, *installed) => {}
            [installed] => findings.push(Finding::Package {
                name: name.clone(),
                applied: state,
                found: if *installed { "installed" } else { "absent" }.to_owned(),
            }),
            _ => unknown.push(format!("the probe did not say whether {name} is installed")),
        }
    }
}

/// A service as `systemctl show` described it, against the state and enablement applied.
fn service_findings(
    name: &str,
    state: Option<crate::model::task_kind::ServiceState>,
    enabled: Option<bool>,
    active: &str,
    found: &str,
    findings: &mut Vec<Finding>,
) {
    if let Some(state) = state
        && !probe::service_matches(state, active)
    {
        findings.push(Finding::Service {
            name: name.to_owned(),
            field: "state".to_owned(),
            applied: format!("{state:?}").to_lowercase(),
            found: active.to_owned(),
        });
    }
    if let Some(enabled) = enabled
        && probe::counts_as_enabled(found) != enabled
    {
        findings.push(Finding::Service {
            name: name.to_owned(),
            field: "enabled".to_owned(),
            applied: if enabled { "enabled" } else { "disabled" }.to_owned(),
            found: found.to_owned(),
        });
    }
}

/// A check's exit status: 0 is in sync; a timeout (124 under `timeout`) or a command that
/// could not run (126, 127) says nothing about the host, so it is unknown.
fn check_findings(
    instance: &ResolvedInstance,
    status: i32,
    under_timeout: bool,
    output: &[u8],
    redactor: &Redactor,
    findings: &mut Vec<Finding>,
    unknown: &mut Vec<String>,
) {
    let command = redactor.redact(instance.check.as_deref().unwrap_or_default());
    let output = redactor.redact(&String::from_utf8_lossy(output));
    match status {
        0 => {}
        124 if under_timeout => {
            let secs = instance
                .timeout
                .map_or(CHECK_TIMEOUT_SECS, |t| t.as_duration().as_secs().max(1));
            unknown.push(format!("the check `{command}` timed out after {secs}s"));
        }
        126 | 127 => unknown.push(format!(
            "the check `{command}` could not run (status {status}): {}",
            output.trim()
        )),
        _ => findings.push(Finding::Check {
            command,
            status,
            output,
        }),
    }
}

#[derive(Clone, Copy)]
struct FileWant<'a> {
    path: &'a str,
    content: &'a [u8],
    mode: Option<u32>,
    owner: Option<&'a str>,
    group: Option<&'a str>,
    sensitive: bool,
}

/// An `archive` task's marker, looked at as a file that must hold the archive's hash.
fn archive_findings(
    marker: &str,
    sha256: &str,
    seen: &Seen,
    redactor: &Redactor,
    findings: &mut Vec<Finding>,
    unknown: &mut Vec<String>,
) {
    let content = crate::resolve::archive_marker_content(sha256);
    let want = FileWant {
        path: marker,
        content: content.as_bytes(),
        mode: None,
        owner: None,
        group: None,
        sensitive: false,
    };
    file_findings(want, seen, redactor, findings, unknown);
}

fn file_findings(
    want: FileWant<'_>,
    seen: &Seen,
    redactor: &Redactor,
    findings: &mut Vec<Finding>,
    unknown: &mut Vec<String>,
) {
    let path = want.path.to_owned();
    let Seen::File {
        size,
        mode,
        uid,
        gid,
        owner,
        group,
        differs,
        content,
        ..
    } = seen
    else {
        match seen {
            Seen::FileAbsent => findings.push(Finding::Missing { path }),
            Seen::NotRegular => findings.push(Finding::NotAFile { path }),
            _ => unknown.push(format!(
                "{path} cannot be read by the probe's user; give the task `become`"
            )),
        }
        return;
    };
    if *differs {
        findings.push(content_finding(&want, *size, content.as_deref(), redactor));
    }
    if let Some(applied) = want.mode
        && applied != *mode
    {
        findings.push(Finding::Attribute {
            path: path.clone(),
            field: "mode".to_owned(),
            applied: format!("{applied:04o}"),
            found: format!("{mode:04o}"),
        });
    }
    for (field, applied, id, name) in [
        ("owner", want.owner, uid, owner),
        ("group", want.group, gid, group),
    ] {
        let Some(applied) = applied else {
            continue;
        };
        if !same_account(applied, *id, name) {
            findings.push(Finding::Attribute {
                path: path.clone(),
                field: field.to_owned(),
                applied: applied.to_owned(),
                found: name.clone(),
            });
        }
    }
}

fn content_finding(
    want: &FileWant<'_>,
    size: u64,
    found: Option<&[u8]>,
    redactor: &Redactor,
) -> Finding {
    let path = want.path.to_owned();
    if want.sensitive {
        return Finding::Content {
            path,
            diff: None,
            note: Some("content withheld: the applied content holds a secret".to_owned()),
        };
    }
    // Content cut at the probe's limit may end inside a character: diff what is whole.
    let found = found.map(|bytes| match std::str::from_utf8(bytes) {
        Err(e) if size > bytes.len() as u64 && e.error_len().is_none() => {
            std::str::from_utf8(bytes.get(..e.valid_up_to()).unwrap_or_default())
        }
        other => other,
    });
    let (Ok(applied), Some(Ok(found))) = (std::str::from_utf8(want.content), found) else {
        return Finding::Content {
            path,
            diff: None,
            note: Some(format!(
                "binary content differs: {} bytes applied, {size} found",
                want.content.len()
            )),
        };
    };
    let diff = diff::unified(
        applied,
        found,
        Options {
            labels: Some(("applied", "on the host")),
            max_lines: 400,
        },
        Style::plain(),
    );
    let note = (size > found.len() as u64)
        .then(|| format!("only the first {} bytes of {size} are shown", found.len()));
    Finding::Content {
        path,
        diff: Some(redactor.redact(&diff)),
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use probe::Entry;

    fn directory(owner: &str) -> Entry {
        Entry::Directory {
            mode: 0o777,
            uid: 0,
            gid: 0,
            owner: owner.to_owned(),
            group: "root".to_owned(),
        }
    }

    fn summaries(findings: &[Finding]) -> Vec<String> {
        findings.iter().map(Finding::summary).collect()
    }

    #[test]
    fn a_directory_is_compared_on_what_the_task_set() {
        let present = |mode, owner, entry: &Entry| {
            summaries(&directory_findings(
                "/srv",
                PathState::Present,
                mode,
                [owner, None],
                entry,
            ))
        };
        assert!(present(None, None, &directory("root")).is_empty());
        assert_eq!(
            present(Some(0o755), Some("app"), &directory("root")),
            ["/srv: mode 0755 → 0777", "/srv: owner app → root"]
        );
        assert!(present(None, Some("0"), &directory("root")).is_empty());
        assert_eq!(
            present(
                None,
                None,
                &Entry::Link {
                    target: "/x".into()
                }
            ),
            ["/srv is a symbolic link to /x, not a directory"]
        );
        assert_eq!(present(None, None, &Entry::Absent), ["/srv is missing"]);
        let absent = |entry: &Entry| {
            summaries(&directory_findings(
                "/srv",
                PathState::Absent,
                None,
                [None, None],
                entry,
            ))
        };
        assert!(absent(&Entry::Absent).is_empty());
        assert_eq!(
            absent(&Entry::Other),
            ["/srv should be absent but is a file"]
        );
    }

    #[test]
    fn a_kernel_parameter_is_compared_on_its_normalized_live_value() {
        let sysctl = |found| summaries(&sysctl_findings("net.ipv4.ip_forward", Some("1"), found));
        assert!(sysctl(Some("1")).is_empty());
        assert_eq!(sysctl(Some("0")), ["net.ipv4.ip_forward: value 1 → 0"]);
        assert_eq!(sysctl(None), ["net.ipv4.ip_forward is missing"]);
        let answer = b"N G 0\nN Y 0\n32768\t60999\nN Y 1 A\nN DONE\n";
        let groups = vec![probe::Group {
            r#become: None,
            looks: vec![
                (
                    0,
                    Look::Sysctl {
                        name: "net.ipv4.ip_local_port_range",
                    },
                ),
                (
                    1,
                    Look::Sysctl {
                        name: "net.ipv4.nope",
                    },
                ),
            ],
        }];
        let text = probe::script("N", &groups);
        assert!(
            text.contains("_p=/proc/sys/net/ipv4/ip_local_port_range\n"),
            "{text}"
        );
        let parsed = probe::parse("N", answer, &groups);
        assert_eq!(
            parsed.seen[&0],
            Seen::Sysctl {
                value: Some("32768 60999".to_owned())
            }
        );
        assert_eq!(parsed.seen[&1], Seen::Sysctl { value: None });
    }

    #[test]
    fn a_link_is_compared_on_its_target_and_absent_means_no_link() {
        let link = |target: &str| Entry::Link {
            target: target.to_owned(),
        };
        let present =
            |entry: &Entry| summaries(&link_findings("/l", Some("/t"), PathState::Present, entry));
        assert!(present(&link("/t")).is_empty());
        assert_eq!(present(&link("/u")), ["/l: target /t → /u"]);
        assert_eq!(
            present(&Entry::Other),
            ["/l is a file, not a symbolic link"]
        );
        let absent =
            |entry: &Entry| summaries(&link_findings("/l", None, PathState::Absent, entry));
        assert!(absent(&Entry::Other).is_empty() && absent(&Entry::Absent).is_empty());
        assert_eq!(
            absent(&link("/t")),
            ["/l should be absent but is a symbolic link to /t"]
        );
    }
}
