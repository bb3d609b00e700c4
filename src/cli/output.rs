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
