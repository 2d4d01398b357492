// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Evidence bundles: everything a stranger needs to check messages without
//! mailnotary, in one zip file.
//!
//! Layout (fixed):
//!
//! ```text
//! report.html                every message in Chinese and English, a timeline, the gaps
//! VERIFY.md                  every check as OpenSSL and Bouncy Castle commands
//! tools/ErsCheck.java        the Bouncy Castle evidence record check VERIFY.md runs
//! manifest.json              what is in the bundle, message by message
//! certs/ca.cert.pem          the trust anchor (the gateway's local CA)
//! certs/tsa.cert.pem         the timestamping certificate
//! certs/receipt.cert.pem     the receipt-signing certificate
//! certs/tsa-NAME-ca.pem      the CA of each configured external TSA
//! certs/tsa-NAME-certs.pem   its further certificates, when configured
//! messages/NNN.eml           the message as received (archive mode only)
//! receipts/NNN.p7s           the signed receipt (CMS, DER)
//! receipts/NNN.der           the receipt content it signs (DER)
//! evidence/NNN.ers           the RFC 4998 evidence record (DER)
//! timestamps/batch-B.tsr     the batch root's RFC 3161 token (DER)
//! dkim/NNN-NAME.txt          the DKIM key records captured on arrival
//! ```
//!
//! NNN numbers the messages from 001 in date order. The manifest names,
//! for each message, its files, its batch and the batch root (hex), which
//! is what `openssl ts -verify -digest ROOT -token_in` checks the token
//! against, and which the evidence record leads to from the SHA-256 of
//! `receipts/NNN.der`. The zip is written to a temporary file beside the
//! target and renamed into place, so a failed export leaves no partial
//! bundle.

pub mod report;

use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::archive::evidence::Receipt;
use crate::archive::{Archive, ArchiveError, MessageRecord};

/// Why a bundle could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("cannot write {path}: {detail}")]
    Write { path: String, detail: String },
    #[error("cannot read the certificate {path}: {detail}")]
    Certificate { path: String, detail: String },
    #[error("nothing to export: no message matches")]
    Empty,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSummary {
    pub messages: usize,
    /// Messages still pending, exported without receipt and evidence.
    pub pending: usize,
    pub batches: usize,
}

/// The certificate files of one external TSA, as configured.
#[derive(Debug, Clone)]
pub struct TsaCertificates {
    pub name: String,
    pub ca_file: Option<std::path::PathBuf>,
    pub certs_file: Option<std::path::PathBuf>,
}

/// Writes the bundle for `records` to `out`; the gateway's certificates
/// come from `certs`.
pub fn write(
    archive: &Archive,
    records: &[MessageRecord],
    certs: &crate::tsa::pki::CertFiles,
    tsa_anchors: &[TsaCertificates],
    gateway: &str,
    out: &Path,
) -> Result<BundleSummary, BundleError> {
    if records.is_empty() {
        return Err(BundleError::Empty);
    }
    let write_err = |e: &dyn std::fmt::Display| BundleError::Write {
        path: out.display().to_string(),
        detail: e.to_string(),
    };
    let temp = out.with_extension("zip.partial");
    let file = std::fs::File::create(&temp).map_err(|e| write_err(&e))?;
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let add = |zip: &mut zip::ZipWriter<std::fs::File>, name: &str, bytes: &[u8]| {
        zip.start_file(name, options)
            .map_err(|e| write_err(&e))
            .and_then(|()| zip.write_all(bytes).map_err(|e| write_err(&e)))
    };

    for (cert, path) in [
        ("ca", &certs.ca),
        ("tsa", &certs.tsa),
        ("receipt", &certs.receipt),
    ] {
        let pem = std::fs::read(path).map_err(|e| BundleError::Certificate {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        add(&mut zip, &format!("certs/{cert}.cert.pem"), &pem)?;
    }
    // The CA certificates of the external TSAs that stamp batches, named
    // after each TSA, so that their tokens can be checked from the bundle.
    let mut tsa_anchor_names = Vec::new();
    let mut tsa_certificate_names = Vec::new();
    // TSA name -> (its CA file, its further certificates) in the bundle.
    let mut tsa_files: std::collections::HashMap<String, (Option<String>, Option<String>)> =
        std::collections::HashMap::new();
    for tsa in tsa_anchors {
        let safe: String = tsa
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        for (path, role, names) in [
            (&tsa.ca_file, "ca", &mut tsa_anchor_names),
            (&tsa.certs_file, "certs", &mut tsa_certificate_names),
        ] {
            let Some(path) = path else { continue };
            let bytes = std::fs::read(path).map_err(|e| BundleError::Certificate {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
            let ext = if bytes.first() == Some(&0x30) {
                "der"
            } else {
                "pem"
            };
            let name = format!("certs/tsa-{safe}-{role}.{ext}");
            add(&mut zip, &name, &bytes)?;
            let files = tsa_files.entry(tsa.name.clone()).or_default();
            match role {
                "ca" => files.0 = Some(name.clone()),
                _ => files.1 = Some(name.clone()),
            }
            names.push(name);
        }
    }

    let mut entries = Vec::new();
    let mut batches = std::collections::BTreeMap::new();
    let mut pending = 0;
    let mut rows: Vec<report::Row<'_>> = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let n = format!("{:03}", i + 1);
        let id = record.id().map_err(ArchiveError::from)?;
        let mut entry = json!({
            "n": n,
            "receipt_id": record.receipt_id,
            "message_id": record.metadata.message_id,
            "date": record.metadata.date,
            "from": record.metadata.from,
            "to": record.metadata.to,
            "subject": record.metadata.subject,
            "raw_sha256": record.digests.raw,
            "canonical_sha256": record.digests.canonical,
            "parts": record.digests.parts,
            "mode": record.mode.name(),
        });
        // The DKIM key records captured at arrival, as TXT text, so that
        // a reader can check the signatures without today's DNS.
        let mut row = report::Row {
            n: n.clone(),
            record,
            message: None,
            stamp: None,
            dkim_keys: Vec::new(),
        };
        if let Some(report) = &record.dkim {
            let mut files = Vec::new();
            for key in &report.keys {
                let Some(text) = &key.record else { continue };
                // Selectors and domains are DNS names; anything else in one
                // is kept out of the file name.
                let safe: String = key
                    .name
                    .chars()
                    .map(|c| match c {
                        'a'..='z' | '0'..='9' | '.' | '-' | '_' => c,
                        _ => '_',
                    })
                    .collect();
                let name = format!("dkim/{n}-{safe}.txt");
                add(&mut zip, &name, text.as_bytes())?;
                if let Some(sha) = &key.sha256 {
                    row.dkim_keys.push((name.clone(), sha.clone()));
                }
                files.push(json!({ "name": key.name, "file": name, "sha256": key.sha256 }));
            }
            entry["dkim"] = json!(
                report
                    .signatures
                    .iter()
                    .map(|v| json!({
                        "domain": v.domain,
                        "selector": v.selector,
                        "algorithm": v.algorithm,
                        "result": v.result,
                        "reason": v.reason,
                    }))
                    .collect::<Vec<_>>()
            );
            entry["dkim_keys"] = json!(files);
        }
        if let Some(raw) = archive.raw(&id)? {
            let name = format!("messages/{n}.eml");
            add(&mut zip, &name, &raw)?;
            entry["message"] = json!(name);
            row.message = Some(name);
        }
        match (archive.receipt(&id)?, archive.evidence(&id)?) {
            (Some(Receipt { signed, content }), Some(evidence)) => {
                add(&mut zip, &format!("receipts/{n}.p7s"), &signed)?;
                add(&mut zip, &format!("receipts/{n}.der"), &content)?;
                add(&mut zip, &format!("evidence/{n}.ers"), &evidence.record)?;
                let batch = evidence.batch.number;
                if let std::collections::btree_map::Entry::Vacant(slot) = batches.entry(batch) {
                    let token = archive.batch_token(batch)?.ok_or_else(|| {
                        ArchiveError::from(crate::store::StoreError::Corrupt(format!(
                            "batch {batch} has no token"
                        )))
                    })?;
                    add(&mut zip, &format!("timestamps/batch-{batch}.tsr"), &token)?;
                    let gen_time = crate::tsa::token::inspect(&token)
                        .ok()
                        .map(|t| t.gen_time.to_rfc3339());
                    slot.insert((evidence.batch.clone(), gen_time));
                }
                let (info, gen_time) = &batches[&batch];
                let (anchor, untrusted) = match info.tsa.as_str() {
                    // The built-in TSA is certified by the gateway's CA.
                    "built-in" => (Some("certs/ca.cert.pem".to_string()), None),
                    name => tsa_files.get(name).cloned().unwrap_or_default(),
                };
                row.stamp = Some(report::Stamp {
                    batch,
                    root: evidence.batch.root.clone(),
                    token: format!("timestamps/batch-{batch}.tsr"),
                    gen_time: gen_time.clone(),
                    tsa: info.tsa.clone(),
                    anchor,
                    untrusted,
                });
                entry["status"] = json!("stamped");
                entry["receipt"] = json!(format!("receipts/{n}.p7s"));
                entry["receipt_content"] = json!(format!("receipts/{n}.der"));
                entry["evidence"] = json!(format!("evidence/{n}.ers"));
                entry["batch"] = json!(batch);
                entry["root"] = json!(evidence.batch.root);
                entry["token"] = json!(format!("timestamps/batch-{batch}.tsr"));
            }
            _ => {
                pending += 1;
                entry["status"] = json!("pending");
            }
        }
        entries.push(entry);
        rows.push(row);
    }
    let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    add(
        &mut zip,
        "report.html",
        report::report_html(&rows, gateway, &created_at).as_bytes(),
    )?;
    add(
        &mut zip,
        "VERIFY.md",
        report::verify_md(&rows, gateway).as_bytes(),
    )?;
    add(
        &mut zip,
        "tools/ErsCheck.java",
        report::ERS_CHECK_JAVA.as_bytes(),
    )?;

    let manifest = json!({
        "format": "mailnotary-bundle-1",
        "created_at": created_at,
        "gaps": report::gaps(&rows),
        "trust_anchor": "certs/ca.cert.pem",
        "tsa_trust_anchors": tsa_anchor_names,
        "tsa_certificates": tsa_certificate_names,
        "messages": entries,
        "batches": batches.values().map(|(b, _)| b).collect::<Vec<_>>(),
    });
    let manifest = serde_json::to_vec_pretty(&manifest).map_err(|e| write_err(&e))?;
    add(&mut zip, "manifest.json", &manifest)?;
    let file = zip.finish().map_err(|e| write_err(&e))?;
    file.sync_all().map_err(|e| write_err(&e))?;
    std::fs::rename(&temp, out).map_err(|e| write_err(&e))?;
    Ok(BundleSummary {
        messages: records.len(),
        pending,
        batches: batches.len(),
    })
}

/// One message of a bundle as read back.
#[derive(Debug, Clone, Default)]
pub struct BundleEntry {
    /// The message's number in the bundle (NNN).
    pub n: String,
    pub receipt_id: Option<String>,
    /// receipts/NNN.p7s, when the message was stamped.
    pub receipt: Option<Vec<u8>>,
    /// evidence/NNN.ers, when the message was stamped.
    pub record: Option<Vec<u8>>,
    /// messages/NNN.eml, in archive mode.
    pub message: Option<Vec<u8>>,
}

/// A bundle read back for verification.
#[derive(Debug, Clone, Default)]
pub struct OpenedBundle {
    pub entries: Vec<BundleEntry>,
    /// certs/ca.cert.pem: the anchor the bundle names. It proves nothing by
    /// itself, since whoever made the bundle chose it.
    pub trust_anchor: Option<Vec<u8>>,
    /// The CA certificates of external TSAs the bundle carries; the same
    /// caution applies.
    pub tsa_trust_anchors: Vec<Vec<u8>>,
    /// Further TSA certificates (for tokens that do not carry theirs).
    pub tsa_certificates: Vec<Vec<u8>>,
}

/// Largest member read from a bundle: bounds memory on a hostile zip.
const MAX_MEMBER: u64 = 512 * 1024 * 1024;

/// Why a bundle could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the bundle {path}: {detail}")]
pub struct ReadError {
    pub path: String,
    pub detail: String,
}

/// Reads the manifest, receipts and evidence records of the bundle at `path`.
pub fn read(path: &Path) -> Result<OpenedBundle, ReadError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| ReadError {
        path: name.clone(),
        detail: e.to_string(),
    })?;
    read_from(file, &name)
}

/// Reads a bundle from `reader`; `name` is how errors call it.
pub fn read_from<R: std::io::Read + std::io::Seek>(
    reader: R,
    name: &str,
) -> Result<OpenedBundle, ReadError> {
    use std::io::Read;
    let error = |detail: String| ReadError {
        path: name.to_string(),
        detail,
    };
    let mut zip =
        zip::ZipArchive::new(reader).map_err(|e| error(format!("not a zip file: {e}")))?;
    let mut member = |name: &str| -> Result<Option<Vec<u8>>, ReadError> {
        let mut entry = match zip.by_name(name) {
            Ok(entry) => entry,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(error(format!("{name}: {e}"))),
        };
        let mut bytes = Vec::new();
        (&mut entry)
            .take(MAX_MEMBER)
            .read_to_end(&mut bytes)
            .map_err(|e| error(format!("{name}: {e}")))?;
        Ok(Some(bytes))
    };
    let manifest = member("manifest.json")?
        .ok_or_else(|| error("it has no manifest.json; is it a mailnotary bundle?".into()))?;
    let manifest: serde_json::Value = serde_json::from_slice(&manifest)
        .map_err(|e| error(format!("manifest.json is not JSON: {e}")))?;
    let mut opened = OpenedBundle {
        trust_anchor: member(
            manifest["trust_anchor"]
                .as_str()
                .unwrap_or("certs/ca.cert.pem"),
        )?,
        ..OpenedBundle::default()
    };
    for name in manifest["tsa_trust_anchors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str())
    {
        opened.tsa_trust_anchors.extend(member(name)?);
    }
    for name in manifest["tsa_certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str())
    {
        opened.tsa_certificates.extend(member(name)?);
    }
    for message in manifest["messages"].as_array().into_iter().flatten() {
        let file = |key: &str| message[key].as_str().map(str::to_owned);
        let mut entry = BundleEntry {
            n: file("n").unwrap_or_default(),
            receipt_id: file("receipt_id"),
            ..BundleEntry::default()
        };
        if let Some(name) = file("receipt") {
            entry.receipt = member(&name)?;
        }
        if let Some(name) = file("evidence") {
            entry.record = member(&name)?;
        }
        if let Some(name) = file("message") {
            entry.message = member(&name)?;
        }
        opened.entries.push(entry);
    }
    Ok(opened)
}
