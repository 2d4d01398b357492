// SPDX-License-Identifier: Apache-2.0 OR MIT
//! DKIM (RFC 6376) and ARC (RFC 8617) checks at arrival, with the DNS key
//! records captured so that the check can be repeated after the keys are
//! gone from DNS.
//!
//! For every signature of a message, the key record
//! (`SELECTOR._domainkey.DOMAIN`) is fetched by this module, not by the
//! verifier: the exact TXT bytes are kept, and the verifier (mail-auth) is
//! handed a cache that already holds them, so the result provably comes
//! from the bytes that are archived. Records are cached by name for their
//! DNS time to live (a missing key for a minute, a failed lookup for 30
//! seconds, so that a dead resolver costs one timeout per key and not one
//! per message). All lookups of one message share one deadline
//! (`[dns] timeout_ms`): a slow or dead resolver delays a message by at
//! most that, and the signatures whose key did not come are recorded as
//! `temperror`; the message is stored and stamped all the same.
//!
//! Results follow RFC 8601's names: `pass`, `fail` (the signature or the
//! body hash does not verify), `neutral` (expired, or a signature this
//! verifier does not accept), `permerror` (no key, an unusable key, a
//! malformed signature), `temperror` (DNS did not answer).
//!
//! [`Verifier::recheck`] repeats the check with the captured records only:
//! it sends no DNS query, and it judges the `x=` expiry at a given time
//! (the arrival), since a signature that expired after it arrived was valid
//! when the gateway saw it.
//!
//! Known limits: a signature with an `atps=` tag (RFC 6541) needs one more
//! lookup that is made but not captured, so its re-check reports
//! `temperror`; `l=` signatures are refused by the verifier as
//! `permerror`; a TXT record that is not ASCII text is kept by its SHA-256
//! only.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::resolver::ToFqdn;
use mail_auth::common::verify::{DomainKey, VerifySignature};
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::hickory_resolver::proto::op::ResponseCode;
use mail_auth::hickory_resolver::proto::rr::RData;
use mail_auth::{
    AuthenticatedMessage, DkimResult, DnsError, Error, MessageAuthenticator, Parameters,
    ResolverCache, Txt,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::DnsConfig;

/// How long a missing key record is remembered.
const NEGATIVE_TTL: Duration = Duration::from_secs(60);
/// How long a failed lookup (no answer, a server failure) is remembered,
/// so that a dead resolver costs one timeout per key name and not one per
/// message.
const FAILURE_TTL: Duration = Duration::from_secs(30);

/// One DKIM signature's result, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The signing domain (`d=`); empty for a signature that did not parse.
    pub domain: String,
    /// The selector (`s=`).
    pub selector: String,
    /// `rsa-sha256`, `ed25519-sha256` or `rsa-sha1`.
    pub algorithm: String,
    /// `pass`, `fail`, `neutral`, `permerror` or `temperror`.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Verdict {
    /// The DNS name of the signature's key record.
    pub fn key_name(&self) -> String {
        key_name(&self.selector, &self.domain)
    }
}

/// The ARC chain's result, when the message has ARC sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArcVerdict {
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The number of ARC sets (instances).
    pub sets: u32,
}

/// A key record as fetched at arrival.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedKey {
    /// `selector._domainkey.domain`, lower case, without the final dot.
    pub name: String,
    /// The TXT record's text (its strings joined), when one was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// SHA-256 of the record's bytes, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Why there is no record: `no such record` (the name does not
    /// exist or has no TXT record), or the DNS error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
}

/// What the check of one message found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimReport {
    /// One entry per DKIM-Signature header field, in header order.
    pub signatures: Vec<Verdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arc: Option<ArcVerdict>,
    /// Every key record the check used, DKIM and ARC.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<CapturedKey>,
}

impl DkimReport {
    /// Whether the message carried anything to check.
    pub fn is_empty(&self) -> bool {
        self.signatures.is_empty() && self.arc.is_none()
    }

    /// The captured record of `name`.
    pub fn key(&self, name: &str) -> Option<&CapturedKey> {
        self.keys.iter().find(|k| k.name == name)
    }
}

/// `selector._domainkey.domain` in lower case.
pub fn key_name(selector: &str, domain: &str) -> String {
    format!("{selector}._domainkey.{domain}").to_lowercase()
}

/// What a lookup gave.
#[derive(Debug, Clone)]
enum Fetched {
    Record(Vec<u8>),
    NotFound,
    Failed(String),
}

impl Fetched {
    fn captured(&self, name: &str) -> CapturedKey {
        let mut key = CapturedKey {
            name: name.to_string(),
            record: None,
            sha256: None,
            missing: None,
        };
        match self {
            Fetched::Record(bytes) => {
                key.sha256 = Some(hex::encode(Sha256::digest(bytes)));
                match std::str::from_utf8(bytes) {
                    Ok(text) => key.record = Some(text.to_string()),
                    Err(_) => {
                        key.missing =
                            Some("the record is not text; only its SHA-256 is kept".into())
                    }
                }
            }
            Fetched::NotFound => key.missing = Some("no such record".into()),
            Fetched::Failed(e) => key.missing = Some(e.clone()),
        }
        key
    }

    fn txt(&self) -> Txt {
        match self {
            Fetched::Record(bytes) => Txt::from(DomainKey::parse(bytes)),
            Fetched::NotFound => {
                Txt::Error(Error::Dns(DnsError::RecordNotFound(ResponseCode::NXDomain)))
            }
            Fetched::Failed(e) => Txt::Error(Error::Dns(DnsError::Resolver(e.clone()))),
        }
    }
}

/// The records one check may use, as mail-auth's TXT cache, keyed by
/// fully qualified name (lower case, final dot). A name it does not hold
/// is left to DNS.
struct Pinned {
    entries: HashMap<Box<str>, Txt>,
}

impl ResolverCache<Box<str>, Txt> for Pinned {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.entries.get(name).cloned()
    }

    fn remove<Q>(&self, _name: &Q) -> Option<Txt>
    where
        Box<str>: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, _key: Box<str>, _value: Txt, _valid_until: std::time::Instant) {}
}

/// Checks DKIM signatures and ARC sets, fetching and caching key records.
pub struct Verifier {
    /// Always set; taken out when the verifier is dropped.
    runtime: Option<tokio::runtime::Runtime>,
    auth: MessageAuthenticator,
    timeout: Duration,
    /// Whether lookups may go to DNS (false for re-checks).
    online: bool,
    cache: Mutex<HashMap<String, (Fetched, Instant)>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("timeout", &self.timeout)
            .field("online", &self.online)
            .finish()
    }
}

/// Reads `IP` or `IP:PORT` (`[v6]:PORT` for IPv6 with a port).
fn parse_nameserver(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| {
            format!(
                "[dns] nameservers: {text:?} is not an IP address or IP:PORT (for example \
                 \"192.0.2.53\" or \"127.0.0.1:5353\")"
            )
        })
}

impl Verifier {
    /// A verifier that fetches key records from the resolvers of `config`.
    pub fn new(config: &DnsConfig) -> Result<Verifier, String> {
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        let (resolver, mut options) = if config.nameservers.is_empty() {
            mail_auth::hickory_resolver::system_conf::read_system_conf().map_err(|e| {
                format!(
                    "cannot read the system's DNS configuration ({e}); name the resolvers in \
                     [dns] nameservers"
                )
            })?
        } else {
            let mut servers = Vec::new();
            for text in &config.nameservers {
                servers.push(name_server(parse_nameserver(text)?));
            }
            (
                ResolverConfig::from_parts(None, vec![], servers),
                ResolverOpts::default(),
            )
        };
        options.timeout = timeout;
        options.attempts = 1;
        Verifier::build(resolver, options, timeout, true)
    }

    /// A verifier that sends no DNS query: for re-checks against captured
    /// records.
    pub fn offline() -> Result<Verifier, String> {
        // A resolver is required by mail-auth; this one is never asked,
        // as every name is answered from the pinned records.
        let unused = name_server(SocketAddr::from(([127, 0, 0, 1], 9)));
        let mut options = ResolverOpts::default();
        options.timeout = Duration::from_millis(100);
        options.attempts = 1;
        Verifier::build(
            ResolverConfig::from_parts(None, vec![], vec![unused]),
            options,
            Duration::from_millis(100),
            false,
        )
    }

    fn build(
        config: ResolverConfig,
        options: ResolverOpts,
        timeout: Duration,
        online: bool,
    ) -> Result<Verifier, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("dkim-dns")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the DKIM resolver's runtime: {e}"))?;
        let auth = {
            let _entered = runtime.enter();
            MessageAuthenticator::new(config, options)
                .map_err(|e| format!("cannot set up the DNS resolver: {e}"))?
        };
        Ok(Verifier {
            runtime: Some(runtime),
            auth,
            timeout,
            online,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Checks the signatures of `raw` as it arrives now. Blocks for at most
    /// the configured timeout; call it from a plain thread (or a blocking
    /// task), not from inside an asynchronous task.
    pub fn check(&self, raw: &[u8]) -> DkimReport {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.check_at(raw, now)
    }

    /// Checks `raw` with the `x=` expiry judged at `at` (Unix seconds).
    pub fn check_at(&self, raw: &[u8], at: u64) -> DkimReport {
        self.block_on(self.run(raw, at, &HashMap::new()))
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        match &self.runtime {
            Some(runtime) => runtime.handle().block_on(future),
            None => unreachable!("the runtime is taken only on drop"),
        }
    }

    /// Repeats a check with the records `keys` captured at arrival, and no
    /// DNS: a name without a captured record is answered as it was then.
    pub fn recheck(&self, raw: &[u8], keys: &[CapturedKey], at: u64) -> DkimReport {
        let given: HashMap<String, Fetched> = keys
            .iter()
            .map(|k| {
                let fetched = match (&k.record, &k.missing) {
                    (Some(text), _) => Fetched::Record(text.as_bytes().to_vec()),
                    (None, Some(m)) if m == "no such record" => Fetched::NotFound,
                    (None, Some(m)) => Fetched::Failed(m.clone()),
                    (None, None) => Fetched::Failed("no record was captured".into()),
                };
                (k.name.clone(), fetched)
            })
            .collect();
        self.block_on(self.run(raw, at, &given))
    }

    async fn run(&self, raw: &[u8], at: u64, given: &HashMap<String, Fetched>) -> DkimReport {
        let mut report = DkimReport::default();
        let Some(mut message) = AuthenticatedMessage::parse(raw) else {
            return report;
        };
        if message.dkim_headers.is_empty()
            && message.errors.is_empty()
            && message.as_headers.is_empty()
            && message.ams_headers.is_empty()
        {
            return report;
        }

        // Every key the check will need: each signature's, the last ARC
        // message signature's and every ARC seal's.
        let mut names: Vec<String> = Vec::new();
        let mut need = |selector: &str, domain: &str| {
            let name = key_name(selector, domain);
            if !names.contains(&name) {
                names.push(name);
            }
        };
        for h in &message.dkim_headers {
            need(&h.header.s, &h.header.d);
        }
        if let Some(h) = message.ams_headers.last() {
            need(h.header.selector(), h.header.domain());
        }
        for h in &message.as_headers {
            need(h.header.selector(), h.header.domain());
        }

        let fetched = if self.online {
            self.fetch_all(&names).await
        } else {
            names
                .iter()
                .map(|n| {
                    let f = given.get(n).cloned().unwrap_or(Fetched::Failed(
                        "no record was captured for this name".into(),
                    ));
                    (n.clone(), f)
                })
                .collect()
        };
        let mut entries: HashMap<Box<str>, Txt> = fetched
            .iter()
            .map(|(n, f)| (format!("{n}.").into_boxed_str(), f.txt()))
            .collect();
        // Failure reports (r=y) are not this gateway's business: their
        // lookups are answered "not found", which mail-auth ignores.
        for h in &message.dkim_headers {
            let report = format!("_report._domainkey.{}.", h.header.d.to_lowercase());
            entries.entry(report.into_boxed_str()).or_insert_with(|| {
                Txt::Error(Error::Dns(DnsError::RecordNotFound(ResponseCode::NXDomain)))
            });
        }
        let pinned = Pinned { entries };
        report.keys = fetched.iter().map(|(n, f)| f.captured(n)).collect();

        // The expiry is judged here, at `at`; the verifier, which knows only
        // the present, is told there is none. Its crypto still covers the
        // x= tag as written, since it hashes the header field's bytes.
        let expired: Vec<Option<u64>> = message
            .dkim_headers
            .iter()
            .map(|h| {
                let s = &h.header;
                (s.x != 0 && !(s.x > s.t && s.x > at)).then_some(s.x)
            })
            .collect();
        for h in &mut message.dkim_headers {
            h.header.x = 0;
        }

        let outputs = self
            .auth
            .verify_dkim(Parameters::new(&message).with_txt_cache(&pinned))
            .await;
        for output in &outputs {
            let (result, reason) = outcome(output.result());
            let Some(signature) = output.signature() else {
                report.signatures.push(Verdict {
                    domain: String::new(),
                    selector: String::new(),
                    algorithm: String::new(),
                    result: "permerror".into(),
                    reason: Some(format!(
                        "malformed DKIM-Signature: {}",
                        reason_text(output.result())
                    )),
                });
                continue;
            };
            let index = message
                .dkim_headers
                .iter()
                .position(|h| std::ptr::eq(&h.header, signature));
            let mut verdict = Verdict {
                domain: signature.d.to_lowercase(),
                selector: signature.s.to_lowercase(),
                algorithm: algorithm_name(signature.a).into(),
                result: result.into(),
                reason,
            };
            if let Some(x) = index.and_then(|i| expired[i]) {
                verdict.result = "neutral".into();
                verdict.reason = Some(format!(
                    "the signature expired at {} (x=), before the time checked",
                    unix_rfc3339(x)
                ));
            }
            report.signatures.push(verdict);
        }

        if !message.as_headers.is_empty() || !message.ams_headers.is_empty() {
            let arc = self
                .auth
                .verify_arc(Parameters::new(&message).with_txt_cache(&pinned))
                .await;
            let (result, reason) = outcome(arc.result());
            report.arc = Some(ArcVerdict {
                result: result.into(),
                reason,
                sets: u32::try_from(arc.sets().len()).unwrap_or(u32::MAX),
            });
        }
        report
    }

    /// Fetches `names`, from the cache when fresh, all within one deadline.
    async fn fetch_all(&self, names: &[String]) -> Vec<(String, Fetched)> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let lookups = names.iter().map(|name| async move {
            if let Some(hit) = self.cached(name) {
                return (name.clone(), hit);
            }
            let (fetched, until) = match tokio::time::timeout_at(deadline, self.lookup(name)).await
            {
                Ok(answer) => answer,
                Err(_) => (
                    Fetched::Failed(format!(
                        "DNS did not answer within {} ms",
                        self.timeout.as_millis()
                    )),
                    Instant::now() + FAILURE_TTL,
                ),
            };
            self.remember(name, &fetched, until);
            (name.clone(), fetched)
        });
        futures::future::join_all(lookups).await
    }

    fn cached(&self, name: &str) -> Option<Fetched> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(name)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(f, _)| f.clone())
    }

    fn remember(&self, name: &str, fetched: &Fetched, until: Instant) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 10_000 {
            let now = Instant::now();
            cache.retain(|_, (_, u)| *u > now);
        }
        cache.insert(name.to_string(), (fetched.clone(), until));
    }

    /// One TXT lookup: the record chosen as mail-auth chooses (the first
    /// that parses as a key record, else the first), and until when it may
    /// be cached.
    async fn lookup(&self, name: &str) -> (Fetched, Instant) {
        let fqdn = format!("{name}.").to_fqdn().into_owned();
        match self.auth.resolver().txt_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let records: Vec<Vec<u8>> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::TXT(txt) => Some(
                            txt.txt_data
                                .iter()
                                .flat_map(|s| s.iter().copied())
                                .collect(),
                        ),
                        _ => None,
                    })
                    .collect();
                let until = lookup.valid_until();
                match records
                    .iter()
                    .find(|r| DomainKey::parse(r).is_ok())
                    .or(records.first())
                {
                    Some(r) => (Fetched::Record(r.clone()), until),
                    None => (Fetched::NotFound, Instant::now() + NEGATIVE_TTL),
                }
            }
            Err(e) if e.is_no_records_found() => (Fetched::NotFound, Instant::now() + NEGATIVE_TTL),
            Err(e) => (
                Fetched::Failed(format!("DNS lookup failed: {e}")),
                Instant::now() + FAILURE_TTL,
            ),
        }
    }
}

impl Drop for Verifier {
    /// The runtime is let go without waiting, so that a verifier may be
    /// dropped anywhere, an asynchronous task included.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn name_server(addr: SocketAddr) -> NameServerConfig {
    let (mut udp, mut tcp) = (ConnectionConfig::udp(), ConnectionConfig::tcp());
    udp.port = addr.port();
    tcp.port = addr.port();
    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
}

fn algorithm_name(a: mail_auth::common::crypto::Algorithm) -> &'static str {
    use mail_auth::common::crypto::Algorithm;
    match a {
        Algorithm::RsaSha1 => "rsa-sha1",
        Algorithm::RsaSha256 => "rsa-sha256",
        Algorithm::Ed25519Sha256 => "ed25519-sha256",
    }
}

fn reason_text(result: &DkimResult) -> String {
    match result {
        DkimResult::Neutral(e)
        | DkimResult::Fail(e)
        | DkimResult::PermError(e)
        | DkimResult::TempError(e) => e.to_string(),
        DkimResult::Pass | DkimResult::None => String::new(),
    }
}

/// RFC 8601's result name and the reason. A body hash that does not
/// match is a failed signature (RFC 6376 section 6.1.3), although
/// mail-auth calls it neutral.
fn outcome(result: &DkimResult) -> (&'static str, Option<String>) {
    let reason = Some(reason_text(result)).filter(|r| !r.is_empty());
    let name = match result {
        DkimResult::Pass => "pass",
        DkimResult::None => "none",
        DkimResult::Fail(_) => "fail",
        DkimResult::Neutral(Error::Dkim(mail_auth::dkim::DkimError::FailedBodyHashMatch)) => {
            return (
                "fail",
                Some("the body hash does not match (bh=): the body was changed".into()),
            );
        }
        DkimResult::Neutral(_) => "neutral",
        DkimResult::PermError(_) => "permerror",
        DkimResult::TempError(_) => "temperror",
    };
    (name, reason)
}

fn unix_rfc3339(secs: u64) -> String {
    chrono::DateTime::from_timestamp(i64::try_from(secs).unwrap_or(i64::MAX), 0)
        .map_or_else(|| secs.to_string(), |t| t.to_rfc3339())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_take_an_optional_port() {
        assert_eq!(
            parse_nameserver("127.0.0.1:5353").unwrap(),
            "127.0.0.1:5353".parse().unwrap()
        );
        assert_eq!(parse_nameserver("192.0.2.1").unwrap().port(), 53);
        assert_eq!(parse_nameserver("[::1]:53").unwrap().port(), 53);
        assert!(
            parse_nameserver("dns.example")
                .unwrap_err()
                .contains("IP:PORT")
        );
    }

    #[test]
    fn key_names_are_lower_case() {
        assert_eq!(key_name("S1", "Example.COM"), "s1._domainkey.example.com");
    }
}
