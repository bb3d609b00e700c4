//! `user` and `group` tasks over the local transport, with the real shadow tools, never on
//! this machine's own accounts: drover runs inside a mount namespace of its own (`unshare
//! -m`, entered with `nsenter`) where `/etc` is a bind-mounted copy (the shadow tools
//! replace `/etc/passwd` by renaming a new file over it, which a bind mount of the file
//! itself would refuse) and `/var/log` and `/var/mail` are empty scratch directories (for
//! `lastlog`, `faillog` and mail spools). Homes go under the scratch area through `home:`.
//! Where no such namespace can be made (not root, no `unshare`, no `useradd`), the tests say
//! why and skip.

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};

use crate::harness::{Area, Run, outcomes};

/// A mount namespace with a private `/etc`, kept alive by a `sleep` this test started.
struct Etc {
    keeper: Child,
    _scratch: tempfile::TempDir,
}

impl Etc {
    fn new() -> Result<Etc, String> {
        for tool in ["/usr/sbin/useradd", "/usr/bin/unshare", "/usr/bin/nsenter"] {
            if !std::path::Path::new(tool).exists() {
                return Err(format!("{tool} is not installed"));
            }
        }
        let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
        let s = scratch.path().display().to_string();
        let copy = Command::new("cp")
            .args(["-a", "/etc/.", &format!("{s}/etc")])
            .status()
            .map_err(|e| e.to_string())?;
        if !copy.success() {
            return Err("cannot copy /etc".to_owned());
        }
        let setup = format!(
            "mkdir -p {s}/log {s}/mail && mount --bind {s}/etc /etc && mount --bind {s}/log /var/log && {{ [ ! -d /var/mail ] || mount --bind {s}/mail /var/mail; }} && echo ready && exec sleep 600"
        );
        let mut keeper = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &setup])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let mut line = String::new();
        if let Some(stdout) = keeper.stdout.take() {
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        }
        if line.trim() != "ready" {
            let _ = keeper.kill();
            let out = keeper.wait_with_output().map_err(|e| e.to_string())?;
            return Err(format!(
                "unshare -m could not set up a private /etc: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        // Belt and braces: the namespace must differ from ours before anything writes.
        let own = std::fs::read_link("/proc/self/ns/mnt").map_err(|e| e.to_string())?;
        let theirs = std::fs::read_link(format!("/proc/{}/ns/mnt", keeper.id()))
            .map_err(|e| e.to_string())?;
        if own == theirs {
            let _ = keeper.kill();
            let _ = keeper.wait();
            return Err("unshare -m did not enter a new mount namespace".to_owned());
        }
        Ok(Etc {
            keeper,
            _scratch: scratch,
        })
    }

    fn enter(&self) -> Command {
        let mut command = Command::new("nsenter");
        command.arg(format!("--mount=/proc/{}/ns/mnt", self.keeper.id()));
        command
    }

    /// Runs a shell command inside the namespace; its stdout.
    fn sh(&self, script: &str) -> String {
        let out = self.enter().args(["sh", "-c", script]).output().unwrap();
        assert!(out.status.success(), "{script}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn drover(&self, area: &Area, args: &[&str]) -> Run {
        let output = self
            .enter()
            .arg(env!("CARGO_BIN_EXE_drover"))
            .args(args)
            .args(["--color", "never"])
            .arg(area.manifests.path())
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .current_dir(crate::harness::root())
            .output()
            .expect("nsenter runs");
        Run { output }
    }

    fn apply(&self, area: &Area, extra: &[&str]) -> (Run, serde_json::Value) {
        let report = area.path("report.json");
        let _ = std::fs::remove_file(&report);
        let report_arg = report.display().to_string();
        let mut args = vec!["apply", "--auto-approve", "--report", &report_arg];
        args.extend(extra);
        let run = self.drover(area, &args);
        let text = std::fs::read_to_string(&report)
            .unwrap_or_else(|_| panic!("no report: {}{}", run.stdout(), run.stderr()));
        (run, serde_json::from_str(&text).unwrap())
    }
}

impl Drop for Etc {
    fn drop(&mut self) {
        let _ = self.keeper.kill();
        let _ = self.keeper.wait();
    }
}

macro_rules! etc_or_skip {
    () => {
        match Etc::new() {
            Ok(etc) => etc,
            Err(why) => {
                eprintln!("skipped: needs a private /etc in a mount namespace: {why}");
                return;
            }
        }
    };
}

const TASKS: &str = r#"    - name: team
      group: {name: drover-it-team, gid: 23001}
    - name: extra
      group: {name: drover-it-extra}
    - name: deploy
      needs: [team, extra]
      user:
        name: drover-it-user
        uid: 23001
        group: drover-it-team
        groups: [drover-it-extra]
        shell: /bin/sh
        home: "{{ dir }}/home"
        comment: Deploy bot
"#;

fn real_etc_is_untouched() {
    for file in ["/etc/passwd", "/etc/group"] {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(!text.contains("drover-it-"), "{file} was changed");
    }
}

#[test]
fn a_user_and_its_groups_are_created_once_then_changed_drifted_and_removed() {
    let etc = etc_or_skip!();
    let area = Area::new(TASKS);
    let plan = etc.drover(&area, &["plan"]).expect_code(0);
    assert!(
        plan.stdout().contains(
            "user drover-it-user (uid 23001, group drover-it-team, groups drover-it-extra, shell /bin/sh, home"
        ),
        "{}",
        plan.stdout()
    );
    let (run, report) = etc.apply(&area, &[]);
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        [
            "box/app/team changed: group drover-it-team: created",
            "box/app/extra changed: group drover-it-extra: created",
            "box/app/deploy changed: user drover-it-user: created",
        ]
    );
    let home = area.path("home");
    assert_eq!(
        etc.sh("getent passwd drover-it-user"),
        format!(
            "drover-it-user:x:23001:23001:Deploy bot:{}:/bin/sh\n",
            home.display()
        )
    );
    assert_eq!(
        etc.sh("id -Gn drover-it-user"),
        "drover-it-team drover-it-extra\n"
    );
    assert!(home.is_dir(), "createHome defaults to true");
    real_etc_is_untouched();

    // Recorded: nothing to do; forced, the script finds the host right and writes nothing.
    let (run, report) = etc.apply(&area, &[]);
    assert!(run.expect_code(0).stdout().contains("No changes"));
    assert_eq!(report["contacts"]["commands"], 0);
    let (run, report) = etc.apply(
        &area,
        &["--replace", "box/app/deploy", "--replace", "box/app/team"],
    );
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        [
            "box/app/team unchanged: group drover-it-team is as desired",
            "box/app/deploy unchanged: user drover-it-user is as desired",
        ]
    );
    etc.drover(&area, &["drift", "--detailed-exitcode"])
        .expect_code(0);

    let changed = change_and_drift(&etc, &area);
    forget_then_remove(&etc, &area, &changed);
}

/// Changes uid, shell and groups, then drifts them behind drover's back; the tasks it left.
fn change_and_drift(etc: &Etc, area: &Area) -> String {
    // A new uid, shell and group list: one usermod.
    let changed = TASKS
        .replace("uid: 23001", "uid: 23002")
        .replace("shell: /bin/sh", "shell: /bin/bash")
        .replace("groups: [drover-it-extra]", "groups: []");
    area.write(&changed);
    let (run, report) = etc.apply(area, &[]);
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        [
            "box/app/deploy changed: user drover-it-user: uid 23001 → 23002, shell /bin/sh → /bin/bash, groups drover-it-extra → (none)"
        ]
    );
    assert_eq!(etc.sh("id -Gn drover-it-user"), "drover-it-team\n");
    assert!(
        etc.sh("getent passwd drover-it-user")
            .starts_with("drover-it-user:x:23002:23001:")
    );

    // Changed behind drover's back: drift names the field; refresh sets it again.
    etc.sh("usermod -s /bin/sh drover-it-user && usermod -a -G drover-it-extra drover-it-user");
    let run = etc
        .drover(area, &["drift", "--format", "json", "--detailed-exitcode"])
        .expect_code(2);
    let drift: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(
        drift["instances"][0]["findings"],
        serde_json::json!([
            {"kind": "attribute", "path": "user drover-it-user", "field": "shell", "applied": "/bin/bash", "found": "/bin/sh"},
            {"kind": "attribute", "path": "user drover-it-user", "field": "groups", "applied": "(none)", "found": "drover-it-extra"},
        ]),
        "{drift:#}"
    );
    let (run, report) = etc.apply(area, &["--refresh"]);
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        [
            "box/app/deploy changed: user drover-it-user: shell /bin/sh → /bin/bash, groups drover-it-extra → (none)"
        ]
    );
    etc.drover(area, &["drift", "--detailed-exitcode"])
        .expect_code(0);

    changed
}

/// A task removed from the manifests is forgotten; `state: absent` removes.
fn forget_then_remove(etc: &Etc, area: &Area, changed: &str) {
    let home = area.path("home");
    // Removed from the manifests: forgotten, not deleted (decision 0016).
    area.write(
        &changed
            .replace(
                "    - name: extra\n      group: {name: drover-it-extra}\n",
                "",
            )
            .replace("needs: [team, extra]", "needs: [team]"),
    );
    let plan = etc.drover(area, &["plan"]).expect_code(0);
    assert!(
        plan.stdout()
            .contains("no undo recorded, so it is only forgotten"),
        "{}",
        plan.stdout()
    );
    etc.apply(area, &[]).0.expect_code(0);
    assert!(
        etc.sh("getent group drover-it-extra")
            .starts_with("drover-it-extra:")
    );

    // Absent removes the account and leaves its home.
    area.write(
        "    - name: deploy\n      user: {name: drover-it-user, state: absent}\n    - name: team\n      needs: [deploy]\n      group: {name: drover-it-team, state: absent}\n",
    );
    let (run, report) = etc.apply(area, &[]);
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        [
            "box/app/deploy changed: user drover-it-user: removed (its home directory is left in place)",
            "box/app/team changed: group drover-it-team: removed",
        ]
    );
    assert_eq!(
        etc.sh("getent passwd drover-it-user || echo gone"),
        "gone\n"
    );
    assert!(home.is_dir());
    let (run, report) = etc.apply(area, &["--replace", "box/app/deploy"]);
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        ["box/app/deploy unchanged: user drover-it-user is as desired"]
    );
    etc.drover(area, &["drift", "--detailed-exitcode"])
        .expect_code(0);
    real_etc_is_untouched();
}

#[test]
fn a_missing_group_fails_the_user_task_with_the_tools_own_words() {
    let etc = etc_or_skip!();
    let area = Area::new(
        "    - name: deploy\n      user: {name: drover-it-lone, groups: [drover-it-nosuch], createHome: false}\n",
    );
    let (run, report) = etc.apply(&area, &[]);
    run.expect_code(1);
    let said = outcomes(&report).join("\n");
    assert!(said.contains("drover-it-nosuch"), "{said}");
    assert_eq!(
        etc.sh("getent passwd drover-it-lone || echo gone"),
        "gone\n"
    );
}
