//! The binary's commands, run on the examples and on scratch directories.

use expect_test::expect;

use crate::harness::{Drover, root, write_fixture};

#[test]
fn demo_and_site_examples_validate() {
    let run = Drover::new()
        .args(["validate", "manifests/demo"])
        .run()
        .expect_code(0);
    expect![[r"
        valid manifests/demo: 2 files, 1 host, 1 workflow, 4 task instances
    "]]
    .assert_eq(&run.stdout());
    let run = Drover::new()
        .args(["validate", "manifests/site"])
        .run()
        .expect_code(0);
    expect![[r"
        valid manifests/site: 4 files, 4 hosts, 3 workflows, 34 task instances
    "]]
    .assert_eq(&run.stdout());
}

#[test]
fn validate_reports_json_for_machines() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(
        dir.path(),
        r#"
//- web.yaml
apiVersion: drover/v1
kind: Workflow
metadata: {name: web}
spec: {hosts: {names: [edge-1]}, tasks: [{name: a, needs: [b], run: "true"}]}
"#,
    );
    let run = Drover::new()
        .args(["validate", "--format", "json"])
        .arg_path(dir.path())
        .run()
        .expect_code(1);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(doc["formatVersion"], 1);
    assert_eq!(doc["valid"], false);
    let codes: Vec<&str> = doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["manifest::unknown-host", "manifest::unknown-need"]);
    let need = &doc["diagnostics"][1]["location"];
    assert_eq!(
        (
            need["file"].as_str(),
            need["line"].as_u64(),
            need["column"].as_u64()
        ),
        (Some("web.yaml"), Some(4), Some(60))
    );
    assert_eq!(need["pointer"], "/spec/tasks/0/needs/0");
}

#[test]
fn validate_of_a_missing_directory_says_what_to_do() {
    let run = Drover::new()
        .args(["validate", "--color", "never", "no/such/dir"])
        .run()
        .expect_code(1);
    expect![[r"
        error: manifest directory no/such/dir does not exist
          help: give the manifest directory as an argument, or create one with `drover init DIR`
    "]]
    .assert_eq(&run.stderr());
}

#[test]
fn an_empty_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = Drover::new()
        .args(["validate", "--color", "never"])
        .arg_path(dir.path())
        .run()
        .expect_code(1);
    assert!(
        run.stderr().contains("error[manifest::empty-directory]"),
        "{}",
        run.stderr()
    );
}

#[test]
fn dot_folders_and_state_directory_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(
        dir.path(),
        "
//- .drover/broken.yaml
: this is not yaml [
//- .git/x.yml
nope: [
//- nested/deeper/host.yml
apiVersion: drover/v1
kind: Host
metadata: {name: box}
spec: {transport: local}
//- notes.txt
not a manifest
",
    );
    let run = Drover::new()
        .args(["validate"])
        .arg_path(dir.path())
        .run()
        .expect_code(0);
    assert!(
        run.stdout().contains("1 file, 1 host, 0 workflows"),
        "{}",
        run.stdout()
    );
}

#[test]
fn colour_follows_flags_and_no_color() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path(), "//- a.yaml\nkind: Hots\n");
    let colored = Drover::new()
        .args(["validate", "--color", "always"])
        .arg_path(dir.path())
        .run();
    assert!(colored.stderr().contains("\x1b["));
    let plain = Drover::new()
        .args(["validate"])
        .arg_path(dir.path())
        .env("NO_COLOR", "1")
        .run();
    assert!(!plain.stderr().contains("\x1b["));
}

#[test]
fn graph_draws_instances_and_filters_them() {
    let run = Drover::new()
        .args([
            "graph",
            "manifests/site",
            "--host",
            "lb-1",
            "--workflow",
            "haproxy",
        ])
        .run()
        .expect_code(0);
    expect![[r#"
        digraph drover {
          rankdir=LR;
          node [shape=box, fontname="monospace"];
          subgraph "cluster_lb-1" {
            label="lb-1";
            "lb-1/haproxy/install" [label="haproxy/install\npackage"];
            "lb-1/haproxy/config" [label="haproxy/config\nfile"];
            "lb-1/haproxy/validate-config" [label="haproxy/validate-config\nrun"];
            "lb-1/haproxy/restart" [label="haproxy/restart\nservice"];
          }
          "lb-1/haproxy/install" -> "lb-1/haproxy/config";
          "lb-1/haproxy/config" -> "lb-1/haproxy/validate-config";
          "lb-1/haproxy/validate-config" -> "lb-1/haproxy/restart";
          "lb-1/haproxy/config" -> "lb-1/haproxy/restart" [style=dashed, label="triggers"];
        }
    "#]]
    .assert_eq(&run.stdout());
    let unknown = Drover::new()
        .args([
            "graph",
            "manifests/site",
            "--host",
            "nope",
            "--color",
            "never",
        ])
        .run()
        .expect_code(0);
    assert!(
        unknown.stderr().contains("warning: no host `nope`"),
        "{}",
        unknown.stderr()
    );
}

#[test]
fn init_scaffolds_a_valid_example_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("fleet");
    Drover::new()
        .args(["init"])
        .arg_path(&target)
        .run()
        .expect_code(0);
    let hosts = std::fs::read_to_string(target.join("hosts.yaml")).unwrap();
    assert!(hosts.starts_with(
        "# yaml-language-server: $schema=https://drover.dev/schemas/v1/host.schema.json"
    ));
    Drover::new()
        .args(["validate"])
        .arg_path(&target)
        .run()
        .expect_code(0);
    let again = Drover::new()
        .args(["init", "--color", "never"])
        .arg_path(&target)
        .run()
        .expect_code(1);
    assert!(
        again.stderr().contains("already exists") && again.stderr().contains("--force"),
        "{}",
        again.stderr()
    );
    Drover::new()
        .args(["init", "--force"])
        .arg_path(&target)
        .run()
        .expect_code(0);
}

#[test]
fn completions_and_help_work() {
    let run = Drover::new()
        .args(["completions", "bash"])
        .run()
        .expect_code(0);
    assert!(run.stdout().contains("_drover()"));
    let help = Drover::new().args(["--help"]).run().expect_code(0);
    assert!(
        help.stdout().contains("Examples:")
            && help.stdout().contains("drover validate manifests/demo")
    );
}

#[test]
fn secrets_render_but_never_print() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(
        dir.path(),
        r#"
//- all.yaml
apiVersion: drover/v1
kind: Host
metadata: {name: box}
spec:
  transport: local
  vars:
    token: {valueFrom: {env: DROVER_TEST_TOKEN}}
    key: {valueFrom: {file: secrets/key}}
---
apiVersion: drover/v1
kind: Workflow
metadata: {name: app}
spec:
  hosts: {names: [box]}
  tasks:
    - name: env
      file: {path: /tmp/x, content: "token={{ token }} key={{ key }} {{ oops }}"}
//- secrets/key
key-material-42
"#,
    );
    let run = Drover::new()
        .args(["validate", "--color", "never"])
        .arg_path(dir.path())
        .env("DROVER_TEST_TOKEN", "tok-secret-99")
        .run()
        .expect_code(1);
    let all = run.stdout() + &run.stderr();
    assert!(
        !all.contains("tok-secret-99") && !all.contains("key-material-42"),
        "{all}"
    );
    assert!(all.contains("template::undefined"), "{all}");
    // Without the variable set, the missing secret is named with how to provide it.
    let run = Drover::new()
        .args(["validate", "--color", "never"])
        .arg_path(dir.path())
        .run()
        .expect_code(1);
    assert!(
        run.stderr()
            .contains("environment variable DROVER_TEST_TOKEN: it is not set"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr().contains("export DROVER_TEST_TOKEN"),
        "{}",
        run.stderr()
    );
}

#[test]
fn limits_are_enforced_and_overridable() {
    let run = Drover::new()
        .args([
            "validate",
            "manifests/site",
            "--max-instances",
            "10",
            "--color",
            "never",
        ])
        .run()
        .expect_code(1);
    assert!(
        run.stderr()
            .contains("expand to 34 task instances, more than the limit of 10"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("--max-instances"));
    let run = Drover::new()
        .args([
            "validate",
            "manifests/site",
            "--max-file-size",
            "100",
            "--color",
            "never",
        ])
        .run()
        .expect_code(1);
    assert!(
        run.stderr().contains("manifest::file-too-large"),
        "{}",
        run.stderr()
    );
    let run = Drover::new()
        .args([
            "validate",
            "manifests/site",
            "--max-tasks",
            "3",
            "--color",
            "never",
        ])
        .run()
        .expect_code(1);
    assert!(
        run.stderr()
            .contains("has 6 tasks, more than the limit of 3"),
        "{}",
        run.stderr()
    );
    assert!(root().join("manifests/site").exists());
}
