//! Spec hashes: stable across YAML formatting and key order, sensitive to every semantic
//! edit, blind to what only steers execution.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use drover::load::{Limits, load};
use drover::resolve::{Inputs, resolve};
use drover::source::SourceFile;
use proptest::prelude::*;

/// Loads and resolves one manifest text; returns each instance's hash by id.
fn hashes(text: &str) -> BTreeMap<String, String> {
    let files = [Arc::new(SourceFile::new("m.yaml", text))];
    let loaded = load(&files, &Limits::default());
    let desired = loaded
        .desired
        .unwrap_or_else(|| panic!("invalid fixture: {:#?}\n{text}", loaded.diagnostics));
    let resolved = resolve(&desired, &Inputs::default());
    assert!(
        resolved.diagnostics.is_empty(),
        "{:#?}",
        resolved.diagnostics
    );
    resolved
        .instances
        .iter()
        .map(|i| (i.id.to_string(), i.spec_hash.to_hex()))
        .collect()
}

const HOST: &str = "apiVersion: drover/v1\nkind: Host\nmetadata: {name: web-1, labels: {role: web}}\nspec: {address: 10.0.0.5, user: deploy}\n";

/// A workflow with one file task, its fields written in the given order and style.
fn workflow(task_fields: &[(&str, &str)], flow: bool) -> String {
    let task = if flow {
        let inner: Vec<String> = task_fields
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        format!("    - {{{}}}\n", inner.join(", "))
    } else {
        let mut out = String::new();
        for (i, (k, v)) in task_fields.iter().enumerate() {
            out.push_str(if i == 0 { "    - " } else { "      " });
            let _ = writeln!(out, "{k}: {v}");
        }
        out
    };
    format!(
        "---\n# a comment\napiVersion: drover/v1\nkind: Workflow\nmetadata: {{name: app}}\nspec:\n  hosts: {{matchLabels: {{role: web}}}}\n  vars: {{port: 8080}}\n  tasks:\n{task}"
    )
}

fn base_fields() -> Vec<(&'static str, &'static str)> {
    vec![
        ("name", "conf"),
        (
            "file",
            r#"{path: /etc/app.conf, content: "listen {{ port }}\n", mode: "0644", owner: root}"#,
        ),
        ("timeout", "5m"),
    ]
}

fn hash_of(fields: &[(&str, &str)], flow: bool) -> String {
    hashes(&format!("{HOST}{}", workflow(fields, flow)))["web-1/app/conf"].clone()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn hash_is_stable_across_key_order_and_style(seed in any::<u64>(), flow in any::<bool>()) {
        let mut fields = base_fields();
        // A deterministic shuffle from the seed.
        let mut state = seed;
        for i in (1..fields.len()).rev() {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let j = usize::try_from(state >> 33).unwrap() % (i + 1);
            fields.swap(i, j);
        }
        prop_assert_eq!(hash_of(&fields, flow), hash_of(&base_fields(), false));
    }

    #[test]
    fn hash_changes_with_rendered_content(a in "[a-z ]{0,12}", b in "[a-z ]{0,12}") {
        let with = |c: &str| {
            let file = format!(r#"{{path: /etc/app.conf, content: "{c}"}}"#);
            hash_of(&[("name", "conf"), ("file", &file)], false)
        };
        prop_assert_eq!(a == b, with(&a) == with(&b));
    }
}

#[test]
fn every_semantic_edit_changes_the_hash() {
    let base = hashes(&format!("{HOST}{}", workflow(&base_fields(), false)));
    let edits: Vec<(&str, String)> = vec![
        (
            "content",
            format!(
                "{HOST}{}",
                workflow(&base_fields(), false).replace("listen", "bind")
            ),
        ),
        (
            "var",
            format!(
                "{HOST}{}",
                workflow(&base_fields(), false).replace("port: 8080", "port: 8081")
            ),
        ),
        (
            "host var",
            format!(
                "{}{}",
                HOST.replace("user: deploy}", "user: deploy, vars: {port: 9}}"),
                workflow(&base_fields(), false).replace("  vars: {port: 8080}\n", "")
            ),
        ),
        (
            "task var",
            format!(
                "{HOST}{}",
                workflow(&base_fields(), false).replace(
                    "    - name: conf\n",
                    "    - name: conf\n      vars: {port: 9}\n"
                )
            ),
        ),
        (
            "mode",
            format!(
                "{HOST}{}",
                workflow(&base_fields(), false).replace("0644", "0600")
            ),
        ),
        (
            "owner",
            format!(
                "{HOST}{}",
                workflow(&base_fields(), false).replace("owner: root", "owner: www")
            ),
        ),
        (
            "path",
            format!(
                "{HOST}{}",
                workflow(&base_fields(), false).replace("/etc/app.conf", "/etc/app2.conf")
            ),
        ),
        (
            "address",
            format!(
                "{}{}",
                HOST.replace("10.0.0.5", "10.0.0.6"),
                workflow(&base_fields(), false)
            ),
        ),
        (
            "user",
            format!(
                "{}{}",
                HOST.replace("deploy", "admin"),
                workflow(&base_fields(), false)
            ),
        ),
        (
            "port",
            format!(
                "{}{}",
                HOST.replace("user: deploy", "user: deploy, port: 2222"),
                workflow(&base_fields(), false)
            ),
        ),
        (
            "become",
            format!(
                "{}{}",
                HOST.replace("user: deploy", "user: deploy, become: root"),
                workflow(&base_fields(), false)
            ),
        ),
    ];
    for (what, text) in edits {
        assert_ne!(
            hashes(&text),
            base,
            "editing the {what} must change the hash"
        );
    }
}

#[test]
fn execution_settings_do_not_change_the_hash() {
    let base = hash_of(&base_fields(), false);
    let mut fields = base_fields();
    fields.push(("retries", "{attempts: 3}"));
    fields.push(("drift", "fix"));
    fields.push(("check", "test -f /etc/app.conf"));
    fields.push(("undo", "rm /etc/app.conf"));
    fields[2] = ("timeout", "10m");
    assert_eq!(hash_of(&fields, false), base);
}

#[test]
fn yaml_spellings_of_the_same_value_hash_alike() {
    let block = format!("{HOST}{}", workflow(&base_fields(), false));
    let quoted = block
        .replace("name: conf", "name: 'conf'")
        .replace("kind: Workflow", "kind: \"Workflow\"");
    let anchored = block.replace("vars: {port: 8080}", "vars: &v {port: 8080}");
    assert_eq!(hashes(&block), hashes(&quoted));
    assert_eq!(hashes(&block), hashes(&anchored));
}
