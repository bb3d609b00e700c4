//! Edits of a file on the host, for the `line` and `block` task kinds: one `awk` program that
//! reads the file and prints it edited, and says by its exit status what the edit did.
//!
//! The same program applies the edit (`task::edit`, its output written to a temporary file
//! that replaces the original) and probes for drift (`drift::probe`, its output thrown away:
//! only the status counts). Values reach `awk` through the environment (`ENVIRON`), never
//! through its program text or `-v`, so no escape sequence in them is interpreted; `match` is
//! a POSIX extended regular expression as the host's `awk` reads it.
//!
//! Pure: this module only builds text.

use crate::model::task_kind::PathState;
use crate::resolve::Action;
use crate::template::shell_quote;

/// Exit status of the program when the file is already as desired.
pub const UNCHANGED: i32 = 3;
/// Exit status when a block's `# BEGIN` line has no `# END` line after it.
pub const UNCLOSED: i32 = 4;

/// One edit as the manifests want it.
#[derive(Debug, Clone, Copy)]
pub enum Edit<'a> {
    Line {
        line: Option<&'a str>,
        r#match: Option<&'a str>,
        state: PathState,
    },
    Block {
        marker: &'a str,
        /// Each line ends in a newline; empty with `state: absent`.
        content: &'a str,
        state: PathState,
    },
}

/// The file, the edit and `create` of a `line` or `block` action; `None` for another kind.
pub fn of(action: &Action) -> Option<(&str, Edit<'_>, bool)> {
    match action {
        Action::Line {
            path,
            line,
            r#match,
            state,
            create,
        } => Some((
            path,
            Edit::Line {
                line: line.as_deref(),
                r#match: r#match.as_deref(),
                state: *state,
            },
            *create,
        )),
        Action::Block {
            path,
            marker,
            content,
            state,
            create,
            ..
        } => Some((
            path,
            Edit::Block {
                marker,
                content,
                state: *state,
            },
            *create,
        )),
        Action::Run { .. }
        | Action::File { .. }
        | Action::Directory { .. }
        | Action::Link { .. }
        | Action::Package { .. }
        | Action::Service { .. }
        | Action::Sysctl { .. }
        | Action::Cron { .. }
        | Action::User(_)
        | Action::Group(_)
        | Action::Archive { .. } => None,
    }
}

/// What an exit status of the program says it did (`None`: not one of its own).
pub fn did(status: i32) -> Option<&'static str> {
    Some(match status {
        10 => "replaced the matching line",
        11 => "appended the line",
        12 => "removed the matching lines",
        13 => "inserted the block",
        14 => "updated the block",
        15 => "removed the block",
        _ => return None,
    })
}

/// Why a file is out of sync, by the exit status the program gave on it.
pub fn drifted(status: i32) -> Option<&'static str> {
    Some(match status {
        10 => "the line that matches `match` differs from the desired line",
        11 => "the desired line is missing",
        12 => "lines that should be absent are there",
        13 => "the block is missing",
        14 => "the block differs from the desired content",
        15 => "the block should be absent but is there",
        UNCLOSED => "the block has a `# BEGIN` line without its `# END` line",
        _ => return None,
    })
}

const LINE_PRESENT: &str = r#"BEGIN { l = ENVIRON["DROVER_LINE"] ""; m = ENVIRON["DROVER_MATCH"] ""; r = 0; f = 0; e = 0 }
!r && m != "" && $0 ~ m { r = 1; if ($0 "" != l) e = 10; print l; next }
$0 "" == l { f = 1 }
{ print }
END {
  if (!r && !f) { print l; e = 11 }
  exit (e ? e : 3)
}"#;

const LINE_ABSENT: &str = r#"BEGIN { l = ENVIRON["DROVER_LINE"] ""; m = ENVIRON["DROVER_MATCH"] ""; e = 0 }
(m != "" && $0 ~ m) || (m == "" && $0 "" == l) { e = 12; next }
{ print }
END { exit (e ? e : 3) }"#;

const BLOCK: &str = r##"BEGIN { b = "# BEGIN " ENVIRON["DROVER_MARKER"]; z = "# END " ENVIRON["DROVER_MARKER"]; c = ENVIRON["DROVER_CONTENT"] ""; p = (ENVIRON["DROVER_STATE"] == "present"); s = 0; o = ""; e = 0 }
s == 0 && $0 "" == b { s = 1; o = ""; next }
s == 1 && $0 "" == z { s = 2; if (p) { print b; printf "%s", c; print z; if (o != c) e = 14 } else e = 15; next }
s == 1 { o = o $0 "\n"; next }
{ print }
END {
  if (s == 1) exit 4
  if (s == 0 && p) { print b; printf "%s", c; print z; e = 13 }
  exit (e ? e : 3)
}"##;

/// The shell command that runs the edit's program on the file named by the shell word
/// `file` (such as `"$p"`), printing the edited file to standard output.
pub fn awk_command(edit: &Edit<'_>, file: &str) -> String {
    let (vars, program): (Vec<(&str, &str)>, &str) = match *edit {
        Edit::Line {
            line,
            r#match,
            state,
        } => (
            vec![
                ("DROVER_LINE", line.unwrap_or_default()),
                ("DROVER_MATCH", r#match.unwrap_or_default()),
            ],
            match state {
                PathState::Present => LINE_PRESENT,
                PathState::Absent => LINE_ABSENT,
            },
        ),
        Edit::Block {
            marker,
            content,
            state,
        } => (
            vec![
                ("DROVER_MARKER", marker),
                ("DROVER_CONTENT", content),
                ("DROVER_STATE", state_word(state)),
            ],
            BLOCK,
        ),
    };
    let mut out = String::new();
    for (name, value) in vars {
        out.push_str(name);
        out.push('=');
        out.push_str(&shell_quote(value));
        out.push(' ');
    }
    out.push_str("awk ");
    out.push_str(&shell_quote(program));
    out.push(' ');
    out.push_str(file);
    out
}

fn state_word(state: PathState) -> &'static str {
    match state {
        PathState::Present => "present",
        PathState::Absent => "absent",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_reach_awk_through_the_environment_quoted() {
        let command = awk_command(
            &Edit::Line {
                line: Some("it's $HOME"),
                r#match: Some(r"^a\.b"),
                state: PathState::Present,
            },
            "\"$p\"",
        );
        assert!(
            command.starts_with(r"DROVER_LINE='it'\''s $HOME' DROVER_MATCH='^a\.b' awk '"),
            "{command}"
        );
        assert!(command.ends_with("' \"$p\""));
        assert!(!command.contains(" -v "));
        let command = awk_command(
            &Edit::Block {
                marker: "drover web-1/app/hosts",
                content: "a\nb\n",
                state: PathState::Absent,
            },
            "\"$p\"",
        );
        assert!(command.contains("DROVER_MARKER='drover web-1/app/hosts'"));
        assert!(command.contains("DROVER_CONTENT='a\nb\n'"));
        assert!(command.contains("DROVER_STATE=absent"));
    }

    #[test]
    fn every_status_of_the_programs_has_words() {
        for status in 10..=15 {
            assert!(did(status).is_some() && drifted(status).is_some());
        }
        assert!(did(UNCHANGED).is_none() && drifted(UNCHANGED).is_none());
        assert!(drifted(UNCLOSED).is_some() && did(2).is_none());
    }
}
