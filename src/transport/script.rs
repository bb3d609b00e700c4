//! The shell scripts that move files over a command channel: write atomically (temporary
//! file beside the target, mode and owner, rename) and read a file's state. Used by the SSH
//! transport for every file and by the local one when `become` needs `sudo`.
//!
//! Every path and name is shell-quoted; content travels on stdin, never in the command line.

use std::fmt::Write as _;

use crate::template::shell_quote;
use crate::transport::{
    Error, ExecOutput, ExitStatus, FileState, PutFile, READ_CONTENT_LIMIT, Result, Synced,
};

/// The start of every write: `$p` is the target, `$t` a temporary file beside it (removed
/// on failure) filled from stdin.
fn receive(path: &str) -> String {
    format!(
        "set -e\np={}\nd=$(dirname \"$p\")\nif [ ! -d \"$d/\" ]; then if [ -e \"$d\" ]; then echo \"$d is not a directory\" >&2; else echo \"the directory $d does not exist, or this user cannot search a directory above it: create it first (a directory task that this task needs), or check the permissions above it\" >&2; fi; exit 1; fi\nt=$(mktemp \"$d/.drover.XXXXXX\")\ntrap 'rm -f \"$t\"' EXIT\ncat > \"$t\"\n",
        shell_quote(path)
    )
}

/// The end of every write: mode (as asked, else kept, else 0644), owner, then the rename
/// that makes it atomic.
fn install(script: &mut String, file: &PutFile) {
    match file.mode {
        Some(mode) => {
            let _ = writeln!(script, "chmod {mode:o} \"$t\"");
        }
        None => script.push_str("if [ -e \"$p\" ]; then chmod \"$(stat -L -c %a \"$p\")\" \"$t\"; else chmod 644 \"$t\"; fi\n"),
    }
    if file.owner.is_some() || file.group.is_some() {
        let owner = file.owner.as_deref().map(shell_quote).unwrap_or_default();
        let group = file
            .group
            .as_deref()
            .map(|g| format!(":{}", shell_quote(g)))
            .unwrap_or_default();
        let _ = writeln!(script, "chown {owner}{group} \"$t\"");
    }
    script.push_str("mv -f \"$t\" \"$p\"\ntrap - EXIT\n");
}

/// The script that writes `file` from stdin.
pub fn put(file: &PutFile) -> String {
    let mut script = receive(&file.path);
    install(&mut script, file);
    script
}

/// What the write script's output means.
pub fn put_result(path: &str, out: &ExecOutput) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Remote {
        operation: "write",
        path: path.to_owned(),
        message: String::from_utf8_lossy(&out.stderr.bytes).trim().to_owned(),
    })
}

/// The script that makes a file as `file` says in one round trip: the content arrives on
/// stdin; it prints `OLD size mode owner group` and the old content (when small), or
/// `ABSENT`; then writes only if content, mode or owner differ, and ends with a marker.
pub fn sync(file: &PutFile) -> String {
    let mut script = receive(&file.path);
    let _ = write!(
        script,
        "same=1\nif [ -e \"$p\" ]; then\n  s=$(stat -L -c '%s %a %U %G' \"$p\")\n  echo \"OLD $s\"\n  set -- $s\n  \
         if [ \"$1\" -le {READ_CONTENT_LIMIT} ]; then cat \"$p\"; fi\n  echo\n  cmp -s \"$t\" \"$p\" || same=0\n"
    );
    if let Some(mode) = file.mode {
        let _ = writeln!(script, "  [ \"$2\" = {mode:o} ] || same=0");
    }
    if let Some(owner) = &file.owner {
        let _ = writeln!(script, "  [ \"$3\" = {} ] || same=0", shell_quote(owner));
    }
    if let Some(group) = &file.group {
        let _ = writeln!(script, "  [ \"$4\" = {} ] || same=0", shell_quote(group));
    }
    script.push_str(
        "else\n  echo ABSENT\n  same=0\nfi\nif [ $same = 1 ]; then echo DROVER_SAME; exit 0; fi\n",
    );
    install(&mut script, file);
    script.push_str("echo DROVER_WRITTEN\n");
    script
}

/// `size mode owner group`, as `stat -c '%s %a %U %G'` prints them.
fn stat_fields(line: &str) -> (u64, u32, String, String) {
    let mut fields = line.split_whitespace();
    let size = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mode = fields
        .next()
        .and_then(|m| u32::from_str_radix(m, 8).ok())
        .unwrap_or(0);
    let owner = fields.next().unwrap_or_default().to_owned();
    let group = fields.next().unwrap_or_default().to_owned();
    (size, mode, owner, group)
}

/// Parses the sync script's output.
pub fn parse_sync(path: &str, out: &ExecOutput) -> Result<Synced> {
    let remote = |message: String| Error::Remote {
        operation: "write",
        path: path.to_owned(),
        message,
    };
    if !out.status.success() {
        return Err(remote(
            String::from_utf8_lossy(&out.stderr.bytes).trim().to_owned(),
        ));
    }
    let text = &out.stdout.bytes;
    let newline = text
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| remote("unexpected output".to_owned()))?;
    let head = String::from_utf8_lossy(text.get(..newline).unwrap_or_default()).into_owned();
    let mut rest = text.get(newline + 1..).unwrap_or_default();
    let before = match head.strip_prefix("OLD ") {
        None => None,
        Some(fields) => {
            let (size, mode, owner, group) = stat_fields(fields);
            let content = (size <= READ_CONTENT_LIMIT).then(|| {
                let n = usize::try_from(size).unwrap_or(usize::MAX).min(rest.len());
                let (content, tail) = rest.split_at(n);
                rest = tail;
                content.to_vec()
            });
            let content_hash = content.as_deref().map_or_else(
                || "unknown".to_owned(),
                |c| blake3::hash(c).to_hex().to_string(),
            );
            Some(FileState {
                size,
                mode,
                owner,
                group,
                content_hash,
                content,
            })
        }
    };
    let marker = String::from_utf8_lossy(rest);
    let written = match marker.trim() {
        "DROVER_WRITTEN" => true,
        "DROVER_SAME" => false,
        other => return Err(remote(format!("unexpected output `{other}`"))),
    };
    Ok(Synced { before, written })
}

/// Output kept when reading a file over a command: its content and the stat line.
#[expect(
    clippy::cast_possible_truncation,
    reason = "1 MiB fits any usize drover runs on"
)]
pub const READ_CAPTURE: usize = READ_CONTENT_LIMIT as usize + 4096;

/// The script that prints `size mode owner group` and then the content (or a hash).
pub fn read(path: &str, want_content: bool) -> String {
    let quoted = shell_quote(path);
    // Content only when asked and small; otherwise a blake3 hash when the host has `b3sum`
    // (without it, a large file compares unequal and is simply rewritten).
    let hash = format!("b3sum --no-names {quoted} 2>/dev/null || echo unknown");
    let body = if want_content {
        format!(
            "if [ \"$(stat -L -c %s {quoted})\" -le {READ_CONTENT_LIMIT} ]; then cat {quoted}; else {hash}; fi"
        )
    } else {
        hash
    };
    format!("[ -e {quoted} ] || exit 3\nstat -L -c '%s %a %U %G' {quoted}\n{body}")
}

/// Parses the read script's output; exit status 3 means the file does not exist.
pub fn parse_read(path: &str, want_content: bool, out: &ExecOutput) -> Result<Option<FileState>> {
    if out.status == (ExitStatus::Code { code: 3 }) {
        return Ok(None);
    }
    let remote = |message: String| Error::Remote {
        operation: "read",
        path: path.to_owned(),
        message,
    };
    if !out.status.success() {
        return Err(remote(
            String::from_utf8_lossy(&out.stderr.bytes).trim().to_owned(),
        ));
    }
    if out.stdout.truncated {
        return Err(remote(
            "the file is larger than drover reads over a command channel".to_owned(),
        ));
    }
    let text = &out.stdout.bytes;
    let newline = text
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| remote("unexpected stat output".to_owned()))?;
    let head = String::from_utf8_lossy(text.get(..newline).unwrap_or_default()).into_owned();
    let body = text.get(newline + 1..).unwrap_or_default();
    let (size, mode, owner, group) = stat_fields(&head);
    let (content_hash, content) = if want_content && size <= READ_CONTENT_LIMIT {
        (
            blake3::hash(body).to_hex().to_string(),
            (size <= READ_CONTENT_LIMIT).then(|| body.to_vec()),
        )
    } else {
        (
            String::from_utf8_lossy(body)
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned(),
            None,
        )
    };
    Ok(Some(FileState {
        size,
        mode,
        owner,
        group,
        content_hash,
        content,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Captured;

    fn output(stdout: &[u8]) -> ExecOutput {
        let mut captured = Captured::with_limit(READ_CAPTURE);
        captured.push(stdout);
        ExecOutput {
            status: ExitStatus::Code { code: 0 },
            stdout: captured,
            stderr: Captured::default(),
        }
    }

    #[test]
    fn sync_output_gives_the_old_state_and_whether_it_wrote() {
        let synced = parse_sync(
            "/x",
            &output(b"OLD 6 644 root adm\nhello\n\nDROVER_WRITTEN\n"),
        )
        .unwrap();
        let before = synced.before.unwrap();
        assert_eq!(
            (
                before.size,
                before.mode,
                before.owner.as_str(),
                before.group.as_str()
            ),
            (6, 0o644, "root", "adm")
        );
        assert_eq!(before.content.as_deref(), Some(&b"hello\n"[..]));
        assert!(synced.written);
        let absent = parse_sync("/x", &output(b"ABSENT\nDROVER_WRITTEN\n")).unwrap();
        assert!(absent.before.is_none() && absent.written);
        let same = parse_sync("/x", &output(b"OLD 0 600 a b\n\nDROVER_SAME\n")).unwrap();
        assert!(!same.written);
        assert!(parse_sync("/x", &output(b"OLD 1 600 a b\nx\ngarbage\n")).is_err());
    }

    #[test]
    fn scripts_quote_paths_and_names() {
        let file = PutFile {
            path: "/etc/it's here".to_owned(),
            content: std::sync::Arc::from(&b""[..]),
            mode: Some(0o600),
            owner: Some("we ird".to_owned()),
            group: None,
            r#become: None,
        };
        let script = sync(&file);
        assert!(script.contains(r"p='/etc/it'\''s here'"), "{script}");
        assert!(
            script.contains(r#"[ "$3" = 'we ird' ] || same=0"#),
            "{script}"
        );
        assert!(script.contains("chmod 600"), "{script}");
    }
}
