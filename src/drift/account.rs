//! A `user` or `group` task against what `getent` showed: existence, then only the fields
//! the task sets.

use crate::account::{GroupAccount, UserAccount};
use crate::drift::Finding;
use crate::drift::probe::UserSeen;
use crate::model::task_kind::PathState;

/// What differs between a user task and the account found (`None`: no such user).
pub fn user_findings(want: &UserAccount, found: Option<&UserSeen>) -> Vec<Finding> {
    let path = format!("user {}", want.name);
    let found = match (want.state, found) {
        (PathState::Absent, None) => return Vec::new(),
        (PathState::Absent, Some(found)) => {
            return vec![Finding::Unexpected {
                path,
                found: format!("an account (uid {})", found.uid),
            }];
        }
        (PathState::Present, None) => return vec![Finding::Missing { path }],
        (PathState::Present, Some(found)) => found,
    };
    let mut out = Vec::new();
    let mut differ = |field: &str, applied: Option<String>, seen: String| {
        if let Some(applied) = applied.filter(|a| *a != seen) {
            out.push(Finding::Attribute {
                path: path.clone(),
                field: field.to_owned(),
                applied,
                found: seen,
            });
        }
    };
    differ(
        "uid",
        want.uid.map(|u| u.to_string()),
        found.uid.to_string(),
    );
    differ("shell", want.shell.clone(), found.shell.clone());
    differ("home", want.home.clone(), found.home.clone());
    differ("comment", want.comment.clone(), found.comment.clone());
    if let Some(group) = &want.group {
        // A number is compared with the gid, a name with the gid's name.
        let seen = if group.chars().all(|c| c.is_ascii_digit()) || found.group.is_empty() {
            found.gid.to_string()
        } else {
            found.group.clone()
        };
        differ("group", Some(group.clone()), seen);
    }
    if let Some(groups) = &want.groups {
        let seen = shown(&found.groups);
        if want.append {
            let missing: Vec<&str> = groups
                .iter()
                .filter(|g| !found.groups.contains(g))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                differ("groups", Some(format!("+{}", missing.join(","))), seen);
            }
        } else {
            differ("groups", Some(shown(groups)), seen);
        }
    }
    out
}

/// A group list as findings show it: comma-joined, `(none)` when empty.
fn shown(groups: &[String]) -> String {
    if groups.is_empty() {
        "(none)".to_owned()
    } else {
        groups.join(",")
    }
}

/// What differs between a group task and the group found (`None`: no such group).
pub fn group_findings(want: &GroupAccount, gid: Option<u32>) -> Vec<Finding> {
    let path = format!("group {}", want.name);
    match (want.state, gid) {
        (PathState::Absent, None) => Vec::new(),
        (PathState::Absent, Some(gid)) => vec![Finding::Unexpected {
            path,
            found: format!("a group (gid {gid})"),
        }],
        (PathState::Present, None) => vec![Finding::Missing { path }],
        (PathState::Present, Some(found)) => want
            .gid
            .filter(|applied| *applied != found)
            .map(|applied| Finding::Attribute {
                path,
                field: "gid".to_owned(),
                applied: applied.to_string(),
                found: found.to_string(),
            })
            .into_iter()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summaries(findings: &[Finding]) -> Vec<String> {
        findings.iter().map(Finding::summary).collect()
    }

    fn want() -> UserAccount {
        UserAccount {
            name: "deploy".to_owned(),
            uid: Some(1001),
            group: Some("staff".to_owned()),
            groups: Some(vec!["adm".to_owned(), "docker".to_owned()]),
            append: false,
            shell: Some("/bin/bash".to_owned()),
            home: None,
            create_home: true,
            comment: None,
            system: false,
            state: PathState::Present,
        }
    }

    fn seen() -> UserSeen {
        UserSeen {
            uid: 1001,
            gid: 50,
            group: "staff".to_owned(),
            comment: String::new(),
            home: "/home/deploy".to_owned(),
            shell: "/bin/bash".to_owned(),
            groups: vec!["adm".to_owned(), "docker".to_owned()],
        }
    }

    #[test]
    fn a_user_is_compared_on_the_fields_its_task_sets() {
        assert!(user_findings(&want(), Some(&seen())).is_empty());
        let changed = UserSeen {
            uid: 1002,
            shell: "/bin/sh".to_owned(),
            groups: vec!["adm".to_owned(), "sudo".to_owned()],
            home: "/elsewhere".to_owned(),
            ..seen()
        };
        assert_eq!(
            summaries(&user_findings(&want(), Some(&changed))),
            [
                "user deploy: uid 1001 → 1002",
                "user deploy: shell /bin/bash → /bin/sh",
                "user deploy: groups adm,docker → adm,sudo",
            ]
        );
        let append = UserAccount {
            append: true,
            ..want()
        };
        assert_eq!(
            summaries(&user_findings(&append, Some(&changed)))[2],
            "user deploy: groups +docker → adm,sudo"
        );
        assert_eq!(
            summaries(&user_findings(&want(), None)),
            ["user deploy is missing"]
        );
        let absent = UserAccount {
            state: PathState::Absent,
            ..want()
        };
        assert_eq!(
            summaries(&user_findings(&absent, Some(&seen()))),
            ["user deploy should be absent but is an account (uid 1001)"]
        );
    }

    #[test]
    fn a_group_is_compared_on_existence_and_gid() {
        let want = GroupAccount {
            name: "app".to_owned(),
            gid: Some(2001),
            system: false,
            state: PathState::Present,
        };
        assert!(group_findings(&want, Some(2001)).is_empty());
        assert_eq!(
            summaries(&group_findings(&want, Some(2002))),
            ["group app: gid 2001 → 2002"]
        );
        assert_eq!(
            summaries(&group_findings(&want, None)),
            ["group app is missing"]
        );
    }
}
