//! Logs on stderr: plain when stderr is not a terminal, JSON lines with `--log-format json`,
//! with the run and instance each line belongs to.

use crate::harness::{Drover, root};

#[test]
fn logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let run = Drover::new()
        .args(["-v", "validate"])
        .arg_path(root().join("manifests/demo"))
        .run()
        .expect_code(0);
    assert!(
        run.stderr().contains("read manifest directory"),
        "{}",
        run.stderr()
    );
    assert!(!run.stderr().contains('\u{1b}'), "{:?}", run.stderr());
}

#[test]
fn json_logs_are_one_object_per_line_with_their_spans() {
    let dir = tempfile::tempdir().unwrap();
    let area = tempfile::tempdir().unwrap();
    crate::harness::write_fixture(
        dir.path(),
        &format!(
            "//- m.yaml\napiVersion: drover/v1\nkind: Host\nmetadata: {{name: box}}\nspec: {{transport: local}}\n---\napiVersion: drover/v1\nkind: Workflow\nmetadata: {{name: app}}\nspec:\n  hosts: {{names: [box]}}\n  tasks:\n    - {{name: note, run: \"echo hi >> {}/log\"}}\n",
            area.path().display()
        ),
    );
    let run = Drover::new()
        .args(["-v", "--log-format", "json", "apply", "--auto-approve"])
        .arg_path(dir.path())
        .run()
        .expect_code(0);
    let lines: Vec<serde_json::Value> = run
        .stderr()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let ended = lines
        .iter()
        .find(|l| l["message"] == "attempt ended")
        .unwrap_or_else(|| panic!("{}", run.stderr()));
    assert_eq!(ended["span"]["id"], "box/app/note", "{ended}");
    assert!(
        ended["spans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "run"),
        "{ended}"
    );
}
