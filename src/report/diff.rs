//! What changes between what was applied and what a plan would apply, as lines for the plan
//! renderers: fields as `mode: 0644 → 0600`, texts (file contents, multi-line commands) as
//! unified diffs coloured through `Style`.
//!
//! `similar` computes the hunks; the lines are written here so that each one can be coloured
//! on its own, with the colour reset before its newline (a reset after it would bleed the
//! colour into the indentation of the next line), and so that long diffs can be capped.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::text_diff::{self, Op};

use crate::model::duration::FileMode;
use crate::model::task_kind::{OnTrigger, PackageState, PathState, ServiceState};
use crate::plan::change::ChangeKind;
use crate::report::style::Style;
use crate::state::{InstanceDetail, MAX_RECORDED_CONTENT, RecordedAction, RecordedText};

/// Lines of context around each change, as `diff -u` and git show.
pub const CONTEXT_LINES: usize = 3;

/// Lines of a created file shown in a plan; the rest are counted.
const CREATED_FILE_LINES: usize = 40;
/// Longest value shown inline as `field: old → new`; longer or multi-line ones are diffed.
const INLINE_WIDTH: usize = 60;

/// How to render a diff.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// The `--- old` / `+++ new` names; `None` for bare hunks (a command's lines).
    pub labels: Option<(&'a str, &'a str)>,
    /// Most lines shown after the labels; the rest are counted in a closing note.
    pub max_lines: usize,
}

/// A unified diff from `old` to `new`, ending in a newline; empty when the texts are equal.
pub fn unified(old: &str, new: &str, options: Options<'_>, style: Style) -> String {
    let (old_lines, new_lines): (Vec<&str>, Vec<&str>) = (
        old.split_inclusive('\n').collect(),
        new.split_inclusive('\n').collect(),
    );
    let edits = text_diff::diff(&old_lines, &new_lines);
    let mut out = Capped::new(options.max_lines);
    for hunk in text_diff::hunks(&edits, CONTEXT_LINES) {
        out.line(|| style.help(&hunk.header));
        for edit in &hunk.edits {
            let (sign, value) = match edit.op {
                Op::Equal => (' ', old_lines.get(edit.old)),
                Op::Delete => ('-', old_lines.get(edit.old)),
                Op::Insert => ('+', new_lines.get(edit.new)),
            };
            let value = value.copied().unwrap_or_default();
            out.line(|| {
                let line = format!("{sign}{}", printable(value.trim_end_matches('\n')));
                match edit.op {
                    Op::Delete => style.error(&line),
                    Op::Insert => style.success(&line),
                    Op::Equal => line,
                }
            });
            if !value.ends_with('\n') {
                out.line(|| "\\ No newline at end of file".to_owned());
            }
        }
    }
    let body = out.finish();
    match options.labels {
        Some((old_label, new_label)) if !body.is_empty() => format!(
            "{}\n{}\n{body}",
            style.bold(&format!("--- {old_label}")),
            style.bold(&format!("+++ {new_label}"))
        ),
        _ => body,
    }
}

/// The first line of a command, cut to `INLINE_WIDTH` characters, with `…` when cut.
pub fn one_line(command: &str) -> String {
    let first = command.lines().next().unwrap_or_default();
    let cut: String = first.chars().take(INLINE_WIDTH).collect();
    let text = printable(&cut).into_owned();
    if cut.len() < command.trim_end().len() {
        format!("{text} …")
    } else {
        text
    }
}

/// What changes between the recorded and the desired instance, one line per field, for a
/// change of this kind: what a new instance sets, what differs in an updated one, the undo a
/// removal runs. Unindented; each diff is capped at `max_diff_lines`.
pub fn changes(
    kind: ChangeKind,
    recorded: Option<&InstanceDetail>,
    desired: Option<&InstanceDetail>,
    style: Style,
    max_diff_lines: usize,
) -> String {
    let mut out = String::new();
    let mut body = Body {
        out: &mut out,
        style,
        max_diff_lines,
    };
    match (kind, recorded, desired) {
        (ChangeKind::Remove, Some(recorded), _) => body.removal(recorded),
        // A "may change" renders to what is not known here: a diff against a stand-in would
        // mislead.
        (ChangeKind::MayChange | ChangeKind::Remove, _, _) | (_, _, None) => {}
        (_, None, Some(new)) => body.created(&new.action),
        (_, Some(old), Some(new)) => body.updated(old, new),
    }
    if let (ChangeKind::Trigger, Some(detail)) = (kind, desired) {
        body.triggered(&detail.action);
    }
    out
}

/// Writes the lines under an instance: fields as `name: value` or `name: old → new`, texts
/// that do not fit on a line as diffs.
struct Body<'o> {
    out: &'o mut String,
    style: Style,
    max_diff_lines: usize,
}

impl Body<'_> {
    /// Everything a new instance will set, beyond what its instance line already says.
    fn created(&mut self, action: &RecordedAction) {
        match action {
            RecordedAction::Run {
                command,
                creates,
                unless,
            } => {
                if one_line(command) != command.trim_end() {
                    self.value("command", command);
                }
                self.optional("creates", creates.as_deref());
                self.optional("unless", unless.as_deref());
            }
            RecordedAction::File {
                content,
                mode,
                owner,
                group,
                ..
            } => {
                self.optional("mode", mode.map(|m| m.to_string()).as_deref());
                self.optional("owner", owner.as_deref());
                self.optional("group", group.as_deref());
                self.new_content(content);
            }
            RecordedAction::Directory {
                owner,
                group,
                recursive,
                ..
            } => {
                // The instance line says the path, the state and the mode.
                self.optional("owner", owner.as_deref());
                self.optional("group", group.as_deref());
                if *recursive {
                    self.value("recursive", "yes (everything in it is removed)");
                }
            }
            RecordedAction::Link { force, .. } => {
                if *force {
                    self.value(
                        "force",
                        "yes (a file or an empty directory there is replaced)",
                    );
                }
            }
            RecordedAction::Line {
                line,
                r#match,
                create,
                ..
            } => {
                // The instance line says the path and the line.
                self.optional("match", r#match.as_deref());
                if line.is_some() && r#match.is_some() {
                    self.optional("line", line.as_deref());
                }
                if *create {
                    self.value("create", "yes (a missing file is created)");
                }
            }
            RecordedAction::Block {
                content,
                state,
                create,
                ..
            } => {
                if *create {
                    self.value("create", "yes (a missing file is created)");
                }
                if *state == PathState::Present {
                    self.new_content(content);
                }
            }
            // The instance line says it all (an archive removed: where).
            RecordedAction::Package { .. }
            | RecordedAction::Archive {
                state: PathState::Absent,
                ..
            } => {}
            RecordedAction::Service {
                state,
                enabled,
                on_trigger,
                ..
            } => self.service_fields(*state, *enabled, *on_trigger),
            // The instance line says the name, the value or the entry, and the state.
            RecordedAction::Sysctl { file, .. } => self.value("file", file),
            RecordedAction::Cron { path, .. } => self.value("file", path),
            // The instance line says the name and the fields that matter most; the body
            // lists every field the task sets.
            RecordedAction::User(user) => self.account_fields(&user.fields()),
            RecordedAction::Group(group) => self.account_fields(&group.fields()),
            // The instance line says the source and the destination.
            RecordedAction::Archive {
                format,
                sha256,
                state: PathState::Present,
                ..
            } => {
                self.value("format", format.name());
                self.value("sha256", sha256);
            }
        }
    }

    fn service_fields(
        &mut self,
        state: Option<ServiceState>,
        enabled: Option<bool>,
        on_trigger: OnTrigger,
    ) {
        self.optional("state", state.map(service_state));
        self.optional("enabled", enabled.map(yes_no));
        if on_trigger != OnTrigger::default() {
            self.value("onTrigger", on_trigger_text(on_trigger));
        }
    }

    fn new_content(&mut self, content: &RecordedText) {
        if content.binary || content.truncated {
            let size = size_text(content.size);
            let kind = if content.binary { "binary" } else { "text" };
            let _ = writeln!(self.out, "content: {kind}, {size}; not shown");
        } else if content.text.is_empty() {
            let _ = writeln!(self.out, "content: empty");
        } else {
            let options = Options {
                labels: Some(("(none)", "desired")),
                max_lines: CREATED_FILE_LINES.min(self.max_diff_lines),
            };
            self.out
                .push_str(&unified("", &content.text, options, self.style));
        }
    }

    /// Field by field, what differs between the recorded and the desired instance.
    fn updated(&mut self, old: &InstanceDetail, new: &InstanceDetail) {
        self.action_changes(&old.action, &new.action);
        let texts = [
            ("become", &old.r#become, &new.r#become),
            ("check", &old.check, &new.check),
            ("undo", &old.undo, &new.undo),
        ];
        self.change("connection", Some(&old.connection), Some(&new.connection));
        for (name, old, new) in texts {
            self.change(name, old.as_deref(), new.as_deref());
        }
    }

    fn action_changes(&mut self, old: &RecordedAction, new: &RecordedAction) {
        use RecordedAction as A;
        match (old, new) {
            (
                A::Run {
                    command,
                    creates,
                    unless,
                },
                A::Run {
                    command: new_command,
                    creates: new_creates,
                    unless: new_unless,
                },
            ) => {
                self.change("command", Some(command), Some(new_command));
                self.change("creates", creates.as_deref(), new_creates.as_deref());
                self.change("unless", unless.as_deref(), new_unless.as_deref());
            }
            (A::File { .. }, A::File { .. }) => self.file_changes(old, new),
            (A::Package { names, state }, A::Package { names: n, state: s }) => {
                self.change("names", Some(&names.join(", ")), Some(&n.join(", ")));
                self.change(
                    "state",
                    Some(package_state(*state)),
                    Some(package_state(*s)),
                );
            }
            (A::Directory { .. }, A::Directory { .. }) => self.directory_changes(old, new),
            (
                A::Link {
                    path,
                    target,
                    state,
                    force,
                },
                A::Link {
                    path: new_path,
                    target: new_target,
                    state: new_state,
                    force: new_force,
                },
            ) => {
                self.change("path", Some(path), Some(new_path));
                self.change("target", target.as_deref(), new_target.as_deref());
                self.change(
                    "state",
                    Some(path_state(*state)),
                    Some(path_state(*new_state)),
                );
                self.change("force", Some(yes_no(*force)), Some(yes_no(*new_force)));
            }
            (A::Service { .. }, A::Service { .. }) => self.service_changes(old, new),
            (A::Line { .. }, A::Line { .. }) | (A::Block { .. }, A::Block { .. }) => {
                self.edit_changes(old, new);
            }
            (A::Sysctl { .. }, A::Sysctl { .. }) => self.sysctl_changes(old, new),
            (A::Cron { .. }, A::Cron { .. }) => self.cron_changes(old, new),
            (A::User(old), A::User(new)) => self.account_changes(&old.fields(), &new.fields()),
            (A::Group(old), A::Group(new)) => {
                self.account_changes(&old.fields(), &new.fields());
            }
            (A::Archive { .. }, A::Archive { .. }) => self.archive_changes(old, new),
            (
                A::Run { .. }
                | A::File { .. }
                | A::Directory { .. }
                | A::Link { .. }
                | A::Line { .. }
                | A::Block { .. }
                | A::Package { .. }
                | A::Service { .. }
                | A::Sysctl { .. }
                | A::Cron { .. }
                | A::User(_)
                | A::Group(_)
                | A::Archive { .. },
                _,
            ) => {
                self.change("kind", Some(action_kind(old)), Some(action_kind(new)));
                self.created(new);
            }
        }
    }

    fn archive_changes(&mut self, old: &RecordedAction, new: &RecordedAction) {
        let (
            RecordedAction::Archive {
                source,
                dest,
                format,
                sha256,
                state,
                ..
            },
            RecordedAction::Archive {
                source: new_source,
                dest: new_dest,
                format: new_format,
                sha256: new_sha256,
                state: new_state,
                ..
            },
        ) = (old, new)
        else {
            return;
        };
        if state != new_state {
            // Unpacked ↔ removed: the archive's own fields mean nothing on the absent side.
            let name = |s: &PathState| match s {
                PathState::Present => "present",
                PathState::Absent => "absent",
            };
            self.change("state", Some(name(state)), Some(name(new_state)));
            self.change("dest", Some(dest), Some(new_dest));
            return;
        }
        self.change("source", Some(source), Some(new_source));
        self.change("dest", Some(dest), Some(new_dest));
        self.change("format", Some(format.name()), Some(new_format.name()));
        self.change("sha256", Some(sha256), Some(new_sha256));
    }

    fn file_changes(&mut self, old: &RecordedAction, new: &RecordedAction) {
        let (
            RecordedAction::File {
                path,
                content,
                content_hash,
                mode,
                owner,
                group,
            },
            RecordedAction::File {
                path: new_path,
                content: new_content,
                content_hash: new_hash,
                mode: new_mode,
                owner: new_owner,
                group: new_group,
            },
        ) = (old, new)
        else {
            return;
        };
        self.change("path", Some(path), Some(new_path));
        let mode_text = |m: Option<FileMode>| m.map(|m| m.to_string());
        let (mode, new_mode) = (mode_text(*mode), mode_text(*new_mode));
        self.change("mode", mode.as_deref(), new_mode.as_deref());
        self.change("owner", owner.as_deref(), new_owner.as_deref());
        self.change("group", group.as_deref(), new_group.as_deref());
        if content_hash != new_hash {
            self.content_change(content, new_content);
        }
    }

    /// Every field a new `user` or `group` task sets, except its name (on the instance line).
    fn account_fields(&mut self, fields: &[(&str, String)]) {
        for (field, value) in fields.iter().filter(|(f, _)| *f != "name") {
            self.value(field, value);
        }
    }

    /// The fields of a `user` or `group` task that differ, a field one side lacks as `(none)`.
    fn account_changes(&mut self, old: &[(&str, String)], new: &[(&str, String)]) {
        let mut names: Vec<&str> = old.iter().map(|(f, _)| *f).collect();
        for (field, _) in new {
            if !names.contains(field) {
                names.push(field);
            }
        }
        let get = |fields: &[(&str, String)], name: &str| {
            fields
                .iter()
                .find(|(f, _)| *f == name)
                .map(|(_, v)| v.clone())
        };
        for name in names {
            self.change(name, get(old, name).as_deref(), get(new, name).as_deref());
        }
    }

    fn sysctl_changes(&mut self, old: &RecordedAction, new: &RecordedAction) {
        let (
            RecordedAction::Sysctl {
                name,
                value,
                state,
                file,
            },
            RecordedAction::Sysctl {
                name: new_name,
                value: new_value,
                state: new_state,
                file: new_file,
            },
        ) = (old, new)
        else {
            return;
        };
        self.change("name", Some(name), Some(new_name));
        self.change("value", value.as_deref(), new_value.as_deref());
        self.change(
            "state",
            Some(path_state(*state)),
            Some(path_state(*new_state)),
        );
        self.change("file", Some(file), Some(new_file));
    }

    fn cron_changes(&mut self, old: &RecordedAction, new: &RecordedAction) {
        let (
            RecordedAction::Cron {
                name,
                schedule,
                command,
                user,
                state,
                path,
            },
            RecordedAction::Cron {
                name: new_name,
                schedule: new_schedule,
                command: new_command,
                user: new_user,
                state: new_state,
                path: new_path,
            },
        ) = (old, new)
        else {
            return;
        };
        self.change("name", Some(name), Some(new_name));
        self.change("schedule", schedule.as_deref(), new_schedule.as_deref());
        self.change("command", command.as_deref(), new_command.as_deref());
        self.change("user", Some(user), Some(new_user));
        self.change(
            "state",
            Some(path_state(*state)),
            Some(path_state(*new_state)),
        );
        self.change("file", Some(path), Some(new_path));
    }

    /// What changed in a `line` or `block` task.
    fn edit_changes(&mut self, old: &RecordedAction, new: &RecordedAction) {
        match (old, new) {
            (
                RecordedAction::Line {
                    path,
                    line,
                    r#match,
                    state,
                    create,
                },
                RecordedAction::Line {
                    path: new_path,
                    line: new_line,
                    r#match: new_match,
                    state: new_state,
                    create: new_create,
                },
            ) => {
                self.change("path", Some(path), Some(new_path));
                self.change("line", line.as_deref(), new_line.as_deref());
                self.change("match", r#match.as_deref(), new_match.as_deref());
                self.change(
                    "state",
                    Some(path_state(*state)),
                    Some(path_state(*new_state)),
                );
                self.change("create", Some(yes_no(*create)), Some(yes_no(*new_create)));
            }
            (
                RecordedAction::Block {
                    path,
                    marker,
                    content,
                    content_hash,
                    state,
                    create,
                },
                RecordedAction::Block {
                    path: new_path,
                    marker: new_marker,
                    content: new_content,
                    content_hash: new_hash,
                    state: new_state,
                    create: new_create,
                },
            ) => {
                self.change("path", Some(path), Some(new_path));
                self.change("marker", Some(marker), Some(new_marker));
                self.change(
                    "state",
                    Some(path_state(*state)),
                    Some(path_state(*new_state)),
                );
                self.change("create", Some(yes_no(*create)), Some(yes_no(*new_create)));
                if content_hash != new_hash {
                    self.content_change(content, new_content);
                }
            }
            _ => {}
        }
    }

    fn directory_changes(&mut self, old: &RecordedAction, new: &RecordedAction) {
        let (
            RecordedAction::Directory {
                path,
                mode,
                owner,
                group,
                state,
                recursive,
            },
            RecordedAction::Directory {
                path: new_path,
                mode: new_mode,
                owner: new_owner,
                group: new_group,
                state: new_state,
                recursive: new_recursive,
            },
        ) = (old, new)
        else {
            return;
        };
        self.change("path", Some(path), Some(new_path));
        self.change(
            "state",
            Some(path_state(*state)),
            Some(path_state(*new_state)),
        );
        let mode_text = |m: Option<FileMode>| m.map(|m| m.to_string());
        let (mode, new_mode) = (mode_text(*mode), mode_text(*new_mode));
        self.change("mode", mode.as_deref(), new_mode.as_deref());
        self.change("owner", owner.as_deref(), new_owner.as_deref());
        self.change("group", group.as_deref(), new_group.as_deref());
        self.change(
            "recursive",
            Some(yes_no(*recursive)),
            Some(yes_no(*new_recursive)),
        );
    }

    /// A diff of the contents, or why there is none to show.
    fn content_change(&mut self, old: &RecordedText, new: &RecordedText) {
        let sizes = format!("{} → {}", size_text(old.size), size_text(new.size));
        if old.binary || new.binary {
            let _ = writeln!(self.out, "content: {sizes}; binary content is not shown");
            return;
        }
        if old.truncated || new.truncated {
            let kept = size_text(MAX_RECORDED_CONTENT as u64);
            let _ = writeln!(
                self.out,
                "content: {sizes}; too large to diff (only the first {kept} are kept)"
            );
            return;
        }
        let options = Options {
            labels: Some(("recorded", "desired")),
            max_lines: self.max_diff_lines,
        };
        let diff = unified(&old.text, &new.text, options, self.style);
        if diff.is_empty() {
            // The bytes differ, the masked texts do not: only a secret's value changed.
            let _ = writeln!(self.out, "content: changed only where secrets are masked");
        }
        self.out.push_str(&diff);
    }

    fn service_changes(&mut self, old: &RecordedAction, new: &RecordedAction) {
        let (
            RecordedAction::Service {
                name,
                state,
                enabled,
                on_trigger,
            },
            RecordedAction::Service {
                name: new_name,
                state: new_state,
                enabled: new_enabled,
                on_trigger: new_on_trigger,
            },
        ) = (old, new)
        else {
            return;
        };
        self.change("name", Some(name), Some(new_name));
        self.change(
            "state",
            state.map(service_state),
            new_state.map(service_state),
        );
        self.change("enabled", enabled.map(yes_no), new_enabled.map(yes_no));
        self.change(
            "onTrigger",
            Some(on_trigger_text(*on_trigger)),
            Some(on_trigger_text(*new_on_trigger)),
        );
    }

    /// The undo a removal runs; the reason already says when there is none.
    fn removal(&mut self, recorded: &InstanceDetail) {
        let Some(undo) = &recorded.undo else {
            return;
        };
        self.value("undo", undo);
        if recorded.undo_masked {
            // The store keeps undo commands masked; one that needed a secret cannot run.
            let _ = writeln!(
                self.out,
                "the undo uses a secret, which is not recorded: the apply will refuse to run it"
            );
        }
    }

    /// What a triggered task does, which its unchanged fields do not say.
    fn triggered(&mut self, action: &RecordedAction) {
        if let RecordedAction::Service {
            name, on_trigger, ..
        } = action
        {
            let _ = writeln!(self.out, "will {} {name}", on_trigger_text(*on_trigger));
        }
    }

    fn optional(&mut self, name: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.value(name, value);
        }
    }

    /// `name: value`, or the value's lines indented under `name:` when it has several.
    fn value(&mut self, name: &str, value: &str) {
        if value.contains('\n') {
            let _ = writeln!(self.out, "{name}:");
            for line in value.lines() {
                let _ = writeln!(self.out, "  {}", printable(line));
            }
        } else {
            let _ = writeln!(self.out, "{name}: {}", printable(value));
        }
    }

    /// `name: old → new` when both fit on a line, else `name:` and a diff; nothing if equal.
    fn change(&mut self, name: &str, old: Option<&str>, new: Option<&str>) {
        if old == new {
            return;
        }
        let fits = |v: Option<&str>| v.is_none_or(|v| !v.contains('\n') && v.len() <= INLINE_WIDTH);
        if fits(old) && fits(new) {
            let show = |v: Option<&str>| {
                v.map_or_else(|| "(none)".to_owned(), |v| printable(v).into_owned())
            };
            let (old, new) = (self.style.error(&show(old)), self.style.success(&show(new)));
            let _ = writeln!(self.out, "{name}: {old} → {new}");
            return;
        }
        // Diffed line by line; a final newline keeps the "no newline" marker out of it.
        let line_ended = |v: Option<&str>| v.map(|v| format!("{}\n", v.trim_end_matches('\n')));
        let options = Options {
            labels: None,
            max_lines: self.max_diff_lines,
        };
        let _ = writeln!(self.out, "{name}:");
        let (old, new) = (
            line_ended(old).unwrap_or_default(),
            line_ended(new).unwrap_or_default(),
        );
        self.out.push_str(&unified(&old, &new, options, self.style));
    }
}

fn action_kind(action: &RecordedAction) -> &'static str {
    match action {
        RecordedAction::Run { .. } => "run",
        RecordedAction::File { .. } => "file",
        RecordedAction::Directory { .. } => "directory",
        RecordedAction::Link { .. } => "link",
        RecordedAction::Line { .. } => "line",
        RecordedAction::Block { .. } => "block",
        RecordedAction::Package { .. } => "package",
        RecordedAction::Service { .. } => "service",
        RecordedAction::Sysctl { .. } => "sysctl",
        RecordedAction::Cron { .. } => "cron",
        RecordedAction::User(_) => "user",
        RecordedAction::Group(_) => "group",
        RecordedAction::Archive { .. } => "archive",
    }
}

fn package_state(state: PackageState) -> &'static str {
    match state {
        PackageState::Present => "present",
        PackageState::Absent => "absent",
    }
}

fn path_state(state: PathState) -> &'static str {
    match state {
        PathState::Present => "present",
        PathState::Absent => "absent",
    }
}

fn service_state(state: ServiceState) -> &'static str {
    match state {
        ServiceState::Running => "running",
        ServiceState::Stopped => "stopped",
    }
}

fn on_trigger_text(on_trigger: OnTrigger) -> &'static str {
    match on_trigger {
        OnTrigger::Restart => "restart",
        OnTrigger::Reload => "reload",
    }
}

fn yes_no(enabled: bool) -> &'static str {
    if enabled { "true" } else { "false" }
}

/// `512 B`, `1.5 KiB`, `3.2 MiB`: sizes people compare at a glance.
fn size_text(bytes: u64) -> String {
    const KIB: u64 = 1024;
    let (unit, scale) = match bytes {
        b if b < KIB => return format!("{b} B"),
        b if b < KIB * KIB => ("KiB", KIB),
        _ => ("MiB", KIB * KIB),
    };
    let tenths = bytes * 10 / scale;
    match tenths % 10 {
        0 => format!("{} {unit}", tenths / 10),
        fraction => format!("{}.{fraction} {unit}", tenths / 10),
    }
}

/// `text` with control characters other than tab escaped (`\r`, `\u{1b}`), so a file's
/// content cannot move the cursor or change the colours of the terminal that shows it.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Lines up to a cap, then a count of what was left out. Lines are built lazily so that a
/// capped diff of a large file costs a count, not a rendering, per hidden line.
struct Capped {
    out: String,
    max: usize,
    shown: usize,
    hidden: usize,
}

impl Capped {
    fn new(max: usize) -> Capped {
        Capped {
            out: String::new(),
            max,
            shown: 0,
            hidden: 0,
        }
    }

    fn line(&mut self, render: impl FnOnce() -> String) {
        if self.shown < self.max {
            // The line is coloured without its newline: the reset comes first.
            let _ = writeln!(self.out, "{}", render());
            self.shown += 1;
        } else {
            self.hidden += 1;
        }
    }

    fn finish(mut self) -> String {
        match self.hidden {
            0 => {}
            1 => self.out.push_str("… 1 more line\n"),
            n => {
                let _ = writeln!(self.out, "… {n} more lines");
            }
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::*;

    const LABELLED: Options<'static> = Options {
        labels: Some(("recorded", "desired")),
        max_lines: usize::MAX,
    };

    #[track_caller]
    fn check(old: &str, new: &str, options: Options<'_>, expect: &Expect) {
        expect.assert_eq(&unified(old, new, options, Style::plain()));
    }

    fn numbered(range: std::ops::Range<usize>) -> String {
        range.fold(String::new(), |mut out, i| {
            let _ = writeln!(out, "line {i}");
            out
        })
    }

    #[test]
    fn shows_changes_with_three_lines_of_context() {
        let old = numbered(1..12);
        let new = old.replace("line 6\n", "line six\n");
        check(
            &old,
            &new,
            LABELLED,
            &expect![[r"
                --- recorded
                +++ desired
                @@ -3,7 +3,7 @@
                 line 3
                 line 4
                 line 5
                -line 6
                +line six
                 line 7
                 line 8
                 line 9
            "]],
        );
    }

    #[test]
    fn equal_texts_give_nothing_not_even_labels() {
        check("a\nb\n", "a\nb\n", LABELLED, &expect![""]);
    }

    #[test]
    fn marks_a_missing_final_newline() {
        check(
            "a\nb\n",
            "a\nb",
            LABELLED,
            &expect![[r"
                --- recorded
                +++ desired
                @@ -1,2 +1,2 @@
                 a
                -b
                +b
                \ No newline at end of file
            "]],
        );
    }

    #[test]
    fn a_new_text_is_all_additions_and_capped() {
        let options = Options {
            labels: Some(("(none)", "desired")),
            max_lines: 4,
        };
        check(
            "",
            &numbered(1..8),
            options,
            &expect![[r"
                --- (none)
                +++ desired
                @@ -0,0 +1,7 @@
                +line 1
                +line 2
                +line 3
                … 4 more lines
            "]],
        );
    }

    #[test]
    fn bare_hunks_have_no_labels() {
        let options = Options {
            labels: None,
            max_lines: usize::MAX,
        };
        check(
            "apt-get update\napt-get install nginx\n",
            "apt-get update\napt-get install -y nginx\n",
            options,
            &expect![[r"
                @@ -1,2 +1,2 @@
                 apt-get update
                -apt-get install nginx
                +apt-get install -y nginx
            "]],
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        check(
            "colour=\x1b[31mred\r\n",
            "colour=\tblue\n",
            LABELLED,
            &expect![[r"
                --- recorded
                +++ desired
                @@ -1 +1 @@
                -colour=\u{1b}[31mred\r
                +colour=	blue
            "]],
        );
    }

    #[test]
    fn colours_reset_before_each_newline() {
        let out = unified("a\nb\n", "a\nc\n", LABELLED, Style::colored());
        assert!(out.contains("\x1b[1;31m-b\x1b[0m\n"), "{out:?}");
        assert!(out.contains("\x1b[1;32m+c\x1b[0m\n"), "{out:?}");
        for line in out.lines() {
            assert!(
                !line.contains('\x1b') || line.ends_with("\x1b[0m"),
                "{line:?}"
            );
        }
    }
}
