//! Two-stage stopping on SIGINT/SIGTERM: the first stops launching (running attempts finish
//! and are recorded), the second kills what runs. What happened is told to the console as
//! events; printing is the caller's.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::apply::{ConsoleEvent, Shutdown};

/// Waits for signals and moves `shutdown` through its stages.
pub async fn watch(shutdown: Shutdown, console: mpsc::Sender<ConsoleEvent>) {
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return;
    };
    for stage in 0..2 {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        if stage == 0 {
            let _ = console.send(ConsoleEvent::Stopping).await;
            shutdown.graceful.cancel();
        } else {
            let _ = console.send(ConsoleEvent::Killing).await;
            shutdown.force.cancel();
        }
    }
}
