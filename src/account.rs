//! A `user` or `group` task after rendering: what `resolve` makes, `task` applies, `drift`
//! compares and `state` records. One type for all four, so that a field added here reaches
//! every one of them.

use serde::{Deserialize, Serialize};

use crate::model::task_kind::PathState;
use crate::secret::Redactor;

/// A local user account as a task wants it. `None` fields are neither compared nor changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAccount {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The primary group: a name, or a gid in digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Supplementary groups, sorted and without duplicates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// Add to `groups` without removing from others.
    #[serde(default)]
    pub append: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    /// `useradd -m` when the user is created (the default already applied).
    #[serde(default)]
    pub create_home: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default)]
    pub system: bool,
    pub state: PathState,
}

/// A local group as a task wants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupAccount {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(default)]
    pub system: bool,
    pub state: PathState,
}

impl UserAccount {
    /// The account with every text field passed through `redactor`.
    #[must_use]
    pub fn redacted(&self, redactor: &Redactor) -> UserAccount {
        let text = |t: &Option<String>| t.as_deref().map(|t| redactor.redact(t));
        UserAccount {
            name: redactor.redact(&self.name),
            group: text(&self.group),
            groups: self
                .groups
                .as_ref()
                .map(|g| g.iter().map(|g| redactor.redact(g)).collect()),
            shell: text(&self.shell),
            home: text(&self.home),
            comment: text(&self.comment),
            ..self.clone()
        }
    }

    /// "user deploy (uid 1001, shell /bin/bash)" or "user deploy (absent)": one line for plans.
    pub fn describe(&self) -> String {
        if self.state == PathState::Absent {
            return format!("user {} (absent)", self.name);
        }
        let mut parts = Vec::new();
        if let Some(uid) = self.uid {
            parts.push(format!("uid {uid}"));
        }
        if let Some(group) = &self.group {
            parts.push(format!("group {group}"));
        }
        if let Some(groups) = &self.groups {
            let how = if self.append { "groups +" } else { "groups " };
            parts.push(format!("{how}{}", groups.join(",")));
        }
        if let Some(shell) = &self.shell {
            parts.push(format!("shell {shell}"));
        }
        if let Some(home) = &self.home {
            parts.push(format!("home {home}"));
        }
        if parts.is_empty() {
            format!("user {}", self.name)
        } else {
            format!("user {} ({})", self.name, parts.join(", "))
        }
    }

    /// (field, value) for every field the task sets, in a fixed order: what plans diff.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("name", self.name.clone())];
        let mut opt = |field, value: Option<String>| {
            if let Some(value) = value {
                out.push((field, value));
            }
        };
        opt("uid", self.uid.map(|u| u.to_string()));
        opt("group", self.group.clone());
        opt("groups", self.groups.as_ref().map(|g| g.join(",")));
        opt("append", self.append.then(|| "true".to_owned()));
        opt("shell", self.shell.clone());
        opt("home", self.home.clone());
        opt("comment", self.comment.clone());
        opt("createHome", Some(self.create_home.to_string()));
        opt("system", self.system.then(|| "true".to_owned()));
        opt("state", Some(state_word(self.state).to_owned()));
        out
    }
}

impl GroupAccount {
    #[must_use]
    pub fn redacted(&self, redactor: &Redactor) -> GroupAccount {
        GroupAccount {
            name: redactor.redact(&self.name),
            ..self.clone()
        }
    }

    pub fn describe(&self) -> String {
        match (self.state, self.gid) {
            (PathState::Absent, _) => format!("group {} (absent)", self.name),
            (PathState::Present, Some(gid)) => format!("group {} (gid {gid})", self.name),
            (PathState::Present, None) => format!("group {}", self.name),
        }
    }

    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("name", self.name.clone())];
        if let Some(gid) = self.gid {
            out.push(("gid", gid.to_string()));
        }
        if self.system {
            out.push(("system", "true".to_owned()));
        }
        out.push(("state", state_word(self.state).to_owned()));
        out
    }
}

fn state_word(state: PathState) -> &'static str {
    match state {
        PathState::Present => "present",
        PathState::Absent => "absent",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_name_only_what_the_task_sets() {
        let user = UserAccount {
            name: "deploy".to_owned(),
            uid: Some(1001),
            group: None,
            groups: Some(vec!["adm".to_owned(), "docker".to_owned()]),
            append: true,
            shell: Some("/bin/bash".to_owned()),
            home: None,
            create_home: true,
            comment: None,
            system: false,
            state: PathState::Present,
        };
        assert_eq!(
            user.describe(),
            "user deploy (uid 1001, groups +adm,docker, shell /bin/bash)"
        );
        let fields: Vec<&str> = user.fields().iter().map(|(f, _)| *f).collect();
        assert_eq!(
            fields,
            [
                "name",
                "uid",
                "groups",
                "append",
                "shell",
                "createHome",
                "state"
            ]
        );
        let group = GroupAccount {
            name: "app".to_owned(),
            gid: None,
            system: true,
            state: PathState::Absent,
        };
        assert_eq!(group.describe(), "group app (absent)");
    }
}
