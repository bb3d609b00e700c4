//! `drover watch` over SSH: the daemon converges real hosts, applies an edit, repairs a file
//! changed behind its back (`drift: fix`), and does all of it over the connections it opened
//! in its first round (counted in each sshd's log), then drains on SIGTERM and exits 0.

use std::io::{Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::fleet::{Fleet, poll};

const WORKFLOW: &str = r#"apiVersion: drover/v1
kind: Workflow
metadata: {name: app}
spec:
  hosts: {matchLabels: {role: web}}
  tasks:
    - {name: workdir, run: {command: "mkdir -p {{ root }}/watch", creates: "{{ root }}/watch"}}
    - name: config
      needs: [workdir]
      drift: fix
      file: {path: "{{ root }}/watch/app.conf", content: "CONTENT\n"}
"#;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` over plain HTTP/1.0: (status code, body); (0, "") when nothing answers.
fn get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

fn logins(fleet: &Fleet, i: usize) -> usize {
    fleet.sshd_log(i).matches("Accepted publickey").count()
}

#[test]
fn the_daemon_keeps_ssh_hosts_converged_over_the_connections_of_its_first_round() {
    let fleet = Fleet::exclusive(2);
    let dir = tempfile::tempdir().unwrap();
    fleet.manifests(dir.path(), &WORKFLOW.replace("CONTENT", "v1"));
    let config = |i: usize| fleet.host(i).root.join("watch").join("app.conf");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.path().join("daemon.log");
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(["watch", "--debounce", "100ms", "--drift-interval", "1s"])
            .args(["--color", "never", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--state")
            .arg(dir.path().join("state.redb"))
            .arg(dir.path())
            .env_remove("SSH_AUTH_SOCK")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let daemon_log = || std::fs::read_to_string(&log).unwrap_or_default();

    assert!(poll(|| get(port, "/readyz").0 == 200), "{}", daemon_log());
    for i in 0..2 {
        assert_eq!(std::fs::read_to_string(config(i)).unwrap(), "v1\n");
    }
    let first_logins: Vec<usize> = (0..2).map(|i| logins(&fleet, i)).collect();
    assert_eq!(
        first_logins,
        [1, 1],
        "one connection per host in the first round"
    );

    // An edit is applied by the next round.
    fleet.manifests(dir.path(), &WORKFLOW.replace("CONTENT", "v2"));
    assert!(
        poll(|| (0..2).all(|i| std::fs::read_to_string(config(i)).unwrap_or_default() == "v2\n")),
        "{}",
        daemon_log()
    );

    // Changed behind the daemon's back: found by the drift timer, repaired by a round.
    std::fs::write(config(1), "edited by hand\n").unwrap();
    assert!(
        poll(|| std::fs::read_to_string(config(1)).unwrap_or_default() == "v2\n"),
        "{}",
        daemon_log()
    );

    // Every round and drift probe went over the first round's connections.
    assert_eq!(
        (0..2).map(|i| logins(&fleet, i)).collect::<Vec<_>>(),
        first_logins,
        "{}",
        daemon_log()
    );
    let (_, metrics) = get(port, "/metrics");
    assert!(
        metrics.contains("drover_ssh_connections_open 2"),
        "{metrics}"
    );
    let (_, history) = get(port, "/runs");
    let runs: serde_json::Value = serde_json::from_str(&history).unwrap();
    assert!(runs["runs"].as_array().unwrap().len() >= 3, "{runs:#}");

    let status = Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut exit = None;
    assert!(poll(|| {
        exit = daemon.0.try_wait().unwrap();
        exit.is_some()
    }));
    assert_eq!(exit.and_then(|e| e.code()), Some(0), "{}", daemon_log());
}
