//! `Target`: how `--target` and `--replace` name instances: an id, a glob over ids
//! (`web-*/nginx/*`), or `host=NAME` / `workflow=NAME` (globs allowed there too).

use std::fmt;

use crate::instance::InstanceId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Host(String),
    Workflow(String),
    /// A glob over `host/workflow/task`; a plain id is a glob without wildcards.
    Instance(String),
}

impl Target {
    pub fn parse(text: &str) -> Result<Target, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("an empty target names nothing".to_owned());
        }
        if let Some(host) = text.strip_prefix("host=") {
            return Ok(Target::Host(host.to_owned()));
        }
        if let Some(workflow) = text.strip_prefix("workflow=") {
            return Ok(Target::Workflow(workflow.to_owned()));
        }
        if text.contains('=') {
            return Err(format!(
                "`{text}`: use host=NAME, workflow=NAME, or an instance id such as web-1/nginx/config"
            ));
        }
        // Exactly three parts, wildcards or not: `*` never crosses `/`, so `web-1/*` would
        // silently match nothing.
        if text.split('/').count() != 3 {
            return Err(format!(
                "`{text}` is not an instance id; write host/workflow/task (`*` matches within one part, as in web-1/*/*), host=NAME or workflow=NAME"
            ));
        }
        Ok(Target::Instance(text.to_owned()))
    }

    pub fn matches(&self, id: &InstanceId) -> bool {
        match self {
            Target::Host(pattern) => glob(pattern, id.host.as_str()),
            Target::Workflow(pattern) => glob(pattern, id.workflow.as_str()),
            // A task that loops is targeted whole by its name, or item by item.
            Target::Instance(pattern) => {
                glob(pattern, &id.to_string())
                    || (id.item.is_some() && glob(pattern, &id.without_item().to_string()))
            }
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Host(h) => write!(f, "host={h}"),
            Target::Workflow(w) => write!(f, "workflow={w}"),
            Target::Instance(i) => f.write_str(i),
        }
    }
}

/// Shell-style glob: `*` any run of characters, `?` one character. `*` does not cross `/`,
/// so `web-*/nginx/*` means what it looks like.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match (p.get(pi), t.get(ti)) {
            (Some('?'), Some(c)) if *c != '/' => {
                pi += 1;
                ti += 1;
            }
            (Some('*'), _) => {
                star = Some((pi, ti));
                pi += 1;
            }
            (Some(a), Some(b)) if a == b => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) if t.get(st) != Some(&'/') => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                _ => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> InstanceId {
        InstanceId::parse(text).unwrap()
    }

    #[test]
    fn a_task_that_loops_is_targeted_whole_or_item_by_item() {
        let item = InstanceId::parse("web-1/nginx/vhost[api]").unwrap();
        let matches = |t: &str| Target::parse(t).unwrap().matches(&item);
        assert!(matches("web-1/nginx/vhost"));
        assert!(matches("web-1/nginx/vhost[api]"));
        assert!(matches("*/nginx/vhost*"));
        assert!(!matches("web-1/nginx/vhost[web]"));
    }

    #[test]
    fn globs_match_within_segments() {
        assert!(glob("web-*/nginx/*", "web-1/nginx/config"));
        assert!(!glob("web-*/nginx/*", "web-1/base/motd"));
        assert!(
            !glob("*", "web-1/nginx/config"),
            "a star stays within one segment"
        );
        assert!(glob("*/*/*", "web-1/nginx/config"));
        assert!(glob("web-?/nginx/config", "web-2/nginx/config"));
        assert!(glob("web-1/nginx/config", "web-1/nginx/config"));
    }

    #[test]
    fn targets_parse_and_match() {
        let i = id("web-1/nginx/config");
        assert!(Target::parse("host=web-*").unwrap().matches(&i));
        assert!(Target::parse("workflow=nginx").unwrap().matches(&i));
        assert!(!Target::parse("workflow=base").unwrap().matches(&i));
        assert!(Target::parse("web-1/nginx/config").unwrap().matches(&i));
        assert!(Target::parse("web-1").is_err());
        assert!(
            Target::parse("web-1/*").is_err(),
            "two parts never match: say so"
        );
        assert!(Target::parse("role=web").is_err());
    }
}
