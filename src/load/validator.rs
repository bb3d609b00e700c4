//! A small JSON Schema (draft 2020-12) validator for the schemas drover generates.
//!
//! drover validates documents against schemas it generates from its own types, so it needs
//! only the keywords those schemas use. A general validator (with remote references,
//! formats, unicode regexes and big-number arithmetic) was a fifth of the shipped binary.
//! Compiling a schema fails on any keyword this module does not know, so a schema change
//! that needs more is caught by a test, never silently accepted.
//!
//! Errors keep what the diagnostics need: where in the document, which keyword failed, the
//! schema object holding it, and for `anyOf`/`oneOf` the errors of every branch.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::source::JsonPointer;

/// Keywords that only describe; they never fail a document. `format` is an annotation in
/// 2020-12 unless a vocabulary asserts it (ours does not: integer ranges are `minimum` and
/// `maximum`, and typed decoding checks the width).
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "format",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Keywords this validator asserts.
const ASSERTIONS: &[&str] = &[
    "$ref",
    "type",
    "properties",
    "additionalProperties",
    "required",
    "items",
    "minItems",
    "enum",
    "const",
    "pattern",
    "minimum",
    "maximum",
    "anyOf",
    "oneOf",
    "if",
    "then",
    "else",
];

/// Why a schema could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("schema keyword `{keyword}` at {at} is not supported by drover's validator")]
    UnknownKeyword { keyword: String, at: String },
    #[error("`$ref` {reference} at {at} does not resolve inside the schema")]
    BadReference { reference: String, at: String },
    #[error("pattern {pattern:?} at {at} does not compile: {reason}")]
    BadPattern {
        pattern: String,
        at: String,
        reason: String,
    },
    #[error("schema at {at} is not an object or a boolean")]
    NotASchema { at: String },
    #[error("schema keyword `{keyword}` at {at} has a value of the wrong form")]
    BadValue { keyword: String, at: String },
}

/// One way a document broke its schema.
#[derive(Debug)]
pub struct SchemaError<'s, 'v> {
    /// Where in the document.
    pub instance_path: JsonPointer,
    /// The part of the document that failed.
    pub instance: &'v Value,
    /// The schema object that holds the failing keyword.
    pub parent: &'s Value,
    pub kind: ErrorKind<'s, 'v>,
}

#[derive(Debug)]
pub enum ErrorKind<'s, 'v> {
    /// Fields not in `properties` where `additionalProperties` is `false`.
    AdditionalProperties {
        unexpected: Vec<String>,
    },
    Required {
        property: String,
    },
    Type,
    Enum {
        options: &'s [Value],
    },
    Const {
        expected: &'s Value,
    },
    Pattern {
        pattern: &'s str,
    },
    Minimum {
        limit: Value,
    },
    Maximum {
        limit: Value,
    },
    MinItems {
        limit: u64,
    },
    /// No branch of an `anyOf` matched; the errors of each branch, in order.
    AnyOf {
        branches: Vec<Vec<SchemaError<'s, 'v>>>,
    },
    /// No branch of a `oneOf` matched; the errors of each branch, in order.
    OneOfNone {
        branches: Vec<Vec<SchemaError<'s, 'v>>>,
    },
    /// More than one branch of a `oneOf` matched.
    OneOfMany,
    /// `false` as a schema: nothing is allowed here.
    False,
}

/// A schema checked once, ready to validate documents.
#[derive(Debug)]
pub struct Validator {
    root: Value,
    patterns: BTreeMap<String, regex_lite::Regex>,
}

impl Validator {
    /// Checks that every keyword is known, every `$ref` resolves and every pattern compiles.
    pub fn new(root: Value) -> Result<Validator, CompileError> {
        let mut patterns = BTreeMap::new();
        compile(&root, &root, "#", &mut patterns)?;
        Ok(Validator { root, patterns })
    }

    pub fn schema(&self) -> &Value {
        &self.root
    }

    /// Every error of `instance`, in schema order.
    pub fn errors<'s, 'v>(&'s self, instance: &'v Value) -> Vec<SchemaError<'s, 'v>> {
        let mut out = Vec::new();
        self.check(&self.root, instance, &JsonPointer::root(), &mut out);
        out
    }

    fn is_valid(&self, schema: &Value, instance: &Value) -> bool {
        let mut out = Vec::new();
        self.check(schema, instance, &JsonPointer::root(), &mut out);
        out.is_empty()
    }

    fn resolve(&self, reference: &str) -> Option<&Value> {
        self.root.pointer(reference.strip_prefix('#')?)
    }

    fn check<'s, 'v>(
        &'s self,
        schema: &'s Value,
        instance: &'v Value,
        at: &JsonPointer,
        out: &mut Vec<SchemaError<'s, 'v>>,
    ) {
        let error = |kind| SchemaError {
            instance_path: at.clone(),
            instance,
            parent: schema,
            kind,
        };
        let object = match schema {
            Value::Object(object) => object,
            Value::Bool(false) => return out.push(error(ErrorKind::False)),
            _ => return,
        };
        if let Some(target) = object
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| self.resolve(r))
        {
            self.check(target, instance, at, out);
        }
        if let Some(types) = object.get("type")
            && !type_matches(types, instance)
        {
            // The other keywords would only repeat it in other words.
            return out.push(error(ErrorKind::Type));
        }
        if let Some(Value::Array(options)) = object.get("enum")
            && !options.iter().any(|o| json_equal(o, instance))
        {
            out.push(error(ErrorKind::Enum { options }));
        }
        if let Some(expected) = object.get("const")
            && !json_equal(expected, instance)
        {
            out.push(error(ErrorKind::Const { expected }));
        }
        match instance {
            Value::Object(fields) => self.check_object(schema, object, instance, fields, at, out),
            Value::Array(items) => self.check_array(schema, object, instance, items, at, out),
            Value::String(text) => self.check_string(schema, object, text, instance, at, out),
            Value::Number(_) => check_number(schema, object, instance, at, out),
            Value::Null | Value::Bool(_) => {}
        }
        self.check_combinators(schema, object, instance, at, out);
    }

    fn check_object<'s, 'v>(
        &'s self,
        schema: &'s Value,
        object: &'s Map<String, Value>,
        instance: &'v Value,
        fields: &'v Map<String, Value>,
        at: &JsonPointer,
        out: &mut Vec<SchemaError<'s, 'v>>,
    ) {
        let properties = object.get("properties").and_then(Value::as_object);
        if let Some(Value::Array(required)) = object.get("required") {
            for property in required.iter().filter_map(Value::as_str) {
                if !fields.contains_key(property) {
                    out.push(SchemaError {
                        instance_path: at.clone(),
                        instance,
                        parent: schema,
                        kind: ErrorKind::Required {
                            property: property.to_owned(),
                        },
                    });
                }
            }
        }
        let mut unexpected = Vec::new();
        for (name, value) in fields {
            let path = at.push(name);
            if let Some(property) = properties.and_then(|p| p.get(name)) {
                self.check(property, value, &path, out);
                continue;
            }
            match object.get("additionalProperties") {
                Some(Value::Bool(false)) => unexpected.push(name.clone()),
                Some(additional @ Value::Object(_)) => self.check(additional, value, &path, out),
                _ => {}
            }
        }
        if !unexpected.is_empty() {
            out.push(SchemaError {
                instance_path: at.clone(),
                instance,
                parent: schema,
                kind: ErrorKind::AdditionalProperties { unexpected },
            });
        }
    }

    fn check_array<'s, 'v>(
        &'s self,
        schema: &'s Value,
        object: &'s Map<String, Value>,
        instance: &'v Value,
        items: &'v [Value],
        at: &JsonPointer,
        out: &mut Vec<SchemaError<'s, 'v>>,
    ) {
        if let Some(limit) = object.get("minItems").and_then(Value::as_u64)
            && (items.len() as u64) < limit
        {
            out.push(SchemaError {
                instance_path: at.clone(),
                instance,
                parent: schema,
                kind: ErrorKind::MinItems { limit },
            });
        }
        if let Some(item_schema) = object.get("items") {
            for (index, item) in items.iter().enumerate() {
                self.check(item_schema, item, &at.push(index), out);
            }
        }
    }

    fn check_string<'s, 'v>(
        &'s self,
        schema: &'s Value,
        object: &'s Map<String, Value>,
        text: &str,
        instance: &'v Value,
        at: &JsonPointer,
        out: &mut Vec<SchemaError<'s, 'v>>,
    ) {
        let Some(pattern) = object.get("pattern").and_then(Value::as_str) else {
            return;
        };
        // Compiled in `new`; a pattern missing here cannot match anything.
        let matched = self.patterns.get(pattern).is_some_and(|r| r.is_match(text));
        if !matched {
            out.push(SchemaError {
                instance_path: at.clone(),
                instance,
                parent: schema,
                kind: ErrorKind::Pattern { pattern },
            });
        }
    }

    fn check_combinators<'s, 'v>(
        &'s self,
        schema: &'s Value,
        object: &'s Map<String, Value>,
        instance: &'v Value,
        at: &JsonPointer,
        out: &mut Vec<SchemaError<'s, 'v>>,
    ) {
        let error = |kind| SchemaError {
            instance_path: at.clone(),
            instance,
            parent: schema,
            kind,
        };
        if let Some(Value::Array(branches)) = object.get("anyOf") {
            let results = self.branch_errors(branches, instance, at);
            if results.iter().all(|errors| !errors.is_empty()) {
                out.push(error(ErrorKind::AnyOf { branches: results }));
            }
        }
        if let Some(Value::Array(branches)) = object.get("oneOf") {
            let results = self.branch_errors(branches, instance, at);
            match results.iter().filter(|errors| errors.is_empty()).count() {
                0 => out.push(error(ErrorKind::OneOfNone { branches: results })),
                1 => {}
                _ => out.push(error(ErrorKind::OneOfMany)),
            }
        }
        if let Some(condition) = object.get("if") {
            let branch = if self.is_valid(condition, instance) {
                object.get("then")
            } else {
                object.get("else")
            };
            if let Some(branch) = branch {
                self.check(branch, instance, at, out);
            }
        }
    }

    fn branch_errors<'s, 'v>(
        &'s self,
        branches: &'s [Value],
        instance: &'v Value,
        at: &JsonPointer,
    ) -> Vec<Vec<SchemaError<'s, 'v>>> {
        branches
            .iter()
            .map(|branch| {
                let mut errors = Vec::new();
                self.check(branch, instance, at, &mut errors);
                errors
            })
            .collect()
    }
}

fn check_number<'s, 'v>(
    schema: &'s Value,
    object: &'s Map<String, Value>,
    instance: &'v Value,
    at: &JsonPointer,
    out: &mut Vec<SchemaError<'s, 'v>>,
) {
    let Some(value) = instance.as_f64() else {
        return;
    };
    let error = |kind| SchemaError {
        instance_path: at.clone(),
        instance,
        parent: schema,
        kind,
    };
    // An integer `format` (as schemars writes for `u32`, `i64`…) bounds what typed decoding
    // accepts: asserted here, so that a too-large number is a located error.
    let (format_min, format_max) = object
        .get("format")
        .and_then(Value::as_str)
        .map_or((None, None), integer_range);
    let minimum = object.get("minimum").cloned().or(format_min);
    let maximum = object.get("maximum").cloned().or(format_max);
    if let Some(limit) = minimum.filter(|l| l.as_f64().is_some_and(|l| value < l)) {
        out.push(error(ErrorKind::Minimum { limit }));
    }
    if let Some(limit) = maximum.filter(|l| l.as_f64().is_some_and(|l| value > l)) {
        out.push(error(ErrorKind::Maximum { limit }));
    }
}

/// The range of an integer `format`, when it is one.
fn integer_range(format: &str) -> (Option<Value>, Option<Value>) {
    let range = |min: i64, max: u64| (Some(Value::from(min)), Some(Value::from(max)));
    match format {
        "uint8" => range(0, u64::from(u8::MAX)),
        "uint16" => range(0, u64::from(u16::MAX)),
        "uint32" | "uint" => range(0, u64::from(u32::MAX)),
        "uint64" => range(0, u64::MAX),
        "int8" => range(i64::from(i8::MIN), i8::MAX.unsigned_abs().into()),
        "int16" => range(i64::from(i16::MIN), i16::MAX.unsigned_abs().into()),
        "int32" | "int" => range(i64::from(i32::MIN), i32::MAX.unsigned_abs().into()),
        "int64" => range(i64::MIN, i64::MAX.unsigned_abs()),
        _ => (None, None),
    }
}

fn type_matches(types: &Value, instance: &Value) -> bool {
    match types {
        Value::String(name) => is_type(name, instance),
        Value::Array(names) => names
            .iter()
            .filter_map(Value::as_str)
            .any(|name| is_type(name, instance)),
        _ => true,
    }
}

fn is_type(name: &str, instance: &Value) -> bool {
    match (name, instance) {
        ("null", Value::Null)
        | ("boolean", Value::Bool(_))
        | ("string", Value::String(_))
        | ("array", Value::Array(_))
        | ("object", Value::Object(_))
        | ("number", Value::Number(_)) => true,
        // Written without a fraction: 2020-12 counts 1.0 as an integer, but typed decoding
        // does not take it, so it is reported here, where the error has a place.
        ("integer", Value::Number(number)) => number.is_i64() || number.is_u64(),
        _ => false,
    }
}

/// JSON equality: numbers compare by value (1 and 1.0 are equal), the rest structurally.
fn json_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => {
            a == b
                || matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x.total_cmp(&y).is_eq())
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, x)| b.get(key).is_some_and(|y| json_equal(x, y)))
        }
        _ => left == right,
    }
}

/// Walks a schema: every keyword known, every `$ref` local and resolvable, every pattern
/// compiled (and kept, keyed by its text).
fn compile(
    root: &Value,
    schema: &Value,
    at: &str,
    patterns: &mut BTreeMap<String, regex_lite::Regex>,
) -> Result<(), CompileError> {
    let object = match schema {
        Value::Object(object) => object,
        Value::Bool(_) => return Ok(()),
        _ => return Err(CompileError::NotASchema { at: at.to_owned() }),
    };
    for (keyword, value) in object {
        let here = format!("{at}/{keyword}");
        if ANNOTATIONS.contains(&keyword.as_str()) {
            continue;
        }
        if !ASSERTIONS.contains(&keyword.as_str()) && keyword != "$defs" {
            return Err(CompileError::UnknownKeyword {
                keyword: keyword.clone(),
                at: at.to_owned(),
            });
        }
        if !well_formed(keyword, value) {
            return Err(CompileError::BadValue {
                keyword: keyword.clone(),
                at: at.to_owned(),
            });
        }
        match (keyword.as_str(), value) {
            ("$ref", Value::String(reference)) => {
                let resolves = reference
                    .strip_prefix('#')
                    .is_some_and(|p| root.pointer(p).is_some());
                if !resolves {
                    return Err(CompileError::BadReference {
                        reference: reference.clone(),
                        at: here,
                    });
                }
            }
            ("pattern", Value::String(pattern)) => {
                let regex =
                    regex_lite::Regex::new(pattern).map_err(|e| CompileError::BadPattern {
                        pattern: pattern.clone(),
                        at: here,
                        reason: e.to_string(),
                    })?;
                patterns.insert(pattern.clone(), regex);
            }
            ("properties" | "$defs", Value::Object(children)) => {
                for (name, child) in children {
                    compile(root, child, &format!("{here}/{name}"), patterns)?;
                }
            }
            ("anyOf" | "oneOf", Value::Array(branches)) => {
                for (index, branch) in branches.iter().enumerate() {
                    compile(root, branch, &format!("{here}/{index}"), patterns)?;
                }
            }
            ("additionalProperties" | "items" | "if" | "then" | "else", child) => {
                compile(root, child, &here, patterns)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether an asserting keyword's value has the form the validator acts on (a malformed
/// one would otherwise be skipped, unenforced).
fn well_formed(keyword: &str, value: &Value) -> bool {
    const TYPES: [&str; 7] = [
        "null", "boolean", "string", "number", "integer", "array", "object",
    ];
    let is_type = |v: &Value| v.as_str().is_some_and(|t| TYPES.contains(&t));
    match keyword {
        "$ref" | "pattern" => value.is_string(),
        "type" => is_type(value) || value.as_array().is_some_and(|a| a.iter().all(is_type)),
        "properties" | "$defs" => value.is_object(),
        "required" => value
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string)),
        "enum" | "anyOf" | "oneOf" => value.is_array(),
        "minItems" => value.is_u64(),
        "minimum" | "maximum" => value.is_number(),
        "additionalProperties" | "items" | "if" | "then" | "else" => {
            value.is_object() || value.is_boolean()
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn kinds(schema: Value, instance: &Value) -> Vec<String> {
        let validator = Validator::new(schema).expect("schema compiles");
        validator
            .errors(instance)
            .iter()
            .map(|e| {
                format!("{} {:?}", e.instance_path, e.kind)
                    .chars()
                    .take(60)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn unknown_keywords_refuse_to_compile() {
        let error = Validator::new(json!({"type": "string", "maxLength": 3})).unwrap_err();
        assert!(
            matches!(error, CompileError::UnknownKeyword { keyword, .. } if keyword == "maxLength")
        );
        let error = Validator::new(json!({"$ref": "#/$defs/Missing"})).unwrap_err();
        assert!(matches!(error, CompileError::BadReference { .. }));
        let error = Validator::new(json!({"pattern": "("})).unwrap_err();
        assert!(matches!(error, CompileError::BadPattern { .. }));
        for malformed in [
            json!({"$ref": 5}),
            json!({"enum": "x"}),
            json!({"required": "a"}),
            json!({"properties": []}),
            json!({"type": "text"}),
            json!({"minItems": -1}),
        ] {
            let error = Validator::new(malformed.clone()).unwrap_err();
            assert!(
                matches!(error, CompileError::BadValue { .. }),
                "{malformed}"
            );
        }
    }

    #[test]
    fn objects_report_every_problem() {
        let schema = json!({
            "type": "object",
            "properties": {"name": {"type": "string", "pattern": "^[a-z]+$"}, "n": {"type": "integer", "minimum": 1}},
            "required": ["name", "kind"],
            "additionalProperties": false
        });
        let errors = kinds(
            schema,
            &json!({"name": "Web", "n": 0, "extra": 1, "other": 2}),
        );
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors.iter().any(|e| e.starts_with("/ Required")));
        assert!(errors.iter().any(|e| e.starts_with("/name Pattern")));
        assert!(errors.iter().any(|e| e.starts_with("/n Minimum")));
        assert!(
            errors
                .iter()
                .any(|e| e.contains("extra") && e.contains("other"))
        );
    }

    #[test]
    fn a_type_error_stands_alone() {
        let schema = json!({"type": "string", "pattern": "^a$", "enum": ["a"]});
        assert_eq!(kinds(schema, &json!(3)), vec!["/ Type".to_owned()]);
    }

    #[test]
    fn integers_are_written_without_a_fraction_and_fit_their_format() {
        let schema = json!({"type": "integer", "format": "uint32"});
        assert_eq!(kinds(schema.clone(), &json!(2.0)), ["/ Type".to_owned()]);
        assert_eq!(kinds(schema.clone(), &json!(1.5)).len(), 1);
        assert!(kinds(schema.clone(), &json!(4_294_967_295_u64)).is_empty());
        assert_eq!(kinds(schema.clone(), &json!(4_294_967_296_u64)).len(), 1);
        assert_eq!(kinds(schema, &json!(-1)).len(), 1);
        assert!(kinds(json!({"enum": [1]}), &json!(1.0)).is_empty());
    }

    #[test]
    fn any_of_and_one_of_keep_every_branch() {
        let schema = json!({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]});
        let validator = Validator::new(schema).expect("compiles");
        assert!(validator.errors(&json!("x")).is_empty());
        assert!(validator.errors(&json!(["x"])).is_empty());
        let value = json!([]);
        let errors = validator.errors(&value);
        let [
            SchemaError {
                kind: ErrorKind::AnyOf { branches },
                ..
            },
        ] = errors.as_slice()
        else {
            panic!("{errors:?}");
        };
        assert_eq!(branches.len(), 2);
        assert!(matches!(
            branches[1].as_slice(),
            [SchemaError {
                kind: ErrorKind::MinItems { limit: 1 },
                ..
            }]
        ));

        let one_of =
            json!({"oneOf": [{"const": "a"}, {"const": "b"}, {"type": "string", "pattern": "^a"}]});
        let validator = Validator::new(one_of).expect("compiles");
        assert!(validator.errors(&json!("b")).is_empty());
        let many = json!("a");
        assert!(matches!(
            validator.errors(&many).as_slice(),
            [SchemaError {
                kind: ErrorKind::OneOfMany,
                ..
            }]
        ));
        let none = json!("c");
        assert!(matches!(
            validator.errors(&none).as_slice(),
            [SchemaError {
                kind: ErrorKind::OneOfNone { .. },
                ..
            }]
        ));
    }

    #[test]
    fn refs_and_conditionals_apply() {
        let schema = json!({
            "$defs": {"Secret": {"type": "object", "required": ["valueFrom"], "properties": {"valueFrom": {"type": "object"}}, "additionalProperties": false}},
            "if": {"type": "object", "required": ["valueFrom"]},
            "then": {"$ref": "#/$defs/Secret"}
        });
        let validator = Validator::new(schema).expect("compiles");
        assert!(validator.errors(&json!("plain")).is_empty());
        assert!(validator.errors(&json!({"other": 1})).is_empty());
        let bad = json!({"valueFrom": {}, "extra": true});
        assert_eq!(validator.errors(&bad).len(), 1);
        let bad = json!({"valueFrom": 3});
        assert!(matches!(
            validator.errors(&bad).as_slice(),
            [SchemaError {
                kind: ErrorKind::Type,
                ..
            }]
        ));
    }
}
