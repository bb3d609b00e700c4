//! One planned instance, attempted: its task kind through its host's transport, retried with
//! backoff, its output streamed live line by line.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::apply::ConsoleEvent;
use crate::backoff::Backoff;
use crate::instance::InstanceId;
use crate::resolve::ResolvedInstance;
use crate::state::InstanceDetail;
use crate::task::{self, Applied, Failure, TaskContext};
use crate::transport::local::LocalTransport;
use crate::transport::ssh::SshTransport;
use crate::transport::ssh::chain::ChainLink;
use crate::transport::{CommandLine, OutputChunk, Stream, Transport};

/// How drover reaches a host in this run.
#[derive(Debug, Clone)]
pub enum HostTransport {
    Local(Arc<LocalTransport>),
    Ssh(Arc<SshTransport>),
    /// A task sent through its chain's shell right behind the task before it.
    Chained(Arc<ChainLink>),
    /// Scripted outcomes, for tests of the driver.
    #[cfg(test)]
    Fake(Arc<crate::transport::fake::FakeTransport>),
    /// The host cannot be reached in this run; every instance on it fails with this reason.
    Unreachable(String),
}

/// Runs `$body` with `$t` bound to the concrete transport of a reachable host, or returns
/// the unreachable host's failure: the trait is not object-safe (async), so each variant is
/// spelled once here.
macro_rules! with_transport {
    ($host:expr, $t:ident => $body:expr) => {
        match $host {
            HostTransport::Local($t) => $body,
            HostTransport::Ssh($t) => $body,
            HostTransport::Chained($t) => $body,
            #[cfg(test)]
            HostTransport::Fake($t) => $body,
            HostTransport::Unreachable(reason) => {
                return Err(Failure::Transport {
                    message: reason.clone(),
                    kind: crate::transport::ErrorKind::Local,
                })
            }
        }
    };
}

impl HostTransport {
    async fn apply(
        &self,
        instance: &ResolvedInstance,
        ctx: &TaskContext,
    ) -> Result<Applied, Failure> {
        with_transport!(self, t => task::apply(instance, t.as_ref(), ctx).await)
    }

    async fn undo(
        &self,
        command: &str,
        r#become: Option<&str>,
        ctx: &TaskContext,
    ) -> Result<Applied, Failure> {
        let mut commands = Vec::new();
        let line = CommandLine::Shell(command.to_owned());
        let out = with_transport!(self, t => task::exec(t.as_ref(), ctx, r#become, line, &mut commands).await?);
        if !out.status.success() {
            return Err(task::failed(&out, "the undo command", &mut commands));
        }
        Ok(Applied {
            changed: true,
            summary: "undo ran".to_owned(),
            diff: None,
            commands,
        })
    }

    pub fn counters(&self) -> Option<crate::transport::CounterSnapshot> {
        match self {
            HostTransport::Local(t) => Some(t.counters().snapshot()),
            HostTransport::Ssh(t) => Some(t.counters().snapshot()),
            HostTransport::Chained(t) => Some(t.counters().snapshot()),
            #[cfg(test)]
            HostTransport::Fake(t) => Some(t.counters().snapshot()),
            HostTransport::Unreachable(_) => None,
        }
    }
}

/// What one attempt needs besides the instance.
#[derive(Debug, Clone)]
pub struct AttemptContext {
    pub transport: HostTransport,
    /// A source changed in this run, or a trigger was pending.
    pub triggered: bool,
    /// First Ctrl-C: no further retries.
    pub graceful: CancellationToken,
    /// Second Ctrl-C: kill what runs.
    pub force: CancellationToken,
    pub console: mpsc::Sender<ConsoleEvent>,
    /// Seeds the retry jitter, so a run's delays are reproducible from its id.
    pub seed: u64,
    /// Masks secrets in live output before it reaches the console.
    pub redactor: crate::secret::Redactor,
}

/// Attempts an instance, retrying as its `retries` says; returns the last result and how
/// many attempts were made.
pub async fn run(
    instance: Arc<ResolvedInstance>,
    ctx: AttemptContext,
) -> (Result<Applied, Failure>, u32) {
    let (attempts, backoff) = match instance.retries {
        Some(r) => (r.attempts.max(1), r.backoff.as_duration()),
        None => (1, Duration::ZERO),
    };
    let mut delays = Backoff::new(backoff, Duration::from_secs(300), ctx.seed);
    let mut made = 0;
    loop {
        made += 1;
        let timeout = instance
            .timeout
            .map(crate::model::duration::HumanDuration::as_duration);
        let result = with_output(&instance.id, &ctx, timeout, |task_ctx| {
            let instance = instance.clone();
            let transport = ctx.transport.clone();
            async move { transport.apply(&instance, &task_ctx).await }
        })
        .await;
        let retry = worth_retrying(&result) && made < attempts && !ctx.graceful.is_cancelled();
        if !retry {
            return (result, made);
        }
        let delay = delays.next().unwrap_or(backoff);
        let _ = ctx
            .console
            .send(ConsoleEvent::Retrying {
                id: instance.id.clone(),
                attempt: made + 1,
                delay,
            })
            .await;
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = ctx.graceful.cancelled() => return (result, made),
        }
    }
}

/// Whether another attempt may succeed: a command that failed or timed out may (that is what
/// `retries` is for), a transport failure only when its kind is transient; a refused host
/// key, a refused login or a sudo password prompt never get better by retrying.
fn worth_retrying(result: &Result<Applied, Failure>) -> bool {
    match result {
        Ok(_) | Err(Failure::Cancelled { .. }) => false,
        Err(Failure::Failed { .. } | Failure::TimedOut { .. }) => true,
        Err(Failure::Transport { kind, .. }) => {
            crate::transport::retry_policy(*kind) == crate::transport::Retry::Transient
        }
    }
}

/// Runs a recorded undo command for a removed instance.
pub async fn undo(
    id: &InstanceId,
    detail: &InstanceDetail,
    ctx: AttemptContext,
) -> Result<Applied, Failure> {
    let Some(command) = detail.undo.clone() else {
        return Ok(Applied {
            changed: true,
            summary: "forgotten (no undo recorded)".to_owned(),
            ..Applied::default()
        });
    };
    if detail.undo_masked {
        return Err(Failure::Failed {
            message: format!(
                "its undo used a secret, which the state never keeps; run it by hand, then `drover state forget {id}`"
            ),
            commands: Vec::new(),
        });
    }
    let r#become = detail.r#become.clone();
    with_output(id, &ctx, None, |task_ctx| {
        let transport = ctx.transport.clone();
        async move {
            transport
                .undo(&command, r#become.as_deref(), &task_ctx)
                .await
        }
    })
    .await
}

/// Runs `work` with a live-output channel whose chunks become console lines prefixed by
/// the instance id.
async fn with_output<F, Fut>(
    id: &InstanceId,
    ctx: &AttemptContext,
    timeout: Option<Duration>,
    work: F,
) -> Result<Applied, Failure>
where
    F: FnOnce(TaskContext) -> Fut,
    Fut: std::future::Future<Output = Result<Applied, Failure>>,
{
    let (tx, rx) = mpsc::channel::<OutputChunk>(64);
    let task_ctx = TaskContext {
        force: ctx.force.clone(),
        timeout,
        output: Some(tx),
        triggered: ctx.triggered,
    };
    let forward = forward_lines(id.clone(), rx, ctx.console.clone(), ctx.redactor.clone());
    let (result, ()) = tokio::join!(work(task_ctx), forward);
    result
}

/// Longest piece of a line sent to the console at once; longer lines are cut, so one
/// newline-free stream cannot grow memory without bound.
const MAX_LINE: usize = 16 * 1024;

/// Splits chunks into lines (per stream, on `\n` and on the `\r` of progress meters),
/// masks secrets, and sends each to the console.
async fn forward_lines(
    id: InstanceId,
    mut rx: mpsc::Receiver<OutputChunk>,
    console: mpsc::Sender<ConsoleEvent>,
    redactor: crate::secret::Redactor,
) {
    let mut pending: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let send = |stream: Stream, bytes: &[u8]| {
        let line = redactor.redact(&String::from_utf8_lossy(bytes));
        ConsoleEvent::Output {
            id: id.clone(),
            stream,
            line,
        }
    };
    while let Some(chunk) = rx.recv().await {
        let slot = usize::from(chunk.stream == Stream::Stderr);
        let Some(buffer) = pending.get_mut(slot) else {
            continue;
        };
        let mut start = 0;
        for (i, byte) in chunk.bytes.iter().enumerate() {
            if matches!(byte, b'\n' | b'\r') {
                buffer.extend_from_slice(chunk.bytes.get(start..i).unwrap_or_default());
                start = i + 1;
                if *byte == b'\n' || !buffer.is_empty() {
                    let _ = console.send(send(chunk.stream, buffer)).await;
                }
                buffer.clear();
            }
        }
        buffer.extend_from_slice(chunk.bytes.get(start..).unwrap_or_default());
        if buffer.len() > MAX_LINE {
            let _ = console.send(send(chunk.stream, buffer)).await;
            buffer.clear();
        }
    }
    for (slot, rest) in pending.into_iter().enumerate() {
        if !rest.is_empty() {
            let stream = if slot == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            let _ = console.send(send(stream, &rest)).await;
        }
    }
}
