//! Planner tests: fixture manifests → resolved instances; recorded states built from them.

use std::fmt::Write as _;

use expect_test::{Expect, expect};
use proptest::prelude::*;

use super::*;
use crate::resolve::{Inputs, resolve};
use crate::state::{DriftFinding, PendingTrigger, RecordedInstance, RunId, Timestamp};

const SITE: &str = r#"
apiVersion: drover/v1
kind: Host
metadata: {name: web-1, labels: {role: web}}
spec: {address: 10.0.0.1}
---
apiVersion: drover/v1
kind: Host
metadata: {name: web-2, labels: {role: web}}
spec: {address: 10.0.0.2}
---
apiVersion: drover/v1
kind: Workflow
metadata: {name: nginx}
spec:
  hosts: {matchLabels: {role: web}}
  vars: {port: 80}
  tasks:
    - {name: install, package: {names: [nginx]}}
    - {name: config, needs: [install], file: {path: /etc/nginx.conf, content: "listen {{ port }};\n"}}
    - {name: service, needs: [config], service: {name: nginx, state: running}}
    - {name: reload, triggeredBy: [config], needs: [service], service: {name: nginx, onTrigger: reload}}
    - {name: smoke, needs: [reload], run: "curl -fsS localhost", drift: ignore}
"#;

fn resolved(text: &str) -> Vec<ResolvedInstance> {
    let desired = crate::load::desired_of(text);
    let out = resolve(&desired, &Inputs::default());
    assert!(out.diagnostics.is_empty(), "{:#?}", out.diagnostics);
    out.instances
}

/// The record a successful apply of `instances` leaves.
fn applied(instances: &[ResolvedInstance]) -> Recorded {
    let mut recorded = Recorded::default();
    for i in instances {
        recorded.instances.insert(
            i.id.clone(),
            RecordedInstance {
                spec_hash: i.spec_hash,
                outcome: Outcome::Succeeded,
                finished_at: Timestamp(0),
                duration_ms: 1,
                run: Some(RunId(1)),
            },
        );
    }
    recorded
}

fn id(text: &str) -> InstanceId {
    InstanceId::parse(text).unwrap()
}

fn check(
    desired: &[ResolvedInstance],
    recorded: &Recorded,
    options: &PlanOptions,
    expect: &Expect,
) {
    let plan = plan(desired, recorded, options);
    let mut out = String::new();
    for c in &plan.changes {
        let reasons: Vec<String> = c.reasons.iter().map(Reason::describe).collect();
        let _ = writeln!(out, "{} {} ({})", c.kind.symbol(), c.id, reasons.join("; "));
    }
    let _ = writeln!(out, "unchanged: {}", plan.unchanged);
    if plan.outside_targets > 0 {
        let _ = writeln!(out, "outside targets: {}", plan.outside_targets);
    }
    if !plan.unmatched.is_empty() {
        let _ = writeln!(out, "unmatched: {:?}", plan.unmatched);
    }
    expect.assert_eq(&out);
}

#[test]
fn first_plan_creates_everything_in_dependency_order() {
    let desired = resolved(SITE);
    check(
        &desired,
        &Recorded::default(),
        &PlanOptions::default(),
        &expect![[r#"
            + web-1/nginx/install (new)
            + web-1/nginx/config (new)
            + web-1/nginx/service (new)
            + web-1/nginx/reload (new; triggered by nginx/config; runs only if nginx/config changes)
            + web-1/nginx/smoke (new)
            + web-2/nginx/install (new)
            + web-2/nginx/config (new)
            + web-2/nginx/service (new)
            + web-2/nginx/reload (new; triggered by nginx/config; runs only if nginx/config changes)
            + web-2/nginx/smoke (new)
            unchanged: 0
        "#]],
    );
}

#[test]
fn nothing_changed_means_an_empty_plan() {
    let desired = resolved(SITE);
    let recorded = applied(&desired);
    let plan = plan(&desired, &recorded, &PlanOptions::default());
    assert!(plan.is_empty());
    assert_eq!(plan.unchanged, 10);
}

#[test]
fn an_edited_template_updates_only_its_instances_and_triggers_the_reload() {
    let before = resolved(SITE);
    let after = resolved(&SITE.replace("port: 80", "port: 8080"));
    check(
        &after,
        &applied(&before),
        &PlanOptions::default(),
        &expect![[r#"
            ~ web-1/nginx/config (spec changed (09c3fad01159 → 319af49bf2e9))
            ! web-1/nginx/reload (triggered by nginx/config)
            ~ web-2/nginx/config (spec changed (6cbd658d943e → c69226bf7223))
            ! web-2/nginx/reload (triggered by nginx/config)
            unchanged: 6
        "#]],
    );
}

#[test]
fn failed_instances_are_retried_and_pending_triggers_survive() {
    let desired = resolved(SITE);
    let mut recorded = applied(&desired);
    // The last apply changed the config, then failed before the reload ran.
    if let Some(r) = recorded.instances.get_mut(&id("web-1/nginx/service")) {
        r.outcome = Outcome::Failed;
    }
    recorded.pending_triggers.insert(
        id("web-1/nginx/reload"),
        PendingTrigger {
            sources: [id("web-1/nginx/config")].into(),
            since: RunId(7),
        },
    );
    check(
        &desired,
        &recorded,
        &PlanOptions::default(),
        &expect![[r"
        ~ web-1/nginx/service (last attempt failed)
        ! web-1/nginx/reload (trigger pending since run 7 from nginx/config)
        unchanged: 8
    "]],
    );
}

#[test]
fn drift_findings_replan_unless_ignored() {
    let desired = resolved(SITE);
    let mut recorded = applied(&desired);
    let found = DriftFinding {
        summary: "content differs".to_owned(),
        found_at: Timestamp(0),
    };
    recorded
        .drift
        .insert(id("web-2/nginx/config"), found.clone());
    recorded.drift.insert(id("web-2/nginx/smoke"), found);
    check(
        &desired,
        &recorded,
        &PlanOptions::default(),
        &expect![[r"
        ≠ web-2/nginx/config (drifted: content differs)
        ! web-2/nginx/reload (triggered by nginx/config)
        unchanged: 8
    "]],
    );
}

#[test]
fn the_daemon_repairs_only_fix_on_its_own() {
    let desired = resolved(SITE);
    let mut recorded = applied(&desired);
    let found = DriftFinding {
        summary: "content differs".to_owned(),
        found_at: Timestamp(0),
    };
    // `config` has the default policy, `warn`: reported, not repaired without a person.
    recorded.drift.insert(id("web-2/nginx/config"), found);
    let options = PlanOptions {
        repair: crate::plan::RepairDrift::FixOnly,
        ..PlanOptions::default()
    };
    check(
        &desired,
        &recorded,
        &options,
        &expect![[r"
        unchanged: 10
    "]],
    );
}

#[test]
fn removed_instances_come_first() {
    let before = resolved(SITE);
    let after = resolved(&SITE.replace(
        "    - {name: smoke, needs: [reload], run: \"curl -fsS localhost\", drift: ignore}\n",
        "",
    ));
    check(
        &after,
        &applied(&before),
        &PlanOptions::default(),
        &expect![[r"
        - web-1/nginx/smoke (no longer desired; no undo recorded, so it is only forgotten)
        - web-2/nginx/smoke (no longer desired; no undo recorded, so it is only forgotten)
        unchanged: 8
    "]],
    );
}

#[test]
fn targets_narrow_the_plan_and_keep_what_it_needs() {
    let desired = resolved(SITE);
    let options = PlanOptions {
        targets: vec![
            Target::parse("web-2/nginx/service").unwrap(),
            Target::parse("host=db-*").unwrap(),
        ],
        ..PlanOptions::default()
    };
    check(
        &desired,
        &Recorded::default(),
        &options,
        &expect![[r#"
        + web-2/nginx/install (new)
        + web-2/nginx/config (new)
        + web-2/nginx/service (new)
        unchanged: 0
        outside targets: 7
        unmatched: ["host=db-*"]
    "#]],
    );
}

#[test]
fn replace_and_force_rerun_unchanged_instances() {
    let desired = resolved(SITE);
    let recorded = applied(&desired);
    let options = PlanOptions {
        replace: vec![Target::parse("web-1/nginx/config").unwrap()],
        ..PlanOptions::default()
    };
    check(
        &desired,
        &recorded,
        &options,
        &expect![[r"
        ± web-1/nginx/config (replacement requested)
        ! web-1/nginx/reload (triggered by nginx/config)
        unchanged: 8
    "]],
    );
    let forced = plan(
        &desired,
        &recorded,
        &PlanOptions {
            force: true,
            ..PlanOptions::default()
        },
    );
    assert_eq!(forced.changes.len(), 10);
}

#[test]
fn saved_plans_go_stale_only_where_inputs_changed() {
    let before = resolved(SITE);
    let recorded = Recorded::default();
    let saved = plan(&before, &recorded, &PlanOptions::default());
    // Another workflow's edit on web-2 and nothing else: web-1 stays applicable.
    let after = resolved(&SITE.replace("port: 80", "port: 81"));
    let stale = saved::stale(&saved, &after, &recorded);
    let ids: Vec<String> = stale
        .iter()
        .map(|s| format!("{} ({})", s.id, s.why))
        .collect();
    assert_eq!(
        ids,
        [
            "web-1/nginx/config (its manifests changed)",
            "web-2/nginx/config (its manifests changed)"
        ]
    );
    // An apply recorded web-1/nginx/install meanwhile.
    let mut recorded = Recorded::default();
    recorded.instances.insert(
        id("web-1/nginx/install"),
        applied(&before).instances[&id("web-1/nginx/install")],
    );
    let stale = saved::stale(&saved, &before, &recorded);
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].id, id("web-1/nginx/install"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random record states: the plan never lists an unchanged instance, respects `needs`,
    /// and is the same every time.
    #[test]
    fn plans_are_minimal_ordered_and_deterministic(states in proptest::collection::vec(0u8..5, 10)) {
        let desired = resolved(SITE);
        let mut recorded = Recorded::default();
        for (instance, state) in desired.iter().zip(&states) {
            let mut hash = instance.spec_hash;
            let outcome = match state {
                0 => continue,
                1 => Outcome::Succeeded,
                2 => { hash = crate::hash::SpecHash::of(&"old"); Outcome::Succeeded }
                3 => Outcome::Failed,
                _ => Outcome::Interrupted,
            };
            recorded.instances.insert(instance.id.clone(), RecordedInstance { spec_hash: hash, outcome, finished_at: Timestamp(0), duration_ms: 0, run: None });
        }
        let first = plan(&desired, &recorded, &PlanOptions::default());
        prop_assert_eq!(&first, &plan(&desired, &recorded, &PlanOptions::default()));
        let order: BTreeMap<&InstanceId, usize> = first.changes.iter().enumerate().map(|(i, c)| (&c.id, i)).collect();
        for change in &first.changes {
            let instance = desired.iter().find(|d| d.id == change.id).unwrap();
            let record = recorded.instances.get(&instance.id);
            let unchanged = record.is_some_and(|r| r.spec_hash == instance.spec_hash && r.outcome == Outcome::Succeeded);
            if unchanged {
                prop_assert_eq!(change.kind, ChangeKind::Trigger, "{} is unchanged but planned", change.id);
            }
            for dependency in instance.needs.iter().chain(&instance.triggered_by) {
                if let Some(&p) = order.get(dependency) {
                    prop_assert!(p < order[&change.id], "{} planned before {}", change.id, dependency);
                }
            }
        }
        // Applying the plan successfully leaves nothing to do.
        let done = applied(&desired);
        prop_assert!(plan(&desired, &done, &PlanOptions::default()).is_empty());
    }
}

/// Plans `text` (whose `pw` secret is not available) against a record of it applied with
/// `pw` set, and lists the plan as `symbol task`.
fn plan_without_secret(applied_text: &str, text: &str) -> Vec<String> {
    let with_secret = |text: &str, stand_in: bool| {
        let desired = crate::load::desired_of(text);
        let mut inputs = Inputs {
            stand_in_missing_secrets: stand_in,
            ..Inputs::default()
        };
        let key = crate::secret::SecretKey::Env("PW".to_owned());
        let value = if stand_in {
            Err(crate::resolve::Unreadable::Absent(
                "it is not set".to_owned(),
            ))
        } else {
            Ok(crate::secret::Secret::new("hunter2".to_owned()))
        };
        inputs.secrets.insert(key, value);
        resolve(&desired, &inputs).instances
    };
    let recorded = applied(&with_secret(applied_text, false));
    let plan = plan(&with_secret(text, true), &recorded, &PlanOptions::default());
    plan.changes
        .iter()
        .map(|c| format!("{} {}", c.kind.symbol(), c.id.task))
        .collect()
}

const SECRET_SITE: &str = r#"
apiVersion: drover/v1
kind: Host
metadata: {name: box}
spec: {transport: local, vars: {pw: {valueFrom: {env: PW}}}}
---
apiVersion: drover/v1
kind: Workflow
metadata: {name: app}
spec:
  hosts: {names: [box]}
  tasks:
    - {name: c, triggeredBy: [b], run: "echo c"}
    - {name: b, triggeredBy: [a], run: "echo b"}
    - {name: a, file: {path: /etc/a, content: "{{ pw | length }}\n"}}
    - {name: config, file: {path: /etc/config, content: "VERSION\n"}}
    - {name: reload, triggeredBy: [config], run: "reload --password {{ pw }}"}
"#;

#[test]
fn what_needs_a_missing_secret_may_change_and_so_may_what_only_it_triggers() {
    let site = SECRET_SITE.replace("VERSION", "v1");
    // `a` uses the secret only through a filter; `c` is declared before what triggers it.
    assert_eq!(
        plan_without_secret(&site, &site),
        ["? a", "? b", "? c", "? reload"]
    );
    // A certain change triggers `reload`: it will run, even though its command is unknown.
    let edited = SECRET_SITE.replace("VERSION", "v2");
    assert_eq!(
        plan_without_secret(&site, &edited),
        ["? a", "? b", "? c", "~ config", "! reload"]
    );
}

#[test]
fn a_name_rendered_from_a_missing_secret_may_change_and_is_not_judged() {
    let site = r#"
apiVersion: drover/v1
kind: Host
metadata: {name: box}
spec: {transport: local, vars: {pw: {valueFrom: {env: PW}}}}
---
apiVersion: drover/v1
kind: Workflow
metadata: {name: app}
spec:
  hosts: {names: [box]}
  tasks:
    - {name: pkg, package: {names: ["tool-{{ pw }}"]}}
"#;
    assert_eq!(plan_without_secret(site, site), ["? pkg"]);
}
