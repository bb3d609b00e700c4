//! Inventory conveniences end to end: `HostDefaults`, the order in which vars override each
//! other, and `matchExpressions` selectors.

use crate::harness::{Drover, write_fixture};

/// Four layers each set the vars the layers below them set too; the file a task writes
/// shows which layer won each name.
#[test]
fn vars_override_task_then_workflow_then_host_then_defaults() {
    let manifests = tempfile::tempdir().unwrap();
    let area = tempfile::tempdir().unwrap();
    write_fixture(
        manifests.path(),
        &format!(
            r#"
//- defaults.yaml
apiVersion: drover/v1
kind: HostDefaults
metadata: {{name: everywhere}}
spec:
  hosts: {{matchLabels: {{}}}}
  transport: local
  vars: {{a: defaults, b: defaults, c: defaults, d: defaults, dir: {dir}}}
//- hosts.yaml
apiVersion: drover/v1
kind: Host
metadata: {{name: box, labels: {{role: web, site: lyon}}}}
spec: {{vars: {{b: host, c: host, d: host}}}}
---
apiVersion: drover/v1
kind: Host
metadata: {{name: db, labels: {{role: db}}}}
spec: {{vars: {{dir: /nonexistent}}}}
//- app.yaml
apiVersion: drover/v1
kind: Workflow
metadata: {{name: app}}
spec:
  hosts:
    matchExpressions:
      - {{key: role, operator: NotIn, values: [db]}}
      - {{key: site, operator: Exists}}
  vars: {{c: workflow, d: workflow}}
  tasks:
    - name: layers
      vars: {{d: task}}
      file: {{path: "{{{{ dir }}}}/layers", content: "{{{{ a }}}} {{{{ b }}}} {{{{ c }}}} {{{{ d }}}}\n"}}
    - name: shared
      file: {{path: "{{{{ dir }}}}/shared", content: "{{{{ d }}}}\n"}}
"#,
            dir = area.path().display()
        ),
    );
    Drover::new()
        .args(["apply", "--auto-approve", "--color", "never"])
        .arg_path(manifests.path())
        .run()
        .expect_code(0);
    let read = |name: &str| std::fs::read_to_string(area.path().join(name)).unwrap();
    assert_eq!(read("layers"), "defaults host workflow task\n");
    assert_eq!(read("shared"), "workflow\n", "a task's vars are its own");
    let listed = Drover::new()
        .args(["state", "list", "--color", "never", "--dir"])
        .arg_path(manifests.path())
        .run()
        .expect_code(0);
    assert!(
        listed.stdout().contains("box/app/layers"),
        "{}",
        listed.stdout()
    );
    assert!(
        !listed.stdout().contains("db/"),
        "the selector leaves out `db`: {}",
        listed.stdout()
    );
}

#[test]
fn two_defaults_that_disagree_on_a_host_are_an_error_naming_both() {
    let manifests = tempfile::tempdir().unwrap();
    write_fixture(
        manifests.path(),
        r#"
//- defaults.yaml
apiVersion: drover/v1
kind: HostDefaults
metadata: {name: all}
spec:
  hosts: {matchLabels: {}}
  user: deploy
---
apiVersion: drover/v1
kind: HostDefaults
metadata: {name: lyon}
spec:
  hosts: {matchLabels: {site: lyon}}
  user: admin
  vars: {port: 80}
//- hosts.yaml
apiVersion: drover/v1
kind: Host
metadata: {name: web-1, labels: {site: lyon}}
spec: {address: 10.0.0.1}
---
apiVersion: drover/v1
kind: Host
metadata: {name: web-2, labels: {site: paris}}
spec: {address: 10.0.0.2}
---
apiVersion: drover/v1
kind: Host
metadata: {name: web-3, labels: {site: lyon}}
spec: {address: 10.0.0.3, user: root}
"#,
    );
    let run = Drover::new()
        .args(["validate", "--color", "never"])
        .arg_path(manifests.path())
        .run()
        .expect_code(1);
    let err = run.stderr();
    assert!(
        err.contains("host defaults `all` and `lyon` both match host `web-1` and give `user` different values"),
        "{err}"
    );
    assert_eq!(
        err.matches("defaults-conflict").count(),
        1,
        "reported once: {err}"
    );
    assert!(
        err.contains("defaults.yaml:13:9"),
        "located at the second value: {err}"
    );
}

/// A load balancer lists its backends from the inventory, and vars are templates over other
/// vars and the host's fields.
#[test]
fn a_load_balancer_lists_its_backends_and_vars_are_templated() {
    let manifests = tempfile::tempdir().unwrap();
    let area = tempfile::tempdir().unwrap();
    write_fixture(
        manifests.path(),
        &format!(
            r#"
//- hosts.yaml
apiVersion: drover/v1
kind: Host
metadata: {{name: lb, labels: {{role: lb}}}}
spec: {{transport: local, vars: {{dir: {dir}}}}}
---
apiVersion: drover/v1
kind: Host
metadata: {{name: web-1, labels: {{role: web}}}}
spec: {{address: 10.0.0.1, vars: {{port: 8080}}}}
---
apiVersion: drover/v1
kind: Host
metadata: {{name: web-2, labels: {{role: web}}}}
spec:
  address: 10.0.0.2
  vars:
    port: 8081
    url: "http://{{{{ host.address }}}}:{{{{ port }}}}/"
    token: {{valueFrom: {{env: DROVER_TEST_BACKEND_TOKEN}}}}
    dsn: "db://u:{{{{ token | default('zz') }}}}@x"
//- lb.yaml
apiVersion: drover/v1
kind: Workflow
metadata: {{name: lb}}
spec:
  hosts: {{names: [lb]}}
  vars:
    conf: "{{{{ dir }}}}/{{{{ pool }}}}.conf"
    pool: "{{{{ host.name }}}}-pool"
  tasks:
    - name: upstream
      file:
        path: "{{{{ conf }}}}"
        content: |
          upstream {{{{ pool }}}} {{
          {{% for h in hosts if h.labels.role == "web" %}}  server {{{{ h.address }}}}:{{{{ h.vars.port }}}};
          {{% endfor %}}}}
          {{% for h in hosts if h.name == "web-2" %}}# {{{{ h.vars.url }}}} {{{{ h.vars.token is defined }}}} {{{{ h.vars.dsn is defined }}}}{{% endfor %}}
"#,
            dir = area.path().display()
        ),
    );
    Drover::new()
        .args(["apply", "--auto-approve", "--color", "never"])
        .arg_path(manifests.path())
        .env("DROVER_TEST_BACKEND_TOKEN", "backend-secret")
        .run()
        .expect_code(0);
    let written = std::fs::read_to_string(area.path().join("lb-pool.conf")).unwrap();
    assert_eq!(
        written,
        "upstream lb-pool {\n  server 10.0.0.1:8080;\n  server 10.0.0.2:8081;\n}\n# http://10.0.0.2:8081/ False False\n",
        "another host's secret is never in the list"
    );
}

/// `forEach` expands one task into one instance per item, keyed stably by the item; a task
/// that needs it waits for every item; an item taken out of the list is removed.
#[test]
fn for_each_expands_a_task_into_one_instance_per_item() {
    let manifests = tempfile::tempdir().unwrap();
    let area = tempfile::tempdir().unwrap();
    let write = |sites: &str| {
        write_fixture(
            manifests.path(),
            &format!(
                r#"
//- hosts.yaml
apiVersion: drover/v1
kind: Host
metadata: {{name: box}}
spec: {{transport: local, vars: {{dir: {dir}}}}}
//- app.yaml
apiVersion: drover/v1
kind: Workflow
metadata: {{name: app}}
spec:
  hosts: {{names: [box]}}
  vars:
    sites: {sites}
  tasks:
    - name: vhost
      forEach: "{{{{ sites }}}}"
      file: {{path: "{{{{ dir }}}}/{{{{ item.name }}}}.conf", content: "listen {{{{ item.port }}}}\n"}}
      undo: "rm -f {{{{ dir }}}}/{{{{ item.name }}}}.conf"
    - name: flag
      forEach: {{a: 1, b: 2}}
      file: {{path: "{{{{ dir }}}}/flag-{{{{ item.key }}}}", content: "{{{{ item.value }}}}\n"}}
    - name: index
      needs: [vhost]
      run: "ls {{{{ dir }}}} | grep -c conf > {{{{ dir }}}}/count"
"#,
                dir = area.path().display()
            ),
        );
    };
    write("[{name: api, port: 8080}, {name: web, port: 80}]");
    let plan = Drover::new()
        .args(["plan", "--color", "never"])
        .arg_path(manifests.path())
        .run()
        .expect_code(0);
    for shown in ["vhost[api]", "vhost[web]", "flag[a]", "flag[b]"] {
        assert!(plan.stdout().contains(shown), "{shown}: {}", plan.stdout());
    }
    Drover::new()
        .args(["apply", "--auto-approve", "--color", "never"])
        .arg_path(manifests.path())
        .run()
        .expect_code(0);
    let read = |name: &str| std::fs::read_to_string(area.path().join(name)).unwrap();
    assert_eq!(read("api.conf"), "listen 8080\n");
    assert_eq!(read("web.conf"), "listen 80\n");
    assert_eq!(read("flag-b"), "2\n");
    assert_eq!(read("count"), "2\n", "`index` ran after both items");
    // Reordered and one item changed: only that item's instance changes.
    write("[{name: web, port: 81}, {name: api, port: 8080}]");
    let plan = Drover::new()
        .args(["plan", "--color", "never"])
        .arg_path(manifests.path())
        .run()
        .expect_code(0);
    assert!(plan.stdout().contains("~ vhost[web]"), "{}", plan.stdout());
    assert!(!plan.stdout().contains("vhost[api]"), "{}", plan.stdout());
    // An item taken out is removed with its undo.
    write("[{name: api, port: 8080}]");
    Drover::new()
        .args(["apply", "--auto-approve", "--color", "never"])
        .arg_path(manifests.path())
        .run()
        .expect_code(0);
    assert!(!area.path().join("web.conf").exists());
    assert!(area.path().join("api.conf").exists());
}

/// An item made from a secret is as secret as the secret: whatever a template makes of it
/// is masked, in the plan as in the apply's output.
#[test]
fn an_item_made_from_a_secret_is_masked() {
    let manifests = tempfile::tempdir().unwrap();
    write_fixture(
        manifests.path(),
        r#"
//- all.yaml
apiVersion: drover/v1
kind: Host
metadata: {name: box}
spec:
  transport: local
  vars:
    pw: {valueFrom: {env: DROVER_TEST_ITEM_SECRET}}
---
apiVersion: drover/v1
kind: Workflow
metadata: {name: w}
spec:
  hosts: {names: [box]}
  tasks:
    - name: v
      forEach: "{{ [{'name': 'a', 'p': pw | upper}] }}"
      run: "echo {{ item.p | lower | replace('k', 'K') }} {{ item.p }}"
"#,
    );
    let plan = Drover::new()
        .args(["plan", "--color", "never"])
        .arg_path(manifests.path())
        .env("DROVER_TEST_ITEM_SECRET", "sekrit")
        .run()
        .expect_code(0);
    let shown = format!("{}{}", plan.stdout(), plan.stderr());
    assert!(shown.contains("v[a]"), "{shown}");
    for leaked in ["seKrit", "SEKRIT", "sekrit"] {
        assert!(!shown.contains(leaked), "{leaked} in {shown}");
    }
}
