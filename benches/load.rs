//! How long drover takes to turn a manifest directory into hashed task instances.
//!
//! The fleet is generated in memory (no disk I/O is measured), laid out as a real
//! directory would be: hosts spread over 10 files under `hosts/`, one file per workflow
//! under `workflows/`. Each size is `H` hosts and 20 workflows of 25 tasks:
//!
//! * hosts carry labels `group: g{i % 10}`, `site`, `role`, an SSH address, user, `become`
//!   and a few vars (`port` overrides the workflow's, `datacenter`);
//! * workflows come in 10 pairs, `base-p` and `app-p`, both selecting `group: g{p}`; `app-p`
//!   `needs` `base-p`, so every host runs 2 workflows × 25 tasks = **50 tasks per host**
//!   and the fleet expands to `H × 50` task instances;
//! * tasks cycle through five kinds: a file with a ~15-line template (`{{ host.name }}`,
//!   `{{ port }}`, labels, a `{% for %}` loop), a `run` string with a `check`, a `run`
//!   argv list, a `package`, and a `service` that is `triggeredBy` the file four steps
//!   back; every task but the first `needs` the previous one (some need two).
//!
//! Sizes: 200, 1,000 and 2,000 hosts, i.e. 10k, 50k (the headline case: 1,000 hosts ×
//! 50 tasks) and 100k instances.
//!
//! Groups:
//! * `load_resolve/N`: the whole pipeline the CLI runs before planning: `load` (YAML
//!   parsing, schema validation, decoding, cross-document checks), `needed`, then
//!   `resolve` (host selection, template rendering, blake3 spec hashes), and dropping it all.
//! * `load_only/N` and `resolve_only/N`: the two halves apart, to see where time goes.
//!
//! Run it with `cargo bench --bench load` (about 45 s on two cores, after the build), or
//! one group with e.g. `cargo bench --bench load -- load_resolve/50000`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark"
)]

#[path = "common/fleet.rs"]
mod fleet;

use std::hint::black_box;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use drover::diagnostic::Diagnostic;
use drover::load::{Limits, load};
use drover::model::desired::Desired;
use drover::resolve::{Inputs, Resolved, needed, resolve};
use drover::source::SourceFile;
use fleet::{TASKS, fleet};

/// Host counts: 10k, 50k and 100k instances.
const SIZES: [usize; 3] = [200, 1_000, 2_000];

fn load_desired(files: &[Arc<SourceFile>]) -> Desired {
    let loaded = load(files, &Limits::default());
    loaded.desired.expect("the generated fleet loads")
}

fn load_and_resolve(files: &[Arc<SourceFile>]) -> Resolved {
    let desired = load_desired(files);
    let needed = needed(&desired);
    assert!(needed.files.is_empty() && needed.secrets.is_empty());
    resolve(&desired, &Inputs::default())
}

/// Checks the fleet once, outside the timed loops: no error, the expected instance count.
fn sanity(hosts: usize, files: &[Arc<SourceFile>]) {
    let loaded = load(files, &Limits::default());
    let errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.is_error()).collect();
    assert!(
        errors.is_empty(),
        "the generated fleet has errors: {errors:#?}"
    );
    assert!(
        loaded.diagnostics.is_empty(),
        "the generated fleet has warnings: {:#?}",
        loaded.diagnostics
    );
    let desired = loaded.desired.unwrap();
    let resolved = resolve(&desired, &Inputs::default());
    assert!(
        !resolved.diagnostics.iter().any(Diagnostic::is_error),
        "resolve failed: {:#?}",
        resolved.diagnostics
    );
    assert_eq!(resolved.instances.len(), hosts * 2 * TASKS);
    assert_eq!(desired.instance_count(), hosts * 2 * TASKS);
}

fn measurement_time(instances: usize) -> Duration {
    // About 4 µs per instance: ten flat samples of one iteration fit with room to spare.
    Duration::from_millis(1_000 + u64::try_from(instances).unwrap() / 20)
}

/// One size of fleet. The check and the pre-loaded `Desired` are computed on first use, so
/// a filtered run (`-- load_resolve/50000`) does only the work of the benchmarks it selects.
struct Fleet {
    hosts: usize,
    instances: usize,
    files: Vec<Arc<SourceFile>>,
    checked: OnceLock<()>,
    desired: OnceLock<Desired>,
}

impl Fleet {
    fn new(hosts: usize) -> Fleet {
        let files = fleet(hosts);
        Fleet {
            hosts,
            instances: hosts * 2 * TASKS,
            files,
            checked: OnceLock::new(),
            desired: OnceLock::new(),
        }
    }

    fn checked_files(&self) -> &[Arc<SourceFile>] {
        self.checked.get_or_init(|| sanity(self.hosts, &self.files));
        &self.files
    }

    fn desired(&self) -> &Desired {
        self.desired
            .get_or_init(|| load_desired(self.checked_files()))
    }
}

fn benches(c: &mut Criterion) {
    let fleets: Vec<Fleet> = SIZES.iter().map(|&hosts| Fleet::new(hosts)).collect();

    // `share` scales the measurement time to the part of the pipeline a group times.
    for (name, share) in [("load_resolve", 1), ("load_only", 4), ("resolve_only", 1)] {
        let mut group = c.benchmark_group(name);
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .sampling_mode(SamplingMode::Flat);
        for fleet in &fleets {
            group.throughput(Throughput::Elements(fleet.instances as u64));
            group.measurement_time(measurement_time(fleet.instances) / share);
            group.bench_function(
                BenchmarkId::from_parameter(fleet.instances),
                |b| match name {
                    "load_resolve" => {
                        let files = fleet.checked_files();
                        b.iter(|| load_and_resolve(black_box(files)));
                    }
                    "load_only" => {
                        let files = fleet.checked_files();
                        b.iter(|| load_desired(black_box(files)));
                    }
                    _ => {
                        let desired = fleet.desired();
                        b.iter(|| resolve(black_box(desired), &Inputs::default()));
                    }
                },
            );
        }
        group.finish();
    }
}

criterion_group!(load_benches, benches);
criterion_main!(load_benches);
