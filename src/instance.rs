//! `InstanceId`: a (host, workflow, task) triple, written `edge-1/nginx/config`, with the
//! item's key for a task that loops (`forEach`): `edge-1/nginx/vhost[api]`.
//!
//! The instance is the unit of planning, state and reporting; its id is how users name it.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::meta::{HostName, TaskName, WorkflowName};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceId {
    pub host: HostName,
    pub workflow: WorkflowName,
    pub task: TaskName,
    /// The item of a `forEach` task this instance is for.
    pub item: Option<ItemKey>,
}

/// The key of one item of a `forEach` task: letters, digits, `.`, `_` and `-`, starting
/// with a letter or digit, at most 63 characters; it stays stable while the item is listed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemKey(Arc<str>);

impl ItemKey {
    pub fn parse(text: &str) -> Result<ItemKey, String> {
        let valid = text.len() <= 63
            && text.starts_with(|c: char| c.is_ascii_alphanumeric())
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if valid {
            Ok(ItemKey(Arc::from(text)))
        } else {
            Err(format!(
                "`{text}` cannot name an item: use letters, digits, `.`, `_` and `-` (starting with a letter or digit, at most 63)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl InstanceId {
    pub fn new(host: HostName, workflow: WorkflowName, task: TaskName) -> InstanceId {
        InstanceId {
            host,
            workflow,
            task,
            item: None,
        }
    }

    /// The same task's instance for one item.
    #[must_use]
    pub fn with_item(mut self, item: ItemKey) -> InstanceId {
        self.item = Some(item);
        self
    }

    /// The id without its item: the task every item of a loop belongs to.
    #[must_use]
    pub fn without_item(&self) -> InstanceId {
        InstanceId {
            item: None,
            ..self.clone()
        }
    }

    /// The task part of the id as users read it: `config`, or `vhost[api]` for an item.
    pub fn task_part(&self) -> String {
        match &self.item {
            Some(item) => format!("{}[{item}]", self.task),
            None => self.task.to_string(),
        }
    }

    pub fn parse(text: &str) -> Result<InstanceId, String> {
        let mut parts = text.splitn(3, '/');
        let (Some(h), Some(w), Some(t)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!(
                "`{text}` is not an instance id; write it as host/workflow/task"
            ));
        };
        let (task, item) = match t.strip_suffix(']').and_then(|t| t.split_once('[')) {
            Some((task, item)) => (task, Some(ItemKey::parse(item)?)),
            None => (t, None),
        };
        if task.contains('/') {
            return Err(format!(
                "`{text}` is not an instance id; write it as host/workflow/task"
            ));
        }
        Ok(InstanceId {
            host: HostName::parse(h)?,
            workflow: WorkflowName::parse(w)?,
            task: TaskName::parse(task)?,
            item,
        })
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.host, self.workflow, self.task)?;
        if let Some(item) = &self.item {
            write!(f, "[{item}]")?;
        }
        Ok(())
    }
}

impl TryFrom<String> for InstanceId {
    type Error = String;
    fn try_from(text: String) -> Result<InstanceId, String> {
        InstanceId::parse(&text)
    }
}

impl From<InstanceId> for String {
    fn from(id: InstanceId) -> String {
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text() {
        let id = InstanceId::parse("edge-1/nginx/config").unwrap();
        assert_eq!(id.to_string(), "edge-1/nginx/config");
        assert!(InstanceId::parse("edge-1/nginx").is_err());
        assert!(InstanceId::parse("edge-1/nginx/config/x").is_err());
        assert!(InstanceId::parse("Edge/nginx/config").is_err());
        let item = InstanceId::parse("edge-1/nginx/vhost[api.v2]").unwrap();
        assert_eq!(item.to_string(), "edge-1/nginx/vhost[api.v2]");
        assert_eq!(item.task_part(), "vhost[api.v2]");
        assert_eq!(item.without_item().to_string(), "edge-1/nginx/vhost");
        assert!(InstanceId::parse("edge-1/nginx/vhost[a/b]").is_err());
        assert!(InstanceId::parse("edge-1/nginx/vhost[]").is_err());
        assert!(InstanceId::parse("edge-1/nginx/vhost[a b]").is_err());
    }
}
