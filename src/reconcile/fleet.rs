//! `Fleet`: how each host of the manifests is reached, kept across rounds so SSH
//! connections stay open between them.
//!
//! Merges a host's manifest fields with `~/.ssh/config` (manifest fields win, as command-line
//! options win over the config for `ssh`) into an `SshTarget`. A host whose target did not
//! change keeps its transport, and so its open connection; one that changed gets a new one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::apply::HostTransport;
use crate::model::desired::{Desired, Host};
use crate::model::host::Transport as HostKind;
use crate::model::meta::HostName;
use crate::transport::local::LocalTransport;
use crate::transport::ssh::config::{Jump, SshConfig};
use crate::transport::ssh::{SshTarget, SshTransport};

/// What SSH connections default to, read from the environment once (by the caller).
#[derive(Debug, Clone)]
pub struct SshDefaults {
    pub home: Option<PathBuf>,
    pub user: String,
    pub accept_new: bool,
    /// `~/.ssh/config`, when there is one.
    pub config: SshConfig,
    /// Why `~/.ssh/config` (or a file it includes) exists but could not be read: SSH hosts
    /// are unreachable until it is fixed, as for `ssh`; local hosts do not need it.
    pub config_error: Option<String>,
}

impl SshDefaults {
    /// `~/x` → `$HOME/x`; relative paths are relative to the manifest directory.
    pub fn path(&self, text: &str, manifests: &Path) -> PathBuf {
        match (text.strip_prefix("~/"), &self.home) {
            (Some(rest), Some(home)) => home.join(rest),
            _ if text.starts_with('/') => PathBuf::from(text),
            _ => manifests.join(text),
        }
    }
}

/// The transports of every host, by name.
#[derive(Debug)]
pub struct Fleet {
    local: Arc<LocalTransport>,
    ssh: BTreeMap<HostName, Arc<SshTransport>>,
}

impl Default for Fleet {
    fn default() -> Fleet {
        Fleet {
            local: LocalTransport::new(),
            ssh: BTreeMap::new(),
        }
    }
}

impl Fleet {
    /// The transport of every host in `desired`. SSH connections open lazily, on first use,
    /// and are reused from earlier rounds when the host's settings are the same.
    pub fn transports(
        &mut self,
        desired: &Desired,
        ssh: &SshDefaults,
        manifests: &Path,
        per_host: usize,
    ) -> BTreeMap<HostName, HostTransport> {
        let mut out = BTreeMap::new();
        for host in desired.hosts.values() {
            let transport = match host.spec.transport() {
                HostKind::Local => HostTransport::Local(Arc::clone(&self.local)),
                HostKind::Ssh if ssh.config_error.is_some() => {
                    HostTransport::Unreachable(ssh.config_error.clone().unwrap_or_default())
                }
                HostKind::Ssh => {
                    let target = ssh_target(host, ssh, manifests, per_host);
                    let reused = self
                        .ssh
                        .get(&host.name)
                        .filter(|t| t.target() == &target)
                        .cloned();
                    let transport = reused.unwrap_or_else(|| SshTransport::new(target));
                    self.ssh.insert(host.name.clone(), transport.clone());
                    HostTransport::Ssh(transport)
                }
            };
            out.insert(host.name.clone(), transport);
        }
        out
    }

    /// SSH connections open now, kept for the next round.
    pub fn open_connections(&self) -> usize {
        self.ssh.values().filter(|t| t.is_connected()).count()
    }

    /// Says goodbye to every open SSH connection.
    pub async fn close(&mut self) {
        for transport in std::mem::take(&mut self.ssh).into_values() {
            transport.close().await;
        }
    }
}

/// Where an SSH host is, from its manifest and `~/.ssh/config`.
pub fn ssh_target(host: &Host, ssh: &SshDefaults, manifests: &Path, per_host: usize) -> SshTarget {
    let alias = host
        .spec
        .address
        .clone()
        .unwrap_or_else(|| host.name.to_string());
    let settings = ssh.config.resolve(&alias);
    let known_hosts = host
        .spec
        .known_hosts_file
        .clone()
        .or_else(|| settings.user_known_hosts_file.clone())
        .unwrap_or_else(|| "~/.ssh/known_hosts".to_owned());
    let identity = host
        .spec
        .identity_file
        .clone()
        .or_else(|| settings.identity_files.first().cloned());
    let jump = settings
        .proxy_jump
        .as_deref()
        .and_then(Jump::parse)
        .map(|jump| {
            let hop = ssh.config.resolve(&jump.host);
            Box::new(SshTarget {
                host: jump.host.clone(),
                address: hop.host_name.clone().unwrap_or_else(|| jump.host.clone()),
                port: jump.port.or(hop.port).unwrap_or(22),
                user: jump
                    .user
                    .clone()
                    .or(hop.user.clone())
                    .unwrap_or_else(|| ssh.user.clone()),
                // Without a key of its own, the jump uses the target's, as is usual for bastions.
                identity: hop
                    .identity_files
                    .first()
                    .or(identity.as_ref())
                    .map(|p| ssh.path(p, manifests)),
                known_hosts: ssh.path(
                    hop.user_known_hosts_file.as_deref().unwrap_or(&known_hosts),
                    manifests,
                ),
                accept_new: ssh.accept_new,
                connect_timeout: hop.connect_timeout.unwrap_or(Duration::from_secs(10)),
                max_channels: 2,
                keepalive: hop.server_alive_interval.unwrap_or(Duration::from_secs(15)),
                jump: None,
            })
        });
    SshTarget {
        host: host.name.to_string(),
        address: settings.host_name.clone().unwrap_or(alias),
        port: host.spec.port.or(settings.port).unwrap_or(22),
        user: host
            .spec
            .user
            .clone()
            .or(settings.user.clone())
            .unwrap_or_else(|| ssh.user.clone()),
        identity: identity.as_deref().map(|p| ssh.path(p, manifests)),
        known_hosts: ssh.path(&known_hosts, manifests),
        accept_new: ssh.accept_new,
        connect_timeout: settings.connect_timeout.unwrap_or(Duration::from_secs(10)),
        // OpenSSH allows 10 sessions per connection; stay under it.
        max_channels: per_host.clamp(1, 8),
        keepalive: settings
            .server_alive_interval
            .unwrap_or(Duration::from_secs(15)),
        jump,
    }
}
