//! A pull request's view of the fleet: a daemon serves its state at `/state` with a token;
//! a second checkout with an edit and without the secrets plans against it. The plan shows
//! exactly the edited instances (not "create everything"), marks those that need a secret as
//! "may change", and a wrong or missing token is a clear error. `state pull` saves the same
//! snapshot; `drift --state-from` reports the daemon's last drift check without probing.

use std::path::Path;

use crate::harness::{Drover, write_fixture};
use crate::watch::{Daemon, eventually};

const TOKEN: &str = "api-token-for-tests";

fn manifests(dir: &Path, area: &Path, motd: &str) {
    write_fixture(
        dir,
        &format!(
            r#"
//- hosts.yaml
apiVersion: drover/v1
kind: Host
metadata: {{name: box}}
spec:
  transport: local
  vars:
    dir: {area}
    password: {{valueFrom: {{env: DROVER_TEST_DB_PASSWORD}}}}
//- app.yaml
apiVersion: drover/v1
kind: Workflow
metadata: {{name: app}}
spec:
  hosts: {{names: [box]}}
  tasks:
    - name: motd
      file: {{path: "{{{{ dir }}}}/motd", content: "{motd}\n"}}
    - name: db
      file: {{path: "{{{{ dir }}}}/db.conf", content: "password={{{{ password }}}}\n"}}
    - name: reload
      triggeredBy: [db]
      run: "touch {{{{ dir }}}}/reloaded"
    - name: notes
      file: {{path: "{{{{ dir }}}}/notes", content: "notes\n"}}
    - name: flag
      file: {{path: "{{{{ dir }}}}/{{{{ password }}}}.flag", content: "on\n"}}
"#,
            area = area.display()
        ),
    );
}

fn plan_from(checkout: &Path, source: &str, token: Option<&str>) -> crate::harness::Run {
    let mut drover = Drover::new()
        .args([
            "plan",
            "--color",
            "never",
            "--detailed-exitcode",
            "--format",
            "markdown",
        ])
        .args(["--state-from", source])
        .arg_path(checkout)
        .env_remove("DROVER_TEST_DB_PASSWORD")
        .env_remove("DROVER_API_TOKEN");
    if let Some(token) = token {
        drover = drover.env("DROVER_API_TOKEN", token);
    }
    drover.run()
}

#[test]
fn a_pull_request_plans_against_the_daemons_state_without_secrets() {
    let fleet = tempfile::tempdir().unwrap();
    let area = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    manifests(fleet.path(), area.path(), "hello");
    let daemon = Daemon::start_with_env(
        fleet.path(),
        logs.path().join("watch.log"),
        &[
            ("DROVER_API_TOKEN", TOKEN),
            ("DROVER_TEST_DB_PASSWORD", "hunter2-db"),
        ],
    );
    assert!(daemon.notified("READY=1").contains("READY=1"));
    assert!(area.path().join("reloaded").exists());

    // The pull request: another checkout, one task edited, no secrets, no state file.
    let checkout = tempfile::tempdir().unwrap();
    manifests(checkout.path(), area.path(), "hello, world");
    let url = format!("http://127.0.0.1:{}", daemon.port);
    let run = plan_from(checkout.path(), &url, Some(TOKEN)).expect_code(2);
    let plan = run.stdout();
    assert!(plan.contains("`app/motd` | ~ update"), "{plan}");
    assert!(
        plan.contains("`app/db` | ? may change | depends on secret `password`, not available here"),
        "{plan}"
    );
    assert!(plan.contains("`app/reload` | ? may change"), "{plan}");
    assert!(
        !plan.contains("notes"),
        "an unchanged instance is not in the plan: {plan}"
    );
    assert!(
        plan.contains("0 to create") && !plan.contains("+ create"),
        "{plan}"
    );
    assert!(
        plan.contains("1 to update") && plan.contains("3 may change"),
        "{plan}"
    );
    assert!(plan.contains("`app/flag` | ? may change"), "{plan}");
    assert!(!plan.contains("hunter2"), "{plan}");
    assert!(
        run.stderr().contains("warning[secret::unavailable]"),
        "{}",
        run.stderr()
    );
    assert!(
        !checkout.path().join(".drover").exists(),
        "nothing is written"
    );

    // A wrong token, and none: 401, said plainly, with what to do.
    let run = plan_from(checkout.path(), &url, Some("wrong")).expect_code(1);
    assert!(
        run.stderr().contains("refused the token (401)"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr().contains("DROVER_API_TOKEN differs"),
        "{}",
        run.stderr()
    );
    let run = plan_from(checkout.path(), &url, None).expect_code(1);
    assert!(
        run.stderr().contains("set DROVER_API_TOKEN"),
        "{}",
        run.stderr()
    );

    // The same snapshot, saved, plans the same; it holds no secret.
    let saved = checkout.path().join("state.json");
    Drover::new()
        .args(["state", "pull", "--from", &url, "-o"])
        .arg_path(&saved)
        .env("DROVER_API_TOKEN", TOKEN)
        .run()
        .expect_code(0);
    let snapshot = std::fs::read_to_string(&saved).unwrap();
    assert!(!snapshot.contains("hunter2"), "{snapshot}");
    // Nor anything to guess it from: no hash of what a secret went into.
    let doc: serde_json::Value = serde_json::from_str(&snapshot).unwrap();
    let db = &doc["instances"]["box/app/db"];
    assert!(db["specHash"].is_null(), "{db:#}");
    assert_eq!(db["detail"]["action"]["contentHash"], "", "{db:#}");
    let from_file = plan_from(checkout.path(), saved.to_str().unwrap(), None).expect_code(2);
    assert_eq!(from_file.stdout(), plan);

    reported_drift(&daemon, area.path(), &url);
}

/// `drift --state-from`: the daemon's last drift check (every second here), reported without
/// probing; a finding at a path made from the secret is masked in what the daemon recorded.
fn reported_drift(daemon: &Daemon, area: &Path, url: &str) {
    std::fs::write(area.join("hunter2-db.flag"), "off\n").unwrap();
    eventually("the drift to be recorded", daemon, || {
        daemon.get("/status").1.contains("\"drifted\": 1")
    });
    let run = Drover::new()
        .args([
            "drift",
            "--color",
            "never",
            "--format",
            "json",
            "--state-from",
            url,
        ])
        .env("DROVER_API_TOKEN", TOKEN)
        .run()
        .expect_code(0);
    assert!(!run.stdout().contains("hunter2"), "{}", run.stdout());
    let report: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(report["summary"]["drifted"], 1, "{report:#}");
    assert_eq!(report["instances"][0]["id"], "box/app/flag", "{report:#}");
}

#[test]
fn drift_from_a_daemon_reads_no_manifest_directory() {
    let run = Drover::new()
        .args(["drift", "--state-from", "state.json", "fleet/"])
        .run()
        .expect_code(1);
    assert!(
        run.stderr().contains("fleet/ would not be read"),
        "{}",
        run.stderr()
    );
}
