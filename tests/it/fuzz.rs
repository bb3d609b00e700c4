//! Fuzzing, as ordinary tests: mutated manifests through the loader and resolver, and mutated
//! state files through every store reader, for `DROVER_FUZZ_SECS` seconds each (60 by
//! default, both at once), without a panic. Mutations come from a seeded generator, so a
//! failure prints the seed and iteration that reproduce it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use drover::source::SourceFile;
use drover::store::Store;

fn budget() -> Duration {
    let secs = std::env::var("DROVER_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// xorshift64*: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap()
    }
}

/// One random edit: flip, insert, delete, duplicate a slice, or splice in YAML-significant
/// text.
fn mutate(bytes: &mut Vec<u8>, rng: &mut Rng) {
    const TOKENS: &[&[u8]] = &[
        b"{{",
        b"}}",
        b"&a ",
        b"*a",
        b"- ",
        b": ",
        b"\n  ",
        b"\t",
        b"'",
        b"\"",
        b"---\n",
        b"[",
        b"]",
        b"{",
        b"}",
        b"!!str ",
        b"<<: *a\n",
        b"\0",
        b"\xff",
        b"{% for i in range(99) %}",
        b"needs: [",
        b"triggeredBy: [",
        b"0644",
        b"~",
        b"null",
        b"|\n",
        b">-\n",
    ];
    let at = rng.below(bytes.len() + 1);
    match rng.below(5) {
        0 if !bytes.is_empty() => {
            let i = at.min(bytes.len() - 1);
            bytes[i] ^= 1 << rng.below(8);
        }
        1 => {
            let token = TOKENS[rng.below(TOKENS.len())];
            bytes.splice(at..at, token.iter().copied());
        }
        2 if !bytes.is_empty() => {
            let end = (at + rng.below(16)).min(bytes.len());
            bytes.drain(at.min(end)..end);
        }
        3 if !bytes.is_empty() => {
            let start = rng.below(bytes.len());
            let end = (start + rng.below(64)).min(bytes.len());
            let piece: Vec<u8> = bytes[start..end].to_vec();
            bytes.splice(at..at, piece);
        }
        _ => {
            const PUNCTUATION: &[u8] = b"\n- :{}[]#&*!|>'\"%@`";
            bytes.insert(at, PUNCTUATION[rng.below(PUNCTUATION.len())]);
        }
    }
}

/// Every manifest under `tests/corpus` and `manifests/`, as seeds.
fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for root in ["tests/corpus", "manifests"] {
        let mut stack = vec![crate::harness::root().join(root)];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().filter_map(Result::ok) {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    out.push((
                        path.file_name().unwrap().to_string_lossy().into_owned(),
                        std::fs::read(&path).unwrap(),
                    ));
                }
            }
        }
    }
    out.sort();
    out
}

fn fuzz_loader(budget: Duration, seed: u64) -> usize {
    let seeds = seeds();
    let mut rng = Rng(seed);
    let limits = drover::load::Limits::default();
    let start = Instant::now();
    let mut runs = 0;
    while start.elapsed() < budget {
        let (name, text) = &seeds[rng.below(seeds.len())];
        let mut bytes = text.clone();
        for _ in 0..=rng.below(8) {
            mutate(&mut bytes, &mut rng);
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let files = vec![Arc::new(SourceFile::new(name.clone(), text.clone()))];
        let outcome = std::panic::catch_unwind(|| {
            let loaded = drover::load::load(&files, &limits);
            // What did load is resolved as `validate` does, also when there were errors.
            if let Some(desired) = loaded.desired.as_ref().or(loaded.partial.as_ref()) {
                let needed = drover::resolve::needed(desired);
                let inputs = drover::resolve::Inputs {
                    files: needed
                        .files
                        .iter()
                        .map(|f| (f.clone(), Ok(Arc::from(&b"fuzz {{ x }}\n"[..]))))
                        .collect(),
                    secrets: std::collections::BTreeMap::default(),
                    stand_in_missing_secrets: true,
                    facts: std::collections::BTreeMap::default(),
                };
                let _ = drover::resolve::resolve(desired, &inputs);
            }
        });
        assert!(
            outcome.is_ok(),
            "the loader panicked (seed {seed:#x}, run {runs}) on:\n{text}"
        );
        runs += 1;
    }
    runs
}

fn fuzz_state_file(budget: Duration, seed: u64) -> usize {
    // A real state file with runs, reports, details, triggers.
    let manifests = tempfile::tempdir().unwrap();
    let area = tempfile::tempdir().unwrap();
    crate::harness::write_fixture(
        manifests.path(),
        &format!(
            "//- m.yaml\napiVersion: drover/v1\nkind: Host\nmetadata: {{name: box}}\nspec: {{transport: local}}\n---\napiVersion: drover/v1\nkind: Workflow\nmetadata: {{name: app}}\nspec:\n  hosts: {{names: [box]}}\n  tasks:\n    - {{name: conf, file: {{path: {0}/c, content: \"x\"}}}}\n    - {{name: reload, triggeredBy: [conf], run: \"true\", undo: \"true\"}}\n    - {{name: note, needs: [conf], run: \"echo {{{{ 1 }}}}\", check: \"true\"}}\n",
            area.path().display()
        ),
    );
    for _ in 0..2 {
        crate::harness::Drover::new()
            .args(["apply", "--auto-approve", "--force"])
            .arg_path(manifests.path())
            .run()
            .expect_code(0);
    }
    let good = std::fs::read(manifests.path().join(".drover/state.redb")).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("state.redb");
    let mut rng = Rng(seed);
    let start = Instant::now();
    let mut runs = 0;
    while start.elapsed() < budget {
        let mut bytes = good.clone();
        for _ in 0..=rng.below(6) {
            let at = rng.below(bytes.len());
            match rng.below(3) {
                0 => bytes[at] ^= 1 << rng.below(8),
                1 => {
                    let end = (at + 1 + rng.below(4096)).min(bytes.len());
                    bytes[at..end].fill(0);
                }
                _ => {
                    let end = (at + 1 + rng.below(256)).min(bytes.len());
                    for b in &mut bytes[at..end] {
                        *b = u8::try_from(rng.next() & 0xff).unwrap();
                    }
                }
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        let store = Store::at(&path);
        let outcome = std::panic::catch_unwind(|| {
            let recorded = store.snapshot();
            let _ = store.runs();
            let _ = store.run(drover::state::RunId(1));
            let _ = store.report(drover::state::RunId(2));
            if let Ok(recorded) = recorded {
                let _ = store.details(recorded.instances.keys());
            }
        });
        assert!(
            outcome.is_ok(),
            "a store reader panicked (seed {seed:#x}, run {runs})"
        );
        runs += 1;
    }
    runs
}

/// Both fuzzers at once, so the suite pays one budget of wall time.
#[test]
fn the_loader_and_the_state_file_readers_never_panic_on_mutated_input() {
    // Panics the store catches (a damaged file) are errors, not noise on stderr.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !drover::store::in_guarded_call() {
            default(info);
        }
    }));
    let budget = budget();
    let loader = std::thread::spawn(move || fuzz_loader(budget, 0x00d1_5ea5e));
    let state = std::thread::spawn(move || fuzz_state_file(budget, 0x57a7e));
    let loader_runs = loader.join().unwrap();
    let state_runs = state.join().unwrap();
    println!(
        "fuzzed for {budget:?}: {loader_runs} mutated manifests, {state_runs} mutated state files"
    );
    assert!(loader_runs > 0 && state_runs > 0);
}
