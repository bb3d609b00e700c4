//! `archive` tasks over SSH against the fleet: a gzip tar built here is sent to every host
//! on stdin, unpacked once, left alone by a second apply (no upload), its marker's loss
//! found by drift in one round trip per host and repaired by `apply --refresh`; with
//! `become: root`, unpacked through `sudo -n` and owned by root.

use std::os::unix::fs::MetadataExt as _;
use std::process::Command;

use crate::drift::{drover, text};
use crate::fleet::Fleet;

const TASKS: &str = r#"apiVersion: drover/v1
kind: Workflow
metadata: {name: app}
spec:
  hosts: {matchLabels: {role: web}}
  tasks:
    - name: unpack
      archive: {source: app.tgz, dest: "{{ root }}/archives/opt"}
"#;

#[test]
fn an_archive_is_unpacked_over_ssh_once_and_its_lost_marker_is_found_and_repaired() {
    let fleet = Fleet::shared();
    let dir = tempfile::tempdir().unwrap();
    fleet.manifests(dir.path(), TASKS);
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("app/data")).unwrap();
    std::fs::write(tree.path().join("app/README"), "hello\n").unwrap();
    // Big and binary enough that it cannot travel inline.
    let blob: Vec<u8> = (0..300_000_u32)
        .map(|i| u8::try_from(i * 7 % 251).unwrap())
        .collect();
    std::fs::write(tree.path().join("app/data/blob"), &blob).unwrap();
    let archive = dir.path().join("app.tgz");
    let status = Command::new("tar")
        .args(["-czf", archive.to_str().unwrap(), "app"])
        .current_dir(tree.path())
        .status()
        .unwrap();
    assert!(status.success());
    let dest = |host: usize| fleet.host(host).root.join("archives/opt");
    let n = fleet.len();

    let out = drover(dir.path(), &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{n} changed")),
        "{}",
        text(&out)
    );
    for host in 0..n {
        assert_eq!(
            std::fs::read_to_string(dest(host).join("app/README")).unwrap(),
            "hello\n"
        );
        assert_eq!(
            std::fs::read(dest(host).join("app/data/blob")).unwrap(),
            blob
        );
    }
    let out = drover(dir.path(), &["apply", "--auto-approve"]);
    assert!(text(&out).contains("No changes"), "{}", text(&out));
    let out = drover(dir.path(), &["drift", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    std::fs::remove_file(dest(0).join(".drover-archive-app.unpack")).unwrap();
    let out = drover(
        dir.path(),
        &["drift", "--format", "json", "--detailed-exitcode"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let drifted: Vec<&str> = report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "drifted")
        .map(|i| i["findings"][0]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(drifted, ["missing"], "{report:#}");
    for host in report["hosts"].as_array().unwrap() {
        assert_eq!(host["roundTrips"], 1, "{report:#}");
    }

    let out = drover(dir.path(), &["apply", "--refresh", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("1 changed"), "{}", text(&out));
    let out = drover(dir.path(), &["drift", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn an_archive_unpacked_with_become_belongs_to_root() {
    let Some(fleet) = crate::privilege::fleet_with_sudo() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tasks = r#"apiVersion: drover/v1
kind: Workflow
metadata: {name: rooted}
spec:
  hosts: {names: [HOST]}
  tasks:
    - name: unpack
      become: root
      archive: {source: app.tar, dest: "{{ root }}/archives-root/opt"}
"#
    .replace("HOST", &fleet.host(0).name);
    fleet.manifests(dir.path(), &tasks);
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("app")).unwrap();
    std::fs::write(tree.path().join("app/README"), "rooted\n").unwrap();
    let status = Command::new("tar")
        .args(["-cf", dir.path().join("app.tar").to_str().unwrap(), "app"])
        .current_dir(tree.path())
        .status()
        .unwrap();
    assert!(status.success());
    let out = drover(dir.path(), &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    let dest = fleet.host(0).root.join("archives-root/opt");
    let readme = std::fs::metadata(dest.join("app/README")).unwrap();
    assert_eq!(readme.uid(), 0);
    let out = drover(
        dir.path(),
        &[
            "apply",
            "--auto-approve",
            "--replace",
            &format!("{}/rooted/unpack", fleet.host(0).name),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("already unpacked"), "{}", text(&out));
    let out = drover(dir.path(), &["drift", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
