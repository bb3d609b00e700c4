//! `Style`: ANSI colour, on or off, decided by the caller (TTY, `NO_COLOR`, `--color`).

/// Which colours to use; `Style::plain()` for files, pipes, tests and `NO_COLOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub fn plain() -> Style {
        Style { color: false }
    }

    pub fn colored() -> Style {
        Style { color: true }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn error(self, text: &str) -> String {
        self.paint("1;31", text)
    }

    pub fn warning(self, text: &str) -> String {
        self.paint("1;33", text)
    }

    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }

    pub fn gutter(self, text: &str) -> String {
        self.paint("1;34", text)
    }

    pub fn help(self, text: &str) -> String {
        self.paint("1;36", text)
    }

    pub fn success(self, text: &str) -> String {
        self.paint("1;32", text)
    }
}

/// Text from outside (a host's output, an error it printed) made safe for a terminal:
/// control characters other than tab, and bidirectional overrides, become visible escapes
/// (`\x1b`, `\u{202e}`), so a host cannot move the cursor, recolour or hide text.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write as _;
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\t')
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !unsafe_char(c) {
            out.push(c);
        } else if u32::from(c) < 0x80 {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Text safe in a table cell: `|` would end the cell, a newline the row, `<` start HTML.
pub fn markdown_escape(text: &str) -> String {
    html_escape(text).replace('|', "\\|").replace('\n', " ")
}

pub fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A fenced block ends at the first line of at least as many backticks as its opening fence,
/// so the fence must be longer than any run of backticks in the content.
pub fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

#[cfg(test)]
mod printable_tests {
    use super::printable;

    #[test]
    fn control_characters_and_bidi_overrides_become_visible() {
        assert_eq!(printable("plain\ttext"), "plain\ttext");
        assert_eq!(printable("\u{1b}[2Jgone"), "\\x1b[2Jgone");
        assert_eq!(printable("a\rb\u{7}"), "a\\x0db\\x07");
        assert_eq!(printable("x\u{202e}y"), "x\\u{202e}y");
    }
}
