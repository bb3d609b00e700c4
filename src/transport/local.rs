//! `LocalTransport`: commands as processes on the controller itself (the edge-box case and
//! the zero-setup demo), files through the filesystem.
//!
//! Every command runs in its own process group, so a timeout or a forced cancel kills the
//! command and everything it started, not just the shell. `become` goes through `sudo -n`
//! unless it names the user drover already runs as.
#![allow(
    clippy::disallowed_methods,
    reason = "the local transport is where processes are spawned"
)]

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::transport::Synced;
use crate::transport::{
    Captured, CommandLine, Counters, Error, ExecOutput, ExecRequest, ExitStatus, FileState,
    OutputChunk, PutFile, READ_CONTENT_LIMIT, Result, Stream, Transport, describe, script,
};

/// How long a killed command's group gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long to keep reading output after the command ended: a daemon it started may hold
/// the pipes open forever.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
pub struct LocalTransport {
    counters: Counters,
    /// Numbers temporary file names within this process.
    temp_serial: AtomicU64,
}

impl LocalTransport {
    pub fn new() -> Arc<LocalTransport> {
        let transport = LocalTransport::default();
        // "Connecting" to the local host is free, but counted once so reports read the same
        // for every transport.
        Counters::add(&transport.counters.connections);
        Arc::new(transport)
    }
}

impl Transport for LocalTransport {
    async fn exec(&self, request: ExecRequest, force: &CancellationToken) -> Result<ExecOutput> {
        Counters::add(&self.counters.commands);
        Counters::add(&self.counters.channels);
        run(request, force).await
    }

    async fn put_file(&self, file: &PutFile) -> Result<()> {
        Counters::add(&self.counters.files_written);
        if needs_sudo(file.r#become.as_deref()) {
            return put_with_sudo(file).await;
        }
        let file = file.clone();
        let serial = self
            .temp_serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = file.path.clone();
        tokio::task::spawn_blocking(move || put_direct(&file, serial))
            .await
            .map_err(|e| Error::File {
                operation: "write",
                path,
                source: std::io::Error::other(e),
            })?
    }

    async fn read_file(
        &self,
        path: &str,
        r#become: Option<&str>,
        want_content: bool,
    ) -> Result<Option<FileState>> {
        Counters::add(&self.counters.files_read);
        if needs_sudo(r#become) {
            return read_with_sudo(path, r#become, want_content).await;
        }
        let owned = path.to_owned();
        tokio::task::spawn_blocking(move || read_direct(&owned, want_content))
            .await
            .map_err(|e| Error::File {
                operation: "read",
                path: path.to_owned(),
                source: std::io::Error::other(e),
            })?
    }

    async fn sync_file(&self, file: &PutFile) -> Result<Synced> {
        let before = self
            .read_file(&file.path, file.r#become.as_deref(), true)
            .await?;
        let written = !crate::transport::differences(before.as_ref(), file).is_empty();
        if written {
            self.put_file(file).await?;
        }
        Ok(Synced { before, written })
    }

    async fn exists(&self, path: &str, r#become: Option<&str>) -> Result<bool> {
        Counters::add(&self.counters.files_read);
        if needs_sudo(r#become) {
            let mut request = ExecRequest::shell(format!(
                "[ -e {0} ] || [ -L {0} ]",
                crate::template::shell_quote(path)
            ));
            request.r#become = r#become.map(str::to_owned);
            let out = run(request, &CancellationToken::new()).await?;
            return Ok(out.status.success());
        }
        // Anything at the path counts, a directory or a dangling link too.
        Ok(std::fs::symlink_metadata(path).is_ok())
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}

/// The program and arguments for a request, with `sudo -n -u USER` in front when needed.
fn argv(request: &ExecRequest) -> Vec<String> {
    let mut argv = Vec::new();
    if let Some(user) = request.r#become.as_deref().filter(|u| needs_sudo(Some(u))) {
        argv.extend(["sudo", "-n", "-u", user, "--"].map(str::to_owned));
    }
    match &request.command {
        CommandLine::Shell(s) => argv.extend(["sh".to_owned(), "-c".to_owned(), s.clone()]),
        CommandLine::Argv(words) => argv.extend(words.iter().cloned()),
    }
    argv
}

async fn run(request: ExecRequest, force: &CancellationToken) -> Result<ExecOutput> {
    if let Some(user) = request.r#become.as_deref().filter(|u| needs_sudo(Some(u))) {
        tokio::select! {
            proved = ensure_become(user) => proved?,
            () = force.cancelled() => {
                return Ok(ExecOutput {
                    status: ExitStatus::Cancelled,
                    stdout: Captured::default(),
                    stderr: Captured::default(),
                });
            }
        }
    }
    let argv = argv(&request);
    let text = describe(&request.command);
    let (program, rest) = argv.split_first().ok_or_else(|| Error::Spawn {
        command: text.clone(),
        source: std::io::Error::other("empty command"),
    })?;
    let mut command = Command::new(program);
    command
        .args(rest)
        .envs(&request.env)
        .stdin(if request.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // Name the program that could not start (`sudo` for `become`), not the script.
    let mut child = command.spawn().map_err(|source| Error::Spawn {
        command: program.clone(),
        source,
    })?;
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw);
    // Stdin is fed from a task of its own while the output is read: a command that writes
    // a lot before reading all its input would otherwise block us both.
    let feeder = match (request.stdin.clone(), child.stdin.take()) {
        (Some(bytes), Some(mut stdin)) => Some(tokio::spawn(async move {
            // A command that does not read its input closes the pipe; that is not an error.
            let _ = stdin.write_all(&bytes).await;
        })),
        _ => None,
    };
    let stdout = start_pump(child.stdout.take(), Stream::Stdout, &request);
    let stderr = start_pump(child.stderr.take(), Stream::Stderr, &request);
    let timeout = request.timeout.unwrap_or(Duration::MAX);
    let ended = tokio::select! {
        status = child.wait() => Some(status),
        () = sleep(timeout) => None,
        () = force.cancelled() => None,
    };
    let status = if let Some(status) = ended {
        let status = status.map_err(|source| Error::Output {
            command: text.clone(),
            source,
        })?;
        exit_status(status)
    } else {
        let reason = if force.is_cancelled() {
            ExitStatus::Cancelled
        } else {
            ExitStatus::TimedOut
        };
        kill_group(group, &mut child).await;
        reason
    };
    if let Some(feeder) = feeder {
        feeder.abort();
    }
    let stdout = collect(stdout).await;
    let stderr = collect(stderr).await;
    Ok(ExecOutput {
        status,
        stdout,
        stderr,
    })
}

/// Users `sudo -n` has let this process run `sh` as, lately.
static BECAME: crate::transport::BecomeProofs = crate::transport::BecomeProofs::new();

/// How long `sudo -n` may take to answer (it never prompts; a stuck directory lookup can
/// hang it).
const BECOME_CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Proves that `sudo -n` runs `sh` as `user` (at most once a `BECOME_PROOF_TTL`), from the
/// exit status of `transport::become_check`: a refusal is a `BecomeRefused` error whatever
/// language sudo speaks, and is never confused with a command's own exit status 1.
async fn ensure_become(user: &str) -> Result<()> {
    if BECAME.holds(user) {
        return Ok(());
    }
    let spawn_error = |source| Error::Spawn {
        command: "sudo".to_owned(),
        source,
    };
    let check = crate::transport::become_check(user);
    let (program, args) = check
        .split_first()
        .ok_or_else(|| spawn_error(std::io::Error::other("empty check")))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error)?;
    let mut said = Vec::new();
    let stderr = child.stderr.take();
    let checked = tokio::time::timeout(BECOME_CHECK_TIMEOUT, async {
        if let Some(stderr) = stderr {
            let _ = stderr.take(8192).read_to_end(&mut said).await;
        }
        child.wait().await
    })
    .await
    .map_err(|_| Error::Connect {
        host: "this machine".to_owned(),
        kind: crate::transport::ErrorKind::TimedOut,
        message: format!(
            "`sudo -n` did not answer within {BECOME_CHECK_TIMEOUT:?} when asked to run `sh` as {user}"
        ),
    })?
    .map_err(spawn_error)?;
    if !checked.success() {
        return Err(crate::transport::become_refused(
            user,
            &said,
            checked.code().map(i64::from),
        ));
    }
    BECAME.record(user);
    Ok(())
}

async fn sleep(duration: Duration) {
    // `Duration::MAX` would overflow the timer; a century is forever enough.
    tokio::time::sleep(duration.min(Duration::from_secs(100 * 365 * 86_400))).await;
}

/// SIGTERM to the whole group, a grace period, then SIGKILL; then reap the child.
async fn kill_group(group: Option<rustix::process::Pid>, child: &mut tokio::process::Child) {
    if let Some(group) = group {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::TERM);
        if tokio::time::timeout(KILL_GRACE, child.wait())
            .await
            .is_err()
        {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        // Members of the group that outlive the shell get the KILL too.
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

fn exit_status(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatus::Code { code },
        (None, Some(signal)) => ExitStatus::Signal { signal },
        (None, None) => ExitStatus::Code { code: -1 },
    }
}

/// Output read so far from one stream; shared so that a reader given up on (a daemon the
/// command started still holds the pipe) does not lose what it already read.
type Shared = Arc<std::sync::Mutex<Captured>>;

/// Copies one output stream into a capped capture and, live, to the sink.
async fn pump(
    mut stream: impl AsyncRead + Unpin,
    which: Stream,
    sink: Option<mpsc::Sender<OutputChunk>>,
    captured: Shared,
) {
    let mut buffer = vec![0u8; 8192];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let bytes = buffer.get(..n).unwrap_or_default();
                if let Ok(mut captured) = captured.lock() {
                    captured.push(bytes);
                }
                if let Some(sink) = &sink {
                    let _ = sink
                        .send(OutputChunk {
                            stream: which,
                            bytes: bytes.to_vec(),
                        })
                        .await;
                }
            }
        }
    }
}

/// Starts pumping a stream; returns the reader task and where its output goes.
fn start_pump(
    stream: Option<impl AsyncRead + Unpin + Send + 'static>,
    which: Stream,
    request: &ExecRequest,
) -> (Option<tokio::task::JoinHandle<()>>, Shared) {
    let captured: Shared = Arc::new(std::sync::Mutex::new(Captured::with_limit(
        request.capture_limit,
    )));
    let reader =
        stream.map(|s| tokio::spawn(pump(s, which, request.output.clone(), captured.clone())));
    (reader, captured)
}

/// Waits a little for a reader to reach the end of its stream; what was read is kept even
/// when it does not.
async fn collect((reader, captured): (Option<tokio::task::JoinHandle<()>>, Shared)) -> Captured {
    let finished = match reader {
        None => true,
        Some(mut reader) => {
            let done = tokio::time::timeout(DRAIN_GRACE, &mut reader).await.is_ok();
            if !done {
                reader.abort();
            }
            done
        }
    };
    let mut out = captured.lock().map(|c| c.clone()).unwrap_or_default();
    if !finished {
        out.truncated = true;
    }
    out
}

/// Whether becoming `user` takes `sudo`: not when drover already runs as that user.
fn needs_sudo(user: Option<&str>) -> bool {
    user.is_some_and(|u| current_user().is_none_or(|me| me != u))
}

fn current_user() -> Option<&'static str> {
    static USER: OnceLock<Option<String>> = OnceLock::new();
    USER.get_or_init(|| user_name(rustix::process::getuid().as_raw()))
        .as_deref()
}

/// Reads `/etc/passwd`-style files (name:x:id:...) into id → name.
fn id_names(path: &str) -> BTreeMap<u32, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let id = fields.nth(1)?.parse().ok()?;
            Some((id, name.to_owned()))
        })
        .collect()
}

fn users() -> &'static BTreeMap<u32, String> {
    static USERS: OnceLock<BTreeMap<u32, String>> = OnceLock::new();
    USERS.get_or_init(|| id_names("/etc/passwd"))
}

fn groups() -> &'static BTreeMap<u32, String> {
    static GROUPS: OnceLock<BTreeMap<u32, String>> = OnceLock::new();
    GROUPS.get_or_init(|| id_names("/etc/group"))
}

fn user_name(uid: u32) -> Option<String> {
    users().get(&uid).cloned()
}

fn id_of(names: &BTreeMap<u32, String>, name: &str) -> Option<u32> {
    names
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(id, _)| *id)
        .or_else(|| name.parse().ok())
}

fn put_direct(file: &PutFile, serial: u64) -> Result<()> {
    let path = Path::new(&file.path);
    let fail = |operation: &'static str| {
        move |source| Error::File {
            operation,
            path: file.path.clone(),
            source,
        }
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new("/"));
    let temp = dir.join(format!(".{name}.drover-{}-{serial}", std::process::id()));
    // Keep the mode of the file being replaced unless the task sets one.
    let mode = file.mode.unwrap_or_else(|| {
        std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777)
    });
    let result = (|| {
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound && !dir.is_dir() {
                    return Error::Remote {
                        operation: "write",
                        path: file.path.clone(),
                        message: format!(
                            "the directory {} does not exist: create it first (a directory task that this task needs)",
                            dir.display()
                        ),
                    };
                }
                fail("create a temporary file for")(source)
            })?;
        out.write_all(&file.content).map_err(fail("write"))?;
        if file.owner.is_some() || file.group.is_some() {
            let uid = file
                .owner
                .as_deref()
                .map(|o| id_of(users(), o).ok_or_else(|| unknown("user", o, &file.path)))
                .transpose()?;
            let gid = file
                .group
                .as_deref()
                .map(|g| id_of(groups(), g).ok_or_else(|| unknown("group", g, &file.path)))
                .transpose()?;
            std::os::unix::fs::chown(&temp, uid, gid).map_err(fail("set the owner of"))?;
        }
        // After the owner: a chown clears setuid and setgid bits. And the umask may have
        // narrowed the mode at creation.
        out.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(fail("set the mode of"))?;
        out.sync_all().map_err(fail("flush"))?;
        std::fs::rename(&temp, path).map_err(fail("replace"))?;
        // The rename is durable only once the directory is: before the outcome is recorded.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(fail("flush the directory of"))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    if result.is_ok() {
        clean_leftovers(dir);
    }
    result
}

/// Temporary files older than this, left by a drover that was killed mid-write, are removed.
const LEFTOVER_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// Removes temporary files that a killed drover left in `dir` (`.NAME.drover-PID-N`), once
/// per directory per process; only old ones, so another drover writing there now is safe.
fn clean_leftovers(dir: &Path) {
    static CLEANED: std::sync::Mutex<std::collections::BTreeSet<std::path::PathBuf>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let first = CLEANED
        .lock()
        .is_ok_and(|mut cleaned| cleaned.insert(dir.to_owned()));
    if !first {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(std::result::Result::ok) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = name.starts_with('.') && name.contains(".drover-");
        let old = entry
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > LEFTOVER_AGE);
        if ours
            && old
            && entry.file_type().is_ok_and(|t| t.is_file())
            && std::fs::remove_file(entry.path()).is_ok()
        {
            tracing::info!(path = %entry.path().display(), "removed a temporary file a killed drover left");
        }
    }
}

fn unknown(what: &str, name: &str, path: &str) -> Error {
    Error::Remote {
        operation: "set the owner of",
        path: path.to_owned(),
        message: format!("there is no {what} `{name}` on this host"),
    }
}

fn read_direct(path: &str, want_content: bool) -> Result<Option<FileState>> {
    let fail = |source| Error::File {
        operation: "read",
        path: path.to_owned(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(e)),
    };
    // Opening a FIFO would block forever; drover manages regular files only.
    if !meta.is_file() {
        return Err(Error::Remote {
            operation: "manage",
            path: path.to_owned(),
            message: "it exists and is not a regular file (a directory, FIFO or device)".to_owned(),
        });
    }
    let mut file = std::fs::File::open(path).map_err(fail)?;
    let mut hasher = blake3::Hasher::new();
    let keep = want_content && meta.len() <= READ_CONTENT_LIMIT;
    let mut content = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer).map_err(fail)?;
        let Some(chunk) = buffer.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        hasher.update(chunk);
        if keep {
            content.extend_from_slice(chunk);
        }
    }
    Ok(Some(FileState {
        size: meta.len(),
        mode: meta.permissions().mode() & 0o7777,
        owner: user_name(meta.uid()).unwrap_or_else(|| meta.uid().to_string()),
        group: groups()
            .get(&meta.gid())
            .cloned()
            .unwrap_or_else(|| meta.gid().to_string()),
        content_hash: hasher.finalize().to_hex().to_string(),
        content: keep.then_some(content),
    }))
}

/// Writes through `sudo -n`: the same script the SSH transport runs.
async fn put_with_sudo(file: &PutFile) -> Result<()> {
    let mut request = ExecRequest::shell(script::put(file));
    request.stdin = Some(file.content.to_vec());
    request.r#become.clone_from(&file.r#become);
    let out = run(request, &CancellationToken::new()).await?;
    script::put_result(&file.path, &out)
}

async fn read_with_sudo(
    path: &str,
    r#become: Option<&str>,
    want_content: bool,
) -> Result<Option<FileState>> {
    let mut request = ExecRequest::shell(script::read(path, want_content));
    request.r#become = r#become.map(str::to_owned);
    request.capture_limit = script::READ_CAPTURE;
    let out = run(request, &CancellationToken::new()).await?;
    script::parse_read(path, want_content, &out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_files_parse_into_names() {
        let dir = std::env::temp_dir().join(format!("drover-passwd-{}", std::process::id()));
        std::fs::write(
            &dir,
            "root:x:0:0:root:/root:/bin/sh\ndeploy:x:1000:1000::/home/deploy:/bin/sh\nbroken\n",
        )
        .unwrap();
        let names = id_names(dir.to_str().unwrap());
        let _ = std::fs::remove_file(&dir);
        assert_eq!(names.get(&1000).map(String::as_str), Some("deploy"));
        assert_eq!(id_of(&names, "root"), Some(0));
        assert_eq!(
            id_of(&names, "42"),
            Some(42),
            "numeric ids are accepted as they are"
        );
        assert_eq!(id_of(&names, "nobody-here"), None);
    }

    #[test]
    fn become_adds_sudo_only_for_another_user() {
        let mut request = ExecRequest::shell("id -u");
        assert_eq!(argv(&request), ["sh", "-c", "id -u"]);
        request.r#become = Some("someone-else".to_owned());
        assert_eq!(
            argv(&request).get(..4),
            Some(
                &[
                    "sudo".to_owned(),
                    "-n".to_owned(),
                    "-u".to_owned(),
                    "someone-else".to_owned()
                ][..]
            )
        );
        if let Some(me) = current_user() {
            request.r#become = Some(me.to_owned());
            assert_eq!(argv(&request).first().map(String::as_str), Some("sh"));
        }
    }
}
