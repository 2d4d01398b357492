// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `mailnotary tsa serve`: the built-in TSA over HTTP (RFC 3161 §3.4).
//!
//! A client POSTs a DER TimeStampReq with `Content-Type:
//! application/timestamp-query` and gets a DER TimeStampResp with
//! `Content-Type: application/timestamp-reply`. Any path is accepted, so
//! clients configured with a URL path work unchanged. Requests larger than
//! [`MAX_REQUEST`] are refused before they are read; a request that is not
//! a TimeStampReq gets an RFC 3161 rejection, not an HTTP error, so that
//! RFC 3161 clients can show the reason.
//!
//! Known limit: plain HTTP only. Put a TLS-terminating proxy in front when
//! the TSA is reached over an untrusted network (the tokens are signed, so
//! TLS protects privacy and availability, not integrity).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Tsa;

/// The largest request accepted: a TimeStampReq with a SHA-512 imprint,
/// a nonce and a policy is about 100 bytes.
pub const MAX_REQUEST: usize = 16 * 1024;

/// Serves `tsa` on `listener` until `shutdown` completes.
pub async fn serve(
    tsa: Arc<Tsa>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .fallback(answer)
        .layer(DefaultBodyLimit::max(MAX_REQUEST))
        .with_state(tsa);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn answer(State(tsa): State<Arc<Tsa>>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.eq_ignore_ascii_case("application/timestamp-query") {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send a DER TimeStampReq with Content-Type: application/timestamp-query\n",
        )
            .into_response();
    }
    // Signing is quick but synchronous; keep it off the I/O threads.
    let reply = tokio::task::spawn_blocking(move || tsa.respond(&body)).await;
    match reply {
        Ok(reply) => (
            [(header::CONTENT_TYPE, "application/timestamp-reply")],
            reply,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "the TSA task failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
