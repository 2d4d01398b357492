// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The policy side of the command line: loading the policy and the archive
//! key for the commands that store or read messages, `policy test`,
//! `purge`, `hold` and `audit`, and the daemon's housekeeping (purges and
//! notifications).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use mailnotary::analysis::analyze;
use mailnotary::archive::Archive;
use mailnotary::config::Config;
use mailnotary::envelope::now_millis;
use mailnotary::notify::Notifier;
use mailnotary::policy::{Facts, Known, Policy};

use super::Output;

/// The policy the configuration names (or `--policy-dir`), checked
/// against the configured TSAs and smarthost.
pub(crate) fn load_policy(config: &Config) -> Result<Policy> {
    let known = Known {
        tsas: config.tsa.iter().map(|t| t.name.clone()).collect(),
        notify: config.notify.is_some(),
    };
    match &config.policy.dir {
        Some(dir) => Policy::load(dir, &known)
            .map_err(|e| anyhow::anyhow!("policy error: {e}; nothing was started")),
        None => {
            let policy = Policy::builtin();
            if policy.rules.is_empty() {
                bail!("{}", policy.origin);
            }
            Ok(policy)
        }
    }
}

/// Where the archive key lives.
pub(crate) fn key_path(data: &Path, config: &Config) -> PathBuf {
    config
        .archive
        .key_file
        .clone()
        .unwrap_or_else(|| data.join("keys").join("archive.key"))
}

/// Loads the archive key into `archive` (creating it for a new store).
pub(crate) fn use_key(archive: &Archive, data: &Path, config: &Config) -> Result<()> {
    archive
        .use_archive_key(&key_path(data, config))
        .context("cannot load the archive key")
}

/// Puts the policy and the archive key in force on `archive`: what every
/// command that stores messages needs before the first one.
pub(crate) fn prepare(archive: &Archive, data: &Path, config: &Config) -> Result<Arc<Policy>> {
    let policy = Arc::new(load_policy(config)?);
    use_key(archive, data, config)?;
    if policy
        .rules
        .iter()
        .any(|r| r.actions.dkim == mailnotary::policy::Dkim::Verify)
    {
        let verifier = mailnotary::dkim::Verifier::new(&config.dns)
            .map_err(|e| anyhow::anyhow!("cannot prepare DKIM checks: {e}"))?;
        archive.set_dkim_verifier(Arc::new(verifier));
    }
    archive.set_policy(Arc::clone(&policy));
    Ok(policy)
}

#[derive(Subcommand)]
pub(crate) enum PolicyCommand {
    /// Show which rule applies to a message, and why the rules before it
    /// do not.
    Test(TestArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum SourceArg {
    Smtp,
    Imap,
    Import,
}

#[derive(Args)]
pub(crate) struct TestArgs {
    /// The message (.eml).
    file: PathBuf,
    /// How it arrives [default: smtp with an --envelope-*, imap with an
    /// --imap-*, else import].
    #[arg(long, value_enum)]
    source: Option<SourceArg>,
    /// The SMTP MAIL FROM address.
    #[arg(long)]
    envelope_from: Option<String>,
    /// An SMTP RCPT TO address (repeat for several).
    #[arg(long)]
    envelope_to: Vec<String>,
    /// The watched IMAP account's name.
    #[arg(long)]
    imap_account: Option<String>,
    /// The IMAP folder.
    #[arg(long)]
    imap_folder: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `mailnotary policy test`.
pub(crate) fn test(config: &Config, args: &TestArgs, out: &mut dyn Write) -> Result<i32> {
    let policy = load_policy(config)?;
    let raw = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let meta = analyze(&raw).metadata;
    let imap = args.imap_account.is_some() || args.imap_folder.is_some();
    let smtp = args.envelope_from.is_some() || !args.envelope_to.is_empty();
    let source = match args.source {
        Some(SourceArg::Smtp) => "smtp",
        Some(SourceArg::Imap) => "imap",
        Some(SourceArg::Import) => "import",
        None if imap => "imap",
        None if smtp => "smtp",
        None => "import",
    };
    let facts = Facts {
        envelope_from: (source == "smtp").then(|| args.envelope_from.clone().unwrap_or_default()),
        envelope_to: if source == "smtp" {
            args.envelope_to.clone()
        } else {
            Vec::new()
        },
        imap_account: args.imap_account.clone().filter(|_| source == "imap"),
        imap_folder: args.imap_folder.clone().filter(|_| source == "imap"),
        ..Facts::from_headers(source, &meta)
    };
    let steps = policy.explain(&facts);
    let Some((rule, _)) = steps.last() else {
        bail!("the policy has no rules");
    };
    let a = &rule.actions;
    if args.json {
        let report = json!({
            "policy": policy.origin,
            "source": source,
            "rule": rule.name,
            "location": rule.location(),
            "mode": a.mode.name(),
            "withhold": a.withhold.iter().map(|f| f.name()).collect::<Vec<_>>(),
            "retention": a.retention.as_ref().map(|(t, _)| t),
            "legal_hold": a.legal_hold,
            "tsa": a.tsa,
            "dkim": format!("{:?}", a.dkim).to_lowercase(),
            "notify": a.notify,
            "statement": a.statement,
            "tried": steps.iter().map(|(r, outcomes)| json!({
                "rule": r.name,
                "location": r.location(),
                "conditions": outcomes.iter().map(|o| json!({
                    "key": o.key, "held": o.held, "detail": o.detail,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
        return Ok(0);
    }
    writeln!(
        out,
        "policy: {} ({} rules)",
        policy.origin,
        policy.rules.len()
    )?;
    writeln!(
        out,
        "message: {} as it arrives by {source}",
        args.file.display()
    )?;
    for (r, outcomes) in &steps[..steps.len() - 1] {
        let failed: Vec<String> = outcomes
            .iter()
            .filter(|o| !o.held)
            .map(|o| format!("{}: {}", o.key, o.detail))
            .collect();
        writeln!(
            out,
            "  rule {:?} ({}) does not match: {}",
            r.name,
            r.location(),
            failed.join("; ")
        )?;
    }
    let (_, outcomes) = &steps[steps.len() - 1];
    let why = if outcomes.is_empty() {
        "it has no match table and takes every message".to_string()
    } else {
        outcomes
            .iter()
            .map(|o| format!("{}: {}", o.key, o.detail))
            .collect::<Vec<_>>()
            .join("; ")
    };
    writeln!(
        out,
        "rule {:?} ({}) applies: {why}",
        rule.name,
        rule.location()
    )?;
    writeln!(out, "  mode: {}", a.mode.name())?;
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "none".into()
        } else {
            v.join(", ")
        }
    };
    writeln!(
        out,
        "  withhold: {}",
        list(a.withhold.iter().map(|f| f.name().to_string()).collect())
    )?;
    writeln!(
        out,
        "  retention: {}",
        a.retention
            .as_ref()
            .map_or("for ever".into(), |(t, _)| t.clone())
    )?;
    writeln!(
        out,
        "  legal hold: {}",
        if a.legal_hold { "yes" } else { "no" }
    )?;
    writeln!(
        out,
        "  tsa: {}",
        if a.tsa.is_empty() {
            "the configured ones".into()
        } else {
            a.tsa.join(", ")
        }
    )?;
    writeln!(out, "  dkim: {}", format!("{:?}", a.dkim).to_lowercase())?;
    writeln!(out, "  notify: {}", list(a.notify.clone()))?;
    if let Some(statement) = &a.statement {
        writeln!(out, "  statement: {statement}")?;
    }
    Ok(0)
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OnOff {
    On,
    Off,
}

#[derive(Args)]
pub(crate) struct HoldArgs {
    /// The thread: any Message-ID in it, a thread number or a receipt id.
    #[arg(long)]
    thread: String,
    /// Put the thread under legal hold, or release it.
    #[arg(value_enum)]
    state: OnOff,
    /// Why (written to the audit log).
    #[arg(long, default_value = "")]
    reason: String,
}

/// `mailnotary hold`.
pub(crate) fn hold(archive: &Archive, args: &HoldArgs, output: &mut Output<'_>) -> Result<i32> {
    let Some(thread) = archive.resolve_thread(&args.thread)? else {
        writeln!(output.err, "no thread matches {:?}", args.thread)?;
        return Ok(1);
    };
    let on = args.state == OnOff::On;
    let changed = archive.set_hold(thread, on, "operator", &args.reason, now_millis())?;
    let state = if on {
        "under legal hold"
    } else {
        "not under legal hold"
    };
    if changed {
        writeln!(output.out, "{thread} is now {state}")?;
    } else {
        writeln!(output.out, "{thread} was already {state}; nothing changed")?;
    }
    Ok(0)
}

/// `mailnotary purge`.
pub(crate) fn purge(archive: &Archive, output: &mut Output<'_>) -> Result<i32> {
    let report = archive.purge(now_millis())?;
    writeln!(
        output.out,
        "purged the bytes of {} message{} whose retention ended; {} expired message{} kept \
         under legal hold; receipts and evidence are kept for all",
        report.purged.len(),
        if report.purged.len() == 1 { "" } else { "s" },
        report.held.len(),
        if report.held.len() == 1 { "" } else { "s" },
    )?;
    Ok(0)
}

/// `mailnotary audit`.
pub(crate) fn audit(archive: &Archive, as_json: bool, output: &mut Output<'_>) -> Result<i32> {
    let entries = archive.audit_log()?;
    if as_json {
        serde_json::to_writer_pretty(&mut *output.out, &entries)?;
        writeln!(output.out)?;
        return Ok(0);
    }
    for e in &entries {
        writeln!(
            output.out,
            "{} {} {} {}{}",
            super::millis_rfc3339(e.at),
            e.actor,
            e.action,
            e.subject,
            if e.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", e.detail)
            }
        )?;
    }
    if entries.is_empty() {
        writeln!(output.err, "the audit log is empty")?;
    }
    Ok(0)
}

/// The notifier of `config`, when it has a smarthost.
pub(crate) fn notifier(data: &Path, config: &Config) -> Result<Option<Notifier>> {
    let Some(notify) = &config.notify else {
        return Ok(None);
    };
    let ca = mailnotary::tsa::pki::LocalPki::open(data, &config.gateway.name, config.keys.as_ref())
        .ok()
        .and_then(|pki| {
            use der::Encode;
            pki.ca.to_der().ok()
        })
        .map(|der| {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(der))
        });
    Notifier::new(notify, ca)
        .map(Some)
        .map_err(anyhow::Error::msg)
}

/// The daemon's housekeeping until `stop`: notifications every few
/// seconds, purges every `purge_interval_secs`.
pub(crate) fn housekeeping(
    archive: &Archive,
    notifier: Option<&Notifier>,
    purge_every: Duration,
    stop: &AtomicBool,
) {
    let mut next_purge = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next_purge {
            match archive.purge(now_millis()) {
                Ok(r) if !r.purged.is_empty() => {
                    tracing::info!(
                        purged = r.purged.len(),
                        held = r.held.len(),
                        "retention purge"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "retention purge failed"),
            }
            next_purge = Instant::now() + purge_every;
        }
        if let Some(notifier) = notifier
            && let Err(e) = notifier.round(archive)
        {
            tracing::error!(error = %e, "sending notifications failed");
        }
        for _ in 0..20 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
