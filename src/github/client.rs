//! The GitHub REST calls behind `drover comment`: list a pull request's comments page by page,
//! create one, update one. Blocking (ureq, with rustls on ring and Mozilla's roots from
//! webpki-roots, so a static binary needs no system certificates); every request is bounded in
//! time and in how much of the answer it reads. Which comment to touch is `sticky`'s decision.
//!
//! The token goes into the `Authorization` header and nowhere else: not into errors, not into
//! logs (`cli::config` silences the HTTP layer's wire dump), and it is masked in what GitHub
//! answers. Proxies: ureq honours `ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY`
//! itself, as curl does.

use std::time::Duration;

use serde::Deserialize;

use crate::github::sticky::{self, Comment, Decision, Marker};
use crate::github::{ApiUrl, PullRequest, Repo};
use crate::secret::{Redactor, Secret};

/// Sent with every request, as GitHub asks.
pub const USER_AGENT: &str = concat!("drover/", env!("CARGO_PKG_VERSION"));
const API_VERSION: &str = "2022-11-28";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// All one request may take, from connecting to the end of the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A page of 100 comments of up to 65,536 characters each stays under this.
const MAX_ANSWER_BYTES: u64 = 10 * 1024 * 1024;
/// What is read of an error answer, for its message.
const MAX_ERROR_BYTES: u64 = 64 * 1024;
/// Comments per page when listing, GitHub's maximum.
pub const PER_PAGE: usize = 100;
/// Pages listed at most while looking for drover's comment.
pub const MAX_PAGES: u32 = 50;
/// What is kept of GitHub's message in an error.
const MAX_MESSAGE_CHARS: usize = 300;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A request that did not do its job. `request` is the method and the path under the API
/// URL (`GET /repos/o/r/issues/7/comments?per_page=100&page=1`); `message` is what GitHub
/// said, made printable and short, with the token masked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the GitHub API at {api} for {request}")]
    Network {
        api: String,
        request: String,
        source: Box<ureq::Error>,
    },
    #[error("the GitHub API at {api} did not answer {request} within {secs} s")]
    Timeout {
        api: String,
        request: String,
        secs: u64,
        source: Box<ureq::Error>,
    },
    #[error("GitHub does not accept the token (401 on {request}: {message})")]
    Unauthorized { request: String, message: String },
    #[error("the token may not {request} (403: {message})")]
    Forbidden { request: String, message: String },
    #[error("GitHub's rate limit stopped {request} ({status}: {message})")]
    RateLimited {
        request: String,
        status: u16,
        message: String,
    },
    #[error("GitHub found nothing at {request} (404: {message})")]
    NotFound { request: String, message: String },
    #[error("GitHub refused {request} (422: {message})")]
    Unprocessable { request: String, message: String },
    #[error("GitHub answered {request} with {status}: {message}")]
    Status {
        request: String,
        status: u16,
        message: String,
    },
    #[error("cannot read GitHub's answer to {request}")]
    Read {
        request: String,
        source: Box<ureq::Error>,
    },
    #[error("GitHub's answer to {request} is not the JSON drover expects")]
    Decode {
        request: String,
        source: serde_json::Error,
    },
    #[error("{pr} has more than {max} comments and none of the first {max} is drover's")]
    TooManyComments { pr: String, max: usize },
}

/// What `post` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Updated,
    /// The comment already said exactly this.
    Unchanged,
}

/// The outcome of `post`: what was done, to which comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub action: Action,
    pub comment: Comment,
}

/// Talks to one GitHub API with one token.
#[derive(Debug)]
pub struct Client {
    agent: ureq::Agent,
    api: ApiUrl,
    token: Secret,
    /// Masks the token in anything GitHub sends back before it reaches an error.
    redactor: Redactor,
}

/// A request's method, with the comment body it sends.
#[derive(Debug, Clone, Copy)]
enum Method<'a> {
    Get,
    Post(&'a str),
    Patch(&'a str),
}

impl Method<'_> {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post(_) => "POST",
            Method::Patch(_) => "PATCH",
        }
    }
}

/// The headers every request carries.
fn with_headers<B>(
    builder: ureq::RequestBuilder<B>,
    authorization: &str,
) -> ureq::RequestBuilder<B> {
    builder
        .header("Authorization", authorization)
        .header("Accept", "application/vnd.github+json")
        .header("X-GitHub-Api-Version", API_VERSION)
}

/// A comment body as the API takes it.
fn comment_json(body: &str) -> String {
    serde_json::json!({ "body": body }).to_string()
}

/// A comment as the API returns it; other fields are ignored.
#[derive(Debug, Deserialize)]
struct WireComment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    html_url: String,
}

impl From<WireComment> for Comment {
    fn from(wire: WireComment) -> Comment {
        Comment {
            id: wire.id,
            body: wire.body.unwrap_or_default(),
            url: wire.html_url,
        }
    }
}

impl Client {
    pub fn new(api: ApiUrl, token: Secret) -> Client {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            // Error answers carry GitHub's message; they are read, not turned into errors
            // blindly. A redirect would drop the token (or, for a POST, the body): say so.
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(USER_AGENT)
            .build();
        let redactor = Redactor::new([&token]);
        Client {
            agent: ureq::Agent::new_with_config(config),
            api,
            token,
            redactor,
        }
    }

    /// Creates the pull request's comment for `marker`, or updates it in place when it
    /// exists (and leaves it alone when it already says `body`).
    pub fn post(&self, pr: &PullRequest, marker: &Marker, body: &str) -> Result<Posted> {
        let found = self.find(pr, marker)?;
        let (action, comment) = match sticky::decide(found.as_ref(), body) {
            Decision::Create => (Action::Created, self.create(pr, body)?),
            Decision::Update(old) => (Action::Updated, self.update(&pr.repo, old.id, body)?),
            Decision::Unchanged(old) => (Action::Unchanged, old.clone()),
        };
        Ok(Posted { action, comment })
    }

    /// The oldest comment that `marker` posted, looking through the listing a page at a time
    /// until a page is not full.
    fn find(&self, pr: &PullRequest, marker: &Marker) -> Result<Option<Comment>> {
        for page in 1..=MAX_PAGES {
            let comments = self.list(pr, page)?;
            if let Some(found) = sticky::find(&comments, marker) {
                return Ok(Some(found.clone()));
            }
            if comments.len() < PER_PAGE {
                return Ok(None);
            }
        }
        Err(Error::TooManyComments {
            pr: pr.to_string(),
            max: MAX_PAGES as usize * PER_PAGE,
        })
    }

    fn list(&self, pr: &PullRequest, page: u32) -> Result<Vec<Comment>> {
        let path = format!(
            "/repos/{}/{}/issues/{}/comments?per_page={PER_PAGE}&page={page}",
            pr.repo.owner(),
            pr.repo.name(),
            pr.number
        );
        let comments: Vec<WireComment> = self.call(Method::Get, &path)?;
        Ok(comments.into_iter().map(Comment::from).collect())
    }

    fn create(&self, pr: &PullRequest, body: &str) -> Result<Comment> {
        let path = format!(
            "/repos/{}/{}/issues/{}/comments",
            pr.repo.owner(),
            pr.repo.name(),
            pr.number
        );
        let comment: WireComment = self.call(Method::Post(body), &path)?;
        Ok(comment.into())
    }

    fn update(&self, repo: &Repo, id: u64, body: &str) -> Result<Comment> {
        let path = format!(
            "/repos/{}/{}/issues/comments/{id}",
            repo.owner(),
            repo.name()
        );
        let comment: WireComment = self.call(Method::Patch(body), &path)?;
        Ok(comment.into())
    }

    /// One request. A success answer is decoded as `T`; any other is turned into the error
    /// its status means.
    fn call<T: serde::de::DeserializeOwned>(&self, method: Method<'_>, path: &str) -> Result<T> {
        let url = format!("{}{path}", self.api);
        let request = format!("{} {path}", method.as_str());
        let authorization = format!("Bearer {}", self.token.expose());
        let sent = match method {
            Method::Get => with_headers(self.agent.get(&url), &authorization).call(),
            Method::Post(body) => with_headers(self.agent.post(&url), &authorization)
                .header("Content-Type", "application/json")
                .send(comment_json(body)),
            Method::Patch(body) => with_headers(self.agent.patch(&url), &authorization)
                .header("Content-Type", "application/json")
                .send(comment_json(body)),
        };
        let mut response = sent.map_err(|source| self.unanswered(&request, source))?;
        let status = response.status().as_u16();
        tracing::debug!(%request, status, "GitHub answered");
        if !(200..300).contains(&status) {
            let rate_limited = response
                .headers()
                .get("x-ratelimit-remaining")
                .is_some_and(|v| v.as_bytes() == b"0");
            let text = response
                .body_mut()
                .with_config()
                .limit(MAX_ERROR_BYTES)
                .lossy_utf8(true)
                .read_to_string()
                .unwrap_or_default();
            return Err(self.refused(request, status, rate_limited, &text));
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .map_err(|source| match source {
                ureq::Error::Timeout(_) => self.unanswered(&request, source),
                source => Error::Read {
                    request: request.clone(),
                    source: Box::new(source),
                },
            })?;
        serde_json::from_str(&text).map_err(|source| Error::Decode { request, source })
    }

    /// No answer (or not all of it) in time, or none at all.
    fn unanswered(&self, request: &str, source: ureq::Error) -> Error {
        let api = self.api.to_string();
        let request = request.to_owned();
        match source {
            ureq::Error::Timeout(_) => Error::Timeout {
                api,
                request,
                secs: REQUEST_TIMEOUT.as_secs(),
                source: Box::new(source),
            },
            source => Error::Network {
                api,
                request,
                source: Box::new(source),
            },
        }
    }

    /// The error an answer other than 2xx means.
    fn refused(&self, request: String, status: u16, rate_limited: bool, text: &str) -> Error {
        let message = self.message(text);
        match status {
            401 => Error::Unauthorized { request, message },
            403 | 429 if rate_limited || status == 429 || message.contains("rate limit") => {
                Error::RateLimited {
                    request,
                    status,
                    message,
                }
            }
            403 => Error::Forbidden { request, message },
            404 => Error::NotFound { request, message },
            422 => Error::Unprocessable { request, message },
            _ => Error::Status {
                request,
                status,
                message,
            },
        }
    }

    /// GitHub's `message` and the `errors` under it (or the start of a body that is not
    /// JSON), printable, at most `MAX_MESSAGE_CHARS`, the token masked.
    fn message(&self, text: &str) -> String {
        let said = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) => {
                let mut parts: Vec<String> = value
                    .get("message")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
                    .into_iter()
                    .collect();
                let errors = value.get("errors").and_then(serde_json::Value::as_array);
                for error in errors.into_iter().flatten() {
                    let part = match error {
                        serde_json::Value::String(text) => Some(text.as_str()),
                        other => other
                            .get("message")
                            .or_else(|| other.get("code"))
                            .and_then(serde_json::Value::as_str),
                    };
                    parts.extend(part.map(str::to_owned));
                }
                parts.join("; ")
            }
            Err(_) => text.split_whitespace().collect::<Vec<_>>().join(" "),
        };
        let said = self.redactor.redact(&said);
        let said = crate::report::style::printable(&said);
        let mut short: String = said.chars().take(MAX_MESSAGE_CHARS).collect();
        if said.chars().nth(MAX_MESSAGE_CHARS).is_some() {
            short.push('…');
        }
        if short.is_empty() {
            "no message".to_owned()
        } else {
            short
        }
    }
}
