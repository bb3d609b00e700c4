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

use std::fmt::Write as _;
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

/// Workflows in the fleet, in `base`/`app` pairs.
const WORKFLOWS: usize = 20;
/// Host groups: one per workflow pair.
const GROUPS: usize = WORKFLOWS / 2;
/// Tasks per workflow; each host runs two workflows.
const TASKS: usize = 25;
/// Files the hosts are spread over.
const HOST_FILES: usize = 10;
/// Host counts; instances are `hosts × 2 × TASKS`.
const SIZES: [usize; 3] = [200, 1_000, 2_000];

/// The fleet for `hosts` hosts, as manifest files.
fn fleet(hosts: usize) -> Vec<Arc<SourceFile>> {
    let mut files = Vec::new();
    let per_file = hosts.div_ceil(HOST_FILES);
    for (f, chunk) in (0..hosts).collect::<Vec<_>>().chunks(per_file).enumerate() {
        let mut text = String::from("# Generated fleet for the load benchmark.\n");
        for &i in chunk {
            host(&mut text, i);
        }
        files.push(Arc::new(SourceFile::new(
            format!("hosts/rack-{f:02}.yaml"),
            text,
        )));
    }
    for w in 0..WORKFLOWS {
        let (name, text) = workflow(w);
        files.push(Arc::new(SourceFile::new(
            format!("workflows/{name}.yaml"),
            text,
        )));
    }
    files
}

fn host(out: &mut String, i: usize) {
    let role = if i.is_multiple_of(3) { "db" } else { "web" };
    write!(
        out,
        "---
apiVersion: drover/v1
kind: Host
metadata:
  name: node-{i:05}
  labels: {{group: g{group}, site: s{site}, role: {role}}}
spec:
  address: 10.{a}.{b}.{c}
  port: 22
  user: deploy
  become: root
  vars:
    port: {port}
    datacenter: dc-{site}
",
        group = i % GROUPS,
        site = i % 4,
        a = i / 65_536,
        b = (i / 256) % 256,
        c = i % 256,
        port = 8000 + i % 100,
    )
    .unwrap();
}

fn workflow_name(w: usize) -> String {
    let stage = if w.is_multiple_of(2) { "base" } else { "app" };
    format!("{stage}-{}", w / 2)
}

fn task_name(j: usize) -> String {
    format!("step-{j:02}")
}

/// One workflow document: its name and text.
fn workflow(w: usize) -> (String, String) {
    let name = workflow_name(w);
    let needs = if w % 2 == 1 {
        format!("\n  needs: [{}]", workflow_name(w - 1))
    } else {
        String::new()
    };
    let mut text = format!(
        "# yaml-language-server: $schema=../schemas/workflow.schema.json
apiVersion: drover/v1
kind: Workflow
metadata:
  name: {name}
  labels: {{tier: t{tier}}}
spec:
  hosts: {{matchLabels: {{group: g{group}}}}}{needs}
  vars:
    app_name: app{w}
    port: 80
    worker_processes: 4
    upstreams: [alpha, beta, gamma]
  tasks:
",
        tier = w % 2,
        group = w / 2,
    );
    for j in 0..TASKS {
        task(&mut text, w, j);
    }
    (name, text)
}

fn task(out: &mut String, w: usize, j: usize) {
    let name = task_name(j);
    writeln!(out, "    - name: {name}").unwrap();
    match j {
        0 => {}
        2 | 7 | 12 | 17 | 22 => {
            writeln!(
                out,
                "      needs: [{}, {}]",
                task_name(j - 2),
                task_name(j - 1)
            )
            .unwrap();
        }
        _ => writeln!(out, "      needs: [{}]", task_name(j - 1)).unwrap(),
    }
    match j % 5 {
        0 => write!(
            out,
            r#"      file:
        path: /etc/{{{{ app_name }}}}/conf-{j:02}.conf
        mode: "0644"
        owner: root
        group: root
        content: |
          # Managed by drover ({{{{ workflow.name }}}}, step {j}); do not edit.
          [server]
          name = {{{{ host.name }}}}
          listen = 0.0.0.0:{{{{ port }}}}
          site = {{{{ host.labels.site }}}}
          datacenter = {{{{ datacenter }}}}
          workers = {{{{ worker_processes }}}}

          [upstreams]
          {{% for u in upstreams %}}
          {{{{ u }}}} = http://{{{{ u }}}}.{{{{ host.labels.site }}}}.internal:{{{{ port + loop.index }}}}
          {{% endfor %}}
          [logging]
          path = /var/log/{{{{ app_name }}}}/{j:02}.log
"#
        ),
        1 => write!(
            out,
            "      run: systemctl daemon-reload && logger -t drover {{{{ host.name | q }}}}-{j}
      check: test -e /var/lib/{{{{ app_name }}}}/stamp-{j}
      timeout: 30s
"
        ),
        2 => write!(
            out,
            r#"      run: ["/usr/local/bin/configure", "--port", "{{{{ port }}}}", "--host", "{{{{ host.name }}}}", "--step", "{j}"]
      retries: {{attempts: 3, backoff: 2s}}
"#
        ),
        3 => writeln!(
            out,
            r#"      package: {{names: ["{{{{ app_name }}}}-tools", "pkg-{w}-{j}"], state: present}}"#
        ),
        _ => write!(
            out,
            r#"      triggeredBy: [{trigger}]
      service: {{name: "{{{{ app_name }}}}-{j}", state: running, enabled: true}}
"#,
            trigger = task_name(j - 4),
        ),
    }
    .unwrap();
}

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
