//! Integration tests: one binary, so the crate links once.
//!
//! Where new tests go:
//! * `corpus.rs`: invalid manifests under `tests/corpus/<case>/`, each with the full
//!   rendered output of `drover validate` in `expected.txt` (bless with `UPDATE_EXPECT=1`);
//! * `archives.rs`: `archive` tasks over the local transport on scratch directories;
//! * `cli.rs`: the binary's commands on the examples and scratch directories;
//! * `comment.rs`: `drover comment` against a fake GitHub API on 127.0.0.1;
//! * `hashing.rs`: spec-hash stability and sensitivity, with property tests;
//! * `schemas.rs`: the checked-in JSON Schemas are what the types generate;
//! * `tidy.rs`: architecture invariants checked over the source tree;
//! * `accounts.rs`: `user` and `group` tasks in a mount namespace with a private `/etc`;
//! * `damage.rs`: damaged, read-only and too-open state files;
//! * `logs.rs`: log lines on stderr, text and JSON;
//! * `openrc.rs`: `service` tasks under OpenRC, through fake `rc-service`/`rc-update`;
//! * `provenance.rs`: what a run records about who started it and from which git commit;
//! * `facts.rs`: host facts in templates and `when`, their cache and `--refresh`;
//! * `shared_paths.rs`: tasks of one host that manage the same path take turns, or are refused;
//! * `fuzz.rs`: mutated manifests and state files, for `DROVER_FUZZ_SECS` (60) seconds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    reason = "tests drive the binary as a user would"
)]

mod accounts;
mod apply;
mod archives;
mod cli;
mod comment;
mod corpus;
mod damage;
mod drift;
mod edits;
mod facts;
mod fuzz;
mod gitops;
mod harness;
mod hashing;
mod inventory;
mod logs;
mod openrc;
mod paths;
mod plan;
mod provenance;
mod schemas;
mod shared_paths;
mod store;
mod system;
mod tidy;
mod watch;
