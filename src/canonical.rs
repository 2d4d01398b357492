// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The canonical form of a message, `mailnotary-relaxed-v1`.
//!
//! Two copies of one e-mail rarely have the same bytes: each mailbox adds
//! its own transport headers (Received, Return-Path, DKIM-Signature, X-…),
//! clients refold long headers and change the case of field names, and files
//! saved on Unix end their lines with LF where the wire used CRLF. The
//! canonical form removes exactly those differences and nothing that a
//! person reading the message would notice, so that the sender's copy and
//! the receiver's copy of a disputed message produce the same digest.
//!
//! It follows DKIM's "relaxed" canonicalizations (RFC 6376 §3.4.2 for header
//! fields, §3.4.4 for the body) over a fixed list of header fields, after
//! bare LF has been read as CRLF. `docs/formats.md` gives the algorithm step
//! by step with test vectors, so that another implementation can reproduce
//! it; keep the two in step.
//!
//! What it deliberately does not absorb: a change of Content-Transfer-Encoding
//! in transit (an 8bit body re-encoded as quoted-printable by a relay), and
//! decoding of RFC 2047 encoded words. Such a copy does not match
//! canonically, but its parts still match one by one (see
//! [`crate::analysis`]).

use sha2::{Digest, Sha256};

/// The name recorded next to every canonical digest. A later version of the
/// algorithm gets a new name; the old one stays verifiable.
pub const ALGORITHM: &str = "mailnotary-relaxed-v1";

/// The header fields that enter the canonical form, in the order they are
/// written. Every instance of each is taken, in message order.
pub const HEADER_FIELDS: [&str; 13] = [
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// Returns the canonical form of `raw` as bytes.
///
/// Useful to show a person what was hashed; [`digest`] computes the same
/// hash without holding the whole form in memory.
pub fn canonicalize(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    write_canonical(raw, &mut |bytes| out.extend_from_slice(bytes));
    out
}

/// Returns SHA-256 over the canonical form of `raw`.
pub fn digest(raw: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut buffer = Vec::with_capacity(64 * 1024);
    write_canonical(raw, &mut |bytes| {
        if buffer.len() + bytes.len() > buffer.capacity() {
            hasher.update(&buffer);
            buffer.clear();
        }
        if bytes.len() > buffer.capacity() {
            hasher.update(bytes);
        } else {
            buffer.extend_from_slice(bytes);
        }
    });
    hasher.update(&buffer);
    hasher.finalize().into()
}

/// One line of the message without its line end (LF, with or without CR
/// before it).
struct Line<'a> {
    content: &'a [u8],
}

/// Splits on LF; a CR right before the LF belongs to the line end. This is
/// where bare LF is read as CRLF: both end a line the same way.
fn lines(raw: &[u8]) -> impl Iterator<Item = Line<'_>> {
    let mut rest = raw;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match memchr_lf(rest) {
            Some(at) => {
                let mut content = &rest[..at];
                if let Some(stripped) = content.strip_suffix(b"\r") {
                    content = stripped;
                }
                rest = &rest[at + 1..];
                Some(Line { content })
            }
            None => {
                let content = rest;
                rest = &[];
                Some(Line { content })
            }
        }
    })
}

fn memchr_lf(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

/// Whether relaxed canonicalization leaves `line` as it is: no tab, no two
/// spaces in a row, no space at the end. Most lines of real mail are, and
/// skipping the copy for them is most of the canonicalizer's speed.
fn already_relaxed(line: &[u8]) -> bool {
    line.last() != Some(&b' ')
        && memchr::memchr(b'\t', line).is_none()
        && !line.windows(2).any(|w| w == b"  ")
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The length of the field name when `line` starts a header field: one or
/// more printable US-ASCII characters other than colon, optional white space
/// (the obsolete syntax of RFC 5322 §4.5), then a colon.
pub(crate) fn field_name_len(line: &[u8]) -> Option<usize> {
    let name_len = line
        .iter()
        .position(|&b| !(33..=126).contains(&b) || b == b':')?;
    if name_len == 0 {
        return None;
    }
    let after_name = &line[name_len..];
    let wsp = after_name.iter().take_while(|&&b| is_wsp(b)).count();
    (after_name.get(wsp) == Some(&b':')).then_some(name_len)
}

/// Whether `line` is an mbox "From " separator rather than a header field.
pub fn is_mbox_separator(line: &[u8]) -> bool {
    line.starts_with(b"From ") && field_name_len(line).is_none()
}

/// A header field as found: its name and the pieces of its value, the first
/// being the rest of the first line after the colon, each further one a
/// continuation line (starting with white space).
struct Field<'a> {
    name: &'a [u8],
    pieces: Vec<&'a [u8]>,
}

fn write_canonical(raw: &[u8], sink: &mut dyn FnMut(&[u8])) {
    let mut fields: Vec<Field<'_>> = Vec::new();
    let mut iter = lines(raw).peekable();

    // An mbox separator left at the top of a saved file is not a header;
    // "From : x" (obsolete syntax, a real field) is not a separator.
    if iter.peek().is_some_and(|l| is_mbox_separator(l.content)) {
        iter.next();
    }

    // The header section ends at the first empty line (which belongs to
    // neither part) or at the first line that is neither a field nor a
    // continuation; such a line is the first line of the body.
    let mut first_body_line = None;
    for line in iter.by_ref() {
        let content = line.content;
        if content.is_empty() {
            break;
        }
        if is_wsp(content[0]) {
            if let Some(field) = fields.last_mut() {
                field.pieces.push(content);
                continue;
            }
        } else if let Some(name_len) = field_name_len(content) {
            let colon = content[name_len..]
                .iter()
                .position(|&b| b == b':')
                .map_or(content.len(), |p| name_len + p);
            fields.push(Field {
                name: &content[..name_len],
                pieces: vec![&content[(colon + 1).min(content.len())..]],
            });
            continue;
        }
        first_body_line = Some(line);
        break;
    }

    let mut value = Vec::new();
    for wanted in HEADER_FIELDS {
        for field in fields
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(wanted.as_bytes()))
        {
            sink(wanted.as_bytes());
            sink(b":");
            value.clear();
            for piece in &field.pieces {
                push_collapsed(&mut value, piece);
            }
            let end = value.iter().rposition(|&b| b != b' ').map_or(0, |p| p + 1);
            let start = value[..end].iter().take_while(|&&b| b == b' ').count();
            sink(&value[start..end]);
            sink(b"\r\n");
        }
    }
    sink(b"\r\n");

    // Body, RFC 6376 §3.4.4: white space runs become one space, white space
    // at line ends goes, empty lines at the end go, and a non-empty body
    // ends with CRLF.
    let mut pending_empty_lines = 0usize;
    let mut line_buf = Vec::new();
    for line in first_body_line.into_iter().chain(iter) {
        let relaxed: &[u8] = if already_relaxed(line.content) {
            line.content
        } else {
            line_buf.clear();
            push_collapsed(&mut line_buf, line.content);
            if line_buf.last() == Some(&b' ') {
                line_buf.pop();
            }
            &line_buf
        };
        if relaxed.is_empty() {
            pending_empty_lines += 1;
            continue;
        }
        for _ in 0..pending_empty_lines {
            sink(b"\r\n");
        }
        pending_empty_lines = 0;
        sink(relaxed);
        sink(b"\r\n");
    }
}

/// Appends `bytes` to `out`, turning every run of spaces and tabs into one
/// space, continuing a run already at the end of `out`.
fn push_collapsed(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if is_wsp(b) {
            if out.last() != Some(&b' ') {
                out.push(b' ');
            }
        } else {
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_equals_hash_of_canonical_form() {
        let raw = b"Subject:  a\r\n  b\r\nX-Other: no\r\n\r\nbody  \r\n\r\n";
        let expected: [u8; 32] = Sha256::digest(canonicalize(raw)).into();
        assert_eq!(digest(raw), expected);
        assert_eq!(canonicalize(raw), b"subject:a b\r\n\r\nbody\r\n");
    }

    #[test]
    fn field_names_follow_rfc5322_syntax() {
        assert_eq!(field_name_len(b"Subject: x"), Some(7));
        assert_eq!(field_name_len(b"Subject : x"), Some(7));
        assert_eq!(field_name_len(b": x"), None);
        assert_eq!(field_name_len(b"no colon here"), None);
        assert_eq!(field_name_len(b"From sender@example Mon 12:00"), None);
        assert!(is_mbox_separator(
            b"From sender@example Mon Feb  2 12:00:00 2026"
        ));
        assert!(!is_mbox_separator(b"From : a@example"));
        assert_eq!(
            canonicalize(b"From : a@example\r\n\r\nb\r\n"),
            b"from:a@example\r\n\r\nb\r\n"
        );
    }

    #[test]
    fn large_bodies_hash_the_same_streamed_or_whole() {
        let mut raw = b"From: a@b\r\n\r\n".to_vec();
        for i in 0..20_000 {
            raw.extend_from_slice(format!("line {i}\t  with  spaces \r\n").as_bytes());
        }
        let expected: [u8; 32] = Sha256::digest(canonicalize(&raw)).into();
        assert_eq!(digest(&raw), expected);
    }
}
