//! The JSON of the run history and of one run: what `history`/`show --format json` print and
//! what the daemon serves at `/runs` and `/runs/{id}`.

use serde_json::json;

use crate::report::apply::ApplyReport;
use crate::run::{Event, RunRecord};

/// `{"formatVersion": 1, "runs": [...]}`, newest first as given.
pub fn history_json(runs: &[RunRecord]) -> String {
    pretty(&json!({"formatVersion": 1, "runs": runs}))
}

/// One run: its record, its events and (when kept) its report.
pub fn run_json(record: &RunRecord, events: &[Event], report: Option<&ApplyReport>) -> String {
    match report {
        Some(report) => {
            pretty(&json!({"formatVersion": 1, "run": record, "events": events, "report": report}))
        }
        None => pretty(&json!({"formatVersion": 1, "run": record, "events": events})),
    }
}

fn pretty(value: &serde_json::Value) -> String {
    // A `Value` built from serialisable records always serialises.
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}
