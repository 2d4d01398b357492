// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The HTTP API under `/api/v1`, with `/healthz` and `/metrics`, served by
//! `serve` on its HTTP address.
//!
//! | method and path | scope | answer |
//! |---|---|---|
//! | `GET /api/v1/messages` | read | messages selected as by `lookup` (`thread`, `message_id`, `address`, `subject`, `since`, `until`), paged with `limit` (1 to 1000, default 100) and `offset` |
//! | `GET /api/v1/messages/{receipt_id}` | read | one message |
//! | `GET /api/v1/messages/{receipt_id}/receipt` | read | its signed receipt, DER (`application/pkcs7-mime`), or PEM with `format=pem` |
//! | `GET /api/v1/threads/{id}` | read | a thread (any Message-ID in it, `thread-N`, or a receipt id) with its messages and gaps |
//! | `GET /api/v1/export` | export | the evidence bundle of a `thread` or a `message_id`, as a zip |
//! | `POST /api/v1/verify` | verify | checks an uploaded file (multipart field `file`) against the archive, or against a `receipt` (and `evidence`) uploaded with it |
//! | `GET /api/v1/openapi.json` | none | the OpenAPI 3.1 description of all this |
//! | `GET /metrics` | read | Prometheus text |
//! | `GET /healthz` | none | liveness and counters |
//!
//! Every request but `/healthz` and the OpenAPI document needs
//! `Authorization: Bearer TOKEN` ([`auth`]): 401 without a valid token,
//! 403 for a token without the scope. Errors are JSON `{"error": ...}`
//! saying what was wrong. Every query, export and verification is written
//! to the audit log with the token's name. Uploads larger than
//! `[http] max_upload_mib` get 413 before they are read.
//!
//! The archive is synchronous: each handler runs its store work on a
//! blocking thread, so the runtime's threads keep serving.

pub mod auth;
mod web;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::archive::Archive;
use crate::archive::query::{Query as Lookup, Selector, parse_time};
use crate::archive::retention::AuditEntry;
use crate::archive::view::message_json;
use crate::envelope::now_millis;
use crate::id::ReceiptId;
use auth::{Caller, Scope, TokenEntry};

/// The OpenAPI document, kept beside the code it describes; a test checks
/// that it lists every route of [`router`].
pub const OPENAPI: &str = include_str!("openapi.json");

/// What the bundle export needs besides the archive.
#[derive(Debug, Clone)]
pub struct ExportSetup {
    pub certs: crate::tsa::pki::CertFiles,
    pub tsa_anchors: Vec<crate::bundle::TsaCertificates>,
    pub gateway: String,
}

/// Everything the handlers share.
pub struct ApiState {
    pub archive: Arc<Archive>,
    pub tokens: Vec<TokenEntry>,
    /// The anchors `verify` trusts.
    pub trust: Arc<crate::signing::Trust>,
    pub export: ExportSetup,
    /// The daemon's state as JSON, for `/healthz` (blocking).
    pub status: Box<dyn Fn() -> serde_json::Value + Send + Sync>,
    /// The daemon's metrics in Prometheus text (blocking).
    pub metrics: Box<dyn Fn() -> String + Send + Sync>,
    /// `[http] max_upload_mib` in bytes.
    pub max_upload: usize,
}

/// An error answer: status and a sentence.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(text: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, text.into())
    }

    fn not_found(text: impl Into<String>) -> ApiError {
        ApiError(StatusCode::NOT_FOUND, text.into())
    }

    fn internal(text: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %text, "API request failed");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, text.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.0,
            [(header::CONTENT_TYPE, "application/json")],
            json!({ "error": self.1 }).to_string(),
        )
            .into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"mailnotary\""),
            );
        }
        response
    }
}

impl From<crate::archive::ArchiveError> for ApiError {
    fn from(e: crate::archive::ArchiveError) -> ApiError {
        ApiError::internal(e)
    }
}

type Shared = State<Arc<ApiState>>;

/// The routes, with their state and the upload limit.
pub fn router(state: Arc<ApiState>) -> Router {
    let limit = state.max_upload;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/messages", get(messages))
        .route("/api/v1/messages/{receipt_id}", get(message))
        .route("/api/v1/messages/{receipt_id}/receipt", get(receipt))
        .route("/api/v1/threads/{id}", get(thread))
        .route("/api/v1/export", get(export))
        .route(
            "/api/v1/verify",
            post(verify).layer(DefaultBodyLimit::max(limit)),
        )
        .merge(web::routes(limit))
        .fallback(|| async { ApiError::not_found("no such path; see /api/v1/openapi.json") })
        .with_state(state)
}

/// The caller of a request, if its token has `scope`.
fn caller(state: &ApiState, headers: &HeaderMap, scope: Scope) -> Result<Caller, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = presented else {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "send the header Authorization: Bearer TOKEN (mailnotary token create makes one)"
                .into(),
        ));
    };
    let Some(caller) = auth::authenticate(&state.tokens, token) else {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "the bearer token is not valid".into(),
        ));
    };
    if !caller.may(scope) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "token {:?} lacks the scope {:?} that this request needs",
                caller.name,
                scope.name()
            ),
        ));
    }
    Ok(caller)
}

/// Runs store work on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

fn audit(archive: &Archive, caller: &Caller, action: &str, subject: String) {
    let entry = AuditEntry {
        at: now_millis(),
        actor: format!("api:{}", caller.name),
        action: action.into(),
        subject,
        detail: String::new(),
    };
    if let Err(e) = archive.audit(entry) {
        tracing::error!(error = %e, "cannot write the audit log");
    }
}

fn json_response(value: &serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

async fn healthz(State(state): Shared) -> Response {
    let task = Arc::clone(&state);
    match tokio::task::spawn_blocking(move || (task.status)()).await {
        Ok(body) => json_response(&body),
        Err(_) => ApiError(StatusCode::SERVICE_UNAVAILABLE, "store error".into()).into_response(),
    }
}

async fn metrics(State(state): Shared, headers: HeaderMap) -> Result<Response, ApiError> {
    caller(&state, &headers, Scope::Read)?;
    let task = Arc::clone(&state);
    let text = blocking(move || Ok((task.metrics)())).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

const SELECTORS: [&str; 4] = ["thread", "message_id", "address", "subject"];
const KNOWN: [&str; 8] = [
    "thread",
    "message_id",
    "address",
    "subject",
    "since",
    "until",
    "limit",
    "offset",
];

/// A lookup from query parameters, refusing what it cannot read.
fn lookup_of(params: &HashMap<String, String>) -> Result<Lookup, ApiError> {
    if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::bad(format!(
            "unknown parameter {unknown:?}; use {}",
            KNOWN.join(", ")
        )));
    }
    let given: Vec<&str> = SELECTORS
        .iter()
        .copied()
        .filter(|k| params.contains_key(*k))
        .collect();
    if given.len() > 1 {
        return Err(ApiError::bad(format!(
            "give at most one of {}; this request gives {}",
            SELECTORS.join(", "),
            given.join(" and ")
        )));
    }
    let value = |k: &str| params.get(k).cloned().unwrap_or_default();
    let selector = match given.first().copied() {
        Some("thread") => Selector::Thread(value("thread")),
        Some("message_id") => Selector::MessageId(value("message_id")),
        Some("address") => Selector::Address(value("address")),
        Some(_) => Selector::Subject(value("subject")),
        None => Selector::All,
    };
    let time = |k: &str, end: bool| {
        params
            .get(k)
            .map(|t| parse_time(t, end).map_err(|e| ApiError::bad(format!("{k}: {e}"))))
            .transpose()
    };
    Ok(Lookup {
        selector,
        since: time("since", false)?,
        until: time("until", true)?,
    })
}

fn number(params: &HashMap<String, String>, key: &str, default: usize) -> Result<usize, ApiError> {
    match params.get(key) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| ApiError::bad(format!("{key}: {text:?} is not a whole number"))),
    }
}

async fn messages(
    State(state): Shared,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &headers, Scope::Read)?;
    let query = lookup_of(&params)?;
    let limit = number(&params, "limit", 100)?;
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad("limit must be from 1 to 1000"));
    }
    let offset = number(&params, "offset", 0)?;
    let archive = Arc::clone(&state.archive);
    let body = blocking(move || {
        let (records, _) = archive.lookup(&query)?;
        let total = records.len();
        let mut items = Vec::new();
        for r in records.iter().skip(offset).take(limit) {
            items.push(message_json(&archive, r)?);
        }
        audit(
            &archive,
            &caller,
            "api-query",
            format!("{query:?} offset {offset} limit {limit}"),
        );
        Ok(json!({ "total": total, "offset": offset, "limit": limit, "messages": items }))
    })
    .await?;
    Ok(json_response(&body))
}

fn receipt_id(text: &str) -> Result<ReceiptId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad(format!("{text:?} is not a receipt id (26 characters)")))
}

async fn message(
    State(state): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &headers, Scope::Read)?;
    let id = receipt_id(&id)?;
    let archive = Arc::clone(&state.archive);
    let body = blocking(move || {
        let record = archive
            .message(&id)?
            .ok_or_else(|| ApiError::not_found(format!("no message has receipt id {id}")))?;
        audit(&archive, &caller, "api-query", format!("message {id}"));
        Ok(message_json(&archive, &record)?)
    })
    .await?;
    Ok(json_response(&body))
}

async fn receipt(
    State(state): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &headers, Scope::Read)?;
    let id = receipt_id(&id)?;
    let pem = match params.get("format").map(String::as_str) {
        None | Some("der") => false,
        Some("pem") => true,
        Some(other) => {
            return Err(ApiError::bad(format!("format {other:?}: use der or pem")));
        }
    };
    let archive = Arc::clone(&state.archive);
    let signed = blocking(move || {
        let receipt = archive
            .receipt(&id)?
            .ok_or_else(|| ApiError::not_found(format!("no receipt has id {id}")))?;
        audit(&archive, &caller, "api-receipt", id.to_string());
        Ok(receipt.signed)
    })
    .await?;
    Ok(if pem {
        use base64ct::{Base64, Encoding};
        let body = Base64::encode_string(&signed);
        let mut text = String::from("-----BEGIN CMS-----\n");
        for line in body.as_bytes().chunks(64) {
            text.push_str(&String::from_utf8_lossy(line));
            text.push('\n');
        }
        text.push_str("-----END CMS-----\n");
        ([(header::CONTENT_TYPE, "application/x-pem-file")], text).into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/pkcs7-mime")], signed).into_response()
    })
}

async fn thread(
    State(state): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &headers, Scope::Read)?;
    let archive = Arc::clone(&state.archive);
    let body = blocking(move || {
        let query = Lookup {
            selector: Selector::Thread(id.clone()),
            since: None,
            until: None,
        };
        let (records, view) = archive.lookup(&query)?;
        let view =
            view.ok_or_else(|| ApiError::not_found(format!("no thread is known by {id:?}")))?;
        let mut items = Vec::new();
        for r in &records {
            items.push(message_json(&archive, r)?);
        }
        audit(&archive, &caller, "api-query", format!("thread {id}"));
        Ok(json!({
            "thread_id": view.id.to_string(),
            "messages": items,
            "gaps": view.gaps,
        }))
    })
    .await?;
    Ok(json_response(&body))
}

/// The selector of an export request: exactly one of `thread` and
/// `message_id`.
fn export_selector(params: &HashMap<String, String>) -> Result<Selector, ApiError> {
    match (params.get("thread"), params.get("message_id")) {
        (Some(t), None) => Ok(Selector::Thread(t.clone())),
        (None, Some(m)) => Ok(Selector::MessageId(m.clone())),
        _ => Err(ApiError::bad("give exactly one of thread and message_id")),
    }
}

/// Builds the bundle of what `selector` finds; blocking. `action` names
/// the export in the audit log.
fn export_zip(
    state: &ApiState,
    selector: Selector,
    caller: &Caller,
    action: &str,
) -> Result<Vec<u8>, ApiError> {
    let query = Lookup {
        selector,
        since: None,
        until: None,
    };
    let (records, _) = state.archive.lookup(&query)?;
    if records.is_empty() {
        return Err(ApiError::not_found("nothing to export: no message matches"));
    }
    let mut name = [0u8; 8];
    getrandom::getrandom(&mut name).map_err(ApiError::internal)?;
    let out = std::env::temp_dir().join(format!("mailnotary-export-{}.zip", hex::encode(name)));
    let e = &state.export;
    let written = crate::bundle::write(
        &state.archive,
        &records,
        &e.certs,
        &e.tsa_anchors,
        &e.gateway,
        &out,
    );
    let zip = written
        .map_err(ApiError::internal)
        .and_then(|_| std::fs::read(&out).map_err(ApiError::internal));
    let _ = std::fs::remove_file(&out);
    audit(
        &state.archive,
        caller,
        action,
        format!("{:?}, {} messages", query.selector, records.len()),
    );
    zip
}

fn zip_response(zip: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/zip"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"evidence-bundle.zip\"",
            ),
        ],
        zip,
    )
        .into_response()
}

async fn export(
    State(state): Shared,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &headers, Scope::Export)?;
    let selector = export_selector(&params)?;
    let task = Arc::clone(&state);
    let zip = blocking(move || export_zip(&task, selector, &caller, "api-export")).await?;
    Ok(zip_response(zip))
}

/// The fields of a verify form: `file`, and optionally `receipt` and
/// `evidence`; any other field is refused.
async fn verify_fields(mut form: Multipart) -> Result<HashMap<String, Vec<u8>>, ApiError> {
    let unreadable = |e: axum::extract::multipart::MultipartError| {
        ApiError(
            e.status(),
            format!("the upload could not be read: {}", e.body_text()),
        )
    };
    let mut parts: HashMap<String, Vec<u8>> = HashMap::new();
    while let Some(field) = form.next_field().await.map_err(unreadable)? {
        let name = field.name().unwrap_or_default().to_string();
        if !["file", "receipt", "evidence"].contains(&name.as_str()) {
            return Err(ApiError::bad(format!(
                "unknown form field {name:?}; use file, receipt and evidence"
            )));
        }
        let bytes = field.bytes().await.map_err(unreadable)?;
        // A browser sends an empty part for an optional file input left
        // empty; an empty file to verify is still a file.
        if name == "file" || !bytes.is_empty() {
            parts.insert(name, bytes.to_vec());
        }
    }
    Ok(parts)
}

/// Verifies an uploaded file; blocking.
fn verify_upload(
    state: &ApiState,
    mut parts: HashMap<String, Vec<u8>>,
    caller: &Caller,
    action: &str,
) -> Result<crate::archive::verify::Report, ApiError> {
    let Some(file) = parts.remove("file") else {
        return Err(ApiError::bad("the form needs a file (field file)"));
    };
    let report = match parts.remove("receipt") {
        Some(receipt) => crate::archive::verify::verify_with(
            Some(&file),
            &crate::archive::verify::Evidence {
                receipt,
                record: parts.remove("evidence"),
            },
            &state.trust,
        ),
        None => state.archive.verify_file(&file, &state.trust)?,
    };
    audit(
        &state.archive,
        caller,
        action,
        format!(
            "{} bytes: {}",
            file.len(),
            if report.verified {
                "verified"
            } else {
                "not verified"
            }
        ),
    );
    Ok(report)
}

async fn verify(
    State(state): Shared,
    headers: HeaderMap,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &headers, Scope::Verify)?;
    let form = form.map_err(|e| {
        ApiError(
            e.status(),
            format!(
                "send the file as multipart/form-data with a field named file: {}",
                e.body_text()
            ),
        )
    })?;
    let parts = verify_fields(form).await?;
    let task = Arc::clone(&state);
    let report = blocking(move || {
        let report = verify_upload(&task, parts, &caller, "api-verify")?;
        serde_json::to_value(&report).map_err(ApiError::internal)
    })
    .await?;
    Ok(json_response(&report))
}

/// The store key of the administrator token's entry.
const META_ADMIN_TOKEN: &[u8] = b"api-admin-token";

/// The administrator token of the embedded default. When the
/// configuration lists no token and the store has none, a new one is made:
/// its entry (the salted hash) goes into the store, and the token itself
/// into `keys/admin.token` of the data directory (mode 0600), the only
/// place it is written, for the operator to take and then delete. Returns
/// the entry, and the file when it was made now.
pub fn admin_token(
    archive: &Archive,
    data: &std::path::Path,
) -> Result<(TokenEntry, Option<std::path::PathBuf>), String> {
    let key = crate::archive::keys::key(crate::archive::keys::META, &[META_ADMIN_TOKEN]);
    if let Some(bytes) = archive.store().get(&key).map_err(|e| e.to_string())? {
        let entry: TokenEntry = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the stored administrator token entry is damaged: {e}"))?;
        return Ok((entry, None));
    }
    let (token, entry) = auth::create("admin", vec![Scope::Admin])?;
    let path = data.join("keys").join("admin.token");
    write_private(&path, format!("{token}\n").as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let value = serde_json::to_vec(&entry).map_err(|e| e.to_string())?;
    archive
        .store()
        .write(move |txn| -> Result<(), crate::store::StoreError> {
            txn.put(key, value);
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    Ok((entry, Some(path)))
}

/// Creates `path` readable by its owner only, with `bytes`.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Figures of the daemon for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub smtp_sessions: u64,
    pub smtp_accepted: u64,
    pub smtp_rejected: u64,
    /// SMTP refusals by reason.
    pub smtp_refusals: Vec<(&'static str, u64)>,
    /// IMAP account name and state.
    pub imap_states: Vec<(String, String)>,
}

/// The Prometheus text of the daemon's figures and the archive's state.
pub fn metrics_text(archive: &Archive, figures: &Figures) -> Result<String, String> {
    let pending = archive.pending_count().map_err(|e| e.to_string())?;
    let oldest = archive
        .oldest_pending()
        .map_err(|e| e.to_string())?
        .map(|id| now_millis().saturating_sub(id.unix_millis()) as f64 / 1000.0)
        .unwrap_or(0.0);
    let batches = archive
        .last_batch()
        .map_err(|e| e.to_string())?
        .map_or(0, |b| b.number);
    let queued = archive.notifications_queued().map_err(|e| e.to_string())?;
    let mut t = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, lines: Vec<(String, String)>| {
        t.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, value) in lines {
            t.push_str(&format!("{name}{labels} {value}\n"));
        }
    };
    metric(
        "mailnotary_smtp_sessions_total",
        "counter",
        "SMTP sessions accepted since start.",
        vec![(String::new(), figures.smtp_sessions.to_string())],
    );
    metric(
        "mailnotary_smtp_messages_total",
        "counter",
        "SMTP messages since start, by outcome.",
        vec![
            (
                "{outcome=\"accepted\"}".into(),
                figures.smtp_accepted.to_string(),
            ),
            (
                "{outcome=\"rejected\"}".into(),
                figures.smtp_rejected.to_string(),
            ),
        ],
    );
    metric(
        "mailnotary_smtp_refusals_total",
        "counter",
        "SMTP refusals since start, by reason (messages and recipients).",
        figures
            .smtp_refusals
            .iter()
            .map(|(reason, n)| (format!("{{reason=\"{reason}\"}}"), n.to_string()))
            .collect(),
    );
    {
        use std::sync::atomic::Ordering::Relaxed;
        let tsa = &archive.tsa_stats;
        metric(
            "mailnotary_tsa_requests_total",
            "counter",
            "Timestamp requests of the stamper since start, by outcome.",
            vec![
                (
                    "{outcome=\"ok\"}".into(),
                    (tsa.requests.load(Relaxed)
                        - tsa.failures.load(Relaxed).min(tsa.requests.load(Relaxed)))
                    .to_string(),
                ),
                (
                    "{outcome=\"error\"}".into(),
                    tsa.failures.load(Relaxed).to_string(),
                ),
            ],
        );
        metric(
            "mailnotary_tsa_request_seconds_total",
            "counter",
            "Time spent waiting for timestamp authorities since start.",
            vec![(
                String::new(),
                format!("{:.6}", tsa.total_micros.load(Relaxed) as f64 / 1e6),
            )],
        );
        metric(
            "mailnotary_tsa_last_request_seconds",
            "gauge",
            "How long the last timestamp request took.",
            vec![(
                String::new(),
                format!("{:.6}", tsa.last_micros.load(Relaxed) as f64 / 1e6),
            )],
        );
    }
    metric(
        "mailnotary_pending_messages",
        "gauge",
        "Messages waiting for their timestamp.",
        vec![(String::new(), pending.to_string())],
    );
    metric(
        "mailnotary_oldest_pending_seconds",
        "gauge",
        "Age of the oldest message waiting for its timestamp (0 when none waits).",
        vec![(String::new(), format!("{oldest:.3}"))],
    );
    metric(
        "mailnotary_batches_total",
        "counter",
        "Batches stamped in this archive.",
        vec![(String::new(), batches.to_string())],
    );
    metric(
        "mailnotary_notifications_queued",
        "gauge",
        "Receipt notifications waiting to be sent.",
        vec![(String::new(), queued.to_string())],
    );
    metric(
        "mailnotary_imap_account_up",
        "gauge",
        "1 for each watched IMAP account and its state.",
        figures
            .imap_states
            .iter()
            .map(|(name, state)| {
                let clean = |s: &str| s.replace(['"', '\\', '\n'], "_");
                (
                    format!("{{account=\"{}\",state=\"{}\"}}", clean(name), clean(state)),
                    "1".to_string(),
                )
            })
            .collect(),
    );
    Ok(t)
}
