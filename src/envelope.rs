// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Where a message came from.
//!
//! Every source (the SMTP listener, an IMAP watcher, a file import) hands
//! the pipeline an [`Envelope`] next to the raw bytes. The envelope goes into
//! the receipt's `source` and into every sighting, so it holds only facts the
//! source observed itself: what a peer claimed (HELO name, MAIL FROM) is
//! recorded as claimed, never as verified.

use serde::{Deserialize, Serialize};

/// The circumstances of one arrival of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Gateway clock when the bytes were complete, in milliseconds since the
    /// Unix epoch.
    pub received_at: u64,
    /// The protocol-specific details.
    pub source: Source,
}

/// The protocol a message arrived through, with its details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// Received by the SMTP listener (a BCC or journal copy).
    Smtp {
        /// The client's IP address and port.
        peer: String,
        /// The name the client gave in EHLO or HELO.
        helo: String,
        /// The reverse-path of MAIL FROM, empty for the null sender.
        mail_from: String,
        /// Every forward-path accepted in RCPT TO, in order.
        rcpt_to: Vec<String>,
        /// TLS version and cipher suite when the session used STARTTLS.
        tls: Option<String>,
    },
    /// Fetched from a watched IMAP folder.
    Imap {
        /// Host and port of the server.
        server: String,
        /// The account name from the configuration.
        account: String,
        /// The folder (mailbox) name.
        folder: String,
        /// The folder's UIDVALIDITY when the message was fetched.
        uid_validity: u32,
        /// The message's UID in that folder.
        uid: u32,
    },
    /// Read from a file by `mailnotary ingest`.
    Import {
        /// The path as given on the command line or found below it.
        path: String,
        /// For a message inside an mbox file, its position (from 1).
        mbox_index: Option<u64>,
    },
}

impl Source {
    /// The short name used in policies and in `lookup` output.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Smtp { .. } => "smtp",
            Source::Imap { .. } => "imap",
            Source::Import { .. } => "import",
        }
    }
}

/// Milliseconds since the Unix epoch by the gateway clock.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
