//! `Secret` values and the `Redactor` that keeps them out of everything drover prints.
//!
//! A secret's value only exists here and in rendered task content (which needs it); its
//! `Debug` prints `***`, it has no `Display`, and every text drover shows a person goes
//! through `Redactor::redact`. Reading secrets is the shell's job (`secret_source`).

use std::collections::BTreeMap;
use std::fmt;

use crate::model::vars::SecretSource;

/// Where a secret is read from, with file paths made relative to the manifest directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SecretKey {
    Env(String),
    File(String),
}

impl SecretKey {
    /// The key for a `valueFrom` written in the manifest file at `manifest_path`.
    pub fn new(source: &SecretSource, manifest_path: &str) -> SecretKey {
        match source {
            SecretSource::Env(name) => SecretKey::Env(name.clone()),
            SecretSource::File(path) => {
                SecretKey::File(crate::resolve::relative_to(manifest_path, path))
            }
        }
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretKey::Env(name) => write!(f, "environment variable {name}"),
            SecretKey::File(path) => write!(f, "file {path}"),
        }
    }
}

/// A secret value. Deliberately not `Display`; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value itself, for rendering templates only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Secrets read at the edge: a value, or why it could not be read.
pub type Secrets = BTreeMap<SecretKey, Result<Secret, String>>;

/// A string as it appears inside a JSON string literal (without the surrounding quotes).
fn json_inner(text: &str) -> String {
    let quoted = serde_json::to_string(text).unwrap_or_default();
    quoted
        .get(1..quoted.len().saturating_sub(1))
        .unwrap_or_default()
        .to_owned()
}

/// Byte offsets where `needle` occurs in `text` as a whole word (not next to a letter, digit
/// or underscore).
fn whole_words<'a>(text: &'a str, needle: &'a str) -> impl Iterator<Item = usize> + 'a {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    text.match_indices(needle).filter_map(move |(start, _)| {
        let before = text.get(..start).and_then(|t| t.chars().next_back());
        let after = text
            .get(start + needle.len()..)
            .and_then(|t| t.chars().next());
        (!word(before) && !word(after)).then_some(start)
    })
}

/// The mask that replaces secret values in output.
pub const MASK: &str = "***";

/// Secrets shorter than this are masked only where they stand as a whole word: masking
/// every `e` of a one-letter secret would garble all output while hiding nothing (the value
/// is guessable anyway). Values derived from any secret are masked whole (`resolve`).
pub const MIN_SUBSTRING_SECRET: usize = 4;

/// Replaces every known secret value in a text with `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is masked whole.
    needles: Vec<String>,
    /// Secrets shorter than `MIN_SUBSTRING_SECRET`, masked as whole words only.
    short: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.needles.len())
    }
}

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Redactor {
        // Each secret is masked as written and in the forms drover itself produces from it:
        // shell-quoted (argv and `| q`) and JSON-escaped (reports), else those forms leak it.
        let mut needles: Vec<String> = secrets
            .into_iter()
            .map(|s| s.0.trim_end_matches('\n').to_owned())
            .filter(|s| !s.is_empty())
            .flat_map(|s| {
                let quoted = crate::template::shell_quote(&s);
                // Inside a larger quoted word, only the quote is escaped: `'\''`.
                let inner = s.replace('\'', r"'\''");
                let (json, quoted_json, inner_json) =
                    (json_inner(&s), json_inner(&quoted), json_inner(&inner));
                [s, quoted, inner, json, quoted_json, inner_json]
            })
            .collect();
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        let (short, needles): (Vec<String>, Vec<String>) = needles
            .into_iter()
            .partition(|n| n.chars().count() < MIN_SUBSTRING_SECRET);
        Redactor { needles, short }
    }

    /// Also masks `value` whole wherever it appears: a value derived from a secret (a
    /// template that used one).
    pub fn add_derived(&mut self, value: &str) {
        let value = value.trim_end_matches('\n');
        if value.is_empty() || self.needles.iter().chain(&self.short).any(|n| n == value) {
            return;
        }
        // Short values, like short secrets, are masked only as whole words: masking every
        // `a` in the output would hide nothing and garble everything.
        if value.chars().count() < MIN_SUBSTRING_SECRET {
            self.short.push(value.to_owned());
            return;
        }
        self.needles.push(value.to_owned());
        self.needles
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }

    pub fn contains_secret(&self, text: &str) -> bool {
        self.needles.iter().any(|n| text.contains(n.as_str()))
            || self
                .short
                .iter()
                .any(|n| whole_words(text, n).next().is_some())
    }

    pub fn redact(&self, text: &str) -> String {
        let masked = self.needles.iter().fold(text.to_owned(), |acc, needle| {
            acc.replace(needle.as_str(), MASK)
        });
        self.short.iter().fold(masked, |acc, needle| {
            let spans: Vec<usize> = whole_words(&acc, needle).collect();
            let mut out = acc.clone();
            for start in spans.into_iter().rev() {
                out.replace_range(start..start + needle.len(), MASK);
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_very_short_secret_is_masked_only_as_a_whole_word() {
        let r = Redactor::new([&Secret::new("e".to_owned())]);
        assert_eq!(r.redact("the password is e"), "the password is ***");
        assert_eq!(r.redact("pw=e;"), "pw=***;");
        assert_eq!(r.redact("everything here"), "everything here");
        assert!(!r.contains_secret("deleted"));
    }

    #[test]
    fn a_short_derived_value_is_masked_only_as_a_whole_word() {
        let mut r = Redactor::new([&Secret::new("a".to_owned())]);
        r.add_derived("a");
        r.add_derived("A");
        assert_eq!(r.redact("warning: a and A"), "warning: *** and ***");
    }

    #[test]
    fn derived_values_are_masked_whole() {
        let mut r = Redactor::new([&Secret::new("hunter2".to_owned())]);
        r.add_derived("HUNTER2");
        assert_eq!(r.redact("pw HUNTER2 and hunter2"), "pw *** and ***");
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2".to_owned());
        assert_eq!(format!("{s:?}"), "***");
    }

    #[test]
    fn quoted_and_escaped_forms_are_masked_too() {
        let s = Secret::new("it's \"x\"".to_owned());
        let r = Redactor::new([&s]);
        let quoted = crate::template::shell_quote("it's \"x\"");
        assert_eq!(r.redact(&format!("echo {quoted}")), "echo ***");
        assert_eq!(
            r.redact(&serde_json::to_string(&format!("pw={quoted}")).unwrap()),
            "\"pw=***\""
        );
        assert_eq!(r.redact(r#"{"v":"it's \"x\""}"#), r#"{"v":"***"}"#);
    }

    #[test]
    fn redactor_masks_longest_first() {
        let a = Secret::new("pass".to_owned());
        let b = Secret::new("password1\n".to_owned());
        let r = Redactor::new([&a, &b]);
        assert_eq!(r.redact("x=password1 y=pass"), "x=*** y=***");
        assert!(r.contains_secret("my pass"));
        assert!(!r.contains_secret("nothing"));
    }
}
