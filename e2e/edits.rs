//! `line` and `block` tasks over SSH against the fleet: files (written by a `run` task, so
//! that they belong to the login user) edited in place on every host,
//! left alone by a second apply, drift (a line and a block edited by hand) found by the probe
//! and repaired by `apply --refresh`; edits of one file taking turns, the first sent ahead.

use crate::drift::{drover, text};

use crate::fleet::Fleet;

const TASKS: &str = r#"apiVersion: drover/v1
kind: Workflow
metadata: {name: edits}
spec:
  hosts: {matchLabels: {role: web}}
  tasks:
    - name: seed
      run: {command: "mkdir -p @ && printf 'Port 22\\n#PermitRootLogin yes\\n' > @/sshd_config && printf '127.0.0.1 localhost\\n' > @/hosts", creates: "@/hosts"}
    - name: root-login
      needs: [seed]
      line: {path: "@/sshd_config", line: "PermitRootLogin no", match: '^#?PermitRootLogin[[:space:]]'}
    - name: hosts
      needs: [seed]
      block:
        path: "@/hosts"
        content: |
          10.0.0.1 db
          10.0.0.2 'cache'
"#;

#[test]
fn lines_and_blocks_are_edited_over_ssh_and_their_drift_is_found_and_repaired() {
    let fleet = Fleet::shared();
    let dir = tempfile::tempdir().unwrap();
    fleet.manifests(dir.path(), &TASKS.replace('@', "{{ root }}/edits"));
    let base = |host: usize| fleet.host(host).root.join("edits");
    let n = fleet.len();

    let out = drover(dir.path(), &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{} changed", 3 * n)),
        "{}",
        text(&out)
    );
    let names: Vec<String> = fleet.hosts().iter().map(|h| h.name.clone()).collect();
    for (host, name) in names.iter().enumerate() {
        assert_eq!(
            std::fs::read_to_string(base(host).join("sshd_config")).unwrap(),
            "Port 22\nPermitRootLogin no\n"
        );
        assert_eq!(
            std::fs::read_to_string(base(host).join("hosts")).unwrap(),
            format!(
                "127.0.0.1 localhost\n# BEGIN drover {name}/edits/hosts\n10.0.0.1 db\n10.0.0.2 'cache'\n# END drover {name}/edits/hosts\n"
            )
        );
    }
    let out = drover(dir.path(), &["apply", "--auto-approve"]);
    assert!(text(&out).contains("No changes"), "{}", text(&out));
    let out = drover(dir.path(), &["drift", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Host 1: the line is edited back; host 2: the block is edited by hand.
    std::fs::write(
        base(0).join("sshd_config"),
        "Port 22\nPermitRootLogin yes\n",
    )
    .unwrap();
    let hosts = std::fs::read_to_string(base(1).join("hosts"))
        .unwrap()
        .replace("10.0.0.1", "10.9.9.9");
    std::fs::write(base(1).join("hosts"), hosts).unwrap();

    let out = drover(
        dir.path(),
        &["drift", "--format", "json", "--detailed-exitcode"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: Vec<String> = report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let f = &i["findings"][0];
            format!("{} {} {}", i["id"].as_str().unwrap(), f["kind"], f["what"])
        })
        .collect();
    let mut expected = vec![
        format!(
            "{}/edits/root-login \"edit\" \"the line that matches `match` differs from the desired line\"",
            names[0]
        ),
        format!(
            "{}/edits/hosts \"edit\" \"the block differs from the desired content\"",
            names[1]
        ),
    ];
    expected.sort();
    let mut found_sorted = found.clone();
    found_sorted.sort();
    assert_eq!(found_sorted, expected, "{report:#}");
    for host in report["hosts"].as_array().unwrap() {
        assert_eq!(host["roundTrips"], 1, "{report:#}");
    }

    let out = drover(dir.path(), &["apply", "--refresh", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("2 changed"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(base(0).join("sshd_config")).unwrap(),
        "Port 22\nPermitRootLogin no\n"
    );
    assert!(
        std::fs::read_to_string(base(1).join("hosts"))
            .unwrap()
            .contains("\n10.0.0.1 db\n")
    );
    let out = drover(dir.path(), &["drift", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// The seed is one command without guards, so the first edit is sent ahead behind it in the
/// same shell (decision 0005); the edits of its file then take turns (decision 0021).
const TURNS: &str = r#"apiVersion: drover/v1
kind: Workflow
metadata: {name: turns}
spec:
  hosts: {matchLabels: {role: web}}
  tasks:
    - name: seed
      run: "mkdir -p @ && printf 'a\\n' > @/f.conf"
    - {name: l1, needs: [seed], line: {path: "@/f.conf", line: "one=1"}}
    - {name: l2, needs: [seed], line: {path: "@/f.conf", line: "two=2"}}
    - {name: l3, needs: [seed], line: {path: "@/f.conf", line: "three=3"}}
    - {name: b1, needs: [seed], block: {path: "@/f.conf", content: blk}}
"#;

#[test]
fn edits_of_one_file_take_turns_over_ssh_sent_ahead_or_not() {
    let fleet = Fleet::shared();
    let dir = tempfile::tempdir().unwrap();
    fleet.manifests(dir.path(), &TURNS.replace('@', "{{ root }}/turns"));
    let names: Vec<String> = fleet.hosts().iter().map(|h| h.name.clone()).collect();
    for _ in 0..3 {
        let out = drover(dir.path(), &["apply", "--auto-approve", "--force"]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains(&format!("{} changed", 5 * fleet.len())),
            "{}",
            text(&out)
        );
        for (host, name) in names.iter().enumerate() {
            assert_eq!(
                std::fs::read_to_string(fleet.host(host).root.join("turns/f.conf")).unwrap(),
                format!(
                    "a\none=1\ntwo=2\nthree=3\n# BEGIN drover {name}/turns/b1\nblk\n# END drover {name}/turns/b1\n"
                )
            );
        }
    }
}
