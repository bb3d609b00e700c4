//! Raw flags and the environment → a validated `Config`. The other place (with
//! `secret_source`) allowed to read the environment.
#![allow(
    clippy::disallowed_methods,
    reason = "NO_COLOR and RUST_LOG are read here, once"
)]

use crate::cli::args::{Cli, ColorChoice, LimitArgs};
use crate::cli::output::Output;
use crate::load::Limits;
use crate::load::yaml::YamlLimits;
use crate::report::style::Style;

/// Settings every command shares.
#[derive(Debug, Clone)]
pub struct Config {
    pub output: Output,
    /// Style for what goes to stdout and to stderr; colour only on a terminal.
    pub stdout_style: Style,
    pub stderr_style: Style,
}

impl Config {
    pub fn new(cli: &Cli, output: Output) -> Config {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let pick = |tty: bool| match cli.color {
            ColorChoice::Always => Style::colored(),
            ColorChoice::Never => Style::plain(),
            ColorChoice::Auto => {
                if tty && !no_color {
                    Style::colored()
                } else {
                    Style::plain()
                }
            }
        };
        Config {
            output,
            stdout_style: pick(output.stdout_tty),
            stderr_style: pick(output.stderr_tty),
        }
    }
}

impl From<&LimitArgs> for Limits {
    fn from(args: &LimitArgs) -> Limits {
        Limits {
            max_file_bytes: args.max_file_size,
            max_documents: args.max_documents,
            max_tasks_per_workflow: args.max_tasks,
            max_instances: args.max_instances,
            yaml: YamlLimits::default(),
        }
    }
}

/// Logs go to stderr so they never mix with plans or graphs on stdout.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| format!("drover={default}"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
