//! Stopping on SIGINT/SIGTERM, in stages that always end: the first signal stops launching
//! (running attempts finish and are recorded); the second kills what runs, and attempts that
//! still hang a few seconds later are abandoned and recorded cancelled (`apply`). A SIGTERM
//! comes from a service manager that will not press twice: it escalates to the second stage
//! by itself after `DRAIN_DEADLINE`. What happened is told to the console as events; printing
//! is the caller's.

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::apply::{ConsoleEvent, Shutdown};

/// How long running attempts may go on after a SIGTERM before they are killed.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Waits for signals and moves `shutdown` through its stages.
pub async fn watch(shutdown: Shutdown, console: mpsc::Sender<ConsoleEvent>) {
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return;
    };
    let by_term = tokio::select! {
        _ = tokio::signal::ctrl_c() => false,
        _ = term.recv() => true,
    };
    let _ = console.send(ConsoleEvent::Stopping { by_term }).await;
    shutdown.graceful.cancel();
    let deadline = async {
        if by_term {
            tokio::time::sleep(DRAIN_DEADLINE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        () = deadline => {}
    }
    let _ = console.send(ConsoleEvent::Killing).await;
    shutdown.force.cancel();
}
