//! `archive` tasks over the local transport on real temporary directories: archives built
//! with the system's `tar` (and `zip`), unpacked once per content, left alone while the
//! marker holds their hash, unpacked again when the archive changes, drift on the marker,
//! and archives that would write outside their destination refused before anything lands.

use std::path::Path;
use std::process::Command;

use crate::harness::{Area, outcomes};

/// Runs a command of the test's own (`tar`, `zip`) and insists it worked.
fn run(program: &str, args: &[&str], dir: &Path) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds `<manifests>/<name>` from a tree `app/README` (holding `readme`) and
/// `app/bin/run.sh`, with `tar` and the given flags (`-czf`, `-cJf`, …).
fn build_tar(area: &Area, name: &str, flags: &str, readme: &str) {
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("app/bin")).unwrap();
    std::fs::write(tree.path().join("app/README"), readme).unwrap();
    std::fs::write(tree.path().join("app/bin/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    let archive = area.manifests.path().join(name);
    run(
        "tar",
        &[flags, archive.to_str().unwrap(), "app"],
        tree.path(),
    );
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

const UNPACK: &str = r#"    - name: unpack
      archive: {source: app.tar.gz, dest: "{{ dir }}/opt/app"}
"#;

#[test]
fn an_archive_is_unpacked_once_left_alone_then_unpacked_again_when_it_changes() {
    let area = Area::new(UNPACK);
    build_tar(&area, "app.tar.gz", "-czf", "version 1\n");
    let dest = area.path("opt/app");
    let plan = area.drover(&["plan"]).expect_code(0);
    assert!(
        plan.stdout()
            .contains(&format!("archive app.tar.gz → {} — new", dest.display())),
        "{}",
        plan.stdout()
    );
    let (run, report) = area.apply(&[]);
    run.expect_code(0);
    let short: String = sha256(&area.manifests.path().join("app.tar.gz"))
        .chars()
        .take(12)
        .collect();
    assert_eq!(
        outcomes(&report),
        [format!(
            "box/app/unpack changed: archive app.tar.gz → {}: unpacked tar.gz (sha256 {short})",
            dest.display()
        )]
    );
    assert_eq!(area.read("opt/app/app/README"), "version 1\n");
    assert!(dest.join("app/bin/run.sh").is_file());
    let marker = dest.join(".drover-archive-app.unpack");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        format!("{}\n", sha256(&area.manifests.path().join("app.tar.gz")))
    );

    // Recorded: nothing to do, nothing contacted.
    let (run, report) = area.apply(&[]);
    assert!(run.expect_code(0).stdout().contains("No changes"));
    assert_eq!(report["contacts"]["commands"], 0);
    // Run again on purpose: the marker says it is unpacked; one look, nothing written.
    std::fs::write(dest.join("app/README"), "edited on the host\n").unwrap();
    let (run, report) = area.apply(&["--replace", "box/app/unpack"]);
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        [format!(
            "box/app/unpack unchanged: archive app.tar.gz → {}: already unpacked",
            dest.display()
        )]
    );
    assert_eq!(report["contacts"]["commands"], 1, "{report:#}");
    assert_eq!(area.read("opt/app/app/README"), "edited on the host\n");

    // New content: unpacked again, over what is there.
    build_tar(&area, "app.tar.gz", "-czf", "version 2\n");
    let plan = area.drover(&["plan"]).expect_code(0);
    assert!(plan.stdout().contains("sha256:"), "{}", plan.stdout());
    let (run, report) = area.apply(&[]);
    run.expect_code(0);
    assert_eq!(report["instances"][0]["status"], "changed", "{report:#}");
    assert_eq!(area.read("opt/app/app/README"), "version 2\n");
    let (run, _) = area.apply(&[]);
    assert!(run.expect_code(0).stdout().contains("No changes"));

    // Removing the task forgets it and leaves the files in place.
    area.write("    - name: other\n      run: \"true\"\n");
    let (run, _) = area.apply(&[]);
    run.expect_code(0);
    assert!(dest.join("app/README").is_file() && marker.is_file());
}

#[test]
fn drift_is_a_missing_or_different_marker_and_refresh_unpacks_again() {
    let area = Area::new(UNPACK);
    build_tar(&area, "app.tar.gz", "-czf", "version 1\n");
    area.apply(&[]).0.expect_code(0);
    area.drover(&["drift", "--detailed-exitcode"])
        .expect_code(0);
    let dest = area.path("opt/app");
    let marker = dest.join(".drover-archive-app.unpack");

    // The files unpacked are not compared: only the marker is.
    std::fs::write(dest.join("app/README"), "edited\n").unwrap();
    area.drover(&["drift", "--detailed-exitcode"])
        .expect_code(0);

    std::fs::remove_file(&marker).unwrap();
    let run = area
        .drover(&["drift", "--format", "json", "--detailed-exitcode"])
        .expect_code(2);
    let report: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(
        report["instances"][0]["findings"][0],
        serde_json::json!({"kind": "missing", "path": marker.display().to_string()}),
        "{report:#}"
    );

    std::fs::write(&marker, "0000\n").unwrap();
    let run = area
        .drover(&["drift", "--format", "json", "--detailed-exitcode"])
        .expect_code(2);
    let report: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(
        report["instances"][0]["findings"][0]["kind"], "content",
        "{report:#}"
    );

    let (run, report) = area.apply(&["--refresh"]);
    run.expect_code(0);
    assert_eq!(report["instances"][0]["status"], "changed", "{report:#}");
    assert_eq!(area.read("opt/app/app/README"), "version 1\n");
    area.drover(&["drift", "--detailed-exitcode"])
        .expect_code(0);
}

#[test]
fn other_formats_are_recognised_by_their_bytes_and_unpacked_with_become() {
    let area = Area::new(
        r#"    - name: xz
      become: root
      archive: {source: app.tar.xz, dest: "{{ dir }}/xz"}
    - name: bz2
      archive: {source: app.bz, dest: "{{ dir }}/bz2"}
    - name: plain
      archive: {source: app.tar, dest: "{{ dir }}/plain"}
    - name: zip
      archive: {source: app.zip, dest: "{{ dir }}/zip"}
"#,
    );
    build_tar(&area, "app.tar.xz", "-cJf", "xz\n");
    // Named without a hint of bzip2: the bytes say what it is.
    build_tar(&area, "app.bz", "-cjf", "bz2\n");
    build_tar(&area, "app.tar", "-cf", "plain\n");
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("app")).unwrap();
    std::fs::write(tree.path().join("app/README"), "zip\n").unwrap();
    let zip = area.manifests.path().join("app.zip");
    run("zip", &["-qr", zip.to_str().unwrap(), "app"], tree.path());

    let (run, report) = area.apply(&[]);
    run.expect_code(0);
    assert_eq!(
        report["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["status"] == "changed")
            .count(),
        4,
        "{report:#}"
    );
    for dir in ["xz", "bz2", "plain", "zip"] {
        assert_eq!(area.read(&format!("{dir}/app/README")), format!("{dir}\n"));
    }
    let (_, report) = area.apply(&["--refresh"]);
    assert!(
        report["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "unchanged"),
        "{report:#}"
    );
}

#[test]
fn an_archive_that_would_write_outside_its_destination_is_refused() {
    let area = Area::new(
        r#"    - name: absolute
      archive: {source: absolute.tar, dest: "{{ dir }}/a"}
    - name: climbing
      archive: {source: climbing.tar, dest: "{{ dir }}/b/c"}
    - name: link
      archive: {source: link.tar, dest: "{{ dir }}/l"}
    - name: through
      archive: {source: app.tar.gz, dest: "{{ dir }}/s"}
"#,
    );
    let tree = tempfile::tempdir().unwrap();
    let outside = tree.path().join("outside");
    std::fs::write(&outside, "x\n").unwrap();
    let absolute = area.manifests.path().join("absolute.tar");
    // `-P` keeps the absolute name, as a hostile archive would have it.
    run(
        "tar",
        &[
            "-P",
            "-cf",
            absolute.to_str().unwrap(),
            outside.to_str().unwrap(),
        ],
        tree.path(),
    );
    std::fs::create_dir(tree.path().join("sub")).unwrap();
    let climbing = area.manifests.path().join("climbing.tar");
    run(
        "tar",
        &["-P", "-cf", climbing.to_str().unwrap(), "../outside"],
        &tree.path().join("sub"),
    );
    std::os::unix::fs::symlink("/etc", tree.path().join("etc")).unwrap();
    let link = area.manifests.path().join("link.tar");
    run("tar", &["-cf", link.to_str().unwrap(), "etc"], tree.path());

    // A directory of the destination that is a link out: unpacking `app/…` would follow it.
    build_tar(&area, "app.tar.gz", "-czf", "x\n");
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::create_dir(area.path("s")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), area.path("s/app")).unwrap();

    let (run, report) = area.apply(&[]);
    run.expect_code(1);
    let said = outcomes(&report);
    assert_eq!(
        said[3],
        format!(
            "box/app/through failed: cannot unpack app.tar.gz: {}/app is a symbolic link, and unpacking through it could write outside {}",
            area.path("s").display(),
            area.path("s").display()
        )
    );
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    let expected = [
        format!(
            "box/app/absolute failed: archive absolute.tar holds the member {}, which would land outside {}; drover unpacks only archives whose members stay inside their destination",
            outside.display(),
            area.path("a").display()
        ),
        format!(
            "box/app/climbing failed: archive climbing.tar holds the member ../outside, which would land outside {}; drover unpacks only archives whose members stay inside their destination",
            area.path("b/c").display()
        ),
    ];
    assert_eq!(said.get(..2), Some(&expected[..]), "{said:#?}");
    assert!(
        said[2]
            .starts_with("box/app/link failed: archive link.tar holds a link that points outside"),
        "{said:#?}"
    );
    for dest in ["a", "b/c", "l"] {
        assert!(!area.path(dest).exists(), "{dest} was created");
    }
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "x\n");
}

/// `state: absent` removes what the unpacking created (and only that), then the marker;
/// drift sees a marker put back; a second removal changes nothing.
#[test]
fn absent_removes_only_what_the_archive_created() {
    let area = Area::new(UNPACK);
    build_tar(&area, "app.tar.gz", "-czf", "version 1\n");
    let dest = area.path("opt/app");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dest.join("keep.txt"), "mine\n").unwrap();
    area.apply(&[]).0.expect_code(0);
    assert!(dest.join("app/README").is_file());
    let created = std::fs::read_to_string(dest.join(".drover-archive-app.unpack.created")).unwrap();
    assert_eq!(created, "app\n", "only what was not there before");
    area.write(&format!(
        "    - name: unpack\n      archive: {{dest: \"{}\", state: absent}}\n",
        dest.display()
    ));
    let plan = area.drover(&["plan"]).expect_code(0);
    assert!(
        plan.stdout()
            .contains(&format!("archive in {} (absent)", dest.display())),
        "{}",
        plan.stdout()
    );
    let (run, report) = area.apply(&[]);
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        [format!(
            "box/app/unpack changed: archive in {}: removed what was unpacked",
            dest.display()
        )]
    );
    assert!(!dest.join("app").exists());
    assert!(!dest.join(".drover-archive-app.unpack").exists());
    assert_eq!(
        area.read("opt/app/keep.txt"),
        "mine\n",
        "what was there stays"
    );
    let drift = area.drover(&["drift", "--format", "json"]).expect_code(0);
    assert!(drift.stdout().contains("\"inSync\""), "{}", drift.stdout());
    std::fs::write(dest.join(".drover-archive-app.unpack"), "x\n").unwrap();
    let drift = area.drover(&["drift"]).expect_code(0);
    assert!(
        drift.stdout().contains("should be absent but is a file"),
        "{}",
        drift.stdout()
    );
    let (run, report) = area.apply(&["--force"]);
    run.expect_code(0);
    assert!(outcomes(&report)[0].contains("changed"), "{report}");
    let (run, report) = area.apply(&["--force"]);
    run.expect_code(0);
    assert!(
        outcomes(&report)[0].contains("unchanged: archive in"),
        "{:?}",
        outcomes(&report)
    );
}

/// An archive may not carry drover's own records: a forged list of what it created would
/// make `state: absent` remove what was there before.
#[test]
fn an_archive_holding_drovers_own_records_is_refused() {
    let area = Area::new(UNPACK);
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("app")).unwrap();
    std::fs::write(tree.path().join("app/x"), "x\n").unwrap();
    std::fs::write(
        tree.path().join(".drover-archive-app.unpack.created"),
        "userdata\n",
    )
    .unwrap();
    let archive = area.manifests.path().join("app.tar.gz");
    run(
        "tar",
        &[
            "-czf",
            archive.to_str().unwrap(),
            "app",
            ".drover-archive-app.unpack.created",
        ],
        tree.path(),
    );
    let dest = area.path("opt/app");
    std::fs::create_dir_all(dest.join("userdata")).unwrap();
    let (run, report) = area.apply(&[]);
    run.expect_code(1);
    assert!(
        outcomes(&report)[0].contains("a name drover keeps for its own records"),
        "{:?}",
        outcomes(&report)
    );
    assert!(!dest.join("app").exists(), "nothing unpacked");
    assert!(dest.join("userdata").exists());
}
