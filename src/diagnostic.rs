//! `Diagnostic`: a problem with the user's input, as data.
//!
//! Loading, checking and resolving collect diagnostics instead of failing on the first one,
//! so `drover validate` reports everything wrong in one pass. This module holds the value
//! and the "did you mean" helper; rendering for humans and JSON happens in `report::diagnostics`.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::source::{JsonPointer, LineCol, SourceFile, Span};

/// How bad a diagnostic is: errors stop everything, warnings are shown and tolerated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// Where a diagnostic points: a span of a manifest file and the JSON pointer of the node.
#[derive(Debug, Clone)]
pub struct Location {
    pub file: Arc<SourceFile>,
    pub span: Span,
    pub pointer: Option<JsonPointer>,
}

impl Location {
    pub fn line_col(&self) -> LineCol {
        self.file.line_col(self.span.start)
    }
}

/// A problem with the user's input.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable identifier such as `manifest::unknown-need`; scripts and docs may rely on it.
    pub code: &'static str,
    /// What is wrong, in one lowercase sentence without a trailing period.
    pub message: String,
    /// Short text shown under the caret.
    pub label: Option<String>,
    /// What to do about it.
    pub help: Option<String>,
    pub location: Option<Location>,
    /// Further places that explain the problem (the first definition of a duplicate, the
    /// other edges of a cycle), each with its own label.
    pub related: Vec<(Location, String)>,
}

impl Diagnostic {
    /// One line for a log: `file:line:col: message [code]`.
    pub fn one_line(&self) -> String {
        match &self.location {
            Some(location) => {
                let at = location.line_col();
                format!(
                    "{}:{}:{}: {} [{}]",
                    location.file.path, at.line, at.col, self.message, self.code
                )
            }
            None => format!("{} [{}]", self.message, self.code),
        }
    }

    pub fn error(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            label: None,
            help: None,
            location: None,
            related: Vec::new(),
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    #[must_use]
    pub fn at(mut self, location: Location) -> Diagnostic {
        self.location = Some(location);
        self
    }

    #[must_use]
    pub fn with_label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = Some(label.into());
        self
    }

    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Sets the help to "did you mean `x`?" when a close candidate exists, else to `fallback`.
    #[must_use]
    pub fn with_suggestion<'a>(
        self,
        wrong: &str,
        candidates: impl IntoIterator<Item = &'a str>,
        fallback: impl Into<String>,
    ) -> Diagnostic {
        match suggest(wrong, candidates) {
            Some(near) => self.with_help(format!("did you mean `{near}`?")),
            None => self.with_help(fallback),
        }
    }

    #[must_use]
    pub fn with_related(mut self, location: Location, label: impl Into<String>) -> Diagnostic {
        self.related.push((location, label.into()));
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Orders diagnostics by file, position, then code, so output is stable whatever order the
/// checks ran in.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
}

fn sort_key(d: &Diagnostic) -> (Option<(&str, usize)>, Severity, &'static str, &str) {
    let place = d
        .location
        .as_ref()
        .map(|l| (l.file.path.as_str(), l.span.start));
    (place, d.severity, d.code, d.message.as_str())
}

/// The candidate closest to `wrong`, if it is close enough to be a plausible typo.
pub fn suggest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (wrong.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .filter(|c| *c != wrong)
        .map(|c| (edit_distance(wrong, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

/// Edit distance counting insertions, deletions, substitutions and swaps of neighbours
/// (optimal string alignment), case-insensitive: `Hots` is one edit from `Host`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let width = b.len() + 1;
    // Row-major (a.len() + 1) × (b.len() + 1) table; `at` reads it without indexing panics.
    let mut table = vec![0usize; (a.len() + 1) * width];
    let at =
        |t: &[usize], i: usize, j: usize| t.get(i * width + j).copied().unwrap_or(usize::MAX / 2);
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            let value = if i == 0 || j == 0 {
                i + j
            } else {
                let (ca, cb) = (a.get(i - 1), b.get(j - 1));
                let mut best = (at(&table, i - 1, j) + 1)
                    .min(at(&table, i, j - 1) + 1)
                    .min(at(&table, i - 1, j - 1) + usize::from(ca != cb));
                if i > 1 && j > 1 && ca == b.get(j - 2) && a.get(i - 2) == cb {
                    best = best.min(at(&table, i - 2, j - 2) + 1);
                }
                best
            };
            if let Some(cell) = table.get_mut(i * width + j) {
                *cell = value;
            }
        }
    }
    at(&table, a.len(), b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["install", "config", "reload"];
        assert_eq!(suggest("instal", names), Some("install"));
        assert_eq!(suggest("Config", names), Some("config"));
        assert_eq!(suggest("migrate", names), None);
        assert_eq!(
            suggest("install", names),
            None,
            "an exact match is not a suggestion"
        );
    }

    #[test]
    fn edit_distance_is_levenshtein() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("Hots", "Host"), 1, "a swap is one edit");
        assert_eq!(edit_distance("bsae", "base"), 1);
    }
}
