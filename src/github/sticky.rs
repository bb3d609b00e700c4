//! The sticky comment: one comment per marker on a pull request, found again by a hidden
//! marker on its first line and updated in place on every run, its body kept under GitHub's
//! cap. Pure: it decides from the comments it is given; `client` fetches and sends them.

use std::fmt::Write as _;

use crate::github::Error;
use crate::report::style::longest_backtick_run;

/// GitHub refuses a comment body over 65,536 characters. Bodies are measured in UTF-16 code
/// units, never fewer than characters (and what GitHub's own web tools count), and kept at
/// most this long.
pub const MAX_BODY: usize = 65_535;

/// The marker name when `--marker` is not given: `<!-- drover:comment -->`.
pub const DEFAULT_MARKER: &str = "comment";

/// Which of drover's comments a body belongs to: `<!-- drover:NAME -->`, hidden when GitHub
/// renders it, on the body's first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    line: String,
}

impl Marker {
    /// A name of letters, digits, `-`, `_` and `.` (at most 64), so that the HTML comment
    /// cannot be closed early or hide anything else.
    pub fn new(name: &str) -> Result<Marker, Error> {
        let ok = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            return Err(Error::Marker {
                given: name.to_owned(),
            });
        }
        Ok(Marker {
            line: format!("<!-- drover:{name} -->"),
        })
    }

    /// The HTML comment itself.
    pub fn line(&self) -> &str {
        &self.line
    }

    /// Whether a comment's body is one this marker posted. Only the first line counts, so a
    /// comment that quotes the marker further down is left alone.
    pub fn marks(&self, body: &str) -> bool {
        body.trim_start().starts_with(&self.line)
    }
}

/// Where the whole report can be read, named in the note of a body that had to be cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FullReport {
    /// A link given with `--full-report-url` (a CI run or an artifact).
    Url(String),
    /// The file that was posted, by its name.
    File(String),
    /// Standard input, which is gone once read.
    Stdin,
}

impl FullReport {
    /// An `http://` or `https://` URL of at most 2,000 characters without spaces, so that it
    /// renders as one link.
    pub fn url(text: &str) -> Result<FullReport, Error> {
        let ok = (text.starts_with("https://") || text.starts_with("http://"))
            && text.len() <= 2_000
            && !text
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>'));
        if ok {
            Ok(FullReport::Url(text.to_owned()))
        } else {
            Err(Error::FullReportUrl {
                given: text.to_owned(),
            })
        }
    }
}

/// A body ready to post, and what was cut from the report to make it fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub text: String,
    pub cut: Option<Cut>,
}

/// How much of a report a body leaves out (lines count as cut when not kept whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    pub chars: usize,
    pub total_chars: usize,
    pub lines: usize,
    pub total_lines: usize,
}

/// The comment body for `report`: the marker line, then the report; a report too long for
/// GitHub is cut at a line boundary (inside a very long line, at a character boundary),
/// fences and `<details>` left open are closed, and a note says how much was cut and where
/// the full report is.
pub fn compose(report: &str, marker: &Marker, full_report: &FullReport) -> Body {
    compose_within(report, marker, full_report, MAX_BODY)
}

/// A line boundary that would drop more than this (in UTF-16 units) from the room left gives
/// way to a cut inside the long line that follows it.
const LINE_SLACK: usize = 1_024;

fn compose_within(report: &str, marker: &Marker, full_report: &FullReport, limit: usize) -> Body {
    let header = format!("{}\n", marker.line());
    if units(&header) + units(report) <= limit {
        return Body {
            text: header + report,
            cut: None,
        };
    }
    let total_chars = report.chars().count();
    let total_lines = report.lines().count();
    // Cut counts never have more digits than the totals, so this note is the longest.
    let longest_note = note(
        &Cut {
            chars: total_chars,
            total_chars,
            lines: total_lines,
            total_lines,
        },
        full_report,
    );
    // Two more: the line break after a cut inside a line, and the blank line before the note.
    let budget = limit.saturating_sub(units(&header) + units(&longest_note) + 2);
    let kept = keep_within(report, budget);
    let cut = Cut {
        chars: total_chars - kept.text.chars().count(),
        total_chars,
        lines: total_lines - kept.lines,
        total_lines,
    };
    let mut text = header;
    text.push_str(kept.text);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&kept.open.closers());
    text.push('\n');
    text.push_str(&note(&cut, full_report));
    Body {
        text,
        cut: Some(cut),
    }
}

/// The longest start of a report that fits `budget` together with what closes the blocks it
/// leaves open.
struct Kept<'a> {
    text: &'a str,
    open: Open,
    /// Lines kept whole.
    lines: usize,
}

fn keep_within(report: &str, budget: usize) -> Kept<'_> {
    let mut best = Kept {
        text: "",
        open: Open::default(),
        lines: 0,
    };
    let mut best_used = 0;
    let (mut end, mut used, mut lines, mut open) = (0, 0, 0, Open::default());
    let mut overflow = None;
    for line in report.split_inclusive('\n') {
        let line_units = units(line);
        if used + line_units > budget {
            overflow = Some(line);
            break;
        }
        open.read(line);
        end += line.len();
        used += line_units;
        lines += 1;
        if used + open.closer_units() <= budget {
            best = Kept {
                text: report.get(..end).unwrap_or_default(),
                open: open.clone(),
                lines,
            };
            best_used = used;
        }
    }
    let Some(line) = overflow else {
        return best;
    };
    if budget.saturating_sub(best_used) <= LINE_SLACK {
        return best;
    }
    // Cut inside the long line, keeping a margin for the blocks the kept part may open.
    let room = budget.saturating_sub(used + open.closer_units() + 64);
    let mut part_units = 0;
    let part_end = line
        .char_indices()
        .take_while(|(_, c)| {
            part_units += c.len_utf16();
            part_units <= room
        })
        .last()
        .map_or(0, |(i, c)| i + c.len_utf8());
    let part = line.get(..part_end).unwrap_or_default();
    let mut part_open = open.clone();
    part_open.read(part);
    if part.is_empty() || used + units(part) + part_open.closer_units() > budget {
        return best;
    }
    Kept {
        text: report.get(..end + part_end).unwrap_or(best.text),
        open: part_open,
        lines,
    }
}

/// The Markdown blocks open at some point of a report: a fenced code block, and how many
/// `<details>` elements (outside code).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Open {
    /// The fence character and its length, while inside a fenced code block.
    fence: Option<(char, usize)>,
    details: usize,
}

/// `</details>` and its line break.
const DETAILS_CLOSER_UNITS: usize = 11;

impl Open {
    /// Moves past one line (or the start of one).
    fn read(&mut self, line: &str) {
        match (self.fence, fence_of(line)) {
            (Some((c, n)), Some((c2, n2, rest)))
                if c == c2 && n2 >= n && rest.trim().is_empty() =>
            {
                self.fence = None;
            }
            (Some(_), _) => {}
            (None, Some((c, n, rest))) if !(c == '`' && rest.contains('`')) => {
                self.fence = Some((c, n));
            }
            (None, _) => {
                if line.contains('<') {
                    let lower = line.to_ascii_lowercase();
                    let opens = lower
                        .match_indices("<details")
                        .filter(|(i, m)| {
                            lower
                                .get(i + m.len()..)
                                .and_then(|rest| rest.chars().next())
                                .is_none_or(|c| c == '>' || c.is_whitespace())
                        })
                        .count();
                    let closes = lower.matches("</details").count();
                    self.details = (self.details + opens).saturating_sub(closes);
                }
            }
        }
    }

    fn closers(&self) -> String {
        let mut out = String::new();
        if let Some((c, n)) = self.fence {
            out.extend(std::iter::repeat_n(c, n));
            out.push('\n');
        }
        for _ in 0..self.details {
            out.push_str("</details>\n");
        }
        out
    }

    fn closer_units(&self) -> usize {
        self.fence.map_or(0, |(_, n)| n + 1) + self.details * DETAILS_CLOSER_UNITS
    }
}

/// A fence line (CommonMark): up to three spaces, then three or more backticks or tildes;
/// returns the character, the run's length and what follows it.
fn fence_of(line: &str) -> Option<(char, usize, &str)> {
    let text = line.trim_end_matches(['\n', '\r']);
    let body = text.trim_start_matches(' ');
    if text.len() - body.len() > 3 {
        return None;
    }
    let c = body.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let n = body.chars().take_while(|x| *x == c).count();
    (n >= 3).then(|| (c, n, body.get(n..).unwrap_or_default()))
}

/// The note under a cut body.
fn note(cut: &Cut, full_report: &FullReport) -> String {
    let mut out = format!(
        "> **Cut to fit GitHub's comment limit:** the last {} of {} characters ({} of {} lines) \
         of this report are not shown. ",
        thousands(cut.chars),
        thousands(cut.total_chars),
        thousands(cut.lines),
        thousands(cut.total_lines),
    );
    match full_report {
        FullReport::Url(url) => {
            let _ = write!(out, "The full report: {url}");
        }
        FullReport::File(name) => {
            let name: String = name
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
            let ticks = "`".repeat(longest_backtick_run(&name) + 1);
            // A code span that starts or ends with a backtick needs a space inside its ticks.
            let pad = if name.starts_with('`') || name.ends_with('`') {
                " "
            } else {
                ""
            };
            let _ = write!(
                out,
                "The full report is the file {ticks}{pad}{name}{pad}{ticks} on the machine that \
                 posted this comment."
            );
        }
        FullReport::Stdin => out.push_str(
            "The full report was read from standard input by the job that posted this comment.",
        ),
    }
    out.push('\n');
    out
}

/// `70000` → `70,000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Length as GitHub measures a comment: UTF-16 code units.
fn units(text: &str) -> usize {
    text.encode_utf16().count()
}

/// One existing comment on a pull request, as far as choosing one matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub id: u64,
    pub body: String,
    /// Its address on github.com, for the user.
    pub url: String,
}

/// What to do with a body on a pull request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'a> {
    /// No comment carries the marker yet.
    Create,
    /// This comment carries the marker and says something else.
    Update(&'a Comment),
    /// This comment already says exactly this; leave it (no "edited" mark, no notification).
    Unchanged(&'a Comment),
}

/// The first (oldest, in GitHub's listing order) comment that this marker posted.
pub fn find<'a>(comments: &'a [Comment], marker: &Marker) -> Option<&'a Comment> {
    comments.iter().find(|c| marker.marks(&c.body))
}

/// Create, update or leave alone, given the comment `find` returned.
pub fn decide<'a>(found: Option<&'a Comment>, body: &str) -> Decision<'a> {
    // GitHub keeps a body as sent, but an edit in its web editor turns line ends into CRLF.
    let normal = |text: &str| text.replace("\r\n", "\n").trim_end().to_owned();
    match found {
        None => Decision::Create,
        Some(comment) if normal(&comment.body) == normal(body) => Decision::Unchanged(comment),
        Some(comment) => Decision::Update(comment),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker() -> Marker {
        Marker::new(DEFAULT_MARKER).unwrap()
    }

    fn comment(id: u64, body: &str) -> Comment {
        Comment {
            id,
            body: body.to_owned(),
            url: format!("https://github.com/o/r/pull/1#issuecomment-{id}"),
        }
    }

    #[test]
    fn marker_is_a_hidden_first_line() {
        assert_eq!(marker().line(), "<!-- drover:comment -->");
        assert_eq!(
            Marker::new("drift.prod").unwrap().line(),
            "<!-- drover:drift.prod -->"
        );
        for bad in ["", "a b", "x-->y", "plan:prod", &"n".repeat(65)] {
            assert!(Marker::new(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_short_report_is_posted_whole_under_its_marker() {
        let body = compose("# Plan\n\nNo changes.\n", &marker(), &FullReport::Stdin);
        assert_eq!(
            body.text,
            "<!-- drover:comment -->\n# Plan\n\nNo changes.\n"
        );
        assert_eq!(body.cut, None);
    }

    #[test]
    fn a_long_report_is_cut_at_a_line_boundary_with_a_note() {
        let report = (0..7_000).fold(String::new(), |mut out, i| {
            let _ = writeln!(out, "line {i:05}");
            out
        });
        assert_eq!(report.len(), 77_000);
        let body = compose(
            &report,
            &marker(),
            &FullReport::url("https://ci.example/run/7").unwrap(),
        );
        assert!(units(&body.text) <= MAX_BODY, "{}", units(&body.text));
        assert!(
            body.text
                .starts_with("<!-- drover:comment -->\nline 00000\n")
        );
        let cut = body.cut.unwrap();
        assert_eq!(cut.total_chars, 77_000);
        assert_eq!(cut.chars % 11, 0, "not cut at a line boundary");
        assert_eq!(cut.lines, cut.chars / 11);
        assert!(
            body.text.ends_with(&format!(
                "\n\n> **Cut to fit GitHub's comment limit:** the last {} of 77,000 characters \
                 ({} of 7,000 lines) of this report are not shown. The full report: \
                 https://ci.example/run/7\n",
                thousands(cut.chars),
                thousands(cut.lines)
            )),
            "{}",
            body.text.get(body.text.len() - 300..).unwrap()
        );
        // Nothing was cut that would have fitted.
        assert!(units(&body.text) + 11 > MAX_BODY);
    }

    #[test]
    fn a_cut_inside_a_code_block_or_details_closes_them() {
        let lines = (0..40).fold(String::new(), |mut out, i| {
            let _ = writeln!(out, "+line {i}");
            out
        });
        let report = format!(
            "## web-1\n<details><summary>diff</summary>\n\n```diff\n-a\n{lines}```\n</details>\n"
        );
        let mut cut_inside_the_fence = false;
        // From the smallest limit that holds the marker and the note.
        for limit in 260..700 {
            let body = compose_within(&report, &marker(), &FullReport::Stdin, limit);
            assert!(units(&body.text) <= limit, "{limit}: {}", body.text);
            let Some((kept, _)) = body.text.split_once("\n\n> **Cut") else {
                assert_eq!(body.cut, None);
                continue;
            };
            let fences = kept.lines().filter(|l| l.starts_with("```")).count();
            assert_eq!(fences % 2, 0, "{limit}: an open fence:\n{kept}");
            assert_eq!(
                kept.matches("<details>").count(),
                kept.matches("</details>").count(),
                "{limit}: an open <details>:\n{kept}"
            );
            cut_inside_the_fence |= kept.ends_with("\n+line 7\n```\n</details>");
        }
        assert!(cut_inside_the_fence);
    }

    #[test]
    fn a_very_long_line_is_cut_between_characters() {
        // Every character is two UTF-16 units: the cut must respect both measures.
        let report = "🙂".repeat(40_000);
        let body = compose(&report, &marker(), &FullReport::File("plan.md".to_owned()));
        assert!(units(&body.text) <= MAX_BODY);
        let cut = body.cut.unwrap();
        assert!(cut.chars > 0 && cut.chars < 40_000 - 30_000, "{cut:?}");
        assert_eq!((cut.lines, cut.total_lines), (1, 1));
        assert!(
            body.text
                .contains("The full report is the file `plan.md` on the machine"),
            "{}",
            body.text
        );
    }

    #[test]
    fn a_report_of_one_huge_line_after_short_ones_is_not_dropped_whole() {
        let report = format!("# Drift\n\n{}\n", "x".repeat(100_000));
        let body = compose(&report, &marker(), &FullReport::Stdin);
        assert!(units(&body.text) <= MAX_BODY);
        assert!(body.text.len() > 60_000, "{}", body.text.len());
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn find_picks_the_oldest_comment_with_this_marker_only() {
        let plan = Marker::new("plan").unwrap();
        let comments = [
            comment(1, "LGTM <!-- drover:comment -->"),
            comment(2, "<!-- drover:plan -->\nplan"),
            comment(3, "  <!-- drover:comment -->\nfirst"),
            comment(4, "<!-- drover:comment -->\nsecond"),
        ];
        assert_eq!(find(&comments, &marker()).map(|c| c.id), Some(3));
        assert_eq!(find(&comments, &plan).map(|c| c.id), Some(2));
        assert_eq!(find(&comments[..2], &marker()), None);
        let named = Marker::new("comment-2").unwrap();
        assert_eq!(find(&comments, &named), None);
    }

    #[test]
    fn decide_creates_updates_or_leaves_alone() {
        let existing = comment(7, "<!-- drover:comment -->\r\nold\r\n");
        assert_eq!(decide(None, "x"), Decision::Create);
        assert_eq!(
            decide(Some(&existing), "<!-- drover:comment -->\nnew\n"),
            Decision::Update(&existing)
        );
        assert_eq!(
            decide(Some(&existing), "<!-- drover:comment -->\nold\n"),
            Decision::Unchanged(&existing)
        );
    }

    #[test]
    fn full_report_url_must_be_one_link() {
        assert!(FullReport::url("https://github.com/o/r/actions/runs/1").is_ok());
        for bad in ["ftp://x", "https://a b", "see https://x", "https://x>"] {
            assert!(FullReport::url(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
