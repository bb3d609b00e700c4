//! Renders a drift report: text for a terminal, versioned JSON, and Markdown for a pull
//! request comment (always under GitHub's size limit).

use std::fmt::Write as _;

use crate::drift::{DriftReport, Finding, InstanceDrift, Status};
use crate::report::plan::MARKDOWN_LIMIT;
use crate::report::style::{Style, html_escape, longest_backtick_run, markdown_escape, printable};

/// The summary line: what was compared, what differs, what could not be told.
pub fn summary(report: &DriftReport) -> String {
    let s = &report.summary;
    let hosts = report.hosts.len();
    let round_trips: u32 = report.hosts.iter().map(|h| h.round_trips).sum();
    let probed = format!(
        "{} probed {} on {} {}",
        s.probed,
        noun(s.probed, "instance", "instances"),
        hosts,
        noun(hosts, "host", "hosts")
    );
    let mut out = if s.probed == 0 {
        "Nothing probed: no instance has both a successful apply of its current spec and something to look at".to_owned()
    } else if s.drifted > 0 {
        format!("Drift: {} of {probed} differ", s.drifted)
    } else if s.unknown > 0 {
        format!(
            "Could not tell: no drift found, but {} of {probed} could not be probed",
            s.unknown
        )
    } else {
        format!(
            "No drift: {probed} {} what was applied",
            noun(s.probed, "matches", "match")
        )
    };
    if s.drifted > 0 && s.unknown > 0 {
        let _ = write!(out, "; {} could not be probed", s.unknown);
    }
    let _ = write!(
        out,
        " ({round_trips} {}).",
        noun(round_trips as usize, "round trip", "round trips"),
    );
    if !report.targets.is_empty() {
        let _ = write!(out, " Only {}.", report.targets.join(", "));
    }
    let left: Vec<String> = [
        (s.pending, "with a pending change"),
        (s.ignored, "with `drift: ignore`"),
        (s.no_probe, "without a probe (`run` without `check`)"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, why)| format!("{n} {why}"))
    .collect();
    if !left.is_empty() {
        let _ = write!(out, " Not probed: {}.", left.join(", "));
    }
    out
}

fn noun<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// Text for a terminal: every drifted instance with its findings and diffs, then hosts that
/// could not be probed, then the summary.
pub fn text(report: &DriftReport, style: Style) -> String {
    let mut out = String::new();
    for instance in &report.instances {
        let mark = match instance.status {
            Status::Drifted => style.warning("≠"),
            Status::Unknown => style.error("?"),
            Status::InSync => " ".to_owned(),
        };
        let _ = writeln!(
            out,
            "{mark} {}  {} (drift: {})",
            style.bold(&printable(&instance.id.to_string())),
            instance.kind,
            policy(instance),
        );
        if let Some(error) = &instance.error {
            let _ = writeln!(out, "    {}", printable(error));
        }
        for finding in &instance.findings {
            let _ = writeln!(out, "    {}", printable(&finding.summary()));
            for line in finding_body(finding).lines() {
                let line = printable(line);
                let painted = if line.starts_with('+') && !line.starts_with("+++") {
                    style.success(&line)
                } else if line.starts_with('-') && !line.starts_with("---") {
                    style.error(&line)
                } else {
                    line.into_owned()
                };
                let _ = writeln!(out, "      {painted}");
            }
        }
    }
    for host in report.hosts.iter().filter(|h| h.error.is_some()) {
        let _ = writeln!(
            out,
            "{} {}: {}",
            style.error("error"),
            host.host,
            printable(host.error.as_deref().unwrap_or_default())
        );
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&summary(report));
    out.push('\n');
    out
}

fn policy(instance: &InstanceDrift) -> &'static str {
    match instance.policy {
        crate::model::workflow::DriftPolicy::Ignore => "ignore",
        crate::model::workflow::DriftPolicy::Warn => "warn",
        crate::model::workflow::DriftPolicy::Fix => "fix",
    }
}

/// The lines under a finding: a content diff, a note, a failing check's output.
fn finding_body(finding: &Finding) -> String {
    match finding {
        Finding::Content { diff, note, .. } => {
            let mut out = diff.clone().unwrap_or_default();
            if let Some(note) = note {
                let _ = writeln!(out, "{note}");
            }
            out
        }
        Finding::Check { output, .. } => output.clone(),
        Finding::Missing { .. }
        | Finding::NotAFile { .. }
        | Finding::WrongType { .. }
        | Finding::Unexpected { .. }
        | Finding::Edit { .. }
        | Finding::Attribute { .. }
        | Finding::Package { .. }
        | Finding::Service { .. } => String::new(),
    }
}

/// The report as versioned JSON.
pub fn json(report: &DriftReport) -> String {
    let mut text = serde_json::to_string_pretty(report).unwrap_or_else(|e| {
        format!("{{\"error\": \"the drift report could not be serialised: {e}\"}}")
    });
    text.push('\n');
    text
}

/// Room kept for the closing note.
const MARKDOWN_BUDGET: usize = MARKDOWN_LIMIT - 512;

/// Markdown for a pull-request comment: the summary, a table per host, then the diffs in
/// collapsed blocks while they fit; what does not fit is counted in a closing note.
pub fn markdown(report: &DriftReport) -> String {
    let mut out = format!("**{}**\n", markdown_escape(&summary(report)));
    let mut shown = 0;
    let mut cut = false;
    let mut hosts: Vec<&str> = report.instances.iter().map(|i| i.host.as_str()).collect();
    hosts.dedup();
    'hosts: for host in hosts {
        let heading = format!(
            "\n### {}\n\n| instance | status | finding |\n| --- | --- | --- |\n",
            markdown_escape(host)
        );
        let mut first = true;
        for instance in report.instances.iter().filter(|i| i.host.as_str() == host) {
            let findings: Vec<String> = instance.findings.iter().map(Finding::summary).collect();
            let finding = instance
                .error
                .clone()
                .unwrap_or_else(|| findings.join("; "));
            let row = format!(
                "| `{}/{}` | {} | {} |\n",
                markdown_escape(instance.id.workflow.as_str()),
                markdown_escape(&instance.id.task_part()),
                match instance.status {
                    Status::Drifted => "≠ drifted",
                    Status::Unknown => "? unknown",
                    Status::InSync => "in sync",
                },
                markdown_escape(&finding)
            );
            let size = row.len() + if first { heading.len() } else { 0 };
            if out.len() + size >= MARKDOWN_BUDGET {
                cut = true;
                break 'hosts;
            }
            if first {
                out.push_str(&heading);
                first = false;
            }
            out.push_str(&row);
            shown += 1;
        }
    }
    let mut details_cut = false;
    if !cut {
        for instance in &report.instances {
            let block = details_block(instance);
            if block.is_empty() {
                continue;
            }
            if out.len() + block.len() >= MARKDOWN_BUDGET {
                details_cut = true;
                break;
            }
            out.push_str(&block);
        }
    }
    let not_shown = report.instances.len() - shown;
    if not_shown > 0 {
        let _ = write!(
            out,
            "\n… {not_shown} more {} not shown to stay under GitHub's comment size limit; run `drover drift` for the full report.\n",
            noun(not_shown, "instance", "instances")
        );
    } else if details_cut {
        out.push_str(
            "\n… Further diffs are not shown to stay under GitHub's comment size limit; run `drover drift` for the full report.\n",
        );
    }
    out
}

/// A collapsed block with an instance's diffs and check output, or nothing.
fn details_block(instance: &InstanceDrift) -> String {
    let body: String = instance.findings.iter().map(finding_body).collect();
    if body.trim().is_empty() {
        return String::new();
    }
    let body: String = body.lines().take(150).fold(String::new(), |mut out, line| {
        out.push_str(line);
        out.push('\n');
        out
    });
    let fence = "`".repeat(longest_backtick_run(&body).max(2) + 1);
    format!(
        "\n<details><summary>≠ <code>{}</code></summary>\n\n{fence}diff\n{body}{fence}\n\n</details>\n",
        html_escape(&instance.id.to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::{FORMAT_VERSION, HostDrift, Summary};
    use crate::instance::InstanceId;
    use crate::model::workflow::DriftPolicy;
    use crate::state::Timestamp;

    fn report(drifted: usize) -> DriftReport {
        let instances: Vec<InstanceDrift> = (0..drifted)
            .map(|i| {
                let id = InstanceId::parse(&format!("web-{}/site/page-{i}", i % 10)).unwrap();
                InstanceDrift {
                    host: id.host.clone(),
                    id,
                    kind: "file".to_owned(),
                    policy: DriftPolicy::Warn,
                    status: Status::Drifted,
                    findings: vec![Finding::Content {
                        path: format!("/srv/www/page|{i}.html"),
                        diff: Some(format!("--- applied\n+++ on the host\n@@ -1 +1 @@\n-<p>{i}</p>\n+<p>defaced | {i}</p>\n")),
                        note: None,
                    }],
                    error: None,
                }
            })
            .collect();
        let mut instances = instances;
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        DriftReport {
            format_version: FORMAT_VERSION,
            checked_at: Timestamp(0),
            targets: Vec::new(),
            summary: Summary {
                probed: drifted + 5,
                drifted,
                in_sync: 5,
                ..Summary::default()
            },
            hosts: (0..10)
                .map(|h| HostDrift {
                    host: crate::model::meta::HostName::parse(&format!("web-{h}")).unwrap(),
                    round_trips: 1,
                    duration_ms: 20,
                    probed: drifted / 10,
                    drifted: drifted / 10,
                    unknown: 0,
                    error: None,
                })
                .collect(),
            instances,
        }
    }

    #[test]
    fn markdown_of_a_thousand_drifted_instances_fits_a_comment() {
        let text = markdown(&report(1000));
        assert!(text.len() < 65_535, "{} bytes", text.len());
        assert!(
            text.starts_with(
                "**Drift: 1000 of 1005 probed instances on 10 hosts differ (10 round trips).**"
            ),
            "{}",
            &text[..200]
        );
        assert!(text.contains("not shown to stay under GitHub's comment size limit"));
        assert!(
            text.contains("/srv/www/page\\|0.html"),
            "table cells escape `|`"
        );
    }

    #[test]
    fn markdown_of_a_small_report_shows_every_diff() {
        let text = markdown(&report(3));
        assert!(text.contains("<details><summary>≠ <code>web-0/site/page-0</code></summary>"));
        assert!(!text.contains("not shown"));
    }
}
