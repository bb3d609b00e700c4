//! End-to-end scenarios: the built `drover` binary against real `sshd` daemons started on
//! 127.0.0.1, one fleet shared per test binary.
//!
//! The fleet harness arrives with the SSH transport; until then this binary checks only that
//! the binary it will drive runs at all.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "tests drive the binary as a user would"
)]

#[test]
fn the_binary_under_test_runs() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("drover "));
}
