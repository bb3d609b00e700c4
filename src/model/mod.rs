//! The manifest vocabulary: the document envelope and the `Host` and `Workflow` kinds.
//!
//! These types mirror the YAML exactly (camelCase, unknown fields rejected) and derive the
//! JSON Schemas in `schemas/`. They are plain data: loading and checking live in `load`,
//! the validated whole is `Desired`.

pub mod desired;
pub mod duration;
pub mod host;
pub mod meta;
pub mod selector;
pub mod task_kind;
pub mod vars;
pub mod workflow;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "drover/v1";

/// `apiVersion` of every document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum ApiVersion {
    #[serde(rename = "drover/v1")]
    V1,
}

/// The kinds of document drover knows. New kinds add a variant here and a branch in
/// `load::document`; nothing else dispatches on the kind string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Host,
    HostDefaults,
    Workflow,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Host, Kind::HostDefaults, Kind::Workflow];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Host => "Host",
            Kind::HostDefaults => "HostDefaults",
            Kind::Workflow => "Workflow",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// Any drover document; its schema is the one editors use for a whole manifest file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
#[schemars(title = "drover manifest document")]
pub enum AnyDocument {
    Host(host::HostDocument),
    HostDefaults(host::HostDefaultsDocument),
    Workflow(workflow::WorkflowDocument),
}
