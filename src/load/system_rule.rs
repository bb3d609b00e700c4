//! Rules for the values of `sysctl` and `cron` tasks: parameter names, cron entry names,
//! schedules and the one-line fields of a cron entry. Used by the loader on literal values
//! and by `resolve` on rendered ones; this module only judges text.

use crate::load::document::{Invalid, path_rule};

/// The nicknames cron accepts in place of five time fields.
const CRON_NICKNAMES: [&str; 8] = [
    "@reboot",
    "@hourly",
    "@daily",
    "@midnight",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
];

/// A kernel parameter name as `sysctl` takes it: dot-separated parts of letters, digits,
/// `_` and `-` (`net.ipv4.ip_forward`). It becomes a path below `/proc/sys` and a file
/// name, so nothing else is allowed.
pub fn sysctl_name_rule(name: &str) -> Result<(), Invalid> {
    let part_ok = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if name.split('.').all(part_ok) {
        return Ok(());
    }
    Err(Invalid {
        code: "manifest::invalid-value",
        message: format!("`{}` is not a kernel parameter name", name.escape_debug()),
        label: "not a parameter name",
        help: "name the parameter as `sysctl` does: parts of letters, digits, `_` and `-` joined by dots, such as `net.ipv4.ip_forward`",
    })
}

/// A sysctl value: something to write, on one line.
pub fn sysctl_value_rule(value: &str) -> Result<(), Invalid> {
    if value.trim().is_empty() {
        return Err(Invalid {
            code: "manifest::invalid-value",
            message: "`value` is empty".to_owned(),
            label: "empty value",
            help: "give the value to set, such as `1`, or set `state: absent` to remove the persisted value",
        });
    }
    one_line("value", value)
}

/// The name of a cron entry, which names its file: cron (through `run-parts` rules) skips
/// files whose names hold anything but letters, digits, `_` and `-`.
pub fn cron_name_rule(name: &str) -> Result<(), Invalid> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        return Ok(());
    }
    Err(Invalid {
        code: "manifest::invalid-value",
        message: format!("`{}` cannot name a cron entry", name.escape_debug()),
        label: "not a cron entry name",
        help: "use letters, digits, `_` and `-` only, such as `backup-db`: cron ignores files with other names",
    })
}

/// A schedule: five time fields, or one of cron's nicknames.
pub fn cron_schedule_rule(schedule: &str) -> Result<(), Invalid> {
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    let field_ok = |field: &&str| {
        field
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | ',' | '-' | '/'))
    };
    let ok = match fields.as_slice() {
        [nickname] => CRON_NICKNAMES.contains(nickname),
        fields => fields.len() == 5 && fields.iter().all(field_ok),
    };
    if ok {
        return Ok(());
    }
    Err(Invalid {
        code: "manifest::invalid-schedule",
        message: format!("`{}` is not a cron schedule", schedule.escape_debug()),
        label: "not a schedule",
        help: "give five fields (minute hour day-of-month month day-of-week), such as `0 3 * * *`, or one of @reboot, @hourly, @daily, @weekly, @monthly, @yearly",
    })
}

/// A cron entry's command: something to run, on one line (a line break would start
/// another entry).
pub fn cron_command_rule(command: &str) -> Result<(), Invalid> {
    if command.trim().is_empty() {
        return Err(Invalid {
            code: "manifest::empty-command",
            message: "`command` is an empty command".to_owned(),
            label: "nothing to run",
            help: "give the command cron runs, such as `/usr/local/bin/backup`",
        });
    }
    one_line("command", command)
}

/// The directory of cron entries: absolute, without control characters.
pub fn cron_dir_rule(dir: &str) -> Result<(), Invalid> {
    path_rule("dir", dir)?;
    if dir.starts_with('/') {
        return Ok(());
    }
    Err(Invalid {
        code: "manifest::relative-path",
        message: format!("cron directory `{dir}` is not absolute"),
        label: "relative path",
        help: "paths on the host must be absolute, such as `/etc/cron.d`",
    })
}

fn one_line(field: &str, text: &str) -> Result<(), Invalid> {
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Invalid {
            code: "manifest::control-character",
            message: format!("`{field}` holds a line break or another control character"),
            label: "control character",
            help: "write the value on one line",
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
    fn sysctl_names_are_dotted_plain_parts() {
        assert_eq!(code(sysctl_name_rule("net.ipv4.ip_forward")), "ok");
        assert_eq!(
            code(sysctl_name_rule("net.ipv4.conf.eth-0.rp_filter")),
            "ok"
        );
        assert_eq!(code(sysctl_name_rule("vm.swappiness")), "ok");
        for bad in [
            "",
            "net..ipv4",
            ".net",
            "net.",
            "net/ipv4",
            "a b",
            "net.*",
            "../x",
        ] {
            assert_eq!(
                code(sysctl_name_rule(bad)),
                "manifest::invalid-value",
                "{bad}"
            );
        }
        assert_eq!(code(sysctl_value_rule("32768 60999")), "ok");
        assert_eq!(code(sysctl_value_rule(" ")), "manifest::invalid-value");
        assert_eq!(
            code(sysctl_value_rule("1\n2")),
            "manifest::control-character"
        );
    }

    #[test]
    fn cron_names_are_file_names_cron_reads() {
        assert_eq!(code(cron_name_rule("backup-db_2")), "ok");
        for bad in ["", "backup.db", "a/b", "a b", ".."] {
            assert_eq!(
                code(cron_name_rule(bad)),
                "manifest::invalid-value",
                "{bad}"
            );
        }
    }

    #[test]
    fn schedules_have_five_fields_or_a_nickname() {
        for good in ["0 3 * * *", "*/5 0-6 1,15 jan mon-fri", "@reboot", "@daily"] {
            assert_eq!(code(cron_schedule_rule(good)), "ok", "{good}");
        }
        for bad in [
            "",
            "0 3 * *",
            "0 3 * * * *",
            "@sometimes",
            "0 3 * * ;",
            "@daily 1",
        ] {
            assert_eq!(
                code(cron_schedule_rule(bad)),
                "manifest::invalid-schedule",
                "{bad}"
            );
        }
    }

    #[test]
    fn cron_commands_and_dirs() {
        assert_eq!(code(cron_command_rule("/usr/local/bin/backup --all")), "ok");
        assert_eq!(code(cron_command_rule("  ")), "manifest::empty-command");
        assert_eq!(
            code(cron_command_rule("a\nb")),
            "manifest::control-character"
        );
        assert_eq!(code(cron_dir_rule("/etc/cron.d")), "ok");
        assert_eq!(code(cron_dir_rule("cron.d")), "manifest::relative-path");
    }
}
