//! The `Host` kind: how to reach a machine, and its variables.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::meta::{DefaultsName, HostName, Metadata};
use crate::model::selector::HostSelector;
use crate::model::vars::Vars;

/// A `Host` document.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "drover Host")]
pub struct HostDocument {
    pub api_version: super::ApiVersion,
    pub kind: HostKind,
    pub metadata: Metadata<HostName>,
    pub spec: HostSpec,
}

/// The `kind` of a `Host` document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum HostKind {
    Host,
}

/// How drover reaches a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Over SSH (the default).
    #[default]
    Ssh,
    /// On the machine drover itself runs on, without SSH.
    Local,
}

/// `spec` of a `Host`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostSpec {
    /// `ssh` (default) or `local` for the machine drover runs on.
    pub transport: Option<Transport>,
    /// DNS name or IP address; defaults to the host's name, resolved through `~/.ssh/config`
    /// like `ssh NAME` would.
    pub address: Option<String>,
    /// SSH port (default 22, or what `~/.ssh/config` says).
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// Remote user (default: from `~/.ssh/config`, else the local user).
    pub user: Option<String>,
    /// Private key file; without it, ssh-agent is used.
    pub identity_file: Option<String>,
    /// `known_hosts` file that verifies this host's key (default `~/.ssh/known_hosts`).
    pub known_hosts_file: Option<String>,
    /// Run every task on this host as this user through `sudo -n`.
    pub r#become: Option<String>,
    /// Variables templates see on this host; workflow and task variables of the same name
    /// override them, and they override those of `HostDefaults`.
    #[serde(default)]
    pub vars: Vars,
}

impl HostSpec {
    /// How the host is reached: `ssh` unless `local` is given (by the host or its defaults).
    pub fn transport(&self) -> Transport {
        self.transport.unwrap_or_default()
    }
}

/// Connection settings and vars for every host a selector matches. A host's own value of a
/// setting or var wins; two defaults documents that both match a host may not give it
/// different values for the same setting or var.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "drover HostDefaults")]
pub struct HostDefaultsDocument {
    pub api_version: super::ApiVersion,
    pub kind: HostDefaultsKind,
    pub metadata: Metadata<DefaultsName>,
    pub spec: HostDefaultsSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum HostDefaultsKind {
    HostDefaults,
}

/// `spec` of a `HostDefaults`: the selector, then any field of a host's `spec` but `address`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostDefaultsSpec {
    /// The hosts these defaults apply to.
    pub hosts: HostSelector,
    /// `ssh` or `local`.
    pub transport: Option<Transport>,
    /// SSH port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// Remote user.
    pub user: Option<String>,
    /// Private key file.
    pub identity_file: Option<String>,
    /// `known_hosts` file that verifies the hosts' keys.
    pub known_hosts_file: Option<String>,
    /// Run every task on these hosts as this user through `sudo -n`.
    pub r#become: Option<String>,
    /// Variables for these hosts; the hosts' own, workflow and task variables override them.
    #[serde(default)]
    pub vars: Vars,
}
