//! `drover state list|show|forget|unlock|pull`: look into the state store, edit it by hand,
//! or save a daemon's state as a snapshot.

use std::fmt::Write as _;
use std::io::{BufRead as _, IsTerminal as _};

use serde_json::json;

use crate::cli::args::{Format, StateCommand};
use crate::cli::config::{Config, StateSettings};
use crate::cli::{Error, Outcome};
use crate::instance::InstanceId;
use crate::plan::target::Target;
use crate::state::{Recorded, RecordedAction};
use crate::store::lock::WriterLock;

pub fn run(command: StateCommand, config: &Config) -> Result<Outcome, Error> {
    match command {
        StateCommand::List { dir, format, state } => {
            list(&StateSettings::new(&state, &dir)?, format, config)
        }
        StateCommand::Show {
            instance,
            dir,
            format,
            state,
        } => show(
            &StateSettings::new(&state, &dir)?,
            &instance,
            format,
            config,
        ),
        StateCommand::Forget {
            instances,
            dir,
            yes,
            state,
        } => forget(&StateSettings::new(&state, &dir)?, &instances, yes, config),
        StateCommand::Unlock { dir, state } => unlock(&StateSettings::new(&state, &dir)?, config),
        StateCommand::Pull { from, out } => pull(&from, &out, config),
    }
}

fn list(settings: &StateSettings, format: Format, config: &Config) -> Result<Outcome, Error> {
    let recorded = settings.store().snapshot()?;
    let text = match format {
        Format::Json => {
            let items: Vec<_> = recorded
                .instances
                .iter()
                .map(|(id, r)| {
                    json!({
                        "id": id.to_string(),
                        "outcome": r.outcome,
                        "finishedAt": r.finished_at.to_string(),
                        "durationMs": r.duration_ms,
                        "run": r.run.map(|r| r.0),
                        "specHash": r.spec_hash.to_hex(),
                        "pendingTrigger": recorded.pending_triggers.contains_key(id),
                        "drifted": recorded.drift.contains_key(id),
                    })
                })
                .collect();
            serde_json::to_string_pretty(&json!({"formatVersion": 1, "instances": items}))
                .unwrap_or_default()
                + "\n"
        }
        Format::Human => table(&recorded, settings),
    };
    config.output.stdout(&text);
    Ok(Outcome::Success)
}

fn table(recorded: &Recorded, settings: &StateSettings) -> String {
    if recorded.instances.is_empty() {
        return format!("no instances recorded in {}\n", settings.path.display());
    }
    let width = recorded
        .instances
        .keys()
        .map(|id| id.to_string().len())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut out = format!(
        "{:width$}  {:11}  {:20}  {:12}  {:>4}  NOTES\n",
        "INSTANCE", "OUTCOME", "APPLIED", "HASH", "RUN"
    );
    for (id, r) in &recorded.instances {
        let mut notes = Vec::new();
        if recorded.pending_triggers.contains_key(id) {
            notes.push("trigger pending");
        }
        if recorded.drift.contains_key(id) {
            notes.push("drifted");
        }
        let run = r.run.map(|r| r.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "{:width$}  {:11}  {:20}  {:12}  {run:>4}  {}",
            id.to_string(),
            r.outcome.as_str(),
            r.finished_at.to_string(),
            r.spec_hash.short(),
            notes.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "{} instances in {}",
        recorded.instances.len(),
        settings.path.display()
    );
    out
}

fn show(
    settings: &StateSettings,
    text: &str,
    format: Format,
    config: &Config,
) -> Result<Outcome, Error> {
    let id = InstanceId::parse(text).map_err(|message| Error::Usage {
        message,
        help: "list recorded instances with `drover state list`".to_owned(),
    })?;
    let store = settings.store();
    let recorded = store.snapshot()?;
    let Some(record) = recorded.instances.get(&id) else {
        let near = crate::diagnostic::suggest(
            text,
            recorded
                .instances
                .keys()
                .map(std::string::ToString::to_string)
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str),
        )
        .map(str::to_owned);
        return Err(Error::Usage {
            message: format!("{id} is not recorded in {}", settings.path.display()),
            help: near.map_or_else(
                || "list recorded instances with `drover state list`".to_owned(),
                |n| format!("did you mean `{n}`?"),
            ),
        });
    };
    let detail = store.details([&id])?.remove(&id);
    let out = match format {
        Format::Json => {
            let doc = json!({
                "formatVersion": 1,
                "id": id.to_string(),
                "outcome": record.outcome,
                "finishedAt": record.finished_at.to_string(),
                "durationMs": record.duration_ms,
                "run": record.run.map(|r| r.0),
                "specHash": record.spec_hash.to_hex(),
                "pendingTrigger": recorded.pending_triggers.get(&id),
                "drift": recorded.drift.get(&id),
                "detail": detail,
            });
            serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
        }
        Format::Human => {
            let mut out = format!("{id}\n");
            let _ = writeln!(
                out,
                "  outcome:    {} at {} ({} ms)",
                record.outcome, record.finished_at, record.duration_ms
            );
            if let Some(run) = record.run {
                let _ = writeln!(out, "  run:        {run}");
            }
            let _ = writeln!(out, "  spec hash:  {}", record.spec_hash);
            if let Some(pending) = recorded.pending_triggers.get(&id) {
                let sources: Vec<String> =
                    pending.sources.iter().map(ToString::to_string).collect();
                let _ = writeln!(
                    out,
                    "  trigger:    pending since run {} from {}",
                    pending.since,
                    sources.join(", ")
                );
            }
            if let Some(drift) = recorded.drift.get(&id) {
                let _ = writeln!(
                    out,
                    "  drift:      {} (found {})",
                    drift.summary, drift.found_at
                );
            }
            if let Some(detail) = &detail {
                describe_detail(&mut out, detail);
            }
            out
        }
    };
    config.output.stdout(&out);
    Ok(Outcome::Success)
}

#[expect(
    clippy::too_many_lines,
    reason = "one arm per task kind, each a few lines of output"
)]
fn describe_detail(out: &mut String, detail: &crate::state::InstanceDetail) {
    let _ = writeln!(out, "  connection: {}", detail.connection);
    if let Some(user) = &detail.r#become {
        let _ = writeln!(out, "  become:     {user}");
    }
    match &detail.action {
        RecordedAction::Run {
            command,
            creates,
            unless,
        } => {
            let _ = writeln!(out, "  run:        {command}");
            for (label, value) in [("creates", creates), ("unless", unless)] {
                if let Some(value) = value {
                    let _ = writeln!(out, "  {label}:    {value}");
                }
            }
        }
        RecordedAction::File {
            path,
            content,
            content_hash,
            mode,
            owner,
            group,
        } => {
            let _ = writeln!(
                out,
                "  file:       {path} ({} bytes, blake3 {})",
                content.size,
                content_hash.get(..12).unwrap_or_default()
            );
            for (label, value) in [
                ("mode", mode.map(|m| m.to_string())),
                ("owner", owner.clone()),
                ("group", group.clone()),
            ] {
                if let Some(value) = value {
                    let _ = writeln!(out, "  {label:<10}  {value}");
                }
            }
        }
        RecordedAction::Directory {
            path,
            mode,
            owner,
            group,
            state,
            recursive,
        } => {
            let _ = writeln!(out, "  directory:  {path} ({state:?})");
            for (label, value) in [
                ("mode", mode.map(|m| m.to_string())),
                ("owner", owner.clone()),
                ("group", group.clone()),
                ("recursive", recursive.then(|| "yes".to_owned())),
            ] {
                if let Some(value) = value {
                    let _ = writeln!(out, "  {label:<10}  {value}");
                }
            }
        }
        RecordedAction::Link {
            path,
            target,
            state,
            force,
        } => {
            let target = target
                .as_deref()
                .map(|t| format!(" → {t}"))
                .unwrap_or_default();
            let force = if *force { ", force" } else { "" };
            let _ = writeln!(out, "  link:       {path}{target} ({state:?}{force})");
        }
        RecordedAction::Line {
            path,
            line,
            r#match,
            state,
            create,
        } => {
            let _ = writeln!(out, "  line:       {path} ({state:?})");
            for (label, value) in [
                ("line", line.clone()),
                ("match", r#match.clone()),
                ("create", create.then(|| "yes".to_owned())),
            ] {
                if let Some(value) = value {
                    let _ = writeln!(out, "  {label:<10}  {value}");
                }
            }
        }
        RecordedAction::Block {
            path,
            marker,
            content,
            content_hash,
            state,
            create,
        } => {
            let create = if *create { ", create" } else { "" };
            let _ = writeln!(
                out,
                "  block:      {path} ({marker}; {state:?}{create}; {} bytes, blake3 {})",
                content.size,
                content_hash.get(..12).unwrap_or_default()
            );
        }
        RecordedAction::Package { names, state } => {
            let _ = writeln!(out, "  package:    {} ({state:?})", names.join(", "));
        }
        RecordedAction::Service {
            name,
            state,
            enabled,
            ..
        } => {
            let _ = writeln!(
                out,
                "  service:    {name} (state {state:?}, enabled {enabled:?})"
            );
        }
        RecordedAction::Sysctl {
            name,
            value,
            state,
            file,
        } => {
            let value = value
                .as_deref()
                .map(|v| format!(" = {v}"))
                .unwrap_or_default();
            let _ = writeln!(out, "  sysctl:     {name}{value} ({state:?})");
            let _ = writeln!(out, "  file        {file}");
        }
        RecordedAction::Cron {
            name,
            schedule,
            command,
            user,
            state,
            path,
        } => {
            let _ = writeln!(out, "  cron:       {name} ({state:?})");
            if let (Some(schedule), Some(command)) = (schedule, command) {
                let _ = writeln!(out, "  entry       {schedule} {user} {command}");
            }
            let _ = writeln!(out, "  file        {path}");
        }
        RecordedAction::User(user) => {
            let _ = writeln!(out, "  user:       {}", user.describe());
        }
        RecordedAction::Group(group) => {
            let _ = writeln!(out, "  group:      {}", group.describe());
        }
        RecordedAction::Archive {
            source,
            dest,
            format,
            sha256,
            marker,
            state,
        } => {
            match state {
                crate::model::task_kind::PathState::Present => {
                    let _ = writeln!(out, "  archive:    {source} ({}) → {dest}", format.name());
                    let _ = writeln!(out, "  sha256      {sha256}");
                }
                crate::model::task_kind::PathState::Absent => {
                    let _ = writeln!(out, "  archive:    what was unpacked in {dest} (absent)");
                }
            }
            let _ = writeln!(out, "  marker      {marker}");
        }
    }
    if let Some(undo) = &detail.undo {
        let _ = writeln!(
            out,
            "  undo:       {undo}{}",
            if detail.undo_masked {
                " (uses a secret: masked, cannot run)"
            } else {
                ""
            }
        );
    }
}

fn forget(
    settings: &StateSettings,
    patterns: &[String],
    yes: bool,
    config: &Config,
) -> Result<Outcome, Error> {
    let targets: Vec<Target> = patterns
        .iter()
        .map(|p| {
            if p.contains('*') || p.contains('?') || p.contains('=') {
                Target::parse(p)
            } else {
                InstanceId::parse(p).map(|id| Target::Instance(id.to_string()))
            }
        })
        .collect::<Result<_, _>>()
        .map_err(|message| Error::Usage {
            message,
            help: "name instances as host/workflow/task; globs like 'web-*/nginx/*' work too"
                .to_owned(),
        })?;
    let _lock = settings.lock(config, "drover state forget")?;
    let store = settings.store();
    let recorded = store.snapshot()?;
    let chosen: Vec<InstanceId> = recorded
        .instances
        .keys()
        .filter(|id| targets.iter().any(|t| t.matches(id)))
        .cloned()
        .collect();
    if chosen.is_empty() {
        return Err(Error::Usage {
            message: format!("nothing recorded matches {}", patterns.join(", ")),
            help: "list recorded instances with `drover state list`".to_owned(),
        });
    }
    let list = chosen.iter().fold(String::new(), |mut out, id| {
        let _ = writeln!(out, "  {id}");
        out
    });
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Error::Usage {
                message: format!(
                    "refusing to forget {} without confirmation",
                    match chosen.len() {
                        1 => "1 instance".to_owned(),
                        n => format!("{n} instances"),
                    }
                ),
                help: "pass --yes to confirm from a script".to_owned(),
            });
        }
        config.output.stderr(&format!(
            "{list}Forget these {} instances? drover will treat them as never applied. [y/N] ",
            chosen.len()
        ));
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            config.output.stderr("nothing forgotten\n");
            return Ok(Outcome::Success);
        }
    }
    let forgotten = store.forget(&chosen)?;
    config
        .output
        .stdout(&format!("forgot {} instances\n", forgotten.len()));
    Ok(Outcome::Success)
}

fn unlock(settings: &StateSettings, config: &Config) -> Result<Outcome, Error> {
    if let Some(holder) = WriterLock::holder(&settings.path) {
        return Err(Error::Usage {
            message: format!("the state lock is held by {holder}, which is still running"),
            help: format!(
                "stop that process (pid {}) first; its lock is released when it exits",
                holder.pid
            ),
        });
    }
    match WriterLock::clear(&settings.path)? {
        Some(previous) => config
            .output
            .stdout(&format!("removed the lock left by {previous}\n")),
        None => config.output.stdout("the state is not locked\n"),
    }
    Ok(Outcome::Success)
}

/// `state pull`: a daemon's state snapshot (or a snapshot file, checked) written to `out`,
/// 0600 and whole or not at all.
fn pull(from: &str, out: &std::path::Path, config: &Config) -> Result<Outcome, Error> {
    let source = crate::cli::state_from::Source::parse(from);
    let token = crate::cli::config::api_token();
    let (snapshot, from) = crate::cli::state_from::fetch(&source, token.as_deref())?;
    let text = snapshot.to_json();
    if out == std::path::Path::new("-") {
        config.output.stdout(&text);
        return Ok(Outcome::Success);
    }
    let write_error = |source| Error::Write {
        path: out.to_owned(),
        source,
    };
    // A fresh temporary name beside it, created exclusively (never through a link or an
    // existing file), then renamed over it: whole or not at all, and 0600.
    let name = out
        .file_name()
        .map_or_else(|| "state".to_owned(), |n| n.to_string_lossy().into_owned());
    let temp = out.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, out)
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(write_error(error));
    }
    config.output.stderr(&format!(
        "saved the state {from} served ({} instances, as of {}) to {}\n",
        snapshot.instances.len(),
        snapshot.taken_at,
        out.display()
    ));
    Ok(Outcome::Success)
}
