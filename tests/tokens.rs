// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Real timestamp tokens from public TSAs (GlobalSign, IdenTrust, Sigstore's
//! staging TSA), copied into tests/data/tsa-tokens with their licences:
//! `tsa::token::inspect` reads their imprints, and the verifier accepts each
//! one through its certificate chain at its genTime (RSA and ECDSA, P-256
//! and P-384, intermediates, partial chains, tokens without certificates)
//! and refuses the tampered one. Our own tokens read the same way.
// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::root;
use mailnotary::signing::{Trust, read_certificates};
use mailnotary::tsa::token::{inspect, token_bytes};
use sha2::{Digest, Sha256, Sha384, Sha512};

const SHA256: &str = "2.16.840.1.101.3.4.2.1";
const SHA384: &str = "2.16.840.1.101.3.4.2.2";
const SHA512: &str = "2.16.840.1.101.3.4.2.3";

#[test]
fn tokens_of_public_tsas_are_read() {
    let corpus = tokens_dir();
    let hello = b"hello";
    let globalsign_data = std::fs::read(corpus.join("digitorus/data.txt")).unwrap();
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "digitorus/respNonce",
            SHA256,
            Sha256::digest(&globalsign_data).to_vec(),
            "2017",
        ),
        (
            "digitorus/respNoCert",
            SHA256,
            Sha256::digest(&globalsign_data).to_vec(),
            "2017",
        ),
        (
            "trailofbits/identrust/issue-104.tsr",
            SHA512,
            Sha512::digest(hello).to_vec(),
            "2025-03-11",
        ),
        (
            "trailofbits/sigstage/response-sha256.tsr",
            SHA256,
            Sha256::digest(hello).to_vec(),
            "2025",
        ),
        (
            "trailofbits/sigstage/response-sha384.tsr",
            SHA384,
            Sha384::digest(hello).to_vec(),
            "2025",
        ),
    ];
    for (file, algorithm, imprint, year) in cases {
        let der = std::fs::read(corpus.join(file)).unwrap();
        let info = inspect(&der).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(info.hash_algorithm, algorithm, "{file}");
        assert_eq!(info.imprint, imprint, "{file}");
        assert!(
            info.gen_time.to_rfc3339().starts_with(year),
            "{file}: {}",
            info.gen_time
        );
    }
    let nonce = inspect(&std::fs::read(corpus.join("digitorus/respNonce")).unwrap()).unwrap();
    assert!(nonce.nonce.is_some());
    assert_eq!(nonce.policy, "1.3.6.1.4.1.4146.2.1");

    // A bare token (not a response) reads too.
    let bare = inspect(&std::fs::read(corpus.join("digitorus/timeStampToken")).unwrap()).unwrap();
    assert!(bare.gen_time.to_rfc3339().starts_with("2017-02-01"));
    assert!(hex::encode(&bare.imprint).starts_with("2da82c15"));
}

#[test]
fn our_tokens_read_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let pki = mailnotary::tsa::pki::LocalPki::open_or_create(dir.path(), "gw").unwrap();
    let tsa = mailnotary::tsa::Tsa::new(pki);
    let digest: [u8; 32] = Sha256::digest(b"root").into();
    let token = tsa
        .stamp_at(
            &digest,
            Some(&[0x2a]),
            std::time::Duration::from_secs(1_770_000_000),
        )
        .unwrap();
    let info = inspect(&token).unwrap();
    assert_eq!(info.imprint, digest);
    assert_eq!(info.gen_time.timestamp(), 1_770_000_000);
    assert_eq!(info.nonce.as_deref(), Some("42"));
    assert_eq!(info.policy, "1.2.3.4.1");
    assert!(inspect(b"not a token").is_err());
}

fn tokens_dir() -> std::path::PathBuf {
    root().join("tests/data/tsa-tokens")
}

fn certificates(path: &str) -> Vec<x509_cert::Certificate> {
    read_certificates(&std::fs::read(tokens_dir().join(path)).unwrap()).unwrap()
}

/// The certificates a token carries.
fn embedded(token: &[u8]) -> Vec<x509_cert::Certificate> {
    use der::Decode;
    let info = cms::content_info::ContentInfo::from_der(token).unwrap();
    let signed = info
        .content
        .decode_as::<cms::signed_data::SignedData>()
        .unwrap();
    signed
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|c| match c {
            cms::cert::CertificateChoices::Certificate(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

/// The token of `file` and its genTime.
fn token(file: &str) -> (Vec<u8>, i64) {
    let der = std::fs::read(tokens_dir().join(file)).unwrap();
    let token = token_bytes(&der).unwrap_or_else(|e| panic!("{file}: {e}"));
    let at = inspect(&token).unwrap().gen_time.timestamp();
    (token, at)
}

#[test]
fn tokens_of_public_tsas_verify_through_their_chains() {
    // Sigstore's staging TSA: P-384 key signing SHA-256, chain given
    // beside the tokens; ESSCertIDv2 with SHA-256, SHA-384 and SHA-512.
    let sigstage = || Trust::new(certificates("trailofbits/sigstage/ts_chain.pem"));
    for file in [
        "trailofbits/sigstage/response-sha256.tsr",
        "trailofbits/sigstage/response-sha384.tsr",
        "trailofbits/sigstage/response-sha512.tsr",
    ] {
        let (token, at) = token(file);
        let verified = sigstage()
            .verify(&token, Some(at))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            verified
                .signer
                .tbs_certificate
                .subject
                .to_string()
                .contains("sigstore"),
            "{file}: {}",
            verified.signer.tbs_certificate.subject
        );
    }
    // Two bytes of the signature changed: refused.
    let (tampered, at) = token("trailofbits/sigstage/response-invalid-signature.tsr");
    let error = sigstage().verify(&tampered, Some(at)).unwrap_err();
    assert!(error.contains("signature"), "{error}");

    // No certificate in the token: the chain file supplies the signer.
    let (bare, at) = token("trailofbits/sigstage/response-no-embedded-cert.tsr");
    let error = Trust::new(Vec::new()).verify(&bare, Some(at)).unwrap_err();
    assert!(
        error.contains("neither in the signature nor given"),
        "{error}"
    );
    Trust::new(certificates("trailofbits/sigstage/ts_chain.pem"))
        .with_untrusted(certificates("trailofbits/sigstage/ts_chain.pem"))
        .verify(&bare, Some(at))
        .unwrap();

    // IdenTrust: RSA-4096, ESSCertID v1 (SHA-1), an intermediate carried in
    // the token, the root as a DER file. The TSA certificate expired in
    // January 2026: valid at genTime, not now.
    let identrust = Trust::new(certificates("trailofbits/identrust/ts_chain.pem"));
    let (token_i, at) = token("trailofbits/identrust/issue-104.tsr");
    identrust.verify(&token_i, Some(at)).unwrap();
    let now = chrono::Utc::now().timestamp();
    let error = identrust.verify(&token_i, Some(now)).unwrap_err();
    assert!(error.contains("not valid at the time checked"), "{error}");

    // Sigstore's mock TSA: no certificate in the token, expired now.
    let chain = certificates("trailofbits/sigstore.mock/ts_chain.pem");
    let (mock, at) = token("trailofbits/sigstore.mock/response-expired.tsr");
    Trust::new(chain.clone())
        .with_untrusted(chain)
        .verify(&mock, Some(at))
        .unwrap();

    // A test TSA whose token carries decoy certificates, one with the
    // signer's subject: the signer is found by issuer and serial number.
    let chain = || Trust::new(certificates("trailofbits/test_tsa/ts_chain.pem"));
    for file in [
        "trailofbits/test_tsa/response.tsr",
        "trailofbits/test_tsa/response-injected-certs.tsr",
    ] {
        let (t, at) = token(file);
        chain()
            .verify(&t, Some(at))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    // The same TSA's other token is issued by a CA not given: refused as
    // untrusted, not as damaged.
    let (other, at) = token("trailofbits/test_tsa/other_response.tsr");
    let error = chain().verify(&other, Some(at)).unwrap_err();
    assert!(error.contains("does not lead to a trusted CA"), "{error}");
}

#[test]
fn globalsign_tokens_verify_with_a_partial_chain() {
    // GlobalSign (2017): RSA-2048 signed as rsaEncryption, ESSCertID v1.
    // The root is not in the corpus, so the issuing CA the token carries
    // is trusted as the anchor, as `openssl ts -verify -partial_chain` does.
    let (with_cert, at) = token("digitorus/respNonce");
    let certs = embedded(&with_cert);
    assert_eq!(certs.len(), 2);
    let (signer, ca): (Vec<_>, Vec<_>) = certs.into_iter().partition(|c| {
        c.tbs_certificate
            .subject
            .to_string()
            .to_lowercase()
            .contains("timestamp")
            || c.tbs_certificate
                .subject
                .to_string()
                .to_lowercase()
                .contains("tsa")
    });
    assert_eq!((signer.len(), ca.len()), (1, 1), "a TSA and its CA");
    Trust::new(ca.clone()).verify(&with_cert, Some(at)).unwrap();
    let (no_nonce, at_nn) = token("digitorus/respNoNonce");
    Trust::new(ca.clone())
        .verify(&no_nonce, Some(at_nn))
        .unwrap();
    // Without the CA: untrusted.
    let error = Trust::new(Vec::new())
        .verify(&with_cert, Some(at))
        .unwrap_err();
    assert!(error.contains("does not lead to a trusted CA"), "{error}");

    // The token without certificates verifies once the TSA certificate
    // from the other response is supplied as untrusted material.
    let (no_cert, at) = token("digitorus/respNoCert");
    Trust::new(ca.clone())
        .with_untrusted(signer)
        .verify(&no_cert, Some(at))
        .unwrap();

    // A bare token (not a response) from another GlobalSign CA.
    let (bare, at) = token("digitorus/timeStampToken");
    let carried = embedded(&bare);
    let anchors: Vec<_> = carried
        .iter()
        .filter(|c| {
            c.tbs_certificate.extensions.iter().flatten().any(|e| {
                e.extn_id == const_oid::db::rfc5280::ID_CE_BASIC_CONSTRAINTS
                    && e.extn_value
                        .as_bytes()
                        .windows(3)
                        .any(|w| w == [0x01, 0x01, 0xff])
            })
        })
        .cloned()
        .collect();
    assert!(!anchors.is_empty(), "the bare token carries its CA");
    Trust::new(anchors).verify(&bare, Some(at)).unwrap();
}
