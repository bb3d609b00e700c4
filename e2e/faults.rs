//! Faults that must never hang drover: a connection that freezes mid-upload (a relay that
//! stops forwarding without closing), where SIGTERM must still end the process within
//! seconds with the run recorded as cancelled.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::fleet::{Fleet, poll};

/// A TCP relay to `port` that stops forwarding (but keeps both sockets open) once it has
/// carried `freeze_after` bytes towards the server: a relay frozen mid-transfer.
struct FreezingRelay {
    port: u16,
    forwarded: Arc<AtomicU64>,
    frozen: Arc<AtomicBool>,
}

impl FreezingRelay {
    fn start(port: u16, freeze_after: u64) -> FreezingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let relay_port = listener.local_addr().unwrap().port();
        let forwarded = Arc::new(AtomicU64::new(0));
        let frozen = Arc::new(AtomicBool::new(false));
        let (f, z) = (forwarded.clone(), frozen.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                    return;
                };
                let (f, z) = (f.clone(), z.clone());
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pump(client, server, Some(&(f, z, freeze_after))));
                std::thread::spawn(move || pump(s2, c2, None));
            }
        });
        FreezingRelay {
            port: relay_port,
            forwarded,
            frozen,
        }
    }
}

/// Copies `from` to `to`; towards the server, stops for good after the byte budget.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    budget: Option<&(Arc<AtomicU64>, Arc<AtomicBool>, u64)>,
) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        if let Some((_, frozen, _)) = budget
            && frozen.load(Ordering::SeqCst)
        {
            // Frozen: hold both sockets open and forward nothing, forever.
            std::thread::sleep(Duration::from_secs(3600));
        }
        let Ok(n) = from.read(&mut buffer) else {
            return;
        };
        if n == 0 {
            return;
        }
        if to.write_all(&buffer[..n]).is_err() {
            return;
        }
        if let Some((forwarded, frozen, after)) = budget
            && forwarded.fetch_add(n as u64, Ordering::SeqCst) + n as u64 >= *after
        {
            frozen.store(true, Ordering::SeqCst);
        }
    }
}

#[test]
fn sigterm_ends_an_apply_stuck_on_a_frozen_upload_and_records_it_cancelled() {
    let fleet = Fleet::shared();
    let host = fleet.host(0);
    let relay = FreezingRelay::start(host.port, 4 * 1024 * 1024);
    let dir = tempfile::tempdir().unwrap();
    // The relay is host-1 at another port: its known_hosts line is the same key there.
    let known = std::fs::read_to_string(fleet.known_hosts()).unwrap();
    let line = known
        .lines()
        .find(|l| l.starts_with(&format!("[127.0.0.1]:{} ", host.port)))
        .unwrap()
        .replacen(&host.port.to_string(), &relay.port.to_string(), 1);
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("{line}\n")).unwrap();
    // 32 MiB of source: far more than the relay lets through before it freezes.
    std::fs::write(dir.path().join("big.bin"), vec![7u8; 32 * 1024 * 1024]).unwrap();
    let target = host.root.join("frozen-upload.bin");
    let manifests = format!(
        "apiVersion: drover/v1
kind: Host
metadata: {{name: relayed}}
spec: {{address: 127.0.0.1, port: {port}, user: {user}, identityFile: {key}, knownHostsFile: {kh}}}
---
apiVersion: drover/v1
kind: Workflow
metadata: {{name: app}}
spec:
  hosts: {{names: [relayed]}}
  tasks:
    - {{name: big, file: {{path: {target}, source: big.bin}}}}
",
        port = relay.port,
        user = fleet.user(),
        key = fleet.client_key().display(),
        kh = known_hosts.display(),
        target = target.display(),
    );
    std::fs::write(dir.path().join("hosts.yaml"), manifests).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["apply", "--auto-approve", "--color", "never"])
        .arg(dir.path())
        .env_remove("SSH_AUTH_SOCK")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        poll(|| relay.frozen.load(Ordering::SeqCst)),
        "the upload never reached the relay's limit ({} bytes forwarded)",
        relay.forwarded.load(Ordering::SeqCst)
    );
    // Stuck now. A service manager stops it:
    let stopped_at = Instant::now();
    send_signal(child.id(), "TERM");
    let deadline = stopped_at + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "drover did not end after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = stopped_at.elapsed();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("relayed/app/big cancelled"), "{text}");
    eprintln!("ended {took:?} after SIGTERM");
    let history = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["history", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let history = String::from_utf8_lossy(&history.stdout);
    assert!(history.contains("cancelled"), "{history}");
    assert!(!history.contains("running"), "{history}");
}

/// Sends a signal through the `kill` command (the test crate has no libc binding).
fn send_signal(pid: u32, signal: &str) {
    assert!(
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success()
    );
}
