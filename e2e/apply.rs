//! `drover apply` over SSH against the fleet: converge four hosts, a no-op that opens zero
//! connections, an edit that runs only what it changes, a host down, a connection cut
//! mid-task, a wrong host key, a timeout that kills the remote process group, and `kill -9`
//! mid-apply followed by a re-apply of exactly the unfinished instances.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::fleet::{Fleet, poll};

/// A manifest directory for one scenario; its tasks write under `{{ root }}/<tag>/` on
/// each host, so scenarios sharing the fleet never touch each other's files.
struct Scenario {
    dir: tempfile::TempDir,
    tag: String,
}

impl Scenario {
    fn new(fleet: &Fleet, tag: &str, tasks: &str) -> Scenario {
        let scenario = Scenario {
            dir: tempfile::tempdir().unwrap(),
            tag: tag.to_owned(),
        };
        scenario.write(fleet, tasks, None);
        scenario
    }

    fn write(&self, fleet: &Fleet, tasks: &str, known_hosts: Option<&Path>) {
        let workflow = format!(
            "apiVersion: drover/v1\nkind: Workflow\nmetadata: {{name: app}}\nspec:\n  hosts: {{matchLabels: {{role: web}}}}\n  tasks:\n    - {{name: workdir, run: {{command: \"mkdir -p @\", creates: \"@\"}}}}\n{tasks}"
        )
        .replace('@', &format!("{{{{ root }}}}/{}", self.tag));
        match known_hosts {
            Some(path) => fleet.manifests_with_known_hosts(self.dir.path(), &workflow, path),
            None => fleet.manifests(self.dir.path(), &workflow),
        }
    }

    fn path(&self, fleet: &Fleet, host: usize, file: &str) -> PathBuf {
        fleet.host(host).root.join(&self.tag).join(file)
    }

    fn drover(&self, args: &[&str]) -> Output {
        let report = self.dir.path().join("report.json");
        let _ = std::fs::remove_file(&report);
        Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(args)
            .args(["--color", "never"])
            .arg(self.dir.path())
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .unwrap()
    }

    fn apply(&self) -> (Output, serde_json::Value) {
        let report = self.dir.path().join("report.json");
        let out = self.drover(&[
            "apply",
            "--auto-approve",
            "--report",
            report.to_str().unwrap(),
        ]);
        let value = std::fs::read_to_string(&report).map_or(serde_json::Value::Null, |t| {
            serde_json::from_str(&t).unwrap()
        });
        (out, value)
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn statuses(report: &serde_json::Value) -> Vec<String> {
    let mut all: Vec<String> = report["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    format!(
                        "{} {}",
                        i["id"].as_str().unwrap_or_default(),
                        i["status"].as_str().unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    all.sort();
    all
}

const SITE: &str = r#"    - name: config
      needs: [workdir]
      file: {path: "@/app.conf", content: "listen {{ host.labels.index }}\n", mode: "0640"}
    - name: reload
      triggeredBy: [config]
      run: echo reloaded >> @/reloads.log
    - name: hostname
      needs: [workdir]
      run: {command: "echo {{ host.name }} > @/name", creates: "@/name"}
"#;

#[test]
fn four_hosts_converge_then_a_no_op_opens_zero_connections() {
    let fleet = Fleet::shared();
    let s = Scenario::new(fleet, "converge", SITE);
    let (out, report) = s.apply();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(report["status"], "succeeded");
    for i in 0..fleet.len() {
        assert_eq!(
            std::fs::read_to_string(s.path(fleet, i, "app.conf")).unwrap(),
            format!("listen {}\n", i + 1)
        );
        assert_eq!(
            std::fs::read_to_string(s.path(fleet, i, "reloads.log")).unwrap(),
            "reloaded\n"
        );
    }
    assert_eq!(
        report["contacts"]["connections"].as_u64(),
        Some(fleet.len() as u64),
        "one connection per host"
    );
    let (out, report) = s.apply();
    assert!(
        out.status.success() && text(&out).contains("No changes"),
        "{}",
        text(&out)
    );
    assert_eq!(
        report["contacts"],
        serde_json::json!({"connections": 0, "channels": 0, "commands": 0, "filesWritten": 0, "filesRead": 0})
    );
}

#[test]
fn an_edited_template_runs_only_that_instance_and_its_trigger() {
    let fleet = Fleet::shared();
    let s = Scenario::new(fleet, "edit", SITE);
    let (out, _) = s.apply();
    assert!(out.status.success(), "{}", text(&out));
    // Only host 2's config changes: its label feeds the template.
    s.write(
        fleet,
        &SITE.replace(
            "listen {{ host.labels.index }}",
            "listen {% if host.name == 'host-2' %}9999{% else %}{{ host.labels.index }}{% endif %}",
        ),
        None,
    );
    let (out, report) = s.apply();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        statuses(&report),
        ["host-2/app/config changed", "host-2/app/reload changed"]
    );
    assert_eq!(
        std::fs::read_to_string(s.path(fleet, 1, "reloads.log")).unwrap(),
        "reloaded\nreloaded\n"
    );
    assert_eq!(
        std::fs::read_to_string(s.path(fleet, 0, "reloads.log")).unwrap(),
        "reloaded\n"
    );
}

#[test]
fn a_chain_sent_ahead_stops_on_the_host_at_a_failure_and_what_followed_never_runs() {
    let fleet = Fleet::shared();
    // Ten one-operation tasks in a chain; the fifth fails on host-2 only. Everything behind
    // it was sent ahead through the same shell, and must not have run there.
    let mut tasks: Vec<String> = Vec::new();
    for i in 1..=10 {
        let needs = if i == 1 {
            "workdir".to_owned()
        } else {
            format!("t{}", i - 1)
        };
        let command = if i == 5 {
            "test {{ host.name }} != host-2 && echo 5 >> @/order".to_owned()
        } else {
            format!("echo {i} >> @/order")
        };
        tasks.push(format!(
            "    - {{name: t{i}, needs: [{needs}], run: \"{command}\"}}\n"
        ));
    }
    let s = Scenario::new(fleet, "ahead", &tasks.concat());
    let (out, report) = s.apply();
    assert!(!out.status.success(), "{}", text(&out));
    let all = (1..=10)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    assert_eq!(
        std::fs::read_to_string(s.path(fleet, 0, "order")).unwrap(),
        all
    );
    assert_eq!(
        std::fs::read_to_string(s.path(fleet, 1, "order")).unwrap(),
        "1\n2\n3\n4\n",
        "a task behind the failure ran on host-2"
    );
    let host2: Vec<String> = statuses(&report)
        .into_iter()
        .filter(|l| l.starts_with("host-2/app/t"))
        .collect();
    let mut expected: Vec<String> = (1..=10)
        .map(|i| {
            let status = match i {
                1..=4 => "changed",
                5 => "failed",
                _ => "skipped",
            };
            format!("host-2/app/t{i} {status}")
        })
        .collect();
    expected.sort();
    assert_eq!(host2, expected);
}

#[test]
fn a_shell_lost_under_a_chain_fails_what_waited_behind_and_retries_none_of_it() {
    let fleet = Fleet::shared();
    // t1 kills its own remote shell (its parent, or the helper's parent); t2..t4 may have
    // been sent ahead behind it. t2 has retries, but whether it ran is unknown once the shell
    // is gone: it fails without a retry (a retry could run it past a failed t1), or, not
    // sent yet, is skipped for t1. Nothing behind t1 runs.
    let kill = "p=$PPID; [ \\\"$(cat /proc/$p/comm)\\\" = perl ] && p=$(cut -d\\\" \\\" -f4 /proc/$p/stat); kill -9 $p";
    let tasks = format!(
        "    - {{name: t1, needs: [workdir], run: \"{kill}\"}}\n\
         \x20   - {{name: t2, needs: [t1], run: \"echo 2 >> @/order\", retries: {{attempts: 3, backoff: 1s}}}}\n\
         \x20   - {{name: t3, needs: [t2], run: \"echo 3 >> @/order\"}}\n\
         \x20   - {{name: t4, needs: [t3], run: \"echo 4 >> @/order\"}}\n"
    );
    let s = Scenario::new(fleet, "lost-ahead", &tasks);
    let (out, report) = s.apply();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        !s.path(fleet, 0, "order").exists(),
        "a task behind the lost one ran: {}",
        text(&out)
    );
    let host1: Vec<&serde_json::Value> = report["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| {
            i["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("host-1/app/t"))
        })
        .collect();
    assert_eq!(host1.len(), 4, "{report}");
    for instance in host1 {
        let (id, status) = (
            instance["id"].as_str().unwrap_or_default(),
            instance["status"].as_str().unwrap_or_default(),
        );
        if id.ends_with("/t1") {
            assert_eq!(status, "failed", "{report}");
        } else {
            assert!(matches!(status, "failed" | "skipped"), "{id} {status}");
        }
        assert!(
            instance["attempts"].as_u64().unwrap_or(0) <= 1,
            "{id} was retried: {report}"
        );
    }
}

#[test]
fn a_task_sent_behind_a_retried_task_waits_for_its_verdict_and_is_skipped_when_it_fails() {
    let fleet = Fleet::shared();
    // p's first attempt kills its own shell; its retry runs in another shell, an idle one
    // that x1..x4 left behind (its first operations all exited 0). z ends once that retry has
    // begun, so s (needs p and z) is sent behind p then. The retry fails: s must not run, in
    // whichever shell it would have gone to.
    let kill = "p=$PPID; [ \\\"$(cat /proc/$p/comm)\\\" = perl ] && p=$(cut -d\\\" \\\" -f4 /proc/$p/stat); kill -9 $p";
    let tasks = format!(
        "    - {{name: p, needs: [workdir], run: \"if [ -e @/p1 ]; then touch @/p2; sleep 2; exit 1; fi; touch @/p1; {kill}\", retries: {{attempts: 2, backoff: 1s}}}}\n\
         \x20   - {{name: x1, needs: [workdir], run: \"true\"}}\n\
         \x20   - {{name: x2, needs: [x1], run: \"true\"}}\n\
         \x20   - {{name: x3, needs: [x2], run: \"true\"}}\n\
         \x20   - {{name: x4, needs: [x3], run: \"true\"}}\n\
         \x20   - {{name: z, needs: [workdir], run: \"while [ ! -e @/p2 ]; do sleep 0.05; done\", timeout: 60s}}\n\
         \x20   - {{name: s, needs: [p, z], run: \"touch @/s_ran\"}}\n"
    );
    let s = Scenario::new(fleet, "stale-gate", &tasks);
    let (out, report) = s.apply();
    assert!(!out.status.success(), "{}", text(&out));
    for h in 0..fleet.len() {
        assert!(
            !s.path(fleet, h, "s_ran").exists(),
            "s ran on host {} although p failed: {}",
            h + 1,
            text(&out)
        );
    }
    let host1: Vec<String> = statuses(&report)
        .into_iter()
        .filter(|l| l.starts_with("host-1/app/p ") || l.starts_with("host-1/app/s "))
        .collect();
    assert_eq!(host1, ["host-1/app/p failed", "host-1/app/s skipped"]);
}

#[test]
fn a_wrong_host_key_is_refused_and_nothing_is_applied_there() {
    let fleet = Fleet::shared();
    let s = Scenario::new(fleet, "wrong-key", SITE);
    s.write(fleet, SITE, Some(&fleet.wrong_known_hosts()));
    let (out, report) = s.apply();
    assert!(!out.status.success());
    let all = text(&out);
    assert!(all.contains("CHANGED since it was recorded"), "{all}");
    // Exactly the host whose entry is wrong fails; its files were never written.
    let failed: Vec<String> = statuses(&report)
        .into_iter()
        .filter(|s| s.ends_with("failed"))
        .collect();
    assert!(!failed.is_empty(), "{report}");
    let refused = failed[0].split('/').next().unwrap().to_owned();
    let index: usize = refused
        .trim_start_matches("host-")
        .parse::<usize>()
        .unwrap()
        - 1;
    assert!(!s.path(fleet, index, "app.conf").exists());
}

#[test]
fn a_timeout_kills_the_remote_process_group() {
    let fleet = Fleet::shared();
    let s = Scenario::new(
        fleet,
        "timeout",
        "    - name: slow\n      needs: [workdir]\n      run: sleep 300 & echo $! > @/child.pid; wait\n      timeout: 1s\n",
    );
    let (out, report) = s.apply();
    assert!(!out.status.success());
    assert!(
        statuses(&report)
            .iter()
            .all(|s| !s.contains("slow") || s.ends_with("timedOut")),
        "{report}"
    );
    for i in 0..fleet.len() {
        let pid: u32 = std::fs::read_to_string(s.path(fleet, i, "child.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            poll(|| !Path::new(&format!("/proc/{pid}")).exists()),
            "the remote child {pid} on host {} survived",
            i + 1
        );
    }
}

#[test]
fn kill_9_mid_apply_then_a_re_apply_runs_exactly_the_unfinished_instances() {
    let fleet = Fleet::shared();
    let s = Scenario::new(
        fleet,
        "kill9",
        "    - name: slow\n      needs: [workdir]\n      run: touch @/started; sleep 30\n    - name: after\n      needs: [slow]\n      run: touch @/after\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["apply", "--auto-approve", "--color", "never"])
        .arg(s.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        poll(|| (0..fleet.len()).all(|i| s.path(fleet, i, "started").exists())),
        "the slow tasks never started"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let out = s.drover(&["plan", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut planned: Vec<String> = doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    planned.sort();
    let expected: Vec<String> = (1..=fleet.len())
        .flat_map(|i| [format!("host-{i}/app/after"), format!("host-{i}/app/slow")])
        .collect();
    assert_eq!(
        planned, expected,
        "workdir finished everywhere and is not planned again"
    );
}

#[test]
fn a_host_down_fails_alone_and_the_next_apply_converges_what_is_left() {
    let fleet = Fleet::exclusive(2);
    let s = Scenario::new(&fleet, "down", SITE);
    fleet.stop(1);
    let started = Instant::now();
    let (out, report) = s.apply();
    assert!(!out.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "an unreachable host must not hang the run"
    );
    let all = statuses(&report);
    assert!(
        all.contains(&"host-1/app/config changed".to_owned()),
        "{all:?}"
    );
    assert!(
        all.contains(&"host-2/app/workdir failed".to_owned())
            && all.contains(&"host-2/app/config skipped".to_owned()),
        "{all:?}"
    );
    assert!(
        text(&out).contains("host-2 (127.0.0.1:"),
        "errors name the host: {}",
        text(&out)
    );
    fleet.start(1);
    let (out, report) = s.apply();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        statuses(&report).iter().all(|s| s.starts_with("host-2/")),
        "only what was left runs: {report}"
    );
}

#[test]
fn a_connection_cut_mid_task_fails_cleanly_without_hanging() {
    let fleet = Fleet::exclusive(1);
    let s = Scenario::new(
        &fleet,
        "cut",
        "    - name: slow\n      needs: [workdir]\n      run: touch @/started; sleep 60\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["apply", "--auto-approve", "--color", "never"])
        .arg(s.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        poll(|| s.path(&fleet, 0, "started").exists()),
        "the task never started"
    );
    fleet.stop(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "drover hung after the connection was cut"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        text(&out).contains("host-1/app/slow failed"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_file_whose_directory_is_missing_says_which_and_what_to_do() {
    let fleet = Fleet::shared();
    // Inline (small) and on stdin (large): both ways of writing a file say which directory
    // is missing and what to add, instead of the shell's or mktemp's words.
    let big = "y".repeat(80 * 1024);
    let tasks = format!(
        "    - {{name: small, needs: [workdir], file: {{path: \"@/none/small\", content: \"x\\n\"}}}}\n\
         \x20   - {{name: big, needs: [workdir], file: {{path: \"@/none/big\", content: \"{big}\"}}}}\n"
    );
    let s = Scenario::new(fleet, "no-dir", &tasks);
    let (out, report) = s.apply();
    assert!(!out.status.success(), "{}", text(&out));
    for instance in report["instances"].as_array().into_iter().flatten() {
        let id = instance["id"].as_str().unwrap_or_default();
        if id.ends_with("/small") || id.ends_with("/big") {
            let error = instance["error"].as_str().unwrap_or_default();
            assert!(
                error.contains("/none does not exist, or this user cannot search a directory above it: create it first"),
                "{id}: {error}"
            );
        }
    }
}
