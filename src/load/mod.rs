//! Manifest files → `Loaded { desired, diagnostics }`; all or nothing (what did decode is
//! kept apart, in `partial`, only to find more problems in the same run).
//!
//! The pipeline per document is `yaml` (syntax, spans) → `document` (envelope, `schema`,
//! typed decoding, per-document rules); then `check` runs the rules that span documents.
//! Every problem becomes a `Diagnostic`; `desired` is `Some` only when none is an error.
//! This module reads no files: `manifest_dir` does, and hands us their text.

pub mod account_rule;
pub mod check;
pub mod defaults;
pub mod document;
pub mod schema;
pub mod system_rule;
pub mod validator;
pub mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use crate::diagnostic::{self, Diagnostic, Location};
use crate::model::Kind;
use crate::model::desired::{Desired, Origin};
use crate::source::{SourceFile, Span};

use check::{CheckLimits, Declared, Locator};
use document::Decoded;
use yaml::{Node, NodeValue, YamlLimits};

/// Input limits; the defaults fit a 512 MB edge box with room to spare.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub max_documents: usize,
    pub max_tasks_per_workflow: usize,
    pub max_instances: usize,
    pub yaml: YamlLimits,
    /// Directories (or files) outside the manifest directory that manifests may read on the
    /// controller (`--allow-path`); the shell enforces it (decision 0007).
    pub allow_paths: Vec<PathBuf>,
    /// A secret that is not set is a warning and its users "may change" (a plan or a
    /// validation in a job without the secrets), not an error. Off for anything that applies.
    pub stand_in_missing_secrets: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_file_bytes: 4 * 1024 * 1024,
            max_documents: 20_000,
            max_tasks_per_workflow: 1_000,
            max_instances: 200_000,
            yaml: YamlLimits::default(),
            allow_paths: Vec::new(),
            stand_in_missing_secrets: false,
        }
    }
}

/// The result of loading: the desired state if nothing was wrong, and every diagnostic.
#[derive(Debug)]
pub struct Loaded {
    pub desired: Option<Desired>,
    /// When there were errors: what did decode and pass the per-document rules, so that the
    /// later stages (templates, inputs, secrets) can still report their problems in the same
    /// run. Never planned or applied.
    pub partial: Option<Desired>,
    pub diagnostics: Vec<Diagnostic>,
    /// Every path that a manifest document names as a `template`, `source` or secret `file`,
    /// relative to the manifest directory (as `relative_to` makes it).
    pub referenced: BTreeSet<String>,
    /// The files given that were not loaded because manifests name them as inputs (and no
    /// document in them declares `apiVersion: drover/v1`).
    pub skipped: BTreeSet<String>,
    /// A `HostDefaults` document failed to load: the vars it gives are missing from every
    /// host it would match, so "undefined" in a template is no news of its own.
    pub defaults_broken: bool,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Loads manifest files already read from disk.
///
/// Two passes: every file is parsed first, so that the files manifests name as inputs
/// (`template`, `source`, secret `file`) are known; those are inputs, not manifests, and are
/// not decoded (unless a document in them declares `apiVersion: drover/v1`). A template
/// named `prometheus.yml` is therefore no error.
/// The desired state of one manifest file named `site.yaml` holding `text`, for tests of
/// what comes after loading; panics with the diagnostics if it does not load.
#[cfg(test)]
pub(crate) fn desired_of(text: &str) -> Desired {
    let loaded = load(
        &[Arc::new(SourceFile::new("site.yaml", text))],
        &Limits::default(),
    );
    loaded
        .desired
        .unwrap_or_else(|| panic!("{:#?}", loaded.diagnostics))
}

pub fn load(files: &[Arc<SourceFile>], limits: &Limits) -> Loaded {
    let mut diagnostics = Vec::new();
    let mut trees = Trees::default();
    let mut hosts = Vec::new();
    let mut defaults = Vec::new();
    let mut defaults_broken = false;
    let mut workflows = Vec::new();
    let mut declared = Declared::default();
    let mut documents = 0usize;
    let mut parsed_files = Vec::with_capacity(files.len());
    for file in files {
        if file.text.len() as u64 > limits.max_file_bytes {
            diagnostics.push(too_large(file, limits.max_file_bytes));
            continue;
        }
        let (parsed, problems) = yaml::parse(file, limits.yaml);
        parsed_files.push((file, parsed, problems));
    }
    let mut referenced = BTreeSet::new();
    for (file, parsed, _) in &parsed_files {
        for document in parsed {
            named_inputs(file, &document.root, &mut referenced);
        }
    }
    let mut skipped = BTreeSet::new();
    for (file, parsed, problems) in parsed_files {
        if referenced.contains(&file.path) && !parsed.iter().any(|d| declares_api(&d.root)) {
            skipped.insert(file.path.clone());
            continue;
        }
        diagnostics.extend(problems);
        for document in parsed {
            documents += 1;
            if documents > limits.max_documents {
                diagnostics.push(
                    Diagnostic::error("manifest::limit", format!("more than {} documents in the manifest directory", limits.max_documents))
                        .at(Location { file: file.clone(), span: document.root.head_span(), pointer: None })
                        .with_label("this one is over the limit")
                        .with_help("split the fleet across several manifest directories, or raise the limit with --max-documents"),
                );
                break;
            }
            match document::decode(file, &document, &mut diagnostics) {
                Some(Decoded::Host(host)) => hosts.push(host),
                Some(Decoded::Defaults(found)) => defaults.push(found),
                Some(Decoded::Workflow(workflow, broken)) => {
                    declared
                        .tasks
                        .entry(workflow.name.to_string())
                        .or_default()
                        .extend(broken);
                    workflows.push(workflow);
                }
                None => match document::declared_name(&document) {
                    Some((Kind::Host, name)) => {
                        declared.hosts.insert(name);
                    }
                    Some((Kind::Workflow, name)) => {
                        declared.workflows.insert(name);
                    }
                    // Nothing refers to a defaults document by name; what it would have given
                    // is missing, which later checks must not report as news.
                    Some((Kind::HostDefaults, _)) => defaults_broken = true,
                    None => {}
                },
            }
            trees.insert(file, document.index, document.root);
        }
    }
    let check_limits = CheckLimits {
        max_tasks_per_workflow: limits.max_tasks_per_workflow,
        max_instances: limits.max_instances,
    };
    let desired = check::check(
        hosts,
        defaults,
        workflows,
        &declared,
        &trees,
        check_limits,
        &mut diagnostics,
    );
    diagnostic::sort(&mut diagnostics);
    let ok = !diagnostics.iter().any(Diagnostic::is_error);
    let (desired, partial) = if ok {
        (Some(desired), None)
    } else {
        (None, Some(desired))
    };
    Loaded {
        desired,
        partial,
        diagnostics,
        referenced,
        skipped,
        defaults_broken,
    }
}

/// Whether a document says it is a drover manifest.
fn declares_api(root: &Node) -> bool {
    root.child("apiVersion").is_some_and(
        |v| matches!(&v.value, NodeValue::String(text) if text == crate::model::API_VERSION),
    )
}

/// Adds the paths a (possibly invalid) Host or Workflow document names as inputs: secret
/// files under `spec.vars`, and `file.template`/`file.source` of its tasks.
fn named_inputs(file: &SourceFile, root: &Node, out: &mut BTreeSet<String>) {
    let is_manifest = root.child("kind").is_some_and(
        |k| matches!(&k.value, NodeValue::String(text) if Kind::parse(text).is_some()),
    );
    let Some(spec) = root.child("spec").filter(|_| is_manifest) else {
        return;
    };
    let mut add = |node: Option<&Node>| {
        if let Some(NodeValue::String(path)) = node.map(|n| &n.value) {
            out.insert(relative_to(&file.path, path));
        }
    };
    if let Some(NodeValue::Map(vars)) = spec.child("vars").map(|v| &v.value) {
        for (_, value) in vars {
            add(value.child("valueFrom").and_then(|v| v.child("file")));
        }
    }
    if let Some(NodeValue::Seq(tasks)) = spec.child("tasks").map(|t| &t.value) {
        for task in tasks {
            let file_spec = task.child("file");
            add(file_spec.and_then(|f| f.child("template")));
            add(file_spec.and_then(|f| f.child("source")));
        }
    }
}

/// Joins `path` to the directory of the manifest at `manifest_path` (both relative to the
/// manifest directory), lexically normalised. Absolute paths stay as they are.
pub fn relative_to(manifest_path: &str, path: &str) -> String {
    if path.starts_with('/') {
        return path.to_owned();
    }
    let mut parts: Vec<&str> = manifest_path.split('/').collect();
    parts.pop();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

fn too_large(file: &Arc<SourceFile>, limit: u64) -> Diagnostic {
    Diagnostic::error(
        "manifest::file-too-large",
        format!("{} is larger than the limit of {limit} bytes", file.path),
    )
    .at(Location {
        file: file.clone(),
        span: Span::default(),
        pointer: None,
    })
    .with_help("split it into several files, or raise the limit with --max-file-size")
}

/// The YAML trees of every document, kept while checking so diagnostics can point into them.
#[derive(Default)]
struct Trees {
    by_document: BTreeMap<(String, usize), Node>,
}

impl Trees {
    fn insert(&mut self, file: &Arc<SourceFile>, index: usize, root: Node) {
        self.by_document.insert((file.path.clone(), index), root);
    }
}

impl Locator for Trees {
    fn tree(&self, origin: &Origin) -> Option<&Node> {
        self.by_document
            .get(&(origin.file.path.clone(), origin.document))
    }
}

/// Re-parses a file to find the span of `pointer` in its `document`-th document.
///
/// Later stages (templates, resolution) keep only `Origin`s; on the rare error path this
/// recovers the exact place without holding every YAML tree in memory.
pub fn locate(origin: &Origin) -> Location {
    let (documents, _) = yaml::parse(&origin.file, YamlLimits::default());
    let span = documents
        .iter()
        .find(|d| d.index == origin.document)
        .map(|d| d.root.locate(&origin.pointer))
        .unwrap_or_default();
    Location {
        file: origin.file.clone(),
        span,
        pointer: Some(origin.pointer.clone()),
    }
}
