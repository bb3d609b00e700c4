//! `Desired` × selected hosts × inputs → `ResolvedInstance`s, with templates rendered and
//! spec hashes computed.
//!
//! Pure: the bytes of `file.source`/`file.template` files and the values of secrets arrive as
//! `Inputs`, read beforehand by the shell from the list `needed` gives it. Every rendering
//! problem is a diagnostic naming the instance(s) and the place in the manifest; one bad
//! template on 50 hosts is one diagnostic, not 50.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use minijinja::Value as Ctx;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::account::{GroupAccount, UserAccount};
use crate::diagnostic::{Diagnostic, Location};
use crate::facts::{Facts, LeftOut};
use crate::for_each::Item;
use crate::hash::{SpecHash, content_hash};
use crate::instance::InstanceId;
use crate::load;
use crate::load::account_rule::{
    account_path_rule, comment_rule, group_name_rule, primary_group_rule, user_name_rule,
};
use crate::load::document::{
    HostPath, Invalid, argv_word_rule, command_rule, edited_line_rule, file_path_rule,
    host_path_rule, link_target_rule, path_rule,
};
use crate::load::system_rule::{
    cron_command_rule, cron_dir_rule, cron_name_rule, cron_schedule_rule, sysctl_name_rule,
    sysctl_value_rule,
};
use crate::model::desired::{Desired, Host, Origin, Task, Workflow};
use crate::model::duration::{FileMode, HumanDuration};
use crate::model::host::Transport;
use crate::model::meta::HostName;
use crate::model::task_kind::{ArchiveFormat, ArchiveSpec, CronSpec, SysctlSpec};
use crate::model::task_kind::{
    BlockSpec, Command, DirectorySpec, FileSpec, LineSpec, LinkSpec, OnTrigger, PackageState,
    PathState, RunSpec, ServiceState, TaskKind,
};
use crate::model::task_kind::{GroupSpec, UserSpec};
use crate::model::vars::{VarValue, Vars};
use crate::model::workflow::{DriftPolicy, ForEach, Retries};
use crate::scope::{Scope, VarProblem};
use crate::secret::{Redactor, Secret, SecretKey};
use crate::source::{JsonPointer, SourceFile, Span};
use crate::template::{TemplateError, Templates, join_argv};
use std::sync::atomic::{AtomicBool, Ordering};

pub use crate::load::relative_to;

/// How drover reaches the instance's host: part of the spec hash, so pointing a host at
/// another machine re-applies everything on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "transport", rename_all = "lowercase")]
pub enum Connection {
    Local,
    Ssh {
        address: String,
        port: Option<u16>,
        user: Option<String>,
    },
}

/// What an instance does, fully rendered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Action {
    Run {
        command: String,
        creates: Option<String>,
        unless: Option<String>,
    },
    File {
        path: String,
        /// The bytes to write; hashed through `content_hash` rather than encoded.
        #[serde(skip)]
        content: Arc<[u8]>,
        content_hash: String,
        mode: Option<FileMode>,
        owner: Option<String>,
        group: Option<String>,
    },
    Directory {
        path: String,
        mode: Option<FileMode>,
        owner: Option<String>,
        group: Option<String>,
        state: PathState,
        recursive: bool,
    },
    Link {
        path: String,
        /// `None` only with `state: absent`.
        target: Option<String>,
        state: PathState,
        force: bool,
    },
    Line {
        path: String,
        /// `None` only with `state: absent`.
        line: Option<String>,
        /// A POSIX extended regular expression, matched by the host's `awk`.
        r#match: Option<String>,
        state: PathState,
        create: bool,
    },
    Block {
        path: String,
        /// The text after `# BEGIN ` and `# END `, the default filled in.
        marker: String,
        /// The lines between the markers, each ending in a newline (empty with `state:
        /// absent`); hashed through `content_hash` rather than encoded.
        #[serde(skip)]
        content: String,
        content_hash: String,
        state: PathState,
        create: bool,
    },
    Package {
        names: Vec<String>,
        state: PackageState,
    },
    Service {
        name: String,
        state: Option<ServiceState>,
        enabled: Option<bool>,
        on_trigger: OnTrigger,
    },
    Sysctl {
        name: String,
        /// Whitespace-normalized (fields joined by one space); `None` only with `state: absent`.
        value: Option<String>,
        state: PathState,
        /// Where the value is persisted.
        file: String,
    },
    Cron {
        name: String,
        /// `None` only with `state: absent`.
        schedule: Option<String>,
        /// `None` only with `state: absent`.
        command: Option<String>,
        user: String,
        state: PathState,
        /// The entry's file: `<dir>/drover-<name>`.
        path: String,
    },
    User(UserAccount),
    Group(GroupAccount),
    Archive {
        /// The archive on the controller, relative to the manifest directory.
        source: String,
        dest: String,
        format: ArchiveFormat,
        /// The archive's bytes, sent to the host on stdin; hashed through `sha256`.
        #[serde(skip)]
        content: Arc<[u8]>,
        /// Hex SHA-256 of the archive: what the marker holds once it is unpacked.
        sha256: String,
        /// The marker file in `dest`: `.drover-archive-<workflow>.<task>`.
        marker: String,
        /// `absent`: remove what the unpacking created (then `source`, `content` and
        /// `sha256` are empty and `format` means nothing).
        state: PathState,
    },
}

/// The marker an `archive` task keeps in its destination. Workflow and task names are DNS
/// labels (no dots), so the dot keeps markers of different tasks apart.
pub fn archive_marker(dest: &str, id: &InstanceId) -> String {
    format!(
        "{}/.drover-archive-{}.{}",
        dest.trim_end_matches('/'),
        id.workflow,
        id.task_part()
    )
}

/// What an `archive` task's marker holds.
pub fn archive_marker_content(sha256: &str) -> String {
    format!("{sha256}\n")
}

/// Where a `sysctl` task persists its value unless it says otherwise.
pub fn default_sysctl_file(name: &str) -> String {
    format!("/etc/sysctl.d/90-drover-{name}.conf")
}

/// A kernel parameter's file below `/proc/sys`: dots become slashes.
pub fn sysctl_proc_path(name: &str) -> String {
    format!("/proc/sys/{}", name.replace('.', "/"))
}

/// What a `sysctl` task's persisted file holds.
pub fn sysctl_file_content(name: &str, value: &str) -> String {
    format!("{name} = {value}\n")
}

/// Fields of a sysctl value joined by one space, as compared and persisted: the kernel
/// prints several fields with tabs.
pub fn normalize_sysctl_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a `cron` task's entry file holds.
pub fn cron_file_content(schedule: &str, user: &str, command: &str) -> String {
    format!("SHELL=/bin/sh\n{schedule} {user} {command}\n")
}

impl Action {
    /// The task kind, as manifests spell it.
    pub fn kind_name(&self) -> &'static str {
        match self {
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
}

/// One task on one host, ready to plan and apply.
#[derive(Debug, Clone)]
pub struct ResolvedInstance {
    pub id: InstanceId,
    pub connection: Connection,
    pub r#become: Option<String>,
    pub action: Action,
    pub check: Option<String>,
    pub undo: Option<String>,
    /// Instances that must succeed first (task `needs`, and workflow `needs` on this host).
    pub needs: Vec<InstanceId>,
    /// Instances whose change makes this one run; they also order it.
    pub triggered_by: Vec<InstanceId>,
    pub timeout: Option<HumanDuration>,
    pub retries: Option<Retries>,
    pub drift: DriftPolicy,
    /// Whether a secret value appears in the rendered action: outputs must redact it.
    pub sensitive: bool,
    pub spec_hash: SpecHash,
    /// Secrets (by variable name) its rendering needs and that were not available here
    /// (`Inputs::stand_in_missing_secrets`): its spec is not known, so it may change.
    pub unavailable_secrets: Vec<String>,
    /// Its rendering or its `when` needs its host's facts, not known here: its spec (or
    /// whether it exists at all) is not known, so it may change.
    pub unavailable_facts: bool,
}

/// What the hash covers; see `hash.rs` for why the rest is left out.
#[derive(Serialize)]
struct HashInput<'a> {
    connection: &'a Connection,
    r#become: Option<&'a str>,
    action: &'a Action,
}

/// Files and secrets the shell must read before resolving.
#[derive(Debug, Default)]
pub struct Needed {
    /// Paths relative to the manifest directory.
    pub files: BTreeSet<String>,
    pub secrets: BTreeSet<SecretKey>,
}

/// What the shell read: file bytes (or why not) and secret values (or why not).
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    pub files: BTreeMap<String, Result<Arc<[u8]>, Unreadable>>,
    pub secrets: BTreeMap<SecretKey, Result<Secret, Unreadable>>,
    /// A secret that is not set (or whose file does not exist) is a warning, not an error:
    /// a stand-in takes its place and what uses it is marked `unavailable_secrets` (a plan
    /// in a job without the secrets). Never for a run that applies.
    pub stand_in_missing_secrets: bool,
    /// Facts of the hosts whose facts are known (gathered or cached). Any other host
    /// renders `host.facts` as stand-ins and takes every `when` as holding (decision 0018).
    pub facts: BTreeMap<HostName, Facts>,
}

/// Why the shell did not read a file (or environment variable) that a manifest names.
///
/// The shell refuses rather than reads when the file is outside the directories manifests
/// may read, is not a regular file, or is too large (decision 0007); each reason says what
/// to do next in its own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// It is not there: "it does not exist", "it is not set". A plan without secrets
    /// stands in for such a secret (nothing else).
    Absent(String),
    /// It could not be read: "permission denied", "it is not valid UTF-8".
    Missing(String),
    /// A FIFO, device, socket or directory (named here), which could block or never end.
    NotRegular(&'static str),
    /// Larger than `limit` bytes.
    TooLarge { limit: u64 },
    /// Outside the manifest directory and every `--allow-path` root. `resolved` is where
    /// symlinks led, when that differs from the path as written.
    Outside {
        resolved: Option<String>,
        extra_roots: bool,
    },
}

impl Unreadable {
    /// The end of "cannot read x: …".
    pub fn reason(&self) -> String {
        match self {
            Unreadable::Absent(why) | Unreadable::Missing(why) => why.clone(),
            Unreadable::NotRegular(kind) => format!("it is {kind}, not a regular file"),
            Unreadable::TooLarge { limit } => format!("it is larger than {limit} bytes"),
            Unreadable::Outside {
                resolved,
                extra_roots,
            } => {
                let roots = if *extra_roots {
                    "the manifest directory and every --allow-path"
                } else {
                    "the manifest directory"
                };
                match resolved {
                    Some(real) => format!("it resolves to {real}, outside {roots}"),
                    None => format!("it is outside {roots}"),
                }
            }
        }
    }

    /// The diagnostic code for this reason; `missing` is the caller's code for a plain miss.
    fn code(&self, missing: &'static str) -> &'static str {
        match self {
            Unreadable::Absent(_) | Unreadable::Missing(_) => missing,
            Unreadable::NotRegular(_) => "manifest::not-a-regular-file",
            Unreadable::TooLarge { .. } => "manifest::file-too-large",
            Unreadable::Outside { .. } => "manifest::path-outside-directory",
        }
    }

    /// What to do, for a problem of this kind that is not a plain miss.
    fn help(&self, secret: bool) -> Option<String> {
        let field = if secret {
            "`valueFrom.file`"
        } else {
            "`source` or `template`"
        };
        match self {
            Unreadable::Absent(_) | Unreadable::Missing(_) => None,
            Unreadable::NotRegular(_) => Some(format!(
                "drover reads only regular files on the controller (a FIFO or device could block or never end); point {field} at a regular file"
            )),
            Unreadable::TooLarge { limit } if secret => Some(format!(
                "a secret file holds one value of at most {limit} bytes; check that {field} names the right file"
            )),
            Unreadable::TooLarge { limit } => Some(format!(
                "a {field} file may be at most {limit} bytes; ship larger files another way, such as a package"
            )),
            Unreadable::Outside { .. } => Some(
                "move the file into the manifest directory, or allow the directory that holds it with --allow-path DIR".to_owned(),
            ),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Resolved {
    pub instances: Vec<ResolvedInstance>,
    pub diagnostics: Vec<Diagnostic>,
    /// Masks every secret value; apply it to anything shown to people.
    pub redactor: Redactor,
    /// Hosts that have an instance whose template or `when` uses facts not in
    /// `Inputs::facts`: the hosts whose facts the shell should gather or read.
    pub facts_wanted: BTreeSet<HostName>,
}

/// Lists the files and secrets `resolve` will need.
pub fn needed(desired: &Desired) -> Needed {
    let mut needed = Needed::default();
    let mut add_vars = |vars: &Vars, origin: &Origin| {
        for value in vars.values() {
            if let Some(source) = secret_source(value) {
                needed
                    .secrets
                    .insert(SecretKey::new(&source, &origin.file.path));
            }
        }
    };
    for host in desired.hosts.values() {
        add_vars(&host.spec.vars, &host.origin);
        for layer in &host.inherited {
            add_vars(&layer.vars, &layer.origin);
        }
    }
    for workflow in desired.workflows.values() {
        add_vars(&workflow.vars, &workflow.origin);
        for task in &workflow.tasks {
            add_vars(&task.vars, &task.origin);
        }
    }
    for workflow in desired.workflows.values() {
        for task in &workflow.tasks {
            if let TaskKind::File(file) = &task.kind {
                for path in [&file.template, &file.source].into_iter().flatten() {
                    needed
                        .files
                        .insert(relative_to(&task.origin.file.path, path));
                }
            }
            if let TaskKind::Archive(archive) = &task.kind
                && let Some(source) = &archive.source
            {
                needed
                    .files
                    .insert(relative_to(&task.origin.file.path, source));
            }
        }
    }
    needed
}

fn secret_source(value: &VarValue) -> Option<crate::model::vars::SecretSource> {
    match value {
        VarValue::Secret(secret) => secret.source(),
        VarValue::Plain(_) => None,
    }
}

/// A value that reaches a command line as one word: a name, never an option, glob or two
/// words.
fn plain_name(what: &str, name: &str, first: fn(char) -> bool, rest: &str) -> Result<(), Invalid> {
    let ok = name.chars().next().is_some_and(first)
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || rest.contains(c));
    if ok {
        Ok(())
    } else {
        Err(Invalid {
            code: "manifest::invalid-value",
            message: format!("`{name}` is not a {what}"),
            label: "renders to this",
            help: "values that reach a command line must be plain names; check the template and its variables",
        })
    }
}

/// A package name as apt, dnf, apk and zypper know them.
fn package_name(name: &str) -> Result<(), Invalid> {
    plain_name(
        "package name",
        name,
        |c| c.is_ascii_alphanumeric(),
        "._+-:~=@",
    )
}

/// A block's lines as the file holds them: each ends in a newline, the last one too; no
/// content is no lines.
fn block_body(content: &str) -> String {
    if content.is_empty() || content.ends_with('\n') {
        content.to_owned()
    } else {
        format!("{content}\n")
    }
}

/// A user or group name as `chown` takes it (or a numeric id).
fn account_name(name: &str) -> Result<(), Invalid> {
    plain_name(
        "user or group name",
        name,
        |c| c.is_ascii_alphanumeric() || c == '_',
        "._-$",
    )
}

/// A systemd unit or OpenRC service name.
fn service_name(name: &str) -> Result<(), Invalid> {
    plain_name(
        "service name",
        name,
        |c| c.is_ascii_alphanumeric() || c == '_',
        "._-@:\\",
    )
}

/// The pieces of `out` that differ from `blind` (character by character): what secrets
/// became in a rendering. Runs of inserted characters at most two apart form one piece (a
/// secret spelled out with `| join(' ')`, or sharing a letter with its stand-in); each piece
/// comes with the runs it joined, when it joined several (two secrets side by side, each of
/// which must stay masked on its own).
fn differing_pieces(blind: &str, out: &str) -> Vec<Piece> {
    const JOIN_GAP: usize = 2;
    let (blind, out): (Vec<char>, Vec<char>) = (blind.chars().collect(), out.chars().collect());
    let mut spans: Vec<Vec<(usize, usize)>> = Vec::new();
    for edit in crate::text_diff::diff(&blind, &out) {
        if edit.op != crate::text_diff::Op::Insert {
            continue;
        }
        let at = edit.new;
        match spans.last_mut() {
            Some(runs) => match runs.last_mut() {
                Some((_, end)) if at == *end => *end = at + 1,
                Some((_, end)) if at <= *end + JOIN_GAP => runs.push((at, at + 1)),
                _ => spans.push(vec![(at, at + 1)]),
            },
            None => spans.push(vec![(at, at + 1)]),
        }
    }
    let text = |(start, end): (usize, usize)| -> String {
        out.get(start..end).unwrap_or_default().iter().collect()
    };
    spans
        .into_iter()
        .map(|runs| {
            let whole = (
                runs.first().map_or(0, |r| r.0),
                runs.last().map_or(0, |r| r.1),
            );
            Piece {
                whole: text(whole),
                runs: if runs.len() > 1 {
                    runs.into_iter().map(text).collect()
                } else {
                    Vec::new()
                },
            }
        })
        .collect()
}

/// One piece of a rendering that a secret became: see `differing_pieces`.
#[derive(Debug, PartialEq, Eq)]
struct Piece {
    whole: String,
    /// The runs it joined, when more than one.
    runs: Vec<String>,
}

/// The variables a template context holds, and which of them are secrets.
#[derive(Debug)]
struct Names {
    /// Every name, for "did you mean".
    all: Vec<String>,
    secrets: BTreeSet<String>,
    /// Secrets standing in for values that were not available.
    unavailable: BTreeSet<String>,
    /// The context with every secret replaced by a stand-in: what a template renders to
    /// without the secrets, to tell whether its output depends on one.
    blinded: Ctx,
    /// `host.facts` holds stand-ins: the host's facts are not known here.
    stand_in_facts: bool,
}

/// The template context of a scope: its vars, and the workflow's `hosts` list (shared, not
/// copied, between the contexts of a workflow's hosts).
fn finish(scope: Scope, hosts: &Ctx) -> (Ctx, Names) {
    let with_hosts = |vars: &Map<String, Value>| {
        Ctx::from_pairs(
            vars.iter()
                .map(|(k, v)| (k.clone(), Ctx::from(minijinja::value::Serde(v))))
                .chain([("hosts".to_owned(), hosts.clone())]),
        )
    };
    let mut all: Vec<String> = scope.vars.keys().cloned().collect();
    all.push("hosts".to_owned());
    (
        with_hosts(&scope.vars),
        Names {
            all,
            secrets: scope.secrets,
            unavailable: scope.unavailable,
            blinded: with_hosts(&scope.blinded),
            stand_in_facts: scope.stand_in_facts,
        },
    )
}

/// A dependency on a task that loops is a dependency on every one of its items (none, when
/// it has no items): `needs` and `triggeredBy` name tasks, instances carry items.
fn expand_looped_needs(
    instances: &mut [ResolvedInstance],
    looped: &BTreeMap<InstanceId, Vec<InstanceId>>,
) {
    if looped.is_empty() {
        return;
    }
    let expand = |ids: &mut Vec<InstanceId>| {
        *ids = ids
            .drain(..)
            .flat_map(|id| match looped.get(&id) {
                Some(items) => items.clone(),
                None => vec![id],
            })
            .collect();
    };
    for instance in instances {
        expand(&mut instance.needs);
        expand(&mut instance.triggered_by);
    }
}

impl Names {
    /// The context and names of one item of a looping task: `item` over the task's own.
    fn with_item(&self, ctx: &Ctx, item: &Value, blinded: &Value) -> (Ctx, Names) {
        let mut all = self.all.clone();
        all.push("item".to_owned());
        // An item that differs without the secrets is made from one: as secret as they are.
        let mut secrets = self.secrets.clone();
        if item != blinded {
            secrets.insert("item".to_owned());
        }
        let item_ctx =
            minijinja::context! { item => Ctx::from(minijinja::value::Serde(item)), ..ctx.clone() };
        let blinded = minijinja::context! { item => Ctx::from(minijinja::value::Serde(blinded)), ..self.blinded.clone() };
        (
            item_ctx,
            Names {
                all,
                secrets,
                unavailable: self.unavailable.clone(),
                blinded,
                stand_in_facts: self.stand_in_facts,
            },
        )
    }
}

/// Expands the desired state into instances.
///
/// A large fleet is expanded on several threads, each over its own share of the (workflow,
/// host) pairs, in order. What one pair yields depends only on that pair, with two
/// exceptions: a problem is reported once for all the instances it affects, and a value
/// derived from a secret is masked wherever it appears later. So the threads' work is kept
/// only when none of them met a problem or derived a secret; otherwise the whole is expanded
/// again on one thread, exactly as it always was.
pub fn resolve(desired: &Desired, inputs: &Inputs) -> Resolved {
    let pairs = pairs(desired);
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(8)
        .min(pairs.len() / PAIRS_PER_THREAD);
    if threads > 1
        && let Some(resolved) = resolve_on_threads(desired, inputs, &pairs, threads)
    {
        return resolved;
    }
    let mut run = Run::new(inputs);
    let part = run.part(desired, &pairs, None);
    finish_resolve(run, part)
}

/// Every (workflow, host) pair to expand, in order: workflows by name, then their hosts.
fn pairs(desired: &Desired) -> Vec<(&Workflow, &Host)> {
    desired
        .workflows
        .values()
        .flat_map(|w| desired.selected_hosts(w).map(move |h| (w, h)))
        .collect()
}

/// Fewer (workflow, host) pairs than this per thread are not worth a thread.
const PAIRS_PER_THREAD: usize = 64;

/// `None` when a thread met a problem or derived a secret (see `resolve`).
fn resolve_on_threads(
    desired: &Desired,
    inputs: &Inputs,
    pairs: &[(&Workflow, &Host)],
    threads: usize,
) -> Option<Resolved> {
    let share = pairs.len().div_ceil(threads);
    let base_redactor = Redactor::new(inputs.secrets.values().filter_map(|s| s.as_ref().ok()));
    // Set by the first share that cannot be kept: the others stop early.
    let stop = AtomicBool::new(false);
    let results: Vec<Option<(Part<'_>, BTreeSet<HostName>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = pairs
            .chunks(share)
            .map(|chunk| {
                let base = &base_redactor;
                let stop = &stop;
                scope.spawn(move || {
                    let mut run = Run::new(inputs);
                    let part = run.part(desired, chunk, Some((stop, base)));
                    let kept = run.kept(base) && !stop.load(Ordering::Relaxed);
                    if !kept {
                        stop.store(true, Ordering::Relaxed);
                    }
                    kept.then_some((part, run.facts_wanted))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().ok().flatten())
            .collect()
    });
    let mut run = Run::new(inputs);
    let mut whole = Part::default();
    for result in results {
        let (part, facts_wanted) = result?;
        whole.absorb(part);
        run.facts_wanted.extend(facts_wanted);
    }
    Some(finish_resolve(run, whole))
}

/// What a share of the (workflow, host) pairs expands to.
#[derive(Default)]
struct Part<'d> {
    instances: Vec<ResolvedInstance>,
    /// The task of each instance, by position, for the shared-path check (`claim`).
    tasks: Vec<&'d Task>,
    /// A looping task's id (without item) → the ids of its items' instances.
    looped: BTreeMap<InstanceId, Vec<InstanceId>>,
    left_out: LeftOut,
}

impl<'d> Part<'d> {
    fn absorb(&mut self, other: Part<'d>) {
        self.instances.extend(other.instances);
        self.tasks.extend(other.tasks);
        self.looped.extend(other.looped);
        self.left_out.absorb(other.left_out);
    }
}

fn finish_resolve(mut run: Run<'_>, part: Part<'_>) -> Resolved {
    let Part {
        mut instances,
        tasks,
        looped,
        left_out,
    } = part;
    left_out.bridge(&mut instances);
    expand_looped_needs(&mut instances, &looped);
    // A task whose `when` waits for facts not known here may have no instance at all.
    let undecided = |i: usize| {
        tasks.get(i).is_some_and(|t| t.when.is_some())
            && instances
                .get(i)
                .is_some_and(|d| !run.inputs.facts.contains_key(&d.id.host))
    };
    let conflicts = crate::claim::conflicts(&instances, undecided);
    run.problems
        .diagnostics
        .extend(crate::claim::diagnostics(&conflicts, &instances, &tasks));
    let diagnostics = run.problems.into_diagnostics();
    Resolved {
        instances,
        diagnostics,
        redactor: run.redactor,
        facts_wanted: run.facts_wanted,
    }
}

/// Tasks of a workflow that need nothing inside it: they wait for needed workflows.
fn roots(workflow: &Workflow) -> BTreeSet<&crate::model::meta::TaskName> {
    workflow
        .tasks
        .iter()
        .filter(|t| t.needs.is_empty() && t.triggered_by.is_empty())
        .map(|t| &t.name)
        .collect()
}

/// Tasks no other task of the workflow depends on: when they are done, the workflow is.
fn sinks(workflow: &Workflow) -> Vec<&crate::model::meta::TaskName> {
    let depended: BTreeSet<_> = workflow
        .tasks
        .iter()
        .flat_map(|t| t.needs.iter().chain(&t.triggered_by))
        .collect();
    workflow
        .tasks
        .iter()
        .map(|t| &t.name)
        .filter(|n| !depended.contains(n))
        .collect()
}

/// The instances `workflow`'s roots wait for on `host`: the sinks of each needed workflow
/// that also runs there (`needs` between workflows is per host; see ARCHITECTURE).
fn workflow_needs_on_host(desired: &Desired, workflow: &Workflow, host: &Host) -> Vec<InstanceId> {
    let mut ids = Vec::new();
    for needed in &workflow.needs {
        let Some(needed) = desired.workflows.get(needed) else {
            continue;
        };
        if !needed.hosts.matches(&host.name, &host.labels) {
            continue;
        }
        for task in sinks(needed) {
            ids.push(InstanceId::new(
                host.name.clone(),
                needed.name.clone(),
                task.clone(),
            ));
        }
    }
    ids
}

struct Run<'a> {
    inputs: &'a Inputs,
    redactor: Redactor,
    templates: Templates,
    problems: Problems,
    reported_secrets: BTreeSet<SecretKey>,
    /// Var loops already reported, by (file, pointer): one loop is one error, not one per host.
    reported_cycles: BTreeSet<(String, String)>,
    facts_wanted: BTreeSet<HostName>,
}

impl<'a> Run<'a> {
    /// Whether what it expanded so far can stand beside other shares' work: no problem
    /// met, no value derived from a secret (the redactor is still `base`).
    fn kept(&self, base: &Redactor) -> bool {
        self.problems.is_empty()
            && self.reported_secrets.is_empty()
            && self.reported_cycles.is_empty()
            && self.redactor == *base
    }

    fn new(inputs: &'a Inputs) -> Run<'a> {
        Run {
            inputs,
            redactor: Redactor::new(inputs.secrets.values().filter_map(|s| s.as_ref().ok())),
            templates: Templates::new(),
            problems: Problems::default(),
            reported_secrets: BTreeSet::new(),
            reported_cycles: BTreeSet::new(),
            facts_wanted: BTreeSet::new(),
        }
    }

    /// Expands these (workflow, host) pairs, in order.
    /// With `stop` (threads: a flag they share, and the redactor they started from), it
    /// stops early once this share or another can no longer be kept (see `resolve`).
    fn part<'d>(
        &mut self,
        desired: &'d Desired,
        pairs: &[(&'d Workflow, &'d Host)],
        stop: Option<(&AtomicBool, &Redactor)>,
    ) -> Part<'d> {
        let run = self;
        let mut part = Part::default();
        // Built once and shared by every context: the inventory as templates see it.
        let listing = crate::scope::hosts_listing(desired.hosts.values(), &mut run.templates);
        let mut roots_of: BTreeMap<
            &crate::model::meta::WorkflowName,
            BTreeSet<&crate::model::meta::TaskName>,
        > = BTreeMap::new();
        for &(workflow, host) in pairs {
            if let Some((flag, base)) = stop
                && (flag.load(Ordering::Relaxed) || !run.kept(base))
            {
                flag.store(true, Ordering::Relaxed);
                break;
            }
            let roots = roots_of
                .entry(&workflow.name)
                .or_insert_with(|| roots(workflow));
            let Some((ctx, names)) = run.scope(host, workflow, None).map(|s| finish(s, &listing))
            else {
                continue;
            };
            let after = workflow_needs_on_host(desired, workflow, host);
            for task in &workflow.tasks {
                let id =
                    InstanceId::new(host.name.clone(), workflow.name.clone(), task.name.clone());
                let extra = if roots.contains(&task.name) {
                    after.as_slice()
                } else {
                    &[]
                };
                // A task whose `when` does not hold on the host has no instance there.
                if !run.when_holds(task, host) {
                    part.left_out.insert(id, host, workflow, task, extra);
                    continue;
                }
                // A task with vars of its own sees them over the workflow's context.
                let own = if task.vars.is_empty() {
                    None
                } else {
                    match run.scope(host, workflow, Some(task)) {
                        Some(own) => Some(finish(own, &listing)),
                        None => continue,
                    }
                };
                let (ctx, names) = own.as_ref().map_or((&ctx, &names), |(c, n)| (c, n));
                let Some(for_each) = &task.for_each else {
                    if let Some(instance) =
                        run.instance(id, host, workflow, task, (ctx, names), extra)
                    {
                        part.instances.push(instance);
                        part.tasks.push(task);
                    }
                    continue;
                };
                let Some(items) = run.items(for_each, task, &id, ctx, names) else {
                    continue;
                };
                part.looped.entry(id.clone()).or_default();
                for (item, blinded) in items {
                    let item_id = id.clone().with_item(item.key);
                    let (ctx, names) = names.with_item(ctx, &item.value, &blinded);
                    if let Some(instance) =
                        run.instance(item_id, host, workflow, task, (&ctx, &names), extra)
                    {
                        part.looped
                            .entry(id.clone())
                            .or_default()
                            .push(instance.id.clone());
                        part.instances.push(instance);
                        part.tasks.push(task);
                    }
                }
            }
        }
        part
    }
}

impl Run<'_> {
    /// Whether `task` runs on `host`: its `when` holds for the host's facts, or the facts
    /// are not known here (then it may or may not: the instance says so).
    fn when_holds(&self, task: &Task, host: &Host) -> bool {
        match (&task.when, self.inputs.facts.get(&host.name)) {
            (None, _) | (Some(_), None) => true,
            (Some(when), Some(facts)) => crate::facts::holds(when, facts),
        }
    }

    /// The vars of a task of a workflow on a host, rendered; `None` if a secret they need is
    /// missing or a var cannot be rendered (reported). Vars come from four layers, the first
    /// that names a var wins: the task's, the workflow's, the host's, then the host's
    /// defaults. A value that a higher layer overrides is never read (a secret it names need
    /// not exist).
    fn scope(&mut self, host: &Host, workflow: &Workflow, task: Option<&Task>) -> Option<Scope> {
        let mut layers: Vec<(&Vars, Origin)> = Vec::with_capacity(3 + host.inherited.len());
        if let Some(task) = task {
            layers.push((&task.vars, task.origin.push("vars")));
        }
        layers.push((&workflow.vars, workflow.origin.push("spec").push("vars")));
        layers.push((&host.spec.vars, host.origin.push("spec").push("vars")));
        for layer in &host.inherited {
            layers.push((&layer.vars, layer.origin.clone()));
        }
        let mut scope = Scope::default();
        let mut complete = true;
        for (vars_of, origin) in layers {
            for (name, value) in vars_of {
                if scope.origins.contains_key(name) {
                    continue;
                }
                let var_origin = origin.push(name);
                scope.origins.insert(name.clone(), var_origin.clone());
                let value = match value {
                    VarValue::Plain(v) => v.clone(),
                    VarValue::Secret(secret) => {
                        scope.secrets.insert(name.clone());
                        let source = secret.source()?;
                        let key = SecretKey::new(&source, &origin.file.path);
                        match self.inputs.secrets.get(&key) {
                            Some(Ok(value)) => Value::String(value.expose().to_owned()),
                            Some(Err(Unreadable::Absent(why)))
                                if self.inputs.stand_in_missing_secrets =>
                            {
                                self.report_unavailable(&key, why, &var_origin, name);
                                scope.unavailable.insert(name.clone());
                                Value::String(stand_in_value(name))
                            }
                            problem => {
                                complete = false;
                                self.report_secret(
                                    &key,
                                    problem.and_then(|p| p.as_ref().err()),
                                    &var_origin,
                                    name,
                                );
                                continue;
                            }
                        }
                    }
                };
                // The stand-in has the secret's length (slices line up) and a character
                // secrets do not use and filters leave alone, so what differs is the secret.
                let stand_in = if scope.secrets.contains(name) {
                    Value::String("\u{a4}".repeat(value.as_str().map_or(8, |v| v.chars().count())))
                } else {
                    value.clone()
                };
                scope.blinded.insert(name.clone(), stand_in);
                scope.vars.insert(name.clone(), value);
            }
        }
        let facts = self.inputs.facts.get(&host.name);
        scope.stand_in_facts = facts.is_none();
        let facts = facts.cloned().unwrap_or_else(Facts::stand_in);
        let builtin = [
            (
                "host",
                serde_json::json!({"name": host.name.as_str(), "address": crate::scope::address(host), "labels": host.labels, "facts": facts}),
            ),
            (
                "workflow",
                serde_json::json!({"name": workflow.name.as_str(), "labels": workflow.labels}),
            ),
        ];
        for (key, value) in builtin {
            scope.blinded.insert(key.to_owned(), value.clone());
            scope.vars.insert(key.to_owned(), value);
        }
        if !complete {
            return None;
        }
        let first_task = task.or_else(|| workflow.tasks.first())?;
        let id = InstanceId::new(
            host.name.clone(),
            workflow.name.clone(),
            first_task.name.clone(),
        );
        match crate::scope::render_vars(&mut scope, &mut self.templates) {
            Ok(()) => Some(scope),
            Err(problem) => {
                self.report_var(&scope, problem, &id);
                None
            }
        }
    }

    /// The items of a looping task on one host, each with what it is without the secrets
    /// (to tell an item made from a secret); `None` when they cannot be had (reported).
    fn items(
        &mut self,
        for_each: &ForEach,
        task: &Task,
        id: &InstanceId,
        ctx: &Ctx,
        names: &Names,
    ) -> Option<Vec<(Item, Value)>> {
        let origin = task.origin.push("forEach");
        let invalid = |message: String, help: &'static str| Invalid {
            code: "manifest::invalid-for-each",
            message,
            label: "gives no items",
            help,
        };
        let (value, blinded, literal) = match for_each {
            ForEach::List(list) => (Value::Array(list.clone()), Value::Array(list.clone()), true),
            ForEach::Map(map) => {
                let map: Map<String, Value> = map.clone().into_iter().collect();
                (Value::Object(map.clone()), Value::Object(map), true)
            }
            ForEach::Expression(text) => {
                let Some(expression) = crate::for_each::expression_of(text) else {
                    self.problems.invalid(
                        &origin,
                        &invalid(
                            "`forEach` is text, not a list, a map or one `{{ expression }}`"
                                .to_owned(),
                            "write a list, a map, or `{{ name }}` of a var that holds one",
                        ),
                        id,
                    );
                    return None;
                };
                let evaluated = self.templates.evaluate(expression, ctx).and_then(|real| {
                    Ok((real, self.templates.evaluate(expression, &names.blinded)?))
                });
                match evaluated {
                    Ok((real, blinded)) => (real, blinded, false),
                    Err(error) => {
                        self.problems.template(
                            Place::Manifest(origin),
                            text,
                            &error,
                            id,
                            &names.all,
                        );
                        return None;
                    }
                }
            }
        };
        let items = match crate::for_each::items(&value) {
            Ok(items) => items,
            Err(error) => {
                let at = match (&error.at, literal) {
                    (Some(at), true) => origin.push(at),
                    _ => origin,
                };
                self.problems
                    .invalid(&at, &invalid(error.message, error.help), id);
                return None;
            }
        };
        let blinded = crate::for_each::items(&blinded).unwrap_or_default();
        let same_keys =
            blinded.len() == items.len() && blinded.iter().zip(&items).all(|(b, i)| b.key == i.key);
        if !same_keys {
            // Instance ids are not secret: they are in the state, the logs and every report.
            self.problems.invalid(&origin, &invalid("the items' keys are made from a secret".to_owned(), "key the items by something that is not secret (a `name`); the item's other fields may hold secrets"), id);
            return None;
        }
        Some(
            items
                .into_iter()
                .zip(blinded)
                .map(|(item, b)| (item, b.value))
                .collect(),
        )
    }

    /// A var that cannot be rendered, located at its declaration.
    fn report_var(&mut self, scope: &Scope, problem: VarProblem, id: &InstanceId) {
        match problem {
            VarProblem::Render { name, text, error } => {
                let Some(origin) = scope.origins.get(&name) else {
                    return;
                };
                let names: Vec<String> = scope.vars.keys().cloned().collect();
                self.problems
                    .template(Place::Manifest(origin.clone()), &text, &error, id, &names);
            }
            VarProblem::Cycle { path } => {
                let Some(origin) = path.first().and_then(|n| scope.origins.get(n)) else {
                    return;
                };
                if !self
                    .reported_cycles
                    .insert((origin.file.path.clone(), origin.pointer.to_string()))
                {
                    return;
                }
                let shown: Vec<String> = path.iter().map(|n| format!("`{n}`")).collect();
                let mut diagnostic = Diagnostic::error(
                    "template::var-cycle",
                    format!("vars use each other in a loop: {}", shown.join(" → ")),
                )
                .at(load::locate(origin))
                .with_label("uses itself through the others")
                .with_help("give one of them a plain value, or move the shared part into a new var they both use");
                for name in path.iter().skip(1).take(path.len().saturating_sub(2)) {
                    if let Some(other) = scope.origins.get(name) {
                        diagnostic = diagnostic.with_related(
                            load::locate(other),
                            format!("`{name}` is part of the loop"),
                        );
                    }
                }
                self.problems.diagnostics.push(diagnostic);
            }
        }
    }

    /// A secret that is not available in stand-in mode: a warning, once per secret.
    fn report_unavailable(&mut self, key: &SecretKey, why: &str, var: &Origin, name: &str) {
        if !self.reported_secrets.insert(key.clone()) {
            return;
        }
        let origin = var.push("valueFrom");
        self.problems.diagnostics.push(
            Diagnostic::warning(
                "secret::unavailable",
                format!(
                    "secret `{name}` is not available here ({key}: {why}); what uses it is planned as \"may change\""
                ),
            )
            .at(load::locate(&origin))
            .with_label("secret read from here")
            .with_help("set it to see the exact changes; --require-secrets makes a missing secret an error"),
        );
    }

    fn report_secret(
        &mut self,
        key: &SecretKey,
        reason: Option<&Unreadable>,
        var: &Origin,
        name: &str,
    ) {
        if !self.reported_secrets.insert(key.clone()) {
            return;
        }
        let unread = Unreadable::Missing("it was not read".to_owned());
        let reason = reason.unwrap_or(&unread);
        let origin = var.push("valueFrom");
        let help = reason.help(true).unwrap_or_else(|| match key {
            SecretKey::Env(var) => format!("export {var} in drover's environment"),
            SecretKey::File(path) => format!("create {path}, readable by drover"),
        });
        self.problems.diagnostics.push(
            Diagnostic::error(
                reason.code("secret::missing"),
                format!(
                    "secret `{name}` is not available: {key}: {}",
                    reason.reason()
                ),
            )
            .at(load::locate(&origin))
            .with_label("secret read from here")
            .with_help(help),
        );
    }

    fn instance(
        &mut self,
        id: InstanceId,
        host: &Host,
        workflow: &Workflow,
        task: &Task,
        (ctx, names): (&Ctx, &Names),
        extra_needs: &[InstanceId],
    ) -> Option<ResolvedInstance> {
        let mut r = Renderer {
            run: self,
            id: &id,
            ctx,
            names,
            origin: &task.origin,
            failed: false,
            sensitive: false,
            unavailable: BTreeSet::new(),
            unavailable_facts: names.stand_in_facts && task.when.is_some(),
        };
        let action = r.action(&task.kind);
        let check = task.check.as_ref().and_then(|c| r.command(c, "check"));
        let undo = task.undo.as_ref().and_then(|c| r.command(c, "undo"));
        let (failed, sensitive, unavailable_facts) = (r.failed, r.sensitive, r.unavailable_facts);
        let unavailable_secrets: Vec<String> =
            std::mem::take(&mut r.unavailable).into_iter().collect();
        if unavailable_facts {
            self.facts_wanted.insert(host.name.clone());
        }
        let action = action.filter(|_| !failed)?;
        let connection = match host.spec.transport() {
            Transport::Local => Connection::Local,
            Transport::Ssh => Connection::Ssh {
                address: host
                    .spec
                    .address
                    .clone()
                    .unwrap_or_else(|| host.name.to_string()),
                port: host.spec.port,
                user: host.spec.user.clone(),
            },
        };
        let r#become = task.r#become.clone().or_else(|| host.spec.r#become.clone());
        let spec_hash = SpecHash::of(&HashInput {
            connection: &connection,
            r#become: r#become.as_deref(),
            action: &action,
        });
        let same = |name: &crate::model::meta::TaskName| {
            InstanceId::new(host.name.clone(), workflow.name.clone(), name.clone())
        };
        let mut needs: Vec<InstanceId> = task.needs.iter().map(same).collect();
        needs.extend(extra_needs.iter().cloned());
        Some(ResolvedInstance {
            needs,
            triggered_by: task.triggered_by.iter().map(same).collect(),
            id,
            connection,
            r#become,
            action,
            check,
            undo,
            timeout: task.timeout,
            retries: task.retries,
            drift: task.drift,
            sensitive,
            spec_hash,
            unavailable_secrets,
            unavailable_facts,
        })
    }
}

/// What a secret that is not available renders to in a plan made without it.
fn stand_in_value(name: &str) -> String {
    format!("(secret {name}: not available here)")
}

/// Whether `name` appears in `text` as a whole identifier (`pw` in `{{ pw }}`, not in
/// `{{ fpw }}`).
fn mentions(text: &str, name: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(name).any(|(at, _)| {
        let before = text.get(..at).and_then(|t| t.chars().next_back());
        let after = text.get(at + name.len()..).and_then(|t| t.chars().next());
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// Renders the fields of one instance, recording problems against its id.
struct Renderer<'r, 'a> {
    run: &'r mut Run<'a>,
    id: &'r InstanceId,
    ctx: &'r Ctx,
    /// Names of the variables in `ctx` ("did you mean"), and which are secrets (taint).
    names: &'r Names,
    origin: &'r Origin,
    failed: bool,
    sensitive: bool,
    /// The unavailable secrets the rendered fields were found to depend on.
    unavailable: BTreeSet<String>,
    /// Whether a rendered field (or the task's `when`) uses stand-in facts.
    unavailable_facts: bool,
}

impl Renderer<'_, '_> {
    /// Whether `out`, rendered from `text`, depends on a secret: the template names one and
    /// renders differently when every secret is swapped for a stand-in. Dynamic, so every
    /// filter, slice, `set` or macro is covered.
    fn derived_from_secret(&mut self, text: &str, out: &str) -> bool {
        // A template that names a secret standing in for one not available renders to what
        // is not known here, whether or not the stand-in shows in its output (`| length`,
        // `{% if %}`): any mention counts.
        for name in &self.names.unavailable {
            if mentions(text, name) {
                self.unavailable.insert(name.clone());
            }
        }
        // Stand-in facts: any template that names `facts` renders to what is not known here.
        if self.names.stand_in_facts && mentions(text, "facts") {
            self.unavailable_facts = true;
        }
        self.derived_from_any_secret(text, out)
    }

    fn derived_from_any_secret(&mut self, text: &str, out: &str) -> bool {
        if !self.names.secrets.iter().any(|s| text.contains(s.as_str())) {
            return false;
        }
        let Ok(blind) = self.run.templates.render(text, &self.names.blinded) else {
            // It renders with the secrets only: treat all of it as derived.
            self.run.redactor.add_derived(out);
            return true;
        };
        if blind == out {
            return false;
        }
        // What differs from the stand-in rendering is what the secrets became (`| upper`,
        // a slice): each such piece is masked wherever it appears, in the output of the
        // commands too, and the whole value as well. A piece made of several runs is masked
        // whole, and each of its runs long enough to be worth searching for on its own; its
        // shorter runs (the letters of `| join(' ')`) are not: each hides nothing alone, and
        // masking every such word (`-e`, `status 3`) would garble all output.
        for piece in differing_pieces(&blind, out) {
            let long = |text: &String| text.chars().count() >= crate::secret::MIN_SUBSTRING_SECRET;
            if piece.runs.is_empty() || long(&piece.whole) {
                self.run.redactor.add_derived(&piece.whole);
            }
            for run in piece.runs.iter().filter(|r| long(r)) {
                self.run.redactor.add_derived(run);
            }
        }
        self.run.redactor.add_derived(out);
        true
    }

    fn text(&mut self, text: &str, field: &str) -> Option<String> {
        match self.run.templates.render(text, self.ctx) {
            Ok(out) => {
                if self.derived_from_secret(text, &out) {
                    // Whatever a template made of a secret (`| upper`, a slice, a
                    // replace) is as secret as the secret: masked, everywhere.
                    self.sensitive = true;
                } else if self.run.redactor.contains_secret(&out) {
                    self.sensitive = true;
                }
                Some(out)
            }
            Err(_) if self.facts_decide(text) => Some(text.to_owned()),
            Err(error) => {
                self.failed = true;
                let origin = Origin {
                    pointer: JsonPointer::from_escaped(&format!("{}{field}", self.origin.pointer)),
                    ..self.origin.clone()
                };
                self.run.problems.template(
                    Place::Manifest(origin),
                    text,
                    &error,
                    self.id,
                    &self.names.all,
                );
                None
            }
        }
    }

    /// Whether a template that failed to render uses facts that are stand-ins here: what it
    /// renders to (or whether it renders at all: `pkg[host.facts.os]`) is decided by the
    /// real facts, so the instance "may change" and the real facts report any error.
    fn facts_decide(&mut self, text: &str) -> bool {
        let decide = self.names.stand_in_facts && mentions(text, "facts");
        if decide {
            self.unavailable_facts = true;
        }
        decide
    }

    /// Checks a rendered value against `rule`; a value that breaks it fails the instance
    /// with a diagnostic at the field.
    fn checked(
        &mut self,
        value: Option<String>,
        field: &str,
        rule: impl Fn(&str) -> Result<(), Invalid>,
    ) -> Option<String> {
        let value = value?;
        // A stand-in for a secret that is not available is no name; what it renders to is
        // judged where the secret is (the instance "may change" here).
        let stand_in = !self.unavailable.is_empty()
            && self
                .unavailable
                .iter()
                .any(|name| value.contains(&stand_in_value(name)));
        let stand_in = stand_in || (self.unavailable_facts && crate::facts::has_stand_in(&value));
        match rule(&value) {
            Ok(()) => Some(value),
            Err(_) if stand_in => Some(value),
            Err(invalid) => {
                self.failed = true;
                let origin = Origin {
                    pointer: JsonPointer::from_escaped(&format!("{}{field}", self.origin.pointer)),
                    ..self.origin.clone()
                };
                self.run.problems.invalid(&origin, &invalid, self.id);
                None
            }
        }
    }

    #[expect(
        clippy::option_option,
        reason = "outer None: rendering failed; inner None: the field is absent"
    )]
    fn opt(&mut self, text: Option<&String>, field: &str) -> Option<Option<String>> {
        match text {
            None => Some(None),
            Some(t) => self.text(t, field).map(Some),
        }
    }

    /// Renders a command; `field` is its path below the task (`run`, `run/unless`).
    fn command(&mut self, command: &Command, field: &str) -> Option<String> {
        match command {
            Command::Shell(s) => self.shell(s, field),
            Command::Argv(words) => self.argv(words, field),
        }
    }

    fn shell(&mut self, text: &str, field: &str) -> Option<String> {
        let pointer = format!("/{field}");
        let rendered = self.text(text, &pointer);
        self.checked(rendered, &pointer, |c| command_rule(field, c))
    }

    fn argv(&mut self, words: &[String], field: &str) -> Option<String> {
        let rendered: Option<Vec<String>> = words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let pointer = format!("/{field}/{i}");
                let word = self.text(w, &pointer);
                if i == 0 {
                    self.checked(word, &pointer, |c| command_rule(field, c))
                } else {
                    self.checked(word, &pointer, |c| argv_word_rule(field, c))
                }
            })
            .collect();
        rendered.map(|r| join_argv(&r))
    }

    fn action(&mut self, kind: &TaskKind) -> Option<Action> {
        match kind {
            TaskKind::Run(RunSpec::Shell(s)) => Some(Action::Run {
                command: self.shell(s, "run")?,
                creates: None,
                unless: None,
            }),
            TaskKind::Run(RunSpec::Argv(words)) => Some(Action::Run {
                command: self.argv(words, "run")?,
                creates: None,
                unless: None,
            }),
            TaskKind::Run(RunSpec::Guarded(g)) => {
                let command = self.command(&g.command, "run/command");
                let creates = match self.opt(g.creates.as_ref(), "/run/creates") {
                    Some(Some(path)) => self
                        .checked(Some(path), "/run/creates", |p| path_rule("run/creates", p))
                        .map(Some),
                    other => other,
                };
                let unless = match &g.unless {
                    None => Some(None),
                    Some(c) => self.command(c, "run/unless").map(Some),
                };
                Some(Action::Run {
                    command: command?,
                    creates: creates?,
                    unless: unless?,
                })
            }
            TaskKind::File(file) => self.file(file),
            TaskKind::Directory(directory) => self.directory(directory),
            TaskKind::Link(link) => self.link(link),
            TaskKind::Line(line) => self.line(line),
            TaskKind::Block(block) => self.block(block),
            TaskKind::Package(p) => {
                let names: Option<Vec<String>> = p
                    .names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| {
                        let field = format!("/package/names/{i}");
                        let name = self.text(n, &field);
                        self.checked(name, &field, package_name)
                    })
                    .collect();
                Some(Action::Package {
                    names: names?,
                    state: p.state,
                })
            }
            TaskKind::Service(s) => Some(Action::Service {
                name: {
                    let name = self.text(&s.name, "/service/name");
                    self.checked(name, "/service/name", service_name)?
                },
                state: s.state,
                enabled: s.enabled,
                on_trigger: s.on_trigger,
            }),
            TaskKind::Sysctl(sysctl) => self.sysctl(sysctl),
            TaskKind::Cron(cron) => self.cron(cron),
            TaskKind::User(user) => self.user(user).map(Action::User),
            TaskKind::Group(group) => self.group(group).map(Action::Group),
            TaskKind::Archive(archive) => self.archive(archive),
        }
    }

    fn user(&mut self, user: &UserSpec) -> Option<UserAccount> {
        let name = self.text(&user.name, "/user/name");
        let name = self.checked(name, "/user/name", user_name_rule);
        let group = self.one_of(user.group.as_ref(), "/user/group", primary_group_rule);
        let shell = self.one_of(user.shell.as_ref(), "/user/shell", |p| {
            account_path_rule("shell", p)
        });
        let home = self.one_of(user.home.as_ref(), "/user/home", |p| {
            account_path_rule("home", p)
        });
        let comment = self.one_of(user.comment.as_ref(), "/user/comment", comment_rule);
        let groups: Option<Option<Vec<String>>> = match &user.groups {
            None => Some(None),
            Some(list) => {
                let rendered: Vec<Option<String>> = list
                    .iter()
                    .enumerate()
                    .map(|(i, g)| {
                        let field = format!("/user/groups/{i}");
                        let g = self.text(g, &field);
                        self.checked(g, &field, group_name_rule)
                    })
                    .collect();
                // Sorted and deduplicated: the order of a group list means nothing.
                let set: Option<BTreeSet<String>> = rendered.into_iter().collect();
                set.map(|s| Some(s.into_iter().collect()))
            }
        };
        Some(UserAccount {
            name: name?,
            uid: user.uid,
            group: group?,
            groups: groups?,
            append: user.append,
            shell: shell?,
            home: home?,
            // As `useradd` does: system accounts get no home unless asked for one.
            create_home: user.create_home.unwrap_or(!user.system),
            comment: comment?,
            system: user.system,
            state: user.state,
        })
    }

    fn group(&mut self, group: &GroupSpec) -> Option<GroupAccount> {
        let name = self.text(&group.name, "/group/name");
        Some(GroupAccount {
            name: self.checked(name, "/group/name", group_name_rule)?,
            gid: group.gid,
            system: group.system,
            state: group.state,
        })
    }

    fn archive(&mut self, archive: &ArchiveSpec) -> Option<Action> {
        let dest = self.text(&archive.dest, "/archive/dest");
        let dest = self.checked(dest, "/archive/dest", |d| {
            host_path_rule(HostPath::ArchiveDest, d)
        });
        let Some(source) = archive
            .source
            .as_ref()
            .filter(|_| archive.state == PathState::Present)
        else {
            let dest = dest?;
            return Some(Action::Archive {
                source: String::new(),
                marker: archive_marker(&dest, self.id),
                dest,
                format: ArchiveFormat::Tar,
                sha256: String::new(),
                content: Arc::from(Vec::new()),
                state: PathState::Absent,
            });
        };
        // The source is read as written: a templated name would make the file to read
        // depend on the host, which `needed` cannot list beforehand.
        let (key, content) = self.input_file(source, "/archive/source")?;
        let Some(format) = ArchiveFormat::detect(&content) else {
            self.failed = true;
            let origin = Origin {
                pointer: JsonPointer::from_escaped(&format!(
                    "{}/archive/source",
                    self.origin.pointer
                )),
                ..self.origin.clone()
            };
            // One diagnostic per file and place, however many hosts share the task.
            if self
                .run
                .problems
                .missing_files
                .insert((origin.file.path.clone(), origin.pointer.to_string()))
            {
                self.run.problems.diagnostics.push(
                    Diagnostic::error(
                        "manifest::unknown-archive-format",
                        format!("{key} is not an archive drover can unpack"),
                    )
                    .at(load::locate(&origin))
                    .with_label("named here")
                    .with_help("give a tar archive (plain, gzip, xz or bzip2) or a zip file; the format is recognised by the file's first bytes, not its name"),
                );
            }
            return None;
        };
        let dest = dest?;
        Some(Action::Archive {
            source: key,
            marker: archive_marker(&dest, self.id),
            dest,
            format,
            sha256: crate::hash::sha256_hex(&content),
            content,
            state: PathState::Present,
        })
    }

    fn sysctl(&mut self, sysctl: &SysctlSpec) -> Option<Action> {
        let name = self.text(&sysctl.name, "/sysctl/name");
        let name = self.checked(name, "/sysctl/name", sysctl_name_rule);
        let value = match &sysctl.value {
            None => Some(None),
            Some(value) => {
                let value = self.text(&value.to_text(), "/sysctl/value");
                self.checked(value, "/sysctl/value", sysctl_value_rule)
                    .map(|v| Some(normalize_sysctl_value(&v)))
            }
        };
        let file = self.opt(sysctl.file.as_ref(), "/sysctl/file");
        let file = match file {
            Some(Some(file)) => self.checked(Some(file), "/sysctl/file", file_path_rule),
            Some(None) => name.as_deref().map(default_sysctl_file),
            None => None,
        };
        Some(Action::Sysctl {
            name: name?,
            value: value?,
            state: sysctl.state,
            file: file?,
        })
    }

    fn cron(&mut self, cron: &CronSpec) -> Option<Action> {
        let name = self.text(&cron.name, "/cron/name");
        let name = self.checked(name, "/cron/name", cron_name_rule);
        let schedule = self.one_of(cron.schedule.as_ref(), "/cron/schedule", cron_schedule_rule);
        let command = self.one_of(cron.command.as_ref(), "/cron/command", cron_command_rule);
        let user = self.account(cron.user.as_ref(), "/cron/user");
        let dir = self.one_of(cron.dir.as_ref(), "/cron/dir", cron_dir_rule);
        let name = name?;
        let dir = dir?.unwrap_or_else(|| "/etc/cron.d".to_owned());
        let path = format!("{}/drover-{name}", dir.trim_end_matches('/'));
        Some(Action::Cron {
            name,
            schedule: schedule?,
            command: command?,
            user: user?.unwrap_or_else(|| "root".to_owned()),
            state: cron.state,
            path,
        })
    }

    /// An optional field, rendered and checked by `rule`.
    #[expect(
        clippy::option_option,
        reason = "outer None: rendering failed; inner None: the field is absent"
    )]
    fn one_of(
        &mut self,
        text: Option<&String>,
        field: &str,
        rule: impl Fn(&str) -> Result<(), Invalid>,
    ) -> Option<Option<String>> {
        match self.opt(text, field) {
            Some(Some(text)) => self.checked(Some(text), field, rule).map(Some),
            other => other,
        }
    }

    fn directory(&mut self, directory: &DirectorySpec) -> Option<Action> {
        let path = self.text(&directory.path, "/directory/path");
        let path = self.checked(path, "/directory/path", |p| {
            host_path_rule(HostPath::Directory, p)
        });
        let owner = self.account(directory.owner.as_ref(), "/directory/owner");
        let group = self.account(directory.group.as_ref(), "/directory/group");
        Some(Action::Directory {
            path: path?,
            mode: directory.mode,
            owner: owner?,
            group: group?,
            state: directory.state,
            recursive: directory.recursive,
        })
    }

    fn link(&mut self, link: &LinkSpec) -> Option<Action> {
        let path = self.text(&link.path, "/link/path");
        let path = self.checked(path, "/link/path", |p| host_path_rule(HostPath::Link, p));
        let target = match self.opt(link.target.as_ref(), "/link/target") {
            Some(Some(target)) => self
                .checked(Some(target), "/link/target", link_target_rule)
                .map(Some),
            other => other,
        };
        Some(Action::Link {
            path: path?,
            target: target?,
            state: link.state,
            force: link.force,
        })
    }

    fn line(&mut self, line: &LineSpec) -> Option<Action> {
        let path = self.text(&line.path, "/line/path");
        let path = self.checked(path, "/line/path", |p| host_path_rule(HostPath::Edited, p));
        let text = self.one_line(line.line.as_ref(), "/line/line", "line");
        let regex = self.one_line(line.r#match.as_ref(), "/line/match", "match");
        Some(Action::Line {
            path: path?,
            line: text?,
            r#match: regex?,
            state: line.state,
            create: line.create,
        })
    }

    fn block(&mut self, block: &BlockSpec) -> Option<Action> {
        let path = self.text(&block.path, "/block/path");
        let path = self.checked(path, "/block/path", |p| host_path_rule(HostPath::Edited, p));
        let marker = match self.one_line(block.marker.as_ref(), "/block/marker", "marker") {
            Some(Some(marker)) => Some(marker),
            Some(None) => Some(format!("drover {}", self.id)),
            None => None,
        };
        let content = match (
            block.state,
            self.opt(block.content.as_ref(), "/block/content"),
        ) {
            (PathState::Absent, _) => Some(String::new()),
            (PathState::Present, content) => content.map(|c| block_body(&c.unwrap_or_default())),
        };
        let content = content?;
        Some(Action::Block {
            path: path?,
            marker: marker?,
            content_hash: content_hash(content.as_bytes()),
            content,
            state: block.state,
            create: block.create,
        })
    }

    /// An optional `line`, `match` or `marker`, rendered and checked to be one line.
    #[expect(
        clippy::option_option,
        reason = "outer None: rendering failed; inner None: the field is absent"
    )]
    fn one_line(
        &mut self,
        text: Option<&String>,
        pointer: &str,
        field: &str,
    ) -> Option<Option<String>> {
        match self.opt(text, pointer) {
            Some(Some(text)) => self
                .checked(Some(text), pointer, |t| edited_line_rule(field, t))
                .map(Some),
            other => other,
        }
    }

    /// An optional `owner` or `group`, rendered and checked to be one plain name.
    #[expect(
        clippy::option_option,
        reason = "outer None: rendering failed; inner None: the field is absent"
    )]
    fn account(&mut self, name: Option<&String>, field: &str) -> Option<Option<String>> {
        match self.opt(name, field) {
            Some(Some(name)) => self.checked(Some(name), field, account_name).map(Some),
            other => other,
        }
    }

    fn file(&mut self, file: &FileSpec) -> Option<Action> {
        let path = self.text(&file.path, "/file/path");
        let path = self.checked(path, "/file/path", file_path_rule);
        let owner = self.opt(file.owner.as_ref(), "/file/owner");
        let group = self.opt(file.group.as_ref(), "/file/group");
        let content: Option<Arc<[u8]>> = if let Some(inline) = &file.content {
            self.text(inline, "/file/content")
                .map(|s| Arc::from(s.into_bytes()))
        } else if let Some(template) = &file.template {
            self.template_file(template)
        } else if let Some(source) = &file.source {
            self.input_file(source, "/file/source")
                .map(|(_, bytes)| bytes)
        } else {
            None
        };
        let content = content?;
        if file.content.is_none()
            && self
                .run
                .redactor
                .contains_secret(&String::from_utf8_lossy(&content))
        {
            self.sensitive = true;
        }
        Some(Action::File {
            path: path?,
            content_hash: content_hash(&content),
            content,
            // A file that holds a secret is readable by its owner only, unless the task says.
            mode: file.mode.or_else(|| {
                self.sensitive
                    .then(|| crate::model::duration::FileMode::parse("0600").ok())
                    .flatten()
            }),
            owner: owner?,
            group: group?,
        })
    }

    fn input_file(&mut self, path: &str, field: &str) -> Option<(String, Arc<[u8]>)> {
        let key = relative_to(&self.origin.file.path, path);
        match self.run.inputs.files.get(&key) {
            Some(Ok(bytes)) => Some((key, bytes.clone())),
            problem => {
                self.failed = true;
                let unread = Unreadable::Missing("it was not read".to_owned());
                let reason = problem.and_then(|p| p.as_ref().err()).unwrap_or(&unread);
                let origin = Origin {
                    pointer: JsonPointer::from_escaped(&format!("{}{field}", self.origin.pointer)),
                    ..self.origin.clone()
                };
                self.run.problems.unreadable_file(
                    &origin,
                    &key,
                    reason.code("manifest::missing-file"),
                    &reason.reason(),
                    reason.help(false),
                );
                None
            }
        }
    }

    fn template_file(&mut self, path: &str) -> Option<Arc<[u8]>> {
        let (key, bytes) = self.input_file(path, "/file/template")?;
        let Ok(text) = std::str::from_utf8(&bytes) else {
            self.failed = true;
            let origin = Origin {
                pointer: JsonPointer::from_escaped(&format!(
                    "{}/file/template",
                    self.origin.pointer
                )),
                ..self.origin.clone()
            };
            self.run.problems.unreadable_file(
                &origin,
                &key,
                "manifest::missing-file",
                "it is not UTF-8 text",
                Some("use `source` for binary files; `template` is for text".to_owned()),
            );
            return None;
        };
        match self.run.templates.render(text, self.ctx) {
            Ok(out) => {
                if self.derived_from_secret(text, &out) {
                    self.sensitive = true;
                }
                Some(Arc::from(out.into_bytes()))
            }
            Err(_) if self.facts_decide(text) => Some(Arc::from(text.as_bytes())),
            Err(error) => {
                self.failed = true;
                let file = Arc::new(SourceFile::new(key, text));
                self.run.problems.template(
                    Place::TemplateFile(file),
                    text,
                    &error,
                    self.id,
                    &self.names.all,
                );
                None
            }
        }
    }
}

/// Where a template came from: a manifest field, or a template file.
enum Place {
    Manifest(Origin),
    TemplateFile(Arc<SourceFile>),
}

/// (file, pointer, code, message, template line): what makes two template problems the same.
type ProblemKey = (String, String, &'static str, String, Option<usize>);

/// Rendering problems, grouped so one broken template yields one diagnostic.
#[derive(Default)]
struct Problems {
    diagnostics: Vec<Diagnostic>,
    /// One entry per distinct template problem: where it is, a suggestion, and the
    /// instances it affects.
    templates: BTreeMap<ProblemKey, (Location, Option<String>, Vec<InstanceId>)>,
    missing_files: BTreeSet<(String, String)>,
}

impl Problems {
    fn is_empty(&self) -> bool {
        self.diagnostics.is_empty() && self.templates.is_empty() && self.missing_files.is_empty()
    }

    fn template(
        &mut self,
        place: Place,
        text: &str,
        error: &TemplateError,
        id: &InstanceId,
        names: &[String],
    ) {
        let (file, pointer) = match &place {
            Place::Manifest(o) => (o.file.path.clone(), o.pointer.to_string()),
            Place::TemplateFile(f) => (f.path.clone(), String::new()),
        };
        let key = (file, pointer, error.code, error.message.clone(), error.line);
        if let Some((_, _, ids)) = self.templates.get_mut(&key) {
            ids.push(id.clone());
            return;
        }
        let location = match place {
            Place::Manifest(origin) => {
                let mut location = load::locate(&origin);
                let snippet = error.range.clone().and_then(|r| text.get(r));
                if let Some(span) = error
                    .line
                    .and_then(|l| line_in(&location.file.text, location.span, text, l, snippet))
                {
                    location.span = span;
                }
                location
            }
            Place::TemplateFile(file) => {
                let span = error
                    .range
                    .clone()
                    .filter(|r| file.text.get(r.clone()).is_some())
                    .map(|r| Span::new(r.start, r.end))
                    .or_else(|| error.line.and_then(|l| nth_line(&file.text, l)))
                    .unwrap_or_default();
                Location {
                    file,
                    span,
                    pointer: None,
                }
            }
        };
        let hint = error.undefined.as_deref().and_then(|name| {
            crate::diagnostic::suggest(name, names.iter().map(String::as_str))
                .map(|near| format!("did you mean `{near}`?"))
        });
        self.templates
            .insert(key, (location, hint, vec![id.clone()]));
    }

    fn invalid(&mut self, origin: &Origin, invalid: &Invalid, id: &InstanceId) {
        if !self
            .missing_files
            .insert((origin.file.path.clone(), origin.pointer.to_string()))
        {
            return;
        }
        self.diagnostics.push(
            Diagnostic::error(invalid.code, format!("{} (on {id})", invalid.message))
                .at(load::locate(origin))
                .with_label("renders to this")
                .with_help(invalid.help),
        );
    }

    fn unreadable_file(
        &mut self,
        origin: &Origin,
        key: &str,
        code: &'static str,
        why: &str,
        help: Option<String>,
    ) {
        if !self
            .missing_files
            .insert((origin.file.path.clone(), origin.pointer.to_string()))
        {
            return;
        }
        self.diagnostics.push(
            Diagnostic::error(code, format!("cannot read {key}: {why}"))
                .at(load::locate(origin))
                .with_label("named here")
                .with_help(help.unwrap_or_else(|| {
                    "paths are relative to the manifest file that names them".to_owned()
                })),
        );
    }

    fn into_diagnostics(mut self) -> Vec<Diagnostic> {
        for ((_, _, code, message, _), (location, hint, ids)) in self.templates {
            let first = ids.first().map(ToString::to_string).unwrap_or_default();
            let whom = if ids.len() == 1 {
                format!("instance {first}")
            } else {
                format!(
                    "{} instances ({first} and {} more)",
                    ids.len(),
                    ids.len() - 1
                )
            };
            let help = match code {
                "template::undefined" => {
                    "define it under `vars:` of the workflow or the host, or guard it with `{% if x is defined %}`"
                }
                "template::syntax" if message.contains("end of block") => {
                    "a `{% for %}`, `{% if %}` or `{% block %}` is missing its `{% endfor %}`, `{% endif %}` or `{% endblock %}`"
                }
                "template::syntax" => "fix the template syntax; templates follow Jinja2",
                "template::unknown-name" => {
                    "drover's templates add the `shell_quote` (alias `q`) filter to Jinja2's built-ins"
                }
                "template::too-large" => {
                    "make the template's loops produce less, or copy a large file as is with `source`"
                }
                "template::out-of-fuel" => {
                    "a render may take a bounded number of steps; loop over less (nested loops multiply), or compute values once under `vars`"
                }
                _ => "check the template against the variables it uses",
            };
            self.diagnostics.push(
                Diagnostic::error(
                    code,
                    format!("cannot render the template for {whom}: {message}"),
                )
                .at(location)
                .with_label("in this template")
                .with_help(hint.unwrap_or_else(|| help.to_owned())),
            );
        }
        crate::diagnostic::sort(&mut self.diagnostics);
        self.diagnostics
    }
}

/// The span, inside `node` of `file_text`, of line `line` of the template `template`.
///
/// Block scalars hold template lines verbatim apart from indentation, so we search the node
/// for the first line whose trimmed text is the template line's trimmed text.
fn line_in(
    file_text: &str,
    node: Span,
    template: &str,
    line: usize,
    snippet: Option<&str>,
) -> Option<Span> {
    let wanted = template.lines().nth(line.checked_sub(1)?)?.trim();
    if wanted.is_empty() {
        return None;
    }
    let mut offset = node.start;
    for candidate in file_text
        .get(node.start..node.end.max(node.start))?
        .split_inclusive('\n')
    {
        let trimmed = candidate.trim();
        if trimmed == wanted || (line == 1 && trimmed.contains(wanted)) {
            let start = offset + candidate.find(wanted)?;
            // Narrow to the failing expression when it appears once on that line.
            let line_text = &candidate[candidate.find(wanted)?..][..wanted.len()];
            if let Some(snippet) =
                snippet.filter(|s| !s.is_empty() && line_text.matches(*s).count() == 1)
            {
                let at = start + line_text.find(snippet)?;
                return Some(Span::new(at, at + snippet.len()));
            }
            return Some(Span::new(start, start + wanted.len()));
        }
        offset += candidate.len();
    }
    None
}

fn nth_line(text: &str, line: usize) -> Option<Span> {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let trimmed = l.trim_end();
            return Some(Span::new(offset, offset + trimmed.len()));
        }
        offset += l.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_join_the_manifest_directory() {
        assert_eq!(
            relative_to("web/nginx.yaml", "files/nginx.conf"),
            "web/files/nginx.conf"
        );
        assert_eq!(relative_to("nginx.yaml", "./a/../b.conf"), "b.conf");
        assert_eq!(relative_to("web/nginx.yaml", "../shared/x"), "shared/x");
        assert_eq!(relative_to("nginx.yaml", "../outside"), "../outside");
        assert_eq!(relative_to("web/nginx.yaml", "/etc/abs"), "/etc/abs");
    }

    #[test]
    fn pieces_close_together_join_and_keep_their_runs() {
        // Two secrets side by side: one piece, and each run on its own too.
        let pieces = differing_pieces("-:-", "AKIDEXAMPLE:WJALRXUTNFEMI");
        assert_eq!(
            pieces,
            [Piece {
                whole: "AKIDEXAMPLE:WJALRXUTNFEMI".to_owned(),
                runs: vec!["AKIDEXAMPLE".to_owned(), "WJALRXUTNFEMI".to_owned()],
            }]
        );
        // A secret spelled out: one piece of one-letter runs.
        let pieces = differing_pieces("echo ; done", "echo S u p e r; done");
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].whole, "S u p e r");
        // One run alone is one piece, with no runs listed.
        let pieces = differing_pieces("pw=x rest", "pw=hunter2 rest");
        assert!(pieces.iter().all(|p| p.runs.is_empty()), "{pieces:?}");
        assert!(
            pieces.iter().any(|p| p.whole.contains("unter2")),
            "{pieces:?}"
        );
    }

    #[test]
    fn template_lines_are_found_inside_block_scalars() {
        let file = "content: |\n  a\n  worker {{ x }};\n";
        let node = Span::new(9, file.len());
        let span = line_in(file, node, "a\nworker {{ x }};\n", 2, None).unwrap();
        assert_eq!(&file[span.start..span.end], "worker {{ x }};");
        let span = line_in(file, node, "a\nworker {{ x }};\n", 2, Some("x")).unwrap();
        assert_eq!(&file[span.start..span.end], "x");
    }
}

#[cfg(test)]
mod thread_tests {
    use super::*;
    use crate::load::{Limits, load};
    use crate::source::SourceFile;
    use std::fmt::Write as _;
    use std::sync::Arc;

    /// `hosts` hosts, one workflow: a chain, a loop over a host var, the inventory listing,
    /// and (when `broken_on` names a host) one template that does not render there.
    fn desired(hosts: usize, broken_on: Option<usize>) -> Desired {
        let mut text = String::new();
        for h in 0..hosts {
            let vars = if broken_on == Some(h) {
                "{sites: [a, b]}".to_owned()
            } else {
                format!("{{sites: [a, b], port: {h}}}")
            };
            let _ = write!(
                text,
                "apiVersion: drover/v1\nkind: Host\nmetadata: {{name: h{h}, labels: {{role: web}}}}\nspec: {{address: 10.0.0.1, user: u, vars: {vars}}}\n---\n"
            );
        }
        text.push_str(
            "apiVersion: drover/v1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  hosts: {matchLabels: {role: web}}\n  tasks:\n    - {name: a, file: {path: /etc/a, content: \"{{ host.name }} {{ port }}\\n\"}}\n    - {name: b, needs: [a], forEach: \"{{ sites }}\", file: {path: \"/etc/b-{{ item }}\", content: \"{{ hosts | length }}\\n\"}}\n    - {name: c, needs: [b], run: \"echo {{ port }}\"}\n",
        );
        let files = [Arc::new(SourceFile::new("m.yaml", text))];
        let loaded = load(&files, &Limits::default());
        loaded
            .desired
            .unwrap_or_else(|| panic!("invalid fixture: {:#?}", loaded.diagnostics))
    }

    fn on_one_thread(desired: &Desired, inputs: &Inputs) -> Resolved {
        let mut run = Run::new(inputs);
        let part = run.part(desired, &pairs(desired), None);
        finish_resolve(run, part)
    }

    fn summary(resolved: &Resolved) -> Vec<(String, String, Vec<String>)> {
        resolved
            .instances
            .iter()
            .map(|i| {
                (
                    i.id.to_string(),
                    i.spec_hash.to_hex(),
                    i.needs.iter().map(ToString::to_string).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn a_fleet_expanded_on_threads_is_the_fleet_expanded_on_one() {
        let desired = desired(40, None);
        let inputs = Inputs::default();
        let pairs = pairs(&desired);
        let one = on_one_thread(&desired, &inputs);
        assert!(one.diagnostics.is_empty(), "{:#?}", one.diagnostics);
        assert_eq!(one.instances.len(), 40 * 4);
        for threads in [2, 3, 7] {
            let many = resolve_on_threads(&desired, &inputs, &pairs, threads)
                .unwrap_or_else(|| panic!("{threads} threads fell back"));
            assert_eq!(summary(&many), summary(&one), "{threads} threads");
            assert_eq!(many.facts_wanted, one.facts_wanted);
        }
    }

    #[test]
    fn a_problem_on_any_thread_sends_the_whole_fleet_back_to_one_thread() {
        let desired = desired(40, Some(33));
        let inputs = Inputs::default();
        let pairs = pairs(&desired);
        assert!(resolve_on_threads(&desired, &inputs, &pairs, 4).is_none());
        // `resolve` itself reports it, once, as one thread would.
        assert!(!on_one_thread(&desired, &inputs).diagnostics.is_empty());
        assert_eq!(
            resolve(&desired, &inputs).diagnostics.len(),
            on_one_thread(&desired, &inputs).diagnostics.len()
        );
    }
}
