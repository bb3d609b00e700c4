//! Variables (`vars:` on hosts and workflows) and secret references in them.
//!
//! A variable whose value is `{valueFrom: {env: NAME}}` or `{valueFrom: {file: PATH}}` is a
//! secret: the model only records where it comes from; `secret_source` reads it at the edge.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Variables by name, as written under `vars:`.
pub type Vars = BTreeMap<String, VarValue>;

/// A variable's value: any YAML value, or a reference to a secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum VarValue {
    Secret(SecretRef),
    Plain(Value),
}

/// `{valueFrom: …}`: a value read from the controller's environment or a file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    pub value_from: SecretFrom,
}

/// `valueFrom`: exactly one of `env` or `file` (checked by the loader, which says so
/// clearly; a schema `oneOf` would only say "no alternative matched").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretFrom {
    /// The name of an environment variable of the drover process.
    pub env: Option<String>,
    /// A file on the controller, relative to the manifest file that names it.
    pub file: Option<String>,
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SecretSource {
    Env(String),
    File(String),
}

impl SecretRef {
    /// The source, when exactly one is given (always, in a loaded `Desired`).
    pub fn source(&self) -> Option<SecretSource> {
        match (&self.value_from.env, &self.value_from.file) {
            (Some(name), None) => Some(SecretSource::Env(name.clone())),
            (None, Some(path)) => Some(SecretSource::File(path.clone())),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for VarValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<VarValue, D::Error> {
        let value = Value::deserialize(deserializer)?;
        // Any mapping that mentions `valueFrom` is meant as a secret: decode it strictly so a
        // typo is an error, never a plain value that leaks into a file.
        if value
            .as_object()
            .is_some_and(|m| m.contains_key("valueFrom"))
        {
            return serde_json::from_value(value)
                .map(VarValue::Secret)
                .map_err(D::Error::custom);
        }
        Ok(VarValue::Plain(value))
    }
}

impl JsonSchema for VarValue {
    fn schema_name() -> Cow<'static, str> {
        "VarValue".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let secret = generator.subschema_for::<SecretRef>();
        json_schema!({
            "description": "Any value, or a secret: {valueFrom: {env: NAME}} or {valueFrom: {file: PATH}}.",
            "if": {"type": "object", "required": ["valueFrom"]},
            "then": secret
        })
    }
}
