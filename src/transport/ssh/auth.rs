//! Authentication: the host's identity file, else the keys of ssh-agent (`SSH_AUTH_SOCK`).
//! No passwords. A failure says which user and which keys were tried.

use std::path::Path;
use std::sync::Arc;

use russh::client::Handle;
use russh::keys::PrivateKeyWithHashAlg;

use crate::transport::ssh::known_hosts::HostKeyCheck;

/// Authenticates `user`; on failure, returns what was tried, for the error message.
pub async fn authenticate(
    handle: &mut Handle<HostKeyCheck>,
    user: &str,
    identity: Option<&Path>,
) -> Result<(), String> {
    let mut tried = Vec::new();
    if let Some(path) = identity {
        let key = match russh::keys::load_secret_key(path, None) {
            Ok(key) => key,
            Err(russh::keys::Error::KeyIsEncrypted) => {
                return Err(format!(
                    "the identity file {} is encrypted; drover does not ask for passphrases: load it into ssh-agent (`ssh-add {}`) and drop `identityFile`",
                    path.display(),
                    path.display()
                ));
            }
            Err(e) => {
                return Err(format!(
                    "cannot read the identity file {}: {e}",
                    path.display()
                ));
            }
        };
        let hash = if key.algorithm().is_rsa() {
            handle
                .best_supported_rsa_hash()
                .await
                .ok()
                .flatten()
                .flatten()
        } else {
            None
        };
        let result = handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(|e| format!("authentication with {} broke off: {e}", path.display()))?;
        if result.success() {
            return Ok(());
        }
        tried.push(path.display().to_string());
    }
    let agent_keys = agent(handle, user).await;
    match agent_keys {
        Ok(true) => return Ok(()),
        Ok(false) => {}
        Err(n) => tried.push(n),
    }
    Err(format!(
        "authentication failed for user {user} with {}",
        if tried.is_empty() {
            "no key (no identityFile and no ssh-agent)".to_owned()
        } else {
            tried.join(" and ")
        }
    ))
}

/// Tries every agent key; `Err` names how many were tried.
async fn agent(handle: &mut Handle<HostKeyCheck>, user: &str) -> Result<bool, String> {
    let Ok(mut agent) = russh::keys::agent::client::AgentClient::connect_env().await else {
        return Err("no ssh-agent".to_owned());
    };
    let identities = agent
        .request_identities()
        .await
        .map_err(|_| "an ssh-agent that did not answer".to_owned())?;
    let count = identities.len();
    for identity in identities {
        let key = identity.public_key().into_owned();
        let hash = if key.algorithm().is_rsa() {
            handle
                .best_supported_rsa_hash()
                .await
                .ok()
                .flatten()
                .flatten()
        } else {
            None
        };
        if let Ok(result) = handle
            .authenticate_publickey_with(user, key, hash, &mut agent)
            .await
            && result.success()
        {
            return Ok(true);
        }
    }
    Err(format!(
        "{count} agent key{}",
        if count == 1 { "" } else { "s" }
    ))
}
