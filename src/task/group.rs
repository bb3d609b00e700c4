//! `group`: a local group created, changed or removed with `groupadd`, `groupmod`,
//! `groupdel`. One POSIX `sh` script per task reads the group (`getent group`) before it
//! acts and says what it changed.
//!
//! `gid` is compared only when given; `system` matters only when the group is created.
//! Changing a gid leaves files that carry the old one as they are, as `groupmod` does.
//! Removing a group that is some user's primary group fails with `groupdel`'s own message.

use std::fmt::Write as _;

use crate::account::GroupAccount;
use crate::model::task_kind::PathState;
use crate::task::user::require_tools;
use crate::task::{Applied, Failure, TaskContext, UNCHANGED, run_script};
use crate::template::shell_quote;
use crate::transport::Transport;

pub async fn apply<T: Transport>(
    transport: &T,
    ctx: &TaskContext,
    r#become: Option<&str>,
    host: &str,
    want: &GroupAccount,
) -> Result<Applied, Failure> {
    let what = format!("group {}", want.name);
    run_script(transport, ctx, r#become, script(host, want), &what).await
}

/// The shell script for one group task.
pub fn script(host: &str, want: &GroupAccount) -> String {
    let mut out = format!("set -e\ng={}\nchanged=0\n", shell_quote(&want.name));
    match want.state {
        PathState::Present => {
            out.push_str(&require_tools(host, &["getent", "groupadd", "groupmod"]));
            let gid = want.gid.map(|g| g.to_string());
            out.push_str("if _e=$(getent group \"$g\"); then\n");
            if let Some(gid) = &gid {
                let _ = writeln!(
                    out,
                    r#"  _gid=$(printf '%s\n' "$_e" | cut -d: -f3)
  if [ "$_gid" != {gid} ]; then groupmod -g {gid} "$g"; echo "DROVER_DID gid $_gid → {gid}"; changed=1; fi"#
                );
            } else {
                out.push_str("  :\n");
            }
            let mut args = String::new();
            if let Some(gid) = &gid {
                let _ = write!(args, "-g {gid} ");
            }
            if want.system {
                args.push_str("-r ");
            }
            let _ = writeln!(
                out,
                "else\n  groupadd {args}\"$g\"; echo 'DROVER_DID created'; changed=1\nfi"
            );
        }
        PathState::Absent => {
            out.push_str(&require_tools(host, &["getent", "groupdel"]));
            out.push_str(
                "if getent group \"$g\" >/dev/null 2>&1; then groupdel \"$g\"; echo 'DROVER_DID removed'; changed=1; fi\n",
            );
        }
    }
    let _ = writeln!(out, "[ $changed = 1 ] || echo {UNCHANGED}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(state: PathState) -> GroupAccount {
        GroupAccount {
            name: "app".to_owned(),
            gid: Some(2001),
            system: true,
            state,
        }
    }

    #[test]
    fn a_group_is_created_or_its_gid_changed_only_when_it_differs() {
        let s = script("web-1", &want(PathState::Present));
        assert!(s.starts_with("set -e\ng=app\n"), "{s}");
        assert!(s.contains("groupadd -g 2001 -r \"$g\""), "{s}");
        assert!(
            s.contains("if [ \"$_gid\" != 2001 ]; then groupmod -g 2001 \"$g\""),
            "{s}"
        );
        let s = script(
            "web-1",
            &GroupAccount {
                gid: None,
                system: false,
                ..want(PathState::Present)
            },
        );
        assert!(
            s.contains("groupadd \"$g\"") && !s.contains("groupmod -g"),
            "{s}"
        );
    }

    #[test]
    fn absent_runs_groupdel_only_when_the_group_exists() {
        let s = script("web-1", &want(PathState::Absent));
        assert!(s.contains("then groupdel \"$g\""), "{s}");
        assert!(!s.contains("groupadd \""), "{s}");
    }
}
