//! Architecture invariants, checked over the source tree (see docs/ARCHITECTURE.md).

use std::path::{Path, PathBuf};

use crate::harness::root;

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root().join("src"))
        .unwrap()
        .to_string_lossy()
        .replace('\\', "/")
}

/// The pure core: no I/O crates, no filesystem, network, processes, environment or clock.
const CORE: &[&str] = &[
    "source.rs",
    "account.rs",
    "diagnostic.rs",
    "model/",
    "load/",
    "secret.rs",
    "template.rs",
    "instance.rs",
    "resolve.rs",
    "hash.rs",
    "graph.rs",
    "report/",
    "state.rs",
    "run.rs",
    "plan/",
    "schedule.rs",
    "claim.rs",
    "backoff.rs",
    "drift/",
    "edit.rs",
    "facts.rs",
    "github/mod.rs",
    "github/sticky.rs",
];

#[test]
fn the_core_does_no_io() {
    let forbidden = [
        "tokio",
        "redb",
        "russh",
        "notify",
        "std::fs",
        "std::net",
        "std::process",
        "std::env",
        "SystemTime",
        "Instant::now",
        "println!",
        "eprintln!",
    ];
    for file in rust_files(&root().join("src")) {
        let name = relative(&file);
        if !CORE
            .iter()
            .any(|c| name == *c || (c.ends_with('/') && name.starts_with(c)))
        {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for word in forbidden {
            assert!(
                !text.contains(word),
                "src/{name} is in the pure core but mentions `{word}`"
            );
        }
    }
}

#[test]
fn every_source_file_starts_with_a_module_doc() {
    for file in rust_files(&root().join("src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("//!"),
            "src/{} must start with a `//!` comment saying what it does",
            relative(&file)
        );
    }
}

#[test]
fn no_debugging_leftovers_and_printing_only_in_output() {
    for file in rust_files(&root().join("src")) {
        let name = relative(&file);
        let text = std::fs::read_to_string(&file).unwrap();
        for word in ["dbg!(", "todo!(", "unimplemented!("] {
            assert!(!text.contains(word), "src/{name} contains `{word}`");
        }
        if name != "cli/output.rs" {
            for word in ["println!", "eprintln!", "print!(", "eprint!("] {
                assert!(
                    !text.contains(word),
                    "src/{name} prints; only cli/output.rs may"
                );
            }
        }
    }
}

#[test]
fn architecture_doc_names_every_module() {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    for file in rust_files(&root().join("src")) {
        let name = relative(&file);
        let stem = match file.file_stem().unwrap().to_str().unwrap() {
            "mod" => file
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned(),
            "main" | "lib" => continue,
            other => other.to_owned(),
        };
        assert!(
            doc.contains(&stem),
            "docs/ARCHITECTURE.md never mentions src/{name}"
        );
    }
}
