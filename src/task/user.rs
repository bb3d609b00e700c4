//! `user`: a local account created, changed or removed with the shadow tools (`useradd`,
//! `usermod`, `userdel`). One POSIX `sh` script per task reads the account (`getent passwd`,
//! the member lists of `getent group`) before it acts, runs at most one command that writes,
//! and says what it changed; a converged host costs one round trip and reports no change.
//!
//! Only the fields a task gives are compared and changed. `system`, `createHome` and a
//! missing primary group matter only when the account is created. `state: absent` runs
//! `userdel` without `-r`: the home directory and mail spool stay (decision 0016). Hosts
//! with only the `BusyBox` `adduser` (Alpine without `shadow`) are refused with what to
//! install.

use std::fmt::Write as _;

use crate::account::UserAccount;
use crate::model::task_kind::PathState;
use crate::task::{Applied, Failure, REFUSED, TaskContext, UNCHANGED, run_script};
use crate::template::shell_quote;
use crate::transport::Transport;

pub async fn apply<T: Transport>(
    transport: &T,
    ctx: &TaskContext,
    r#become: Option<&str>,
    host: &str,
    want: &UserAccount,
) -> Result<Applied, Failure> {
    let what = format!("user {}", want.name);
    run_script(transport, ctx, r#become, script(host, want), &what).await
}

/// Lines that make sure `tools` can be run, or refuse naming `host` and what to install.
/// `/usr/sbin` and `/sbin` are added to `PATH`: a login over SSH as another user than root
/// often lacks them, and the shadow tools live there.
pub fn require_tools(host: &str, tools: &[&str]) -> String {
    format!(
        r#"PATH="$PATH:/usr/sbin:/sbin"; export PATH
for _t in {tools}; do
  if ! command -v "$_t" >/dev/null 2>&1; then
    if command -v adduser >/dev/null 2>&1 && [ "$(readlink -f "$(command -v adduser)" 2>/dev/null)" = "$(readlink -f "$(command -v busybox 2>/dev/null)" 2>/dev/null)" ]; then
      printf 'host %s has only BusyBox adduser/addgroup, which cannot change an existing account: install the shadow tools (on Alpine: apk add shadow)\n' {host} >&2
    else
      printf 'host %s has no %s: install the shadow tools (package passwd on Debian and Ubuntu, shadow-utils on Fedora and RHEL, shadow on Alpine)\n' {host} "$_t" >&2
    fi
    exit {REFUSED}
  fi
done
"#,
        tools = tools.join(" "),
        host = shell_quote(host),
    )
}

/// The shell script for one user task. Every value is quoted.
pub fn script(host: &str, want: &UserAccount) -> String {
    let mut out = format!("set -e\nu={}\nchanged=0\n", shell_quote(&want.name));
    match want.state {
        PathState::Present => {
            out.push_str(&require_tools(host, &["getent", "useradd", "usermod"]));
            let _ = write!(
                out,
                "if _e=$(getent passwd \"$u\"); then\n{}else\n{}fi\n",
                update(want),
                create(want)
            );
        }
        PathState::Absent => {
            out.push_str(&require_tools(host, &["getent", "userdel"]));
            // Without `-r`: a home may hold the only copy of someone's data.
            out.push_str(
                "if getent passwd \"$u\" >/dev/null 2>&1; then userdel \"$u\"; echo 'DROVER_DID removed (its home directory is left in place)'; changed=1; fi\n",
            );
        }
    }
    let _ = writeln!(out, "[ $changed = 1 ] || echo {UNCHANGED}");
    out
}

/// The supplementary groups `$u` is a listed member of, sorted and joined by commas: what
/// `usermod -G` sets, so a desired list that names the primary group compares equal too.
const MEMBER_OF: &str = r#"_cur=$(getent group | awk -F: -v u="$u" '{ n = split($4, m, ","); for (i = 1; i <= n; i++) if (m[i] == u) { print $1; break } }' | LC_ALL=C sort -u | awk 'NR > 1 { printf "," } { printf "%s", $0 }')"#;

/// An existing account: compare each given field, then one `usermod` with every change.
fn update(want: &UserAccount) -> String {
    let mut out = String::from(
        "  IFS=: read -r _n _x cu cg cc ch cs <<DROVER_PASSWD\n$_e\nDROVER_PASSWD\n  set --\n",
    );
    if let Some(uid) = want.uid {
        compare(&mut out, "uid", "$cu", "-u", &uid.to_string());
    }
    if let Some(shell) = &want.shell {
        compare(&mut out, "shell", "$cs", "-s", shell);
    }
    if let Some(home) = &want.home {
        compare(&mut out, "home", "$ch", "-d", home);
    }
    if let Some(comment) = &want.comment {
        compare(&mut out, "comment", "$cc", "-c", comment);
    }
    if let Some(group) = &want.group {
        // A number is compared with the gid, a name with the gid's name.
        if group.chars().all(|c| c.is_ascii_digit()) {
            compare(&mut out, "group", "$cg", "-g", group);
        } else {
            out.push_str("  _gn=$(getent group \"$cg\" | cut -d: -f1) || _gn=; _gn=${_gn:-$cg}\n");
            compare(&mut out, "group", "$_gn", "-g", group);
        }
    }
    if let Some(groups) = &want.groups {
        let _ = writeln!(out, "  {MEMBER_OF}");
        if want.append {
            out.push_str("  _add=\n");
            for group in groups {
                let _ = writeln!(
                    out,
                    r#"  case ",$_cur," in *,{g},*) ;; *) _add="${{_add:+$_add,}}"{g} ;; esac"#,
                    g = shell_quote(group)
                );
            }
            out.push_str(
                r#"  if [ -n "$_add" ]; then set -- "$@" -a -G "$_add"; printf 'DROVER_DID groups +%s\n' "$_add"; fi
"#,
            );
        } else {
            let joined = groups.join(",");
            let shown = shell_quote(if joined.is_empty() { "(none)" } else { &joined });
            let joined = shell_quote(&joined);
            let _ = writeln!(
                out,
                r#"  if [ "$_cur" != {joined} ]; then set -- "$@" -G {joined}; printf 'DROVER_DID groups %s → %s\n' "${{_cur:-(none)}}" {shown}; fi"#
            );
        }
    }
    out.push_str("  if [ $# -gt 0 ]; then usermod \"$@\" \"$u\"; changed=1; fi\n");
    out
}

/// Adds `flag value` to the `usermod` arguments when `current` (a shell expansion) differs.
fn compare(out: &mut String, name: &str, current: &str, flag: &str, value: &str) {
    let value = shell_quote(value);
    let _ = writeln!(
        out,
        r#"  if [ "{current}" != {value} ]; then set -- "$@" {flag} {value}; printf 'DROVER_DID {name} %s → %s\n' "{current}" {value}; fi"#
    );
}

/// A new account: one `useradd` with every given field.
fn create(want: &UserAccount) -> String {
    let mut args = Vec::new();
    let mut flag = |flag: &str, value: Option<String>| {
        if let Some(value) = value {
            args.push(format!("{flag} {}", shell_quote(&value)));
        }
    };
    flag("-u", want.uid.map(|u| u.to_string()));
    flag("-g", want.group.clone());
    flag("-G", want.groups.as_ref().map(|g| g.join(",")));
    flag("-s", want.shell.clone());
    flag("-d", want.home.clone());
    flag("-c", want.comment.clone());
    if want.system {
        args.push("-r".to_owned());
    }
    // `-M` explicitly: some distributions create homes by default (`CREATE_HOME yes`).
    args.push(if want.create_home { "-m" } else { "-M" }.to_owned());
    let mut out = String::new();
    if want.group.is_none() {
        // With `USERGROUPS_ENAB`, `useradd` refuses a name that a group already has (say a
        // `group` task made it first): join that group instead.
        out.push_str(
            "  set --; if getent group \"$u\" >/dev/null 2>&1; then set -- -g \"$u\"; fi\n",
        );
    } else {
        out.push_str("  set --\n");
    }
    let _ = writeln!(
        out,
        "  useradd \"$@\" {} \"$u\"\n  echo 'DROVER_DID created'; changed=1",
        args.join(" ")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(state: PathState) -> UserAccount {
        UserAccount {
            name: "deploy".to_owned(),
            uid: Some(1001),
            group: None,
            groups: Some(vec!["adm".to_owned(), "docker".to_owned()]),
            append: false,
            shell: Some("/bin/bash".to_owned()),
            home: Some("/srv/my home".to_owned()),
            create_home: true,
            comment: Some("Deploy 'bot'".to_owned()),
            system: false,
            state,
        }
    }

    #[test]
    fn a_new_user_is_made_by_one_useradd_with_every_field_quoted() {
        let s = script("web-1", &want(PathState::Present));
        assert!(s.starts_with("set -e\nu=deploy\n"), "{s}");
        assert!(
            s.contains(
                r#"useradd "$@" -u 1001 -G adm,docker -s /bin/bash -d '/srv/my home' -c 'Deploy '\''bot'\''' -m "$u""#
            ),
            "{s}"
        );
        assert!(s.contains("for _t in getent useradd usermod; do"), "{s}");
        assert!(s.contains("printf 'host %s has only BusyBox"), "{s}");
        assert!(s.contains("' web-1 >&2"), "{s}");
    }

    #[test]
    fn an_existing_user_gets_one_usermod_with_only_what_differs() {
        let s = script("web-1", &want(PathState::Present));
        assert!(
            s.contains(r#"if [ "$cu" != 1001 ]; then set -- "$@" -u 1001;"#),
            "{s}"
        );
        assert!(
            s.contains(r#"if [ "$cs" != /bin/bash ]; then set -- "$@" -s /bin/bash;"#),
            "{s}"
        );
        assert!(
            s.contains(r#"if [ "$_cur" != adm,docker ]; then set -- "$@" -G adm,docker;"#),
            "{s}"
        );
        assert_eq!(s.matches("usermod \"$@\"").count(), 1, "{s}");
        let append = script(
            "web-1",
            &UserAccount {
                append: true,
                uid: None,
                shell: None,
                home: None,
                comment: None,
                ..want(PathState::Present)
            },
        );
        assert!(append.contains("*,adm,*) ;;"), "{append}");
        assert!(append.contains("-a -G \"$_add\""), "{append}");
        assert!(!append.contains("\"$cu\""), "{append}");
    }

    #[test]
    fn absent_runs_userdel_without_removing_the_home() {
        let s = script("web-1", &want(PathState::Absent));
        assert!(s.contains("userdel \"$u\""), "{s}");
        assert!(!s.contains("-r") && !s.contains("useradd \""), "{s}");
    }
}
