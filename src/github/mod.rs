//! Pull-request comments on GitHub, for `drover comment`: where they go (`Repo`,
//! `PullRequest`, `ApiUrl`), what is posted (`sticky`: the marker, the body under GitHub's cap,
//! create or update) and the REST calls (`client`).
//!
//! This file and `sticky` are pure: text in, values out. Only `client` touches the network, and
//! the token reaches it from `cli::config`, never from the environment here.

pub mod client;
pub mod sticky;

use std::fmt;

/// A value given on the command line that cannot address GitHub.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("repository {given:?} is not of the form OWNER/NAME")]
    Repo { given: String },
    #[error("marker {given:?} is not a valid name")]
    Marker { given: String },
    #[error("API URL {given:?} is not an http:// or https:// URL")]
    ApiUrl { given: String },
    #[error("API URL {given:?} would send the token in clear to another machine")]
    ApiUrlInsecure { given: String },
    #[error("full report URL {given:?} is not an http:// or https:// URL")]
    FullReportUrl { given: String },
}

/// A repository, `OWNER/NAME`, checked against GitHub's naming rules so that it can be put
/// in a URL path as it is (no `/`, `?`, `#`, `%` or `..` can sneak in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    owner: String,
    name: String,
}

impl Repo {
    pub fn parse(text: &str) -> Result<Repo, Error> {
        let invalid = || Error::Repo {
            given: text.to_owned(),
        };
        let (owner, name) = text.split_once('/').ok_or_else(invalid)?;
        // Owners: letters, digits, `-` and `_` (enterprise-managed users), at most 39.
        // Repositories: letters, digits, `-`, `_`, `.`, at most 100, not `.` or `..`.
        let owner_ok = (1..=39).contains(&owner.len())
            && owner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let name_ok = (1..=100).contains(&name.len())
            && name != "."
            && name != ".."
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if owner_ok && name_ok {
            Ok(Repo {
                owner: owner.to_owned(),
                name: name.to_owned(),
            })
        } else {
            Err(invalid())
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// A pull request (its comments are those of the issue with the same number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub repo: Repo,
    pub number: u64,
}

impl fmt::Display for PullRequest {
    /// `OWNER/NAME#N`, as GitHub writes a cross-repository reference.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.repo, self.number)
    }
}

/// The REST API's base URL (`https://api.github.com`, or `https://HOST/api/v3` for GitHub
/// Enterprise Server), without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiUrl(String);

/// GitHub's public API, when `GITHUB_API_URL` is not set.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

impl ApiUrl {
    /// Plain `http://` is accepted only for a loopback address (a local test server or a
    /// tunnel): anywhere else the token would cross the network in clear.
    pub fn parse(text: &str) -> Result<ApiUrl, Error> {
        let trimmed = text.trim().trim_end_matches('/');
        let bad = || Error::ApiUrl {
            given: text.to_owned(),
        };
        if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        if let Some(rest) = trimmed.strip_prefix("https://") {
            return if host(rest).is_empty() {
                Err(bad())
            } else {
                Ok(ApiUrl(trimmed.to_owned()))
            };
        }
        let rest = trimmed.strip_prefix("http://").ok_or_else(bad)?;
        match host(rest) {
            "" => Err(bad()),
            "localhost" | "[::1]" => Ok(ApiUrl(trimmed.to_owned())),
            h if h.starts_with("127.") && h.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
                Ok(ApiUrl(trimmed.to_owned()))
            }
            _ => Err(Error::ApiUrlInsecure {
                given: text.to_owned(),
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ApiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The host of `rest` (a URL after its scheme): what comes before the path, without user
/// information and port.
fn host(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    if host_port.starts_with('[') {
        // An IPv6 literal keeps its brackets; the port, if any, follows them.
        return host_port
            .find(']')
            .and_then(|end| host_port.get(..=end))
            .unwrap_or(host_port);
    }
    host_port.split(':').next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_accepts_owner_slash_name() {
        let repo = Repo::parse("octo-org/fleet.config_2").unwrap();
        assert_eq!(repo.owner(), "octo-org");
        assert_eq!(repo.name(), "fleet.config_2");
        assert_eq!(repo.to_string(), "octo-org/fleet.config_2");
    }

    #[test]
    fn repo_refuses_what_could_escape_the_url_path() {
        for given in [
            "",
            "fleet",
            "/fleet",
            "octo/",
            "octo/fleet/extra",
            "octo/..",
            "octo/.",
            "../fleet",
            "octo/fle et",
            "octo/fleet?x=1",
            "octo/fleet#1",
            "octo/fle%2f",
            "https://github.com/octo/fleet",
        ] {
            assert!(Repo::parse(given).is_err(), "{given:?} was accepted");
        }
    }

    #[test]
    fn pull_request_displays_as_a_reference() {
        let pr = PullRequest {
            repo: Repo::parse("octo/fleet").unwrap(),
            number: 42,
        };
        assert_eq!(pr.to_string(), "octo/fleet#42");
    }

    #[test]
    fn api_url_drops_the_trailing_slash() {
        assert_eq!(
            ApiUrl::parse("https://ghe.example.com/api/v3/")
                .unwrap()
                .as_str(),
            "https://ghe.example.com/api/v3"
        );
        assert_eq!(
            ApiUrl::parse(DEFAULT_API_URL).unwrap().as_str(),
            DEFAULT_API_URL
        );
    }

    #[test]
    fn api_url_allows_plain_http_only_to_loopback() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost/api",
            "http://[::1]:9000",
        ] {
            assert!(ApiUrl::parse(ok).is_ok(), "{ok} was refused");
        }
        for insecure in [
            "http://api.github.com",
            "http://10.0.0.5",
            "http://127.0.0.1.evil.example",
            "http://localhost@evil.example",
        ] {
            assert!(
                matches!(ApiUrl::parse(insecure), Err(Error::ApiUrlInsecure { .. })),
                "{insecure} was not refused as insecure"
            );
        }
        for bad in ["api.github.com", "ftp://x", "https://", "https://a b"] {
            assert!(
                matches!(ApiUrl::parse(bad), Err(Error::ApiUrl { .. })),
                "{bad} was accepted"
            );
        }
    }
}
