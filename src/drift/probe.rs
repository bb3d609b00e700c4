//! The probe protocol: one read-only shell script per host that looks at every probed
//! instance, and the parser of its answer.
//!
//! The script is POSIX `sh` plus `stat`, `sha256sum` and `head` (coreutils or `BusyBox`), and
//! the query commands of the package manager and of the init system (`systemctl`, or
//! OpenRC's `rc-service` and `rc-update`). Files are looked at in bulk: one `stat` and one
//! `sha256sum` for every file of a group, and `head` only for the files whose hash differs
//! from what was applied, so a host costs a handful of processes whatever the number of
//! files. Instances run as another user (`become`) form a group of their own,
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
//! | `S i`             | `systemctl show` lines (OpenRC's answer in the same words) |
//! | `E i L/D/O/A`     | path `i` is a symbolic link (payload: its target), a directory (payload: `mode uid gid user group`), something else, or absent |
//! | `ED i status/N/A` | the exit status of edit `i`'s `awk` program on its file (3: in sync), or the file is not a regular file, or absent |
//! | `Y i` / `Y i A`   | kernel parameter `i`'s value (payload), or no such parameter |
//! | `PW i` / `PW i A` | user `i`'s `getent passwd` line, then `g=` its primary group's name and `s=` the groups listing it as a member; or no such user |
//! | `GR i` / `GR i A` | group `i`'s `getent group` line, or no such group |
//! | `K i status`      | the first `OUTPUT_LIMIT` bytes of check `i`'s output |
//! | `X i`             | why instance `i` could not be probed      |
//! | `DONE`            | the script reached its end                |

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::edit::{self, Edit};
use crate::model::task_kind::{PackageState, ServiceState};
use crate::template::shell_quote;

/// Sets `_init` to the host's init system: `systemd` when it booted the host
/// (`/run/systemd/system`), else `openrc` when `rc-service` is there, else `systemd` when
/// `systemctl` is (it then says itself what is wrong), else empty. `/sbin` and `/usr/sbin`
/// are added to `PATH`, where OpenRC's tools live and a plain user's login may not look.
/// Shared by the `service` task and its probe, so apply and drift agree on the host.
pub const DETECT_INIT: &str = r#"PATH="$PATH:/usr/sbin:/sbin"; export PATH
if [ -d /run/systemd/system ]; then _init=systemd
elif command -v rc-service >/dev/null 2>&1; then _init=openrc
elif command -v systemctl >/dev/null 2>&1; then _init=systemd
else _init=; fi"#;

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
    /// What is at a path, without following a symbolic link: for `directory` and `link`.
    Entry {
        path: &'a str,
    },
    /// Whether a `line` or `block` edit would change the file at `path`.
    Edit {
        path: &'a str,
        edit: Edit<'a>,
    },
    Check {
        command: &'a str,
        timeout_secs: u64,
    },
    /// A kernel parameter's live value, read from `/proc/sys`: for `sysctl`.
    Sysctl {
        name: &'a str,
    },
    /// A local account (`getent passwd` and group memberships): for `user`.
    User {
        name: &'a str,
    },
    /// A local group (`getent group`): for `group`.
    Group {
        name: &'a str,
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

/// Most files looked at by one `stat` and one `sha256sum`: bounds the arguments of one
/// command (`ARG_MAX`) and the shell's work building them.
const BATCH_FILES: usize = 256;
/// Most bytes of paths in one batch.
const BATCH_PATH_BYTES: usize = 64 * 1024;

/// The file looks of a group, split into the batches the script checks together; the
/// parser splits them the same way.
fn file_batches<'g>(group: &'g Group<'_>) -> Vec<Vec<(usize, &'g str, &'g str)>> {
    let mut batches: Vec<Vec<(usize, &str, &str)>> = Vec::new();
    let mut bytes = 0;
    for (i, look) in &group.looks {
        let Look::File { path, sha256 } = look else {
            continue;
        };
        let full = batches
            .last()
            .is_none_or(|b| b.len() >= BATCH_FILES || bytes + path.len() > BATCH_PATH_BYTES);
        if full {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += path.len();
        if let Some(batch) = batches.last_mut() {
            batch.push((*i, *path, sha256.as_str()));
        }
    }
    batches
}

fn group_script(nonce: &str, g: usize, group: &Group<'_>) -> String {
    // Inside `sudo … sh -s` the script is the shell's standard input: the body is one
    // compound command too, so that nothing it runs reads the rest.
    let mut out =
        format!("{{\n_n={nonce}\n_r() {{ printf '\\n%s %s\\n' \"$_n\" \"$*\"; }}\n_r G {g}\n");
    if group
        .looks
        .iter()
        .any(|(_, l)| matches!(l, Look::Entry { .. }))
    {
        out.push_str(ENTRY);
        out.push('\n');
    }
    if group
        .looks
        .iter()
        .any(|(_, l)| matches!(l, Look::User { .. } | Look::Group { .. }))
    {
        out.push_str(ACCOUNT);
        out.push('\n');
    }
    let batches = file_batches(group);
    if !batches.is_empty() {
        let _ = writeln!(
            out,
            "if command -v stat >/dev/null 2>&1 && command -v sha256sum >/dev/null 2>&1; then _dt=1; else _dt=; _r XF {g}; echo 'stat or sha256sum is not installed on this host'; fi"
        );
    }
    for (b, batch) in batches.iter().enumerate() {
        let _ = writeln!(out, "if [ -n \"$_dt\" ]; then\nset --; _fi=");
        for (i, path, sha256) in batch {
            let _ = writeln!(
                out,
                "_dp{i}={p}; _dx{i}={sha256}\nif [ -L \"$_dp{i}\" ]; then _r F {i} N; elif [ -f \"$_dp{i}\" ]; then if [ -r \"$_dp{i}\" ]; then set -- \"$@\" \"$_dp{i}\"; _fi=\"$_fi {i}\"; else _r F {i} U; fi; elif [ -e \"$_dp{i}\" ]; then _r F {i} N; else _r F {i} A; fi",
                p = shell_quote(path),
            );
        }
        let _ = writeln!(
            out,
            r#"if [ $# -gt 0 ]; then
  _r STAT {g}.{b}; stat -c '%s	%a	%u	%g	%U	%G' -- "$@" 2>&1
  _ds=$(sha256sum -- "$@" 2>/dev/null)
  _r SUMS {g}.{b}; printf '%s\n' "$_ds"
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
fi
fi"#
        );
    }
    for (i, look) in &group.looks {
        look_script(*i, look, &mut out);
    }
    out.push_str("} </dev/null\n");
    out
}

/// The lines that look at one instance (files are looked at in batches, before).
fn look_script(i: usize, look: &Look<'_>, out: &mut String) {
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
            // OpenRC's answer is put in systemd's words (`status` 0: active, 32 crashed:
            // failed; in the default runlevel: enabled), so one parser and one comparison
            // serve both.
            let _ = writeln!(
                out,
                r#"{DETECT_INIT}
if [ "$_init" = systemd ]; then
  _o=$(systemctl show -p LoadState -p ActiveState -p UnitFileState -- {name} 2>&1); _s=$?
  if [ "$_s" = 0 ]; then _r S {i}; printf '%s\n' "$_o"; else _r X {i}; printf 'systemctl show failed: %s\n' "$_o"; fi
elif [ "$_init" = openrc ]; then
  if rc-service --exists {name} >/dev/null 2>&1; then
    _s=0; rc-service {name} status >/dev/null 2>&1 || _s=$?
    case $_s in 0) _a=active;; 32) _a=failed;; *) _a=inactive;; esac
    if rc-update show default 2>/dev/null | _n={name} awk 'BEGIN {{ n = ENVIRON["_n"] }} $1 == n {{ f = 1 }} END {{ exit !f }}'; then _u=enabled; else _u=disabled; fi
    _r S {i}; printf 'LoadState=loaded\nActiveState=%s\nUnitFileState=%s\n' "$_a" "$_u"
  else _r X {i}; echo 'OpenRC has no such service (no script in /etc/init.d)'; fi
else _r X {i}; echo 'neither systemd nor OpenRC found (no /run/systemd/system, no systemctl, no rc-service): services can only be probed under one of them'; fi"#
            );
        }
        Look::Sysctl { name } => {
            let _ = writeln!(
                out,
                r#"_p={p}
if [ -e "$_p" ]; then if _o=$(cat -- "$_p" 2>&1); then _r Y {i}; printf '%s\n' "$_o"; else _r X {i}; printf 'reading %s failed: %s\n' "$_p" "$_o"; fi
else _r Y {i} A; fi"#,
                p = shell_quote(&crate::resolve::sysctl_proc_path(name)),
            );
        }
        Look::Entry { path } => {
            let _ = writeln!(out, "_p={}; _e {i}", shell_quote(path));
        }
        Look::User { name } => {
            let _ = writeln!(out, "_q={}; _pw {i}", shell_quote(name));
        }
        Look::Group { name } => {
            let _ = writeln!(out, "_q={}; _gr {i}", shell_quote(name));
        }
        Look::Edit { path, edit } => edit_look(i, path, edit, out),
        Look::Check {
            command,
            timeout_secs,
        } => {
            let command = shell_quote(command);
            let _ = writeln!(
                out,
                r#"if command -v timeout >/dev/null 2>&1; then _dto=1; else _dto=; fi
_o=$(if [ -n "$_dto" ]; then timeout {timeout_secs} sh -c {command}; else sh -c {command}; fi 2>&1 </dev/null); _s=$?
_r K {i} $_s $_dto; printf '%s' "$_o" | head -c {OUTPUT_LIMIT}"#
            );
        }
    }
}

/// Records the exit status of an edit's program on its file (its output thrown away).
fn edit_look(i: usize, path: &str, edit: &Edit<'_>, out: &mut String) {
    let _ = writeln!(
        out,
        r#"_p={path}
if [ -f "$_p" ]; then
  if [ -r "$_p" ]; then _s=0; {awk} >/dev/null 2>&1 || _s=$?; _r ED {i} $_s
  else _r X {i}; printf 'cannot read %s as the probe user; give the task become\n' "$_p"; fi
elif [ -e "$_p" ]; then _r ED {i} N
else _r ED {i} A; fi"#,
        path = shell_quote(path),
        awk = edit::awk_command(edit, "\"$_p\""),
    );
}

/// Defines `_e i`, which records what is at `$_p`. "Absent" is said only when the nearest
/// ancestor that exists is a directory the probe's user may search (or not a directory at
/// all): behind a directory it cannot enter, an entry is invisible, and that is unknown.
const ENTRY: &str = r#"_e() {
  if [ -L "$_p" ]; then
    if _o=$(readlink -- "$_p" 2>&1); then _r E "$1" L; printf '%s\n' "$_o"; else _r X "$1"; printf 'readlink failed: %s\n' "$_o"; fi
  elif [ -d "$_p" ]; then
    if _o=$(stat -c '%a	%u	%g	%U	%G' -- "$_p" 2>&1); then _r E "$1" D; printf '%s\n' "$_o"; else _r X "$1"; printf 'stat failed: %s\n' "$_o"; fi
  elif [ -e "$_p" ]; then _r E "$1" O
  else
    _a=$_p
    while [ "$_a" != / ] && [ ! -e "$_a" ]; do _a=${_a%/*}; [ -n "$_a" ] || _a=/; done
    if [ -d "$_a" ] && [ ! -x "$_a" ]; then _r X "$1"; printf 'cannot look inside %s as the probe user; give the task become\n' "$_a"; else _r E "$1" A; fi
  fi
}"#;

/// Defines `_pw i` and `_gr i`, which record the account or group named `$_q`. `getent`
/// exits 2 for "no such entry"; anything else it says is an error, never "absent".
const ACCOUNT: &str = r#"_pw() {
  if ! command -v getent >/dev/null 2>&1; then _r X "$1"; echo 'getent is not installed on this host'; return; fi
  if _o=$(getent passwd "$_q"); then
    _gi=$(printf '%s\n' "$_o" | cut -d: -f4)
    _gn=$(getent group "$_gi" | cut -d: -f1) || _gn=
    _gs=$(getent group | awk -F: -v u="$_q" '{ n = split($4, m, ","); for (i = 1; i <= n; i++) if (m[i] == u) { print $1; break } }' | LC_ALL=C sort -u | awk 'NR > 1 { printf "," } { printf "%s", $0 }')
    _r PW "$1"; printf '%s\ng=%s\ns=%s\n' "$_o" "$_gn" "$_gs"
  else _s=$?; if [ $_s = 2 ]; then _r PW "$1" A; else _r X "$1"; echo "getent passwd failed with status $_s"; fi; fi
}
_gr() {
  if ! command -v getent >/dev/null 2>&1; then _r X "$1"; echo 'getent is not installed on this host'; return; fi
  if _o=$(getent group "$_q"); then _r GR "$1"; printf '%s\n' "$_o"
  else _s=$?; if [ $_s = 2 ]; then _r GR "$1" A; else _r X "$1"; echo "getent group failed with status $_s"; fi; fi
}"#;

/// Whether package `$_q` is installed, by the host's package database.
const INSTALLED: &str = r#"{ if command -v dpkg-query >/dev/null 2>&1; then dpkg-query -W -f='${Status}' "$_q" 2>/dev/null | grep -q 'install ok installed'; elif command -v rpm >/dev/null 2>&1; then rpm -q "$_q" >/dev/null 2>&1; else apk info -e "$_q" >/dev/null 2>&1; fi; }"#;

/// What the host showed for one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    FileAbsent,
    /// A directory, a symlink, a FIFO…: not the regular file drover wrote.
    NotRegular,
    Unreadable,
    File {
        size: u64,
        mode: u32,
        uid: u32,
        gid: u32,
        owner: String,
        group: String,
        sha256: String,
        /// The hash differs from the one applied (compared here, where both are known).
        differs: bool,
        /// The content (capped) when its hash differed from the one applied.
        content: Option<Vec<u8>>,
    },
    /// (name, installed) per package.
    Packages(Vec<(String, bool)>),
    Service {
        /// `systemctl`'s `ActiveState`: active, inactive, failed…
        active: String,
        /// `UnitFileState`: enabled, disabled, static, masked…
        enabled: String,
    },
    Entry(Entry),
    Edit(Edited),
    /// A kernel parameter's value, whitespace normalized; `None`: no such parameter.
    Sysctl {
        value: Option<String>,
    },
    /// A local account; `None`: no such user.
    User(Option<UserSeen>),
    /// A local group's gid; `None`: no such group.
    Group {
        gid: Option<u32>,
    },
    Check {
        status: i32,
        /// The check ran under `timeout` (so 124 means it timed out).
        under_timeout: bool,
        output: Vec<u8>,
    },
    /// The instance could not be probed; why.
    Unknown(String),
}

/// What is at a path, as `Look::Entry` saw it (links not followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Absent,
    Link {
        target: String,
    },
    Directory {
        mode: u32,
        uid: u32,
        gid: u32,
        owner: String,
        group: String,
    },
    /// A regular file, a device, a FIFO, a socket.
    Other,
}

impl Entry {
    /// "a directory", "a symbolic link to /x", for findings.
    pub fn describe(&self) -> String {
        match self {
            Entry::Absent => "absent".to_owned(),
            Entry::Link { target } => format!("a symbolic link to {target}"),
            Entry::Directory { .. } => "a directory".to_owned(),
            Entry::Other => "a file".to_owned(),
        }
    }
}

/// A local account as `getent` showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSeen {
    pub uid: u32,
    pub gid: u32,
    /// The primary group's name; empty when the gid has no group.
    pub group: String,
    pub comment: String,
    pub home: String,
    pub shell: String,
    /// The groups that list the user as a member, sorted.
    pub groups: Vec<String>,
}

/// What an edit's probe found at its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edited {
    Absent,
    /// A directory, a device…: not a file to edit.
    NotAFile,
    /// The exit status of the edit's program on the file (`edit::UNCHANGED`: in sync).
    Status(i32),
}

/// The parsed answer of one host.
#[derive(Debug, Default)]
pub struct Answer {
    pub seen: BTreeMap<usize, Seen>,
    /// The script ran to its end.
    pub done: bool,
}

/// Records as read, before the files of each batch are matched with their `stat` and
/// `sha256sum` lines.
#[derive(Default)]
struct Raw {
    started: BTreeSet<usize>,
    /// Groups whose files could not be looked at, and why.
    no_tools: BTreeMap<usize, String>,
    file_marks: BTreeMap<usize, Seen>,
    stat_lines: BTreeMap<String, Vec<String>>,
    sum_lines: BTreeMap<String, Vec<String>>,
    contents: BTreeMap<usize, Vec<u8>>,
    /// The index of the last per-instance record read: when the answer stops early, that
    /// record may be cut short.
    last: Option<usize>,
}

/// Reads a host's answer. Instances the answer says nothing about, or says it only in
/// part, are `Unknown`, with a reason that points at the likely cause.
pub fn parse(nonce: &str, stdout: &[u8], groups: &[Group<'_>]) -> Answer {
    let mut answer = Answer::default();
    let mut raw = Raw::default();
    for (header, payload) in records(nonce, stdout) {
        read_record(header, payload, &mut answer, &mut raw);
    }
    if !answer.done
        && let Some(last) = raw.last
    {
        answer.seen.insert(
            last,
            Seen::Unknown("the probe's output stopped in the middle of this instance".to_owned()),
        );
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

fn read_record(header: &str, payload: &[u8], answer: &mut Answer, raw: &mut Raw) {
    let words: Vec<&str> = header.split(' ').collect();
    let tag = words.first().copied().unwrap_or_default();
    if let ("STAT" | "SUMS", Some(batch)) = (tag, words.get(1)) {
        let table = if tag == "STAT" {
            &mut raw.stat_lines
        } else {
            &mut raw.sum_lines
        };
        table.insert((*batch).to_owned(), lines(payload));
        return;
    }
    let Some(n) = words.get(1).and_then(|w| w.parse::<usize>().ok()) else {
        answer.done |= tag == "DONE";
        return;
    };
    match tag {
        "G" => {
            raw.started.insert(n);
        }
        "XF" => {
            raw.no_tools
                .insert(n, String::from_utf8_lossy(payload).trim().to_owned());
        }
        "F" => {
            let seen = match words.get(2).copied() {
                Some("A") => Seen::FileAbsent,
                Some("N") => Seen::NotRegular,
                _ => Seen::Unreadable,
            };
            raw.file_marks.insert(n, seen);
        }
        "C" => {
            raw.contents.insert(n, payload.to_vec());
        }
        "P" => {
            let packages = lines(payload)
                .iter()
                .filter_map(|l| {
                    let (flag, name) = l.split_once(' ')?;
                    Some((name.to_owned(), flag == "1"))
                })
                .collect();
            answer.seen.insert(n, Seen::Packages(packages));
            raw.last = Some(n);
        }
        "S" => {
            answer.seen.insert(n, service_seen(&lines(payload)));
            raw.last = Some(n);
        }
        "Y" => {
            let value = (words.get(2).copied() != Some("A"))
                .then(|| crate::resolve::normalize_sysctl_value(&String::from_utf8_lossy(payload)));
            answer.seen.insert(n, Seen::Sysctl { value });
            raw.last = Some(n);
        }
        "PW" | "GR" => {
            answer
                .seen
                .insert(n, account_seen(tag, words.get(2).copied(), payload));
            raw.last = Some(n);
        }
        "E" => {
            answer
                .seen
                .insert(n, entry_seen(words.get(2).copied(), payload));
            raw.last = Some(n);
        }
        "ED" => {
            let seen = match words.get(2).copied() {
                Some("A") => Seen::Edit(Edited::Absent),
                Some("N") => Seen::Edit(Edited::NotAFile),
                Some(status) => status.parse().map_or_else(
                    |_| Seen::Unknown(format!("unexpected edit status `{status}`")),
                    |status| Seen::Edit(Edited::Status(status)),
                ),
                None => Seen::Unknown("an edit record without its status".to_owned()),
            };
            answer.seen.insert(n, seen);
            raw.last = Some(n);
        }
        "K" => {
            let code = words.get(2).and_then(|w| w.parse().ok()).unwrap_or(-1);
            answer.seen.insert(
                n,
                Seen::Check {
                    status: code,
                    under_timeout: words.get(3) == Some(&"1"),
                    output: payload.to_vec(),
                },
            );
            raw.last = Some(n);
        }
        "X" => {
            let why = String::from_utf8_lossy(payload).trim().to_owned();
            answer.seen.insert(n, Seen::Unknown(why));
        }
        _ => {}
    }
}

/// A `PW` (user) or `GR` (group) record.
fn account_seen(tag: &str, letter: Option<&str>, payload: &[u8]) -> Seen {
    if tag == "PW" {
        user_seen(letter, payload)
    } else {
        group_seen(letter, payload)
    }
}

/// A `PW` record: absent, or the passwd line, `g=` and `s=` lines.
fn user_seen(letter: Option<&str>, payload: &[u8]) -> Seen {
    if letter == Some("A") {
        return Seen::User(None);
    }
    let text = String::from_utf8_lossy(payload);
    let mut lines = text.lines().filter(|l| !l.is_empty());
    let entry = lines.next().unwrap_or_default();
    let (mut group, mut groups) = (String::new(), Vec::new());
    for line in lines {
        if let Some(name) = line.strip_prefix("g=") {
            name.clone_into(&mut group);
        } else if let Some(list) = line.strip_prefix("s=") {
            groups = list
                .split(',')
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect();
        }
    }
    let fields: Vec<&str> = entry.splitn(7, ':').collect();
    let number = |n: usize| fields.get(n).and_then(|s| s.parse::<u32>().ok());
    let text = |n: usize| fields.get(n).map(|s| (*s).to_owned());
    match (number(2), number(3), text(4), text(5), text(6)) {
        (Some(uid), Some(gid), Some(comment), Some(home), Some(shell)) => {
            Seen::User(Some(UserSeen {
                uid,
                gid,
                group,
                comment,
                home,
                shell,
                groups,
            }))
        }
        _ => Seen::Unknown(format!("unexpected `getent passwd` output: {entry}")),
    }
}

/// A `GR` record: absent, or the group line.
fn group_seen(letter: Option<&str>, payload: &[u8]) -> Seen {
    if letter == Some("A") {
        return Seen::Group { gid: None };
    }
    let first = lines(payload).into_iter().next().unwrap_or_default();
    match first.split(':').nth(2).and_then(|g| g.parse::<u32>().ok()) {
        Some(gid) => Seen::Group { gid: Some(gid) },
        None => Seen::Unknown(format!("unexpected `getent group` output: {first}")),
    }
}

/// An `E` record: its letter and payload.
fn entry_seen(letter: Option<&str>, payload: &[u8]) -> Seen {
    let first = lines(payload).into_iter().next();
    match (letter, first) {
        (Some("A"), _) => Seen::Entry(Entry::Absent),
        (Some("O"), _) => Seen::Entry(Entry::Other),
        (Some("L"), Some(target)) => Seen::Entry(Entry::Link { target }),
        (Some("D"), Some(stat)) => {
            let fields: Vec<&str> = stat.splitn(5, '\t').collect();
            let number = |n: usize| fields.get(n).and_then(|s| s.parse::<u32>().ok());
            match (
                fields.first().and_then(|m| u32::from_str_radix(m, 8).ok()),
                number(1),
                number(2),
                fields.get(3),
                fields.get(4),
            ) {
                (Some(mode), Some(uid), Some(gid), Some(owner), Some(group)) => {
                    Seen::Entry(Entry::Directory {
                        mode,
                        uid,
                        gid,
                        owner: (*owner).to_owned(),
                        group: (*group).to_owned(),
                    })
                }
                _ => Seen::Unknown(format!("unexpected `stat` output: {stat}")),
            }
        }
        _ => Seen::Unknown("the probe's answer about this path was incomplete".to_owned()),
    }
}

/// `systemctl show` lines; a unit that is not loaded, or an answer without the three
/// properties, cannot be judged.
fn service_seen(lines: &[String]) -> Seen {
    let get = |key: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
    };
    match (get("LoadState"), get("ActiveState"), get("UnitFileState")) {
        (Some(load), _, _) if load == "not-found" => {
            Seen::Unknown("systemd has no such unit".to_owned())
        }
        (Some(_), Some(active), Some(enabled)) => Seen::Service { active, enabled },
        _ => Seen::Unknown(format!(
            "unexpected `systemctl show` output: {}",
            lines.join(" ")
        )),
    }
}

/// Matches the readable files of each batch of group `g`, in order, with its `stat` and
/// `sha256sum` lines.
fn match_files(g: usize, group: &Group<'_>, raw: &mut Raw, answer: &mut Answer) {
    for (b, batch) in file_batches(group).iter().enumerate() {
        let readable: Vec<usize> = batch
            .iter()
            .map(|(i, _, _)| *i)
            .filter(|i| !raw.file_marks.contains_key(i))
            .collect();
        if readable.is_empty() {
            continue;
        }
        let key = format!("{g}.{b}");
        let stat_lines = raw.stat_lines.get(&key).cloned().unwrap_or_default();
        let sum_lines = raw.sum_lines.get(&key).cloned().unwrap_or_default();
        if stat_lines.len() != readable.len() || sum_lines.len() != readable.len() {
            let why = if let Some(why) = raw.no_tools.get(&g) {
                why.clone()
            } else if raw.stat_lines.contains_key(&key) {
                let odd = stat_lines
                    .iter()
                    .find(|l| l.split('\t').count() != 6)
                    .map(|l| format!(": {l}"))
                    .unwrap_or_default();
                format!(
                    "{} files were looked at but `stat` gave {} lines and `sha256sum` {} (files changed during the probe, or the tools failed{odd})",
                    readable.len(),
                    stat_lines.len(),
                    sum_lines.len()
                )
            } else {
                "the probe did not reach these files".to_owned()
            };
            for i in &readable {
                answer.seen.insert(*i, Seen::Unknown(why.clone()));
            }
            continue;
        }
        let applied: BTreeMap<usize, &str> = batch.iter().map(|(i, _, h)| (*i, *h)).collect();
        for ((i, stat), sum) in readable.iter().zip(&stat_lines).zip(&sum_lines) {
            let mut seen = file_seen(stat, sum, raw.contents.remove(i));
            if let Seen::File {
                sha256, differs, ..
            } = &mut seen
            {
                *differs = applied.get(i).is_none_or(|h| h != sha256);
            }
            answer.seen.insert(*i, seen);
        }
    }
}

fn file_seen(stat: &str, sum: &str, content: Option<Vec<u8>>) -> Seen {
    let fields: Vec<&str> = stat.splitn(6, '\t').collect();
    let number = |n: usize| fields.get(n).and_then(|s| s.parse::<u64>().ok());
    let (Some(size), Some(mode), Some(uid), Some(gid), Some(owner), Some(group)) = (
        number(0),
        fields.get(1).and_then(|m| u32::from_str_radix(m, 8).ok()),
        number(2).and_then(|u| u32::try_from(u).ok()),
        number(3).and_then(|g| u32::try_from(g).ok()),
        fields.get(4),
        fields.get(5),
    ) else {
        return Seen::Unknown(format!("unexpected `stat` output: {stat}"));
    };
    let sha256 = sum.trim_start_matches('\\');
    let sha256 = sha256.split(' ').next().unwrap_or_default().to_owned();
    Seen::File {
        size,
        mode,
        uid,
        gid,
        owner: (*owner).to_owned(),
        group: (*group).to_owned(),
        sha256,
        differs: true,
        content,
    }
}

/// The lines of a payload, without empty ones; bytes that are not UTF-8 are replaced, not
/// dropped (a line must never vanish).
fn lines(payload: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(payload)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
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

/// Whether `systemctl is-enabled` would say yes (exit 0) for this `UnitFileState`, as the
/// `service` task checks it.
pub fn counts_as_enabled(state: &str) -> bool {
    matches!(
        state,
        "enabled" | "enabled-runtime" | "static" | "alias" | "indirect" | "generated" | "transient"
    )
}

/// A few words on what an answer was, for a message about an unexpected one.
pub fn describe(seen: &Seen) -> &'static str {
    match seen {
        Seen::FileAbsent | Seen::NotRegular | Seen::Unreadable | Seen::File { .. } => "a file",
        Seen::Packages(_) => "packages",
        Seen::Service { .. } => "a service",
        Seen::Entry(_) => "a path",
        Seen::Edit(_) => "an edited file",
        Seen::Sysctl { .. } => "a kernel parameter",
        Seen::User(_) => "a user",
        Seen::Group { .. } => "a group",
        Seen::Check { .. } => "a check",
        Seen::Unknown(_) => "nothing",
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
        let answer = b"noise\nN G 0\nN F 2 A\nN STAT 0.0\n12\t644\t0\t0\troot\troot\n5\t600\t7\t8\tapp user\tapp\nN SUMS 0.0\naa  /etc/a\n\\ff  /etc/b\\nc\nN C 1\nnew\ntext\nN K 3 1 1\nboom\nN G 1\nN S 4\nLoadState=loaded\nActiveState=inactive\nUnitFileState=enabled\nN DONE\n";
        let parsed = parse("N", answer, &groups());
        assert!(parsed.done);
        assert_eq!(parsed.seen[&2], Seen::FileAbsent);
        assert_eq!(
            parsed.seen[&0],
            Seen::File {
                size: 12,
                mode: 0o644,
                uid: 0,
                gid: 0,
                owner: "root".into(),
                group: "root".into(),
                sha256: "aa".into(),
                differs: false,
                content: None
            }
        );
        // A content record keeps its bytes exactly (the newline before the next record is
        // the separator, not content); a `\`-escaped name still yields the hash; a name
        // with a space survives.
        assert_eq!(
            parsed.seen[&1],
            Seen::File {
                size: 5,
                mode: 0o600,
                uid: 7,
                gid: 8,
                owner: "app user".into(),
                group: "app".into(),
                sha256: "ff".into(),
                differs: true,
                content: Some(b"new\ntext".to_vec())
            }
        );
        assert_eq!(
            parsed.seen[&3],
            Seen::Check {
                status: 1,
                under_timeout: true,
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
        // A record cut by the end of the output is not trusted.
        let parsed = parse("N", b"N G 0\nN K 3 0\n", &groups());
        assert!(
            matches!(&parsed.seen[&3], Seen::Unknown(why) if why.contains("stopped in the middle"))
        );
        // A service answer without its properties, or for a unit systemd does not know.
        let parsed = parse("N", b"N G 1\nN S 4\nLoadState=loaded\nN DONE\n", &groups());
        assert!(matches!(&parsed.seen[&4], Seen::Unknown(_)));
        let parsed = parse(
            "N",
            b"N G 1\nN S 4\nLoadState=not-found\nActiveState=inactive\nUnitFileState=\nN DONE\n",
            &groups(),
        );
        assert!(matches!(&parsed.seen[&4], Seen::Unknown(why) if why.contains("no such unit")));
    }

    #[test]
    fn a_file_that_changes_while_probed_is_not_guessed_at() {
        let parsed = parse(
            "N",
            b"N G 0\nN STAT 0.0\n1\t644\t0\t0\tr\tr\nN SUMS 0.0\naa  /etc/a\nN DONE\n",
            &groups(),
        );
        assert!(matches!(&parsed.seen[&0], Seen::Unknown(why) if why.contains("gave 1 lines")));
        let parsed = parse(
            "N",
            b"N G 0\nN XF 0\nstat or sha256sum is not installed on this host\nN DONE\n",
            &groups(),
        );
        assert!(matches!(&parsed.seen[&0], Seen::Unknown(why) if why.contains("not installed")));
    }

    #[test]
    fn many_files_are_looked_at_in_bounded_batches() {
        let paths: Vec<String> = (0..600).map(|i| format!("/srv/f{i}")).collect();
        let group = Group {
            r#become: None,
            looks: paths
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    (
                        i,
                        Look::File {
                            path: p,
                            sha256: String::new(),
                        },
                    )
                })
                .collect(),
        };
        let batches = file_batches(&group);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [256, 256, 88]
        );
        let text = script("N", &[group]);
        assert!(text.contains("_r STAT 0.2"));
    }

    #[test]
    fn paths_are_looked_at_without_following_links() {
        let groups = vec![Group {
            r#become: None,
            looks: vec![
                (
                    0,
                    Look::Entry {
                        path: "/srv/my app",
                    },
                ),
                (
                    1,
                    Look::Entry {
                        path: "/etc/current",
                    },
                ),
                (2, Look::Entry { path: "/srv/gone" }),
                (3, Look::Entry { path: "/srv/file" }),
                (4, Look::Entry { path: "/srv/odd" }),
            ],
        }];
        let text = script("N", &groups);
        assert_eq!(text.matches("_e() {").count(), 1, "{text}");
        assert!(text.contains("_p='/srv/my app'; _e 0\n"));
        assert!(
            text.find("[ -L \"$_p\" ]").unwrap() < text.find("[ -d \"$_p\" ]").unwrap(),
            "a link to a directory is seen as a link"
        );
        let answer = b"N G 0\nN E 0 D\n2750\t0\t1001\troot\tapp staff\nN E 1 L\n../sites/app\nN E 2 A\nN E 3 O\nN E 4 D\nnot a stat line\nN DONE\n";
        let parsed = parse("N", answer, &groups);
        assert_eq!(
            parsed.seen[&0],
            Seen::Entry(Entry::Directory {
                mode: 0o2750,
                uid: 0,
                gid: 1001,
                owner: "root".into(),
                group: "app staff".into()
            })
        );
        assert_eq!(
            parsed.seen[&1],
            Seen::Entry(Entry::Link {
                target: "../sites/app".into()
            })
        );
        assert_eq!(parsed.seen[&2], Seen::Entry(Entry::Absent));
        assert_eq!(parsed.seen[&3], Seen::Entry(Entry::Other));
        assert!(
            matches!(&parsed.seen[&4], Seen::Unknown(why) if why.contains("unexpected `stat`"))
        );
        // A link record without its target is not guessed at.
        let parsed = parse("N", b"N G 0\nN E 1 L\nN DONE\n", &groups);
        assert!(matches!(&parsed.seen[&1], Seen::Unknown(_)));
    }

    #[test]
    fn an_edit_is_probed_by_the_status_of_its_program() {
        let groups = vec![Group {
            r#become: None,
            looks: vec![
                (
                    0,
                    Look::Edit {
                        path: "/etc/my hosts",
                        edit: Edit::Line {
                            line: Some("a b"),
                            r#match: None,
                            state: crate::model::task_kind::PathState::Present,
                        },
                    },
                ),
                (
                    1,
                    Look::Edit {
                        path: "/etc/x",
                        edit: Edit::Block {
                            marker: "m",
                            content: "",
                            state: crate::model::task_kind::PathState::Absent,
                        },
                    },
                ),
                (
                    2,
                    Look::Edit {
                        path: "/etc/y",
                        edit: Edit::Block {
                            marker: "m",
                            content: "",
                            state: crate::model::task_kind::PathState::Absent,
                        },
                    },
                ),
            ],
        }];
        let text = script("N", &groups);
        assert!(text.contains("_p='/etc/my hosts'\n"), "{text}");
        assert!(text.contains("DROVER_LINE='a b' DROVER_MATCH='' awk '"));
        assert!(text.contains("\"$_p\" >/dev/null 2>&1 || _s=$?; _r ED 0 $_s"));
        let parsed = parse(
            "N",
            b"N G 0\nN ED 0 11\nN ED 1 A\nN ED 2 N\nN DONE\n",
            &groups,
        );
        assert_eq!(parsed.seen[&0], Seen::Edit(Edited::Status(11)));
        assert_eq!(parsed.seen[&1], Seen::Edit(Edited::Absent));
        assert_eq!(parsed.seen[&2], Seen::Edit(Edited::NotAFile));
    }

    #[test]
    fn a_service_is_probed_under_systemd_or_openrc_with_its_name_quoted() {
        let group = Group {
            r#become: None,
            looks: vec![(0, Look::Service { name: "my svc" })],
        };
        let script = script("N", &[group]);
        assert!(
            script.contains(
                "systemctl show -p LoadState -p ActiveState -p UnitFileState -- 'my svc'"
            )
        );
        assert!(script.contains("rc-service 'my svc' status"), "{script}");
        assert!(script.contains("_n='my svc' awk"), "{script}");
        // OpenRC's answer reads as systemd's, so the same parser judges it.
        assert_eq!(
            service_seen(&lines(
                b"LoadState=loaded\nActiveState=inactive\nUnitFileState=disabled\n"
            )),
            Seen::Service {
                active: "inactive".to_owned(),
                enabled: "disabled".to_owned()
            }
        );
    }

    #[test]
    fn the_script_quotes_paths_and_runs_become_groups_through_sudo() {
        let script = script("N", &groups());
        assert!(script.contains("_dp1='/etc/b c'"));
        assert!(script.contains("sudo -n -u root -- sh -s <<'DROVER_GROUP_N'\n{\n"));
        assert!(
            script.contains("if [ -L \"$_dp0\" ]; then _r F 0 N;"),
            "a symlink is not the file drover wrote"
        );
        assert!(script.starts_with("{\n") && script.ends_with("} </dev/null\n"));
    }
}
