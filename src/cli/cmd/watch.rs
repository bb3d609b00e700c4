//! `drover watch [DIR]`: the daemon. Logs what it does (at info level by default; `-q`-free:
//! a daemon's log is its output), tells systemd when it is ready (`Type=notify`), and exits
//! 0 after draining on SIGTERM/SIGINT.

use std::time::Duration;

use crate::cli::args::WatchArgs;
use crate::cli::config::{Config, StateSettings};
use crate::cli::{Error, Outcome};
use crate::model::duration::HumanDuration;
use crate::reconcile::{self, Session};
use crate::watch::{self, Event};

pub fn run(request: &WatchArgs, config: &Config) -> Result<Outcome, Error> {
    // In git mode DIR is inside the repository: the state (and the checkout beside it)
    // default to `.drover/` in the current directory.
    let state_base = match request.git {
        Some(_) => std::path::Path::new("."),
        None => request.dir.as_path(),
    };
    let state = StateSettings::new(&request.state, state_base)?;
    let git = match &request.git {
        Some(url) => Some(watch::git::GitSource {
            url: url.clone(),
            branch: request.branch.clone(),
            poll: duration("--poll", &request.poll)?.unwrap_or(Duration::from_secs(60)),
            // Absolute: git runs in the checkout, and in its parent for the first clone.
            checkout: std::path::absolute(state.path.parent().unwrap_or(std::path::Path::new(".")))
                .map_err(|source| Error::Write {
                    path: state.path.clone(),
                    source,
                })?
                .join("checkout"),
        }),
        None => None,
    };
    let dir = match &git {
        Some(git) => git.checkout.join(&request.dir),
        None => request.dir.clone(),
    };
    let settings = watch::Settings {
        dir,
        limits: (&request.limits).into(),
        debounce: duration("--debounce", &request.debounce)?.unwrap_or(Duration::ZERO),
        drift_interval: duration("--drift-interval", &request.drift_interval)?,
        command: config.command_line.clone(),
        user: crate::provenance::user(),
        host: crate::provenance::host(),
        listen: request.listen,
        state: state.path.clone(),
        git,
        webhook_secret: crate::cli::config::webhook_secret(),
        api_token: crate::cli::config::api_token(),
    };
    let ssh = crate::cli::config::ssh_defaults(false)?;
    // The daemon reads the SSH config once, for its whole life: one it cannot read would
    // leave every SSH host unreachable until a restart, so it does not start.
    if let Some(why) = &ssh.config_error {
        return Err(Error::Usage {
            message: why.clone(),
            help: "the daemon reads your SSH config once, at start: fix it, then start it again"
                .to_owned(),
        });
    }
    let mut session = Session::new(reconcile::Settings {
        state: state.path.clone(),
        lock_timeout: state.lock_timeout,
        ssh,
        parallelism: request.parallelism as usize,
        per_host: request.per_host as usize,
        fail_fast: false,
    })?;
    // The daemon owns the state for its life: an `apply` elsewhere waits, then says who.
    let _lock = super::lock(&session, &settings.command, config)?;
    let state_dir = state.path.parent().map(std::path::Path::to_path_buf);
    // systemd's watchdog (WatchdogSec=): pinged at half the interval while the runtime runs.
    if let Some(interval) = sd_notify::watchdog_enabled() {
        drop(session.spawn(async move {
            loop {
                tokio::time::sleep(interval / 2).await;
                notify(&[Notice::Watchdog]);
            }
        }));
    }
    watch::run(&mut session, &settings, state_dir, &mut log).map_err(|e| {
        let help = match e {
            watch::StartError::Wake(_) => "check that the directory exists and is readable; inotify limits are raised with `sysctl fs.inotify.max_user_watches`",
            watch::StartError::Listen(_) => "pick a free port, or another address for --listen",
        };
        Error::Usage {
            message: crate::transport::error_chain(&e),
            help: help.to_owned(),
        }
    })?;
    session.close();
    Ok(Outcome::Success)
}

/// `0` turns the setting off.
fn duration(flag: &str, text: &str) -> Result<Option<Duration>, Error> {
    if text == "0" {
        return Ok(None);
    }
    HumanDuration::parse(text)
        .map(|d| Some(d.as_duration()))
        .map_err(|message| Error::Usage {
            message: format!("{flag}: {message}"),
            help: format!("for example {flag} 5m, or {flag} 0 to turn it off"),
        })
}

/// Logs an event, and tells systemd what it needs to know.
fn log(event: Event) {
    match event {
        Event::Watching { dir } => tracing::info!(dir = %dir.display(), "watching"),
        Event::Fetched { commit } => tracing::info!(
            commit = %commit.sha,
            author = %commit.author,
            subject = %commit.subject,
            "new commit"
        ),
        Event::Ready => {
            tracing::info!("ready");
            notify(&[Notice::Ready, Notice::Status("watching".to_owned())]);
        }
        Event::Reloading => {
            tracing::info!("SIGHUP: reloading");
            notify(&[Notice::Reloading]);
        }
        Event::Invalid {
            reason,
            summary,
            errors,
            keeping,
        } => {
            for error in &errors {
                tracing::error!(reason = reason.as_str(), "{error}");
            }
            tracing::error!(
                reason = reason.as_str(),
                keeping_last_good = keeping,
                "the manifests are not valid ({summary}); nothing new is applied"
            );
            notify(&[Notice::Status(format!("manifests not valid: {summary}"))]);
        }
        Event::Converged { reason, unchanged } => {
            tracing::info!(
                reason = reason.as_str(),
                unchanged,
                "no changes against the recorded state"
            );
        }
        Event::Applied {
            reason,
            run,
            changed,
            failed,
            skipped,
            duration,
        } => {
            let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
            if failed > 0 {
                tracing::warn!(
                    reason = reason.as_str(),
                    run,
                    changed,
                    failed,
                    skipped,
                    duration_ms = ms,
                    "applied with failures"
                );
            } else {
                tracing::info!(
                    reason = reason.as_str(),
                    run,
                    changed,
                    skipped,
                    duration_ms = ms,
                    "applied"
                );
            }
            notify(&[Notice::Status(format!(
                "run {run}: {changed} changed, {failed} failed"
            ))]);
        }
        Event::Deferred { instances } => {
            for (id, wait) in instances {
                tracing::warn!(%id, wait_s = wait.as_secs(), "failed before; left alone for now");
            }
        }
        Event::DriftChecked {
            probed,
            drifted,
            unknown,
            to_repair,
        } => {
            if drifted > 0 || unknown > 0 {
                tracing::warn!(probed, drifted, unknown, to_repair, "drift found");
            } else {
                tracing::info!(probed, "no drift");
            }
        }
        Event::Error { message } => tracing::error!("{message}"),
        Event::Stopping => {
            tracing::info!("stopping");
            // The last notice: give it a moment to go out before the process ends.
            let (sent, out) = std::sync::mpsc::channel();
            notify_then(&[Notice::Stopping], Some(sent));
            let _ = out.recv_timeout(Duration::from_secs(1));
        }
    }
}

/// What the daemon tells systemd.
#[derive(Debug, Clone)]
enum Notice {
    Ready,
    Reloading,
    Stopping,
    Watchdog,
    Status(String),
}

/// Tells systemd, when it is listening (`NOTIFY_SOCKET`); otherwise does nothing. The
/// datagrams are sent from a thread of their own through a bounded queue: a service
/// manager that stops reading can delay its notices, never the daemon (or its signals).
fn notify(notices: &[Notice]) {
    notify_then(notices, None);
}

/// Sends `notices`; with `sent`, says when they are out (the last notice before exit).
fn notify_then(notices: &[Notice], sent: Option<std::sync::mpsc::Sender<()>>) {
    type Queue = std::sync::mpsc::SyncSender<(Vec<Notice>, Option<std::sync::mpsc::Sender<()>>)>;
    static QUEUE: std::sync::OnceLock<Option<Queue>> = std::sync::OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        if !crate::cli::config::notify_socket_set() {
            return None;
        }
        let (tx, rx) =
            std::sync::mpsc::sync_channel::<(Vec<Notice>, Option<std::sync::mpsc::Sender<()>>)>(64);
        std::thread::Builder::new()
            .name("sd-notify".to_owned())
            .spawn(move || {
                for (notices, sent) in rx {
                    send(&notices);
                    if let Some(sent) = sent {
                        let _ = sent.send(());
                    }
                }
            })
            .ok()?;
        Some(tx)
    });
    if let Some(queue) = queue {
        let _ = queue.try_send((notices.to_vec(), sent));
    }
}

fn send(notices: &[Notice]) {
    let monotonic = sd_notify::NotifyState::monotonic_usec_now().ok();
    let mut states = Vec::with_capacity(notices.len() + 1);
    for notice in notices {
        match notice {
            Notice::Ready => states.push(sd_notify::NotifyState::Ready),
            Notice::Reloading => {
                states.push(sd_notify::NotifyState::Reloading);
                states.extend(monotonic.clone());
            }
            Notice::Stopping => states.push(sd_notify::NotifyState::Stopping),
            Notice::Watchdog => states.push(sd_notify::NotifyState::Watchdog),
            Notice::Status(text) => states.push(sd_notify::NotifyState::Status(text)),
        }
    }
    if let Err(error) = sd_notify::notify(&states) {
        tracing::warn!(%error, "cannot notify systemd");
    }
}
