//! The invalid-manifest corpus: every directory under `tests/corpus/` is one case.
//!
//! A case holds the manifests (and any files they name) plus `expected.txt`: the exit code
//! and the full stderr of `drover validate --require-secrets --color never <case>`, run
//! from `tests/corpus`
//! so paths in messages are short. Add a case by creating its directory and running
//! `UPDATE_EXPECT=1 cargo test --test it corpus`; then read the new `expected.txt` as a
//! user would: it must point at the exact place and say what to do.

use std::fmt::Write as _;

use crate::harness::{Drover, assert_matches_file, root};

#[test]
fn every_invalid_manifest_gets_a_located_actionable_error() {
    let corpus = root().join("tests/corpus");
    let mut cases: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 40,
        "the corpus should hold at least 40 cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let run = Drover::new()
            .current_dir(&corpus)
            .args(["validate", "--require-secrets", "--color", "never", &name])
            .env("DROVER_CORPUS_SECRET", "s3cr3t-value")
            .run();
        let mut actual = format!("exit: {}\n", run.code());
        if !run.stdout().is_empty() {
            let _ = write!(actual, "--- stdout\n{}", run.stdout());
        }
        let _ = write!(actual, "--- stderr\n{}", run.stderr());
        let result =
            std::panic::catch_unwind(|| assert_matches_file(&case.join("expected.txt"), &actual));
        if result.is_err() {
            failures.push(name.clone());
        }
        // Every case must fail: the corpus is about invalid input.
        if run.code() != 1 && !name.starts_with("warning_") {
            failures.push(format!(
                "{name} (exit {} but invalid input must exit 1)",
                run.code()
            ));
        }
        assert!(
            !actual.contains("s3cr3t-value"),
            "{name}: a secret value leaked into the output"
        );
        assert!(!actual.contains("panicked"), "{name}: drover panicked");
    }
    assert!(
        failures.is_empty(),
        "corpus cases out of date or wrong: {failures:?}"
    );
}
