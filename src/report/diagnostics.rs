//! Diagnostics for people (rustc-style snippets with carets) and for machines (JSON).
//!
//! Our own renderer rather than miette's: the output must be byte-stable for snapshot tests
//! whatever the terminal width, and it must print the JSON pointer next to `file:line:col`.

use std::fmt::Write as _;

use serde::Serialize;

use crate::diagnostic::{Diagnostic, Location, Severity};
use crate::report::style::Style;
use crate::secret::Redactor;

/// Renders diagnostics for a terminal, followed by a one-line summary.
pub fn human(diagnostics: &[Diagnostic], style: Style, redactor: &Redactor) -> String {
    let mut out = String::new();
    for d in diagnostics {
        render_one(&mut out, d, style);
        out.push('\n');
    }
    redactor.redact(&out)
}

/// "2 errors, 1 warning", or `None` when there is nothing to say.
pub fn summary(diagnostics: &[Diagnostic]) -> Option<String> {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    match (errors, warnings) {
        (0, 0) => None,
        (e, 0) => Some(plural(e, "error")),
        (0, w) => Some(plural(w, "warning")),
        (e, w) => Some(format!("{}, {}", plural(e, "error"), plural(w, "warning"))),
    }
}

fn render_one(out: &mut String, d: &Diagnostic, style: Style) {
    let head = format!("{}[{}]", d.severity, d.code);
    let head = match d.severity {
        Severity::Error => style.error(&head),
        Severity::Warning => style.warning(&head),
    };
    let _ = writeln!(out, "{head}: {}", style.bold(&d.message));
    let caret = match d.severity {
        Severity::Error => '^',
        Severity::Warning => '~',
    };
    let width = gutter_width(d);
    if let Some(location) = &d.location {
        snippet(
            out,
            location,
            d.label.as_deref(),
            "-->",
            caret,
            width,
            style,
        );
    }
    for (location, label) in &d.related {
        snippet(out, location, Some(label), ":::", '-', width, style);
    }
    if let Some(help) = &d.help {
        let _ = writeln!(
            out,
            "{:width$} {} {}",
            "",
            style.gutter("="),
            style.help(&format!("help: {help}"))
        );
    }
}

fn gutter_width(d: &Diagnostic) -> usize {
    let lines = d
        .location
        .iter()
        .chain(d.related.iter().map(|(l, _)| l))
        .map(|l| l.line_col().line);
    lines.max().unwrap_or(1).to_string().len()
}

fn snippet(
    out: &mut String,
    location: &Location,
    label: Option<&str>,
    arrow: &str,
    caret: char,
    width: usize,
    style: Style,
) {
    let lc = location.line_col();
    let pointer = location
        .pointer
        .as_ref()
        .filter(|p| !p.is_root())
        .map(|p| format!(" ({p})"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{:width$}{} {}:{lc}{pointer}",
        "",
        style.gutter(arrow),
        location.file.path
    );
    let text = &location.file.text;
    if text.is_empty() {
        return;
    }
    let line_start = text
        .get(..location.span.start.min(text.len()))
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line_end = text
        .get(line_start..)
        .and_then(|t| t.find('\n'))
        .map_or(text.len(), |i| line_start + i);
    let line = text.get(line_start..line_end).unwrap_or_default();
    let bar = style.gutter("|");
    let _ = writeln!(out, "{:width$} {bar}", "");
    let start_col = expand_tabs(
        text.get(line_start..location.span.start)
            .unwrap_or_default(),
    )
    .chars()
    .count();
    let end = location.span.end.min(line_end).max(location.span.start);
    let len = expand_tabs(text.get(location.span.start..end).unwrap_or_default())
        .chars()
        .count()
        .max(1);
    let (shown, start_col, len) = window(&expand_tabs(line), start_col, len);
    let _ = writeln!(
        out,
        "{} {bar} {shown}",
        style.gutter(&format!("{:>width$}", lc.line)),
    );
    let marks: String = std::iter::repeat_n(caret, len).collect();
    let label = label.map(|l| format!(" {l}")).unwrap_or_default();
    let painted = if caret == '-' {
        style.gutter(&format!("{marks}{label}"))
    } else {
        style.error(&format!("{marks}{label}"))
    };
    let _ = writeln!(out, "{:width$} {bar} {:start_col$}{painted}", "", "");
}

/// The widest source line shown whole; a longer one (a minified document, a 200 KB value)
/// is cut to a window around what is pointed at.
const MAX_SNIPPET_WIDTH: usize = 160;

/// The part of `line` to show, with `…` where it was cut, and the pointed-at column and
/// width within it.
fn window(line: &str, start_col: usize, len: usize) -> (String, usize, usize) {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= MAX_SNIPPET_WIDTH {
        return (line.to_owned(), start_col, len);
    }
    let from = start_col.saturating_sub(MAX_SNIPPET_WIDTH / 3);
    let to = (from + MAX_SNIPPET_WIDTH).min(chars.len());
    let mut shown = String::new();
    if from > 0 {
        shown.push('…');
    }
    shown.extend(chars.get(from..to).unwrap_or_default());
    if to < chars.len() {
        shown.push('…');
    }
    let col = start_col - from + usize::from(from > 0);
    let len = len.min(to.saturating_sub(start_col)).max(1);
    (shown, col, len)
}

/// A source line as it may reach a terminal: tabs expanded, other control characters (and
/// bidirectional overrides) shown as `�`, so a manifest cannot drive the terminal.
fn expand_tabs(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c {
            '\t' => vec![' '; 4],
            c if c.is_control()
                || ('\u{202a}'..='\u{202e}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c) =>
            {
                vec!['\u{fffd}']
            }
            c => vec![c],
        })
        .collect()
}

/// Diagnostics as a stable JSON document (`formatVersion` 1).
pub fn json(diagnostics: &[Diagnostic], redactor: &Redactor) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Place {
        file: String,
        line: usize,
        column: usize,
        end_line: usize,
        end_column: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        pointer: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        label: Option<String>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Item {
        severity: Severity,
        code: &'static str,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        location: Option<Place>,
        #[serde(skip_serializing_if = "Option::is_none")]
        help: Option<String>,
        related: Vec<Place>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Doc {
        format_version: u32,
        valid: bool,
        errors: usize,
        warnings: usize,
        diagnostics: Vec<Item>,
    }
    let place = |l: &Location, label: Option<&str>| {
        let start = l.line_col();
        let end = l.file.line_col(l.span.end);
        Place {
            file: l.file.path.clone(),
            line: start.line,
            column: start.col,
            end_line: end.line,
            end_column: end.col,
            pointer: l.pointer.as_ref().map(ToString::to_string),
            label: label.map(str::to_owned),
        }
    };
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let doc = Doc {
        format_version: 1,
        valid: errors == 0,
        errors,
        warnings: diagnostics.len() - errors,
        diagnostics: diagnostics
            .iter()
            .map(|d| Item {
                severity: d.severity,
                code: d.code,
                message: d.message.clone(),
                location: d.location.as_ref().map(|l| place(l, d.label.as_deref())),
                help: d.help.clone(),
                related: d
                    .related
                    .iter()
                    .map(|(l, label)| place(l, Some(label)))
                    .collect(),
            })
            .collect(),
    };
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    redactor.redact(&text) + "\n"
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use expect_test::expect;

    use super::*;
    use crate::source::{JsonPointer, SourceFile, Span};

    #[test]
    fn a_long_line_is_cut_to_a_window_around_what_is_pointed_at() {
        let line = format!("{}X{}", "a".repeat(1000), "b".repeat(1000));
        let (shown, col, len) = window(&line, 1000, 1);
        assert_eq!(
            shown.chars().count(),
            MAX_SNIPPET_WIDTH + 2,
            "with an ellipsis each side"
        );
        assert!(shown.starts_with('…') && shown.ends_with('…'));
        assert_eq!(shown.chars().nth(col), Some('X'));
        assert_eq!(len, 1);
        // A span longer than the window is marked to its edge.
        let (_, col, len) = window(&line, 10, 2000);
        assert_eq!((col, len), (10, MAX_SNIPPET_WIDTH - 10));
        assert_eq!(window("short", 1, 2), ("short".to_owned(), 1, 2));
    }

    #[test]
    fn renders_a_snippet_with_caret_pointer_and_help() {
        let file = Arc::new(SourceFile::new("web.yaml", "tasks:\n\t- needs: [instal]\n"));
        let d = Diagnostic::error("manifest::unknown-need", "task `config` needs `instal`")
            .at(Location {
                file: file.clone(),
                span: Span::new(18, 24),
                pointer: Some(JsonPointer::from_escaped("/tasks/0/needs/0")),
            })
            .with_label("unknown task")
            .with_related(
                Location {
                    file,
                    span: Span::new(0, 5),
                    pointer: None,
                },
                "tasks are here",
            )
            .with_help("did you mean `install`?");
        expect![[r"
            error[manifest::unknown-need]: task `config` needs `instal`
             --> web.yaml:2:12 (/tasks/0/needs/0)
              |
            2 |     - needs: [instal]
              |               ^^^^^^ unknown task
             ::: web.yaml:1:1
              |
            1 | tasks:
              | ----- tasks are here
              = help: did you mean `install`?

        "]]
        .assert_eq(&human(&[d], Style::plain(), &Redactor::default()));
    }
}
