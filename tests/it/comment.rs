//! `drover comment` against a fake GitHub REST API on 127.0.0.1: the comment is created once
//! and updated after, a report over GitHub's limit is cut and still posted, a wrong token is
//! refused with a clear error, and comments without drover's marker are never touched.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::{Value, json};

use crate::harness::{Drover, Run};

const TOKEN: &str = "ghs_fake0123456789abcdefTOKEN";
/// Whom the fake says `TOKEN` belongs to.
const BOT: &str = "drover-bot";
const REPO: &str = "octo/fleet";
const PR: u64 = 7;
/// GitHub's cap on a comment body.
const GITHUB_MAX_BODY: usize = 65_536;

#[derive(Debug, Clone)]
struct FakeComment {
    id: u64,
    user: String,
    body: String,
}

#[derive(Debug, Default)]
struct State {
    comments: Vec<FakeComment>,
    next_id: u64,
    /// Every request, as `METHOD PATH`.
    requests: Vec<String>,
    /// Requests that broke the API's rules (missing headers, a malformed body).
    violations: Vec<String>,
}

/// A fake of the three endpoints `drover comment` uses, for pull request `REPO#PR`, served
/// one connection at a time from a thread the value owns.
struct FakeGitHub {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeGitHub {
    fn start() -> FakeGitHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            next_id: 1000,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        serve(stream, &state);
                    }
                }
            })
        };
        FakeGitHub {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a comment by `user`, as if posted earlier; returns its id.
    fn seed(&self, user: &str, body: &str) -> u64 {
        let mut state = self.state.lock().unwrap();
        state.next_id += 1;
        let id = state.next_id;
        state.comments.push(FakeComment {
            id,
            user: user.to_owned(),
            body: body.to_owned(),
        });
        id
    }

    fn comments(&self) -> Vec<FakeComment> {
        self.state.lock().unwrap().comments.clone()
    }

    /// The requests so far, and forgets them.
    fn take_requests(&self) -> Vec<String> {
        let mut state = self.state.lock().unwrap();
        assert_eq!(state.violations, Vec::<String>::new(), "API rules broken");
        std::mem::take(&mut state.requests)
    }

    /// `drover comment --repo REPO --pr PR` against this fake, with `TOKEN`.
    fn drover(&self) -> Drover {
        Drover::new()
            .env("GITHUB_API_URL", &self.url())
            .env("GITHUB_TOKEN", TOKEN)
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .args(["comment", "--repo", REPO, "--pr", &PR.to_string()])
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One request: reads it, answers it, closes the connection.
fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let length: usize = headers
        .get("content-length")
        .map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap(), parts.next().unwrap());
    let (status, answer) = answer(method, path, &headers, &body, &mut state.lock().unwrap());
    let text = answer.to_string();
    let reason = match status {
        200 => "OK",
        201 => "Created",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Unprocessable Entity",
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.flush();
}

/// What GitHub would answer, for the three endpoints of `REPO#PR`.
fn answer(
    method: &str,
    path: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    state: &mut State,
) -> (u16, Value) {
    state.requests.push(format!("{method} {path}"));
    let header = |name: &str| headers.get(name).map(String::as_str);
    if header("authorization") != Some(&format!("Bearer {TOKEN}")) {
        return (401, json!({"message": "Bad credentials"}));
    }
    let expected = [
        ("accept", "application/vnd.github+json"),
        ("x-github-api-version", "2022-11-28"),
    ];
    for (name, value) in expected {
        if header(name) != Some(value) {
            state
                .violations
                .push(format!("{method} {path}: {name} is {:?}", header(name)));
        }
    }
    if !header("user-agent").is_some_and(|ua| ua.starts_with("drover/")) {
        state.violations.push(format!(
            "{method} {path}: user-agent {:?}",
            header("user-agent")
        ));
    }
    let list = format!("/repos/{REPO}/issues/{PR}/comments");
    let one = format!("/repos/{REPO}/issues/comments/");
    match method {
        "GET" => {
            let Some(query) = path.strip_prefix(&format!("{list}?")) else {
                return (404, json!({"message": "Not Found"}));
            };
            let page: usize = query
                .strip_prefix("per_page=100&page=")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if page == 0 {
                state.violations.push(format!("GET {path}: bad paging"));
            }
            let shown: Vec<Value> = state
                .comments
                .iter()
                .skip(page.saturating_sub(1) * 100)
                .take(100)
                .map(wire)
                .collect();
            (200, Value::Array(shown))
        }
        "POST" | "PATCH" => {
            let text = match posted_body(method, path, headers, body) {
                Ok(text) => text,
                Err(violation) => {
                    state.violations.push(violation);
                    return (422, json!({"message": "Problems parsing JSON"}));
                }
            };
            if text.chars().count() > GITHUB_MAX_BODY {
                return (
                    422,
                    json!({"message": "Validation Failed", "errors": [{"resource": "IssueComment", "code": "custom", "field": "body", "message": "body is too long (maximum is 65536 characters)"}]}),
                );
            }
            if method == "POST" && path == list {
                state.next_id += 1;
                let comment = FakeComment {
                    id: state.next_id,
                    user: BOT.to_owned(),
                    body: text,
                };
                state.comments.push(comment.clone());
                return (201, wire(&comment));
            }
            let id: Option<u64> = path.strip_prefix(&one).and_then(|id| id.parse().ok());
            match state.comments.iter_mut().find(|c| Some(c.id) == id) {
                Some(comment) if method == "PATCH" && comment.user != BOT => {
                    state
                        .violations
                        .push(format!("PATCH {path}: a comment by {}", comment.user));
                    (
                        403,
                        json!({"message": "Must have admin rights to Repository."}),
                    )
                }
                Some(comment) if method == "PATCH" => {
                    comment.body = text;
                    (200, wire(comment))
                }
                _ => (404, json!({"message": "Not Found"})),
            }
        }
        _ => (404, json!({"message": "Not Found"})),
    }
}

/// The `body` of a create or update request, which must be JSON `{"body": "…"}`.
fn posted_body(
    method: &str,
    path: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> Result<String, String> {
    if headers.get("content-type").map(String::as_str) != Some("application/json") {
        return Err(format!(
            "{method} {path}: content-type {:?}",
            headers.get("content-type")
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("{method} {path}: {e}"))?;
    match value.as_object() {
        Some(object) if object.len() == 1 => object
            .get("body")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("{method} {path}: no string body")),
        _ => Err(format!("{method} {path}: {value}")),
    }
}

/// A comment as the REST API shows it.
fn wire(comment: &FakeComment) -> Value {
    json!({
        "id": comment.id,
        "node_id": "IC_fake",
        "html_url": format!("https://github.com/{REPO}/pull/{PR}#issuecomment-{}", comment.id),
        "body": comment.body,
        "user": {"login": comment.user, "type": "Bot"},
        "created_at": "2026-01-01T00:00:00Z",
        "author_association": "NONE",
    })
}

fn report_file(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[track_caller]
fn stdout_line(run: &Run) -> String {
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    run.stdout()
}

#[test]
fn comment_is_created_once_then_updated_in_place() {
    let github = FakeGitHub::start();
    let review = github.seed("alice", "Looks good, but see the plan.");
    let dir = tempfile::tempdir().unwrap();
    let first = report_file(&dir, "plan.md", "Plan: 1 to create.\n");

    let run = github.drover().arg_path(&first).run();
    let comments = github.comments();
    assert_eq!(comments.len(), 2);
    let ours = &comments[1];
    assert_eq!(
        stdout_line(&run),
        format!(
            "created comment {} on octo/fleet#7: https://github.com/octo/fleet/pull/7#issuecomment-{}\n",
            ours.id, ours.id
        )
    );
    assert_eq!(ours.body, "<!-- drover:comment -->\nPlan: 1 to create.\n");
    assert_eq!(
        github.take_requests(),
        [
            "GET /repos/octo/fleet/issues/7/comments?per_page=100&page=1",
            "POST /repos/octo/fleet/issues/7/comments",
        ]
    );

    let second = report_file(&dir, "plan.md", "Plan: 2 to update.\n");
    let run = github.drover().arg_path(&second).run();
    assert_eq!(
        stdout_line(&run),
        format!(
            "updated comment {} on octo/fleet#7: https://github.com/octo/fleet/pull/7#issuecomment-{}\n",
            ours.id, ours.id
        )
    );
    let comments = github.comments();
    assert_eq!(comments.len(), 2, "a second comment was added");
    assert_eq!(comments[1].id, ours.id);
    assert_eq!(
        comments[1].body,
        "<!-- drover:comment -->\nPlan: 2 to update.\n"
    );
    assert_eq!(comments[0].id, review);
    assert_eq!(comments[0].body, "Looks good, but see the plan.");
    assert_eq!(
        github.take_requests(),
        [
            "GET /repos/octo/fleet/issues/7/comments?per_page=100&page=1".to_owned(),
            format!("PATCH /repos/octo/fleet/issues/comments/{}", ours.id),
        ]
    );

    // The same report again: nothing to change, so nothing is sent.
    let run = github.drover().arg_path(&second).run();
    assert!(stdout_line(&run).starts_with(&format!("unchanged comment {} on", ours.id)));
    assert_eq!(
        github.take_requests(),
        ["GET /repos/octo/fleet/issues/7/comments?per_page=100&page=1"]
    );

    // Another marker keeps a comment of its own beside the first.
    let run = github
        .drover()
        .args(["--marker", "drift", "-"])
        .stdin("No drift.\n")
        .run();
    assert!(stdout_line(&run).starts_with("created comment"));
    let comments = github.comments();
    assert_eq!(comments.len(), 3);
    assert_eq!(comments[2].body, "<!-- drover:drift -->\nNo drift.\n");
    assert_eq!(
        comments[1].body,
        "<!-- drover:comment -->\nPlan: 2 to update.\n"
    );
}

#[test]
fn comment_cuts_a_report_over_githubs_limit_and_still_posts_it() {
    let github = FakeGitHub::start();
    let report = (0..7_000).fold(String::new(), |mut out, i| {
        let _ = writeln!(out, "| web-{i:04} |");
        out
    });
    assert_eq!(report.chars().count(), 91_000);
    let report = report.get(..70_000).unwrap().to_owned();

    let run = github
        .drover()
        .args(["--full-report-url", "https://ci.example/runs/42"])
        .stdin(report)
        .run();
    assert!(stdout_line(&run).starts_with("created comment"));
    assert!(
        run.stderr()
            .contains("warning: the report was cut to fit GitHub's comment limit: "),
        "{}",
        run.stderr()
    );
    let comments = github.comments();
    assert_eq!(comments.len(), 1);
    let body = &comments[0].body;
    assert!(body.chars().count() <= 65_535, "{}", body.chars().count());
    assert!(body.starts_with("<!-- drover:comment -->\n| web-0000 |\n"));
    let (kept, note) = body.split_once("\n\n> **Cut").unwrap();
    assert!(
        kept.ends_with(" |"),
        "not cut at a line boundary: {:?}",
        &kept[kept.len() - 20..]
    );
    assert!(
        note.contains(" of 70,000 characters (")
            && note.contains("The full report: https://ci.example/runs/42"),
        "{note}"
    );
}

#[test]
fn comment_with_a_wrong_token_fails_clearly_without_printing_it() {
    let github = FakeGitHub::start();
    let wrong = "ghp_revoked9876543210zyxwv";
    let run = github
        .drover()
        .env("GITHUB_TOKEN", wrong)
        .arg("-")
        .stdin("Plan: 1 to create.\n")
        .run();
    assert_eq!(run.code(), 1);
    assert_eq!(run.stdout(), "");
    let stderr = run.stderr();
    assert!(
        stderr.starts_with("error: cannot post the comment on octo/fleet#7\n  caused by: GitHub does not accept the token (401 on GET /repos/octo/fleet/issues/7/comments?per_page=100&page=1: Bad credentials)\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("help: GITHUB_TOKEN is not a valid token"),
        "{stderr}"
    );
    assert!(!stderr.contains(wrong), "the token was printed: {stderr}");
    assert!(github.comments().is_empty());
}

#[test]
fn comment_leaves_other_comments_alone_and_finds_its_own_on_a_later_page() {
    let github = FakeGitHub::start();
    // A person quoting the marker is not drover's comment: only a first line counts.
    let quote = github.seed("alice", "Why does it start with <!-- drover:comment --> ?");
    let mut ours = 0;
    for i in 1..150 {
        github.seed("bob", &format!("comment {i}"));
        if i == 120 {
            ours = github.seed(BOT, "<!-- drover:comment -->\nold plan\n");
        }
    }
    let before = github.comments();

    let run = github.drover().arg("-").stdin("new plan\n").run();
    assert!(stdout_line(&run).starts_with(&format!("updated comment {ours} on")));
    assert_eq!(
        github.take_requests(),
        [
            "GET /repos/octo/fleet/issues/7/comments?per_page=100&page=1".to_owned(),
            "GET /repos/octo/fleet/issues/7/comments?per_page=100&page=2".to_owned(),
            format!("PATCH /repos/octo/fleet/issues/comments/{ours}"),
        ]
    );
    let after = github.comments();
    assert_eq!(after.len(), before.len());
    for (old, new) in before.iter().zip(&after) {
        if old.id == ours {
            assert_eq!(new.body, "<!-- drover:comment -->\nnew plan\n");
        } else {
            assert_eq!(old.body, new.body, "comment {} was touched", old.id);
        }
    }
    assert_eq!(after[0].id, quote);
}

#[test]
fn comment_refuses_bad_arguments_before_reading_the_report() {
    let github = FakeGitHub::start();
    let run = github
        .drover()
        .env_remove("GITHUB_TOKEN")
        .arg("-")
        .stdin("x\n")
        .run()
        .expect_code(1);
    assert!(
        run.stderr()
            .starts_with("error: GITHUB_TOKEN is not set\n  help: set GITHUB_TOKEN"),
        "{}",
        run.stderr()
    );
    let run = Drover::new()
        .env("GITHUB_TOKEN", TOKEN)
        .args(["comment", "--repo", "fleet", "--pr", "7", "-"])
        .run()
        .expect_code(1);
    assert!(
        run.stderr().starts_with(
            "error: repository \"fleet\" is not of the form OWNER/NAME\n  help: give the repository as OWNER/NAME"
        ),
        "{}",
        run.stderr()
    );
    let run = github
        .drover()
        .env("GITHUB_API_URL", "http://api.github.com")
        .arg("-")
        .run()
        .expect_code(1);
    assert!(
        run.stderr().contains("would send the token in clear"),
        "{}",
        run.stderr()
    );
    let dir = tempfile::tempdir().unwrap();
    let run = github
        .drover()
        .arg_path(dir.path().join("missing.md"))
        .run()
        .expect_code(1);
    assert!(
        run.stderr().contains("error: cannot read the report ")
            && run
                .stderr()
                .contains("caused by: No such file or directory"),
        "{}",
        run.stderr()
    );
    assert!(github.take_requests().is_empty());
}

#[test]
fn comment_never_logs_the_token_even_at_trace_level() {
    let github = FakeGitHub::start();
    let run = github
        .drover()
        .env("RUST_LOG", "trace")
        .arg("-")
        .stdin("Plan: 1 to create.\n")
        .run();
    assert!(stdout_line(&run).starts_with("created comment"));
    let stderr = run.stderr();
    // The logs are on (the HTTP client's among them), and none shows the request's bytes.
    assert!(stderr.contains("GitHub answered"), "{stderr}");
    assert!(stderr.contains("HEADERS ARE REDACTED"), "{stderr}");
    for leak in [TOKEN, "Bearer", "ureq_proto"] {
        assert!(!stderr.contains(leak), "{leak} in the log:\n{stderr}");
    }
}
