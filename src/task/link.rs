//! `link`: a symbolic link at `path` pointing at `target` (`ln -sfn`), or no symbolic link
//! there. One POSIX `sh` script per task looks before it acts and says what it changed.
//!
//! A link pointing elsewhere is retargeted. A regular file or an empty directory at the path
//! is replaced only with `force`; a directory that is not empty never is, and the directory
//! the link goes in must exist. Absent removes the path only if it is a symbolic link:
//! anything else there is left alone and noted. The script refuses with `REFUSED`.

use std::fmt::Write as _;

use crate::model::task_kind::PathState;
use crate::task::{Applied, Failure, REFUSED, TaskContext, UNCHANGED, run_script};
use crate::template::shell_quote;
use crate::transport::Transport;

/// The link as the manifests want it.
#[derive(Debug)]
pub struct Desired<'a> {
    pub path: &'a str,
    /// `None` only with `state: absent` (the loader requires one for `present`).
    pub target: Option<&'a str>,
    pub state: PathState,
    pub force: bool,
}

/// The directory a link goes in: `/etc/a` → `/etc`, `/a` → `/`.
pub fn parent(path: &str) -> &str {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some((parent, _)) if !parent.is_empty() => parent,
        _ => "/",
    }
}

pub async fn apply<T: Transport>(
    transport: &T,
    ctx: &TaskContext,
    r#become: Option<&str>,
    want: &Desired<'_>,
) -> Result<Applied, Failure> {
    let what = format!("link {}", want.path);
    run_script(transport, ctx, r#become, script(want), &what).await
}

/// The shell script for one link task.
pub fn script(want: &Desired<'_>) -> String {
    let mut out = format!("set -e\np={}\nchanged=0\n", shell_quote(want.path));
    match (want.state, want.target) {
        (PathState::Present, Some(target)) => present(want, target, &mut out),
        (PathState::Present, None) => {
            let _ = writeln!(
                out,
                "echo \"the link $p has no target\" >&2; exit {REFUSED}"
            );
        }
        (PathState::Absent, _) => {
            let _ = writeln!(
                out,
                r#"if [ -L "$p" ]; then rm -f -- "$p"; echo 'DROVER_DID removed'; changed=1
elif [ -e "$p" ]; then echo "DROVER_NOTE $p is not a symbolic link; left in place"
fi"#
            );
        }
    }
    let _ = writeln!(out, "[ $changed = 1 ] || echo {UNCHANGED}");
    out
}

fn present(want: &Desired<'_>, target: &str, out: &mut String) {
    let (directory, file) = if want.force {
        (
            format!(
                r#"if [ -n "$(ls -A -- "$p")" ]; then echo "$p is a directory that is not empty; it is not replaced by a link, even with 'force: true'" >&2; exit {REFUSED}; fi
  rmdir -- "$p"; ln -s -- "$t" "$p"; echo 'DROVER_DID replaced an empty directory'; changed=1"#
            ),
            r#"rm -f -- "$p"; ln -s -- "$t" "$p"; echo 'DROVER_DID replaced a file'; changed=1"#
                .to_owned(),
        )
    } else {
        (
            format!(
                r#"echo "$p is a directory, not a symbolic link; it is left in place: remove it, or set 'force: true' to replace it when it is empty" >&2; exit {REFUSED}"#
            ),
            format!(
                r#"k='a regular file'; [ -f "$p" ] || k='a special file'
  echo "$p is $k, not a symbolic link; it is left in place: remove it, or set 'force: true' to replace it" >&2; exit {REFUSED}"#
            ),
        )
    };
    let _ = writeln!(
        out,
        r#"t={target}
if [ -L "$p" ]; then
  c=$(readlink -- "$p")
  if [ "$c" != "$t" ]; then ln -sfn -- "$t" "$p"; printf 'DROVER_DID retargeted from %s\n' "$c"; changed=1; fi
elif [ -d "$p" ]; then
  {directory}
elif [ -e "$p" ]; then
  {file}
else
  d={parent}
  if [ ! -d "$d" ]; then echo "the directory $d does not exist; create it first (a directory task that the link task needs)" >&2; exit {REFUSED}; fi
  ln -s -- "$t" "$p"; echo 'DROVER_DID created'; changed=1
fi"#,
        target = shell_quote(target),
        parent = shell_quote(parent(want.path)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(force: bool) -> Desired<'static> {
        Desired {
            path: "/etc/nginx/sites-enabled/my app",
            target: Some("../sites-available/it's"),
            state: PathState::Present,
            force,
        }
    }

    #[test]
    fn parents_of_paths() {
        assert_eq!(parent("/etc/nginx/app"), "/etc/nginx");
        assert_eq!(parent("/app"), "/");
        assert_eq!(parent("/srv//app"), "/srv/");
    }

    #[test]
    fn a_present_link_is_retargeted_and_replaces_only_with_force() {
        let s = script(&want(false));
        assert!(s.contains("p='/etc/nginx/sites-enabled/my app'\n"), "{s}");
        assert!(s.contains(r"t='../sites-available/it'\''s'"), "{s}");
        assert!(s.contains("ln -sfn -- \"$t\" \"$p\""));
        assert!(s.contains("d=/etc/nginx/sites-enabled\n"));
        assert!(!s.contains("rm -f") && !s.contains("rmdir"), "{s}");
        assert!(s.contains("set 'force: true' to replace it"));
        let s = script(&want(true));
        assert!(s.contains("rm -f -- \"$p\"; ln -s") && s.contains("rmdir -- \"$p\""));
        assert!(s.contains("not empty"));
    }

    #[test]
    fn an_absent_link_removes_only_a_symbolic_link() {
        let s = script(&Desired {
            target: None,
            state: PathState::Absent,
            ..want(false)
        });
        assert!(s.contains("if [ -L \"$p\" ]; then rm -f -- \"$p\""));
        assert!(s.contains("DROVER_NOTE") && !s.contains("rmdir"));
    }
}
