//! Git mode: the desired state is a branch of a repository. The daemon keeps a checkout of
//! it beside its state file and brings it to the branch's tip (fetch, then a forced
//! checkout and a clean: the checkout is drover's, never edited by hand). Every `git` runs
//! with a deadline, without a terminal to prompt on, and its failure is a typed error with
//! git's own message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};

use tokio_util::sync::CancellationToken;

use crate::transport::local::LocalTransport;
use crate::transport::{CommandLine, ExecRequest, ExitStatus, Transport as _};

use crate::run::Commit;

/// Longest any one `git` command may take (a clone of a large repository included).
pub const GIT_DEADLINE: Duration = Duration::from_secs(300);

/// `url` without the credentials it may carry (`https://user:token@host/…`), for logs and
/// the run history.
pub fn shown(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest.get(..authority_end).and_then(|a| a.rfind('@')) {
        Some(at) => format!("{scheme}://***@{}", rest.get(at + 1..).unwrap_or_default()),
        None => url.to_owned(),
    }
}

/// Where the manifests come from.
#[derive(Debug, Clone)]
pub struct GitSource {
    /// Anything `git` can fetch: `https://…`, `git@host:repo`, `file:///srv/fleet.git`.
    pub url: String,
    pub branch: String,
    /// How often to look for new commits.
    pub poll: Duration,
    /// Where the checkout lives (beside the state file).
    pub checkout: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run git (is it installed?): {0}")]
    Spawn(String),
    #[error("cannot create the directory for the checkout")]
    Prepare(#[source] std::io::Error),
    #[error("`git {command}` took longer than {}s", deadline.as_secs())]
    TimedOut { command: String, deadline: Duration },
    #[error("`git {command}` failed: {message}")]
    Failed { command: String, message: String },
}

impl GitSource {
    /// Brings the checkout to the tip of the branch (cloning it the first time, and again
    /// when a clone killed half-way left no valid HEAD); returns the commit it now holds.
    /// `stop` (a SIGTERM) ends whatever `git` runs at once.
    pub async fn sync(&self, stop: &CancellationToken) -> Result<Commit, Error> {
        let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", self.branch);
        let checkout = self.checkout.as_path();
        let usable = checkout.join(".git").is_dir()
            && git(
                checkout,
                &["rev-parse", "--verify", "--quiet", "HEAD"],
                stop,
            )
            .await
            .is_ok();
        if usable {
            git(checkout, &["remote", "set-url", "origin", &self.url], stop).await?;
            git(
                checkout,
                &["fetch", "--quiet", "--no-tags", "origin", &refspec],
                stop,
            )
            .await?;
        } else {
            let _ = std::fs::remove_dir_all(checkout);
            let parent = checkout.parent().unwrap_or(Path::new("."));
            // Beside the state file, private like it.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .and_then(|()| {
                    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(Error::Prepare)?;
            let target = checkout.to_string_lossy().into_owned();
            let clone = [
                "clone",
                "--quiet",
                "--no-tags",
                "--single-branch",
                "--branch",
                &self.branch,
                "--",
                &self.url,
                &target,
            ];
            git(parent, &clone, stop).await?;
        }
        let tip = format!("origin/{}", self.branch);
        git(
            checkout,
            &["checkout", "--quiet", "--force", "--detach", &tip],
            stop,
        )
        .await?;
        git(checkout, &["clean", "--quiet", "-d", "--force", "-x"], stop).await?;
        let mut commit = head(checkout, GIT_DEADLINE, stop).await?;
        // The checkout was just forced to the tip and cleaned: nothing differs from it.
        commit.dirty = Some(false);
        Ok(commit)
    }
}

/// The commit `HEAD` of the repository holding `dir` names; `dirty` is left unknown.
pub async fn head(
    dir: &Path,
    deadline: Duration,
    stop: &CancellationToken,
) -> Result<Commit, Error> {
    // `--no-show-signature`: a `log.showSignature` setting would print gpg's verdict first.
    let args = [
        "log",
        "-1",
        "--no-show-signature",
        "--format=%H%n%an <%ae>%n%s",
        "HEAD",
        "--",
    ];
    let out = git_within(dir, &args, deadline, stop).await?;
    parse_head(&out).ok_or_else(|| Error::Failed {
        command: "log".to_owned(),
        message: format!(
            "unexpected output: {}",
            out.lines().next().unwrap_or_default()
        ),
    })
}

/// Reads `git log --format=%H%n%an <%ae>%n%s`: a full hexadecimal SHA (SHA-1 or SHA-256),
/// then the author and the subject (either may be empty).
pub fn parse_head(out: &str) -> Option<Commit> {
    let mut lines = out.lines();
    let sha = lines.next()?.trim();
    let hex = sha
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    if !(hex && matches!(sha.len(), 40 | 64)) {
        return None;
    }
    Some(Commit {
        sha: sha.to_owned(),
        author: lines.next().unwrap_or_default().to_owned(),
        subject: lines.next().unwrap_or_default().to_owned(),
        dirty: None,
    })
}

/// `git` with the deadline of the daemon's checkout work.
async fn git(dir: &Path, args: &[&str], stop: &CancellationToken) -> Result<String, Error> {
    git_within(dir, args, GIT_DEADLINE, stop).await
}

/// Runs `git -C DIR ARGS` through the local transport (bounded by `deadline`, its process
/// group killed on timeout); returns its standard output.
pub async fn git_within(
    dir: &Path,
    args: &[&str],
    deadline: Duration,
    stop: &CancellationToken,
) -> Result<String, Error> {
    // What git is asked to do, for messages: the first word that is not an option.
    let command = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .copied()
        .unwrap_or_default()
        .to_owned();
    let mut line = vec![
        "git".to_owned(),
        "-C".to_owned(),
        dir.to_string_lossy().into_owned(),
    ];
    line.extend(args.iter().map(|a| (*a).to_owned()));
    let mut env = std::collections::BTreeMap::new();
    // Never wait for a password on a terminal nobody watches.
    env.insert("GIT_TERMINAL_PROMPT".to_owned(), "0".to_owned());
    env.insert(
        "GIT_SSH_COMMAND".to_owned(),
        "ssh -o BatchMode=yes".to_owned(),
    );
    let request = ExecRequest {
        command: CommandLine::Argv(line),
        stdin: None,
        env,
        r#become: None,
        timeout: Some(deadline),
        output: None,
        capture_limit: 64 * 1024,
    };
    let local = LocalTransport::new();
    let output = local
        .exec(request, stop)
        .await
        .map_err(|e| Error::Spawn(crate::transport::error_chain(&e)))?;
    match output.status {
        ExitStatus::Code { code: 0 } => {
            Ok(String::from_utf8_lossy(&output.stdout.bytes).into_owned())
        }
        ExitStatus::TimedOut | ExitStatus::Cancelled => Err(Error::TimedOut { command, deadline }),
        ExitStatus::Code { .. } | ExitStatus::Signal { .. } => {
            let stderr = String::from_utf8_lossy(&output.stderr.bytes);
            let message = stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .take(3)
                .collect::<Vec<_>>()
                .join(" / ");
            Err(Error::Failed { command, message })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_not_shown() {
        assert_eq!(
            shown("https://bot:s3cret@git.example.com/ops/fleet.git"),
            "https://***@git.example.com/ops/fleet.git"
        );
        assert_eq!(
            shown("https://git.example.com/a@b"),
            "https://git.example.com/a@b"
        );
        assert_eq!(shown("git@host:repo"), "git@host:repo");
        assert_eq!(shown("file:///srv/fleet.git"), "file:///srv/fleet.git");
    }
}
