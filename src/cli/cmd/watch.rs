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
    let state = StateSettings::new(&request.state, &request.dir)?;
    let settings = watch::Settings {
        dir: request.dir.clone(),
        limits: (&request.limits).into(),
        debounce: duration("--debounce", &request.debounce)?.unwrap_or(Duration::ZERO),
        drift_interval: duration("--drift-interval", &request.drift_interval)?,
        command: format!("drover watch {}", request.dir.display()),
        listen: request.listen,
        state: state.path.clone(),
    };
    let mut session = Session::new(reconcile::Settings {
        state: state.path.clone(),
        lock_timeout: state.lock_timeout,
        ssh: crate::cli::config::ssh_defaults(false)?,
        parallelism: request.parallelism as usize,
        per_host: request.per_host as usize,
        fail_fast: false,
    })?;
    // The daemon owns the state for its life: an `apply` elsewhere waits, then says who.
    let _lock = super::lock(&session, &settings.command, config)?;
    let state_dir = state.path.parent().map(std::path::Path::to_path_buf);
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
        Event::Ready => {
            tracing::info!("first round done; ready");
            notify(&[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status("converging"),
            ]);
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
            notify(&[sd_notify::NotifyState::Status(&format!(
                "manifests not valid: {summary}"
            ))]);
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
            notify(&[sd_notify::NotifyState::Status(&format!(
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
            notify(&[sd_notify::NotifyState::Stopping]);
        }
    }
}

/// Tells systemd, when it is listening (`NOTIFY_SOCKET`); otherwise does nothing.
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify systemd");
    }
}
