//! `package`: packages present or absent, through whatever manager the host has (apt, dnf,
//! apk, zypper). One script per task checks all names at once and installs or removes only
//! what differs, so a converged host costs one round trip.

use crate::model::task_kind::PackageState;
use crate::task::{Applied, Failure, TaskContext, UNCHANGED, exec, failed};
use crate::template::shell_quote;
use crate::transport::{CommandLine, Transport};

pub async fn apply<T: Transport>(
    transport: &T,
    ctx: &TaskContext,
    r#become: Option<&str>,
    names: &[String],
    state: PackageState,
) -> Result<Applied, Failure> {
    let mut commands = Vec::new();
    let out = exec(
        transport,
        ctx,
        r#become,
        CommandLine::Shell(script(names, state)),
        &mut commands,
    )
    .await?;
    if !out.status.success() {
        return Err(failed(&out, "the package manager", &mut commands));
    }
    let stdout = String::from_utf8_lossy(&out.stdout.bytes);
    let changed = !stdout.lines().any(|l| l.trim() == UNCHANGED);
    let verb = match state {
        PackageState::Present => "installed",
        PackageState::Absent => "removed",
    };
    let summary = if changed {
        format!("{verb} {}", names.join(", "))
    } else {
        format!("{} already {verb}", names.join(", "))
    };
    Ok(Applied {
        changed,
        summary,
        diff: None,
        commands,
    })
}

/// The shell script for one package task. Names are quoted; the script picks the manager.
pub fn script(names: &[String], state: PackageState) -> String {
    let words: Vec<String> = names.iter().map(|n| shell_quote(n)).collect();
    let (want_installed, action) = match state {
        PackageState::Present => ("", "install"),
        PackageState::Absent => ("!", "remove"),
    };
    format!(
        r#"set -ef
todo=""
installed() {{
  if command -v dpkg-query >/dev/null 2>&1; then dpkg-query -W -f='${{Status}}' "$1" 2>/dev/null | grep -q 'install ok installed'
  elif command -v rpm >/dev/null 2>&1; then rpm -q "$1" >/dev/null 2>&1
  elif command -v apk >/dev/null 2>&1; then apk info -e "$1" >/dev/null 2>&1
  else return 1; fi
}}
for p in {names}; do if {want_installed} installed "$p"; then :; else todo="$todo $p"; fi; done
if [ -z "$todo" ]; then echo {UNCHANGED}; exit 0; fi
if command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  if [ {action} = install ]; then apt-get install -y -q --no-install-recommends -- $todo || {{ apt-get update -q && apt-get install -y -q --no-install-recommends -- $todo; }}; else apt-get remove -y -q -- $todo; fi
elif command -v dnf >/dev/null 2>&1; then dnf {action} -y -q $todo
elif command -v apk >/dev/null 2>&1; then if [ {action} = install ]; then apk add -q $todo; else apk del -q $todo; fi
elif command -v zypper >/dev/null 2>&1; then zypper -n -q {action} $todo
else echo "no supported package manager (apt, dnf, apk, zypper) on this host" >&2; exit 100
fi
"#,
        names = words.join(" "),
    )
}
