//! The fleet harness checked with the OpenSSH client alone: logins, host roots, stop and
//! start, host-key refusals, manifests, and teardown.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::fleet::{Fleet, poll, processes_mentioning};

/// Runs `command` on host `i` with the OpenSSH client.
fn ssh(fleet: &Fleet, i: usize, known_hosts: &Path, command: &str) -> Output {
    fleet.openssh(i, known_hosts).arg(command).output().unwrap()
}

#[track_caller]
fn assert_login(fleet: &Fleet, i: usize, known_hosts: &Path) {
    let output = ssh(fleet, i, known_hosts, "echo ok");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "ok\n",
        "ssh to {:?} failed: {}\nsshd log:\n{}",
        fleet.host(i),
        String::from_utf8_lossy(&output.stderr),
        fleet.sshd_log(i)
    );
}

#[track_caller]
fn assert_refused(output: &Output, reasons: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(255), "ssh should fail: {stderr}");
    assert!(output.stdout.is_empty());
    for reason in reasons {
        assert!(
            stderr.contains(reason),
            "{reason:?} not in ssh's stderr: {stderr}"
        );
    }
}

#[test]
fn every_shared_host_accepts_an_openssh_login() {
    let fleet = Fleet::shared();
    std::thread::scope(|scope| {
        for i in 0..fleet.len() {
            scope.spawn(move || assert_login(fleet, i, &fleet.known_hosts()));
        }
    });
}

#[test]
fn shared_hosts_have_their_own_port_key_and_root() {
    let fleet = Fleet::shared();
    let hosts = fleet.hosts();
    let names: Vec<_> = hosts.iter().map(|host| host.name.as_str()).collect();
    let expected: Vec<_> = (1..=fleet.len()).map(|n| format!("host-{n}")).collect();
    assert_eq!(names, expected);
    assert!(fleet.dir().starts_with(std::env::temp_dir()));
    let known_hosts = std::fs::read_to_string(fleet.known_hosts()).unwrap();
    let lines: Vec<_> = known_hosts.lines().collect();
    assert_eq!(lines.len(), fleet.len());
    for (host, line) in hosts.iter().zip(&lines) {
        assert!(host.pid.is_some());
        assert!(host.root.is_dir());
        assert!(line.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 AAAA", host.port)));
    }
    let distinct = |values: Vec<String>| {
        let n = values.len();
        values
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            == n
    };
    assert!(distinct(
        hosts.iter().map(|host| host.port.to_string()).collect()
    ));
    assert!(distinct(
        hosts
            .iter()
            .map(|host| host.root.display().to_string())
            .collect()
    ));
    assert!(distinct(
        lines
            .iter()
            .map(|line| line.split(' ').nth(2).unwrap().to_owned())
            .collect()
    ));
}

#[test]
fn login_user_writes_under_its_host_root() {
    let fleet = Fleet::shared();
    let host = fleet.host(fleet.len() - 1);
    let dir = host.root.join("login_user_writes_under_its_host_root");
    let probe = dir.join("probe");
    let command = format!(
        "id -un && mkdir -p '{}' && echo written > '{}'",
        dir.display(),
        probe.display()
    );
    let output = ssh(fleet, fleet.len() - 1, &fleet.known_hosts(), &command);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("{}\n", fleet.user()),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(std::fs::read_to_string(&probe).unwrap(), "written\n");
}

#[test]
fn openssh_refuses_a_host_whose_key_differs_from_known_hosts() {
    let fleet = Fleet::shared();
    let output = ssh(fleet, 0, &fleet.wrong_known_hosts(), "echo ok");
    assert_refused(
        &output,
        &[
            "REMOTE HOST IDENTIFICATION HAS CHANGED",
            "Host key verification failed.",
        ],
    );
    // Only host-1's entry is wrong.
    if fleet.len() > 1 {
        assert_login(fleet, 1, &fleet.wrong_known_hosts());
    }
}

#[test]
fn openssh_refuses_a_host_missing_from_known_hosts() {
    let fleet = Fleet::shared();
    let output = ssh(fleet, 0, &fleet.empty_known_hosts(), "echo ok");
    assert_refused(
        &output,
        &[
            "No ED25519 host key is known",
            "Host key verification failed.",
        ],
    );
}

#[test]
fn stopped_host_drops_its_sessions_and_restarts_with_the_same_port_and_key() {
    let fleet = Fleet::exclusive(2);
    let before = fleet.host(0);
    // A session that lasts until the host goes down, and a process it detached from the sshd
    // tree; the marker finds their processes.
    let marker = before.root.join("long-session");
    let mut session = fleet
        .openssh(0, &fleet.known_hosts())
        .arg(format!(
            "setsid -f sh -c 'sleep 3600; : {m}' </dev/null >/dev/null 2>&1; \
             echo ready; sleep 3600; : {m}",
            m = marker.display()
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(session.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready, "ready\n");
    let marker = marker.display().to_string();
    // The ssh client, the remote shell and the detached one (and, for a moment, forks of them).
    // `setsid -f` returns before its child has exec'd: wait for it rather than race it.
    assert!(poll(|| processes_mentioning(&marker).len() >= 3));

    fleet.stop(0);
    assert_eq!(fleet.host(0).pid, None);
    assert!(std::net::TcpStream::connect(("127.0.0.1", before.port)).is_err());
    assert!(
        poll(|| session.try_wait().unwrap().is_some()),
        "the session outlived its host"
    );
    assert!(poll(|| processes_mentioning(&marker).is_empty()));
    assert_refused(
        &ssh(&fleet, 0, &fleet.known_hosts(), "echo ok"),
        &["Connection refused"],
    );
    assert_login(&fleet, 1, &fleet.known_hosts());

    fleet.start(0);
    let after = fleet.host(0);
    assert_eq!(after.port, before.port);
    assert_ne!(after.pid, before.pid);
    assert!(after.pid.is_some());
    assert_login(&fleet, 0, &fleet.known_hosts());
}

#[test]
fn exclusive_fleet_leaves_no_process_or_file_once_dropped() {
    let fleet = Fleet::exclusive(1);
    assert_login(&fleet, 0, &fleet.known_hosts());
    let dir = fleet.dir().to_owned();
    assert!(!processes_mentioning(&dir.display().to_string()).is_empty());
    drop(fleet);
    assert!(!dir.exists());
    assert_eq!(
        processes_mentioning(&dir.display().to_string()),
        Vec::<u32>::new()
    );
}

#[test]
fn shared_fleet_leaves_no_process_or_file_after_the_test_binary_exits() {
    // Creates the login user before the child process needs it.
    Fleet::shared();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The child's shared fleet lives in `tmp`.
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "fleet_checks::every_shared_host_accepts_an_openssh_login",
        ])
        .env("TMPDIR", tmp.path())
        .env("DROVER_E2E_HOSTS", "2")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("test result: ok. 1 passed"), "{stdout}");
    let tmp_name = tmp.path().display().to_string();
    let is_clean = || {
        processes_mentioning(&tmp_name).is_empty()
            && std::fs::read_dir(tmp.path()).unwrap().next().is_none()
    };
    assert!(
        poll(is_clean),
        "left behind: {:?}",
        processes_mentioning(&tmp_name)
    );
}

#[test]
fn manifests_describe_every_host_to_drover() {
    let fleet = Fleet::shared();
    let dir = tempfile::tempdir().unwrap();
    fleet.manifests(
        dir.path(),
        r#"apiVersion: drover/v1
kind: Workflow
metadata: {name: app}
spec:
  hosts: {matchLabels: {role: web}}
  tasks:
    - name: hello
      run: echo hello > "{{ root }}/hello"
"#,
    );
    let hosts_yaml = std::fs::read_to_string(dir.path().join("hosts.yaml")).unwrap();
    for host in fleet.hosts() {
        assert!(hosts_yaml.contains(&format!("port: {}\n", host.port)));
    }
    let output = Command::new(env!("CARGO_BIN_EXE_drover"))
        .arg("validate")
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = format!(
        "2 files, {n} hosts, 1 workflow, {n} task instances",
        n = fleet.len()
    );
    assert!(stdout.contains(&summary), "{stdout}");
}
