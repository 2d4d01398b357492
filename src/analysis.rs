// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The evidence core: from raw bytes to metadata, digests and anomalies.
//!
//! [`analyze`] is a pure function of the bytes. It never fails: mail that
//! cannot be parsed is still a message that was received, so it gets its
//! raw digest, a canonical digest over whatever header section could be
//! found, and a list of [`Anomaly`] flags saying what was wrong. Refusing
//! input is the job of the sources (size limits, SMTP syntax), not of this
//! module.
//!
//! Part digests are taken over the decoded bytes of each MIME part, the
//! bytes a mail client writes to disk when the user saves an attachment.
//! Text parts are decoded from their transfer encoding only, not converted
//! from their charset, so a GBK text attachment hashes as the GBK file it
//! is. Parts are named by their IMAP section numbers (RFC 3501 §6.4.5): a
//! single-part message has one part, "1"; the second child of a multipart is
//! "2"; the first part inside an attached message at "2" is "2.1". An
//! attached message (message/rfc822) is listed itself, hashed as the `.eml`
//! a client would save, and its own parts are listed below it.

use mail_parser::{
    Address, HeaderValue, Message, MessageParser, MimeHeaders, PartType,
    decoders::{base64::base64_decode, quoted_printable::quoted_printable_decode},
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::canonical;

/// At most this many Message-IDs of References and In-Reply-To are kept;
/// a hostile message could otherwise make one thread update touch millions
/// of index entries. Real threads stay far below it.
pub const MAX_REFERENCES: usize = 500;

/// Message-IDs longer than this are not indexed (RFC 5322 lines are at most
/// 998 characters).
pub const MAX_MESSAGE_ID_LEN: usize = 998;

/// Parts nested deeper than this (multiparts and attached messages
/// together) are not walked; the message gets [`Anomaly::NestingTooDeep`].
const MAX_PART_DEPTH: usize = 64;

/// A SHA-256 value, written as 64 lowercase hex digits in JSON and text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Sha256Digest(Sha256::digest(bytes).into())
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut out).ok()?;
        Some(Sha256Digest(out))
    }
}

impl std::fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{self}")
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Sha256Digest::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// A mailbox from an address header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    /// The display name, decoded from RFC 2047 when encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The address (`local@domain`), as written.
    pub address: String,
}

impl std::fmt::Display for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(name) if !name.is_empty() => write!(f, "{name} <{}>", self.address),
            _ => f.write_str(&self.address),
        }
    }
}

/// What the message says about itself. Every field is as the sender wrote
/// it; none is verified here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Message-ID without angle brackets.
    pub message_id: Option<String>,
    /// The Date header as RFC 3339, keeping the sender's UTC offset.
    pub date: Option<String>,
    /// The Date header as seconds since the Unix epoch.
    pub date_unix: Option<i64>,
    pub from: Vec<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    /// Subject, decoded from RFC 2047.
    pub subject: Option<String>,
    /// Message-IDs of In-Reply-To, without angle brackets.
    pub in_reply_to: Vec<String>,
    /// Message-IDs of References, without angle brackets, oldest first.
    pub references: Vec<String>,
}

/// The digest of one MIME part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartDigest {
    /// IMAP section number, such as "1" or "2.1".
    pub path: String,
    /// Content type and subtype in lower case, such as "application/pdf".
    pub content_type: String,
    /// File name from Content-Disposition or Content-Type, decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Length of the decoded bytes.
    pub size: u64,
    /// SHA-256 of the decoded bytes.
    pub sha256: Sha256Digest,
}

/// The three kinds of digest recorded for a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digests {
    /// SHA-256 of the bytes exactly as received.
    pub raw: Sha256Digest,
    /// SHA-256 of the canonical form (see [`crate::canonical`]).
    pub canonical: Sha256Digest,
    /// The canonicalization's name, so a verifier knows how to recompute it.
    pub canonical_algorithm: String,
    /// One entry per MIME part, in tree order.
    pub parts: Vec<PartDigest>,
}

/// Something wrong or unusual about a message, recorded rather than
/// refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Anomaly {
    /// The MIME parser could not make a message of the bytes at all.
    Unparseable,
    /// No header field was found before the body.
    NoHeader,
    /// There is no Message-ID; the message is threaded on its own.
    NoMessageId,
    /// There is a Message-ID header but its value is empty or too long.
    InvalidMessageId,
    /// More than one Message-ID header field.
    DuplicateMessageId,
    /// There is no Date header.
    NoDate,
    /// The Date header could not be read as a valid date.
    InvalidDate,
    /// There is no From header.
    NoFrom,
    /// Some lines end in LF without CR.
    BareLf,
    /// Some CR characters are not followed by LF.
    BareCr,
    /// The message contains NUL bytes.
    NulBytes,
    /// The header section (up to the first empty line) contains bytes
    /// outside US-ASCII: raw UTF-8 (RFC 6532) or an undeclared charset.
    EightBitHeaders,
    /// A part's transfer encoding or charset could not be decoded cleanly.
    EncodingProblem,
    /// References or In-Reply-To held more IDs than are kept.
    ReferencesTruncated,
    /// Multiparts or attached messages were nested deeper than the parts
    /// walk goes.
    NestingTooDeep,
}

impl Anomaly {
    /// The kebab-case name used in JSON and the docs.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// Everything the evidence core says about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    pub metadata: Metadata,
    pub digests: Digests,
    pub anomalies: Vec<Anomaly>,
    /// Length of the raw bytes.
    pub size: u64,
}

/// Parses and hashes `raw`. Never fails; see the module docs.
pub fn analyze(raw: &[u8]) -> Analysis {
    let mut anomalies = Vec::new();
    scan_bytes(raw, &mut anomalies);

    let raw_digest = Sha256Digest::of(raw);
    let canonical_digest = Sha256Digest(canonical::digest(raw));

    // mail-parser 0.11 panics on some malformed inputs (for example
    // mimekit's stack-overflow.txt); such a message is still archived, with
    // its raw and canonical digests and the anomaly recorded.
    let parsed = std::panic::catch_unwind(|| {
        let _quiet = QuietPanics::enter();
        let mut found = Vec::new();
        let result = MessageParser::default().parse(raw).map(|message| {
            let metadata = metadata(&message, &mut found);
            let mut parts = Vec::new();
            walk_parts(&message, "", 0, &mut parts, &mut found);
            (metadata, parts)
        });
        (result, found)
    });
    let (metadata, parts) = match parsed {
        Ok((Some(result), found)) => {
            anomalies.extend(found);
            result
        }
        Ok((None, _)) | Err(_) => {
            anomalies.push(Anomaly::Unparseable);
            (Metadata::default(), Vec::new())
        }
    };

    anomalies.sort_by_key(|a| *a as u8);
    anomalies.dedup();
    Analysis {
        metadata,
        digests: Digests {
            raw: raw_digest,
            canonical: canonical_digest,
            canonical_algorithm: canonical::ALGORITHM.to_string(),
            parts,
        },
        anomalies,
        size: raw.len() as u64,
    }
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the current thread as parsing, so that [`install_panic_filter`]
/// keeps a parser panic (which [`analyze`] catches and records) off the
/// terminal.
struct QuietPanics(bool);

impl QuietPanics {
    fn enter() -> QuietPanics {
        QuietPanics(QUIET.with(|q| q.replace(true)))
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        QUIET.with(|q| q.set(self.0));
    }
}

/// Installs a panic hook that stays silent for panics inside the MIME
/// parser, which [`analyze`] turns into an [`Anomaly::Unparseable`], and
/// passes every other panic to the previous hook.
pub fn install_panic_filter() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if QUIET.with(|q| q.get()) {
            tracing::debug!("the MIME parser panicked; the message is kept as unparseable");
        } else {
            previous(info);
        }
    }));
}

/// Byte-level anomalies, found in one pass.
fn scan_bytes(raw: &[u8], anomalies: &mut Vec<Anomaly>) {
    let (mut bare_lf, mut bare_cr, mut nul) = (false, false, false);
    for i in memchr::memchr3_iter(b'\n', b'\r', 0, raw) {
        match raw[i] {
            b'\n' if i == 0 || raw[i - 1] != b'\r' => bare_lf = true,
            b'\r' if raw.get(i + 1) != Some(&b'\n') => bare_cr = true,
            0 => nul = true,
            _ => {}
        }
    }
    let header_end = header_section_len(raw);
    if raw[..header_end].iter().any(|&b| b >= 0x80) {
        anomalies.push(Anomaly::EightBitHeaders);
    }
    let first = first_line(raw);
    if header_end == 0
        || (canonical::field_name_len(first).is_none() && !canonical::is_mbox_separator(first))
    {
        anomalies.push(Anomaly::NoHeader);
    }
    for (flag, anomaly) in [
        (bare_lf, Anomaly::BareLf),
        (bare_cr, Anomaly::BareCr),
        (nul, Anomaly::NulBytes),
    ] {
        if flag {
            anomalies.push(anomaly);
        }
    }
}

fn first_line(raw: &[u8]) -> &[u8] {
    let end = raw.iter().position(|&b| b == b'\n').unwrap_or(raw.len());
    raw[..end].strip_suffix(b"\r").unwrap_or(&raw[..end])
}

/// Length of the header section up to its blank line (or the whole input).
fn header_section_len(raw: &[u8]) -> usize {
    let mut at = 0;
    while at < raw.len() {
        let end = raw[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |p| at + p + 1);
        let line = &raw[at..end];
        if line == b"\n" || line == b"\r\n" {
            return at;
        }
        at = end;
    }
    raw.len()
}

fn metadata(message: &Message<'_>, anomalies: &mut Vec<Anomaly>) -> Metadata {
    let headers = message.root_part().headers();
    let id_headers = headers
        .iter()
        .filter(|h| h.name.as_str().eq_ignore_ascii_case("message-id"))
        .count();
    if id_headers > 1 {
        anomalies.push(Anomaly::DuplicateMessageId);
    }
    let message_id = message
        .message_id()
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty() && id.len() <= MAX_MESSAGE_ID_LEN);
    if message_id.is_none() {
        anomalies.push(if id_headers == 0 {
            Anomaly::NoMessageId
        } else {
            Anomaly::InvalidMessageId
        });
    }

    let has_date_header = headers
        .iter()
        .any(|h| h.name.as_str().eq_ignore_ascii_case("date"));
    let date = message.date().filter(|d| d.is_valid());
    if date.is_none() {
        anomalies.push(if has_date_header {
            Anomaly::InvalidDate
        } else {
            Anomaly::NoDate
        });
    }

    let from = mailboxes(message.from());
    if from.is_empty() {
        anomalies.push(Anomaly::NoFrom);
    }

    let mut truncated = false;
    let mut ids = |value: &HeaderValue<'_>| {
        let mut list = id_list(value);
        if list.len() > MAX_REFERENCES {
            truncated = true;
            // Keep the newest: the direct parent is at the end.
            list.drain(..list.len() - MAX_REFERENCES);
        }
        list
    };
    let in_reply_to = ids(message.in_reply_to());
    let references = ids(message.references());
    if truncated {
        anomalies.push(Anomaly::ReferencesTruncated);
    }

    Metadata {
        message_id,
        date: date.map(|d| d.to_rfc3339()),
        date_unix: date.map(|d| d.to_timestamp()),
        from,
        to: mailboxes(message.to()),
        cc: mailboxes(message.cc()),
        subject: message.subject().map(str::to_string),
        in_reply_to,
        references,
    }
}

fn mailboxes(address: Option<&Address<'_>>) -> Vec<Mailbox> {
    address
        .map(|a| {
            a.iter()
                .filter_map(|addr| {
                    Some(Mailbox {
                        name: addr.name().map(str::to_string),
                        address: addr.address()?.to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn id_list(value: &HeaderValue<'_>) -> Vec<String> {
    let list: Vec<&str> = match value {
        HeaderValue::Text(text) => vec![text.as_ref()],
        HeaderValue::TextList(list) => list.iter().map(|t| t.as_ref()).collect(),
        _ => Vec::new(),
    };
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for id in list {
        let id = id.trim();
        if !id.is_empty() && id.len() <= MAX_MESSAGE_ID_LEN && !out.iter().any(|o| o == id) {
            out.push(id.to_string());
        }
    }
    out
}

/// Walks the part tree of `message`, appending a digest per part.
/// `prefix` is the section number of the attached message being walked,
/// empty for the top level. A single-part message's body is part
/// `prefix.1`, as in IMAP.
fn walk_parts(
    message: &Message<'_>,
    prefix: &str,
    depth: usize,
    out: &mut Vec<PartDigest>,
    anomalies: &mut Vec<Anomaly>,
) {
    match &message.root_part().body {
        PartType::Multipart(_) => {
            let mut seen = vec![false; message.parts.len()];
            walk(message, 0, prefix, depth, &mut seen, out, anomalies)
        }
        _ => leaf(message, 0, section(prefix, 1), depth, out, anomalies),
    }
}

/// The section number of the `n`th child of section `parent`.
fn section(parent: &str, n: usize) -> String {
    if parent.is_empty() {
        n.to_string()
    } else {
        format!("{parent}.{n}")
    }
}

/// Digests part `part_id` at section `path` and, for a multipart, its
/// children. `depth` counts nested multiparts and attached messages, so
/// that hostile nesting is cut off rather than exhausting the stack, and
/// `seen` marks the parts already visited: the parser's part list of a
/// malformed message can name a part as a child of more than one parent,
/// or of itself, and following every such path again costs time that
/// grows exponentially with the depth (a 630-byte message found by the
/// fuzz test kept the walk busy for good).
fn walk(
    message: &Message<'_>,
    part_id: u32,
    path: &str,
    depth: usize,
    seen: &mut [bool],
    out: &mut Vec<PartDigest>,
    anomalies: &mut Vec<Anomaly>,
) {
    if depth > MAX_PART_DEPTH {
        anomalies.push(Anomaly::NestingTooDeep);
        return;
    }
    match seen.get_mut(part_id as usize) {
        Some(visited) if *visited => return,
        Some(visited) => *visited = true,
        None => return,
    }
    let Some(part) = message.part(part_id) else {
        return;
    };
    match &part.body {
        PartType::Multipart(children) => {
            for (i, &child) in children.iter().enumerate() {
                walk(
                    message,
                    child,
                    &section(path, i + 1),
                    depth + 1,
                    seen,
                    out,
                    anomalies,
                );
            }
        }
        _ => leaf(message, part_id, path.to_string(), depth, out, anomalies),
    }
}

fn leaf(
    message: &Message<'_>,
    part_id: u32,
    path: String,
    depth: usize,
    out: &mut Vec<PartDigest>,
    anomalies: &mut Vec<Anomaly>,
) {
    let Some(part) = message.part(part_id) else {
        return;
    };
    if part.is_encoding_problem {
        anomalies.push(Anomaly::EncodingProblem);
    }
    let content_type = part
        .content_type()
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_string(),
        })
        .unwrap_or_else(|| "text/plain".to_string())
        .to_ascii_lowercase();
    let filename = part.attachment_name().map(str::to_string);

    let decoded: std::borrow::Cow<'_, [u8]> = match &part.body {
        PartType::Binary(bytes) | PartType::InlineBinary(bytes) => bytes.as_ref().into(),
        PartType::Message(inner) => inner.raw_message().into(),
        PartType::Text(_) | PartType::Html(_) => {
            let raw = message
                .raw_message
                .get(part.offset_body as usize..part.offset_end as usize)
                .unwrap_or_default();
            match part.encoding {
                mail_parser::Encoding::Base64 => {
                    base64_decode(raw).map(Into::into).unwrap_or_else(|| {
                        anomalies.push(Anomaly::EncodingProblem);
                        raw.into()
                    })
                }
                mail_parser::Encoding::QuotedPrintable => quoted_printable_decode(raw)
                    .map(Into::into)
                    .unwrap_or_else(|| {
                        anomalies.push(Anomaly::EncodingProblem);
                        raw.into()
                    }),
                mail_parser::Encoding::None => raw.into(),
            }
        }
        PartType::Multipart(_) => return,
    };

    out.push(PartDigest {
        path: path.clone(),
        content_type,
        filename,
        size: decoded.len() as u64,
        sha256: Sha256Digest::of(&decoded),
    });

    if let PartType::Message(inner) = &part.body {
        walk_parts(inner, &path, depth + 1, out, anomalies);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_named_by_imap_section_numbers() {
        let raw = b"From: a@x\r\nMessage-ID: <n@x>\r\n\
Content-Type: multipart/mixed; boundary=outer\r\n\r\n\
--outer\r\nContent-Type: text/plain\r\n\r\none\r\n\
--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n\
--inner\r\nContent-Type: text/plain\r\n\r\ntwo\r\n\
--inner\r\nContent-Type: text/html\r\n\r\n<p>two</p>\r\n\
--inner--\r\n\
--outer\r\nContent-Type: message/rfc822\r\n\r\n\
From: b@x\r\nSubject: attached\r\n\r\nthree\r\n\
--outer--\r\n";
        let paths: Vec<(String, String)> = analyze(raw)
            .digests
            .parts
            .into_iter()
            .map(|p| (p.path, p.content_type))
            .collect();
        let expected = [
            ("1", "text/plain"),
            ("2.1", "text/plain"),
            ("2.2", "text/html"),
            ("3", "message/rfc822"),
            ("3.1", "text/plain"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect();
        assert_eq!(paths, expected);
    }

    #[test]
    fn a_single_part_message_has_part_one() {
        let parts = analyze(b"From: a@x\r\n\r\nbody\r\n").digests.parts;
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].path, "1");
        assert_eq!(parts[0].sha256, Sha256Digest::of(b"body\r\n"));
    }
}
