//! What the daemon is doing and has done, shared with the HTTP endpoints: the `/status`
//! document and the Prometheus metrics. The loop updates it from its own events.

use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::state::Timestamp;
use crate::watch::Event;

/// The `/status` document.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub format_version: u32,
    pub started_at: Timestamp,
    /// The first round has finished.
    pub ready: bool,
    /// "idle", or what the loop is busy with.
    pub activity: String,
    /// Digest of the manifests as last read, valid or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_revision: Option<String>,
    /// Digest of the last manifests that loaded without error: what is enforced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_good_revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_round: Option<RoundStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_drift_check: Option<DriftStatus>,
    /// Why the manifests as last read are not applied (empty when they are valid).
    pub errors: Vec<String>,
    /// Git mode: the commit the checkout holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<crate::run::Commit>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoundStatus {
    pub at: Timestamp,
    pub reason: String,
    /// `applied`, `applied with failures`, `no changes`, `invalid manifests` or `error`.
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<u64>,
    pub changed: usize,
    pub failed: usize,
    pub duration_ms: u64,
}

impl RoundStatus {
    /// A round that applied nothing (no changes, invalid manifests, an error).
    fn nothing_applied(at: Timestamp, reason: String, result: String) -> RoundStatus {
        RoundStatus {
            at,
            reason,
            result,
            run: None,
            changed: 0,
            failed: 0,
            duration_ms: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftStatus {
    pub at: Timestamp,
    pub probed: usize,
    pub drifted: usize,
    pub unknown: usize,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

/// The Prometheus metrics.
#[derive(Debug)]
struct Metrics {
    rounds: Family<ResultLabel, Counter>,
    round_seconds: Histogram,
    drifted: Gauge,
    last_success: Gauge,
    desired_errors: Gauge,
    failed_instances: Gauge,
    instances: Family<StateLabel, Gauge>,
    ssh_connections: Gauge,
}

/// The shared state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Live {
    status: Arc<Mutex<Status>>,
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
}

impl Live {
    pub fn new(started_at: Timestamp) -> Live {
        let metrics = Metrics {
            rounds: Family::default(),
            round_seconds: Histogram::new([
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            drifted: Gauge::default(),
            last_success: Gauge::default(),
            desired_errors: Gauge::default(),
            failed_instances: Gauge::default(),
            instances: Family::default(),
            ssh_connections: Gauge::default(),
        };
        let mut registry = Registry::with_prefix("drover");
        registry.register("rounds", "Rounds by result", metrics.rounds.clone());
        registry.register(
            "round_duration_seconds",
            "How long rounds took",
            metrics.round_seconds.clone(),
        );
        registry.register(
            "drifted_instances",
            "Instances the last drift check found drifted",
            metrics.drifted.clone(),
        );
        registry.register(
            "last_successful_round_timestamp_seconds",
            "When a round last ended without failures (Unix time)",
            metrics.last_success.clone(),
        );
        registry.register(
            "desired_state_errors",
            "Errors in the manifests as last read",
            metrics.desired_errors.clone(),
        );
        registry.register(
            "failed_instances",
            "Instances that failed in the last applied round",
            metrics.failed_instances.clone(),
        );
        registry.register(
            "instances",
            "Desired instances by state against the record: converged, drifted, failed, pending",
            metrics.instances.clone(),
        );
        registry.register(
            "ssh_connections_open",
            "SSH connections kept open for the next round",
            metrics.ssh_connections.clone(),
        );
        Live {
            status: Arc::new(Mutex::new(Status {
                format_version: 1,
                started_at,
                activity: "starting".to_owned(),
                ..Status::default()
            })),
            metrics: Arc::new(metrics),
            registry: Arc::new(registry),
        }
    }

    fn status_mut(&self) -> MutexGuard<'_, Status> {
        // A panic while holding the lock leaves plain data behind: keep serving it.
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn status(&self) -> Status {
        self.status_mut().clone()
    }

    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Sets the instances-by-state gauges (from `drover status`'s counts over all hosts).
    pub fn instances(&self, hosts: &[crate::report::status::HostStatus]) {
        let sum = |f: fn(&crate::report::status::HostStatus) -> usize| {
            i64::try_from(hosts.iter().map(f).sum::<usize>()).unwrap_or(i64::MAX)
        };
        for (state, count) in [
            ("converged", sum(|h| h.converged)),
            ("drifted", sum(|h| h.drifted)),
            ("failed", sum(|h| h.failed)),
            ("pending", sum(|h| h.pending)),
        ] {
            self.metrics
                .instances
                .get_or_create(&StateLabel {
                    state: state.to_owned(),
                })
                .set(count);
        }
    }

    pub fn ssh_connections(&self, open: usize) {
        self.metrics
            .ssh_connections
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    pub fn busy(&self, activity: &str) {
        activity.clone_into(&mut self.status_mut().activity);
    }

    pub fn revision(&self, desired: &str, valid: bool) {
        let mut status = self.status_mut();
        status.desired_revision = Some(desired.to_owned());
        if valid {
            status.last_good_revision = Some(desired.to_owned());
            status.errors.clear();
            self.metrics.desired_errors.set(0);
        }
    }

    /// Updates the document and the metrics from an event.
    pub fn record(&self, event: &Event, now: Timestamp) {
        let mut status = self.status_mut();
        match event {
            Event::Ready => status.ready = true,
            Event::Invalid { reason, errors, .. } => {
                status.errors.clone_from(errors);
                self.metrics
                    .desired_errors
                    .set(i64::try_from(errors.len()).unwrap_or(i64::MAX));
                status.last_round = Some(RoundStatus::nothing_applied(
                    now,
                    reason.as_str().to_owned(),
                    "invalid manifests".to_owned(),
                ));
                self.count("invalid");
            }
            Event::Converged { reason, .. } => {
                status.last_round = Some(RoundStatus::nothing_applied(
                    now,
                    reason.as_str().to_owned(),
                    "no changes".to_owned(),
                ));
                self.count("no_changes");
                self.metrics.last_success.set(now.0 / 1000);
            }
            Event::Applied {
                reason,
                run,
                changed,
                failed,
                duration,
                ..
            } => {
                let result = if *failed > 0 {
                    "applied with failures"
                } else {
                    "applied"
                };
                status.last_round = Some(RoundStatus {
                    at: now,
                    reason: reason.as_str().to_owned(),
                    result: result.to_owned(),
                    run: Some(*run),
                    changed: *changed,
                    failed: *failed,
                    duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                });
                self.metrics.round_seconds.observe(duration.as_secs_f64());
                self.metrics
                    .failed_instances
                    .set(i64::try_from(*failed).unwrap_or(i64::MAX));
                if *failed == 0 {
                    self.metrics.last_success.set(now.0 / 1000);
                    self.count("applied");
                } else {
                    self.count("failed");
                }
            }
            Event::DriftChecked {
                probed,
                drifted,
                unknown,
                ..
            } => {
                status.last_drift_check = Some(DriftStatus {
                    at: now,
                    probed: *probed,
                    drifted: *drifted,
                    unknown: *unknown,
                });
                self.metrics
                    .drifted
                    .set(i64::try_from(*drifted).unwrap_or(i64::MAX));
            }
            Event::Error { message } => {
                status.last_round = Some(RoundStatus::nothing_applied(
                    now,
                    String::new(),
                    format!("error: {message}"),
                ));
                self.count("error");
            }
            Event::Fetched { commit } => status.commit = Some(commit.clone()),
            Event::Watching { .. }
            | Event::Deferred { .. }
            | Event::Reloading
            | Event::Stopping => {}
        }
        "idle".clone_into(&mut status.activity);
    }

    fn count(&self, result: &str) {
        self.metrics
            .rounds
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
    }
}
