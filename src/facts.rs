//! Host facts: what a host is (OS, version, family, architecture, hostname, package manager,
//! init system), the POSIX `sh` probe script that reports them in one round trip, the parser
//! of its answer, whether a task's `when` holds for them, and how instances left out by a
//! `when` keep the ordering through them (`LeftOut`).
//!
//! Pure: the script is text, the answer arrives as bytes. Running the script, caching the
//! facts and deciding which hosts need them is `reconcile::facts`; decision 0018.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::instance::InstanceId;
use crate::model::desired::{Host, Task, Workflow};
use crate::model::meta::HostName;
use crate::model::workflow::{FactConditions, FactValues};
use crate::resolve::ResolvedInstance;
use crate::state::Timestamp;

/// Bytes of the probe's answer read: seven short lines and markers, with room for noise a
/// login shell prints first.
pub const ANSWER_LIMIT: usize = 64 * 1024;
/// Longest value a fact may have; the script cuts what it reads to this much.
pub const VALUE_LIMIT: usize = 128;
/// What a fact is when the host does not say (no `/etc/os-release`, no known package
/// manager, neither systemd nor `OpenRC`).
pub const UNKNOWN: &str = "unknown";
/// Version of `Gathered`'s stored JSON; a reader refuses another.
pub const FORMAT_VERSION: u32 = 1;

/// A host's facts, as templates see them under `host.facts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Facts {
    /// `ID` of `/etc/os-release` (`debian`, `alpine`).
    pub os: String,
    /// `VERSION_ID` of `/etc/os-release` (`12`, `3.20.1`).
    pub os_version: String,
    /// `ID_LIKE` of `/etc/os-release` as written (`rhel centos fedora`), or `ID` without one.
    pub os_family: String,
    /// `uname -m` (`x86_64`, `aarch64`).
    pub arch: String,
    /// `uname -n`.
    pub hostname: String,
    /// The first of apt, dnf, yum, apk, zypper, pacman found on `PATH`.
    pub package_manager: String,
    /// `systemd`, `openrc` or `unknown`.
    pub init: String,
}

/// The names of the facts, as manifests and templates spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FactName {
    Os,
    OsVersion,
    OsFamily,
    Arch,
    Hostname,
    PackageManager,
    Init,
}

impl FactName {
    pub const ALL: [FactName; 7] = [
        FactName::Os,
        FactName::OsVersion,
        FactName::OsFamily,
        FactName::Arch,
        FactName::Hostname,
        FactName::PackageManager,
        FactName::Init,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FactName::Os => "os",
            FactName::OsVersion => "osVersion",
            FactName::OsFamily => "osFamily",
            FactName::Arch => "arch",
            FactName::Hostname => "hostname",
            FactName::PackageManager => "packageManager",
            FactName::Init => "init",
        }
    }
}

impl Facts {
    pub fn get(&self, name: FactName) -> &str {
        match name {
            FactName::Os => &self.os,
            FactName::OsVersion => &self.os_version,
            FactName::OsFamily => &self.os_family,
            FactName::Arch => &self.arch,
            FactName::Hostname => &self.hostname,
            FactName::PackageManager => &self.package_manager,
            FactName::Init => &self.init,
        }
    }

    /// What templates see for a host whose facts are not known here (`validate`, a plan
    /// against a snapshot without them): text that says so, never a plausible value.
    pub fn stand_in() -> Facts {
        let value = |name: FactName| stand_in_value(name.as_str());
        Facts {
            os: value(FactName::Os),
            os_version: value(FactName::OsVersion),
            os_family: value(FactName::OsFamily),
            arch: value(FactName::Arch),
            hostname: value(FactName::Hostname),
            package_manager: value(FactName::PackageManager),
            init: value(FactName::Init),
        }
    }
}

/// The stand-in text of one fact; see `Facts::stand_in`.
pub fn stand_in_value(name: &str) -> String {
    format!("(fact {name}: not known here)")
}

/// Whether `text` holds a stand-in fact (a rendered value the rules cannot judge here).
pub fn has_stand_in(text: &str) -> bool {
    text.contains("(fact ") && text.contains(": not known here)")
}

/// A host's facts and when they were gathered: what the store keeps per host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gathered {
    pub format_version: u32,
    pub facts: Facts,
    pub gathered_at: Timestamp,
}

impl Gathered {
    pub fn new(facts: Facts, gathered_at: Timestamp) -> Gathered {
        Gathered {
            format_version: FORMAT_VERSION,
            facts,
            gathered_at,
        }
    }
}

/// Whether a task's `when.facts` holds on a host with these facts: every named fact must
/// equal one of its listed values, or one of the space-separated words of the fact (so
/// `osFamily: rhel` holds for `rhel centos fedora`).
pub fn holds(conditions: &FactConditions, facts: &Facts) -> bool {
    conditions.iter().all(|(name, values)| {
        let fact = facts.get(name);
        let listed = |value: &String| {
            value == fact || fact.split_whitespace().any(|word| word == value.as_str())
        };
        match values {
            FactValues::One(value) => listed(value),
            FactValues::Any(values) => values.iter().any(listed),
        }
    })
}

/// Instances left out because their task's `when` does not hold, with what each would have
/// needed: what needs one waits for what it needed instead, so ordering through it is
/// kept (`a` needs `b` needs `c`, `b` left out: `a` waits for `c`).
#[derive(Debug, Default)]
pub struct LeftOut {
    needs: BTreeMap<InstanceId, Vec<InstanceId>>,
}

impl LeftOut {
    pub fn insert(
        &mut self,
        id: InstanceId,
        host: &Host,
        workflow: &Workflow,
        task: &Task,
        extra: &[InstanceId],
    ) {
        let mut needs: Vec<InstanceId> = task
            .needs
            .iter()
            .map(|n| InstanceId::new(host.name.clone(), workflow.name.clone(), n.clone()))
            .collect();
        needs.extend(extra.iter().cloned());
        self.needs.insert(id, needs);
    }

    /// Takes in what another share of the fleet left out.
    pub fn absorb(&mut self, other: LeftOut) {
        self.needs.extend(other.needs);
    }

    /// Replaces each need on a left-out instance by that instance's own needs, through any
    /// number of left-out instances, keeping their order; a `triggeredBy` on one is dropped
    /// (it never changes).
    pub fn bridge(&self, instances: &mut [ResolvedInstance]) {
        if self.needs.is_empty() {
            return;
        }
        for instance in instances {
            let mut needs = Vec::with_capacity(instance.needs.len());
            let mut seen = BTreeSet::new();
            for need in std::mem::take(&mut instance.needs) {
                self.expand(need, &mut seen, &mut needs);
            }
            instance.needs = needs;
            instance
                .triggered_by
                .retain(|t| !self.needs.contains_key(t));
        }
    }

    fn expand(&self, need: InstanceId, seen: &mut BTreeSet<InstanceId>, out: &mut Vec<InstanceId>) {
        if !seen.insert(need.clone()) {
            return;
        }
        match self.needs.get(&need) {
            Some(through) => {
                for next in through {
                    self.expand(next.clone(), seen, out);
                }
            }
            None => out.push(need),
        }
    }
}

/// Why a host's answer to the facts probe could not be read. Each names the host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the facts probe on {host} did not finish (no end marker in its output)")]
    Unfinished { host: HostName },
    #[error("the facts probe on {host} answered a line drover cannot read: {line:?}")]
    Malformed { host: HostName, line: String },
    #[error("the facts probe on {host} did not report `{fact}`")]
    Missing { host: HostName, fact: &'static str },
    #[error("the facts probe on {host} reported a `{fact}` drover refuses: {value:?}")]
    Invalid {
        host: HostName,
        fact: &'static str,
        value: String,
    },
}

/// The probe: one `sh -s` script printing one `key value` line per fact between two lines
/// carrying `nonce`, so text a login shell prints around it is ignored. Every value is cut
/// to `VALUE_LIMIT` bytes on the host; `/usr/lib/os-release` stands in for a missing
/// `/etc/os-release`, as os-release(5) says.
pub fn script(nonce: &str) -> String {
    let limit = VALUE_LIMIT;
    format!(
        r#"m='{nonce}'
printf 'drover-facts %s begin\n' "$m"
f=/etc/os-release
[ -r "$f" ] || f=/usr/lib/os-release
if [ -r "$f" ]; then
  grep -E '^(ID|VERSION_ID|ID_LIKE)=' "$f" | head -n 3 | cut -c1-{limit} | sed 's/^/os-release /'
fi
printf 'arch %s\n' "$(uname -m 2>/dev/null | head -n 1 | cut -c1-{limit})"
printf 'hostname %s\n' "$(uname -n 2>/dev/null | head -n 1 | cut -c1-{limit})"
p={UNKNOWN}
for c in apt-get dnf yum apk zypper pacman; do
  if command -v "$c" >/dev/null 2>&1; then p=$c; break; fi
done
[ "$p" = apt-get ] && p=apt
printf 'package-manager %s\n' "$p"
if [ -d /run/systemd/system ]; then i=systemd
elif command -v openrc >/dev/null 2>&1 || [ -d /run/openrc ]; then i=openrc
else i={UNKNOWN}; fi
printf 'init %s\n' "$i"
printf 'drover-facts %s end\n' "$m"
"#
    )
}

/// Reads the probe's answer (`stdout`) from `host`.
pub fn parse(host: &HostName, nonce: &str, stdout: &[u8]) -> Result<Facts, ParseError> {
    let text = String::from_utf8_lossy(stdout);
    let begin = format!("drover-facts {nonce} begin");
    let end = format!("drover-facts {nonce} end");
    let mut lines = text.lines().skip_while(|l| l.trim_end() != begin).skip(1);
    let mut release = OsRelease::default();
    let mut fields: [Option<String>; 4] = [None, None, None, None];
    let mut finished = false;
    for line in lines.by_ref() {
        let line = line.trim_end_matches('\r');
        if line == end {
            finished = true;
            break;
        }
        let malformed = || ParseError::Malformed {
            host: host.clone(),
            line: shorten(line),
        };
        let (key, value) = line.split_once(' ').ok_or_else(malformed)?;
        let slot = match key {
            "os-release" => {
                release.take(value).ok_or_else(malformed)?;
                continue;
            }
            "arch" => 0,
            "hostname" => 1,
            "package-manager" => 2,
            "init" => 3,
            _ => return Err(malformed()),
        };
        if let Some(field) = fields.get_mut(slot) {
            *field = Some(value.trim().to_owned());
        }
    }
    if !finished {
        return Err(ParseError::Unfinished { host: host.clone() });
    }
    let [arch, hostname, package_manager, init] = fields;
    let required = |value: Option<String>, fact: FactName| {
        let value = value.ok_or_else(|| ParseError::Missing {
            host: host.clone(),
            fact: fact.as_str(),
        })?;
        checked(
            host,
            fact,
            if value.is_empty() {
                UNKNOWN.to_owned()
            } else {
                value
            },
        )
    };
    let os = checked(
        host,
        FactName::Os,
        release.id.unwrap_or_else(|| UNKNOWN.to_owned()),
    )?;
    let facts = Facts {
        os_family: checked(
            host,
            FactName::OsFamily,
            release.id_like.unwrap_or_else(|| os.clone()),
        )?,
        os,
        os_version: checked(
            host,
            FactName::OsVersion,
            release.version_id.unwrap_or_else(|| UNKNOWN.to_owned()),
        )?,
        arch: required(arch, FactName::Arch)?,
        hostname: required(hostname, FactName::Hostname)?,
        package_manager: required(package_manager, FactName::PackageManager)?,
        init: required(init, FactName::Init)?,
    };
    Ok(facts)
}

/// The three keys of os-release(5) drover reads.
#[derive(Debug, Default)]
struct OsRelease {
    id: Option<String>,
    version_id: Option<String>,
    id_like: Option<String>,
}

impl OsRelease {
    /// Takes one `KEY=value` line; `None` if it is not one of the three.
    fn take(&mut self, line: &str) -> Option<()> {
        let (key, raw) = line.split_once('=')?;
        let value = unquote(raw.trim());
        let value = (!value.is_empty()).then_some(value);
        match key {
            "ID" => self.id = value,
            "VERSION_ID" => self.version_id = value,
            "ID_LIKE" => self.id_like = value,
            _ => return None,
        }
        Some(())
    }
}

/// An os-release value without its shell quotes (os-release(5) allows `"…"` and `'…'` with
/// backslash escapes inside double quotes).
fn unquote(raw: &str) -> String {
    let inner = |q: char| raw.strip_prefix(q).and_then(|r| r.strip_suffix(q));
    if let Some(single) = inner('\'') {
        return single.to_owned();
    }
    let Some(double) = inner('"') else {
        return raw.to_owned();
    };
    let mut out = String::with_capacity(double.len());
    let mut escaped = false;
    for c in double.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

/// A fact's value must be short, printable text: it goes into templates and reports.
fn checked(host: &HostName, fact: FactName, value: String) -> Result<String, ParseError> {
    let ok = value.len() <= VALUE_LIMIT && !value.chars().any(char::is_control);
    if ok {
        Ok(value)
    } else {
        Err(ParseError::Invalid {
            host: host.clone(),
            fact: fact.as_str(),
            value: shorten(&value),
        })
    }
}

/// At most 80 characters of a line, for an error message.
fn shorten(line: &str) -> String {
    line.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostName {
        HostName::parse("edge-1").unwrap()
    }

    fn answer(body: &str) -> String {
        format!("motd noise\ndrover-facts N begin\n{body}drover-facts N end\n")
    }

    fn parsed(body: &str) -> Result<Facts, ParseError> {
        parse(&host(), "N", answer(body).as_bytes())
    }

    const TAIL: &str = "arch x86_64\nhostname web1\npackage-manager apt\ninit systemd\n";

    #[test]
    fn debian_answer_parses() {
        let facts = parsed(&format!(
            "os-release ID=debian\nos-release VERSION_ID=\"12\"\n{TAIL}"
        ))
        .unwrap();
        assert_eq!(
            facts,
            Facts {
                os: "debian".into(),
                os_version: "12".into(),
                os_family: "debian".into(),
                arch: "x86_64".into(),
                hostname: "web1".into(),
                package_manager: "apt".into(),
                init: "systemd".into(),
            }
        );
    }

    #[test]
    fn alpine_answer_parses_with_openrc_and_apk() {
        let facts = parsed(
            "os-release ID=alpine\nos-release VERSION_ID=3.20.1\narch aarch64\nhostname a\npackage-manager apk\ninit openrc\n",
        )
        .unwrap();
        assert_eq!(
            (
                facts.os.as_str(),
                facts.os_version.as_str(),
                facts.os_family.as_str()
            ),
            ("alpine", "3.20.1", "alpine")
        );
        assert_eq!(
            (facts.package_manager.as_str(), facts.init.as_str()),
            ("apk", "openrc")
        );
    }

    #[test]
    fn id_like_is_the_family_and_quotes_are_removed() {
        let facts = parsed(&format!(
            "os-release ID=\"rocky\"\nos-release ID_LIKE=\"rhel centos fedora\"\nos-release VERSION_ID='9.4'\n{TAIL}"
        ))
        .unwrap();
        assert_eq!(facts.os_family, "rhel centos fedora");
        assert_eq!(facts.os_version, "9.4");
    }

    #[test]
    fn missing_os_release_reads_as_unknown() {
        let facts = parsed(TAIL).unwrap();
        assert_eq!(
            (
                facts.os.as_str(),
                facts.os_version.as_str(),
                facts.os_family.as_str()
            ),
            (UNKNOWN, UNKNOWN, UNKNOWN)
        );
    }

    #[test]
    fn garbage_is_a_typed_error_naming_the_host() {
        let error = parsed("arch x86_64\nwhat is this\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "the facts probe on edge-1 answered a line drover cannot read: \"what is this\""
        );
        assert_eq!(
            parse(&host(), "N", b"\xff\xfe random bytes").unwrap_err(),
            ParseError::Unfinished { host: host() }
        );
        let error = parsed("os-release ID=debian\n").unwrap_err();
        assert_eq!(
            error,
            ParseError::Missing {
                host: host(),
                fact: "arch"
            }
        );
        let error = parsed(&format!("os-release ID=deb\u{1b}[2Jian\n{TAIL}")).unwrap_err();
        assert!(
            matches!(error, ParseError::Invalid { fact: "os", .. }),
            "{error:?}"
        );
    }

    #[test]
    fn an_answer_cut_short_did_not_finish() {
        let cut = "drover-facts N begin\nos-release ID=debian\narch x86_64\n";
        assert_eq!(
            parse(&host(), "N", cut.as_bytes()).unwrap_err(),
            ParseError::Unfinished { host: host() }
        );
        // Markers with another nonce are someone else's text.
        let other = answer(TAIL).replace(" N ", " M ");
        assert!(parse(&host(), "N", other.as_bytes()).is_err());
    }

    #[test]
    fn when_holds_on_one_listed_value_or_a_word_of_the_fact() {
        let facts = parsed(&format!(
            "os-release ID=rocky\nos-release ID_LIKE=\"rhel centos fedora\"\n{TAIL}"
        ))
        .unwrap();
        let when = |yaml: &str| -> FactConditions { serde_json::from_str(yaml).unwrap() };
        assert!(holds(
            &when(r#"{"os": ["debian", "rocky"], "arch": "x86_64"}"#),
            &facts
        ));
        assert!(holds(&when(r#"{"osFamily": "rhel"}"#), &facts));
        assert!(!holds(
            &when(r#"{"os": "rocky", "arch": "aarch64"}"#),
            &facts
        ));
        assert!(holds(&when("{}"), &facts));
    }

    /// Resolves `tasks` (a workflow's task list) on one SSH host `edge-1`, with `facts`
    /// known for it or not.
    fn resolve(tasks: &str, facts: Option<Facts>) -> crate::resolve::Resolved {
        let text = format!(
            "apiVersion: drover/v1\nkind: Host\nmetadata: {{name: edge-1}}\nspec: {{address: 10.0.0.5}}\n---\napiVersion: drover/v1\nkind: Workflow\nmetadata: {{name: app}}\nspec:\n  hosts: {{names: [edge-1]}}\n  tasks:\n{tasks}"
        );
        let loaded = crate::load::load(
            &[std::sync::Arc::new(crate::source::SourceFile::new(
                "site.yaml",
                text.as_str(),
            ))],
            &crate::load::Limits::default(),
        );
        let desired = loaded
            .desired
            .unwrap_or_else(|| panic!("{:#?}", loaded.diagnostics));
        let mut inputs = crate::resolve::Inputs::default();
        if let Some(facts) = facts {
            inputs.facts.insert(host(), facts);
        }
        crate::resolve::resolve(&desired, &inputs)
    }

    fn debian() -> Facts {
        parsed(&format!("os-release ID=debian\n{TAIL}")).unwrap()
    }

    const CHAIN: &str = "    - {name: a, run: \"true\"}\n    - {name: b, needs: [a], when: {facts: {os: alpine}}, run: \"true\"}\n    - {name: c, needs: [b], run: \"echo {{ host.facts.packageManager }}\"}\n";

    #[test]
    fn a_task_whose_when_fails_has_no_instance_and_its_dependents_wait_for_its_needs() {
        let resolved = resolve(CHAIN, Some(debian()));
        assert!(
            resolved.diagnostics.is_empty(),
            "{:?}",
            resolved.diagnostics
        );
        let ids: Vec<String> = resolved
            .instances
            .iter()
            .map(|i| i.id.to_string())
            .collect();
        assert_eq!(ids, ["edge-1/app/a", "edge-1/app/c"]);
        let c = &resolved.instances[1];
        assert_eq!(
            c.needs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["edge-1/app/a"]
        );
        assert!(
            matches!(&c.action, crate::resolve::Action::Run { command, .. } if command == "echo apt")
        );
        assert!(!c.unavailable_facts && resolved.facts_wanted.is_empty());
    }

    #[test]
    fn without_facts_every_when_holds_and_what_uses_facts_is_marked() {
        let resolved = resolve(CHAIN, None);
        assert!(
            resolved.diagnostics.is_empty(),
            "{:?}",
            resolved.diagnostics
        );
        let marked: Vec<(String, bool)> = resolved
            .instances
            .iter()
            .map(|i| (i.id.task.to_string(), i.unavailable_facts))
            .collect();
        assert_eq!(
            marked,
            [("a".into(), false), ("b".into(), true), ("c".into(), true)]
        );
        assert_eq!(
            resolved.facts_wanted.into_iter().collect::<Vec<_>>(),
            [host()]
        );
    }

    #[test]
    fn a_stand_in_fact_is_not_judged_by_the_rules_of_its_field() {
        let tasks = "    - {name: p, package: {names: [\"{{ host.facts.os }}-keyring\"]}}\n";
        let resolved = resolve(tasks, None);
        assert!(
            resolved.diagnostics.is_empty(),
            "{:?}",
            resolved.diagnostics
        );
        assert!(resolved.instances[0].unavailable_facts);
        let resolved = resolve(tasks, Some(debian()));
        assert!(
            resolved.diagnostics.is_empty(),
            "{:?}",
            resolved.diagnostics
        );
        assert!(matches!(
            &resolved.instances[0].action,
            crate::resolve::Action::Package { names, .. } if names == &["debian-keyring".to_owned()]
        ));
    }

    #[test]
    fn stand_in_facts_are_recognised() {
        let stand_in = Facts::stand_in();
        assert!(has_stand_in(&format!("pkg-{}", stand_in.os)));
        assert!(!has_stand_in("debian"));
    }
}
