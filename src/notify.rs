// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Receipt notifications: a mail per message, in Chinese and English, with
//! the signed receipt and the evidence record attached, sent through the
//! operator's smarthost with lettre.
//!
//! The queue lives in the store ([`crate::archive::notify`]); this module
//! only sends. A notification goes out once its message is stamped, so it
//! can carry the evidence record. A failure (smarthost down, refused, TLS
//! error) leaves the entry queued and sets the next attempt after a wait
//! that doubles from `retry_secs` (30 s) to an hour; ingest never waits for the
//! smarthost, so a failing one loses nothing and blocks nothing.
//!
//! The mail names the message by its Message-ID, receipt id and digests,
//! with its sender and subject only when the policy did not withhold them
//! (the record no longer holds withheld fields).

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};

use crate::archive::notify::Notification;
use crate::archive::{Archive, ArchiveError};
use crate::config::{NotifyConfig, TlsMode, secret};
use crate::envelope::now_millis;
use crate::id::ReceiptId;

const MAX_RETRY: Duration = Duration::from_secs(3600);

/// Sends the queued notifications of an archive.
pub struct Notifier {
    transport: SmtpTransport,
    from: Mailbox,
    server: String,
    /// SHA-256 fingerprint of the CA that signs receipts, for the text.
    ca_fingerprint: Option<String>,
    /// The wait after a first failure; it doubles after each one.
    first_retry: Duration,
}

/// What one round of sending did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    pub sent: u64,
    pub failed: u64,
}

impl Notifier {
    /// A sender through the smarthost of `config`.
    pub fn new(config: &NotifyConfig, ca_fingerprint: Option<String>) -> Result<Notifier, String> {
        let from: Mailbox = config.from.parse().map_err(|e| {
            format!(
                "[notify] from = {:?} is not an e-mail address: {e}",
                config.from
            )
        })?;
        if config.tls == TlsMode::None && !crate::net::is_loopback(&config.host) {
            return Err(format!(
                "[notify] tls = \"none\" is allowed only for a loopback smarthost, not {}; use \
                 \"starttls\" or \"implicit\"",
                config.host
            ));
        }
        let port = config.port.unwrap_or(match config.tls {
            TlsMode::Implicit => 465,
            TlsMode::Starttls => 587,
            TlsMode::None => 25,
        });
        let tls = match config.tls {
            TlsMode::None => Tls::None,
            mode => {
                let mut params = TlsParameters::builder(config.host.clone());
                if let Some(file) = &config.ca_file {
                    let pem = std::fs::read(file).map_err(|e| {
                        format!("[notify] cannot read ca_file {}: {e}", file.display())
                    })?;
                    let cert = Certificate::from_pem(&pem)
                        .map_err(|e| format!("[notify] ca_file {}: {e}", file.display()))?;
                    params = params.add_root_certificate(cert);
                }
                let params = params
                    .build_rustls()
                    .map_err(|e| format!("[notify] TLS setup: {e}"))?;
                match mode {
                    TlsMode::Implicit => Tls::Wrapper(params),
                    _ => Tls::Required(params),
                }
            }
        };
        let mut builder = SmtpTransport::builder_dangerous(config.host.clone())
            .port(port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(config.timeout_secs.max(1))));
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            let password = secret(password, "[notify] password")?;
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Notifier {
            transport: builder.build(),
            from,
            server: format!("{}:{port}", config.host),
            ca_fingerprint,
            first_retry: Duration::from_secs(config.retry_secs.max(1)),
        })
    }

    /// Sends every notification that is due; returns what was sent and
    /// what failed (and stays queued).
    pub fn round(&self, archive: &Archive) -> Result<Round, ArchiveError> {
        let mut round = Round::default();
        let now = now_millis();
        for (id, notification) in archive.notifications_due(now, 100)? {
            match self.send(archive, &id, &notification) {
                Ok(()) => {
                    archive.notification_sent(id, now_millis())?;
                    tracing::info!(receipt_id = %id, "receipt notification sent");
                    round.sent += 1;
                }
                Err(why) => {
                    let wait = self
                        .first_retry
                        .saturating_mul(1 << notification.attempts.min(10))
                        .min(MAX_RETRY);
                    tracing::warn!(receipt_id = %id, server = %self.server, error = %why,
                        retry_in_s = wait.as_secs(), "receipt notification failed; it stays queued");
                    archive.notification_failed(id, why, now + wait.as_millis() as u64)?;
                    round.failed += 1;
                }
            }
        }
        Ok(round)
    }

    fn send(
        &self,
        archive: &Archive,
        id: &ReceiptId,
        notification: &Notification,
    ) -> Result<(), String> {
        let mail = self.compose(archive, id, notification)?;
        self.transport
            .send(&mail)
            .map(|_| ())
            .map_err(|e| format!("{}: {e}", self.server))
    }

    fn compose(
        &self,
        archive: &Archive,
        id: &ReceiptId,
        notification: &Notification,
    ) -> Result<Message, String> {
        let store = |e: ArchiveError| format!("reading the receipt of {id}: {e}");
        let record = archive
            .message(id)
            .map_err(store)?
            .ok_or_else(|| format!("message {id} is not in the archive"))?;
        let receipt = archive
            .receipt(id)
            .map_err(store)?
            .ok_or_else(|| format!("message {id} has no signed receipt yet"))?;
        let evidence = archive.evidence(id).map_err(store)?;
        let m = &record.metadata;
        let or_withheld = |value: Option<String>, field: &str| match value {
            Some(v) => v,
            None if record.policy.withheld.iter().any(|w| w == field) => {
                "(withheld by policy / 按策略不予记录)".into()
            }
            None => "-".into(),
        };
        let stamped = evidence
            .as_ref()
            .and_then(|e| {
                chrono::DateTime::from_timestamp_millis(e.batch.stamped_at as i64)
                    .map(|t| format!("{} UTC ({})", t.format("%Y-%m-%d %H:%M:%S"), e.batch.tsa))
            })
            .unwrap_or_else(|| "-".into());
        let received = chrono::DateTime::from_timestamp_millis(record.envelope.received_at as i64)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default();
        let from = m.from.first().map(|f| f.to_string());
        let mut text = String::new();
        text.push_str(
            "这是 mailnotary 为以下邮件签发的存证回执。回执已签名，附件中的证据记录\n\
             证明该邮件在所示时间已经存在。\n\
             This is the receipt mailnotary issued for the message below. The receipt\n\
             is signed, and the attached evidence record proves that the message\n\
             existed at the time shown.\n\n",
        );
        let rows = [
            ("回执编号 / Receipt id", id.to_string()),
            (
                "Message-ID",
                m.message_id
                    .as_ref()
                    .map_or("-".into(), |mid| format!("<{mid}>")),
            ),
            ("发件人 / From", or_withheld(from, "from")),
            ("主题 / Subject", or_withheld(m.subject.clone(), "subject")),
            ("接收时间 / Received", received),
            ("时间戳 / Timestamped", stamped),
            ("原始摘要 / Raw SHA-256", record.digests.raw.to_string()),
            (
                "规范化摘要 / Canonical SHA-256",
                record.digests.canonical.to_string(),
            ),
            ("策略规则 / Policy rule", record.policy.rule.clone()),
        ];
        for (label, value) in rows {
            text.push_str(&format!("{label}: {value}\n"));
        }
        text.push_str(
            "\n验证方法 / To verify the receipt with OpenSSL:\n  \
             openssl cms -verify -inform DER -binary -in receipt.p7s -CAfile gateway-ca.pem\n",
        );
        if let Some(fp) = &self.ca_fingerprint {
            text.push_str(&format!(
                "网关 CA 证书指纹 / Gateway CA certificate SHA-256 fingerprint:\n  {fp}\n\
                 请通过可信渠道向网关管理员核对该指纹。\n\
                 Confirm this fingerprint with the gateway's operator through a channel you trust.\n"
            ));
        }

        let subject = format!(
            "存证回执 / Receipt {id} for {}",
            m.message_id
                .as_ref()
                .map_or("a message without Message-ID".into(), |mid| format!(
                    "<{mid}>"
                ))
        );
        let mut builder = Message::builder().from(self.from.clone()).subject(subject);
        for to in &notification.to {
            let mailbox: Mailbox = to
                .parse()
                .map_err(|e| format!("notify address {to:?}: {e}"))?;
            builder = builder.to(mailbox);
        }
        let pkcs7 = ContentType::parse("application/pkcs7-mime; smime-type=signed-data")
            .map_err(|e| e.to_string())?;
        let mut parts = MultiPart::mixed()
            .singlepart(SinglePart::plain(text))
            .singlepart(Attachment::new(format!("receipt-{id}.p7s")).body(receipt.signed, pkcs7));
        if let Some(e) = evidence {
            let ers = ContentType::parse("application/octet-stream").map_err(|e| e.to_string())?;
            parts =
                parts.singlepart(Attachment::new(format!("evidence-{id}.ers")).body(e.record, ers));
        }
        builder
            .multipart(parts)
            .map_err(|e| format!("building the notification: {e}"))
    }
}
