// SPDX-License-Identifier: Apache-2.0 OR MIT
//! CMS SignedData (RFC 5652): signed the way the gateway signs timestamp
//! tokens and receipts, and verified the way foreign TSAs sign tokens.
//!
//! **Signing** is ECDSA P-256 with SHA-256 (OpenSSL 3.0 cannot verify
//! Ed25519 in CMS), through ring. The signer certificate is embedded unless
//! asked otherwise, and the signed attributes are contentType,
//! messageDigest, signingTime and a signingCertificateV2 (RFC 5035) naming
//! the certificate by its SHA-256, which RFC 3161 requires of tokens and
//! which binds receipts to their key the same way.
//!
//! **Verifying** accepts what public TSAs send: RSA PKCS#1 v1.5 with
//! SHA-1, SHA-256, SHA-384 or SHA-512 (SHA-1 only for certificates and
//! signatures made before 2017, as real tokens still are), ECDSA on P-256
//! and P-384 with SHA-256 or SHA-384; signers named by issuer and serial
//! number or by subject key identifier; the signer certificate embedded or
//! supplied from outside; and a chain through intermediates to a trust
//! anchor, which may itself be an intermediate or the signer's own
//! certificate (OpenSSL's "partial chain"). Every certificate on the path
//! must be valid at the time checked, which for a token is its genTime, so
//! that evidence outlives an expired certificate. Limits: RSASSA-PSS,
//! ECDSA with SHA-512, revocation (CRL and OCSP) and name constraints are
//! not checked; a path is accepted on signatures, validity periods and
//! the CA flag of every issuer.
//!
//! A [`Trust`] caches each certificate path it has validated and each
//! token it has verified, so checking ten thousand receipts of one batch
//! costs one receipt signature each, not four.

use std::collections::HashMap;
use std::sync::Mutex;

use cms::builder::create_signing_time_attribute;
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use const_oid::ObjectIdentifier;
use der::asn1::{OctetString, SetOfVec};
use der::{Any, Decode, Encode, Sequence, Tag};
use ring::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
use sha2::{Digest, Sha256};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_cert::attr::Attribute;

use crate::tsa::ID_SHA256;
use crate::tsa::pki::KeyPair;

/// id-aa-signingCertificateV2 (RFC 5035).
pub const ID_AA_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
/// id-aa-signingCertificate (RFC 2634), whose ESSCertID holds a SHA-1.
const ID_AA_SIGNING_CERTIFICATE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.12");
/// id-signedData (RFC 5652 §5.1).
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// id-data (RFC 5652 §4).
const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
/// id-messageDigest (RFC 5652 §11.2).
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
/// id-contentType (RFC 5652 §11.1).
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
/// ecdsa-with-SHA256 (RFC 5758).
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_WITH_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
/// rsaEncryption, and the PKCS#1 v1.5 signature OIDs (RFC 8017).
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const SHA1_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
/// id-ecPublicKey and the two curves accepted (RFC 5480).
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// Digest algorithms.
const ID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
/// id-ct-TSTInfo (RFC 3161 §2.4.2).
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");

/// Longest certificate path searched, signer and anchor included.
const MAX_PATH: usize = 8;

/// ESSCertIDv2 (RFC 5035 §4): hashAlgorithm defaults to SHA-256 and DER
/// omits defaults; issuerSerial is optional and not written.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct EssCertIdV2 {
    #[asn1(optional = "true")]
    hash_algorithm: Option<AlgorithmIdentifierOwned>,
    cert_hash: OctetString,
    #[asn1(optional = "true")]
    issuer_serial: Option<Any>,
}

/// SigningCertificateV2 (RFC 5035 §3).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SigningCertificateV2 {
    certs: Vec<EssCertIdV2>,
    #[asn1(optional = "true")]
    policies: Option<Any>,
}

/// ESSCertID (RFC 2634 §5.4.1): the SHA-1 of the certificate.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct EssCertId {
    cert_hash: OctetString,
    #[asn1(optional = "true")]
    issuer_serial: Option<Any>,
}

/// SigningCertificate (RFC 2634 §5.4).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SigningCertificate {
    certs: Vec<EssCertId>,
    #[asn1(optional = "true")]
    policies: Option<Any>,
}

fn fail(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

fn sha256_algorithm() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: ID_SHA256,
        parameters: None,
    }
}

/// Signs `content` (DER) as the eContent of type `content_type` with
/// `signer`, returning the DER ContentInfo. The certificate is embedded
/// unless `embed_certificate` is false (an RFC 3161 request without
/// certReq).
pub fn sign(
    content_type: ObjectIdentifier,
    content: &[u8],
    signer: &KeyPair,
    embed_certificate: bool,
) -> Result<Vec<u8>, String> {
    let certificate = &signer.certificate;
    let ess = SigningCertificateV2 {
        certs: vec![EssCertIdV2 {
            hash_algorithm: None,
            cert_hash: OctetString::new(signer.certificate_sha256.to_vec())
                .map_err(|e| fail("certHash", e))?,
            issuer_serial: None,
        }],
        policies: None,
    };
    let attribute = |oid, value: Any| -> Result<Attribute, String> {
        Ok(Attribute {
            oid,
            values: SetOfVec::try_from(vec![value]).map_err(|e| fail("attribute", e))?,
        })
    };
    let digest =
        OctetString::new(Sha256::digest(content).to_vec()).map_err(|e| fail("messageDigest", e))?;
    let attributes = SetOfVec::try_from(vec![
        attribute(
            ID_CONTENT_TYPE,
            Any::encode_from(&content_type).map_err(|e| fail("contentType", e))?,
        )?,
        create_signing_time_attribute().map_err(|e| fail("signingTime", e))?,
        attribute(
            ID_MESSAGE_DIGEST,
            Any::encode_from(&digest).map_err(|e| fail("messageDigest", e))?,
        )?,
        attribute(
            ID_AA_SIGNING_CERTIFICATE_V2,
            Any::encode_from(&ess).map_err(|e| fail("signingCertificateV2", e))?,
        )?,
    ])
    .map_err(|e| fail("signed attributes", e))?;
    // The signature covers the attributes encoded as a SET (RFC 5652 §5.4).
    let to_sign = attributes
        .to_der()
        .map_err(|e| fail("signed attributes", e))?;
    let signature = signer
        .signer
        .sign(&ring::rand::SystemRandom::new(), &to_sign)
        .map_err(|e| fail("ECDSA signature", e))?;

    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: certificate.tbs_certificate.issuer.clone(),
            serial_number: certificate.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: sha256_algorithm(),
        signed_attrs: Some(attributes),
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: ECDSA_WITH_SHA256,
            parameters: None,
        },
        signature: OctetString::new(signature.as_ref()).map_err(|e| fail("signature", e))?,
        unsigned_attrs: None,
    };
    let certificates = if embed_certificate {
        let all = std::iter::once(certificate)
            .chain(&signer.chain)
            .map(|c| CertificateChoices::Certificate(c.clone()))
            .collect::<Vec<_>>();
        Some(CertificateSet(
            SetOfVec::try_from(all).map_err(|e| fail("certificates", e))?,
        ))
    } else {
        None
    };
    let signed = SignedData {
        // RFC 5652 §5.1: version 3 when the eContentType is not id-data.
        version: if content_type == ID_DATA {
            CmsVersion::V1
        } else {
            CmsVersion::V3
        },
        digest_algorithms: SetOfVec::try_from(vec![sha256_algorithm()])
            .map_err(|e| fail("digest algorithms", e))?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: content_type,
            econtent: Some(Any::new(Tag::OctetString, content).map_err(|e| fail("eContent", e))?),
        },
        certificates,
        crls: None,
        signer_infos: SignerInfos(
            SetOfVec::try_from(vec![signer_info]).map_err(|e| fail("signer infos", e))?,
        ),
    };
    ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed).map_err(|e| fail("SignedData", e))?,
    }
    .to_der()
    .map_err(|e| fail("ContentInfo", e))
}

/// What a verified SignedData says.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The eContentType.
    pub content_type: ObjectIdentifier,
    /// The eContent: the bytes that were signed.
    pub content: Vec<u8>,
    /// The certificate that signed it, verified up to a trust anchor.
    pub signer: Certificate,
}

/// A validated path's window: the latest notBefore and earliest notAfter
/// of its certificates, in seconds since the epoch.
#[derive(Clone, Copy, Debug)]
struct Window {
    from: i64,
    until: i64,
}

/// A validated path, or why there is none.
type PathResult = Result<(Window, Certificate), String>;
/// Verified SignedData by the SHA-256 of its DER and the time checked at.
type SignedCache = HashMap<([u8; 32], Option<i64>), Result<Verified, String>>;

/// Trust anchors, extra certificates to build paths with, and what has
/// already been verified against them.
pub struct Trust {
    anchors: Vec<Certificate>,
    /// DER of each anchor, to recognise one on a path.
    anchor_der: Vec<Vec<u8>>,
    /// Certificates that may complete a path or name a signer whose token
    /// does not embed its certificate; they are not trusted by themselves.
    untrusted: Vec<Certificate>,
    /// Validated certificate paths, by the SHA-256 of the leaf's DER.
    paths: Mutex<HashMap<[u8; 32], PathResult>>,
    /// Whole SignedData structures already verified (the batch tokens),
    /// by the SHA-256 of their DER, with the time they were checked at.
    signed: Mutex<SignedCache>,
}

impl Trust {
    /// Trusts `anchors` (CA certificates, or any certificate to be trusted
    /// as it stands).
    pub fn new(anchors: Vec<Certificate>) -> Trust {
        let anchor_der = anchors.iter().filter_map(|c| c.to_der().ok()).collect();
        Trust {
            anchors,
            anchor_der,
            untrusted: Vec::new(),
            paths: Mutex::new(HashMap::new()),
            signed: Mutex::new(HashMap::new()),
        }
    }

    /// Adds certificates that may be used to build paths (intermediates, a
    /// TSA certificate its tokens do not embed) without being trusted.
    pub fn with_untrusted(mut self, certificates: Vec<Certificate>) -> Trust {
        self.untrusted.extend(certificates);
        self
    }

    /// Whether any anchor is configured.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Verifies a DER ContentInfo holding SignedData with one signer, whose
    /// certificate must chain to an anchor and, with `at` (seconds since
    /// the epoch), be valid then along with the whole path.
    pub fn verify(&self, der: &[u8], at: Option<i64>) -> Result<Verified, String> {
        self.verify_uncached(der, at)
    }

    /// [`Trust::verify`] for a structure met many times (a batch token
    /// shared by all its messages): the result is remembered.
    pub fn verify_shared(&self, der: &[u8], at: Option<i64>) -> Result<Verified, String> {
        let key = (Sha256::digest(der).into(), at);
        if let Some(hit) = lock(&self.signed).get(&key) {
            return hit.clone();
        }
        let result = self.verify_uncached(der, at);
        lock(&self.signed).insert(key, result.clone());
        result
    }

    fn verify_uncached(&self, der: &[u8], at: Option<i64>) -> Result<Verified, String> {
        let (signed, content) = decode(der)?;
        let signer_info = match signed.signer_infos.0.as_slice() {
            [one] => one,
            other => return Err(format!("{} signers; expected exactly one", other.len())),
        };
        let embedded: Vec<Certificate> = signed
            .certificates
            .iter()
            .flat_map(|set| set.0.iter())
            .filter_map(|c| match c {
                CertificateChoices::Certificate(cert) => Some(cert.clone()),
                CertificateChoices::Other(_) => None,
            })
            .collect();
        let signer = embedded
            .iter()
            .chain(&self.untrusted)
            .chain(&self.anchors)
            .find(|c| names_signer(c, &signer_info.sid))
            .cloned()
            .ok_or(
                "the signer's certificate is neither in the signature nor given \
                 (give it with --trust or as an extra certificate)",
            )?;

        let attrs = signer_info
            .signed_attrs
            .as_ref()
            .ok_or("no signed attributes")?;
        let attr = |oid: ObjectIdentifier| {
            attrs
                .iter()
                .find(|a| a.oid == oid)
                .and_then(|a| a.values.get(0))
        };
        // messageDigest must be the content's digest and contentType the
        // eContentType (RFC 5652 §5.4, §11.1).
        let digest_alg = digest_algorithm(&signer_info.digest_alg.oid)?;
        let digest = attr(ID_MESSAGE_DIGEST)
            .ok_or("no messageDigest attribute")?
            .decode_as::<OctetString>()
            .map_err(|e| fail("messageDigest", e))?;
        if digest.as_bytes() != ring::digest::digest(digest_alg, &content).as_ref() {
            return Err("the messageDigest attribute does not match the content".into());
        }
        let content_type = attr(ID_CONTENT_TYPE)
            .ok_or("no contentType attribute")?
            .decode_as::<ObjectIdentifier>()
            .map_err(|e| fail("contentType", e))?;
        if content_type != signed.encap_content_info.econtent_type {
            return Err("the contentType attribute differs from the eContentType".into());
        }
        // The signer's DER, encoded once for the attribute and the path.
        let signer_der = signer.to_der().map_err(|e| fail("certificate", e))?;
        check_signing_certificate(
            &signer_der,
            attr(ID_AA_SIGNING_CERTIFICATE_V2),
            attr(ID_AA_SIGNING_CERTIFICATE),
            content_type == ID_CT_TST_INFO,
        )?;
        let signed_bytes = attrs.to_der().map_err(|e| fail("signed attributes", e))?;
        check_signature(
            &signer.tbs_certificate.subject_public_key_info,
            &signer_info.signature_algorithm.oid,
            Some(&signer_info.digest_alg.oid),
            &signed_bytes,
            signer_info.signature.as_bytes(),
        )
        .map_err(|e| format!("the signature does not verify: {e}"))?;

        self.check_path(&signer, &signer_der, &embedded, at)?;
        Ok(Verified {
            content_type: signed.encap_content_info.econtent_type,
            content,
            signer,
        })
    }

    /// Validates the path from `leaf` to an anchor (cached by the leaf)
    /// and checks `at` against the path's validity window.
    fn check_path(
        &self,
        leaf: &Certificate,
        leaf_der: &[u8],
        embedded: &[Certificate],
        at: Option<i64>,
    ) -> Result<(), String> {
        let key: [u8; 32] = Sha256::digest(leaf_der).into();
        let cached = lock(&self.paths).get(&key).cloned();
        let (window, weakest) = match cached {
            Some(result) => result?,
            None => {
                let result = self.build_path(leaf, leaf_der, embedded);
                lock(&self.paths).insert(key, result.clone());
                result?
            }
        };
        if let Some(at) = at
            && (at < window.from || at > window.until)
        {
            return Err(format!(
                "the certificate of {} was not valid at the time checked",
                weakest.tbs_certificate.subject
            ));
        }
        Ok(())
    }

    /// Walks issuers from `leaf` up to an anchor. Returns the path's window
    /// and the certificate whose validity bounds it most tightly, for the
    /// error message.
    fn build_path(
        &self,
        leaf: &Certificate,
        leaf_der: &[u8],
        embedded: &[Certificate],
    ) -> Result<(Window, Certificate), String> {
        let mut path = vec![leaf.clone()];
        let mut current_der = leaf_der.to_vec();
        loop {
            let current = path.last().cloned().ok_or("empty path")?;
            if self.anchor_der.contains(&current_der) {
                return Ok(window_of(&path));
            }
            if path.len() >= MAX_PATH {
                break;
            }
            let tbs = current
                .tbs_certificate
                .to_der()
                .map_err(|e| fail("certificate", e))?;
            let issuer = self
                .anchors
                .iter()
                .chain(embedded)
                .chain(&self.untrusted)
                .filter(|c| c.tbs_certificate.subject == current.tbs_certificate.issuer)
                .filter(|c| !path.contains(c))
                .find(|c| {
                    check_signature(
                        &c.tbs_certificate.subject_public_key_info,
                        &current.signature_algorithm.oid,
                        None,
                        &tbs,
                        current.signature.raw_bytes(),
                    )
                    .is_ok()
                });
            let Some(issuer) = issuer else {
                break;
            };
            if !may_issue(issuer) {
                return Err(format!(
                    "{} issued {} but is not a CA certificate",
                    issuer.tbs_certificate.subject, current.tbs_certificate.subject
                ));
            }
            current_der = issuer.to_der().map_err(|e| fail("certificate", e))?;
            path.push(issuer.clone());
        }
        Err(format!(
            "the certificate of {} does not lead to a trusted CA (give the CA with --trust)",
            leaf.tbs_certificate.subject
        ))
    }
}

/// Reads certificates from PEM (one or more) or from a single DER
/// certificate, as certificate files come either way. PEM is read as
/// OpenSSL reads it, whatever the line lengths: strict RFC 7468 readers
/// refuse real chain files whose lines were re-wrapped.
pub fn read_certificates(bytes: &[u8]) -> Result<Vec<Certificate>, String> {
    use base64ct::Encoding;
    if bytes.first() == Some(&0x30) {
        return Certificate::from_der(bytes)
            .map(|c| vec![c])
            .map_err(|e| fail("not a DER certificate", e));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "neither PEM nor DER".to_string())?;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut certificates = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let body = &rest[start + BEGIN.len()..];
        let end = body.find(END).ok_or("a PEM certificate has no END line")?;
        let base64: String = body[..end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = base64ct::Base64::decode_vec(&base64)
            .map_err(|e| fail("a PEM certificate's Base64", e))?;
        certificates.push(Certificate::from_der(&der).map_err(|e| fail("certificate", e))?);
        rest = &body[end + END.len()..];
    }
    if certificates.is_empty() {
        return Err("no certificate found (expected PEM or DER)".into());
    }
    Ok(certificates)
}

/// Reads a DER ContentInfo holding SignedData and its encapsulated content,
/// checking nothing else.
fn decode(der: &[u8]) -> Result<(SignedData, Vec<u8>), String> {
    let info = ContentInfo::from_der(der).map_err(|e| fail("not a CMS ContentInfo", e))?;
    if info.content_type != ID_SIGNED_DATA {
        return Err(format!(
            "content type {} is not signedData",
            info.content_type
        ));
    }
    let signed = info
        .content
        .decode_as::<SignedData>()
        .map_err(|e| fail("not a SignedData", e))?;
    let content = signed
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or("the signed content is detached; this verifier needs it inside")?
        .decode_as::<OctetString>()
        .map_err(|e| fail("eContent is not an OCTET STRING", e))?
        .into_bytes();
    Ok((signed, content))
}

/// The content a SignedData claims to sign, read without any check, so
/// that a receipt whose signature fails can still say what it claims.
pub fn unverified_content(der: &[u8]) -> Option<Vec<u8>> {
    decode(der).ok().map(|(_, content)| content)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn window_of(path: &[Certificate]) -> (Window, Certificate) {
    let mut window = Window {
        from: i64::MIN,
        until: i64::MAX,
    };
    let mut weakest = path[0].clone();
    for c in path {
        let validity = &c.tbs_certificate.validity;
        let from = validity.not_before.to_unix_duration().as_secs() as i64;
        let until = validity.not_after.to_unix_duration().as_secs() as i64;
        window.from = window.from.max(from);
        if until < window.until {
            window.until = until;
            weakest = c.clone();
        }
    }
    (window, weakest)
}

/// Whether `cert` is named by the SignerInfo's `sid`.
fn names_signer(cert: &Certificate, sid: &SignerIdentifier) -> bool {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(sid) => {
            cert.tbs_certificate.issuer == sid.issuer
                && cert.tbs_certificate.serial_number == sid.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => {
            extension::<x509_cert::ext::pkix::SubjectKeyIdentifier>(cert)
                .is_some_and(|own| own.0 == ski.0)
        }
    }
}

fn extension<T: for<'a> Decode<'a> + const_oid::AssociatedOid>(cert: &Certificate) -> Option<T> {
    cert.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == T::OID)
        .and_then(|e| T::from_der(e.extn_value.as_bytes()).ok())
}

/// A certificate may issue others if basicConstraints says it is a CA, or
/// if it has no basicConstraints at all and is self-issued (an old v1 root).
fn may_issue(cert: &Certificate) -> bool {
    match extension::<x509_cert::ext::pkix::BasicConstraints>(cert) {
        Some(constraints) => constraints.ca,
        None => cert.tbs_certificate.subject == cert.tbs_certificate.issuer,
    }
}

fn digest_algorithm(oid: &ObjectIdentifier) -> Result<&'static ring::digest::Algorithm, String> {
    Ok(match *oid {
        ID_SHA256 => &ring::digest::SHA256,
        ID_SHA384 => &ring::digest::SHA384,
        ID_SHA512 => &ring::digest::SHA512,
        ID_SHA1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        other => return Err(format!("digest algorithm {other} is not supported")),
    })
}

/// RFC 3161 §2.4.1 requires a token to name its signer's certificate in a
/// signingCertificate or signingCertificateV2 attribute; either, when
/// present, must hash to the signer's certificate.
fn check_signing_certificate(
    der: &[u8],
    v2: Option<&Any>,
    v1: Option<&Any>,
    required: bool,
) -> Result<(), String> {
    if let Some(value) = v2 {
        let attribute: SigningCertificateV2 = value
            .decode_as()
            .map_err(|e| fail("signingCertificateV2", e))?;
        let first = attribute
            .certs
            .first()
            .ok_or("signingCertificateV2 names no certificate")?;
        let algorithm = first
            .hash_algorithm
            .as_ref()
            .map_or(Ok(&ring::digest::SHA256), |a| digest_algorithm(&a.oid))?;
        if first.cert_hash.as_bytes() != ring::digest::digest(algorithm, der).as_ref() {
            return Err("signingCertificateV2 names another certificate than the signer's".into());
        }
    } else if let Some(value) = v1 {
        let attribute: SigningCertificate = value
            .decode_as()
            .map_err(|e| fail("signingCertificate", e))?;
        let first = attribute
            .certs
            .first()
            .ok_or("signingCertificate names no certificate")?;
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
        if first.cert_hash.as_bytes() != sha1.as_ref() {
            return Err("signingCertificate names another certificate than the signer's".into());
        }
    } else if required {
        return Err(
            "the token has no signingCertificate attribute naming its signer (RFC 3161 §2.4.1)"
                .into(),
        );
    }
    Ok(())
}

/// Checks `signature` over `message` with the key in `spki`, for the
/// signature algorithm `algorithm`. In a SignerInfo the algorithm may be
/// plain rsaEncryption, and then `digest` (the SignerInfo's digest
/// algorithm) says which hash was used.
fn check_signature(
    spki: &spki::SubjectPublicKeyInfoOwned,
    algorithm: &ObjectIdentifier,
    digest: Option<&ObjectIdentifier>,
    message: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    let key = spki.subject_public_key.raw_bytes();
    let verifier: &'static dyn VerificationAlgorithm = match spki.algorithm.oid {
        ID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
                .ok_or("an EC key without a named curve")?;
            // Some signers write id-ecPublicKey as the signature algorithm
            // and let the digest algorithm name the hash.
            let algorithm = match (*algorithm, digest) {
                (ID_EC_PUBLIC_KEY, Some(&ID_SHA256)) => ECDSA_WITH_SHA256,
                (ID_EC_PUBLIC_KEY, Some(&ID_SHA384)) => ECDSA_WITH_SHA384,
                (other, _) => other,
            };
            match (curve, algorithm) {
                (SECP256R1, ECDSA_WITH_SHA256) => &sig::ECDSA_P256_SHA256_ASN1,
                (SECP256R1, ECDSA_WITH_SHA384) => &sig::ECDSA_P256_SHA384_ASN1,
                (SECP384R1, ECDSA_WITH_SHA256) => &sig::ECDSA_P384_SHA256_ASN1,
                (SECP384R1, ECDSA_WITH_SHA384) => &sig::ECDSA_P384_SHA384_ASN1,
                (_, ECDSA_WITH_SHA512) => {
                    return Err("ECDSA with SHA-512 is not supported".into());
                }
                (curve, algorithm) => {
                    return Err(format!(
                        "signature algorithm {algorithm} with curve {curve} is not supported"
                    ));
                }
            }
        }
        RSA_ENCRYPTION => {
            let hash = match (*algorithm, digest) {
                (RSA_ENCRYPTION, Some(digest)) => *digest,
                (SHA1_WITH_RSA, _) => ID_SHA1,
                (SHA256_WITH_RSA, _) => ID_SHA256,
                (SHA384_WITH_RSA, _) => ID_SHA384,
                (SHA512_WITH_RSA, _) => ID_SHA512,
                (RSASSA_PSS, _) => return Err("RSASSA-PSS signatures are not supported".into()),
                (other, _) => return Err(format!("signature algorithm {other} is not supported")),
            };
            match hash {
                ID_SHA1 => &sig::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
                ID_SHA256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                ID_SHA384 => &sig::RSA_PKCS1_2048_8192_SHA384,
                ID_SHA512 => &sig::RSA_PKCS1_2048_8192_SHA512,
                other => return Err(format!("RSA with digest {other} is not supported")),
            }
        }
        other => return Err(format!("public key algorithm {other} is not supported")),
    };
    UnparsedPublicKey::new(verifier, key)
        .verify(message, signature)
        .map_err(|_| "the signature is not valid for the signer's key".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ess_cert_id_v2_omits_the_default_hash_algorithm() {
        let ess = EssCertIdV2 {
            hash_algorithm: None,
            cert_hash: OctetString::new(vec![7u8; 32]).unwrap(),
            issuer_serial: None,
        };
        let der = ess.to_der().unwrap();
        // SEQUENCE { OCTET STRING (32) }: nothing before the hash.
        assert_eq!(&der[..4], &[0x30, 34, 0x04, 32]);
    }
}
