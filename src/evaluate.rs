//! Reads and evaluates a manifest directory: files → `load` → inputs → `resolve`.
//!
//! The one sequence every command that needs the desired state runs (`validate`, `graph`,
//! `plan`, `apply`). It does I/O through `manifest_dir` and `secret_source`
//! and leaves printing to the caller.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use crate::diagnostic::{self, Diagnostic};
use crate::facts::Facts;
use crate::load::{self, Limits};
use crate::manifest_dir;
use crate::model::desired::Desired;
use crate::model::meta::HostName;
use crate::report::style::printable;
use crate::resolve::{self, Inputs, Resolved};
use crate::secret::Redactor;
use crate::secret_source;
use crate::source::SourceFile;

/// Largest `file.source`/`file.template` file drover reads (secret files have their own,
/// smaller limit: `secret_source::MAX_SECRET_FILE_BYTES`).
pub const MAX_INPUT_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// A manifest directory, evaluated as far as it could be.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub desired: Option<Desired>,
    pub resolved: Option<Resolved>,
    /// Masks the secrets read, also when the evaluation stopped at errors.
    pub redactor: Redactor,
    pub diagnostics: Vec<Diagnostic>,
    /// Number of manifest files read.
    pub files: usize,
    /// What `resolve` was given, kept so the reconcile layer can resolve again with the
    /// hosts' facts (`with_facts`); `None` when loading stopped before resolving.
    pub inputs: Option<Arc<Inputs>>,
    /// Whether `with_facts` was applied: the hosts' facts are in the resolved instances.
    pub facts_settled: bool,
}

impl Evaluation {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    pub fn redactor(&self) -> Redactor {
        self.redactor.clone()
    }
}

/// Reads `dir` and evaluates it; I/O problems with the directory itself are errors, problems
/// with its content are diagnostics.
pub fn evaluate(dir: &Path, limits: &Limits) -> Result<Evaluation, manifest_dir::Error> {
    let roots = manifest_dir::Roots::new(dir, &limits.allow_paths)?;
    let read = manifest_dir::read(&roots, limits.max_file_bytes)?;
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
    // A file that manifests name as a template, source or secret is an input, not a
    // manifest: what reading it as one found (too large, not UTF-8) is no problem.
    diagnostics.retain(|d| {
        d.location
            .as_ref()
            .is_none_or(|l| !loaded.referenced.contains(&l.file.path))
    });
    diagnostics.extend(loaded.diagnostics);
    let files = read.files.len() - loaded.skipped.len();
    // With errors so far, what did decode is still resolved, so that template, input and
    // secret problems show in the same run as the schema and reference ones; it is then
    // dropped, never planned.
    let sound = loaded.desired.is_some() && !diagnostics.iter().any(Diagnostic::is_error);
    let loaded_defaults_broken = loaded.defaults_broken;
    let Some(desired) = loaded.desired.or(loaded.partial) else {
        finish(&mut diagnostics);
        return Ok(Evaluation {
            desired: None,
            resolved: None,
            redactor: Redactor::default(),
            diagnostics,
            files,
            inputs: None,
            facts_settled: false,
        });
    };
    tracing::info!(
        hosts = desired.hosts.len(),
        workflows = desired.workflows.len(),
        sound,
        "loaded desired state"
    );
    let needed = resolve::needed(&desired);
    tracing::debug!(
        files = needed.files.len(),
        secrets = needed.secrets.len(),
        "reading inputs"
    );
    let inputs = Inputs {
        files: manifest_dir::read_inputs(&roots, &needed.files, MAX_INPUT_FILE_BYTES),
        secrets: secret_source::read(&roots, &needed.secrets),
        stand_in_missing_secrets: limits.stand_in_missing_secrets,
        // Facts come later, from the reconcile layer (`with_facts`); until then every host
        // has stand-ins, which also tells which hosts need facts.
        facts: BTreeMap::new(),
    };
    let mut resolved = resolve::resolve(&desired, &inputs);
    tracing::info!(
        instances = resolved.instances.len(),
        problems = resolved.diagnostics.len(),
        "resolved instances"
    );
    // Loading counted tasks × hosts; `forEach` items are only known now.
    let expanded = resolved.instances.len();
    if sound && expanded > limits.max_instances {
        resolved.diagnostics.push(
            Diagnostic::error(
                "manifest::limit",
                format!("the manifests expand to {expanded} task instances (with `forEach` items), more than the limit of {}", limits.max_instances),
            )
            .with_help("split the fleet across several manifest directories, or raise the limit with --max-instances"),
        );
    }
    if loaded_defaults_broken {
        // A broken defaults document leaves its vars undefined on every host it matches:
        // its own error says what to fix, not one "undefined" per template.
        resolved
            .diagnostics
            .retain(|d| d.code != "template::undefined");
    }
    if !sound {
        // What a rule already reported at a place, rendering that place finds again.
        let reported: BTreeSet<(String, usize)> = diagnostics.iter().filter_map(place).collect();
        resolved
            .diagnostics
            .retain(|d| place(d).is_none_or(|p| !reported.contains(&p)));
    }
    diagnostics.append(&mut resolved.diagnostics);
    finish(&mut diagnostics);
    let redactor = resolved.redactor.clone();
    let (desired, resolved) = if sound {
        (Some(desired), Some(resolved))
    } else {
        (None, None)
    };
    Ok(Evaluation {
        desired,
        resolved,
        redactor,
        diagnostics,
        files,
        inputs: Some(Arc::new(inputs)),
        facts_settled: false,
    })
}

/// Resolves a valid evaluation again with the hosts' facts (decision 0018). Returns the
/// diagnostics rendering with the real facts found that the stand-ins did not (a template
/// that fails on the real value); with an error among them the evaluation is no longer
/// valid (`resolved` is `None`).
pub fn with_facts(
    evaluation: &mut Evaluation,
    facts: BTreeMap<HostName, Facts>,
) -> Vec<Diagnostic> {
    let (Some(desired), Some(inputs)) = (&evaluation.desired, &evaluation.inputs) else {
        return Vec::new();
    };
    let mut inputs = Inputs::clone(inputs);
    inputs.facts = facts;
    let mut resolved = resolve::resolve(desired, &inputs);
    evaluation.inputs = Some(Arc::new(inputs));
    evaluation.facts_settled = true;
    finish(&mut resolved.diagnostics);
    let seen: BTreeSet<String> = evaluation
        .diagnostics
        .iter()
        .map(Diagnostic::one_line)
        .collect();
    let new: Vec<Diagnostic> = resolved
        .diagnostics
        .iter()
        .filter(|d| !seen.contains(&d.one_line()))
        .cloned()
        .collect();
    evaluation.redactor = resolved.redactor.clone();
    evaluation.diagnostics.extend(new.iter().cloned());
    if new.iter().any(Diagnostic::is_error) {
        evaluation.resolved = None;
        evaluation.desired = None;
    } else {
        evaluation.resolved = Some(resolved);
    }
    new
}

/// The file and offset an error points at.
fn place(d: &Diagnostic) -> Option<(String, usize)> {
    let location = d.location.as_ref().filter(|_| d.is_error())?;
    Some((location.file.path.clone(), location.span.start))
}

/// Sorts diagnostics and makes their text safe for a terminal.
fn finish(diagnostics: &mut [Diagnostic]) {
    diagnostic::sort(diagnostics);
    for d in diagnostics.iter_mut() {
        sanitize(d);
    }
}

/// Makes the text of a diagnostic safe for a terminal (`report::style::printable`): names,
/// paths and values quoted from a manifest must not drive the terminal they are shown on.
/// Source lines are escaped by the renderer itself.
fn sanitize(d: &mut Diagnostic) {
    let escape = |text: &str| printable(text).into_owned();
    d.message = escape(&d.message);
    d.label = d.label.as_deref().map(escape);
    d.help = d.help.as_deref().map(escape);
    let locations = d
        .location
        .iter_mut()
        .chain(d.related.iter_mut().map(|(l, _)| l));
    for location in locations {
        if let Cow::Owned(path) = printable(&location.file.path) {
            location.file = Arc::new(SourceFile {
                path,
                text: location.file.text.clone(),
            });
        }
    }
    for (_, label) in &mut d.related {
        *label = escape(label);
    }
}
