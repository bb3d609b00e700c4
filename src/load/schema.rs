//! The JSON Schemas of every kind, generated from the model types, and validation against
//! them with errors turned into located, human diagnostics.
//!
//! Schema validation runs before typed decoding because it reports every problem of a
//! document at once, each with a JSON pointer; serde would stop at the first. The schemas are
//! also written to `schemas/` for editors (a test keeps that copy fresh).

use std::sync::{Arc, OnceLock};

use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::diagnostic::{Diagnostic, Location};
use crate::load::validator::{ErrorKind, SchemaError, Validator};
use crate::load::yaml::Node;
use crate::model::duration::{DURATION_PATTERN, FileMode, HumanDuration, MODE_PATTERN};
use crate::model::host::{HostDefaultsDocument, HostDocument};
use crate::model::meta::{NAME_PATTERN, check_name};
use crate::model::workflow::WorkflowDocument;
use crate::model::{AnyDocument, Kind};
use crate::source::{JsonPointer, SourceFile};

/// Base URL of the published schemas; `$id`s and `yaml-language-server` comments use it.
pub const SCHEMA_BASE: &str = "https://drover.dev/schemas/v1";

/// One generated schema and the file name it is published under.
#[derive(Debug)]
pub struct NamedSchema {
    pub file_name: &'static str,
    pub schema: Value,
}

/// Every schema drover publishes: one per kind, and one for any document.
pub fn all() -> Vec<NamedSchema> {
    vec![
        NamedSchema {
            file_name: "host.schema.json",
            schema: generate::<HostDocument>("host.schema.json"),
        },
        NamedSchema {
            file_name: "host-defaults.schema.json",
            schema: generate::<HostDefaultsDocument>("host-defaults.schema.json"),
        },
        NamedSchema {
            file_name: "workflow.schema.json",
            schema: generate::<WorkflowDocument>("workflow.schema.json"),
        },
        NamedSchema {
            file_name: "document.schema.json",
            schema: generate::<AnyDocument>("document.schema.json"),
        },
    ]
}

fn generate<T: schemars::JsonSchema>(file_name: &str) -> Value {
    // Optional fields are simply not required; `null` is not a value for them. That keeps
    // errors precise (no `anyOf [T, null]` to untangle) and rejects a forgotten `mode:`.
    let generator = SchemaSettings::draft2020_12()
        .with_transform(schemars::transform::RecursiveTransform(drop_null))
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    if let Some(object) = schema.as_object_mut() {
        object.insert(
            "$id".to_owned(),
            Value::String(format!("{SCHEMA_BASE}/{file_name}")),
        );
    }
    schema
}

/// Removes the `null` alternative schemars adds for `Option<T>` fields.
fn drop_null(schema: &mut schemars::Schema) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(types)) = object.get_mut("type") {
        types.retain(|t| t != "null");
        if let [only] = types.as_slice() {
            let only = only.clone();
            object.insert("type".to_owned(), only);
        }
    }
    let is_null = |v: &Value| v.get("type").and_then(Value::as_str) == Some("null");
    if let Some(Value::Array(branches)) = object.get("anyOf")
        && branches.len() == 2
        && branches.iter().any(is_null)
    {
        let kept = branches
            .iter()
            .find(|b| !is_null(b))
            .and_then(Value::as_object)
            .cloned();
        object.remove("anyOf");
        for (key, value) in kept.into_iter().flatten() {
            object.entry(key).or_insert(value);
        }
    }
}

fn compiled(kind: Kind) -> Option<&'static Validator> {
    static HOST: OnceLock<Option<Validator>> = OnceLock::new();
    static DEFAULTS: OnceLock<Option<Validator>> = OnceLock::new();
    static WORKFLOW: OnceLock<Option<Validator>> = OnceLock::new();
    let (cell, file_name) = match kind {
        Kind::Host => (&HOST, "host.schema.json"),
        Kind::HostDefaults => (&DEFAULTS, "host-defaults.schema.json"),
        Kind::Workflow => (&WORKFLOW, "workflow.schema.json"),
    };
    cell.get_or_init(|| {
        let schema = match kind {
            Kind::Host => generate::<HostDocument>(file_name),
            Kind::HostDefaults => generate::<HostDefaultsDocument>(file_name),
            Kind::Workflow => generate::<WorkflowDocument>(file_name),
        };
        // The schemas are generated from our own types; if one failed to compile, every
        // document of that kind is reported as an internal error rather than panicking.
        Validator::new(schema).ok()
    })
    .as_ref()
}

/// Validates one document's value against its kind's schema.
pub fn validate(kind: Kind, value: &Value, root: &Node, file: &Arc<SourceFile>) -> Vec<Diagnostic> {
    let Some(validator) = compiled(kind) else {
        return vec![
            Diagnostic::error(
                "internal::schema",
                format!("the built-in {} schema does not compile", kind.as_str()),
            )
            .with_help("this is a bug in drover; please report it"),
        ];
    };
    let ctx = Ctx {
        schema: validator.schema(),
        root,
        file,
    };
    let mut diagnostics = Vec::new();
    for error in validator.errors(value) {
        ctx.describe(&error, &mut diagnostics);
    }
    diagnostics
}

struct Ctx<'a> {
    schema: &'a Value,
    root: &'a Node,
    file: &'a Arc<SourceFile>,
}

impl Ctx<'_> {
    fn at(&self, pointer: &JsonPointer) -> Location {
        Location {
            file: self.file.clone(),
            span: self.root.locate(pointer),
            pointer: Some(pointer.clone()),
        }
    }

    fn at_key(&self, pointer: &JsonPointer) -> Location {
        let span = self
            .root
            .locate_key(pointer)
            .unwrap_or_else(|| self.root.locate(pointer));
        Location {
            file: self.file.clone(),
            span,
            pointer: Some(pointer.clone()),
        }
    }

    #[expect(
        clippy::too_many_lines,
        reason = "one arm per kind of schema error; splitting it scatters the messages"
    )]
    fn describe(&self, error: &SchemaError<'_, '_>, out: &mut Vec<Diagnostic>) {
        let pointer = error.instance_path.clone();
        let instance = error.instance;
        let diagnostic = match &error.kind {
            ErrorKind::AdditionalProperties { unexpected } => {
                let allowed = error.parent.get("properties").and_then(Value::as_object);
                let names: Vec<&str> = allowed
                    .map(|m| m.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                for field in unexpected {
                    let location = self.at_key(&pointer.push(field));
                    out.push(
                        Diagnostic::error(
                            "manifest::unknown-field",
                            format!("unknown field `{field}`"),
                        )
                        .at(location)
                        .with_label("not a field here")
                        .with_suggestion(
                            field,
                            names.iter().copied(),
                            format!("the fields here are: {}", list(&names)),
                        ),
                    );
                }
                return;
            }
            ErrorKind::Required { property } => {
                let field = property.as_str();
                Diagnostic::error(
                    "manifest::missing-field",
                    format!("missing required field `{field}`"),
                )
                .at(self.at_key(&pointer))
                .with_label(format!("`{field}` is missing here"))
                .with_help(format!("add `{field}:`; `drover schema` shows every field"))
            }
            ErrorKind::Type => self.type_error(error, &pointer, instance),
            ErrorKind::Enum { options } => self.enum_error(&pointer, instance, options),
            ErrorKind::Const { expected } => {
                self.enum_error(&pointer, instance, std::slice::from_ref(*expected))
            }
            ErrorKind::Pattern { pattern } => self.pattern_error(pattern, &pointer, instance),
            ErrorKind::AnyOf { branches: context } | ErrorKind::OneOfNone { branches: context } => {
                // When one alternative has the instance's JSON type, its errors are the
                // precise ones (`run: {command: x, unles: y}` is a typo in the object form).
                let consts = branch_consts(self.schema, error.parent);
                if let Some(branch) = context.iter().filter(|_| consts.is_none()).find(|errors| {
                    errors.iter().all(|e| !matches!(e.kind, ErrorKind::Type)) && !errors.is_empty()
                }) {
                    for inner in branch {
                        self.describe(inner, out);
                    }
                    return;
                }
                // Enums whose variants are documented become `oneOf` of `const`s: report
                // them like any enum.
                if let Some(choices) = consts {
                    out.push(self.enum_error(&pointer, instance, &choices));
                    return;
                }
                let expected = error
                    .parent
                    .get("description")
                    .and_then(Value::as_str)
                    .map(first_sentence)
                    .or_else(|| {
                        Some(branch_types(self.schema, error.parent)).filter(|t| !t.is_empty())
                    })
                    .unwrap_or_else(|| "a different value".to_owned());
                Diagnostic::error(
                    "manifest::invalid-value",
                    format!("{} is not valid here", short(instance)),
                )
                .at(self.at(&pointer))
                .with_label("unexpected value")
                .with_help(format!("expected {expected}"))
            }
            ErrorKind::Minimum { limit } => Diagnostic::error(
                "manifest::invalid-value",
                format!("{} is below the minimum of {limit}", short(instance)),
            )
            .at(self.at(&pointer))
            .with_label("too small")
            .with_help(format!("use a value of at least {limit}")),
            ErrorKind::Maximum { limit } => Diagnostic::error(
                "manifest::invalid-value",
                format!("{} is above the maximum of {limit}", short(instance)),
            )
            .at(self.at(&pointer))
            .with_label("too large")
            .with_help(format!("use a value of at most {limit}")),
            ErrorKind::MinItems { limit } => {
                let what = if *limit == 1 {
                    "at least one item".to_owned()
                } else {
                    format!("at least {limit} items")
                };
                Diagnostic::error(
                    "manifest::invalid-value",
                    format!("the list is empty; it needs {what}"),
                )
                .at(self.at(&pointer))
                .with_label("empty list")
                .with_help(match pointer.tokens().last().as_deref() {
                    Some("tasks") => "add at least one task".to_owned(),
                    Some("names") => "list at least one name".to_owned(),
                    Some("run" | "command" | "check" | "undo" | "unless") => {
                        "give the program and its arguments, such as [\"systemctl\", \"restart\", \"nginx\"]".to_owned()
                    }
                    Some(field) => format!("add at least one entry to `{field}`"),
                    None => "add at least one entry".to_owned(),
                })
            }
            ErrorKind::OneOfMany => Diagnostic::error(
                "manifest::invalid-value",
                format!("{} fits more than one form allowed here", short(instance)),
            )
            .at(self.at(&pointer))
            .with_label("ambiguous value")
            .with_help("`drover schema` shows what is allowed here"),
            ErrorKind::False => Diagnostic::error(
                "manifest::invalid-value",
                format!("{} is not allowed here", short(instance)),
            )
            .at(self.at(&pointer))
            .with_label("not allowed")
            .with_help("`drover schema` shows what is allowed here"),
        };
        out.push(diagnostic);
    }

    fn enum_error(&self, pointer: &JsonPointer, instance: &Value, choices: &[Value]) -> Diagnostic {
        let choices: Vec<String> = choices.iter().map(short).collect();
        let wrong = short(instance);
        Diagnostic::error(
            "manifest::invalid-value",
            format!("{wrong} is not one of {}", choices.join(", ")),
        )
        .at(self.at(pointer))
        .with_label("unexpected value")
        .with_suggestion(
            wrong.trim_matches('`'),
            choices.iter().map(|c| c.trim_matches('`')),
            format!("use one of {}", choices.join(", ")),
        )
    }

    fn type_error(
        &self,
        error: &SchemaError<'_, '_>,
        pointer: &JsonPointer,
        instance: &Value,
    ) -> Diagnostic {
        let expected = error.parent.get("type").map(type_names).unwrap_or_default();
        let is_duration =
            error.parent.get("pattern").and_then(Value::as_str) == Some(DURATION_PATTERN);
        let found = json_type(instance);
        let mut diagnostic = Diagnostic::error(
            "manifest::wrong-type",
            format!("expected {expected}, found {found}"),
        )
        .at(self.at(pointer))
        .with_label(format!("this is {found}"));
        let plain_scalar = self
            .root
            .find(pointer)
            .is_some_and(|n| !n.quoted && !matches!(instance, Value::Object(_) | Value::Array(_)));
        // The text as written (`0644`, `0o644`), not as YAML resolved it (644, 420).
        let written = self
            .root
            .find(pointer)
            .and_then(|n| self.file.text.get(n.span.start..n.span.end))
            .unwrap_or_default();
        if pointer.as_str().ends_with("/mode") && instance.is_number() {
            diagnostic = diagnostic.with_help(format!(
                "quote the mode: mode: \"{written}\"; unquoted, YAML 1.2 reads {written} as the number {instance}"
            ));
        } else if is_duration && instance.is_number() {
            diagnostic = diagnostic.with_help(format!(
                "add a unit: `{written}s` or `{written}m` (units are ms, s, m, h and d)"
            ));
        } else if expected == "an integer"
            && let Some(whole) = instance
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
        {
            diagnostic = diagnostic.with_help(format!("write it without a fraction: {whole:.0}"));
        } else if matches!(expected.as_str(), "an integer" | "a number")
            && instance
                .as_str()
                .is_some_and(|s| s.trim().parse::<f64>().is_ok())
        {
            diagnostic = diagnostic.with_help(format!(
                "remove the quotes: {written} is a string, the field takes a number"
            ));
        } else if expected.starts_with("a string") && plain_scalar {
            diagnostic =
                diagnostic.with_help(format!("quote it to make it a string: \"{written}\""));
        } else {
            diagnostic = diagnostic.with_help("`drover schema` shows what each field expects");
        }
        diagnostic
    }

    fn pattern_error(&self, pattern: &str, pointer: &JsonPointer, instance: &Value) -> Diagnostic {
        let text = instance.as_str().unwrap_or_default();
        let location = self.at(pointer);
        if pattern == NAME_PATTERN {
            let reason = check_name(text)
                .err()
                .unwrap_or_else(|| format!("`{text}` is not a valid name"));
            return Diagnostic::error("manifest::invalid-name", format!("invalid name: {reason}"))
                .at(location)
                .with_label("invalid name")
                .with_help(format!(
                    "names are DNS labels, for example `{}`",
                    suggest_name(text)
                ));
        }
        if pattern == DURATION_PATTERN {
            let reason = HumanDuration::parse(text).err().unwrap_or_default();
            return Diagnostic::error("manifest::invalid-duration", reason)
                .at(location)
                .with_label("invalid duration")
                .with_help("units are ms, s, m, h and d; combine them as in `1h30m`");
        }
        if pattern == MODE_PATTERN {
            let reason = FileMode::parse(text)
                .err()
                .unwrap_or_else(|| format!("`{text}` is not a file mode"));
            return Diagnostic::error("manifest::invalid-mode", reason)
                .at(location)
                .with_label("invalid mode")
                .with_help("octal digits 0-7, as chmod takes them: \"0644\", \"0755\", \"0600\"");
        }
        let message = if pattern.contains('%') {
            format!("`{text}` is not a batch size")
        } else {
            format!("`{text}` does not have the expected form")
        };
        Diagnostic::error("manifest::invalid-value", message)
        .at(location)
        .with_label("unexpected form")
        .with_help(match pattern {
            p if p.contains('%') => "write a percentage from 1% to 100% in quotes (\"25%\"), or a host count such as 2".to_owned(),
            p => format!("it must match {p}"),
        })
    }
}

/// The allowed values when every branch of an `anyOf`/`oneOf` is a `const`.
fn branch_consts(root: &Value, schema: &Value) -> Option<Vec<Value>> {
    let branches = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))?
        .as_array()?;
    branches
        .iter()
        .map(|b| {
            let b = b
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| resolve_ref(root, r))
                .unwrap_or(b);
            b.get("const").cloned().or_else(|| {
                b.get("enum")?
                    .as_array()?
                    .first()
                    .cloned()
                    .filter(|_| b["enum"].as_array().is_some_and(|a| a.len() == 1))
            })
        })
        .collect()
}

/// "a string or a list", from the `type`s of the branches of an `anyOf`/`oneOf`.
fn branch_types(root: &Value, schema: &Value) -> String {
    let branches = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array);
    let mut names: Vec<String> = Vec::new();
    for branch in branches.into_iter().flatten() {
        let branch = branch
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| resolve_ref(root, r))
            .unwrap_or(branch);
        if let Some(types) = branch.get("type") {
            let name = type_names(types);
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names.join(" or ")
}

fn resolve_ref<'s>(schema: &'s Value, reference: &str) -> Option<&'s Value> {
    schema.pointer(reference.strip_prefix('#')?)
}

fn type_names(types: &Value) -> String {
    let names: Vec<&str> = match types {
        Value::String(t) => vec![article(t)],
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .map(article)
            .collect(),
        _ => Vec::new(),
    };
    names.join(" or ")
}

fn article(json_type: &str) -> &'static str {
    match json_type {
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "true or false",
        "array" => "a list",
        "object" => "a mapping",
        _ => "null",
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// A value as it should appear inside a one-line message.
fn short(value: &Value) -> String {
    match value {
        Value::String(s) if s.chars().count() <= 40 => format!("`{s}`"),
        Value::String(_) => "this string".to_owned(),
        Value::Object(_) => "this mapping".to_owned(),
        Value::Array(_) => "this list".to_owned(),
        other => format!("`{other}`"),
    }
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first sentence of a schema description, lowercased, without its full stop.
fn first_sentence(description: &str) -> String {
    let sentence = description
        .split(". ")
        .next()
        .unwrap_or(description)
        .trim_end_matches('.');
    let mut chars = sentence.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_lowercase().chain(chars).collect())
}

/// A valid name close to an invalid one, for the help text.
fn suggest_name(text: &str) -> String {
    let lowered: String = text
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = lowered.trim_matches('-');
    if trimmed.is_empty() {
        "web-1".to_owned()
    } else {
        trimmed.chars().take(63).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_published_schema_compiles_with_our_validator() {
        for named in all() {
            if let Err(error) = Validator::new(named.schema) {
                panic!("{}: {error}", named.file_name);
            }
        }
    }
}
