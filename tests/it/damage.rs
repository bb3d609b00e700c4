//! A damaged, unreadable or too-open state file: every command gives a clear error (never a
//! panic), names the backup of the last good state, and the backup restores it.
#![allow(
    clippy::print_stdout,
    reason = "a skipped test says why; the sweep says how much it tried"
)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::harness::{Drover, write_fixture};

const MANIFESTS: &str = "//- hosts.yaml
apiVersion: drover/v1
kind: Host
metadata: {name: box}
spec: {transport: local, vars: {dir: DIR}}
//- app.yaml
apiVersion: drover/v1
kind: Workflow
metadata: {name: app}
spec:
  hosts: {names: [box]}
  tasks:
    - {name: conf, file: {path: \"{{ dir }}/app.conf\", content: \"a = 1\\n\"}}
    - {name: note, needs: [conf], run: \"echo noted >> {{ dir }}/log\"}
";

/// A manifest directory applied once: its state file and backup exist.
fn applied() -> (tempfile::TempDir, tempfile::TempDir, PathBuf) {
    let manifests = tempfile::tempdir().unwrap();
    let area = tempfile::tempdir().unwrap();
    write_fixture(
        manifests.path(),
        &MANIFESTS.replace("DIR", &area.path().display().to_string()),
    );
    Drover::new()
        .args(["apply", "--auto-approve"])
        .arg_path(manifests.path())
        .run()
        .expect_code(0);
    let state = manifests.path().join(".drover/state.redb");
    (manifests, area, state)
}

fn commands(dir: &Path) -> Vec<Vec<String>> {
    let d = dir.display().to_string();
    [
        vec!["state", "list", "--dir", &d],
        vec!["history", "--dir", &d],
        vec!["show", "1", "--dir", &d],
        vec!["plan", &d],
        vec!["apply", "--auto-approve", &d],
    ]
    .into_iter()
    .map(|c| c.into_iter().map(str::to_owned).collect())
    .collect()
}

/// Every page of the file zeroed in turn, and bytes flipped inside each: no command panics,
/// and every failure says what to do.
#[test]
fn a_damaged_state_file_gives_a_clear_error_and_never_a_panic() {
    let (manifests, _area, state) = applied();
    let good = std::fs::read(&state).unwrap();
    let pages: Vec<usize> = (0..good.len() / 4096)
        .filter(|p| good[p * 4096..(p + 1) * 4096].iter().any(|b| *b != 0))
        .collect();
    let mut failures = 0;
    let mut runs = 0;
    for (n, page) in pages.iter().enumerate() {
        let mut bad = good.clone();
        if n % 2 == 0 {
            bad[page * 4096..(page + 1) * 4096].fill(0);
        } else {
            for k in 0..8 {
                bad[page * 4096 + (k * 509 + n * 31) % 4096] ^= 0xa5;
            }
        }
        std::fs::write(&state, &bad).unwrap();
        for args in commands(manifests.path()) {
            let run = Drover::new().args(&args).run();
            runs += 1;
            assert!(
                run.code() == 0 || run.code() == 1,
                "{args:?} on page {page}: exit {}\n{}",
                run.code(),
                run.stderr()
            );
            assert!(
                !run.stderr().contains("panicked"),
                "{args:?}: {}",
                run.stderr()
            );
            if run.code() == 1 {
                failures += 1;
                assert!(run.stderr().contains("error:"), "{}", run.stderr());
            }
        }
        std::fs::write(&state, &good).unwrap();
    }
    println!(
        "{runs} commands on {} damaged copies; {failures} failed cleanly",
        pages.len()
    );
}

#[test]
fn the_backup_of_the_last_good_state_restores_it() {
    let (manifests, _area, state) = applied();
    let backup = state.with_file_name("state.redb.backup");
    assert!(backup.exists());
    assert_eq!(
        std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Damage the pages that hold the tables.
    let mut bad = std::fs::read(&state).unwrap();
    for page in 1..8 {
        bad[page * 4096..(page + 1) * 4096].fill(0);
    }
    std::fs::write(&state, &bad).unwrap();
    let run = Drover::new()
        .args(["plan"])
        .arg_path(manifests.path())
        .run()
        .expect_code(1);
    assert!(
        run.stderr().contains("state.redb.backup"),
        "{}",
        run.stderr()
    );
    std::fs::copy(&backup, &state).unwrap();
    let run = Drover::new()
        .args(["plan", "--detailed-exitcode"])
        .arg_path(manifests.path())
        .run();
    assert_eq!(run.code(), 0, "{}{}", run.stdout(), run.stderr());
}

#[test]
fn a_state_file_readable_by_others_is_tightened() {
    let (manifests, area, state) = applied();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(area.path().join("app.conf"), "drifted\n").unwrap();
    Drover::new()
        .args(["apply", "--auto-approve", "--replace", "box/app/conf"])
        .arg_path(manifests.path())
        .run()
        .expect_code(0);
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// A small tmpfs mounted for one test, unmounted when dropped (needs root: the test is
/// skipped, saying so, without it).
struct Mount {
    dir: tempfile::TempDir,
    mounted: Vec<PathBuf>,
}

impl Mount {
    fn tmpfs(size: &str) -> Option<Mount> {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("fs");
        std::fs::create_dir(&target).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&target)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!("skipped: cannot mount a tmpfs here (not root?)");
            return None;
        }
        Some(Mount {
            dir,
            mounted: vec![target],
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("fs")
    }

    /// The same filesystem, mounted read-only elsewhere.
    fn read_only_view(&mut self) -> PathBuf {
        let view = self.dir.path().join("ro");
        std::fs::create_dir(&view).unwrap();
        let run = |args: &[&str]| {
            assert!(
                std::process::Command::new("mount")
                    .args(args)
                    .status()
                    .unwrap()
                    .success()
            );
        };
        run(&[
            "--bind",
            &self.path().display().to_string(),
            &view.display().to_string(),
        ]);
        self.mounted.push(view.clone());
        run(&["-o", "remount,ro,bind", &view.display().to_string()]);
        view
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        for target in self.mounted.iter().rev() {
            let _ = std::process::Command::new("umount").arg(target).status();
        }
    }
}

fn manifests_with(area: &Path, content: &str) -> tempfile::TempDir {
    let manifests = tempfile::tempdir().unwrap();
    write_fixture(
        manifests.path(),
        &MANIFESTS
            .replace("DIR", &area.display().to_string())
            .replace("a = 1", content),
    );
    manifests
}

#[test]
fn a_full_disk_gives_a_clear_error_and_the_store_still_opens() {
    let Some(mount) = Mount::tmpfs("4m") else {
        return;
    };
    let area = tempfile::tempdir().unwrap();
    let state = mount.path().join("state.redb");
    let state_arg = state.display().to_string();
    let manifests = manifests_with(area.path(), "a = 1");
    let apply = |dir: &Path| {
        Drover::new()
            .args(["apply", "--auto-approve", "--state", &state_arg])
            .arg_path(dir)
            .run()
    };
    apply(manifests.path()).expect_code(0);
    // Fill the disk to the last few KiB.
    let avail = String::from_utf8(
        std::process::Command::new("df")
            .args(["-k", "--output=avail"])
            .arg(mount.path())
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let kib: u64 = avail.lines().nth(1).unwrap().trim().parse().unwrap();
    let fill = mount.path().join("fill");
    std::fs::write(&fill, vec![0u8; usize::try_from((kib - 8) * 1024).unwrap()]).unwrap();
    let changed = manifests_with(area.path(), "a = 2");
    let run = apply(changed.path());
    assert_eq!(run.code(), 1, "{}{}", run.stdout(), run.stderr());
    assert!(!run.stderr().contains("panicked"), "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("the disk holding the state file is full"),
        "{}",
        run.stderr()
    );
    // Space comes back: the store opens and the next apply converges.
    std::fs::remove_file(&fill).unwrap();
    Drover::new()
        .args(["history", "--state", &state_arg])
        .run()
        .expect_code(0);
    apply(changed.path()).expect_code(0);
    assert_eq!(
        std::fs::read_to_string(area.path().join("app.conf")).unwrap(),
        "a = 2\n"
    );
}

#[test]
fn read_only_commands_work_on_a_read_only_state_file() {
    let Some(mut mount) = Mount::tmpfs("4m") else {
        return;
    };
    let area = tempfile::tempdir().unwrap();
    let manifests = manifests_with(area.path(), "a = 1");
    let state = mount.path().join("state.redb");
    Drover::new()
        .args(["apply", "--auto-approve", "--state"])
        .arg_path(&state)
        .arg_path(manifests.path())
        .run()
        .expect_code(0);
    let view = mount.read_only_view().join("state.redb");
    let view_arg = view.display().to_string();
    for args in [
        vec!["history", "--state", &view_arg],
        vec!["state", "list", "--state", &view_arg],
        vec!["show", "1", "--state", &view_arg],
    ] {
        let run = Drover::new().args(&args).run();
        assert_eq!(run.code(), 0, "{args:?}: {}", run.stderr());
    }
    Drover::new()
        .args(["plan", "--detailed-exitcode", "--state", &view_arg])
        .arg_path(manifests.path())
        .run()
        .expect_code(0);
    // An apply takes the writer lock before it plans, so it needs a writable place.
    let changed = manifests_with(area.path(), "a = 3");
    let run = Drover::new()
        .args(["apply", "--auto-approve", "--state", &view_arg])
        .arg_path(changed.path())
        .run()
        .expect_code(1);
    assert!(
        run.stderr().contains("cannot be written here"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_lost_state_file_beside_a_good_backup_is_refused_not_read_as_new() {
    let (manifests, area, state) = applied();
    let backup = state.with_file_name("state.redb.backup");
    let good_backup = std::fs::read(&backup).unwrap();
    // Emptied (a truncation, a disk that lost it) or deleted: reading either as "nothing
    // recorded" would run every task again and overwrite the backup at the end.
    for lose in ["empty", "missing"] {
        if lose == "empty" {
            std::fs::write(&state, b"").unwrap();
        } else {
            std::fs::remove_file(&state).unwrap();
        }
        for command in commands(manifests.path()) {
            let run = Drover::new().args(&command).run();
            assert_eq!(
                run.code(),
                1,
                "{command:?}: {}{}",
                run.stdout(),
                run.stderr()
            );
            assert!(
                run.stderr().contains(&format!("is {lose}, but"))
                    && run.stderr().contains("cp ")
                    && run.stderr().contains("state.redb.backup"),
                "{command:?}: {}",
                run.stderr()
            );
        }
        assert_eq!(
            std::fs::read(&backup).unwrap(),
            good_backup,
            "the backup was kept"
        );
        assert_eq!(
            std::fs::read_to_string(area.path().join("log")).unwrap(),
            "noted\n",
            "nothing ran again"
        );
    }
    // Restoring the backup, as the help says, brings the state back.
    std::fs::copy(&backup, &state).unwrap();
    Drover::new()
        .args(["plan", "--detailed-exitcode"])
        .arg_path(manifests.path())
        .run()
        .expect_code(0);
    // Without a backup, an empty file is what a first run killed before its first write
    // leaves: it reads as nothing recorded.
    std::fs::remove_file(&backup).unwrap();
    std::fs::write(&state, b"").unwrap();
    Drover::new()
        .args(["plan", "--detailed-exitcode"])
        .arg_path(manifests.path())
        .run()
        .expect_code(2);
}

#[test]
fn a_state_path_drover_cannot_look_at_is_an_error_not_an_empty_state() {
    let (manifests, _area, _state) = applied();
    let blocker = manifests.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let state = blocker.join("state.redb");
    let run = Drover::new()
        .args(["history", "--state"])
        .arg_path(&state)
        .run()
        .expect_code(1);
    assert!(
        run.stderr().contains("cannot look at") && !run.stdout().contains("no runs recorded"),
        "{}{}",
        run.stdout(),
        run.stderr()
    );
}

#[test]
fn a_state_file_deleted_while_an_apply_runs_is_not_called_recorded() {
    let area = tempfile::tempdir().unwrap();
    let manifests = manifests_with(area.path(), "x\n");
    let dir = area.path().display().to_string();
    std::fs::write(
        manifests.path().join("app.yaml"),
        format!(
            "apiVersion: drover/v1\nkind: Workflow\nmetadata: {{name: app}}\nspec:\n  hosts: {{names: [box]}}\n  tasks:\n\
             \x20   - {{name: wait, run: \"touch {dir}/started; while [ ! -e {dir}/go ]; do sleep 0.05; done\"}}\n"
        ),
    )
    .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["apply", "--auto-approve", "--color", "never"])
        .arg(manifests.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    crate::harness::wait_until_exists(&area.path().join("started"), "the task never started");
    std::fs::remove_file(manifests.path().join(".drover/state.redb")).unwrap();
    std::fs::write(area.path().join("go"), b"").unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(!stdout.contains("recorded;"), "{stdout}");
    assert!(
        stderr.contains("was deleted or replaced while this apply ran"),
        "{stderr}"
    );
}
