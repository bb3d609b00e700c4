//! `forEach`: the items one task expands into, each with a stable key.
//!
//! An item's key is what its instance id carries (`web-1/nginx/vhost[api]`), so it must stay
//! the same while the item is listed, whatever else about the item changes: a string or
//! number item is its own key, a mapping item is keyed by its `name`, and a map's items by
//! the map's keys. Reordering a list therefore changes nothing; renaming an item replaces its
//! instance. This module is pure: evaluating an expression is the caller's.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::instance::ItemKey;

/// One item: its key and what templates see as `item`.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub key: ItemKey,
    pub value: Value,
}

/// Why a `forEach` does not give items; `at` is the pointer below `forEach` (a list index
/// or a map key) when one item is at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemsError {
    pub message: String,
    pub help: &'static str,
    pub at: Option<String>,
}

/// The expression inside a `forEach` written as `{{ expression }}`; `None` when the text is
/// anything else (text around it, or two expressions).
pub fn expression_of(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let single = !inner.contains("{{") && !inner.contains("}}") && !inner.trim().is_empty();
    single.then(|| inner.trim())
}

/// The items of a list or a map (literal, or what an expression yielded).
pub fn items(value: &Value) -> Result<Vec<Item>, ItemsError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    match value {
        Value::Array(list) => {
            for (index, item) in list.iter().enumerate() {
                let at = Some(index.to_string());
                let text = key_of(item).ok_or_else(|| ItemsError {
                    message: format!("item {index} has no key: it is {}", describe(item)),
                    help: "give strings or numbers, or mappings with a `name`; the key names the item's instance (`task[key]`)",
                    at: at.clone(),
                })?;
                out.push(keyed(&text, item.clone(), at, &mut seen)?);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let value = serde_json::json!({"key": key, "value": item});
                out.push(keyed(key, value, Some(key.clone()), &mut seen)?);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            return Err(ItemsError {
                message: format!("`forEach` yields {}, not a list or a map", describe(value)),
                help: "give a list, a map, or `{{ expression }}` that yields one",
                at: None,
            });
        }
    }
    Ok(out)
}

fn keyed(
    text: &str,
    value: Value,
    at: Option<String>,
    seen: &mut BTreeSet<ItemKey>,
) -> Result<Item, ItemsError> {
    let key = ItemKey::parse(text).map_err(|why| ItemsError {
        message: why,
        help: "keys name instances (`task[key]`): give the item a `name` made of such characters",
        at: at.clone(),
    })?;
    if !seen.insert(key.clone()) {
        return Err(ItemsError {
            message: format!("two items have the key `{key}`"),
            help: "each item needs its own key: it names the item's instance (`task[key]`)",
            at,
        });
    }
    Ok(Item { key, value })
}

fn key_of(item: &Value) -> Option<String> {
    match item {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Object(map) => match map.get("name") {
            Some(Value::String(text)) => Some(text.clone()),
            Some(Value::Number(number)) => Some(number.to_string()),
            _ => None,
        },
        Value::Null | Value::Bool(_) | Value::Array(_) => None,
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping without a `name`",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(value: &Value) -> Vec<String> {
        items(value)
            .unwrap()
            .into_iter()
            .map(|i| i.key.to_string())
            .collect()
    }

    #[test]
    fn items_are_keyed_by_themselves_their_name_or_the_map_key() {
        assert_eq!(keys(&json!(["api", 8080])), ["api", "8080"]);
        assert_eq!(
            keys(&json!([{"name": "api", "port": 1}, {"name": "web"}])),
            ["api", "web"]
        );
        let map = items(&json!({"b": 2, "a": {"x": 1}})).unwrap();
        assert_eq!(map[0].key.as_str(), "a");
        assert_eq!(map[0].value, json!({"key": "a", "value": {"x": 1}}));
    }

    #[test]
    fn unkeyable_duplicate_and_scalar_forms_are_refused_with_the_place() {
        let no_key = items(&json!(["a", {"port": 1}])).unwrap_err();
        assert_eq!(no_key.at.as_deref(), Some("1"));
        let twice = items(&json!(["a", "a"])).unwrap_err();
        assert!(twice.message.contains("two items"), "{twice:?}");
        let bad = items(&json!(["a b"])).unwrap_err();
        assert_eq!(bad.at.as_deref(), Some("0"));
        assert!(items(&json!("text")).is_err());
    }

    #[test]
    fn only_a_lone_expression_is_an_expression() {
        assert_eq!(expression_of("{{ vhosts }}"), Some("vhosts"));
        assert_eq!(
            expression_of(" {{ hosts | map(attribute='name') }} "),
            Some("hosts | map(attribute='name')")
        );
        assert_eq!(expression_of("{{ a }}-{{ b }}"), None);
        assert_eq!(expression_of("x {{ a }}"), None);
        assert_eq!(expression_of("{{ }}"), None);
    }
}
