//! `become` over SSH: tasks run as root through `sudo -n`, files get root's ownership, and
//! a sudo that wants a password is a clear error, not a hang.
//!
//! Needs root (to add a sudoers rule for the login user) and `sudo`, which `.ci/run`
//! installs; elsewhere the test says why it did nothing.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::process::Command;

use crate::fleet::{Fleet, LOGIN_USER};

/// The shared fleet when its login user can `become: root` through sudo; otherwise says why
/// the calling test is skipped and gives `None`.
pub fn fleet_with_sudo() -> Option<&'static Fleet> {
    let fleet = Fleet::shared();
    if fleet.user() != LOGIN_USER || !sudoers() {
        eprintln!("skipped: needs root and sudo to give {LOGIN_USER} a sudoers rule");
        return None;
    }
    Some(fleet)
}

/// The rules: the login user may become root without a password, but `nobody` only with one.
pub fn sudoers() -> bool {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !is_root || Command::new("sudo").arg("-V").output().is_err() {
        return false;
    }
    let path = std::path::Path::new("/etc/sudoers.d/drover-e2e");
    let rules = format!("{LOGIN_USER} ALL=(root) NOPASSWD: ALL\n{LOGIN_USER} ALL=(nobody) ALL\n");
    if std::fs::read_to_string(path).ok().as_deref() != Some(rules.as_str()) {
        let staged =
            std::env::temp_dir().join(format!("drover-e2e-sudoers-{}", std::process::id()));
        std::fs::write(&staged, &rules).unwrap();
        let valid = Command::new("visudo")
            .arg("-cf")
            .arg(&staged)
            .output()
            .unwrap();
        assert!(
            valid.status.success(),
            "{}",
            String::from_utf8_lossy(&valid.stderr)
        );
        std::fs::copy(&staged, path).unwrap();
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o440))
            .unwrap();
        let _ = std::fs::remove_file(staged);
    }
    true
}

/// `drover apply` on `dir`: whether it succeeded, and everything it printed.
fn apply(dir: &std::path::Path) -> (bool, String) {
    let (ok, text, _) = apply_with_report(dir);
    (ok, text)
}

/// `drover apply --report` on `dir`: whether it succeeded, everything it printed, and the
/// report.
fn apply_with_report(dir: &std::path::Path) -> (bool, String, serde_json::Value) {
    let report = dir.join("report.json");
    let _ = std::fs::remove_file(&report);
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["apply", "--auto-approve", "--color", "never", "--report"])
        .arg(&report)
        .arg(dir)
        .output()
        .unwrap();
    let report = std::fs::read_to_string(&report).map_or(serde_json::Value::Null, |text| {
        serde_json::from_str(&text).unwrap()
    });
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        report,
    )
}

#[test]
fn become_root_runs_tasks_and_owns_files_and_a_password_prompt_is_an_error() {
    let fleet = Fleet::shared();
    if fleet.user() != LOGIN_USER || !sudoers() {
        eprintln!("become over SSH not checked: needs root and sudo to set up a sudoers rule");
        return;
    }
    let root = fleet.host(0).root.join("become");
    let dir = tempfile::tempdir().unwrap();
    let workflow = format!(
        "apiVersion: drover/v1\nkind: Workflow\nmetadata: {{name: app}}\nspec:\n  hosts: {{matchLabels: {{index: \"1\"}}}}\n  tasks:\n\
         \x20   - {{name: dir, run: {{command: \"mkdir -p {r}\", creates: \"{r}\"}}}}\n\
         \x20   - {{name: whoami, needs: [dir], become: root, run: \"id -u > {r}/uid\"}}\n\
         \x20   - {{name: secret, needs: [dir], become: root, file: {{path: \"{r}/secret\", content: \"x\\n\", mode: \"0600\", owner: root}}}}\n",
        r = root.display()
    );
    fleet.manifests(dir.path(), &workflow);
    let (ok, text) = apply(dir.path());
    assert!(ok, "{text}");
    assert_eq!(std::fs::read_to_string(root.join("uid")).unwrap(), "0\n");
    assert_eq!(
        std::fs::metadata(root.join("secret")).unwrap().uid(),
        0,
        "written as root, owned by root"
    );
    // Becoming a user sudo guards with a password fails at once, saying so.
    let workflow = workflow.replace("become: root, run: \"id -u", "become: nobody, run: \"id -u");
    fleet.manifests(dir.path(), &workflow);
    let (ok, text) = apply(dir.path());
    assert!(
        !ok && text.contains("would not run commands as nobody") && text.contains("NOPASSWD"),
        "{text}"
    );
}

#[test]
fn a_become_sudo_refuses_fails_once_on_either_path_without_a_retry() {
    let Some(fleet) = fleet_with_sudo() else {
        return;
    };
    // A user the host does not have: sudo refuses with other words than its password
    // message, which used to pass for a lost shell (and be retried) or for a failed script.
    // The refusal is known from sudo's exit status, whatever it says and in whatever
    // language, on the shell path (a command) and on the one-off path (a file too big to
    // travel inside a shell's input).
    let root = fleet.host(0).root.join("become-refused");
    let dir = tempfile::tempdir().unwrap();
    let big = "x".repeat(80 * 1024);
    let workflow = format!(
        "apiVersion: drover/v1\nkind: Workflow\nmetadata: {{name: app}}\nspec:\n  hosts: {{matchLabels: {{index: \"1\"}}}}\n  tasks:\n\
         \x20   - {{name: dir, run: {{command: \"mkdir -p {r}\", creates: \"{r}\"}}}}\n\
         \x20   - {{name: cmd, needs: [dir], become: drover-nosuch, run: \"touch {r}/cmd\", retries: {{attempts: 3, backoff: 1s}}}}\n\
         \x20   - {{name: big, needs: [dir], become: drover-nosuch, file: {{path: \"{r}/big\", content: \"{big}\"}}, retries: {{attempts: 3, backoff: 1s}}}}\n",
        r = root.display()
    );
    fleet.manifests(dir.path(), &workflow);
    let (ok, text, report) = apply_with_report(dir.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains("would not run commands as drover-nosuch"),
        "{text}"
    );
    for name in ["cmd", "big"] {
        let instance = report["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| {
                i["id"]
                    .as_str()
                    .is_some_and(|id| id.ends_with(&format!("/{name}")))
            })
            .unwrap_or_else(|| panic!("no {name} in {report}"));
        assert_eq!(instance["status"], "failed", "{name}: {report}");
        assert_eq!(instance["attempts"], 1, "{name} was retried: {report}");
        assert!(
            instance["error"]
                .as_str()
                .is_some_and(|e| e.contains("would not run commands as drover-nosuch")),
            "{name}: {report}"
        );
    }
    assert!(!root.join("cmd").exists() && !root.join("big").exists());
}

#[test]
fn shells_of_two_users_stay_within_the_hosts_session_limit() {
    let Some(fleet) = fleet_with_sudo() else {
        return;
    };
    // Eight tasks as the login user at once leave eight idle shells; eight tasks as root
    // then need shells of their own. sshd allows 10 sessions per connection: idle shells of
    // one user must make way for another's, or the root tasks are refused channels.
    let root = fleet.host(0).root.join("two-users");
    let dir = tempfile::tempdir().unwrap();
    let mut tasks = format!(
        "    - {{name: dir, run: {{command: \"mkdir -p {r}\", creates: \"{r}\"}}}}\n",
        r = root.display()
    );
    let logins: Vec<String> = (1..=8).map(|i| format!("l{i}")).collect();
    for l in &logins {
        let _ = writeln!(
            tasks,
            "    - {{name: {l}, needs: [dir], run: \"sleep 0.3\"}}"
        );
    }
    for i in 1..=8 {
        let _ = writeln!(
            tasks,
            "    - {{name: r{i}, needs: [{}], become: root, run: \"sleep 0.3; touch {}/r{i}\"}}",
            logins.join(", "),
            root.display()
        );
    }
    let workflow = format!(
        "apiVersion: drover/v1\nkind: Workflow\nmetadata: {{name: app}}\nspec:\n  hosts: {{matchLabels: {{index: \"1\"}}}}\n  tasks:\n{tasks}"
    );
    fleet.manifests(dir.path(), &workflow);
    let (ok, text) = apply(dir.path());
    assert!(ok, "{text}");
    for i in 1..=8 {
        assert!(
            root.join(format!("r{i}")).exists(),
            "r{i} did not run\n{text}"
        );
    }
}

#[test]
fn a_login_whose_shell_refuses_to_start_fails_once_without_a_retry() {
    let fleet = Fleet::shared();
    if fleet.user() != LOGIN_USER {
        eprintln!("skipped: needs the fleet's sshd to run as root to log in as another user");
        return;
    }
    // `nobody` logs in with the fleet's key, but its shell is nologin: the session ends
    // before the remote shell is ready, every time. That is the host refusing, not a lost
    // connection: one attempt, whatever `retries` says.
    let dir = tempfile::tempdir().unwrap();
    fleet.manifests(
        dir.path(),
        "apiVersion: drover/v1\nkind: Workflow\nmetadata: {name: app}\nspec:\n  hosts: {matchLabels: {index: \"1\"}}\n  tasks:\n\
         \x20   - {name: t, run: \"true\", retries: {attempts: 3, backoff: 1s}}\n",
    );
    let hosts = dir.path().join("hosts.yaml");
    let yaml: String = std::fs::read_to_string(&hosts)
        .unwrap()
        .lines()
        .map(|line| {
            if line.starts_with("  user: ") {
                "  user: nobody\n".to_owned()
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    std::fs::write(&hosts, yaml).unwrap();
    let (ok, text, report) = apply_with_report(dir.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains("cannot log in to a shell on host-1")
            && text.contains("the login shell ended before it ran anything (exit status 1)")
            && text.contains("This account is currently not available"),
        "{text}"
    );
    assert_eq!(report["instances"][0]["attempts"], 1, "{report}");
}
