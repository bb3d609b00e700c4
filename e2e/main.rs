//! End-to-end scenarios: the built `drover` binary against real `sshd` daemons started on
//! 127.0.0.1, one fleet shared per test binary (see `fleet.rs`).
//!
//! Where new tests go:
//! * `fleet.rs` is the harness, not tests: `Fleet::shared()` for scenarios that only connect,
//!   `Fleet::exclusive(k)` for scenarios that stop and start hosts;
//! * `fleet_checks.rs`: the harness itself, checked with the OpenSSH client only;
//! * each new scenario group gets its own file and `mod` line below, named after the
//!   behaviour it covers (e.g. `apply.rs`, `host_down.rs`, `host_keys.rs`);
//! * `faults.rs`: connections that freeze, and signals that must still end drover;
//! * `chaos.rs`: kill -9 at random points of many applies;
//! * `kinds.rs`: several task kinds in one workflow, through converge, no-op, drift, repair
//!   and removal (`user` and `cron` on this machine's real `/etc`, cleaned up by a guard);
//! * the smoke test of the binary stays at the bottom of this file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr,
    clippy::disallowed_methods,
    reason = "tests drive the binary and real daemons as a user would"
)]

mod apply;
mod archives;
mod auth;
mod chaos;
mod drift;
mod edits;
mod facts;
mod faults;
mod fleet;
mod fleet_checks;
mod kinds;
mod paths;
mod privilege;
mod ssh_config;
mod watch;

#[test]
fn the_binary_under_test_runs() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("drover "));
}
