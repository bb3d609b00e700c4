//! `cron`: a named entry in the system crontab directory, one file per entry
//! (`<dir>/drover-<name>`, mode 0644, `SHELL=/bin/sh` then `schedule user command`), or no
//! such file. One POSIX `sh` script per task looks before it acts and says what it changed;
//! the file is replaced atomically, so cron never reads half an entry.
//!
//! Cron reads the directory itself: nothing is reloaded. Something other than a regular
//! file at the entry's path is never replaced: the script refuses with `REFUSED`.

use std::fmt::Write as _;

use crate::model::task_kind::PathState;
use crate::resolve::cron_file_content;
use crate::task::atomic_write;
use crate::task::link::parent;
use crate::task::{Applied, Failure, REFUSED, TaskContext, UNCHANGED, run_script};
use crate::template::shell_quote;
use crate::transport::Transport;

/// Cron entry files are read by cron running as root; it skips group- or world-writable ones.
pub const MODE: u32 = 0o644;

/// The entry as the manifests want it.
#[derive(Debug)]
pub struct Desired<'a> {
    pub name: &'a str,
    /// `None` only with `state: absent`.
    pub schedule: Option<&'a str>,
    /// `None` only with `state: absent`.
    pub command: Option<&'a str>,
    pub user: &'a str,
    pub state: PathState,
    /// The entry's file.
    pub path: &'a str,
}

pub async fn apply<T: Transport>(
    transport: &T,
    ctx: &TaskContext,
    r#become: Option<&str>,
    want: &Desired<'_>,
) -> Result<Applied, Failure> {
    let what = format!("cron {}", want.name);
    run_script(transport, ctx, r#become, script(want), &what).await
}

/// The shell script for one cron task.
pub fn script(want: &Desired<'_>) -> String {
    let mut out = format!(
        "set -e\nf={}\nd={}\nchanged=0\n",
        shell_quote(want.path),
        shell_quote(parent(want.path)),
    );
    match (want.state, want.schedule, want.command) {
        (PathState::Present, Some(schedule), Some(command)) => {
            let content = cron_file_content(schedule, want.user, command);
            let _ = writeln!(
                out,
                r#"if [ ! -d "$d" ]; then echo "the directory $d does not exist: install cron, or set dir to where it reads entries" >&2; exit {REFUSED}; fi
if [ -L "$f" ] || {{ [ -e "$f" ] && [ ! -f "$f" ]; }}; then echo "$f is not a regular file; it is left in place: remove it, or give the entry another name" >&2; exit {REFUSED}; fi
if ! {holds}; then
  w=created; [ ! -e "$f" ] || w=updated
{replace}  echo "DROVER_DID $w"; changed=1
else
  m=$(stat -c %a -- "$f")
  if [ "$m" != {mode:o} ]; then chmod {mode:04o} -- "$f"; printf 'DROVER_DID mode %04o → {mode:04o}\n' "0$m"; changed=1; fi
fi"#,
                holds = atomic_write::holds(&content),
                replace = atomic_write::replace_file(&content, MODE),
                mode = MODE,
            );
        }
        (PathState::Present, _, _) => {
            let _ = writeln!(
                out,
                "echo \"the cron entry $f has no schedule or command\" >&2; exit {REFUSED}"
            );
        }
        (PathState::Absent, _, _) => {
            let _ = writeln!(
                out,
                r#"if [ -L "$f" ] || {{ [ -e "$f" ] && [ ! -f "$f" ]; }}; then echo "$f is not a regular file; it is left in place" >&2; exit {REFUSED}
elif [ -e "$f" ]; then rm -f -- "$f"; echo 'DROVER_DID removed'; changed=1
fi"#
            );
        }
    }
    let _ = writeln!(out, "[ $changed = 1 ] || echo {UNCHANGED}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(state: PathState) -> Desired<'static> {
        Desired {
            name: "backup",
            schedule: Some("0 3 * * *"),
            command: Some("/usr/local/bin/backup --to 'nas'"),
            user: "root",
            state,
            path: "/etc/cron.d/drover-backup",
        }
    }

    #[test]
    fn an_entry_is_written_whole_with_its_mode() {
        let s = script(&want(PathState::Present));
        assert!(
            s.starts_with("set -e\nf=/etc/cron.d/drover-backup\nd=/etc/cron.d\n"),
            "{s}"
        );
        assert!(
            s.contains(
                r"'SHELL=/bin/sh
0 3 * * * root /usr/local/bin/backup --to '\''nas'\''
'"
            ),
            "{s}"
        );
        assert!(s.contains("chmod 0644 -- \"$t\""), "{s}");
        assert!(s.contains("[ \"$m\" != 644 ]"), "{s}");
        assert!(s.contains("mv -f -- \"$t\" \"$f\""));
    }

    #[test]
    fn absent_removes_only_a_regular_file() {
        let s = script(&want(PathState::Absent));
        assert!(s.contains("rm -f -- \"$f\""), "{s}");
        assert!(s.contains("is not a regular file"));
        assert!(!s.contains("mktemp"));
    }
}
