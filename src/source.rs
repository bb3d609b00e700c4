//! Manifest text and positions in it: `SourceFile`, byte `Span`s, `LineCol`, `JsonPointer`.
//!
//! This module knows nothing about YAML or about what a manifest means; it only turns byte
//! offsets into the `file:line:col` that every user-facing message carries.

use std::fmt;
use std::sync::Arc;

/// One manifest file as read from disk: its path as the user should see it, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path relative to the manifest directory when possible, for short, stable messages.
    pub path: String,
    /// The whole text; shared because diagnostics and the loaded model both point into it.
    pub text: Arc<str>,
}

impl SourceFile {
    pub fn new(path: impl Into<String>, text: impl Into<Arc<str>>) -> SourceFile {
        SourceFile {
            path: path.into(),
            text: text.into(),
        }
    }

    /// The 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> LineCol {
        line_col(&self.text, offset)
    }
}

/// A half-open byte range into a `SourceFile`'s text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start,
            end: end.max(start),
        }
    }

    pub fn len(self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

/// A 1-based line and column, the way editors and compilers print them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LineCol {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for LineCol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// Computes the 1-based line and character column of `offset` in `text`.
///
/// Offsets past the end or inside a multi-byte character are clamped to the nearest
/// character boundary before it, so a bad offset still gives a useful position.
pub fn line_col(text: &str, offset: usize) -> LineCol {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or_default();
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).unwrap_or_default().chars().count() + 1;
    LineCol { line, col }
}

/// A JSON pointer (RFC 6901) into a document, such as `/spec/tasks/3/needs/0`.
///
/// Pointers are how schema errors, semantic checks and template errors name a place in a
/// document independently of its formatting; the YAML layer maps them back to spans.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct JsonPointer(String);

impl JsonPointer {
    pub fn root() -> JsonPointer {
        JsonPointer(String::new())
    }

    /// Parses an already-escaped pointer string such as `/spec/tasks/0`.
    pub fn from_escaped(text: &str) -> JsonPointer {
        JsonPointer(text.to_owned())
    }

    /// Appends one reference token, escaping `~` and `/`.
    #[must_use]
    pub fn push(&self, token: impl fmt::Display) -> JsonPointer {
        let token = token.to_string().replace('~', "~0").replace('/', "~1");
        JsonPointer(format!("{}/{token}", self.0))
    }

    /// The unescaped reference tokens.
    pub fn tokens(&self) -> impl Iterator<Item = String> + '_ {
        self.0
            .split('/')
            .skip(1)
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for JsonPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("/")
        } else {
            f.write_str(&self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_lines_and_characters() {
        let text = "a: 1\nbé: 2\n";
        assert_eq!(line_col(text, 0), LineCol { line: 1, col: 1 });
        assert_eq!(line_col(text, 5), LineCol { line: 2, col: 1 });
        // "é" is two bytes but one column.
        assert_eq!(line_col(text, 8), LineCol { line: 2, col: 3 });
        // Inside the "é" clamps back to its start; past the end clamps to the end.
        assert_eq!(line_col(text, 7), LineCol { line: 2, col: 2 });
        assert_eq!(line_col(text, 999), LineCol { line: 3, col: 1 });
    }

    #[test]
    fn pointer_escapes_and_unescapes_tokens() {
        let p = JsonPointer::root().push("spec").push("a/b~c").push(3);
        assert_eq!(p.as_str(), "/spec/a~1b~0c/3");
        assert_eq!(p.tokens().collect::<Vec<_>>(), ["spec", "a/b~c", "3"]);
        assert_eq!(JsonPointer::root().to_string(), "/");
    }
}
