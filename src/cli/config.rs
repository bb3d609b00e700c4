//! Raw flags and the environment → a validated `Config`. The other place (with
//! `secret_source`) allowed to read the environment.
#![allow(
    clippy::disallowed_methods,
    reason = "NO_COLOR and RUST_LOG are read here, once"
)]

use crate::cli::args::{Cli, ColorChoice, LimitArgs, LogFormat};
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
    /// The command line as typed, secrets masked: what runs and the writer lock record.
    pub command_line: String,
}

impl Config {
    /// `argv` is the process's whole argument list, the program included.
    pub fn new(cli: &Cli, output: Output, argv: &[std::ffi::OsString]) -> Config {
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
            command_line: crate::provenance::command_line(argv),
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
            allow_paths: args.allow_paths.clone(),
            stand_in_missing_secrets: false,
        }
    }
}

/// Where the state file is and how long to wait for its writer lock.
#[derive(Debug, Clone)]
pub struct StateSettings {
    pub path: std::path::PathBuf,
    pub lock_timeout: std::time::Duration,
}

impl StateSettings {
    /// `--state`/`DROVER_STATE`, else `.drover/state.redb` in the manifest directory.
    pub fn new(
        args: &crate::cli::args::StateArgs,
        dir: &std::path::Path,
    ) -> Result<StateSettings, crate::cli::Error> {
        let path = args
            .path
            .clone()
            .unwrap_or_else(|| dir.join(".drover").join("state.redb"));
        let lock_timeout = crate::model::duration::HumanDuration::parse(&args.lock_timeout)
            .map_err(|message| crate::cli::Error::Usage {
                message: format!("--lock-timeout: {message}"),
                help: "for example --lock-timeout 30s".to_owned(),
            })?
            .as_duration();
        Ok(StateSettings { path, lock_timeout })
    }

    pub fn store(&self) -> crate::store::Store {
        crate::store::Store::at(&self.path)
    }

    /// Takes the writer lock, warning when it was left by a process that died.
    pub fn lock(
        &self,
        config: &Config,
        command: &str,
    ) -> Result<crate::store::lock::WriterLock, crate::cli::Error> {
        let me = crate::store::lock::Holder {
            pid: std::process::id(),
            host: crate::provenance::host(),
            command: command.to_owned(),
            since: crate::clock::now(),
        };
        let lock = crate::store::lock::WriterLock::acquire(&self.path, &me, self.lock_timeout)?;
        if let Some(previous) = &lock.taken_over_from {
            config.output.stderr(&format!(
                "{}: took over the state lock left by {previous}, which is no longer running\n",
                config.stderr_style.warning("warning")
            ));
        }
        Ok(lock)
    }
}

/// What SSH connections default to, read from the environment once. A `~/.ssh/config` (or
/// a file it includes) that exists but cannot be read makes every SSH host unreachable, as
/// it would for `ssh`, with the reason; a run with only local hosts does not need it.
pub fn ssh_defaults(accept_new: bool) -> Result<crate::reconcile::SshDefaults, crate::cli::Error> {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let (config, config_error) = match home
        .as_ref()
        .map(|home| read_ssh_config(&home.join(".ssh")))
    {
        Some(Ok(config)) => (config, None),
        Some(Err(crate::cli::Error::Usage { message, help })) => (
            crate::transport::ssh::config::SshConfig::default(),
            Some(format!("{message}; {help}")),
        ),
        Some(Err(other)) => return Err(other),
        None => (crate::transport::ssh::config::SshConfig::default(), None),
    };
    Ok(crate::reconcile::SshDefaults {
        config_error,
        home,
        user: std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "root".to_owned()),
        accept_new,
        config,
    })
}

/// Reads an SSH config file: absent is empty, unreadable is an error.
fn read_config_file(path: &std::path::Path) -> Result<String, crate::cli::Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(crate::cli::Error::Usage {
            message: format!(
                "cannot read {}: {}",
                path.display(),
                crate::manifest_dir::describe_io(&e)
            ),
            help:
                "drover reads your SSH config as `ssh` does: fix its permissions, or move it aside"
                    .to_owned(),
        }),
    }
}

/// Reads `~/.ssh/config` and the files it `Include`s (relative to `~/.ssh`, `*` allowed in
/// the file name).
fn read_ssh_config(
    dir: &std::path::Path,
) -> Result<crate::transport::ssh::config::SshConfig, crate::cli::Error> {
    let text = read_config_file(&dir.join("config"))?;
    let mut unreadable: Option<crate::cli::Error> = None;
    let mut include = |value: &str| -> Vec<String> {
        let mut out = Vec::new();
        for pattern in value.split_whitespace() {
            let path = dir.join(pattern.trim_start_matches("~/.ssh/"));
            let (Some(parent), Some(name)) = (
                path.parent(),
                path.file_name().map(|n| n.to_string_lossy().into_owned()),
            ) else {
                continue;
            };
            let mut files: Vec<std::path::PathBuf> = match name.split_once('*') {
                None => vec![path.clone()],
                Some((prefix, suffix)) => std::fs::read_dir(parent)
                    .map(|entries| {
                        entries
                            .filter_map(Result::ok)
                            .map(|e| e.path())
                            .filter(|p| {
                                p.file_name().is_some_and(|n| {
                                    let n = n.to_string_lossy();
                                    n.starts_with(prefix) && n.ends_with(suffix)
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            files.sort();
            for file in &files {
                match read_config_file(file) {
                    Ok(text) => out.push(text),
                    Err(error) => {
                        unreadable.get_or_insert(error);
                    }
                }
            }
        }
        out
    };
    let config = crate::transport::ssh::config::SshConfig::parse(&text, &mut include);
    match unreadable {
        Some(error) => Err(error),
        None => Ok(config),
    }
}

/// The secret `POST /hooks/git` signatures are checked with, from `DROVER_WEBHOOK_SECRET`.
pub fn webhook_secret() -> Option<Vec<u8>> {
    std::env::var_os("DROVER_WEBHOOK_SECRET")
        .filter(|s| !s.is_empty())
        .map(std::ffi::OsString::into_encoded_bytes)
}

/// The bearer token of the daemon's `GET /state`, from `DROVER_API_TOKEN`: the daemon
/// requires it, `--state-from` sends it.
/// Blanks around it (a newline left by `echo` into an environment file) are not part of it.
pub fn api_token() -> Option<Vec<u8>> {
    std::env::var_os("DROVER_API_TOKEN")
        .map(std::ffi::OsString::into_encoded_bytes)
        .map(|token| token.trim_ascii().to_vec())
        .filter(|token| !token.is_empty())
}

/// What `drover comment` takes from the environment.
#[derive(Debug)]
pub struct GitHubEnv {
    /// `GITHUB_API_URL`, or GitHub's public API when it is unset or empty.
    pub api_url: String,
    /// `GITHUB_TOKEN`, when set to something other than blanks.
    pub token: Option<crate::secret::Secret>,
}

/// Reads `GITHUB_API_URL` and `GITHUB_TOKEN` (as GitHub Actions names them).
pub fn github_env() -> GitHubEnv {
    let api_url = std::env::var("GITHUB_API_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| crate::github::DEFAULT_API_URL.to_owned());
    let token = std::env::var("GITHUB_TOKEN")
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .map(crate::secret::Secret::new);
    GitHubEnv { api_url, token }
}

/// Whether a service manager listens for `sd_notify` messages (`NOTIFY_SOCKET`).
pub fn notify_socket_set() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Logs go to stderr so they never mix with plans or graphs on stdout; colour only when
/// stderr is a terminal and colour is not turned off; JSON lines when asked.
pub fn init_tracing(cli: &Cli, stderr_tty: bool) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
    use tracing_subscriber::util::SubscriberInitExt as _;
    // A daemon's log is its output: it says what it does at info level unless told otherwise.
    let daemon = matches!(cli.command, crate::cli::args::Command::Watch(_));
    let default = match cli.verbose {
        0 if daemon => "info",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| match (daemon, cli.verbose) {
            // What the daemon does, one line per round; the layers below stay quiet.
            (true, 0) => "drover=warn,drover::cli::cmd::watch=info".to_owned(),
            _ => format!("drover={default}"),
        });
    // `target=level` directives, as RUST_LOG is usually written (no span filters: they
    // need a regex engine the binary does without). One that does not parse falls back
    // to the default.
    let parsed: Targets = filter
        .parse()
        .unwrap_or_else(|_| Targets::new().with_target("drover", level(default)));
    // The HTTP client's protocol layer dumps requests byte by byte at trace level, the
    // `Authorization` header included: no filter may let a token reach the log.
    let mut targets = Targets::new().with_targets(
        parsed
            .iter()
            .filter(|(target, _)| !target.starts_with("ureq_proto")),
    );
    if let Some(default) = parsed.default_level() {
        targets = targets.with_default(default);
    }
    let targets = targets.with_target("ureq_proto", LevelFilter::OFF);
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = match cli.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => stderr_tty && !no_color,
    };
    let registry = tracing_subscriber::registry();
    let _ = match cli.log_format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    .with_ansi(ansi)
                    .with_filter(targets),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    .with_filter(targets),
            )
            .try_init(),
    };
}

fn level(name: &str) -> tracing_subscriber::filter::LevelFilter {
    name.parse()
        .unwrap_or(tracing_subscriber::filter::LevelFilter::WARN)
}
