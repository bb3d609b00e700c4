//! How each task kind applies and probes itself *through* a `Transport`.
//!
//! Every kind looks before it acts and reports `changed` honestly: a task that found the
//! host already right says so, which is what makes triggers and reports trustworthy. This
//! module knows nothing of plans, the store or scheduling.

pub mod archive;
pub mod atomic_write;
pub mod cron;
pub mod directory;
pub mod edit;
pub mod file;
pub mod group;
pub mod link;
pub mod package;
pub mod run;
pub mod service;
pub mod sysctl;
pub mod user;

use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::resolve::{Action, ResolvedInstance};
use crate::transport::{
    self, Captured, CommandLine, ExecOutput, ExecRequest, ExitStatus, OutputChunk, Transport,
};

/// What one attempt may use.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// Cancelled by a second Ctrl-C: running commands are killed.
    pub force: CancellationToken,
    pub timeout: Option<Duration>,
    pub output: Option<mpsc::Sender<OutputChunk>>,
    /// A `triggeredBy` source changed in this run (services reload or restart).
    pub triggered: bool,
}

/// One command an attempt ran, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct CommandRecord {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: Captured,
    pub stderr: Captured,
}

/// A successful attempt.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Applied {
    pub changed: bool,
    /// One line on what happened ("wrote /etc/motd", "already installed").
    pub summary: String,
    /// For files: the unified diff of what was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    pub commands: Vec<CommandRecord>,
}

/// Why an attempt did not succeed.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Failure {
    /// The command ran and said no (exit status), or the host refused an operation.
    Failed {
        message: String,
        commands: Vec<CommandRecord>,
    },
    TimedOut {
        after: Duration,
        commands: Vec<CommandRecord>,
    },
    Cancelled {
        commands: Vec<CommandRecord>,
    },
    /// The transport could not do what was asked (spawn, connect, sudo would not `become`);
    /// `kind` decides whether a retry may help.
    Transport {
        message: String,
        #[serde(rename = "errorKind")]
        kind: transport::ErrorKind,
    },
}

impl Failure {
    pub fn message(&self) -> String {
        match self {
            Failure::Failed { message, .. } | Failure::Transport { message, .. } => message.clone(),
            Failure::TimedOut { after, .. } => {
                format!("timed out after {after:?}; its process group was killed")
            }
            Failure::Cancelled { .. } => "cancelled; its process group was killed".to_owned(),
        }
    }

    pub fn commands(&self) -> &[CommandRecord] {
        match self {
            Failure::Failed { commands, .. }
            | Failure::TimedOut { commands, .. }
            | Failure::Cancelled { commands } => commands,
            Failure::Transport { .. } => &[],
        }
    }

    fn transport(error: &transport::Error) -> Failure {
        let mut message = transport::error_chain(error);
        if matches!(error, transport::Error::BecomeRefused { .. }) {
            message.push_str(
                "; drover runs `sudo -n`, which never asks for a password: the login user must be \
                 allowed to run `sh` as that user without one (NOPASSWD in sudoers), or drop `become`",
            );
        }
        Failure::Transport {
            message,
            kind: error.kind(),
        }
    }
}

/// Whether applying `instance` is a single operation on the host whose exit status alone
/// says whether the instance succeeded: a file small enough to travel inline, or a command
/// without guards, as the login user. Only such a task may have the next task of its chain
/// sent right behind it (`transport::ssh::chain`): the host then decides, from that status,
/// whether the next one runs.
pub fn is_one_operation(instance: &ResolvedInstance) -> bool {
    if instance.r#become.is_some() {
        return false;
    }
    match &instance.action {
        Action::Run {
            creates: None,
            unless: None,
            ..
        } => true,
        Action::File { content, .. } => crate::transport::ssh::inline(content),
        _ => false,
    }
}

/// Applies one instance.
#[expect(clippy::too_many_lines, reason = "one arm per task kind")]
pub async fn apply<T: Transport>(
    instance: &ResolvedInstance,
    transport: &T,
    ctx: &TaskContext,
) -> Result<Applied, Failure> {
    let r#become = instance.r#become.as_deref();
    match &instance.action {
        Action::Run {
            command,
            creates,
            unless,
        } => {
            run::apply(
                transport,
                ctx,
                r#become,
                command,
                creates.as_deref(),
                unless.as_deref(),
            )
            .await
        }
        Action::File {
            path,
            content,
            content_hash,
            mode,
            owner,
            group,
        } => {
            let want = file::Desired {
                path,
                content,
                content_hash,
                mode: mode.map(super::model::duration::FileMode::bits),
                owner: owner.as_deref(),
                group: group.as_deref(),
            };
            file::apply(transport, r#become, &want).await
        }
        Action::Directory {
            path,
            mode,
            owner,
            group,
            state,
            recursive,
        } => {
            let want = directory::Desired {
                path,
                mode: mode.map(super::model::duration::FileMode::bits),
                owner: owner.as_deref(),
                group: group.as_deref(),
                state: *state,
                recursive: *recursive,
            };
            directory::apply(transport, ctx, r#become, &want).await
        }
        Action::Link {
            path,
            target,
            state,
            force,
        } => {
            let want = link::Desired {
                path,
                target: target.as_deref(),
                state: *state,
                force: *force,
            };
            link::apply(transport, ctx, r#become, &want).await
        }
        Action::Line { .. } | Action::Block { .. } => match edit::Desired::of(&instance.action) {
            Some(want) => edit::apply(transport, ctx, r#become, &want).await,
            None => Err(Failure::Failed {
                message: "not an edit".to_owned(),
                commands: Vec::new(),
            }),
        },
        Action::Sysctl {
            name,
            value,
            state,
            file,
        } => {
            let want = sysctl::Desired {
                name,
                value: value.as_deref(),
                state: *state,
                file,
            };
            sysctl::apply(transport, ctx, r#become, &want).await
        }
        Action::Cron {
            name,
            schedule,
            command,
            user,
            state,
            path,
        } => {
            let want = cron::Desired {
                name,
                schedule: schedule.as_deref(),
                command: command.as_deref(),
                user,
                state: *state,
                path,
            };
            cron::apply(transport, ctx, r#become, &want).await
        }
        Action::User(want) => {
            let host = instance.id.host.to_string();
            user::apply(transport, ctx, r#become, &host, want).await
        }
        Action::Group(want) => {
            let host = instance.id.host.to_string();
            group::apply(transport, ctx, r#become, &host, want).await
        }
        Action::Archive {
            source,
            dest,
            format,
            content,
            sha256,
            marker,
            state,
        } => {
            let want = archive::Desired {
                host: instance.id.host.as_str(),
                source,
                dest,
                format: *format,
                content,
                sha256,
                marker,
            };
            match state {
                crate::model::task_kind::PathState::Present => {
                    archive::apply(transport, ctx, r#become, &want).await
                }
                crate::model::task_kind::PathState::Absent => {
                    archive::remove(transport, ctx, r#become, &want).await
                }
            }
        }
        Action::Package { names, state } => {
            package::apply(transport, ctx, r#become, names, *state).await
        }
        Action::Service {
            name,
            state,
            enabled,
            on_trigger,
        } => {
            let want = service::Desired {
                name,
                state: *state,
                enabled: *enabled,
                on_trigger: *on_trigger,
            };
            let host = instance.id.host.to_string();
            service::apply(transport, ctx, r#become, &host, &want).await
        }
    }
}

/// Runs one shell command for a task, recording it; a non-zero exit is a `Failed`.
pub(crate) async fn exec<T: Transport>(
    transport: &T,
    ctx: &TaskContext,
    r#become: Option<&str>,
    command: CommandLine,
    commands: &mut Vec<CommandRecord>,
) -> Result<ExecOutput, Failure> {
    exec_with_input(transport, ctx, r#become, command, None, commands).await
}

/// As `exec`, with `stdin` fed to the command (an archive to unpack).
pub(crate) async fn exec_with_input<T: Transport>(
    transport: &T,
    ctx: &TaskContext,
    r#become: Option<&str>,
    command: CommandLine,
    stdin: Option<Vec<u8>>,
    commands: &mut Vec<CommandRecord>,
) -> Result<ExecOutput, Failure> {
    let text = transport::describe(&command);
    let request = ExecRequest {
        command,
        stdin,
        env: std::collections::BTreeMap::new(),
        r#become: r#become.map(str::to_owned),
        timeout: ctx.timeout,
        output: ctx.output.clone(),
        capture_limit: transport::CAPTURE_LIMIT,
    };
    let out = transport
        .exec(request, &ctx.force)
        .await
        .map_err(|e| Failure::transport(&e))?;
    commands.push(CommandRecord {
        command: text,
        status: out.status,
        stdout: out.stdout.clone(),
        stderr: out.stderr.clone(),
    });
    match out.status {
        ExitStatus::TimedOut => Err(Failure::TimedOut {
            after: ctx.timeout.unwrap_or_default(),
            commands: std::mem::take(commands),
        }),
        ExitStatus::Cancelled => Err(Failure::Cancelled {
            commands: std::mem::take(commands),
        }),
        ExitStatus::Code { .. } | ExitStatus::Signal { .. } => Ok(out),
    }
}

/// The failure for a command that exited non-zero: its status and the end of its stderr.
pub(crate) fn failed(out: &ExecOutput, what: &str, commands: &mut Vec<CommandRecord>) -> Failure {
    let status = match out.status {
        ExitStatus::Code { code } => format!("exited with status {code}"),
        ExitStatus::Signal { signal } => format!("was killed by signal {signal}"),
        ExitStatus::TimedOut => "timed out".to_owned(),
        ExitStatus::Cancelled => "was cancelled".to_owned(),
    };
    let stderr = String::from_utf8_lossy(&out.stderr.bytes);
    let tail: Vec<&str> = stderr
        .lines()
        .rev()
        .filter(|l| !l.trim().is_empty())
        .take(3)
        .collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    let detail = if tail.is_empty() {
        String::new()
    } else {
        format!(": {}", tail.join(" / "))
    };
    Failure::Failed {
        message: format!("{what} {status}{detail}"),
        commands: std::mem::take(commands),
    }
}

/// The marker scripts print when they found nothing to do.
pub(crate) const UNCHANGED: &str = "DROVER_UNCHANGED";

/// The exit status of a `directory`, `link`, `sysctl`, `cron`, `user` or `group` script that
/// refuses to act: the host holds something the task must not touch (a file where a
/// directory should be, a directory that is not empty), or lacks a tool it needs. Its standard error says why, in words meant for
/// the user.
pub(crate) const REFUSED: i32 = 65;

/// Runs the script of a `directory` or `link` task in one round trip and reads what it did:
/// a `DROVER_DID what` line per change, `DROVER_NOTE what` for something worth saying that is
/// not a change, and `DROVER_UNCHANGED` when it changed nothing. Without that marker the task
/// counts as changed: a lost answer must not hide a change.
pub(crate) async fn run_script<T: Transport>(
    transport: &T,
    ctx: &TaskContext,
    r#become: Option<&str>,
    script: String,
    what: &str,
) -> Result<Applied, Failure> {
    let mut commands = Vec::new();
    let out = exec(
        transport,
        ctx,
        r#become,
        CommandLine::Shell(script),
        &mut commands,
    )
    .await?;
    refused_or_failed(&out, what, &mut commands)?;
    let stdout = String::from_utf8_lossy(&out.stdout.bytes);
    let (changed, summary) = script_summary(&stdout, what);
    Ok(Applied {
        changed,
        summary,
        diff: None,
        commands,
    })
}

/// A script that refused (its standard error says why, for the user) or failed.
pub(crate) fn refused_or_failed(
    out: &ExecOutput,
    what: &str,
    commands: &mut Vec<CommandRecord>,
) -> Result<(), Failure> {
    if out.status == (ExitStatus::Code { code: REFUSED }) {
        let why = String::from_utf8_lossy(&out.stderr.bytes).trim().to_owned();
        return Err(Failure::Failed {
            message: if why.is_empty() {
                format!("{what}: refused")
            } else {
                why
            },
            commands: std::mem::take(commands),
        });
    }
    if !out.status.success() {
        return Err(failed(out, what, commands));
    }
    Ok(())
}

/// Whether a line of output is one of the words a task's own script tells drover what it did
/// with (`DROVER_DID`, `DROVER_NOTE`, `DROVER_UNCHANGED`): read into the task's summary, not
/// shown as output.
pub fn is_report_line(line: &str) -> bool {
    let line = line.trim_end();
    line == UNCHANGED || line.starts_with("DROVER_DID ") || line.starts_with("DROVER_NOTE ")
}

/// Whether a script's output says it changed something, and the one-line summary of it.
fn script_summary(stdout: &str, what: &str) -> (bool, String) {
    let changed = !stdout.lines().any(|l| l.trim() == UNCHANGED);
    let did: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("DROVER_DID "))
        .collect();
    let notes: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("DROVER_NOTE "))
        .collect();
    let summary = match (changed, did.is_empty(), notes.is_empty()) {
        (true, false, _) => format!("{what}: {}", did.join(", ")),
        (true, true, _) => format!("{what}: changed"),
        (false, _, true) => format!("{what} is as desired"),
        (false, _, false) => format!("{what}: {}", notes.join(", ")),
    };
    (changed, summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_is_unchanged_only_when_it_says_so() {
        assert_eq!(
            script_summary(
                "DROVER_DID created\nDROVER_DID mode 0700 → 0755\n",
                "directory /srv"
            ),
            (true, "directory /srv: created, mode 0700 → 0755".to_owned())
        );
        assert_eq!(
            script_summary("DROVER_UNCHANGED\n", "directory /srv"),
            (false, "directory /srv is as desired".to_owned())
        );
        assert_eq!(
            script_summary(
                "DROVER_NOTE /x is not a symbolic link; left in place\nDROVER_UNCHANGED\n",
                "link /x"
            ),
            (
                false,
                "link /x: /x is not a symbolic link; left in place".to_owned()
            )
        );
        // An answer that lost its marker is not taken for "nothing to do".
        assert_eq!(
            script_summary("", "link /x"),
            (true, "link /x: changed".to_owned())
        );
    }
}
