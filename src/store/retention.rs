//! History pruning: keep the newest runs and the recent ones, drop the rest with their events.

use redb::{ReadableTable, WriteTransaction};

use crate::run::RunRecord;
use crate::state::Timestamp;
use crate::store::tables::{EVENTS, REPORTS, RUNS};
use crate::store::{Result, Store, decode, write_err};

/// How much history to keep. A run is pruned when it is beyond the newest `keep_runs`
/// or older than `max_age_ms`; the newest run and unfinished runs are always kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub keep_runs: usize,
    pub max_age_ms: i64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            keep_runs: 500,
            max_age_ms: 90 * 86_400_000,
        }
    }
}

/// Which of `runs` (newest first) to prune at `now`: pure, so it is tested without a file.
pub fn to_prune(runs: &[RunRecord], policy: Retention, now: Timestamp) -> Vec<u64> {
    runs.iter()
        .enumerate()
        .filter(|(i, run)| {
            *i > 0
                && run.status.is_terminal()
                && (*i >= policy.keep_runs || now.0 - run.started_at.0 > policy.max_age_ms)
        })
        .map(|(_, run)| run.id.0)
        .collect()
}

impl Store {
    /// Prunes history by `policy`; returns how many runs were removed.
    pub fn prune(&self, policy: Retention, now: Timestamp) -> Result<usize> {
        self.write(|tx| prune_in(tx, policy, now))
    }
}

/// Prunes history inside a write transaction (the end of an apply commits it with the
/// run's last record).
pub(crate) fn prune_in(tx: &WriteTransaction, policy: Retention, now: Timestamp) -> Result<usize> {
    let mut table = tx.open_table(RUNS).map_err(write_err)?;
    let mut runs: Vec<RunRecord> = Vec::new();
    for entry in table.iter().map_err(write_err)?.rev() {
        let (key, value) = entry.map_err(write_err)?;
        runs.push(decode(value.value(), &format!("run {}", key.value()))?);
    }
    let doomed = to_prune(&runs, policy, now);
    if doomed.is_empty() {
        return Ok(0);
    }
    let mut events = tx.open_table(EVENTS).map_err(write_err)?;
    let mut reports = tx.open_table(REPORTS).map_err(write_err)?;
    for run in &doomed {
        table.remove(*run).map_err(write_err)?;
        reports.remove(*run).map_err(write_err)?;
        let keys: Vec<(u64, u64)> = events
            .range((*run, 0)..(*run + 1, 0))
            .map_err(write_err)?
            .filter_map(|e| e.ok().map(|(k, _)| k.value()))
            .collect();
        for key in keys {
            events.remove(key).map_err(write_err)?;
        }
    }
    Ok(doomed.len())
}
