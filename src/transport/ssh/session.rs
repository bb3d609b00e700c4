//! Long-lived remote shells: one `sh` per channel, kept open for the whole session, that
//! receives each operation as a line of shell and answers with framed results.
//!
//! Opening a channel and starting a login shell for every task costs a round trip, a fork
//! on the host and sshd's session bookkeeping; a shell already running costs none of that.
//! The shell defines small functions once (`_dsync` compares and writes a file, `_dend`
//! frames the end of an operation) and then runs one operation at a time: drover sends the
//! next only after the result of the previous one is recorded. A command runs in its own
//! process group with stdin from `/dev/null` and the login umask, so it can neither read the
//! shell's input nor outlive a timeout: where the host has perl, a helper beside the shell
//! starts it (no `exec` but the command's own); otherwise the shell starts it as a job
//! through `setsid`. The shell reports its pid, and a timeout kills that group through a
//! second channel, as for one-off commands.
//!
//! Files whose content is text without NUL bytes, up to `INLINE_LIMIT`, travel inside the
//! line as a quoted word (`printf` is a shell builtin, so writing costs no process); larger or
//! binary files take the one-off channel path with the content on stdin.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::chain::ChainLink;
use super::frame::{Framer, Piece};
use super::known_hosts::HostKeyCheck;
use super::{DRAIN_GRACE, SshTransport, Streams, transfer_deadline};
use crate::template::shell_quote;
use crate::transport::nonce;
use crate::transport::{
    CommandLine, Error, ErrorKind, ExecOutput, ExecRequest, ExitStatus, PutFile,
    READ_CONTENT_LIMIT, Result, Stream, script,
};

/// Largest file content sent inside the shell's input.
pub const INLINE_LIMIT: usize = 64 * 1024;

/// One remote shell: its input, and a reader task that hands each operation what the shell
/// printed for it. Operations may be sent before the previous one's result is read (a chain
/// of a host's tasks, see `chain`); the shell runs them in the order sent, and the reader
/// gives output to the oldest operation not yet ended.
pub(crate) struct ShellSession {
    /// Unique among the shells of this process.
    pub(super) id: u64,
    writer: tokio::sync::Mutex<Writer>,
    /// The channel's input, written under `writer`'s lock (so lines never interleave), and
    /// shared with the task that closes it when the session goes.
    input: Arc<ChannelWriteHalf<client::Msg>>,
    nonce: String,
    /// The shell's process group (its own pid for a login shell, which leads it; sudo's for
    /// a shell run as another user): killing that group stops the shell before it reads
    /// lines already sent.
    shell_group: Option<u32>,
    /// The user it runs as when not the login user: the kill goes through sudo as that user.
    user: Option<String>,
    /// Which connection it runs on: a reconnect makes older sessions useless.
    pub(super) generation: u64,
    /// Set when the shell can no longer be trusted with another operation.
    broken: Arc<AtomicBool>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for ShellSession {
    fn drop(&mut self) {
        self.reader.abort();
        // A russh channel is not closed by dropping it: without a close, every shell
        // dropped (broken, given up, or closed to make room) would hold one of sshd's
        // sessions until the connection ends. The shell reads end-of-input and exits.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let input = self.input.clone();
            runtime.spawn(async move {
                let _ = input.eof().await;
                let _ = input.close().await;
            });
        }
    }
}

struct Writer {
    /// Operations sent so far; each one's markers carry its number.
    seq: u64,
    /// Tells the reader which operation comes next, before its line is sent.
    register: mpsc::UnboundedSender<(u64, mpsc::UnboundedSender<OpEvent>)>,
}

/// What the reader tells an operation.
#[derive(Debug)]
enum OpEvent {
    /// The operations sent before it have ended: it runs now.
    Begun,
    Output(Stream, Vec<u8>),
    Pid(u32),
    /// Both streams framed its end.
    End(Verdict),
    /// The channel closed.
    Lost,
}

/// Whether an operation runs only if an earlier one (by number, in the same shell) exited 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    Always,
    /// Operation `seq` of shell `shell` (`ShellSession::id`): a gate is only good in the
    /// shell whose operation it names.
    IfSucceeded {
        shell: u64,
        seq: u64,
    },
}

/// Numbers every shell drover starts, so a gate can say which shell it refers to.
static NEXT_SHELL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Whether a file can travel inside the shell's input.
pub fn inline(content: &[u8]) -> bool {
    content.len() <= INLINE_LIMIT && !content.contains(&0) && std::str::from_utf8(content).is_ok()
}

/// A helper the shell keeps beside it where the host has perl, so that the two things every
/// task needs cost no `exec` of a tool: requests come one per line on a FIFO, answers go back
/// on another. `m A B` renames file A over B (paths hex-encoded) and answers `0`, or `1 why`.
/// `x ENV ARGV` (each a hex-encoded list of NUL-separated words) starts a command in a process
/// group of its own with stdin from `/dev/null`, the helper's stdout and stderr (the shell's)
/// and the login umask, answers its pid (or `F why` if it could not fork), then its exit
/// status as `sh` reports one (128 + the signal that killed it; 127 when the program is not
/// found, 126 when it cannot be run). The parent also sets the child's group, so a kill sent
/// right after the pid always finds it. Perl opens its FIFOs close-on-exec, so a command never
/// holds them. The helper exits when the shell closes its end; a shell that loses its helper
/// exits too (drover sees the shell lost) rather than invent a command's status.
const HELPER: &str = r#"open(my $i,"<",$ARGV[0]) or exit 1; open(my $o,">",$ARGV[1]) or exit 1; select($o); $|=1; while (my $l=<$i>) { chomp $l; my @w=split(/ /,$l,-1); if ($w[0] eq "x") { my @e=split(/\0/,pack("H*",$w[1]),-1); my @a=split(/\0/,pack("H*",$w[2]),-1); my $p=fork(); if (!defined $p) { print "F $!\n"; next; } if (!$p) { setpgrp(0,0); open(STDIN,"<","/dev/null"); if ($ARGV[2] eq "") { delete $ENV{PERL_BADLANG}; } else { $ENV{PERL_BADLANG}=substr($ARGV[2],1); } for (@e) { my ($k,$v)=split(/=/,$_,2); $ENV{$k}=$v; } { exec {$a[0]} @a; } print STDERR "$a[0]: $!\n"; exit(($!+0)==2 ? 127 : 126); } setpgrp($p,$p); print "$p\n"; waitpid($p,0); print((($? & 127) ? 128+($? & 127) : $? >> 8), "\n"); } else { print(rename(pack("H*",$w[1]),pack("H*",$w[2])) ? "0\n" : "1 $!\n"); } }"#;

/// The functions every session defines once, then the ready marker with the shell's pid.
/// The `UP` marker comes first: once it is seen, `sudo` (for a shell as another user) has
/// let the shell start, so an exit before it is sudo's refusal.
fn prelude(nonce: &str) -> String {
    format!(
        r#"_dN={nonce}
printf '\n%s UP\n' "$_dN"
_dum0=$(umask)
_dnl='
'
_dout=
set -C
if command -v setsid >/dev/null 2>&1; then _dss=setsid; else _dss=; fi
_dr=
if command -v perl >/dev/null 2>&1 && _dd=$(mktemp -d 2>/dev/null); then
  if mkfifo "$_dd/i" "$_dd/o" 2>/dev/null; then
    PERL_BADLANG=0 perl -e '{HELPER}' "$_dd/i" "$_dd/o" "${{PERL_BADLANG+s$PERL_BADLANG}}" </dev/null &
    exec 7>|"$_dd/i" 8<"$_dd/o"
    _dr=1
  fi
  rm -rf "$_dd"
fi
_dmv() {{
  if [ -n "$_dr" ]; then
    printf 'm %s %s\n' "$3" "$4" >&7 || exit 1
    read -r _drr <&8 || exit 1
    [ "$_drr" = 0 ] && return 0
    printf 'mv: %s\n' "${{_drr#1 }}" >&2
    return 1
  fi
  mv -f "$1" "$2"
}}
_drun() {{
  printf 'x %s %s\n' "$2" "$3" >&7 || exit 1
  read -r _dpid <&8 || exit 1
  case $_dpid in F*) printf 'cannot start the command: %s\n' "${{_dpid#F }}" >&2; return 126;; esac
  printf '\n%s PID %s %s\n' "$_dN" "$1" "$_dpid" >&2
  read -r _drc <&8 || exit 1
  return "$_drc"
}}
_dend() {{ eval "_ds$1=$2"; printf '%s\n%s END %s %s\n' "$_dout" "$_dN" "$1" "$2"; _dout=; printf '\n%s END %s\n' "$_dN" "$1" >&2; }}
_dskip() {{ eval "_ds$1=skip"; printf '\n%s END %s skip\n' "$_dN" "$1"; printf '\n%s END %s\n' "$_dN" "$1" >&2; }}
_dcl='|'
_dclean() {{
  case "$_dcl" in *"|$1|"*) return 0;; esac
  _dcl="$_dcl$1|"
  set -- "$1"/.drover.*
  [ -e "$1" ] || return 0
  find "${{1%/*}}/" -maxdepth 1 -type f -name '.drover.*' -mmin +10 -exec rm -f {{}} + 2>/dev/null
  return 0
}}
_dmissing() {{
  if [ -e "$1" ]; then printf '%s is not a directory\n' "$1" >&2
  else printf 'the directory %s does not exist, or this user cannot search a directory above it: create it first (a directory task that this task needs), or check the permissions above it\n' "$1" >&2
  fi
}}
_dsync() {{
  _dp=$1 _dum=$2 _dm=$3 _dcm=$4 _do=$5 _dg=$6 _dl=$7 _dc=$8 _dt=$9 _dht=${{10}} _dhp=${{11}} _dsame=0 _dom=
  if [ -e "$_dp" ]; then
    _ds=$(stat -L -c '%s %a %U %G' "$_dp") || return 1
    printf 'OLD %s\n' "$_ds"
    set -- $_ds
    _dom=$2
    if [ "$1" -le {READ_CONTENT_LIMIT} ]; then cat "$_dp" || return 1; fi
    printf '\n'
    _dsame=1
    if [ "$1" != "$_dl" ]; then _dsame=0; elif ! printf '%s' "$_dc" | cmp -s - "$_dp"; then _dsame=0; fi
    if [ -n "$_dm" ] && [ "$2" != "$_dm" ]; then _dsame=0; fi
    if [ -n "$_do" ] && [ "$3" != "$_do" ]; then _dsame=0; fi
    if [ -n "$_dg" ] && [ "$4" != "$_dg" ]; then _dsame=0; fi
  else
    _dout="ABSENT$_dnl"
  fi
  if [ "$_dsame" = 1 ]; then _dout="${{_dout}}DROVER_SAME$_dnl"; return 0; fi
  if [ ! -d "${{_dp%/*}}/" ]; then _dmissing "${{_dp%/*}}"; return 1; fi
  _dclean "${{_dp%/*}}"
  umask "$_dum"
  if ! printf '%s' "$_dc" > "$_dt"; then umask "$_dum0"; return 1; fi
  umask "$_dum0"
  if [ -n "$_do$_dg" ] && ! chown "$_do${{_dg:+:$_dg}}" "$_dt"; then rm -f "$_dt"; return 1; fi
  if [ -n "$_dom" ]; then _dcm=${{_dm:-$_dom}}; fi
  if [ -n "$_dcm" ] && ! chmod "$_dcm" "$_dt"; then rm -f "$_dt"; return 1; fi
  if ! _dmv "$_dt" "$_dp" "$_dht" "$_dhp"; then rm -f "$_dt"; return 1; fi
  _dout="${{_dout}}DROVER_WRITTEN$_dnl"
}}
_dpg=$$
if [ -r /proc/$$/stat ]; then read -r _ _ _ _ _dpg _ < /proc/$$/stat || _dpg=$$; fi
printf '\n%s READY %s %s\n' "$_dN" "$$" "$_dpg"
"#
    )
}

/// The line that compares and writes `file` (content inline); prints what `script::sync`
/// prints, so `script::parse_sync` reads both.
fn sync_line(file: &PutFile, nonce: &str, seq: u64) -> String {
    // A new file is created with its final mode through the umask (no process) when the
    // mode has no bits a plain create cannot give; otherwise it is chmod-ed after.
    let (umask, chmod_new) = match file.mode {
        None => ("022".to_owned(), String::new()),
        Some(mode) if mode & !0o666 == 0 => (format!("{:03o}", 0o777 & !mode), String::new()),
        Some(mode) => ("077".to_owned(), format!("{mode:o}")),
    };
    let mode = file.mode.map(|m| format!("{m:o}")).unwrap_or_default();
    let content = String::from_utf8_lossy(&file.content);
    // The temporary file sits beside the target, named by the shell's nonce (unguessable)
    // and the operation's number; it is created exclusively.
    let dir = file.path.rsplit_once('/').map_or("", |(dir, _)| dir);
    let temp = format!("{dir}/.drover.{nonce}.{seq}");
    format!(
        "_dsync {} {umask} '{mode}' '{chmod_new}' {} {} {} {} {} {} {}; _dend {seq} $?\n",
        shell_quote(&file.path),
        quote_or_empty(file.owner.as_deref()),
        quote_or_empty(file.group.as_deref()),
        file.content.len(),
        quote_or_empty(Some(&content)),
        shell_quote(&temp),
        hex(temp.as_bytes()),
        hex(file.path.as_bytes()),
    )
}

/// Wraps operation `seq`'s line so the shell runs it only if operation `before` exited 0,
/// and otherwise frames it as skipped.
fn gated(line: &str, before: u64, seq: u64) -> String {
    format!(
        "if [ \"${{_ds{before}:-x}}\" = 0 ]; then {}\nelse _dskip {seq}; fi\n",
        line.trim_end_matches('\n')
    )
}

/// Wraps an operation's line in a brace group, so the shell runs it only once the closing
/// brace has arrived: a line cut short (a send that failed half-way, then the channel
/// closed) is a syntax error at the end of input, never a command with its last words
/// missing (a file renamed onto a prefix of its path).
fn whole_or_nothing(line: &str) -> String {
    format!("{{ {}\n}}\n", line.trim_end_matches('\n'))
}

/// The line that tells whether anything exists at `path` (file, directory, link).
fn exists_line(path: &str, seq: u64) -> String {
    let quoted = shell_quote(path);
    format!(
        "if [ -e {quoted} ] || [ -L {quoted} ]; then printf 'YES\\n'; else printf 'NO\\n'; fi; _dend {seq} 0\n"
    )
}

/// The line that runs a command in its own process group and reports its pid: through the
/// perl helper where the shell has one (no `exec` but the command's own), otherwise as a
/// background job of the shell through `setsid` where the host has it.
fn exec_line(request: &ExecRequest, seq: u64) -> String {
    let argv: Vec<&str> = match &request.command {
        CommandLine::Shell(s) => vec!["sh", "-c", s],
        CommandLine::Argv(argv) => argv.iter().map(String::as_str).collect(),
    };
    let env: Vec<String> = request
        .env
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let mut job = String::new();
    for (key, value) in &request.env {
        let _ = write!(job, "{key}={} ", shell_quote(value));
    }
    job.push_str("$_dss ");
    match &request.command {
        CommandLine::Shell(s) => {
            let _ = write!(job, "sh -c {}", shell_quote(s));
        }
        CommandLine::Argv(argv) => job.push_str(&crate::template::join_argv(argv)),
    }
    format!(
        "if [ -n \"$_dr\" ]; then _drun {seq} '{}' '{}'; else {job} </dev/null & _dpid=$!; printf '\\n%s PID %s %s\\n' \"$_dN\" {seq} \"$_dpid\" >&2; wait \"$_dpid\"; fi; _dend {seq} $?\n",
        hex_words(&env),
        hex_words(&argv),
    )
}

/// NUL-separated words, hex-encoded: how the perl helper receives a command.
fn hex_words<S: AsRef<str>>(words: &[S]) -> String {
    let mut joined = Vec::new();
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            joined.push(0);
        }
        joined.extend_from_slice(word.as_ref().as_bytes());
    }
    hex(&joined)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0xf] {
            out.push(char::from(
                DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    out
}

fn quote_or_empty(word: Option<&str>) -> String {
    match word {
        Some(w) if !w.is_empty() => shell_quote(w),
        _ => "''".to_owned(),
    }
}

/// The shell's process group from its ready marker, once it has printed it.
/// Who stopped a remote shell (or a check of `sudo`) from starting, from how far it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StartFailure {
    /// No exit status: the channel or connection went, or the start timed out. May pass.
    Lost,
    /// The login shell ended before it ran anything of ours (an account whose shell is
    /// `nologin`).
    Login,
    /// The login shell could not run `sudo` (exit status 127: not installed, or not on its
    /// PATH).
    NoSudo,
    /// `sudo -n` ended without running the shell: it wants a password, or the user may not
    /// become that user, or the user does not exist.
    BecomeRefused,
    /// The shell ran and ended before it was ready.
    Shell,
}

/// Classifies a start that did not reach the ready marker: from the markers seen (`LOGIN`
/// printed by the login shell, `UP` by the session's shell) and the exit status, never
/// from what the host said.
pub(super) fn start_failure(
    r#become: bool,
    login: bool,
    up: bool,
    status: Option<u32>,
) -> StartFailure {
    match status {
        None => StartFailure::Lost,
        Some(_) if !login => StartFailure::Login,
        Some(_) if up || !r#become => StartFailure::Shell,
        Some(127) => StartFailure::NoSudo,
        Some(_) => StartFailure::BecomeRefused,
    }
}

/// The process group a `READY pid group` marker names.
fn ready_group(words: &[String]) -> Option<u32> {
    match words {
        [word, _pid, group] if word == "READY" => group.parse().ok(),
        _ => None,
    }
}

/// What a shell printed while it started.
#[derive(Debug, Default)]
struct Start {
    /// The `LOGIN` marker came: the login shell runs and is about to become `sh`.
    login: bool,
    /// The `UP` marker came: the shell runs (past `sudo`, for another user).
    up: bool,
    /// Its exit status, if it ended before it was ready.
    status: Option<u32>,
    /// Its stderr, for the error message: kept small whatever the host prints.
    said: Vec<u8>,
    /// What it printed on stdout before the markers (a `nologin` says why there), as small.
    printed: Vec<u8>,
}

impl Start {
    /// Reads the channel until the ready marker (the shell's process group) or its end.
    async fn watch(
        &mut self,
        channel: &mut russh::Channel<client::Msg>,
        mut framer: Framer,
    ) -> Option<u32> {
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    for piece in framer.push(&data) {
                        let words = match piece {
                            Piece::Marker(words) => words,
                            Piece::Output(bytes) => {
                                if self.printed.len() < 8192 {
                                    self.printed.extend_from_slice(&bytes);
                                }
                                continue;
                            }
                        };
                        if let Some(group) = ready_group(&words) {
                            return Some(group);
                        }
                        self.login |= matches!(words.as_slice(), [word] if word == "LOGIN");
                        self.up |= matches!(words.as_slice(), [word] if word == "UP");
                    }
                }
                ChannelMsg::ExtendedData { data, .. } if self.said.len() < 8192 => {
                    self.said.extend_from_slice(&data);
                }
                ChannelMsg::ExitStatus { exit_status } => self.status = Some(exit_status),
                ChannelMsg::Close => return None,
                _ => {}
            }
        }
        None
    }
}

impl ShellSession {
    /// Whether it may take another operation.
    pub(super) fn usable(&self) -> bool {
        !self.broken.load(Ordering::Relaxed) && !self.reader.is_finished()
    }
}

/// How the shell ended an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Exited(i32),
    /// Gated on an earlier operation that did not exit 0 (`_dskip`).
    Skipped,
}

/// The verdict an end marker carries.
fn end_code(value: &str) -> Verdict {
    if value == "skip" {
        Verdict::Skipped
    } else {
        Verdict::Exited(value.parse().unwrap_or(-1))
    }
}

/// One operation the reader is following: its number, where its events go, and which of
/// its two end markers it has seen.
struct Following {
    seq: String,
    tell: mpsc::UnboundedSender<OpEvent>,
    code: Option<Verdict>,
    err_done: bool,
}

/// Reads the shell's output for as long as the channel lives, giving each piece to the
/// oldest operation not yet ended (the shell runs them one after another).
async fn read_shell(
    mut output: ChannelReadHalf,
    mut out: Framer,
    mut err: Framer,
    mut registered: mpsc::UnboundedReceiver<(u64, mpsc::UnboundedSender<OpEvent>)>,
    broken: Arc<AtomicBool>,
) {
    let mut queue: VecDeque<Following> = VecDeque::new();
    loop {
        // Registrations first: an operation is registered before its line is sent, so it is
        // known before anything it prints can arrive.
        let (stream, pieces) = tokio::select! {
            biased;
            next = registered.recv() => {
                let Some((seq, tell)) = next else { return };
                if queue.is_empty() {
                    let _ = tell.send(OpEvent::Begun);
                }
                queue.push_back(Following { seq: seq.to_string(), tell, code: None, err_done: false });
                continue;
            }
            msg = output.wait() => match msg {
                Some(ChannelMsg::Data { data }) => (Stream::Stdout, out.push(&data)),
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => (Stream::Stderr, err.push(&data)),
                Some(ChannelMsg::Close | ChannelMsg::Eof) | None => break,
                Some(_) => continue,
            },
        };
        for piece in pieces {
            // Each stream belongs to the oldest operation that has not ended it yet: the next
            // operation may print on stdout before the previous one's stderr end arrives.
            let Some(target) = queue.iter_mut().find(|f| match stream {
                Stream::Stdout => f.code.is_none(),
                Stream::Stderr => !f.err_done,
            }) else {
                continue;
            };
            match piece {
                Piece::Output(bytes) => {
                    let _ = target.tell.send(OpEvent::Output(stream, bytes));
                }
                Piece::Marker(words) => match words.as_slice() {
                    [word, n, value]
                        if word == "END" && *n == target.seq && stream == Stream::Stdout =>
                    {
                        target.code = Some(end_code(value));
                    }
                    [word, n] if word == "END" && *n == target.seq => target.err_done = true,
                    [word, n, value] if word == "PID" && *n == target.seq => {
                        if let Ok(pid) = value.parse() {
                            let _ = target.tell.send(OpEvent::Pid(pid));
                        }
                    }
                    _ => {}
                },
            }
            while let Some(Following {
                code: Some(code),
                err_done: true,
                ..
            }) = queue.front()
            {
                let code = *code;
                if let Some(done) = queue.pop_front() {
                    tracing::trace!(seq = %done.seq, "operation ended");
                    let _ = done.tell.send(OpEvent::End(code));
                }
                if let Some(next) = queue.front() {
                    let _ = next.tell.send(OpEvent::Begun);
                }
            }
        }
    }
    broken.store(true, Ordering::Relaxed);
    for following in queue {
        let _ = following.tell.send(OpEvent::Lost);
    }
    // Operations registered after the channel closed learn it at once.
    registered.close();
    while let Some((_, tell)) = registered.recv().await {
        let _ = tell.send(OpEvent::Lost);
    }
}

/// What one operation printed and how it ended.
pub(super) struct Ended {
    status: ExitStatus,
    streams: Streams,
    /// Whether the shell ended the operation cleanly and can take the next one.
    reusable: bool,
}

/// How long an operation of drover's own (a file compare-and-write, an existence check) may
/// take before its shell is given up.
const OPERATION_DEADLINE: Duration = Duration::from_secs(60);

impl SshTransport {
    /// Runs a command in a session shell (as `request.become`).
    pub(super) async fn session_exec(
        &self,
        request: &ExecRequest,
        force: &CancellationToken,
        via: Option<&ChainLink>,
    ) -> Result<ExecOutput> {
        let ended = self
            .in_session(
                request.r#become.as_deref(),
                |_, seq| exec_line(request, seq),
                request,
                force,
                via,
            )
            .await?;
        let (stdout, stderr) = ended.streams.finish();
        // The shell itself runs as `request.become`: whether sudo allowed that was settled
        // when it started.
        Ok(ExecOutput {
            status: ended.status,
            stdout,
            stderr,
        })
    }

    /// Compares and writes a file in a session shell.
    pub(super) async fn session_sync(
        &self,
        file: &PutFile,
        via: Option<&ChainLink>,
    ) -> Result<crate::transport::Synced> {
        let mut request = ExecRequest::shell(String::new());
        request.capture_limit = script::READ_CAPTURE;
        request.timeout = Some(OPERATION_DEADLINE);
        let ended = self
            .in_session(
                file.r#become.as_deref(),
                |nonce, seq| sync_line(file, nonce, seq),
                &request,
                &CancellationToken::new(),
                via,
            )
            .await?;
        let (stdout, stderr) = ended.streams.finish();
        script::parse_sync(
            &file.path,
            &ExecOutput {
                status: ended.status,
                stdout,
                stderr,
            },
        )
    }

    /// Whether anything exists at `path`, from a session shell.
    pub(super) async fn session_exists(
        &self,
        path: &str,
        r#become: Option<&str>,
        via: Option<&ChainLink>,
    ) -> Result<bool> {
        let mut request = ExecRequest::shell(String::new());
        request.timeout = Some(OPERATION_DEADLINE);
        let ended = self
            .in_session(
                r#become,
                |_, seq| exists_line(path, seq),
                &request,
                &CancellationToken::new(),
                via,
            )
            .await?;
        let (stdout, stderr) = ended.streams.finish();
        match (ended.status, String::from_utf8_lossy(&stdout.bytes).trim()) {
            (ExitStatus::Code { code: 0 }, "YES") => Ok(true),
            (ExitStatus::Code { code: 0 }, "NO") => Ok(false),
            _ => Err(Error::Remote {
                operation: "look at",
                path: path.to_owned(),
                message: String::from_utf8_lossy(&stderr.bytes).trim().to_owned(),
            }),
        }
    }

    /// Takes an idle session (or starts one), runs one operation, and gives the session back
    /// if it is still usable; through a chain's shell when `via` says so.
    async fn in_session(
        &self,
        r#become: Option<&str>,
        line: impl FnOnce(&str, u64) -> String,
        request: &ExecRequest,
        force: &CancellationToken,
        via: Option<&ChainLink>,
    ) -> Result<Ended> {
        if let Some(link) = via {
            let (gate, session) = link.prepare().await?;
            let handle = self.handle().await?;
            let shell = session.id;
            let sent = move |seq| link.mark_sent(shell, seq);
            let ended = self
                .operate(
                    &handle,
                    &session,
                    line,
                    request,
                    force,
                    r#become,
                    gate,
                    Some(&sent),
                )
                .await?;
            link.mark_answered();
            return Ok(ended);
        }
        let _permit = self
            .channels
            .acquire()
            .await
            .map_err(|_| self.lost("shutting down"))?;
        let (handle, generation) = self.handle_with_generation().await?;
        let user = r#become
            .filter(|u| *u != self.target.user)
            .map(str::to_owned);
        let session = self
            .idle_or_new_session(&handle, user.as_deref(), generation)
            .await?;
        let ended = self
            .operate(
                &handle,
                &session,
                line,
                request,
                force,
                r#become,
                Gate::Always,
                None,
            )
            .await?;
        if ended.reusable {
            self.give_back(user, session);
        }
        Ok(ended)
    }

    /// An idle shell of this connection for `user` (`None`: the login user), or a new one.
    pub(super) async fn idle_or_new_session(
        &self,
        handle: &Handle<HostKeyCheck>,
        user: Option<&str>,
        generation: u64,
    ) -> Result<ShellSession> {
        let key = user.map(str::to_owned);
        // Stale shells (of an older connection, or broken while idle) go on the way: each
        // still counts against the host's channels until dropped.
        let idle = self.idle.lock().ok().and_then(|mut idle| {
            let shells = idle.get_mut(&key)?;
            std::iter::from_fn(|| shells.pop()).find(|s| s.generation == generation && s.usable())
        });
        match idle {
            Some(session) => Ok(session),
            None => self.start_session(handle, user, generation).await,
        }
    }

    /// Puts a session that ended its operations cleanly back among the idle ones.
    pub(super) fn give_back(&self, user: Option<String>, session: ShellSession) {
        if session.usable()
            && let Ok(mut idle) = self.idle.lock()
            && self.may_keep_idle(idle.values().map(Vec::len).sum())
        {
            idle.entry(user).or_default().push(session);
        }
    }

    /// The error for a shell (or a check of `sudo`) that did not start, with what the host
    /// said on stderr and stdout (a `nologin` speaks on stdout), on one line.
    pub(super) fn start_error(
        &self,
        failure: StartFailure,
        user: Option<&str>,
        stderr: &[u8],
        stdout: &[u8],
        status: Option<u32>,
    ) -> Error {
        let mut said = stderr.to_vec();
        said.push(b'\n');
        said.extend_from_slice(stdout);
        let said = crate::transport::one_line(&said, 400);
        let code = status.map_or_else(String::new, |code| format!(" (exit status {code})"));
        let tail = if said.is_empty() {
            String::new()
        } else {
            format!(": {said}")
        };
        let remote = |operation, message: String| Error::Remote {
            operation,
            path: self.target.describe(),
            message,
        };
        match (failure, user) {
            (StartFailure::BecomeRefused, Some(user)) => {
                crate::transport::become_refused(user, stderr, status.map(i64::from))
            }
            (StartFailure::Login, _) => remote(
                "log in to a shell on",
                format!("the login shell ended before it ran anything{code}{tail}"),
            ),
            (StartFailure::NoSudo, _) => remote(
                "run sudo on",
                format!("the login shell could not start `sudo`{code}{tail}"),
            ),
            (StartFailure::Lost, _) => self.lost(&format!(
                "the channel closed before the shell or sudo said how it ended{tail}"
            )),
            (StartFailure::Shell | StartFailure::BecomeRefused, _) => remote(
                "start a shell on",
                format!("the shell ended before it was ready{code}{tail}"),
            ),
        }
    }

    pub(super) async fn start_session(
        &self,
        handle: &Handle<HostKeyCheck>,
        user: Option<&str>,
        generation: u64,
    ) -> Result<ShellSession> {
        tracing::debug!(host = %self.target.host, user = ?user, "starting a remote shell");
        let mut channel = self.channel(handle).await?;
        let sudo = user
            .map(|u| format!("sudo -n -u {} -- ", shell_quote(u)))
            .unwrap_or_default();
        let nonce = nonce();
        // The login shell says it runs before it becomes the session's shell (through sudo
        // for another user): how far the start got tells who refused it.
        channel
            .exec(
                true,
                format!("printf '\\n%s LOGIN\\n' {nonce}; exec {sudo}sh"),
            )
            .await
            .map_err(|e| self.lost(&e.to_string()))?;
        channel
            .data(prelude(&nonce).as_bytes())
            .await
            .map_err(|e| self.lost(&e.to_string()))?;
        let mut start = Start::default();
        let started = tokio::time::timeout(
            self.target.connect_timeout,
            start.watch(&mut channel, Framer::new(&nonce)),
        )
        .await;
        let shell_group = match started {
            Ok(Some(group)) => group,
            ended => {
                // Its session slot is freed now, not when the connection ends.
                let _ = channel.close().await;
                if ended.is_err() {
                    return Err(self.error(
                        ErrorKind::TimedOut,
                        format!(
                            "the remote shell was not ready within {:?}",
                            self.target.connect_timeout
                        ),
                    ));
                }
                return Err(self.start_error(
                    start_failure(user.is_some(), start.login, start.up, start.status),
                    user,
                    &start.said,
                    &start.printed,
                    start.status,
                ));
            }
        };
        if let Some(user) = user {
            self.proved_become(user);
        }
        let (output, input) = channel.split();
        let (register, registered) = mpsc::unbounded_channel();
        let broken = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(read_shell(
            output,
            Framer::new(&nonce),
            Framer::new(&nonce),
            registered,
            broken.clone(),
        ));
        Ok(ShellSession {
            writer: tokio::sync::Mutex::new(Writer { seq: 0, register }),
            input: Arc::new(input),
            nonce,
            id: NEXT_SHELL.fetch_add(1, Ordering::Relaxed),
            shell_group: Some(shell_group),
            user: user.map(str::to_owned),
            generation,
            broken,
            reader,
        })
    }

    /// Numbers an operation, registers it with the shell's reader and writes its line
    /// (gated as `gate` says). Returns its number.
    async fn send_line(
        &self,
        session: &ShellSession,
        line: impl FnOnce(&str, u64) -> String,
        gate: Gate,
        tell: mpsc::UnboundedSender<OpEvent>,
    ) -> Result<u64> {
        let mut writer = session.writer.lock().await;
        if !session.usable() {
            // Nothing was sent: an operation gated in it certainly did not run.
            return Err(match gate {
                Gate::IfSucceeded { .. } => self.withdrawn(),
                Gate::Always => self.lost("the remote shell can no longer be used"),
            });
        }
        writer.seq += 1;
        let seq = writer.seq;
        let mut text = line(&session.nonce, seq);
        if let Gate::IfSucceeded { seq: before, .. } = gate {
            text = gated(&text, before, seq);
        }
        let text = whole_or_nothing(&text);
        tracing::debug!(host = %self.target.host, seq, bytes = text.len(), "operation sent");
        writer
            .register
            .send((seq, tell))
            .map_err(|_| self.lost("the remote shell's reader ended"))?;
        let allowed = transfer_deadline(text.len());
        let written = tokio::time::timeout(allowed, session.input.data(text.as_bytes()))
            .await
            .map_err(|_| self.stuck(allowed))
            .and_then(|r| r.map_err(|e| self.lost(&e.to_string())));
        if let Err(error) = written {
            // Part of the line may have reached the shell, and the reader still expects it:
            // nothing else may be sent through this shell.
            session.broken.store(true, Ordering::Relaxed);
            return Err(error);
        }
        Ok(seq)
    }

    /// Sends one operation (gated as `gate` says), tells `sent` once its line is on its way,
    /// and collects what it printed until both streams framed its end. Its deadline counts
    /// from when it begins on the host, not from when it was queued behind others.
    #[expect(clippy::too_many_arguments, reason = "one operation's whole context")]
    pub(super) async fn operate(
        &self,
        handle: &Handle<HostKeyCheck>,
        session: &ShellSession,
        line: impl FnOnce(&str, u64) -> String,
        request: &ExecRequest,
        force: &CancellationToken,
        r#become: Option<&str>,
        gate: Gate,
        sent: Option<&(dyn Fn(u64) + Sync)>,
    ) -> Result<Ended> {
        let (tell, mut events) = mpsc::unbounded_channel();
        let seq = self.send_line(session, line, gate, tell).await?;
        if let Some(sent) = sent {
            sent(seq);
        }
        let mut streams = Streams::new(request.capture_limit, request.output.clone());
        streams.marker_done = true;
        let mut pid: Option<u32> = None;
        let forever = Duration::from_secs(100 * 365 * 86_400);
        let limit = request.timeout.unwrap_or(forever).min(forever);
        // Until it begins, only the operations before it bound the wait (each has its own).
        let deadline = tokio::time::sleep(forever);
        tokio::pin!(deadline);
        let mut killed: Option<ExitStatus> = None;
        let mut begun = false;
        let code = loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(OpEvent::Begun) => {
                        begun = true;
                        if killed.is_none() {
                            deadline.as_mut().reset(tokio::time::Instant::now() + limit);
                        }
                    }
                    Some(OpEvent::Output(stream, bytes)) => streams.push(stream, &bytes).await,
                    Some(OpEvent::Pid(p)) => pid = Some(p),
                    Some(OpEvent::End(Verdict::Exited(code))) => break code,
                    Some(OpEvent::End(Verdict::Skipped)) => {
                        return Err(Error::Withdrawn {
                            host: self.target.describe(),
                        });
                    }
                    // The shell was killed on purpose (Ctrl-C, a timeout): that is the verdict.
                    Some(OpEvent::Lost) | None if killed.is_some() => {
                        let status = killed.unwrap_or(ExitStatus::Cancelled);
                        return Ok(Ended { status, streams, reusable: false });
                    }
                    // Still queued behind the operation it is gated on when the connection
                    // went: the host may have run it or not (its end may be stuck in a
                    // frozen link). A retry could run it past a predecessor that failed.
                    Some(OpEvent::Lost) | None if !begun && gate != Gate::Always => {
                        return Err(Error::LostBehind {
                            host: self.target.describe(),
                        });
                    }
                    Some(OpEvent::Lost) | None => {
                        return Err(Error::Lost {
                            host: self.target.describe(),
                            what: "the connection closed before the command ended".to_owned(),
                        });
                    }
                },
                () = &mut deadline => {
                    if killed.is_some() || pid.is_none() {
                        // Nothing to kill, or the group did not end after the kill: the shell
                        // is in an unknown state and is given up (never reused), and stopped, so
                        // nothing queued behind it starts.
                        session.broken.store(true, Ordering::Relaxed);
                        self.kill_pid(handle, session.shell_group, session.user.as_deref())
                            .await;
                        return match killed {
                            Some(status) => Ok(Ended { status, streams, reusable: false }),
                            None => Err(self.stuck(request.timeout.unwrap_or(OPERATION_DEADLINE))),
                        };
                    }
                    killed = Some(ExitStatus::TimedOut);
                    // Its real exit status is what the shell would gate later lines on, and it
                    // may still be 0 after the kill: the shell goes too, so nothing sent
                    // behind it runs on a verdict drover did not record.
                    session.broken.store(true, Ordering::Relaxed);
                    self.kill_pid(handle, session.shell_group, session.user.as_deref())
                            .await;
                    self.kill_pid(handle, pid, r#become).await;
                    deadline.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
                }
                () = force.cancelled(), if killed.is_none() => {
                    killed = Some(ExitStatus::Cancelled);
                    // The shell goes first, so it starts nothing it was sent after this.
                    session.broken.store(true, Ordering::Relaxed);
                    self.kill_pid(handle, session.shell_group, session.user.as_deref())
                            .await;
                    self.kill_pid(handle, pid, r#become).await;
                    deadline.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
                }
            }
        };
        let status = killed.unwrap_or(ExitStatus::Code { code });
        Ok(Ended {
            status,
            streams,
            reusable: !session.broken.load(Ordering::Relaxed),
        })
    }

    fn stuck(&self, after: Duration) -> Error {
        self.error(
            ErrorKind::TimedOut,
            format!("the remote shell did not answer within {after:?}; the connection seems stuck"),
        )
    }

    async fn kill_pid(
        &self,
        handle: &Handle<HostKeyCheck>,
        pid: Option<u32>,
        r#become: Option<&str>,
    ) {
        if let Some(pid) = pid {
            self.kill_group(handle, pid, r#become).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_go_inline_only_as_small_text() {
        assert!(inline(b"hello\n"));
        assert!(!inline(b"a\0b"));
        assert!(!inline(&[0xff, 0xfe]));
        assert!(!inline(&vec![b'a'; INLINE_LIMIT + 1]));
    }

    #[test]
    fn a_new_file_gets_its_mode_from_the_umask_when_it_can() {
        let mut file = PutFile {
            path: "/etc/it's".to_owned(),
            content: std::sync::Arc::from(&b"x'y"[..]),
            mode: Some(0o640),
            owner: None,
            group: Some("adm".to_owned()),
            r#become: None,
        };
        assert_eq!(
            sync_line(&file, "N", 7),
            "_dsync '/etc/it'\\''s' 137 '640' '' '' adm 3 'x'\\''y' /etc/.drover.N.7 2f6574632f2e64726f7665722e4e2e37 2f6574632f69742773; _dend 7 $?\n"
        );
        file.mode = Some(0o755);
        assert!(sync_line(&file, "N", 7).starts_with("_dsync '/etc/it'\\''s' 077 '755' '755' "));
    }

    #[test]
    fn commands_run_detached_from_the_shells_input_and_report_their_pid() {
        let mut request = ExecRequest::shell("echo 'a b'");
        request.env.insert("K".to_owned(), "v w".to_owned());
        let line = exec_line(&request, 3);
        // Through the helper: K=v w, then sh, -c and the command, NUL-separated, in hex.
        let helper = format!(
            "if [ -n \"$_dr\" ]; then _drun 3 '{}' '{}'; else ",
            hex(b"K=v w"),
            hex(b"sh\0-c\0echo 'a b'")
        );
        assert!(line.starts_with(&helper), "{line}");
        // Without it, a job of the shell.
        assert!(
            line.contains("else K='v w' $_dss sh -c 'echo '\\''a b'\\''' </dev/null & _dpid=$!;"),
            "{line}"
        );
        assert!(
            line.ends_with("wait \"$_dpid\"; fi; _dend 3 $?\n"),
            "{line}"
        );
        assert_eq!(hex_words::<&str>(&[]), "");
    }
}

/// The shell side of the protocol, run in a real local `sh` (what sshd would start), with
/// and without perl on the PATH: the functions write files with the right content and mode,
/// frame every result, and keep commands off the shell's input.
#[cfg(test)]
mod shell_tests {
    #![allow(
        clippy::disallowed_methods,
        reason = "these tests run the remote shell's code in a real local sh"
    )]

    use super::*;
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;

    /// Runs the prelude and `lines` in `sh` with `path` as PATH; returns the framed stdout
    /// split into (output, markers) per operation, in order.
    fn run_shell(path: &str, lines: &[String]) -> (Vec<u8>, Vec<Vec<String>>) {
        let nonce = "NTEST";
        // A login umask other than the shell's own 077 for its temporary files.
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "umask 0027; exec /bin/sh"])
            .env_clear()
            .env("PATH", path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(prelude(nonce).as_bytes()).unwrap();
        for line in lines {
            stdin.write_all(line.as_bytes()).unwrap();
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let mut framer = Framer::new(nonce);
        let mut output = Vec::new();
        let mut markers = Vec::new();
        for piece in framer.push(&out.stdout) {
            match piece {
                Piece::Output(bytes) => output.extend(bytes),
                Piece::Marker(words) => markers.push(words),
            }
        }
        (output, markers)
    }

    fn file(path: &std::path::Path, content: &str, mode: Option<u32>) -> PutFile {
        PutFile {
            path: path.display().to_string(),
            content: std::sync::Arc::from(content.as_bytes()),
            mode,
            owner: None,
            group: None,
            r#become: None,
        }
    }

    #[test]
    fn a_start_that_was_not_ready_is_blamed_on_who_stopped_it() {
        use StartFailure::{BecomeRefused, Login, Lost, NoSudo, Shell};
        // (become, LOGIN seen, UP seen, exit status) → who refused.
        let cases = [
            ((true, true, true, None), Lost),
            ((false, false, false, None), Lost),
            ((false, false, false, Some(1)), Login),
            ((true, false, false, Some(1)), Login),
            ((true, true, false, Some(127)), NoSudo),
            ((true, true, false, Some(1)), BecomeRefused),
            ((true, true, true, Some(1)), Shell),
            ((false, true, false, Some(127)), Shell),
            ((false, true, true, Some(2)), Shell),
        ];
        for ((r#become, login, up, status), expected) in cases {
            assert_eq!(
                start_failure(r#become, login, up, status),
                expected,
                "become={become} login={login} up={up} status={status:?}"
            );
        }
    }

    /// A command that says what it started with.
    const CONTEXT: &str = r#"read -r _ _ _ _ pg _ < /proc/$$/stat; [ "$pg" = $$ ] && g=own; f=closed; for d in /proc/$$/fd/*; do case $(readlink "$d") in */i|*/o|*"/i (deleted)"|*"/o (deleted)") f=open;; esac; done; echo "umask=$(umask) group=$g fifos=$f badlang=${PERL_BADLANG-unset}""#;

    fn check_protocol(path: &str, renamer: bool) {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("it's a file");
        let exe = dir.path().join("tool");
        let lines = vec![
            sync_line(&file(&target, "one 'two'\n", Some(0o640)), "NTEST", 1),
            sync_line(&file(&target, "one 'two'\n", Some(0o640)), "NTEST", 2),
            sync_line(&file(&target, "three\n", None), "NTEST", 3),
            sync_line(&file(&exe, "#!/bin/sh\n", Some(0o755)), "NTEST", 4),
            exists_line(&dir.path().display().to_string(), 5),
            exists_line("/nonexistent/drover", 6),
            exec_line(&ExecRequest::shell("read x; echo \"read=$x\"; exit 3"), 7),
            "printf 'renamer=%s\\n' \"$_dr\"; _dend 8 0\n".to_owned(),
            exec_line(&ExecRequest::shell(CONTEXT), 9),
            exec_line(&ExecRequest::shell("kill -TERM $$"), 10),
        ];
        let (output, markers) = run_shell(path, &lines);
        let text = String::from_utf8_lossy(&output);
        // The shell names its process group: here the test's own, which it inherited.
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let own_group: u32 = stat.split(' ').nth(4).unwrap().parse().unwrap();
        assert_eq!(
            markers.first().map(Vec::as_slice),
            Some(&["UP".to_owned()][..])
        );
        assert_eq!(
            markers.iter().find_map(|m| ready_group(m)),
            Some(own_group),
            "{markers:?}"
        );
        let ends: Vec<&Vec<String>> = markers.iter().filter(|m| m[0] == "END").collect();
        assert_eq!(
            ends.iter().map(|m| m[1].as_str()).collect::<Vec<_>>(),
            ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"],
            "{markers:?}\n{text}"
        );
        let codes: Vec<&str> = ends.iter().map(|m| m[2].as_str()).collect();
        // A command killed by a signal ends as sh reports it: 128 + the signal.
        assert_eq!(codes, ["0", "0", "0", "0", "0", "0", "3", "0", "0", "143"]);
        // A command starts as from a login: its umask, not the shell's; in a process group of
        // its own; without the helper's FIFOs.
        assert!(
            text.contains("umask=0027 group=own fifos=closed badlang=unset\n"),
            "{text}"
        );
        let expected = if renamer { "renamer=1\n" } else { "renamer=\n" };
        assert!(text.contains(expected), "{text}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "three\n");
        // Written, then the same (no write), then new content keeping the mode.
        assert_eq!(text.matches("DROVER_WRITTEN").count(), 3, "{text}");
        assert_eq!(text.matches("DROVER_SAME").count(), 1, "{text}");
        let mode =
            |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&target), 0o640);
        assert_eq!(mode(&exe), 0o755);
        assert!(text.contains("YES\n") && text.contains("NO\n"), "{text}");
        // The command read nothing from the shell's input: later lines still ran.
        assert!(text.contains("read=\n"), "{text}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".drover."))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn the_shell_functions_work_with_perl_on_the_path() {
        let has_perl = ["/usr/bin/perl", "/bin/perl"]
            .iter()
            .any(|p| std::path::Path::new(p).exists());
        if !has_perl {
            // A skip says why (a test's note, not product output).
            let _ = std::io::stderr().write_all(
                b"skipped: no perl on this machine; the test without perl covers the shell alone\n",
            );
            return;
        }
        check_protocol("/usr/local/bin:/usr/bin:/bin", true);
    }

    #[test]
    fn a_line_cut_short_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        let target = dir.path().join("conf.d/app");
        let line = whole_or_nothing(&sync_line(&file(&target, "x\n", None), "NTEST", 1));
        // Cut anywhere from inside the target's hex word to just before the closing brace,
        // then the input ends (the channel closed): the shell writes nothing anywhere.
        for cut in (line.len() - 40..line.len() - 2)
            .step_by(3)
            .chain([line.len() - 2])
        {
            let (_, markers) = run_shell(
                "/usr/local/bin:/usr/bin:/bin",
                &[line.get(..cut).unwrap().to_owned()],
            );
            assert!(
                !markers.iter().any(|m| m[0] == "END"),
                "cut at {cut}: {markers:?}"
            );
            let written: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .chain(std::fs::read_dir(dir.path().join("conf.d")).unwrap())
                .filter_map(Result::ok)
                .map(|e| e.file_name())
                .filter(|n| n != "conf.d")
                .collect();
            assert!(written.is_empty(), "cut at {cut}: {written:?}");
        }
    }

    #[test]
    fn a_shell_that_loses_its_helper_ends_instead_of_inventing_a_status() {
        if !["/usr/bin/perl", "/bin/perl"]
            .iter()
            .any(|p| std::path::Path::new(p).exists())
        {
            let _ = std::io::stderr().write_all(b"skipped: no perl on this machine\n");
            return;
        }
        // The command's parent is the helper.
        let lines = vec![
            exec_line(&ExecRequest::shell("kill -9 $PPID"), 1),
            exec_line(&ExecRequest::shell("echo after"), 2),
        ];
        let (output, markers) = run_shell("/usr/local/bin:/usr/bin:/bin", &lines);
        let ends: Vec<&Vec<String>> = markers.iter().filter(|m| m[0] == "END").collect();
        assert!(ends.is_empty(), "{markers:?}");
        assert!(!String::from_utf8_lossy(&output).contains("after"));
    }

    #[test]
    fn a_gated_operation_runs_only_after_its_predecessor_succeeded_and_a_skip_carries_on() {
        let dir = tempfile::tempdir().unwrap();
        let mark = |name: &str| format!("touch {}", dir.path().join(name).display());
        let lines = vec![
            exec_line(&ExecRequest::shell("exit 3"), 1),
            gated(&exec_line(&ExecRequest::shell(mark("two")), 2), 1, 2),
            // Behind a skipped one: skipped too, even though 3 below succeeds first.
            exec_line(&ExecRequest::shell("true"), 3),
            gated(&exec_line(&ExecRequest::shell(mark("four")), 4), 2, 4),
            gated(&exec_line(&ExecRequest::shell(mark("five")), 5), 3, 5),
        ];
        let (_, markers) = run_shell("/usr/local/bin:/usr/bin:/bin", &lines);
        let ends: Vec<String> = markers
            .iter()
            .filter(|m| m[0] == "END")
            .map(|m| m[1..].join(" "))
            .collect();
        assert_eq!(ends, ["1 3", "2 skip", "3 0", "4 skip", "5 0"]);
        assert!(!dir.path().join("two").exists());
        assert!(!dir.path().join("four").exists());
        assert!(dir.path().join("five").exists());
    }

    #[test]
    fn a_write_removes_old_temporary_files_a_killed_drover_left_and_keeps_fresh_ones() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join(".drover.DEAD.3");
        let fresh = dir.path().join(".drover.BUSY.1");
        std::fs::write(&old, "half").unwrap();
        std::fs::write(&fresh, "half").unwrap();
        assert!(
            std::process::Command::new("touch")
                .args(["-d", "20 minutes ago"])
                .arg(&old)
                .status()
                .unwrap()
                .success()
        );
        let target = dir.path().join("conf");
        let (output, _) = run_shell(
            "/usr/local/bin:/usr/bin:/bin",
            &[sync_line(&file(&target, "x\n", None), "NTEST", 1)],
        );
        assert!(String::from_utf8_lossy(&output).contains("DROVER_WRITTEN"));
        assert!(!old.exists(), "the old leftover stayed");
        assert!(
            fresh.exists(),
            "a fresh temporary file (another writer's) was removed"
        );
    }

    #[test]
    fn the_shell_functions_work_without_perl() {
        let bin = tempfile::tempdir().unwrap();
        for tool in [
            "stat", "cat", "cmp", "chmod", "chown", "mv", "rm", "mktemp", "mkfifo", "setsid", "sh",
            "readlink",
        ] {
            let found = ["/usr/bin", "/bin"]
                .iter()
                .map(|d| std::path::Path::new(d).join(tool))
                .find(|p| p.exists());
            if let Some(found) = found {
                std::os::unix::fs::symlink(found, bin.path().join(tool)).unwrap();
            }
        }
        check_protocol(&bin.path().display().to_string(), false);
    }
}
