//! Who started a run, from where, and with what: the command line as typed (each word
//! shell-quoted where needed, secrets masked), the user and the host, and the git commit the
//! manifest directory is at, with whether it differed from that commit.
//!
//! Nothing here fails a run: what cannot be found (no `git`, not a work tree, a `git` slower
//! than `GIT_DEADLINE`) is not recorded. `git` runs through `watch::git` (the local
//! transport, with a deadline); the parsing is pure and tested here. It does not read the
//! environment. Why the dirty check looks at the manifest directory only:
//! docs/decisions/0011-run-provenance.md.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::run::Commit;

/// Longest one `git` asking about the manifests' work tree may take; past it the run records
/// no commit (or no dirty mark) rather than wait.
pub const GIT_DEADLINE: Duration = Duration::from_secs(10);

/// What a recorded secret reads as.
const MASK: &str = "***";

/// A long flag whose name holds one of these carries a secret: its value is never recorded.
const SECRET_FLAG_WORDS: [&str; 5] = ["secret", "token", "password", "passwd", "credential"];

/// The command line to record: every word of `argv` (the program as it was invoked
/// included), credentials in URLs (`--git https://user:token@host/…`) and values of
/// secret-named flags masked, each word shell-quoted when needed, so it can be pasted again.
pub fn command_line(argv: &[OsString]) -> String {
    let words = masked(argv.iter().map(|a| a.to_string_lossy().into_owned()));
    crate::template::join_argv(&words)
}

/// `args` with secrets masked (see `command_line`).
fn masked(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut value_is_secret = false;
    let mut options_ended = false;
    for arg in args {
        if std::mem::take(&mut value_is_secret) {
            out.push(MASK.to_owned());
            continue;
        }
        if !options_ended && arg == "--" {
            options_ended = true;
        } else if let Some(flag) = arg.strip_prefix("--").filter(|_| !options_ended) {
            let (name, inline_value) = match flag.split_once('=') {
                Some((name, _)) => (name, true),
                None => (flag, false),
            };
            if is_secret_flag(name) {
                if inline_value {
                    out.push(format!("--{name}={MASK}"));
                } else {
                    value_is_secret = true;
                    out.push(arg);
                }
                continue;
            }
        }
        // `shown` finds a URL after `--flag=` too: everything before `://` is its scheme.
        out.push(crate::watch::git::shown(&arg));
    }
    out
}

fn is_secret_flag(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_FLAG_WORDS.iter().any(|word| name.contains(word))
}

/// The name of the user drover runs as (its real uid, so `sudo drover` is `root`), from
/// `/etc/passwd`; the uid in decimal when it has no entry there (as `ls -l` shows it).
pub fn user() -> String {
    let uid = rustix::process::getuid().as_raw();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| user_in_passwd(&passwd, uid))
        .unwrap_or_else(|| uid.to_string())
}

/// The name `passwd` (the `/etc/passwd` format) gives `uid`.
fn user_in_passwd(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?;
        (!name.is_empty() && id.parse::<u32>().ok()? == uid).then(|| name.to_owned())
    })
}

/// This machine's name (the kernel's node name).
pub fn host() -> String {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .trim()
        .to_owned();
    if name.is_empty() {
        "localhost".to_owned()
    } else {
        name
    }
}

/// The commit `HEAD` of the work tree holding `dir`, and whether `dir` differs from it
/// (tracked changes or untracked files; ignored files and `own_files`, drover's own files
/// such as the state, do not count). `None` when `dir` is in no work tree, the repository has
/// no commit, or `git` is missing or too slow: nothing is recorded then.
pub async fn work_tree(
    dir: &Path,
    own_files: &[PathBuf],
    stop: &CancellationToken,
) -> Option<Commit> {
    let mut commit = match crate::watch::git::head(dir, GIT_DEADLINE, stop).await {
        Ok(commit) => commit,
        Err(error) => {
            tracing::debug!(
                dir = %dir.display(),
                error = %crate::transport::error_chain(&error),
                "the manifests are not at a git commit"
            );
            return None;
        }
    };
    let excluded = match std::fs::canonicalize(dir) {
        Ok(dir) => exclusions(
            &dir,
            &own_files
                .iter()
                .filter_map(|f| absolute(f))
                .collect::<Vec<_>>(),
        ),
        Err(_) => Vec::new(),
    };
    let mut args = vec![
        "--no-optional-locks",
        "status",
        "--porcelain",
        "--untracked-files=normal",
        "--",
        ".",
    ];
    args.extend(excluded.iter().map(String::as_str));
    match crate::watch::git::git_within(dir, &args, GIT_DEADLINE, stop).await {
        Ok(porcelain) => commit.dirty = Some(!porcelain.trim().is_empty()),
        Err(error) => tracing::debug!(
            dir = %dir.display(),
            error = %crate::transport::error_chain(&error),
            "cannot tell whether the manifests differ from their commit"
        ),
    }
    Some(commit)
}

/// `file` with its directory resolved (the file itself may not exist yet).
fn absolute(file: &Path) -> Option<PathBuf> {
    let parent = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(parent).ok()?.join(file.file_name()?))
}

/// The `git status` pathspecs (relative to `dir`) that leave out drover's own files: the
/// default state directory `.drover`, and every file in `dir` whose name starts with the name
/// of one of `own_files` (a state file elsewhere has its lock and backup beside it).
fn exclusions(dir: &Path, own_files: &[PathBuf]) -> Vec<String> {
    let mut out = vec![":(exclude).drover".to_owned()];
    for file in own_files {
        let Ok(relative) = file.strip_prefix(dir) else {
            continue;
        };
        let relative = relative.to_string_lossy();
        if relative.is_empty() || relative.starts_with(".drover/") {
            continue;
        }
        let escaped: String = relative
            .chars()
            .flat_map(|c| {
                let escape = matches!(c, '*' | '?' | '[' | '\\');
                escape.then_some('\\').into_iter().chain([c])
            })
            .collect();
        out.push(format!(":(exclude){escaped}*"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(args: &[&str]) -> String {
        command_line(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn the_command_line_keeps_every_flag_and_quotes_what_needs_it() {
        assert_eq!(
            line(&[
                "drover",
                "apply",
                "--auto-approve",
                "--target",
                "web-*/nginx/*",
                "--per-host",
                "2",
                "my fleet",
                "it's",
                "",
            ]),
            r"drover apply --auto-approve --target 'web-*/nginx/*' --per-host 2 'my fleet' 'it'\''s' ''"
        );
    }

    #[test]
    fn credentials_in_urls_are_masked_in_either_flag_form() {
        assert_eq!(
            line(&[
                "/usr/local/bin/drover",
                "watch",
                "--git",
                "https://bot:s3cret@git.example.com/ops/fleet.git",
                "fleet",
            ]),
            "/usr/local/bin/drover watch --git 'https://***@git.example.com/ops/fleet.git' fleet"
        );
        assert_eq!(
            line(&[
                "drover",
                "watch",
                "--git=https://bot:s3cret@git.example.com/f.git"
            ]),
            "drover watch '--git=https://***@git.example.com/f.git'"
        );
        assert_eq!(
            line(&["drover", "watch", "--git", "git@host:ops/fleet.git"]),
            "drover watch --git git@host:ops/fleet.git"
        );
    }

    #[test]
    fn values_of_secret_named_flags_are_masked() {
        assert_eq!(
            line(&[
                "drover",
                "x",
                "--api-token",
                "abc",
                "--webhook-secret=xyz",
                "--",
                "--password"
            ]),
            "drover x --api-token '***' '--webhook-secret=***' -- --password"
        );
    }

    #[test]
    fn the_user_is_found_by_uid_in_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      # a comment\n\
                      ops:x:1000:1000::/home/ops:/bin/sh\n\
                      broken\n";
        assert_eq!(user_in_passwd(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_in_passwd(passwd, 1000).as_deref(), Some("ops"));
        assert_eq!(user_in_passwd(passwd, 1001), None);
        assert_eq!(user_in_passwd("", 0), None);
    }

    #[test]
    fn the_dirty_check_leaves_out_drovers_own_files() {
        let dir = Path::new("/srv/fleet");
        let own = [
            PathBuf::from("/srv/fleet/.drover/state.redb"),
            PathBuf::from("/srv/fleet/state[1].redb"),
            PathBuf::from("/srv/elsewhere/state.redb"),
            PathBuf::from("/srv/fleet/plans/site.plan"),
        ];
        assert_eq!(
            exclusions(dir, &own),
            [
                ":(exclude).drover",
                r":(exclude)state\[1].redb*",
                ":(exclude)plans/site.plan*",
            ]
        );
    }
}
