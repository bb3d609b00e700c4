//! `drover apply` over the local transport on real temporary directories: converge, no-op,
//! update, remove with undo, triggers, timeouts that kill process groups, retries, Ctrl-C,
//! and `kill -9` followed by a plan that shows exactly the unfinished instances.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{Drover, write_fixture};

/// A scratch manifest directory whose only host is local; `{{ dir }}` is a scratch area for
/// the tasks' files, given as the host variable `dir`.
struct Scratch {
    manifests: tempfile::TempDir,
    area: tempfile::TempDir,
}

impl Scratch {
    /// Gives the host a secret variable `pw`, read from `pw.txt` (holding `value`).
    fn secret_pw(&self, value: impl AsRef<[u8]>) {
        std::fs::write(self.dir().join("pw.txt"), value).unwrap();
        let hosts = std::fs::read_to_string(self.dir().join("hosts.yaml")).unwrap();
        std::fs::write(
            self.dir().join("hosts.yaml"),
            hosts.replace(
                "vars: {dir:",
                "vars: {pw: {valueFrom: {file: pw.txt}}, dir:",
            ),
        )
        .unwrap();
    }

    fn new(workflow_tasks: &str) -> Scratch {
        let scratch = Scratch {
            manifests: tempfile::tempdir().unwrap(),
            area: tempfile::tempdir().unwrap(),
        };
        scratch.write(workflow_tasks);
        scratch
    }

    fn write(&self, workflow_tasks: &str) {
        let text = format!(
            "//- hosts.yaml\napiVersion: drover/v1\nkind: Host\nmetadata: {{name: box}}\nspec:\n  transport: local\n  vars: {{dir: {}}}\n//- app.yaml\napiVersion: drover/v1\nkind: Workflow\nmetadata: {{name: app}}\nspec:\n  hosts: {{names: [box]}}\n  tasks:\n{workflow_tasks}",
            self.area.path().display()
        );
        write_fixture(self.manifests.path(), &text);
    }

    fn dir(&self) -> &Path {
        self.manifests.path()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.area.path().join(name)
    }

    fn apply(&self) -> crate::harness::Run {
        Drover::new()
            .args(["apply", "--auto-approve", "--color", "never"])
            .arg_path(self.dir())
            .run()
    }

    fn apply_with_report(&self) -> (crate::harness::Run, serde_json::Value) {
        let report = self.area.path().join("report.json");
        let run = Drover::new()
            .args(["apply", "--auto-approve", "--color", "never", "--report"])
            .arg_path(&report)
            .arg_path(self.dir())
            .run();
        let value = serde_json::from_str(
            &std::fs::read_to_string(&report)
                .unwrap_or_else(|_| panic!("no report: {}{}", run.stdout(), run.stderr())),
        )
        .unwrap();
        (run, value)
    }
}

const BASIC: &str = r#"    - name: config
      file: {path: "{{ dir }}/app.conf", content: "port = 8080\n", mode: "0640"}
    - name: reload
      triggeredBy: [config]
      run: echo reloaded >> {{ dir }}/reloads.log
    - name: marker
      needs: [config]
      run: {command: "touch {{ dir }}/marker", creates: "{{ dir }}/marker"}
      undo: rm -f {{ dir }}/marker
"#;

fn statuses(report: &serde_json::Value) -> Vec<String> {
    report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{} {}",
                i["id"].as_str().unwrap(),
                i["status"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn apply_converges_then_a_second_apply_contacts_nothing() {
    let s = Scratch::new(BASIC);
    let (run, report) = s.apply_with_report();
    run.expect_code(0);
    assert_eq!(
        statuses(&report),
        [
            "box/app/config changed",
            "box/app/reload changed",
            "box/app/marker changed"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(s.file("app.conf")).unwrap(),
        "port = 8080\n"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(s.file("app.conf")).unwrap().permissions(),
    ) & 0o777;
    assert_eq!(mode, 0o640);
    assert_eq!(report["status"], "succeeded");
    assert!(
        report["instances"][0]["diff"]
            .as_str()
            .unwrap()
            .contains("+port = 8080")
    );
    let (run, report) = s.apply_with_report();
    let run = run.expect_code(0);
    assert!(run.stdout().contains("No changes"), "{}", run.stdout());
    assert_eq!(
        report["contacts"],
        serde_json::json!({"connections": 0, "channels": 0, "commands": 0, "filesWritten": 0, "filesRead": 0})
    );
    assert_eq!(
        std::fs::read_to_string(s.file("reloads.log")).unwrap(),
        "reloaded\n"
    );
}

#[test]
fn an_edit_updates_only_what_changed_and_fires_its_trigger() {
    let s = Scratch::new(BASIC);
    s.apply().expect_code(0);
    s.write(&BASIC.replace("port = 8080", "port = 9090"));
    let (run, report) = s.apply_with_report();
    run.expect_code(0);
    assert_eq!(
        statuses(&report),
        ["box/app/config changed", "box/app/reload changed"]
    );
    assert_eq!(
        std::fs::read_to_string(s.file("reloads.log")).unwrap(),
        "reloaded\nreloaded\n"
    );
    // Someone fixes the file by hand to match: the planned update finds nothing to do, so
    // the reload it would trigger does not run.
    s.write(&BASIC.replace("port = 8080", "port = 7070"));
    std::fs::write(s.file("app.conf"), "port = 7070\n").unwrap();
    let (_, report) = s.apply_with_report();
    assert_eq!(
        statuses(&report),
        ["box/app/config unchanged", "box/app/reload notTriggered"]
    );
    assert_eq!(
        std::fs::read_to_string(s.file("reloads.log"))
            .unwrap()
            .lines()
            .count(),
        2
    );
}

#[test]
fn removed_tasks_run_their_undo_and_are_forgotten() {
    let s = Scratch::new(BASIC);
    s.apply().expect_code(0);
    assert!(s.file("marker").exists());
    let without_marker = BASIC.split("    - name: marker").next().unwrap();
    s.write(without_marker);
    let (run, report) = s.apply_with_report();
    run.expect_code(0);
    assert_eq!(statuses(&report), ["box/app/marker removed"]);
    assert!(!s.file("marker").exists(), "the undo ran");
    let run = Drover::new()
        .args(["state", "list", "--dir"])
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    assert!(!run.stdout().contains("marker"), "{}", run.stdout());
}

#[test]
fn a_failure_skips_dependents_and_independent_branches_go_on() {
    let s = Scratch::new(
        r#"    - name: broken
      run: echo boom >&2; exit 3
    - name: after-broken
      needs: [broken]
      run: touch {{ dir }}/never
    - name: independent
      run: touch {{ dir }}/independent
"#,
    );
    let (run, report) = s.apply_with_report();
    run.expect_code(1);
    assert_eq!(
        statuses(&report),
        [
            "box/app/broken failed",
            "box/app/after-broken skipped",
            "box/app/independent changed"
        ]
    );
    assert!(
        report["instances"][0]["error"]
            .as_str()
            .unwrap()
            .contains("exited with status 3: boom"),
        "{report}"
    );
    assert!(!s.file("never").exists());
    assert!(s.file("independent").exists());
    // The failure is retried by the next plan; the skipped task is still to create.
    let run = Drover::new()
        .args(["plan", "--color", "never"])
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    assert!(
        run.stdout().contains("last attempt failed") && run.stdout().contains("after-broken"),
        "{}",
        run.stdout()
    );
}

#[test]
fn retries_back_off_and_count_attempts() {
    let s = Scratch::new(
        r#"    - name: flaky
      run: n=$(cat {{ dir }}/tries 2>/dev/null || echo 0); n=$((n+1)); echo $n > {{ dir }}/tries; [ $n -ge 3 ]
      retries: {attempts: 4, backoff: 10ms}
"#,
    );
    let (run, report) = s.apply_with_report();
    run.expect_code(0);
    assert_eq!(report["instances"][0]["attempts"], 3);
    assert_eq!(report["instances"][0]["status"], "changed");
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn a_timeout_kills_the_whole_process_group() {
    let s = Scratch::new(
        r#"    - name: slow
      run: sleep 300 & echo $! > {{ dir }}/child.pid; wait
      timeout: 1s
"#,
    );
    let (run, report) = s.apply_with_report();
    run.expect_code(1);
    assert_eq!(report["instances"][0]["status"], "timedOut");
    let pid: u32 = std::fs::read_to_string(s.file("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while pid_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !pid_alive(pid),
        "the background child {pid} outlived the timeout"
    );
}

/// Starts `drover apply` (with `extra` arguments) as a child and waits until `marker` exists.
fn start_apply(s: &Scratch, marker: &Path, extra: &[&str]) -> std::process::Child {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["apply", "--auto-approve", "--color", "never"])
        .args(extra)
        .arg(s.dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    crate::harness::wait_until_exists(marker, "the task never started");
    child
}

const SLOW_CHAIN: &str = r#"    - name: first
      run: touch {{ dir }}/first
    - name: slow
      needs: [first]
      run: touch {{ dir }}/slow-started; sleep 2; touch {{ dir }}/slow-done
    - name: last
      needs: [slow]
      run: touch {{ dir }}/last
"#;

#[test]
fn ctrl_c_lets_running_tasks_finish_and_cancels_the_rest() {
    let s = Scratch::new(SLOW_CHAIN);
    let child = start_apply(&s, &s.file("slow-started"), &[]);
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        s.file("slow-done").exists(),
        "the running task was allowed to finish"
    );
    assert!(!s.file("last").exists(), "nothing new started after Ctrl-C");
    let history = Drover::new()
        .args(["history", "--dir"])
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    assert!(
        history.stdout().contains("cancelled"),
        "{}",
        history.stdout()
    );
    let plan = Drover::new()
        .args(["plan", "--color", "never"])
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    assert!(
        plan.stdout().contains("+ last") && !plan.stdout().contains("slow  run"),
        "{}",
        plan.stdout()
    );
}

#[test]
fn kill_9_mid_run_then_plan_shows_exactly_the_unfinished_instances() {
    let s = Scratch::new(&SLOW_CHAIN.replace("sleep 2", "sleep 30"));
    let mut child = start_apply(&s, &s.file("slow-started"), &[]);
    child.kill().unwrap();
    child.wait().unwrap();
    let plan = Drover::new()
        .args(["plan", "--color", "never", "--format", "json"])
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    let doc: serde_json::Value = serde_json::from_str(&plan.stdout()).unwrap();
    let planned: Vec<String> = doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["id"].as_str().unwrap(),
                c["kind"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        planned,
        ["box/app/slow create", "box/app/last create"],
        "first finished and is not planned again"
    );
    let history = Drover::new()
        .args(["history", "--dir"])
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    assert!(
        history.stdout().contains("interrupted"),
        "{}",
        history.stdout()
    );
    // `status` and `show` read the run as `history` does, not as still running.
    let status = Drover::new()
        .args(["status", "--color", "never"])
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    assert!(
        status.stdout().contains("interrupted") && !status.stdout().contains("running"),
        "{}",
        status.stdout()
    );
    let show = Drover::new()
        .args(["show", "1", "--dir"])
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    assert!(show.stdout().contains("interrupted"), "{}", show.stdout());
    // The killed task's process group may still be sleeping; it is not drover's to reap.
}

#[test]
fn a_replacement_killed_mid_run_is_planned_again() {
    // `slow` is quick unless a hold file exists, so its spec never changes: only the record
    // that it started can tell the next plan that the forced re-run did not finish.
    let s = Scratch::new(
        r#"    - name: slow
      run: touch {{ dir }}/slow-started; if [ -e {{ dir }}/hold ]; then sleep 30; fi
"#,
    );
    s.apply().expect_code(0);
    std::fs::remove_file(s.file("slow-started")).unwrap();
    std::fs::write(s.file("hold"), "").unwrap();
    let mut child = start_apply(&s, &s.file("slow-started"), &["--replace", "box/app/slow"]);
    child.kill().unwrap();
    child.wait().unwrap();
    let plan = Drover::new()
        .args(["plan", "--color", "never"])
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    assert!(
        plan.stdout().contains("last attempt interrupted"),
        "{}",
        plan.stdout()
    );
}

#[test]
fn apply_refuses_without_a_terminal_unless_approved() {
    let s = Scratch::new(BASIC);
    let run = Drover::new()
        .args(["apply", "--color", "never"])
        .arg_path(s.dir())
        .run()
        .expect_code(1);
    assert!(run.stderr().contains("--auto-approve"), "{}", run.stderr());
    assert!(!s.file("app.conf").exists());
}

#[test]
fn a_saved_plan_applies_exactly_and_refuses_stale_instances() {
    let s = Scratch::new(BASIC);
    let saved = s.area.path().join("p.plan");
    Drover::new()
        .args(["plan", "-o"])
        .arg_path(&saved)
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    // The config changes after the plan was saved: only it (and what needs it) is refused.
    s.write(&BASIC.replace("port = 8080", "port = 1"));
    let run = Drover::new()
        .args(["apply", "--color", "never"])
        .arg_path(&saved)
        .run()
        .expect_code(1);
    assert!(
        run.stderr()
            .contains("box/app/config is stale: its manifests changed"),
        "{}",
        run.stderr()
    );
    assert!(!s.file("app.conf").exists());
    assert!(
        run.stdout().contains("box/app/marker skipped"),
        "{}",
        run.stdout()
    );
    assert!(
        run.stdout()
            .contains("stale: its manifests changed since the plan was saved"),
        "{}",
        run.stdout()
    );
    // What the manifests say now was never reviewed: it is not shown as if planned.
    assert!(!run.stdout().contains("port = 1"), "{}", run.stdout());
    // Applied once more, nothing in it can run: refused up front, and no run is recorded.
    let runs = |s: &Scratch| {
        let history = Drover::new()
            .args(["history", "--format", "json", "--dir"])
            .arg_path(s.dir())
            .run()
            .expect_code(0);
        serde_json::from_str::<serde_json::Value>(&history.stdout()).unwrap()["runs"]
            .as_array()
            .map_or(0, Vec::len)
    };
    s.write(BASIC);
    Drover::new()
        .args(["apply", "--auto-approve", "--color", "never"])
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    let before = runs(&s);
    assert!(before >= 2, "the runs so far are counted");
    let run = Drover::new()
        .args(["apply", "--color", "never"])
        .arg_path(&saved)
        .run()
        .expect_code(1);
    assert!(
        run.stderr().contains("every change in it is stale") && !run.stdout().contains("Plan:"),
        "{}{}",
        run.stdout(),
        run.stderr()
    );
    assert_eq!(runs(&s), before, "no run recorded");
}

#[test]
fn history_and_show_describe_the_run() {
    let s = Scratch::new(BASIC);
    s.apply().expect_code(0);
    let run = Drover::new()
        .args(["show", "1", "--format", "json", "--dir"])
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(doc["run"]["status"], "succeeded");
    assert_eq!(doc["run"]["changed"], 3);
    let kinds: Vec<&str> = doc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"runStarted"));
    assert_eq!(kinds.last(), Some(&"runFinished"));
}

#[test]
fn a_renamed_task_is_undone_before_its_successor_writes() {
    let s = Scratch::new(
        r#"    - name: motd
      file: {path: "{{ dir }}/motd", content: "hello\n"}
      undo: rm -f {{ dir }}/motd
"#,
    );
    s.apply().expect_code(0);
    s.write(
        r#"    - name: banner
      file: {path: "{{ dir }}/motd", content: "hello\n"}
      undo: rm -f {{ dir }}/motd
"#,
    );
    let (run, report) = s.apply_with_report();
    run.expect_code(0);
    assert_eq!(
        statuses(&report),
        ["box/app/motd removed", "box/app/banner changed"]
    );
    assert_eq!(
        std::fs::read_to_string(s.file("motd")).unwrap(),
        "hello\n",
        "the old undo ran first"
    );
}

#[test]
fn a_restart_that_failed_stays_pending_until_it_succeeds() {
    let tasks = |version: &str| {
        format!(
            "    - name: config\n      file: {{path: \"{{{{ dir }}}}/app.conf\", content: \"{version}\\n\"}}\n    - name: restart\n      triggeredBy: [config]\n      run: test ! -e {{{{ dir }}}}/broken && echo restarted >> {{{{ dir }}}}/restarts\n"
        )
    };
    let s = Scratch::new(&tasks("v1"));
    s.apply().expect_code(0);
    std::fs::write(s.file("broken"), "").unwrap();
    s.write(&tasks("v2"));
    s.apply().expect_code(1);
    std::fs::remove_file(s.file("broken")).unwrap();
    // Nothing changed since, but the restart is still owed.
    let plan = Drover::new()
        .args(["plan", "--color", "never"])
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    assert!(
        plan.stdout().contains("trigger pending since run 2"),
        "{}",
        plan.stdout()
    );
    s.apply().expect_code(0);
    assert_eq!(
        std::fs::read_to_string(s.file("restarts")).unwrap(),
        "restarted\nrestarted\n"
    );
    let plan = Drover::new()
        .args(["plan", "--color", "never"])
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    assert!(plan.stdout().contains("No changes"), "{}", plan.stdout());
}

#[test]
fn secrets_stay_masked_in_live_output_reports_and_the_state_file() {
    let s = Scratch::new(
        r#"    - name: echo
      run: ["printf", "pw is %s\\n", "{{ pw }}"]
      undo: echo {{ pw | q }}
    - name: conf
      file: {path: "{{ dir }}/conf", content: "password={{ pw }}\n"}
"#,
    );
    // The secret holds a quote, so its shell-quoted form differs from the value itself.
    let secret = "s3cr3t'PW-7781";
    s.secret_pw(format!("{secret}\n"));
    let (run, report) = s.apply_with_report();
    let run = run.expect_code(0);
    let everything = format!("{}{}{report}", run.stdout(), run.stderr());
    assert!(
        everything.contains("pw is ***"),
        "the output line is shown, masked: {everything}"
    );
    assert!(
        !everything.contains("s3cr3t"),
        "a secret leaked: {everything}"
    );
    let show = Drover::new()
        .args(["show", "1", "--format", "json", "--dir"])
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    assert!(!show.stdout().contains("s3cr3t"), "{}", show.stdout());
    let state = std::fs::read(s.dir().join(".drover/state.redb")).unwrap();
    assert!(
        !state.windows(6).any(|w| w == b"s3cr3t"),
        "the secret reached the state file"
    );
    // Rotating the secret must not print the old one in the file's diff either.
    std::fs::write(s.dir().join("pw.txt"), "n3w-secret-9931\n").unwrap();
    let (run, report) = s.apply_with_report();
    let everything = format!("{}{}{report}", run.stdout(), run.stderr());
    assert!(
        !everything.contains("s3cr3t") && !everything.contains("n3w-secret"),
        "{everything}"
    );
}

#[test]
fn packages_already_as_desired_report_unchanged_through_the_real_package_manager() {
    // coreutils is installed on any Debian-like host; the other name exists nowhere.
    let s = Scratch::new(
        r#"    - name: present
      package: {names: [coreutils], state: present}
    - name: absent
      package: {names: [drover-no-such-package], state: absent}
"#,
    );
    let (run, report) = s.apply_with_report();
    run.expect_code(0);
    assert_eq!(
        statuses(&report),
        ["box/app/present unchanged", "box/app/absent unchanged"]
    );
}

#[test]
fn a_service_task_without_systemd_fails_saying_so() {
    if Path::new("/run/systemd/system").exists() {
        return; // On a systemd host this would manage a real unit; the check is for others.
    }
    let s = Scratch::new("    - name: web\n      service: {name: nginx, state: running}\n");
    let (run, report) = s.apply_with_report();
    run.expect_code(1);
    let error = report["instances"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("systemctl") && error.contains("systemd"),
        "{error}"
    );
}

#[test]
fn creates_counts_a_directory_as_existing_on_the_local_transport() {
    let s = Scratch::new(
        "    - {name: once, run: {command: \"mkdir -p {{ dir }}/made && echo ran >> {{ dir }}/log\", creates: \"{{ dir }}/made\"}}\n",
    );
    s.apply().expect_code(0);
    std::fs::create_dir_all(s.file("made")).unwrap();
    // Forget the record so the guard, not the state, decides.
    Drover::new()
        .args(["state", "forget", "box/app/once", "--yes", "--dir"])
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    let run = s.apply().expect_code(0);
    assert!(run.stdout().contains("exists; not run"), "{}", run.stdout());
    assert_eq!(std::fs::read_to_string(s.file("log")).unwrap(), "ran\n");
}

#[test]
fn a_saved_plan_refuses_target_replace_and_force() {
    let s = Scratch::new("    - {name: a, run: \"true\"}\n");
    let plan = s.area.path().join("saved.plan");
    Drover::new()
        .args(["plan", "-o"])
        .arg_path(&plan)
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    let run = Drover::new()
        .args(["apply", "--target", "box/app/a"])
        .arg_path(&plan)
        .run()
        .expect_code(1);
    assert!(
        run.stderr().contains("applied exactly as it was saved"),
        "{}",
        run.stderr()
    );
}

/// A handler runs only when a source changed: not because it is new (a fresh state file on a
/// host whose config is already in place) and not because its own command was edited.
#[test]
fn issue_9_a_handler_runs_only_when_a_source_changed() {
    let s = Scratch::new(BASIC);
    // The config is already in place, as on a host set up before drover managed it.
    std::fs::write(s.file("app.conf"), "port = 8080\n").unwrap();
    std::fs::set_permissions(
        s.file("app.conf"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    let (run, report) = s.apply_with_report();
    run.expect_code(0);
    assert!(
        statuses(&report).contains(&"box/app/reload notTriggered".to_owned()),
        "{:?}",
        statuses(&report)
    );
    assert!(
        !s.file("reloads.log").exists(),
        "the reload ran on a fresh state"
    );
    // Recorded as applied: the next plan has nothing to do.
    Drover::new()
        .args(["plan", "--detailed-exitcode"])
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    // Editing the handler's own command plans it, but it waits for its source.
    s.write(&BASIC.replace("echo reloaded", "echo reloaded-again"));
    let plan = Drover::new()
        .args(["plan", "--color", "never"])
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    assert!(
        plan.stdout().contains("runs only if app/config changes"),
        "{}",
        plan.stdout()
    );
    let (_, report) = s.apply_with_report();
    assert_eq!(statuses(&report), ["box/app/reload notTriggered"]);
    assert!(!s.file("reloads.log").exists());
    // A change of the source still fires it.
    s.write(
        &BASIC
            .replace("echo reloaded", "echo reloaded-again")
            .replace("port = 8080", "port = 9090"),
    );
    s.apply().expect_code(0);
    assert_eq!(
        std::fs::read_to_string(s.file("reloads.log")).unwrap(),
        "reloaded-again\n"
    );
}

#[test]
fn a_write_removes_old_temporary_files_a_killed_apply_left() {
    let s = Scratch::new(BASIC);
    let old = s.file(".app.conf.drover-4242-0");
    let fresh = s.file(".app.conf.drover-4343-0");
    std::fs::write(&old, "half").unwrap();
    std::fs::write(&fresh, "half").unwrap();
    assert!(
        std::process::Command::new("touch")
            .args(["-d", "20 minutes ago"])
            .arg(&old)
            .status()
            .unwrap()
            .success()
    );
    s.apply().expect_code(0);
    assert!(!old.exists(), "the old leftover stayed");
    assert!(
        fresh.exists(),
        "a fresh temporary file (another writer's) was removed"
    );
}

/// An edit of `undo` alone changes nothing on the host but must be remembered: the removal
/// later runs the edited undo, not the old one (or none).
#[test]
fn issue_9_an_undo_edit_is_recorded_and_a_later_removal_runs_it() {
    let s = Scratch::new(BASIC);
    s.apply().expect_code(0);
    let edited = BASIC.replace(
        "undo: rm -f {{ dir }}/marker",
        "undo: rm -f {{ dir }}/marker && echo undone-by-the-edit >> {{ dir }}/undo.log",
    );
    s.write(&edited);
    let plan = Drover::new()
        .args(["plan", "--color", "never"])
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    assert!(
        plan.stdout().contains("undo or check changed") && plan.stdout().contains("to refresh"),
        "{}",
        plan.stdout()
    );
    let (run, report) = s.apply_with_report();
    run.expect_code(0);
    assert_eq!(statuses(&report), ["box/app/marker unchanged"]);
    assert_eq!(report["contacts"]["commands"], 0, "{report}");
    // Then the task goes away: its edited undo runs.
    s.write(&edited.replace(
        "    - name: marker\n      needs: [config]\n      run: {command: \"touch {{ dir }}/marker\", creates: \"{{ dir }}/marker\"}\n      undo: rm -f {{ dir }}/marker && echo undone-by-the-edit >> {{ dir }}/undo.log\n",
        "",
    ));
    s.apply().expect_code(0);
    assert!(!s.file("marker").exists());
    assert_eq!(
        std::fs::read_to_string(s.file("undo.log")).unwrap(),
        "undone-by-the-edit\n"
    );
}

/// A host's output cannot drive the terminal: escape sequences and other control characters
/// in live output, failure messages and `show` come out as visible escapes.
#[test]
fn issue_9_control_characters_from_a_host_are_escaped() {
    let s = Scratch::new(
        "    - {name: noisy, run: \"printf '\\\\033[2Jcleared\\\\n'; printf '\\\\033]0;title\\\\007oops\\\\n' >&2; exit 3\"}\n",
    );
    let run = s.apply().expect_code(1);
    let all = format!("{}{}", run.stdout(), run.stderr());
    assert!(!all.contains('\u{1b}'), "{all:?}");
    assert!(all.contains("\\x1b[2Jcleared"), "{all}");
    let show = Drover::new()
        .args(["show", "1", "--dir"])
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    assert!(!show.stdout().contains('\u{1b}'), "{:?}", show.stdout());
    assert!(
        show.stdout().contains("\\x1b]0;title\\x07oops"),
        "{}",
        show.stdout()
    );
}

/// Values derived from a secret by any template filter are as secret as the secret: masked
/// in plans, output, reports and the state file; a file holding one is written 0600; a path
/// made from one is not stored in clear.
#[test]
fn issue_9_values_derived_from_a_secret_never_show_and_files_holding_them_are_0600() {
    let s = Scratch::new(
        r#"    - name: shout
      run: "echo {{ pw | upper }} derived; echo {{ pw[2:9] }} sliced"
    - name: conf
      file: {path: "{{ dir }}/conf", content: "user=app\npassword={{ pw | replace('s3', 'S3') }}\n"}
    - name: named
      file: {path: "{{ dir }}/{{ pw[0:6] | lower }}.key", content: "k\n"}
"#,
    );
    s.secret_pw("s3cr3tPW-7781\n");
    let leaks = |text: &str| {
        ["S3CR3T", "S3cr3t", "cr3tPW-", "s3cr3t"]
            .iter()
            .filter(|needle| text.contains(*needle))
            .map(|n| (*n).to_owned())
            .collect::<Vec<_>>()
    };
    for format in ["text", "json", "markdown"] {
        let plan = Drover::new()
            .args(["plan", "--color", "never", "--format", format])
            .arg_path(s.dir())
            .run()
            .expect_code(0);
        assert!(
            leaks(&plan.stdout()).is_empty(),
            "{format}: {}",
            plan.stdout()
        );
    }
    let (run, report) = s.apply_with_report();
    let run = run.expect_code(0);
    let everything = format!("{}{}{report}", run.stdout(), run.stderr());
    assert!(leaks(&everything).is_empty(), "{everything}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(s.file("conf")).unwrap().permissions(),
    ) & 0o777;
    assert_eq!(
        mode, 0o600,
        "a file holding a derived secret is the owner's only"
    );
    let state = std::fs::read(s.dir().join(".drover/state.redb")).unwrap();
    for needle in ["S3CR3T", "S3cr3t", "cr3tPW", "s3cr3t"] {
        assert!(
            !state.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} reached the state file"
        );
    }
    let shown = Drover::new()
        .args(["state", "show", "box/app/named", "--dir"])
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    assert!(leaks(&shown.stdout()).is_empty(), "{}", shown.stdout());
}

#[test]
fn a_become_sudo_refuses_fails_at_once_and_is_not_retried() {
    if std::process::Command::new("sudo")
        .arg("-V")
        .output()
        .is_err()
    {
        eprintln!("skipped: no sudo on this machine to refuse a become");
        return;
    }
    // A user this machine does not have: sudo refuses in words that are not its password
    // message. The refusal is known from the exit status of `sudo -n true`, so both tasks
    // fail as `become` refusals on their first attempt, retries or not.
    let area = crate::harness::Area::new(
        "    - {name: cmd, become: drover-nosuch, run: \"touch {{ dir }}/cmd\", retries: {attempts: 3, backoff: 1s}}\n\
         \x20   - {name: file, become: drover-nosuch, file: {path: \"{{ dir }}/file\", content: \"x\\n\"}, retries: {attempts: 3, backoff: 1s}}\n",
    );
    let (run, report) = area.apply(&[]);
    let run = run.expect_code(1);
    let text = format!("{}{}", run.stdout(), run.stderr());
    assert!(
        text.contains("`sudo -n` would not run commands as drover-nosuch")
            && text.contains("NOPASSWD"),
        "{text}"
    );
    for instance in report["instances"].as_array().unwrap() {
        assert_eq!(instance["status"], "failed", "{report:#}");
        assert_eq!(instance["attempts"], 1, "{report:#}");
        assert!(
            instance["error"]
                .as_str()
                .is_some_and(|e| e.contains("would not run commands as drover-nosuch")),
            "{report:#}"
        );
    }
    assert!(!area.path("cmd").exists() && !area.path("file").exists());
}

#[test]
fn an_unreadable_ssh_config_does_not_stop_local_hosts_and_is_named_for_ssh_ones() {
    // A `~/.ssh/config` that exists but cannot be read (here a directory, which even root
    // cannot read as a file) concerns SSH hosts only.
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".ssh/config")).unwrap();
    let area = crate::harness::Area::new("    - {name: a, run: \"touch {{ dir }}/a\"}\n");
    Drover::new()
        .args(["apply", "--auto-approve", "--color", "never"])
        .arg_path(area.manifests.path())
        .env("HOME", &home.path().display().to_string())
        .run()
        .expect_code(0);
    assert!(area.path("a").exists());
    // An SSH host in the same run cannot be reached, and says why.
    let hosts = area.manifests.path().join("hosts.yaml");
    let mut yaml = std::fs::read_to_string(&hosts).unwrap();
    yaml.push_str(
        "---\napiVersion: drover/v1\nkind: Host\nmetadata: {name: far}\nspec: {address: 127.0.0.1, port: 1, vars: {dir: /nonexistent}}\n",
    );
    std::fs::write(&hosts, yaml).unwrap();
    let app = area.manifests.path().join("app.yaml");
    let workflow = std::fs::read_to_string(&app)
        .unwrap()
        .replace("names: [box]", "names: [box, far]");
    std::fs::write(&app, workflow).unwrap();
    let run = Drover::new()
        .args(["apply", "--auto-approve", "--color", "never"])
        .arg_path(area.manifests.path())
        .env("HOME", &home.path().display().to_string())
        .run()
        .expect_code(1);
    assert!(
        run.stdout().contains("far/app/a failed") && run.stdout().contains(".ssh/config"),
        "{}{}",
        run.stdout(),
        run.stderr()
    );
}

#[test]
fn a_file_whose_directory_is_missing_says_which_and_what_to_do() {
    let area = crate::harness::Area::new(
        "    - {name: f, file: {path: \"{{ dir }}/none/f\", content: \"x\\n\"}}\n",
    );
    let (run, report) = area.apply(&[]);
    run.expect_code(1);
    let error = report["instances"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(
            "/none does not exist: create it first (a directory task that this task needs)"
        ),
        "{report:#}"
    );
}

#[test]
fn a_secret_spelled_out_letter_by_letter_is_masked_whole_and_other_words_are_left_alone() {
    // `| join(' ')` turns a secret into one-letter words: the value is masked whole, but
    // every `3` or `e` elsewhere is not a secret (masking them garbled every message).
    let s = Scratch::new(
        r#"    - name: spell
      run: "echo {{ pw | join(' ') }}; echo status 3 set -e; exit 3"
    - name: halves
      run: "printf '%s\n' {{ pw[0:8] | upper }}:{{ pw[8:] | upper }} | tr : ' '"
"#,
    );
    s.secret_pw("SuperSecretXyz123\n");
    let (run, report) = s.apply_with_report();
    let run = run.expect_code(1);
    let everything = format!("{}{}{report}", run.stdout(), run.stderr());
    assert!(
        !everything.contains("S u p e r") && !everything.contains("SuperSecret"),
        "{everything}"
    );
    // Two values derived side by side stay masked each on its own.
    assert!(
        !everything.contains("SUPERSEC") && !everything.contains("RETXYZ123"),
        "{everything}"
    );
    assert!(
        everything.contains("status 3 set -e") && everything.contains("exited with status 3"),
        "{everything}"
    );
}

#[test]
fn the_undo_of_a_task_whose_host_left_the_manifests_is_planned_as_failing_as_it_does() {
    let s = Scratch::new(
        "    - {name: scratch, run: \"touch {{ dir }}/s\", undo: \"rm -f {{ dir }}/s\"}\n",
    );
    s.apply().expect_code(0);
    // The host goes (another takes its place), and its task with it.
    for (file, from, to) in [
        ("hosts.yaml", "name: box", "name: other"),
        ("app.yaml", "[box]", "[other]"),
    ] {
        let path = s.dir().join(file);
        let text = std::fs::read_to_string(&path).unwrap().replace(from, to);
        std::fs::write(&path, text).unwrap();
    }
    let app = s.dir().join("app.yaml");
    let text = std::fs::read_to_string(&app).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("name: scratch"))
        .collect();
    std::fs::write(
        &app,
        format!(
            "{}\n    - {{name: other, run: \"true\"}}\n",
            kept.join("\n")
        ),
    )
    .unwrap();
    let plan = Drover::new()
        .args(["plan", "--color", "never"])
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    assert!(
        plan.stdout()
            .contains("its host is gone from the manifests: its undo cannot run"),
        "{}",
        plan.stdout()
    );
    let (run, report) = s.apply_with_report();
    run.expect_code(1);
    let removal = report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "box/app/scratch")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(removal["status"], "failed", "{report:#}");
    assert!(s.file("s").exists(), "the undo did not run");
}

#[test]
fn a_stale_trigger_in_a_saved_plan_skips_what_needs_it() {
    let tasks = |a: &str, b: &str, c: &str| {
        format!(
            "    - {{name: a, file: {{path: \"{{{{ dir }}}}/a\", content: \"{a}\\n\"}}}}\n\
             \x20   - {{name: b, triggeredBy: [a], run: \"echo {b} >> {{{{ dir }}}}/b\"}}\n\
             \x20   - {{name: c, needs: [b], file: {{path: \"{{{{ dir }}}}/c\", content: \"{c}\\n\"}}}}\n"
        )
    };
    let s = Scratch::new(&tasks("a1", "b", "c1"));
    s.apply().expect_code(0);
    s.write(&tasks("a2", "b", "c2"));
    let saved = s.area.path().join("p.plan");
    Drover::new()
        .args(["plan", "-o"])
        .arg_path(&saved)
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    // The trigger's own command changes after the plan was saved: it is stale, so what
    // needs it must not run (its reasons still gate it as the plan said).
    s.write(&tasks("a2", "B", "c2"));
    let run = Drover::new()
        .args(["apply", "--color", "never"])
        .arg_path(&saved)
        .run()
        .expect_code(1);
    assert!(
        run.stderr().contains("box/app/b is stale"),
        "{}",
        run.stderr()
    );
    assert_eq!(
        std::fs::read_to_string(s.file("c")).unwrap(),
        "c1\n",
        "{}",
        run.stdout()
    );
}

#[test]
fn show_prints_what_each_task_printed() {
    let s = Scratch::new(
        "    - {name: a, run: \"echo about to fail; echo oops >&2; exit 1\"}\n\
         \x20   - {name: b, run: \"seq 1 15\"}\n",
    );
    s.apply().expect_code(1);
    let show = Drover::new()
        .args(["show", "1", "--color", "never", "--dir"])
        .arg_path(s.dir())
        .run()
        .expect_code(0);
    let text = show.stdout();
    assert!(
        text.contains("      | about to fail\n") && text.contains("      ! oops\n"),
        "{text}"
    );
    assert!(
        text.contains("… 5 earlier lines")
            && text.contains("      | 15\n")
            && !text.contains("      | 5\n"),
        "{text}"
    );
}
