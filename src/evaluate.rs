//! Reads and evaluates a manifest directory: files → `load` → inputs → `resolve`.
//!
//! The one sequence every command that needs the desired state runs (`validate`, `graph`,
//! and later `plan` and `apply`). It does I/O through `manifest_dir` and `secret_source`
//! and leaves printing to the caller.

use std::path::Path;

use crate::diagnostic::{self, Diagnostic};
use crate::load::{self, Limits};
use crate::manifest_dir;
use crate::model::desired::Desired;
use crate::resolve::{self, Inputs, Resolved};
use crate::secret::Redactor;
use crate::secret_source;

/// Largest `file.source`/`file.template` file drover reads.
pub const MAX_INPUT_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// A manifest directory, evaluated as far as it could be.
#[derive(Debug)]
pub struct Evaluation {
    pub desired: Option<Desired>,
    pub resolved: Option<Resolved>,
    pub diagnostics: Vec<Diagnostic>,
    /// Number of manifest files read.
    pub files: usize,
}

impl Evaluation {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    pub fn redactor(&self) -> Redactor {
        self.resolved
            .as_ref()
            .map(|r| r.redactor.clone())
            .unwrap_or_default()
    }
}

/// Reads `dir` and evaluates it; I/O problems with the directory itself are errors, problems
/// with its content are diagnostics.
pub fn evaluate(dir: &Path, limits: &Limits) -> Result<Evaluation, manifest_dir::Error> {
    let read = manifest_dir::read(dir, limits.max_file_bytes)?;
    tracing::info!(dir = %dir.display(), files = read.files.len(), "read manifest directory");
    let mut diagnostics = read.diagnostics;
    if read.files.is_empty() && diagnostics.is_empty() {
        diagnostics.push(
            Diagnostic::error(
                "manifest::empty-directory",
                format!("no *.yaml or *.yml files under {}", dir.display()),
            )
            .with_help("point drover at your manifest directory, or create one with `drover init`"),
        );
    }
    let loaded = load::load(&read.files, limits);
    diagnostics.extend(loaded.diagnostics);
    let files = read.files.len();
    let Some(desired) = loaded
        .desired
        .filter(|_| !diagnostics.iter().any(Diagnostic::is_error))
    else {
        diagnostic::sort(&mut diagnostics);
        return Ok(Evaluation {
            desired: None,
            resolved: None,
            diagnostics,
            files,
        });
    };
    tracing::info!(
        hosts = desired.hosts.len(),
        workflows = desired.workflows.len(),
        "loaded desired state"
    );
    let needed = resolve::needed(&desired);
    tracing::debug!(
        files = needed.files.len(),
        secrets = needed.secrets.len(),
        "reading inputs"
    );
    let inputs = Inputs {
        files: manifest_dir::read_inputs(dir, &needed.files, MAX_INPUT_FILE_BYTES),
        secrets: secret_source::read(dir, &needed.secrets),
    };
    let mut resolved = resolve::resolve(&desired, &inputs);
    tracing::info!(
        instances = resolved.instances.len(),
        problems = resolved.diagnostics.len(),
        "resolved instances"
    );
    diagnostics.append(&mut resolved.diagnostics);
    diagnostic::sort(&mut diagnostics);
    Ok(Evaluation {
        desired: Some(desired),
        resolved: Some(resolved),
        diagnostics,
        files,
    })
}
