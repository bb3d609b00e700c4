//! `drover apply [DIR | PLANFILE]`: plan (or read a saved plan), confirm, apply, report.
#![allow(
    clippy::disallowed_methods,
    reason = "reads stdin for the confirmation and checks whether the source is a file"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{BufRead as _, IsTerminal as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::apply::{self, ApplyOptions, ConsoleEvent, HostTransport, Shutdown};
use crate::cli::args::StateArgs;
use crate::cli::config::{Config, StateSettings};
use crate::cli::{Error, Outcome};
use crate::evaluate::Evaluation;
use crate::hash::SpecHash;
use crate::instance::InstanceId;
use crate::load::Limits;
use crate::model::desired::Desired;
use crate::model::host::Transport as HostKind;
use crate::model::meta::HostName;
use crate::plan::saved::{SavedPlan, stale};
use crate::plan::{Plan, PlanOptions, plan};
use crate::report::apply::{ApplyReport, InstanceStatus, summary};
use crate::report::plan::{self as render, PlanView};
use crate::run::RunStatus;
use crate::schedule::{Limits as ScheduleLimits, RolloutSlot, rollout_batches};
use crate::transport::local::LocalTransport;
use crate::transport::ssh::{SshTarget, SshTransport};

use super::plan::{desired_details, note_undo, parse_targets, unmatched};

/// Everything `apply` was asked.
#[derive(Debug)]
pub struct Request<'a> {
    pub source: &'a Path,
    pub auto_approve: bool,
    pub parallelism: usize,
    pub per_host: usize,
    pub fail_fast: bool,
    pub report: Option<&'a Path>,
    pub ssh: crate::cli::config::SshDefaults,
    pub targets: &'a [String],
    pub replace: &'a [String],
    pub force: bool,
    pub state: StateArgs,
    pub limits: Limits,
}

pub fn run(request: &Request<'_>, config: &Config) -> Result<Outcome, Error> {
    let saved = read_saved_plan(request.source)?;
    let dir: PathBuf = saved.as_ref().map_or_else(
        || request.source.to_owned(),
        |s| PathBuf::from(&s.manifests),
    );
    let settings = StateSettings::new(&request.state, &dir)?;
    let options = PlanOptions {
        targets: parse_targets(request.targets)?,
        replace: parse_targets(request.replace)?,
        force: request.force,
    };
    let Some(evaluation) = super::evaluate_valid(&dir, &request.limits, "nothing applied", config)?
    else {
        return Ok(Outcome::Invalid);
    };
    let (Some(resolved), Some(desired)) =
        (evaluation.resolved.as_ref(), evaluation.desired.as_ref())
    else {
        return Ok(Outcome::Invalid);
    };
    let _lock = settings.lock(
        config,
        &format!("drover apply {}", request.source.display()),
    )?;
    let store = settings.store();
    let (mut plan, stale_ids) = what_to_apply(
        saved.as_ref(),
        resolved,
        &store.snapshot()?,
        &options,
        config,
    );
    if !plan.unmatched.is_empty() {
        return Err(unmatched(&plan.unmatched));
    }
    let recorded_details = store.details(plan.changes.iter().map(|c| &c.id))?;
    note_undo(&mut plan, &recorded_details);
    if saved.is_none() {
        crate::plan::order_removals(&mut plan, &recorded_details);
    }
    let desired_view = desired_details(&plan, resolved);
    let view = PlanView {
        plan: &plan,
        desired: &desired_view,
        recorded: &recorded_details,
        redactor: &resolved.redactor,
    };
    config
        .output
        .stdout(&render::text(&view, config.stdout_style));
    if plan.is_empty() {
        // Nothing to do, and nothing was contacted: no run is recorded, but a requested
        // report still says so (run 0, zero contacts).
        if let Some(path) = request.report {
            write_report(path, &empty_report(&evaluation))?;
        }
        return Ok(Outcome::Success);
    }
    if saved.is_none() && !confirmed(request.auto_approve, config)? {
        config
            .output
            .stdout("Apply cancelled; nothing was changed.\n");
        return Ok(Outcome::Success);
    }
    let hosts = transports(desired, &request.ssh, &dir, request.per_host);
    let apply_request = apply::Request {
        plan: &plan,
        resolved,
        recorded: &recorded_details,
        stale: &stale_ids,
        rollout: rollout_slots(desired, &plan),
        hosts: &hosts,
        options: ApplyOptions {
            limits: ScheduleLimits {
                parallelism: request.parallelism.max(1),
                per_host: request.per_host.max(1),
            },
            fail_fast: request.fail_fast,
            trigger: "cli".to_owned(),
            command: format!("drover apply {}", request.source.display()),
            commit: None,
            manifest_digest: digest(&evaluation),
        },
    };
    let report = execute(apply_request, &store, config)?;
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

fn write_report(path: &Path, report: &ApplyReport) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(report).unwrap_or_default() + "\n";
    std::fs::write(path, text).map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })
}

fn empty_report(evaluation: &Evaluation) -> ApplyReport {
    let now = crate::clock::now();
    ApplyReport {
        format_version: crate::report::apply::FORMAT_VERSION,
        run: crate::state::RunId(0),
        status: RunStatus::Succeeded,
        trigger: "cli".to_owned(),
        commit: None,
        manifest_digest: digest(evaluation),
        started_at: now,
        finished_at: now,
        duration_ms: 0,
        instances: Vec::new(),
        contacts: crate::report::apply::Contacts::default(),
    }
}

/// The plan to apply: a fresh one, or a saved one with its stale instances named.
fn what_to_apply(
    saved: Option<&SavedPlan>,
    resolved: &crate::resolve::Resolved,
    recorded: &crate::state::Recorded,
    options: &PlanOptions,
    config: &Config,
) -> (Plan, BTreeSet<InstanceId>) {
    let Some(saved) = saved else {
        return (
            plan(&resolved.instances, recorded, options),
            BTreeSet::new(),
        );
    };
    let refused = stale(&saved.plan, &resolved.instances, recorded);
    for s in &refused {
        config.output.stderr(&format!(
            "{}: {} is stale: {}; it will not be applied\n",
            config.stderr_style.warning("warning"),
            s.id,
            s.why
        ));
    }
    (
        saved.plan.clone(),
        refused.into_iter().map(|s| s.id).collect(),
    )
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

/// How each host is reached in this run. SSH connections open lazily, on first use.
fn transports(
    desired: &Desired,
    ssh: &crate::cli::config::SshDefaults,
    manifests: &Path,
    per_host: usize,
) -> BTreeMap<HostName, HostTransport> {
    let local = LocalTransport::new();
    desired
        .hosts
        .values()
        .map(|host| {
            let transport = match host.spec.transport {
                HostKind::Local => HostTransport::Local(Arc::clone(&local)),
                HostKind::Ssh => HostTransport::Ssh(SshTransport::new(ssh_target(
                    host, ssh, manifests, per_host,
                ))),
            };
            (host.name.clone(), transport)
        })
        .collect()
}

/// Where an SSH host is, from its manifest and `~/.ssh/config`; manifest fields win, as
/// command-line options win over the config for `ssh`.
fn ssh_target(
    host: &crate::model::desired::Host,
    ssh: &crate::cli::config::SshDefaults,
    manifests: &Path,
    per_host: usize,
) -> SshTarget {
    let alias = host
        .spec
        .address
        .clone()
        .unwrap_or_else(|| host.name.to_string());
    let settings = ssh.config.resolve(&alias);
    let known_hosts = host
        .spec
        .known_hosts_file
        .clone()
        .or_else(|| settings.user_known_hosts_file.clone())
        .unwrap_or_else(|| "~/.ssh/known_hosts".to_owned());
    let identity = host
        .spec
        .identity_file
        .clone()
        .or_else(|| settings.identity_files.first().cloned());
    let jump = settings
        .proxy_jump
        .as_deref()
        .and_then(crate::transport::ssh::config::Jump::parse)
        .map(|jump| {
            let hop = ssh.config.resolve(&jump.host);
            Box::new(SshTarget {
                host: jump.host.clone(),
                address: hop.host_name.clone().unwrap_or_else(|| jump.host.clone()),
                port: jump.port.or(hop.port).unwrap_or(22),
                user: jump
                    .user
                    .clone()
                    .or(hop.user.clone())
                    .unwrap_or_else(|| ssh.user.clone()),
                // Without a key of its own, the jump uses the target's, as is usual for bastions.
                identity: hop
                    .identity_files
                    .first()
                    .or(identity.as_ref())
                    .map(|p| ssh.path(p, manifests)),
                known_hosts: ssh.path(
                    hop.user_known_hosts_file.as_deref().unwrap_or(&known_hosts),
                    manifests,
                ),
                accept_new: ssh.accept_new,
                connect_timeout: hop
                    .connect_timeout
                    .unwrap_or(std::time::Duration::from_secs(10)),
                max_channels: 2,
                keepalive: hop
                    .server_alive_interval
                    .unwrap_or(std::time::Duration::from_secs(15)),
                jump: None,
            })
        });
    SshTarget {
        host: host.name.to_string(),
        address: settings.host_name.clone().unwrap_or(alias),
        port: host.spec.port.or(settings.port).unwrap_or(22),
        user: host
            .spec
            .user
            .clone()
            .or(settings.user.clone())
            .unwrap_or_else(|| ssh.user.clone()),
        identity: identity.as_deref().map(|p| ssh.path(p, manifests)),
        known_hosts: ssh.path(&known_hosts, manifests),
        accept_new: ssh.accept_new,
        connect_timeout: settings
            .connect_timeout
            .unwrap_or(std::time::Duration::from_secs(10)),
        // OpenSSH allows 10 sessions per connection; stay under it.
        max_channels: per_host.clamp(1, 8),
        keepalive: settings
            .server_alive_interval
            .unwrap_or(std::time::Duration::from_secs(15)),
        jump,
    }
}

/// Rollout batch of each planned instance whose workflow has a `rollout`.
fn rollout_slots(desired: &Desired, plan: &Plan) -> BTreeMap<InstanceId, RolloutSlot> {
    let mut slots = BTreeMap::new();
    for workflow in desired.workflows.values() {
        let Some(rollout) = &workflow.rollout else {
            continue;
        };
        let hosts: Vec<HostName> = desired
            .selected_hosts(workflow)
            .map(|h| h.name.clone())
            .collect();
        let batches = rollout_batches(&hosts, &rollout.batch);
        let batch_of: BTreeMap<&HostName, usize> = batches
            .iter()
            .enumerate()
            .flat_map(|(i, b)| b.iter().map(move |h| (h, i)))
            .collect();
        for change in plan
            .changes
            .iter()
            .filter(|c| c.id.workflow == workflow.name)
        {
            if let Some(&batch) = batch_of.get(&change.id.host) {
                slots.insert(
                    change.id.clone(),
                    RolloutSlot {
                        workflow: workflow.name.clone(),
                        batch,
                        max_failures: rollout.max_failures,
                    },
                );
            }
        }
    }
    slots
}

/// A digest of the resolved desired state: the spec hashes of every instance.
fn digest(evaluation: &Evaluation) -> String {
    let hashes: Vec<(String, String)> = evaluation
        .resolved
        .iter()
        .flat_map(|r| {
            r.instances
                .iter()
                .map(|i| (i.id.to_string(), i.spec_hash.to_hex()))
        })
        .collect();
    SpecHash::of(&hashes).short()
}

/// Runs the apply on a runtime, with signal handling and the live console.
fn execute(
    request: apply::Request<'_>,
    store: &crate::store::Store,
    config: &Config,
) -> Result<ApplyReport, Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Runtime { source })?;
    runtime.block_on(async {
        let shutdown = Shutdown::default();
        let signals = tokio::spawn(watch_signals(shutdown.clone(), config.clone()));
        let (tx, rx) = mpsc::channel(1024);
        let printer = tokio::spawn(print_console(rx, config.clone()));
        let result = apply::apply(request, store, &shutdown, tx).await;
        let _ = printer.await;
        signals.abort();
        result.map_err(Error::Apply)
    })
}

/// First Ctrl-C or SIGTERM: stop launching. Second: kill what runs.
async fn watch_signals(shutdown: Shutdown, config: Config) {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return;
    };
    for stage in 0..2 {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        if stage == 0 {
            config.output.stderr("\nStopping: no new tasks will start; running ones finish and are recorded. Press Ctrl-C again to kill them.\n");
            shutdown.graceful.cancel();
        } else {
            config.output.stderr("\nKilling running tasks.\n");
            shutdown.force.cancel();
        }
    }
}

/// Prints live output (prefixed by instance id) and each instance's end.
async fn print_console(mut rx: mpsc::Receiver<ConsoleEvent>, config: Config) {
    let style = config.stdout_style;
    while let Some(event) = rx.recv().await {
        let mut line = String::new();
        match event {
            ConsoleEvent::Started { id } => {
                let _ = writeln!(line, "{} {id}", style.gutter("→"));
            }
            ConsoleEvent::Output { id, line: text, .. } => {
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
                let mark = match status {
                    InstanceStatus::Changed | InstanceStatus::Removed => style.success("✓"),
                    InstanceStatus::Unchanged | InstanceStatus::NotTriggered => style.gutter("="),
                    InstanceStatus::Skipped | InstanceStatus::Cancelled => style.warning("-"),
                    _ => style.error("✗"),
                };
                let _ = writeln!(line, "{mark} {id} {}: {summary}", status.as_str());
            }
            ConsoleEvent::Draining { running } => {
                let _ = writeln!(line, "waiting for {running} running tasks");
            }
        }
        config.output.stdout(&line);
    }
}
