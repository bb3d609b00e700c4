//! Drift: what the hosts look like now, against what drover last applied there.
//!
//! An instance is probed when its last apply succeeded with the spec it has now (anything
//! else is a pending change that `plan` shows already), its policy is not `ignore`, and its
//! kind can be looked at: a file (existence, content hash, mode, owner, group), packages
//! (installed or not), a service (active, enabled) and any task's `check` command (exit 0 is
//! in sync). A `run` without `check` has no probe and is never called drifted.
//!
//! This module is pure: `select` picks what to probe and builds each host's script (through
//! `probe`), `compare` turns a host's answer into findings. `reconcile::drift` runs the
//! scripts and records the report.

pub mod probe;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::instance::InstanceId;
use crate::model::meta::HostName;
use crate::model::task_kind::PackageState;
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
    Content {
        path: String,
        /// Unified diff from the applied content to the content found, secrets masked;
        /// absent when the content is withheld (it holds a secret) or binary.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        diff: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// `field` is `mode`, `owner` or `group`.
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
}

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
        Action::Package { names, .. } => out.push(Look::Package { names }),
        Action::Service {
            name,
            state,
            enabled,
            ..
        } if state.is_some() || enabled.is_some() => out.push(Look::Service { name }),
        Action::Service { .. } | Action::Run { .. } => {}
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

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = sha2::Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for byte in digest {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// The drift of one instance from what its looks saw.
pub fn compare(
    instance: &ResolvedInstance,
    seen: &[&Seen],
    redactor: &Redactor,
) -> (Status, Vec<Finding>, Option<String>) {
    let mut findings = Vec::new();
    let mut unknown = Vec::new();
    for seen in seen {
        if let Seen::Unknown(why) = seen {
            unknown.push(why.clone());
            continue;
        }
        if let Seen::Check { status, output } = seen {
            if *status != 0 {
                findings.push(Finding::Check {
                    command: redactor.redact(instance.check.as_deref().unwrap_or_default()),
                    status: *status,
                    output: redactor.redact(&String::from_utf8_lossy(output)),
                });
            }
            continue;
        }
        match &instance.action {
            Action::File {
                path,
                content,
                mode,
                owner,
                group,
                ..
            } => file_findings(
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
            Action::Package { state, .. } => {
                if let Seen::Packages(found) = seen {
                    for (name, installed) in found {
                        if !probe::package_matches(*state, *installed) {
                            findings.push(Finding::Package {
                                name: name.clone(),
                                applied: *state,
                                found: if *installed { "installed" } else { "absent" }.to_owned(),
                            });
                        }
                    }
                }
            }
            Action::Service {
                name,
                state,
                enabled,
                ..
            } => {
                if let Seen::Service {
                    active,
                    enabled: found_enabled,
                } = seen
                {
                    if let Some(state) = state
                        && !probe::service_matches(*state, active)
                    {
                        findings.push(Finding::Service {
                            name: name.clone(),
                            field: "state".to_owned(),
                            applied: format!("{state:?}").to_lowercase(),
                            found: active.clone(),
                        });
                    }
                    if let Some(enabled) = enabled
                        && (found_enabled == "enabled") != *enabled
                    {
                        findings.push(Finding::Service {
                            name: name.clone(),
                            field: "enabled".to_owned(),
                            applied: if *enabled { "enabled" } else { "disabled" }.to_owned(),
                            found: found_enabled.clone(),
                        });
                    }
                }
            }
            Action::Run { .. } => {}
        }
    }
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

#[derive(Clone, Copy)]
struct FileWant<'a> {
    path: &'a str,
    content: &'a [u8],
    mode: Option<u32>,
    owner: Option<&'a str>,
    group: Option<&'a str>,
    sensitive: bool,
}

fn file_findings(
    want: FileWant<'_>,
    seen: &Seen,
    redactor: &Redactor,
    findings: &mut Vec<Finding>,
    unknown: &mut Vec<String>,
) {
    let path = want.path.to_owned();
    match seen {
        Seen::FileAbsent => findings.push(Finding::Missing { path }),
        Seen::NotRegular => findings.push(Finding::NotAFile { path }),
        Seen::Unreadable => unknown.push(format!(
            "{path} cannot be read by the probe's user; give the task `become`"
        )),
        Seen::File {
            size,
            mode,
            owner,
            group,
            sha256,
            content,
        } => {
            if *sha256 != sha256_hex(want.content) {
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
            for (field, applied, found) in
                [("owner", want.owner, owner), ("group", want.group, group)]
            {
                if let Some(applied) = applied
                    && applied != found
                {
                    findings.push(Finding::Attribute {
                        path: path.clone(),
                        field: field.to_owned(),
                        applied: applied.to_owned(),
                        found: found.clone(),
                    });
                }
            }
        }
        Seen::Packages(_) | Seen::Service { .. } | Seen::Check { .. } | Seen::Unknown(_) => {}
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
    let (Ok(applied), Some(Ok(found))) = (
        std::str::from_utf8(want.content),
        found.map(std::str::from_utf8),
    ) else {
        return Finding::Content {
            path,
            diff: None,
            note: Some(format!(
                "binary content differs ({} bytes applied, {size} found)",
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
