//! `Transport`: how drover runs commands and moves files on a host. It knows nothing about
//! tasks, plans or the store; `task` turns task kinds into these calls.
//!
//! Two implementations: `local` (processes on the controller) and `ssh`. Both count
//! what they open, so tests can assert that a no-op apply contacted nothing.

#[cfg(test)]
pub mod fake;
pub mod local;
pub mod script;
pub mod ssh;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What to run: a shell command line (`sh -c`), or an argv list run without a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    Shell(String),
    Argv(Vec<String>),
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A piece of live output, sent as it arrives.
#[derive(Debug, Clone)]
pub struct OutputChunk {
    pub stream: Stream,
    pub bytes: Vec<u8>,
}

/// One command to run.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub command: CommandLine,
    pub stdin: Option<Vec<u8>>,
    pub env: BTreeMap<String, String>,
    /// Run as this user through `sudo -n`.
    pub r#become: Option<String>,
    /// Kill the command (its whole process group) after this long.
    pub timeout: Option<Duration>,
    /// Where live output goes; the receiver prints it. Bounded, so a slow console slows the
    /// command down rather than growing memory.
    pub output: Option<mpsc::Sender<OutputChunk>>,
    /// Bytes of each stream kept in the result (file reads need more than reports).
    pub capture_limit: usize,
}

impl ExecRequest {
    pub fn shell(command: impl Into<String>) -> ExecRequest {
        ExecRequest {
            command: CommandLine::Shell(command.into()),
            stdin: None,
            env: BTreeMap::new(),
            r#become: None,
            timeout: None,
            output: None,
            capture_limit: CAPTURE_LIMIT,
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "ended", rename_all = "camelCase")]
pub enum ExitStatus {
    Code {
        code: i32,
    },
    Signal {
        signal: i32,
    },
    /// Killed by drover because it ran past its timeout.
    TimedOut,
    /// Killed by drover because the apply was aborted.
    Cancelled,
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code { code: 0 }
    }
}

/// Output kept for the report, capped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Captured {
    #[serde(serialize_with = "lossy")]
    pub bytes: Vec<u8>,
    pub truncated: bool,
    #[serde(skip)]
    pub limit: usize,
}

impl Default for Captured {
    fn default() -> Captured {
        Captured::with_limit(CAPTURE_LIMIT)
    }
}

fn lossy<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(bytes))
}

/// Bytes of each stream kept per command.
pub const CAPTURE_LIMIT: usize = 64 * 1024;

impl Captured {
    pub fn with_limit(limit: usize) -> Captured {
        Captured {
            bytes: Vec::new(),
            truncated: false,
            limit,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.bytes.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.bytes
            .extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
    }

    pub fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.truncated {
            text.push_str("\n[output truncated]\n");
        }
        text
    }
}

#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub status: ExitStatus,
    pub stdout: Captured,
    pub stderr: Captured,
}

/// A file to write atomically (temporary file, then rename over the target).
#[derive(Debug, Clone)]
pub struct PutFile {
    pub path: String,
    pub content: Arc<[u8]>,
    pub mode: Option<u32>,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub r#become: Option<String>,
}

/// What a file on the host is, without necessarily transferring it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    pub size: u64,
    pub mode: u32,
    pub owner: String,
    pub group: String,
    /// blake3 of the content, hex.
    pub content_hash: String,
    /// The content itself, when asked for and not larger than `READ_CONTENT_LIMIT`.
    pub content: Option<Vec<u8>>,
}

/// What `sync_file` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    /// The file before (`None`: it did not exist); its content when small enough.
    pub before: Option<FileState>,
    pub written: bool,
}

/// How a file on the host differs from `file` ("created", "content", "mode 0644 → 0600", …);
/// empty when nothing needs writing. Unset mode, owner or group are not compared.
pub fn differences(before: Option<&FileState>, file: &PutFile) -> Vec<String> {
    let Some(have) = before else {
        return vec!["created".to_owned()];
    };
    let mut out = Vec::new();
    let same_content = match &have.content {
        Some(content) => content.as_slice() == &*file.content,
        None => have.content_hash == blake3::hash(&file.content).to_hex().as_str(),
    };
    if !same_content {
        out.push("content".to_owned());
    }
    if let Some(mode) = file.mode.filter(|m| *m != have.mode) {
        out.push(format!("mode {:04o} → {mode:04o}", have.mode));
    }
    if let Some(owner) = file.owner.as_deref().filter(|o| *o != have.owner) {
        out.push(format!("owner {} → {owner}", have.owner));
    }
    if let Some(group) = file.group.as_deref().filter(|g| *g != have.group) {
        out.push(format!("group {} → {group}", have.group));
    }
    out
}

/// Largest file content `read_file` returns; larger files come back as hash and mode only.
pub const READ_CONTENT_LIMIT: u64 = 1024 * 1024;

/// What a transport has opened so far; tests assert on these.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub channels: AtomicU64,
    pub commands: AtomicU64,
    pub files_written: AtomicU64,
    pub files_read: AtomicU64,
}

/// A point-in-time copy of `Counters`, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CounterSnapshot {
    pub connections: u64,
    pub channels: u64,
    pub commands: u64,
    pub files_written: u64,
    pub files_read: u64,
}

impl Counters {
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            connections: self.connections.load(Ordering::Relaxed),
            channels: self.channels.load(Ordering::Relaxed),
            commands: self.commands.load(Ordering::Relaxed),
            files_written: self.files_written.load(Ordering::Relaxed),
            files_read: self.files_read.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start `{command}`")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("cannot {operation} {path}")]
    File {
        operation: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("`sudo -n` would not run commands as {user}: {message}")]
    BecomeRefused { user: String, message: String },
    #[error("cannot {operation} {path}: {message}")]
    Remote {
        operation: &'static str,
        path: String,
        message: String,
    },
    #[error("lost the output of `{command}`")]
    Output {
        command: String,
        source: std::io::Error,
    },
    /// Connecting or authenticating failed; `kind` says whether trying again may help.
    #[error("{host}: {message}")]
    Connect {
        host: String,
        kind: ErrorKind,
        message: String,
    },
    #[error("{message}")]
    HostKey { message: String },
    /// An established connection failed during an operation.
    #[error("{host}: {what}")]
    Lost { host: String, what: String },
    /// Sent behind another task of its chain on the host, which failed: the host skipped it.
    #[error("{host}: not run, because the task it was sent behind failed")]
    Withdrawn { host: String },
    /// The shell the task waited in (behind the one it was sent behind) ended: the
    /// connection was lost, or drover stopped it. The host may or may not have run it.
    #[error(
        "{host}: the remote shell this task waited in behind the one before it ended (the connection was lost, or the shell was stopped after that task timed out or was cancelled); whether it ran is unknown, so it is recorded failed and not retried (the next apply plans it again)"
    )]
    LostBehind { host: String },
}

/// What kind of failure an error is: the one thing retry decisions look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ErrorKind {
    /// The TCP connection was refused, or the host or network was unreachable.
    Refused,
    /// No answer within the connect timeout.
    TimedOut,
    /// The connection dropped or was reset during an operation.
    Lost,
    /// The server would open no more channels (sshd `MaxSessions`).
    Busy,
    /// The host key is unknown, changed or revoked.
    HostKey,
    /// The server accepted none of our keys.
    Authentication,
    /// `sudo -n` would not run commands as the `become` user: it wants a password, or the
    /// login user may not become that user at all. Known from sudo's exit status before the
    /// command started, never from its words (which follow the host's locale).
    BecomeRefused,
    /// The host refused an operation: a bad path, a permission, a missing tool, or an SSH
    /// protocol it does not speak.
    Remote,
    /// drover could not do its own part on the controller (spawn, read, write).
    Local,
    /// The host skipped a task sent ahead because the one before it failed; the apply puts
    /// it back in its queue (or skips it) as if it had never been sent.
    Withdrawn,
    /// The connection was lost while a task sent ahead waited behind the one before it: it
    /// may have run. Retrying it could run it past a predecessor that failed, so it is not.
    LostBehind,
}

/// Whether trying again may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// May work later (a host rebooting, a dropped link): retry with backoff.
    Transient,
    /// Will fail the same way until a person changes something: never retried.
    Permanent,
}

/// The one retry policy: decided by the kind, never by the message.
pub fn retry_policy(kind: ErrorKind) -> Retry {
    match kind {
        ErrorKind::Refused | ErrorKind::TimedOut | ErrorKind::Lost | ErrorKind::Busy => {
            Retry::Transient
        }
        ErrorKind::HostKey
        | ErrorKind::Authentication
        | ErrorKind::BecomeRefused
        | ErrorKind::Remote
        | ErrorKind::Local
        | ErrorKind::Withdrawn
        | ErrorKind::LostBehind => Retry::Permanent,
    }
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Spawn { .. } | Error::File { .. } | Error::Output { .. } => ErrorKind::Local,
            Error::BecomeRefused { .. } => ErrorKind::BecomeRefused,
            Error::Remote { .. } => ErrorKind::Remote,
            Error::Connect { kind, .. } => *kind,
            Error::HostKey { .. } => ErrorKind::HostKey,
            Error::Lost { .. } => ErrorKind::Lost,
            Error::Withdrawn { .. } => ErrorKind::Withdrawn,
            Error::LostBehind { .. } => ErrorKind::LostBehind,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How drover reaches one host.
pub trait Transport: Send + Sync + 'static {
    /// Runs a command; streams output to `request.output`; kills its process group on
    /// timeout or when `force` is cancelled (a second Ctrl-C).
    fn exec(
        &self,
        request: ExecRequest,
        force: &CancellationToken,
    ) -> impl Future<Output = Result<ExecOutput>> + Send;

    /// Writes a file atomically with its mode and owner.
    fn put_file(&self, file: &PutFile) -> impl Future<Output = Result<()>> + Send;

    /// Reads a file's state (`None` if it does not exist); its content only when asked for
    /// and small enough.
    fn read_file(
        &self,
        path: &str,
        r#become: Option<&str>,
        want_content: bool,
    ) -> impl Future<Output = Result<Option<FileState>>> + Send;

    /// Makes a file as `file` says: compares content, mode and owner with what is there and
    /// writes only if something differs; returns what was there. The SSH transport does it in
    /// one round trip.
    fn sync_file(&self, file: &PutFile) -> impl Future<Output = Result<Synced>> + Send;

    /// Whether anything (a file, a directory, a link) exists at `path`.
    fn exists(
        &self,
        path: &str,
        r#become: Option<&str>,
    ) -> impl Future<Output = Result<bool>> + Send;

    fn counters(&self) -> &Counters;
}

/// The command that proves `sudo -n` lets the login user run `sh` as `user` (every `become`
/// task runs through `sh` as that user): its exit status is the answer (`sh -c :` itself
/// cannot fail), so no message is ever read for it.
pub(crate) fn become_check(user: &str) -> Vec<String> {
    ["sudo", "-n", "-u", user, "--", "sh", "-c", ":"]
        .map(str::to_owned)
        .to_vec()
}

/// How long a proof that `sudo -n` runs commands as a user is trusted: long enough that an
/// apply pays for one check per user and host, short enough that a sudoers rule revoked
/// while a daemon runs is noticed as a refusal (not as a command's exit status 1) soon.
pub(crate) const BECOME_PROOF_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Users `sudo -n` was seen to run `sh` as, and when. Only successes are kept, so a rule
/// added while drover runs counts at the next task.
#[derive(Debug, Default)]
pub(crate) struct BecomeProofs(std::sync::Mutex<BTreeMap<String, tokio::time::Instant>>);

impl BecomeProofs {
    pub(crate) const fn new() -> BecomeProofs {
        BecomeProofs(std::sync::Mutex::new(BTreeMap::new()))
    }

    /// Whether `user` was proved within `BECOME_PROOF_TTL`.
    pub(crate) fn holds(&self, user: &str) -> bool {
        self.0.lock().is_ok_and(|proofs| {
            proofs
                .get(user)
                .is_some_and(|at| at.elapsed() < BECOME_PROOF_TTL)
        })
    }

    pub(crate) fn record(&self, user: &str) {
        if let Ok(mut proofs) = self.0.lock() {
            proofs.insert(user.to_owned(), tokio::time::Instant::now());
        }
    }
}

/// The error for a `become` that sudo refused, with what sudo said (trimmed and bounded, for
/// the person reading it) or its exit status when it said nothing.
pub(crate) fn become_refused(user: &str, stderr: &[u8], status: Option<i64>) -> Error {
    let mut message = one_line(stderr, 400);
    if message.is_empty() {
        message = match status {
            Some(code) => format!("sudo exited with status {code} and said nothing"),
            None => "sudo ended and said nothing".to_owned(),
        };
    }
    Error::BecomeRefused {
        user: user.to_owned(),
        message,
    }
}

/// What a host said, for one line of a message: its non-empty lines trimmed and joined with
/// "; ", at most `limit` characters (then an ellipsis).
pub(crate) fn one_line(said: &[u8], limit: usize) -> String {
    let text = String::from_utf8_lossy(said);
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let mut line: String = joined.chars().take(limit).collect();
    if joined.chars().count() > limit {
        line.push('…');
    }
    line
}

/// The text of a command line, for messages and logs.
pub fn describe(command: &CommandLine) -> String {
    match command {
        CommandLine::Shell(s) => s.clone(),
        CommandLine::Argv(argv) => crate::template::join_argv(argv),
    }
}

/// A random nonce for marker lines: a task cannot guess it, so it cannot forge a marker.
pub fn nonce() -> String {
    let mut bytes = [0u8; 12];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if read.is_err() {
        // Without /dev/urandom, fall back to what differs between sessions.
        let seed = format!("{:?}{}", std::thread::current().id(), std::process::id());
        bytes.copy_from_slice(
            blake3::hash(seed.as_bytes())
                .as_bytes()
                .get(..12)
                .unwrap_or(&[0; 12]),
        );
    }
    format!(
        "DRV{}",
        blake3::hash(&bytes).to_hex().get(..20).unwrap_or("0")
    )
}

/// An error and its causes on one line: "cannot connect: connection refused".
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_become_proof_lasts_a_minute_and_only_for_its_user() {
        let proofs = BecomeProofs::new();
        assert!(!proofs.holds("app"));
        proofs.record("app");
        assert!(proofs.holds("app") && !proofs.holds("web"));
        tokio::time::advance(BECOME_PROOF_TTL.saturating_sub(std::time::Duration::from_secs(1)))
            .await;
        assert!(proofs.holds("app"));
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        assert!(
            !proofs.holds("app"),
            "checked again once the proof is a minute old"
        );
    }

    #[test]
    fn a_become_refusal_says_what_sudo_said_or_how_it_ended_and_is_permanent() {
        let error = become_refused(
            "app",
            b"sudo: unknown user app\n\n  sudo: no audit\n",
            Some(1),
        );
        assert_eq!(
            error.to_string(),
            "`sudo -n` would not run commands as app: sudo: unknown user app; sudo: no audit"
        );
        assert_eq!(retry_policy(error.kind()), Retry::Permanent);
        assert_eq!(
            become_refused("app", b"  \n", Some(1)).to_string(),
            "`sudo -n` would not run commands as app: sudo exited with status 1 and said nothing"
        );
        let long = "x".repeat(1000);
        let Error::BecomeRefused { message, .. } = become_refused("app", long.as_bytes(), None)
        else {
            panic!("not a become refusal");
        };
        assert_eq!(
            message.chars().count(),
            401,
            "400 characters and an ellipsis"
        );
        assert_eq!(
            crate::template::join_argv(&become_check("it's")),
            "sudo -n -u 'it'\\''s' -- sh -c :"
        );
    }
}
