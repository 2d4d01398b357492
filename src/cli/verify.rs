// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `mailnotary verify`: one file against its evidence, from the archive, a
//! receipt and evidence record given by hand, or a bundle.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use mailnotary::archive::verify::{Check, Evidence, Report, match_content};
use mailnotary::bundle::OpenedBundle;
use mailnotary::config::Config;
use mailnotary::receipt::content::ReceiptContent;
use mailnotary::signing::Trust;
use mailnotary::signing::unverified_content;

#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// The file to check: a message (.eml), an attachment saved on its
    /// own, or an evidence bundle (.zip), whose every message is checked.
    file: PathBuf,
    /// Check against this signed receipt (receipts/NNN.p7s, CMS DER)
    /// instead of the archive.
    #[arg(long, conflicts_with = "bundle")]
    receipt: Option<PathBuf>,
    /// The receipt's evidence record (evidence/NNN.ers); without it the
    /// archive is asked for the receipt's record.
    #[arg(long, requires = "receipt")]
    evidence: Option<PathBuf>,
    /// Check against the receipts of this evidence bundle (zip).
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// A CA certificate or chain (PEM) to trust; the data directory's own
    /// local CA is trusted when none is given.
    #[arg(long)]
    trust: Vec<PathBuf>,
    /// Certificates (PEM) that may complete a chain without being trusted:
    /// intermediates, or a TSA certificate its tokens do not carry.
    #[arg(long)]
    untrusted: Vec<PathBuf>,
    /// Print a JSON object.
    #[arg(long)]
    json: bool,
}

/// Reads every certificate of the PEM files in `anchors` (trusted) and
/// `untrusted` (path material only).
pub(crate) fn load_trust(anchors: &[PathBuf], untrusted: &[PathBuf]) -> Result<Trust> {
    Ok(Trust::new(read_all(anchors)?).with_untrusted(read_all(untrusted)?))
}

fn read_all(paths: &[PathBuf]) -> Result<Vec<x509_cert::Certificate>> {
    let mut all = Vec::new();
    for path in paths {
        all.extend(read_certificate_file(path)?);
    }
    Ok(all)
}

fn read_certificate_file(path: &Path) -> Result<Vec<x509_cert::Certificate>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the certificate file {}", path.display()))?;
    let certificates = mailnotary::signing::read_certificates(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a PEM or DER certificate file: {e}",
            path.display()
        )
    })?;
    if certificates.is_empty() {
        bail!("{} holds no certificate", path.display());
    }
    Ok(certificates)
}

/// The anchors trusted when none are named: the data directory's CA and
/// the CA of each external TSA in the configuration, with their extra
/// certificates. Empty when there are none.
pub(crate) fn default_trust(
    data: &Path,
    config: &Config,
    untrusted: &[PathBuf],
) -> Result<Option<Trust>> {
    let mut anchors = Vec::new();
    let mut extra = untrusted.to_vec();
    let local_ca = mailnotary::tsa::pki::CertFiles::of(data, config.keys.as_ref()).ca;
    if local_ca.exists() {
        anchors.push(local_ca);
    }
    for tsa in &config.tsa {
        anchors.extend(tsa.ca_file.clone());
        extra.extend(tsa.certs_file.clone());
    }
    if anchors.is_empty() {
        return Ok(None);
    }
    load_trust(&anchors, &extra).map(Some)
}

pub(crate) fn run(
    data: &Path,
    open: &super::Opener<'_>,
    config: &Config,
    args: &VerifyArgs,
    out: &mut dyn Write,
) -> Result<i32> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    // FILE itself may be a bundle: then every message in it is checked.
    let whole_bundle =
        args.receipt.is_none() && args.bundle.is_none() && bytes.starts_with(b"PK\x03\x04");
    let bundle = if whole_bundle {
        Some(mailnotary::bundle::read(&args.file)?)
    } else {
        args.bundle
            .as_deref()
            .map(mailnotary::bundle::read)
            .transpose()?
    };
    // Trust: what the user named, else the data directory's CA (and the
    // configured TSAs' CAs). A bundle verified on a machine with neither
    // falls back to the CAs inside the bundle, and the report says so:
    // those anchors are only as good as the channel the bundle came through.
    let mut anchor_note = None;
    let trust = if !args.trust.is_empty() {
        load_trust(&args.trust, &args.untrusted)?
    } else if let Some(trust) = default_trust(data, config, &args.untrusted)? {
        trust
    } else if let Some(opened) = &bundle {
        let ca = opened.trust_anchor.as_deref().context(
            "no trust anchor: the bundle has no certs/ca.cert.pem and none was given with --trust",
        )?;
        let mut anchors = bundle_certificates(ca)?;
        for tsa_ca in &opened.tsa_trust_anchors {
            anchors.extend(bundle_certificates(tsa_ca)?);
        }
        anchor_note = Some(fingerprint_note(&anchors));
        let mut untrusted = read_all(&args.untrusted)?;
        for certs in &opened.tsa_certificates {
            untrusted.extend(bundle_certificates(certs)?);
        }
        Trust::new(anchors).with_untrusted(untrusted)
    } else {
        bail!(
            "no trust anchor: {} does not exist; give the CA certificate with --trust",
            data.join("keys/ca.cert.pem").display()
        );
    };

    if whole_bundle && let Some(opened) = &bundle {
        return print_bundle(
            &verify_whole_bundle(opened, &trust, anchor_note),
            &args.file,
            args.json,
            out,
        );
    }

    let mut report = if let Some(receipt) = &args.receipt {
        let receipt_der = std::fs::read(receipt)
            .with_context(|| format!("cannot read the receipt {}", receipt.display()))?;
        let record =
            match &args.evidence {
                Some(path) => Some(std::fs::read(path).with_context(|| {
                    format!("cannot read the evidence record {}", path.display())
                })?),
                None => record_from_archive(data, open, &receipt_der)?,
            };
        mailnotary::archive::verify::verify_with(
            Some(&bytes),
            &Evidence {
                receipt: receipt_der,
                record,
            },
            &trust,
        )
    } else if let Some(opened) = &bundle {
        verify_in_bundle(&bytes, opened, &trust)
    } else {
        if !data.exists() {
            bail!(
                "no archive in {}: give --data, or check against --receipt or --bundle",
                data.display()
            );
        }
        open()?.verify_file(&bytes, &trust)?
    };
    if let Some(note) = anchor_note {
        report.checks.insert(
            0,
            Check {
                name: "trust anchor",
                ok: true,
                detail: note,
            },
        );
    }
    print(&report, &args.file, args.json, out)?;
    Ok(if report.verified { 0 } else { 1 })
}

fn fingerprint_note(anchors: &[x509_cert::Certificate]) -> String {
    use der::Encode;
    use sha2::Digest;
    let described: Vec<String> = anchors
        .iter()
        .map(|c| {
            let sha = c
                .to_der()
                .map(|d| hex::encode(sha2::Sha256::digest(d)))
                .unwrap_or_default();
            format!("{} (SHA-256 fingerprint {sha})", c.tbs_certificate.subject)
        })
        .collect();
    format!(
        "taken from the bundle itself: {}; it proves something only if this \
         fingerprint is confirmed with the gateway's operator through another channel, \
         or give the CA with --trust",
        described.join(", ")
    )
}

/// The certificates of a bundle member.
fn bundle_certificates(bytes: &[u8]) -> Result<Vec<x509_cert::Certificate>> {
    mailnotary::signing::read_certificates(bytes)
        .map_err(|e| anyhow::anyhow!("a certificate file in the bundle's certs/ is damaged: {e}"))
}

/// The evidence record of a receipt, from the local archive when there is one.
fn record_from_archive(
    data: &Path,
    open: &super::Opener<'_>,
    receipt: &[u8],
) -> Result<Option<Vec<u8>>> {
    if !data.exists() {
        return Ok(None);
    }
    let Some(id) = unverified_content(receipt)
        .and_then(|c| ReceiptContent::from_der(&c).ok())
        .and_then(|c| c.receipt_id.parse::<mailnotary::id::ReceiptId>().ok())
    else {
        return Ok(None);
    };
    Ok(open()?.evidence(&id)?.map(|e| e.record))
}

/// Finds the bundle's receipt that records one of the file's digests and
/// verifies against it.
fn verify_in_bundle(bytes: &[u8], opened: &OpenedBundle, trust: &Trust) -> Report {
    for entry in &opened.entries {
        let Some(receipt) = &entry.receipt else {
            continue;
        };
        let matches = unverified_content(receipt)
            .and_then(|c| ReceiptContent::from_der(&c).ok())
            .is_some_and(|c| match_content(bytes, &c).is_some());
        if matches {
            return mailnotary::archive::verify::verify_with(
                Some(bytes),
                &Evidence {
                    receipt: receipt.clone(),
                    record: entry.record.clone(),
                },
                trust,
            );
        }
    }
    Report::failed(
        None,
        "match",
        format!(
            "the content does not match any receipt in the bundle ({} receipts searched)",
            opened
                .entries
                .iter()
                .filter(|e| e.receipt.is_some())
                .count()
        ),
    )
}

fn print(report: &Report, file: &Path, as_json: bool, mut out: &mut dyn Write) -> Result<()> {
    if as_json {
        serde_json::to_writer_pretty(&mut out, report)?;
        writeln!(out)?;
        return Ok(());
    }
    for c in &report.checks {
        writeln!(
            out,
            "{:<5} {:<18} {}",
            if c.ok { "ok" } else { "FAIL" },
            c.name,
            c.detail
        )?;
    }
    if report.verified {
        writeln!(
            out,
            "verified: {} existed unchanged at {} ({} match)",
            file.display(),
            report.stamped_at.as_deref().unwrap_or("?"),
            report.matched.map_or("?", |m| m.name())
        )?;
    } else {
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name)
            .collect();
        writeln!(
            out,
            "not verified: {} (failed: {})",
            file.display(),
            failed.join(", ")
        )?;
    }
    Ok(())
}

/// One message of a bundle and its checks.
#[derive(Serialize)]
struct BundleMessage {
    n: String,
    #[serde(flatten)]
    report: Report,
}

/// The outcome of checking a whole bundle.
#[derive(Serialize)]
struct BundleReport {
    /// True when every message in the bundle verified.
    verified: bool,
    /// Where the trust anchors came from, when they came from the bundle.
    trust_anchor: Option<String>,
    messages: Vec<BundleMessage>,
}

/// Checks every message of a bundle: its receipt, evidence record and
/// token, and its copy in messages/ when the bundle has one.
fn verify_whole_bundle(
    opened: &OpenedBundle,
    trust: &Trust,
    trust_anchor: Option<String>,
) -> BundleReport {
    let messages: Vec<BundleMessage> = opened
        .entries
        .iter()
        .map(|entry| {
            let report = match &entry.receipt {
                Some(receipt) => mailnotary::archive::verify::verify_with(
                    entry.message.as_deref(),
                    &Evidence {
                        receipt: receipt.clone(),
                        record: entry.record.clone(),
                    },
                    trust,
                ),
                None => Report::failed(
                    entry.receipt_id.clone(),
                    "receipt",
                    "the message was pending when the bundle was made: the bundle holds no \
                     receipt for it"
                        .into(),
                ),
            };
            BundleMessage {
                n: entry.n.clone(),
                report,
            }
        })
        .collect();
    BundleReport {
        verified: !messages.is_empty() && messages.iter().all(|m| m.report.verified),
        trust_anchor,
        messages,
    }
}

fn print_bundle(
    report: &BundleReport,
    file: &Path,
    as_json: bool,
    mut out: &mut dyn Write,
) -> Result<i32> {
    if as_json {
        serde_json::to_writer_pretty(&mut out, report)?;
        writeln!(out)?;
    } else {
        if let Some(note) = &report.trust_anchor {
            writeln!(out, "trust anchor: {note}")?;
        }
        for m in &report.messages {
            let id = m.report.receipt_id.as_deref().unwrap_or("?");
            if m.report.verified {
                writeln!(
                    out,
                    "ok    {}  receipt {id}  {}stamped {}",
                    m.n,
                    m.report
                        .matched
                        .map(|k| format!("message matches ({}), ", k.name()))
                        .unwrap_or_default(),
                    m.report.stamped_at.as_deref().unwrap_or("?")
                )?;
            } else {
                for c in m.report.checks.iter().filter(|c| !c.ok) {
                    writeln!(out, "FAIL  {}  receipt {id}  {}: {}", m.n, c.name, c.detail)?;
                }
            }
        }
        let failed = report
            .messages
            .iter()
            .filter(|m| !m.report.verified)
            .count();
        if report.verified {
            writeln!(
                out,
                "verified: all {} messages of {}",
                report.messages.len(),
                file.display()
            )?;
        } else {
            writeln!(
                out,
                "not verified: {failed} of the {} messages of {} failed",
                report.messages.len(),
                file.display()
            )?;
        }
    }
    Ok(if report.verified { 0 } else { 1 })
}

impl VerifyArgs {
    /// Makes every path absolute against `cwd`, for a daemon that runs the
    /// command on a client's behalf.
    pub(crate) fn absolutize(&mut self, cwd: &Path) {
        let fix = |p: &mut PathBuf| *p = cwd.join(&*p);
        fix(&mut self.file);
        self.receipt.iter_mut().for_each(fix);
        self.evidence.iter_mut().for_each(fix);
        self.bundle.iter_mut().for_each(fix);
        self.trust.iter_mut().for_each(fix);
        self.untrusted.iter_mut().for_each(fix);
    }
}
