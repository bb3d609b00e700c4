//! Authentication and host keys against real sshd: RSA and ECDSA identity files, ssh-agent,
//! an encrypted key refused with a clear message, an unknown host key refused with its
//! fingerprint, `--accept-new-host-keys` recording it, and `known_hosts` files read as OpenSSH
//! reads them (a stale line before the right one, a `@revoked` key).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::fleet::Fleet;

/// A key pair made for one test, authorised on every host of the fleet.
fn authorised_key(fleet: &Fleet, dir: &Path, kind: &str, passphrase: &str) -> PathBuf {
    let key = dir.join(format!("id_{kind}"));
    let mut args = vec!["-q", "-t", kind, "-N", passphrase, "-f"];
    let key_text = key.to_str().unwrap().to_owned();
    args.push(&key_text);
    if kind == "rsa" {
        args.extend(["-b", "3072"]);
    }
    assert!(
        Command::new("ssh-keygen")
            .args(&args)
            .status()
            .unwrap()
            .success()
    );
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(fleet.dir().join("authorized_keys"))
        .unwrap();
    file.write_all(public.as_bytes()).unwrap();
    key
}

/// Manifests for host-1 only, with the given identity file (or none) and `known_hosts`.
fn manifests(fleet: &Fleet, dir: &Path, identity: Option<&Path>, known_hosts: &Path, marker: &str) {
    let host = fleet.host(0);
    let identity = identity
        .map(|p| format!(", identityFile: {}", p.display()))
        .unwrap_or_default();
    std::fs::write(
        dir.join("m.yaml"),
        format!(
            "apiVersion: drover/v1\nkind: Host\nmetadata: {{name: host-1}}\nspec: {{address: 127.0.0.1, port: {}, user: {}, knownHostsFile: {}{identity}}}\n---\n\
             apiVersion: drover/v1\nkind: Workflow\nmetadata: {{name: app}}\nspec:\n  hosts: {{names: [host-1]}}\n  tasks:\n    - {{name: touch, run: \"touch {}\"}}\n",
            host.port,
            fleet.user(),
            known_hosts.display(),
            host.root.join(marker).display()
        ),
    )
    .unwrap();
}

fn apply(dir: &Path, extra: &[&str], agent: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_drover"));
    command
        .args(["apply", "--auto-approve", "--color", "never"])
        .args(extra)
        .arg(dir);
    match agent {
        Some(socket) => command.env("SSH_AUTH_SOCK", socket),
        None => command.env_remove("SSH_AUTH_SOCK"),
    };
    command.output().unwrap()
}

/// A child process killed when the test ends, pass or fail.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn rsa_and_ecdsa_identity_files_authenticate() {
    let fleet = Fleet::shared();
    for kind in ["rsa", "ecdsa"] {
        let dir = tempfile::tempdir().unwrap();
        let key = authorised_key(fleet, dir.path(), kind, "");
        manifests(
            fleet,
            dir.path(),
            Some(&key),
            &fleet.known_hosts(),
            &format!("auth-{kind}"),
        );
        let out = apply(dir.path(), &[], None);
        assert!(out.status.success(), "{kind}: {}", text(&out));
        assert!(fleet.host(0).root.join(format!("auth-{kind}")).exists());
    }
}

#[test]
fn an_encrypted_identity_file_is_refused_with_what_to_do() {
    let fleet = Fleet::shared();
    let dir = tempfile::tempdir().unwrap();
    let key = authorised_key(fleet, dir.path(), "ed25519", "correct horse");
    manifests(
        fleet,
        dir.path(),
        Some(&key),
        &fleet.known_hosts(),
        "auth-encrypted",
    );
    let out = apply(dir.path(), &[], None);
    assert!(!out.status.success());
    let all = text(&out);
    assert!(
        all.contains("is encrypted") && all.contains("ssh-add"),
        "{all}"
    );
    assert!(
        all.contains("host-1 (127.0.0.1:"),
        "the error names the host: {all}"
    );
}

#[test]
fn ssh_agent_keys_authenticate_without_an_identity_file() {
    let fleet = Fleet::shared();
    let dir = tempfile::tempdir().unwrap();
    let key = authorised_key(fleet, dir.path(), "ed25519", "");
    let socket = dir.path().join("agent.sock");
    let agent = Command::new("ssh-agent")
        .arg("-a")
        .arg(&socket)
        .arg("-D")
        .spawn()
        .unwrap();
    let _agent = Kill(agent);
    assert!(
        crate::fleet::poll(|| socket.exists()),
        "ssh-agent did not start"
    );
    let added = Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &socket)
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    manifests(fleet, dir.path(), None, &fleet.known_hosts(), "auth-agent");
    let out = apply(dir.path(), &[], Some(socket.to_str().unwrap()));
    assert!(out.status.success(), "{}", text(&out));
    // Without the agent, the same manifests fail and say what was tried.
    std::fs::remove_file(fleet.host(0).root.join("auth-agent")).unwrap();
    let out = apply(dir.path(), &["--replace", "host-1/app/touch"], None);
    assert!(
        text(&out).contains("authentication failed for user"),
        "{}",
        text(&out)
    );
}

#[test]
fn an_unknown_host_key_is_refused_then_accepted_on_request() {
    let fleet = Fleet::shared();
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, "").unwrap();
    manifests(
        fleet,
        dir.path(),
        Some(&fleet.client_key()),
        &known_hosts,
        "auth-tofu",
    );
    let out = apply(dir.path(), &[], None);
    let all = text(&out);
    assert!(
        !out.status.success()
            && all.contains("is unknown")
            && all.contains("SHA256:")
            && all.contains("--accept-new-host-keys"),
        "{all}"
    );
    let out = apply(dir.path(), &["--accept-new-host-keys"], None);
    assert!(out.status.success(), "{}", text(&out));
    let recorded = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(
        recorded.contains(&format!("[127.0.0.1]:{}", fleet.host(0).port)),
        "{recorded}"
    );
    // From now on the recorded key is simply verified.
    let out = apply(dir.path(), &["--replace", "host-1/app/touch"], None);
    assert!(out.status.success(), "{}", text(&out));
}

/// Host-1's line in `file`: `[127.0.0.1]:PORT ssh-ed25519 …`.
fn host_line(fleet: &Fleet, file: &Path) -> String {
    let prefix = format!("[127.0.0.1]:{} ", fleet.host(0).port);
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap()
        .to_owned()
}

#[test]
fn known_hosts_lines_are_read_as_openssh_reads_them() {
    let fleet = Fleet::shared();
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    let right = host_line(fleet, &fleet.known_hosts());
    let stale = host_line(fleet, &fleet.wrong_known_hosts());
    manifests(
        fleet,
        dir.path(),
        Some(&fleet.client_key()),
        &known_hosts,
        "auth-known-hosts",
    );
    let openssh_connects = || {
        fleet
            .openssh(0, &known_hosts)
            .arg("true")
            .output()
            .unwrap()
            .status
            .success()
    };

    // A stale line for the host, then the right one: accepted.
    std::fs::write(&known_hosts, format!("{stale}\n{right}\n")).unwrap();
    assert!(openssh_connects(), "OpenSSH accepts it");
    let out = apply(dir.path(), &[], None);
    assert!(out.status.success(), "{}", text(&out));

    // The same key marked `@revoked`, with the right plain line still there: refused, and
    // not learned by --accept-new-host-keys either.
    let file = format!("# fleet\n\n{right}\n@revoked {right}\n");
    std::fs::write(&known_hosts, &file).unwrap();
    assert!(!openssh_connects(), "OpenSSH refuses it");
    let out = apply(
        dir.path(),
        &["--replace", "host-1/app/touch", "--accept-new-host-keys"],
        None,
    );
    let all = text(&out);
    assert!(
        !out.status.success()
            && all.contains("REVOKED")
            && all.contains(&format!("{}:4", known_hosts.display())),
        "{all}"
    );
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), file);
}
