//! `HostSelector`: which hosts a workflow (or a `HostDefaults` document) applies to.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::meta::HostName;

/// Hosts by label, by label expression, by name, or any combination (then a host must match
/// every part), read as Kubernetes reads label selectors.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostSelector {
    /// Hosts whose labels include all of these (`{}` selects every host).
    pub match_labels: Option<BTreeMap<String, String>>,
    /// Hosts whose labels meet every one of these requirements:
    /// `{key: role, operator: In, values: [web, api]}`.
    #[schemars(length(min = 1))]
    pub match_expressions: Option<Vec<LabelExpression>>,
    /// Hosts with one of these names.
    #[schemars(length(min = 1))]
    pub names: Option<Vec<HostName>>,
}

/// One requirement on a label.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelExpression {
    /// The label to look at.
    #[schemars(regex(pattern = r"^\S+$"))]
    pub key: String,
    pub operator: LabelOperator,
    /// Required (not empty) for `In` and `NotIn`; not allowed for `Exists` and `DoesNotExist`.
    pub values: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum LabelOperator {
    /// The label is set to one of `values`.
    In,
    /// The label is not set, or set to none of `values`.
    NotIn,
    /// The label is set, to any value.
    Exists,
    /// The label is not set.
    DoesNotExist,
}

impl LabelOperator {
    /// Whether the operator compares with a list of values (else it must have none).
    pub fn takes_values(self) -> bool {
        match self {
            LabelOperator::In | LabelOperator::NotIn => true,
            LabelOperator::Exists | LabelOperator::DoesNotExist => false,
        }
    }
}

impl LabelExpression {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        let listed = |v: &String| self.values.as_ref().is_some_and(|vs| vs.contains(v));
        match self.operator {
            LabelOperator::In => value.is_some_and(listed),
            LabelOperator::NotIn => !value.is_some_and(listed),
            LabelOperator::Exists => value.is_some(),
            LabelOperator::DoesNotExist => value.is_none(),
        }
    }
}

impl HostSelector {
    /// Whether this selector says anything at all; an empty `hosts: {}` is a mistake.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_none() && self.match_expressions.is_none() && self.names.is_none()
    }

    pub fn matches(&self, name: &HostName, labels: &BTreeMap<String, String>) -> bool {
        let by_labels = self
            .match_labels
            .as_ref()
            .is_none_or(|wanted| wanted.iter().all(|(k, v)| labels.get(k) == Some(v)));
        let by_expressions = self
            .match_expressions
            .as_ref()
            .is_none_or(|all| all.iter().all(|e| e.matches(labels)));
        let by_name = self.names.as_ref().is_none_or(|names| names.contains(name));
        by_labels && by_expressions && by_name && !self.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn selectors_match_labels_names_or_both() {
        let web = HostName::parse("web-1").unwrap();
        let host_labels = labels(&[("role", "web"), ("site", "lyon")]);
        let by_label = HostSelector {
            match_labels: Some(labels(&[("role", "web")])),
            ..HostSelector::default()
        };
        assert!(by_label.matches(&web, &host_labels));
        let wrong_label = HostSelector {
            match_labels: Some(labels(&[("role", "db")])),
            ..HostSelector::default()
        };
        assert!(!wrong_label.matches(&web, &host_labels));
        let all = HostSelector {
            match_labels: Some(BTreeMap::new()),
            ..HostSelector::default()
        };
        assert!(all.matches(&web, &BTreeMap::new()));
        let both = HostSelector {
            match_labels: Some(labels(&[("role", "web")])),
            names: Some(vec![HostName::parse("web-2").unwrap()]),
            ..HostSelector::default()
        };
        assert!(!both.matches(&web, &host_labels));
        assert!(!HostSelector::default().matches(&web, &host_labels));
    }

    #[test]
    fn expressions_read_as_kubernetes_label_selectors() {
        let web = HostName::parse("web-1").unwrap();
        let host_labels = labels(&[("role", "web"), ("site", "lyon")]);
        let expr = |key: &str, operator, values: Option<&[&str]>| LabelExpression {
            key: key.to_owned(),
            operator,
            values: values.map(|vs| vs.iter().map(|v| (*v).to_owned()).collect()),
        };
        let cases = [
            (expr("role", LabelOperator::In, Some(&["web", "api"])), true),
            (expr("role", LabelOperator::In, Some(&["db"])), false),
            (expr("role", LabelOperator::NotIn, Some(&["db"])), true),
            (expr("role", LabelOperator::NotIn, Some(&["web"])), false),
            (expr("tier", LabelOperator::NotIn, Some(&["gold"])), true),
            (expr("site", LabelOperator::Exists, None), true),
            (expr("tier", LabelOperator::Exists, None), false),
            (expr("tier", LabelOperator::DoesNotExist, None), true),
            (expr("site", LabelOperator::DoesNotExist, None), false),
        ];
        for (expression, expected) in cases {
            let selector = HostSelector {
                match_expressions: Some(vec![expression.clone()]),
                ..HostSelector::default()
            };
            assert_eq!(
                selector.matches(&web, &host_labels),
                expected,
                "{expression:?}"
            );
        }
        let both = HostSelector {
            match_labels: Some(labels(&[("site", "lyon")])),
            match_expressions: Some(vec![expr("role", LabelOperator::In, Some(&["db"]))]),
            names: None,
        };
        assert!(!both.matches(&web, &host_labels), "every part must hold");
    }
}
