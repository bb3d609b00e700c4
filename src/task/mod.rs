//! How each task kind applies and probes itself *through* a `Transport`.
//!
//! Every kind looks before it acts and reports `changed` honestly: a task that found the
//! host already right says so, which is what makes triggers and reports trustworthy. This
//! module knows nothing of plans, the store or scheduling.

pub mod file;
pub mod package;
pub mod run;
pub mod service;

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
    /// The transport could not do what was asked (spawn, connect, sudo needs a password);
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
        if matches!(error, transport::Error::BecomePassword { .. }) {
            message.push_str(
                "; allow it in sudoers with NOPASSWD for drover's user, or drop `become`",
            );
        }
        Failure::Transport {
            message,
            kind: error.kind(),
        }
    }
}

/// Applies one instance.
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
        Action::Package { names, state } => {
            package::apply(transport, ctx, r#become, names, *state).await
        }
        Action::Service {
            name,
            state,
            enabled,
            on_trigger,
        } => {
            service::apply(
                transport,
                ctx,
                r#become,
                name,
                *state,
                *enabled,
                *on_trigger,
            )
            .await
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
    let text = transport::describe(&command);
    let request = ExecRequest {
        command,
        stdin: None,
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
