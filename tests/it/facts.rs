//! Host facts over the local transport: `host.facts` in templates and `when` checked
//! against this machine's real `/etc/os-release` and `uname -m`, the cache in the state file
//! (gathered once, again with `--refresh`), `validate` with stand-ins, and a plan against a
//! snapshot without facts (decision 0018).

use std::path::{Path, PathBuf};

use crate::harness::{Area, Drover};

/// `ID` of this machine's os-release, as the probe reads it.
fn real_os() -> String {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("ID="))
        .map_or_else(
            || "unknown".to_owned(),
            |v| v.trim_matches(|c| c == '"' || c == '\'').to_owned(),
        )
}

fn real_arch() -> String {
    let out = std::process::Command::new("uname")
        .arg("-m")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn tasks(os: &str) -> String {
    format!(
        r#"    - name: info
      file: {{path: "{{{{ dir }}}}/info", content: "{{{{ host.facts.os }}}} {{{{ host.facts.arch }}}}\n"}}
    - name: here
      when: {{facts: {{os: [plan9, {os}]}}}}
      file: {{path: "{{{{ dir }}}}/here", content: "yes\n"}}
    - name: never
      needs: [here]
      when: {{facts: {{arch: [m68k, vax]}}}}
      file: {{path: "{{{{ dir }}}}/never", content: "no\n"}}
    - name: after
      needs: [never]
      file: {{path: "{{{{ dir }}}}/after", content: "after\n"}}
"#
    )
}

fn state(area: &Area) -> PathBuf {
    area.manifests.path().join(".drover/state.redb")
}

fn recorded_facts(path: &Path) -> drover::facts::Gathered {
    let all = drover::store::Store::at(path).facts().unwrap();
    let name = drover::model::meta::HostName::parse("box").unwrap();
    all.get(&name).cloned().expect("facts of box are recorded")
}

const GATHERED_ONCE: &str = "gathered the facts of 1 host (1 command";

#[test]
fn templates_and_when_use_the_real_facts_gathered_once_and_again_on_refresh() {
    let (os, arch) = (real_os(), real_arch());
    let area = Area::new(&tasks(&os));
    let (run, report) = area.apply(&[]);
    assert_eq!(run.code(), 0, "{}{}", run.stdout(), run.stderr());
    assert!(run.stderr().contains(GATHERED_ONCE), "{}", run.stderr());
    assert_eq!(area.read("info"), format!("{os} {arch}\n"));
    assert_eq!(area.read("here"), "yes\n");
    assert!(!area.path("never").exists(), "`when` left it out");
    // `after` needs `never`, which has no instance here: it waits for what `never` needed.
    assert_eq!(area.read("after"), "after\n");
    let ids: Vec<&str> = report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(!ids.contains(&"box/app/never"));
    let first = recorded_facts(&state(&area));
    assert_eq!(
        (first.facts.os.as_str(), first.facts.arch.as_str()),
        (os.as_str(), arch.as_str())
    );

    // `status` decides `when` with the recorded facts: `never` is not pending.
    let run = area.drover(&["status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(
        (
            &status["hosts"][0]["converged"],
            &status["hosts"][0]["pending"]
        ),
        (&serde_json::json!(3), &serde_json::json!(0)),
        "{status}"
    );

    // The second run uses the recorded facts: nothing gathered, nothing to do.
    let (run, report) = area.apply(&[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(
        !run.stderr().contains("gathered the facts"),
        "{}",
        run.stderr()
    );
    assert!(run.stdout().contains("No changes"), "{}", run.stdout());
    assert_eq!(report["contacts"]["commands"], 0);
    assert_eq!(recorded_facts(&state(&area)), first);

    // `--refresh` gathers them again (and records them anew).
    let (run, _) = area.apply(&["--refresh"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(run.stderr().contains(GATHERED_ONCE), "{}", run.stderr());
    assert!(recorded_facts(&state(&area)).gathered_at >= first.gathered_at);
}

#[test]
fn validate_checks_with_stand_in_facts_and_says_so() {
    let area = Area::new(&tasks("debian"));
    let run = area.drover(&["validate"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("were checked with stand-in facts, and every `when` was taken as holding"),
        "{}",
        run.stderr()
    );
    // Nothing was gathered, nothing written.
    assert!(!state(&area).exists());
}

#[test]
fn a_plan_against_a_snapshot_without_facts_says_what_may_change() {
    let area = Area::new(&tasks(&real_os()));
    let (run, _) = area.apply(&[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let snapshot = drover::store::Store::at(state(&area))
        .export(drover::state::Timestamp(0))
        .unwrap();
    assert_eq!(snapshot.facts.len(), 1, "the snapshot carries the facts");
    let with = area.area.path().join("with.json");
    std::fs::write(&with, serde_json::to_vec(&snapshot).unwrap()).unwrap();
    let mut without = snapshot;
    without.facts.clear();
    let bare = area.area.path().join("without.json");
    std::fs::write(&bare, serde_json::to_vec(&without).unwrap()).unwrap();

    let plan = |file: &Path| {
        Drover::new()
            .args(["plan", "--color", "never", "--state-from"])
            .arg_path(file)
            .arg_path(area.manifests.path())
            .run()
    };
    let run = plan(&with);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(run.stdout().contains("No changes"), "{}", run.stdout());
    let run = plan(&bare);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(
        run.stderr().contains("the facts of box are not known here"),
        "{}",
        run.stderr()
    );
    let out = run.stdout();
    assert!(
        out.contains("depends on the facts of box, not known here"),
        "{out}"
    );
    // `never` may exist there after all: it is planned, as new, without its real spec.
    assert!(out.contains("+ never"), "{out}");
    assert!(
        out.contains("2 may change (host facts not available here)"),
        "{out}"
    );
}

/// A plan that cannot reach a host to learn its facts still plans: what uses them "may
/// change", with a warning naming the host. An apply refuses.
#[test]
fn a_plan_that_cannot_reach_a_host_plans_its_facts_as_unknown() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    crate::harness::write_fixture(
        dir.path(),
        &format!(
            r#"
//- all.yaml
apiVersion: drover/v1
kind: Host
metadata: {{name: far}}
spec: {{address: 127.0.0.1, port: {port}, user: nobody, knownHostsFile: known_hosts}}
---
apiVersion: drover/v1
kind: Workflow
metadata: {{name: app}}
spec:
  hosts: {{names: [far]}}
  tasks:
    - name: motd
      file: {{path: /etc/motd, content: "{{{{ host.facts.os }}}}\n"}}
    - name: plain
      file: {{path: /etc/plain, content: "hi\n"}}
"#
        ),
    );
    std::fs::write(dir.path().join("known_hosts"), "").unwrap();
    let plan = Drover::new()
        .args(["plan", "--color", "never"])
        .arg_path(dir.path())
        .run()
        .expect_code(0);
    assert!(
        plan.stderr().contains("cannot gather the facts of far"),
        "{}",
        plan.stderr()
    );
    assert!(plan.stdout().contains("+ plain"), "{}", plan.stdout());
    assert!(
        !dir.path().join(".drover").exists(),
        "a plan writes nothing"
    );
    let apply = Drover::new()
        .args(["apply", "--auto-approve", "--color", "never"])
        .arg_path(dir.path())
        .run();
    assert_eq!(apply.code(), 1, "{}{}", apply.stdout(), apply.stderr());
}

/// A template that only renders with the real facts (a map indexed by the OS) is not an
/// error where the facts are stand-ins: validate says nothing, and apply, which gathers the
/// real facts, renders it.
#[test]
fn a_template_that_needs_the_real_facts_to_render_is_judged_with_them() {
    let os = real_os();
    let area = Area::new(&format!(
        "    - name: pm\n      vars:\n        pkg: {{{os}: found}}\n      file: {{path: \"{{{{ dir }}}}/pm\", content: \"{{{{ pkg[host.facts.os] }}}}\\n\"}}\n"
    ));
    let run = area.drover(&["validate"]);
    assert_eq!(run.code(), 0, "{}{}", run.stdout(), run.stderr());
    let (run, _) = area.apply(&[]);
    assert_eq!(run.code(), 0, "{}{}", run.stdout(), run.stderr());
    assert_eq!(area.read("pm"), "found\n");
    // With facts that do not fit, the real render fails, located.
    let area = Area::new(
        "    - name: pm\n      vars:\n        pkg: {nowhere: x}\n      file: {path: \"{{ dir }}/pm\", content: \"{{ pkg[host.facts.os] }}\\n\"}\n",
    );
    let run = area.drover(&["apply", "--auto-approve"]);
    assert_eq!(run.code(), 1, "{}{}", run.stdout(), run.stderr());
    assert!(
        run.stderr().contains("template::undefined"),
        "{}",
        run.stderr()
    );
}
