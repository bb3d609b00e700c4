//! `drover watch` over the local transport, as a service manager runs it: a real manifest
//! directory, a real `NOTIFY_SOCKET` datagram socket read by the test, real signals.
//!
//! Start → converged and `READY=1`; an edit → applied; a bad edit → nothing applied, the
//! daemon alive, the error logged; the fix → applied; a managed file changed by hand with
//! `drift: fix` → restored after the drift interval, `warn` → only reported; `status` and
//! `history` from another process while it runs; SIGHUP → a round; SIGTERM → exit 0.

use std::io::Read as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Drover, write_local_fleet};

pub(crate) struct Daemon {
    child: Child,
    pub(crate) port: u16,
    /// Every datagram systemd would have received, collected by a thread (as systemd
    /// reads them at once; a full socket would stall the sender).
    notices: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// How many of `notices` `notified` has looked at.
    seen: std::cell::Cell<usize>,
    _socket_dir: tempfile::TempDir,
    log: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, log: PathBuf) -> Daemon {
        Daemon::start_with_env(dir, log, &[])
    }

    /// Starts the daemon on `dir` with these environment variables set.
    pub(crate) fn start_with_env(dir: &Path, log: PathBuf, env: &[(&str, &str)]) -> Daemon {
        let socket_dir = tempfile::tempdir().unwrap();
        let socket = socket_dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&socket).unwrap();
        let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let collected = std::sync::Arc::clone(&notices);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = notify.recv(&mut buf) {
                let datagram = String::from_utf8_lossy(&buf[..n]).into_owned();
                collected.lock().unwrap().push(datagram);
            }
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_drover"))
            .args([
                "watch",
                "--debounce",
                "100ms",
                "--drift-interval",
                "1s",
                "--color",
                "never",
            ])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg(dir)
            .envs(env.iter().copied())
            .env("NOTIFY_SOCKET", &socket)
            .env("WATCHDOG_USEC", "400000")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon {
            child,
            port,
            notices,
            seen: std::cell::Cell::new(0),
            _socket_dir: socket_dir,
            log,
        }
    }

    /// Waits (up to 30 s) for a datagram after the last one looked at that holds `wanted`;
    /// returns the datagrams looked at.
    pub(crate) fn notified(&self, wanted: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut all = String::new();
        while Instant::now() < deadline {
            let notices = self.notices.lock().unwrap().clone();
            for notice in notices.iter().skip(self.seen.get()) {
                self.seen.set(self.seen.get() + 1);
                all.push_str(notice);
                all.push('\n');
                if notice.contains(wanted) {
                    return all;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        all
    }

    pub(crate) fn log(&self) -> String {
        let mut text = String::new();
        std::fs::File::open(&self.log)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    /// `GET path` over plain HTTP/1.0: (status code, body).
    pub(crate) fn get(&self, path: &str) -> (u16, String) {
        use std::io::Write as _;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
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

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (up to 20 s) for `condition`, checking every 20 ms: the daemon acts on its own time.
pub(crate) fn eventually(what: &str, daemon: &Daemon, condition: impl Fn() -> bool) {
    until(&daemon.log, what, condition);
}

fn manifests(dir: &Path, area: &Path, port: u32) {
    let tasks = r#"    - name: config
      drift: fix
      file: {path: "{{ dir }}/app.conf", content: "port = PORT\n"}
    - name: notes
      file: {path: "{{ dir }}/notes.txt", content: "notes\n"}
"#;
    write_local_fleet(dir, area, &tasks.replace("PORT", &port.to_string()));
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn the_daemon_converges_follows_edits_survives_bad_ones_repairs_drift_and_drains() {
    let dir = tempfile::tempdir().unwrap();
    let area = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    manifests(dir.path(), area.path(), 8080);
    let config = area.path().join("app.conf");
    let notes = area.path().join("notes.txt");
    let daemon = Daemon::start(dir.path(), logs.path().join("watch.log"));

    // Ready only after the first round: the files are there when READY=1 arrives.
    let ready = daemon.notified("READY=1");
    assert!(ready.contains("READY=1"), "{ready}\n{}", daemon.log());
    assert_eq!(read(&config), "port = 8080\n");
    assert_eq!(daemon.get("/healthz").0, 200);
    assert_eq!(daemon.get("/readyz").0, 200);

    // An edit is applied.
    let saved = Instant::now();
    manifests(dir.path(), area.path(), 9090);
    eventually("the edit to be applied", &daemon, || {
        read(&config) == "port = 9090\n"
    });
    eprintln!("save → applied: {} ms", saved.elapsed().as_millis());

    // A bad edit applies nothing and does not stop the daemon; the fix is applied.
    std::fs::write(
        dir.path().join("app.yaml"),
        "apiVersion: drover/v1\nkind: Workflow\nspec: [\n",
    )
    .unwrap();
    eventually("the bad edit to be reported", &daemon, || {
        daemon.log().contains("the manifests are not valid")
    });
    assert_eq!(read(&config), "port = 9090\n");
    manifests(dir.path(), area.path(), 7070);
    eventually("the fix to be applied", &daemon, || {
        read(&config) == "port = 7070\n"
    });

    // Drift: `fix` is repaired on its own, `warn` only reported.
    std::fs::write(&config, "edited by hand\n").unwrap();
    std::fs::write(&notes, "edited by hand\n").unwrap();
    eventually("the fix-policy file to be restored", &daemon, || {
        read(&config) == "port = 7070\n"
    });
    eventually("the warn-policy drift to be recorded", &daemon, || {
        let status = Drover::new()
            .args(["status", "--format", "json"])
            .arg_path(dir.path())
            .run();
        status.code() == 0 && status.stdout().contains("\"drifted\": 1")
    });
    assert_eq!(
        read(&notes),
        "edited by hand\n",
        "warn is reported, not repaired"
    );

    // Other processes read the state while the daemon runs.
    let history = Drover::new()
        .args(["history"])
        .arg("--dir")
        .arg_path(dir.path())
        .run();
    assert_eq!(
        history.code(),
        0,
        "{}{}",
        history.stdout(),
        history.stderr()
    );
    assert!(
        history.stdout().contains("drover watch"),
        "{}",
        history.stdout()
    );
    let apply = Drover::new()
        .args(["apply", "--auto-approve", "--lock-timeout", "100ms"])
        .arg_path(dir.path())
        .run();
    assert_ne!(apply.code(), 0);
    assert!(
        apply.stderr().contains("drover watch"),
        "says who holds the state: {}",
        apply.stderr()
    );

    history_over_http(&daemon);

    // SIGHUP: a round at once.
    daemon.signal("HUP");
    eventually("SIGHUP to start a round", &daemon, || {
        daemon.log().contains("SIGHUP")
    });

    stops_on_sigterm(daemon);
}

/// The history over HTTP, as `history`/`show --format json` print it, and the metrics.
fn history_over_http(daemon: &Daemon) {
    let (code, runs) = daemon.get("/runs");
    assert_eq!(code, 200);
    let runs: serde_json::Value = serde_json::from_str(&runs).unwrap();
    assert!(runs["runs"].as_array().unwrap().len() >= 3, "{runs:#}");
    let (code, first) = daemon.get("/runs/1");
    assert_eq!(code, 200);
    assert!(first.contains("\"report\""), "{first}");
    assert_eq!(daemon.get("/runs/999").0, 404);
    let metrics = daemon.get("/metrics").1;
    assert!(
        metrics.contains("drover_rounds_total{result=\"applied\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("drover_desired_state_errors 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("drover_instances{state=\"drifted\"} 1"),
        "the warn-policy file stays drifted: {metrics}"
    );
    assert!(
        metrics.contains("drover_ssh_connections_open 0"),
        "a local fleet keeps no SSH connection: {metrics}"
    );
}

/// SIGTERM: drains and exits 0, telling systemd it is stopping.
fn stops_on_sigterm(daemon: Daemon) {
    daemon.signal("TERM");
    let mut daemon = daemon;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "SIGTERM did not stop the daemon\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    assert!(
        daemon.notified("STOPPING=1").contains("STOPPING=1"),
        "{}",
        daemon.log()
    );
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Fleet Admin",
            "-c",
            "user.email=admin@example.com",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `POST path` with a body and headers, over plain HTTP/1.0: the status code.
fn post(port: u16, path: &str, body: &str, headers: &[(&str, &str)]) -> u16 {
    use std::io::Write as _;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.0\r\nHost: localhost\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(name);
        request.push_str(": ");
        request.push_str(value);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// HMAC-SHA256 of `body` under `secret`, as GitHub signs webhooks (computed with openssl).
fn github_signature(secret: &str, body: &str) -> String {
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(body.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    format!("sha256={}", text.trim().rsplit(' ').next().unwrap())
}

#[test]
fn git_mode_follows_a_branch_and_a_signed_webhook_fetches_at_once() {
    if Command::new("git").arg("--version").output().is_err()
        || Command::new("openssl").arg("version").output().is_err()
    {
        eprintln!("skipped: needs git and openssl");
        return;
    }
    let bare = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let area = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let url = fleet_repository(bare.path(), work.path(), area.path());

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = home.path().join("watch.log");
    let mut child = git_daemon(
        home.path(),
        &[
            "--git",
            &url,
            "--branch",
            "main",
            "--poll",
            "1h",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
        &log,
    );
    let config = area.path().join("app.conf");
    until(&log, "the first commit to be applied", || {
        read(&config) == "port = 8080\n"
    });

    // A push, announced by a signed webhook: fetched and applied at once (the poll is 1h).
    manifests(&work.path().join("fleet"), area.path(), 9090);
    git(work.path(), &["commit", "--quiet", "-am", "port 9090"]);
    git(work.path(), &["push", "--quiet", &url, "main"]);
    let body = r#"{"ref":"refs/heads/main"}"#;
    assert_eq!(
        post(
            port,
            "/hooks/git",
            body,
            &[("X-Hub-Signature-256", "sha256=00")]
        ),
        401
    );
    assert_eq!(post(port, "/hooks/git", body, &[]), 401);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        read(&config),
        "port = 8080\n",
        "a refused webhook does nothing"
    );
    let signature = github_signature("s3cret", body);
    assert_eq!(
        post(
            port,
            "/hooks/git",
            body,
            &[("X-Hub-Signature-256", &signature)]
        ),
        202
    );
    until(&log, "the pushed commit to be applied", || {
        read(&config) == "port = 9090\n"
    });

    history_names_the_commits(home.path());
    let _ = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", read(&log));
}

/// Each run records the commit, its author and subject.
fn history_names_the_commits(home: &Path) {
    let history = Drover::new()
        .args(["history", "--format", "json", "--dir", "."])
        .current_dir(home)
        .run();
    let history: serde_json::Value = serde_json::from_str(&history.stdout()).unwrap();
    let newest = &history["runs"][0];
    assert_eq!(newest["commitSubject"], "port 9090", "{history:#}");
    assert_eq!(newest["commitAuthor"], "Fleet Admin <admin@example.com>");
    assert_eq!(newest["commit"].as_str().unwrap().len(), 40);
    // The daemon's checkout is forced to the commit and cleaned: never dirty.
    assert_eq!(newest["dirty"], false, "{history:#}");
    assert!(newest["user"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(newest["host"].as_str().is_some_and(|h| !h.is_empty()));
    let command = newest["command"].as_str().unwrap();
    assert!(
        command.contains(" watch --git file://") && command.contains(" --poll 1h "),
        "the command line as typed: {command}"
    );
    assert_eq!(history["runs"][1]["commitSubject"], "first fleet");
}

/// A bare repository (the "remote") with one commit of manifests under `fleet/`, pushed
/// from the work tree `work`; returns its `file://` URL.
fn fleet_repository(bare: &Path, work: &Path, area: &Path) -> String {
    git(
        bare,
        &["init", "--quiet", "--bare", "--initial-branch", "main"],
    );
    git(work, &["init", "--quiet", "--initial-branch", "main"]);
    manifests(&work.join("fleet"), area, 8080);
    git(work, &["add", "."]);
    git(work, &["commit", "--quiet", "-m", "first fleet"]);
    let url = format!("file://{}", bare.display());
    git(work, &["push", "--quiet", &url, "main"]);
    url
}

#[test]
fn after_kill_9_mid_round_a_restarted_daemon_runs_only_what_was_unfinished() {
    let dir = tempfile::tempdir().unwrap();
    let area = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let ran = area.path().join("ran.log");
    write_local_fleet(
        dir.path(),
        area.path(),
        r#"    - {name: one, run: "echo one >> {{ dir }}/ran.log"}
    - {name: slow, needs: [one], run: "echo slow >> {{ dir }}/ran.log; touch {{ dir }}/slow-started; sleep 5"}
    - {name: three, needs: [slow], run: "echo three >> {{ dir }}/ran.log"}
"#,
    );
    let mut first = Daemon::start(dir.path(), logs.path().join("first.log"));
    let started = area.path().join("slow-started");
    eventually("the slow task to start", &first, || started.exists());
    first.child.kill().unwrap();
    let _ = first.child.wait();
    drop(first);
    // The killed round left `slow` in flight: the next daemon runs it again, and `three`,
    // but not `one`, whose outcome was recorded before `slow` started.
    std::fs::remove_file(&started).unwrap();
    let second = Daemon::start(dir.path(), logs.path().join("second.log"));
    eventually(
        "the second daemon to start the slow task again",
        &second,
        || started.exists(),
    );
    let lines = read(&ran);
    assert_eq!(lines.matches("one").count(), 1, "{lines}");
    assert_eq!(lines.matches("slow").count(), 2, "{lines}");
    let history = Drover::new()
        .args(["history", "--format", "json", "--dir"])
        .arg_path(dir.path())
        .run();
    assert!(
        history.stdout().contains("\"interrupted\""),
        "{}",
        history.stdout()
    );
}

#[test]
fn sigterm_mid_task_lets_it_finish_records_it_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let area = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    write_local_fleet(
        dir.path(),
        area.path(),
        r#"    - {name: slow, run: "touch {{ dir }}/started; sleep 1; touch {{ dir }}/finished"}
    - {name: after, needs: [slow], run: "touch {{ dir }}/after"}
"#,
    );
    let daemon = Daemon::start(dir.path(), logs.path().join("watch.log"));
    eventually("the slow task to start", &daemon, || {
        area.path().join("started").exists()
    });
    stops_on_sigterm(daemon);
    assert!(
        area.path().join("finished").exists(),
        "the running task finished"
    );
    assert!(
        !area.path().join("after").exists(),
        "nothing new started after SIGTERM"
    );
    let history = Drover::new()
        .args(["show", "1", "--format", "json", "--dir"])
        .arg_path(dir.path())
        .run();
    let run: serde_json::Value = serde_json::from_str(&history.stdout()).unwrap();
    assert_eq!(run["run"]["status"], "cancelled", "{run:#}");
    let statuses: Vec<&str> = run["report"]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["changed", "cancelled"], "{run:#}");
}

#[test]
fn git_mode_polls_for_new_commits_and_survives_a_bad_one() {
    if Command::new("git").arg("--version").output().is_err() {
        eprintln!("skipped: needs git");
        return;
    }
    let bare = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let area = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let url = fleet_repository(bare.path(), work.path(), area.path());
    let log = home.path().join("watch.log");
    let mut child = git_daemon(home.path(), &["--git", &url, "--poll", "200ms"], &log);
    let config = area.path().join("app.conf");
    until(&log, "the first commit", || {
        read(&config) == "port = 8080\n"
    });
    // A bad commit: reported, nothing applied, the daemon goes on.
    std::fs::write(work.path().join("fleet/app.yaml"), "kind: [\n").unwrap();
    git(work.path(), &["commit", "--quiet", "-am", "oops"]);
    git(work.path(), &["push", "--quiet", &url, "main"]);
    until(&log, "the bad commit to be reported", || {
        read(&log).contains("the manifests are not valid")
    });
    // The fix, found by the poll.
    manifests(&work.path().join("fleet"), area.path(), 7070);
    git(work.path(), &["commit", "--quiet", "-am", "fix"]);
    git(work.path(), &["push", "--quiet", &url, "main"]);
    until(&log, "the fix to be applied", || {
        read(&config) == "port = 7070\n"
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    assert_eq!(child.0.wait().unwrap().code(), Some(0), "{}", read(&log));
}

/// A daemon started by a git test: killed when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (up to 20 s) for `condition`, showing the daemon's log at `log` if it never holds.
fn until(log: &Path, what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            read(log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_edit_made_during_a_round_is_applied_by_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let area = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let fleet = |version: &str| {
        let tasks = r#"    - {name: slow, run: {command: "touch {{ dir }}/started; sleep 1", creates: "{{ dir }}/started"}}
    - {name: conf, needs: [slow], file: {path: "{{ dir }}/conf", content: "VERSION\n"}}
"#;
        write_local_fleet(dir.path(), area.path(), &tasks.replace("VERSION", version));
    };
    fleet("v1");
    let daemon = Daemon::start(dir.path(), logs.path().join("watch.log"));
    eventually("the first round to be running", &daemon, || {
        area.path().join("started").exists()
    });
    fleet("v2");
    let conf = area.path().join("conf");
    eventually(
        "the edit made during the round to be applied",
        &daemon,
        || read(&conf) == "v2\n",
    );
}

#[test]
fn a_failing_task_is_left_alone_for_a_while_not_run_every_round() {
    let dir = tempfile::tempdir().unwrap();
    let area = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    write_local_fleet(
        dir.path(),
        area.path(),
        r#"    - {name: broken, run: "echo tried >> {{ dir }}/tries; false"}
    - {name: after, needs: [broken], run: "touch {{ dir }}/after"}
    - {name: fine, file: {path: "{{ dir }}/fine", content: "ok\n"}}
"#,
    );
    let daemon = Daemon::start(dir.path(), logs.path().join("watch.log"));
    assert!(daemon.notified("READY=1").contains("READY=1"));
    // A reload right away: the failed task waits (10 s at first), and what needs it too.
    daemon.signal("HUP");
    assert!(daemon.notified("READY=1").contains("READY=1"));
    eventually("the failing task to be left alone", &daemon, || {
        daemon.log().contains("failed before; left alone for now")
    });
    let tries = read(&area.path().join("tries"));
    assert_eq!(
        tries.lines().count(),
        1,
        "tried once, not every round: {tries}"
    );
    assert!(!area.path().join("after").exists());
    assert_eq!(read(&area.path().join("fine")), "ok\n");
}

/// `drover watch ARGS fleet` in `home`, with drift checks off, the webhook secret `s3cret`,
/// and its log in `log`.
fn git_daemon(home: &Path, args: &[&str], log: &Path) -> Reaped {
    Reaped(
        Command::new(env!("CARGO_BIN_EXE_drover"))
            .arg("watch")
            .args(args)
            .args(["--drift-interval", "0", "--color", "never", "fleet"])
            .current_dir(home)
            .env("DROVER_WEBHOOK_SECRET", "s3cret")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn the_daemon_does_not_start_with_an_ssh_config_it_cannot_read() {
    // It reads the config once, for its whole life: started without it, every SSH host would
    // stay unreachable until a restart.
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".ssh/config")).unwrap();
    let manifests = tempfile::tempdir().unwrap();
    let area = tempfile::tempdir().unwrap();
    write_local_fleet(
        manifests.path(),
        area.path(),
        "    - {name: a, run: \"true\"}\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["watch", "--color", "never"])
        .arg(manifests.path())
        .env("HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon started");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(".ssh/config") && stderr.contains("start it again"),
        "{stderr}"
    );
}
