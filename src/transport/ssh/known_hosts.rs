//! Host-key verification against OpenSSH `known_hosts` files: known keys pass, an unknown
//! key is refused (or, with `--accept-new-host-keys`, recorded), a changed key is always
//! refused. What was found is kept so the connect error can say it precisely.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use russh::keys::{HashAlg, PublicKey, PublicKeyOrCertificate};

/// Why a host key was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Unknown { fingerprint: String },
    Changed { fingerprint: String, line: usize },
    Unreadable { message: String },
    Certificate,
}

/// The `client::Handler` that checks the server's key.
#[derive(Debug, Clone)]
pub struct HostKeyCheck {
    pub address: String,
    pub port: u16,
    pub known_hosts: PathBuf,
    pub accept_new: bool,
    /// Set when the key was refused; read by whoever called `connect`.
    pub refusal: Arc<Mutex<Option<Refusal>>>,
}

impl HostKeyCheck {
    fn refuse(&self, refusal: Refusal) -> bool {
        if let Ok(mut slot) = self.refusal.lock() {
            *slot = Some(refusal);
        }
        false
    }

    fn verdict(&self, key: &PublicKey) -> bool {
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        match russh::keys::check_known_hosts_path(&self.address, self.port, key, &self.known_hosts)
        {
            Ok(true) => true,
            Ok(false) if self.accept_new => {
                match russh::keys::known_hosts::learn_known_hosts_path(
                    &self.address,
                    self.port,
                    key,
                    &self.known_hosts,
                ) {
                    Ok(()) => true,
                    Err(e) => self.refuse(Refusal::Unreadable {
                        message: format!("cannot record the new key: {e}"),
                    }),
                }
            }
            Ok(false) => self.refuse(Refusal::Unknown { fingerprint }),
            Err(russh::keys::Error::KeyChanged { line }) => {
                self.refuse(Refusal::Changed { fingerprint, line })
            }
            Err(e) if !self.known_hosts.exists() && self.accept_new => {
                let _ = e;
                match russh::keys::known_hosts::learn_known_hosts_path(
                    &self.address,
                    self.port,
                    key,
                    &self.known_hosts,
                ) {
                    Ok(()) => true,
                    Err(e) => self.refuse(Refusal::Unreadable {
                        message: format!("cannot record the new key: {e}"),
                    }),
                }
            }
            Err(_) if !self.known_hosts.exists() => self.refuse(Refusal::Unknown { fingerprint }),
            Err(e) => self.refuse(Refusal::Unreadable {
                message: e.to_string(),
            }),
        }
    }
}

impl russh::client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.verdict(key),
            PublicKeyOrCertificate::Certificate(_) => self.refuse(Refusal::Certificate),
        })
    }
}

/// The message for a refused key: what was found and what to do.
pub fn explain(
    refusal: &Refusal,
    host: &str,
    address: &str,
    port: u16,
    known_hosts: &std::path::Path,
) -> String {
    let entry = if port == 22 {
        address.to_owned()
    } else {
        format!("[{address}]:{port}")
    };
    match refusal {
        Refusal::Unknown { fingerprint } => format!(
            "the host key of {host} ({address}:{port}) is not in {}: its {fingerprint} key is unknown; \
             if it is the right one, add it (`ssh-keyscan -p {port} {address} >> {}`), or pass --accept-new-host-keys to record it on first use",
            known_hosts.display(),
            known_hosts.display()
        ),
        Refusal::Changed { fingerprint, line } => format!(
            "the host key of {host} ({address}:{port}) CHANGED since it was recorded in {}:{line} (now {fingerprint}); \
             someone may be intercepting the connection. If the host was really reinstalled, remove that line \
             (`ssh-keygen -R '{entry}' -f {}`) and connect again",
            known_hosts.display(),
            known_hosts.display()
        ),
        Refusal::Unreadable { message } => format!(
            "cannot check the host key of {host} ({address}:{port}) against {}: {message}",
            known_hosts.display()
        ),
        Refusal::Certificate => format!(
            "{host} ({address}:{port}) presented a host certificate; drover verifies plain host keys only, listed in known_hosts"
        ),
    }
}
