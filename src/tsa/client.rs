// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The RFC 3161 client for external timestamp authorities.
//!
//! Each request carries a fresh 64-bit nonce and, when configured, a policy
//! and certReq; it goes out over HTTP or HTTPS (rustls, Mozilla's roots) as
//! `application/timestamp-query`, with optional basic or bearer
//! authentication and a timeout. An answer is accepted only if it is a
//! granted TimeStampResp whose token stamps the requested SHA-256, echoes
//! the nonce, carries the requested policy and, when the TSA has a CA
//! configured, verifies to it at its genTime. Anything else (a timeout, a
//! refused connection, an HTTP error, garbage, a rejection) is logged
//! without secrets and retried with doubling waits, then the next TSA in
//! the list is tried. When every TSA fails, the batch is not written: its
//! messages stay pending and the next stamping run tries again.
//!
//! Limits: a TSA that answers `waiting` (RFC 3161 polling) is treated as a
//! failure; proxies come from the usual environment variables only as
//! ureq reads them.

use std::sync::Arc;
use std::time::Duration;

use const_oid::ObjectIdentifier;
use der::Encode;
use der::asn1::OctetString;
use spki::AlgorithmIdentifierOwned;
use x509_tsp::{MessageImprint, TimeStampReq, TspVersion};

use super::ID_SHA256;
use crate::archive::evidence::Stamper;
use crate::config::{TsaConfig, secret};
use crate::hashtree::Hash;
use crate::signing::Trust;

/// Largest response read: tokens with a chain are a few kilobytes.
const MAX_RESPONSE: u64 = 1024 * 1024;
/// The first wait before a retry; it doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// How a request authenticates.
#[derive(Clone)]
enum Auth {
    None,
    Basic(String),
    Bearer(String),
}

/// One external TSA.
pub struct HttpTsa {
    name: String,
    url: String,
    policy: Option<ObjectIdentifier>,
    cert_req: bool,
    retries: u32,
    auth: Auth,
    agent: ureq::Agent,
    trust: Option<Arc<Trust>>,
}

fn read_certificate_file(path: &std::path::Path) -> Result<Vec<x509_cert::Certificate>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    crate::signing::read_certificates(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

impl HttpTsa {
    /// Prepares the client of `config`; fails on a bad policy OID, a
    /// missing secret or an unreadable certificate file.
    pub fn new(config: &TsaConfig) -> Result<HttpTsa, String> {
        let what = |field: &str| format!("TSA {}: {field}", config.name);
        let policy = config
            .policy
            .as_deref()
            .map(|p| {
                ObjectIdentifier::new(p)
                    .map_err(|e| format!("{}: {p:?} is not an OID ({e})", what("policy")))
            })
            .transpose()?;
        let auth = match (&config.username, &config.password, &config.bearer_token) {
            (_, _, Some(token)) if config.username.is_none() => {
                Auth::Bearer(secret(token, &what("bearer_token"))?)
            }
            (Some(user), password, None) => {
                use base64ct::Encoding;
                let password = match password {
                    Some(p) => secret(p, &what("password"))?,
                    None => String::new(),
                };
                Auth::Basic(base64ct::Base64::encode_string(
                    format!("{user}:{password}").as_bytes(),
                ))
            }
            (None, None, None) => Auth::None,
            _ => {
                return Err(format!(
                    "{}: give username and password, or bearer_token, not both",
                    what("authentication")
                ));
            }
        };
        let trust = match &config.ca_file {
            Some(ca) => {
                let mut extra = Vec::new();
                if let Some(certs) = &config.certs_file {
                    extra = read_certificate_file(certs)?;
                }
                Some(Arc::new(
                    Trust::new(read_certificate_file(ca)?).with_untrusted(extra),
                ))
            }
            None => None,
        };
        let timeout = Duration::from_secs(config.timeout_secs.max(1));
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("mailnotary/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(HttpTsa {
            name: config.name.clone(),
            url: config.url.clone(),
            policy,
            cert_req: config.cert_req,
            retries: config.retries,
            auth,
            agent,
            trust,
        })
    }

    /// One request and its checks, without retries.
    fn attempt(&self, digest: &Hash) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; 8];
        getrandom::getrandom(&mut nonce).map_err(|e| format!("no random nonce: {e}"))?;
        // Positive and minimal as a DER INTEGER.
        nonce[0] = (nonce[0] & 0x3f) | 0x40;
        let request = TimeStampReq {
            version: TspVersion::V1,
            message_imprint: MessageImprint {
                hash_algorithm: AlgorithmIdentifierOwned {
                    oid: ID_SHA256,
                    parameters: None,
                },
                hashed_message: OctetString::new(digest.to_vec())
                    .map_err(|e| format!("imprint: {e}"))?,
            },
            req_policy: self.policy,
            nonce: Some(der::asn1::Int::new(&nonce).map_err(|e| format!("nonce: {e}"))?),
            cert_req: self.cert_req,
            extensions: None,
        }
        .to_der()
        .map_err(|e| format!("request: {e}"))?;

        let mut call = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/timestamp-query")
            .header("Accept", "application/timestamp-reply");
        match &self.auth {
            Auth::None => {}
            Auth::Basic(credentials) => {
                call = call.header("Authorization", &format!("Basic {credentials}"));
            }
            Auth::Bearer(token) => {
                call = call.header("Authorization", &format!("Bearer {token}"));
            }
        }
        let mut response = call.send(&request[..]).map_err(|e| match e {
            ureq::Error::Timeout(_) => "no answer within the timeout".to_string(),
            other => format!("request failed: {other}"),
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP status {status}"));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_vec()
            .map_err(|e| format!("reading the answer: {e}"))?;
        self.check(&body, digest, &nonce)
    }

    /// Accepts a DER TimeStampResp only if it grants a token over `digest`
    /// with our nonce and policy (and, with a CA configured, a valid
    /// signature); returns the token.
    fn check(&self, body: &[u8], digest: &Hash, nonce: &[u8]) -> Result<Vec<u8>, String> {
        let parsed = super::response::parse(body)
            .map_err(|e| format!("the answer is not a timestamp response: {e}"))?;
        if parsed.status > 1 {
            return Err(format!(
                "the TSA refused (status {}{}{})",
                parsed.status,
                if parsed.text.is_empty() {
                    String::new()
                } else {
                    format!(": {}", parsed.text)
                },
                if parsed.fail_bits.is_empty() {
                    String::new()
                } else {
                    format!(", failInfo bits {:?}", parsed.fail_bits)
                }
            ));
        }
        let token = parsed.token.ok_or("a granted response without a token")?;
        let info = super::token::inspect(&token)?;
        if info.hash_algorithm != ID_SHA256.to_string() || info.imprint != digest[..] {
            return Err("the token stamps another digest than the one sent".into());
        }
        let sent = num_decimal(nonce);
        if info.nonce.as_deref() != Some(sent.as_str()) {
            return Err("the token does not echo the request's nonce".into());
        }
        if let Some(policy) = self.policy
            && info.policy != policy.to_string()
        {
            return Err(format!(
                "the token has policy {}, not the one requested",
                info.policy
            ));
        }
        if let Some(trust) = &self.trust {
            trust
                .verify(&token, Some(info.gen_time.timestamp()))
                .map_err(|e| format!("the token does not verify: {e}"))?;
        }
        Ok(token)
    }

    /// The token, after up to `retries` further attempts.
    fn stamp_with_retries(&self, digest: &Hash) -> Result<Vec<u8>, String> {
        let mut wait = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            match self.attempt(digest) {
                Ok(token) => return Ok(token),
                Err(e) if attempt < self.retries => {
                    tracing::warn!(tsa = %self.name, attempt = attempt + 1, error = %e,
                        "timestamp request failed; retrying");
                    std::thread::sleep(wait);
                    wait *= 2;
                    attempt += 1;
                }
                Err(e) => {
                    tracing::warn!(tsa = %self.name, attempts = attempt + 1, error = %e,
                        "timestamp authority failed");
                    return Err(e);
                }
            }
        }
    }
}

/// The decimal form of a big-endian unsigned integer, as
/// [`super::token::TokenInfo::nonce`] prints it.
fn num_decimal(bytes: &[u8]) -> String {
    let mut value: u128 = 0;
    for b in bytes.iter().take(16) {
        value = (value << 8) | u128::from(*b);
    }
    value.to_string()
}

impl Stamper for HttpTsa {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn stamp(&self, digest: &Hash) -> Result<Vec<u8>, String> {
        self.stamp_with_retries(digest)
    }
}

/// Several stampers: in `first` mode the first that answers stamps the
/// batch; in `all` mode every one must.
pub struct StamperSet {
    members: Vec<Box<dyn Stamper + Send + Sync>>,
    all: bool,
}

impl StamperSet {
    pub fn new(members: Vec<Box<dyn Stamper + Send + Sync>>, all: bool) -> StamperSet {
        StamperSet { members, all }
    }
}

impl Stamper for StamperSet {
    fn name(&self) -> String {
        self.members
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(if self.all { "+" } else { "|" })
    }

    fn stamp(&self, digest: &Hash) -> Result<Vec<u8>, String> {
        Ok(self.stamp_all(digest)?.remove(0).1)
    }

    fn stamp_all(&self, digest: &Hash) -> Result<Vec<(String, Vec<u8>)>, String> {
        let mut tokens = Vec::new();
        let mut errors = Vec::new();
        for member in &self.members {
            match member.stamp(digest) {
                Ok(token) => {
                    tokens.push((member.name(), token));
                    if !self.all {
                        return Ok(tokens);
                    }
                }
                Err(e) if self.all && self.members.len() == 1 => return Err(e),
                Err(e) if self.all => return Err(format!("{}: {e}", member.name())),
                Err(e) if self.members.len() == 1 => errors.push(e),
                Err(e) => errors.push(format!("{}: {e}", member.name())),
            }
        }
        if tokens.is_empty() {
            return Err(if errors.is_empty() {
                "no timestamp authority is configured".into()
            } else {
                errors.join("; ")
            });
        }
        Ok(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_print_as_decimal() {
        assert_eq!(num_decimal(&[0x01, 0x00]), "256");
        assert_eq!(
            num_decimal(&[0x40, 0, 0, 0, 0, 0, 0, 1]),
            "4611686018427387905"
        );
    }
}
