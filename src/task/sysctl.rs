//! `sysctl`: a kernel parameter set now, through `/proc/sys`, and persisted in its own file
//! (by default `/etc/sysctl.d/90-drover-<name>.conf`) so that it holds after a reboot. One
//! POSIX `sh` script per task looks before it acts and says what it changed.
//!
//! The live value is written before the file: where `/proc/sys` is read-only (most
//! containers) or the parameter does not exist, the task fails with the reason and
//! persists nothing. Values are compared with their whitespace normalized, as the kernel
//! prints fields with tabs. `state: absent` removes the persisted file and leaves the live
//! value as it is: the kernel has no "unset", and its default is not known here
//! (decision 0015).

use std::fmt::Write as _;

use crate::model::task_kind::PathState;
use crate::resolve::{sysctl_file_content, sysctl_proc_path};
use crate::task::atomic_write;
use crate::task::link::parent;
use crate::task::{Applied, Failure, REFUSED, TaskContext, UNCHANGED, run_script};
use crate::template::shell_quote;
use crate::transport::Transport;

/// The parameter as the manifests want it.
#[derive(Debug)]
pub struct Desired<'a> {
    pub name: &'a str,
    /// Normalized; `None` only with `state: absent`.
    pub value: Option<&'a str>,
    pub state: PathState,
    /// The persisted file.
    pub file: &'a str,
}

pub async fn apply<T: Transport>(
    transport: &T,
    ctx: &TaskContext,
    r#become: Option<&str>,
    want: &Desired<'_>,
) -> Result<Applied, Failure> {
    let what = format!("sysctl {}", want.name);
    run_script(transport, ctx, r#become, script(want), &what).await
}

/// The shell script for one sysctl task.
pub fn script(want: &Desired<'_>) -> String {
    let mut out = format!(
        "set -e\nn={}\nf={}\nd={}\nchanged=0\n",
        shell_quote(want.name),
        shell_quote(want.file),
        shell_quote(parent(want.file)),
    );
    match (want.state, want.value) {
        (PathState::Present, Some(value)) => present(want, value, &mut out),
        (PathState::Present, None) => {
            let _ = writeln!(out, "echo \"sysctl $n has no value\" >&2; exit {REFUSED}");
        }
        (PathState::Absent, _) => {
            let _ = writeln!(
                out,
                r#"if [ -e "$f" ] || [ -L "$f" ]; then rm -f -- "$f"; echo "DROVER_DID removed $f (the live value is left as it is)"; changed=1; fi"#
            );
        }
    }
    let _ = writeln!(out, "[ $changed = 1 ] || echo {UNCHANGED}");
    out
}

fn present(want: &Desired<'_>, value: &str, out: &mut String) {
    let content = sysctl_file_content(want.name, value);
    // `_norm` joins the fields of a value with one space, as the desired value is.
    let _ = writeln!(
        out,
        r#"v={value}
p={proc}
_norm() {{ set -f; set -- $1; set +f; printf '%s' "$*"; }}
if [ ! -e "$p" ]; then echo "the kernel has no parameter $n ($p does not exist; a module may need loading first)" >&2; exit {REFUSED}; fi
c=$(_norm "$(cat -- "$p")")
if [ "$c" != "$v" ]; then
  if ! (printf '%s\n' "$v" > "$p") 2>/dev/null; then echo "cannot set $n: $p is not writable here (/proc/sys is read-only in most containers; otherwise give the task become: root)" >&2; exit {REFUSED}; fi
  r=$(_norm "$(cat -- "$p")")
  if [ "$r" != "$v" ]; then echo "the kernel did not take $n = $v: it reads back $r" >&2; exit {REFUSED}; fi
  printf 'DROVER_DID set %s → %s\n' "$c" "$v"; changed=1
fi
if ! {holds}; then
  if [ ! -d "$d" ]; then mkdir -p -- "$d"; fi
{replace}  echo "DROVER_DID persisted in $f"; changed=1
fi"#,
        value = shell_quote(value),
        proc = shell_quote(&sysctl_proc_path(want.name)),
        holds = atomic_write::holds(&content),
        replace = atomic_write::replace_file(&content, 0o644),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(state: PathState) -> Desired<'static> {
        Desired {
            name: "net.ipv4.ip_local_port_range",
            value: Some("32768 60999"),
            state,
            file: "/etc/sysctl.d/90-drover-net.ipv4.ip_local_port_range.conf",
        }
    }

    #[test]
    fn the_live_value_is_set_before_it_is_persisted() {
        let s = script(&want(PathState::Present));
        assert!(
            s.contains("p=/proc/sys/net/ipv4/ip_local_port_range\n"),
            "{s}"
        );
        assert!(s.contains("v='32768 60999'\n"), "{s}");
        assert!(s.contains("d=/etc/sysctl.d\n"), "{s}");
        assert!(
            s.contains("printf '%s' 'net.ipv4.ip_local_port_range = 32768 60999\n'"),
            "{s}"
        );
        assert!(s.contains("is not writable here"));
        assert!(
            s.find("> \"$p\"").unwrap() < s.find("mv -f").unwrap(),
            "nothing is persisted that the kernel refused"
        );
    }

    #[test]
    fn absent_removes_only_the_persisted_file() {
        let s = script(&want(PathState::Absent));
        assert!(s.contains("rm -f -- \"$f\""), "{s}");
        assert!(!s.contains("/proc/sys"), "{s}");
    }

    #[test]
    fn parameter_names_map_to_proc_paths() {
        assert_eq!(
            sysctl_proc_path("net.ipv4.conf.all.rp_filter"),
            "/proc/sys/net/ipv4/conf/all/rp_filter"
        );
    }
}
