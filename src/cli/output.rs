//! The only module that writes to stdout and stderr.
//!
//! A closed pipe (`drover graph | head`) silences that stream; the command still finishes.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "this module is where output happens"
)]

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Where output goes, and whether each stream is a terminal.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub stdout_tty: bool,
    pub stderr_tty: bool,
}

impl Output {
    pub fn detect() -> Output {
        Output {
            stdout_tty: io::stdout().is_terminal(),
            stderr_tty: io::stderr().is_terminal(),
        }
    }

    pub fn stdout(self, text: &str) {
        write_or_drop(&mut io::stdout().lock(), text, &STDOUT_CLOSED);
    }

    pub fn stderr(self, text: &str) {
        write_or_drop(&mut io::stderr().lock(), text, &STDERR_CLOSED);
    }
}

/// A progress bar on stderr while an apply runs on a terminal; on a pipe it is absent and
/// every call only prints the lines.
#[derive(Debug)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    output: Output,
}

impl Output {
    /// A bar over `total` steps when stderr is a terminal and `enabled`.
    pub fn progress(self, total: usize, enabled: bool) -> Progress {
        let bar = (enabled && self.stderr_tty).then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total as u64),
                indicatif::ProgressDrawTarget::stderr(),
            );
            let style = indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} {elapsed_precise} {wide_msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Progress { bar, output: self }
    }
}

impl Progress {
    /// Prints a stdout line above the bar.
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| self.output.stdout(text)),
            None => self.output.stdout(text),
        }
    }

    /// Prints a stderr line above the bar.
    pub fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| self.output.stderr(text)),
            None => self.output.stderr(text),
        }
    }

    pub fn set(&self, done: usize, message: String) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            bar.set_message(message);
        }
    }

    /// Removes the bar; what was printed above it stays.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Set once stdout or stderr was found closed (`drover plan | head`): later writes to it
/// are dropped. The command itself goes on: an apply must finish and record its run even
/// when nobody reads its console.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

fn write_or_drop(stream: &mut impl Write, text: &str, closed: &AtomicBool) {
    if closed.load(Ordering::Relaxed) {
        return;
    }
    if let Err(error) = stream
        .write_all(text.as_bytes())
        .and_then(|()| stream.flush())
        && error.kind() == io::ErrorKind::BrokenPipe
    {
        closed.store(true, Ordering::Relaxed);
    }
}
