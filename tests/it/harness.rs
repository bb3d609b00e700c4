//! A fluent harness around the built `drover` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds and runs one `drover` invocation; assertions read its output.
#[must_use]
pub struct Drover {
    command: Command,
    /// What the run reads on stdin; without it, stdin is empty.
    stdin: Option<Vec<u8>>,
}

impl Drover {
    pub fn new() -> Drover {
        let mut command = Command::new(env!("CARGO_BIN_EXE_drover"));
        command
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .current_dir(root());
        Drover {
            command,
            stdin: None,
        }
    }

    pub fn args<I, S>(mut self, args: I) -> Drover
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn arg(mut self, arg: &str) -> Drover {
        self.command.arg(arg);
        self
    }

    pub fn arg_path(mut self, path: impl AsRef<Path>) -> Drover {
        self.command.arg(path.as_ref());
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Drover {
        self.command.current_dir(dir);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Drover {
        self.command.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: &str) -> Drover {
        self.command.env_remove(key);
        self
    }

    /// Feeds `bytes` to the run's stdin.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Drover {
        self.stdin = Some(bytes.into());
        self
    }

    #[track_caller]
    pub fn run(mut self) -> Run {
        let Some(bytes) = self.stdin.take() else {
            let output = self.command.output().expect("drover runs");
            return Run { output };
        };
        let mut child = self
            .command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("drover starts");
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // Written from a thread, so that a child that stops reading cannot block the test.
        let writer = std::thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut stdin, &bytes);
        });
        let output = child.wait_with_output().expect("drover runs");
        writer.join().expect("the stdin writer ends");
        Run { output }
    }
}

/// The result of one run.
pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }

    #[track_caller]
    pub fn expect_code(self, code: i32) -> Run {
        assert_eq!(
            self.code(),
            code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// Writes a directory of files described by one string with `//- path` markers.
pub fn write_fixture(dir: &Path, fixture: &str) {
    let mut current: Option<(PathBuf, String)> = None;
    let flush = |entry: Option<(PathBuf, String)>| {
        if let Some((path, text)) = entry {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    };
    for line in fixture.lines() {
        if let Some(name) = line.strip_prefix("//- ") {
            flush(current.take());
            current = Some((dir.join(name.trim()), String::new()));
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    flush(current);
}

/// Compares `actual` with the file at `path`, or rewrites it under `UPDATE_EXPECT=1`.
#[track_caller]
pub fn assert_matches_file(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        expected == actual,
        "{} is out of date (run with UPDATE_EXPECT=1 to bless)\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// Writes a manifest directory with one local host, `box`, whose variable `dir` is `area`,
/// and one workflow, `app`, on it with `tasks` (YAML list items indented four spaces).
pub fn write_local_fleet(manifests: &Path, area: &Path, tasks: &str) {
    write_fixture(
        manifests,
        &format!(
            "//- hosts.yaml\napiVersion: drover/v1\nkind: Host\nmetadata: {{name: box}}\nspec: {{transport: local, vars: {{dir: {}}}}}\n//- app.yaml\napiVersion: drover/v1\nkind: Workflow\nmetadata: {{name: app}}\nspec:\n  hosts: {{names: [box]}}\n  tasks:\n{tasks}",
            area.display()
        ),
    );
}

/// A manifest directory with one local host, `box`, whose `{{ dir }}` is a scratch area.
pub struct Area {
    pub manifests: tempfile::TempDir,
    pub area: tempfile::TempDir,
}

impl Area {
    pub fn new(tasks: &str) -> Area {
        let area = Area {
            manifests: tempfile::tempdir().unwrap(),
            area: tempfile::tempdir().unwrap(),
        };
        area.write(tasks);
        area
    }

    pub fn write(&self, tasks: &str) {
        write_local_fleet(self.manifests.path(), self.area.path(), tasks);
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.area.path().join(name)
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    pub fn put(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    /// Runs drover with `args` on the manifests, without colour.
    pub fn drover(&self, args: &[&str]) -> Run {
        Drover::new()
            .args(args)
            .args(["--color", "never"])
            .arg_path(self.manifests.path())
            .run()
    }

    /// Applies (with `extra` flags) and returns the run and its JSON report.
    pub fn apply(&self, extra: &[&str]) -> (Run, serde_json::Value) {
        let report = self.area.path().join("report.json");
        let _ = std::fs::remove_file(&report);
        let run = Drover::new()
            .args(["apply", "--auto-approve", "--color", "never", "--report"])
            .arg_path(&report)
            .args(extra)
            .arg_path(self.manifests.path())
            .run();
        let text = std::fs::read_to_string(&report)
            .unwrap_or_else(|_| panic!("no report: {}{}", run.stdout(), run.stderr()));
        (run, serde_json::from_str(&text).unwrap())
    }
}

/// `id status: summary` per applied instance.
pub fn outcomes(report: &serde_json::Value) -> Vec<String> {
    report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let said = i["summary"].as_str().or(i["error"].as_str()).unwrap_or("");
            format!(
                "{} {}: {said}",
                i["id"].as_str().unwrap(),
                i["status"].as_str().unwrap()
            )
        })
        .collect()
}

/// Waits (up to 20 s) until `path` exists: a task of a running apply says it has started by
/// creating it. Panics with `what` if it never does.
pub fn wait_until_exists(path: &Path, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !path.exists() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
