//! `service`: a systemd unit running or stopped, enabled or not, and reloaded or restarted
//! when a task it is triggered by changed. One script per task, one round trip.

use std::fmt::Write as _;

use crate::model::task_kind::{OnTrigger, ServiceState};
use crate::task::{Applied, Failure, TaskContext, UNCHANGED, exec, failed};
use crate::template::shell_quote;
use crate::transport::{CommandLine, Transport};

pub async fn apply<T: Transport>(
    transport: &T,
    ctx: &TaskContext,
    r#become: Option<&str>,
    name: &str,
    state: Option<ServiceState>,
    enabled: Option<bool>,
    on_trigger: OnTrigger,
) -> Result<Applied, Failure> {
    let mut commands = Vec::new();
    let text = script(name, state, enabled, ctx.triggered.then_some(on_trigger));
    let out = exec(
        transport,
        ctx,
        r#become,
        CommandLine::Shell(text),
        &mut commands,
    )
    .await?;
    if !out.status.success() {
        return Err(failed(
            &out,
            &format!("systemctl for {name}"),
            &mut commands,
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout.bytes);
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

/// The shell script for one service task.
pub fn script(
    name: &str,
    state: Option<ServiceState>,
    enabled: Option<bool>,
    triggered: Option<OnTrigger>,
) -> String {
    let unit = shell_quote(name);
    let mut out = String::from(
        "set -e\ncommand -v systemctl >/dev/null 2>&1 || { echo 'systemctl is not available: this host does not run systemd' >&2; exit 100; }\nchanged=0\n",
    );
    let step = |test: &str, act: &str, did: &str| {
        format!(
            "if {test}; then :; else systemctl {act} {unit}; echo 'DROVER_DID {did}'; changed=1; fi\n"
        )
    };
    match state {
        Some(ServiceState::Running) => out.push_str(&step(
            &format!("systemctl is-active --quiet {unit}"),
            "start",
            "started",
        )),
        Some(ServiceState::Stopped) => out.push_str(&step(
            &format!("! systemctl is-active --quiet {unit}"),
            "stop",
            "stopped",
        )),
        None => {}
    }
    match enabled {
        Some(true) => out.push_str(&step(
            &format!("systemctl is-enabled --quiet {unit}"),
            "enable",
            "enabled",
        )),
        Some(false) => out.push_str(&step(
            &format!("! systemctl is-enabled --quiet {unit}"),
            "disable",
            "disabled",
        )),
        None => {}
    }
    // A trigger restarts or reloads a unit that should run; a stopped one stays stopped.
    if let Some(how) = triggered.filter(|_| state != Some(ServiceState::Stopped)) {
        let (act, did) = match how {
            OnTrigger::Restart => ("restart", "restarted"),
            OnTrigger::Reload => ("reload-or-restart", "reloaded"),
        };
        let _ = writeln!(
            out,
            "systemctl {act} {unit}; echo 'DROVER_DID {did}'; changed=1"
        );
    }
    let _ = writeln!(out, "[ $changed = 1 ] || echo {UNCHANGED}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_quote_the_unit_and_restart_only_when_triggered() {
        let s = script("my app", Some(ServiceState::Running), Some(true), None);
        assert!(s.contains("systemctl is-active --quiet 'my app'"));
        assert!(!s.contains("restart"));
        let s = script("nginx", None, None, Some(OnTrigger::Reload));
        assert!(s.contains("systemctl reload-or-restart nginx"));
        let s = script(
            "nginx",
            Some(ServiceState::Stopped),
            None,
            Some(OnTrigger::Restart),
        );
        assert!(
            !s.contains("systemctl restart"),
            "a stopped service is not restarted by a trigger"
        );
    }
}
