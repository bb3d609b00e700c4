//! `claim`: the path on its host that an instance manages, and how (decision 0021).
//!
//! Two instances of one host that manage the same path either conflict or take turns. A
//! task that writes a whole file (`file`; `sysctl` and `cron` for the file they persist to)
//! owns its content: another task that writes or edits that file would be undone by it on
//! every apply, and drift and repair would chase each other for ever, so `resolve` rejects
//! the pair (`conflicts`). Everything else may share a path (several `line` and `block`
//! edits of one file, a `directory` and the `archive` unpacked into it) and takes turns:
//! the apply runs them one at a time, in plan order (`turn`, `schedule::Node::resource`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::diagnostic::{Diagnostic, Location};
use crate::load;
use crate::model::desired::Task;
use crate::model::task_kind::TaskKind;
use crate::resolve::{Action, ResolvedInstance};

/// How an instance manages its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Writes the whole content: `file`, and `sysctl` and `cron` for their files.
    Writes,
    /// Edits part of the content: `line`, `block`.
    Edits,
    /// Manages what is at the path rather than a file's content: `directory`, `link`, an
    /// `archive`'s destination.
    Holds,
}

/// The path `action` manages on its host, as rendered, and how; `None` for the kinds that
/// manage no path of their own (`run`, `package`, `service`, `user`, `group`).
pub fn of(action: &Action) -> Option<(&str, Use)> {
    match action {
        Action::File { path, .. } | Action::Cron { path, .. } => Some((path, Use::Writes)),
        Action::Sysctl { file, .. } => Some((file, Use::Writes)),
        Action::Line { path, .. } | Action::Block { path, .. } => Some((path, Use::Edits)),
        Action::Directory { path, .. } | Action::Link { path, .. } => Some((path, Use::Holds)),
        Action::Archive { dest, .. } => Some((dest, Use::Holds)),
        Action::Run { .. }
        | Action::Package { .. }
        | Action::Service { .. }
        | Action::User(_)
        | Action::Group(_) => None,
    }
}

/// What the apply queues `instance` behind: the path it manages, folded by `normal_path`.
/// Instances of one host with the same turn run one at a time, in plan order.
pub fn turn(instance: &ResolvedInstance) -> Option<String> {
    of(&instance.action).map(|(path, _)| normal_path(path).into_owned())
}

/// A path with repeated `/`, `.` segments and a trailing `/` folded, so that `/etc//motd`,
/// `/etc/./motd` and `/srv/app/` name the same file as `/etc/motd` and `/srv/app`. `..` is
/// left alone: through a symbolic link it may lead elsewhere.
pub fn normal_path(path: &str) -> Cow<'_, str> {
    let folded = path.contains("//")
        || path.contains("/./")
        || path.ends_with("/.")
        || (path.len() > 1 && path.ends_with('/'));
    if !folded {
        return Cow::Borrowed(path);
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    Cow::Owned(format!("/{}", parts.join("/")))
}

/// Instances of one host that claim one path in ways that cannot both hold: one of them
/// writes the whole file and another writes or edits it too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict<'a> {
    pub host: &'a str,
    /// Folded by `normal_path`.
    pub path: String,
    /// Positions (in the slice given to `conflicts`) of the instances that write the whole
    /// file, in order.
    pub writers: Vec<usize>,
    /// Positions of the instances that edit it, in order.
    pub editors: Vec<usize>,
}

/// (host, folded path) → the positions of the instances that write or edit it: the first,
/// then any others (empty, so unallocated, for the many paths claimed once).
type Claims<'a> = BTreeMap<(&'a str, Cow<'a, str>), (usize, Vec<usize>)>;

/// (path, writers' names, editors' names) → (the conflict on the first host, every host).
type Shared<'c> = BTreeMap<(&'c str, Vec<String>, Vec<String>), (&'c Conflict<'c>, Vec<&'c str>)>;

/// Every conflict among `instances`, by host then path. Instances for which `undecided`
/// holds are left out: whether they exist on their host is not known here (a `when` on
/// facts not gathered), and the check runs again once it is.
pub fn conflicts(
    instances: &[ResolvedInstance],
    undecided: impl Fn(usize) -> bool,
) -> Vec<Conflict<'_>> {
    // Borrowed keys: a fleet has many paths and few shared ones.
    let mut claims: Claims<'_> = BTreeMap::new();
    for (i, instance) in instances.iter().enumerate() {
        let Some((path, Use::Writes | Use::Edits)) = of(&instance.action) else {
            continue;
        };
        if undecided(i) {
            continue;
        }
        claims
            .entry((instance.id.host.as_str(), normal_path(path)))
            .and_modify(|(_, others)| others.push(i))
            .or_insert((i, Vec::new()));
    }
    let writes_whole = |i: &usize| {
        instances
            .get(*i)
            .and_then(|d| of(&d.action))
            .is_some_and(|(_, how)| how == Use::Writes)
    };
    claims
        .into_iter()
        .filter(|(_, (_, others))| !others.is_empty())
        .filter_map(|((host, path), (first, others))| {
            let (writers, editors): (Vec<usize>, Vec<usize>) =
                std::iter::once(first).chain(others).partition(writes_whole);
            (!writers.is_empty()).then(|| Conflict {
                host,
                path: path.into_owned(),
                writers,
                editors,
            })
        })
        .collect()
}

/// One diagnostic per path and set of tasks in conflict, naming every task and the hosts
/// where they meet. `tasks` holds the task of each instance, by position.
pub fn diagnostics(
    conflicts: &[Conflict<'_>],
    instances: &[ResolvedInstance],
    tasks: &[&Task],
) -> Vec<Diagnostic> {
    let name = |i: &usize| {
        instances
            .get(*i)
            .map(|d| format!("{}/{}", d.id.workflow, d.id.task_part()))
            .unwrap_or_default()
    };
    // The same tasks meeting on many hosts are one mistake.
    let mut shared: Shared<'_> = BTreeMap::new();
    for conflict in conflicts {
        let key = (
            conflict.path.as_str(),
            conflict.writers.iter().map(name).collect(),
            conflict.editors.iter().map(name).collect(),
        );
        shared
            .entry(key)
            .or_insert_with(|| (conflict, Vec::new()))
            .1
            .push(conflict.host);
    }
    let task = |i: &usize| tasks.get(*i).copied();
    shared
        .into_iter()
        .filter_map(|((path, writers, editors), (first, hosts))| {
            let where_ = match hosts.as_slice() {
                [one] => format!("host {one}"),
                [first, rest @ ..] => {
                    format!("{} hosts ({first} and {} more)", rest.len() + 1, rest.len())
                }
                [] => return None,
            };
            let writing: Vec<&Task> = first.writers.iter().filter_map(task).collect();
            let editing: Vec<&Task> = first.editors.iter().filter_map(task).collect();
            if editors.is_empty() {
                written_twice(path, &where_, &writers, &writing)
            } else {
                written_and_edited(path, &where_, (&writers, &writing), (&editors, &editing))
            }
        })
        .collect()
}

/// Several tasks write the whole file.
fn written_twice(
    path: &str,
    where_: &str,
    names: &[String],
    tasks: &[&Task],
) -> Option<Diagnostic> {
    let (last, earlier) = tasks.split_last()?;
    let mut d = Diagnostic::error(
        "manifest::duplicate-file",
        format!(
            "file `{path}` on {where_} is written by {} tasks: {}",
            names.len(),
            listed(names)
        ),
    )
    .at(place(last))
    .with_label("written here")
    .with_help(
        "each file on a host must have one owner: merge these tasks, or give them different paths",
    );
    for task in earlier {
        d = d.with_related(place(task), "and here");
    }
    Some(d)
}

/// A task writes the whole file and others edit it.
fn written_and_edited(
    path: &str,
    where_: &str,
    (writer_names, writers): (&[String], &[&Task]),
    (editor_names, editors): (&[String], &[&Task]),
) -> Option<Diagnostic> {
    let (first, others) = writers.split_first()?;
    let and = if writer_names.len() > 1 {
        ", and"
    } else {
        " and"
    };
    let help = if matches!(first.kind, TaskKind::File(_)) {
        "a `file` task owns the whole file, so every apply would undo these edits and drift would never settle: put the lines into its `content` (or template), or drop it and give the edits `create: true`"
    } else {
        "a `sysctl` or `cron` task owns the whole file it writes, so every apply would undo these edits: edit another file, or persist the task elsewhere (`sysctl.file`, `cron.dir`)"
    };
    let mut d = Diagnostic::error(
        "manifest::file-written-and-edited",
        format!(
            "file `{path}` on {where_} is written whole by {}{and} edited by {}",
            listed(writer_names),
            listed(editor_names)
        ),
    )
    .at(place(first))
    .with_label("written whole here")
    .with_help(help);
    for task in others {
        d = d.with_related(place(task), "and written whole here");
    }
    for task in editors {
        d = d.with_related(place(task), "edited here");
    }
    Some(d)
}

/// `a`, `b` and `c`, each quoted.
fn listed(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Where a task names the path it manages.
fn place(task: &Task) -> Location {
    let origin = match &task.kind {
        TaskKind::File(_) => task.origin.push("file").push("path"),
        TaskKind::Line(_) => task.origin.push("line").push("path"),
        TaskKind::Block(_) => task.origin.push("block").push("path"),
        TaskKind::Sysctl(sysctl) if sysctl.file.is_some() => {
            task.origin.push("sysctl").push("file")
        }
        TaskKind::Sysctl(_) => task.origin.push("sysctl").push("name"),
        TaskKind::Cron(_) => task.origin.push("cron").push("name"),
        _ => task.origin.clone(),
    };
    load::locate(&origin)
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::resolve::{Inputs, resolve};

    const SITE: &str = r#"
apiVersion: drover/v1
kind: Host
metadata: {name: a, labels: {role: web}}
spec: {address: 10.0.0.1}
---
apiVersion: drover/v1
kind: Host
metadata: {name: b, labels: {role: web}}
spec: {address: 10.0.0.2}
---
apiVersion: drover/v1
kind: Workflow
metadata: {name: w}
spec:
  hosts: {matchLabels: {role: web}}
  tasks:
    - {name: dir, directory: {path: /etc/app}}
    - {name: one, line: {path: /etc/app/x.conf, line: "one=1"}}
    - {name: whole, file: {path: /etc/app//x.conf, content: "x\n"}}
    - {name: two, block: {path: /etc/app/x.conf, content: "two=2"}}
    - {name: other, line: {path: /etc/app/y.conf, line: "y"}}
    - {name: again, block: {path: /etc/app/./y.conf, content: "y"}}
    - {name: link, link: {path: /etc/app, target: /srv/app}}
    - {name: cmd, run: "true"}
"#;

    fn resolved(text: &str) -> Vec<ResolvedInstance> {
        let desired = crate::load::desired_of(text);
        resolve(&desired, &Inputs::default()).instances
    }

    fn summary(instances: &[ResolvedInstance], conflicts: &[Conflict<'_>]) -> Vec<String> {
        let ids = |positions: &[usize]| {
            positions
                .iter()
                .map(|&i| instances[i].id.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        conflicts
            .iter()
            .map(|c| {
                format!(
                    "{} {}: writers {}; editors {}",
                    c.host,
                    c.path,
                    ids(&c.writers),
                    ids(&c.editors)
                )
            })
            .collect()
    }

    #[test]
    fn a_whole_file_conflicts_with_its_edits_and_edits_alone_do_not() {
        let instances = resolved(SITE);
        let conflicts = conflicts(&instances, |_| false);
        assert_eq!(
            summary(&instances, &conflicts),
            [
                "a /etc/app/x.conf: writers a/w/whole; editors a/w/one a/w/two",
                "b /etc/app/x.conf: writers b/w/whole; editors b/w/one b/w/two",
            ]
        );
    }

    #[test]
    fn instances_whose_existence_is_undecided_are_left_out() {
        let instances = resolved(SITE);
        let whole_on_a = instances
            .iter()
            .position(|i| i.id.to_string() == "a/w/whole")
            .unwrap();
        let conflicts = conflicts(&instances, |i| i == whole_on_a);
        assert_eq!(
            summary(&instances, &conflicts),
            ["b /etc/app/x.conf: writers b/w/whole; editors b/w/one b/w/two"]
        );
    }

    /// A `file` for Debian hosts and a `line` for Alpine hosts on one path: a conflict only
    /// where the facts say both run.
    #[test]
    fn tasks_limited_to_other_systems_conflict_only_where_both_run() {
        let text = r#"
apiVersion: drover/v1
kind: Host
metadata: {name: a}
spec: {address: 10.0.0.1}
---
apiVersion: drover/v1
kind: Workflow
metadata: {name: w}
spec:
  hosts: {names: [a]}
  tasks:
    - {name: whole, when: {facts: {os: debian}}, file: {path: /etc/x.conf, content: "x\n"}}
    - {name: edit, when: {facts: {os: [alpine, debian]}}, line: {path: /etc/x.conf, line: "y"}}
"#;
        let desired = crate::load::desired_of(text);
        let codes = |os: Option<&str>| -> Vec<&'static str> {
            let mut inputs = Inputs::default();
            if let Some(os) = os {
                let facts = crate::facts::Facts {
                    os: os.to_owned(),
                    ..crate::facts::Facts::stand_in()
                };
                inputs
                    .facts
                    .insert(desired.hosts.keys().next().unwrap().clone(), facts);
            }
            resolve(&desired, &inputs)
                .diagnostics
                .iter()
                .map(|d| d.code)
                .collect()
        };
        assert!(codes(None).is_empty(), "not known here: left to the plan");
        assert!(codes(Some("alpine")).is_empty());
        assert_eq!(codes(Some("debian")), ["manifest::file-written-and-edited"]);
    }

    #[test]
    fn each_path_kind_takes_its_turn_on_its_folded_path() {
        let instances = resolved(SITE);
        let turns: Vec<String> = instances
            .iter()
            .filter(|i| i.id.host.as_str() == "a")
            .map(|i| format!("{} {:?}", i.id.task_part(), turn(i)))
            .collect();
        assert_eq!(
            turns,
            [
                r#"dir Some("/etc/app")"#,
                r#"one Some("/etc/app/x.conf")"#,
                r#"whole Some("/etc/app/x.conf")"#,
                r#"two Some("/etc/app/x.conf")"#,
                r#"other Some("/etc/app/y.conf")"#,
                r#"again Some("/etc/app/y.conf")"#,
                r#"link Some("/etc/app")"#,
                "cmd None",
            ]
        );
    }

    #[test]
    fn paths_compare_after_folding_slashes_and_dots() {
        assert_eq!(normal_path("/etc//motd"), "/etc/motd");
        assert_eq!(normal_path("/etc/./motd"), "/etc/motd");
        assert_eq!(normal_path("/etc/motd"), "/etc/motd");
        assert_eq!(normal_path("/srv/app/"), "/srv/app");
        assert_eq!(normal_path("/srv/app/."), "/srv/app");
        assert_eq!(normal_path("/"), "/");
        assert_eq!(normal_path("/srv/../etc"), "/srv/../etc");
    }
}
