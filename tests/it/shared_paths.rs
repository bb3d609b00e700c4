//! Tasks of one host that manage the same path (decision 0021), over the local transport:
//! edits of one file take turns in manifest order and all land, run after run, whatever
//! `needs` leaves free; a failed edit skips none of the others; a task that writes the whole
//! file beside an edit of it is refused before anything runs.

use crate::harness::{Area, outcomes};

/// The report that found the bug: a seed, and four edits of its file that need only it.
const EDITS: &str = r#"    - name: seed
      run: {command: "printf 'a\\n' > {{ dir | q }}/f.conf", creates: "{{ dir }}/f.conf"}
    - {name: l1, needs: [seed], line: {path: "{{ dir }}/f.conf", line: "one=1"}}
    - {name: l2, needs: [seed], line: {path: "{{ dir }}/f.conf", line: "two=2"}}
    - {name: l3, needs: [seed], line: {path: "{{ dir }}/f.conf", line: "three=3"}}
    - {name: b1, needs: [seed], block: {path: "{{ dir }}/f.conf", content: blk}}
"#;

const BLOCK: &str = "# BEGIN drover box/app/b1\nblk\n# END drover box/app/b1\n";

/// Forgets every run and removes `name`, so the next apply starts from nothing.
/// `id status` per applied instance, in the order applied.
fn statuses(report: &serde_json::Value) -> Vec<String> {
    outcomes(report)
        .iter()
        .map(|o| o.split(':').next().unwrap_or_default().to_owned())
        .collect()
}

fn start_over(area: &Area, name: &str) {
    let _ = std::fs::remove_dir_all(area.manifests.path().join(".drover"));
    let _ = std::fs::remove_file(area.path(name));
}

#[test]
fn four_edits_of_one_file_all_land_in_manifest_order_run_after_run() {
    let area = Area::new(EDITS);
    for _ in 0..5 {
        start_over(&area, "f.conf");
        let (run, report) = area.apply(&[]);
        run.expect_code(0);
        let statuses = statuses(&report);
        assert_eq!(
            statuses,
            [
                "box/app/seed changed",
                "box/app/l1 changed",
                "box/app/l2 changed",
                "box/app/l3 changed",
                "box/app/b1 changed",
            ]
        );
        assert_eq!(
            area.read("f.conf"),
            format!("a\none=1\ntwo=2\nthree=3\n{BLOCK}")
        );
    }
    // Converged: nothing to do, and nothing drifts.
    area.apply(&[]).0.expect_code(0);
    area.drover(&["drift", "--detailed-exitcode"])
        .expect_code(0);
    assert_eq!(
        area.read("f.conf"),
        format!("a\none=1\ntwo=2\nthree=3\n{BLOCK}")
    );
}

#[test]
fn edits_without_needs_take_turns_and_a_failed_one_skips_none_of_the_others() {
    // Only the first creates the file: the second fails unless it runs after it. The third
    // fails (an expression `awk` rejects), and the two after it still run.
    let area = Area::new(
        r#"    - {name: seed, line: {path: "{{ dir }}/g.conf", line: a, create: true}}
    - {name: l1, line: {path: "{{ dir }}/g.conf", line: "one=1"}}
    - {name: bad, line: {path: "{{ dir }}/g.conf", line: x, match: "("}}
    - {name: l3, line: {path: "{{ dir }}/g.conf", line: "three=3"}}
    - {name: b1, block: {path: "{{ dir }}/g.conf", content: blk}}
"#,
    );
    for _ in 0..3 {
        start_over(&area, "g.conf");
        let (run, report) = area.apply(&[]);
        run.expect_code(1);
        let statuses = statuses(&report);
        assert_eq!(
            statuses,
            [
                "box/app/seed changed",
                "box/app/l1 changed",
                "box/app/bad failed",
                "box/app/l3 changed",
                "box/app/b1 changed",
            ],
            "{report:#}"
        );
        assert_eq!(area.read("g.conf"), format!("a\none=1\nthree=3\n{BLOCK}"));
    }
}

#[test]
fn a_file_task_and_edits_of_its_file_are_refused_before_anything_runs() {
    let area = Area::new(
        r#"    - {name: seed, file: {path: "{{ dir }}/f.conf", content: "a\n"}}
    - {name: l1, needs: [seed], line: {path: "{{ dir }}/f.conf", line: "one=1"}}
    - {name: b1, needs: [seed], block: {path: "{{ dir }}/./f.conf", content: blk}}
"#,
    );
    let path = area.path("f.conf").display().to_string();
    let expected = format!(
        "error[manifest::file-written-and-edited]: file `{path}` on host box is written whole by `app/seed` and edited by `app/l1` and `app/b1`
 --> app.yaml:7:33 (/spec/tasks/0/file/path)
  |
7 |     - {{name: seed, file: {{path: \"{{{{ dir }}}}/f.conf\", content: \"a\\n\"}}}}
  |                                 ^^^^^^^^^^^^^^^^^^ written whole here
 ::: app.yaml:8:46 (/spec/tasks/1/line/path)
  |
8 |     - {{name: l1, needs: [seed], line: {{path: \"{{{{ dir }}}}/f.conf\", line: \"one=1\"}}}}
  |                                              ------------------ edited here
 ::: app.yaml:9:47 (/spec/tasks/2/block/path)
  |
9 |     - {{name: b1, needs: [seed], block: {{path: \"{{{{ dir }}}}/./f.conf\", content: blk}}}}
  |                                               -------------------- edited here
  = help: a `file` task owns the whole file, so every apply would undo these edits and drift would never settle: put the lines into its `content` (or template), or drop it and give the edits `create: true`
"
    );
    for command in ["validate", "plan"] {
        let run = area.drover(&[command]).expect_code(1);
        assert!(run.stderr().starts_with(&expected), "{}", run.stderr());
    }
    let run = crate::harness::Drover::new()
        .args(["apply", "--auto-approve", "--color", "never"])
        .arg_path(area.manifests.path())
        .run()
        .expect_code(1);
    assert!(run.stderr().starts_with(&expected), "{}", run.stderr());
    assert!(!area.path("f.conf").exists(), "nothing ran");
}
