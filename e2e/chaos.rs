//! Chaos: `kill -9` of drover at random moments of many applies over SSH. After each kill a
//! plain re-apply must converge; over all of them no restart may be lost, no instance may run
//! more than once beyond those in flight on its host (`--per-host 2`), and the store must open.

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::fleet::Fleet;

/// Applies killed at random points.
const ROUNDS: usize = 30;
/// Chained tasks per host after the config and its restart.
const CHAIN: usize = 6;

/// The manifests of round `round`: every task's command names the round, so every task
/// runs again each round and each run leaves one line `ROUND:TASK` in the host's log.
fn workflow(round: usize) -> String {
    let mut tasks = format!(
        "apiVersion: drover/v1\nkind: Workflow\nmetadata: {{name: app}}\nspec:\n  hosts: {{matchLabels: {{role: web}}}}\n  tasks:\n    - {{name: dir, run: {{command: \"mkdir -p @\", creates: \"@\"}}}}\n    - {{name: conf, needs: [dir], file: {{path: \"@/conf\", content: \"round {round}\\n\"}}}}\n    - {{name: restart, triggeredBy: [conf], run: \"echo {round}:restart >> @/log\"}}\n"
    );
    for k in 1..=CHAIN {
        let needs = if k == 1 {
            "conf".to_owned()
        } else {
            format!("t{}", k - 1)
        };
        let _ = writeln!(
            tasks,
            "    - {{name: t{k}, needs: [{needs}], run: \"echo {round}:t{k} >> @/log; sleep 0.03\"}}"
        );
    }
    tasks.replace('@', "{{ root }}/chaos")
}

/// A small deterministic generator, so a failure can be replayed.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn drover(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .args(["--color", "never"])
        .arg(dir)
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap()
}

#[test]
fn kill_9_at_random_points_loses_no_restart_and_repeats_only_what_was_in_flight() {
    let fleet = Fleet::shared();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..fleet.len() {
        let _ = std::fs::remove_dir_all(fleet.host(i).root.join("chaos"));
    }
    let mut seed = 0x5eed_d20e_u64;
    let mut killed_mid_run = 0;
    // How long a whole apply takes here (debug builds are slow): kills land anywhere in it.
    fleet.manifests(dir.path(), &workflow(ROUNDS));
    let started = std::time::Instant::now();
    assert!(
        drover(dir.path(), &["apply", "--auto-approve"])
            .status
            .success()
    );
    let span = u64::try_from(started.elapsed().as_millis())
        .unwrap()
        .max(50);
    for round in 0..ROUNDS {
        fleet.manifests(dir.path(), &workflow(round));
        // Two per host: the task running and the one sent ahead behind it (or a restart).
        let mut child = Command::new(env!("CARGO_BIN_EXE_drover"))
            .args([
                "apply",
                "--auto-approve",
                "--color",
                "never",
                "--per-host",
                "2",
            ])
            .arg(dir.path())
            .env_remove("SSH_AUTH_SOCK")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(next(&mut seed) % span));
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        let _ = child.kill();
        child.wait().unwrap();

        // A plain apply converges whatever the kill left, and the store opens.
        let out = drover(dir.path(), &["apply", "--auto-approve"]);
        assert!(
            out.status.success(),
            "round {round}: the re-apply failed\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = drover(dir.path(), &["plan", "--detailed-exitcode"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "round {round}: not converged\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let mut twice = 0;
    for i in 0..fleet.len() {
        let log = std::fs::read_to_string(fleet.host(i).root.join("chaos/log")).unwrap();
        for round in 0..ROUNDS {
            let count = |task: &str| {
                log.lines()
                    .filter(|l| *l == format!("{round}:{task}"))
                    .count()
            };
            // The config changes every round: its restart runs, at least once.
            assert!(
                count("restart") >= 1,
                "host {i}, round {round}: the restart was lost\n{log}"
            );
            // At a kill at most `--per-host` (2) instances of a host are in flight: sent to
            // it (a chain's next task goes ahead of the previous one's result) and not yet
            // recorded. A killed round is re-applied once, so a task runs once, or twice if
            // it was in flight.
            let repeated: Vec<String> = (1..=CHAIN)
                .map(|k| format!("t{k}"))
                .chain(["restart".to_owned()])
                .filter(|t| count(t) > 1)
                .collect();
            for task in &repeated {
                assert_eq!(count(task), 2, "host {i}, round {round}: {task}\n{log}");
            }
            assert!(
                repeated.len() <= 2,
                "host {i}, round {round}: more ran twice than can be in flight: {repeated:?}"
            );
            twice += repeated.len();
            for k in 1..=CHAIN {
                assert!(
                    count(&format!("t{k}")) >= 1,
                    "host {i}, round {round}: t{k} never ran\n{log}"
                );
            }
        }
    }
    eprintln!(
        "{ROUNDS} applies killed at random within {span} ms ({killed_mid_run} mid-run) on {} hosts; {twice} instances ran twice",
        fleet.len()
    );
}
