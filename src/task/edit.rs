//! `line` and `block`: edit one file on the host in place. One POSIX `sh` script per task
//! runs the edit's `awk` program (`crate::edit`) on the file into a temporary file in the same
//! directory and, only when the program says it changed something, gives the temporary file
//! the original's mode and owner and moves it over the original: the file is replaced
//! atomically and never half written.
//!
//! The file must exist, unless `create` says to create it (empty, with the default
//! permissions); with `state: absent` a missing file has nothing to remove. A symbolic link is
//! followed: the file it points at is edited. A path that is a directory or another special
//! file is refused with `REFUSED`.

use std::fmt::Write as _;

use crate::edit::{self, Edit};
use crate::model::task_kind::PathState;
use crate::resolve::Action;
use crate::task::{Applied, Failure, REFUSED, TaskContext, UNCHANGED, run_script};
use crate::template::shell_quote;
use crate::transport::Transport;

/// The edit of one `line` or `block` task.
#[derive(Debug)]
pub struct Desired<'a> {
    pub path: &'a str,
    pub edit: Edit<'a>,
    pub create: bool,
}

impl<'a> Desired<'a> {
    /// The edit an action asks for; `None` for an action of another kind.
    pub fn of(action: &'a Action) -> Option<Desired<'a>> {
        edit::of(action).map(|(path, edit, create)| Desired { path, edit, create })
    }

    fn state(&self) -> PathState {
        match self.edit {
            Edit::Line { state, .. } | Edit::Block { state, .. } => state,
        }
    }

    fn what(&self) -> String {
        match self.edit {
            Edit::Line { .. } => format!("line {}", self.path),
            Edit::Block { .. } => format!("block {}", self.path),
        }
    }
}

pub async fn apply<T: Transport>(
    transport: &T,
    ctx: &TaskContext,
    r#become: Option<&str>,
    want: &Desired<'_>,
) -> Result<Applied, Failure> {
    run_script(transport, ctx, r#become, script(want), &want.what()).await
}

/// The shell script for one edit. Every value is quoted; messages for the user go to
/// standard error, changes to standard output as `DROVER_DID` lines.
pub fn script(want: &Desired<'_>) -> String {
    let mut out = format!("set -e\np={}\n", shell_quote(want.path));
    let missing = match (want.state(), want.create) {
        (PathState::Absent, _) => {
            format!("echo 'DROVER_NOTE the file does not exist'; echo {UNCHANGED}; exit 0")
        }
        (PathState::Present, true) => format!(
            r#"d=${{p%/*}}; [ -n "$d" ] || d=/
  if [ ! -d "$d" ]; then echo "the directory $d does not exist; create it first (a directory task that this task needs)" >&2; exit {REFUSED}; fi
  : >> "$p"; echo 'DROVER_DID created the file'"#
        ),
        (PathState::Present, false) => format!(
            r#"echo "the file $p does not exist: create it first, or set 'create: true' to create it empty" >&2; exit {REFUSED}"#
        ),
    };
    let mut cases = String::new();
    for status in 10..=15 {
        if let Some(did) = edit::did(status) {
            let _ = writeln!(cases, "  {status}) echo 'DROVER_DID {did}' ;;");
        }
    }
    let _ = write!(
        out,
        r#"if [ -L "$p" ]; then p=$(readlink -f -- "$p"); fi
if [ ! -e "$p" ]; then
  {missing}
fi
if [ ! -f "$p" ]; then echo "$p is not a regular file; it is left in place" >&2; exit {REFUSED}; fi
t=$(mktemp "$p.drover.XXXXXX")
trap 'rm -f -- "$t"' EXIT
s=0; {awk} > "$t" || s=$?
case $s in
  {unchanged}) echo {UNCHANGED}; exit 0 ;;
  {unclosed}) echo "$p has a '# BEGIN' line for this block but no '# END' line after it; it is left in place: fix the file by hand" >&2; exit {REFUSED} ;;
{cases}  *) echo "awk could not edit $p (exit status $s)" >&2; exit 1 ;;
esac
chown "$(stat -c %u:%g -- "$p")" "$t" 2>/dev/null || :
chmod "$(stat -c %a -- "$p")" "$t"
mv -f -- "$t" "$p"
"#,
        awk = edit::awk_command(&want.edit, "\"$p\""),
        unchanged = edit::UNCHANGED,
        unclosed = edit::UNCLOSED,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(state: PathState, create: bool) -> Desired<'static> {
        Desired {
            path: "/etc/my app.conf",
            edit: Edit::Line {
                line: Some("PermitRootLogin no"),
                r#match: Some("^#?PermitRootLogin"),
                state,
            },
            create,
        }
    }

    #[test]
    fn an_edit_replaces_the_file_only_when_the_program_changed_it() {
        let s = script(&line(PathState::Present, false));
        assert!(s.starts_with("set -e\np='/etc/my app.conf'\n"), "{s}");
        assert!(
            s.contains("DROVER_LINE='PermitRootLogin no' DROVER_MATCH='^#?PermitRootLogin' awk '")
        );
        assert!(
            s.contains("t=$(mktemp \"$p.drover.XXXXXX\")"),
            "a temporary file beside it"
        );
        assert!(s.contains("3) echo DROVER_UNCHANGED; exit 0 ;;"));
        assert!(s.contains("11) echo 'DROVER_DID appended the line' ;;"));
        assert!(
            s.find("chown").unwrap() < s.find("chmod").unwrap()
                && s.find("chmod").unwrap() < s.find("mv -f").unwrap(),
            "owner, then mode, then the move"
        );
        assert!(s.contains("set 'create: true'") && !s.contains(": >> \"$p\""));
    }

    #[test]
    fn a_missing_file_is_created_only_when_asked_and_is_nothing_to_remove() {
        let s = script(&line(PathState::Present, true));
        assert!(
            s.contains(": >> \"$p\"; echo 'DROVER_DID created the file'"),
            "{s}"
        );
        let s = script(&line(PathState::Absent, false));
        assert!(s.contains("DROVER_NOTE the file does not exist'; echo DROVER_UNCHANGED"));
    }

    #[test]
    fn a_block_passes_its_marker_and_content() {
        let s = script(&Desired {
            path: "/etc/hosts",
            edit: Edit::Block {
                marker: "drover web-1/app/hosts",
                content: "10.0.0.1 db\n",
                state: PathState::Present,
            },
            create: false,
        });
        assert!(
            s.contains("DROVER_MARKER='drover web-1/app/hosts' DROVER_CONTENT='10.0.0.1 db\n'")
        );
        assert!(s.contains("# BEGIN' line for this block"));
    }
}
