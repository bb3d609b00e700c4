//! Reads a manifest directory: every `*.yaml`/`*.yml` below it, recursively, skipping
//! dot-folders (and so `.drover/`) and dot-files, in a stable order; and the files that
//! manifests name (`file.source`, `file.template`).
//!
//! It reads, it does not interpret: loading and checking are `load`'s job. Files over the
//! size limit are not read into memory at all; they become diagnostics.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diagnostic::{Diagnostic, Location};
use crate::source::{SourceFile, Span};

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
}

/// The manifest files of a directory, and problems that stopped some from being read.
#[derive(Debug, Default)]
pub struct ManifestFiles {
    pub files: Vec<Arc<SourceFile>>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads every manifest file under `dir`. Paths in the result are relative to `dir`.
pub fn read(dir: &Path, max_file_bytes: u64) -> Result<ManifestFiles, Error> {
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
    let mut paths = Vec::new();
    walk(dir, dir, &mut paths)?;
    paths.sort();
    let mut out = ManifestFiles::default();
    for relative in paths {
        let full = dir.join(&relative);
        let shown = relative.to_string_lossy().replace('\\', "/");
        match read_capped(&full, max_file_bytes).map_err(|source| Error::Read {
            path: full.clone(),
            source,
        })? {
            Capped::Text(text) => out.files.push(Arc::new(SourceFile::new(shown, text))),
            Capped::TooLarge(size) => out.diagnostics.push(
                Diagnostic::error(
                    "manifest::file-too-large",
                    format!("{shown} is {size} bytes, more than the limit of {max_file_bytes}"),
                )
                .at(Location {
                    file: Arc::new(SourceFile::new(shown, "")),
                    span: Span::default(),
                    pointer: None,
                })
                .with_help("split it into several files, or raise the limit with --max-file-size"),
            ),
            Capped::NotUtf8(valid_up_to, text) => {
                let file = Arc::new(SourceFile::new(shown.clone(), text));
                out.diagnostics.push(
                    Diagnostic::error("manifest::not-utf8", format!("{shown} is not valid UTF-8"))
                        .at(Location {
                            file,
                            span: Span::new(valid_up_to, valid_up_to),
                            pointer: None,
                        })
                        .with_label("invalid byte after this point")
                        .with_help("save the file as UTF-8"),
                );
            }
        }
    }
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
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
        let file_type = entry.file_type().map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        // Symlinked directories are not followed: they could loop, or leave the tree.
        if file_type.is_dir() {
            walk(root, &path, out)?;
        } else if (name.ends_with(".yaml") || name.ends_with(".yml"))
            // Regular files only (a symlink counts if it points at one): a FIFO or device
            // named *.yaml would block or never end.
            && std::fs::metadata(&path).is_ok_and(|m| m.is_file())
            && let Ok(relative) = path.strip_prefix(root)
        {
            out.push(relative.to_owned());
        }
    }
    Ok(())
}

enum Capped {
    Text(String),
    TooLarge(u64),
    NotUtf8(usize, String),
}

fn read_capped(path: &Path, limit: u64) -> std::io::Result<Capped> {
    let file = fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        let size = fs::metadata(path).map_or(limit + 1, |m| m.len());
        return Ok(Capped::TooLarge(size));
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Capped::Text(text)),
        Err(error) => {
            let valid = error.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(error.as_bytes()).into_owned();
            Ok(Capped::NotUtf8(valid, text))
        }
    }
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

/// Reads the files manifests name, relative to `dir`, each capped at `limit` bytes.
pub fn read_inputs<'a>(
    dir: &Path,
    paths: impl IntoIterator<Item = &'a String>,
    limit: u64,
) -> BTreeMap<String, Result<Arc<[u8]>, String>> {
    paths
        .into_iter()
        .map(|relative| {
            let full = dir.join(relative);
            let result = fs::File::open(&full).and_then(|f| {
                let mut bytes = Vec::new();
                f.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
                Ok(bytes)
            });
            let value = match result {
                Ok(bytes) if bytes.len() as u64 > limit => {
                    Err(format!("it is larger than {limit} bytes"))
                }
                Ok(bytes) => Ok(Arc::from(bytes)),
                Err(error) => Err(describe_io(&error)),
            };
            (relative.clone(), value)
        })
        .collect()
}
