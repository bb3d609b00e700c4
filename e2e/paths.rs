//! `directory` and `link` tasks over SSH against the fleet: created on every host, left
//! alone by a second apply, drift (a directory chmodded, a link retargeted by hand) found
//! in one round trip per host and repaired by `apply --refresh`; with `become: root`, a
//! directory owned by root, probed through `sudo -n`.

use crate::drift::{drover, text};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use crate::fleet::Fleet;

const TASKS: &str = r#"apiVersion: drover/v1
kind: Workflow
metadata: {name: app}
spec:
  hosts: {matchLabels: {role: web}}
  tasks:
    - name: www
      directory: {path: "@/releases/v1", mode: "0750"}
    - name: current
      needs: [www]
      link: {path: "@/current", target: "@/releases/v1"}
"#;

#[test]
fn directories_and_links_apply_over_ssh_and_their_drift_is_found_and_repaired() {
    let fleet = Fleet::shared();
    let dir = tempfile::tempdir().unwrap();
    fleet.manifests(dir.path(), &TASKS.replace('@', "{{ root }}/paths"));
    let base = |host: usize| fleet.host(host).root.join("paths");
    let n = fleet.len();

    let out = drover(dir.path(), &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{} changed", 2 * n)),
        "{}",
        text(&out)
    );
    for host in 0..n {
        let www = base(host).join("releases/v1");
        assert_eq!(std::fs::metadata(&www).unwrap().mode() & 0o7777, 0o750);
        assert_eq!(std::fs::read_link(base(host).join("current")).unwrap(), www);
    }
    let out = drover(dir.path(), &["apply", "--auto-approve"]);
    assert!(text(&out).contains("No changes"), "{}", text(&out));
    let out = drover(dir.path(), &["drift", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Host 1: the directory is chmodded; host 2: the link points elsewhere.
    std::fs::set_permissions(
        base(0).join("releases/v1"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    std::fs::remove_file(base(1).join("current")).unwrap();
    std::os::unix::fs::symlink("/tmp", base(1).join("current")).unwrap();

    let out = drover(
        dir.path(),
        &["drift", "--format", "json", "--detailed-exitcode"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<String> = fleet.hosts().iter().map(|h| h.name.clone()).collect();
    let found: Vec<String> = report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let f = &i["findings"][0];
            format!(
                "{} {} {}",
                i["id"].as_str().unwrap(),
                f["field"],
                f["found"]
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            format!("{}/app/www \"mode\" \"0777\"", names[0]),
            format!("{}/app/current \"target\" \"/tmp\"", names[1]),
        ],
        "{report:#}"
    );
    for host in report["hosts"].as_array().unwrap() {
        assert_eq!(host["roundTrips"], 1, "{report:#}");
    }

    let out = drover(dir.path(), &["apply", "--refresh", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("2 changed"), "{}", text(&out));
    assert_eq!(
        std::fs::metadata(base(0).join("releases/v1"))
            .unwrap()
            .mode()
            & 0o7777,
        0o750
    );
    assert_eq!(
        std::fs::read_link(base(1).join("current")).unwrap(),
        base(1).join("releases/v1")
    );
    let out = drover(dir.path(), &["drift", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_directory_owned_by_root_is_made_and_probed_through_sudo() {
    let Some(fleet) = crate::privilege::fleet_with_sudo() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tasks = r#"apiVersion: drover/v1
kind: Workflow
metadata: {name: vault}
spec:
  hosts: {names: [HOST]}
  tasks:
    - name: vault
      become: root
      directory: {path: "{{ root }}/paths-root/vault", mode: "0700", owner: root, group: root}
"#
    .replace("HOST", &fleet.host(0).name);
    fleet.manifests(dir.path(), &tasks);
    let out = drover(dir.path(), &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    let vault = fleet.host(0).root.join("paths-root/vault");
    let meta = std::fs::metadata(&vault).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o700));
    let out = drover(dir.path(), &["drift", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    std::fs::set_permissions(&vault, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = drover(
        dir.path(),
        &["drift", "--format", "json", "--detailed-exitcode"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["instances"][0]["findings"][0]["found"], "0755",
        "{report:#}"
    );
}
