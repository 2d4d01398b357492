// SPDX-License-Identifier: Apache-2.0 OR MIT
//! CMS SignedData (RFC 5652) as the gateway signs it: for timestamp tokens
//! and for receipts alike.
//!
//! The signature is ECDSA P-256 with SHA-256 (OpenSSL 3.0 cannot verify
//! Ed25519 in CMS). The signer certificate is embedded, and the signed
//! attributes are contentType, messageDigest, signingTime and a
//! signingCertificateV2 (RFC 5035) naming the certificate by its SHA-256,
//! which RFC 3161 requires of tokens and which binds receipts to their key
//! the same way.

use cms::builder::{SignedDataBuilder, SignerInfoBuilder, create_signing_time_attribute};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::signed_data::{EncapsulatedContentInfo, SignerIdentifier};
use const_oid::ObjectIdentifier;
use der::asn1::{OctetString, SetOfVec};
use der::{Any, Encode, Sequence, Tag};
use p256::ecdsa::DerSignature;
use sha2::{Digest, Sha256};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;

use crate::tsa::ID_SHA256;
use crate::tsa::pki::KeyPair;

/// id-aa-signingCertificateV2 (RFC 5035).
pub const ID_AA_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");

/// ESSCertIDv2 (RFC 5035 §4), with hashAlgorithm left out because SHA-256
/// is its DEFAULT and DER omits defaults, and without the optional
/// issuerSerial.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct EssCertIdV2 {
    cert_hash: OctetString,
}

/// SigningCertificateV2 (RFC 5035 §3), without the optional policies.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SigningCertificateV2 {
    certs: Vec<EssCertIdV2>,
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
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
    let sha256 = AlgorithmIdentifierOwned {
        oid: ID_SHA256,
        parameters: None,
    };
    let encapsulated = EncapsulatedContentInfo {
        econtent_type: content_type,
        econtent: Some(
            Any::new(Tag::OctetString, content.to_vec()).map_err(|e| fail("eContent", &e))?,
        ),
    };

    let certificate = &signer.certificate;
    let cert_der = certificate.to_der().map_err(|e| fail("certificate", &e))?;
    let ess = SigningCertificateV2 {
        certs: vec![EssCertIdV2 {
            cert_hash: OctetString::new(Sha256::digest(&cert_der).to_vec())
                .map_err(|e| fail("certHash", &e))?,
        }],
    };
    let ess_attribute = Attribute {
        oid: ID_AA_SIGNING_CERTIFICATE_V2,
        values: SetOfVec::try_from(vec![
            Any::encode_from(&ess).map_err(|e| fail("signingCertificateV2", &e))?,
        ])
        .map_err(|e| fail("signingCertificateV2", &e))?,
    };

    let sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
        issuer: certificate.tbs_certificate.issuer.clone(),
        serial_number: certificate.tbs_certificate.serial_number.clone(),
    });
    let mut signer_info =
        SignerInfoBuilder::new(&signer.key, sid, sha256.clone(), &encapsulated, None)
            .map_err(|e| fail("signer", &e))?;
    signer_info
        .add_signed_attribute(create_signing_time_attribute().map_err(|e| fail("signingTime", &e))?)
        .map_err(|e| fail("signingTime", &e))?
        .add_signed_attribute(ess_attribute)
        .map_err(|e| fail("signingCertificateV2", &e))?;

    let mut signed = SignedDataBuilder::new(&encapsulated);
    signed
        .add_digest_algorithm(sha256)
        .map_err(|e| fail("digest algorithm", &e))?;
    if embed_certificate {
        signed
            .add_certificate(CertificateChoices::Certificate(certificate.clone()))
            .map_err(|e| fail("certificate", &e))?;
    }
    signed
        .add_signer_info::<_, DerSignature>(signer_info)
        .map_err(|e| fail("signature", &e))?;
    signed
        .build()
        .map_err(|e| fail("SignedData", &e))?
        .to_der()
        .map_err(|e| fail("ContentInfo", &e))
}

/// What a verified SignedData says.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The eContentType.
    pub content_type: ObjectIdentifier,
    /// The eContent: the bytes that were signed.
    pub content: Vec<u8>,
    /// The certificate that signed it, verified up to a trust anchor.
    pub signer: x509_cert::Certificate,
}

/// id-signedData (RFC 5652 §5.1).
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// id-messageDigest (RFC 5652 §11.2).
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
/// id-contentType (RFC 5652 §11.1).
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
/// ecdsa-with-SHA256 (RFC 5758).
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// Verifies a DER ContentInfo holding SignedData signed the way [`sign`]
/// signs: one ECDSA P-256 / SHA-256 signer whose certificate is embedded
/// and issued directly by one of `anchors`. `at` (seconds since the epoch)
/// is the time at which both certificates must be valid: the token's
/// genTime for timestamps, so that evidence outlives an expired certificate.
pub fn verify(
    der: &[u8],
    anchors: &[x509_cert::Certificate],
    at: Option<i64>,
) -> Result<Verified, String> {
    use cms::content_info::ContentInfo;
    use cms::signed_data::SignedData;
    use der::Decode;

    let info = ContentInfo::from_der(der).map_err(|e| format!("not a CMS ContentInfo: {e}"))?;
    if info.content_type != ID_SIGNED_DATA {
        return Err(format!(
            "content type {} is not signedData",
            info.content_type
        ));
    }
    let signed = info
        .content
        .decode_as::<SignedData>()
        .map_err(|e| format!("not a SignedData: {e}"))?;
    let content = signed
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or("the signed content is detached; this verifier needs it inside")?
        .decode_as::<OctetString>()
        .map_err(|e| format!("eContent is not an OCTET STRING: {e}"))?
        .into_bytes();
    let signer_info = match signed.signer_infos.0.as_slice() {
        [one] => one,
        other => return Err(format!("{} signers; expected exactly one", other.len())),
    };
    let SignerIdentifier::IssuerAndSerialNumber(sid) = &signer_info.sid else {
        return Err("the signer is named by key identifier; expected issuer and serial".into());
    };
    let signer = signed
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .find_map(|c| match c {
            CertificateChoices::Certificate(cert)
                if cert.tbs_certificate.issuer == sid.issuer
                    && cert.tbs_certificate.serial_number == sid.serial_number =>
            {
                Some(cert.clone())
            }
            _ => None,
        })
        .ok_or("the signer's certificate is not embedded")?;

    // Signed attributes: messageDigest must be the content's SHA-256 and
    // contentType the eContentType (RFC 5652 §5.4, §11.1).
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
    let digest = attr(ID_MESSAGE_DIGEST)
        .ok_or("no messageDigest attribute")?
        .decode_as::<OctetString>()
        .map_err(|e| format!("messageDigest: {e}"))?;
    if digest.as_bytes() != Sha256::digest(&content).as_slice() {
        return Err("the messageDigest attribute does not match the content".into());
    }
    let content_type = attr(ID_CONTENT_TYPE)
        .ok_or("no contentType attribute")?
        .decode_as::<ObjectIdentifier>()
        .map_err(|e| format!("contentType: {e}"))?;
    if content_type != signed.encap_content_info.econtent_type {
        return Err("the contentType attribute differs from the eContentType".into());
    }
    // The signature covers the attributes encoded as a SET (RFC 5652 §5.4).
    let signed_bytes = attrs
        .to_der()
        .map_err(|e| format!("signed attributes: {e}"))?;
    check_ecdsa(
        &signer.tbs_certificate.subject_public_key_info,
        &signed_bytes,
        signer_info.signature.as_bytes(),
    )
    .map_err(|e| format!("the signature does not verify: {e}"))?;

    check_issued(&signer, anchors, at)?;
    Ok(Verified {
        content_type: signed.encap_content_info.econtent_type,
        content,
        signer,
    })
}

/// Checks that `cert` is signed by one of `anchors` (ECDSA P-256 with
/// SHA-256) and that both are valid at `at`.
fn check_issued(
    cert: &x509_cert::Certificate,
    anchors: &[x509_cert::Certificate],
    at: Option<i64>,
) -> Result<(), String> {
    let tbs = cert
        .tbs_certificate
        .to_der()
        .map_err(|e| format!("certificate: {e}"))?;
    if cert.signature_algorithm.oid != ECDSA_WITH_SHA256 {
        return Err(format!(
            "the certificate is signed with {}; expected ecdsa-with-SHA256",
            cert.signature_algorithm.oid
        ));
    }
    let issuer = anchors
        .iter()
        .filter(|a| a.tbs_certificate.subject == cert.tbs_certificate.issuer)
        .find(|a| {
            check_ecdsa(
                &a.tbs_certificate.subject_public_key_info,
                &tbs,
                cert.signature.raw_bytes(),
            )
            .is_ok()
        })
        .ok_or_else(|| {
            format!(
                "the certificate of {} is not issued by a trusted CA (give the CA with --trust)",
                cert.tbs_certificate.subject
            )
        })?;
    if let Some(at) = at {
        for c in [cert, issuer] {
            let validity = &c.tbs_certificate.validity;
            let from = validity.not_before.to_unix_duration().as_secs() as i64;
            let until = validity.not_after.to_unix_duration().as_secs() as i64;
            if at < from || at > until {
                return Err(format!(
                    "the certificate of {} was not valid at the time checked",
                    c.tbs_certificate.subject
                ));
            }
        }
    }
    Ok(())
}

fn check_ecdsa(
    spki: &spki::SubjectPublicKeyInfoOwned,
    message: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    use p256::ecdsa::signature::Verifier;
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
        .map_err(|e| format!("not a P-256 public key: {e}"))?;
    let signature = p256::ecdsa::Signature::from_der(signature)
        .map_err(|e| format!("not an ECDSA signature: {e}"))?;
    key.verify(message, &signature).map_err(|e| e.to_string())
}
