//! The only module that writes to stdout and stderr.
//!
//! A closed pipe (`drover graph | head`) ends the program quietly, as ripgrep does.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "this module is where output happens"
)]

use std::io::{self, IsTerminal, Write};

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
        write_or_exit(&mut io::stdout().lock(), text);
    }

    pub fn stderr(self, text: &str) {
        write_or_exit(&mut io::stderr().lock(), text);
    }
}

fn write_or_exit(stream: &mut impl Write, text: &str) {
    if let Err(error) = stream
        .write_all(text.as_bytes())
        .and_then(|()| stream.flush())
        && error.kind() == io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}
