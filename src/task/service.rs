//! `service`: a service running or stopped, enabled or not, and reloaded or restarted when a
//! task it is triggered by changed, under systemd or OpenRC. One script per task, one round
//! trip: it finds the host's init system (`drift::probe::DETECT_INIT`, shared with the drift
//! probe so both agree), looks at the service, and acts only where it differs.
//!
//! Under OpenRC, "running" is `rc-service NAME status` exiting 0 and "enabled" is being in
//! the `default` runlevel (`rc-update show default`); other runlevels are not looked at
//! (decision 0019).

use std::fmt::Write as _;

use crate::drift::probe::DETECT_INIT;
use crate::model::task_kind::{OnTrigger, ServiceState};
use crate::task::{Applied, Failure, REFUSED, TaskContext, UNCHANGED, exec, failed};
use crate::template::shell_quote;
use crate::transport::{CommandLine, ExitStatus, Transport};

pub async fn apply<T: Transport>(
    transport: &T,
    ctx: &TaskContext,
    r#become: Option<&str>,
    host: &str,
    want: &Desired<'_>,
) -> Result<Applied, Failure> {
    let name = want.name;
    let mut commands = Vec::new();
    let text = script(host, want, ctx.triggered.then_some(want.on_trigger));
    let out = exec(
        transport,
        ctx,
        r#become,
        CommandLine::Shell(text),
        &mut commands,
    )
    .await?;
    let stdout = String::from_utf8_lossy(&out.stdout.bytes);
    if out.status == (ExitStatus::Code { code: REFUSED }) {
        let why = String::from_utf8_lossy(&out.stderr.bytes).trim().to_owned();
        return Err(Failure::Failed {
            message: if why.is_empty() {
                format!("service {name}: refused")
            } else {
                why
            },
            commands,
        });
    }
    if !out.status.success() {
        // The script names the init system before it runs anything of it.
        let tool = if stdout.lines().any(|l| l.trim() == "DROVER_INIT openrc") {
            "rc-service"
        } else {
            "systemctl"
        };
        return Err(failed(&out, &format!("{tool} for {name}"), &mut commands));
    }
    let changed = !stdout.lines().any(|l| l.trim() == UNCHANGED);
    let did: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("DROVER_DID "))
        .collect();
    let summary = if changed {
        format!("{name}: {}", did.join(", "))
    } else {
        format!("{name} is as desired")
    };
    Ok(Applied {
        changed,
        summary,
        diff: None,
        commands,
    })
}

/// What a service task wants, as resolved.
#[derive(Debug, Clone, Copy)]
pub struct Desired<'a> {
    pub name: &'a str,
    pub state: Option<ServiceState>,
    pub enabled: Option<bool>,
    pub on_trigger: OnTrigger,
}

/// The shell script for one service task: the init system found at run time, then the
/// systemd or the OpenRC steps. `triggered` is set when a source changed in this run.
pub fn script(host: &str, want: &Desired<'_>, triggered: Option<OnTrigger>) -> String {
    let mut out = format!(
        "set -e\n{DETECT_INIT}\nif [ -z \"$_init\" ]; then printf 'host %s runs neither systemd nor OpenRC (no /run/systemd/system, no systemctl, no rc-service): the service kind needs one of them\\n' {host} >&2; exit {REFUSED}; fi\necho \"DROVER_INIT $_init\"\nchanged=0\nif [ \"$_init\" = systemd ]; then\n",
        host = shell_quote(host),
    );
    out.push_str(&systemd_steps(want, triggered));
    out.push_str("else\n");
    out.push_str(&openrc_steps(host, want, triggered));
    out.push_str("fi\n");
    let _ = writeln!(out, "[ $changed = 1 ] || echo {UNCHANGED}");
    out
}

/// `if TEST; then :; else ACT; say DID; fi`: look before acting.
fn step(test: &str, act: &str, did: &str) -> String {
    format!("if {test}; then :; else {act}; echo 'DROVER_DID {did}'; changed=1; fi\n")
}

/// The systemd steps (through `systemctl`).
fn systemd_steps(want: &Desired<'_>, triggered: Option<OnTrigger>) -> String {
    let unit = shell_quote(want.name);
    let mut out = String::new();
    let systemctl = |verb: &str| format!("systemctl {verb} {unit}");
    match want.state {
        Some(ServiceState::Running) => out.push_str(&step(
            &systemctl("is-active --quiet"),
            &systemctl("start"),
            "started",
        )),
        Some(ServiceState::Stopped) => out.push_str(&step(
            &format!("! {}", systemctl("is-active --quiet")),
            &systemctl("stop"),
            "stopped",
        )),
        None => {}
    }
    match want.enabled {
        Some(true) => out.push_str(&step(
            &systemctl("is-enabled --quiet"),
            &systemctl("enable"),
            "enabled",
        )),
        Some(false) => out.push_str(&step(
            &format!("! {}", systemctl("is-enabled --quiet")),
            &systemctl("disable"),
            "disabled",
        )),
        None => {}
    }
    // A trigger restarts or reloads a unit that should run; a stopped one stays stopped.
    if let Some(how) = triggered.filter(|_| want.state != Some(ServiceState::Stopped)) {
        let (act, did) = match how {
            OnTrigger::Restart => ("restart", "restarted"),
            OnTrigger::Reload => ("reload-or-restart", "reloaded"),
        };
        let _ = writeln!(
            out,
            "{}; echo 'DROVER_DID {did}'; changed=1",
            systemctl(act)
        );
    }
    out
}

/// The OpenRC steps (through `rc-service` and `rc-update`).
fn openrc_steps(host: &str, want: &Desired<'_>, triggered: Option<OnTrigger>) -> String {
    let svc = shell_quote(want.name);
    let rc = |verb: &str| format!("rc-service {svc} {verb}");
    // A missing init script would otherwise fail later with a less helpful message.
    let mut out = format!(
        "if ! rc-service --exists {svc} >/dev/null 2>&1; then printf 'host %s: OpenRC has no service %s (no script in /etc/init.d)\\n' {host} {svc} >&2; exit {REFUSED}; fi\n",
        host = shell_quote(host),
    );
    match want.state {
        // `status` exits 0 when started, 3 when stopped and 32 when started but crashed:
        // `start` would say "already started" to a crashed one, so it is restarted.
        Some(ServiceState::Running) => {
            let _ = writeln!(
                out,
                "_st=0; {} >/dev/null 2>&1 || _st=$?\nif [ $_st = 0 ]; then :; elif [ $_st = 32 ]; then {}; echo 'DROVER_DID restarted (it had crashed)'; changed=1; else {}; echo 'DROVER_DID started'; changed=1; fi",
                rc("status"),
                rc("restart"),
                rc("start"),
            );
        }
        Some(ServiceState::Stopped) => out.push_str(&step(
            &format!("! {} >/dev/null 2>&1", rc("status")),
            &rc("stop"),
            "stopped",
        )),
        None => {}
    }
    // Membership of the default runlevel: a line `NAME | default` of `rc-update show`.
    let in_default = format!(
        "rc-update show default 2>/dev/null | _n={svc} awk 'BEGIN {{ n = ENVIRON[\"_n\"] }} $1 == n {{ f = 1 }} END {{ exit !f }}'"
    );
    match want.enabled {
        Some(true) => out.push_str(&step(
            &in_default,
            &format!("rc-update add {svc} default"),
            "enabled",
        )),
        Some(false) => out.push_str(&step(
            &format!("! {{ {in_default}; }}"),
            &format!("rc-update del {svc} default"),
            "disabled",
        )),
        None => {}
    }
    if let Some(how) = triggered.filter(|_| want.state != Some(ServiceState::Stopped)) {
        match how {
            OnTrigger::Restart => {
                let _ = writeln!(
                    out,
                    "{}; echo 'DROVER_DID restarted'; changed=1",
                    rc("restart")
                );
            }
            // Only scripts that define `reload` have it; the others are restarted, as
            // systemd's `reload-or-restart` does.
            OnTrigger::Reload => {
                let _ = writeln!(
                    out,
                    "if {} 2>/dev/null; then echo 'DROVER_DID reloaded'; else {}; echo 'DROVER_DID restarted (reload failed or is not supported)'; fi; changed=1",
                    rc("reload"),
                    rc("restart"),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(name: &str, state: Option<ServiceState>, enabled: Option<bool>) -> Desired<'_> {
        Desired {
            name,
            state,
            enabled,
            on_trigger: OnTrigger::Restart,
        }
    }

    #[test]
    fn scripts_quote_the_unit_and_restart_only_when_triggered() {
        let s = script(
            "web-1",
            &want("my app", Some(ServiceState::Running), Some(true)),
            None,
        );
        assert!(s.contains("systemctl is-active --quiet 'my app'"));
        assert!(s.contains("rc-service 'my app' status"));
        assert!(
            !s.contains("systemctl restart") && !s.contains("echo 'DROVER_DID restarted'"),
            "{s}"
        );
        let s = script("web-1", &want("nginx", None, None), Some(OnTrigger::Reload));
        assert!(s.contains("systemctl reload-or-restart nginx"));
        assert!(s.contains("if rc-service nginx reload"));
        let s = script(
            "web-1",
            &want("nginx", Some(ServiceState::Stopped), None),
            Some(OnTrigger::Restart),
        );
        assert!(
            !s.contains("systemctl restart") && !s.contains("rc-service nginx restart"),
            "a stopped service is not restarted by a trigger"
        );
    }

    #[test]
    fn openrc_enablement_is_the_default_runlevel_and_the_host_is_named() {
        let s = script("edge 1", &want("sshd", None, Some(false)), None);
        assert!(s.contains("rc-update show default"), "{s}");
        assert!(s.contains("rc-update del sshd default"), "{s}");
        assert!(
            s.contains("printf 'host %s runs neither systemd nor OpenRC"),
            "{s}"
        );
        assert!(s.contains("' 'edge 1' >&2; exit 65"), "{s}");
    }
}
