//! The daemon's HTTP endpoints (only with `--listen`): `/healthz`, `/readyz`, `/status`,
//! `/metrics`, `/runs`, `/runs/{id}`, `/state` (with a bearer token) and, in git mode,
//! `POST /hooks/git`. Read-only; runs, reports and the state snapshot are read from the
//! state file like `history` and `show` do, off the async threads.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::store::Store;
use crate::watch::live::Live;

/// What the endpoints read from.
#[derive(Debug, Clone)]
pub struct App {
    pub live: Live,
    /// The state file, for `/runs`.
    pub state: PathBuf,
    /// The token `GET /state` requires; without one the endpoint is off (404).
    pub api_token: Option<Vec<u8>>,
    /// Git mode: `POST /hooks/git`.
    pub hook: Option<Hook>,
}

/// The webhook that announces a push.
#[derive(Debug, Clone)]
pub struct Hook {
    /// `DROVER_WEBHOOK_SECRET`; without one, every call is refused.
    pub secret: Option<Vec<u8>>,
    pub wake: tokio::sync::mpsc::Sender<crate::watch::wake::Wake>,
}

/// Largest webhook body read (GitHub's push payloads are far smaller).
const HOOK_BODY_LIMIT: usize = 1024 * 1024;

/// Bytes in an HMAC-SHA256.
const SHA256_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}")]
pub struct ListenError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr` now (so a taken port is an error at start) and serves until `stop`.
pub fn serve(
    runtime: &tokio::runtime::Handle,
    addr: SocketAddr,
    app: App,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, ListenError> {
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| ListenError { addr, source })?;
    let listener = runtime
        .block_on(async { tokio::net::TcpListener::from_std(listener) })
        .map_err(|source| ListenError { addr, source })?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/runs", get(runs))
        .route("/runs/{id}", get(run))
        .route("/state", get(state))
        .route("/hooks/git", axum::routing::post(hook))
        .layer(axum::extract::DefaultBodyLimit::max(HOOK_BODY_LIMIT))
        .with_state(app);
    Ok(runtime.spawn(async move {
        let served = axum::serve(crate::watch::bounded::Bounded::new(listener), app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the HTTP server stopped");
        }
    }))
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn readyz(State(app): State<App>) -> Response {
    let status = app.live.status();
    if status.ready {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", status.activity),
        )
            .into_response()
    }
}

async fn status(State(app): State<App>) -> Response {
    let body = serde_json::to_string_pretty(&app.live.status()).unwrap_or_default() + "\n";
    json(StatusCode::OK, body)
}

async fn metrics(State(app): State<App>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.live.metrics_text(),
    )
        .into_response()
}

async fn runs(State(app): State<App>) -> Response {
    let state = app.state.clone();
    let read = tokio::task::spawn_blocking(move || Store::at(&state).runs()).await;
    match read {
        Ok(Ok(runs)) => json(StatusCode::OK, crate::report::runs::history_json(&runs)),
        Ok(Err(error)) => failure(&error),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the read stopped\n").into_response(),
    }
}

async fn run(State(app): State<App>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return (StatusCode::BAD_REQUEST, "a run id is a number\n").into_response();
    };
    let state = app.state.clone();
    let read = tokio::task::spawn_blocking(move || {
        let store = Store::at(&state);
        let run = store.run(crate::state::RunId(id))?;
        let report = store.report(crate::state::RunId(id))?;
        Ok::<_, crate::store::Error>((run, report))
    })
    .await;
    match read {
        Ok(Ok((Some((record, events)), report))) => json(
            StatusCode::OK,
            crate::report::runs::run_json(&record, &events, report.as_ref()),
        ),
        Ok(Ok((None, _))) => (StatusCode::NOT_FOUND, format!("no run {id}\n")).into_response(),
        Ok(Err(error)) => failure(&error),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the read stopped\n").into_response(),
    }
}

fn failure(error: &crate::store::Error) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{}\n", crate::transport::error_chain(error)),
    )
        .into_response()
}

/// `GET /state`: the recorded state as one snapshot (`snapshot::StateSnapshot`), read in
/// one transaction, for `plan --state-from` in CI. Only with `Authorization: Bearer
/// <DROVER_API_TOKEN>`; without a configured token the endpoint does not exist.
async fn state(State(app): State<App>, headers: axum::http::HeaderMap) -> Response {
    let Some(token) = app.api_token else {
        return (
            StatusCode::NOT_FOUND,
            "/state is off: start the daemon with DROVER_API_TOKEN set to serve it\n",
        )
            .into_response();
    };
    let offered = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        // The scheme is case-insensitive (RFC 7235).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().as_bytes());
    if !offered.is_some_and(|o| same_secret(o, &token)) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token (DROVER_API_TOKEN) is required, and this one is not it\n",
        )
            .into_response();
    }
    let path = app.state.clone();
    let read =
        tokio::task::spawn_blocking(move || Store::at(&path).export(crate::clock::now())).await;
    match read {
        Ok(Ok(snapshot)) => json(StatusCode::OK, snapshot.to_json()),
        Ok(Err(error)) => failure(&error),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the read stopped\n").into_response(),
    }
}

/// Compares two secrets in time that depends only on their lengths: an HMAC of each under
/// one key, compared in constant time.
fn same_secret(offered: &[u8], expected: &[u8]) -> bool {
    use hmac::{KeyInit as _, Mac as _};
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"drover api token") else {
        return false;
    };
    mac.update(expected);
    let expected = mac.finalize().into_bytes();
    signed(b"drover api token", offered, &expected)
}

/// `POST /hooks/git`: GitHub-style `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the
/// body>`. A good signature wakes the daemon to fetch at once (202); a wrong or missing one
/// (or no secret configured) gets 401 and does nothing. The body is read only once the
/// header holds a well-formed signature, so an unsigned caller costs no read at all.
async fn hook(
    State(app): State<App>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Some(hook) = app.hook else {
        return (StatusCode::NOT_FOUND, "not in git mode\n").into_response();
    };
    let Some(secret) = hook.secret else {
        return (
            StatusCode::UNAUTHORIZED,
            "no webhook secret is configured (DROVER_WEBHOOK_SECRET)\n",
        )
            .into_response();
    };
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(hex)
        .filter(|s| s.len() == SHA256_LEN);
    let Some(signature) = signature else {
        return (StatusCode::UNAUTHORIZED, "bad or missing signature\n").into_response();
    };
    let Ok(body) = axum::body::to_bytes(body, HOOK_BODY_LIMIT).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is larger than 1 MiB or was cut short\n",
        )
            .into_response();
    };
    if !signed(&secret, &body, &signature) {
        return (StatusCode::UNAUTHORIZED, "bad or missing signature\n").into_response();
    }
    // A full queue already holds a wake-up: the fetch happens either way.
    let _ = hook.wake.try_send(crate::watch::wake::Wake::Pushed);
    (StatusCode::ACCEPTED, "fetching\n").into_response()
}

/// Whether `signature` is the HMAC-SHA256 of `body` under `secret` (compared in constant time).
fn signed(secret: &[u8], body: &[u8], signature: &[u8]) -> bool {
    use hmac::{KeyInit as _, Mac as _};
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(signature).is_ok()
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_signatures_are_checked() {
        // GitHub's documented example: secret "It's a Secret to Everybody", body "Hello, World!".
        let signature =
            hex("757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17").unwrap();
        assert!(signed(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            &signature
        ));
        assert!(!signed(b"another secret", b"Hello, World!", &signature));
        assert!(!signed(
            b"It's a Secret to Everybody",
            b"Hello, World?",
            &signature
        ));
        assert_eq!(hex("0g"), None);
        assert!(same_secret(b"token", b"token"));
        assert!(!same_secret(b"token", b"tokem"));
        assert!(!same_secret(b"", b"token"));
        assert_eq!(hex("abc"), None);
    }
}
