//! `TaskKind`: what a task does (run, file, directory, link, line, block, package, service,
//! sysctl, cron, user, group, archive),
//! and the specs of each kind.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::duration::FileMode;

/// What a task does; exactly one per task.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TaskKind {
    Run(RunSpec),
    File(FileSpec),
    Directory(DirectorySpec),
    Link(LinkSpec),
    Line(LineSpec),
    Block(BlockSpec),
    Package(PackageSpec),
    Service(ServiceSpec),
    Sysctl(SysctlSpec),
    Cron(CronSpec),
    User(UserSpec),
    Group(GroupSpec),
    Archive(ArchiveSpec),
}

impl TaskKind {
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Run(_) => "run",
            TaskKind::File(_) => "file",
            TaskKind::Directory(_) => "directory",
            TaskKind::Link(_) => "link",
            TaskKind::Line(_) => "line",
            TaskKind::Block(_) => "block",
            TaskKind::Package(_) => "package",
            TaskKind::Service(_) => "service",
            TaskKind::Sysctl(_) => "sysctl",
            TaskKind::Cron(_) => "cron",
            TaskKind::User(_) => "user",
            TaskKind::Group(_) => "group",
            TaskKind::Archive(_) => "archive",
        }
    }
}

/// A command: a string run by `sh -c`, or an argv list that drover quotes for you.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Command {
    Shell(String),
    Argv(#[schemars(length(min = 1))] Vec<String>),
}

/// `run`: a command string, an argv list, or `{command, creates, unless}` with guards.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum RunSpec {
    Shell(String),
    Argv(#[schemars(length(min = 1))] Vec<String>),
    Guarded(GuardedRun),
}

/// `run` with guards that make it idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuardedRun {
    pub command: Command,
    /// Skip the command when this path exists on the host.
    pub creates: Option<String>,
    /// Skip the command when this command exits 0 on the host.
    pub unless: Option<Command>,
}

impl RunSpec {
    pub fn command(&self) -> Command {
        match self {
            RunSpec::Shell(s) => Command::Shell(s.clone()),
            RunSpec::Argv(a) => Command::Argv(a.clone()),
            RunSpec::Guarded(g) => g.command.clone(),
        }
    }
}

/// `file`: a file on the host, from inline content, a template file or a local file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSpec {
    /// Absolute path on the host.
    pub path: String,
    /// Inline content; it is a template.
    pub content: Option<String>,
    /// A template file, relative to this manifest file.
    pub template: Option<String>,
    /// A file copied as is, relative to this manifest file.
    pub source: Option<String>,
    pub mode: Option<FileMode>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

/// `directory`: a directory on the host, present with its mode, owner and group, or absent.
///
/// Present creates missing parent directories too (as `mkdir -p` does, with default
/// permissions); `mode`, `owner` and `group` apply to the directory itself, and only those
/// given are changed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DirectorySpec {
    /// Absolute path on the host.
    pub path: String,
    pub mode: Option<FileMode>,
    pub owner: Option<String>,
    pub group: Option<String>,
    #[serde(default)]
    pub state: PathState,
    /// With `state: absent`: remove the directory with everything in it. Without it, a
    /// directory that is not empty is left in place and the task fails.
    #[serde(default)]
    pub recursive: bool,
}

/// `link`: a symbolic link on the host pointing at `target`, or no symbolic link there.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinkSpec {
    /// Absolute path of the link on the host; its directory must exist.
    pub path: String,
    /// What the link points at, stored as written: an absolute path, or one relative to the
    /// link's directory. Required with `state: present`.
    pub target: Option<String>,
    #[serde(default)]
    pub state: PathState,
    /// With `state: present`: replace a regular file or an empty directory found at `path`.
    /// Without it, anything but a symbolic link there fails the task. A directory that is
    /// not empty is never replaced.
    #[serde(default)]
    pub force: bool,
}

/// `line`: one line of a file on the host, present (replacing the first line that matches
/// `match`, or appended) or absent (every line that matches removed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LineSpec {
    /// Absolute path of the file on the host.
    pub path: String,
    /// The whole line, without its newline. Required with `state: present`; with `state:
    /// absent` and no `match`, the lines equal to it are removed.
    pub line: Option<String>,
    /// An extended regular expression (POSIX ERE, as the host's `awk` reads it) that finds
    /// the line to replace (`present`: the first match) or the lines to remove (`absent`:
    /// every match). It matches anywhere in a line unless anchored with `^` and `$`.
    #[serde(rename = "match")]
    pub r#match: Option<String>,
    #[serde(default)]
    pub state: PathState,
    /// Create the file (empty, default permissions) when it does not exist. Without it, a
    /// missing file fails the task.
    #[serde(default)]
    pub create: bool,
}

/// `block`: lines of a file on the host between `# BEGIN <marker>` and `# END <marker>`,
/// replaced in place, appended, or removed with their markers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlockSpec {
    /// Absolute path of the file on the host.
    pub path: String,
    /// The lines between the markers (templated). Required with `state: present`.
    pub content: Option<String>,
    /// The text after `# BEGIN ` and `# END `; by default `drover <instance id>`, such as
    /// `drover web-1/app/hosts`.
    pub marker: Option<String>,
    #[serde(default)]
    pub state: PathState,
    /// Create the file (empty, default permissions) when it does not exist. Without it, a
    /// missing file fails the task.
    #[serde(default)]
    pub create: bool,
}

/// Whether a path should exist on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PathState {
    #[default]
    Present,
    Absent,
}

/// `sysctl`: a kernel parameter set now (through `/proc/sys`) and persisted in a file under
/// `/etc/sysctl.d`, or its persisted file removed (`state: absent` leaves the live value).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SysctlSpec {
    /// The parameter as `sysctl` names it, such as `net.ipv4.ip_forward`.
    pub name: String,
    /// The value to set; required with `state: present`. Values of several fields (such as
    /// `net.ipv4.ip_local_port_range`) are separated by spaces.
    pub value: Option<SysctlValue>,
    #[serde(default)]
    pub state: PathState,
    /// Where the value is persisted; default `/etc/sysctl.d/90-drover-<name>.conf`.
    pub file: Option<String>,
}

/// A sysctl value as written in a manifest: text, or a plain number.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum SysctlValue {
    Text(String),
    Number(i64),
}

impl SysctlValue {
    /// The value as text, which templates render.
    pub fn to_text(&self) -> String {
        match self {
            SysctlValue::Text(text) => text.clone(),
            SysctlValue::Number(number) => number.to_string(),
        }
    }
}

/// `cron`: a named entry in the system crontab directory (`/etc/cron.d/drover-<name>`), or
/// no such entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CronSpec {
    /// Names the entry's file: letters, digits, `_` and `-` only (cron skips other names).
    pub name: String,
    /// Five fields (`0 3 * * *`) or one of `@reboot`, `@hourly`, `@daily`, `@weekly`,
    /// `@monthly`, `@yearly`, `@annually`, `@midnight`; required with `state: present`.
    pub schedule: Option<String>,
    /// The command line cron runs with `/bin/sh`; required with `state: present`.
    pub command: Option<String>,
    /// The user the command runs as; default `root`.
    pub user: Option<String>,
    #[serde(default)]
    pub state: PathState,
    /// The directory cron reads entries from; default `/etc/cron.d`.
    pub dir: Option<String>,
}

/// The largest user or group id a task may set: `(uid_t)-1` (4294967295) means "no
/// change" to the kernel and the shadow tools.
pub const MAX_ACCOUNT_ID: u32 = 4_294_967_294;

/// `user`: a local account created, changed or removed with the shadow tools (`useradd`,
/// `usermod`, `userdel`). Only the fields a task gives are compared and changed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserSpec {
    /// The login name: a letter or `_`, then letters, digits, `.`, `_` or `-`; at most 32.
    pub name: String,
    /// The user id.
    #[schemars(range(max = MAX_ACCOUNT_ID))]
    pub uid: Option<u32>,
    /// The primary group, by name or number; it must exist (a `group` task can make it).
    /// Without it, a new user gets what `useradd` gives (on most distributions, a group of
    /// its own name) and an existing one keeps its own.
    pub group: Option<String>,
    /// Supplementary groups, by name; they must exist. Without `append`, exactly these
    /// (an empty list removes the user from every supplementary group).
    pub groups: Option<Vec<String>>,
    /// With `groups`: add the user to them and leave its other groups alone.
    #[serde(default)]
    pub append: bool,
    /// The login shell, an absolute path.
    pub shell: Option<String>,
    /// The home directory, an absolute path. Changing it on an existing user changes the
    /// account only: nothing is moved.
    pub home: Option<String>,
    /// Create the home directory (from `/etc/skel`) when the user is created; default true,
    /// false for `system` users. An existing user's home is never created or moved.
    pub create_home: Option<bool>,
    /// The comment (GECOS) field, such as the full name.
    pub comment: Option<String>,
    /// Create a system account (`useradd -r`: an id from the system range, no aging).
    /// Only used when the user is created.
    #[serde(default)]
    pub system: bool,
    /// `absent` removes the account with `userdel`; its home and mail are left in place.
    #[serde(default)]
    pub state: PathState,
}

/// `archive`: a controller-side tar or zip archive unpacked into a directory on the host,
/// once per content: a marker file in `dest` records the SHA-256 of what was unpacked.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArchiveSpec {
    /// The archive, relative to this manifest file: tar (plain, gzip, xz or bzip2) or zip,
    /// recognised by its first bytes, not its name. Required for `present`.
    pub source: Option<String>,
    /// Absolute path of the directory on the host the archive is unpacked into; created
    /// (with its parents) when missing.
    pub dest: String,
    /// `absent` removes what this task's unpacking created in `dest` (the top-level entries
    /// that were not there before) and its marker; what was already there stays.
    #[serde(default)]
    pub state: PathState,
}

/// `group`: a local group created, changed or removed with `groupadd`, `groupmod`,
/// `groupdel`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupSpec {
    /// The group name: a letter or `_`, then letters, digits, `.`, `_` or `-`; at most 32.
    pub name: String,
    /// The group id.
    #[schemars(range(max = MAX_ACCOUNT_ID))]
    pub gid: Option<u32>,
    /// Create a system group (`groupadd -r`). Only used when the group is created.
    #[serde(default)]
    pub system: bool,
    #[serde(default)]
    pub state: PathState,
}

/// The kind of an archive, as its first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ArchiveFormat {
    Tar,
    TarGz,
    TarXz,
    TarBz2,
    Zip,
}

impl ArchiveFormat {
    /// The format of an archive from its magic bytes; `None`: not one drover unpacks. A
    /// compressed stream is taken for a compressed tar: the host's `tar` says otherwise.
    pub fn detect(bytes: &[u8]) -> Option<ArchiveFormat> {
        const USTAR_MAGIC_AT: usize = 257;
        if bytes.starts_with(&[0x1f, 0x8b]) {
            Some(ArchiveFormat::TarGz)
        } else if bytes.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Some(ArchiveFormat::TarXz)
        } else if bytes.starts_with(b"BZh") {
            Some(ArchiveFormat::TarBz2)
        } else if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
            Some(ArchiveFormat::Zip)
        } else if bytes
            .get(USTAR_MAGIC_AT..USTAR_MAGIC_AT + 5)
            .is_some_and(|magic| magic == b"ustar")
        {
            Some(ArchiveFormat::Tar)
        } else {
            None
        }
    }

    /// As the docs and reports name it.
    pub fn name(self) -> &'static str {
        match self {
            ArchiveFormat::Tar => "tar",
            ArchiveFormat::TarGz => "tar.gz",
            ArchiveFormat::TarXz => "tar.xz",
            ArchiveFormat::TarBz2 => "tar.bz2",
            ArchiveFormat::Zip => "zip",
        }
    }
}

/// `package`: packages installed or removed with the host's package manager.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PackageSpec {
    #[schemars(length(min = 1))]
    pub names: Vec<String>,
    #[serde(default)]
    pub state: PackageState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PackageState {
    #[default]
    Present,
    Absent,
}

/// `service`: a service's state, under systemd or OpenRC.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    pub state: Option<ServiceState>,
    pub enabled: Option<bool>,
    /// What to do when the task is triggered by a changed task (default `restart`).
    #[serde(default)]
    pub on_trigger: OnTrigger,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    Running,
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnTrigger {
    #[default]
    Restart,
    Reload,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_formats_are_told_by_their_first_bytes() {
        let mut tar = vec![0_u8; 512];
        tar.get_mut(257..262).unwrap().copy_from_slice(b"ustar");
        assert_eq!(ArchiveFormat::detect(&tar), Some(ArchiveFormat::Tar));
        assert_eq!(
            ArchiveFormat::detect(&[0x1f, 0x8b, 8]),
            Some(ArchiveFormat::TarGz)
        );
        assert_eq!(
            ArchiveFormat::detect(b"\xfd7zXZ\x00rest"),
            Some(ArchiveFormat::TarXz)
        );
        assert_eq!(
            ArchiveFormat::detect(b"BZh91AY"),
            Some(ArchiveFormat::TarBz2)
        );
        assert_eq!(
            ArchiveFormat::detect(b"PK\x03\x04"),
            Some(ArchiveFormat::Zip)
        );
        assert_eq!(ArchiveFormat::detect(b"hello, not an archive"), None);
        assert_eq!(ArchiveFormat::detect(b""), None);
    }
}
