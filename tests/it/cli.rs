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
        valid manifests/site: 4 files, 4 hosts, 3 workflows, 44 task instances
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
fn validate_reports_every_kind_of_problem_in_one_run() {
    // A schema error in a host, a schema error in one task and a rule error in a later one,
    // a cycle, an unknown workflow, a template error and a missing secret: a user fixing
    // them must see all of them at once, each where it is.
    let dir = tempfile::tempdir().unwrap();
    write_fixture(
        dir.path(),
        r#"
//- hosts.yaml
apiVersion: drover/v1
kind: Host
metadata: {name: web-1, labels: {role: web}}
spec: {transport: local, vars: {token: {valueFrom: {env: DROVER_TEST_NO_SUCH_SECRET}}}}
---
apiVersion: drover/v1
kind: Host
metadata: {name: web-2}
spec: {transport: lokal}
---
apiVersion: drover/v1
kind: Host
metadata: {name: web-3, labels: {role: web}}
spec: {transport: local, vars: {token: plain}}
//- web.yaml
apiVersion: drover/v1
kind: Workflow
metadata: {name: web}
spec:
  hosts: {matchLabels: {role: web}}
  needs: [base, nowhere]
  tasks:
    - name: broken
      run: 42
    - name: loop-a
      needs: [loop-b]
      run: "true"
    - name: loop-b
      needs: [loop-a, broken]
      run: "true"
    - name: empty
      run: ""
    - name: page
      file: {path: /tmp/page, content: "{{ undefined_var }} {{ token }}"}
//- base.yaml
apiVersion: drover/v1
kind: Workflow
metadata: {name: base}
spec:
  hosts: {matchLabels: {role: web}}
  needs: [web]
  tasks: [{name: ok, run: "true"}]
"#,
    );
    let run = Drover::new()
        .args(["validate", "--require-secrets", "--format", "json"])
        .arg_path(dir.path())
        .env_remove("DROVER_TEST_NO_SUCH_SECRET")
        .run()
        .expect_code(1);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    let found: Vec<(String, String)> = doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let at = &d["location"];
            (
                d["code"].as_str().unwrap().to_owned(),
                format!(
                    "{}{}",
                    at["file"].as_str().unwrap_or("-"),
                    at["pointer"].as_str().unwrap_or("")
                ),
            )
        })
        .collect();
    let expected = [
        ("manifest::cycle", "base.yaml/spec/needs/0"),
        ("manifest::invalid-value", "hosts.yaml/spec/transport"),
        ("manifest::invalid-value", "web.yaml/spec/tasks/0/run"),
        ("manifest::unknown-workflow", "web.yaml/spec/needs/1"),
        ("manifest::cycle", "web.yaml/spec/tasks/1/needs/0"),
        ("manifest::empty-command", "web.yaml/spec/tasks/3/run"),
        ("template::undefined", "web.yaml/spec/tasks/4/file/content"),
        ("secret::missing", "hosts.yaml/spec/vars/token/valueFrom"),
    ];
    for (code, place) in expected {
        assert!(
            found.iter().any(|(c, p)| c == code && p == place),
            "{code} at {place} missing from {found:#?}"
        );
    }
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
    // Without the variable set, the secret is only a warning (a job without the secrets can
    // validate; the template error still fails this one)…
    let run = Drover::new()
        .args(["validate", "--color", "never"])
        .arg_path(dir.path())
        .run()
        .expect_code(1);
    assert!(
        run.stderr().contains("warning[secret::unavailable]"),
        "{}",
        run.stderr()
    );
    // … and with --require-secrets it is an error, named with how to provide it.
    let run = Drover::new()
        .args(["validate", "--require-secrets", "--color", "never"])
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
            .contains("expand to 41 task instances, more than the limit of 10"),
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
            .contains("has 7 tasks, more than the limit of 3"),
        "{}",
        run.stderr()
    );
    assert!(root().join("manifests/site").exists());
}

/// Runs `drover` with `args` and kills it after 30 seconds, so a read that blocks (a FIFO)
/// fails the test instead of hanging it. Returns the exit code and stderr.
fn run_with_deadline(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = tempfile::tempdir().unwrap();
    let stderr_path = out.path().join("stderr");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("drover {args:?} did not finish within 30 seconds: a read blocked");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    (status.code().unwrap_or(-1), stderr)
}

fn mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

#[test]
fn fifos_and_devices_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(
        dir.path(),
        r#"
//- hosts.yaml
apiVersion: drover/v1
kind: Host
metadata: {name: box-1}
spec: {transport: local, vars: {token: {valueFrom: {file: files/fifo}}}}
---
apiVersion: drover/v1
kind: Host
metadata: {name: box-2}
spec: {transport: local, vars: {key: {valueFrom: {file: /dev/zero}}}}
---
apiVersion: drover/v1
kind: Host
metadata: {name: box-3}
spec: {transport: local}
//- app.yaml
apiVersion: drover/v1
kind: Workflow
metadata: {name: app}
spec:
  hosts: {names: [box-3]}
  tasks:
    - name: copy
      file: {path: /tmp/copy, source: files/fifo}
    - name: render
      file: {path: /tmp/render, template: files/fifo}
    - name: zero
      file: {path: /tmp/zero, source: /dev/zero}
---
apiVersion: drover/v1
kind: Workflow
metadata: {name: secrets}
spec:
  hosts: {names: [box-1, box-2]}
  tasks: [{name: noop, run: "true"}]
"#,
    );
    std::fs::create_dir_all(dir.path().join("files")).unwrap();
    mkfifo(&dir.path().join("files/fifo"));
    let validate = || {
        let (code, stderr) = run_with_deadline(&[
            "validate".as_ref(),
            "--color".as_ref(),
            "never".as_ref(),
            "--allow-path".as_ref(),
            "/dev".as_ref(),
            dir.path().as_os_str(),
        ]);
        assert_eq!(code, 1, "{stderr}");
        stderr.replace(&dir.path().display().to_string(), "DIR")
    };
    expect![[r#"
        error[manifest::not-a-regular-file]: cannot read files/fifo: it is a FIFO, not a regular file
         --> app.yaml:8:39 (/spec/tasks/0/file/source)
          |
        8 |       file: {path: /tmp/copy, source: files/fifo}
          |                                       ^^^^^^^^^^ named here
          = help: drover reads only regular files on the controller (a FIFO or device could block or never end); point `source` or `template` at a regular file

        error[manifest::not-a-regular-file]: cannot read files/fifo: it is a FIFO, not a regular file
          --> app.yaml:10:43 (/spec/tasks/1/file/template)
           |
        10 |       file: {path: /tmp/render, template: files/fifo}
           |                                           ^^^^^^^^^^ named here
           = help: drover reads only regular files on the controller (a FIFO or device could block or never end); point `source` or `template` at a regular file

        error[manifest::not-a-regular-file]: cannot read /dev/zero: it is a character device, not a regular file
          --> app.yaml:12:39 (/spec/tasks/2/file/source)
           |
        12 |       file: {path: /tmp/zero, source: /dev/zero}
           |                                       ^^^^^^^^^ named here
           = help: drover reads only regular files on the controller (a FIFO or device could block or never end); point `source` or `template` at a regular file

        error[manifest::not-a-regular-file]: secret `token` is not available: file files/fifo: it is a FIFO, not a regular file
         --> hosts.yaml:4:52 (/spec/vars/token/valueFrom)
          |
        4 | spec: {transport: local, vars: {token: {valueFrom: {file: files/fifo}}}}
          |                                                    ^^^^^^^^^^^^^^^^^^ secret read from here
          = help: drover reads only regular files on the controller (a FIFO or device could block or never end); point `valueFrom.file` at a regular file

        error[manifest::not-a-regular-file]: secret `key` is not available: file /dev/zero: it is a character device, not a regular file
         --> hosts.yaml:9:50 (/spec/vars/key/valueFrom)
          |
        9 | spec: {transport: local, vars: {key: {valueFrom: {file: /dev/zero}}}}
          |                                                  ^^^^^^^^^^^^^^^^^ secret read from here
          = help: drover reads only regular files on the controller (a FIFO or device could block or never end); point `valueFrom.file` at a regular file

        error: DIR is not valid: 5 errors
    "#]].assert_eq(&validate());
    // A FIFO named like a manifest is refused too, not opened, and the rest still checked.
    mkfifo(&dir.path().join("pipe.yaml"));
    let stderr = validate();
    expect![[r#"
        error[manifest::not-a-regular-file]: pipe.yaml is a FIFO, not a regular file
         --> pipe.yaml:1:1
          = help: drover reads only regular files (a FIFO or device could block or never end); remove it, or list it in .droverignore

        error: DIR is not valid: 6 errors
    "#]]
    .assert_eq(&stderr[stderr.find("error[manifest::not-a-regular-file]: pipe").unwrap()..]);
}

#[test]
fn secret_and_input_files_are_size_capped() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(
        dir.path(),
        r#"
//- all.yaml
apiVersion: drover/v1
kind: Host
metadata: {name: box}
spec: {transport: local, vars: {token: {valueFrom: {file: token.txt}}}}
---
apiVersion: drover/v1
kind: Workflow
metadata: {name: app}
spec:
  hosts: {names: [box]}
  tasks:
    - name: blob
      file: {path: /tmp/blob, source: blob.bin}
"#,
    );
    std::fs::write(dir.path().join("token.txt"), vec![b'x'; 64 * 1024 + 1]).unwrap();
    // Sparse: 64 MiB and one byte that take no space on disk.
    let blob = std::fs::File::create(dir.path().join("blob.bin")).unwrap();
    blob.set_len(64 * 1024 * 1024 + 1).unwrap();
    let (code, stderr) = run_with_deadline(&[
        "validate".as_ref(),
        "--color".as_ref(),
        "never".as_ref(),
        dir.path().as_os_str(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("error[manifest::file-too-large]: secret `token` is not available: file token.txt: it is larger than 65536 bytes")
            && stderr.contains("a secret file holds one value of at most 65536 bytes"),
        "{stderr}"
    );
    // The secret stops the workflow on `box` before the blob is looked at; without it the
    // blob is refused at its field.
    std::fs::write(dir.path().join("token.txt"), "t0ken\n").unwrap();
    let (code, stderr) = run_with_deadline(&[
        "validate".as_ref(),
        "--color".as_ref(),
        "never".as_ref(),
        dir.path().as_os_str(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("cannot read blob.bin: it is larger than 67108864 bytes")
            && stderr.contains("all.yaml:13:39 (/spec/tasks/0/file/source)"),
        "{stderr}"
    );
}

#[test]
fn controller_files_stay_inside_the_manifest_directory_unless_allowed() {
    let root = tempfile::tempdir().unwrap();
    let fleet = root.path().join("fleet");
    let outside = root.path().join("outside");
    write_fixture(
        root.path(),
        r#"
//- outside/secret.txt
controller-secret-material
//- outside/extra.yaml
apiVersion: drover/v1
kind: Host
metadata: {name: extra}
spec: {transport: local}
//- fleet/hosts.yaml
apiVersion: drover/v1
kind: Host
metadata: {name: box}
spec: {transport: local}
//- fleet/app.yaml
apiVersion: drover/v1
kind: Workflow
metadata: {name: app}
spec:
  hosts: {names: [box]}
  tasks:
    - name: up
      file: {path: /tmp/up, template: ../outside/secret.txt}
    - name: link
      file: {path: /tmp/link, source: files/link}
"#,
    );
    std::fs::create_dir_all(fleet.join("files")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), fleet.join("files/link")).unwrap();
    let real = std::fs::canonicalize(&outside)
        .unwrap()
        .display()
        .to_string();
    let validate = || {
        let run = Drover::new()
            .args(["validate", "--color", "never"])
            .arg_path(&fleet)
            .run()
            .expect_code(1);
        let stderr = run.stderr().replace(&real, "OUTSIDE");
        assert!(!stderr.contains("controller-secret-material"), "{stderr}");
        stderr
    };
    let stderr = validate();
    for wanted in [
        "error[manifest::path-outside-directory]: cannot read ../outside/secret.txt: it is outside the manifest directory\n --> app.yaml:8:39 (/spec/tasks/0/file/template)",
        "error[manifest::path-outside-directory]: cannot read files/link: it resolves to OUTSIDE/secret.txt, outside the manifest directory\n  --> app.yaml:10:39 (/spec/tasks/1/file/source)",
        "help: move the file into the manifest directory, or allow the directory that holds it with --allow-path DIR",
    ] {
        assert!(stderr.contains(wanted), "missing {wanted:?} in\n{stderr}");
    }
    // A manifest that is a symlink to a file outside is not read either.
    std::os::unix::fs::symlink(outside.join("extra.yaml"), fleet.join("extra.yaml")).unwrap();
    let stderr = validate();
    assert!(
        stderr.contains("error[manifest::path-outside-directory]: cannot read extra.yaml: it resolves to OUTSIDE/extra.yaml, outside the manifest directory\n --> extra.yaml:1:1"),
        "{stderr}"
    );
    // `--allow-path` lets them in, for every command that reads manifests.
    let run = Drover::new()
        .args(["validate", "--allow-path"])
        .arg_path(&outside)
        .arg_path(&fleet)
        .run()
        .expect_code(0);
    assert!(
        run.stdout()
            .contains("3 files, 2 hosts, 1 workflow, 2 task instances"),
        "{}",
        run.stdout()
    );
    Drover::new()
        .args(["graph", "--allow-path"])
        .arg_path(&outside)
        .arg_path(&fleet)
        .run()
        .expect_code(0);
    let run = Drover::new()
        .args([
            "validate",
            "--color",
            "never",
            "--allow-path",
            "no/such/dir",
        ])
        .arg_path(&fleet)
        .run()
        .expect_code(1);
    assert!(
        run.stderr().contains("cannot use --allow-path no/such/dir"),
        "{}",
        run.stderr()
    );
    for command in ["validate", "plan", "apply", "graph"] {
        let help = Drover::new().args([command, "--help"]).run().expect_code(0);
        assert!(help.stdout().contains("--allow-path <DIR>"), "{command}");
    }
}

#[test]
fn files_named_as_templates_or_sources_are_not_manifests() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(
        dir.path(),
        r#"
//- hosts.yaml
apiVersion: drover/v1
kind: Host
metadata: {name: box}
spec: {transport: local, vars: {db: {valueFrom: {file: secrets/db.yaml}}}}
//- monitoring/prometheus.yaml
apiVersion: drover/v1
kind: Workflow
metadata: {name: prometheus}
spec:
  hosts: {names: [box]}
  tasks:
    - name: config
      file: {path: /etc/prometheus/prometheus.yml, template: templates/prometheus.yml}
    - name: compose
      file: {path: /srv/compose.yaml, source: ../compose.yaml}
    - name: db
      file: {path: /etc/db.yaml, content: "{{ db }}"}
//- monitoring/templates/prometheus.yml
global:
  scrape_interval: 15s
scrape_configs:
{% for target in ["a", "b"] %}
  - job_name: {{ target }}
{% endfor %}
//- compose.yaml
services: {web: {image: nginx}}
//- secrets/db.yaml
password: s3cr3t-db
"#,
    );
    let run = Drover::new()
        .args(["validate", "--color", "never"])
        .arg_path(dir.path())
        .run()
        .expect_code(0);
    assert!(
        run.stdout()
            .contains("2 files, 1 host, 1 workflow, 3 task instances"),
        "{}{}",
        run.stdout(),
        run.stderr()
    );
    assert!(!run.stderr().contains("s3cr3t-db"), "{}", run.stderr());
}

#[test]
fn droverignore_keeps_files_out_of_the_manifests() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(
        dir.path(),
        r#"
//- .droverignore
# Not manifests: vendored charts, drafts, build output at the top.
vendor/
*.draft.yaml
!keep.draft.yaml
/build
//- hosts.yaml
apiVersion: drover/v1
kind: Host
metadata: {name: box}
spec: {transport: local}
//- keep.draft.yaml
apiVersion: drover/v1
kind: Host
metadata: {name: kept}
spec: {transport: local}
//- sub/build/host.yaml
apiVersion: drover/v1
kind: Host
metadata: {name: nested-build}
spec: {transport: local}
//- sub/vendor/chart.yaml
not: [a manifest
//- wip.draft.yaml
kind: Nope
//- build/out.yaml
kind: Nope
"#,
    );
    let run = Drover::new()
        .args(["validate", "--color", "never"])
        .arg_path(dir.path())
        .run()
        .expect_code(0);
    assert!(
        run.stdout().contains("3 files, 3 hosts, 0 workflows"),
        "{}{}",
        run.stdout(),
        run.stderr()
    );
}

#[test]
fn control_characters_in_names_never_reach_the_terminal() {
    let corpus = root().join("tests/corpus");
    for format in ["human", "json"] {
        let run = Drover::new()
            .current_dir(&corpus)
            .args([
                "validate",
                "--color",
                "never",
                "--format",
                format,
                "control_characters_in_names",
            ])
            .run()
            .expect_code(1);
        let all = run.stdout() + &run.stderr();
        assert!(
            !all.chars()
                .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
            "{all:?}"
        );
        assert!(all.contains(r"\x1b[2J"), "{all}");
    }
}

#[test]
fn a_host_secret_a_workflow_overrides_is_never_read() {
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
    token: {valueFrom: {env: DROVER_TEST_UNSET_TOKEN}}
---
apiVersion: drover/v1
kind: Workflow
metadata: {name: app}
spec:
  hosts: {names: [box]}
  vars: {token: plain-value}
  tasks:
    - {name: t, run: "echo {{ token }}"}
"#,
    );
    let run = Drover::new()
        .args(["validate", "--require-secrets", "--color", "never"])
        .arg_path(dir.path())
        .env_remove("DROVER_TEST_UNSET_TOKEN")
        .run()
        .expect_code(0);
    assert!(!run.stderr().contains("secret"), "{}", run.stderr());
}
