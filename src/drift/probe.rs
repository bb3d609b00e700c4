//! The probe protocol: one read-only shell script per host that looks at every probed
//! instance, and the parser of its answer.
//!
//! The script is POSIX `sh` plus `stat`, `sha256sum` and `head` (coreutils or `BusyBox`), and
//! the package manager's and `systemctl`'s query commands. Files are looked at in bulk: one
//! `stat` and one `sha256sum` for every file of a group, and `head` only for the files whose
//! hash differs from what was applied, so a host costs a handful of processes whatever the
//! number of files. Instances run as another user (`become`) form a group of their own,
//! run through `sudo -n` on the same connection.
//!
//! The answer is a sequence of records, each starting on a line `<nonce> <TAG> <args>`
//! (the nonce is random per probe, so no file content can forge a record); a record's
//! payload is everything up to the newline before the next record:
//!
//! | record            | payload                                   |
//! | ----------------- | ----------------------------------------- |
//! | `G g`             | group `g` started (its `sudo` worked)     |
//! | `F i A/N/U`       | file `i` absent / not a regular file / unreadable |
//! | `STAT g`          | `size mode user group` per readable file of group `g`, in order |
//! | `SUMS g`          | `sha256sum` lines for the same files      |
//! | `C i`             | the first `CONTENT_LIMIT` bytes of file `i` (its hash differed) |
//! | `P i`             | `1 name` or `0 name` per package          |
//! | `S i`             | `systemctl is-active` then `is-enabled`   |
//! | `K i status`      | the first `OUTPUT_LIMIT` bytes of check `i`'s output |
//! | `X i`             | why instance `i` could not be probed      |
//! | `DONE`            | the script reached its end                |

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::model::task_kind::{PackageState, ServiceState};
use crate::template::shell_quote;

/// Bytes of a drifted file's content the probe brings back for a diff.
pub const CONTENT_LIMIT: usize = 64 * 1024;
/// Bytes of a failing check's output the probe brings back.
pub const OUTPUT_LIMIT: usize = 8 * 1024;

/// What to look at for one instance.
#[derive(Debug, Clone)]
pub enum Look<'a> {
    File {
        path: &'a str,
        /// Hex SHA-256 of the content drover applied.
        sha256: String,
    },
    Package {
        names: &'a [String],
    },
    Service {
        name: &'a str,
    },
    Check {
        command: &'a str,
        timeout_secs: u64,
    },
}

/// Instances probed as one user: `become` (through `sudo -n`) or the login user.
#[derive(Debug, Clone, Default)]
pub struct Group<'a> {
    pub r#become: Option<&'a str>,
    /// (instance index, what to look at), indices unique across groups.
    pub looks: Vec<(usize, Look<'a>)>,
}

/// The whole script for one host.
pub fn script(nonce: &str, groups: &[Group<'_>]) -> String {
    // One compound command: the shell reads all of it before running any of it, so nothing
    // it runs can swallow the rest of the script from standard input.
    let mut out = String::from("{\n");
    for (g, group) in groups.iter().enumerate() {
        let body = group_script(nonce, g, group);
        match group.r#become {
            None => out.push_str(&body),
            Some(user) => {
                let _ = write!(
                    out,
                    "sudo -n -u {} -- sh -s <<'DROVER_GROUP_{nonce}'\n{body}DROVER_GROUP_{nonce}\n",
                    shell_quote(user)
                );
            }
        }
    }
    let _ = writeln!(out, "printf '\\n%s DONE\\n' {nonce}\n}} </dev/null");
    out
}

fn group_script(nonce: &str, g: usize, group: &Group<'_>) -> String {
    let mut out = format!(
        "_n={nonce}\n_r() {{ printf '\\n%s %s\\n' \"$_n\" \"$*\"; }}\n_r G {g}\nset --\n_fi=\n"
    );
    let mut files = false;
    for (i, look) in &group.looks {
        match look {
            Look::File { path, sha256 } => {
                files = true;
                let _ = writeln!(
                    out,
                    "_dp{i}={p}; _dx{i}={sha256}\nif [ -f \"$_dp{i}\" ]; then if [ -r \"$_dp{i}\" ]; then set -- \"$@\" \"$_dp{i}\"; _fi=\"$_fi {i}\"; else _r F {i} U; fi; elif [ -e \"$_dp{i}\" ] || [ -L \"$_dp{i}\" ]; then _r F {i} N; else _r F {i} A; fi",
                    p = shell_quote(path),
                );
            }
            Look::Package { .. } | Look::Service { .. } | Look::Check { .. } => {}
        }
    }
    if files {
        let _ = writeln!(
            out,
            r#"if [ $# -gt 0 ]; then
  _r STAT {g}; stat -L -c '%s %a %U %G' -- "$@" 2>/dev/null
  _ds=$(sha256sum -- "$@" 2>/dev/null)
  _r SUMS {g}; printf '%s\n' "$_ds"
  set -- $_fi
  while IFS= read -r _l; do
    [ $# -gt 0 ] || break
    _i=$1; shift
    _h=${{_l#\\}}; _h=${{_h%% *}}
    eval "_x=\$_dx$_i _p=\$_dp$_i"
    if [ "$_h" != "$_x" ]; then _r C "$_i"; head -c {CONTENT_LIMIT} -- "$_p"; fi
  done <<DROVER_SUMS_{nonce}
$_ds
DROVER_SUMS_{nonce}
fi"#
        );
    }
    for (i, look) in &group.looks {
        match look {
            Look::File { .. } => {}
            Look::Package { names } => {
                let words: Vec<String> = names.iter().map(|n| shell_quote(n)).collect();
                let _ = writeln!(
                    out,
                    r#"if command -v dpkg-query >/dev/null 2>&1 || command -v rpm >/dev/null 2>&1 || command -v apk >/dev/null 2>&1; then
  _r P {i}; for _q in {names}; do if {installed}; then echo "1 $_q"; else echo "0 $_q"; fi; done
else _r X {i}; echo 'no supported package manager (dpkg, rpm, apk) on this host'; fi"#,
                    names = words.join(" "),
                    installed = INSTALLED,
                );
            }
            Look::Service { name } => {
                let name = shell_quote(name);
                let _ = writeln!(
                    out,
                    r#"if command -v systemctl >/dev/null 2>&1; then _r S {i}; _a=$(systemctl is-active -- {name} 2>/dev/null); echo "${{_a:-unknown}}"; _e=$(systemctl is-enabled -- {name} 2>/dev/null); echo "${{_e:-not-found}}"
else _r X {i}; echo 'systemctl not found: only systemd services can be probed'; fi"#
                );
            }
            Look::Check {
                command,
                timeout_secs,
            } => {
                let command = shell_quote(command);
                let _ = writeln!(
                    out,
                    r#"_o=$(if command -v timeout >/dev/null 2>&1; then timeout {timeout_secs} sh -c {command}; else sh -c {command}; fi 2>&1 </dev/null); _s=$?
_r K {i} $_s; printf '%s' "$_o" | head -c {OUTPUT_LIMIT}"#
                );
            }
        }
    }
    out
}

/// Whether package `$_q` is installed, by the host's package database.
const INSTALLED: &str = r#"{ if command -v dpkg-query >/dev/null 2>&1; then dpkg-query -W -f='${Status}' "$_q" 2>/dev/null | grep -q 'install ok installed'; elif command -v rpm >/dev/null 2>&1; then rpm -q "$_q" >/dev/null 2>&1; else apk info -e "$_q" >/dev/null 2>&1; fi; }"#;

/// What the host showed for one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    FileAbsent,
    NotRegular,
    Unreadable,
    File {
        size: u64,
        mode: u32,
        owner: String,
        group: String,
        sha256: String,
        /// The content (capped) when its hash differed from the one applied.
        content: Option<Vec<u8>>,
    },
    /// (name, installed) per package.
    Packages(Vec<(String, bool)>),
    Service {
        active: String,
        enabled: String,
    },
    Check {
        status: i32,
        output: Vec<u8>,
    },
    /// The instance could not be probed; why.
    Unknown(String),
}

/// The parsed answer of one host.
#[derive(Debug, Default)]
pub struct Answer {
    pub seen: BTreeMap<usize, Seen>,
    /// The script ran to its end.
    pub done: bool,
}

/// Records as read, before the files of each group are matched with their `stat` and
/// `sha256sum` lines.
#[derive(Default)]
struct Raw<'a> {
    started: BTreeSet<usize>,
    file_marks: BTreeMap<usize, Seen>,
    stat_lines: BTreeMap<usize, &'a [u8]>,
    sum_lines: BTreeMap<usize, &'a [u8]>,
    contents: BTreeMap<usize, Vec<u8>>,
}

/// Reads a host's answer. Instances the answer says nothing about are `Unknown`, with a
/// reason that points at the likely cause (`sudo` refused, output cut short).
pub fn parse(nonce: &str, stdout: &[u8], groups: &[Group<'_>]) -> Answer {
    let mut answer = Answer::default();
    let mut raw = Raw::default();
    for (header, payload) in records(nonce, stdout) {
        read_record(header, payload, &mut answer, &mut raw);
    }
    for (i, seen) in &raw.file_marks {
        answer.seen.insert(*i, seen.clone());
    }
    for (g, group) in groups.iter().enumerate() {
        match_files(g, group, &mut raw, &mut answer);
    }
    // Whatever is still unanswered: a group whose `sudo` failed, or output cut short.
    for (g, group) in groups.iter().enumerate() {
        for (i, _) in &group.looks {
            if answer.seen.contains_key(i) {
                continue;
            }
            let why = match group.r#become {
                Some(user) if !raw.started.contains(&g) => {
                    format!(
                        "`sudo -n -u {user}` did not run the probe (a password is needed, or the user does not exist)"
                    )
                }
                _ if !answer.done => "the probe ended before it reached this instance".to_owned(),
                _ => "the probe said nothing about this instance".to_owned(),
            };
            answer.seen.insert(*i, Seen::Unknown(why));
        }
    }
    answer
}

fn read_record<'a>(header: &str, payload: &'a [u8], answer: &mut Answer, raw: &mut Raw<'a>) {
    let words: Vec<&str> = header.split(' ').collect();
    let number = |n: usize| words.get(n).and_then(|w| w.parse::<usize>().ok());
    let Some(n) = number(1) else {
        answer.done |= words.first() == Some(&"DONE");
        return;
    };
    match words.first().copied().unwrap_or_default() {
        "G" => {
            raw.started.insert(n);
        }
        "F" => {
            let seen = match words.get(2).copied() {
                Some("A") => Seen::FileAbsent,
                Some("N") => Seen::NotRegular,
                _ => Seen::Unreadable,
            };
            raw.file_marks.insert(n, seen);
        }
        "STAT" => {
            raw.stat_lines.insert(n, payload);
        }
        "SUMS" => {
            raw.sum_lines.insert(n, payload);
        }
        "C" => {
            raw.contents.insert(n, payload.to_vec());
        }
        "P" => {
            let packages = lines(payload)
                .filter_map(|l| {
                    let (flag, name) = l.split_once(' ')?;
                    Some((name.to_owned(), flag == "1"))
                })
                .collect();
            answer.seen.insert(n, Seen::Packages(packages));
        }
        "S" => {
            let mut found = lines(payload);
            let active = found.next().unwrap_or("unknown").to_owned();
            let enabled = found.next().unwrap_or("not-found").to_owned();
            answer.seen.insert(n, Seen::Service { active, enabled });
        }
        "K" => {
            let code = words.get(2).and_then(|w| w.parse().ok()).unwrap_or(-1);
            let output = payload.to_vec();
            answer.seen.insert(
                n,
                Seen::Check {
                    status: code,
                    output,
                },
            );
        }
        "X" => {
            let why = String::from_utf8_lossy(payload).trim().to_owned();
            answer.seen.insert(n, Seen::Unknown(why));
        }
        _ => {}
    }
}

/// Matches the readable files of group `g`, in order, with its `stat` and `sha256sum` lines.
fn match_files(g: usize, group: &Group<'_>, raw: &mut Raw<'_>, answer: &mut Answer) {
    let readable: Vec<usize> = group
        .looks
        .iter()
        .filter(|(i, look)| matches!(look, Look::File { .. }) && !raw.file_marks.contains_key(i))
        .map(|(i, _)| *i)
        .collect();
    if readable.is_empty() {
        return;
    }
    let stat_lines: Vec<&str> = raw
        .stat_lines
        .get(&g)
        .map(|p| lines(p).collect())
        .unwrap_or_default();
    let sum_lines: Vec<&str> = raw
        .sum_lines
        .get(&g)
        .map(|p| lines(p).collect())
        .unwrap_or_default();
    if stat_lines.len() != readable.len() || sum_lines.len() != readable.len() {
        let why = if raw.stat_lines.contains_key(&g) {
            "files changed while they were probed; run drift again"
        } else {
            "the probe did not reach these files"
        };
        for i in &readable {
            answer.seen.insert(*i, Seen::Unknown(why.to_owned()));
        }
        return;
    }
    for ((i, stat), sum) in readable.iter().zip(stat_lines).zip(sum_lines) {
        answer
            .seen
            .insert(*i, file_seen(stat, sum, raw.contents.remove(i)));
    }
}

fn file_seen(stat: &str, sum: &str, content: Option<Vec<u8>>) -> Seen {
    let fields: Vec<&str> = stat.split(' ').collect();
    let (Some(size), Some(mode), Some(owner), Some(group)) = (
        fields.first().and_then(|s| s.parse().ok()),
        fields.get(1).and_then(|m| u32::from_str_radix(m, 8).ok()),
        fields.get(2),
        fields.get(3),
    ) else {
        return Seen::Unknown(format!("unexpected `stat` output: {stat}"));
    };
    let sha256 = sum.trim_start_matches('\\');
    let sha256 = sha256.split(' ').next().unwrap_or_default().to_owned();
    Seen::File {
        size,
        mode,
        owner: (*owner).to_owned(),
        group: (*group).to_owned(),
        sha256,
        content,
    }
}

/// The lines of a payload, without the empty last one.
fn lines(payload: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(payload)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
}

/// Splits the answer into (header, payload) records.
fn records<'a>(nonce: &str, stdout: &'a [u8]) -> Vec<(&'a str, &'a [u8])> {
    let marker = format!("\n{nonce} ");
    let marker = marker.as_bytes();
    let mut pieces = Vec::new();
    let mut rest = stdout;
    // Everything before the first marker is not part of any record.
    while let Some(at) = find(rest, marker) {
        let after = rest.get(at + marker.len()..).unwrap_or_default();
        let end = find(after, marker).unwrap_or(after.len());
        let (record, next) = after.split_at(end);
        pieces.push(record);
        rest = next;
    }
    pieces
        .into_iter()
        .filter_map(|record| {
            let (header, payload) = match record.iter().position(|b| *b == b'\n') {
                Some(nl) => {
                    let (header, payload) = record.split_at(nl);
                    (header, payload.get(1..).unwrap_or_default())
                }
                None => (record, &[][..]),
            };
            Some((std::str::from_utf8(header).ok()?, payload))
        })
        .collect()
}

/// Where `needle` (which starts with a newline) first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(at, _)| at)
        .find(|at| {
            haystack
                .get(*at..)
                .is_some_and(|tail| tail.starts_with(needle))
        })
}

/// The state a service probe found, in the words `systemctl` uses.
pub fn service_matches(state: ServiceState, active: &str) -> bool {
    match state {
        ServiceState::Running => active == "active" || active == "reloading",
        ServiceState::Stopped => active != "active" && active != "reloading",
    }
}

/// Whether a package found installed (or not) is what `state` wants.
pub fn package_matches(state: PackageState, installed: bool) -> bool {
    match state {
        PackageState::Present => installed,
        PackageState::Absent => !installed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> Vec<Group<'static>> {
        vec![
            Group {
                r#become: None,
                looks: vec![
                    (
                        0,
                        Look::File {
                            path: "/etc/a",
                            sha256: "aa".to_owned(),
                        },
                    ),
                    (
                        1,
                        Look::File {
                            path: "/etc/b c",
                            sha256: "bb".to_owned(),
                        },
                    ),
                    (
                        2,
                        Look::File {
                            path: "/etc/gone",
                            sha256: "cc".to_owned(),
                        },
                    ),
                    (
                        3,
                        Look::Check {
                            command: "false",
                            timeout_secs: 5,
                        },
                    ),
                ],
            },
            Group {
                r#become: Some("root"),
                looks: vec![(4, Look::Service { name: "nginx" })],
            },
        ]
    }

    #[test]
    fn an_answer_is_read_record_by_record() {
        let answer = b"noise\nN G 0\nN F 2 A\nN STAT 0\n12 644 root root\n5 600 app app\nN SUMS 0\naa  /etc/a\n\\ff  /etc/b\\nc\nN C 1\nnew\ntext\nN K 3 1\nboom\nN G 1\nN S 4\ninactive\nenabled\nN DONE\n";
        let parsed = parse("N", answer, &groups());
        assert!(parsed.done);
        assert_eq!(parsed.seen[&2], Seen::FileAbsent);
        assert_eq!(
            parsed.seen[&0],
            Seen::File {
                size: 12,
                mode: 0o644,
                owner: "root".into(),
                group: "root".into(),
                sha256: "aa".into(),
                content: None
            }
        );
        // A content record keeps its bytes exactly (the newline before the next record is
        // the separator, not content); a `\`-escaped name still yields the hash.
        assert_eq!(
            parsed.seen[&1],
            Seen::File {
                size: 5,
                mode: 0o600,
                owner: "app".into(),
                group: "app".into(),
                sha256: "ff".into(),
                content: Some(b"new\ntext".to_vec())
            }
        );
        assert_eq!(
            parsed.seen[&3],
            Seen::Check {
                status: 1,
                output: b"boom".to_vec()
            }
        );
        assert_eq!(
            parsed.seen[&4],
            Seen::Service {
                active: "inactive".into(),
                enabled: "enabled".into()
            }
        );
    }

    #[test]
    fn silence_is_never_taken_for_in_sync() {
        // `sudo` refused the second group and the output stopped early.
        let parsed = parse("N", b"N G 0\nN F 0 A\n", &groups());
        assert!(!parsed.done);
        assert!(matches!(&parsed.seen[&1], Seen::Unknown(why) if why.contains("did not reach")));
        assert!(matches!(&parsed.seen[&3], Seen::Unknown(why) if why.contains("ended before")));
        assert!(matches!(&parsed.seen[&4], Seen::Unknown(why) if why.contains("sudo -n -u root")));
    }

    #[test]
    fn a_file_that_changes_while_probed_is_not_guessed_at() {
        let parsed = parse(
            "N",
            b"N G 0\nN STAT 0\n1 644 r r\nN SUMS 0\naa  /etc/a\nN DONE\n",
            &groups(),
        );
        assert!(matches!(&parsed.seen[&0], Seen::Unknown(why) if why.contains("changed while")));
    }

    #[test]
    fn the_script_quotes_paths_and_runs_become_groups_through_sudo() {
        let script = script("N", &groups());
        assert!(script.contains("_dp1='/etc/b c'"));
        assert!(script.contains("sudo -n -u root -- sh -s <<'DROVER_GROUP_N'"));
        assert!(script.starts_with("{\n") && script.ends_with("} </dev/null\n"));
    }
}
