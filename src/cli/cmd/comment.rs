//! `drover comment --repo OWNER/NAME --pr N [FILE|-]`: posts a Markdown report to a pull
//! request as one comment that later runs update in place. A thin adapter: check the
//! arguments and the environment, read the report, compose the body (`github::sticky`), post
//! it (`github::client`), say what was done.

use std::io::{IsTerminal as _, Read as _};
use std::path::Path;

use crate::cli::Outcome;
use crate::cli::args::CommentArgs;
use crate::cli::config::{self, Config};
use crate::github::client::{self, Action, Client};
use crate::github::sticky::{self, FullReport, Marker};
use crate::github::{ApiUrl, PullRequest, Repo};
use crate::report::style::printable;
use crate::secret::Redactor;

/// Largest report read; a comment shows at most 65,536 characters of it anyway.
pub const MAX_REPORT_BYTES: u64 = 16 * 1024 * 1024;

/// Why a report could not be posted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("GITHUB_TOKEN is not set")]
    MissingToken,
    #[error(transparent)]
    Input(#[from] crate::github::Error),
    #[error("no report given, and standard input is a terminal")]
    NoInput,
    #[error("cannot read the report {input}")]
    ReadReport {
        input: String,
        source: std::io::Error,
    },
    #[error("the report {input} is larger than {} MiB", MAX_REPORT_BYTES / 1024 / 1024)]
    TooLarge { input: String },
    #[error("the report {input} is not UTF-8 text")]
    NotText { input: String },
    #[error("the report {input} is empty: there is nothing to post")]
    Empty { input: String },
    #[error("cannot post the comment on {pr}")]
    Post { pr: String, source: client::Error },
}

impl Error {
    pub fn help(&self) -> Option<String> {
        use crate::github::Error as Input;
        let text = match self {
            Error::MissingToken => {
                "set GITHUB_TOKEN to a token that may write the pull request's comments; in a \
                 GitHub Actions workflow: `env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}` and \
                 `permissions: pull-requests: write`"
            }
            Error::Input(Input::Repo { .. }) => {
                "give the repository as OWNER/NAME, for example --repo octo-org/fleet"
            }
            Error::Input(Input::Marker { .. }) => {
                "a marker name is letters, digits, '-', '_' or '.' (at most 64), for example \
                 --marker drift"
            }
            Error::Input(Input::ApiUrl { .. }) => {
                "set GITHUB_API_URL to https://api.github.com (or leave it unset), or to \
                 https://HOST/api/v3 for GitHub Enterprise Server"
            }
            Error::Input(Input::ApiUrlInsecure { .. }) => {
                "use https:// in GITHUB_API_URL; plain http:// is only for a server on this \
                 machine (127.0.0.1, localhost)"
            }
            Error::Input(Input::FullReportUrl { .. }) => {
                "give one link, for example --full-report-url \
                 https://github.com/OWNER/NAME/actions/runs/ID"
            }
            Error::NoInput => {
                "give the report as FILE, or pipe it in: drover plan --format markdown DIR | \
                 drover comment --repo OWNER/NAME --pr N"
            }
            Error::ReadReport { .. } => {
                "check the path, or pipe the report in and pass `-` (or no FILE)"
            }
            Error::TooLarge { .. } => {
                "a comment shows at most 65,536 characters: post a summary (such as `drover plan \
                 --format markdown`) and link the full report with --full-report-url"
            }
            Error::NotText { .. } => {
                "post Markdown, such as the output of `drover plan --format markdown` or `drover \
                 drift --format markdown` (a plan saved with `plan -o` is for `drover apply`)"
            }
            Error::Empty { .. } => "check that the command writing the report succeeded",
            Error::Post { source, .. } => return api_help(source),
        };
        Some(text.to_owned())
    }
}

/// What to do about a request GitHub did not carry out.
fn api_help(error: &client::Error) -> Option<String> {
    use client::Error as Api;
    let text = match error {
        Api::Network { api, .. } => {
            return Some(format!(
                "check that this machine reaches {api} (a proxy is taken from HTTPS_PROXY or \
                 ALL_PROXY, and NO_PROXY lists hosts reached directly), or set GITHUB_API_URL"
            ));
        }
        Api::Timeout { .. } => "GitHub was slow or out of reach: run again",
        Api::Unauthorized { .. } => {
            "GITHUB_TOKEN is not a valid token (mistyped, expired or revoked); in GitHub Actions, \
             pass `${{ secrets.GITHUB_TOKEN }}`"
        }
        Api::Forbidden { .. } => {
            "the token needs write access to the pull request's comments: `permissions: \
             pull-requests: write` (or `issues: write`) in a GitHub Actions workflow, 'Pull \
             requests: Read and write' for a fine-grained token, the `repo` scope for a classic \
             one; workflows run for a fork's pull request only get a read-only token, and a \
             locked conversation takes no comments"
        }
        Api::RateLimited { .. } => "wait until GitHub's rate limit resets, then run again",
        Api::NotFound { .. } => {
            "check --repo and --pr; GitHub also answers 404 when the token cannot see the \
             repository; for GitHub Enterprise Server, set GITHUB_API_URL=https://HOST/api/v3"
        }
        Api::Unprocessable { .. } => {
            "GitHub's message says which part of the request it refused; run again, and if it \
             persists, post a shorter or simpler report"
        }
        Api::Status { status, .. } if (300..400).contains(status) => {
            "the repository moved or was renamed: pass its new OWNER/NAME"
        }
        Api::Status { status, .. } if *status >= 500 => "GitHub had a problem: run again later",
        Api::Status { .. } => return None,
        Api::Read { .. } | Api::Decode { .. } => {
            "check that GITHUB_API_URL is GitHub's REST API (https://api.github.com, or \
             https://HOST/api/v3 for GitHub Enterprise Server), then run again"
        }
        Api::TooManyComments { .. } => "pass another --marker to start a new comment",
    };
    Some(text.to_owned())
}

pub fn run(args: &CommentArgs, config: &Config) -> Result<Outcome, crate::cli::Error> {
    // Everything that can be checked is checked before stdin is consumed.
    let pr = PullRequest {
        repo: Repo::parse(&args.repo).map_err(Error::from)?,
        number: args.pr,
    };
    let marker = Marker::new(&args.marker).map_err(Error::from)?;
    let link = args
        .full_report_url
        .as_deref()
        .map(FullReport::url)
        .transpose()
        .map_err(Error::from)?;
    let env = config::github_env();
    let api = ApiUrl::parse(&env.api_url).map_err(Error::from)?;
    let token = env.token.ok_or(Error::MissingToken)?;
    let (report, input) = read_report(args.file.as_deref())?;
    // Whatever the report holds, the token is never posted.
    let report = Redactor::new([&token]).redact(&report);
    let body = sticky::compose(&report, &marker, &link.unwrap_or(input));
    if let Some(cut) = body.cut {
        config.output.stderr(&format!(
            "{}: the report was cut to fit GitHub's comment limit: {} of its {} characters are \
             not shown{}\n",
            config.stderr_style.warning("warning"),
            cut.chars,
            cut.total_chars,
            if args.full_report_url.is_some() {
                " (the note links the full report)"
            } else {
                "; pass --full-report-url to link the full report"
            }
        ));
    }
    let posted = Client::new(api, token)
        .post(&pr, &marker, &body.text)
        .map_err(|source| Error::Post {
            pr: pr.to_string(),
            source,
        })?;
    let what = match posted.action {
        Action::Created => "created comment",
        Action::Updated => "updated comment",
        Action::Unchanged => "unchanged comment",
    };
    config.output.stdout(&format!(
        "{what} {} on {pr}: {}\n",
        posted.comment.id,
        printable(&posted.comment.url)
    ));
    Ok(Outcome::Success)
}

/// The report from FILE, or from stdin for `-` or no FILE (unless stdin is a terminal, which
/// would wait for typing), and how the note of a cut body should point at it.
fn read_report(file: Option<&Path>) -> Result<(String, FullReport), Error> {
    match file {
        Some(path) if path != Path::new("-") => {
            let name = path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            Ok((read_file(path)?, FullReport::File(name)))
        }
        None if std::io::stdin().is_terminal() => Err(Error::NoInput),
        Some(_) | None => Ok((read_stdin()?, FullReport::Stdin)),
    }
}

/// Reads a report file, at most `MAX_REPORT_BYTES`.
fn read_file(path: &Path) -> Result<String, Error> {
    let input = path.display().to_string();
    let read = std::fs::File::open(path).and_then(read_bounded);
    let bytes = read.map_err(|source| Error::ReadReport {
        input: input.clone(),
        source,
    })?;
    into_report(bytes, input)
}

/// Reads the report from standard input, at most `MAX_REPORT_BYTES`.
fn read_stdin() -> Result<String, Error> {
    let input = "on standard input".to_owned();
    let bytes = read_bounded(std::io::stdin().lock()).map_err(|source| Error::ReadReport {
        input: input.clone(),
        source,
    })?;
    into_report(bytes, input)
}

/// Up to one byte more than the limit, so that a report over it is recognised.
fn read_bounded(reader: impl std::io::Read) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(MAX_REPORT_BYTES + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn into_report(bytes: Vec<u8>, input: String) -> Result<String, Error> {
    if bytes.len() as u64 > MAX_REPORT_BYTES {
        return Err(Error::TooLarge { input });
    }
    let text = String::from_utf8(bytes).map_err(|_| Error::NotText {
        input: input.clone(),
    })?;
    if text.trim().is_empty() {
        return Err(Error::Empty { input });
    }
    Ok(text)
}
