//! What a template sees besides its own text: vars whose values are templates themselves,
//! rendered in dependency order, and the `hosts` list of a workflow.
//!
//! A var may use other vars and the host's fields (`url: "http://{{ host.address }}:{{ port }}/"`).
//! Vars are rendered once per host, each after the vars it names, so declaration order never
//! matters; a var that reaches itself is an error that names the whole loop. A secret's value
//! is never rendered (it is data, whatever it contains), and a var made from a secret is as
//! secret as the secret. This module is pure: it renders and reports, and the caller locates.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::Value as Ctx;
use serde_json::{Map, Value};

use crate::model::desired::{Host, Origin};
use crate::model::vars::VarValue;
use crate::template::{TemplateError, Templates};

/// The vars of one host in one workflow (or one task), before and after templating.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Name → value, `host` and `workflow` included.
    pub vars: Map<String, Value>,
    /// The same with every secret replaced by a stand-in, to tell what depends on one.
    pub blinded: Map<String, Value>,
    /// Secrets, and vars made from them.
    pub secrets: BTreeSet<String>,
    /// Secrets standing in for values that were not available, and vars made from them.
    pub unavailable: BTreeSet<String>,
    /// Where each var was declared (its entry under `vars`).
    pub origins: BTreeMap<String, Origin>,
    /// `host.facts` holds stand-ins: the host's facts are not known here.
    pub stand_in_facts: bool,
}

/// Why the vars of a scope could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarProblem {
    /// The vars in `path` use each other in a loop; the first is named again at the end.
    Cycle { path: Vec<String> },
    /// A var's template failed; `text` is the template string that failed.
    Render {
        name: String,
        text: String,
        error: Box<TemplateError>,
    },
}

/// Names that vars never take from templates: the context drover fills in itself.
const BUILT_IN: [&str; 4] = ["host", "workflow", "hosts", "item"];

/// Renders every plain var whose value holds a template, after the vars it deps.
pub fn render_vars(scope: &mut Scope, templates: &mut Templates) -> Result<(), VarProblem> {
    render(scope, templates, false)
}

/// As `render_vars`, but a var that cannot be rendered is left out instead (for the `hosts`
/// list, where a var that needs a workflow's vars has no value of its own).
fn render_what_renders(scope: &mut Scope, templates: &mut Templates) {
    if render(scope, templates, true).is_err() {
        // A loop: none of the templated vars has a value.
        scope.vars.retain(|_, value| !has_template(value));
    }
}

fn render(scope: &mut Scope, templates: &mut Templates, lenient: bool) -> Result<(), VarProblem> {
    let pending: BTreeMap<String, Value> = scope
        .vars
        .iter()
        .filter(|(name, value)| {
            !BUILT_IN.contains(&name.as_str())
                && !scope.secrets.contains(*name)
                && has_template(value)
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    if pending.is_empty() {
        return Ok(());
    }
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, value) in &pending {
        let mut found = BTreeSet::new();
        for text in strings(value) {
            // A template that does not compile fails again, located, when rendered.
            if let Ok(names) = templates.names_used(text) {
                found.extend(
                    names
                        .into_iter()
                        .filter(|n| scope.vars.contains_key(n) || scope.secrets.contains(n)),
                );
            }
        }
        deps.insert(name.clone(), found);
    }
    let names: Vec<String> = pending.keys().cloned().collect();
    for name in order(&names, &deps)? {
        let Some(value) = pending.get(&name) else {
            continue;
        };
        let ctx = Ctx::from(minijinja::value::Serde(&scope.vars));
        let blind = Ctx::from(minijinja::value::Serde(&scope.blinded));
        let both = render_value(value, &ctx, templates, &name)
            .and_then(|real| Ok((real, render_value(value, &blind, templates, &name)?)));
        let (rendered, blinded) = match both {
            Ok(both) => both,
            Err(_) if lenient => {
                scope.vars.remove(&name);
                scope.blinded.remove(&name);
                continue;
            }
            Err(problem) => return Err(problem),
        };
        let inputs = deps.get(&name).into_iter().flatten();
        for input in inputs {
            if scope.secrets.contains(input) {
                scope.secrets.insert(name.clone());
            }
            if scope.unavailable.contains(input) {
                scope.unavailable.insert(name.clone());
            }
        }
        scope.vars.insert(name.clone(), rendered);
        scope.blinded.insert(name, blinded);
    }
    Ok(())
}

/// The templated vars in an order where each comes after those it deps.
fn order(
    to_render: &[String],
    deps: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Vec<String>, VarProblem> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        name: &str,
        deps: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
        out: &mut Vec<String>,
    ) -> Result<(), VarProblem> {
        match marks.get(name) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|n| n == name).unwrap_or(0);
                let mut path: Vec<String> = stack.get(start..).unwrap_or_default().to_vec();
                path.push(name.to_owned());
                return Err(VarProblem::Cycle { path });
            }
            None => {}
        }
        // Only templated vars have edges; a plain var is a leaf.
        let Some(next) = deps.get(name) else {
            return Ok(());
        };
        marks.insert(name.to_owned(), Mark::Visiting);
        stack.push(name.to_owned());
        for used in next {
            visit(used, deps, marks, stack, out)?;
        }
        stack.pop();
        marks.insert(name.to_owned(), Mark::Done);
        out.push(name.to_owned());
        Ok(())
    }
    let mut marks = BTreeMap::new();
    let mut out = Vec::with_capacity(to_render.len());
    for name in to_render {
        visit(name, deps, &mut marks, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

fn render_value(
    value: &Value,
    ctx: &Ctx,
    templates: &mut Templates,
    name: &str,
) -> Result<Value, VarProblem> {
    Ok(match value {
        Value::String(text) => {
            Value::String(
                templates
                    .render(text, ctx)
                    .map_err(|error| VarProblem::Render {
                        name: name.to_owned(),
                        text: text.clone(),
                        error: Box::new(error),
                    })?,
            )
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_value(v, ctx, templates, name))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| Ok((k.clone(), render_value(v, ctx, templates, name)?)))
                .collect::<Result<_, VarProblem>>()?,
        ),
        Value::Null | Value::Bool(_) | Value::Number(_) => value.clone(),
    })
}

fn has_template(value: &Value) -> bool {
    strings(value).any(Templates::is_template)
}

/// Every string inside a value.
fn strings(value: &Value) -> Box<dyn Iterator<Item = &str> + '_> {
    match value {
        Value::String(text) => Box::new(std::iter::once(text.as_str())),
        Value::Array(items) => Box::new(items.iter().flat_map(strings)),
        Value::Object(entries) => Box::new(entries.values().flat_map(strings)),
        Value::Null | Value::Bool(_) | Value::Number(_) => Box::new(std::iter::empty()),
    }
}

/// The `hosts` list templates see: every host of the inventory, in name order, with its
/// name, address, labels and its own vars (the host's, then its defaults'), rendered.
/// Secrets, and vars that use one or need a workflow's vars, are left out: one host's
/// template never sees another host's secret.
pub fn hosts_listing<'a>(hosts: impl Iterator<Item = &'a Host>, templates: &mut Templates) -> Ctx {
    let entries: Vec<Value> = hosts
        .map(|host| {
            let mut scope = Scope::default();
            let layers =
                std::iter::once(&host.spec.vars).chain(host.inherited.iter().map(|l| &l.vars));
            for vars in layers {
                for (name, value) in vars {
                    if scope.vars.contains_key(name) || scope.secrets.contains(name) {
                        continue;
                    }
                    match value {
                        VarValue::Plain(value) => {
                            scope.vars.insert(name.clone(), value.clone());
                        }
                        VarValue::Secret(_) => {
                            scope.secrets.insert(name.clone());
                        }
                    }
                }
            }
            let entry = serde_json::json!({
                "name": host.name.as_str(),
                "address": address(host),
                "labels": host.labels,
            });
            scope.vars.insert("host".to_owned(), entry.clone());
            scope.blinded = scope.vars.clone();
            render_what_renders(&mut scope, templates);
            // Vars made from one of its secrets are as secret as they are: left out.
            let secrets = std::mem::take(&mut scope.secrets);
            scope
                .vars
                .retain(|name, _| !BUILT_IN.contains(&name.as_str()) && !secrets.contains(name));
            let mut entry = entry;
            if let Some(object) = entry.as_object_mut() {
                object.insert("vars".to_owned(), Value::Object(scope.vars));
            }
            entry
        })
        .collect();
    Ctx::from(minijinja::value::Serde(&entries))
}

/// The address templates see: `localhost` for a local host, else the SSH address (the
/// host's name when it gives none).
pub fn address(host: &Host) -> String {
    match host.spec.transport() {
        crate::model::host::Transport::Local => "localhost".to_owned(),
        crate::model::host::Transport::Ssh => host
            .spec
            .address
            .clone()
            .unwrap_or_else(|| host.name.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(vars: Value) -> Scope {
        let Value::Object(vars) = vars else {
            panic!("vars must be an object")
        };
        Scope {
            blinded: vars.clone(),
            vars,
            ..Scope::default()
        }
    }

    #[test]
    fn vars_render_after_the_vars_they_use_whatever_their_order() {
        let mut s = scope(serde_json::json!({
            "url": "http://{{ host.address }}:{{ port }}{{ path }}",
            "path": "/{{ app }}/",
            "app": "shop",
            "port": 8080,
            "host": {"address": "10.0.0.5"},
            "list": ["{{ app }}-1", {"x": "{{ port }}"}],
        }));
        render_vars(&mut s, &mut Templates::new()).unwrap();
        assert_eq!(s.vars["url"], "http://10.0.0.5:8080/shop/");
        assert_eq!(s.vars["list"], serde_json::json!(["shop-1", {"x": "8080"}]));
    }

    #[test]
    fn a_loop_is_named_whole() {
        let mut s = scope(serde_json::json!({
            "a": "{{ b }}",
            "b": "{{ c }}-x",
            "c": "{{ a }}",
            "d": "{{ d }}",
        }));
        let problem = render_vars(&mut s, &mut Templates::new()).unwrap_err();
        assert_eq!(
            problem,
            VarProblem::Cycle {
                path: vec!["a".into(), "b".into(), "c".into(), "a".into()]
            }
        );
    }

    #[test]
    fn a_var_made_from_a_secret_is_secret_and_secrets_are_never_rendered() {
        let mut s = scope(serde_json::json!({
            "pw": "{{ not a template }}",
            "dsn": "postgres://app:{{ pw }}@db/app",
            "plain": "{{ 'x' }}",
        }));
        s.secrets.insert("pw".into());
        s.blinded.insert("pw".into(), Value::String("¤¤".into()));
        render_vars(&mut s, &mut Templates::new()).unwrap();
        assert_eq!(s.vars["pw"], "{{ not a template }}");
        assert_eq!(s.vars["dsn"], "postgres://app:{{ not a template }}@db/app");
        assert_eq!(s.blinded["dsn"], "postgres://app:¤¤@db/app");
        assert!(s.secrets.contains("dsn"));
        assert!(!s.secrets.contains("plain"));
    }
}
