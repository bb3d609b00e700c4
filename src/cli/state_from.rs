//! `--state-from SOURCE`: the recorded state read from a daemon's `GET /state` (an
//! `http://` or `https://` URL, with the bearer token from `DROVER_API_TOKEN`) or from a
//! snapshot file `drover state pull` wrote. Nothing is written anywhere.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::snapshot::StateSnapshot;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// All the fetch may take, from connecting to the end of the snapshot.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest snapshot read: a fleet of 50,000 instances with their recorded file contents.
const MAX_SNAPSHOT_BYTES: u64 = 512 * 1024 * 1024;
/// What is kept of an error answer, for its message.
const MAX_ERROR_CHARS: usize = 300;
/// What is read of an error answer at most.
const MAX_ERROR_BYTES: u64 = 64 * 1024;

/// Why no snapshot could be read. Errors name the URL without its query or credentials.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach {url}")]
    Network { url: String, source: ureq::Error },
    #[error("{url} refused the token (401): {message}")]
    Unauthorized {
        url: String,
        message: String,
        token_set: bool,
    },
    #[error("{url} does not serve a state snapshot (404): {message}")]
    NotFound { url: String, message: String },
    #[error(
        "{url} redirects to {location}; drover does not follow redirects (they would carry the token elsewhere)"
    )]
    Redirect { url: String, location: String },
    #[error("{url} answered {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("cannot read the snapshot from {url}")]
    Read { url: String, source: std::io::Error },
    #[error("cannot read {path}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the snapshot from {from} is larger than {MAX_SNAPSHOT_BYTES} bytes")]
    TooLarge { from: String },
    #[error("cannot use the snapshot from {from}")]
    Snapshot {
        from: String,
        source: crate::snapshot::ReadError,
    },
}

impl Error {
    pub fn help(&self) -> Option<String> {
        Some(match self {
            Error::Network { .. } => "check the URL and that the daemon runs with --listen; a reverse proxy in front must pass /state through".to_owned(),
            Error::Unauthorized { token_set: false, .. } => "set DROVER_API_TOKEN to the token the daemon was started with".to_owned(),
            Error::Unauthorized { .. } => "DROVER_API_TOKEN differs from the daemon's; use the token it was started with".to_owned(),
            Error::NotFound { .. } => "give the daemon's base URL or its /state URL; the daemon serves /state only when started with DROVER_API_TOKEN set".to_owned(),
            Error::Redirect { .. } => "give the URL it redirects to (an https:// one, if a proxy sends http to https)".to_owned(),
            Error::Status { .. } | Error::Read { .. } => "try again; if it persists, look at the daemon's log".to_owned(),
            Error::File { .. } => "give an http(s):// URL of a daemon, or a file `drover state pull` wrote".to_owned(),
            Error::TooLarge { .. } => "this is not a drover state snapshot, or the fleet is beyond what --state-from reads".to_owned(),
            Error::Snapshot { .. } => "give a daemon's /state URL or a file `drover state pull` wrote, from a drover as new as this one".to_owned(),
        })
    }
}

/// Where a snapshot comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Url(String),
    File(PathBuf),
}

impl Source {
    /// An `http(s)://` URL is a daemon (its base URL gets `/state`); anything else a file.
    pub fn parse(text: &str) -> Source {
        let lower = text.to_ascii_lowercase();
        let Some(rest) = lower
            .strip_prefix("http://")
            .or_else(|| lower.strip_prefix("https://"))
        else {
            return Source::File(PathBuf::from(text));
        };
        let has_path = rest
            .split_once('/')
            .is_some_and(|(_, path)| !path.is_empty());
        if has_path {
            Source::Url(text.to_owned())
        } else {
            Source::Url(format!("{}/state", text.trim_end_matches('/')))
        }
    }
}

/// The URL as it may be shown: no userinfo, no query.
fn shown(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or(url);
    match without_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if path.is_empty() {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{path}")
            }
        }
        None => without_query.to_owned(),
    }
}

/// Reads the snapshot `source` names; `token` is sent as `Authorization: Bearer`.
pub fn fetch(source: &Source, token: Option<&[u8]>) -> Result<(StateSnapshot, String), Error> {
    let (bytes, from) = match source {
        Source::File(path) => (read_file(path)?, path.display().to_string()),
        Source::Url(url) => (get(url, token)?, shown(url)),
    };
    let snapshot = StateSnapshot::from_json(&bytes).map_err(|source| Error::Snapshot {
        from: from.clone(),
        source,
    })?;
    Ok((snapshot, from))
}

fn read_file(path: &PathBuf) -> Result<Vec<u8>, Error> {
    // A FIFO or a device would block the read (or never end): only a regular file is read.
    let regular = std::fs::metadata(path).map_err(|source| Error::File {
        path: path.clone(),
        source,
    })?;
    if !regular.is_file() {
        return Err(Error::File {
            path: path.clone(),
            source: std::io::Error::other("it is not a regular file"),
        });
    }
    let file = std::fs::File::open(path).map_err(|source| Error::File {
        path: path.clone(),
        source,
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_SNAPSHOT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| Error::File {
            path: path.clone(),
            source,
        })?;
    if bytes.len() as u64 > MAX_SNAPSHOT_BYTES {
        return Err(Error::TooLarge {
            from: path.display().to_string(),
        });
    }
    Ok(bytes)
}

fn get(url: &str, token: Option<&[u8]>) -> Result<Vec<u8>, Error> {
    let shown_url = shown(url);
    let config = ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(FETCH_TIMEOUT))
        .http_status_as_error(false)
        // A redirect would carry the token elsewhere.
        .max_redirects(0)
        .user_agent(concat!("drover/", env!("CARGO_PKG_VERSION")))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let mut request = agent.get(url).header("Accept", "application/json");
    if let Some(token) = token {
        let token = String::from_utf8_lossy(token);
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let mut response = request.call().map_err(|source| Error::Network {
        url: shown_url.clone(),
        source,
    })?;
    let status = response.status().as_u16();
    if (300..400).contains(&status) {
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map_or_else(|| "(no Location)".to_owned(), shown);
        return Err(Error::Redirect {
            url: shown_url,
            location,
        });
    }
    // An error answer is read only as far as its message needs.
    let limit = if status == 200 {
        MAX_SNAPSHOT_BYTES + 1
    } else {
        MAX_ERROR_BYTES
    };
    let mut reader = response.body_mut().as_reader().take(limit);
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|source| Error::Read {
            url: shown_url.clone(),
            source,
        })?;
    if status == 200 {
        if bytes.len() as u64 > MAX_SNAPSHOT_BYTES {
            return Err(Error::TooLarge { from: shown_url });
        }
        return Ok(bytes);
    }
    let message: String = String::from_utf8_lossy(&bytes)
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_CHARS)
        .collect();
    Err(match status {
        401 => Error::Unauthorized {
            url: shown_url,
            message,
            token_set: token.is_some(),
        },
        404 => Error::NotFound {
            url: shown_url,
            message,
        },
        _ => Error::Status {
            url: shown_url,
            status,
            message,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_gets_the_state_path_and_anything_else_is_a_file() {
        assert_eq!(
            Source::parse("http://127.0.0.1:9180"),
            Source::Url("http://127.0.0.1:9180/state".to_owned())
        );
        assert_eq!(
            Source::parse("https://drover.example.com/"),
            Source::Url("https://drover.example.com/state".to_owned())
        );
        assert_eq!(
            Source::parse("https://example.com/fleet/state"),
            Source::Url("https://example.com/fleet/state".to_owned())
        );
        assert_eq!(
            Source::parse("state.json"),
            Source::File(PathBuf::from("state.json"))
        );
    }

    #[test]
    fn urls_are_shown_without_credentials_or_query() {
        assert_eq!(
            shown("https://user:pw@example.com/state?token=x"),
            "https://example.com/state"
        );
        assert_eq!(shown("http://example.com"), "http://example.com");
    }
}
