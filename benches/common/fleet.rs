//! The generated fleet both benchmarks use: `H` hosts and 20 workflows of 25 tasks, 50
//! tasks per host (see `benches/load.rs` for the layout), as manifest files.

use std::fmt::Write as _;
use std::sync::Arc;

use drover::source::SourceFile;

/// Workflows in the fleet, in `base`/`app` pairs.
pub const WORKFLOWS: usize = 20;
/// Host groups: one per workflow pair.
pub const GROUPS: usize = WORKFLOWS / 2;
/// Tasks per workflow; each host runs two workflows.
pub const TASKS: usize = 25;
/// Files the hosts are spread over.
pub const HOST_FILES: usize = 10;
/// The fleet for `hosts` hosts, as manifest files.
pub fn fleet(hosts: usize) -> Vec<Arc<SourceFile>> {
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

pub fn host(out: &mut String, i: usize) {
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

pub fn workflow_name(w: usize) -> String {
    let stage = if w.is_multiple_of(2) { "base" } else { "app" };
    format!("{stage}-{}", w / 2)
}

pub fn task_name(j: usize) -> String {
    format!("step-{j:02}")
}

/// One workflow document: its name and text.
pub fn workflow(w: usize) -> (String, String) {
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

pub fn task(out: &mut String, w: usize, j: usize) {
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
