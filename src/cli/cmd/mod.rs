//! One file per subcommand; each takes validated arguments and a `Config` and returns an
//! `Outcome` or a `cli::Error`.

pub mod completions;
pub mod graph;
pub mod init;
pub mod schema;
pub mod validate;
