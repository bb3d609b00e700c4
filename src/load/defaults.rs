//! `HostDefaults`: completing each host's settings and vars from the defaults documents whose
//! selector matches it.
//!
//! A host's own value always wins. Where the host is silent, a setting or var comes from the
//! defaults that match it; when two of those give different values for the same setting or
//! var, neither wins by some hidden order: it is an error that names both documents. (The
//! same value given twice is not a conflict.) SSH settings from defaults do not reach a host
//! reached with `transport: local`: a defaults document for "every host" may set the SSH
//! user without breaking the controller's own box.

use std::collections::BTreeMap;

use crate::diagnostic::Diagnostic;
use crate::load::check::Locator;
use crate::load::document::{local_field_error, ssh_fields_set};
use crate::model::desired::{Host, HostDefaults, VarLayer};
use crate::model::host::{HostDefaultsSpec, HostSpec, Transport};
use crate::model::meta::HostName;
use crate::source::JsonPointer;

/// Applies `defaults` to every host they match, reporting conflicts once per pair of
/// documents and field.
pub fn apply(
    hosts: &mut BTreeMap<HostName, Host>,
    defaults: &[HostDefaults],
    locator: &dyn Locator,
    out: &mut Vec<Diagnostic>,
) {
    let mut reported = std::collections::BTreeSet::new();
    for host in hosts.values_mut() {
        let matching: Vec<&HostDefaults> = defaults
            .iter()
            .filter(|d| d.spec.hosts.matches(&host.name, &host.labels))
            .collect();
        if matching.is_empty() {
            continue;
        }
        let own_transport = host.spec.transport;
        let mut conflicts = Vec::new();
        complete_settings(host, &matching, &mut conflicts);
        inherit_vars(host, &matching, &mut conflicts);
        for conflict in conflicts {
            let key = (
                conflict.field.clone(),
                conflict.first.name.clone(),
                conflict.second.name.clone(),
            );
            if reported.insert(key) {
                out.push(conflict.diagnostic(&host.name, locator));
            }
        }
        if own_transport.is_none() && host.spec.transport() == Transport::Local {
            local_conflicts(host, &matching, locator, out);
        }
    }
}

/// Two defaults documents that give one host different values for one field.
struct Conflict<'d> {
    /// The JSON pointer under `spec` (`user`, `vars/port`).
    field: String,
    first: &'d HostDefaults,
    second: &'d HostDefaults,
}

impl Conflict<'_> {
    fn diagnostic(&self, host: &HostName, locator: &dyn Locator) -> Diagnostic {
        let pointer = self
            .field
            .split('/')
            .fold(JsonPointer::root().push("spec"), |p, t| p.push(t));
        let shown = self.field.replace('/', ".");
        Diagnostic::error(
            "manifest::defaults-conflict",
            format!(
                "host defaults `{}` and `{}` both match host `{host}` and give `{shown}` different values",
                self.first.name, self.second.name
            ),
        )
        .at(locator.at(&self.second.origin, &pointer))
        .with_label("second value")
        .with_related(locator.at(&self.first.origin, &pointer), "first value")
        .with_help(format!(
            "narrow one of the selectors so that only one applies to `{host}`, or set `{shown}` on the host itself"
        ))
    }
}

/// The one value the matching defaults give for a field the host leaves unset; a second,
/// different value is a conflict.
fn one_value<'d, T: PartialEq + Clone>(
    matching: &[&'d HostDefaults],
    field: &str,
    get: impl Fn(&HostDefaultsSpec) -> Option<&T>,
    conflicts: &mut Vec<Conflict<'d>>,
) -> Option<T> {
    let mut found: Option<(&'d HostDefaults, &T)> = None;
    for defaults in matching {
        let Some(value) = get(&defaults.spec) else {
            continue;
        };
        match found {
            None => found = Some((defaults, value)),
            Some((first, seen)) if seen != value => conflicts.push(Conflict {
                field: field.to_owned(),
                first,
                second: defaults,
            }),
            Some(_) => {}
        }
    }
    found.map(|(_, value)| value.clone())
}

fn complete_settings<'d>(
    host: &mut Host,
    matching: &[&'d HostDefaults],
    conflicts: &mut Vec<Conflict<'d>>,
) {
    let spec = &mut host.spec;
    if spec.transport.is_none() {
        spec.transport = one_value(matching, "transport", |d| d.transport.as_ref(), conflicts);
    }
    if spec.r#become.is_none() {
        spec.r#become = one_value(matching, "become", |d| d.r#become.as_ref(), conflicts);
    }
    if spec.transport() == Transport::Local {
        return;
    }
    if spec.port.is_none() {
        spec.port = one_value(matching, "port", |d| d.port.as_ref(), conflicts);
    }
    if spec.user.is_none() {
        spec.user = one_value(matching, "user", |d| d.user.as_ref(), conflicts);
    }
    if spec.identity_file.is_none() {
        spec.identity_file = one_value(
            matching,
            "identityFile",
            |d| d.identity_file.as_ref(),
            conflicts,
        );
    }
    if spec.known_hosts_file.is_none() {
        spec.known_hosts_file = one_value(
            matching,
            "knownHostsFile",
            |d| d.known_hosts_file.as_ref(),
            conflicts,
        );
    }
}

/// Vars the host does not set come from the first matching defaults that set them; each
/// defaults document becomes one layer, so secrets are read relative to its own file.
fn inherit_vars<'d>(
    host: &mut Host,
    matching: &[&'d HostDefaults],
    conflicts: &mut Vec<Conflict<'d>>,
) {
    let mut taken: BTreeMap<&str, (&'d HostDefaults, &crate::model::vars::VarValue)> =
        BTreeMap::new();
    for defaults in matching {
        let mut layer = crate::model::vars::Vars::new();
        for (name, value) in &defaults.spec.vars {
            if host.spec.vars.contains_key(name) {
                continue;
            }
            match taken.get(name.as_str()) {
                None => {
                    taken.insert(name, (defaults, value));
                    layer.insert(name.clone(), value.clone());
                }
                Some((first, seen)) if !same_var((seen, first), (value, defaults)) => {
                    conflicts.push(Conflict {
                        field: format!("vars/{name}"),
                        first,
                        second: defaults,
                    });
                }
                Some(_) => {}
            }
        }
        if !layer.is_empty() {
            host.inherited.push(VarLayer {
                vars: layer,
                origin: defaults.origin.push("spec").push("vars"),
            });
        }
    }
}

/// A host that its defaults make local, but that gives SSH settings itself.
fn local_conflicts(
    host: &Host,
    matching: &[&HostDefaults],
    locator: &dyn Locator,
    out: &mut Vec<Diagnostic>,
) {
    let Some(source) = matching
        .iter()
        .find(|d| d.spec.transport == Some(Transport::Local))
    else {
        return;
    };
    let own = HostSpec {
        transport: None,
        ..host.spec.clone()
    };
    for field in ssh_fields_set(&own) {
        let at = locator.at(&host.origin, &JsonPointer::root().push("spec").push(field));
        out.push(local_field_error(field, at).with_related(
            locator.at(
                &source.origin,
                &JsonPointer::root().push("spec").push("transport"),
            ),
            "`transport: local` comes from these defaults",
        ));
    }
}

/// Whether two defaults give a var the same value. A secret file is named relative to the
/// file that declares it, so the same words in two directories are two secrets.
fn same_var(
    (first, first_from): (&crate::model::vars::VarValue, &HostDefaults),
    (second, second_from): (&crate::model::vars::VarValue, &HostDefaults),
) -> bool {
    use crate::model::vars::{SecretSource, VarValue};
    match (first, second) {
        (VarValue::Secret(one), VarValue::Secret(other)) => match (one.source(), other.source()) {
            (Some(SecretSource::File(path)), Some(SecretSource::File(other_path))) => {
                crate::load::relative_to(&first_from.origin.file.path, &path)
                    == crate::load::relative_to(&second_from.origin.file.path, &other_path)
            }
            _ => one == other,
        },
        _ => first == second,
    }
}
