//! What wakes the daemon: a change under the manifest directory (inotify through `notify`,
//! debounced), SIGHUP (reload now), SIGTERM/SIGINT (stop). Events are hints: a round
//! re-reads the whole directory, so a missed or merged event costs nothing but a round.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// Why the loop woke up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Something under the manifest directory changed.
    Changed,
    /// A push was announced (`POST /hooks/git`): fetch now.
    Pushed,
    /// SIGHUP: re-read the directory now.
    Reload,
    /// SIGTERM or SIGINT: finish (or drain) the round and stop.
    Stop,
}

/// Room for wake-ups not yet taken; more are dropped, as one round covers them all.
const QUEUE: usize = 64;

/// The sources of wake-ups; dropping it stops watching.
pub struct Wakes {
    pub rx: mpsc::Receiver<Wake>,
    /// For other sources of wake-ups (the webhook).
    pub tx: mpsc::Sender<Wake>,
    _watcher: Option<
        notify_debouncer_full::Debouncer<
            notify::RecommendedWatcher,
            notify_debouncer_full::RecommendedCache,
        >,
    >,
    signals: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Wakes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakes").finish_non_exhaustive()
    }
}

impl Drop for Wakes {
    fn drop(&mut self) {
        self.signals.abort();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot watch {}", dir.display())]
    Watch {
        dir: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("cannot listen for signals")]
    Signals(#[source] std::io::Error),
}

/// Starts listening for signals and, with `dir`, watching it (recursively); `state_dir`
/// (where the store writes every round) is ignored, as are dot-folders and editor droppings.
pub fn start(
    runtime: &tokio::runtime::Handle,
    dir: Option<&Path>,
    state_dir: Option<PathBuf>,
    debounce: Duration,
    shutdown: crate::apply::Shutdown,
) -> Result<Wakes, Error> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let watcher = match dir {
        Some(dir) => Some(watch_dir(tx.clone(), dir, state_dir, debounce)?),
        None => None,
    };
    let signals = listen_for_signals(runtime, tx.clone(), shutdown)?;
    Ok(Wakes {
        rx,
        tx,
        _watcher: watcher,
        signals,
    })
}

type Watcher = notify_debouncer_full::Debouncer<
    notify::RecommendedWatcher,
    notify_debouncer_full::RecommendedCache,
>;

fn watch_dir(
    files: mpsc::Sender<Wake>,
    dir: &Path,
    state_dir: Option<PathBuf>,
    debounce: Duration,
) -> Result<Watcher, Error> {
    let root = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let state_dir = state_dir.map(|d| d.canonicalize().unwrap_or(d));
    let handler = move |result: DebounceEventResult| {
        let relevant = match result {
            Ok(events) => events.iter().any(|event| {
                !matches!(event.kind, notify::EventKind::Access(_))
                    && event
                        .paths
                        .iter()
                        .any(|p| counts(p, &root, state_dir.as_deref()))
            }),
            // A watcher error (queue overflow, say) may have lost events: look again.
            Err(_) => true,
        };
        if relevant {
            let _ = files.try_send(Wake::Changed);
        }
    };
    // The debouncer wakes every tick to flush what has settled: half the debounce keeps the
    // latency under 1.5× the debounce with few idle wake-ups.
    let tick = (debounce / 2).max(Duration::from_millis(10));
    let mut watcher =
        new_debouncer(debounce, Some(tick), handler).map_err(|source| Error::Watch {
            dir: dir.to_owned(),
            source,
        })?;
    watcher
        .watch(dir, RecursiveMode::Recursive)
        .map_err(|source| Error::Watch {
            dir: dir.to_owned(),
            source,
        })?;
    Ok(watcher)
}

/// SIGHUP wakes the loop to reload. SIGTERM/SIGINT wake it to stop and move `shutdown` at
/// once, whatever the loop is doing (reading, planning, probing, fetching): nothing new
/// starts, and what runs is killed after `DRAIN_DEADLINE`; a second signal kills at once.
fn listen_for_signals(
    runtime: &tokio::runtime::Handle,
    tx: mpsc::Sender<Wake>,
    shutdown: crate::apply::Shutdown,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let mut hup = runtime
        .block_on(async { signal(SignalKind::hangup()) })
        .map_err(Error::Signals)?;
    let mut term = runtime
        .block_on(async { signal(SignalKind::terminate()) })
        .map_err(Error::Signals)?;
    let mut int = runtime
        .block_on(async { signal(SignalKind::interrupt()) })
        .map_err(Error::Signals)?;
    let signals = runtime.spawn(async move {
        let mut stops = 0u32;
        loop {
            let wake = tokio::select! {
                _ = hup.recv() => Wake::Reload,
                _ = term.recv() => Wake::Stop,
                _ = int.recv() => Wake::Stop,
            };
            if wake == Wake::Stop {
                // Counted here, not read from the tokens: the apply's own listener cancels
                // `graceful` for the same signal, which must not look like a second one.
                stops += 1;
                if stops > 1 {
                    shutdown.force.cancel();
                } else {
                    shutdown.graceful.cancel();
                    let force = shutdown.force.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(crate::reconcile::signals::DRAIN_DEADLINE).await;
                        force.cancel();
                    });
                }
            }
            if tx.send(wake).await.is_err() {
                return;
            }
        }
    });
    Ok(signals)
}

/// Whether a change at `path` can change the desired state: not the state directory, not a
/// dot-folder or dot-file (skipped when reading), not an editor's swap or backup file.
fn counts(path: &Path, root: &Path, state_dir: Option<&Path>) -> bool {
    if state_dir.is_some_and(|d| path.starts_with(d)) {
        return false;
    }
    let relative = path.strip_prefix(root).unwrap_or(path);
    let hidden = relative.components().any(|c| {
        c.as_os_str()
            .to_str()
            .is_some_and(|s| s.starts_with('.') && s != "." && s != ".." && s != ".droverignore")
    });
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let swap = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("swp") || e.eq_ignore_ascii_case("swx"));
    let droppings = swap || name.ends_with('~') || name == "4913";
    !hidden && !droppings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_files_dot_folders_and_editor_droppings_do_not_count() {
        let root = Path::new("/m");
        let state = Some(Path::new("/var/lib/drover"));
        assert!(counts(Path::new("/m/web/app.yaml"), root, state));
        assert!(counts(Path::new("/m/.droverignore"), root, state));
        assert!(!counts(Path::new("/m/.drover/state.redb"), root, state));
        assert!(!counts(
            Path::new("/var/lib/drover/state.redb"),
            root,
            state
        ));
        assert!(!counts(Path::new("/m/.git/index"), root, state));
        assert!(!counts(Path::new("/m/web/.app.yaml.swp"), root, state));
        assert!(!counts(Path::new("/m/web/app.yaml~"), root, state));
        assert!(!counts(Path::new("/m/web/4913"), root, state));
    }
}
