//! `directory`: a directory present with the mode, owner and group a task gives, or absent.
//! One POSIX `sh` script per task looks before it acts and says what it changed, so a
//! converged host costs one round trip and reports no change.
//!
//! Present creates missing parents as `mkdir -p` does (default permissions, owned by the
//! task's user); only the directory itself gets `mode`, `owner` and `group`, and only the
//! ones given are compared and changed. Absent removes an empty directory, or a full one
//! with `recursive`. Something else at the path (a file, a symbolic link, even to a
//! directory) is never replaced or removed: the script refuses with `REFUSED`.

use std::fmt::Write as _;

use crate::model::task_kind::PathState;
use crate::task::{Applied, Failure, REFUSED, TaskContext, UNCHANGED, run_script};
use crate::template::shell_quote;
use crate::transport::Transport;

/// The directory as the manifests want it.
#[derive(Debug)]
pub struct Desired<'a> {
    pub path: &'a str,
    pub mode: Option<u32>,
    pub owner: Option<&'a str>,
    pub group: Option<&'a str>,
    pub state: PathState,
    pub recursive: bool,
}

pub async fn apply<T: Transport>(
    transport: &T,
    ctx: &TaskContext,
    r#become: Option<&str>,
    want: &Desired<'_>,
) -> Result<Applied, Failure> {
    let what = format!("directory {}", want.path);
    run_script(transport, ctx, r#become, script(want), &what).await
}

/// The shell script for one directory task. Every value is quoted; messages for the user go
/// to standard error, changes to standard output as `DROVER_DID` lines.
pub fn script(want: &Desired<'_>) -> String {
    let mut out = format!("set -e\np={}\nchanged=0\n", shell_quote(want.path));
    match want.state {
        PathState::Present => present(want, &mut out),
        PathState::Absent => absent(want.recursive, &mut out),
    }
    let _ = writeln!(out, "[ $changed = 1 ] || echo {UNCHANGED}");
    out
}

fn present(want: &Desired<'_>, out: &mut String) {
    let _ = write!(
        out,
        r#"if [ -L "$p" ]; then echo "$p is a symbolic link, not a directory; it is left in place: remove it, or manage it with a link task" >&2; exit {REFUSED}; fi
if [ -e "$p" ] && [ ! -d "$p" ]; then echo "$p exists and is not a directory; it is left in place: remove it, or give the directory another path" >&2; exit {REFUSED}; fi
created=0
if [ ! -d "$p" ]; then mkdir -p -- "$p"; echo 'DROVER_DID created'; created=1; changed=1; fi
"#
    );
    // Owner and group first: changing them may clear set-id bits that the mode then sets.
    // A name is compared with the name, a number with the number, as `chown` takes either.
    for (field, tool, name_fmt, id_fmt, value) in [
        ("owner", "chown", "%U", "%u", want.owner),
        ("group", "chgrp", "%G", "%g", want.group),
    ] {
        let Some(value) = value else { continue };
        let value = shell_quote(value);
        let _ = writeln!(
            out,
            r#"n=$(stat -c {name_fmt} -- "$p"); i=$(stat -c {id_fmt} -- "$p")
if [ "$n" != {value} ] && [ "$i" != {value} ]; then {tool} -- {value} "$p"; [ $created = 1 ] || printf 'DROVER_DID {field} %s → %s\n' "$n" {value}; changed=1; fi"#
        );
    }
    if let Some(mode) = want.mode {
        // `stat %a` prints the mode in octal without leading zeros. GNU `chmod` keeps a
        // directory's set-id bits on a 4-digit mode; a fifth, leading zero sets exactly these.
        let stat = format!("{mode:o}");
        let _ = writeln!(
            out,
            r#"m=$(stat -c %a -- "$p")
if [ "$m" != {stat} ]; then chmod 0{mode:04o} -- "$p"; [ $created = 1 ] || printf 'DROVER_DID mode %04o → {mode:04o}\n' "0$m"; changed=1; fi"#,
        );
    }
}

fn absent(recursive: bool, out: &mut String) {
    let remove = if recursive {
        "rm -rf -- \"$p\"; echo 'DROVER_DID removed with everything in it'".to_owned()
    } else {
        format!(
            r#"if [ -n "$(ls -A -- "$p")" ]; then echo "$p is not empty; it is left in place: set 'recursive: true' to remove it with everything in it" >&2; exit {REFUSED}; fi
  rmdir -- "$p"; echo 'DROVER_DID removed'"#
        )
    };
    let _ = writeln!(
        out,
        r#"if [ -L "$p" ]; then echo "$p is a symbolic link, not a directory; it is left in place" >&2; exit {REFUSED}
elif [ -d "$p" ]; then
  {remove}; changed=1
elif [ -e "$p" ]; then echo "$p is not a directory; it is left in place" >&2; exit {REFUSED}
fi"#
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(state: PathState) -> Desired<'static> {
        Desired {
            path: "/srv/my app",
            mode: None,
            owner: None,
            group: None,
            state,
            recursive: false,
        }
    }

    #[test]
    fn a_present_directory_checks_only_what_is_given() {
        let s = script(&want(PathState::Present));
        assert!(s.starts_with("set -e\np='/srv/my app'\n"), "{s}");
        assert!(s.contains("mkdir -p -- \"$p\""));
        assert!(!s.contains("stat") && !s.contains("chmod") && !s.contains("chown"));
        let s = script(&Desired {
            mode: Some(0o750),
            owner: Some("app"),
            group: Some("1001"),
            ..want(PathState::Present)
        });
        assert!(
            s.contains("if [ \"$m\" != 750 ]; then chmod 00750 -- \"$p\""),
            "{s}"
        );
        assert!(s.contains("chown -- app \"$p\""));
        assert!(s.contains("[ \"$n\" != 1001 ] && [ \"$i\" != 1001 ]; then chgrp -- 1001"));
        assert!(
            s.find("chown").unwrap() < s.find("chmod").unwrap(),
            "the owner changes before the mode"
        );
    }

    #[test]
    fn an_absent_directory_is_removed_only_when_empty_unless_recursive() {
        let s = script(&want(PathState::Absent));
        assert!(s.contains("rmdir -- \"$p\"") && s.contains("is not empty"));
        assert!(!s.contains("rm -rf"));
        let s = script(&Desired {
            recursive: true,
            ..want(PathState::Absent)
        });
        assert!(s.contains("rm -rf -- \"$p\"") && !s.contains("rmdir"));
        assert!(s.contains("[ -L \"$p\" ]"), "a link is never followed");
    }
}
