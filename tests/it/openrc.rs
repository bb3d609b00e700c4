//! `service` tasks under OpenRC, over the local transport. This machine runs no OpenRC, so
//! fake `rc-service` and `rc-update` scripts go first in `PATH`: they keep each service's
//! state (started, in the default runlevel) in files of a scratch directory, as OpenRC
//! keeps it under `/run/openrc`, and log every call, so the test sees what drover ran. The
//! fakes answer as OpenRC does (`status` exits 3 when stopped, `rc-update show default`
//! prints `NAME | default`), but they are fakes: a real Alpine host is not tested here.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

use crate::harness::{Area, Drover, Run};

const RC_SERVICE: &str = r#"#!/bin/sh
d=$DROVER_SHIM_STATE
echo "rc-service $*" >> "$d/calls.log"
if [ "$1" = --exists ]; then [ -f "$d/$2.init" ]; exit; fi
svc=$1
[ -f "$d/$svc.init" ] || { echo " * rc-service: service \`$svc' does not exist" >&2; exit 1; }
case "$2" in
  status) if [ -f "$d/$svc.started" ]; then echo " * status: started"; else echo " * status: stopped"; exit 3; fi;;
  start|restart) touch "$d/$svc.started"; echo " * Starting $svc ... [ ok ]";;
  stop) rm -f "$d/$svc.started";;
  *) echo " * rc-service: unknown function $2" >&2; exit 1;;
esac
"#;

const RC_UPDATE: &str = r#"#!/bin/sh
d=$DROVER_SHIM_STATE
echo "rc-update $*" >> "$d/calls.log"
case "$1" in
  show) for f in "$d"/*.default; do [ -e "$f" ] || continue; n=${f##*/}; printf '%20s | default\n' "${n%.default}"; done;;
  add) touch "$d/$2.default"; echo " * service $2 added to runlevel default";;
  del) rm -f "$d/$2.default";;
esac
"#;

const TASKS: &str = r#"    - name: config
      file: {path: "{{ dir }}/web.conf", content: "CONTENT\n"}
    - name: web
      triggeredBy: [config]
      service: {name: web, state: running, enabled: true}
"#;

/// A local host whose `PATH` starts with the fake OpenRC tools.
struct OpenRc {
    area: Area,
    shims: tempfile::TempDir,
}

impl OpenRc {
    fn new() -> OpenRc {
        let fake = OpenRc {
            area: Area::new(&TASKS.replace("CONTENT", "v1")),
            shims: tempfile::tempdir().unwrap(),
        };
        for (name, text) in [("rc-service", RC_SERVICE), ("rc-update", RC_UPDATE)] {
            let path = fake.shims.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::create_dir(fake.state("")).unwrap();
        std::fs::write(fake.state("web.init"), "").unwrap();
        fake
    }

    fn state(&self, name: &str) -> PathBuf {
        self.shims.path().join("state").join(name)
    }

    fn drover(&self, args: &[&str]) -> Run {
        let path = format!(
            "{}:{}",
            self.shims.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Drover::new()
            .args(args)
            .args(["--color", "never"])
            .arg_path(self.area.manifests.path())
            .env("PATH", &path)
            .env("DROVER_SHIM_STATE", &self.state("").display().to_string())
            .run()
    }

    /// Applies with `extra` flags; `id status` per instance of its report.
    fn apply(&self, extra: &[&str]) -> Vec<String> {
        let report = self.area.path("report.json");
        let report_arg = report.display().to_string();
        let mut args = vec!["apply", "--auto-approve", "--report", &report_arg];
        args.extend(extra);
        self.drover(&args).expect_code(0);
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        report["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                format!(
                    "{} {}",
                    i["id"].as_str().unwrap(),
                    i["status"].as_str().unwrap()
                )
            })
            .collect()
    }

    /// The calls that change something, since the last time this was asked; the log is
    /// emptied.
    fn writes(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.state("calls.log")).unwrap_or_default();
        std::fs::write(self.state("calls.log"), "").unwrap();
        log.lines()
            .filter(|l| {
                let verb = l.split(' ').nth(2).unwrap_or_default();
                let tool_verb = l.split(' ').nth(1).unwrap_or_default();
                ["start", "stop", "restart", "reload"].contains(&verb)
                    || ["add", "del"].contains(&tool_verb)
            })
            .map(str::to_owned)
            .collect()
    }
}

#[test]
fn an_openrc_service_is_started_enabled_left_alone_probed_and_restarted_when_triggered() {
    let rc = OpenRc::new();
    assert_eq!(
        rc.apply(&[]),
        ["box/app/config changed", "box/app/web changed"]
    );
    // The new config triggers a restart too, as under systemd.
    assert_eq!(
        rc.writes(),
        [
            "rc-service web start",
            "rc-update add web default",
            "rc-service web restart"
        ]
    );
    assert!(rc.state("web.started").exists() && rc.state("web.default").exists());

    // Run again by force: the task looks, finds the service as desired, and writes nothing.
    assert_eq!(
        rc.apply(&["--force"]),
        ["box/app/config unchanged", "box/app/web unchanged"]
    );
    assert_eq!(rc.writes(), Vec::<String>::new());
    let run = rc.drover(&["drift", "--detailed-exitcode"]);
    run.expect_code(0);

    // Stopped and removed from the runlevel behind drover's back.
    std::fs::remove_file(rc.state("web.started")).unwrap();
    std::fs::remove_file(rc.state("web.default")).unwrap();
    let run = rc.drover(&["drift", "--format", "json", "--detailed-exitcode"]);
    let run = run.expect_code(2);
    let report: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    let findings: Vec<String> = report["instances"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{} {} → {}", f["field"], f["applied"], f["found"]))
        .collect();
    assert_eq!(
        findings,
        [
            "\"state\" \"running\" → \"inactive\"",
            "\"enabled\" \"enabled\" → \"disabled\""
        ],
        "{report:#}"
    );
    assert_eq!(rc.writes(), Vec::<String>::new(), "the probe only looks");

    assert_eq!(rc.apply(&["--refresh"]), ["box/app/web changed"]);
    assert_eq!(
        rc.writes(),
        ["rc-service web start", "rc-update add web default"]
    );

    // A changed config restarts the running service, and only that.
    rc.area.write(&TASKS.replace("CONTENT", "v2"));
    assert_eq!(
        rc.apply(&[]),
        ["box/app/config changed", "box/app/web changed"]
    );
    assert_eq!(rc.writes(), ["rc-service web restart"]);
    rc.drover(&["drift", "--detailed-exitcode"]).expect_code(0);
}

#[test]
fn an_openrc_service_that_does_not_exist_is_refused_naming_the_host() {
    let rc = OpenRc::new();
    rc.area
        .write("    - name: db\n      service: {name: db, state: running}\n");
    let report = rc.area.path("report.json");
    let run = rc.drover(&[
        "apply",
        "--auto-approve",
        "--report",
        &report.display().to_string(),
    ]);
    run.expect_code(1);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(
        report["instances"][0]["error"],
        "host box: OpenRC has no service db (no script in /etc/init.d)"
    );
    assert_eq!(rc.writes(), Vec::<String>::new());
}
