//! `drover show RUN`: one run and its events, as text, JSON or Markdown.

use std::fmt::Write as _;

use crate::cli::args::ShowFormat;
use crate::cli::config::{Config, StateSettings};
use crate::cli::{Error, Outcome};
use crate::run::{Event, EventKind, RunRecord};
use crate::state::RunId;

pub fn run(
    settings: &StateSettings,
    run: u64,
    format: ShowFormat,
    config: &Config,
) -> Result<Outcome, Error> {
    if !settings.store().exists()? {
        return Err(Error::Usage {
            message: format!(
                "there is no run {run}: there is no state file at {}",
                settings.path.display()
            ),
            help: super::states_nearby(),
        });
    }
    let Some((mut record, events)) = settings.store().run(RunId(run))? else {
        return Err(Error::Usage {
            message: format!("there is no run {run} in {}", settings.path.display()),
            help: "list runs with `drover history`".to_owned(),
        });
    };
    settings
        .store()
        .as_seen_now(std::slice::from_mut(&mut record));
    let report = settings.store().report(RunId(run))?;
    let text = match format {
        ShowFormat::Json => crate::report::runs::run_json(&record, &events, report.as_ref()),
        ShowFormat::Text if report.is_some() => {
            let mut out = text(&record, &events);
            for instance in report.iter().flat_map(|r| &r.instances) {
                let detail = crate::report::style::printable(
                    instance.error.as_deref().unwrap_or(&instance.summary),
                );
                let _ = writeln!(
                    out,
                    "  {:<40} {:<12} {detail}",
                    instance.id.to_string(),
                    instance.status.as_str()
                );
                for command in &instance.commands {
                    printed(&mut out, &command.stdout, "|");
                    printed(&mut out, &command.stderr, "!");
                }
            }
            out
        }
        ShowFormat::Text => text(&record, &events),
        ShowFormat::Markdown => markdown(&record, &events),
    };
    config.output.stdout(&text);
    Ok(Outcome::Success)
}

/// The most lines of one stream of one command shown in text; `--format json` has them all.
const SHOWN_LINES: usize = 10;

/// What a task's command printed on one stream (`|` stdout, `!` stderr): its last
/// `SHOWN_LINES` lines, without the words a task's own script reports to drover with.
fn printed(out: &mut String, stream: &str, mark: &str) {
    let lines: Vec<&str> = stream
        .lines()
        .filter(|l| !crate::task::is_report_line(l))
        .collect();
    let skipped = lines.len().saturating_sub(SHOWN_LINES);
    if skipped > 0 {
        let _ = writeln!(
            out,
            "      {mark} … {skipped} earlier lines (`--format json` has them all)"
        );
    }
    for line in lines.iter().skip(skipped) {
        let _ = writeln!(
            out,
            "      {mark} {}",
            crate::report::style::printable(line)
        );
    }
}

fn header(record: &RunRecord) -> String {
    let duration = record
        .finished_at
        .map(|f| {
            format!(
                " in {:.1}s",
                super::history::duration_secs(f.0 - record.started_at.0)
            )
        })
        .unwrap_or_default();
    format!(
        "run {} {}{duration}: {} planned, {} changed, {} failed, {} skipped",
        record.id,
        record.status.as_str(),
        record.planned,
        record.changed,
        record.failed,
        record.skipped
    )
}

fn describe(event: &Event) -> String {
    match &event.kind {
        EventKind::RunStarted => "run started".to_owned(),
        EventKind::InstanceStarted { id } => format!("{id} started"),
        EventKind::InstanceFinished {
            id,
            outcome,
            changed,
        } => {
            format!("{id} {outcome}{}", if *changed { ", changed" } else { "" })
        }
        EventKind::InstanceSkipped { id, because } => {
            format!("{id} skipped because {because} did not succeed")
        }
        EventKind::RunFinished { status } => format!("run {}", status.as_str()),
    }
}

fn text(record: &RunRecord, events: &[Event]) -> String {
    let mut out = format!("{}\n", header(record));
    for (key, value) in provenance(record) {
        let _ = writeln!(
            out,
            "  {key:<8} {}",
            crate::report::style::printable(&value)
        );
    }
    for event in events {
        let _ = writeln!(out, "  {}  {}", event.at, describe(event));
    }
    out
}

/// Who started the run, how and from which commit, as `(key, value)` lines; what was not
/// recorded (runs from before it was, manifests outside git) is left out.
fn provenance(record: &RunRecord) -> Vec<(&'static str, String)> {
    let mut lines = vec![(
        "started",
        format!("{} ({})", record.started_at, record.trigger),
    )];
    lines.extend(record.who().map(|who| ("by", who)));
    lines.push(("command", record.command.clone()));
    lines.extend(record.commit.clone().map(|sha| ("commit", sha)));
    lines.extend(
        record
            .commit_author
            .clone()
            .map(|author| ("author", author)),
    );
    lines.extend(
        record
            .commit_subject
            .clone()
            .map(|subject| ("subject", subject)),
    );
    lines.extend(record.dirty.map(|dirty| {
        let dirty = if dirty {
            "yes: the manifest directory had changes not in this commit"
        } else {
            "no"
        };
        ("dirty", dirty.to_owned())
    }));
    lines
}

fn markdown(record: &RunRecord, events: &[Event]) -> String {
    let mut out = format!(
        "**drover {}**\n\n| time | event |\n| --- | --- |\n",
        header(record)
    );
    for event in events {
        let _ = writeln!(
            out,
            "| {} | {} |",
            event.at,
            describe(event).replace('|', "\\|")
        );
    }
    out
}
