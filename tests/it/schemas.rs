//! The JSON Schemas in `schemas/` are exactly what the model types generate.
//! `UPDATE_EXPECT=1 cargo test --test it schemas` (or `drover schema --write schemas`)
//! regenerates them.

use drover::cli::cmd::schema::render;
use drover::load::schema;

use crate::harness::{Drover, assert_matches_file, root};

#[test]
fn checked_in_schemas_are_fresh() {
    for named in schema::all() {
        assert_matches_file(
            &root().join("schemas").join(named.file_name),
            &render(&named.schema),
        );
    }
}

#[test]
fn example_manifests_point_editors_at_the_schemas() {
    for example in ["manifests/demo", "manifests/site"] {
        for entry in std::fs::read_dir(root().join(example)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).unwrap();
                let first = text.lines().next().unwrap_or_default();
                assert!(
                    first.starts_with("# yaml-language-server: $schema=../../schemas/"),
                    "{}",
                    path.display()
                );
                let target = first.rsplit('=').next().unwrap();
                assert!(
                    path.parent().unwrap().join(target).exists(),
                    "{} names a missing schema",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn schema_command_prints_the_document_schema() {
    let run = Drover::new().args(["schema"]).run().expect_code(0);
    let value: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(value["title"], "drover manifest document");
    assert_eq!(
        value["$id"],
        "https://drover.dev/schemas/v1/document.schema.json"
    );
}
