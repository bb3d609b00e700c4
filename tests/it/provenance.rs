//! Every run records who started it (user and host), the command line as typed, and, when
//! the manifests are in a git work tree, the commit they are at and whether they differed
//! from it; `history` and `show` print it.

use std::path::Path;
use std::process::Command;

use crate::harness::{Drover, write_local_fleet};

const TASKS: &str = r#"    - name: config
      file: {path: "{{ dir }}/app.conf", content: "port = 8080\n"}
"#;

fn git_installed() -> bool {
    Command::new("git").arg("--version").output().is_ok()
}

/// Runs git in `dir` as a fixed author; returns its standard output.
fn git(dir: &Path, args: &[&str]) -> String {
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
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn show_json(dir: &Path, run: u32) -> serde_json::Value {
    let show = Drover::new()
        .args(["show", &run.to_string(), "--format", "json", "--dir"])
        .arg_path(dir)
        .run()
        .expect_code(0);
    serde_json::from_str(&show.stdout()).unwrap()
}

/// Who the test runs as, and where, as drover should record it.
fn me() -> (String, String) {
    let user = Command::new("id").arg("-un").output().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    (
        String::from_utf8_lossy(&user.stdout).trim().to_owned(),
        host.trim().to_owned(),
    )
}

#[test]
fn an_apply_in_a_git_work_tree_records_the_commit_whether_it_was_dirty_and_the_command_line() {
    if !git_installed() {
        eprintln!("skipped: needs git");
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    let area = tempfile::tempdir().unwrap();
    // A directory inside the repository, with a name the command line must quote.
    let fleet = repo.path().join("my fleet");
    write_local_fleet(&fleet, area.path(), TASKS);
    git(repo.path(), &["init", "--quiet"]);
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "--quiet", "-m", "first fleet"]);
    let sha = git(repo.path(), &["rev-parse", "HEAD"]);
    let apply = |extra: &[&str]| {
        Drover::new()
            .args([
                "apply",
                "--auto-approve",
                "--color",
                "never",
                "--per-host",
                "2",
            ])
            .args(extra)
            .arg_path(&fleet)
            .run()
            .expect_code(0)
    };

    // Clean: the state drover writes under `.drover/` does not count.
    apply(&["--target", "host=box"]);
    let run = &show_json(&fleet, 1)["run"];
    assert_eq!(run["commit"], sha.as_str(), "{run:#}");
    assert_eq!(run["commitAuthor"], "Fleet Admin <admin@example.com>");
    assert_eq!(run["commitSubject"], "first fleet");
    assert_eq!(run["dirty"], false, "{run:#}");
    let command = run["command"].as_str().unwrap();
    assert!(
        command.ends_with(&format!(
            " apply --auto-approve --color never --per-host 2 --target host=box '{}'",
            fleet.display()
        )) && command.contains("drover"),
        "{command}"
    );
    let (user, host) = me();
    assert_eq!(run["user"], user.as_str(), "{run:#}");
    assert_eq!(run["host"], host.as_str(), "{run:#}");

    // A change elsewhere in the repository does not make the manifests dirty.
    std::fs::write(repo.path().join("NOTES"), "not a manifest\n").unwrap();
    apply(&["--force"]);
    assert_eq!(show_json(&fleet, 2)["run"]["dirty"], false);

    // An edit of a manifest not committed does.
    write_local_fleet(&fleet, area.path(), &TASKS.replace("8080", "9090"));
    apply(&[]);
    let run = &show_json(&fleet, 3)["run"];
    assert_eq!(run["dirty"], true, "{run:#}");
    assert_eq!(run["commit"], sha.as_str());

    let history = Drover::new()
        .args(["history", "--color", "never", "--dir"])
        .arg_path(&fleet)
        .run()
        .expect_code(0);
    let newest = history.stdout().lines().nth(1).unwrap().to_owned();
    assert!(
        newest.contains(&format!("{user}@{host}"))
            && newest.contains(&format!("{}+dirty", &sha[..12])),
        "{}",
        history.stdout()
    );
    let show = Drover::new()
        .args(["show", "3", "--color", "never", "--dir"])
        .arg_path(&fleet)
        .run()
        .expect_code(0);
    for line in [
        format!("  by       {user}@{host}\n"),
        format!("  commit   {sha}\n"),
        "  author   Fleet Admin <admin@example.com>\n".to_owned(),
        "  subject  first fleet\n".to_owned(),
        "  dirty    yes".to_owned(),
        "  command  ".to_owned(),
    ] {
        assert!(
            show.stdout().contains(&line),
            "{line:?} in\n{}",
            show.stdout()
        );
    }
}

#[test]
fn an_apply_outside_git_records_no_commit_and_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let area = tempfile::tempdir().unwrap();
    if git_installed()
        && Command::new("git")
            .args(["rev-parse", "--is-inside-work-tree"])
            .current_dir(dir.path())
            .output()
            .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipped: the temporary directory is inside a git work tree");
        return;
    }
    write_local_fleet(dir.path(), area.path(), TASKS);
    Drover::new()
        .args(["apply", "--auto-approve", "--color", "never"])
        .arg_path(dir.path())
        .run()
        .expect_code(0);
    let run = &show_json(dir.path(), 1)["run"];
    for key in ["commit", "commitAuthor", "commitSubject", "dirty"] {
        assert!(run.get(key).is_none(), "{key} in {run:#}");
    }
    assert!(
        run["user"].as_str().is_some_and(|u| !u.is_empty()),
        "{run:#}"
    );
    assert!(
        run["host"].as_str().is_some_and(|h| !h.is_empty()),
        "{run:#}"
    );
    assert!(
        run["command"].as_str().unwrap().ends_with(&format!(
            " apply --auto-approve --color never {}",
            dir.path().display()
        )),
        "{run:#}"
    );
}

#[test]
fn an_apply_in_a_work_tree_without_git_on_the_path_records_no_commit() {
    if !git_installed() {
        eprintln!("skipped: needs git to make the work tree");
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    let area = tempfile::tempdir().unwrap();
    write_local_fleet(repo.path(), area.path(), TASKS);
    git(repo.path(), &["init", "--quiet"]);
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "--quiet", "-m", "first fleet"]);
    // A file task needs no program: with no `git` to be found, the run goes on unrecorded.
    let empty = tempfile::tempdir().unwrap();
    Drover::new()
        .args(["apply", "--auto-approve", "--color", "never"])
        .arg_path(repo.path())
        .env("PATH", &empty.path().display().to_string())
        .run()
        .expect_code(0);
    let run = &show_json(repo.path(), 1)["run"];
    assert!(run.get("commit").is_none(), "{run:#}");
    assert_eq!(
        std::fs::read_to_string(area.path().join("app.conf")).unwrap(),
        "port = 8080\n"
    );
}
