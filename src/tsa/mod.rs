// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The built-in RFC 3161 timestamp authority.
//!
//! [`Tsa::stamp`] turns a SHA-256 digest into a TimeStampToken: a CMS
//! SignedData (RFC 5652) whose content is a TSTInfo (RFC 3161 §2.4.2),
//! signed with ECDSA P-256 by the key of [`pki::LocalPki`], with the signer
//! certificate embedded and a signed signingCertificateV2 attribute
//! (RFC 5816) naming it. `openssl ts -verify` accepts these tokens with the
//! local CA certificate as its trust anchor; the tests check exactly that.
//!
//! The types come from the RustCrypto crates of the der 0.7 generation
//! (x509-tsp, cms 0.2, x509-cert 0.2): x509-tsp has no release for der 0.8.
//!
//! Known limits of this release: genTime has whole seconds and no accuracy
//! field; the policy is a fixed OID (`1.2.3.4.1`, the example policy of
//! OpenSSL's sample configuration) until the configuration can name a
//! registered one. [`Tsa::respond`] answers RFC 3161 requests, and
//! [`serve`] serves it over HTTP for `mailnotary tsa serve`.

pub mod client;
pub mod pki;
pub mod response;
pub mod serve;
pub mod token;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use const_oid::ObjectIdentifier;
use der::Decode;
use der::Encode;
use der::asn1::{GeneralizedTime, Int, OctetString};
use spki::AlgorithmIdentifierOwned;
use x509_tsp::{MessageImprint, TimeStampReq, TspVersion, TstInfo};

use pki::LocalPki;

/// id-sha256 (RFC 5754).
pub const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
/// id-sha384 (RFC 5754).
pub const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
/// id-sha512 (RFC 5754).
pub const ID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
/// id-ct-TSTInfo (RFC 3161 §2.4.2).
pub const ID_CT_TST_INFO: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
/// The policy written into tokens of the built-in TSA.
pub const DEFAULT_POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.3.4.1");

/// Errors of the timestamp authority.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TsaError {
    /// Creating, reading or using keys and certificates failed.
    #[error("TSA keys and certificates: {0}")]
    Pki(String),
    /// Encoding or signing a token failed. This is a bug: please report it.
    #[error("internal error while building a timestamp token (please report this bug): {0}")]
    Encoding(String),
}

fn encoding(what: &str, e: impl std::fmt::Display) -> TsaError {
    TsaError::Encoding(format!("{what}: {e}"))
}

/// The built-in TSA: the local PKI's timestamping key and certificate, and
/// the policy it writes into tokens.
pub struct Tsa {
    pki: LocalPki,
    policy: ObjectIdentifier,
}

impl Tsa {
    /// A TSA signing with the local PKI's timestamping key.
    pub fn new(pki: LocalPki) -> Tsa {
        Tsa {
            pki,
            policy: DEFAULT_POLICY,
        }
    }

    /// The local PKI behind this TSA.
    pub fn pki(&self) -> &LocalPki {
        &self.pki
    }

    /// Stamps `digest` (SHA-256 of the data) at the current time and
    /// returns the DER TimeStampToken. `nonce`, when given, is a big-endian
    /// unsigned integer copied from the request (RFC 3161 §2.4.2).
    pub fn stamp(&self, digest: &[u8; 32], nonce: Option<&[u8]>) -> Result<Vec<u8>, TsaError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| encoding("clock", e))?;
        self.stamp_at(digest, nonce, Duration::from_secs(now.as_secs()))
    }

    /// Stamps `digest` with a given genTime (whole seconds since the epoch).
    pub fn stamp_at(
        &self,
        digest: &[u8; 32],
        nonce: Option<&[u8]>,
        gen_time: Duration,
    ) -> Result<Vec<u8>, TsaError> {
        let imprint = MessageImprint {
            hash_algorithm: AlgorithmIdentifierOwned {
                oid: ID_SHA256,
                parameters: None,
            },
            hashed_message: OctetString::new(digest.to_vec())
                .map_err(|e| encoding("imprint", e))?,
        };
        let nonce = nonce
            .map(unsigned_int)
            .transpose()
            .map_err(|e| encoding("nonce", e))?;
        self.token(imprint, nonce, true, gen_time)
    }

    /// Builds and signs a token over `imprint`, copied as the request gave
    /// it (RFC 3161 §2.4.2), embedding the certificate when `embed_cert`.
    fn token(
        &self,
        imprint: MessageImprint,
        nonce: Option<Int>,
        embed_cert: bool,
        gen_time: Duration,
    ) -> Result<Vec<u8>, TsaError> {
        let serial = random_serial().map_err(|e| encoding("random serial", e))?;
        let tst_info = TstInfo {
            version: TspVersion::V1,
            policy: self.policy,
            message_imprint: imprint,
            serial_number: Int::new(&serial).map_err(|e| encoding("serial", e))?,
            gen_time: GeneralizedTime::from_unix_duration(gen_time)
                .map_err(|e| encoding("genTime", e))?,
            accuracy: None,
            ordering: false,
            nonce,
            tsa: None,
            extensions: None,
        };
        let tst_der = tst_info.to_der().map_err(|e| encoding("TSTInfo", e))?;
        crate::signing::sign(ID_CT_TST_INFO, &tst_der, &self.pki.tsa, embed_cert)
            .map_err(|e| encoding("SignedData", e))
    }

    /// Answers a DER TimeStampReq with a DER TimeStampResp (RFC 3161 §2.4),
    /// the whole exchange of `application/timestamp-query`. A request that
    /// cannot be granted gets a rejection with the reason in failInfo; this
    /// never fails.
    pub fn respond(&self, request: &[u8]) -> Vec<u8> {
        let reject = |bit: u8, text: &str| response::rejection(bit, text);
        let Ok(req) = TimeStampReq::from_der(request) else {
            return reject(
                response::BAD_DATA_FORMAT,
                "the request is not a DER TimeStampReq",
            );
        };
        let expected_len = match req.message_imprint.hash_algorithm.oid {
            ID_SHA256 => 32,
            ID_SHA384 => 48,
            ID_SHA512 => 64,
            _ => {
                return reject(
                    response::BAD_ALG,
                    "hash algorithms: SHA-256, SHA-384, SHA-512",
                );
            }
        };
        if req.message_imprint.hashed_message.as_bytes().len() != expected_len {
            return reject(
                response::BAD_DATA_FORMAT,
                "the imprint's length does not fit its algorithm",
            );
        }
        if req.req_policy.is_some_and(|p| p != self.policy) {
            return reject(
                response::UNACCEPTED_POLICY,
                "this TSA has one policy; see its tokens",
            );
        }
        if req.extensions.is_some() {
            return reject(
                response::UNACCEPTED_EXTENSION,
                "this TSA accepts no extensions",
            );
        }
        let now = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(now) => Duration::from_secs(now.as_secs()),
            Err(_) => return reject(response::TIME_NOT_AVAILABLE, "the clock is before 1970"),
        };
        match self.token(req.message_imprint, req.nonce, req.cert_req, now) {
            Ok(token) => response::granted(&token),
            Err(e) => {
                tracing::error!(error = %e, "the TSA could not sign a token");
                reject(response::SYSTEM_FAILURE, "the TSA could not sign")
            }
        }
    }
}

/// A serial number for a token: unique per TSA (RFC 3161 §2.4.2) through
/// 126 random bits, without shared state. The first byte is forced into
/// 0x40..=0x7f, so the DER INTEGER is positive and has no leading zero
/// byte: OpenSSL refuses a padded INTEGER ("illegal padding"), which a
/// plain random first byte of 0x00 followed by one below 0x80 would give.
fn random_serial() -> Result<[u8; 16], getrandom::Error> {
    let mut serial = [0u8; 16];
    getrandom::getrandom(&mut serial)?;
    serial[0] = (serial[0] & 0x3f) | 0x40;
    Ok(serial)
}

/// A DER INTEGER holding the unsigned big-endian `bytes`.
fn unsigned_int(bytes: &[u8]) -> der::Result<Int> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|&b| b == 0).collect();
    let mut value = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|&b| b & 0x80 != 0) {
        value.push(0);
    }
    value.extend_from_slice(&trimmed);
    Int::new(&value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_minimal_positive_integers() {
        for _ in 0..10_000 {
            let serial = random_serial().unwrap();
            assert!((0x40..=0x7f).contains(&serial[0]), "{serial:02x?}");
            let der = Int::new(&serial).unwrap().to_der().unwrap();
            // Tag, length 16, then the 16 bytes as they are.
            assert_eq!(der.len(), 18);
            assert_eq!(&der[2..], &serial);
        }
    }

    #[test]
    fn nonces_are_encoded_minimally() {
        let der = |b: &[u8]| unsigned_int(b).unwrap().to_der().unwrap();
        assert_eq!(der(&[0x00, 0x00, 0x2a]), [0x02, 0x01, 0x2a]);
        assert_eq!(der(&[0xff]), [0x02, 0x02, 0x00, 0xff]);
        assert_eq!(der(&[]), [0x02, 0x01, 0x00]);
    }
}
