//! `directory`, `link`, `line`, `user` and `cron` tasks in one workflow over SSH against the
//! fleet: all converge on the first apply; a forced second apply runs every task again and
//! each reports no change and writes nothing; each is changed behind drover's back (a
//! directory chmodded, a link retargeted, a line edited, a shell changed with `usermod -s`,
//! a cron entry edited), found by `drover drift` in one round trip per host and repaired by
//! `apply --refresh`; then `state: absent` undoes them all.
//!
//! The fleet's hosts are this machine, so `user` and `cron` act on its real `/etc`: the names
//! carry this process's id, homes point under the fleet's temporary roots (never created),
//! and a guard runs `userdel` and removes the cron files even when an assertion fails. They
//! need `become: root` (the fleet logs in as a plain user), so the test needs root and sudo,
//! and `useradd`; without them it says why and does nothing.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::drift::{drover, text};
use crate::fleet::{Fleet, LOGIN_USER};

/// `@` is the directory of a host's tasks, `USER` and `CRON` the account's and the cron
/// entry's names without the host's index.
const PRESENT: &str = r#"apiVersion: drover/v1
kind: Workflow
metadata: {name: kinds}
spec:
  hosts: {matchLabels: {role: web}}
  tasks:
    - name: seed
      run: {command: "mkdir -p @ && printf 'Port 22\\n#PermitRootLogin yes\\n' > @/sshd_config", creates: "@/sshd_config"}
    - name: data
      needs: [seed]
      directory: {path: "@/data", mode: "0750"}
    - name: current
      needs: [data]
      link: {path: "@/current", target: "@/data"}
    - name: root-login
      needs: [seed]
      line: {path: "@/sshd_config", line: "PermitRootLogin no", match: '^#?PermitRootLogin[[:space:]]'}
    - name: account
      become: root
      user: {name: "USER-{{ host.labels.index }}", shell: /bin/sh, home: "@/home", createHome: false, comment: drover e2e}
    - name: job
      become: root
      needs: [account]
      cron: {name: "CRON-{{ host.labels.index }}", schedule: "0 3 1 1 *", command: "true", user: "USER-{{ host.labels.index }}"}
"#;

/// The same tasks made absent; the account goes after the cron entry that names it.
const ABSENT: &str = r#"apiVersion: drover/v1
kind: Workflow
metadata: {name: kinds}
spec:
  hosts: {matchLabels: {role: web}}
  tasks:
    - name: seed
      run: {command: "mkdir -p @ && printf 'Port 22\\n#PermitRootLogin yes\\n' > @/sshd_config", creates: "@/sshd_config"}
    - name: data
      needs: [seed]
      directory: {path: "@/data", state: absent}
    - name: current
      link: {path: "@/current", state: absent}
    - name: root-login
      needs: [seed]
      line: {path: "@/sshd_config", line: "PermitRootLogin no", state: absent}
    - name: job
      become: root
      cron: {name: "CRON-{{ host.labels.index }}", state: absent}
    - name: account
      become: root
      needs: [job]
      user: {name: "USER-{{ host.labels.index }}", state: absent}
"#;

/// Removes what the test made in the machine's `/etc`, whatever happened.
struct Cleanup {
    users: Vec<String>,
    cron_files: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for user in &self.users {
            if Command::new("getent")
                .args(["passwd", user])
                .output()
                .is_ok_and(|o| o.status.success())
            {
                let _ = Command::new("userdel").arg(user).status();
            }
        }
        for file in &self.cron_files {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Why the test cannot run here, if it cannot.
fn unmet_needs(fleet: &Fleet) -> Option<String> {
    let found = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !found("useradd") || !found("usermod") {
        return Some("useradd/usermod are not installed".to_owned());
    }
    if !Path::new("/etc/cron.d").is_dir() {
        return Some("/etc/cron.d does not exist".to_owned());
    }
    if fleet.user() != LOGIN_USER || !crate::privilege::sudoers() {
        return Some(format!(
            "needs root and sudo to give {LOGIN_USER} a sudoers rule for become: root"
        ));
    }
    None
}

/// `apply` with `args`, its JSON run report parsed.
fn apply_report(dir: &Path, args: &[&str]) -> serde_json::Value {
    let report = dir.join("report.json");
    let mut all = vec![
        "apply",
        "--auto-approve",
        "--report",
        report.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let out = drover(dir, &all);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap()
}

/// `id status` per instance of a run report, sorted.
fn statuses(report: &serde_json::Value) -> Vec<String> {
    let mut res: Vec<String> = report["instances"]
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
        .collect();
    res.sort();
    res
}

/// The account's line in the machine's `/etc/passwd`, if any.
fn passwd(user: &str) -> Option<String> {
    let out = Command::new("getent")
        .args(["passwd", user])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn five_kinds_converge_over_ssh_stay_put_drift_repair_and_go_away() {
    let fleet = Fleet::shared();
    if let Some(why) = unmet_needs(fleet) {
        eprintln!("skipped: {why}");
        return;
    }
    let pid = std::process::id();
    let user_stem = format!("drover-e2e-k{pid}");
    let cron_stem = format!("e2e-k{pid}");
    let n = fleet.len();
    let user = |host: usize| format!("{user_stem}-{}", host + 1);
    let cron_file =
        |host: usize| PathBuf::from(format!("/etc/cron.d/drover-{cron_stem}-{}", host + 1));
    let _cleanup = Cleanup {
        users: (0..n).map(user).collect(),
        cron_files: (0..n).map(cron_file).collect(),
    };
    let fill = |yaml: &str| {
        yaml.replace('@', "{{ root }}/kinds")
            .replace("USER", &user_stem)
            .replace("CRON", &cron_stem)
    };
    let base = |host: usize| fleet.host(host).root.join("kinds");
    let names: Vec<String> = fleet.hosts().iter().map(|h| h.name.clone()).collect();
    let dir = tempfile::tempdir().unwrap();
    fleet.manifests(dir.path(), &fill(PRESENT));

    converge(dir.path(), n, &base, &user, &cron_file);
    second_apply_changes_nothing(dir.path(), n);
    drift_and_repair(dir.path(), &base(0), &user(0), &cron_file(0), &names[0]);

    fleet.manifests(dir.path(), &fill(ABSENT));
    let report = apply_report(dir.path(), &[]);
    let mut expected: Vec<String> = names
        .iter()
        .flat_map(|h| {
            ["account", "current", "data", "job", "root-login"]
                .map(|t| format!("{h}/kinds/{t} changed"))
        })
        .collect();
    expected.sort();
    assert_eq!(statuses(&report), expected, "{report:#}");
    for host in 0..n {
        assert!(!base(host).join("data").exists());
        assert!(std::fs::symlink_metadata(base(host).join("current")).is_err());
        assert_eq!(
            std::fs::read_to_string(base(host).join("sshd_config")).unwrap(),
            "Port 22\n"
        );
        assert_eq!(passwd(&user(host)), None);
        assert!(!cron_file(host).exists());
    }
    // Absent is converged too: nothing to do, nothing drifted.
    let report = apply_report(dir.path(), &["--force"]);
    assert!(
        statuses(&report).iter().all(|s| s.ends_with(" unchanged")),
        "{report:#}"
    );
    let out = drover(dir.path(), &["drift", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// The first apply: every task changes every host.
fn converge(
    dir: &Path,
    n: usize,
    base: &dyn Fn(usize) -> PathBuf,
    user: &dyn Fn(usize) -> String,
    cron_file: &dyn Fn(usize) -> PathBuf,
) {
    let report = apply_report(dir, &[]);
    let changed = report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "changed")
        .count();
    assert_eq!(changed, 6 * n, "{report:#}");
    for host in 0..n {
        let data = base(host).join("data");
        assert_eq!(
            std::fs::metadata(&data).unwrap().permissions().mode() & 0o7777,
            0o750
        );
        assert_eq!(
            std::fs::read_link(base(host).join("current")).unwrap(),
            data
        );
        assert_eq!(
            std::fs::read_to_string(base(host).join("sshd_config")).unwrap(),
            "Port 22\nPermitRootLogin no\n"
        );
        let account = passwd(&user(host)).unwrap_or_default();
        assert!(
            account.ends_with(&format!(
                ":drover e2e:{}:/bin/sh",
                base(host).join("home").display()
            )),
            "{account}"
        );
        assert!(!base(host).join("home").exists(), "createHome: false");
        let entry = std::fs::read_to_string(cron_file(host)).unwrap();
        assert!(
            entry.contains(&format!("0 3 1 1 * {} true\n", user(host))),
            "{entry}"
        );
    }
}

/// A plain second apply contacts nobody; a forced one runs every task again, and each looks,
/// finds the host as desired and writes nothing.
fn second_apply_changes_nothing(dir: &Path, n: usize) {
    let report = apply_report(dir, &[]);
    assert_eq!(
        report["instances"].as_array().unwrap().len(),
        0,
        "{report:#}"
    );
    assert_eq!(report["contacts"]["commands"], 0, "{report:#}");
    assert_eq!(report["contacts"]["connections"], 0, "{report:#}");

    let report = apply_report(dir, &["--force"]);
    let instances = report["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 6 * n, "{report:#}");
    for instance in instances {
        assert_eq!(instance["status"], "unchanged", "{report:#}");
    }
    assert_eq!(report["contacts"]["filesWritten"], 0, "{report:#}");
    // One script per task of the five kinds, which looked and wrote nothing (the `run`
    // task's `creates` is a file read).
    assert_eq!(
        report["contacts"]["commands"].as_u64(),
        Some(u64::try_from(5 * n).unwrap()),
        "{report:#}"
    );
    let out = drover(dir, &["drift", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// Host 0's five managed things changed behind drover's back, found, and repaired.
fn drift_and_repair(dir: &Path, base: &Path, user: &str, cron_file: &Path, host: &str) {
    std::fs::set_permissions(base.join("data"), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::remove_file(base.join("current")).unwrap();
    std::os::unix::fs::symlink("/tmp", base.join("current")).unwrap();
    std::fs::write(base.join("sshd_config"), "Port 22\nPermitRootLogin yes\n").unwrap();
    let usermod = Command::new("usermod")
        .args(["-s", "/bin/false", user])
        .status()
        .unwrap();
    assert!(usermod.success());
    let entry = std::fs::read_to_string(cron_file).unwrap();
    std::fs::write(cron_file, entry.replace("0 3 1 1 *", "*/5 * * * *")).unwrap();

    let out = drover(dir, &["drift", "--format", "json", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut found: Vec<String> = report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let f = &i["findings"][0];
            format!(
                "{} {} {}",
                i["id"].as_str().unwrap(),
                f["kind"].as_str().unwrap_or_default(),
                f["field"].as_str().unwrap_or_default()
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            format!("{host}/kinds/account attribute shell"),
            format!("{host}/kinds/current attribute target"),
            format!("{host}/kinds/data attribute mode"),
            format!("{host}/kinds/job content "),
            format!("{host}/kinds/root-login edit "),
        ],
        "{report:#}"
    );
    for probed in report["hosts"].as_array().unwrap() {
        assert_eq!(probed["roundTrips"], 1, "{report:#}");
    }

    let report = apply_report(dir, &["--refresh"]);
    assert_eq!(
        statuses(&report),
        ["account", "current", "data", "job", "root-login"]
            .map(|t| format!("{host}/kinds/{t} changed")),
        "{report:#}"
    );
    assert!(passwd(user).unwrap_or_default().ends_with(":/bin/sh"));
    assert_eq!(
        std::fs::read_link(base.join("current")).unwrap(),
        base.join("data")
    );
    let out = drover(dir, &["drift", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
