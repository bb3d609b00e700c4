//! Plans for people (a tree per host → workflow → instance with diffs), for machines
//! (versioned JSON) and for pull requests (Markdown under GitHub's comment cap).
//!
//! Everything is rendered from a `PlanView`: the plan, what each planned instance would
//! apply now, and what was recorded. Secrets are masked in every format: the details and
//! reasons are redacted before rendering (a secret spanning lines would otherwise be split by
//! diff markers, and one with a `"` would be escaped in JSON), and the output again after.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::hash::SpecHash;
use crate::instance::InstanceId;
use crate::model::task_kind::{PackageState, PathState};
use crate::plan::Plan;
use crate::plan::change::{ChangeKind, PlannedChange, Reason};
use crate::report::diff;
use crate::report::style::{Style, html_escape, longest_backtick_run, markdown_escape};
use crate::secret::Redactor;
use crate::state::{InstanceDetail, RecordedAction};

/// Lines of any one diff in a pull-request comment, so one big file cannot crowd out the rest.
const MARKDOWN_DIFF_LINES: usize = 150;
/// GitHub refuses comments over 65,536 characters; `String::len` counts bytes, which is never
/// fewer than characters, so staying under this in bytes is safe.
pub const MARKDOWN_LIMIT: usize = 65_000;
/// What the tables and details of a pull-request comment may fill, keeping room for the
/// closing truncation note.
const MARKDOWN_BUDGET: usize = MARKDOWN_LIMIT - 512;
/// Indentation of an instance line, and of what changes under it (aligned with the task name).
const INSTANCE_INDENT: &str = "    ";
const BODY_INDENT: &str = "      ";

/// What a plan renderer needs.
#[derive(Debug)]
pub struct PlanView<'a> {
    pub plan: &'a Plan,
    /// What each planned instance (other than removals) would apply now.
    pub desired: &'a BTreeMap<InstanceId, InstanceDetail>,
    /// What was recorded for planned instances that were applied before.
    pub recorded: &'a BTreeMap<InstanceId, InstanceDetail>,
    pub redactor: &'a Redactor,
}

/// The summary line: "Plan: 3 to create, 2 to update, 1 to trigger, 0 to remove." Drifted and
/// replaced instances are only mentioned when there are some.
pub fn summary(plan: &Plan) -> String {
    if plan.is_empty() {
        let up_to_date = plural(plan.unchanged, "instance");
        return if plan.outside_targets == 0 {
            // The plan compared the manifests with drover's record, and with the hosts only
            // as far as a drift check looked at them: say which.
            let hosts = match &plan.drift_checked {
                Some(checked) if checked.fresh && checked.unknown == 0 => {
                    "the hosts were probed just now and showed no drift".to_owned()
                }
                Some(checked) if checked.fresh => format!(
                    "the hosts were probed just now: no drift found, but {} could not be probed",
                    plural(checked.unknown, "instance")
                ),
                Some(checked) => format!(
                    "the hosts were not probed (last drift check: {}{}; `--refresh` probes them)",
                    checked.at,
                    if checked.targets.is_empty() {
                        String::new()
                    } else {
                        format!(", of {} only", checked.targets.join(", "))
                    }
                ),
                None => "the hosts were not probed (no drift check yet; `--refresh` probes them)"
                    .to_owned(),
            };
            format!("No changes against the recorded state ({up_to_date} up to date); {hosts}.")
        } else {
            format!("No changes in the targeted instances ({up_to_date} up to date).")
        };
    }
    let counts = plan.counts();
    let count = |kind| counts.get(&kind).copied().unwrap_or(0);
    let mut parts = vec![
        format!("{} to create", count(ChangeKind::Create)),
        format!("{} to update", count(ChangeKind::Update)),
        format!("{} to trigger", count(ChangeKind::Trigger)),
    ];
    if count(ChangeKind::Drifted) > 0 {
        parts.push(format!("{} to fix drift", count(ChangeKind::Drifted)));
    }
    if count(ChangeKind::Replace) > 0 {
        parts.push(format!("{} to replace", count(ChangeKind::Replace)));
    }
    parts.push(format!("{} to remove", count(ChangeKind::Remove)));
    if count(ChangeKind::Refresh) > 0 {
        parts.push(format!(
            "{} to refresh in the state only",
            count(ChangeKind::Refresh)
        ));
    }
    if count(ChangeKind::MayChange) > 0 {
        // Say what was missing: secrets, host facts, or both.
        let reasons = || plan.changes.iter().flat_map(|c| &c.reasons);
        let facts = reasons().any(|r| matches!(r, Reason::UnavailableFacts { .. }));
        let secrets = reasons().any(|r| matches!(r, Reason::UnavailableSecret { .. }));
        let missing = match (secrets, facts) {
            (true, true) => "secrets and host facts",
            (false, true) => "host facts",
            (true | false, false) => "secrets",
        };
        parts.push(format!(
            "{} may change ({missing} not available here)",
            count(ChangeKind::MayChange)
        ));
    }
    format!("Plan: {}.", parts.join(", "))
}

/// The plan as a tree for a terminal.
pub fn text(view: &PlanView<'_>, style: Style) -> String {
    let mut out = String::new();
    for (i, host) in group(&view.plan.changes).iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "{}", style.bold(host.name));
        for workflow in &host.workflows {
            let _ = writeln!(out, "  {}", workflow.name);
            for change in &workflow.changes {
                instance_text(&mut out, &Item::new(view, change), style);
            }
        }
    }
    if !view.plan.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(out, "{}", style.bold(&summary(view.plan)));
    if let Some(note) = left_out(view.plan) {
        let _ = writeln!(out, "{note}");
    }
    if let Some(note) = unmatched(view.plan) {
        let _ = writeln!(out, "{}", style.warning(&note));
    }
    view.redactor.redact(&out)
}

fn instance_text(out: &mut String, item: &Item<'_>, style: Style) {
    let kind = item.change.kind;
    let _ = write!(
        out,
        "{INSTANCE_INDENT}{} {}",
        paint_kind(kind, kind.symbol(), style),
        style.bold(&item.change.id.task_part())
    );
    if let Some(what) = item.what() {
        let _ = write!(out, "  {what}");
    }
    let _ = writeln!(out, " — {}", item.reasons());
    for line in item.body(style, usize::MAX).lines() {
        let _ = writeln!(out, "{BODY_INDENT}{line}");
    }
}

/// Create green, remove red, replace cyan, the rest (which re-run a task) yellow.
fn paint_kind(kind: ChangeKind, text: &str, style: Style) -> String {
    match kind {
        ChangeKind::Create => style.success(text),
        ChangeKind::Update | ChangeKind::Trigger | ChangeKind::Drifted => style.warning(text),
        ChangeKind::Remove => style.error(text),
        ChangeKind::Replace => style.help(text),
        ChangeKind::Refresh | ChangeKind::MayChange => style.gutter(text),
    }
}

/// "5 unchanged; 2 changes outside --target not shown."
fn left_out(plan: &Plan) -> Option<String> {
    let mut parts = Vec::new();
    if !plan.is_empty() {
        parts.push(format!("{} unchanged", plan.unchanged));
    }
    if plan.outside_targets > 0 {
        let changes = plural(plan.outside_targets, "change");
        parts.push(format!("{changes} outside --target not shown"));
    }
    (!parts.is_empty()).then(|| format!("{}.", parts.join("; ")))
}

/// Targets that matched nothing (the CLI refuses them, but a saved or JSON plan says so too).
fn unmatched(plan: &Plan) -> Option<String> {
    const SHOWN: usize = 20;
    if plan.unmatched.is_empty() {
        return None;
    }
    let mut names = plan
        .unmatched
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>();
    if plan.unmatched.len() > SHOWN {
        names.push(format!("and {} more", plan.unmatched.len() - SHOWN));
    }
    Some(format!(
        "Targets that match no instance: {}.",
        names.join(", ")
    ))
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// Changes of one host, by workflow, in plan order.
struct HostGroup<'a> {
    name: &'a str,
    workflows: Vec<WorkflowGroup<'a>>,
}

struct WorkflowGroup<'a> {
    name: &'a str,
    changes: Vec<&'a PlannedChange>,
}

/// Groups changes by host, then workflow, each in order of first appearance, so the plan's
/// order (removals first, then dependency order) holds within every group.
fn group(changes: &[PlannedChange]) -> Vec<HostGroup<'_>> {
    let mut hosts: Vec<HostGroup<'_>> = Vec::new();
    let mut host_at: BTreeMap<&str, usize> = BTreeMap::new();
    let mut workflow_at: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for change in changes {
        let (host, workflow) = (change.id.host.as_str(), change.id.workflow.as_str());
        let h = *host_at.entry(host).or_insert_with(|| {
            hosts.push(HostGroup {
                name: host,
                workflows: Vec::new(),
            });
            hosts.len() - 1
        });
        let Some(host_group) = hosts.get_mut(h) else {
            continue;
        };
        let w = *workflow_at.entry((host, workflow)).or_insert_with(|| {
            host_group.workflows.push(WorkflowGroup {
                name: workflow,
                changes: Vec::new(),
            });
            host_group.workflows.len() - 1
        });
        if let Some(workflow_group) = host_group.workflows.get_mut(w) {
            workflow_group.changes.push(change);
        }
    }
    hosts
}

/// A planned change with its reasons and details redacted, ready to render.
struct Item<'a> {
    change: &'a PlannedChange,
    reasons: Vec<Reason>,
    desired: Option<InstanceDetail>,
    recorded: Option<InstanceDetail>,
}

impl<'a> Item<'a> {
    fn new(view: &PlanView<'_>, change: &'a PlannedChange) -> Item<'a> {
        let redact = |d: &InstanceDetail| redact_detail(d, view.redactor);
        Item {
            change,
            reasons: change
                .reasons
                .iter()
                .map(|r| redact_reason(r, view.redactor))
                .collect(),
            desired: view.desired.get(&change.id).map(redact),
            recorded: view.recorded.get(&change.id).map(redact),
        }
    }

    fn reasons(&self) -> String {
        let reasons: Vec<String> = self.reasons.iter().map(Reason::describe).collect();
        reasons.join("; ")
    }

    /// The task's kind and what it acts on: `file /etc/nginx.conf`, `package nginx, curl`.
    fn what(&self) -> Option<String> {
        let detail = self.desired.as_ref().or(self.recorded.as_ref())?;
        let what = match &detail.action {
            RecordedAction::Run { command, .. } => format!("run {}", diff::one_line(command)),
            RecordedAction::File { path, .. } => format!("file {path}"),
            RecordedAction::Directory {
                path, mode, state, ..
            } => match (state, mode) {
                (PathState::Present, Some(mode)) => format!("directory {path} (mode {mode})"),
                (PathState::Present, None) => format!("directory {path}"),
                (PathState::Absent, _) => format!("directory {path} (absent)"),
            },
            RecordedAction::Link {
                path,
                target,
                state,
                ..
            } => match (state, target) {
                (PathState::Present, Some(target)) => format!("link {path} → {target}"),
                (PathState::Present, None) => format!("link {path}"),
                (PathState::Absent, _) => format!("link {path} (absent)"),
            },
            RecordedAction::Line {
                path,
                line,
                r#match,
                state,
                ..
            } => match (state, line, r#match) {
                (PathState::Present, Some(line), _) => format!("line {path}: {line}"),
                (PathState::Absent, _, Some(regex)) => format!("line {path} (absent: {regex})"),
                (PathState::Absent, Some(line), None) => format!("line {path} (absent: {line})"),
                (PathState::Present | PathState::Absent, _, _) => format!("line {path}"),
            },
            RecordedAction::Block {
                path,
                marker,
                state,
                ..
            } => match state {
                PathState::Present => format!("block {path} ({marker})"),
                PathState::Absent => format!("block {path} ({marker}, absent)"),
            },
            RecordedAction::Package { names, state } => match state {
                PackageState::Present => format!("package {}", names.join(", ")),
                PackageState::Absent => format!("package {} (absent)", names.join(", ")),
            },
            RecordedAction::Service { name, .. } => format!("service {name}"),
            RecordedAction::Sysctl {
                name, value, state, ..
            } => match (state, value) {
                (PathState::Present, Some(value)) => format!("sysctl {name} = {value}"),
                (PathState::Present, None) => format!("sysctl {name}"),
                (PathState::Absent, _) => format!("sysctl {name} (absent)"),
            },
            RecordedAction::Cron {
                name,
                schedule,
                command,
                user,
                state,
                ..
            } => match (state, schedule, command) {
                (PathState::Present, Some(schedule), Some(command)) => {
                    format!("cron {name}: {schedule} {user} {command}")
                }
                (PathState::Present, _, _) => format!("cron {name}"),
                (PathState::Absent, _, _) => format!("cron {name} (absent)"),
            },
            RecordedAction::User(user) => user.describe(),
            RecordedAction::Group(group) => group.describe(),
            RecordedAction::Archive {
                source,
                dest,
                state,
                ..
            } => match state {
                PathState::Present => format!("archive {source} → {dest}"),
                PathState::Absent => format!("archive in {dest} (absent)"),
            },
        };
        Some(diff::printable(&what).into_owned())
    }

    /// What changes, one line per field, unindented; diffs capped at `max_diff_lines`.
    fn body(&self, style: Style, max_diff_lines: usize) -> String {
        let (recorded, desired) = (self.recorded.as_ref(), self.desired.as_ref());
        diff::changes(self.change.kind, recorded, desired, style, max_diff_lines)
    }
}

fn redact_reason(reason: &Reason, redactor: &Redactor) -> Reason {
    match reason {
        Reason::Drift { summary } => Reason::Drift {
            summary: redactor.redact(summary),
        },
        other => other.clone(),
    }
}

/// Every free text of a detail, redacted. Cloned whole first so that fields added to
/// `InstanceDetail` later are carried over (and still masked by the final pass over the output).
fn redact_detail(detail: &InstanceDetail, redactor: &Redactor) -> InstanceDetail {
    let mut detail = detail.clone();
    let text = |t: &mut String| *t = redactor.redact(t);
    let optional = |t: &mut Option<String>| {
        if let Some(t) = t {
            *t = redactor.redact(t);
        }
    };
    match &mut detail.action {
        RecordedAction::Run {
            command,
            creates,
            unless,
        } => {
            text(command);
            optional(creates);
            optional(unless);
        }
        RecordedAction::File {
            path,
            content,
            owner,
            group,
            ..
        } => {
            text(path);
            text(&mut content.text);
            optional(owner);
            optional(group);
        }
        RecordedAction::Directory {
            path, owner, group, ..
        } => {
            text(path);
            optional(owner);
            optional(group);
        }
        RecordedAction::Link { path, target, .. } => {
            text(path);
            optional(target);
        }
        RecordedAction::Line {
            path,
            line,
            r#match,
            ..
        } => {
            text(path);
            optional(line);
            optional(r#match);
        }
        RecordedAction::Block {
            path,
            marker,
            content,
            ..
        } => {
            text(path);
            text(marker);
            text(&mut content.text);
        }
        RecordedAction::Package { names, .. } => names.iter_mut().for_each(text),
        RecordedAction::Service { name, .. } => text(name),
        RecordedAction::Sysctl {
            name, value, file, ..
        } => {
            text(name);
            optional(value);
            text(file);
        }
        RecordedAction::Cron {
            name,
            schedule,
            command,
            user,
            path,
            ..
        } => {
            text(name);
            optional(schedule);
            optional(command);
            text(user);
            text(path);
        }
        RecordedAction::User(user) => *user = user.redacted(redactor),
        RecordedAction::Group(group) => *group = group.redacted(redactor),
        RecordedAction::Archive {
            source,
            dest,
            marker,
            ..
        } => [source, dest, marker].into_iter().for_each(text),
    }
    optional(&mut detail.undo);
    optional(&mut detail.check);
    optional(&mut detail.r#become);
    text(&mut detail.connection);
    detail
}

/// The plan as stable JSON (`formatVersion` 1). Keys come in declaration order; details keep
/// the store's own shape (`InstanceDetail`).
pub fn json(view: &PlanView<'_>) -> String {
    let document = JsonPlan::new(view);
    #[expect(
        clippy::expect_used,
        reason = "structs with string keys and derived `Serialize` always serialize"
    )]
    let text = serde_json::to_string_pretty(&document).expect("a plan serializes to JSON");
    view.redactor.redact(&text) + "\n"
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonPlan<'a> {
    format_version: u32,
    summary: JsonSummary,
    changes: Vec<JsonChange<'a>>,
    unmatched_targets: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonSummary {
    create: usize,
    update: usize,
    trigger: usize,
    drifted: usize,
    remove: usize,
    replace: usize,
    /// Only `undo`/`check` changed: recorded without contacting the host.
    refresh: usize,
    /// Need a secret not available where the plan was made: may change or not.
    may_change: usize,
    unchanged: usize,
    outside_targets: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonChange<'a> {
    id: &'a InstanceId,
    host: &'a str,
    workflow: &'a str,
    task: &'a str,
    /// The key of the `forEach` item, for a task that loops.
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<&'a str>,
    kind: ChangeKind,
    reasons: Vec<JsonReason>,
    spec_hash: Option<SpecHash>,
    after: &'a [InstanceId],
    desired: Option<InstanceDetail>,
    recorded: Option<InstanceDetail>,
}

/// A reason in its stored shape (`{"reason": "specChanged", "from": …}`) plus the sentence
/// the text plan shows, so tools need not rebuild it.
#[derive(Serialize)]
struct JsonReason {
    #[serde(flatten)]
    reason: Reason,
    message: String,
}

impl<'a> JsonPlan<'a> {
    fn new(view: &PlanView<'a>) -> JsonPlan<'a> {
        let plan = view.plan;
        let counts = plan.counts();
        let count = |kind| counts.get(&kind).copied().unwrap_or(0);
        JsonPlan {
            format_version: 1,
            summary: JsonSummary {
                create: count(ChangeKind::Create),
                update: count(ChangeKind::Update),
                trigger: count(ChangeKind::Trigger),
                drifted: count(ChangeKind::Drifted),
                remove: count(ChangeKind::Remove),
                replace: count(ChangeKind::Replace),
                refresh: count(ChangeKind::Refresh),
                may_change: count(ChangeKind::MayChange),
                unchanged: plan.unchanged,
                outside_targets: plan.outside_targets,
            },
            changes: plan
                .changes
                .iter()
                .map(|change| JsonChange::new(Item::new(view, change)))
                .collect(),
            unmatched_targets: plan
                .unmatched
                .iter()
                .map(|t| view.redactor.redact(t))
                .collect(),
        }
    }
}

impl<'a> JsonChange<'a> {
    fn new(item: Item<'a>) -> JsonChange<'a> {
        let id = &item.change.id;
        JsonChange {
            id,
            host: id.host.as_str(),
            workflow: id.workflow.as_str(),
            task: id.task.as_str(),
            item: id.item.as_ref().map(crate::instance::ItemKey::as_str),
            kind: item.change.kind,
            reasons: item
                .reasons
                .into_iter()
                .map(|reason| JsonReason {
                    message: reason.describe(),
                    reason,
                })
                .collect(),
            spec_hash: item.change.spec_hash,
            after: &item.change.after,
            desired: item.desired,
            recorded: item.recorded,
        }
    }
}

/// The plan as a pull-request comment: the summary, a table per host, then the diffs in
/// collapsed blocks. Stays under GitHub's comment limit: the tables come first, diffs only
/// while they fit, and what does not fit is counted in a closing note.
pub fn markdown(view: &PlanView<'_>) -> String {
    let mut out = view.redactor.redact(&markdown_header(view.plan));
    let tables: Vec<(HostGroup<'_>, Vec<String>)> = group(&view.plan.changes)
        .into_iter()
        .map(|host| {
            let table = markdown_table(&host, view.redactor);
            (host, table)
        })
        .collect();
    let mut tables_left: usize = tables.iter().flat_map(|(_, t)| t).map(String::len).sum();
    let mut details = out.len() + tables_left < MARKDOWN_BUDGET;
    // Tables that leave no room for any detail drop them all, which the notes must say.
    let mut details_dropped = !details;
    let mut shown = 0;
    for (host, table) in &tables {
        if !push_rows(&mut out, table, &mut tables_left, &mut shown) {
            break;
        }
        if details && !push_details(&mut out, view, host, tables_left) {
            details = false;
            details_dropped = true;
        }
    }
    markdown_notes(&mut out, view.plan.changes.len() - shown, details_dropped);
    out
}

/// Appends a host's heading and rows while they fit; false when one did not.
fn push_rows(
    out: &mut String,
    table: &[String],
    tables_left: &mut usize,
    shown: &mut usize,
) -> bool {
    for (i, piece) in table.iter().enumerate() {
        // The heading and the table's header come with the first row or not at all.
        let size = match i {
            0 => piece.len() + table.get(1).map_or(0, String::len),
            _ => piece.len(),
        };
        if out.len() + size >= MARKDOWN_BUDGET {
            return false;
        }
        out.push_str(piece);
        *tables_left = tables_left.saturating_sub(piece.len());
        *shown += usize::from(i > 0);
    }
    true
}

/// Appends the detail blocks of a host's changes while they fit, keeping room for the tables
/// still to come; false at the first that does not fit. Stopping there, rather than skipping
/// to a smaller one, leaves no gap that readers would take for "nothing changes".
fn push_details(
    out: &mut String,
    view: &PlanView<'_>,
    host: &HostGroup<'_>,
    tables_left: usize,
) -> bool {
    for change in host.workflows.iter().flat_map(|w| &w.changes) {
        let block = details_block(view, change);
        if out.len() + block.len() + tables_left >= MARKDOWN_BUDGET {
            return false;
        }
        out.push_str(&block);
    }
    true
}

/// The summary in bold, then what was left out.
fn markdown_header(plan: &Plan) -> String {
    let mut out = format!("**{}**\n", summary(plan));
    for note in [left_out(plan), unmatched(plan)].into_iter().flatten() {
        let _ = write!(out, "\n{}\n", markdown_escape(&note));
    }
    out
}

/// The heading and table header, then one row per change (always at least one).
fn markdown_table(host: &HostGroup<'_>, redactor: &Redactor) -> Vec<String> {
    let mut pieces = vec![format!(
        "\n### {}\n\n| instance | change | reason |\n| --- | --- | --- |\n",
        host.name
    )];
    for change in host.workflows.iter().flat_map(|w| &w.changes) {
        let reasons: Vec<String> = change
            .reasons
            .iter()
            .map(|r| redact_reason(r, redactor).describe())
            .collect();
        let row = format!(
            "| `{}/{}` | {} {} | {} |\n",
            change.id.workflow,
            change.id.task_part(),
            change.kind.symbol(),
            change.kind.as_str(),
            markdown_escape(&reasons.join("; "))
        );
        pieces.push(redactor.redact(&row));
    }
    pieces
}

/// A collapsed block with what changes, or nothing when the text plan shows nothing either.
fn details_block(view: &PlanView<'_>, change: &PlannedChange) -> String {
    let item = Item::new(view, change);
    let body = item.body(Style::plain(), MARKDOWN_DIFF_LINES);
    if body.is_empty() {
        return String::new();
    }
    let mut title = format!(
        "{} <code>{}/{}</code>",
        change.kind.symbol(),
        change.id.workflow,
        change.id.task_part()
    );
    if let Some(what) = item.what() {
        let _ = write!(title, " {}", html_escape(&what));
    }
    let fence = "`".repeat(longest_backtick_run(&body).max(2) + 1);
    let block = format!(
        "\n<details><summary>{title}</summary>\n\n{fence}diff\n{body}{fence}\n\n</details>\n"
    );
    view.redactor.redact(&block)
}

fn markdown_notes(out: &mut String, not_shown: usize, details_dropped: bool) {
    if not_shown > 0 {
        let changes = plural(not_shown, "more change");
        let _ = write!(
            out,
            "\n… {changes} not shown; run `drover plan` locally for the full plan.\n"
        );
    } else if details_dropped {
        let _ = write!(
            out,
            "\n… Further details are not shown to stay under GitHub's comment size limit; \
             run `drover plan` locally for the full plan.\n"
        );
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::*;
    use crate::hash::content_hash;
    use crate::model::duration::FileMode;
    use crate::model::task_kind::{OnTrigger, ServiceState};
    use crate::secret::Secret;
    use crate::state::{MAX_RECORDED_CONTENT, RecordedText};

    fn id(text: &str) -> InstanceId {
        InstanceId::parse(text).unwrap()
    }

    fn detail(action: RecordedAction) -> InstanceDetail {
        InstanceDetail {
            sensitive: false,
            action,
            undo: None,
            undo_masked: false,
            check: None,
            r#become: None,
            connection: "ssh deploy@10.0.0.1".to_owned(),
            needs: Vec::new(),
            undo_check_hash: None,
        }
    }

    /// Content as the store keeps it, but unmasked: masking is the renderer's job here.
    fn file(path: &str, content: &[u8]) -> InstanceDetail {
        detail(RecordedAction::File {
            path: path.to_owned(),
            content: RecordedText::new(content, &Redactor::default()),
            content_hash: content_hash(content),
            mode: None,
            owner: None,
            group: None,
        })
    }

    fn owned(mut detail: InstanceDetail, mode: &str, owner: &str) -> InstanceDetail {
        if let RecordedAction::File {
            mode: m, owner: o, ..
        } = &mut detail.action
        {
            *m = Some(FileMode::parse(mode).unwrap());
            *o = Some(owner.to_owned());
        }
        detail
    }

    fn run(command: &str) -> InstanceDetail {
        detail(RecordedAction::Run {
            command: command.to_owned(),
            creates: None,
            unless: None,
        })
    }

    fn package(names: &[&str], state: PackageState) -> InstanceDetail {
        detail(RecordedAction::Package {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            state,
        })
    }

    fn service(name: &str, on_trigger: OnTrigger) -> InstanceDetail {
        detail(RecordedAction::Service {
            name: name.to_owned(),
            state: Some(ServiceState::Running),
            enabled: Some(true),
            on_trigger,
        })
    }

    fn undo(mut detail: InstanceDetail, command: &str) -> InstanceDetail {
        detail.undo = Some(command.to_owned());
        detail
    }

    fn numbered(range: std::ops::Range<usize>, word: &str) -> String {
        range.fold(String::new(), |mut out, i| {
            let _ = writeln!(out, "{word} {i}");
            out
        })
    }

    /// A plan built by hand, change by change, with the details a `PlanView` needs.
    struct Fixture {
        plan: Plan,
        desired: BTreeMap<InstanceId, InstanceDetail>,
        recorded: BTreeMap<InstanceId, InstanceDetail>,
        redactor: Redactor,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                plan: Plan {
                    changes: Vec::new(),
                    unchanged: 7,
                    outside_targets: 0,
                    unmatched: Vec::new(),
                    drift_checked: None,
                },
                desired: BTreeMap::new(),
                recorded: BTreeMap::new(),
                redactor: Redactor::default(),
            }
        }

        fn change(
            mut self,
            kind: ChangeKind,
            text: &str,
            reasons: Vec<Reason>,
            recorded: Option<InstanceDetail>,
            desired: Option<InstanceDetail>,
        ) -> Fixture {
            let id = id(text);
            self.plan.changes.push(PlannedChange {
                id: id.clone(),
                kind,
                reasons,
                spec_hash: desired.as_ref().map(SpecHash::of),
                recorded_fingerprint: "fingerprint".to_owned(),
                after: Vec::new(),
            });
            if let Some(recorded) = recorded {
                self.recorded.insert(id.clone(), recorded);
            }
            if let Some(desired) = desired {
                self.desired.insert(id, desired);
            }
            self
        }

        fn create(self, id: &str, desired: InstanceDetail) -> Fixture {
            self.change(
                ChangeKind::Create,
                id,
                vec![Reason::New],
                None,
                Some(desired),
            )
        }

        fn update(self, id: &str, recorded: InstanceDetail, desired: InstanceDetail) -> Fixture {
            let reason = Reason::SpecChanged {
                from: SpecHash::of(&recorded),
                to: SpecHash::of(&desired),
            };
            let (recorded, desired) = (Some(recorded), Some(desired));
            self.change(ChangeKind::Update, id, vec![reason], recorded, desired)
        }

        fn remove(self, id: &str, recorded: InstanceDetail) -> Fixture {
            let has_undo = recorded.undo.is_some();
            let reasons = vec![Reason::NoLongerDesired { has_undo }];
            self.change(ChangeKind::Remove, id, reasons, Some(recorded), None)
        }

        fn secrets(mut self, values: &[&str]) -> Fixture {
            let secrets: Vec<Secret> = values
                .iter()
                .map(|v| Secret::new((*v).to_owned()))
                .collect();
            self.redactor = Redactor::new(&secrets);
            self
        }

        fn view(&self) -> PlanView<'_> {
            PlanView {
                plan: &self.plan,
                desired: &self.desired,
                recorded: &self.recorded,
                redactor: &self.redactor,
            }
        }

        fn text(&self) -> String {
            text(&self.view(), Style::plain())
        }
    }

    #[track_caller]
    fn check_text(fixture: &Fixture, expect: &Expect) {
        expect.assert_eq(&fixture.text());
    }

    /// Every kind of change, on two hosts, removals first as the planner orders them.
    fn every_kind() -> Fixture {
        let config = "user www-data;\nworker_processes 4;\nevents {}\nhttp {\n  listen 80;\n}\n";
        Fixture::new()
            .remove(
                "web-1/cron/rotate",
                undo(
                    file("/etc/cron.d/rotate", b"@daily rotate\n"),
                    "rm -f /etc/cron.d/rotate",
                ),
            )
            .remove("web-2/legacy/motd", file("/etc/motd", b"hello\n"))
            .create(
                "web-1/nginx/install",
                package(&["nginx", "curl"], PackageState::Present),
            )
            .update(
                "web-1/nginx/config",
                owned(
                    file("/etc/nginx/nginx.conf", config.as_bytes()),
                    "0644",
                    "root",
                ),
                owned(
                    file(
                        "/etc/nginx/nginx.conf",
                        config.replace("80", "8080").as_bytes(),
                    ),
                    "0600",
                    "www-data",
                ),
            )
            .change(
                ChangeKind::Trigger,
                "web-1/nginx/reload",
                vec![Reason::TriggeredBy {
                    sources: vec![id("web-1/nginx/config")],
                }],
                Some(service("nginx", OnTrigger::Reload)),
                Some(service("nginx", OnTrigger::Reload)),
            )
            .change(
                ChangeKind::Drifted,
                "web-1/nginx/site",
                vec![Reason::Drift {
                    summary: "/srv/www/index.html differs".to_owned(),
                }],
                Some(file("/srv/www/index.html", b"<h1>hi</h1>\n")),
                Some(file("/srv/www/index.html", b"<h1>hi</h1>\n")),
            )
            .create(
                "web-2/app/env",
                file("/etc/app.env", b"PORT=8080\nLOG=info\n"),
            )
            .change(
                ChangeKind::Replace,
                "web-2/app/migrate",
                vec![Reason::Forced],
                Some(run("app migrate --all")),
                Some(run("app migrate --all")),
            )
    }

    #[test]
    fn text_shows_every_change_kind() {
        check_text(
            &every_kind(),
            &expect![[r#"
                web-1
                  cron
                    - rotate  file /etc/cron.d/rotate — no longer desired; runs its undo
                      undo: rm -f /etc/cron.d/rotate
                  nginx
                    + install  package nginx, curl — new
                    ~ config  file /etc/nginx/nginx.conf — spec changed (47f1819ab3de → 15827103b42b)
                      mode: 0644 → 0600
                      owner: root → www-data
                      --- recorded
                      +++ desired
                      @@ -2,5 +2,5 @@
                       worker_processes 4;
                       events {}
                       http {
                      -  listen 80;
                      +  listen 8080;
                       }
                    ! reload  service nginx — triggered by nginx/config
                      will reload nginx
                    ≠ site  file /srv/www/index.html — drifted: /srv/www/index.html differs

                web-2
                  legacy
                    - motd  file /etc/motd — no longer desired; no undo recorded, so it is only forgotten
                  app
                    + env  file /etc/app.env — new
                      --- (none)
                      +++ desired
                      @@ -0,0 +1,2 @@
                      +PORT=8080
                      +LOG=info
                    ± migrate  run app migrate --all — replacement requested

                Plan: 2 to create, 1 to update, 1 to trigger, 1 to fix drift, 1 to replace, 2 to remove.
                7 unchanged.
            "#]],
        );
    }

    #[test]
    fn text_shows_field_changes_of_every_task_kind() {
        let mut guarded = run("make install");
        if let RecordedAction::Run { creates, .. } = &mut guarded.action {
            *creates = Some("/usr/local/bin/app".to_owned());
        }
        let mut moved = service("app", OnTrigger::Restart);
        moved.connection = "ssh deploy@10.0.0.9:2222".to_owned();
        moved.r#become = Some("root".to_owned());
        if let RecordedAction::Service { state, enabled, .. } = &mut moved.action {
            *state = Some(ServiceState::Stopped);
            *enabled = None;
        }
        let fixture = Fixture::new()
            .update("web-1/app/build", run("make"), guarded)
            .update(
                "web-1/app/setup",
                run("apt-get update\napt-get install nginx\n"),
                undo(
                    run("apt-get update\napt-get install -y nginx\n"),
                    "apt-get remove -y nginx",
                ),
            )
            .update(
                "web-1/app/tools",
                package(&["curl"], PackageState::Present),
                package(&["curl", "jq"], PackageState::Absent),
            )
            .update(
                "web-1/app/daemon",
                service("app", OnTrigger::Restart),
                moved,
            )
            .update(
                "web-1/app/hook",
                run("touch /srv/hook"),
                file("/srv/hook", b"#!/bin/sh\nexit 0\n"),
            )
            .create(
                "web-1/app/bootstrap",
                run("set -e\ncurl -fsS https://example.com/install | sh\n"),
            )
            .create("web-1/app/web", service("app-web", OnTrigger::Reload));
        check_text(
            &fixture,
            &expect![[r#"
                web-1
                  app
                    ~ build  run make install — spec changed (5a61161c9665 → 30441d92e866)
                      command: make → make install
                      creates: (none) → /usr/local/bin/app
                    ~ setup  run apt-get update … — spec changed (1ccadfb6199d → b2f19767cc6b)
                      command:
                      @@ -1,2 +1,2 @@
                       apt-get update
                      -apt-get install nginx
                      +apt-get install -y nginx
                      undo: (none) → apt-get remove -y nginx
                    ~ tools  package curl, jq (absent) — spec changed (bbf186704235 → c83630c9e1f2)
                      names: curl → curl, jq
                      state: present → absent
                    ~ daemon  service app — spec changed (6856ba741836 → 111b154d9667)
                      state: running → stopped
                      enabled: true → (none)
                      connection: ssh deploy@10.0.0.1 → ssh deploy@10.0.0.9:2222
                      become: (none) → root
                    ~ hook  file /srv/hook — spec changed (28dde9e252b2 → 33bb47e9db54)
                      kind: run → file
                      --- (none)
                      +++ desired
                      @@ -0,0 +1,2 @@
                      +#!/bin/sh
                      +exit 0
                    + bootstrap  run set -e … — new
                      command:
                        set -e
                        curl -fsS https://example.com/install | sh
                    + web  service app-web — new
                      state: running
                      enabled: true
                      onTrigger: reload

                Plan: 2 to create, 5 to update, 0 to trigger, 0 to remove.
                7 unchanged.
            "#]],
        );
    }

    #[test]
    fn text_caps_a_created_file_at_forty_lines() {
        let content = numbered(1..61, "line");
        let fixture =
            Fixture::new().create("web-1/app/big", file("/srv/big.txt", content.as_bytes()));
        let out = fixture.text();
        assert!(out.contains("+line 39\n"), "{out}");
        assert!(!out.contains("+line 40\n"), "{out}");
        // The hunk header counts as one of the forty lines shown.
        assert!(out.contains("      … 21 more lines\n"), "{out}");
    }

    #[test]
    fn text_says_why_binary_and_truncated_contents_are_not_diffed() {
        let big = "x".repeat(MAX_RECORDED_CONTENT + 10);
        let fixture = Fixture::new()
            .update(
                "web-1/app/logo",
                file("/srv/logo.png", b"\x89PNG\xff\x00"),
                file("/srv/logo.png", b"\x89PNG\xfe\x00\x01"),
            )
            .update(
                "web-1/app/dump",
                file("/srv/dump.sql", big.as_bytes()),
                file("/srv/dump.sql", b"small\n"),
            )
            .create(
                "web-1/app/icon",
                file("/srv/icon.ico", b"\x00\x00\x01\x00\xff"),
            );
        check_text(
            &fixture,
            &expect![[r#"
                web-1
                  app
                    ~ logo  file /srv/logo.png — spec changed (e06112380bb9 → 1bb9c7707975)
                      content: 6 B → 7 B; binary content is not shown
                    ~ dump  file /srv/dump.sql — spec changed (ab48d177f5f6 → 453ce8bc58d0)
                      content: 256 KiB → 6 B; too large to diff (only the first 256 KiB are kept)
                    + icon  file /srv/icon.ico — new
                      content: binary, 5 B; not shown

                Plan: 1 to create, 2 to update, 0 to trigger, 0 to remove.
                7 unchanged.
            "#]],
        );
    }

    #[test]
    fn text_of_a_targeted_plan_counts_what_it_leaves_out() {
        let mut fixture = Fixture::new().create("web-1/app/env", file("/etc/app.env", b"A=1\n"));
        fixture.plan.outside_targets = 4;
        fixture.plan.unmatched = vec!["web-9/*".to_owned()];
        check_text(
            &fixture,
            &expect![[r"
            web-1
              app
                + env  file /etc/app.env — new
                  --- (none)
                  +++ desired
                  @@ -0,0 +1 @@
                  +A=1

            Plan: 1 to create, 0 to update, 0 to trigger, 0 to remove.
            7 unchanged; 4 changes outside --target not shown.
            Targets that match no instance: web-9/*.
        "]],
        );
    }

    #[test]
    fn text_of_an_empty_plan() {
        check_text(
            &Fixture::new(),
            &expect![[r#"
                No changes against the recorded state (7 instances up to date); the hosts were not probed (no drift check yet; `--refresh` probes them).
            "#]],
        );
        let mut targeted = Fixture::new();
        targeted.plan.outside_targets = 1;
        check_text(
            &targeted,
            &expect![[r"
            No changes in the targeted instances (7 instances up to date).
            1 change outside --target not shown.
        "]],
        );
    }

    #[test]
    fn summary_mentions_drift_and_replace_only_when_there_are_some() {
        let fixture = Fixture::new()
            .create("web-1/app/a", run("true"))
            .remove("web-1/app/b", run("true"));
        expect!["Plan: 1 to create, 0 to update, 0 to trigger, 1 to remove."]
            .assert_eq(&summary(&fixture.plan));
        expect!["Plan: 2 to create, 1 to update, 1 to trigger, 1 to fix drift, 1 to replace, 2 to remove."]
            .assert_eq(&summary(&every_kind().plan));
    }

    #[test]
    fn colored_text_has_ansi_codes_that_end_before_each_newline() {
        let out = text(&every_kind().view(), Style::colored());
        assert!(
            out.contains("\x1b[1;32m+\x1b[0m \x1b[1minstall\x1b[0m"),
            "{out:?}"
        );
        assert!(out.contains("\x1b[1;31m-  listen 80;\x1b[0m\n"), "{out:?}");
        assert!(
            out.contains("\x1b[1;32m+  listen 8080;\x1b[0m\n"),
            "{out:?}"
        );
        assert!(
            out.contains("\x1b[1;31m0644\x1b[0m → \x1b[1;32m0600\x1b[0m"),
            "{out:?}"
        );
        for line in out.lines() {
            // No colour is still open where the line ends.
            let (opened, reset) = (line.rfind("\x1b[1"), line.rfind("\x1b[0m"));
            assert!(opened.is_none() || reset > opened, "{line:?}");
        }
    }

    /// A secret in content, a command, a drift summary and an undo, with a `"` that JSON
    /// would escape and a new line that a diff would split.
    fn with_secrets() -> Fixture {
        Fixture::new()
            .secrets(&["hunter\"2", "BEGIN KEY\nabc\nEND KEY"])
            .update(
                "web-1/app/env",
                file("/etc/app.env", b"USER=app\nPASSWORD=old\n"),
                file("/etc/app.env", b"USER=app\nPASSWORD=hunter\"2\n"),
            )
            .create(
                "web-1/app/key",
                file("/etc/app.key", b"BEGIN KEY\nabc\nEND KEY\n"),
            )
            .change(
                ChangeKind::Drifted,
                "web-1/app/login",
                vec![Reason::Drift {
                    summary: "expected hunter\"2".to_owned(),
                }],
                Some(run("login --password 'hunter\"2'")),
                Some(run("login --password 'hunter\"2'")),
            )
            .remove(
                "web-1/app/user",
                undo(run("useradd app"), "userdel app # hunter\"2"),
            )
    }

    #[test]
    fn secrets_are_masked_in_every_format() {
        let fixture = with_secrets();
        let view = fixture.view();
        let outputs = [
            text(&view, Style::plain()),
            text(&view, Style::colored()),
            json(&view),
            markdown(&view),
        ];
        for out in &outputs {
            for leak in ["hunter", "abc", "BEGIN KEY"] {
                assert!(!out.contains(leak), "`{leak}` leaked:\n{out}");
            }
            assert!(out.contains("***"), "{out}");
        }
        check_text(
            &fixture,
            &expect![[r#"
                web-1
                  app
                    ~ env  file /etc/app.env — spec changed (bb47abad1fed → f499998b6fbf)
                      --- recorded
                      +++ desired
                      @@ -1,2 +1,2 @@
                       USER=app
                      -PASSWORD=old
                      +PASSWORD=***
                    + key  file /etc/app.key — new
                      --- (none)
                      +++ desired
                      @@ -0,0 +1 @@
                      +***
                    ≠ login  run login --password *** — drifted: expected ***
                    - user  run useradd app — no longer desired; runs its undo
                      undo: userdel app # ***

                Plan: 1 to create, 1 to update, 0 to trigger, 1 to fix drift, 1 to remove.
                7 unchanged.
            "#]],
        );
    }

    #[test]
    fn a_change_inside_a_masked_secret_is_named_not_hidden() {
        let fixture = Fixture::new().secrets(&["old-pass", "new-pass"]).update(
            "web-1/app/env",
            file("/etc/app.env", b"PASSWORD=old-pass\n"),
            file("/etc/app.env", b"PASSWORD=new-pass\n"),
        );
        check_text(
            &fixture,
            &expect![[r#"
                web-1
                  app
                    ~ env  file /etc/app.env — spec changed (5bd2f23f03b0 → 93255c385255)
                      content: changed only where secrets are masked

                Plan: 0 to create, 1 to update, 0 to trigger, 0 to remove.
                7 unchanged.
            "#]],
        );
    }

    #[test]
    fn a_removal_whose_undo_needs_a_secret_says_it_cannot_run() {
        let mut recorded = undo(
            run("useradd app"),
            "curl -u admin:*** https://x/users/app -X DELETE",
        );
        recorded.undo_masked = true;
        let fixture = Fixture::new().remove("web-1/app/user", recorded);
        check_text(
            &fixture,
            &expect![[r"
            web-1
              app
                - user  run useradd app — no longer desired; runs its undo
                  undo: curl -u admin:*** https://x/users/app -X DELETE
                  the undo uses a secret, which is not recorded: the apply will refuse to run it

            Plan: 0 to create, 0 to update, 0 to trigger, 1 to remove.
            7 unchanged.
        "]],
        );
    }

    #[test]
    fn json_is_versioned_with_details_and_reasons() {
        let mut fixture = Fixture::new()
            .remove(
                "web-2/legacy/motd",
                undo(file("/etc/motd", b"hello\n"), "rm -f /etc/motd"),
            )
            .create(
                "web-1/nginx/install",
                package(&["nginx"], PackageState::Present),
            )
            .update(
                "web-1/nginx/config",
                owned(file("/etc/nginx.conf", b"listen 80;\n"), "0644", "root"),
                owned(file("/etc/nginx.conf", b"listen 8080;\n"), "0644", "root"),
            );
        if let Some(config) = fixture.plan.changes.get_mut(2) {
            config.after = vec![id("web-1/nginx/install")];
        }
        fixture.plan.outside_targets = 2;
        fixture.plan.unmatched = vec!["web-9/*".to_owned()];
        expect![[r#"
            {
              "formatVersion": 1,
              "summary": {
                "create": 1,
                "update": 1,
                "trigger": 0,
                "drifted": 0,
                "remove": 1,
                "replace": 0,
                "refresh": 0,
                "mayChange": 0,
                "unchanged": 7,
                "outsideTargets": 2
              },
              "changes": [
                {
                  "id": "web-2/legacy/motd",
                  "host": "web-2",
                  "workflow": "legacy",
                  "task": "motd",
                  "kind": "remove",
                  "reasons": [
                    {
                      "reason": "noLongerDesired",
                      "hasUndo": true,
                      "message": "no longer desired; runs its undo"
                    }
                  ],
                  "specHash": null,
                  "after": [],
                  "desired": null,
                  "recorded": {
                    "action": {
                      "kind": "file",
                      "path": "/etc/motd",
                      "content": {
                        "text": "hello\n",
                        "truncated": false,
                        "binary": false,
                        "size": 6
                      },
                      "contentHash": "8e4c7c1b99dbfd50e7a95185fead5ee1448fa904a2fdd778eaf5f2dbfd629a99"
                    },
                    "undo": "rm -f /etc/motd",
                    "connection": "ssh deploy@10.0.0.1"
                  }
                },
                {
                  "id": "web-1/nginx/install",
                  "host": "web-1",
                  "workflow": "nginx",
                  "task": "install",
                  "kind": "create",
                  "reasons": [
                    {
                      "reason": "new",
                      "message": "new"
                    }
                  ],
                  "specHash": "deea29b0ecada55f68d5b3cb11bd3cb70b8b148a9302b6145d37c28d32816122",
                  "after": [],
                  "desired": {
                    "action": {
                      "kind": "package",
                      "names": [
                        "nginx"
                      ],
                      "state": "present"
                    },
                    "connection": "ssh deploy@10.0.0.1"
                  },
                  "recorded": null
                },
                {
                  "id": "web-1/nginx/config",
                  "host": "web-1",
                  "workflow": "nginx",
                  "task": "config",
                  "kind": "update",
                  "reasons": [
                    {
                      "reason": "specChanged",
                      "from": "d0dc643d971e14dd0f53063f21555c87dfe47edc4dc2cade432de35dc7bb08e9",
                      "to": "f72f64960511fa629e6ed111c682ec3e0b3ff3e25f91ac9b01cb0b137a4f5e3b",
                      "message": "spec changed (d0dc643d971e → f72f64960511)"
                    }
                  ],
                  "specHash": "f72f64960511fa629e6ed111c682ec3e0b3ff3e25f91ac9b01cb0b137a4f5e3b",
                  "after": [
                    "web-1/nginx/install"
                  ],
                  "desired": {
                    "action": {
                      "kind": "file",
                      "path": "/etc/nginx.conf",
                      "content": {
                        "text": "listen 8080;\n",
                        "truncated": false,
                        "binary": false,
                        "size": 13
                      },
                      "contentHash": "624482075b4ac80d0af9d86eb87d2cb58866529183d8c3c7593713bcdb1f9995",
                      "mode": "0644",
                      "owner": "root"
                    },
                    "connection": "ssh deploy@10.0.0.1"
                  },
                  "recorded": {
                    "action": {
                      "kind": "file",
                      "path": "/etc/nginx.conf",
                      "content": {
                        "text": "listen 80;\n",
                        "truncated": false,
                        "binary": false,
                        "size": 11
                      },
                      "contentHash": "dca98a7a7d4b45b2b2ff522f3f1493223c20a4f5d21000df474348db4cd9df36",
                      "mode": "0644",
                      "owner": "root"
                    },
                    "connection": "ssh deploy@10.0.0.1"
                  }
                }
              ],
              "unmatchedTargets": [
                "web-9/*"
              ]
            }
        "#]].assert_eq(&json(&fixture.view()));
    }

    #[test]
    fn json_of_an_empty_plan() {
        expect![[r#"
            {
              "formatVersion": 1,
              "summary": {
                "create": 0,
                "update": 0,
                "trigger": 0,
                "drifted": 0,
                "remove": 0,
                "replace": 0,
                "refresh": 0,
                "mayChange": 0,
                "unchanged": 7,
                "outsideTargets": 0
              },
              "changes": [],
              "unmatchedTargets": []
            }
        "#]]
        .assert_eq(&json(&Fixture::new().view()));
    }

    #[test]
    fn markdown_has_a_table_per_host_and_collapsed_diffs() {
        let fixture = every_kind().change(
            ChangeKind::Drifted,
            "web-2/app/pipe",
            vec![Reason::Drift {
                summary: "`ps | grep` found <none>".to_owned(),
            }],
            Some(run("ps aux | grep app")),
            Some(run("ps aux | grep app\necho ```")),
        );
        expect![[r#"
            **Plan: 2 to create, 1 to update, 1 to trigger, 2 to fix drift, 1 to replace, 2 to remove.**

            7 unchanged.

            ### web-1

            | instance | change | reason |
            | --- | --- | --- |
            | `cron/rotate` | - remove | no longer desired; runs its undo |
            | `nginx/install` | + create | new |
            | `nginx/config` | ~ update | spec changed (47f1819ab3de → 15827103b42b) |
            | `nginx/reload` | ! trigger | triggered by nginx/config |
            | `nginx/site` | ≠ drifted | drifted: /srv/www/index.html differs |

            <details><summary>- <code>cron/rotate</code> file /etc/cron.d/rotate</summary>

            ```diff
            undo: rm -f /etc/cron.d/rotate
            ```

            </details>

            <details><summary>~ <code>nginx/config</code> file /etc/nginx/nginx.conf</summary>

            ```diff
            mode: 0644 → 0600
            owner: root → www-data
            --- recorded
            +++ desired
            @@ -2,5 +2,5 @@
             worker_processes 4;
             events {}
             http {
            -  listen 80;
            +  listen 8080;
             }
            ```

            </details>

            <details><summary>! <code>nginx/reload</code> service nginx</summary>

            ```diff
            will reload nginx
            ```

            </details>

            ### web-2

            | instance | change | reason |
            | --- | --- | --- |
            | `legacy/motd` | - remove | no longer desired; no undo recorded, so it is only forgotten |
            | `app/env` | + create | new |
            | `app/migrate` | ± replace | replacement requested |
            | `app/pipe` | ≠ drifted | drifted: `ps \| grep` found &lt;none&gt; |

            <details><summary>+ <code>app/env</code> file /etc/app.env</summary>

            ```diff
            --- (none)
            +++ desired
            @@ -0,0 +1,2 @@
            +PORT=8080
            +LOG=info
            ```

            </details>

            <details><summary>≠ <code>app/pipe</code> run ps aux | grep app …</summary>

            ````diff
            command:
            @@ -1 +1,2 @@
             ps aux | grep app
            +echo ```
            ````

            </details>
        "#]].assert_eq(&markdown(&fixture.view()));
    }

    #[test]
    fn markdown_of_an_empty_plan() {
        expect![[r#"
            **No changes against the recorded state (7 instances up to date); the hosts were not probed (no drift check yet; `--refresh` probes them).**
        "#]]
        .assert_eq(&markdown(&Fixture::new().view()));
    }

    /// Many changes with big diffs: a file of 100 lines, every line changed.
    fn big_changes(count: usize) -> Fixture {
        let (old, new) = (numbered(0..100, "old line"), numbered(0..100, "new line"));
        (0..count).fold(Fixture::new(), |fixture, i| {
            fixture.update(
                &format!("web-{}/app/file-{i}", i % 7),
                file("/srv/file.txt", old.as_bytes()),
                file("/srv/file.txt", new.as_bytes()),
            )
        })
    }

    #[test]
    fn markdown_stays_under_githubs_comment_limit() {
        let out = markdown(&big_changes(3000).view());
        assert!(out.len() < 65_000, "{} bytes", out.len());
        let rows = out.matches("| ~ update |").count();
        let note = format!(
            "… {} more changes not shown; run `drover plan` locally for the full plan.\n",
            3000 - rows
        );
        assert!(
            out.ends_with(&note),
            "{}",
            out.get(out.len() - 300..).unwrap_or_default()
        );
        assert!(rows > 100, "{rows} rows");
        assert!(!out.contains("<details>"), "rows come before details");
    }

    #[test]
    fn markdown_drops_details_before_rows() {
        let out = markdown(&big_changes(40).view());
        assert!(out.len() < 65_000, "{} bytes", out.len());
        assert_eq!(out.matches("| ~ update |").count(), 40);
        let details = out.matches("<details>").count();
        assert!((1..40).contains(&details), "{details} details");
        assert!(
            out.contains("```diff\n--- recorded\n+++ desired\n@@ -1,100 +1,100 @@\n-old line 0\n")
        );
        assert!(out.contains("\n… 51 more lines\n```\n"), "diffs are capped");
        assert!(out.ends_with(
            "\n… Further details are not shown to stay under GitHub's comment size limit; \
             run `drover plan` locally for the full plan.\n"
        ));
    }
}
