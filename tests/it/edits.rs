//! `line` and `block` tasks over the local transport on real temporary files: a line
//! replaced, appended, removed; blocks inserted, updated and removed; each idempotent, the
//! file replaced only when its content changes, and drift found and repaired.

use std::os::unix::fs::PermissionsExt as _;

use crate::harness::{Area, Drover, outcomes};

const SSHD: &str = r#"    - name: root
      line: {path: "{{ dir }}/sshd_config", line: "PermitRootLogin no", match: "^#?PermitRootLogin"}
"#;

#[test]
fn a_matching_line_is_replaced_in_place_once_and_keeps_the_file_mode() {
    let area = Area::new(SSHD);
    area.put(
        "sshd_config",
        "Port 22\n#PermitRootLogin yes\nPermitRootLogin prohibit-password\nX11Forwarding no",
    );
    std::fs::set_permissions(
        area.path("sshd_config"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let plan = area.drover(&["plan"]).expect_code(0);
    let path = area.path("sshd_config").display().to_string();
    assert!(
        plan.stdout()
            .contains(&format!("line {path}: PermitRootLogin no — new")),
        "{}",
        plan.stdout()
    );
    let (run, report) = area.apply(&[]);
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        [format!(
            "box/app/root changed: line {path}: replaced the matching line"
        )]
    );
    // Only the first match is replaced; the last line, without its newline, is kept as is.
    assert_eq!(
        area.read("sshd_config"),
        "Port 22\nPermitRootLogin no\nPermitRootLogin prohibit-password\nX11Forwarding no\n"
    );
    let mode = std::fs::metadata(area.path("sshd_config"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o640);
    let leftovers: Vec<_> = std::fs::read_dir(area.area.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".drover."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    assert_eq!(
        reapply(&area, "box/app/root"),
        [format!("box/app/root unchanged: line {path} is as desired")]
    );
}

#[test]
fn a_missing_line_is_appended_on_a_line_of_its_own_then_left_alone() {
    let area = Area::new(
        "    - name: path\n      line: {path: \"{{ dir }}/profile\", line: 'export PATH=$PATH:/opt/bin'}\n",
    );
    area.put("profile", "umask 022");
    area.apply(&[]).0.expect_code(0);
    assert_eq!(
        area.read("profile"),
        "umask 022\nexport PATH=$PATH:/opt/bin\n"
    );
    let path = area.path("profile").display().to_string();
    assert_eq!(
        reapply(&area, "box/app/path"),
        [format!("box/app/path unchanged: line {path} is as desired")]
    );
    assert_eq!(
        area.read("profile"),
        "umask 022\nexport PATH=$PATH:/opt/bin\n"
    );
}

#[test]
fn absent_removes_every_matching_line_or_every_equal_line() {
    let area = Area::new(
        "    - name: no-debug\n      line: {path: \"{{ dir }}/app.conf\", match: '^debug *=', state: absent}\n    - name: no-x\n      line: {path: \"{{ dir }}/other.conf\", line: x, state: absent}\n",
    );
    area.put("app.conf", "debug = 1\nport = 80\ndebug =2\n# debug = 3\n");
    area.put("other.conf", "x\nxx\nx\n");
    let (run, report) = area.apply(&[]);
    run.expect_code(0);
    assert_eq!(area.read("app.conf"), "port = 80\n# debug = 3\n");
    assert_eq!(area.read("other.conf"), "xx\n");
    assert!(
        outcomes(&report)
            .iter()
            .all(|o| o.ends_with("removed the matching lines")),
        "{report:#}"
    );
    let path = area.path("app.conf").display().to_string();
    assert_eq!(
        reapply(&area, "box/app/no-debug"),
        [format!(
            "box/app/no-debug unchanged: line {path} is as desired"
        )]
    );
}

#[test]
fn a_missing_file_fails_clearly_unless_create_says_to_create_it() {
    let area = Area::new(SSHD);
    let (run, report) = area.apply(&[]);
    run.expect_code(1);
    let error = report["instances"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("sshd_config does not exist") && error.contains("set 'create: true'"),
        "{report:#}"
    );
    assert!(!area.path("sshd_config").exists());

    area.write(&SSHD.replace("}\n", ", create: true}\n"));
    let (run, report) = area.apply(&[]);
    run.expect_code(0);
    let path = area.path("sshd_config").display().to_string();
    assert_eq!(
        outcomes(&report),
        [format!(
            "box/app/root changed: line {path}: created the file, appended the line"
        )]
    );
    assert_eq!(area.read("sshd_config"), "PermitRootLogin no\n");
}

#[test]
fn a_regular_expression_with_special_characters_is_read_as_written() {
    // Dots, brackets, a `$` anchor and a backslash reach `awk` untouched by the shell.
    let area = Area::new(
        r#"    - name: listen
      line: {path: "{{ dir }}/nginx.conf", line: "listen 10.0.0.1:8080;", match: '^listen [0-9]+\.[0-9.]+:80;?$'}
"#,
    );
    area.put(
        "nginx.conf",
        "listen 10x0x0x1:80;\nlisten 127.0.0.1:80;\nlisten 127.0.0.1:8000;\n",
    );
    area.apply(&[]).0.expect_code(0);
    assert_eq!(
        area.read("nginx.conf"),
        "listen 10x0x0x1:80;\nlisten 10.0.0.1:8080;\nlisten 127.0.0.1:8000;\n"
    );
}

const HOSTS: &str = r#"    - name: hosts
      block:
        path: "{{ dir }}/hosts"
        content: |
          10.0.0.1 db
          10.0.0.2 cache
"#;

#[test]
fn a_block_is_inserted_updated_in_place_and_removed_each_once() {
    let area = Area::new(HOSTS);
    area.put("hosts", "127.0.0.1 localhost\n");
    let path = area.path("hosts").display().to_string();
    let plan = area.drover(&["plan"]).expect_code(0);
    assert!(
        plan.stdout()
            .contains(&format!("block {path} (drover box/app/hosts) — new")),
        "{}",
        plan.stdout()
    );
    area.apply(&[]).0.expect_code(0);
    let block =
        "# BEGIN drover box/app/hosts\n10.0.0.1 db\n10.0.0.2 cache\n# END drover box/app/hosts\n";
    assert_eq!(area.read("hosts"), format!("127.0.0.1 localhost\n{block}"));
    assert_eq!(
        reapply(&area, "box/app/hosts"),
        [format!(
            "box/app/hosts unchanged: block {path} is as desired"
        )]
    );

    // Lines after the block stay after it when the block changes.
    let text = area.read("hosts");
    area.put("hosts", &format!("{text}::1 localhost\n"));
    area.write(&HOSTS.replace("10.0.0.2", "10.0.0.3"));
    let (run, report) = area.apply(&[]);
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        [format!(
            "box/app/hosts changed: block {path}: updated the block"
        )]
    );
    assert_eq!(
        area.read("hosts"),
        format!(
            "127.0.0.1 localhost\n{}::1 localhost\n",
            block.replace("10.0.0.2", "10.0.0.3")
        )
    );

    area.write("    - name: hosts\n      block: {path: \"{{ dir }}/hosts\", state: absent}\n");
    let (run, report) = area.apply(&[]);
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        [format!(
            "box/app/hosts changed: block {path}: removed the block"
        )]
    );
    assert_eq!(area.read("hosts"), "127.0.0.1 localhost\n::1 localhost\n");
    assert_eq!(
        reapply(&area, "box/app/hosts"),
        [format!(
            "box/app/hosts unchanged: block {path} is as desired"
        )]
    );
}

#[test]
fn drift_finds_a_line_edited_by_hand_and_refresh_repairs_it() {
    let area = Area::new(&format!("{SSHD}{HOSTS}"));
    area.put("sshd_config", "PermitRootLogin yes\n");
    area.put("hosts", "");
    area.apply(&[]).0.expect_code(0);
    area.drover(&["drift", "--detailed-exitcode"])
        .expect_code(0);

    area.put("sshd_config", "PermitRootLogin yes\n");
    let hosts = area.read("hosts").replace("10.0.0.2", "10.9.9.9");
    area.put("hosts", &hosts);
    let run = area
        .drover(&["drift", "--format", "json", "--detailed-exitcode"])
        .expect_code(2);
    let report: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    let findings: Vec<String> = report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| format!("{} {}", i["id"].as_str().unwrap(), i["findings"][0]))
        .collect();
    assert_eq!(
        findings,
        [
            format!(
                "box/app/hosts {}",
                serde_json::json!({"kind": "edit", "path": area.path("hosts").display().to_string(), "what": "the block differs from the desired content"})
            ),
            format!(
                "box/app/root {}",
                serde_json::json!({"kind": "edit", "path": area.path("sshd_config").display().to_string(), "what": "the line that matches `match` differs from the desired line"})
            ),
        ],
        "{report:#}"
    );

    area.apply(&["--refresh"]).0.expect_code(0);
    assert_eq!(area.read("sshd_config"), "PermitRootLogin no\n");
    assert!(area.read("hosts").contains("10.0.0.2 cache\n"));
    area.drover(&["drift", "--detailed-exitcode"])
        .expect_code(0);
}

#[test]
fn a_secret_in_a_block_or_a_line_reaches_the_file_and_nothing_else() {
    let manifests = tempfile::tempdir().unwrap();
    let area = tempfile::tempdir().unwrap();
    let token = "tok-5d1e8b-very-secret";
    crate::harness::write_fixture(
        manifests.path(),
        &format!(
            r#"
//- all.yaml
apiVersion: drover/v1
kind: Host
metadata: {{name: box}}
spec:
  transport: local
  vars: {{dir: {dir}, token: {{valueFrom: {{file: token.txt}}}}}}
---
apiVersion: drover/v1
kind: Workflow
metadata: {{name: app}}
spec:
  hosts: {{names: [box]}}
  tasks:
    - name: env
      block: {{path: "{{{{ dir }}}}/env", content: "TOKEN={{{{ token }}}}", create: true}}
    - name: key
      line: {{path: "{{{{ dir }}}}/key", line: "key {{{{ token }}}}", match: "^key ", create: true}}
//- token.txt
{token}
"#,
            dir = area.path().display()
        ),
    );
    for format in ["text", "json"] {
        let run = Drover::new()
            .args(["plan", "--color", "never", "--format", format])
            .arg_path(manifests.path())
            .run()
            .expect_code(0);
        assert!(!run.stdout().contains(token), "{}", run.stdout());
    }
    let report = area.path().join("report.json");
    let run = Drover::new()
        .args(["apply", "--auto-approve", "--color", "never", "--report"])
        .arg_path(&report)
        .arg_path(manifests.path())
        .run()
        .expect_code(0);
    assert!(!run.stdout().contains(token) && !run.stderr().contains(token));
    assert!(!std::fs::read_to_string(&report).unwrap().contains(token));
    let state = std::fs::read(manifests.path().join(".drover/state.redb")).unwrap();
    assert!(
        !state.windows(token.len()).any(|w| w == token.as_bytes()),
        "the secret reached the state file"
    );
    let env = std::fs::read_to_string(area.path().join("env")).unwrap();
    assert!(env.contains(&format!("\nTOKEN={token}\n")), "{env}");
    assert_eq!(
        std::fs::read_to_string(area.path().join("key")).unwrap(),
        format!("key {token}\n")
    );
}

/// Applies again on purpose (`--replace`) and says what the task found.
fn reapply(area: &Area, id: &str) -> Vec<String> {
    let (run, report) = area.apply(&["--replace", id]);
    run.expect_code(0);
    outcomes(&report)
}
