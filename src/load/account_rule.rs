//! Rules for the values of `user` and `group` tasks: account names, the primary group, and
//! the text fields of a `/etc/passwd` line. Used by the loader on literal values and by
//! `resolve` on rendered ones; this module only judges text.

use crate::load::document::{Invalid, path_rule};

/// The longest user or group name accepted: 32 is what `useradd` allows by default on
/// glibc systems (`LOGIN_NAME_MAX` is larger, but `utmp` keeps 32 bytes), and a longer name
/// is truncated by `ps`, `who` and `last`.
pub const MAX_NAME_LEN: usize = 32;

/// A user name as the shadow tools accept it everywhere: a letter or `_`, then letters,
/// digits, `.`, `_` or `-` (the POSIX portable set, without a leading `-` or digit, so that
/// it is never read as an option or an id), at most `MAX_NAME_LEN` bytes.
pub fn user_name_rule(name: &str) -> Result<(), Invalid> {
    account_name("user", name)
}

/// A group name: the same rule as user names.
pub fn group_name_rule(name: &str) -> Result<(), Invalid> {
    account_name("group", name)
}

fn account_name(noun: &str, name: &str) -> Result<(), Invalid> {
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !(first_ok && rest_ok) {
        return Err(Invalid {
            code: "manifest::invalid-account-name",
            message: format!("`{}` is not a valid {noun} name", name.escape_debug()),
            label: "not an account name",
            help: "start with a letter or `_`, then use letters, digits, `.`, `_` and `-` only, such as `deploy` or `app_svc`",
        });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Invalid {
            code: "manifest::invalid-account-name",
            message: format!(
                "{noun} name `{name}` is {} characters long, more than {MAX_NAME_LEN}",
                name.len()
            ),
            label: "too long",
            help: "use at most 32 characters: longer names are refused by `useradd` and cut short by `ps`, `who` and `last`",
        });
    }
    Ok(())
}

/// A user's primary group: a group name, or a group id.
pub fn primary_group_rule(group: &str) -> Result<(), Invalid> {
    if !group.is_empty() && group.chars().all(|c| c.is_ascii_digit()) {
        return Ok(());
    }
    group_name_rule(group)
}

/// `home` or `shell`: an absolute path that fits in a `/etc/passwd` field.
pub fn account_path_rule(field: &'static str, path: &str) -> Result<(), Invalid> {
    path_rule(field, path)?;
    if !path.starts_with('/') {
        return Err(Invalid {
            code: "manifest::relative-path",
            message: format!("{field} `{path}` is not absolute"),
            label: "relative path",
            help: "give an absolute path, such as `/bin/bash` for `shell` or `/home/deploy` for `home`",
        });
    }
    no_colon(field, path)
}

/// The comment (GECOS) field: one line, without `:` (the `/etc/passwd` field separator).
pub fn comment_rule(comment: &str) -> Result<(), Invalid> {
    if comment.chars().any(char::is_control) {
        return Err(Invalid {
            code: "manifest::control-character",
            message: "`comment` holds a line break or another control character".to_owned(),
            label: "control character",
            help: "write the comment on one line: it is a field of a `/etc/passwd` line",
        });
    }
    no_colon("comment", comment)
}

fn no_colon(field: &str, text: &str) -> Result<(), Invalid> {
    if text.contains(':') {
        return Err(Invalid {
            code: "manifest::invalid-value",
            message: format!("`{field}` holds a `:`"),
            label: "`:` separates the fields of /etc/passwd",
            help: "remove the `:`: `/etc/passwd` cannot hold it inside a field",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(res: Result<(), Invalid>) -> &'static str {
        match res {
            Ok(()) => "ok",
            Err(invalid) => invalid.code,
        }
    }

    #[test]
    fn account_names_are_portable_and_short() {
        for good in ["deploy", "_apt", "app.svc-2", "A", &"a".repeat(32)] {
            assert_eq!(code(user_name_rule(good)), "ok", "{good}");
        }
        for bad in [
            "",
            "-rf",
            "1000",
            "9lives",
            "dé",
            "a b",
            "a:b",
            "a/b",
            "a\n",
            &"a".repeat(33),
        ] {
            assert_eq!(
                code(group_name_rule(bad)),
                "manifest::invalid-account-name",
                "{bad:?}"
            );
        }
        assert_eq!(code(primary_group_rule("100")), "ok");
        assert_eq!(code(primary_group_rule("staff")), "ok");
        assert_eq!(
            code(primary_group_rule("-1")),
            "manifest::invalid-account-name"
        );
    }

    #[test]
    fn passwd_fields_are_absolute_and_hold_no_separator() {
        assert_eq!(code(account_path_rule("shell", "/bin/bash")), "ok");
        assert_eq!(code(account_path_rule("home", "/")), "ok");
        assert_eq!(
            code(account_path_rule("home", "home/x")),
            "manifest::relative-path"
        );
        assert_eq!(
            code(account_path_rule("home", "/srv/a:b")),
            "manifest::invalid-value"
        );
        assert_eq!(code(comment_rule("Ada Lovelace,Room 1,,")), "ok");
        assert_eq!(code(comment_rule("a:b")), "manifest::invalid-value");
        assert_eq!(code(comment_rule("a\nb")), "manifest::control-character");
    }
}
