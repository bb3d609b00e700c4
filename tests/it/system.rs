//! `cron` and `sysctl` tasks over the local transport. Cron entries go to a scratch
//! directory through the task's `dir`. Kernel parameters are real: drover runs inside a
//! network namespace of its own (`unshare -n`, entered with `nsenter`), where `net.*`
//! parameters are private, writable by root and thrown away with the namespace, and the
//! persisted file goes to a scratch directory through the task's `file`. A read-only
//! `/proc/sys`, as in containers, is a private read-only bind mount in a mount namespace of
//! its own. Where no such namespace can be made (not root, no `unshare`), the sysctl tests say
//! why and skip.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::harness::{Area, Drover, Run, outcomes};

/// How drover is started: directly, or inside a network namespace.
trait Launch {
    fn run(&self, args: &[&str], area: &Area) -> Run;

    fn drover(&self, area: &Area, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        all.extend(["--color", "never"]);
        self.run(&all, area)
    }

    /// Applies (with `extra` flags) and returns the run and its JSON report.
    fn apply(&self, area: &Area, extra: &[&str]) -> (Run, serde_json::Value) {
        let report = area.path("report.json");
        let _ = std::fs::remove_file(&report);
        let report_arg = report.display().to_string();
        let mut args = vec![
            "apply",
            "--auto-approve",
            "--color",
            "never",
            "--report",
            &report_arg,
        ];
        args.extend(extra);
        let run = self.run(&args, area);
        let text = std::fs::read_to_string(&report)
            .unwrap_or_else(|_| panic!("no report: {}{}", run.stdout(), run.stderr()));
        (run, serde_json::from_str(&text).unwrap())
    }
}

struct Direct;

impl Launch for Direct {
    fn run(&self, args: &[&str], area: &Area) -> Run {
        Drover::new()
            .args(args)
            .arg_path(area.manifests.path())
            .run()
    }
}

/// A network namespace kept alive by a `sleep` that this test started and kills.
struct Netns {
    keeper: Child,
}

impl Netns {
    /// A new namespace, or why none can be made here.
    fn new() -> Result<Netns, String> {
        let mut keeper = Command::new("unshare")
            .args(["-n", "sleep", "600"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let own = std::fs::read_link("/proc/self/ns/net").map_err(|e| e.to_string())?;
        let theirs = format!("/proc/{}/ns/net", keeper.id());
        // `unshare` enters the new namespace before it runs `sleep`: wait until it has, so
        // that nothing ever runs in (and changes) this machine's own namespace.
        for _ in 0..200 {
            if let Ok(Some(status)) = keeper.try_wait() {
                let mut why = String::new();
                if let Some(mut stderr) = keeper.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut stderr, &mut why);
                }
                return Err(format!("unshare -n failed ({status}): {}", why.trim()));
            }
            if std::fs::read_link(&theirs).is_ok_and(|ns| ns != own) {
                return Ok(Netns { keeper });
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = keeper.kill();
        let _ = keeper.wait();
        Err("unshare -n did not enter a new network namespace".to_owned())
    }

    fn path(&self) -> String {
        format!("--net=/proc/{}/ns/net", self.keeper.id())
    }

    /// Runs a shell command inside the namespace.
    fn sh(&self, script: &str) -> String {
        let out = Command::new("nsenter")
            .args([self.path().as_str(), "sh", "-c", script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.keeper.kill();
        let _ = self.keeper.wait();
    }
}

impl Launch for Netns {
    fn run(&self, args: &[&str], area: &Area) -> Run {
        let output = Command::new("nsenter")
            .arg(self.path())
            .arg(env!("CARGO_BIN_EXE_drover"))
            .args(args)
            .arg(area.manifests.path())
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .current_dir(crate::harness::root())
            .output()
            .expect("nsenter runs");
        Run { output }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

const CRON: &str = r#"    - name: backup
      cron: {name: backup, schedule: "0 3 * * *", command: /usr/local/bin/backup, dir: "{{ dir }}"}
"#;

#[test]
fn a_cron_entry_is_written_once_then_left_alone_changed_and_removed() {
    let area = Area::new(CRON);
    let plan = Direct.drover(&area, &["plan"]).expect_code(0);
    assert!(
        plan.stdout()
            .contains("cron backup: 0 3 * * * root /usr/local/bin/backup — new"),
        "{}",
        plan.stdout()
    );
    let (run, report) = Direct.apply(&area, &[]);
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        ["box/app/backup changed: cron backup: created"]
    );
    let entry = area.path("drover-backup");
    assert_eq!(
        std::fs::read_to_string(&entry).unwrap(),
        "SHELL=/bin/sh\n0 3 * * * root /usr/local/bin/backup\n"
    );
    assert_eq!(mode(&entry), 0o644);

    // Recorded: nothing to do; run again on purpose, the host is already right.
    let (run, report) = Direct.apply(&area, &[]);
    assert!(run.expect_code(0).stdout().contains("No changes"));
    assert_eq!(report["contacts"]["commands"], 0);
    let (run, report) = Direct.apply(&area, &["--replace", "box/app/backup"]);
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        ["box/app/backup unchanged: cron backup is as desired"]
    );

    // A new schedule and user rewrite the entry.
    area.write(&CRON.replace("\"0 3 * * *\"", "\"@daily\", user: backup"));
    let (run, report) = Direct.apply(&area, &[]);
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        ["box/app/backup changed: cron backup: updated"]
    );
    assert_eq!(
        std::fs::read_to_string(&entry).unwrap(),
        "SHELL=/bin/sh\n@daily backup /usr/local/bin/backup\n"
    );

    // Absent removes the entry, and then has nothing to do.
    area.write(
        "    - name: backup\n      cron: {name: backup, state: absent, dir: \"{{ dir }}\"}\n",
    );
    let (run, report) = Direct.apply(&area, &[]);
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        ["box/app/backup changed: cron backup: removed"]
    );
    assert!(!entry.exists());
    let (_, report) = Direct.apply(&area, &["--replace", "box/app/backup"]);
    assert_eq!(report["instances"][0]["status"], "unchanged", "{report:#}");
    // Nothing but the entry was ever left in the directory.
    let left: Vec<_> = std::fs::read_dir(area.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "report.json")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn drift_finds_a_cron_entry_edited_by_hand_and_refresh_repairs_it() {
    let area = Area::new(CRON);
    Direct.apply(&area, &[]).0.expect_code(0);
    Direct
        .drover(&area, &["drift", "--detailed-exitcode"])
        .expect_code(0);

    let entry = area.path("drover-backup");
    std::fs::write(
        &entry,
        "SHELL=/bin/sh\n* * * * * root /usr/local/bin/backup\n",
    )
    .unwrap();
    let run = Direct
        .drover(&area, &["drift", "--format", "json", "--detailed-exitcode"])
        .expect_code(2);
    let report: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    let finding = &report["instances"][0]["findings"][0];
    assert_eq!(finding["kind"], "content", "{report:#}");
    assert_eq!(finding["path"], entry.display().to_string());
    assert!(
        finding["diff"]
            .as_str()
            .unwrap()
            .contains("+* * * * * root /usr/local/bin/backup"),
        "{report:#}"
    );

    let (run, _) = Direct.apply(&area, &["--refresh"]);
    run.expect_code(0);
    assert_eq!(
        std::fs::read_to_string(&entry).unwrap(),
        "SHELL=/bin/sh\n0 3 * * * root /usr/local/bin/backup\n"
    );
    Direct
        .drover(&area, &["drift", "--detailed-exitcode"])
        .expect_code(0);

    // A mode that lets others write the entry is drift too.
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
    let run = Direct
        .drover(&area, &["drift", "--format", "json", "--detailed-exitcode"])
        .expect_code(2);
    let report: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(
        report["instances"][0]["findings"][0],
        serde_json::json!({"kind": "attribute", "path": entry.display().to_string(), "field": "mode", "applied": "0644", "found": "0666"}),
        "{report:#}"
    );
}

#[test]
fn an_invalid_schedule_or_entry_name_is_a_located_error() {
    let area = Area::new(
        r#"    - name: backup
      cron: {name: "back.up", schedule: "0 3 * *", command: /usr/local/bin/backup}
    - name: forward
      sysctl: {name: "net..ipv4", value: 1}
"#,
    );
    let run = Direct.drover(&area, &["validate"]).expect_code(1);
    let stderr = run.stderr();
    for expected in [
        "`back.up` cannot name a cron entry",
        "`0 3 * *` is not a cron schedule",
        "`net..ipv4` is not a kernel parameter name",
        "app.yaml:8:",
        "app.yaml:10:",
    ] {
        assert!(stderr.contains(expected), "{expected}\n{stderr}");
    }
}

#[test]
fn a_templated_cron_entry_is_checked_once_rendered() {
    let area = Area::new(
        r#"    - name: backup
      cron: {name: "{{ dir | length }}x", schedule: "{{ 'every day' }}", command: /bin/true, dir: "{{ dir }}"}
"#,
    );
    let run = Direct.drover(&area, &["plan"]).expect_code(1);
    assert!(
        run.stderr().contains("`every day` is not a cron schedule"),
        "{}",
        run.stderr()
    );
}

const SYSCTL: &str = r#"    - name: forward
      sysctl: {name: net.ipv4.ip_forward, value: 1, file: "{{ dir }}/sysctl.d/90-forward.conf"}
    - name: ports
      sysctl: {name: net.ipv4.ip_local_port_range, value: "40000   50000", file: "{{ dir }}/sysctl.d/90-ports.conf"}
"#;

#[test]
fn a_kernel_parameter_is_set_and_persisted_once_then_changed_and_released() {
    let ns = match Netns::new() {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!("skipped: needs a private network namespace: {why}");
            return;
        }
    };
    let area = Area::new(SYSCTL);
    let plan = ns.drover(&area, &["plan"]).expect_code(0);
    assert!(
        plan.stdout()
            .contains("sysctl net.ipv4.ip_forward = 1 — new")
            && plan
                .stdout()
                .contains("sysctl net.ipv4.ip_local_port_range = 40000 50000 — new"),
        "{}",
        plan.stdout()
    );
    let before = ns.sh("cat /proc/sys/net/ipv4/ip_local_port_range");
    assert!(
        before.contains('\t'),
        "the kernel separates fields with tabs: {before:?}"
    );
    let (run, report) = ns.apply(&area, &[]);
    run.expect_code(0);
    let forward = area.path("sysctl.d/90-forward.conf");
    let ports = area.path("sysctl.d/90-ports.conf");
    assert_eq!(
        outcomes(&report),
        [
            format!(
                "box/app/forward changed: sysctl net.ipv4.ip_forward: set 0 → 1, persisted in {}",
                forward.display()
            ),
            format!(
                "box/app/ports changed: sysctl net.ipv4.ip_local_port_range: set {} → 40000 50000, persisted in {}",
                before.split_whitespace().collect::<Vec<_>>().join(" "),
                ports.display()
            ),
        ]
    );
    assert_eq!(ns.sh("cat /proc/sys/net/ipv4/ip_forward"), "1\n");
    assert_eq!(
        std::fs::read_to_string(&forward).unwrap(),
        "net.ipv4.ip_forward = 1\n"
    );
    assert_eq!(
        std::fs::read_to_string(&ports).unwrap(),
        "net.ipv4.ip_local_port_range = 40000 50000\n"
    );

    // Run again on purpose: tabs against spaces is no difference.
    let (run, report) = ns.apply(&area, &["--replace", "box/app/ports"]);
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        ["box/app/ports unchanged: sysctl net.ipv4.ip_local_port_range is as desired"]
    );
    ns.drover(&area, &["drift", "--detailed-exitcode"])
        .expect_code(0);

    // A value changed behind drover's back is drift, and refresh sets it again.
    ns.sh("echo 0 > /proc/sys/net/ipv4/ip_forward");
    let run = ns
        .drover(&area, &["drift", "--format", "json", "--detailed-exitcode"])
        .expect_code(2);
    let report: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(
        report["instances"][0]["findings"][0],
        serde_json::json!({"kind": "attribute", "path": "net.ipv4.ip_forward", "field": "value", "applied": "1", "found": "0"}),
        "{report:#}"
    );
    let (run, report) = ns.apply(&area, &["--refresh"]);
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        ["box/app/forward changed: sysctl net.ipv4.ip_forward: set 0 → 1"]
    );

    // Absent removes the persisted file and leaves the live value.
    area.write(&SYSCTL.replace("value: 1,", "state: absent,"));
    let (run, report) = ns.apply(&area, &[]);
    run.expect_code(0);
    assert_eq!(
        outcomes(&report),
        [format!(
            "box/app/forward changed: sysctl net.ipv4.ip_forward: removed {} (the live value is left as it is)",
            forward.display()
        )]
    );
    assert!(!forward.exists() && ports.exists());
    assert_eq!(ns.sh("cat /proc/sys/net/ipv4/ip_forward"), "1\n");
    ns.drover(&area, &["drift", "--detailed-exitcode"])
        .expect_code(0);
}

#[test]
fn a_parameter_the_kernel_lacks_fails_and_persists_nothing() {
    let ns = match Netns::new() {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!("skipped: needs a private network namespace: {why}");
            return;
        }
    };
    let area = Area::new(
        "    - name: nope\n      sysctl: {name: net.ipv4.drover_nope, value: 1, file: \"{{ dir }}/nope.conf\"}\n",
    );
    let (run, report) = ns.apply(&area, &[]);
    run.expect_code(1);
    assert_eq!(
        outcomes(&report),
        [
            "box/app/nope failed: the kernel has no parameter net.ipv4.drover_nope (/proc/sys/net/ipv4/drover_nope does not exist; a module may need loading first)"
        ]
    );
    assert!(!area.path("nope.conf").exists());
}

/// Runs `args` in new mount and network namespaces where `/proc/sys` is read-only, as in most
/// containers; `Err` says why that cannot be set up here.
fn read_only_proc_sys(args: &[&str]) -> Result<Run, String> {
    const SETUP: &str =
        r#"mount --bind /proc/sys /proc/sys && mount -o remount,ro,bind /proc/sys && exec "$@""#;
    let output = Command::new("unshare")
        .args(["-m", "-n", "sh", "-c", SETUP, "sh"])
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .current_dir(crate::harness::root())
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    let run = Run { output };
    if args.first() == Some(&"true") && run.code() != 0 {
        return Err(run.stderr());
    }
    Ok(run)
}

#[test]
fn a_read_only_proc_sys_fails_the_task_clearly_and_persists_nothing() {
    if let Err(why) = read_only_proc_sys(&["true"]) {
        eprintln!("skipped: needs private mount and network namespaces: {why}");
        return;
    }
    let area = Area::new(SYSCTL);
    let report = area.path("report.json");
    let (report_arg, manifests) = (
        report.display().to_string(),
        area.manifests.path().display().to_string(),
    );
    let run = read_only_proc_sys(&[
        env!("CARGO_BIN_EXE_drover"),
        "apply",
        "--auto-approve",
        "--color",
        "never",
        "--report",
        &report_arg,
        &manifests,
    ])
    .unwrap();
    run.expect_code(1);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(
        outcomes(&report),
        [
            "box/app/forward failed: cannot set net.ipv4.ip_forward: /proc/sys/net/ipv4/ip_forward is not writable here (/proc/sys is read-only in most containers; otherwise give the task become: root)",
            "box/app/ports failed: cannot set net.ipv4.ip_local_port_range: /proc/sys/net/ipv4/ip_local_port_range is not writable here (/proc/sys is read-only in most containers; otherwise give the task become: root)",
        ]
    );
    assert!(!area.path("sysctl.d").exists());
}
