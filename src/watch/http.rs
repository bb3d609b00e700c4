//! The daemon's HTTP endpoints (only with `--listen`): `/healthz`, `/readyz`, `/status`,
//! `/metrics`, `/runs`, `/runs/{id}`. Read-only; runs and reports are read from the state
//! file like `history` and `show` do, off the async threads.

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

#[derive(Debug, Clone)]
struct App {
    live: Live,
    state: PathBuf,
}

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
    live: Live,
    state: PathBuf,
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
        .with_state(App { live, state });
    Ok(runtime.spawn(async move {
        let served = axum::serve(listener, app)
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
