//! `InstanceId`: a (host, workflow, task) triple, written `edge-1/nginx/config`.
//!
//! The instance is the unit of planning, state and reporting; its id is how users name it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::meta::{HostName, TaskName, WorkflowName};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceId {
    pub host: HostName,
    pub workflow: WorkflowName,
    pub task: TaskName,
}

impl InstanceId {
    pub fn new(host: HostName, workflow: WorkflowName, task: TaskName) -> InstanceId {
        InstanceId {
            host,
            workflow,
            task,
        }
    }

    pub fn parse(text: &str) -> Result<InstanceId, String> {
        let mut parts = text.split('/');
        let (Some(h), Some(w), Some(t), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "`{text}` is not an instance id; write it as host/workflow/task"
            ));
        };
        Ok(InstanceId {
            host: HostName::parse(h)?,
            workflow: WorkflowName::parse(w)?,
            task: TaskName::parse(t)?,
        })
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.host, self.workflow, self.task)
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
    }
}
