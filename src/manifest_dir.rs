//! Reads a manifest directory: every `*.yaml`/`*.yml` below it, recursively, skipping
//! dot-folders (and so `.drover/`), dot-files and what `.droverignore` lists, in a stable
//! order; and the files that manifests name (`file.source`, `file.template`, secret files).
//!
//! Every read on the controller goes through `read_bounded`: the path must resolve (after
//! symlinks) inside the manifest directory or an `--allow-path` root, it must be a regular
//! file (checked before opening and again on the opened handle, so a FIFO or device is never
//! read), and at most a given number of bytes is read. See
//! `docs/decisions/0007-controller-inputs.md`. It reads, it does not interpret: loading and
//! checking are `load`'s job.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::diagnostic::{Diagnostic, Location};
use crate::resolve::Unreadable;
use crate::source::{SourceFile, Span};

/// The ignore file, read from the root of the manifest directory.
pub const IGNORE_FILE: &str = ".droverignore";

/// Largest `.droverignore` drover reads.
const MAX_IGNORE_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("manifest directory {path} does not exist")]
    Missing { path: PathBuf },
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot use --allow-path {path}")]
    AllowPath {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where manifests may read on the controller: the manifest directory, then every
/// `--allow-path`.
#[derive(Debug, Clone)]
pub struct Roots {
    /// The manifest directory as given; manifest paths are relative to it.
    dir: PathBuf,
    /// The manifest directory first, then each extra root.
    allowed: Vec<Root>,
}

/// One allowed root, as written (made absolute, `.` and `..` folded) and as the filesystem
/// resolves it. A path passes when it lies under the resolved form.
#[derive(Debug, Clone)]
struct Root {
    lexical: PathBuf,
    real: PathBuf,
}

impl Roots {
    /// Checks that `dir` is a directory and resolves it and every extra root.
    pub fn new(dir: &Path, allow: &[PathBuf]) -> Result<Roots, Error> {
        let meta = fs::metadata(dir).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => Error::Missing {
                path: dir.to_owned(),
            },
            _ => Error::Read {
                path: dir.to_owned(),
                source,
            },
        })?;
        if !meta.is_dir() {
            return Err(Error::NotADirectory {
                path: dir.to_owned(),
            });
        }
        let mut allowed = vec![Root::new(dir).map_err(|source| Error::Read {
            path: dir.to_owned(),
            source,
        })?];
        for path in allow {
            allowed.push(Root::new(path).map_err(|source| Error::AllowPath {
                path: path.clone(),
                source,
            })?);
        }
        Ok(Roots {
            dir: dir.to_owned(),
            allowed,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `path` really is, if that is under an allowed root.
    fn contain(&self, path: &Path) -> Result<PathBuf, Refusal> {
        match fs::canonicalize(path) {
            Ok(real) => {
                if self.allowed.iter().any(|r| real.starts_with(&r.real)) {
                    Ok(real)
                } else {
                    let written = lexical(path).ok();
                    Err(Refusal::Outside {
                        resolved: (written.as_ref() != Some(&real)).then_some(real),
                    })
                }
            }
            // A path that does not resolve is reported as missing only when it would have
            // been allowed; outside the roots drover does not say what exists.
            Err(error) => match lexical(path) {
                Ok(written)
                    if self.allowed.iter().any(|r| {
                        written.starts_with(&r.lexical) || written.starts_with(&r.real)
                    }) =>
                {
                    Err(Refusal::Io(error))
                }
                _ => Err(Refusal::Outside { resolved: None }),
            },
        }
    }

    fn has_extra_roots(&self) -> bool {
        self.allowed.len() > 1
    }
}

impl Root {
    fn new(path: &Path) -> std::io::Result<Root> {
        Ok(Root {
            real: fs::canonicalize(path)?,
            lexical: lexical(path)?,
        })
    }
}

/// `path` made absolute with `.` and `..` folded, without asking the filesystem.
fn lexical(path: &Path) -> std::io::Result<PathBuf> {
    let mut out = PathBuf::new();
    for component in std::path::absolute(path)?.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Why a controller file was not read.
#[derive(Debug)]
enum Refusal {
    Io(std::io::Error),
    NotRegular(&'static str),
    TooLarge { limit: u64, size: u64 },
    Outside { resolved: Option<PathBuf> },
}

impl Refusal {
    fn to_unreadable(&self, roots: &Roots) -> Unreadable {
        match self {
            Refusal::Io(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Unreadable::Absent(describe_io(error))
            }
            Refusal::Io(error) => Unreadable::Missing(describe_io(error)),
            Refusal::NotRegular(kind) => Unreadable::NotRegular(kind),
            Refusal::TooLarge { limit, .. } => Unreadable::TooLarge { limit: *limit },
            Refusal::Outside { resolved } => Unreadable::Outside {
                resolved: resolved.as_ref().map(|p| p.display().to_string()),
                extra_roots: roots.has_extra_roots(),
            },
        }
    }
}

/// Refuses anything but a regular file, naming what it is.
fn regular(meta: &fs::Metadata) -> Result<(), Refusal> {
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok(());
    }
    Err(Refusal::NotRegular(if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }))
}

/// Reads at most `limit` bytes of the regular file `path`, which must resolve inside `roots`.
///
/// The type is checked before opening (opening a FIFO blocks until a writer comes) and again
/// on the opened handle, so a file swapped in between is still refused before any read.
fn read_bounded(roots: &Roots, path: &Path, limit: u64) -> Result<Vec<u8>, Refusal> {
    let real = roots.contain(path)?;
    let meta = fs::metadata(&real).map_err(Refusal::Io)?;
    regular(&meta)?;
    if meta.len() > limit {
        return Err(Refusal::TooLarge {
            limit,
            size: meta.len(),
        });
    }
    let file = fs::File::open(&real).map_err(Refusal::Io)?;
    let meta = file.metadata().map_err(Refusal::Io)?;
    regular(&meta)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len().min(limit)).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(Refusal::Io)?;
    if bytes.len() as u64 > limit {
        return Err(Refusal::TooLarge {
            limit,
            size: meta.len().max(bytes.len() as u64),
        });
    }
    Ok(bytes)
}

/// Reads one file that a manifest names (`path` relative to the manifest directory, or
/// absolute), at most `limit` bytes.
pub fn read_file(roots: &Roots, path: &str, limit: u64) -> Result<Vec<u8>, Unreadable> {
    read_bounded(roots, &roots.dir.join(path), limit).map_err(|r| r.to_unreadable(roots))
}

/// The manifest files of a directory, and problems that stopped some from being read.
#[derive(Debug, Default)]
pub struct ManifestFiles {
    pub files: Vec<Arc<SourceFile>>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads every manifest file under the manifest directory. Paths in the result are relative
/// to it.
pub fn read(roots: &Roots, max_file_bytes: u64) -> Result<ManifestFiles, Error> {
    let dir = roots.dir();
    let mut out = ManifestFiles::default();
    let ignore = match read_bounded(roots, &dir.join(IGNORE_FILE), MAX_IGNORE_BYTES) {
        Ok(bytes) => Ignore::parse(&String::from_utf8_lossy(&bytes)),
        Err(Refusal::Io(error)) if error.kind() == std::io::ErrorKind::NotFound => {
            Ignore::default()
        }
        Err(refusal) => {
            out.diagnostics
                .push(refused(IGNORE_FILE, &refusal, MAX_IGNORE_BYTES, roots));
            Ignore::default()
        }
    };
    let mut paths = Vec::new();
    walk(dir, dir, &ignore, &mut paths)?;
    paths.sort();
    for relative in paths {
        let shown = relative.to_string_lossy().replace('\\', "/");
        match read_bounded(roots, &dir.join(&relative), max_file_bytes) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => out.files.push(Arc::new(SourceFile::new(shown, text))),
                Err(error) => {
                    let valid = error.utf8_error().valid_up_to();
                    let text = String::from_utf8_lossy(error.as_bytes()).into_owned();
                    let file = Arc::new(SourceFile::new(shown.clone(), text));
                    out.diagnostics.push(
                        Diagnostic::error(
                            "manifest::not-utf8",
                            format!("{shown} is not valid UTF-8"),
                        )
                        .at(Location {
                            file,
                            span: Span::new(valid, valid),
                            pointer: None,
                        })
                        .with_label("invalid byte after this point")
                        .with_help("save the file as UTF-8"),
                    );
                }
            },
            Err(refusal) => out
                .diagnostics
                .push(refused(&shown, &refusal, max_file_bytes, roots)),
        }
    }
    Ok(out)
}

/// The diagnostic for a manifest file (or the ignore file) that was not read.
fn refused(shown: &str, refusal: &Refusal, limit: u64, roots: &Roots) -> Diagnostic {
    let (code, message, help) = match refusal {
        Refusal::Io(error) => (
            "manifest::unreadable-file",
            format!("cannot read {shown}: {}", describe_io(error)),
            format!("make it readable by drover, or list it in {IGNORE_FILE}"),
        ),
        Refusal::NotRegular(kind) => (
            "manifest::not-a-regular-file",
            format!("{shown} is {kind}, not a regular file"),
            format!(
                "drover reads only regular files (a FIFO or device could block or never end); remove it, or list it in {IGNORE_FILE}"
            ),
        ),
        Refusal::TooLarge { size, .. } => (
            "manifest::file-too-large",
            format!("{shown} is {size} bytes, more than the limit of {limit}"),
            "split it into several files, or raise the limit with --max-file-size".to_owned(),
        ),
        Refusal::Outside { .. } => (
            "manifest::path-outside-directory",
            format!("cannot read {shown}: {}", refusal.to_unreadable(roots).reason()),
            "copy the file into the manifest directory, or let drover read its directory with --allow-path DIR"
                .to_owned(),
        ),
    };
    Diagnostic::error(code, message)
        .at(Location {
            file: Arc::new(SourceFile::new(shown, "")),
            span: Span::default(),
            pointer: None,
        })
        .with_help(help)
}

fn walk(root: &Path, dir: &Path, ignore: &Ignore, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let entries = fs::read_dir(dir).map_err(|source| Error::Read {
        path: dir.to_owned(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| Error::Read {
            path: dir.to_owned(),
            source,
        })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(relative) = path.strip_prefix(root) else {
            continue;
        };
        let file_type = entry.file_type().map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        let shown = relative.to_string_lossy().replace('\\', "/");
        if ignore.is_ignored(&shown, file_type.is_dir()) {
            continue;
        }
        // Symlinked directories are not followed: they could loop, or leave the tree. Any
        // other entry with a manifest's name is read through `read_bounded`, which refuses
        // what is not a regular file inside the roots.
        if file_type.is_dir() {
            walk(root, &path, ignore, out)?;
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            out.push(relative.to_owned());
        }
    }
    Ok(())
}

/// An I/O error as the end of a sentence ("cannot read x: it does not exist").
pub fn describe_io(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "it does not exist".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        std::io::ErrorKind::IsADirectory => "it is a directory".to_owned(),
        _ => error.to_string(),
    }
}

/// Reads the files manifests name (relative to the manifest directory), each capped at
/// `limit` bytes.
pub fn read_inputs<'a>(
    roots: &Roots,
    paths: impl IntoIterator<Item = &'a String>,
    limit: u64,
) -> BTreeMap<String, Result<Arc<[u8]>, Unreadable>> {
    paths
        .into_iter()
        .map(|relative| {
            let value = read_file(roots, relative, limit).map(Arc::from);
            (relative.clone(), value)
        })
        .collect()
}

/// The patterns of a `.droverignore`: a subset of gitignore.
///
/// Supported: blank lines and `#` comments; `!` to re-include; a trailing `/` to match only
/// directories; a pattern with a `/` at its start or middle is anchored to the manifest
/// directory, one without matches at any depth; `*` (any characters but `/`), `?` (one
/// character but `/`), `**` as a whole segment (any number of directories: `**/x`, `a/**`,
/// `a/**/b`); `\` before a leading `#` or `!`. Not supported: character classes (`[abc]` is
/// matched literally). As in git, the last matching pattern wins, and a file inside an
/// ignored directory cannot be re-included (the directory is not read at all).
#[derive(Debug, Default)]
pub struct Ignore {
    rules: Vec<IgnoreRule>,
}

#[derive(Debug)]
struct IgnoreRule {
    negate: bool,
    dir_only: bool,
    /// Path segments to match; `**` matches any number of them.
    segments: Vec<String>,
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let rules = text.lines().filter_map(IgnoreRule::parse).collect();
        Ignore { rules }
    }

    /// Whether `path` (relative to the manifest directory, `/`-separated) is ignored.
    pub fn is_ignored(&self, path: &str, is_dir: bool) -> bool {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let mut ignored = false;
        for rule in &self.rules {
            if (is_dir || !rule.dir_only) && segments_match(&rule.segments, &parts) {
                ignored = !rule.negate;
            }
        }
        ignored
    }
}

impl IgnoreRule {
    fn parse(line: &str) -> Option<IgnoreRule> {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let (negate, line) = match line.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let line = line
            .strip_prefix("\\#")
            .map(|rest| format!("#{rest}"))
            .or_else(|| line.strip_prefix("\\!").map(|rest| format!("!{rest}")))
            .unwrap_or_else(|| line.to_owned());
        let dir_only = line.ends_with('/');
        let line = line.trim_end_matches('/');
        let anchored = line.contains('/');
        let mut segments: Vec<String> = Vec::new();
        if !anchored {
            segments.push("**".to_owned());
        }
        for segment in line.split('/').filter(|s| !s.is_empty()) {
            // Consecutive `**` mean the same as one, and would only cost time.
            if !(segment == "**" && segments.last().is_some_and(|s| s == "**")) {
                segments.push(segment.to_owned());
            }
        }
        (segments.iter().any(|s| s != "**")).then_some(IgnoreRule {
            negate,
            dir_only,
            segments,
        })
    }
}

/// Whether the path segments `parts` match the pattern segments `pattern`.
fn segments_match(pattern: &[String], parts: &[&str]) -> bool {
    match pattern.split_first() {
        None => parts.is_empty(),
        // A trailing `**` matches everything inside, not the directory itself.
        Some((first, rest)) if first == "**" && rest.is_empty() => !parts.is_empty(),
        Some((first, rest)) if first == "**" => (0..=parts.len()).any(|skip| {
            parts
                .get(skip..)
                .is_some_and(|tail| segments_match(rest, tail))
        }),
        Some((first, rest)) => parts.split_first().is_some_and(|(part, tail)| {
            glob(
                &first.chars().collect::<Vec<_>>(),
                &part.chars().collect::<Vec<_>>(),
            ) && segments_match(rest, tail)
        }),
    }
}

/// `*` and `?` within one path segment; everything else literal.
fn glob(pattern: &[char], name: &[char]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some(('*', rest)) => {
            (0..=name.len()).any(|skip| name.get(skip..).is_some_and(|tail| glob(rest, tail)))
        }
        Some(('?', rest)) => name.split_first().is_some_and(|(_, tail)| glob(rest, tail)),
        Some((c, rest)) => name
            .split_first()
            .is_some_and(|(n, tail)| n == c && glob(rest, tail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignored(patterns: &str, path: &str, is_dir: bool) -> bool {
        Ignore::parse(patterns).is_ignored(path, is_dir)
    }

    #[test]
    fn unanchored_patterns_match_at_any_depth() {
        assert!(ignored("*.yml", "prometheus.yml", false));
        assert!(ignored("*.yml", "templates/deep/prometheus.yml", false));
        assert!(!ignored("*.yml", "hosts.yaml", false));
        assert!(ignored("templates", "web/templates", true));
        assert!(ignored("te?plates", "templates", true));
        assert!(!ignored("te?plates", "teplates", true));
    }

    #[test]
    fn slashes_anchor_and_mark_directories() {
        assert!(ignored("/templates", "templates", true));
        assert!(!ignored("/templates", "web/templates", true));
        assert!(ignored("web/*.yaml", "web/a.yaml", false));
        assert!(!ignored("web/*.yaml", "x/web/a.yaml", false));
        assert!(!ignored("web/*.yaml", "web/sub/a.yaml", false));
        assert!(ignored("build/", "build", true));
        assert!(!ignored("build/", "build", false));
    }

    #[test]
    fn double_stars_span_directories() {
        assert!(ignored("**/vendor", "a/b/vendor", true));
        assert!(ignored("**/vendor", "vendor", true));
        assert!(ignored("a/**/b.yaml", "a/b.yaml", false));
        assert!(ignored("a/**/b.yaml", "a/x/y/b.yaml", false));
        assert!(ignored("a/**", "a/x.yaml", false));
        assert!(!ignored("a/**", "a", true));
    }

    #[test]
    fn the_last_match_wins_and_negation_re_includes() {
        let patterns = "# templates are not manifests\n*.yml\n!keep.yml\n\n";
        assert!(ignored(patterns, "x.yml", false));
        assert!(!ignored(patterns, "keep.yml", false));
        assert!(!ignored(patterns, "sub/keep.yml", false));
        assert!(ignored("\\#x.yaml", "#x.yaml", false));
        assert!(ignored("\\!x.yaml", "!x.yaml", false));
        assert!(!ignored("[ab].yaml", "a.yaml", false));
        assert!(ignored("[ab].yaml", "[ab].yaml", false));
    }
}
