//! `directory` and `link` tasks over the local transport on real temporary directories:
//! created once and then left alone, modes and targets corrected, removals that refuse what
//! they must not touch, and drift found and repaired.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::harness::{Area, outcomes};

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn link_target(path: &Path) -> String {
    std::fs::read_link(path).unwrap().display().to_string()
}

const DIRECTORY: &str = r#"    - name: data
      directory: {path: "{{ dir }}/srv/data", mode: "0750"}
"#;

#[test]
fn a_directory_is_created_with_its_parents_then_left_alone_and_its_mode_corrected() {
    let area = Area::new(DIRECTORY);
    let plan = area.drover(&["plan"]).expect_code(0);
    assert!(
        plan.stdout().contains(&format!(
            "directory {} (mode 0750) — new",
            area.path("srv/data").display()
        )),
        "{}",
        plan.stdout()
    );
    let (run, report) = area.apply(&[]);
    run.expect_code(0);
    let data = area.path("srv/data");
    assert_eq!(
        outcomes(&report),
        [format!(
            "box/app/data changed: directory {}: created",
            data.display()
        )]
    );
    assert!(data.is_dir());
    assert_eq!(mode(&data), 0o750);

    // Recorded: nothing to do, nothing contacted.
    let (run, report) = area.apply(&[]);
    assert!(run.expect_code(0).stdout().contains("No changes"));
    assert_eq!(report["contacts"]["commands"], 0);
    // Run again on purpose: the host is already right, and the task says so.
    let (run, report) = area.apply(&["--replace", "box/app/data"]);
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        [format!(
            "box/app/data unchanged: directory {} is as desired",
            data.display()
        )]
    );

    // A new mode changes the mode and nothing else.
    std::fs::write(data.join("kept"), "x").unwrap();
    area.write(&DIRECTORY.replace("0750", "0700"));
    let (run, report) = area.apply(&[]);
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        [format!(
            "box/app/data changed: directory {}: mode 0750 → 0700",
            data.display()
        )]
    );
    assert_eq!(mode(&data), 0o700);
    assert!(data.join("kept").exists());
}

#[test]
fn an_absent_directory_is_removed_but_only_when_empty_unless_recursive() {
    let area = Area::new(DIRECTORY);
    area.apply(&[]).0.expect_code(0);
    let data = area.path("srv/data");
    std::fs::write(data.join("file"), "x").unwrap();

    area.write(
        "    - name: data\n      directory: {path: \"{{ dir }}/srv/data\", state: absent}\n",
    );
    let (run, report) = area.apply(&[]);
    run.expect_code(1);
    assert_eq!(
        outcomes(&report),
        [format!(
            "box/app/data failed: {} is not empty; it is left in place: set 'recursive: true' to remove it with everything in it",
            data.display()
        )]
    );
    assert!(data.join("file").exists());

    std::fs::remove_file(data.join("file")).unwrap();
    let (run, report) = area.apply(&[]);
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        [format!(
            "box/app/data changed: directory {}: removed",
            data.display()
        )]
    );
    assert!(!data.exists() && area.path("srv").is_dir());
    let (_, report) = area.apply(&["--replace", "box/app/data"]);
    assert_eq!(report["instances"][0]["status"], "unchanged");

    std::fs::create_dir_all(data.join("deep/er")).unwrap();
    area.write(
        "    - name: data\n      directory: {path: \"{{ dir }}/srv/data\", state: absent, recursive: true}\n",
    );
    let (run, report) = area.apply(&[]);
    run.expect_code(0);
    assert_eq!(report["instances"][0]["status"], "changed");
    assert!(!data.exists());
}

#[test]
fn a_directory_refuses_to_replace_a_file_or_follow_a_link() {
    let area = Area::new("    - name: data\n      directory: {path: \"{{ dir }}/data\"}\n");
    std::fs::write(area.path("data"), "a file\n").unwrap();
    let (run, report) = area.apply(&[]);
    run.expect_code(1);
    assert!(
        report["instances"][0]["error"]
            .as_str()
            .unwrap()
            .ends_with("data exists and is not a directory; it is left in place: remove it, or give the directory another path"),
        "{report:#}"
    );
    std::fs::remove_file(area.path("data")).unwrap();
    std::fs::create_dir(area.path("real")).unwrap();
    std::os::unix::fs::symlink(area.path("real"), area.path("data")).unwrap();
    let (run, report) = area.apply(&[]);
    run.expect_code(1);
    assert!(
        report["instances"][0]["error"]
            .as_str()
            .unwrap()
            .contains("is a symbolic link, not a directory"),
        "{report:#}"
    );
}

const LINK: &str = r#"    - name: sites
      directory: {path: "{{ dir }}/sites-enabled"}
    - name: app
      needs: [sites]
      link: {path: "{{ dir }}/sites-enabled/app", target: "{{ dir }}/sites-available/app"}
"#;

#[test]
fn a_link_is_created_retargeted_and_removed_only_when_it_is_a_link() {
    let area = Area::new(LINK);
    let link = area.path("sites-enabled/app");
    let plan = area.drover(&["plan"]).expect_code(0);
    assert!(
        plan.stdout().contains(&format!(
            "link {} → {} — new",
            link.display(),
            area.path("sites-available/app").display()
        )),
        "{}",
        plan.stdout()
    );
    let (run, report) = area.apply(&[]);
    run.expect_code(0);
    assert_eq!(
        report["instances"][1]["summary"],
        format!("link {}: created", link.display())
    );
    assert_eq!(
        link_target(&link),
        area.path("sites-available/app").display().to_string()
    );
    let (_, report) = area.apply(&["--replace", "box/app/app"]);
    assert_eq!(report["instances"][0]["status"], "unchanged", "{report:#}");

    // Retargeted to a relative path, stored as written.
    area.write(&LINK.replace("\"{{ dir }}/sites-available/app\"", "../sites-available/v2"));
    let (run, report) = area.apply(&[]);
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        [format!(
            "box/app/app changed: link {}: retargeted from {}",
            link.display(),
            area.path("sites-available/app").display()
        )]
    );
    assert_eq!(link_target(&link), "../sites-available/v2");

    // Absent removes the link, and leaves anything else alone.
    let absent = LINK.replace(
        "target: \"{{ dir }}/sites-available/app\"}",
        "state: absent}",
    );
    area.write(&absent);
    let (run, report) = area.apply(&[]);
    run.expect_code(0);
    assert_eq!(
        report["instances"][0]["summary"],
        format!("link {}: removed", link.display())
    );
    assert!(std::fs::symlink_metadata(&link).is_err());
    std::fs::write(&link, "mine\n").unwrap();
    let (run, report) = area.apply(&["--replace", "box/app/app"]);
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        [format!(
            "box/app/app unchanged: link {}: {} is not a symbolic link; left in place",
            link.display(),
            link.display()
        )]
    );
    assert_eq!(std::fs::read_to_string(&link).unwrap(), "mine\n");
}

#[test]
fn a_file_where_a_link_should_be_is_a_clear_error_unless_forced() {
    let area = Area::new(LINK);
    let link = area.path("sites-enabled/app");
    std::fs::create_dir(area.path("sites-enabled")).unwrap();
    std::fs::write(&link, "a file\n").unwrap();
    let (run, report) = area.apply(&[]);
    run.expect_code(1);
    assert_eq!(
        outcomes(&report),
        [
            format!(
                "box/app/sites unchanged: directory {} is as desired",
                area.path("sites-enabled").display()
            ),
            format!(
                "box/app/app failed: {} is a regular file, not a symbolic link; it is left in place: remove it, or set 'force: true' to replace it",
                link.display()
            ),
        ]
    );
    assert_eq!(std::fs::read_to_string(&link).unwrap(), "a file\n");

    area.write(&LINK.replace("/app\"}", "/app\", force: true}"));
    let (run, report) = area.apply(&[]);
    run.expect_code(0);
    assert_eq!(
        report["instances"][0]["summary"],
        format!("link {}: replaced a file", link.display())
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // Its directory must exist: a link does not create it.
    let area = Area::new(
        "    - name: app\n      link: {path: \"{{ dir }}/nowhere/app\", target: /etc/hostname}\n",
    );
    let (run, report) = area.apply(&[]);
    run.expect_code(1);
    assert!(
        report["instances"][0]["error"]
            .as_str()
            .unwrap()
            .contains("nowhere does not exist; create it first"),
        "{report:#}"
    );
}

#[test]
fn drift_finds_a_chmodded_directory_and_a_retargeted_link_and_refresh_repairs_them() {
    let area = Area::new(&format!(
        "{DIRECTORY}{LINK}    - name: gone\n      directory: {{path: \"{{{{ dir }}}}/gone\", state: absent}}\n"
    ));
    area.apply(&[]).0.expect_code(0);
    area.drover(&["drift", "--detailed-exitcode"])
        .expect_code(0);

    std::fs::set_permissions(
        area.path("srv/data"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let link = area.path("sites-enabled/app");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink("/tmp", &link).unwrap();
    std::fs::create_dir(area.path("gone")).unwrap();

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
    let sites = area.path("sites-available/app");
    assert_eq!(
        findings,
        [
            format!(
                "box/app/app {}",
                serde_json::json!({"kind": "attribute", "path": link.display().to_string(), "field": "target", "applied": sites.display().to_string(), "found": "/tmp"})
            ),
            format!(
                "box/app/data {}",
                serde_json::json!({"kind": "attribute", "path": area.path("srv/data").display().to_string(), "field": "mode", "applied": "0750", "found": "0777"})
            ),
            format!(
                "box/app/gone {}",
                serde_json::json!({"kind": "unexpected", "path": area.path("gone").display().to_string(), "found": "a directory"})
            ),
        ],
        "{report:#}"
    );
    assert_eq!(report["hosts"][0]["roundTrips"], 1);

    let (run, report) = area.apply(&["--refresh"]);
    run.expect_code(0);
    assert_eq!(
        report["instances"].as_array().unwrap().len(),
        3,
        "{report:#}"
    );
    assert_eq!(mode(&area.path("srv/data")), 0o750);
    assert_eq!(link_target(&link), sites.display().to_string());
    assert!(!area.path("gone").exists());
    area.drover(&["drift", "--detailed-exitcode"])
        .expect_code(0);

    // A directory replaced by a link to one is not the directory drover made.
    std::fs::rename(area.path("srv/data"), area.path("srv/moved")).unwrap();
    std::os::unix::fs::symlink(area.path("srv/moved"), area.path("srv/data")).unwrap();
    let run = area
        .drover(&["drift", "--format", "json", "--detailed-exitcode"])
        .expect_code(2);
    let report: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(
        report["instances"][0]["findings"][0]["kind"], "wrongType",
        "{report:#}"
    );
}
