//! `Metadata` and the validated name newtypes (`HostName`, `WorkflowName`, `TaskName`).
//!
//! Names follow the DNS-label rule (lowercase letters, digits and `-`, at most 63 long, not
//! starting or ending with `-`) so they are safe in instance ids, file names and shell words.
//! A name can only be built through `parse`, so nothing downstream re-checks it. Names are
//! shared (`Arc<str>`): every instance id and dependency edge clones them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The regular expression every name must match; schema errors quote it, so keep it simple.
pub const NAME_PATTERN: &str = "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";

/// Checks the DNS-label rule, saying what is wrong in words rather than as a regex.
pub fn check_name(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("a name cannot be empty".to_owned());
    }
    if text.len() > 63 {
        return Err(format!("`{text}` is longer than 63 characters"));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "`{text}` contains `{bad}`; names use lowercase letters, digits and `-`"
        ));
    }
    if text.starts_with('-') || text.ends_with('-') {
        return Err(format!("`{text}` starts or ends with `-`"));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn parse(text: &str) -> Result<$name, String> {
                check_name(text).map(|()| $name(Arc::from(text)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(text: String) -> Result<$name, String> {
                check_name(&text).map(|()| $name(Arc::from(text)))
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "pattern": NAME_PATTERN,
                    "description": concat!("The name of a ", $what, ": a DNS label (lowercase letters, digits and `-`, at most 63 characters).")
                })
            }
        }
    };
}

name_type!(
    /// The name of a `Host` document, unique among hosts.
    HostName, "host"
);
name_type!(
    /// The name of a `Workflow` document, unique among workflows.
    WorkflowName, "workflow"
);
name_type!(
    /// The name of a `HostDefaults` document, unique among them.
    DefaultsName, "host defaults document"
);
name_type!(
    /// The name of a task, unique within its workflow.
    TaskName, "task"
);

/// `metadata` of every document.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata<N> {
    pub name: N,
    /// Key-value labels that workflows select hosts by (`hosts.matchLabels`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Free-form notes for people and tools; drover ignores them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_dns_label_rule() {
        assert!(HostName::parse("edge-1").is_ok());
        assert!(HostName::parse("a").is_ok());
        assert_eq!(
            HostName::parse("Edge_1").unwrap_err(),
            "`Edge_1` contains `E`; names use lowercase letters, digits and `-`"
        );
        assert!(TaskName::parse("-x").is_err());
        assert!(TaskName::parse("").is_err());
        assert!(WorkflowName::parse(&"a".repeat(64)).is_err());
        assert!(WorkflowName::parse(&"a".repeat(63)).is_ok());
    }
}
