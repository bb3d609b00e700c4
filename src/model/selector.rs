//! `HostSelector`: which hosts a workflow runs on.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::meta::HostName;

/// `spec.hosts` of a workflow: hosts by label, by name, or both (then a host must match both).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostSelector {
    /// Hosts whose labels include all of these (`{}` selects every host).
    pub match_labels: Option<BTreeMap<String, String>>,
    /// Hosts with one of these names.
    #[schemars(length(min = 1))]
    pub names: Option<Vec<HostName>>,
}

impl HostSelector {
    /// Whether this selector says anything at all; an empty `hosts: {}` is a mistake.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_none() && self.names.is_none()
    }

    pub fn matches(&self, name: &HostName, labels: &BTreeMap<String, String>) -> bool {
        let by_labels = self
            .match_labels
            .as_ref()
            .is_none_or(|wanted| wanted.iter().all(|(k, v)| labels.get(k) == Some(v)));
        let by_name = self.names.as_ref().is_none_or(|names| names.contains(name));
        by_labels && by_name && !self.is_empty()
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
            names: None,
        };
        assert!(by_label.matches(&web, &host_labels));
        let wrong_label = HostSelector {
            match_labels: Some(labels(&[("role", "db")])),
            names: None,
        };
        assert!(!wrong_label.matches(&web, &host_labels));
        let all = HostSelector {
            match_labels: Some(BTreeMap::new()),
            names: None,
        };
        assert!(all.matches(&web, &BTreeMap::new()));
        let both = HostSelector {
            match_labels: Some(labels(&[("role", "web")])),
            names: Some(vec![HostName::parse("web-2").unwrap()]),
        };
        assert!(!both.matches(&web, &host_labels));
        assert!(!HostSelector::default().matches(&web, &host_labels));
    }
}
