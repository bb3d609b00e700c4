//! The fleet: real OpenSSH `sshd` daemons on 127.0.0.1, one per simulated host.
//!
//! Every fleet lives in its own directory (`$TMPDIR/drover-e2e-XXXXXX`):
//!
//! ```text
//! client_key, client_key.pub   the one key drover (and `ssh`) log in with
//! authorized_keys              that key; every sshd's `AuthorizedKeysFile`
//! known_hosts                  `[127.0.0.1]:PORT ssh-ed25519 …` for every host
//! wrong_known_hosts            the same, but host-1's entry carries host-2's key
//! empty_known_hosts            no entry at all: every host key is unknown
//! host-N/host_key{,.pub}       host N's ed25519 key
//! host-N/sshd_config           ListenAddress 127.0.0.1, its port, its key, …
//! host-N/sshd.log              sshd's log (`-E`), appended across restarts
//! host-N/root/                 "host N's filesystem": scenarios' tasks write under it
//! ```
//!
//! Tests log in as [`Fleet::user`]: `drover-e2e` (shell `/bin/sh`, created on first use) when
//! the tests run as root, whose `.bashrc` would cost ~140 ms per command; else the current user.
//!
//! **Teardown.** A static is never dropped, and a test binary ends with `process::exit`, so
//! nothing in this process can be relied on to stop the daemons. Instead each fleet has a
//! *supervisor*: a small `sh` child that starts and stops the fleet's sshd processes on request
//! and reads those requests from a pipe whose only write end this process holds (close-on-exec,
//! so no other child inherits it). However this process ends (return from `main`, panic,
//! Ctrl-C or `kill -9`), the kernel closes that write end; the supervisor reads end-of-file,
//! kills every sshd it started with their connections and every process their sessions
//! started, even those that left the process tree (see [`SUPERVISOR`]), and removes the
//! fleet directory, all within about 0.1 s.
//! An exclusive fleet does the same when dropped, and waits for it. The test
//! `fleet_checks::shared_fleet_leaves_no_process_or_file_after_the_test_binary_exits` checks it.
//!
//! Scenarios that only connect share [`Fleet::shared`]; scenarios that stop hosts take a
//! private [`Fleet::exclusive`] so that the other tests, running in parallel, never see it.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};

/// Hosts in the shared fleet unless `DROVER_E2E_HOSTS` says otherwise.
pub const DEFAULT_HOSTS: usize = 4;
/// The user tests log in as when they run as root.
pub const LOGIN_USER: &str = "drover-e2e";
/// How long an sshd may take to accept connections, or to stop accepting them.
const DEADLINE: Duration = Duration::from_secs(10);
/// Interval between two looks at a condition being polled.
const POLL: Duration = Duration::from_millis(5);
/// Fresh ports tried per host before giving up; another process may take a port between
/// the moment we see it free and sshd's `bind`.
const PORT_ATTEMPTS: usize = 5;

/// One simulated host: an sshd listening on 127.0.0.1 and a directory standing for its
/// filesystem. A snapshot: [`Fleet::host`] returns the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// `host-1` … `host-N`; also its name in the manifests [`Fleet::manifests`] writes.
    pub name: String,
    pub port: u16,
    /// The host's "root directory", writable by [`Fleet::user`].
    pub root: PathBuf,
    /// The sshd listener's pid; `None` while the host is stopped.
    pub pid: Option<u32>,
}

/// A set of sshd daemons on 127.0.0.1 with their keys and `known_hosts` files.
#[derive(Debug)]
pub struct Fleet {
    dir: PathBuf,
    user: String,
    shared: bool,
    extra_config: String,
    hosts: Vec<Mutex<Host>>,
    supervisor: Mutex<Supervisor>,
}

impl Fleet {
    /// The fleet shared by every test of this binary, started on first use with
    /// [`DEFAULT_HOSTS`] hosts (or `DROVER_E2E_HOSTS`). Its hosts are never stopped, and their
    /// roots are shared too: a test writes under a subdirectory named after itself.
    #[track_caller]
    pub fn shared() -> &'static Fleet {
        static SHARED: OnceLock<Fleet> = OnceLock::new();
        SHARED.get_or_init(|| {
            let n_hosts = match std::env::var("DROVER_E2E_HOSTS") {
                Ok(n) => n.parse().expect("DROVER_E2E_HOSTS is a number of hosts"),
                Err(_) => DEFAULT_HOSTS,
            };
            Fleet::launch(n_hosts, true).unwrap_or_else(|err| panic!("{err:#}"))
        })
    }

    /// A private fleet of `n_hosts` hosts for destructive scenarios ([`Fleet::stop`]). Its
    /// daemons are killed and its directory removed when it is dropped.
    #[track_caller]
    pub fn exclusive(n_hosts: usize) -> Fleet {
        Fleet::launch(n_hosts, false).unwrap_or_else(|err| panic!("{err:#}"))
    }

    /// The number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Host `i`, counting from 0: `host(0)` is `host-1`.
    #[track_caller]
    pub fn host(&self, i: usize) -> Host {
        self.hosts[i].lock().unwrap().clone()
    }

    /// Every host, in order.
    pub fn hosts(&self) -> Vec<Host> {
        (0..self.len()).map(|i| self.host(i)).collect()
    }

    /// The user every host accepts the client key for.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The fleet directory; everything in it is removed with the fleet.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The private key every host accepts.
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client_key")
    }

    /// A `known_hosts` file with every host's true key.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// A `known_hosts` file in which host-1's entry carries another key (host-2's, or the client
    /// key's in a fleet of one): to host-1's client, host-1 looks like a man in the middle.
    /// The other entries are true.
    pub fn wrong_known_hosts(&self) -> PathBuf {
        self.dir.join("wrong_known_hosts")
    }

    /// An empty `known_hosts` file: every host key is unknown.
    pub fn empty_known_hosts(&self) -> PathBuf {
        self.dir.join("empty_known_hosts")
    }

    /// Everything host `i`'s sshd has logged so far.
    #[track_caller]
    pub fn sshd_log(&self, i: usize) -> String {
        let name = self.host(i).name;
        fs::read_to_string(self.dir.join(name).join("sshd.log")).unwrap_or_default()
    }

    /// An OpenSSH client command logging in to host `i` as [`Fleet::user`] with the client key,
    /// checking the host key against `known_hosts` and nothing else (no `~/.ssh/config`, no
    /// agent, no prompt). Add the remote command with `.arg(…)`.
    pub fn openssh(&self, i: usize, known_hosts: &Path) -> Command {
        let host = self.host(i);
        let mut command = Command::new("ssh");
        command
            .args(["-F", "/dev/null", "-i"])
            .arg(self.client_key())
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-o",
                "ConnectTimeout=10",
                "-p",
            ])
            .arg(host.port.to_string())
            .arg(format!("{}@127.0.0.1", self.user))
            .stdin(Stdio::null());
        command
    }

    /// Writes a manifest directory for this fleet into `dir`: `hosts.yaml`, one `kind: Host` per
    /// host (labels `role: web` and `index: "N"`, var `root` = the host's root directory), and
    /// `workflow_yaml` as `app.yaml`.
    #[track_caller]
    pub fn manifests(&self, dir: &Path, workflow_yaml: &str) {
        self.manifests_with_known_hosts(dir, workflow_yaml, &self.known_hosts());
    }

    /// [`Fleet::manifests`] whose hosts check their keys against `known_hosts`, e.g.
    /// [`Fleet::wrong_known_hosts`].
    #[track_caller]
    pub fn manifests_with_known_hosts(&self, dir: &Path, workflow_yaml: &str, known_hosts: &Path) {
        let mut yaml = String::from("# Written by the e2e fleet harness (e2e/fleet.rs).\n");
        for (i, host) in self.hosts().iter().enumerate() {
            if i > 0 {
                yaml.push_str("---\n");
            }
            write!(
                yaml,
                "apiVersion: drover/v1
kind: Host
metadata:
  name: {name}
  labels: {{role: web, index: \"{index}\"}}
spec:
  address: 127.0.0.1
  port: {port}
  user: {user}
  identityFile: {key}
  knownHostsFile: {known_hosts}
  vars: {{root: {root}}}
",
                name = host.name,
                index = i + 1,
                port = host.port,
                user = quoted(&self.user),
                key = quoted_path(&self.client_key()),
                known_hosts = quoted_path(known_hosts),
                root = quoted_path(&host.root),
            )
            .unwrap();
        }
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("hosts.yaml"), yaml).unwrap();
        fs::write(dir.join("app.yaml"), workflow_yaml).unwrap();
    }

    /// Kills host `i`'s sshd and every connection to it, and returns once its port refuses
    /// connections. Only on an exclusive fleet.
    #[track_caller]
    pub fn stop(&self, i: usize) {
        assert!(
            !self.shared,
            "stop hosts of a Fleet::exclusive(), never of the shared fleet"
        );
        let mut host = self.hosts[i].lock().unwrap();
        let pid = host
            .pid
            .take()
            .unwrap_or_else(|| panic!("{} is already stopped", host.name));
        self.kill(pid, host.port).unwrap();
        let refused = poll(|| TcpStream::connect_timeout(&loopback(host.port), POLL).is_err());
        assert!(
            refused,
            "{} still accepts connections on port {}",
            host.name, host.port
        );
    }

    /// Starts host `i` again, on the same port with the same key, and returns once it accepts
    /// connections. Only on an exclusive fleet.
    #[track_caller]
    pub fn start(&self, i: usize) {
        assert!(
            !self.shared,
            "start hosts of a Fleet::exclusive(), never of the shared fleet"
        );
        let mut host = self.hosts[i].lock().unwrap();
        assert!(host.pid.is_none(), "{} is already running", host.name);
        self.run_sshd(&mut host, false)
            .unwrap_or_else(|err| panic!("{err:#}"));
    }

    fn launch(n_hosts: usize, shared: bool) -> Result<Fleet> {
        ensure!(n_hosts > 0, "a fleet has at least one host");
        let sshd = sshd_path()?;
        let user = login_user()?;
        let owner = if is_root()? { Some(ids(&user)?) } else { None };
        if owner.is_some() {
            // sshd running as root refuses to start without its privilege separation
            // directory, which only its init script or systemd unit creates.
            fs::create_dir_all("/run/sshd").context("creating /run/sshd")?;
        }
        let dir = tempfile::Builder::new()
            .prefix("drover-e2e-")
            .tempdir()
            .context("creating the fleet directory")?
            .keep();
        // From here on the supervisor removes the directory whatever happens.
        let supervisor = Supervisor::spawn(&dir, &sshd)?;
        // The login user must reach authorized_keys and the host roots.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
        let names: Vec<String> = (1..=n_hosts).map(|n| format!("host-{n}")).collect();
        let mut hosts = Vec::new();
        for name in &names {
            let root = dir.join(name).join("root");
            fs::create_dir_all(&root)?;
            fs::set_permissions(dir.join(name), fs::Permissions::from_mode(0o755))?;
            fs::set_permissions(&root, fs::Permissions::from_mode(0o755))?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&root, Some(uid), Some(gid))
                    .with_context(|| format!("handing {} to {user}", root.display()))?;
            }
            hosts.push(Mutex::new(Host {
                name: name.clone(),
                port: 0,
                root,
                pid: None,
            }));
        }
        let mut keys = vec![dir.join("client_key")];
        keys.extend(names.iter().map(|name| dir.join(name).join("host_key")));
        generate_keys(&keys)?;
        fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))?;
        fs::set_permissions(
            dir.join("authorized_keys"),
            fs::Permissions::from_mode(0o644),
        )?;
        let extra_config = extra_config(&sshd, &dir)?;
        let fleet = Fleet {
            dir,
            user,
            shared,
            extra_config,
            hosts,
            supervisor: Mutex::new(supervisor),
        };
        let started = &fleet;
        std::thread::scope(|scope| {
            let runs: Vec<_> = (0..n_hosts)
                .map(|i| {
                    scope.spawn(move || {
                        started.run_sshd(&mut started.hosts[i].lock().unwrap(), true)
                    })
                })
                .collect();
            runs.into_iter().try_for_each(|run| run.join().unwrap())
        })?;
        fleet.write_known_hosts()?;
        Ok(fleet)
    }

    /// Starts `host`'s sshd (on a fresh port if `fresh_port`) and waits until it accepts
    /// connections.
    fn run_sshd(&self, host: &mut Host, fresh_port: bool) -> Result<()> {
        let host_dir = self.dir.join(&host.name);
        let log = host_dir.join("sshd.log");
        for _ in 0..PORT_ATTEMPTS {
            if fresh_port {
                host.port = free_port()?;
            }
            self.write_sshd_config(host)?;
            let log_start = fs::metadata(&log).map_or(0, |m| m.len());
            let reply = self.request(&format!("start {} {}", host.name, host.port))?;
            let pid: u32 = reply
                .parse()
                .with_context(|| format!("supervisor said {reply:?}"))?;
            match wait_until_listening(pid, host.port, &log, log_start) {
                Ok(()) => {
                    host.pid = Some(pid);
                    return Ok(());
                }
                Err(Startup::PortTaken) if fresh_port => self.kill(pid, host.port)?,
                Err(failure) => {
                    self.kill(pid, host.port)?;
                    let log_text = fs::read_to_string(&log).unwrap_or_default();
                    bail!(
                        "sshd for {} on port {} {failure}; its log ({}):\n{log_text}",
                        host.name,
                        host.port,
                        log.display()
                    );
                }
            }
        }
        bail!(
            "{}: found no free port in {PORT_ATTEMPTS} attempts",
            host.name
        )
    }

    fn write_sshd_config(&self, host: &Host) -> Result<()> {
        let host_dir = self.dir.join(&host.name);
        let config = format!(
            "# Written by the e2e fleet harness (e2e/fleet.rs).
ListenAddress 127.0.0.1
Port {port}
HostKey \"{host_key}\"
PidFile \"{pid_file}\"
AuthorizedKeysFile \"{authorized_keys}\"
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
MaxSessions 10
LogLevel VERBOSE
# Parallel tests open many connections at once; the default 10 would drop some.
MaxStartups 100
Subsystem sftp internal-sftp
{extra}",
            port = host.port,
            host_key = host_dir.join("host_key").display(),
            pid_file = host_dir.join("sshd.pid").display(),
            authorized_keys = self.dir.join("authorized_keys").display(),
            extra = self.extra_config,
        );
        fs::write(host_dir.join("sshd_config"), config).context("writing sshd_config")
    }

    fn write_known_hosts(&self) -> Result<()> {
        let hosts = self.hosts();
        let keys = hosts
            .iter()
            .map(|host| public_key(&self.dir.join(&host.name).join("host_key.pub")))
            .collect::<Result<Vec<_>>>()?;
        let impostor = match keys.get(1) {
            Some(key) => key.clone(),
            None => public_key(&self.dir.join("client_key.pub"))?,
        };
        let mut known_hosts = String::new();
        let mut wrong_known_hosts = String::new();
        for (i, (host, key)) in hosts.iter().zip(&keys).enumerate() {
            writeln!(known_hosts, "[127.0.0.1]:{} {key}", host.port)?;
            let key = if i == 0 { &impostor } else { key };
            writeln!(wrong_known_hosts, "[127.0.0.1]:{} {key}", host.port)?;
        }
        fs::write(self.known_hosts(), known_hosts)?;
        fs::write(self.wrong_known_hosts(), wrong_known_hosts)?;
        fs::write(self.empty_known_hosts(), "")?;
        Ok(())
    }

    /// Has the supervisor take down the host whose sshd is `pid`, listening on `port`.
    fn kill(&self, pid: u32, port: u16) -> Result<()> {
        let reply = self.request(&format!("stop {pid} {port}"))?;
        ensure!(
            reply == "stopped",
            "supervisor said {reply:?} to stop {pid}"
        );
        Ok(())
    }

    fn request(&self, line: &str) -> Result<String> {
        self.supervisor.lock().unwrap().request(line)
    }
}

/// The fleet's `sh` child that starts and stops its sshd processes; see the module docs.
#[derive(Debug)]
struct Supervisor {
    child: Child,
    /// Requests; closing it (here or by the kernel when this process dies) tears down the fleet.
    requests: Option<ChildStdin>,
    replies: BufReader<ChildStdout>,
}

/// `sh -c SUPERVISOR drover-e2e-fleet DIR SSHD`. Requests, one per line:
/// * `start host-N PORT`: starts `SSHD -D -e -f DIR/host-N/sshd_config -E DIR/host-N/sshd.log`
///   (which listens on PORT), replies with its pid;
/// * `stop PID PORT`: takes that host down (`down`), replies `stopped`.
///
/// At end of input it takes every host down and removes DIR. It ignores SIGINT, SIGHUP and
/// SIGPIPE, which would otherwise kill it together with the test binary before cleanup.
///
/// `down` kills the sshd, its per-connection children and their sessions' processes: first
/// the tree under the listener, each process stopped before its children are listed so that
/// none forks meanwhile; then the processes that left that tree (`setsid`, double forks, as a
/// transport does to kill a remote process group), found by the `SSH_CONNECTION` that sshd
/// set for their session and they inherited. `ours` guards against a pid that was reused by a
/// process that is no sshd of this fleet.
const SUPERVISOR: &str = r#"
dir=$1 sshd=$2 running=
trap '' INT HUP PIPE
ours() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$dir"; }
tree() {
  kill -STOP "$1" 2>/dev/null
  for child in $(pgrep -P "$1"); do tree "$child"; done
  kill -KILL "$1" 2>/dev/null
}
sessions() {
  grep -lzx "SSH_CONNECTION=[0-9.]* [0-9]* 127\.0\.0\.1 $1" /proc/[0-9]*/environ 2>/dev/null |
    sed 's|^/proc/\([0-9]*\)/environ$|\1|'
}
down() {
  if ours "$1"; then tree "$1"; fi
  wait "$1" 2>/dev/null
  rounds=0
  while found=$(sessions "$2"); [ -n "$found" ] && [ "$rounds" -lt 100 ]; do
    kill -KILL $found 2>/dev/null
    rounds=$((rounds + 1))
  done
}
while read -r verb what port; do
  case $verb in
  start)
    (trap - HUP PIPE; exec "$sshd" -D -e -f "$dir/$what/sshd_config" -E "$dir/$what/sshd.log") \
      </dev/null >>"$dir/$what/sshd.log" 2>&1 &
    running="$running $!:$port"
    echo "$!" ;;
  stop)
    down "$what" "$port"
    rest=
    for host in $running; do [ "$host" = "$what:$port" ] || rest="$rest $host"; done
    running=$rest
    echo stopped ;;
  *)
    echo "unknown request: $verb" ;;
  esac
done
for host in $running; do down "${host%:*}" "${host#*:}"; done
wait
rm -rf -- "$dir"
"#;

impl Supervisor {
    fn spawn(dir: &Path, sshd: &Path) -> Result<Supervisor> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("drover-e2e-fleet")
            .arg(dir)
            .arg(sshd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the fleet supervisor (sh)")?;
        let requests = child.stdin.take();
        let replies = BufReader::new(child.stdout.take().context("supervisor stdout")?);
        Ok(Supervisor {
            child,
            requests,
            replies,
        })
    }

    fn request(&mut self, line: &str) -> Result<String> {
        let requests = self.requests.as_mut().context("supervisor closed")?;
        writeln!(requests, "{line}").context("writing to the fleet supervisor")?;
        requests.flush()?;
        let mut reply = String::new();
        self.replies
            .read_line(&mut reply)
            .context("reading from the fleet supervisor")?;
        ensure!(!reply.is_empty(), "the fleet supervisor exited");
        Ok(reply.trim_end().to_owned())
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // End of input: the supervisor kills its daemons and removes the fleet directory.
        drop(self.requests.take());
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
enum Startup {
    PortTaken,
    Died,
    TimedOut,
}

impl std::fmt::Display for Startup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Startup::PortTaken => "found its port taken",
            Startup::Died => "exited",
            Startup::TimedOut => "did not accept connections within 10 s",
        })
    }
}

/// Waits until sshd `pid` logged that it listens on `port` (its log from byte `log_start` on)
/// and accepts a TCP connection there.
fn wait_until_listening(pid: u32, port: u16, log: &Path, log_start: u64) -> Result<(), Startup> {
    let listening = format!("Server listening on 127.0.0.1 port {port}.");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let log_text = fs::read(log).unwrap_or_default();
        let since_start = log_text
            .get(usize::try_from(log_start).unwrap()..)
            .unwrap_or(&[]);
        let log_text = String::from_utf8_lossy(since_start);
        if !is_running(pid) {
            if log_text.contains("Address already in use") {
                return Err(Startup::PortTaken);
            }
            return Err(Startup::Died);
        }
        if log_text.contains(&listening)
            && TcpStream::connect_timeout(&loopback(port), Duration::from_secs(1)).is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Startup::TimedOut);
        }
        std::thread::sleep(POLL);
    }
}

/// Polls `condition` until it holds (true) or [`DEADLINE`] passes (false).
pub fn poll(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Whether `pid` exists and is not a zombie.
fn is_running(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `PID (COMM) STATE …`; COMM may itself contain parentheses.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X'))
}

/// The pids of the processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A port nobody listens on right now (sshd may still lose it to another process).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(loopback(0)).context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// `/usr/sbin/sshd`, else `sshd` on `PATH`. sshd re-executes itself, so the path is absolute.
fn sshd_path() -> Result<PathBuf> {
    let standard = PathBuf::from("/usr/sbin/sshd");
    if standard.is_file() {
        return Ok(standard);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("sshd"))
        .find(|path| path.is_absolute() && path.is_file())
        .context("no sshd in /usr/sbin or on PATH: install openssh-server (.ci/run does)")
}

/// Config lines this sshd needs beyond the common ones: OpenSSH 9.8+ penalises addresses
/// whose connections fail authentication (as the `known_hosts` scenarios' do), which would
/// lock 127.0.0.1 out of the whole shared fleet; older versions reject the keyword.
fn extra_config(sshd: &Path, dir: &Path) -> Result<String> {
    let penalties = "PerSourcePenalties no\n";
    let probe = dir.join("probe_config");
    fs::write(&probe, penalties)?;
    let output = Command::new(sshd)
        .arg("-t")
        .arg("-f")
        .arg(&probe)
        .output()?;
    fs::remove_file(&probe)?;
    let rejected = String::from_utf8_lossy(&output.stderr).contains("PerSourcePenalties");
    Ok(if rejected {
        String::new()
    } else {
        penalties.to_owned()
    })
}

/// Generates ed25519 key pairs at `paths` (and `.pub` next to them), in parallel.
fn generate_keys(paths: &[PathBuf]) -> Result<()> {
    let children = paths
        .iter()
        .map(|path| {
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "drover-e2e", "-f"])
                .arg(path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("running ssh-keygen (openssh-client)")
        })
        .collect::<Result<Vec<_>>>()?;
    for (path, child) in paths.iter().zip(children) {
        checked(
            child.wait_with_output()?,
            &format!("ssh-keygen -f {}", path.display()),
        )?;
    }
    Ok(())
}

/// `ssh-ed25519 AAAA…` from a `.pub` file, without its comment.
fn public_key(path: &Path) -> Result<String> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut fields = text.split_whitespace();
    match (fields.next(), fields.next()) {
        (Some(kind), Some(key)) => Ok(format!("{kind} {key}")),
        _ => bail!("{} holds no public key", path.display()),
    }
}

fn is_root() -> Result<bool> {
    Ok(stdout_of(Command::new("id").arg("-u"))? == "0")
}

/// `(uid, gid)` of `user`.
fn ids(user: &str) -> Result<(u32, u32)> {
    let uid = stdout_of(Command::new("id").args(["-u", user]))?.parse()?;
    let gid = stdout_of(Command::new("id").args(["-g", user]))?.parse()?;
    Ok((uid, gid))
}

/// The user tests log in as: [`LOGIN_USER`] when running as root (created or repaired once
/// per process), else the current user.
fn login_user() -> Result<String> {
    static USER: OnceLock<Result<String, String>> = OnceLock::new();
    USER.get_or_init(|| ensure_login_user().map_err(|err| format!("{err:#}")))
        .clone()
        .map_err(|err| anyhow!(err))
}

fn ensure_login_user() -> Result<String> {
    if !is_root()? {
        return stdout_of(Command::new("id").arg("-un"));
    }
    let exists = || {
        Command::new("id")
            .arg(LOGIN_USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    // Another e2e process may be creating it at the same moment; `useradd` then fails.
    let mut last_error = String::new();
    let created = poll(|| {
        if exists() {
            return true;
        }
        match Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", "-p", "*", LOGIN_USER])
            .output()
        {
            Ok(output) if output.status.success() => true,
            Ok(output) => {
                last_error = String::from_utf8_lossy(&output.stderr).into_owned();
                false
            }
            Err(err) => {
                last_error = format!("running useradd: {err}");
                false
            }
        }
    });
    ensure!(created, "cannot create user {LOGIN_USER}: {last_error}");
    // Without PAM, sshd refuses accounts whose password starts with `!` ("locked"), which is
    // how a plain `useradd` leaves them; `*` is "no password" without the lock.
    let shadow = fs::read_to_string("/etc/shadow").unwrap_or_default();
    let prefix = format!("{LOGIN_USER}:");
    let locked = shadow
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .any(|rest| rest.starts_with('!'));
    let passwd = stdout_of(Command::new("getent").args(["passwd", LOGIN_USER]))?;
    let shell_is_sh = passwd.ends_with(":/bin/sh");
    if locked || !shell_is_sh {
        checked(
            Command::new("usermod")
                .args(["-p", "*", "-s", "/bin/sh", LOGIN_USER])
                .output()?,
            "usermod",
        )?;
    }
    Ok(LOGIN_USER.to_owned())
}

/// The trimmed stdout of `command`, which must succeed.
fn stdout_of(command: &mut Command) -> Result<String> {
    let what = format!("{command:?}");
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    let output = checked(output, &what)?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn checked(output: Output, what: &str) -> Result<Output> {
    ensure!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(output)
}

/// `value` as a YAML (JSON) string.
fn quoted(value: &str) -> String {
    serde_json::to_string(value).unwrap()
}

fn quoted_path(path: &Path) -> String {
    quoted(&path.to_string_lossy())
}
