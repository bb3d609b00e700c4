//! `Framer`: splits one output stream of a long-lived remote shell into what the current
//! task printed and the marker lines drover's shell functions print around it.
//!
//! A marker is a line `<nonce> WORD ARGS`, always printed with a newline *before* it, so it
//! starts a line even when the task's output did not end with one. That newline belongs to
//! the marker: the task's output is exactly the bytes before it. The nonce is random per
//! session, so a task cannot forge a marker. Pure: bytes in, output and markers out.

/// What a chunk of bytes turned out to hold, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Output of the task, to capture and stream live.
    Output(Vec<u8>),
    /// A marker line, without the nonce: `["END", "3", "0"]`.
    Marker(Vec<String>),
}

#[derive(Debug)]
pub struct Framer {
    /// `<nonce> `: how a marker line starts.
    prefix: Vec<u8>,
    /// Bytes of the current line not yet given out (it may still become a marker).
    line: Vec<u8>,
    /// A newline seen but not given out: it belongs to a marker if one follows.
    held_newline: bool,
    /// Whether `line` starts at the beginning of a line (only then can it be a marker).
    at_line_start: bool,
}

impl Framer {
    pub fn new(nonce: &str) -> Framer {
        Framer {
            prefix: format!("{nonce} ").into_bytes(),
            line: Vec::new(),
            held_newline: false,
            at_line_start: true,
        }
    }

    /// Feeds bytes; returns output and markers in the order they appeared.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Piece> {
        let mut pieces = Vec::new();
        let mut output = Vec::new();
        for &byte in bytes {
            if byte == b'\n' {
                let line = std::mem::take(&mut self.line);
                if self.at_line_start && line.starts_with(&self.prefix) {
                    // The marker's own newline before it is dropped with it.
                    self.held_newline = false;
                    if !output.is_empty() {
                        pieces.push(Piece::Output(std::mem::take(&mut output)));
                    }
                    let text =
                        String::from_utf8_lossy(line.get(self.prefix.len()..).unwrap_or_default())
                            .into_owned();
                    pieces.push(Piece::Marker(
                        text.split_whitespace().map(str::to_owned).collect(),
                    ));
                } else {
                    if self.held_newline {
                        output.push(b'\n');
                    }
                    output.extend_from_slice(&line);
                    self.held_newline = true;
                }
                self.at_line_start = true;
            } else {
                self.line.push(byte);
            }
        }
        // A partial line that can no longer become a marker goes out now (progress meters
        // print without newlines).
        let could_be_marker = self.at_line_start
            && self.prefix.starts_with(
                self.line
                    .get(..self.line.len().min(self.prefix.len()))
                    .unwrap_or_default(),
            )
            && self.line.len() <= self.prefix.len() + 64 * 1024;
        if !self.line.is_empty() && !could_be_marker {
            if self.held_newline {
                output.push(b'\n');
                self.held_newline = false;
            }
            output.append(&mut self.line);
            self.at_line_start = false;
        }
        if !output.is_empty() {
            pieces.push(Piece::Output(output));
        }
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> (Vec<u8>, Vec<Vec<String>>) {
        let mut framer = Framer::new("N1");
        let mut out = Vec::new();
        let mut markers = Vec::new();
        for chunk in chunks {
            for piece in framer.push(chunk) {
                match piece {
                    Piece::Output(bytes) => out.extend(bytes),
                    Piece::Marker(words) => markers.push(words),
                }
            }
        }
        (out, markers)
    }

    #[test]
    fn output_is_exactly_what_came_before_the_marker() {
        assert_eq!(run(&[b"out\n\nN1 END 1 0\n"]).0, b"out\n");
        assert_eq!(run(&[b"out\nN1 END 1 0\n"]).0, b"out");
        assert_eq!(run(&[b"\nN1 END 1 0\n"]).0, b"");
        assert_eq!(run(&[b"a\n\n\nN1 END 1 0\n"]).0, b"a\n\n");
        let (out, markers) = run(&[b"\nN1 PID 1 42\nline\n\nN1 END 1 3\n"]);
        assert_eq!(out, b"line\n");
        assert_eq!(markers, vec![vec!["PID", "1", "42"], vec!["END", "1", "3"]]);
    }

    #[test]
    fn markers_split_across_chunks_are_found() {
        let (out, markers) = run(&[b"hel", b"lo\n", b"\nN", b"1 EN", b"D 2 0", b"\n"]);
        assert_eq!(out, b"hello\n");
        assert_eq!(markers, vec![vec!["END", "2", "0"]]);
    }

    #[test]
    fn a_task_cannot_forge_a_marker_mid_line_or_with_another_nonce() {
        let (out, markers) = run(&[b"x N1 END 9 0\nN2 END 9 0\n\nN1 END 1 0\n"]);
        assert_eq!(out, b"x N1 END 9 0\nN2 END 9 0\n");
        assert_eq!(markers, vec![vec!["END", "1", "0"]]);
    }

    #[test]
    fn partial_lines_that_cannot_be_markers_stream_at_once() {
        let mut framer = Framer::new("N1");
        assert_eq!(framer.push(b"50%"), vec![Piece::Output(b"50%".to_vec())]);
        assert_eq!(
            framer.push(b"\r60%"),
            vec![Piece::Output(b"\r60%".to_vec())]
        );
        assert_eq!(framer.push(b"N1"), vec![Piece::Output(b"N1".to_vec())]);
    }
}
