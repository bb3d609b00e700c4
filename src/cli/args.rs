//! The command line as clap sees it: raw flags, nothing else. `cli::config` validates them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  drover init my-fleet                 scaffold a working local example
  drover validate manifests/demo       check manifests, report every problem
  drover graph manifests/site | dot -Tsvg > site.svg
  drover schema --write schemas/       publish JSON Schemas for editors";

/// drover: a declarative reconciler for fleets of Linux hosts.
#[derive(Debug, Parser)]
#[command(name = "drover", version, about, after_help = EXAMPLES, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// More log output on stderr (-v info, -vv debug, -vvv trace); `RUST_LOG` overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// When to use colour; `NO_COLOR` in the environment means never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// How logs (`-v`, `RUST_LOG`) are written to stderr: text, or one JSON object per line
    /// (for journald and CI).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a manifest directory and report every problem in it.
    #[command(
        after_help = "Exit status: 0 when valid (warnings allowed), 1 when any error was found."
    )]
    Validate {
        /// The manifest directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Fail when a secret is not available (by default that is a warning, so that a
        /// job without the secrets can validate).
        #[arg(long)]
        require_secrets: bool,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Print the task-instance graph in Graphviz DOT.
    #[command(
        after_help = "Example: drover graph manifests/site --host web-1 | dot -Tsvg > web-1.svg"
    )]
    Graph {
        /// The manifest directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Only instances on these hosts.
        #[arg(long = "host", value_name = "HOST")]
        hosts: Vec<String>,
        /// Only instances of these workflows.
        #[arg(long = "workflow", value_name = "WORKFLOW")]
        workflows: Vec<String>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Show what an apply would change, without changing anything.
    #[command(
        after_help = "Exit status: 0 success, 1 error; with --detailed-exitcode, 0 no changes, 1 error, 2 changes.\n\nExamples:\n  drover plan manifests/site\n  drover plan manifests/site --target host=web-1 --target 'web-*/nginx/config'\n  drover plan manifests/site -o site.plan && drover apply site.plan"
    )]
    Plan(PlanArgs),
    /// Converge the hosts: plan, confirm, apply, record.
    #[command(
        after_help = "Examples:\n  drover apply manifests/demo                  shows the plan, asks, applies\n  drover apply --auto-approve manifests/demo   for scripts and CI\n  drover apply site.plan                       applies exactly a saved plan\n\nCtrl-C stops launching tasks and lets running ones finish; a second Ctrl-C kills them."
    )]
    Apply {
        /// A manifest directory, or a plan saved by `drover plan -o`.
        #[arg(default_value = ".")]
        source: PathBuf,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long)]
        auto_approve: bool,
        /// Most tasks running at once, over all hosts.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
        parallelism: u32,
        /// Most tasks running at once on one host (over SSH, tasks of a chain sent ahead of the
        /// result before them count too: at most this many re-run after a crash).
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
        per_host: u32,
        /// Stop launching tasks after the first failure.
        #[arg(long)]
        fail_fast: bool,
        /// Write the run report (JSON) to this file.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Trust an SSH host key seen for the first time and record it in `known_hosts` (a
        /// changed key is always refused).
        #[arg(long)]
        accept_new_host_keys: bool,
        /// Only these instances and what they need (as for `drover plan`).
        #[arg(long = "target", value_name = "TARGET")]
        targets: Vec<String>,
        /// Re-run these instances even if unchanged.
        #[arg(long = "replace", value_name = "TARGET")]
        replace: Vec<String>,
        /// Re-run every selected instance.
        #[arg(long)]
        force: bool,
        /// Gather the host facts the manifests use again, probe the hosts for drift first
        /// and repair what drifted, unless its policy is `ignore`.
        #[arg(long)]
        refresh: bool,
        #[command(flatten)]
        state: StateArgs,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Probe the hosts: show what differs from what drover applied, and record it.
    #[command(
        after_help = "Examples:\n  drover drift manifests/site                         every converged instance\n  drover drift --target host=web-1 manifests/site     one host\n  drover drift --format markdown --detailed-exitcode  a pull-request comment; exit 2 on drift\n\nExit status: 0 no drift, 2 drift (with --detailed-exitcode), 1 a host or an instance could not be probed."
    )]
    Drift(DriftArgs),
    /// Post a Markdown report to a pull request as one comment, updated in place on every run.
    #[command(
        after_help = "Examples:\n  drover plan --format markdown manifests/site | drover comment --repo octo-org/fleet --pr 42\n  drover drift --format markdown manifests/site > drift.md\n  drover comment --repo octo-org/fleet --pr 42 --marker drift drift.md\n\nEnvironment: GITHUB_TOKEN (required; it may write the pull request's comments: `pull-requests: write` in a GitHub Actions workflow), GITHUB_API_URL (default https://api.github.com; https://HOST/api/v3 for GitHub Enterprise Server).\n\nThe comment is found again by a hidden marker on its first line (<!-- drover:NAME -->): each run updates it instead of adding another, and comments without it are never touched. A report longer than GitHub's limit (65,536 characters) is cut, with a note saying how much and where the full report is."
    )]
    Comment(CommentArgs),
    /// Per host: instances converged, drifted, failed, pending; the last run and drift check.
    Status(StatusArgs),
    /// Keep the hosts converged: apply on every change of the manifests, repair drift.
    #[command(
        after_help = "Examples:\n  drover watch manifests/site                       apply on every save\n  drover watch --drift-interval 1m manifests/site   probe for drift every minute\n\nSIGHUP re-reads the directory now; SIGTERM or Ctrl-C lets running tasks finish and exits 0."
    )]
    Watch(WatchArgs),
    /// Inspect or edit the state store.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// List past runs, newest first.
    History {
        /// The manifest directory (its `.drover/state.redb` is the default state file).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Show at most this many runs.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Show one run and its events.
    Show {
        /// The run number, as `drover history` lists it.
        run: u64,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, value_enum, default_value_t = ShowFormat::Text)]
        format: ShowFormat,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Print the JSON Schema of manifest documents, or write every schema to a directory.
    Schema {
        /// Write host, workflow and document schemas into this directory.
        #[arg(long, value_name = "DIR")]
        write: Option<PathBuf>,
        /// Which schema to print.
        #[arg(long, value_enum, default_value_t = SchemaKind::Document, conflicts_with = "write")]
        kind: SchemaKind,
    },
    /// Create a working example manifest directory (local transport, writes under /tmp).
    Init {
        /// Where to create it.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Overwrite files that already exist.
        #[arg(long)]
        force: bool,
    },
    /// Print shell completions.
    #[command(after_help = "Example: drover completions bash > /etc/bash_completion.d/drover")]
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
    Markdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowFormat {
    Text,
    Json,
    Markdown,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List recorded instances.
    List {
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Show everything recorded about one instance.
    Show {
        /// The instance id, such as web-1/nginx/config.
        instance: String,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Forget instances: drover will treat them as never applied (nothing runs on hosts).
    Forget {
        /// Instance ids or globs.
        #[arg(required = true)]
        instances: Vec<String>,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Save the state a daemon serves (or a snapshot file) as a JSON snapshot, for other
    /// tools or for `--state-from FILE`.
    Pull {
        /// The daemon (`http(s)://HOST:PORT`, token in `DROVER_API_TOKEN`) or a snapshot file.
        #[arg(long, value_name = "URL|FILE")]
        from: String,
        /// Where to write the snapshot (`-`: standard output).
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: PathBuf,
    },
    /// Release the writer lock left by a process that hangs, or on a filesystem without flock.
    Unlock {
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        state: StateArgs,
    },
}

/// Where the state file is, and how long to wait for the writer lock.
#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    /// The state file (default: .drover/state.redb in the manifest directory).
    #[arg(long = "state", value_name = "PATH", env = "DROVER_STATE")]
    pub path: Option<PathBuf>,
    /// How long to wait for another plan -o or apply to release the state (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub lock_timeout: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    Host,
    Workflow,
    Document,
}

/// Input limits that protect a small controller; the defaults fit a 512 MB edge box.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Largest manifest file, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_file_size: u64,
    /// Most documents in the directory.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub max_documents: usize,
    /// Most tasks in one workflow.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    pub max_tasks: usize,
    /// Most task instances (hosts × tasks) in all.
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    pub max_instances: usize,
    /// Let manifests also read controller files under DIR (templates, sources, secret
    /// files); repeatable. Without it they read only inside the manifest directory, after
    /// following symlinks.
    #[arg(long = "allow-path", value_name = "DIR")]
    pub allow_paths: Vec<PathBuf>,
}

/// `drover drift`'s arguments.
#[derive(Debug, clap::Args)]
pub struct DriftArgs {
    /// The manifest directory.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Only these instances (same forms as for `drover plan`). Repeatable.
    #[arg(long = "target", value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Exit 2 when something drifted, 0 when nothing did.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Most hosts probed at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub parallelism: u32,
    /// Report the drift a daemon last recorded instead of probing from here: its
    /// `http(s)://HOST:PORT` (token in `DROVER_API_TOKEN`) or a file `drover state pull`
    /// wrote. Nothing is probed and nothing is written.
    #[arg(
        long,
        value_name = "URL|FILE",
        conflicts_with_all = [
            "targets", "path", "lock_timeout", "parallelism", "max_file_size", "max_documents", "max_tasks",
            "max_instances", "allow_paths",
        ]
    )]
    pub state_from: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// `drover status`'s arguments.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The manifest directory.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// `drover plan`'s arguments.
#[derive(Debug, clap::Args)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent command-line switches, as clap parses them"
)]
pub struct PlanArgs {
    /// The manifest directory.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Save the plan for `drover apply FILE`.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Only these instances and what they need: an id, a glob (`web-*/nginx/*`),
    /// `host=NAME` or `workflow=NAME`. Repeatable.
    #[arg(long = "target", value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Re-run these instances even if unchanged (same forms as --target). Repeatable.
    #[arg(long = "replace", value_name = "TARGET")]
    pub replace: Vec<String>,
    /// Re-run every selected instance.
    #[arg(long)]
    pub force: bool,
    /// Exit 2 when there are changes, 0 when there are none.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Gather the host facts the manifests use again, probe the hosts for drift first (as
    /// `drover drift` does, and recorded) and plan to repair what drifted, unless its
    /// policy is `ignore`.
    #[arg(long)]
    pub refresh: bool,
    /// Plan against the state a daemon serves (`http(s)://HOST:PORT`, its `/state` with
    /// the token in `DROVER_API_TOKEN`) or a file `drover state pull` wrote; nothing is
    /// written anywhere.
    #[arg(long, value_name = "URL|FILE", conflicts_with_all = ["out", "refresh", "path", "lock_timeout"])]
    pub state_from: Option<String>,
    /// Fail when a secret is not available, instead of planning what uses it as "may
    /// change" (always so with --out: a saved plan must be exact).
    #[arg(long)]
    pub require_secrets: bool,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// `drover watch`'s arguments.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The manifest directory; with --git, the directory inside the repository.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Follow a branch of this repository instead of watching DIR: anything `git` can fetch
    /// (`https://…`, `git@host:repo`, `file:///srv/fleet.git`). The checkout lives beside the
    /// state file (default `.drover/state.redb` in the current directory); `POST /hooks/git`
    /// (with --listen and `DROVER_WEBHOOK_SECRET`) fetches at once.
    #[arg(long, value_name = "URL")]
    pub git: Option<String>,
    /// The branch to follow.
    #[arg(long, default_value = "main", requires = "git")]
    pub branch: String,
    /// How often to look for new commits.
    #[arg(long, default_value = "60s", value_name = "DURATION", requires = "git")]
    pub poll: String,
    /// How long the directory must be quiet after a change before a round starts.
    #[arg(long, default_value = "500ms", value_name = "DURATION")]
    pub debounce: String,
    /// How often to probe the hosts for drift (`0` turns it off); `drift: fix` is repaired.
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    pub drift_interval: String,
    /// Serve /healthz, /readyz, /status, /metrics and /runs here (e.g. 127.0.0.1:9180);
    /// nothing is served without it.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
    /// Most tasks running at once, over all hosts.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub parallelism: u32,
    /// Most tasks running at once on one host.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub per_host: u32,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// `drover comment`'s arguments.
#[derive(Debug, clap::Args)]
pub struct CommentArgs {
    /// The Markdown report to post; `-` or nothing reads it from stdin.
    #[arg(value_name = "FILE|-")]
    pub file: Option<PathBuf>,
    /// The repository, as OWNER/NAME.
    #[arg(long, value_name = "OWNER/NAME")]
    pub repo: String,
    /// The pull request's number.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub pr: u64,
    /// Which comment to keep up to date: one per name, so that two reports (a plan and a
    /// drift report) can each have their own on one pull request.
    #[arg(long, value_name = "NAME", default_value = crate::github::sticky::DEFAULT_MARKER)]
    pub marker: String,
    /// Where the full report can be read (a CI run, an artifact): linked in the note when the
    /// report is cut to fit GitHub's limit.
    #[arg(long, value_name = "URL")]
    pub full_report_url: Option<String>,
}
