// SPDX-License-Identifier: Apache-2.0 OR MIT
//! One SMTP session, from the greeting to the close.
//!
//! Input is read into one buffer and consumed command by command, so that
//! a pipelined batch (RFC 2920) is answered in one write: replies collect
//! in an output buffer that is sent whenever the session would otherwise
//! wait for input. Message data is read line by line with the rules in the
//! module documentation of [`crate::smtp`], without ever holding more than
//! the size limit of it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use smtp_proto::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Refusal, Shared, Stream};
use crate::archive::Ingested;
use crate::envelope::{Envelope, Source, now_millis};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// A line of message data longer than this is taken in pieces.
const LONG_LINE: usize = 64 * 1024;

/// What the session does after a command.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// Why input could not be read.
#[derive(Debug)]
enum Stop {
    /// The client closed the connection.
    Eof,
    /// The client was silent for longer than the timeout.
    Timeout,
    /// The daemon is shutting down and the session was idle.
    Shutdown,
    /// A read or write failed.
    Io(std::io::Error),
}

/// A read command line.
enum Line {
    Command(Vec<u8>),
    TooLong,
}

/// The message being received.
struct Transaction {
    mail_from: String,
    rcpt_to: Vec<String>,
    /// Data gathered so far by BDAT.
    chunks: Option<Vec<u8>>,
    /// More data arrived than the size limit; it is read and dropped.
    oversized: bool,
    /// The size the client announced with SIZE, if any.
    announced: usize,
}

/// Received message data, checked.
struct Data {
    bytes: Vec<u8>,
    oversized: bool,
    /// The first line (from 1) that ends in a bare LF or holds a bare CR.
    bad_line: Option<(u64, &'static str)>,
}

struct Session {
    shared: Arc<Shared>,
    stream: Stream,
    peer: SocketAddr,
    input: Vec<u8>,
    start: usize,
    output: Vec<u8>,
    helo: Option<String>,
    tls: Option<String>,
    tx: Option<Transaction>,
    errors: u32,
    stored: u64,
}

/// Runs one session on `tcp` until the client quits, a limit closes it, or
/// the daemon stops.
pub async fn run(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    shared.counters.sessions.fetch_add(1, Ordering::Relaxed);
    let mut session = Session {
        stream: Stream::Plain(tcp),
        peer,
        input: Vec::with_capacity(READ_CHUNK),
        start: 0,
        output: Vec::with_capacity(1024),
        helo: None,
        tls: None,
        tx: None,
        errors: 0,
        stored: 0,
        shared,
    };
    if !session.shared.settings.allows(peer.ip()) {
        session.shared.counters.refuse(Refusal::Network);
        tracing::warn!("client network not allowed; refused");
        session.reply(&format!(
            "554 5.7.1 {} does not accept mail from your network",
            session.shared.settings.hostname
        ));
        let _ = session.flush().await;
        return;
    }
    tracing::info!("session opened");
    let greeting = format!(
        "220 {} ESMTP mailnotary archive gateway",
        session.shared.settings.hostname
    );
    session.reply(&greeting);
    let end = session.serve().await;
    let _ = session.flush().await;
    let _ = session.stream.shutdown().await;
    tracing::info!(
        stored = session.stored,
        errors = session.errors,
        end = end,
        "session closed"
    );
}

impl Session {
    /// The command loop; returns how the session ended, for the log.
    async fn serve(&mut self) -> &'static str {
        loop {
            let line = match self.read_line().await {
                Ok(line) => line,
                Err(stop) => return self.stopped(stop),
            };
            let flow = match line {
                Line::TooLong => self.error(&format!(
                    "500 5.5.2 command line longer than {} bytes",
                    self.shared.settings.max_command_line
                )),
                Line::Command(line) => match self.command(&line).await {
                    Ok(flow) => flow,
                    Err(stop) => return self.stopped(stop),
                },
            };
            if flow == Flow::Close {
                return "closed";
            }
        }
    }

    /// Says goodbye where the protocol allows it; returns a log word.
    fn stopped(&mut self, stop: Stop) -> &'static str {
        let host = self.shared.settings.hostname.clone();
        match stop {
            Stop::Eof => "client disconnected",
            Stop::Timeout => {
                self.reply(&format!(
                    "421 4.4.2 {host} timeout waiting for input, closing"
                ));
                "timeout"
            }
            Stop::Shutdown => {
                self.reply(&format!("421 4.3.0 {host} shutting down, try again later"));
                "shutdown"
            }
            Stop::Io(e) => {
                tracing::debug!(error = %e, "connection error");
                "connection error"
            }
        }
    }

    fn reply(&mut self, line: &str) {
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    /// Replies with an error caused by the client; after too many of them
    /// the session is closed.
    fn error(&mut self, line: &str) -> Flow {
        self.reply(line);
        self.errors += 1;
        if self.errors >= self.shared.settings.max_errors {
            tracing::warn!(errors = self.errors, "too many errors; closing the session");
            let host = self.shared.settings.hostname.clone();
            self.reply(&format!("421 4.7.0 {host} too many errors, closing"));
            return Flow::Close;
        }
        Flow::Continue
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.output.is_empty() {
            let out = std::mem::take(&mut self.output);
            let written = tokio::time::timeout(
                self.shared.settings.command_timeout,
                self.stream.write_all(&out),
            )
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?;
            written?;
            self.stream.flush().await?;
            self.output = out;
            self.output.clear();
        }
        Ok(())
    }

    /// Reads more input, sending pending replies first. With `idle`, a
    /// shutdown of the daemon interrupts the wait.
    async fn fill(&mut self, timeout: Duration, idle: bool) -> Result<(), Stop> {
        self.flush().await.map_err(Stop::Io)?;
        if self.start > 0 && self.start * 2 >= self.input.len() {
            self.input.drain(..self.start);
            self.start = 0;
        }
        self.input.reserve(READ_CHUNK);
        let mut stopping = self.shared.stopping.clone();
        let read =
            async { tokio::time::timeout(timeout, self.stream.read_buf(&mut self.input)).await };
        let result = if idle {
            tokio::select! {
                r = read => r,
                _ = stopping.wait_for(|s| *s) => return Err(Stop::Shutdown),
            }
        } else {
            read.await
        };
        match result {
            Err(_) => Err(Stop::Timeout),
            Ok(Err(e)) => Err(Stop::Io(e)),
            Ok(Ok(0)) => Err(Stop::Eof),
            Ok(Ok(_)) => Ok(()),
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.input[self.start..]
    }

    /// Reads one command line, LF included.
    async fn read_line(&mut self) -> Result<Line, Stop> {
        let max = self.shared.settings.max_command_line;
        let mut skipping = false;
        loop {
            if let Some(pos) = memchr::memchr(b'\n', self.buffered()) {
                let end = self.start + pos + 1;
                let line = self.input[self.start..end].to_vec();
                self.start = end;
                if skipping || line.len() > max {
                    return Ok(Line::TooLong);
                }
                return Ok(Line::Command(line));
            }
            if self.buffered().len() > max {
                // Drop what is buffered and read on to the end of the line.
                skipping = true;
                self.start = self.input.len();
            }
            let idle = self.buffered().is_empty() && !skipping;
            if *self.shared.stopping.borrow() && idle {
                return Err(Stop::Shutdown);
            }
            self.fill(self.shared.settings.command_timeout, idle)
                .await?;
        }
    }

    async fn command(&mut self, line: &[u8]) -> Result<Flow, Stop> {
        let request = match Request::parse(&mut line.iter()) {
            Ok(request) => request.into_owned(),
            Err(e) => {
                tracing::debug!(error = ?e, "command refused");
                return Ok(self.error(&parse_error_reply(&e)));
            }
        };
        tracing::debug!(command = request.name(), "command");
        let host = self.shared.settings.hostname.clone();
        Ok(match request {
            Request::Ehlo { host: name } => {
                self.helo = Some(name.clone());
                self.tx = None;
                let settings = &self.shared.settings;
                let mut lines = vec![
                    format!("{host} greets {name}"),
                    format!("SIZE {}", settings.max_message_size),
                    "PIPELINING".into(),
                    "8BITMIME".into(),
                    "SMTPUTF8".into(),
                    "ENHANCEDSTATUSCODES".into(),
                    "CHUNKING".into(),
                ];
                if self.shared.tls.is_some() && self.tls.is_none() {
                    lines.push("STARTTLS".into());
                }
                let last = lines.len() - 1;
                for (i, text) in lines.iter().enumerate() {
                    let sep = if i == last { ' ' } else { '-' };
                    self.reply(&format!("250{sep}{text}"));
                }
                Flow::Continue
            }
            Request::Helo { host: name } => {
                self.helo = Some(name);
                self.tx = None;
                self.reply(&format!("250 {host}"));
                Flow::Continue
            }
            Request::Mail { from } => {
                if self.helo.is_none() {
                    return Ok(self.error("503 5.5.1 send EHLO or HELO first"));
                }
                if self.tx.is_some() {
                    return Ok(self.error("503 5.5.1 a transaction is already open; send RSET"));
                }
                let max = self.shared.settings.max_message_size;
                if from.size > max {
                    return Ok(self.error(&format!(
                        "552 5.3.4 the message is larger than the limit of {max} bytes"
                    )));
                }
                self.tx = Some(Transaction {
                    mail_from: from.address,
                    rcpt_to: Vec::new(),
                    chunks: None,
                    oversized: false,
                    announced: from.size,
                });
                self.reply("250 2.1.0 sender ok");
                Flow::Continue
            }
            Request::Rcpt { to } => self.rcpt(to.address),
            Request::Data => self.data().await?,
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.bdat(chunk_size, is_last).await?,
            Request::Rset => {
                self.tx = None;
                self.reply("250 2.0.0 reset");
                Flow::Continue
            }
            Request::Noop { .. } => {
                self.reply("250 2.0.0 ok");
                Flow::Continue
            }
            Request::Quit => {
                self.reply(&format!("221 2.0.0 {host} closing"));
                Flow::Close
            }
            Request::Vrfy { .. } | Request::Expn { .. } => {
                self.reply("502 5.5.1 address verification is not offered");
                Flow::Continue
            }
            Request::Help { .. } => {
                self.reply(
                    "214 2.0.0 mailnotary archives the mail sent to its archive addresses; \
                     see RFC 5321",
                );
                Flow::Continue
            }
            Request::StartTls => self.starttls().await?,
            Request::Auth { .. } => self
                .error("502 5.5.1 authentication is not offered; clients are admitted by network"),
            other => self.error(&format!("502 5.5.1 {} is not implemented", other.name())),
        })
    }

    fn rcpt(&mut self, address: String) -> Flow {
        let max = self.shared.settings.max_recipients;
        let accepted = self.shared.settings.accepts(&address);
        let Some(tx) = self.tx.as_mut() else {
            return self.error("503 5.5.1 send MAIL first");
        };
        if tx.rcpt_to.len() >= max {
            return self.error(&format!("452 4.5.3 more than {max} recipients"));
        }
        if !accepted {
            self.shared.counters.refuse(Refusal::Recipient);
            tracing::info!("recipient refused: not an archive address");
            return self.error(&format!(
                "550 5.1.1 <{address}>: not an archive address of this server; it archives \
                 and never relays"
            ));
        }
        tx.rcpt_to.push(address);
        self.reply("250 2.1.5 recipient ok");
        Flow::Continue
    }

    async fn data(&mut self) -> Result<Flow, Stop> {
        match &self.tx {
            Some(tx) if tx.chunks.is_some() => {
                return Ok(self.error("503 5.5.1 DATA cannot follow BDAT"));
            }
            Some(tx) if !tx.rcpt_to.is_empty() => {}
            _ => return Ok(self.error("503 5.5.1 send MAIL and RCPT first")),
        }
        self.reply("354 end data with <CR><LF>.<CR><LF>");
        let data = self.read_data().await?;
        let Some(tx) = self.tx.take() else {
            return Ok(Flow::Continue);
        };
        if let Some((line, what)) = data.bad_line {
            self.shared.counters.refuse(Refusal::BareLineEnd);
            tracing::info!(line, what, "message refused: bad line ending");
            return Ok(self.error(&format!(
                "554 5.5.2 message refused: line {line} {what}; lines must end in CRLF \
                 (RFC 5321 section 2.3.8)"
            )));
        }
        Ok(self.finish(tx, data.bytes, data.oversized).await)
    }

    async fn bdat(&mut self, size: usize, last: bool) -> Result<Flow, Stop> {
        // The chunk follows the command whatever the answer, so it is
        // always read, to stay in step with the client.
        let max = self.shared.settings.max_message_size;
        let ready = matches!(&self.tx, Some(tx) if !tx.rcpt_to.is_empty());
        let have = self
            .tx
            .as_ref()
            .and_then(|tx| tx.chunks.as_ref())
            .map_or(0, Vec::len);
        let room = if ready { max.saturating_sub(have) } else { 0 };
        let (chunk, over) = self.read_exact_capped(size, room).await?;
        let Some(tx) = self.tx.as_mut().filter(|_| ready) else {
            return Ok(self.error("503 5.5.1 send MAIL and RCPT first"));
        };
        let chunks = tx.chunks.get_or_insert_with(Vec::new);
        chunks.extend_from_slice(&chunk);
        tx.oversized |= over;
        if !last {
            self.reply(&format!("250 2.0.0 {size} bytes received"));
            return Ok(Flow::Continue);
        }
        let Some(mut tx) = self.tx.take() else {
            return Ok(Flow::Continue);
        };
        let bytes = tx.chunks.take().unwrap_or_default();
        let oversized = tx.oversized;
        Ok(self.finish(tx, bytes, oversized).await)
    }

    /// Stores a complete message and answers for it.
    async fn finish(&mut self, tx: Transaction, bytes: Vec<u8>, oversized: bool) -> Flow {
        let max = self.shared.settings.max_message_size;
        if oversized {
            self.shared.counters.refuse(Refusal::TooLarge);
            tracing::info!(limit = max, "message refused: too large");
            return self.error(&format!(
                "552 5.3.4 the message is larger than the limit of {max} bytes; nothing was stored"
            ));
        }
        let size = bytes.len();
        let envelope = Envelope {
            received_at: now_millis(),
            source: Source::Smtp {
                peer: self.peer.to_string(),
                helo: self.helo.clone().unwrap_or_default(),
                mail_from: tx.mail_from,
                rcpt_to: tx.rcpt_to,
                tls: self.tls.clone(),
            },
        };
        let archive = Arc::clone(&self.shared.archive);
        let outcome = tokio::task::spawn_blocking(move || archive.ingest(envelope, bytes)).await;
        match outcome {
            Ok(Ok(ingested)) => {
                self.stored += 1;
                self.shared
                    .counters
                    .accepted
                    .fetch_add(1, Ordering::Relaxed);
                let id = ingested.receipt_id();
                match ingested {
                    Ingested::Stored(_) => {
                        tracing::info!(receipt_id = %id, size, "message stored");
                        self.reply(&format!("250 2.0.0 stored, receipt id {id}"));
                    }
                    Ingested::Sighting(_) => {
                        tracing::info!(receipt_id = %id, size, "message already stored; sighting recorded");
                        self.reply(&format!(
                            "250 2.0.0 already stored as receipt id {id}; this arrival was recorded"
                        ));
                    }
                }
            }
            Ok(Err(e)) => {
                self.shared.counters.refuse(Refusal::StoreUnavailable);
                tracing::error!(error = %e, "the store refused a message; answered 451");
                self.reply(
                    "451 4.3.0 the archive cannot store messages right now; try again later",
                );
            }
            Err(e) => {
                self.shared.counters.refuse(Refusal::StoreUnavailable);
                tracing::error!(error = %e, "storing a message failed; answered 451");
                self.reply("451 4.3.0 the archive failed to store the message; try again later");
            }
        }
        Flow::Continue
    }

    async fn starttls(&mut self) -> Result<Flow, Stop> {
        let Some(acceptor) = self.shared.tls.clone() else {
            return Ok(self.error("502 5.5.1 STARTTLS is not offered"));
        };
        if self.tls.is_some() {
            return Ok(self.error("503 5.5.1 TLS is already active"));
        }
        self.reply("220 2.0.0 ready to start TLS");
        self.flush().await.map_err(Stop::Io)?;
        // Commands sent before the handshake must not count as sent under
        // TLS (the STARTTLS command injection of CVE-2011-0411).
        if !self.buffered().is_empty() {
            tracing::warn!(
                bytes = self.buffered().len(),
                "input sent before the TLS handshake was dropped"
            );
        }
        self.input.clear();
        self.start = 0;
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Upgrading) else {
            return Err(Stop::Io(std::io::ErrorKind::InvalidInput.into()));
        };
        let handshake =
            tokio::time::timeout(self.shared.settings.command_timeout, acceptor.accept(tcp)).await;
        let tls = match handshake {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::info!(error = %e, "TLS handshake failed");
                return Err(Stop::Eof);
            }
            Err(_) => return Err(Stop::Eof),
        };
        let (_, connection) = tls.get_ref();
        let version = match connection.protocol_version() {
            Some(tokio_rustls::rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(tokio_rustls::rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(other) => format!("{other:?}"),
            None => "TLS".to_string(),
        };
        let suite = connection
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
        tracing::info!(%version, %suite, "TLS started");
        self.tls = Some(format!("{version} {suite}"));
        self.stream = Stream::Tls(Box::new(tls));
        // RFC 3207 §4.2: the session starts over.
        self.helo = None;
        self.tx = None;
        Ok(Flow::Continue)
    }

    /// Reads `size` bytes of BDAT data, keeping at most `room` of them.
    async fn read_exact_capped(
        &mut self,
        size: usize,
        room: usize,
    ) -> Result<(Vec<u8>, bool), Stop> {
        let mut kept = Vec::with_capacity(size.min(room).min(READ_CHUNK * 16));
        let mut left = size;
        loop {
            let take = left.min(self.buffered().len());
            let keep = take.min(room.saturating_sub(kept.len()));
            kept.extend_from_slice(&self.input[self.start..self.start + keep]);
            self.start += take;
            left -= take;
            if left == 0 {
                return Ok((kept, size > room));
            }
            self.fill(self.shared.settings.data_timeout, false).await?;
        }
    }

    /// Reads message data after 354, to the line holding only ".".
    async fn read_data(&mut self) -> Result<Data, Stop> {
        let max = self.shared.settings.max_message_size;
        // Room for the announced size, or for a typical message, so that
        // the data is not copied over and over as it grows.
        let announced = self.tx.as_ref().map_or(0, |tx| tx.announced);
        let capacity = if announced > 0 { announced } else { 32 * 1024 };
        let mut data = Data {
            bytes: Vec::with_capacity(capacity.min(max)),
            oversized: false,
            bad_line: None,
        };
        let mut line_no: u64 = 1;
        let mut line_start = true;
        // Whether the line before ended in CRLF (the DATA command's did).
        let mut after_crlf = true;
        loop {
            let avail = &self.input[self.start..];
            let (piece, complete) = match memchr::memchr(b'\n', avail) {
                Some(pos) => (&avail[..=pos], true),
                // A long line without its end yet: take all but the last
                // byte, which may be the CR of a CRLF.
                None if avail.len() > LONG_LINE => (&avail[..avail.len() - 1], false),
                None => {
                    self.fill(self.shared.settings.data_timeout, false).await?;
                    continue;
                }
            };
            let consumed = piece.len();
            if complete && line_start && after_crlf && piece == b".\r\n" {
                self.start += consumed;
                return Ok(data);
            }
            let content = if line_start && piece.first() == Some(&b'.') {
                &piece[1..]
            } else {
                piece
            };
            let ends_crlf = complete && content.ends_with(b"\r\n");
            let body_end = if ends_crlf {
                content.len() - 2
            } else if complete {
                content.len() - 1
            } else {
                content.len()
            };
            if data.bad_line.is_none() {
                if complete && !ends_crlf {
                    data.bad_line = Some((line_no, "ends in a bare LF"));
                } else if memchr::memchr(b'\r', &content[..body_end]).is_some() {
                    data.bad_line = Some((line_no, "holds a bare CR"));
                }
            }
            if !data.oversized {
                if data.bytes.len() + content.len() > max {
                    data.oversized = true;
                    data.bytes = Vec::new();
                } else {
                    data.bytes.extend_from_slice(content);
                }
            }
            self.start += consumed;
            if complete {
                line_no += 1;
                line_start = true;
                after_crlf = ends_crlf;
            } else {
                line_start = false;
            }
        }
    }
}

/// The reply to a command smtp-proto could not parse.
fn parse_error_reply(e: &smtp_proto::Error) -> String {
    use smtp_proto::Error;
    match e {
        Error::UnknownCommand => "500 5.5.1 command not recognized".into(),
        Error::InvalidSenderAddress => "501 5.1.7 the sender address is not valid".into(),
        Error::InvalidRecipientAddress => "501 5.1.3 the recipient address is not valid".into(),
        Error::SyntaxError { syntax } => format!("501 5.5.4 syntax: {syntax}"),
        Error::InvalidParameter { param } => format!("501 5.5.4 invalid value for {param}"),
        Error::UnsupportedParameter { param } => {
            format!("555 5.5.4 parameter {param} is not supported")
        }
        _ => "500 5.5.2 command not understood".into(),
    }
}
