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
/// `signer`, returning the DER ContentInfo.
pub fn sign(
    content_type: ObjectIdentifier,
    content: &[u8],
    signer: &KeyPair,
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
        .map_err(|e| fail("digest algorithm", &e))?
        .add_certificate(CertificateChoices::Certificate(certificate.clone()))
        .map_err(|e| fail("certificate", &e))?
        .add_signer_info::<_, DerSignature>(signer_info)
        .map_err(|e| fail("signature", &e))?;
    signed
        .build()
        .map_err(|e| fail("SignedData", &e))?
        .to_der()
        .map_err(|e| fail("ContentInfo", &e))
}
