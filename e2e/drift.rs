//! `drover drift` over SSH against the fleet: after an apply, files edited, chmodded and
//! deleted behind drover's back and a failing `check` are found, one round trip per host,
//! and nothing else; `apply --refresh` repairs them and the next check is clean. Files only
//! root can read are probed through `sudo -n`,.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Output};

use crate::fleet::Fleet;

const TASKS: &str = r#"apiVersion: drover/v1
kind: Workflow
metadata: {name: app}
spec:
  hosts: {matchLabels: {role: web}}
  tasks:
    - {name: workdir, run: {command: "mkdir -p @", creates: "@"}}
    - name: config
      needs: [workdir]
      file: {path: "@/app.conf", content: "listen {{ host.labels.index }}\n", mode: "0640"}
    - name: motd
      needs: [workdir]
      file: {path: "@/motd", content: "hello\n"}
    - name: flag
      needs: [workdir]
      run: touch @/flag
      check: test -f @/flag
"#;

/// Runs the binary on `dir` with `args`, without colour or an agent.
pub(crate) fn drover(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .args(["--color", "never"])
        .arg(dir)
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap()
}

/// Standard output and standard error, together.
pub(crate) fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn drift_over_ssh_finds_what_changed_in_one_round_trip_per_host() {
    let fleet = Fleet::shared();
    let dir = tempfile::tempdir().unwrap();
    fleet.manifests(dir.path(), &TASKS.replace('@', "{{ root }}/drift"));
    let out = drover(dir.path(), &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    let path = |host: usize, file: &str| fleet.host(host).root.join("drift").join(file);

    let out = drover(
        dir.path(),
        &["drift", "--format", "json", "--detailed-exitcode"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Host 0: content; host 1: mode; host 2: deleted; host 3: the check fails.
    std::fs::write(path(0, "app.conf"), "listen 99\n").unwrap();
    std::fs::set_permissions(path(1, "app.conf"), std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::remove_file(path(2, "motd")).unwrap();
    std::fs::remove_file(path(3, "flag")).unwrap();

    let out = drover(
        dir.path(),
        &["drift", "--format", "json", "--detailed-exitcode"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    let names: Vec<String> = fleet.hosts().iter().map(|h| h.name.clone()).collect();
    assert_eq!(
        ids,
        [
            format!("{}/app/config", names[0]),
            format!("{}/app/config", names[1]),
            format!("{}/app/motd", names[2]),
            format!("{}/app/flag", names[3]),
        ],
        "{report:#}"
    );
    for host in report["hosts"].as_array().unwrap() {
        assert_eq!(host["roundTrips"], 1, "{report:#}");
    }
    assert_eq!(report["summary"]["probed"], 12);

    let out = drover(dir.path(), &["apply", "--refresh", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("4 changed"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(path(0, "app.conf")).unwrap(),
        "listen 1\n"
    );
    assert!(path(2, "motd").exists() && path(3, "flag").exists());
    let out = drover(dir.path(), &["drift", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn files_only_root_can_read_are_probed_through_sudo() {
    let Some(fleet) = crate::privilege::fleet_with_sudo() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tasks = r#"apiVersion: drover/v1
kind: Workflow
metadata: {name: secret}
spec:
  hosts: {names: [HOST]}
  tasks:
    - name: key
      become: root
      file: {path: "{{ root }}/root-only.key", content: "k\n", mode: "0600", owner: root}
"#
    .replace("HOST", &fleet.host(0).name);
    fleet.manifests(dir.path(), &tasks);
    let out = drover(dir.path(), &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = drover(
        dir.path(),
        &["drift", "--format", "json", "--detailed-exitcode"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    std::fs::write(fleet.host(0).root.join("root-only.key"), "stolen\n").unwrap();
    let out = drover(
        dir.path(),
        &["drift", "--format", "json", "--detailed-exitcode"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let finding = &report["instances"][0]["findings"][0];
    assert!(
        finding["diff"]
            .as_str()
            .unwrap_or_default()
            .contains("+stolen"),
        "{report:#}"
    );
}

#[test]
fn an_unreachable_host_is_reported_as_such_never_as_in_sync() {
    let fleet = Fleet::exclusive(2);
    let dir = tempfile::tempdir().unwrap();
    fleet.manifests(dir.path(), &TASKS.replace('@', "{{ root }}/drift-down"));
    let out = drover(dir.path(), &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    fleet.stop(0);
    let out = drover(
        dir.path(),
        &["drift", "--format", "json", "--detailed-exitcode"],
    );
    fleet.start(0);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let down = &report["hosts"][0];
    assert_eq!(down["roundTrips"], 0, "{report:#}");
    assert!(down["error"].as_str().is_some(), "{report:#}");
    assert_eq!(report["hosts"][1]["roundTrips"], 1, "{report:#}");
    assert_eq!(report["summary"]["unknown"], 3, "{report:#}");
    assert_eq!(report["summary"]["inSync"], 3, "{report:#}");
    let statuses: Vec<&str> = report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["unknown", "unknown", "unknown"], "{report:#}");
}
