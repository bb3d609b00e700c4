//! Host facts over SSH against the fleet: gathered in one round trip per host (one command
//! on one connection each), used by a template and a `when`, recorded, and a no-op apply
//! afterwards opens zero connections (decision 0018).

use crate::drift::{drover, text};
use crate::fleet::Fleet;

const TASKS: &str = r#"apiVersion: drover/v1
kind: Workflow
metadata: {name: app}
spec:
  hosts: {matchLabels: {role: web}}
  tasks:
    - {name: workdir, run: {command: "mkdir -p @", creates: "@"}}
    - name: facts
      needs: [workdir]
      file: {path: "@/facts", content: "{{ host.facts.os }} {{ host.facts.arch }} {{ host.facts.init }}\n"}
    - name: nowhere
      needs: [workdir]
      when: {facts: {arch: [m68k, vax]}}
      file: {path: "@/nowhere", content: "no\n"}
"#;

fn report(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn facts_are_gathered_in_one_round_trip_per_host_then_a_no_op_opens_zero_connections() {
    let fleet = Fleet::shared();
    let dir = tempfile::tempdir().unwrap();
    fleet.manifests(dir.path(), &TASKS.replace('@', "{{ root }}/facts"));
    let report_path = dir.path().join("report.json");
    let apply = [
        "apply",
        "--auto-approve",
        "--report",
        report_path.to_str().unwrap(),
    ];
    let n = fleet.len();

    let out = drover(dir.path(), &apply);
    assert!(out.status.success(), "{}", text(&out));
    let expected = format!("gathered the facts of {n} hosts ({n} commands, {n} new connections)");
    assert!(text(&out).contains(&expected), "{}", text(&out));
    // The facts probe opened each host's connection; the apply reused it.
    assert_eq!(report(dir.path())["contacts"]["connections"], 0);
    for i in 0..n {
        let root = fleet.host(i).root.join("facts");
        let written = std::fs::read_to_string(root.join("facts")).unwrap();
        let words: Vec<&str> = written.split_whitespace().collect();
        assert_eq!(words.len(), 3, "{written:?}");
        assert!(!written.contains("not known here"), "{written:?}");
        assert!(!root.join("nowhere").exists());
    }

    let out = drover(dir.path(), &apply);
    assert!(
        out.status.success() && text(&out).contains("No changes"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("gathered the facts"), "{}", text(&out));
    assert_eq!(
        report(dir.path())["contacts"],
        serde_json::json!({"connections": 0, "channels": 0, "commands": 0, "filesWritten": 0, "filesRead": 0})
    );
}
