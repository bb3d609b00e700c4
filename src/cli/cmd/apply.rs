//! `drover apply [DIR | PLANFILE]`: plan (or read a saved plan), confirm, apply, report.
//! A thin adapter over `reconcile`: parse, call, render, exit code.
#![allow(
    clippy::disallowed_methods,
    reason = "reads stdin for the confirmation and checks whether the source is a file"
)]

use std::fmt::Write as _;
use std::io::{BufRead as _, IsTerminal as _};
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use crate::apply::ConsoleEvent;
use crate::cli::args::StateArgs;
use crate::cli::config::{Config, StateSettings};
use crate::cli::{Error, Outcome};
use crate::load::Limits;
use crate::plan::PlanOptions;
use crate::plan::saved::SavedPlan;
use crate::reconcile::{self, RunLabel, Session, Source};
use crate::report::apply::{ApplyReport, InstanceStatus, summary};
use crate::report::plan as render;
use crate::run::RunStatus;

use super::plan::parse_targets;

/// Everything `apply` was asked.
#[derive(Debug)]
pub struct Request<'a> {
    pub source: &'a Path,
    pub auto_approve: bool,
    pub parallelism: usize,
    pub per_host: usize,
    pub fail_fast: bool,
    pub report: Option<&'a Path>,
    pub ssh: reconcile::SshDefaults,
    pub choose: Choose<'a>,
    pub state: StateArgs,
    pub limits: Limits,
}

/// A saved plan is applied exactly as saved: flags that would change it are refused.
fn refuse_choices(choose: &Choose<'_>) -> Result<(), Error> {
    if choose.targets.is_empty() && choose.replace.is_empty() && !choose.force && !choose.refresh {
        return Ok(());
    }
    Err(Error::Usage {
        message: "a saved plan is applied exactly as it was saved; --target, --replace, --force and --refresh do not apply to it".to_owned(),
        help: "pass them to `drover plan -o FILE` instead, or apply the manifest directory"
            .to_owned(),
    })
}

/// Which instances to apply, beyond what changed.
#[derive(Debug)]
pub struct Choose<'a> {
    pub targets: &'a [String],
    pub replace: &'a [String],
    pub force: bool,
    /// Probe for drift first and repair it.
    pub refresh: bool,
}

pub fn run(request: &Request<'_>, config: &Config) -> Result<Outcome, Error> {
    let saved = read_saved_plan(request.source)?;
    let choose = &request.choose;
    saved.as_ref().map_or(Ok(()), |_| refuse_choices(choose))?;
    let dir: PathBuf = saved.as_ref().map_or_else(
        || request.source.to_owned(),
        |s| PathBuf::from(&s.manifests),
    );
    let settings = StateSettings::new(&request.state, &dir)?;
    let options = PlanOptions {
        targets: parse_targets(choose.targets)?,
        replace: parse_targets(choose.replace)?,
        force: choose.force,
        repair: crate::plan::RepairDrift::WarnAndFix,
    };
    let Some(evaluation) = super::evaluate_valid(&dir, &request.limits, "nothing applied", config)?
    else {
        return Ok(Outcome::Invalid);
    };
    let mut session = Session::new(reconcile::Settings {
        state: settings.path.clone(),
        lock_timeout: settings.lock_timeout,
        ssh: request.ssh.clone(),
        parallelism: request.parallelism,
        per_host: request.per_host,
        fail_fast: request.fail_fast,
    })?;
    let _lock = super::lock(&session, &config.command_line, config)?;
    let source = match &saved {
        Some(saved) => Source::Saved(saved),
        None => Source::Fresh(&options),
    };
    let round = super::plan_round(
        &mut session,
        &dir,
        evaluation,
        source,
        (request.choose.refresh, true),
        config,
    )?;
    warn_stale(&round, saved.is_some(), request.source, config)?;
    config
        .output
        .stdout(&render::text(&round.view(), config.stdout_style));
    if round.plan.is_empty() {
        // Nothing to do, and nothing was contacted: no run is recorded, but a requested
        // report still says so (run 0, zero contacts).
        if let Some(path) = request.report {
            write_report(path, &empty_report(&round))?;
        }
        return Ok(Outcome::Success);
    }
    if saved.is_none() && !confirmed(request.auto_approve, config)? {
        config
            .output
            .stdout("Apply cancelled; nothing was changed.\n");
        return Ok(Outcome::Success);
    }
    let (tx, rx) = mpsc::channel(1024);
    let printer = session.spawn(print_console(rx, config.clone(), round.plan.changes.len()));
    let label = label(
        &session,
        &dir,
        &settings,
        saved.is_some().then_some(request.source),
        config,
    );
    let applied = session.apply_round(&round, label, tx);
    session.wait(printer);
    session.close();
    let report = match applied {
        Ok(report) => report,
        Err(error) => {
            // A run that ended but was not saved or not recorded: show what ran, then why.
            if let reconcile::Error::Apply(apply_error) = &error
                && let Some(report) = apply_error.ended_report()
            {
                config.output.stdout(&summary(report, config.stdout_style));
            }
            return Err(error.into());
        }
    };
    config.output.stdout(&summary(&report, config.stdout_style));
    config.output.stdout(&format!(
        "Run {} recorded; `drover show {} --dir {}` for details.\n",
        report.run,
        report.run,
        dir.display()
    ));
    if let Some(path) = request.report {
        write_report(path, &report)?;
    }
    Ok(if report.status == RunStatus::Succeeded {
        Outcome::Success
    } else {
        Outcome::Invalid
    })
}

/// How the run is recorded: the command line, who ran it where, and the commit the manifests
/// are at when they are in a git work tree (drover's own files there do not make it dirty).
/// Warns of each stale instance of a saved plan; refuses a saved plan of which nothing can
/// run, before anything is shown as planned or recorded.
fn warn_stale(
    round: &reconcile::Round,
    saved: bool,
    source: &Path,
    config: &Config,
) -> Result<(), Error> {
    for stale in &round.stale {
        config.output.stderr(&format!(
            "{}: {} is stale: {}; it will not be applied\n",
            config.stderr_style.warning("warning"),
            stale.id,
            stale.why
        ));
    }
    if saved && !round.plan.is_empty() && round.stale.len() == round.plan.changes.len() {
        return Err(Error::Usage {
            message: format!(
                "nothing in the saved plan {} can be applied: every change in it is stale",
                source.display()
            ),
            help: "make a new plan (`drover plan -o FILE`), review it, and apply that".to_owned(),
        });
    }
    Ok(())
}

fn label(
    session: &Session,
    dir: &Path,
    settings: &StateSettings,
    saved_plan: Option<&Path>,
    config: &Config,
) -> RunLabel {
    let mut own = vec![settings.path.clone()];
    own.extend(saved_plan.map(Path::to_path_buf));
    let stop = tokio_util::sync::CancellationToken::new();
    RunLabel {
        trigger: "cli".to_owned(),
        command: config.command_line.clone(),
        user: Some(crate::provenance::user()),
        host: Some(crate::provenance::host()),
        commit: session.block_on(crate::provenance::work_tree(dir, &own, &stop)),
    }
}

fn write_report(path: &Path, report: &ApplyReport) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(report).map_err(|e| Error::Write {
        path: path.to_owned(),
        source: std::io::Error::other(e),
    })? + "\n";
    std::fs::write(path, text).map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })
}

fn empty_report(round: &reconcile::Round) -> ApplyReport {
    let now = crate::clock::now();
    ApplyReport {
        format_version: crate::report::apply::FORMAT_VERSION,
        run: crate::state::RunId(0),
        status: RunStatus::Succeeded,
        trigger: "cli".to_owned(),
        commit: None,
        manifest_digest: round.digest(),
        started_at: now,
        finished_at: now,
        duration_ms: 0,
        instances: Vec::new(),
        contacts: crate::report::apply::Contacts::default(),
    }
}

/// A saved plan when `source` is a file, `None` when it is a directory.
fn read_saved_plan(source: &Path) -> Result<Option<SavedPlan>, Error> {
    if !source.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(source).map_err(|e| Error::Usage {
        message: format!(
            "cannot read the saved plan {}: {}",
            source.display(),
            crate::manifest_dir::describe_io(&e)
        ),
        help: "give a manifest directory, or a file written by `drover plan -o`".to_owned(),
    })?;
    let saved: SavedPlan = serde_json::from_str(&text).map_err(|e| Error::Usage {
        message: format!("{} is not a saved plan: {e}", source.display()),
        help: "give a manifest directory, or a file written by `drover plan -o`".to_owned(),
    })?;
    if saved.format_version != crate::plan::saved::FORMAT_VERSION {
        return Err(Error::Usage {
            message: format!(
                "{} was saved in plan format {}, this drover reads format {}",
                source.display(),
                saved.format_version,
                crate::plan::saved::FORMAT_VERSION
            ),
            help: "run `drover plan -o` again with this drover".to_owned(),
        });
    }
    Ok(Some(saved))
}

/// Asks on a terminal; refuses without one unless `--auto-approve`.
fn confirmed(auto_approve: bool, config: &Config) -> Result<bool, Error> {
    if auto_approve {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage {
            message: "refusing to apply without confirmation: stdin is not a terminal".to_owned(),
            help: "review the plan above and pass --auto-approve, or apply a saved plan (`drover plan -o FILE`, then `drover apply FILE`)".to_owned(),
        });
    }
    config
        .output
        .stdout("\nApply these changes? Only 'yes' will be accepted: ");
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    Ok(answer.trim() == "yes")
}

/// Prints live output (prefixed by instance id) and each instance's end; on a terminal, a
/// progress bar below them says how far the apply is and what runs on which host.
async fn print_console(mut rx: mpsc::Receiver<ConsoleEvent>, config: Config, total: usize) {
    let style = config.stdout_style;
    let bar = config.output.progress(total, true);
    let mut progress = crate::report::apply::Progress::default();
    while let Some(event) = rx.recv().await {
        let mut line = String::new();
        match event {
            ConsoleEvent::Started { id } => {
                progress.started(&id);
                let _ = writeln!(line, "{} {id}", style.gutter("→"));
            }
            // What a task's own script says it did is in its summary when it ends.
            ConsoleEvent::Output { line: text, .. } if crate::task::is_report_line(&text) => {}
            ConsoleEvent::Output { id, line: text, .. } => {
                let text = crate::report::style::printable(&text);
                let _ = writeln!(line, "  {} {text}", style.gutter(&format!("{id} |")));
            }
            ConsoleEvent::Retrying { id, attempt, delay } => {
                let _ = writeln!(
                    line,
                    "{} {id}: attempt {attempt} in {delay:.1?}",
                    style.warning("↻")
                );
            }
            ConsoleEvent::Ended {
                id,
                status,
                summary,
            } => {
                progress.ended(&id, status);
                let mark = match status {
                    InstanceStatus::Changed | InstanceStatus::Removed => style.success("✓"),
                    InstanceStatus::Unchanged | InstanceStatus::NotTriggered => style.gutter("="),
                    InstanceStatus::Skipped | InstanceStatus::Cancelled => style.warning("-"),
                    InstanceStatus::Failed | InstanceStatus::TimedOut | InstanceStatus::Stale => {
                        style.error("✗")
                    }
                };
                let summary = crate::report::style::printable(&summary);
                let _ = writeln!(line, "{mark} {id} {}: {summary}", status.as_str());
            }
            ConsoleEvent::Draining { running } => {
                let tasks = if running == 1 { "task" } else { "tasks" };
                let _ = writeln!(line, "waiting for {running} running {tasks}");
            }
            ConsoleEvent::Stopping { by_term: false } => {
                bar.note("\nStopping: no new tasks will start; running ones finish and are recorded. Press Ctrl-C again to kill them.\n");
            }
            ConsoleEvent::Stopping { by_term: true } => {
                bar.note(&format!(
                    "\nStopping (SIGTERM): no new tasks will start; running ones get {}s to finish, then are killed.\n",
                    crate::reconcile::signals::DRAIN_DEADLINE.as_secs()
                ));
            }
            ConsoleEvent::Killing => {
                bar.note("\nKilling running tasks.\n");
            }
        }
        bar.line(&line);
        bar.set(progress.done, progress.message());
    }
    bar.finish();
}
