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
}
