// SPDX-License-Identifier: Apache-2.0 OR MIT
//! A stored message as the outside sees it: the JSON object of `lookup
//! --json` and of the HTTP API, with its status, evidence, sightings,
//! policy and DKIM results. The fields are listed in `docs/formats.md`.

use serde_json::json;

use super::{Archive, ArchiveError, MessageRecord, Mode};

/// Milliseconds since the epoch as RFC 3339 in UTC with milliseconds.
pub fn millis_rfc3339(millis: u64) -> String {
    chrono::DateTime::from_timestamp_millis(millis as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The JSON object of one message.
pub fn message_json(
    archive: &Archive,
    r: &MessageRecord,
) -> Result<serde_json::Value, ArchiveError> {
    let id = r.id()?;
    let pending = archive.is_pending(&id)?;
    let evidence = archive.evidence(&id)?;
    let thread = archive.thread_of(r)?;
    let sightings = archive.sightings(&id)?;
    let purged = archive.purged(&id)?;
    // Every arrival of these bytes, the first one included.
    let seen: Vec<_> = std::iter::once(&r.envelope)
        .chain(sightings.iter().map(|s| &s.envelope))
        .map(|e| json!({ "received_at": millis_rfc3339(e.received_at), "source": e.source }))
        .collect();
    let m = &r.metadata;
    Ok(json!({
        "receipt_id": r.receipt_id,
        "message_id": m.message_id,
        "thread_id": thread.to_string(),
        "date": m.date,
        "from": m.from,
        "to": m.to,
        "cc": m.cc,
        "subject": m.subject,
        "in_reply_to": m.in_reply_to,
        "references": m.references,
        "status": if pending { "pending" } else { "stamped" },
        "stamped_at": evidence.as_ref().map(|e| millis_rfc3339(e.batch.stamped_at)),
        "batch": evidence.as_ref().map(|e| e.batch.number),
        "tsa": evidence.as_ref().map(|e| e.batch.tsa.clone()),
        "received_at": millis_rfc3339(r.envelope.received_at),
        "source": r.envelope.source,
        "raw_sha256": r.digests.raw,
        "canonical_sha256": r.digests.canonical,
        "canonical_algorithm": r.digests.canonical_algorithm,
        "parts": r.digests.parts,
        "size": r.size,
        "mode": r.mode.name(),
        "anomalies": r.anomalies,
        "sightings": sightings.len(),
        "seen": seen,
        "policy": {
            "rule": if r.policy.rule.is_empty() { "default" } else { r.policy.rule.as_str() },
            "retention": r.policy.retention,
            "expires_at": r.policy.expires_at.map(millis_rfc3339),
            "withheld": r.policy.withheld,
            "tsa": r.policy.tsa,
        },
        "stored": r.mode == Mode::Archive && purged.is_none(),
        "purged_at": purged.map(|p| millis_rfc3339(p.at)),
        "legal_hold": archive.hold(thread)?.is_some(),
        "dkim": r.dkim.as_ref().map_or_else(Vec::new, |d| d.signatures.iter().map(|v| serde_json::json!({
            "domain": v.domain,
            "selector": v.selector,
            "algorithm": v.algorithm,
            "result": v.result,
            "reason": v.reason,
            "key_sha256": d.key(&v.key_name()).and_then(|k| k.sha256.clone()),
        })).collect()),
        "arc": r.dkim.as_ref().and_then(|d| d.arc.as_ref()),
    }))
}
