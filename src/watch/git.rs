//! Git mode: the desired state is a branch of a repository. The daemon keeps a checkout of
//! it beside its state file and brings it to the branch's tip (fetch, then a forced
//! checkout and a clean: the checkout is drover's, never edited by hand). Every `git` runs
//! with a deadline, without a terminal to prompt on, and its failure is a typed error with
//! git's own message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::os::unix::fs::DirBuilderExt as _;

use tokio_util::sync::CancellationToken;

use crate::transport::local::LocalTransport;
use crate::transport::{CommandLine, ExecRequest, ExitStatus, Transport as _};

use crate::run::Commit;

/// Longest any one `git` command may take (a clone of a large repository included).
pub const GIT_DEADLINE: Duration = Duration::from_secs(300);

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
    #[error("`git {command}` took longer than {}s", GIT_DEADLINE.as_secs())]
    TimedOut { command: String },
    #[error("`git {command}` failed: {message}")]
    Failed { command: String, message: String },
}

impl GitSource {
    /// Brings the checkout to the tip of the branch (cloning it the first time); returns
    /// the commit it now holds.
    pub async fn sync(&self) -> Result<Commit, Error> {
        let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", self.branch);
        if self.checkout.join(".git").is_dir() {
            git(&self.checkout, &["remote", "set-url", "origin", &self.url]).await?;
            git(
                &self.checkout,
                &["fetch", "--quiet", "--no-tags", "origin", &refspec],
            )
            .await?;
        } else {
            let parent = self.checkout.parent().unwrap_or(Path::new("."));
            // Beside the state file, private like it.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(Error::Prepare)?;
            let target = self.checkout.to_string_lossy().into_owned();
            git(
                parent,
                &[
                    "clone",
                    "--quiet",
                    "--no-tags",
                    "--single-branch",
                    "--branch",
                    &self.branch,
                    "--",
                    &self.url,
                    &target,
                ],
            )
            .await?;
        }
        let tip = format!("origin/{}", self.branch);
        git(
            &self.checkout,
            &["checkout", "--quiet", "--force", "--detach", &tip],
        )
        .await?;
        git(&self.checkout, &["clean", "--quiet", "-d", "--force", "-x"]).await?;
        let out = git(&self.checkout, &["log", "-1", "--format=%H%n%an <%ae>%n%s"]).await?;
        let mut lines = out.lines();
        Ok(Commit {
            sha: lines.next().unwrap_or_default().to_owned(),
            author: lines.next().unwrap_or_default().to_owned(),
            subject: lines.next().unwrap_or_default().to_owned(),
        })
    }
}

/// Runs `git -C DIR ARGS` through the local transport (bounded, its process group killed on
/// timeout); returns its standard output.
async fn git(dir: &Path, args: &[&str]) -> Result<String, Error> {
    let command = args.first().copied().unwrap_or_default().to_owned();
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
        timeout: Some(GIT_DEADLINE),
        output: None,
        capture_limit: 64 * 1024,
    };
    let local = LocalTransport::new();
    let output = local
        .exec(request, &CancellationToken::new())
        .await
        .map_err(|e| Error::Spawn(crate::transport::error_chain(&e)))?;
    match output.status {
        ExitStatus::Code { code: 0 } => {
            Ok(String::from_utf8_lossy(&output.stdout.bytes).into_owned())
        }
        ExitStatus::TimedOut | ExitStatus::Cancelled => Err(Error::TimedOut { command }),
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
