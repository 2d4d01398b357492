// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The built-in TSA's tokens, checked by OpenSSL (`openssl ts -verify`), an
//! independent RFC 3161 implementation, with the local CA as trust anchor.
// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{have, skip};
use mailnotary::tsa::Tsa;
use mailnotary::tsa::pki::LocalPki;
use sha2::{Digest, Sha256};

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl").args(args).output().unwrap()
}

fn verify(token: &Path, digest_hex: &str, ca: &Path) -> Output {
    openssl(&[
        "ts",
        "-verify",
        "-digest",
        digest_hex,
        "-token_in",
        "-in",
        token.to_str().unwrap(),
        "-CAfile",
        ca.to_str().unwrap(),
    ])
}

#[test]
fn openssl_verifies_tokens_of_the_built_in_tsa() {
    if !have("openssl") {
        return skip(
            "openssl_verifies_tokens_of_the_built_in_tsa",
            "openssl is not installed",
        );
    }
    let data = tempfile::tempdir().unwrap();
    let tsa = Tsa::new(LocalPki::open_or_create(data.path(), "test-gateway").unwrap());
    let digest: [u8; 32] = Sha256::digest(b"batch root").into();
    let token = tsa.stamp(&digest, Some(&[0x01, 0x02, 0xff])).unwrap();
    let token_path = data.path().join("token.der");
    std::fs::write(&token_path, &token).unwrap();
    let ca = tsa.pki().ca_path();

    let ok = verify(&token_path, &hex::encode(digest), &ca);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success() && text.contains("Verification: OK"),
        "{text}{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // Another digest, or another CA, is refused.
    let other: [u8; 32] = Sha256::digest(b"another root").into();
    let wrong = verify(&token_path, &hex::encode(other), &ca);
    assert!(!wrong.status.success());
    let elsewhere = tempfile::tempdir().unwrap();
    let stranger = LocalPki::open_or_create(elsewhere.path(), "stranger").unwrap();
    let untrusted = verify(&token_path, &hex::encode(digest), &stranger.ca_path());
    assert!(!untrusted.status.success());

    // The token says what RFC 3161 requires, as OpenSSL reads it.
    let shown = openssl(&[
        "ts",
        "-reply",
        "-token_in",
        "-in",
        token_path.to_str().unwrap(),
        "-text",
    ]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    // OpenSSL names 1.2.3.4.1 after its sample configuration.
    assert!(
        shown.contains("Policy OID: 1.2.3.4.1") || shown.contains("Policy OID: tsa_policy1"),
        "{shown}"
    );
    assert!(shown.contains("Hash Algorithm: sha256"), "{shown}");
    assert!(shown.contains(&spaced_hex(&digest[..8])), "{shown}");
    assert!(shown.contains("Nonce: 0x0102FF"), "{shown}");
}

/// Bytes as OpenSSL's hex dump prints them: lower case, space separated.
fn spaced_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn keys_are_created_once_and_private() {
    let data = tempfile::tempdir().unwrap();
    let first = LocalPki::open_or_create(data.path(), "gw").unwrap();
    let again = LocalPki::open_or_create(data.path(), "gw").unwrap();
    assert_eq!(
        first.tsa.certificate, again.tsa.certificate,
        "not regenerated"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in ["ca.key.pem", "tsa.key.pem", "receipt.key.pem"] {
            let mode = std::fs::metadata(data.path().join("keys").join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }
}

/// Runs `openssl ts -query` for `data` with `args`, answers it with the
/// built-in TSA and returns the paths of request and response.
fn exchange(
    tsa: &Tsa,
    dir: &Path,
    name: &str,
    args: &[&str],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = dir.join("data.txt");
    std::fs::write(&data, b"PO 4500012291 at USD 1.85").unwrap();
    let request = dir.join(format!("{name}.tsq"));
    let out = openssl(
        &[
            &[
                "ts",
                "-query",
                "-data",
                data.to_str().unwrap(),
                "-out",
                request.to_str().unwrap(),
            ][..],
            args,
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let response = dir.join(format!("{name}.tsr"));
    std::fs::write(&response, tsa.respond(&std::fs::read(&request).unwrap())).unwrap();
    (request, response)
}

#[test]
fn openssl_requests_are_answered_and_the_answers_verify() {
    if !have("openssl") {
        return skip(
            "openssl_requests_are_answered_and_the_answers_verify",
            "openssl is not installed",
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let tsa = Tsa::new(LocalPki::open_or_create(dir.path(), "gw").unwrap());
    let ca = tsa.pki().ca_path();
    let tsa_cert = dir.path().join("keys/tsa.cert.pem");

    for (name, args, untrusted) in [
        ("sha256-cert", vec!["-sha256", "-cert"], false),
        ("sha512-no-cert", vec!["-sha512"], true),
        (
            "sha384-no-nonce",
            vec!["-sha384", "-cert", "-no_nonce"],
            false,
        ),
    ] {
        let (request, response) = exchange(&tsa, dir.path(), name, &args);
        let mut verify_args = vec![
            "ts",
            "-verify",
            "-in",
            response.to_str().unwrap(),
            "-queryfile",
            request.to_str().unwrap(),
            "-CAfile",
            ca.to_str().unwrap(),
        ];
        if untrusted {
            verify_args.extend(["-untrusted", tsa_cert.to_str().unwrap()]);
        }
        let out = openssl(&verify_args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("Verification: OK"),
            "{name}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Refusals carry a status OpenSSL reads.
    let (_, response) = exchange(
        &tsa,
        dir.path(),
        "policy",
        &["-sha256", "-tspolicy", "1.2.3.4.5"],
    );
    let shown = openssl(&["ts", "-reply", "-in", response.to_str().unwrap(), "-text"]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("Rejected"), "{shown}");
    assert!(shown.contains("policy"), "{shown}");

    let garbage = dir.path().join("garbage.tsr");
    std::fs::write(&garbage, tsa.respond(b"GET / HTTP/1.0")).unwrap();
    let shown = openssl(&["ts", "-reply", "-in", garbage.to_str().unwrap(), "-text"]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("Rejected") && shown.contains("wrong format"),
        "{shown}"
    );
}
