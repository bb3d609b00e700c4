//! `drover drift` over the local transport: apply, change things behind drover's back, and
//! check that drift reports exactly those, in one round trip, that `apply --refresh`
//! repairs what is not `ignore`, and that the next drift check finds nothing.
//!
//! Services and packages go through shims for `systemctl`, `dpkg-query` and `apt-get` put
//! first in `PATH`: they keep a service's and a package's state in files, as the real
//! tools keep it in their databases, so the test changes state without touching the machine.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::harness::{Drover, write_local_fleet};

const SYSTEMCTL: &str = r#"#!/bin/sh
d=$DROVER_SHIM_STATE
verb=$1; shift
for unit; do :; done
case "$verb" in
  show)
    echo LoadState=loaded
    if [ -f "$d/$unit.active" ]; then echo ActiveState=active; else echo ActiveState=inactive; fi
    if [ -f "$d/$unit.enabled" ]; then echo UnitFileState=enabled; else echo UnitFileState=disabled; fi;;
  is-active) [ -f "$d/$unit.active" ] || exit 3;;
  is-enabled) [ -f "$d/$unit.enabled" ] || exit 1;;
  start|restart|reload-or-restart) touch "$d/$unit.active";;
  stop) rm -f "$d/$unit.active";;
  enable) touch "$d/$unit.enabled";;
  disable) rm -f "$d/$unit.enabled";;
esac
"#;

const DPKG_QUERY: &str = r#"#!/bin/sh
for last; do :; done
if [ -f "$DROVER_SHIM_STATE/pkg.$last" ]; then printf 'install ok installed'; else exit 1; fi
"#;

const APT_GET: &str = r#"#!/bin/sh
verb=
for a; do case "$a" in install|remove) verb=$a;; -*|--) ;; *) [ -n "$verb" ] && pkgs="$pkgs $a";; esac; done
for p in $pkgs; do
  if [ "$verb" = install ]; then touch "$DROVER_SHIM_STATE/pkg.$p"; else rm -f "$DROVER_SHIM_STATE/pkg.$p"; fi
done
"#;

struct Fleet {
    manifests: tempfile::TempDir,
    area: tempfile::TempDir,
    shims: tempfile::TempDir,
}

impl Fleet {
    fn new() -> Fleet {
        let fleet = Fleet {
            manifests: tempfile::tempdir().unwrap(),
            area: tempfile::tempdir().unwrap(),
            shims: tempfile::tempdir().unwrap(),
        };
        for (name, text) in [
            ("systemctl", SYSTEMCTL),
            ("dpkg-query", DPKG_QUERY),
            ("apt-get", APT_GET),
        ] {
            let path = fleet.shims.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::create_dir(fleet.shims.path().join("state")).unwrap();
        write_local_fleet(
            fleet.manifests.path(),
            fleet.area.path(),
            r#"    - name: edited
      file: {path: "{{ dir }}/edited.conf", content: "port = 8080\n"}
    - name: chmodded
      drift: fix
      file: {path: "{{ dir }}/chmodded.conf", content: "x\n", mode: "0640"}
    - name: deleted
      file: {path: "{{ dir }}/deleted.conf", content: "y\n"}
    - name: ignored
      drift: ignore
      file: {path: "{{ dir }}/ignored.conf", content: "z\n"}
    - name: untouched
      file: {path: "{{ dir }}/untouched.conf", content: "same\n"}
    - name: marker
      run: touch {{ dir }}/ok
      check: test -f {{ dir }}/ok
    - name: no-probe
      run: "true"
    - name: web
      service: {name: web, state: running, enabled: true}
    - name: tools
      package: {names: [jq]}
"#,
        );
        fleet
    }

    fn file(&self, name: &str) -> PathBuf {
        self.area.path().join(name)
    }

    fn state(&self, name: &str) -> PathBuf {
        self.shims.path().join("state").join(name)
    }

    fn drover(&self, args: &[&str]) -> crate::harness::Run {
        let path = format!(
            "{}:{}",
            self.shims.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Drover::new()
            .args(args)
            .arg_path(self.manifests.path())
            .env("PATH", &path)
            .env("DROVER_SHIM_STATE", &self.state("").display().to_string())
            .run()
    }
}

impl Fleet {
    fn change_behind_drovers_back(&self) {
        std::fs::write(self.file("edited.conf"), "port = 9090\n").unwrap();
        chmod(&self.file("chmodded.conf"), 0o777);
        std::fs::remove_file(self.file("deleted.conf")).unwrap();
        std::fs::write(self.file("ignored.conf"), "changed\n").unwrap();
        std::fs::remove_file(self.file("ok")).unwrap();
        std::fs::remove_file(self.state("web.active")).unwrap();
        std::fs::remove_file(self.state("pkg.jq")).unwrap();
    }
}

fn drifted_ids(report: &serde_json::Value) -> Vec<String> {
    report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn drift_finds_exactly_what_changed_and_refresh_repairs_it() {
    let fleet = Fleet::new();
    fleet
        .drover(&["apply", "--auto-approve", "--color", "never"])
        .expect_code(0);
    assert!(fleet.state("web.active").exists() && fleet.state("pkg.jq").exists());

    // Nothing changed yet: in sync, one round trip.
    let run = fleet
        .drover(&["drift", "--format", "json", "--detailed-exitcode"])
        .expect_code(0);
    let report: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(report["formatVersion"], 1);
    assert_eq!(report["summary"]["probed"], 7, "{report:#}");
    assert_eq!(report["summary"]["ignored"], 1);
    assert_eq!(report["summary"]["noProbe"], 1);
    assert_eq!(report["hosts"][0]["roundTrips"], 1);

    fleet.change_behind_drovers_back();

    let run = fleet
        .drover(&["drift", "--format", "json", "--detailed-exitcode"])
        .expect_code(2);
    let report: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(
        drifted_ids(&report),
        [
            "box/app/chmodded",
            "box/app/deleted",
            "box/app/edited",
            "box/app/marker",
            "box/app/tools",
            "box/app/web"
        ],
        "{report:#}"
    );
    assert_eq!(report["hosts"][0]["roundTrips"], 1);
    let finding = |id: &str| {
        report["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .map(|i| i["findings"][0].clone())
            .unwrap()
    };
    assert_eq!(finding("box/app/chmodded")["field"], "mode");
    assert_eq!(finding("box/app/chmodded")["found"], "0777");
    assert_eq!(finding("box/app/deleted")["kind"], "missing");
    assert!(
        finding("box/app/edited")["diff"]
            .as_str()
            .unwrap()
            .contains("+port = 9090")
    );
    assert_eq!(finding("box/app/marker")["kind"], "check");
    assert_eq!(finding("box/app/tools")["found"], "absent");
    assert_eq!(finding("box/app/web")["found"], "inactive");

    // The text report shows the diff; a plan without --refresh uses the recorded findings.
    let text = fleet.drover(&["drift", "--color", "never"]).expect_code(0);
    assert!(
        text.stdout().contains("-port = 8080\n      +port = 9090"),
        "{}",
        text.stdout()
    );
    let plan = fleet.drover(&["plan", "--color", "never"]).expect_code(0);
    assert!(
        plan.stdout().contains("6 to fix drift"),
        "{}",
        plan.stdout()
    );

    // Repair: everything but `ignore`.
    fleet
        .drover(&["apply", "--refresh", "--auto-approve", "--color", "never"])
        .expect_code(0);
    assert_eq!(
        std::fs::read_to_string(fleet.file("edited.conf")).unwrap(),
        "port = 8080\n"
    );
    assert_eq!(
        std::fs::metadata(fleet.file("chmodded.conf"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o640
    );
    assert!(fleet.file("deleted.conf").exists() && fleet.file("ok").exists());
    assert!(fleet.state("web.active").exists() && fleet.state("pkg.jq").exists());
    assert_eq!(
        std::fs::read_to_string(fleet.file("ignored.conf")).unwrap(),
        "changed\n"
    );

    fleet
        .drover(&["drift", "--detailed-exitcode"])
        .expect_code(0);
    let plan = fleet.drover(&["plan", "--color", "never"]).expect_code(0);
    assert!(
        plan.stdout().contains("last drift check: "),
        "{}",
        plan.stdout()
    );
}

#[test]
fn markdown_drift_report_masks_secrets() {
    let fleet = Fleet::new();
    let dir = fleet.manifests.path();
    std::fs::write(
        dir.join("secret.yaml"),
        format!(
            "apiVersion: drover/v1\nkind: Workflow\nmetadata: {{name: creds}}\nspec:\n  hosts: {{names: [box]}}\n  vars: {{token: {{valueFrom: {{env: DROVER_TEST_TOKEN}}}}}}\n  tasks:\n    - name: token\n      file: {{path: \"{}/token\", content: \"token={{{{ token }}}}\\n\"}}\n",
            fleet.area.path().display()
        ),
    )
    .unwrap();
    let with_token = |args: &[&str]| {
        Drover::new()
            .args(args)
            .arg_path(dir)
            .env("DROVER_TEST_TOKEN", "hunter2-secret")
            .env(
                "PATH",
                &format!(
                    "{}:{}",
                    fleet.shims.path().display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("DROVER_SHIM_STATE", &fleet.state("").display().to_string())
            .run()
    };
    with_token(&["apply", "--auto-approve", "--target", "workflow=creds"]).expect_code(0);
    std::fs::write(
        fleet.area.path().join("token"),
        "token=hunter2-secret\nextra\n",
    )
    .unwrap();
    let run = with_token(&[
        "drift",
        "--format",
        "markdown",
        "--target",
        "workflow=creds",
        "--detailed-exitcode",
    ])
    .expect_code(2);
    assert!(
        run.stdout().contains("content withheld"),
        "{}",
        run.stdout()
    );
    assert!(!run.stdout().contains("hunter2"), "{}", run.stdout());
}
