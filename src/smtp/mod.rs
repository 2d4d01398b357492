// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The SMTP listener: the archive address that the company's MTA sends BCC
//! or journal copies to.
//!
//! It is an SMTP server for exactly one purpose, storing what it receives,
//! and never relays: RCPT is accepted only for the configured archive
//! addresses and domains ([`Settings::accepts`]), and a message is stored
//! once for all its recipients. Commands are parsed by `smtp-proto`; the
//! session ([`session`]) answers with RFC 5321 reply codes and RFC 3463
//! enhanced status codes and offers SIZE, PIPELINING, 8BITMIME, SMTPUTF8,
//! ENHANCEDSTATUSCODES, CHUNKING and STARTTLS.
//!
//! The reply to the end of the data is 250 only after the message is in
//! the store on disk; its text names the receipt id. When the store cannot
//! take the write the reply is 451 4.3.0 and nothing is kept.
//!
//! Line endings: message data sent with DATA must end every line with
//! CRLF. A message that holds a bare LF or a bare CR is refused whole with
//! 554 5.5.2 once its data has ended, and only CRLF "." CRLF ends the data
//! (a "." line after a bare LF does not). This is the stricter reading of
//! RFC 5321 §2.3.8 that also closes the SMTP smuggling family of attacks,
//! where two servers disagree on where a message ends; Postfix rejects bare
//! LF by default for the same reason. BDAT (CHUNKING) carries an exact byte
//! count, so its data has no end marker to disagree on and is stored as
//! sent.
//!
//! Known limits: no SMTP AUTH (the listener is meant for the company's own
//! MTA, restricted with `allowed_networks`); the Received trace header is
//! not added, because the stored bytes must be the bytes the client sent;
//! DSN parameters are accepted and ignored, since the archive delivers
//! nowhere.

pub mod session;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tracing::Instrument;

use crate::archive::Archive;
use crate::config::SmtpConfig;

/// The listener's settings, checked and ready to use.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The name in the greeting and the EHLO reply.
    pub hostname: String,
    /// Accepted recipient addresses, lowercase.
    pub addresses: Vec<String>,
    /// Accepted recipient domains, lowercase.
    pub domains: Vec<String>,
    /// Allowed client networks; empty allows every client.
    pub networks: Vec<Network>,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_connections: usize,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    pub max_command_line: usize,
    pub max_errors: u32,
    pub shutdown_grace: Duration,
}

impl Settings {
    /// Checks `config`; `hostname` is the fallback name.
    pub fn from_config(config: &SmtpConfig, hostname: &str) -> Result<Settings, String> {
        let mut addresses = Vec::new();
        let mut domains = Vec::new();
        for item in &config.accept {
            let item = item.trim().to_lowercase();
            match item.split_once('@') {
                Some(("", domain)) if !domain.is_empty() => domains.push(domain.to_string()),
                Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
                    addresses.push(item.clone())
                }
                None if !item.is_empty() => domains.push(item),
                _ => {
                    return Err(format!(
                        "[smtp] accept: {item:?} is neither an address (archive@example.com) \
                         nor a domain (@example.com)"
                    ));
                }
            }
        }
        if addresses.is_empty() && domains.is_empty() {
            return Err("[smtp] accept is empty: name at least one archive address".into());
        }
        let networks = config
            .allowed_networks
            .iter()
            .map(|n| Network::parse(n))
            .collect::<Result<Vec<_>, _>>()?;
        let positive = |name: &str, value: usize| {
            if value == 0 {
                Err(format!("[smtp] {name} must be at least 1"))
            } else {
                Ok(value)
            }
        };
        Ok(Settings {
            hostname: config
                .hostname
                .clone()
                .unwrap_or_else(|| hostname.to_string()),
            addresses,
            domains,
            networks,
            max_message_size: positive("max_message_size", config.max_message_size)?,
            max_recipients: positive("max_recipients", config.max_recipients)?,
            max_connections: positive("max_connections", config.max_connections)?,
            command_timeout: Duration::from_secs(positive(
                "command_timeout_secs",
                config.command_timeout_secs as usize,
            )? as u64),
            data_timeout: Duration::from_secs(positive(
                "data_timeout_secs",
                config.data_timeout_secs as usize,
            )? as u64),
            max_command_line: config.max_command_line.max(512),
            max_errors: config.max_errors.max(1),
            shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
        })
    }

    /// Whether mail for `address` is accepted (compared without case).
    pub fn accepts(&self, address: &str) -> bool {
        let address = address.to_lowercase();
        if self.addresses.contains(&address) {
            return true;
        }
        match address.rsplit_once('@') {
            Some((local, domain)) if !local.is_empty() => self.domains.iter().any(|d| d == domain),
            _ => false,
        }
    }

    /// Whether a client at `ip` may connect.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.networks.is_empty() || self.networks.iter().any(|n| n.contains(ip))
    }
}

/// An IP network such as `10.0.0.0/8` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// Reads `a.b.c.d/n`, `x::y/n`, or a bare address (a single host).
    pub fn parse(text: &str) -> Result<Network, String> {
        let bad = || {
            format!(
                "[smtp] allowed_networks: {text:?} is not a network; write 10.0.0.0/8, \
                 192.0.2.7 or ::1/128"
            )
        };
        let (address, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text.trim(), None),
        };
        let address: IpAddr = address.parse().map_err(|_| bad())?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Network { address, prefix })
    }

    /// Whether `ip` is in the network; IPv4-mapped IPv6 addresses count as
    /// their IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Loads the STARTTLS certificate chain and key (PEM files).
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the TLS certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no PEM certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the TLS key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the TLS certificate and key do not form a pair: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A session's connection: plain TCP, or TLS after STARTTLS.
pub type Stream = crate::net::Stream<tokio_rustls::server::TlsStream<TcpStream>>;

/// Counters of one listener's life, for the shutdown log and `/healthz`.
#[derive(Debug, Default)]
pub struct Counters {
    pub sessions: std::sync::atomic::AtomicU64,
    pub accepted: std::sync::atomic::AtomicU64,
    /// Messages refused after their data arrived.
    pub rejected: std::sync::atomic::AtomicU64,
    /// Every refusal by its reason, in the order of [`Refusal::ALL`].
    refusals: [std::sync::atomic::AtomicU64; 5],
}

/// Why the listener refused something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A message over the size limit (552).
    TooLarge,
    /// A message with a bare LF or CR (554 5.5.2).
    BareLineEnd,
    /// The store could not take the message (451).
    StoreUnavailable,
    /// A recipient that is not an archive address (550 5.1.1).
    Recipient,
    /// A client outside the allowed networks (554 5.7.1).
    Network,
}

impl Refusal {
    pub const ALL: [Refusal; 5] = [
        Refusal::TooLarge,
        Refusal::BareLineEnd,
        Refusal::StoreUnavailable,
        Refusal::Recipient,
        Refusal::Network,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Refusal::TooLarge => "too_large",
            Refusal::BareLineEnd => "bare_line_end",
            Refusal::StoreUnavailable => "store_unavailable",
            Refusal::Recipient => "recipient",
            Refusal::Network => "network",
        }
    }

    /// Whether the refusal is of a whole message (counted in `rejected`).
    fn is_message(self) -> bool {
        matches!(
            self,
            Refusal::TooLarge | Refusal::BareLineEnd | Refusal::StoreUnavailable
        )
    }
}

impl Counters {
    /// Counts a refusal.
    pub fn refuse(&self, why: Refusal) {
        use std::sync::atomic::Ordering::Relaxed;
        if why.is_message() {
            self.rejected.fetch_add(1, Relaxed);
        }
        let i = Refusal::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.refusals[i].fetch_add(1, Relaxed);
    }

    /// Every reason with its count.
    pub fn refusals(&self) -> Vec<(&'static str, u64)> {
        Refusal::ALL
            .iter()
            .zip(&self.refusals)
            .map(|(r, n)| (r.name(), n.load(std::sync::atomic::Ordering::Relaxed)))
            .collect()
    }
}

/// Everything a session shares with the listener.
pub struct Shared {
    pub settings: Settings,
    pub archive: Arc<Archive>,
    pub tls: Option<TlsAcceptor>,
    pub counters: Counters,
    /// Becomes true when the daemon shuts down.
    pub stopping: watch::Receiver<bool>,
}

/// Accepts sessions on `listener` until `stopping` turns true, then gives
/// the sessions in progress up to the grace period to finish (those waiting
/// for a command are told 421 at once) and returns.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(shared.settings.max_connections));
    let mut stopping = shared.stopping.clone();
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopping.wait_for(|s| *s) => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let slot = Arc::clone(&slots).try_acquire_owned();
        let id = session_id();
        let span = tracing::info_span!("smtp", peer = %peer, session_id = %id);
        sessions.spawn(
            async move {
                match slot {
                    Ok(_slot) => session::run(shared, stream, peer).await,
                    Err(_) => refuse(stream, peer, &shared).await,
                }
            }
            .instrument(span),
        );
    }
    drop(listener);
    let grace = shared.settings.shutdown_grace;
    tracing::info!(
        sessions = sessions.len(),
        grace_secs = grace.as_secs(),
        "SMTP listener closed; waiting for sessions in progress"
    );
    let all_done = async { while sessions.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all_done).await.is_err() {
        tracing::warn!(
            "sessions still open after the grace period were cut; their unfinished messages \
             were not acknowledged and the clients will send them again"
        );
    }
}

/// Answers a connection over the limit and closes it.
async fn refuse(mut stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    use tokio::io::AsyncWriteExt;
    tracing::warn!(%peer, limit = shared.settings.max_connections, "too many sessions; refused");
    let line = format!(
        "421 4.3.2 {} too many connections, try again later\r\n",
        shared.settings.hostname
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(line.as_bytes())).await;
}

/// A short random id that ties a session's log lines together.
fn session_id() -> String {
    let mut bytes = [0u8; 6];
    let _ = getrandom::getrandom(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_match_by_prefix() {
        let net = Network::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let host = Network::parse("::1").unwrap();
        assert!(host.contains("::1".parse().unwrap()));
        assert!(!host.contains("::2".parse().unwrap()));
        assert!(
            Network::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Network::parse("10.0.0.0/33").is_err());
        assert!(Network::parse("example.com").is_err());
    }

    #[test]
    fn recipients_are_addresses_or_domains() {
        let config = SmtpConfig {
            accept: vec!["Archive@Example.com".into(), "@journal.example.org".into()],
            ..SmtpConfig::default()
        };
        let s = Settings::from_config(&config, "gw").unwrap();
        assert!(s.accepts("archive@example.com"));
        assert!(s.accepts("ARCHIVE@EXAMPLE.COM"));
        assert!(!s.accepts("other@example.com"));
        assert!(s.accepts("anyone@journal.example.org"));
        assert!(!s.accepts("@journal.example.org"));
        assert!(!s.accepts("x@sub.journal.example.org"));
        let empty = SmtpConfig {
            accept: vec![],
            ..SmtpConfig::default()
        };
        assert!(Settings::from_config(&empty, "gw").is_err());
    }
}
