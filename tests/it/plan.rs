//! `drover plan` end to end: a real state file, recorded as an apply would leave it.

use std::path::Path;

use drover::evaluate::evaluate;
use drover::load::Limits;
use drover::state::{Outcome, Timestamp, detail_of};
use drover::store::{InstanceWrite, Store};

use crate::harness::{Drover, root};

/// Copies an example into a scratch directory.
/// A copy of an example, without the `.drover/` state that running the README's commands
/// leaves in the working tree: tests never depend on it.
fn copy_example(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("manifests").join(name), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == ".drover") {
            continue;
        }
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Records every instance of `dir` as successfully applied, as `drover apply` would.
pub fn record_applied(dir: &Path) {
    let mut evaluation = evaluate(dir, &Limits::default()).unwrap();
    let store = Store::at(dir.join(".drover/state.redb"));
    // With the facts recorded, if any, as an apply would have resolved.
    if dir.join(".drover/state.redb").exists() {
        let known = store
            .facts()
            .unwrap()
            .into_iter()
            .map(|(host, gathered)| (host, gathered.facts))
            .collect();
        drover::evaluate::with_facts(&mut evaluation, known);
    }
    let resolved = evaluation.resolved.expect("valid manifests");
    for instance in &resolved.instances {
        let detail = detail_of(instance, &resolved.redactor);
        store
            .record(&InstanceWrite {
                id: &instance.id,
                spec_hash: instance.spec_hash,
                outcome: Outcome::Succeeded,
                finished_at: Timestamp(1_795_000_000_000),
                duration_ms: 12,
                run: None,
                detail: Some(&detail),
                fires: &[],
            })
            .unwrap();
    }
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from} not in {}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

/// Records facts for every host of `dir`, as a first apply would have gathered them: the
/// example's hosts are made-up addresses, and a test never leaves the loopback.
fn record_facts(dir: &Path) {
    let evaluation = evaluate(dir, &Limits::default()).unwrap();
    let desired = evaluation.desired.expect("valid manifests");
    let facts = drover::facts::Facts {
        os: "debian".to_owned(),
        os_version: "12".to_owned(),
        os_family: "debian".to_owned(),
        arch: "x86_64".to_owned(),
        hostname: "box".to_owned(),
        package_manager: "apt".to_owned(),
        init: "systemd".to_owned(),
    };
    let gathered = desired
        .hosts
        .keys()
        .map(|host| {
            let g = drover::facts::Gathered::new(facts.clone(), Timestamp(1_795_000_000_000));
            (host.clone(), g)
        })
        .collect();
    Store::at(dir.join(".drover/state.redb"))
        .record_facts(&gathered)
        .unwrap();
}

#[test]
fn plan_shows_changes_and_detailed_exit_codes() {
    let dir = copy_example("site");
    record_facts(dir.path());
    let run = Drover::new()
        .args(["plan", "--color", "never", "--detailed-exitcode"])
        .arg_path(dir.path())
        .run()
        .expect_code(2);
    assert!(run.stdout().contains("44 to create"), "{}", run.stdout());
    record_applied(dir.path());
    let run = Drover::new()
        .args(["plan", "--color", "never", "--detailed-exitcode"])
        .arg_path(dir.path())
        .run()
        .expect_code(0);
    assert!(run.stdout().contains("No changes"), "{}", run.stdout());
    // Editing the nginx template changes the config (and triggers the reload) on the web
    // hosts only.
    edit(
        &dir.path().join("templates/nginx.conf.j2"),
        "worker_connections 1024",
        "worker_connections 2048",
    );
    let run = Drover::new()
        .args([
            "plan",
            "--color",
            "never",
            "--format",
            "json",
            "--detailed-exitcode",
        ])
        .arg_path(dir.path())
        .run()
        .expect_code(2);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(doc["formatVersion"], 1);
    let changes = doc.to_string();
    for host in ["web-1", "web-2", "web-3"] {
        assert!(
            changes.contains(&format!("{host}/nginx/config")),
            "{changes}"
        );
        assert!(
            changes.contains(&format!("{host}/nginx/reload")),
            "{changes}"
        );
    }
    assert!(
        !changes.contains("lb-1/"),
        "the load balancer is untouched: {changes}"
    );
}

#[test]
fn removed_tasks_are_planned_first_and_unknown_targets_refused() {
    let dir = copy_example("site");
    record_facts(dir.path());
    record_applied(dir.path());
    edit(
        &dir.path().join("lb.yaml"),
        "    - name: validate-config\n      needs: [config]\n      run: haproxy -c -f /etc/haproxy/haproxy.cfg\n\n",
        "",
    );
    edit(
        &dir.path().join("lb.yaml"),
        "needs: [validate-config]",
        "needs: [config]",
    );
    let run = Drover::new()
        .args(["plan", "--color", "never"])
        .arg_path(dir.path())
        .run()
        .expect_code(0);
    let first = run
        .stdout()
        .lines()
        .find(|l| l.contains("lb-1/"))
        .unwrap_or_default()
        .to_owned();
    assert!(run.stdout().contains("validate-config"), "{}", run.stdout());
    assert!(run.stdout().contains("1 to remove"), "{}", run.stdout());
    let _ = first;
    let run = Drover::new()
        .args(["plan", "--color", "never", "--target", "host=db-1"])
        .arg_path(dir.path())
        .run()
        .expect_code(1);
    assert!(
        run.stderr().contains("no instance matches `host=db-1`"),
        "{}",
        run.stderr()
    );
    let run = Drover::new()
        .args(["plan", "--color", "never", "--target", "web-1"])
        .arg_path(dir.path())
        .run()
        .expect_code(1);
    assert!(
        run.stderr().contains("not an instance id"),
        "{}",
        run.stderr()
    );
}

#[test]
fn saved_plans_record_hashes_and_fingerprints() {
    let dir = copy_example("demo");
    let out = dir.path().join("demo.plan");
    Drover::new()
        .args(["plan", "-o"])
        .arg_path(&out)
        .arg_path(dir.path())
        .run()
        .expect_code(0);
    let saved: drover::plan::saved::SavedPlan =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(saved.kind, "drover-plan");
    assert_eq!(saved.plan.changes.len(), 4);
    assert!(saved.plan.changes.iter().all(|c| c.spec_hash.is_some()));
}

#[test]
fn secrets_never_reach_plans_or_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    crate::harness::write_fixture(
        dir.path(),
        r#"
//- all.yaml
apiVersion: drover/v1
kind: Host
metadata: {name: box}
spec:
  transport: local
  vars: {token: {valueFrom: {file: token.txt}}}
---
apiVersion: drover/v1
kind: Workflow
metadata: {name: app}
spec:
  hosts: {names: [box]}
  tasks:
    - name: env
      file: {path: /tmp/drover-test-env, content: "TOKEN={{ token }}\n"}
      undo: rm -f /tmp/drover-test-env-{{ token }}
//- token.txt
tok-7f3a9c-very-secret
"#,
    );
    let token = "tok-7f3a9c-very-secret";
    for format in ["text", "json", "markdown"] {
        let run = Drover::new()
            .args(["plan", "--color", "never", "--format", format])
            .arg_path(dir.path())
            .run()
            .expect_code(0);
        assert!(
            !run.stdout().contains(token) && !run.stderr().contains(token),
            "{format}: {}",
            run.stdout()
        );
    }
    // Record an apply, then check the raw bytes of the state file.
    record_applied(dir.path());
    let bytes = std::fs::read(dir.path().join(".drover/state.redb")).unwrap();
    assert!(
        !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
        "the secret reached the state file"
    );
    let run = Drover::new()
        .args(["state", "show", "box/app/env", "--dir"])
        .arg_path(dir.path())
        .run()
        .expect_code(0);
    assert!(
        run.stdout().contains("uses a secret: masked, cannot run"),
        "{}",
        run.stdout()
    );
}

#[test]
fn history_and_show_read_empty_stores() {
    let dir = copy_example("demo");
    let run = Drover::new()
        .args(["history", "--dir"])
        .arg_path(dir.path())
        .run()
        .expect_code(0);
    assert!(
        run.stdout().contains("no runs recorded"),
        "{}",
        run.stdout()
    );
    let run = Drover::new()
        .args(["show", "1", "--color", "never", "--dir"])
        .arg_path(dir.path())
        .run()
        .expect_code(1);
    assert!(
        run.stderr().contains("there is no run 1")
            && run.stderr().contains("there is no state file"),
        "{}",
        run.stderr()
    );
}

#[test]
fn history_and_show_print_who_started_each_run_and_from_which_commit() {
    let dir = copy_example("demo");
    let store = Store::at(dir.path().join(".drover/state.redb"));
    let record = drover::run::RunRecord {
        id: drover::state::RunId(0),
        status: drover::run::RunStatus::Pending,
        started_at: Timestamp(1_795_000_000_000),
        finished_at: None,
        trigger: "cli".to_owned(),
        command: "drover apply --auto-approve 'manifests/demo'".to_owned(),
        user: Some("ops".to_owned()),
        host: Some("edge-1".to_owned()),
        commit: Some("0123456789abcdef0123456789abcdef01234567".to_owned()),
        commit_author: Some("Fleet Admin <admin@example.com>".to_owned()),
        commit_subject: Some("raise the port".to_owned()),
        dirty: Some(true),
        manifest_digest: None,
        planned: 4,
        changed: 4,
        failed: 0,
        skipped: 0,
    };
    // A run recorded before runs said who started them, and one that says everything.
    let older = drover::run::RunRecord {
        command: "drover apply manifests/demo".to_owned(),
        user: None,
        host: None,
        commit: None,
        commit_author: None,
        commit_subject: None,
        dirty: None,
        ..record.clone()
    };
    for record in [older, record] {
        let run_id = store.begin_run(record).unwrap();
        store
            .finish_run(
                run_id,
                drover::run::RunStatus::Succeeded,
                Timestamp(1_795_000_004_200),
                |_| {},
            )
            .unwrap();
    }
    let run = Drover::new()
        .args(["history", "--dir"])
        .arg_path(dir.path())
        .run()
        .expect_code(0);
    expect_test::expect![[r#"
        RUN   STATUS       STARTED                DURATION  CHANGED  FAILED  SKIPPED  BY          COMMIT              COMMAND
        2     succeeded    2026-11-18T11:06:40Z       4.2s        4       0        0  ops@edge-1  0123456789ab+dirty  drover apply --auto-approve 'manifests/demo'
        1     succeeded    2026-11-18T11:06:40Z       4.2s        4       0        0  -           -                   drover apply manifests/demo
    "#]]
    .assert_eq(&run.stdout());
    let run = Drover::new()
        .args(["show", "1", "--dir"])
        .arg_path(dir.path())
        .run()
        .expect_code(0);
    expect_test::expect![[r#"
        run 1 succeeded in 4.2s: 4 planned, 4 changed, 0 failed, 0 skipped
          started  2026-11-18T11:06:40Z (cli)
          command  drover apply manifests/demo
          2026-11-18T11:06:40Z  run started
          2026-11-18T11:06:44Z  run succeeded
    "#]]
    .assert_eq(&run.stdout());
    let run = Drover::new()
        .args(["show", "2", "--dir"])
        .arg_path(dir.path())
        .run()
        .expect_code(0);
    expect_test::expect![[r#"
        run 2 succeeded in 4.2s: 4 planned, 4 changed, 0 failed, 0 skipped
          started  2026-11-18T11:06:40Z (cli)
          by       ops@edge-1
          command  drover apply --auto-approve 'manifests/demo'
          commit   0123456789abcdef0123456789abcdef01234567
          author   Fleet Admin <admin@example.com>
          subject  raise the port
          dirty    yes: the manifest directory had changes not in this commit
          2026-11-18T11:06:40Z  run started
          2026-11-18T11:06:44Z  run succeeded
    "#]]
    .assert_eq(&run.stdout());
}
