//! `SshTransport`: one authenticated connection per host (russh), opened on first use and
//! again after it drops, with many exec channels over it, bounded by a semaphore.
//!
//! Every command reports its process group first (sshd starts it in a session of its own), so
//! a timeout or a forced cancel kills the whole group on the host through a second channel.
//! Files move through the scripts of `transport::script` over the same connection. A no-op
//! run never calls this, so it never connects.

pub mod auth;
pub mod chain;
pub mod config;
pub mod frame;
pub mod known_hosts;
mod session;
pub use session::inline;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::{self, Handle};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::template::shell_quote;
use crate::transport::Synced;
use crate::transport::{
    Captured, CommandLine, Counters, Error, ErrorKind, ExecOutput, ExecRequest, ExitStatus,
    FileState, OutputChunk, PutFile, Result, Stream, Transport, describe, script,
};
use known_hosts::HostKeyCheck;

/// How long a killed command's group gets between SIGTERM and SIGKILL.
const KILL_GRACE_SECS: u32 = 2;
/// How long to keep reading after a kill before giving the channel up.
pub(crate) const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// The first stderr line of every command: its process group on the host.
const GROUP_MARKER: &str = "DROVER_PGID ";

/// Where and how to reach one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// The host's name in the manifests, for messages.
    pub host: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub identity: Option<PathBuf>,
    pub known_hosts: PathBuf,
    /// Trust and record an unknown host key (never a changed one).
    pub accept_new: bool,
    pub connect_timeout: Duration,
    /// Channels open at once on the connection (OpenSSH's `MaxSessions` defaults to 10).
    pub max_channels: usize,
    /// Time between keepalives (`ServerAliveInterval`); three unanswered end the connection.
    pub keepalive: Duration,
    /// Reach the host through this one first (`ProxyJump`).
    pub jump: Option<Box<SshTarget>>,
}

impl SshTarget {
    fn describe(&self) -> String {
        format!("{} ({}:{})", self.host, self.address, self.port)
    }
}

pub struct SshTransport {
    target: SshTarget,
    counters: Counters,
    /// The authenticated connection; `None` until first use or after it was found closed.
    /// A tokio mutex: connecting awaits while holding it, so concurrent first uses share one
    /// connection instead of opening several.
    connection: tokio::sync::Mutex<Option<Connection>>,
    /// Bounds concurrent channels on the connection.
    channels: Arc<Semaphore>,
    /// Idle remote shells, by the user they run as (`None`: the login user).
    idle: Mutex<std::collections::BTreeMap<Option<String>, Vec<session::ShellSession>>>,
    /// Counts connections made, so a shell of an older connection is never reused.
    generation: std::sync::atomic::AtomicU64,
    /// Users `sudo -n` was seen to run `sh` as on this host, lately (a check's exit status
    /// 0, or a shell as that user that reached its ready marker).
    became: crate::transport::BecomeProofs,
}

/// A live connection, and the jump host's connection it runs through, kept alive with it.
struct Connection {
    handle: Arc<Handle<HostKeyCheck>>,
    _jump: Option<Handle<HostKeyCheck>>,
}

impl std::fmt::Debug for SshTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshTransport")
            .field("target", &self.target)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl SshTransport {
    pub fn new(target: SshTarget) -> Arc<SshTransport> {
        let permits = target.max_channels.max(1);
        Arc::new(SshTransport {
            target,
            counters: Counters::default(),
            connection: tokio::sync::Mutex::new(None),
            channels: Arc::new(Semaphore::new(permits)),
            idle: Mutex::new(std::collections::BTreeMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
            became: crate::transport::BecomeProofs::new(),
        })
    }

    /// Whether an authenticated connection is open now (a connection being set up counts).
    pub fn is_connected(&self) -> bool {
        match self.connection.try_lock() {
            Ok(connection) => connection.as_ref().is_some_and(|c| !c.handle.is_closed()),
            Err(_) => true,
        }
    }

    /// Where this transport connects.
    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    /// Says goodbye to the host (SSH disconnect) if a connection is open; at the end of a
    /// session, so sshd logs a clean close rather than a dropped socket.
    pub async fn close(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
        let connection = self.connection.lock().await.take();
        if let Some(connection) = connection {
            let goodbye = connection.handle.disconnect(
                russh::Disconnect::ByApplication,
                "drover is done",
                "en",
            );
            let _ = tokio::time::timeout(Duration::from_secs(1), goodbye).await;
        }
    }

    /// The live connection, connecting (again) when there is none.
    async fn handle(&self) -> Result<Arc<Handle<HostKeyCheck>>> {
        Ok(self.handle_with_generation().await?.0)
    }

    /// The live connection and its generation (how many connections came before it).
    async fn handle_with_generation(&self) -> Result<(Arc<Handle<HostKeyCheck>>, u64)> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| !c.handle.is_closed()) {
            return Ok((
                connection.handle.clone(),
                self.generation.load(std::sync::atomic::Ordering::Relaxed),
            ));
        }
        // Each task that needed the connection fails with this error and shows it: a
        // warning too would say it twice above the summary (`-v` shows it).
        let (handle, jump) = self.connect_with_retry().await.inspect_err(|error| {
            tracing::info!(host = %self.target.host, %error, kind = ?error.kind(), "cannot connect");
        })?;
        tracing::info!(host = %self.target.host, "connected and authenticated");
        let handle = Arc::new(handle);
        Counters::add(&self.counters.connections);
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        *slot = Some(Connection {
            handle: handle.clone(),
            _jump: jump,
        });
        Ok((handle, generation))
    }

    /// Connects, retrying a refused or timed-out TCP connection with backoff (a host that
    /// is rebooting); host-key and authentication failures are final.
    async fn connect_with_retry(
        &self,
    ) -> Result<(Handle<HostKeyCheck>, Option<Handle<HostKeyCheck>>)> {
        let mut delays = crate::backoff::Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(2),
            u64::from(self.target.port),
        );
        let mut left = 2;
        loop {
            match self.connect().await {
                Err(error)
                    if left > 0
                        && matches!(error.kind(), ErrorKind::Refused | ErrorKind::TimedOut) =>
                {
                    left -= 1;
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_millis(500))).await;
                }
                other => return other,
            }
        }
    }

    async fn connect(&self) -> Result<(Handle<HostKeyCheck>, Option<Handle<HostKeyCheck>>)> {
        let t = &self.target;
        tracing::info!(host = %t.host, address = %t.address, port = t.port, user = %t.user, jump = t.jump.is_some(), "connecting");
        let (handle, jump) = match &t.jump {
            None => (open(t, None).await?, None),
            Some(jump) => {
                let through = open(jump, None).await.map_err(|e| Error::Connect {
                    host: t.describe(),
                    kind: e.kind(),
                    message: format!("through the jump host: {e}"),
                })?;
                let port = u32::from(t.port);
                let channel = through
                    .channel_open_direct_tcpip(t.address.clone(), port, "127.0.0.1", 0)
                    .await
                    .map_err(|e| {
                        self.error(
                            ErrorKind::Refused,
                            format!("the jump host {} cannot reach it: {e}", jump.describe()),
                        )
                    })?;
                (open(t, Some(channel.into_stream())).await?, Some(through))
            }
        };
        Ok((handle, jump))
    }

    fn error(&self, kind: ErrorKind, message: String) -> Error {
        Error::Connect {
            host: self.target.describe(),
            kind,
            message,
        }
    }

    /// Opens a session channel, retrying briefly: sshd frees session slots lazily.
    async fn channel(&self, handle: &Handle<HostKeyCheck>) -> Result<russh::Channel<client::Msg>> {
        self.make_room();
        let mut pause = Duration::from_millis(10);
        for _ in 0..8 {
            let opened =
                tokio::time::timeout(self.target.connect_timeout, handle.channel_open_session())
                    .await
                    .map_err(|_| {
                        self.error(
                            ErrorKind::TimedOut,
                            format!(
                                "the server did not open a channel within {:?}",
                                self.target.connect_timeout
                            ),
                        )
                    })?;
            match opened {
                Ok(channel) => {
                    Counters::add(&self.counters.channels);
                    return Ok(channel);
                }
                Err(russh::Error::ChannelOpenFailure(_)) => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => return Err(self.lost(&e.to_string())),
            }
        }
        Err(self.error(
            ErrorKind::Busy,
            "the server refused to open more channels (sshd MaxSessions)".to_owned(),
        ))
    }

    /// Closes idle shells until they and the channels in use fit the host's channel limit.
    /// An idle shell holds no permit (it may serve any later operation of its user), but
    /// its channel counts against sshd's `MaxSessions` all the same: without this, idle
    /// shells of one user would leave another user's operations no channel at all.
    fn make_room(&self) {
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        loop {
            let total: usize = idle.values().map(Vec::len).sum();
            if total <= self.channels.available_permits() {
                return;
            }
            // From the user with the most idle shells: the one that can best spare one.
            let Some(shells) = idle.values_mut().max_by_key(|shells| shells.len()) else {
                return;
            };
            drop(shells.pop());
        }
    }

    /// Whether a shell given back may stay idle: only while idle shells and the channels in
    /// use (its own permit is about to go) fit the host's channel limit.
    fn may_keep_idle(&self, idle_now: usize) -> bool {
        idle_now <= self.channels.available_permits()
    }

    fn withdrawn(&self) -> Error {
        Error::Withdrawn {
            host: self.target.describe(),
        }
    }

    fn lost(&self, message: &str) -> Error {
        Error::Lost {
            host: self.target.describe(),
            what: format!("the connection was lost: {message}"),
        }
    }

    /// Kills a remote process group: TERM, a grace period, then KILL, on a channel of its own.
    async fn kill_group(&self, handle: &Handle<HostKeyCheck>, group: u32, r#become: Option<&str>) {
        let sudo = r#become
            .filter(|u| *u != self.target.user)
            .map(|u| format!("sudo -n -u {} -- ", shell_quote(u)))
            .unwrap_or_default();
        // `env kill`: the external kill understands `-- -GROUP`; dash's builtin does not.
        let command = format!(
            "{sudo}env kill -TERM -- -{group} 2>/dev/null; i=0; while [ $i -lt {} ] && {sudo}env kill -0 -- -{group} 2>/dev/null; do sleep 0.1; i=$((i+1)); done; {sudo}env kill -KILL -- -{group} 2>/dev/null; true",
            KILL_GRACE_SECS * 10
        );
        let Ok(channel) = self.channel(handle).await else {
            return;
        };
        if channel.exec(true, command).await.is_ok() {
            let mut channel = channel;
            let _ =
                tokio::time::timeout(Duration::from_secs(u64::from(KILL_GRACE_SECS) + 3), async {
                    while let Some(msg) = channel.wait().await {
                        if matches!(msg, ChannelMsg::Close) {
                            break;
                        }
                    }
                })
                .await;
        }
    }

    async fn run(&self, request: ExecRequest, force: &CancellationToken) -> Result<ExecOutput> {
        let _permit = self
            .channels
            .acquire()
            .await
            .map_err(|_| self.lost("shutting down"))?;
        let handle = self.handle().await?;
        if let Some(user) = request
            .r#become
            .as_deref()
            .filter(|u| *u != self.target.user)
        {
            self.ensure_become(&handle, user).await?;
        }
        let mut channel = self.channel(&handle).await?;
        let text = describe(&request.command);
        channel
            .exec(true, wrap(&request, &self.target.user))
            .await
            .map_err(|e| self.lost(&e.to_string()))?;
        if let Some(bytes) = &request.stdin {
            // A connection that freezes mid-transfer never frees the send window: the upload
            // is bounded by a deadline that grows with its size.
            let deadline = transfer_deadline(bytes.len());
            tokio::time::timeout(deadline, channel.data(bytes.as_slice()))
                .await
                .map_err(|_| {
                    self.error(
                        ErrorKind::TimedOut,
                        format!(
                            "sending {} bytes did not finish within {deadline:?}; the connection seems stuck",
                            bytes.len()
                        ),
                    )
                })?
                .map_err(|e| self.lost(&e.to_string()))?;
        }
        channel.eof().await.map_err(|e| self.lost(&e.to_string()))?;
        let mut output = Streams::new(request.capture_limit, request.output.clone());
        let deadline = tokio::time::sleep(
            request
                .timeout
                .unwrap_or(Duration::from_secs(100 * 365 * 86_400))
                .min(Duration::from_secs(100 * 365 * 86_400)),
        );
        tokio::pin!(deadline);
        let mut killed: Option<ExitStatus> = None;
        let mut status: Option<ExitStatus> = None;
        loop {
            tokio::select! {
                msg = channel.wait() => match msg {
                    Some(ChannelMsg::Data { data }) => output.push(Stream::Stdout, &data).await,
                    Some(ChannelMsg::ExtendedData { data, ext: 1 }) => output.push(Stream::Stderr, &data).await,
                    Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(ExitStatus::Code { code: i32::try_from(exit_status).unwrap_or(-1) }),
                    Some(ChannelMsg::ExitSignal { signal_name, .. }) => status = Some(ExitStatus::Signal { signal: signal_number(&signal_name) }),
                    Some(ChannelMsg::Close) | None => break,
                    Some(_) => {}
                },
                () = &mut deadline => {
                    // The first time: the timeout. After a kill: the drain grace ran out.
                    if killed.is_some() {
                        break;
                    }
                    killed = Some(ExitStatus::TimedOut);
                    self.stop(&handle, &output, request.r#become.as_deref()).await;
                    deadline.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
                }
                () = force.cancelled(), if killed.is_none() => {
                    killed = Some(ExitStatus::Cancelled);
                    self.stop(&handle, &output, request.r#become.as_deref()).await;
                    deadline.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
                }
            }
        }
        let _ = channel.close().await;
        let status = match (killed, status) {
            (Some(reason), _) => reason,
            (None, Some(status)) => status,
            (None, None) => {
                return Err(Error::Lost {
                    host: self.target.describe(),
                    what: format!("the connection closed before `{text}` ended"),
                });
            }
        };
        let (stdout, stderr) = output.finish();
        Ok(ExecOutput {
            status,
            stdout,
            stderr,
        })
    }

    /// Records that `sudo -n` runs `sh` as `user` on this host.
    pub(super) fn proved_become(&self, user: &str) {
        self.became.record(user);
    }

    /// Proves that `sudo -n` runs `sh` as `user` on this host (at most once a
    /// `BECOME_PROOF_TTL`), from the exit status of `transport::become_check`, on a channel
    /// of its own opened and closed under the caller's permit before the command's channel.
    /// The login shell prints a word before it runs sudo, so a login that refuses (`nologin`)
    /// or a missing sudo is told from sudo's refusal, by how far the check got and its exit
    /// status, never by what the host said.
    async fn ensure_become(&self, handle: &Handle<HostKeyCheck>, user: &str) -> Result<()> {
        const LOGIN: &[u8] = b"drover-login\n";
        if self.became.holds(user) {
            return Ok(());
        }
        let mut channel = self.channel(handle).await?;
        let check = crate::template::join_argv(&crate::transport::become_check(user));
        channel
            .exec(true, format!("echo drover-login; exec {check}"))
            .await
            .map_err(|e| self.lost(&e.to_string()))?;
        let (mut said, mut printed) = (Vec::new(), Vec::new());
        let (mut status, mut signal) = (None, None);
        let ended = tokio::time::timeout(self.target.connect_timeout, async {
            while let Some(msg) = channel.wait().await {
                match msg {
                    // Only for the message: kept small whatever the host prints.
                    ChannelMsg::Data { data } if printed.len() < 8192 => {
                        printed.extend_from_slice(&data);
                    }
                    ChannelMsg::ExtendedData { data, .. } if said.len() < 8192 => {
                        said.extend_from_slice(&data);
                    }
                    ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => signal = Some(signal_name),
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
        })
        .await;
        let _ = channel.close().await;
        if let (Some(signal), None) = (signal, status) {
            return Err(self.lost(&format!(
                "`sudo -n` was ended by signal {signal:?} while it was asked to run `sh` as {user}"
            )));
        }
        if ended.is_err() {
            return Err(self.error(
                ErrorKind::TimedOut,
                format!(
                    "`sudo -n` did not answer within {:?} when asked to run `sh` as {user}",
                    self.target.connect_timeout
                ),
            ));
        }
        if status == Some(0) {
            self.proved_become(user);
            return Ok(());
        }
        let login = printed.starts_with(LOGIN);
        let stdout = printed.strip_prefix(LOGIN).unwrap_or(&printed);
        let failure = session::start_failure(true, login, false, status);
        Err(self.start_error(failure, Some(user), &said, stdout, status))
    }

    async fn stop(&self, handle: &Handle<HostKeyCheck>, output: &Streams, r#become: Option<&str>) {
        if let Some(group) = output.group {
            self.kill_group(handle, group, r#become).await;
        }
    }
}

impl Transport for SshTransport {
    async fn exec(&self, request: ExecRequest, force: &CancellationToken) -> Result<ExecOutput> {
        Counters::add(&self.counters.commands);
        if request.stdin.is_some() {
            return self.run(request, force).await;
        }
        self.session_exec(&request, force, None).await
    }

    async fn put_file(&self, file: &PutFile) -> Result<()> {
        Counters::add(&self.counters.files_written);
        let mut request = ExecRequest::shell(script::put(file));
        request.stdin = Some(file.content.to_vec());
        request.r#become.clone_from(&file.r#become);
        let out = self.run(request, &CancellationToken::new()).await?;
        script::put_result(&file.path, &out)
    }

    async fn read_file(
        &self,
        path: &str,
        r#become: Option<&str>,
        want_content: bool,
    ) -> Result<Option<FileState>> {
        Counters::add(&self.counters.files_read);
        let mut request = ExecRequest::shell(script::read(path, want_content));
        request.r#become = r#become.map(str::to_owned);
        request.capture_limit = script::READ_CAPTURE;
        let out = self.run(request, &CancellationToken::new()).await?;
        script::parse_read(path, want_content, &out)
    }

    async fn sync_file(&self, file: &PutFile) -> Result<Synced> {
        Counters::add(&self.counters.files_written);
        if session::inline(&file.content) {
            return self.session_sync(file, None).await;
        }
        let mut request = ExecRequest::shell(script::sync(file));
        request.stdin = Some(file.content.to_vec());
        request.r#become.clone_from(&file.r#become);
        request.capture_limit = script::READ_CAPTURE;
        let out = self.run(request, &CancellationToken::new()).await?;
        script::parse_sync(&file.path, &out)
    }

    async fn exists(&self, path: &str, r#become: Option<&str>) -> Result<bool> {
        Counters::add(&self.counters.files_read);
        self.session_exists(path, r#become, None).await
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}

/// Connects to `t` (over `stream` when going through a jump host), checks its host key and
/// authenticates.
async fn open(
    t: &SshTarget,
    stream: Option<russh::ChannelStream<client::Msg>>,
) -> Result<Handle<HostKeyCheck>> {
    let error = |kind: ErrorKind, message: String| Error::Connect {
        host: t.describe(),
        kind,
        message,
    };
    let config = Arc::new(client::Config {
        // Nagle's algorithm costs ~45 ms per round trip on small exchanges.
        nodelay: true,
        keepalive_interval: Some(t.keepalive),
        keepalive_max: 3,
        inactivity_timeout: None,
        ..client::Config::default()
    });
    let check = HostKeyCheck {
        address: t.address.clone(),
        port: t.port,
        known_hosts: t.known_hosts.clone(),
        accept_new: t.accept_new,
        refusal: Arc::new(Mutex::new(None)),
    };
    let refusal = check.refusal.clone();
    // russh has no connect or handshake timeout of its own.
    let connected = match stream {
        None => {
            tokio::time::timeout(
                t.connect_timeout,
                client::connect(config, (t.address.as_str(), t.port), check),
            )
            .await
        }
        Some(stream) => {
            tokio::time::timeout(
                t.connect_timeout,
                client::connect_stream(config, stream, check),
            )
            .await
        }
    };
    let mut handle = match connected {
        Err(_) => {
            return Err(error(
                ErrorKind::TimedOut,
                format!(
                    "cannot connect: no answer within {:?} (connect timeout)",
                    t.connect_timeout
                ),
            ));
        }
        Ok(Err(e)) => {
            if let Some(refused) = refusal.lock().ok().and_then(|r| r.clone()) {
                return Err(Error::HostKey {
                    message: known_hosts::explain(
                        &refused,
                        &t.host,
                        &t.address,
                        t.port,
                        &t.known_hosts,
                    ),
                });
            }
            return Err(error(connect_failure(&e), format!("cannot connect: {e}")));
        }
        Ok(Ok(handle)) => handle,
    };
    match tokio::time::timeout(
        t.connect_timeout,
        auth::authenticate(&mut handle, &t.user, t.identity.as_deref()),
    )
    .await
    {
        Err(_) => Err(error(
            ErrorKind::TimedOut,
            "authentication did not finish in time".to_owned(),
        )),
        Ok(Err(message)) => Err(error(ErrorKind::Authentication, message)),
        Ok(Ok(())) => Ok(handle),
    }
}

/// How long sending `bytes` may take: a minute, plus a second per 256 KiB.
pub(crate) fn transfer_deadline(bytes: usize) -> Duration {
    Duration::from_secs(60 + (bytes / (256 * 1024)) as u64)
}

/// What kind of failure a failed connect is: the network (worth retrying) or the peer
/// speaking no protocol we share (not).
fn connect_failure(error: &russh::Error) -> ErrorKind {
    match error {
        russh::Error::IO(_) | russh::Error::Disconnect | russh::Error::HUP => ErrorKind::Refused,
        russh::Error::ConnectionTimeout | russh::Error::KeepaliveTimeout => ErrorKind::TimedOut,
        russh::Error::NoCommonAlgo { .. } | russh::Error::Version => ErrorKind::Remote,
        _ => ErrorKind::Lost,
    }
}

/// The command line sshd runs (through the login shell): report the process group, then
/// become the command, through `sudo -n` when another user is asked for.
fn wrap(request: &ExecRequest, login: &str) -> String {
    let inner = match &request.command {
        CommandLine::Shell(s) => format!("sh -c {}", shell_quote(s)),
        CommandLine::Argv(argv) => crate::template::join_argv(argv),
    };
    let env = request.env.iter().fold(String::new(), |mut out, (k, v)| {
        let _ = write!(out, "{k}={} ", shell_quote(v));
        out
    });
    let sudo = request
        .r#become
        .as_deref()
        .filter(|u| *u != login)
        .map(|u| format!("sudo -n -u {} -- ", shell_quote(u)))
        .unwrap_or_default();
    let env = if env.is_empty() {
        String::new()
    } else {
        format!("env {env}")
    };
    format!("echo \"{GROUP_MARKER}$$\" >&2; exec {sudo}{env}{inner}")
}

/// Output of one command: capped captures, live forwarding, and the process group taken
/// from the first stderr line.
struct Streams {
    stdout: Captured,
    stderr: Captured,
    sink: Option<mpsc::Sender<OutputChunk>>,
    group: Option<u32>,
    /// Stderr bytes before the marker line is complete.
    head: Vec<u8>,
    marker_done: bool,
}

impl Streams {
    fn new(limit: usize, sink: Option<mpsc::Sender<OutputChunk>>) -> Streams {
        Streams {
            stdout: Captured::with_limit(limit),
            stderr: Captured::with_limit(limit),
            sink,
            group: None,
            head: Vec::new(),
            marker_done: false,
        }
    }

    async fn push(&mut self, stream: Stream, data: &[u8]) {
        let data = if stream == Stream::Stderr && !self.marker_done {
            self.head.extend_from_slice(data);
            let Some(end) = self.head.iter().position(|b| *b == b'\n') else {
                return;
            };
            self.marker_done = true;
            let line =
                String::from_utf8_lossy(self.head.get(..end).unwrap_or_default()).into_owned();
            self.group = line
                .strip_prefix(GROUP_MARKER)
                .and_then(|n| n.trim().parse().ok());
            let rest = self.head.split_off(end + 1);
            if self.group.is_none() {
                // Not our marker (a login banner on stderr): keep it as output.
                let mut all = std::mem::take(&mut self.head);
                all.extend_from_slice(&rest);
                all
            } else {
                rest
            }
        } else {
            data.to_vec()
        };
        if data.is_empty() {
            return;
        }
        match stream {
            Stream::Stdout => self.stdout.push(&data),
            Stream::Stderr => self.stderr.push(&data),
        }
        if let Some(sink) = &self.sink {
            let _ = sink
                .send(OutputChunk {
                    stream,
                    bytes: data,
                })
                .await;
        }
    }

    fn finish(self) -> (Captured, Captured) {
        (self.stdout, self.stderr)
    }
}

fn signal_number(signal: &russh::Sig) -> i32 {
    match signal {
        russh::Sig::HUP => 1,
        russh::Sig::INT => 2,
        russh::Sig::QUIT => 3,
        russh::Sig::ILL => 4,
        russh::Sig::ABRT => 6,
        russh::Sig::FPE => 8,
        russh::Sig::KILL => 9,
        russh::Sig::USR1 => 10,
        russh::Sig::SEGV => 11,
        russh::Sig::PIPE => 13,
        russh::Sig::ALRM => 14,
        russh::Sig::TERM => 15,
        // Other signals (or a name we do not know) carry no number.
        russh::Sig::Custom(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_report_their_group_then_become_the_command() {
        let mut request = ExecRequest::shell("echo 'a b'");
        assert_eq!(
            wrap(&request, "deploy"),
            r#"echo "DROVER_PGID $$" >&2; exec sh -c 'echo '\''a b'\'''"#
        );
        request.r#become = Some("root".to_owned());
        assert!(wrap(&request, "deploy").contains("exec sudo -n -u root -- sh -c"));
        assert!(
            !wrap(&request, "root").contains("sudo"),
            "no sudo to become who we are"
        );
    }

    #[tokio::test]
    async fn the_group_marker_is_taken_out_of_stderr() {
        let mut streams = Streams::new(1024, None);
        streams.push(Stream::Stderr, b"DROVER_PG").await;
        streams.push(Stream::Stderr, b"ID 4242\nreal error\n").await;
        streams.push(Stream::Stdout, b"out\n").await;
        assert_eq!(streams.group, Some(4242));
        let (stdout, stderr) = streams.finish();
        assert_eq!(stderr.bytes, b"real error\n");
        assert_eq!(stdout.bytes, b"out\n");
    }
}
