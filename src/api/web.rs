// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The web page: server-rendered HTML in Chinese and English for the
//! compliance staff who look up a disputed thread, on the same router and
//! the same store work as the API.
//!
//! - `/ui`: the search form and its results; `/ui/thread/{id}`: a thread's
//!   timeline, each message with its status, stamp time, TSA and DKIM
//!   result, the messages it refers to that never arrived shown as gaps in
//!   their place, and downloads of every receipt and of the bundle;
//!   `/ui/verify`: a form to check a file (dropped onto the page, or chosen
//!   with the file input).
//! - Search, the thread view and every download work without JavaScript;
//!   the only script makes the drop zone fill the file input.
//! - Sign-in: the user pastes an API token once (`/ui/login`); it is kept in
//!   an HttpOnly, SameSite=Strict cookie and checked like a bearer token,
//!   with the same scopes. The language (`/ui/lang/zh`, `/ui/lang/en`) is
//!   kept in a cookie; without one, the browser's Accept-Language decides.
//! - Everything a sender wrote is escaped; the page loads nothing from
//!   elsewhere.
//!
//! Known limit: the cookie is not marked Secure, since the daemon speaks
//! plain HTTP; behind a TLS proxy the proxy should add the flag.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};

use super::auth::{self, Caller, Scope};
use super::{ApiError, ApiState, Shared, blocking};
use crate::archive::query::{Query as Lookup, Selector, parse_time};
use crate::bundle::report::escape;

/// The page's routes, for the API's router to merge.
pub(super) fn routes(upload_limit: usize) -> Router<Arc<ApiState>> {
    Router::new()
        .route("/", get(root))
        .route("/ui", get(search))
        .route("/ui/login", post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/lang/{lang}", get(language))
        .route("/ui/thread/{id}", get(thread))
        .route("/ui/receipt/{id}", get(receipt))
        .route("/ui/export", get(export))
        .route(
            "/ui/verify",
            get(verify_page)
                .post(verify)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
}

/// The two languages of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Zh,
    En,
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn lang_of(headers: &HeaderMap) -> Lang {
    match cookie(headers, "mn_lang") {
        Some("zh") => Lang::Zh,
        Some("en") => Lang::En,
        _ => {
            let accept = headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if accept.trim_start().starts_with("zh") {
                Lang::Zh
            } else {
                Lang::En
            }
        }
    }
}

/// The page's words.
fn t(lang: Lang, key: &str) -> &'static str {
    let (zh, en) = match key {
        "title" => ("邮件存证", "E-mail evidence"),
        "search" => ("查询", "Search"),
        "verify" => ("核验文件", "Verify a file"),
        "logout" => ("退出", "Sign out"),
        "login" => ("登录", "Sign in"),
        "token" => ("访问令牌", "Access token"),
        "login-help" => (
            "请粘贴管理员发给您的访问令牌（mn_ 开头）。",
            "Paste the access token your administrator gave you (it starts with mn_).",
        ),
        "bad-token" => ("令牌无效。", "That token is not valid."),
        "kind" => ("按", "By"),
        "k-subject" => ("主题", "Subject"),
        "k-address" => ("地址", "Address"),
        "k-thread" => ("会话（任一邮件标识）", "Thread (any Message-ID)"),
        "k-message_id" => ("邮件标识", "Message-ID"),
        "since" => ("起始日期", "From date"),
        "until" => ("截止日期", "To date"),
        "results" => ("结果", "Results"),
        "none" => ("没有找到邮件。", "No message found."),
        "date" => ("日期", "Date"),
        "from" => ("发件人", "From"),
        "to" => ("收件人", "To"),
        "subject" => ("主题", "Subject"),
        "status" => ("状态", "Status"),
        "stamped" => ("已加盖时间戳", "stamped"),
        "pending" => ("等待时间戳", "waiting for its timestamp"),
        "stamp-time" => ("时间戳时间", "Stamped at"),
        "tsa" => ("时间戳机构", "TSA"),
        "dkim" => ("DKIM", "DKIM"),
        "receipt" => ("回执", "Receipt"),
        "download-receipt" => ("下载回执", "Download receipt"),
        "download-bundle" => ("下载证据包", "Download the evidence bundle"),
        "thread" => ("会话", "Thread"),
        "open-thread" => ("查看会话", "Open thread"),
        "gap" => ("缺失", "Gap"),
        "gap-text" => (
            "此邮件被引用，但网关从未收到。",
            "Referred to by the message above, but never received by the gateway.",
        ),
        "drop" => (
            "把邮件（.eml）或附件拖到这里，或选择文件：",
            "Drop a message (.eml) or an attachment here, or choose a file:",
        ),
        "receipt-file" => ("回执文件（可选，.p7s）", "Receipt file (optional, .p7s)"),
        "evidence-file" => ("证据记录（可选，.ers）", "Evidence record (optional, .ers)"),
        "check" => ("核验", "Verify"),
        "verified" => ("核验通过", "Verified"),
        "not-verified" => ("核验未通过", "Not verified"),
        "matched" => ("匹配方式", "Matched by"),
        "no-scope" => (
            "您的令牌没有此操作的权限。",
            "Your token does not allow this.",
        ),
        "error" => ("出错了", "Something went wrong"),
        _ => ("?", "?"),
    };
    match lang {
        Lang::Zh => zh,
        Lang::En => en,
    }
}

fn page(lang: Lang, signed_in: bool, body: &str) -> String {
    let (html_lang, other, other_name) = match lang {
        Lang::Zh => ("zh-CN", "en", "English"),
        Lang::En => ("en", "zh", "中文"),
    };
    let nav = if signed_in {
        format!(
            "<a href=\"/ui\">{}</a> · <a href=\"/ui/verify\">{}</a> · \
             <form method=\"post\" action=\"/ui/logout\" class=\"inline\">\
             <button type=\"submit\">{}</button></form> · ",
            t(lang, "search"),
            t(lang, "verify"),
            t(lang, "logout")
        )
    } else {
        String::new()
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"{html_lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} · mailnotary</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 0 auto; max-width: 72em; padding: 1em; color: #222; }}\n\
         header {{ border-bottom: 1px solid #ccc; margin-bottom: 1em; padding-bottom: .5em; }}\n\
         table {{ border-collapse: collapse; width: 100%; }}\n\
         th, td {{ border: 1px solid #ccc; padding: .3em .5em; text-align: left; vertical-align: top; }}\n\
         .hash {{ font-family: monospace; font-size: .85em; word-break: break-all; }}\n\
         .inline {{ display: inline; }}\n\
         .timeline {{ list-style: none; padding-left: 0; border-left: 3px solid #036; }}\n\
         .timeline li {{ margin: 0 0 1em 0; padding: .3em .8em; }}\n\
         .timeline li.gap {{ border: 2px dashed #a60; color: #a60; }}\n\
         .ok {{ color: #060; }} .bad {{ color: #a00; }}\n\
         #drop {{ border: 2px dashed #888; padding: 2em; margin: 1em 0; }}\n\
         </style>\n</head>\n<body>\n<header><strong>{title}</strong> · {nav}\
         <a href=\"/ui/lang/{other}\" id=\"lang\">{other_name}</a></header>\n{body}\n</body>\n</html>\n",
        title = t(lang, "title"),
    )
}

fn html(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        text,
    )
        .into_response()
}

/// The signed-in caller, if the cookie holds a token with `scope`; else
/// the page to show instead.
fn signed_in(state: &ApiState, headers: &HeaderMap, scope: Scope) -> Result<Caller, Box<Response>> {
    let lang = lang_of(headers);
    let caller = cookie(headers, "mn_token").and_then(|t| auth::authenticate(&state.tokens, t));
    match caller {
        None => Err(Box::new(html(
            StatusCode::UNAUTHORIZED,
            login_page(lang, false),
        ))),
        Some(c) if !c.may(scope) => Err(Box::new(html(
            StatusCode::FORBIDDEN,
            page(
                lang,
                true,
                &format!("<p class=\"bad\">{}</p>", t(lang, "no-scope")),
            ),
        ))),
        Some(c) => Ok(Caller {
            name: format!("web:{}", c.name),
            scopes: c.scopes,
        }),
    }
}

fn login_page(lang: Lang, failed: bool) -> String {
    let error = if failed {
        format!(
            "<p class=\"bad\" id=\"login-error\">{}</p>",
            t(lang, "bad-token")
        )
    } else {
        String::new()
    };
    page(
        lang,
        false,
        &format!(
            "<h1>{}</h1>{error}<p>{}</p>\n<form method=\"post\" action=\"/ui/login\">\
             <label>{} <input type=\"password\" name=\"token\" id=\"token\" size=\"50\" \
             autocomplete=\"off\"></label> <button type=\"submit\" id=\"login\">{}</button></form>",
            t(lang, "login"),
            t(lang, "login-help"),
            t(lang, "token"),
            t(lang, "login"),
        ),
    )
}

fn error_page(lang: Lang, e: &ApiError) -> Response {
    html(
        e.0,
        page(
            lang,
            true,
            &format!(
                "<h1>{}</h1><p class=\"bad\" id=\"error\">{}</p>",
                t(lang, "error"),
                escape(&e.1)
            ),
        ),
    )
}

async fn root() -> Redirect {
    Redirect::to("/ui")
}

async fn login(
    State(state): Shared,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let lang = lang_of(&headers);
    let token = form.get("token").map(|t| t.trim()).unwrap_or_default();
    if auth::authenticate(&state.tokens, token).is_none() {
        return html(StatusCode::UNAUTHORIZED, login_page(lang, true));
    }
    (
        [(
            header::SET_COOKIE,
            format!("mn_token={token}; HttpOnly; SameSite=Strict; Path=/"),
        )],
        Redirect::to("/ui"),
    )
        .into_response()
}

async fn logout() -> Response {
    (
        [(
            header::SET_COOKIE,
            "mn_token=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0".to_string(),
        )],
        Redirect::to("/ui"),
    )
        .into_response()
}

async fn language(headers: HeaderMap, Path(lang): Path<String>) -> Response {
    let lang = if lang == "zh" { "zh" } else { "en" };
    // Back to the page the link was on, when it is one of ours.
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("/ui").map(|i| r[i..].to_string()))
        .filter(|p| !p.contains("//") && !p.starts_with("/ui/lang"))
        .unwrap_or_else(|| "/ui".into());
    (
        [(
            header::SET_COOKIE,
            format!("mn_lang={lang}; SameSite=Strict; Path=/; Max-Age=31536000"),
        )],
        Redirect::to(&back),
    )
        .into_response()
}

const KINDS: [&str; 4] = ["subject", "address", "thread", "message_id"];

fn dkim_text(m: &serde_json::Value) -> String {
    let list: Vec<String> = m["dkim"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    format!(
                        "{} (d={})",
                        d["result"].as_str().unwrap_or("?"),
                        d["domain"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if list.is_empty() {
        "—".into()
    } else {
        list.join(", ")
    }
}

fn status_text(lang: Lang, m: &serde_json::Value) -> &'static str {
    if m["status"] == "stamped" {
        t(lang, "stamped")
    } else {
        t(lang, "pending")
    }
}

fn mailboxes(v: &serde_json::Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|m| match (m["name"].as_str(), m["address"].as_str()) {
                    (Some(n), Some(a)) => format!("{n} <{a}>"),
                    (_, Some(a)) => a.to_string(),
                    _ => String::new(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn text(v: &serde_json::Value) -> String {
    escape(v.as_str().unwrap_or("—"))
}

/// Percent-encodes a path or query component.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn search(
    State(state): Shared,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let lang = lang_of(&headers);
    let caller = match signed_in(&state, &headers, Scope::Read) {
        Ok(c) => c,
        Err(page) => return *page,
    };
    let kind = params
        .get("kind")
        .map(String::as_str)
        .filter(|k| KINDS.contains(k))
        .unwrap_or("subject");
    let q = params.get("q").cloned().unwrap_or_default();
    let since = params.get("since").cloned().unwrap_or_default();
    let until = params.get("until").cloned().unwrap_or_default();
    let mut body = format!(
        "<h1>{}</h1>\n<form method=\"get\" action=\"/ui\" id=\"search\">\
         <label>{} <select name=\"kind\" id=\"kind\">",
        t(lang, "search"),
        t(lang, "kind")
    );
    for k in KINDS {
        body.push_str(&format!(
            "<option value=\"{k}\"{}>{}</option>",
            if k == kind { " selected" } else { "" },
            t(lang, &format!("k-{k}"))
        ));
    }
    body.push_str(&format!(
        "</select></label> <input type=\"text\" name=\"q\" id=\"q\" value=\"{}\" size=\"40\"> \
         <label>{} <input type=\"date\" name=\"since\" value=\"{}\"></label> \
         <label>{} <input type=\"date\" name=\"until\" value=\"{}\"></label> \
         <button type=\"submit\" id=\"go\">{}</button></form>\n",
        escape(&q),
        t(lang, "since"),
        escape(&since),
        t(lang, "until"),
        escape(&until),
        t(lang, "search"),
    ));
    if q.trim().is_empty() {
        return html(StatusCode::OK, page(lang, true, &body));
    }
    let selector = match kind {
        "address" => Selector::Address(q.trim().into()),
        "thread" => Selector::Thread(q.trim().into()),
        "message_id" => Selector::MessageId(q.trim().into()),
        _ => Selector::Subject(q.trim().into()),
    };
    let time = |text: &str, end: bool| {
        (!text.is_empty())
            .then(|| parse_time(text, end).map_err(ApiError::bad))
            .transpose()
    };
    let query = match (time(&since, false), time(&until, true)) {
        (Ok(since), Ok(until)) => Lookup {
            selector,
            since,
            until,
        },
        (Err(e), _) | (_, Err(e)) => return error_page(lang, &e),
    };
    let archive = Arc::clone(&state.archive);
    let found = blocking(move || {
        let (records, _) = archive.lookup(&query)?;
        let mut items = Vec::new();
        for r in records.iter().take(500) {
            items.push(crate::archive::view::message_json(&archive, r)?);
        }
        super::audit(&archive, &caller, "web-query", format!("{query:?}"));
        Ok(items)
    })
    .await;
    let items = match found {
        Ok(items) => items,
        Err(e) => return error_page(lang, &e),
    };
    body.push_str(&format!("<h2>{}</h2>\n", t(lang, "results")));
    if items.is_empty() {
        body.push_str(&format!("<p id=\"none\">{}</p>", t(lang, "none")));
        return html(StatusCode::OK, page(lang, true, &body));
    }
    body.push_str(&format!(
        "<table id=\"results\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
         <th>{}</th></tr>\n",
        t(lang, "date"),
        t(lang, "from"),
        t(lang, "subject"),
        t(lang, "status"),
        t(lang, "dkim"),
        t(lang, "thread"),
    ));
    for m in &items {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td><a class=\"thread-link\" href=\"/ui/thread/{}\">{}</a></td></tr>\n",
            text(&m["date"]),
            escape(&mailboxes(&m["from"])),
            text(&m["subject"]),
            status_text(lang, m),
            escape(&dkim_text(m)),
            encode(m["thread_id"].as_str().unwrap_or_default()),
            t(lang, "open-thread"),
        ));
    }
    body.push_str("</table>\n");
    html(StatusCode::OK, page(lang, true, &body))
}

async fn thread(State(state): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let lang = lang_of(&headers);
    let caller = match signed_in(&state, &headers, Scope::Read) {
        Ok(c) => c,
        Err(page) => return *page,
    };
    let can_export = caller.may(Scope::Export);
    let archive = Arc::clone(&state.archive);
    let wanted = id.clone();
    let found = blocking(move || {
        let query = Lookup {
            selector: Selector::Thread(wanted.clone()),
            since: None,
            until: None,
        };
        let (records, view) = archive.lookup(&query)?;
        let view = view.ok_or_else(|| ApiError::not_found(format!("no thread {wanted:?}")))?;
        let mut items = Vec::new();
        for r in &records {
            items.push(crate::archive::view::message_json(&archive, r)?);
        }
        super::audit(&archive, &caller, "web-query", format!("thread {wanted}"));
        Ok((view.id.to_string(), items, view.gaps))
    })
    .await;
    let (thread_id, items, gaps) = match found {
        Ok(found) => found,
        Err(e) => return error_page(lang, &e),
    };
    let mut body = format!("<h1>{} {}</h1>\n", t(lang, "thread"), escape(&thread_id));
    if can_export {
        body.push_str(&format!(
            "<p><a id=\"bundle\" href=\"/ui/export?thread={}\">{}</a></p>\n",
            encode(&thread_id),
            t(lang, "download-bundle")
        ));
    }
    body.push_str("<ol class=\"timeline\" id=\"timeline\">\n");
    let mut shown_gaps: Vec<&String> = Vec::new();
    for m in &items {
        let receipt_id = m["receipt_id"].as_str().unwrap_or_default();
        body.push_str(&format!(
            "<li class=\"message\"><strong>{date}</strong> · {from} → {to}<br>\
             <span class=\"subject\">{subject}</span><br>\
             {status_label}: <span class=\"status\">{status}</span> · {stamp_label}: {stamp} · \
             {tsa_label}: {tsa} · DKIM: <span class=\"dkim\">{dkim}</span><br>\
             <span class=\"hash\">{receipt_label} {receipt_id} · SHA-256 {raw}</span> · \
             <a class=\"receipt-link\" href=\"/ui/receipt/{receipt_id}\">{download}</a></li>\n",
            date = text(&m["date"]),
            from = escape(&mailboxes(&m["from"])),
            to = escape(&mailboxes(&m["to"])),
            subject = text(&m["subject"]),
            status_label = t(lang, "status"),
            status = status_text(lang, m),
            stamp_label = t(lang, "stamp-time"),
            stamp = text(&m["stamped_at"]),
            tsa_label = t(lang, "tsa"),
            tsa = text(&m["tsa"]),
            dkim = escape(&dkim_text(m)),
            receipt_label = t(lang, "receipt"),
            raw = text(&m["raw_sha256"]),
            download = t(lang, "download-receipt"),
        ));
        // The gaps this message refers to, in its place.
        let refs = m["in_reply_to"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(m["references"].as_array().into_iter().flatten())
            .filter_map(|v| v.as_str());
        for r in refs {
            if let Some(gap) = gaps.iter().find(|g| g.as_str() == r)
                && !shown_gaps.contains(&gap)
            {
                shown_gaps.push(gap);
                body.push_str(&format!(
                    "<li class=\"gap\"><strong>{}</strong> &lt;{}&gt;<br>{}</li>\n",
                    t(lang, "gap"),
                    escape(gap),
                    t(lang, "gap-text")
                ));
            }
        }
    }
    for gap in gaps.iter().filter(|g| !shown_gaps.contains(g)) {
        body.push_str(&format!(
            "<li class=\"gap\"><strong>{}</strong> &lt;{}&gt;</li>\n",
            t(lang, "gap"),
            escape(gap)
        ));
    }
    body.push_str("</ol>\n");
    html(StatusCode::OK, page(lang, true, &body))
}

async fn receipt(State(state): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let lang = lang_of(&headers);
    let caller = match signed_in(&state, &headers, Scope::Read) {
        Ok(c) => c,
        Err(page) => return *page,
    };
    let id = match super::receipt_id(&id) {
        Ok(id) => id,
        Err(e) => return error_page(lang, &e),
    };
    let archive = Arc::clone(&state.archive);
    let signed = blocking(move || {
        let receipt = archive
            .receipt(&id)?
            .ok_or_else(|| ApiError::not_found(format!("no receipt has id {id}")))?;
        super::audit(&archive, &caller, "web-receipt", id.to_string());
        Ok(receipt.signed)
    })
    .await;
    match signed {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "application/pkcs7-mime".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"receipt-{id}.p7s\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => error_page(lang, &e),
    }
}

async fn export(
    State(state): Shared,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let lang = lang_of(&headers);
    let caller = match signed_in(&state, &headers, Scope::Export) {
        Ok(c) => c,
        Err(page) => return *page,
    };
    let selector = match super::export_selector(&params) {
        Ok(s) => s,
        Err(e) => return error_page(lang, &e),
    };
    let task = Arc::clone(&state);
    match blocking(move || super::export_zip(&task, selector, &caller, "web-export")).await {
        Ok(zip) => super::zip_response(zip),
        Err(e) => error_page(lang, &e),
    }
}

fn verify_form(lang: Lang) -> String {
    format!(
        "<h1>{title}</h1>\n<form method=\"post\" action=\"/ui/verify\" \
         enctype=\"multipart/form-data\" id=\"verify-form\">\n\
         <div id=\"drop\">{drop} <input type=\"file\" name=\"file\" id=\"file\" required></div>\n\
         <p><label>{receipt} <input type=\"file\" name=\"receipt\"></label></p>\n\
         <p><label>{evidence} <input type=\"file\" name=\"evidence\"></label></p>\n\
         <button type=\"submit\" id=\"check\">{check}</button></form>\n\
         <script>\n\
         (function () {{\n\
           var zone = document.getElementById('drop'), input = document.getElementById('file');\n\
           zone.addEventListener('dragover', function (e) {{ e.preventDefault(); }});\n\
           zone.addEventListener('drop', function (e) {{\n\
             e.preventDefault();\n\
             if (e.dataTransfer.files.length) {{ input.files = e.dataTransfer.files; }}\n\
           }});\n\
         }})();\n\
         </script>\n",
        title = t(lang, "verify"),
        drop = t(lang, "drop"),
        receipt = t(lang, "receipt-file"),
        evidence = t(lang, "evidence-file"),
        check = t(lang, "check"),
    )
}

async fn verify_page(State(state): Shared, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    if let Err(page) = signed_in(&state, &headers, Scope::Verify) {
        return *page;
    }
    html(StatusCode::OK, page(lang, true, &verify_form(lang)))
}

async fn verify(State(state): Shared, headers: HeaderMap, form: Multipart) -> Response {
    let lang = lang_of(&headers);
    let caller = match signed_in(&state, &headers, Scope::Verify) {
        Ok(c) => c,
        Err(page) => return *page,
    };
    let parts = match super::verify_fields(form).await {
        Ok(parts) => parts,
        Err(e) => return error_page(lang, &e),
    };
    let task = Arc::clone(&state);
    let report =
        match blocking(move || super::verify_upload(&task, parts, &caller, "web-verify")).await {
            Ok(r) => r,
            Err(e) => return error_page(lang, &e),
        };
    let mut body = verify_form(lang);
    body.push_str(&format!(
        "<h2 id=\"outcome\" class=\"{}\">{}</h2>\n<p>{}: {} · {}: {}</p>\n<table id=\"checks\">",
        if report.verified { "ok" } else { "bad" },
        if report.verified {
            t(lang, "verified")
        } else {
            t(lang, "not-verified")
        },
        t(lang, "matched"),
        report.matched.map_or("—", |m| m.name()),
        t(lang, "receipt"),
        escape(report.receipt_id.as_deref().unwrap_or("—")),
    ));
    for c in &report.checks {
        body.push_str(&format!(
            "<tr><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>\n",
            if c.ok { "ok" } else { "bad" },
            if c.ok { "✔" } else { "✘" },
            escape(c.name),
            escape(&c.detail)
        ));
    }
    body.push_str("</table>\n");
    html(StatusCode::OK, page(lang, true, &body))
}
