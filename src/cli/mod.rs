//! The composition root: parse flags → `Config` → run a command → render the outcome → exit
//! code. Errors are rendered here, once.

pub mod args;
pub mod cmd;
pub mod config;
pub mod output;
pub mod state_from;

use std::error::Error as _;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser as _;

use crate::load::Limits;
use args::{Cli, Command};
use config::Config;
use output::Output;

/// Why a command could not do its job (as opposed to finding problems in the manifests,
/// which are diagnostics and exit 1 through `Outcome::Invalid`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    ManifestDir(#[from] crate::manifest_dir::Error),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} already exists")]
    Exists { path: PathBuf },
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Reconcile(#[from] crate::reconcile::Error),
    #[error(transparent)]
    StateFrom(#[from] state_from::Error),
    #[error(transparent)]
    Comment(#[from] cmd::comment::Error),
    /// A request that cannot be carried out as given; `help` says what would work.
    #[error("{message}")]
    Usage { message: String, help: String },
}

impl Error {
    fn help(&self) -> Option<String> {
        match self {
            Error::ManifestDir(crate::manifest_dir::Error::Missing { .. }) => Some(
                "give the manifest directory as an argument, or create one with `drover init DIR`"
                    .to_owned(),
            ),
            Error::Exists { .. } => {
                Some("pass --force to overwrite it, or choose another directory".to_owned())
            }
            Error::Store(error) => error.help(),
            Error::Reconcile(error) => error.help(),
            Error::Comment(error) => error.help(),
            Error::Usage { help, .. } => Some(help.clone()),
            Error::StateFrom(error) => error.help(),
            Error::ManifestDir(_) | Error::Write { .. } => None,
        }
    }
}

/// How a command ended, mapped to an exit code in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done; exit 0.
    Success,
    /// The input has errors, already reported; exit 1.
    Invalid,
    /// `plan --detailed-exitcode` found changes (or `drift` found drift); exit 2.
    Changes,
    /// Something could not be done, already reported; exit 1.
    Failed,
}

pub fn main() -> ExitCode {
    // Usage errors exit 1, not clap's 2: with --detailed-exitcode, 2 means "changes".
    // Kept whole: runs record the command line as typed.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let output = Output::detect();
    config::init_tracing(&cli, output.stderr_tty);
    quiet_store_panics();
    let config = Config::new(&cli, output, &argv);
    match run(cli.command, &config) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Invalid | Outcome::Failed) => ExitCode::from(1),
        Ok(Outcome::Changes) => ExitCode::from(2),
        Err(error) => {
            config.output.stderr(&render_error(&error, &config));
            ExitCode::from(1)
        }
    }
}

fn plan(args: &args::PlanArgs, config: &Config) -> Result<Outcome, Error> {
    let request = cmd::plan::Request {
        dir: &args.dir,
        format: args.format,
        out: args.out.as_deref(),
        targets: &args.targets,
        replace: &args.replace,
        force: args.force,
        detailed_exitcode: args.detailed_exitcode,
        refresh: args.refresh,
        state_from: args.state_from.as_deref(),
        state: config::StateSettings::new(&args.state, &args.dir)?,
        // A saved plan must be exact: it will be applied.
        limits: Limits {
            stand_in_missing_secrets: !args.require_secrets && args.out.is_none(),
            ..(&args.limits).into()
        },
    };
    cmd::plan::run(&request, config)
}

fn run(command: Command, config: &Config) -> Result<Outcome, Error> {
    match command {
        Command::Validate {
            dir,
            format,
            require_secrets,
            limits,
        } => {
            let limits = Limits {
                stand_in_missing_secrets: !require_secrets,
                ..(&limits).into()
            };
            cmd::validate::run(&dir, format, &limits, config)
        }
        Command::Graph {
            dir,
            hosts,
            workflows,
            limits,
        } => cmd::graph::run(&dir, &hosts, &workflows, &(&limits).into(), config),
        Command::Schema { write, kind } => cmd::schema::run(write.as_deref(), kind, config),
        Command::Init { dir, force } => cmd::init::run(&dir, force, config),
        Command::Completions { shell } => Ok(cmd::completions::run(shell, config)),
        Command::Plan(args) => plan(&args, config),
        Command::Drift(args) => cmd::drift::run(&args, config),
        Command::Comment(args) => cmd::comment::run(&args, config),
        Command::Status(args) => cmd::status::run(&args, config),
        Command::Watch(args) => cmd::watch::run(&args, config),
        Command::Apply {
            source,
            auto_approve,
            parallelism,
            per_host,
            fail_fast,
            report,
            accept_new_host_keys,
            targets,
            replace,
            force,
            refresh,
            state,
            limits,
        } => {
            let request = cmd::apply::Request {
                source: &source,
                auto_approve,
                parallelism: parallelism as usize,
                per_host: per_host as usize,
                fail_fast,
                report: report.as_deref(),
                ssh: config::ssh_defaults(accept_new_host_keys)?,
                choose: cmd::apply::Choose {
                    targets: &targets,
                    replace: &replace,
                    force,
                    refresh,
                },
                state,
                limits: (&limits).into(),
            };
            cmd::apply::run(&request, config)
        }
        Command::State { command } => cmd::state::run(command, config),
        Command::History {
            dir,
            limit,
            format,
            state,
        } => cmd::history::run(
            &config::StateSettings::new(&state, &dir)?,
            limit,
            format,
            config,
        ),
        Command::Show {
            run,
            dir,
            format,
            state,
        } => cmd::show::run(
            &config::StateSettings::new(&state, &dir)?,
            run,
            format,
            config,
        ),
    }
}

/// A panic inside the storage engine on a damaged state file is caught and reported as an
/// error (`store::guarded`); the default hook would still print it with a backtrace first.
fn quiet_store_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !crate::store::in_guarded_call() {
            default(info);
        }
    }));
}

/// "error: what we were doing", then each cause on its own line, then the hint.
fn render_error(error: &Error, config: &Config) -> String {
    let style = config.stderr_style;
    let mut out = format!("{}: {error}\n", style.error("error"));
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = writeln!(out, "  caused by: {cause}");
        source = cause.source();
    }
    if let Some(help) = error.help() {
        let _ = writeln!(out, "  {}", style.help(&format!("help: {help}")));
    }
    out
}
