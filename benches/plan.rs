//! `drover plan` over a large recorded fleet, timed from process start to exit.
//!
//! Setup (not timed): the fleet of `benches/load.rs` at 1,000 hosts × 50 tasks = 50,000
//! instances is written to a temporary directory, resolved, and every instance recorded
//! as applied in a real state file, as a successful `drover apply` leaves it.
//!
//! * `plan_noop/50000`: the release `drover plan DIR` process when nothing changed:
//!   reading 30 manifest files, validation, resolution, reading 50,000 records, planning.
//! * `plan_one_workflow_edited/50000`: the same after editing one workflow file (one
//!   template of `app-3`), which changes 100 instances and triggers 100 more.
//!
//! Run it with `cargo bench --bench plan`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    clippy::print_stderr,
    reason = "a benchmark that runs the binary and reports what it measured"
)]

#[path = "common/fleet.rs"]
mod fleet;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use drover::evaluate::evaluate;
use drover::load::Limits;
use drover::state::{Outcome, Timestamp, detail_of};
use drover::store::{InstanceWrite, Store};

const HOSTS: usize = 1_000;

/// Writes the fleet to `dir` and records it as applied.
fn prepare(dir: &Path) {
    for file in fleet::fleet(HOSTS) {
        let path = dir.join(&file.path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, file.text.as_bytes()).unwrap();
    }
    let evaluation = evaluate(dir, &Limits::default()).unwrap();
    let resolved = evaluation.resolved.unwrap();
    assert_eq!(resolved.instances.len(), HOSTS * 50);
    let store = Store::at(dir.join(".drover/state.redb"));
    // An apply commits each instance on its own; setup only needs the end state, so it
    // records everything in one transaction.
    let details: Vec<_> = resolved
        .instances
        .iter()
        .map(|i| detail_of(i, &resolved.redactor))
        .collect();
    let writes: Vec<InstanceWrite<'_>> = resolved
        .instances
        .iter()
        .zip(&details)
        .map(|(instance, detail)| InstanceWrite {
            id: &instance.id,
            spec_hash: instance.spec_hash,
            outcome: Outcome::Succeeded,
            finished_at: Timestamp(0),
            duration_ms: 1,
            run: None,
            detail: Some(detail),
            fires: &[],
        })
        .collect();
    store.record_all(&writes).unwrap();
}

fn plan(dir: &Path) -> std::process::Output {
    let output = Command::new(env!("CARGO_BIN_EXE_drover"))
        .arg("plan")
        .arg("--color")
        .arg("never")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let mut group = c.benchmark_group("plan_noop");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    assert!(String::from_utf8_lossy(&plan(dir.path()).stdout).contains("No changes"));
    group.bench_function("50000", |b| b.iter(|| plan(dir.path())));
    group.finish();

    let workflow = dir.path().join("workflows/app-3.yaml");
    let text = std::fs::read_to_string(&workflow).unwrap();
    std::fs::write(
        &workflow,
        text.replacen("{{ host.name }}", "{{ host.name }} (edited)", 1),
    )
    .unwrap();
    let out = String::from_utf8_lossy(&plan(dir.path()).stdout).into_owned();
    let summary = out
        .lines()
        .rev()
        .find(|l| l.starts_with("Plan:"))
        .unwrap_or_default()
        .to_owned();
    eprintln!("after the edit: {summary}");
    let mut group = c.benchmark_group("plan_one_workflow_edited");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group.bench_function("50000", |b| b.iter(|| plan(dir.path())));
    group.finish();
}

criterion_group!(plan_benches, benches);
criterion_main!(plan_benches);
