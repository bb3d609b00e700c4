//! One YAML document → a typed `Host` or `Workflow`, or the diagnostics that say why not.
//!
//! Order of checks: the envelope (`apiVersion`, `kind`) so we know which schema applies, then
//! the schema (every structural problem at once), then typed decoding, then the rules a schema
//! cannot say well (exactly one task kind, one file source, local hosts take no address).
//! Checks that need other documents live in `check`.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use crate::diagnostic::{Diagnostic, Location};
use crate::load::account_rule::{
    account_path_rule, comment_rule, group_name_rule, primary_group_rule, user_name_rule,
};
use crate::load::schema;
use crate::load::system_rule::{
    cron_command_rule, cron_dir_rule, cron_name_rule, cron_schedule_rule, sysctl_name_rule,
    sysctl_value_rule,
};
use crate::load::yaml::{Document, Node, NodeValue};
use crate::model::desired::{Host, HostDefaults, Origin, Task, Workflow};
use crate::model::host::{HostDefaultsDocument, HostDocument, HostSpec, Transport};
use crate::model::meta::TaskName;
use crate::model::selector::HostSelector;
use crate::model::task_kind::{
    ArchiveSpec, CronSpec, GroupSpec, SysctlSpec, SysctlValue, UserSpec,
};
use crate::model::task_kind::{
    BlockSpec, Command, DirectorySpec, FileSpec, LineSpec, LinkSpec, PathState, RunSpec, TaskKind,
};
use crate::model::vars::{SecretSource, VarValue, Vars};
use crate::model::workflow::{TaskSpec, WorkflowDocument};
use crate::model::{API_VERSION, Kind};
use crate::source::{JsonPointer, SourceFile};
use crate::template::Templates;

/// A decoded document, tagged with where it came from.
#[derive(Debug)]
pub enum Decoded {
    Host(Host),
    Defaults(HostDefaults),
    /// A workflow, and the names of its tasks that broke a rule and were left out (so that
    /// references to them are not reported as unknown on top of the real error).
    Workflow(Workflow, Vec<String>),
}

/// Decodes one document, appending any problems to `diagnostics`.
pub fn decode(
    file: &Arc<SourceFile>,
    document: &Document,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Decoded> {
    let ctx = DocCtx {
        file,
        root: &document.root,
        index: document.index,
    };
    if matches!(document.root.value, NodeValue::Null) {
        // An empty document (a trailing `---`, or only comments) is not an error.
        return None;
    }
    let kind = ctx.envelope(diagnostics)?;
    let value = document.root.to_json();
    let schema_problems = schema::validate(kind, &value, &document.root, file);
    if !schema_problems.is_empty() {
        // A workflow whose problems all lie inside some of its tasks is decoded without
        // those tasks, so that the other tasks are still checked in the same run.
        let left_out = match kind {
            Kind::Workflow => tasks_in(&schema_problems),
            Kind::Host | Kind::HostDefaults => None,
        };
        diagnostics.extend(schema_problems);
        let (value, left_out) = without_tasks(value, left_out?);
        if !schema::validate(kind, &value, &document.root, file).is_empty() {
            return None;
        }
        return ctx.workflow(value, &left_out, diagnostics);
    }
    // A document that breaks a rule is still returned, so cross-document checks see its
    // names and report their own problems in the same pass; loading fails all the same.
    match kind {
        Kind::Host => ctx.host(value, diagnostics).map(Decoded::Host),
        Kind::HostDefaults => ctx.defaults(value, diagnostics).map(Decoded::Defaults),
        Kind::Workflow => ctx.workflow(value, &LeftOut::default(), diagnostics),
    }
}

/// Tasks of a workflow document taken out before decoding: their positions in the document,
/// and their names where they have one.
#[derive(Debug, Default)]
struct LeftOut {
    positions: BTreeSet<usize>,
    names: Vec<String>,
}

impl LeftOut {
    /// The position in the document of the `nth` task that was kept.
    fn position(&self, nth: usize) -> usize {
        let mut position = nth;
        for left in &self.positions {
            if *left <= position {
                position += 1;
            }
        }
        position
    }
}

/// The positions of the tasks that `problems` lie in, when every one lies inside a task of
/// `spec.tasks` (and not in the list itself or elsewhere in the document).
fn tasks_in(problems: &[Diagnostic]) -> Option<BTreeSet<usize>> {
    problems
        .iter()
        .map(|problem| {
            let pointer = problem.location.as_ref()?.pointer.as_ref()?;
            let mut tokens = pointer.tokens();
            let inside = tokens.next()? == "spec" && tokens.next()? == "tasks";
            inside.then_some(())?;
            tokens.next()?.parse().ok()
        })
        .collect()
}

/// `value` without the tasks at `positions`.
fn without_tasks(mut value: Value, positions: BTreeSet<usize>) -> (Value, LeftOut) {
    let mut names = Vec::new();
    if let Some(tasks) = value
        .pointer_mut("/spec/tasks")
        .and_then(Value::as_array_mut)
    {
        let mut position = 0;
        tasks.retain(|task| {
            let keep = !positions.contains(&position);
            position += 1;
            if !keep && let Some(name) = task.get("name").and_then(Value::as_str) {
                names.push(name.to_owned());
            }
            keep
        });
    }
    (value, LeftOut { positions, names })
}

/// The kind and name a document declares, read leniently from a document that failed
/// validation, so references to it are not reported as unknown.
pub fn declared_name(document: &Document) -> Option<(Kind, String)> {
    let NodeValue::String(kind) = &document.root.child("kind")?.value else {
        return None;
    };
    let kind = Kind::parse(kind)?;
    let NodeValue::String(name) = &document.root.child("metadata")?.child("name")?.value else {
        return None;
    };
    Some((kind, name.clone()))
}

struct DocCtx<'a> {
    file: &'a Arc<SourceFile>,
    root: &'a Node,
    index: usize,
}

impl DocCtx<'_> {
    fn at(&self, pointer: &JsonPointer) -> Location {
        Location {
            file: self.file.clone(),
            span: self.root.locate(pointer),
            pointer: Some(pointer.clone()),
        }
    }

    fn at_key(&self, pointer: &JsonPointer) -> Location {
        let span = self
            .root
            .locate_key(pointer)
            .unwrap_or_else(|| self.root.locate(pointer));
        Location {
            file: self.file.clone(),
            span,
            pointer: Some(pointer.clone()),
        }
    }

    fn origin(&self, pointer: JsonPointer) -> Origin {
        Origin {
            file: self.file.clone(),
            document: self.index,
            pointer,
        }
    }

    /// Reads `apiVersion` and `kind` by hand so that an unknown kind gets one clear message
    /// instead of a schema error per field.
    fn envelope(&self, diagnostics: &mut Vec<Diagnostic>) -> Option<Kind> {
        let root = JsonPointer::root();
        if !matches!(self.root.value, NodeValue::Map(_)) {
            diagnostics.push(
                Diagnostic::error("manifest::wrong-type", "a manifest document must be a mapping")
                    .at(self.at(&root))
                    .with_label("not a mapping")
                    .with_help("start the document with `apiVersion: drover/v1` and `kind: Host` or `kind: Workflow`"),
            );
            return None;
        }
        let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        let kind = match self.root.child("kind").map(|n| &n.value) {
            None => {
                diagnostics.push(
                    Diagnostic::error("manifest::missing-field", "missing required field `kind`")
                        .at(self.at(&root))
                        .with_label("this document has no `kind`")
                        .with_help(format!("add `kind:` with one of {}", kinds.join(", "))),
                );
                None
            }
            Some(NodeValue::String(text)) if Kind::parse(text).is_some() => Kind::parse(text),
            Some(other) => {
                let text = match other {
                    NodeValue::Seq(_) => "a list".to_owned(),
                    NodeValue::Map(_) => "a mapping".to_owned(),
                    NodeValue::Null
                    | NodeValue::Bool(_)
                    | NodeValue::Number(_)
                    | NodeValue::String(_) => self
                        .root
                        .child("kind")
                        .and_then(Node::scalar_text)
                        .unwrap_or_default(),
                };
                diagnostics.push(
                    Diagnostic::error("manifest::unknown-kind", format!("unknown kind `{text}`"))
                        .at(self.at(&root.push("kind")))
                        .with_label("unknown kind")
                        .with_suggestion(
                            &text,
                            kinds.iter().copied(),
                            format!("drover knows the kinds {}", kinds.join(", ")),
                        ),
                );
                None
            }
        };
        let api_ok = match self.root.child("apiVersion").map(|n| &n.value) {
            Some(NodeValue::String(v)) if v == API_VERSION => true,
            found => {
                let (message, location) = if found.is_none() {
                    (
                        "missing required field `apiVersion`".to_owned(),
                        self.at(&root),
                    )
                } else {
                    let text = self
                        .root
                        .child("apiVersion")
                        .and_then(Node::scalar_text)
                        .unwrap_or_default();
                    (
                        format!("unsupported apiVersion `{text}`"),
                        self.at(&root.push("apiVersion")),
                    )
                };
                diagnostics.push(
                    Diagnostic::error("manifest::api-version", message)
                        .at(location)
                        .with_label("expected `drover/v1`")
                        .with_help(format!("use `apiVersion: {API_VERSION}`")),
                );
                false
            }
        };
        kind.filter(|_| api_ok)
    }

    fn host(&self, value: Value, diagnostics: &mut Vec<Diagnostic>) -> Option<Host> {
        let document: HostDocument = self.typed(value, diagnostics)?;
        let spec = document.spec;
        if spec.transport() == Transport::Local {
            for field in ssh_fields_set(&spec) {
                diagnostics.push(local_field_error(
                    field,
                    self.at_key(&JsonPointer::root().push("spec").push(field)),
                ));
            }
        }
        let mut spec = spec;
        self.check_vars(
            &mut spec.vars,
            &JsonPointer::root().push("spec").push("vars"),
            diagnostics,
        );
        Some(Host {
            name: document.metadata.name,
            labels: document.metadata.labels,
            spec,
            inherited: Vec::new(),
            origin: self.origin(JsonPointer::root()),
        })
    }

    fn defaults(&self, value: Value, diagnostics: &mut Vec<Diagnostic>) -> Option<HostDefaults> {
        let document: HostDefaultsDocument = self.typed(value, diagnostics)?;
        let mut spec = document.spec;
        let spec_ptr = JsonPointer::root().push("spec");
        self.check_selector(&spec.hosts, &spec_ptr.push("hosts"), diagnostics);
        if spec.transport == Some(Transport::Local) {
            let as_host = HostSpec {
                port: spec.port,
                user: spec.user.clone(),
                identity_file: spec.identity_file.clone(),
                known_hosts_file: spec.known_hosts_file.clone(),
                ..HostSpec::default()
            };
            for field in ssh_fields_set(&as_host) {
                diagnostics.push(local_field_error(field, self.at_key(&spec_ptr.push(field))));
            }
        }
        self.check_vars(&mut spec.vars, &spec_ptr.push("vars"), diagnostics);
        Some(HostDefaults {
            name: document.metadata.name,
            spec,
            origin: self.origin(JsonPointer::root()),
        })
    }

    fn workflow(
        &self,
        value: Value,
        left_out: &LeftOut,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Option<Decoded> {
        let document: WorkflowDocument = self.typed(value, diagnostics)?;
        let spec = document.spec;
        let spec_ptr = JsonPointer::root().push("spec");
        self.check_selector(&spec.hosts, &spec_ptr.push("hosts"), diagnostics);
        let mut spec = spec;
        self.check_vars(&mut spec.vars, &spec_ptr.push("vars"), diagnostics);
        let mut tasks = Vec::with_capacity(spec.tasks.len());
        let mut broken = left_out.names.clone();
        for (nth, task) in spec.tasks.into_iter().enumerate() {
            let name = task.name.to_string();
            let pointer = spec_ptr.push("tasks").push(left_out.position(nth));
            match self.task(task, &pointer, diagnostics) {
                Some(task) => tasks.push(task),
                None => broken.push(name),
            }
        }
        let workflow = Workflow {
            name: document.metadata.name,
            labels: document.metadata.labels,
            hosts: spec.hosts,
            needs: spec.needs,
            vars: spec.vars,
            rollout: spec.rollout,
            tasks,
            origin: self.origin(JsonPointer::root()),
        };
        Some(Decoded::Workflow(workflow, broken))
    }

    /// A selector must select by something, and each label expression must read as
    /// Kubernetes reads it: `In`/`NotIn` with values, `Exists`/`DoesNotExist` without.
    fn check_selector(
        &self,
        selector: &HostSelector,
        pointer: &JsonPointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        if selector.is_empty() {
            diagnostics.push(
                Diagnostic::error("manifest::empty-selector", "`hosts` selects nothing")
                    .at(self.at(pointer))
                    .with_label("empty selector")
                    .with_help("give `matchLabels: {role: web}`, `matchExpressions: [{key: role, operator: In, values: [web]}]`, `names: [edge-1]`, or several; `matchLabels: {}` selects every host"),
            );
        }
        for (nth, expression) in selector.match_expressions.iter().flatten().enumerate() {
            let at = pointer.push("matchExpressions").push(nth);
            let values = expression.values.as_ref();
            let operator = format!("{:?}", expression.operator);
            if expression.operator.takes_values() && values.is_none_or(Vec::is_empty) {
                diagnostics.push(
                    Diagnostic::error(
                        "manifest::invalid-selector",
                        format!(
                            "`{operator}` needs the values to compare label `{}` with",
                            expression.key
                        ),
                    )
                    .at(self.at(&if values.is_some() {
                        at.push("values")
                    } else {
                        at.push("operator")
                    }))
                    .with_label("no values")
                    .with_help(format!(
                        "give `values: [web, api]`, or use `Exists` to ask only that `{}` is set",
                        expression.key
                    )),
                );
            } else if !expression.operator.takes_values() && values.is_some() {
                diagnostics.push(
                    Diagnostic::error(
                        "manifest::invalid-selector",
                        format!(
                            "`{operator}` takes no values: it asks only whether label `{}` is set",
                            expression.key
                        ),
                    )
                    .at(self.at_key(&at.push("values")))
                    .with_label("not used by this operator")
                    .with_help("remove `values`, or use `In`/`NotIn` to compare with them"),
                );
            }
        }
    }

    fn task(
        &self,
        mut task: TaskSpec,
        pointer: &JsonPointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Option<Task> {
        self.check_vars(&mut task.vars, &pointer.push("vars"), diagnostics);
        let mut kinds = take_kinds(&mut task);
        let name = &task.name;
        let kind = match kinds.len() {
            0 => {
                diagnostics.push(
                    Diagnostic::error(
                        "manifest::task-kind-missing",
                        format!("task `{name}` does not say what to do"),
                    )
                    .at(self.at(pointer))
                    .with_label("no task kind")
                    .with_help(
                        "add exactly one of `run`, `file`, `directory`, `link`, `line`, `block`, `package`, `service`, `sysctl`, `cron`, `user`, `group` or `archive`",
                    ),
                );
                return None;
            }
            1 => kinds.pop().map(|(_, kind)| kind)?,
            _ => {
                let names: Vec<&str> = kinds.iter().map(|(n, _)| *n).collect();
                let second = names.get(1).copied().unwrap_or_default();
                diagnostics.push(
                    Diagnostic::error(
                        "manifest::task-kind-conflict",
                        format!("task `{name}` has {} kinds: {}", names.len(), list(&names)),
                    )
                    .at(self.at_key(&pointer.push(second)))
                    .with_label("second task kind")
                    .with_help("a task does exactly one thing: split it into several tasks and order them with `needs`"),
                );
                return None;
            }
        };
        self.check_kind(name, &kind, pointer, diagnostics);
        for (field, command) in [("check", &task.check), ("undo", &task.undo)] {
            if let Some(command) = command {
                self.check_command(field, command, &pointer.push(field), diagnostics);
            }
        }
        Some(Task {
            name: task.name,
            vars: task.vars,
            for_each: task.for_each,
            when: task.when.map(|when| when.facts),
            needs: task.needs,
            triggered_by: task.triggered_by,
            check: task.check,
            undo: task.undo,
            timeout: task.timeout,
            retries: task.retries,
            drift: task.drift,
            r#become: task.r#become,
            kind,
            origin: self.origin(pointer.clone()),
        })
    }

    /// The rules of the task's kind.
    fn check_kind(
        &self,
        name: &TaskName,
        kind: &TaskKind,
        pointer: &JsonPointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        match kind {
            TaskKind::File(file) => self.check_file(name, file, &pointer.push("file"), diagnostics),
            TaskKind::Directory(directory) => {
                self.check_directory(name, directory, &pointer.push("directory"), diagnostics);
            }
            TaskKind::Link(link) => self.check_link(name, link, &pointer.push("link"), diagnostics),
            TaskKind::Line(line) => self.check_line(name, line, &pointer.push("line"), diagnostics),
            TaskKind::Block(block) => {
                self.check_block(name, block, &pointer.push("block"), diagnostics);
            }
            TaskKind::Run(run) => self.check_run(run, &pointer.push("run"), diagnostics),
            TaskKind::Package(_) | TaskKind::Service(_) => {}
            TaskKind::Sysctl(sysctl) => {
                self.check_sysctl(name, sysctl, &pointer.push("sysctl"), diagnostics);
            }
            TaskKind::Cron(cron) => self.check_cron(name, cron, &pointer.push("cron"), diagnostics),
            TaskKind::User(user) => self.check_user(name, user, &pointer.push("user"), diagnostics),
            TaskKind::Group(group) => {
                self.check_group(name, group, &pointer.push("group"), diagnostics);
            }
            TaskKind::Archive(archive) => {
                self.check_archive(name, archive, &pointer.push("archive"), diagnostics);
            }
        }
    }

    /// Rules of one `file` task: exactly one source of content, and paths that can be used.
    fn check_file(
        &self,
        name: &TaskName,
        file: &FileSpec,
        file_ptr: &JsonPointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        let sources: Vec<&str> = [
            ("content", file.content.is_some()),
            ("template", file.template.is_some()),
            ("source", file.source.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, set)| set.then_some(n))
        .collect();
        if sources.len() != 1 {
            let (message, location) = if sources.is_empty() {
                (
                    format!("file task `{name}` has no content"),
                    self.at_key(file_ptr),
                )
            } else {
                (
                    format!("file task `{name}` has {}", list(&sources)),
                    self.at_key(&file_ptr.push(sources.get(1).copied().unwrap_or_default())),
                )
            };
            diagnostics.push(
                Diagnostic::error("manifest::file-source", message)
                    .at(location)
                    .with_label("exactly one of content, template, source")
                    .with_help("give exactly one of `content` (inline, templated), `template` (a template file) or `source` (a file copied as is)"),
            );
        }
        // A templated path is checked again once rendered (`resolve`).
        let path_check = if Templates::is_template(&file.path) {
            path_rule("path", &file.path)
        } else {
            file_path_rule(&file.path)
        };
        self.report(path_check, &file_ptr.push("path"), diagnostics);
        for (field, path) in [("source", &file.source), ("template", &file.template)] {
            if let Some(path) = path {
                self.report(path_rule(field, path), &file_ptr.push(field), diagnostics);
            }
        }
    }

    /// Rules of one `directory` task: a usable path, and only the fields its state uses.
    fn check_directory(
        &self,
        name: &TaskName,
        directory: &DirectorySpec,
        pointer: &JsonPointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        self.check_host_path(HostPath::Directory, &directory.path, pointer, diagnostics);
        let unused: &[(&str, bool)] = match directory.state {
            PathState::Present => &[("recursive", directory.recursive)],
            PathState::Absent => &[
                ("mode", directory.mode.is_some()),
                ("owner", directory.owner.is_some()),
                ("group", directory.group.is_some()),
            ],
        };
        self.report_unused(
            "directory",
            name,
            directory.state,
            unused,
            pointer,
            diagnostics,
        );
    }

    /// Rules of one `link` task: a usable path, a target when present, and only the fields
    /// its state uses.
    fn check_link(
        &self,
        name: &TaskName,
        link: &LinkSpec,
        pointer: &JsonPointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        self.check_host_path(HostPath::Link, &link.path, pointer, diagnostics);
        if let Some(target) = &link.target {
            self.report(
                link_target_rule(target),
                &pointer.push("target"),
                diagnostics,
            );
        }
        match link.state {
            PathState::Present if link.target.is_none() => diagnostics.push(
                Diagnostic::error(
                    "manifest::link-target-missing",
                    format!("link task `{name}` does not say where the link points"),
                )
                .at(self.at_key(pointer))
                .with_label("no `target`")
                .with_help("add `target: PATH`, the path the link points at, or `state: absent` to remove the link"),
            ),
            PathState::Present => {}
            PathState::Absent => {
                self.report_unused("link", name, link.state, &[("force", link.force)], pointer, diagnostics);
            }
        }
    }

    /// Rules of one `line` task: a usable path, the line when present, something to find
    /// when absent.
    fn check_line(
        &self,
        name: &TaskName,
        line: &LineSpec,
        pointer: &JsonPointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        self.check_host_path(HostPath::Edited, &line.path, pointer, diagnostics);
        if let Some(text) = &line.line {
            self.report(
                edited_line_rule("line", text),
                &pointer.push("line"),
                diagnostics,
            );
        }
        if let Some(regex) = &line.r#match {
            self.report(
                edited_line_rule("match", regex),
                &pointer.push("match"),
                diagnostics,
            );
        }
        let missing = match line.state {
            PathState::Present if line.line.is_none() => Some((
                "does not say which line",
                "no `line`",
                "add `line: TEXT`, the whole line the file must hold",
            )),
            PathState::Absent if line.line.is_none() && line.r#match.is_none() => Some((
                "does not say which lines to remove",
                "no `line` or `match`",
                "add `match: REGEX` to remove every line it matches, or `line: TEXT` to remove the lines equal to it",
            )),
            PathState::Present | PathState::Absent => None,
        };
        if let Some((message, label, help)) = missing {
            diagnostics.push(
                Diagnostic::error(
                    "manifest::line-missing",
                    format!("line task `{name}` {message}"),
                )
                .at(self.at_key(pointer))
                .with_label(label)
                .with_help(help),
            );
        }
    }

    /// Rules of one `block` task: a usable path and marker, the content when present, and
    /// only the fields its state uses.
    fn check_block(
        &self,
        name: &TaskName,
        block: &BlockSpec,
        pointer: &JsonPointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        self.check_host_path(HostPath::Edited, &block.path, pointer, diagnostics);
        if let Some(marker) = &block.marker {
            self.report(
                edited_line_rule("marker", marker),
                &pointer.push("marker"),
                diagnostics,
            );
        }
        match block.state {
            PathState::Present if block.content.is_none() => diagnostics.push(
                Diagnostic::error(
                    "manifest::block-content-missing",
                    format!("block task `{name}` does not say what the block holds"),
                )
                .at(self.at_key(pointer))
                .with_label("no `content`")
                .with_help("add `content: TEXT`, the lines between the markers, or `state: absent` to remove the block"),
            ),
            PathState::Present => {}
            PathState::Absent => self.report_unused(
                "block",
                name,
                block.state,
                &[("content", block.content.is_some()), ("create", block.create)],
                pointer,
                diagnostics,
            ),
        }
    }

    /// The `path` of a directory or link task; a templated one is checked again once
    /// rendered (`resolve`).
    fn check_host_path(
        &self,
        kind: HostPath,
        path: &str,
        pointer: &JsonPointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        let check = if Templates::is_template(path) {
            path_rule("path", path)
        } else {
            host_path_rule(kind, path)
        };
        self.report(check, &pointer.push("path"), diagnostics);
    }

    /// Reports each field set in `unused`, which the task's `state` does not use: it would
    /// be silently ignored, and the user meant something by it.
    fn report_unused(
        &self,
        kind: &str,
        name: &TaskName,
        state: PathState,
        unused: &[(&str, bool)],
        pointer: &JsonPointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        let (state, other) = match state {
            PathState::Present => ("present", "absent"),
            PathState::Absent => ("absent", "present"),
        };
        for (field, _) in unused.iter().filter(|(_, set)| *set) {
            diagnostics.push(
                Diagnostic::error(
                    "manifest::field-unused",
                    format!(
                        "{kind} task `{name}` sets `{field}`, which `state: {state}` does not use"
                    ),
                )
                .at(self.at_key(&pointer.push(field)))
                .with_label("only used with another state")
                .with_help(format!("remove `{field}`, or set `state: {other}`")),
            );
        }
    }

    /// Rules of one `sysctl` task: a parameter name, a value when present, a usable file.
    fn check_sysctl(
        &self,
        name: &TaskName,
        sysctl: &SysctlSpec,
        pointer: &JsonPointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        // Templated values are checked again once rendered (`resolve`).
        let literal = |text: &str| !Templates::is_template(text);
        if literal(&sysctl.name) {
            self.report(
                sysctl_name_rule(&sysctl.name),
                &pointer.push("name"),
                diagnostics,
            );
        }
        if let Some(SysctlValue::Text(value)) = &sysctl.value
            && literal(value)
        {
            self.report(
                sysctl_value_rule(value),
                &pointer.push("value"),
                diagnostics,
            );
        }
        if let Some(file) = &sysctl.file {
            let check = if literal(file) {
                file_path_rule(file)
            } else {
                path_rule("file", file)
            };
            self.report(check, &pointer.push("file"), diagnostics);
        }
        match sysctl.state {
            PathState::Present if sysctl.value.is_none() => {
                self.report_missing("sysctl", name, "value", "`value: 1`", pointer, diagnostics);
            }
            PathState::Present => {}
            PathState::Absent => self.report_unused(
                "sysctl",
                name,
                sysctl.state,
                &[("value", sysctl.value.is_some())],
                pointer,
                diagnostics,
            ),
        }
    }

    /// Rules of one `cron` task: a file-safe name, a schedule and a command when present.
    fn check_cron(
        &self,
        name: &TaskName,
        cron: &CronSpec,
        pointer: &JsonPointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        type Rule = fn(&str) -> Result<(), Invalid>;
        let literal = |text: &str| !Templates::is_template(text);
        let rules: [(&str, Option<&String>, Rule); 4] = [
            ("name", Some(&cron.name), cron_name_rule),
            ("schedule", cron.schedule.as_ref(), cron_schedule_rule),
            ("command", cron.command.as_ref(), cron_command_rule),
            ("dir", cron.dir.as_ref(), cron_dir_rule),
        ];
        for (field, value, rule) in rules {
            if let Some(value) = value.filter(|v| literal(v)) {
                self.report(rule(value), &pointer.push(field), diagnostics);
            }
        }
        match cron.state {
            PathState::Present => {
                for (field, set, example) in [
                    (
                        "schedule",
                        cron.schedule.is_some(),
                        "`schedule: \"0 3 * * *\"`",
                    ),
                    (
                        "command",
                        cron.command.is_some(),
                        "`command: /usr/local/bin/backup`",
                    ),
                ] {
                    if !set {
                        self.report_missing("cron", name, field, example, pointer, diagnostics);
                    }
                }
            }
            PathState::Absent => self.report_unused(
                "cron",
                name,
                cron.state,
                &[
                    ("schedule", cron.schedule.is_some()),
                    ("command", cron.command.is_some()),
                    ("user", cron.user.is_some()),
                ],
                pointer,
                diagnostics,
            ),
        }
    }

    /// Rules of one `user` task: a valid name, valid literal values, `append` only with
    /// `groups`, and only the fields its state uses.
    fn check_user(
        &self,
        name: &TaskName,
        user: &UserSpec,
        pointer: &JsonPointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        type Rule = fn(&str) -> Result<(), Invalid>;
        // Templated values are checked again once rendered (`resolve`).
        let literal = |text: &str| !Templates::is_template(text);
        let rules: [(&str, Option<&String>, Rule); 5] = [
            ("name", Some(&user.name), user_name_rule),
            ("group", user.group.as_ref(), primary_group_rule),
            ("shell", user.shell.as_ref(), |p| {
                account_path_rule("shell", p)
            }),
            ("home", user.home.as_ref(), |p| account_path_rule("home", p)),
            ("comment", user.comment.as_ref(), comment_rule),
        ];
        for (field, value, rule) in rules {
            if let Some(value) = value.filter(|v| literal(v)) {
                self.report(rule(value), &pointer.push(field), diagnostics);
            }
        }
        for (i, group) in user.groups.iter().flatten().enumerate() {
            if literal(group) {
                let at = pointer.push("groups").push(i);
                self.report(group_name_rule(group), &at, diagnostics);
            }
        }
        match user.state {
            PathState::Present if user.append && user.groups.is_none() => diagnostics.push(
                Diagnostic::error(
                    "manifest::field-unused",
                    format!("user task `{name}` sets `append` without `groups`"),
                )
                .at(self.at_key(&pointer.push("append")))
                .with_label("nothing to append")
                .with_help(
                    "add `groups: [NAME, …]`, the groups to add the user to, or remove `append`",
                ),
            ),
            PathState::Present => {}
            PathState::Absent => self.report_unused(
                "user",
                name,
                user.state,
                &[
                    ("uid", user.uid.is_some()),
                    ("group", user.group.is_some()),
                    ("groups", user.groups.is_some()),
                    ("append", user.append),
                    ("shell", user.shell.is_some()),
                    ("home", user.home.is_some()),
                    ("createHome", user.create_home.is_some()),
                    ("comment", user.comment.is_some()),
                    ("system", user.system),
                ],
                pointer,
                diagnostics,
            ),
        }
    }

    /// Rules of one `group` task: a valid name, and only the fields its state uses.
    fn check_group(
        &self,
        name: &TaskName,
        group: &GroupSpec,
        pointer: &JsonPointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        if !Templates::is_template(&group.name) {
            self.report(
                group_name_rule(&group.name),
                &pointer.push("name"),
                diagnostics,
            );
        }
        match group.state {
            PathState::Present => {}
            PathState::Absent => self.report_unused(
                "group",
                name,
                group.state,
                &[("gid", group.gid.is_some()), ("system", group.system)],
                pointer,
                diagnostics,
            ),
        }
    }

    /// Rules of one `archive` task: a usable source and destination, and `state: present`.
    /// Whether the source exists and is an archive is known once it is read (`resolve`).
    fn check_archive(
        &self,
        name: &TaskName,
        archive: &ArchiveSpec,
        pointer: &JsonPointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        if let Some(source) = &archive.source {
            self.report(
                path_rule("source", source),
                &pointer.push("source"),
                diagnostics,
            );
        }
        let dest_check = if Templates::is_template(&archive.dest) {
            path_rule("dest", &archive.dest)
        } else {
            host_path_rule(HostPath::ArchiveDest, &archive.dest)
        };
        self.report(dest_check, &pointer.push("dest"), diagnostics);
        match archive.state {
            PathState::Present if archive.source.is_none() => self.report_missing(
                "archive",
                name,
                "source",
                "source: files/app.tar.gz",
                pointer,
                diagnostics,
            ),
            PathState::Present => {}
            PathState::Absent => self.report_unused(
                "archive",
                name,
                archive.state,
                &[("source", archive.source.is_some())],
                pointer,
                diagnostics,
            ),
        }
    }

    /// Reports a field that `state: present` needs and the task lacks.
    fn report_missing(
        &self,
        kind: &str,
        name: &TaskName,
        field: &str,
        example: &str,
        pointer: &JsonPointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        diagnostics.push(
            Diagnostic::error(
                "manifest::field-missing",
                format!("{kind} task `{name}` has no `{field}`"),
            )
            .at(self.at_key(pointer))
            .with_label(format!("no `{field}`"))
            .with_help(format!("add {example}, or set `state: absent`")),
        );
    }

    /// Reports a broken rule at `pointer`.
    fn report(
        &self,
        check: Result<(), Invalid>,
        pointer: &JsonPointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        if let Err(invalid) = check {
            diagnostics.push(
                Diagnostic::error(invalid.code, invalid.message)
                    .at(self.at(pointer))
                    .with_label(invalid.label)
                    .with_help(invalid.help),
            );
        }
    }

    fn check_run(&self, run: &RunSpec, pointer: &JsonPointer, diagnostics: &mut Vec<Diagnostic>) {
        match run {
            RunSpec::Shell(command) => {
                self.check_command(
                    "run",
                    &Command::Shell(command.clone()),
                    pointer,
                    diagnostics,
                );
            }
            RunSpec::Argv(words) => {
                self.check_command("run", &Command::Argv(words.clone()), pointer, diagnostics);
            }
            RunSpec::Guarded(guarded) => {
                let field = "run.command";
                self.check_command(
                    field,
                    &guarded.command,
                    &pointer.push("command"),
                    diagnostics,
                );
                if let Some(unless) = &guarded.unless {
                    let at = pointer.push("unless");
                    self.check_command("run.unless", unless, &at, diagnostics);
                }
                if let Some(creates) = &guarded.creates {
                    let at = pointer.push("creates");
                    self.report(path_rule("run.creates", creates), &at, diagnostics);
                }
            }
        }
    }

    /// Literal commands only: a templated one that renders empty is caught by `resolve`.
    fn check_command(
        &self,
        field: &str,
        command: &Command,
        pointer: &JsonPointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        match command {
            Command::Shell(text) => {
                self.report(command_rule(field, text), pointer, diagnostics);
            }
            Command::Argv(words) => {
                for (i, word) in words.iter().enumerate() {
                    let check = if i == 0 {
                        command_rule(field, word)
                    } else {
                        argv_word_rule(field, word)
                    };
                    self.report(check, &pointer.push(i), diagnostics);
                }
            }
        }
    }

    /// Checks variable names and secret sources. A secret that breaks a rule is kept as an
    /// empty plain value, so that templates naming it are still checked in the same run
    /// without a second error for the same cause (the document fails all the same).
    fn check_vars(
        &self,
        vars: &mut Vars,
        pointer: &JsonPointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        let mut broken = Vec::new();
        for (name, value) in vars.iter() {
            let before = diagnostics.len();
            self.check_var(name, value, pointer, diagnostics);
            if diagnostics.len() > before && matches!(value, VarValue::Secret(_)) {
                broken.push(name.clone());
            }
        }
        for name in broken {
            vars.insert(name, VarValue::Plain(Value::String(String::new())));
        }
    }

    fn check_var(
        &self,
        name: &str,
        value: &VarValue,
        pointer: &JsonPointer,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        let var_ptr = pointer.push(name);
        let identifier = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !identifier {
            diagnostics.push(
                Diagnostic::error(
                    "manifest::invalid-var-name",
                    format!("variable name `{name}` cannot be used in templates"),
                )
                .at(self.at_key(&var_ptr))
                .with_label("not an identifier")
                .with_help(format!(
                    "use letters, digits and `_`, for example `{}`",
                    name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
                )),
            );
        }
        if let VarValue::Secret(secret) = value {
            let from_ptr = var_ptr.push("valueFrom");
            let (field, text) = match secret.source() {
                Some(SecretSource::Env(n)) => ("env", n),
                Some(SecretSource::File(p)) => ("file", p),
                None => {
                    let both = secret.value_from.env.is_some();
                    diagnostics.push(
                        Diagnostic::error(
                            "manifest::invalid-secret",
                            if both {
                                format!("secret `{name}` gives both `env` and `file`")
                            } else {
                                format!("secret `{name}` does not say where to read it from")
                            },
                        )
                        .at(if both {
                            self.at_key(&from_ptr.push("file"))
                        } else {
                            self.at_key(&from_ptr)
                        })
                        .with_label(if both { "second source" } else { "no source" })
                        .with_help("give exactly one of `env: VARIABLE` or `file: PATH`"),
                    );
                    return;
                }
            };
            if text.trim().is_empty() {
                diagnostics.push(
                    Diagnostic::error(
                        "manifest::invalid-secret",
                        format!("secret `{name}` has an empty `{field}`"),
                    )
                    .at(self.at(&from_ptr.push(field)))
                    .with_label("empty")
                    .with_help("name the environment variable or file that holds the secret"),
                );
            } else {
                let check = path_rule(&format!("valueFrom.{field}"), &text);
                self.report(check, &from_ptr.push(field), diagnostics);
            }
        }
    }

    fn typed<T: serde::de::DeserializeOwned>(
        &self,
        value: Value,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Option<T> {
        match serde_json::from_value(value) {
            Ok(typed) => Some(typed),
            Err(error) => {
                // The schema accepted the document, so this is a rule the schema could not
                // express; report it on the document as a whole.
                diagnostics.push(
                    Diagnostic::error("manifest::invalid-value", error.to_string())
                        .at(self.at(&JsonPointer::root()))
                        .with_help("`drover schema` shows what is allowed"),
                );
                None
            }
        }
    }
}

/// The SSH settings a host spec gives, by field name.
pub fn ssh_fields_set(spec: &HostSpec) -> Vec<&'static str> {
    [
        ("address", spec.address.is_some()),
        ("port", spec.port.is_some()),
        ("user", spec.user.is_some()),
        ("identityFile", spec.identity_file.is_some()),
        ("knownHostsFile", spec.known_hosts_file.is_some()),
    ]
    .into_iter()
    .filter_map(|(field, set)| set.then_some(field))
    .collect()
}

/// An SSH setting given for a host reached locally.
pub fn local_field_error(field: &str, at: Location) -> Diagnostic {
    Diagnostic::error(
        "manifest::local-host-field",
        format!("`{field}` has no meaning with `transport: local`"),
    )
    .at(at)
    .with_label("not for a local host")
    .with_help("remove it, or remove `transport: local` to reach this host over SSH")
}

/// The task kinds a task sets, taken out of it: exactly one is valid.
fn take_kinds(task: &mut TaskSpec) -> Vec<(&'static str, TaskKind)> {
    let mut kinds: Vec<(&'static str, TaskKind)> = Vec::new();
    if let Some(run) = task.run.take() {
        kinds.push(("run", TaskKind::Run(run)));
    }
    if let Some(file) = task.file.take() {
        kinds.push(("file", TaskKind::File(file)));
    }
    if let Some(directory) = task.directory.take() {
        kinds.push(("directory", TaskKind::Directory(directory)));
    }
    if let Some(link) = task.link.take() {
        kinds.push(("link", TaskKind::Link(link)));
    }
    if let Some(line) = task.line.take() {
        kinds.push(("line", TaskKind::Line(line)));
    }
    if let Some(block) = task.block.take() {
        kinds.push(("block", TaskKind::Block(block)));
    }
    if let Some(package) = task.package.take() {
        kinds.push(("package", TaskKind::Package(package)));
    }
    if let Some(service) = task.service.take() {
        kinds.push(("service", TaskKind::Service(service)));
    }
    if let Some(sysctl) = task.sysctl.take() {
        kinds.push(("sysctl", TaskKind::Sysctl(sysctl)));
    }
    if let Some(cron) = task.cron.take() {
        kinds.push(("cron", TaskKind::Cron(cron)));
    }
    if let Some(user) = task.user.take() {
        kinds.push(("user", TaskKind::User(user)));
    }
    if let Some(group) = task.group.take() {
        kinds.push(("group", TaskKind::Group(group)));
    }
    if let Some(archive) = task.archive.take() {
        kinds.push(("archive", TaskKind::Archive(archive)));
    }
    kinds
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// A value that breaks a rule: a stable code, what is wrong, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
    /// Shown under the caret.
    pub label: &'static str,
    pub help: &'static str,
}

/// The first control character in `text`, if any (tabs and newlines included: none belongs
/// in a path).
fn control_character(text: &str) -> Option<char> {
    text.chars().find(|c| c.is_control())
}

/// A field as the user writes it: `run/unless` (a pointer below the task) is `run.unless`.
fn shown(field: &str) -> String {
    field.replace('/', ".")
}

fn describe_control(c: char) -> String {
    if c == '\0' {
        "a NUL byte".to_owned()
    } else {
        format!("the control character U+{:04X}", u32::from(c))
    }
}

/// A path (on the host or the controller) holds no control characters: a NUL cuts it short
/// on the way to the kernel, and the others would reach terminals through plans.
pub fn path_rule(field: &str, path: &str) -> Result<(), Invalid> {
    match control_character(path) {
        None => Ok(()),
        Some(c) => Err(Invalid {
            code: "manifest::control-character",
            message: format!("`{}` contains {}", shown(field), describe_control(c)),
            label: "control character",
            help: "paths cannot hold control characters; look for an escape such as `\\0` or `\\e` in a double-quoted string",
        }),
    }
}

/// A file task's path names one file: absolute, not `/`, not ending in `/`, `.` or `..`.
pub fn file_path_rule(path: &str) -> Result<(), Invalid> {
    path_rule("path", path)?;
    if !path.starts_with('/') {
        return Err(Invalid {
            code: "manifest::relative-path",
            message: format!("file path `{path}` is not absolute"),
            label: "relative path",
            help: "paths on the host must be absolute, such as `/etc/nginx/nginx.conf`",
        });
    }
    let last = path.rsplit('/').next().unwrap_or_default();
    let names_directory = matches!(last, "" | "." | "..");
    if path.split('/').all(|part| matches!(part, "" | ".")) {
        return Err(Invalid {
            code: "manifest::invalid-path",
            message: format!("file path `{path}` is the root directory, not a file"),
            label: "not a file",
            help: "a file task manages one file: give its full path, such as `/etc/motd`",
        });
    }
    if names_directory {
        let ending = if last.is_empty() { "/" } else { last };
        return Err(Invalid {
            code: "manifest::invalid-path",
            message: format!("file path `{path}` ends with `{ending}`, so it names a directory"),
            label: "not a file",
            help: "a file task manages one file: give its full path, such as `/etc/nginx/nginx.conf`",
        });
    }
    Ok(())
}

/// Which task kind a host path belongs to, for the wording of its problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPath {
    Directory,
    Link,
    /// The file a `line` or `block` task edits.
    Edited,
    /// The directory an `archive` task unpacks into.
    ArchiveDest,
}

impl HostPath {
    fn noun(self) -> &'static str {
        match self {
            HostPath::Directory => "directory",
            HostPath::Link => "link",
            HostPath::Edited => "file",
            HostPath::ArchiveDest => "archive destination",
        }
    }

    /// The manifest field that holds the path.
    fn field(self) -> &'static str {
        match self {
            HostPath::Directory | HostPath::Link | HostPath::Edited => "path",
            HostPath::ArchiveDest => "dest",
        }
    }

    fn examples(self) -> (&'static str, &'static str, &'static str) {
        match self {
            HostPath::Directory => (
                "paths on the host must be absolute, such as `/srv/app`",
                "a directory task manages one directory below `/`: give its full path, such as `/srv/app`",
                "name the directory itself, without a trailing `/`, `.` or `..`, such as `/srv/app`",
            ),
            HostPath::Link => (
                "paths on the host must be absolute, such as `/etc/nginx/sites-enabled/app`",
                "a link task manages one link: give its full path, such as `/etc/nginx/sites-enabled/app`",
                "name the link itself, without a trailing `/`, `.` or `..`, such as `/etc/nginx/sites-enabled/app`",
            ),
            HostPath::Edited => (
                "paths on the host must be absolute, such as `/etc/ssh/sshd_config`",
                "a line or block task edits one file: give its full path, such as `/etc/ssh/sshd_config`",
                "name the file itself, without a trailing `/`, `.` or `..`, such as `/etc/ssh/sshd_config`",
            ),
            HostPath::ArchiveDest => (
                "paths on the host must be absolute, such as `/opt/app`",
                "an archive is unpacked into its own directory: give its full path, such as `/opt/app`",
                "name the directory itself, without a trailing `/`, `.` or `..`, such as `/opt/app`",
            ),
        }
    }
}

/// The path of a directory or link task names one entry: absolute, not `/`, and not ending
/// in `/`, `.` or `..` (a trailing `/` would make tools follow a link instead of managing it).
pub fn host_path_rule(kind: HostPath, path: &str) -> Result<(), Invalid> {
    path_rule(kind.field(), path)?;
    let noun = kind.noun();
    let (relative_help, root_help, ending_help) = kind.examples();
    if !path.starts_with('/') {
        return Err(Invalid {
            code: "manifest::relative-path",
            message: format!("{noun} path `{path}` is not absolute"),
            label: "relative path",
            help: relative_help,
        });
    }
    if path.split('/').all(|part| matches!(part, "" | ".")) {
        return Err(Invalid {
            code: "manifest::invalid-path",
            message: format!("{noun} path `{path}` is the root directory"),
            label: "the root directory",
            help: root_help,
        });
    }
    let last = path.rsplit('/').next().unwrap_or_default();
    if matches!(last, "" | "." | "..") {
        let ending = if last.is_empty() { "/" } else { last };
        return Err(Invalid {
            code: "manifest::invalid-path",
            message: format!("{noun} path `{path}` ends with `{ending}`"),
            label: "trailing component",
            help: ending_help,
        });
    }
    Ok(())
}

/// A link's target: not empty (no link can hold that) and no control characters. It may be
/// relative: a link resolves it from its own directory.
pub fn link_target_rule(target: &str) -> Result<(), Invalid> {
    path_rule("target", target)?;
    if target.is_empty() {
        return Err(Invalid {
            code: "manifest::invalid-value",
            message: "`target` is empty".to_owned(),
            label: "empty target",
            help: "give the path the link points at, such as `/etc/nginx/sites-available/app`",
        });
    }
    Ok(())
}

/// A `line`, `match` or block `marker`: one line of a file, so no newline, carriage return
/// or NUL in it.
pub fn edited_line_rule(field: &str, text: &str) -> Result<(), Invalid> {
    if text.contains(['\n', '\r', '\0']) {
        return Err(Invalid {
            code: "manifest::invalid-value",
            message: format!("`{field}` spans more than one line"),
            label: "line break",
            help: "a line task edits one line: give it without a newline (use a block task for several lines)",
        });
    }
    Ok(())
}

/// A shell command (`run`, `check`, `undo`, `unless`) has something to run and no NUL byte.
pub fn command_rule(field: &str, command: &str) -> Result<(), Invalid> {
    if command.trim().is_empty() {
        return Err(Invalid {
            code: "manifest::empty-command",
            message: format!("`{}` is an empty command", shown(field)),
            label: "nothing to run",
            help: "give the command to run, such as `systemctl reload nginx`, or remove the field",
        });
    }
    argv_word_rule(field, command)
}

/// A word of an argv command holds no NUL byte (it could not reach `execve`).
pub fn argv_word_rule(field: &str, word: &str) -> Result<(), Invalid> {
    if word.contains('\0') {
        return Err(Invalid {
            code: "manifest::control-character",
            message: format!("`{}` contains a NUL byte", shown(field)),
            label: "NUL byte",
            help: "a command line cannot hold a NUL byte; look for an escape such as `\\0` in a double-quoted string",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(check: Result<(), Invalid>) -> &'static str {
        check.err().map_or("ok", |i| i.code)
    }

    #[test]
    fn file_paths_name_one_file() {
        assert_eq!(code(file_path_rule("/etc/motd")), "ok");
        assert_eq!(code(file_path_rule("/")), "manifest::invalid-path");
        assert_eq!(code(file_path_rule("//./")), "manifest::invalid-path");
        assert_eq!(
            code(file_path_rule("/etc/nginx/")),
            "manifest::invalid-path"
        );
        assert_eq!(code(file_path_rule("/etc/..")), "manifest::invalid-path");
        assert_eq!(code(file_path_rule("etc/motd")), "manifest::relative-path");
        assert_eq!(
            code(file_path_rule("/etc/mo\0td")),
            "manifest::control-character"
        );
        assert_eq!(
            code(file_path_rule("/etc/mo\ntd")),
            "manifest::control-character"
        );
    }

    #[test]
    fn directory_and_link_paths_name_one_entry() {
        for kind in [HostPath::Directory, HostPath::Link] {
            assert_eq!(code(host_path_rule(kind, "/srv/app")), "ok");
            assert_eq!(
                code(host_path_rule(kind, "srv/app")),
                "manifest::relative-path"
            );
            assert_eq!(code(host_path_rule(kind, "/")), "manifest::invalid-path");
            assert_eq!(
                code(host_path_rule(kind, "/srv/app/")),
                "manifest::invalid-path"
            );
            assert_eq!(
                code(host_path_rule(kind, "/srv/..")),
                "manifest::invalid-path"
            );
            assert_eq!(
                code(host_path_rule(kind, "/srv/a\0pp")),
                "manifest::control-character"
            );
        }
        assert_eq!(code(link_target_rule("../sites-available/app")), "ok");
        assert_eq!(code(link_target_rule("")), "manifest::invalid-value");
        assert_eq!(code(edited_line_rule("line", "a = b # c")), "ok");
        assert_eq!(
            code(edited_line_rule("line", "a\nb")),
            "manifest::invalid-value"
        );
        assert_eq!(
            code(link_target_rule("/a\nb")),
            "manifest::control-character"
        );
    }

    #[test]
    fn commands_have_something_to_run_and_no_nul() {
        assert_eq!(code(command_rule("run", "true")), "ok");
        assert_eq!(code(command_rule("run", "a\n\tb")), "ok");
        assert_eq!(code(command_rule("run", "")), "manifest::empty-command");
        assert_eq!(
            code(command_rule("run", " \n\t")),
            "manifest::empty-command"
        );
        assert_eq!(
            code(command_rule("run", "echo \0")),
            "manifest::control-character"
        );
        assert_eq!(code(argv_word_rule("run", "")), "ok");
        assert_eq!(
            code(argv_word_rule("run", "a\0")),
            "manifest::control-character"
        );
    }
}
