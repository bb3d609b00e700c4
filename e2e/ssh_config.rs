//! `~/.ssh/config` is honoured: a manifest that names only an alias reaches the host the
//! config describes (`HostName`, `Port`, `User`, `IdentityFile`, `UserKnownHostsFile`), through a
//! `ProxyJump` host.

use std::process::Command;

use crate::fleet::Fleet;

#[test]
fn an_alias_from_ssh_config_is_reached_through_a_proxy_jump() {
    let fleet = Fleet::shared();
    let (target, jump) = (fleet.host(0), fleet.host(1));
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
    let config = format!(
        "Host web-alias\n  HostName 127.0.0.1\n  Port {}\n  User {user}\n  IdentityFile {key}\n  UserKnownHostsFile {known}\n  ProxyJump {user}@127.0.0.1:{}\n",
        target.port,
        jump.port,
        user = fleet.user(),
        key = fleet.client_key().display(),
        known = fleet.known_hosts().display(),
    );
    std::fs::write(home.path().join(".ssh/config"), config).unwrap();
    let manifests = tempfile::tempdir().unwrap();
    let marker = target.root.join("ssh-config-marker");
    std::fs::write(
        manifests.path().join("m.yaml"),
        format!(
            "apiVersion: drover/v1\nkind: Host\nmetadata: {{name: aliased}}\nspec: {{address: web-alias}}\n---\napiVersion: drover/v1\nkind: Workflow\nmetadata: {{name: app}}\nspec:\n  hosts: {{names: [aliased]}}\n  tasks:\n    - {{name: touch, run: \"echo $SSH_CONNECTION > {}\"}}\n",
            marker.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["apply", "--auto-approve", "--color", "never"])
        .arg(manifests.path())
        .env("HOME", home.path())
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let connection = std::fs::read_to_string(&marker).unwrap();
    assert!(
        connection
            .trim()
            .ends_with(&format!("127.0.0.1 {}", target.port)),
        "{connection}"
    );
    // Proof that the jump is used: with the jump host's port closed, the same target fails,
    // and says so.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = std::fs::read_to_string(home.path().join(".ssh/config")).unwrap();
    std::fs::write(
        home.path().join(".ssh/config"),
        config.replace(&format!(":{}\n", jump.port), &format!(":{closed}\n")),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args([
            "apply",
            "--auto-approve",
            "--color",
            "never",
            "--replace",
            "aliased/app/touch",
        ])
        .arg(manifests.path())
        .env("HOME", home.path())
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("through the jump host"),
        "{text}"
    );
}
