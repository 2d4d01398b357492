// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Production keys: a `[keys]` section naming an operator's own PKI, made
//! here with OpenSSL (a root, an intermediate CA, a receipt certificate and
//! a TSA certificate, P-256). The gateway then creates no local CA, embeds
//! the intermediate in every receipt and token so that a verifier holding
//! only the root builds the path, and OpenSSL accepts the tokens against the
//! root. A TSA certificate without a critical timeStamping-only
//! extendedKeyUsage is refused at start with the reason.
// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{dispute_file, have, mailnotary, openssl_accepts_entry, skip, stderr, stdout};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A P-256 key and a certificate for `subject`, issued by `issuer` (a stem
/// of files in `dir`) with the extensions `ext`.
fn issue(dir: &Path, stem: &str, subject: &str, issuer: &str, ext: &str) {
    std::fs::write(dir.join(format!("{stem}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{stem}.key"),
            "-out",
            &format!("{stem}.csr"),
            "-subj",
            subject,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{stem}.csr"),
            "-CA",
            &format!("{issuer}.pem"),
            "-CAkey",
            &format!("{issuer}.key"),
            "-CAcreateserial",
            "-days",
            "365",
            "-extfile",
            &format!("{stem}.ext"),
            "-out",
            &format!("{stem}.pem"),
        ],
    );
}

fn concat(dir: &Path, out: &str, parts: &[&str]) {
    let mut all = Vec::new();
    for p in parts {
        all.extend(std::fs::read(dir.join(p)).unwrap());
    }
    std::fs::write(dir.join(out), all).unwrap();
}

fn keys_config(dir: &Path, tsa_cert: &str) -> std::path::PathBuf {
    let path = dir.join("mailnotary.toml");
    let file = |name: &str| dir.join(name).display().to_string();
    std::fs::write(
        &path,
        format!(
            "[keys]\nca_cert = \"{}\"\ntsa_cert = \"{}\"\ntsa_key = \"{}\"\n\
             receipt_cert = \"{}\"\nreceipt_key = \"{}\"\n",
            file("root.pem"),
            file(tsa_cert),
            file("tsa.key"),
            file("receipt-chain.pem"),
            file("receipt.key"),
        ),
    )
    .unwrap();
    path
}

#[test]
fn an_operator_pki_with_an_intermediate_signs_receipts_and_tokens() {
    let test = "an_operator_pki_with_an_intermediate_signs_receipts_and_tokens";
    if !have("openssl") {
        return skip(test, "needs openssl");
    }
    let pki = tempfile::tempdir().unwrap();
    let dir = pki.path();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "root.key",
            "-out",
            "root.pem",
            "-subj",
            "/O=Operator/CN=Operator Root",
            "-days",
            "3650",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    let ca = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n";
    issue(
        dir,
        "inter",
        "/O=Operator/CN=Operator Issuing CA",
        "root",
        ca,
    );
    issue(
        dir,
        "receipt",
        "/O=Operator/CN=Operator receipts",
        "inter",
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,nonRepudiation\n",
    );
    issue(
        dir,
        "tsa",
        "/O=Operator/CN=Operator TSA",
        "inter",
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=critical,timeStamping\n",
    );
    concat(dir, "receipt-chain.pem", &["receipt.pem", "inter.pem"]);
    concat(dir, "tsa-chain.pem", &["tsa.pem", "inter.pem"]);

    let config = keys_config(dir, "tsa-chain.pem");
    let config = config.to_str().unwrap();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let out = mailnotary(
        &data,
        &[
            "--config",
            config,
            "ingest",
            &dispute_file(2),
            &dispute_file(5),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    // No local CA is made: the data directory's keys/ holds only the
    // archive key that seals stored messages.
    let made: Vec<String> = std::fs::read_dir(data.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(made, ["archive.key"], "no local CA is made");

    // verify trusts the configured root by default; the intermediate comes
    // from inside the receipt and the token.
    let out = mailnotary(&data, &["--config", config, "verify", &dispute_file(5)]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("Operator TSA"), "{}", stdout(&out));

    // The bundle, checked with only the root, by mailnotary and by OpenSSL.
    let zip = work.path().join("b.zip");
    let out = mailnotary(
        &data,
        &[
            "--config",
            config,
            "export",
            "--message-id",
            "<202603161448057719204@huarui-precision.example>",
            "--out",
            zip.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let root = dir.join("root.pem");
    let out = mailnotary(
        &work.path().join("nowhere"),
        &[
            "verify",
            zip.to_str().unwrap(),
            "--trust",
            root.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    let bundle = work.path().join("bundle");
    zip::ZipArchive::new(std::fs::File::open(&zip).unwrap())
        .unwrap()
        .extract(&bundle)
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    let entry = &manifest["messages"][0];
    openssl_accepts_entry(&bundle, entry, entry["root"].as_str().unwrap(), &root);

    // A TSA certificate whose extendedKeyUsage is not critical is refused
    // before anything is stored.
    issue(
        dir,
        "weak-tsa",
        "/O=Operator/CN=Operator TSA",
        "inter",
        "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=timeStamping\n",
    );
    std::fs::copy(dir.join("weak-tsa.key"), dir.join("tsa.key")).unwrap();
    let config = keys_config(dir, "weak-tsa.pem");
    let other = work.path().join("other");
    let out = mailnotary(
        &other,
        &[
            "--config",
            config.to_str().unwrap(),
            "ingest",
            &dispute_file(2),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("extendedKeyUsage must be critical"),
        "{}",
        stderr(&out)
    );
}
