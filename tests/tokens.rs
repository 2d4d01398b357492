// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Real timestamp tokens from public TSAs (GlobalSign, IdenTrust, Sigstore's
//! staging TSA) in ../shared/corpus read by `tsa::token::inspect`: their
//! imprints are the hashes of the data they stamp, and fractional genTime
//! is read. Our own tokens read the same way.
// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::{shared_corpus, skip};
use mailnotary::tsa::token::inspect;
use sha2::{Digest, Sha256, Sha384, Sha512};

const SHA256: &str = "2.16.840.1.101.3.4.2.1";
const SHA384: &str = "2.16.840.1.101.3.4.2.2";
const SHA512: &str = "2.16.840.1.101.3.4.2.3";

#[test]
fn tokens_of_public_tsas_are_read() {
    let Some(corpus) = shared_corpus() else {
        return skip(
            "tokens_of_public_tsas_are_read",
            "../shared/corpus is not beside the repository",
        );
    };
    let hello = b"hello";
    let globalsign_data =
        std::fs::read(corpus.join("rfc3161-digitorus-timestamp/data.txt")).unwrap();
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "rfc3161-digitorus-timestamp/respNonce",
            SHA256,
            Sha256::digest(&globalsign_data).to_vec(),
            "2017",
        ),
        (
            "rfc3161-digitorus-timestamp/respNoCert",
            SHA256,
            Sha256::digest(&globalsign_data).to_vec(),
            "2017",
        ),
        (
            "rfc3161-trailofbits-client/identrust/issue-104.tsr",
            SHA512,
            Sha512::digest(hello).to_vec(),
            "2025-03-11",
        ),
        (
            "rfc3161-trailofbits-client/sigstage/response-sha256.tsr",
            SHA256,
            Sha256::digest(hello).to_vec(),
            "2025",
        ),
        (
            "rfc3161-trailofbits-client/sigstage/response-sha384.tsr",
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
    let nonce =
        inspect(&std::fs::read(corpus.join("rfc3161-digitorus-timestamp/respNonce")).unwrap())
            .unwrap();
    assert!(nonce.nonce.is_some());
    assert_eq!(nonce.policy, "1.3.6.1.4.1.4146.2.1");

    // A bare token (not a response) reads too.
    let bare =
        inspect(&std::fs::read(corpus.join("rfc3161-digitorus-timestamp/timeStampToken")).unwrap())
            .unwrap();
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
