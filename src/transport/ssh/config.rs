//! `~/.ssh/config`, as far as users rely on it: `Host` patterns (`*`, `?`, `!negation`),
//! `HostName`, `User`, `Port`, `IdentityFile`, `ProxyJump`, `ConnectTimeout`,
//! `ServerAliveInterval`, `UserKnownHostsFile`, and `Include`. Like OpenSSH, the first value
//! obtained for a keyword wins. Pure: the caller reads the files.

use std::time::Duration;

/// What the config says for one host alias.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSettings {
    pub host_name: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<String>,
    pub proxy_jump: Option<String>,
    pub connect_timeout: Option<Duration>,
    pub server_alive_interval: Option<Duration>,
    pub user_known_hosts_file: Option<String>,
}

/// A parsed config: blocks of settings, each guarded by the `Host` patterns above it.
#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    blocks: Vec<Block>,
}

/// `Host` patterns, and the (lowercased keyword, value) lines under them.
type Block = (Vec<String>, Vec<(String, String)>);

impl SshConfig {
    /// Parses config text; `include` returns the text of an `Include`d file (already
    /// expanded), so this stays free of I/O. Unknown keywords are ignored, as OpenSSH's
    /// `IgnoreUnknown` users expect.
    pub fn parse(text: &str, include: &mut dyn FnMut(&str) -> Vec<String>) -> SshConfig {
        let mut config = SshConfig {
            blocks: vec![(vec!["*".to_owned()], Vec::new())],
        };
        config.add(text, include, 0);
        config
    }

    fn add(&mut self, text: &str, include: &mut dyn FnMut(&str) -> Vec<String>, depth: usize) {
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, value) = split(line);
            match keyword.to_ascii_lowercase().as_str() {
                "host" => self.blocks.push((
                    value.split_whitespace().map(str::to_owned).collect(),
                    Vec::new(),
                )),
                // `Match` conditions are not evaluated: its block applies to nothing.
                "match" => self.blocks.push((Vec::new(), Vec::new())),
                "include" if depth < 8 => {
                    for file in include(value) {
                        self.add(&file, include, depth + 1);
                    }
                }
                other => {
                    if let Some((_, settings)) = self.blocks.last_mut() {
                        settings.push((other.to_owned(), unquote(value).to_owned()));
                    }
                }
            }
        }
    }

    /// The settings for `alias`, first value of each keyword winning.
    pub fn resolve(&self, alias: &str) -> HostSettings {
        let mut out = HostSettings::default();
        for (patterns, settings) in &self.blocks {
            if !matches(patterns, alias) {
                continue;
            }
            for (keyword, value) in settings {
                apply(&mut out, keyword, value, alias);
            }
        }
        out
    }
}

fn apply(out: &mut HostSettings, keyword: &str, value: &str, alias: &str) {
    let seconds = |v: &str| v.parse::<u64>().ok().map(Duration::from_secs);
    match keyword {
        "hostname" if out.host_name.is_none() => out.host_name = Some(value.replace("%h", alias)),
        "user" if out.user.is_none() => out.user = Some(value.to_owned()),
        "port" if out.port.is_none() => out.port = value.parse().ok(),
        "identityfile" => out.identity_files.push(value.to_owned()),
        "proxyjump" if out.proxy_jump.is_none() && !value.eq_ignore_ascii_case("none") => {
            out.proxy_jump = Some(value.to_owned());
        }
        "connecttimeout" if out.connect_timeout.is_none() => out.connect_timeout = seconds(value),
        "serveraliveinterval" if out.server_alive_interval.is_none() => {
            out.server_alive_interval = seconds(value);
        }
        "userknownhostsfile" if out.user_known_hosts_file.is_none() => {
            out.user_known_hosts_file = value.split_whitespace().next().map(str::to_owned);
        }
        _ => {}
    }
}

/// `Keyword value` or `Keyword=value`.
fn split(line: &str) -> (&str, &str) {
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let (keyword, rest) = line.split_at(end);
    (
        keyword,
        rest.trim_start_matches(|c: char| c.is_whitespace() || c == '=')
            .trim(),
    )
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// Whether `alias` matches a `Host` line: any positive pattern, and no negated one.
fn matches(patterns: &[String], alias: &str) -> bool {
    let mut hit = false;
    for pattern in patterns {
        if let Some(negated) = pattern.strip_prefix('!') {
            if glob(negated, alias) {
                return false;
            }
        } else if glob(pattern, alias) {
            hit = true;
        }
    }
    hit
}

/// `*` and `?` wildcards over the whole name (unlike plan targets, `*` crosses dots).
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star) = (0, 0, None);
    while ti < t.len() {
        match (p.get(pi), t.get(ti)) {
            (Some('*'), _) => {
                star = Some((pi, ti));
                pi += 1;
            }
            (Some(a), Some(b)) if *a == '?' || a.eq_ignore_ascii_case(b) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

/// A `ProxyJump` hop: `[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jump {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl Jump {
    /// The first hop of a `ProxyJump` value (further hops are not followed).
    pub fn parse(value: &str) -> Option<Jump> {
        let first = value.split(',').next()?.trim();
        let first = first.strip_prefix("ssh://").unwrap_or(first);
        let (user, rest) = match first.split_once('@') {
            Some((u, r)) => (Some(u.to_owned()), r),
            None => (None, first),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, p.parse().ok()),
            _ => (rest, None),
        };
        (!host.is_empty()).then(|| Jump {
            user,
            host: host.to_owned(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "
# comment
Host edge-* !edge-9
    HostName %h.lyon.example.net
    User deploy
    Port 2222
    IdentityFile ~/.ssh/edge
Host edge-1
    User someone-else
    ProxyJump admin@bastion.example.net:2200
Host *
    ConnectTimeout=7
    ServerAliveInterval 30
    User fallback
Include extra
";

    fn parsed() -> SshConfig {
        SshConfig::parse(CONFIG, &mut |name| {
            if name == "extra" {
                vec!["Host db\n  HostName 10.0.0.9\n".to_owned()]
            } else {
                Vec::new()
            }
        })
    }

    #[test]
    fn the_first_value_obtained_wins() {
        let s = parsed().resolve("edge-1");
        assert_eq!(s.host_name.as_deref(), Some("edge-1.lyon.example.net"));
        assert_eq!(
            s.user.as_deref(),
            Some("deploy"),
            "the earlier block wins over the later one"
        );
        assert_eq!(s.port, Some(2222));
        assert_eq!(s.identity_files, ["~/.ssh/edge"]);
        assert_eq!(
            s.proxy_jump.as_deref(),
            Some("admin@bastion.example.net:2200")
        );
        assert_eq!(s.connect_timeout, Some(Duration::from_secs(7)));
        assert_eq!(s.server_alive_interval, Some(Duration::from_secs(30)));
    }

    #[test]
    fn negated_patterns_exclude_and_includes_are_followed() {
        let s = parsed().resolve("edge-9");
        assert_eq!(s.host_name, None);
        assert_eq!(s.user.as_deref(), Some("fallback"));
        assert_eq!(
            parsed().resolve("db").host_name.as_deref(),
            Some("10.0.0.9")
        );
    }

    #[test]
    fn jumps_parse_user_host_and_port() {
        assert_eq!(
            Jump::parse("admin@bastion:2200"),
            Some(Jump {
                user: Some("admin".to_owned()),
                host: "bastion".to_owned(),
                port: Some(2200)
            })
        );
        assert_eq!(
            Jump::parse("bastion,other"),
            Some(Jump {
                user: None,
                host: "bastion".to_owned(),
                port: None
            })
        );
        assert_eq!(Jump::parse(""), None);
    }
}
