//! `drover completions SHELL`: shell completion scripts from the clap definition.

use clap::CommandFactory as _;

use crate::cli::Outcome;
use crate::cli::args::Cli;
use crate::cli::config::Config;

pub fn run(shell: clap_complete::Shell, config: &Config) -> Outcome {
    let mut buffer = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "drover", &mut buffer);
    config.output.stdout(&String::from_utf8_lossy(&buffer));
    Outcome::Success
}
