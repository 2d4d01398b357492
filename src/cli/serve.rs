// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `mailnotary serve`: the gateway as a daemon.
//!
//! One process holds the store and runs, side by side: the SMTP listener
//! (tokio tasks, one per session), the stamper (a thread that stamps what
//! is pending every batch window), the HTTP listener (`/healthz` for now)
//! and the control socket through which the other commands reach the
//! store. SIGTERM or Ctrl-C stops it in order: no new sessions; sessions in
//! progress get the grace period to finish; the stamper ends between
//! batches; the store is closed after its last commit; exit code 0.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use mailnotary::archive::Archive;
use mailnotary::archive::stamper::Pacing;
use mailnotary::config::Config;
use mailnotary::smtp::{self, Settings, Shared};
use mailnotary::store::StoreOptions;

use super::{Cli, Command, Notary, Output, control, run_on_archive};

/// What the daemon shows of itself: to `status` and `/healthz`.
pub(crate) struct Daemon {
    smtp: Arc<Shared>,
    imap: Arc<mailnotary::imap::Board>,
    data: std::path::PathBuf,
}

impl Daemon {
    /// The daemon's state as JSON (blocking: it counts pending messages).
    fn status(&self, archive: &Archive) -> Result<serde_json::Value> {
        let c = &self.smtp.counters;
        Ok(serde_json::json!({
            "running": true,
            "data": self.data.display().to_string(),
            "pending": archive.pending_count()?,
            "notifications_queued": archive.notifications_queued()?,
            "smtp": {
                "sessions": c.sessions.load(Ordering::Relaxed),
                "accepted": c.accepted.load(Ordering::Relaxed),
                "rejected": c.rejected.load(Ordering::Relaxed),
            },
            "imap": self.imap.snapshot(),
        }))
    }
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// SMTP address to listen on [default: [smtp] listen, 127.0.0.1:2525].
    #[arg(long)]
    smtp: Option<String>,
    /// HTTP address to listen on [default: [http] listen, 127.0.0.1:8025].
    #[arg(long)]
    http: Option<String>,
}

pub(crate) fn run(
    data: &Path,
    options: &StoreOptions,
    config: &Config,
    args: &ServeArgs,
) -> Result<i32> {
    let hostname = config.smtp.hostname.clone().unwrap_or_else(system_hostname);
    let settings = Settings::from_config(&config.smtp, &hostname).map_err(anyhow::Error::msg)?;
    let accounts = config
        .imap
        .iter()
        .map(mailnotary::imap::Account::from_config)
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let board = Arc::new(mailnotary::imap::Board::default());
    let archive = Arc::new(
        Archive::open(data, options)
            .with_context(|| format!("cannot open the archive in {}", data.display()))?,
    );
    // A policy error refuses the start: guessing could store what the
    // operator meant to keep out, or the other way round.
    let policy = super::policy::prepare(&archive, data, config)?;
    let notary = Notary::open(data, config, &policy)?;
    archive.set_receipt_signer(notary.signer.clone());
    let notifier = super::policy::notifier(data, config)?;
    let tls = if config.smtp.starttls {
        let (cert, key) = match (&config.smtp.tls_cert, &config.smtp.tls_key) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            (None, None) => mailnotary::tsa::pki::smtp_tls_identity(data, &settings.hostname)
                .context("cannot prepare the STARTTLS certificate")?,
            _ => anyhow::bail!("[smtp] tls_cert and tls_key go together: give both or neither"),
        };
        Some(smtp::tls_acceptor(&cert, &key).map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    let smtp_addr = args
        .smtp
        .clone()
        .unwrap_or_else(|| config.smtp.listen.clone());
    let http_addr = args
        .http
        .clone()
        .unwrap_or_else(|| config.http.listen.clone());

    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let stop_stamper = Arc::new(AtomicBool::new(false));
    let stamper = {
        let archive = Arc::clone(&archive);
        let stop = Arc::clone(&stop_stamper);
        let pacing = Pacing {
            window: Duration::from_millis(config.stamping.window_ms),
            max_batch: notary.max_batch,
            ..Pacing::default()
        };
        std::thread::Builder::new()
            .name("stamper".into())
            .spawn(move || stamp_forever(&archive, &notary, pacing, &stop))
            .context("cannot start the stamper")?
    };
    let housekeeper = {
        let archive = Arc::clone(&archive);
        let stop = Arc::clone(&stop_stamper);
        let every = Duration::from_secs(config.archive.purge_interval_secs.max(1));
        std::thread::Builder::new()
            .name("housekeeping".into())
            .spawn(move || super::policy::housekeeping(&archive, notifier.as_ref(), every, &stop))
            .context("cannot start the housekeeping thread")?
    };

    // The API's administrator token, made on first start when the
    // configuration names no token.
    let admin = if config.http.tokens.is_empty() {
        let (entry, made) = mailnotary::api::admin_token(&archive, data)
            .map_err(|e| anyhow::anyhow!("cannot prepare the API token: {e}"))?;
        (Some(entry), made)
    } else {
        (None, None)
    };
    let outcome = runtime.block_on(async {
        let smtp_listener = tokio::net::TcpListener::bind(&smtp_addr)
            .await
            .with_context(|| format!("cannot listen for SMTP on {smtp_addr}"))?;
        let http_listener = tokio::net::TcpListener::bind(&http_addr)
            .await
            .with_context(|| format!("cannot listen for HTTP on {http_addr}"))?;
        #[cfg(unix)]
        let control_listener = control::bind(data)?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            settings,
            archive: Arc::clone(&archive),
            tls,
            counters: smtp::Counters::default(),
            stopping: stop_rx.clone(),
        });
        let smtp_local = smtp_listener.local_addr()?;
        let http_local = http_listener.local_addr()?;
        let daemon = Arc::new(Daemon {
            smtp: Arc::clone(&shared),
            imap: Arc::clone(&board),
            data: data.to_path_buf(),
        });
        let smtp_task = tokio::spawn(smtp::serve(Arc::clone(&shared), smtp_listener));
        let api = api_state(data, config, &archive, &daemon, admin.0.clone())?;
        let http_task = tokio::spawn(http_serve(http_listener, api, stop_rx.clone()));
        let imap_tasks: Vec<_> = accounts
            .iter()
            .map(|account| {
                tokio::spawn(mailnotary::imap::watch(
                    account.clone(),
                    Arc::clone(&archive),
                    Arc::clone(&board),
                    stop_rx.clone(),
                ))
            })
            .collect();
        #[cfg(unix)]
        let control_task = {
            let data = data.to_path_buf();
            let config = config.clone();
            let archive = Arc::clone(&archive);
            let daemon = Arc::clone(&daemon);
            let run: Arc<control::Runner> = Arc::new(move |argv, cwd| {
                run_for_client(argv, &cwd, &data, &config, &archive, &daemon)
            });
            tokio::spawn(control::serve(control_listener, stop_rx.clone(), run))
        };
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "mailnotary serving {}", data.display())?;
            writeln!(
                out,
                "policy: {} ({} rule{})",
                policy.origin,
                policy.rules.len(),
                if policy.rules.len() == 1 { "" } else { "s" }
            )?;
            writeln!(
                out,
                "smtp: listening on {smtp_local} for {}{}",
                config.smtp.accept.join(", "),
                if shared.tls.is_some() {
                    " (STARTTLS offered)"
                } else {
                    ""
                }
            )?;
            writeln!(
                out,
                "http: listening on http://{http_local}/ (API under /api/v1, /healthz, /metrics)"
            )?;
            if let Some(path) = &admin.1 {
                writeln!(
                    out,
                    "http: an administrator API token was written to {} (readable by this user \
                     only); copy it somewhere safe and delete the file, or list your own tokens \
                     in [http] (mailnotary token create)",
                    path.display()
                )?;
            }
            for account in &accounts {
                writeln!(
                    out,
                    "imap: watching {} at {} (folders {}), read-only",
                    account.name,
                    account.server(),
                    account.folders.join(", ")
                )?;
            }
            writeln!(
                out,
                "control: {} (lookup, verify, export, check, ingest, purge, hold and audit run \
                 through it)",
                control::socket_path(data).display()
            )?;
            out.flush()?;
        }
        tracing::info!(%smtp_local, %http_local, "serve started");
        super::shutdown_signal().await;
        tracing::info!("stopping");
        let _ = stop_tx.send(true);
        let _ = smtp_task.await;
        for task in imap_tasks {
            let _ = task.await;
        }
        let _ = http_task.await;
        #[cfg(unix)]
        let _ = control_task.await;
        let s = &shared.counters;
        tracing::info!(
            sessions = s.sessions.load(Ordering::Relaxed),
            accepted = s.accepted.load(Ordering::Relaxed),
            rejected = s.rejected.load(Ordering::Relaxed),
            "SMTP stopped"
        );
        anyhow::Ok(())
    });
    stop_stamper.store(true, Ordering::Relaxed);
    let _ = stamper.join();
    let _ = housekeeper.join();
    // Dropping the runtime ends tasks still parked; then the store closes.
    drop(runtime);
    let _ = std::fs::remove_file(control::socket_path(data));
    match Arc::try_unwrap(archive) {
        Ok(archive) => archive.close(),
        Err(_) => tracing::warn!("the store was still in use at exit; its last commit stands"),
    }
    outcome?;
    println!("mailnotary stopped");
    Ok(0)
}

/// Runs the stamper until `stop`; a store error is logged and the loop
/// starts again after a pause, since the daemon keeps serving meanwhile.
fn stamp_forever(archive: &Archive, notary: &Notary, pacing: Pacing, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match archive.run_stamper(&notary.signer, notary.stamper.as_ref(), pacing, stop) {
            Ok(stats) => {
                tracing::info!(
                    batches = stats.batches,
                    messages = stats.messages,
                    "stamper stopped"
                );
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "the stamper hit a store error; retrying in 5 s");
                for _ in 0..50 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

/// Runs a client's command line on the daemon's archive.
fn run_for_client(
    argv: Vec<String>,
    cwd: &Path,
    data: &Path,
    config: &Config,
    archive: &Arc<Archive>,
    daemon: &Daemon,
) -> (i32, Vec<u8>, Vec<u8>) {
    use clap::Parser;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let argv = std::iter::once("mailnotary".to_string()).chain(argv);
    let code = match Cli::try_parse_from(argv) {
        Err(e) => {
            err.extend_from_slice(e.render().to_string().as_bytes());
            2
        }
        Ok(cli) if !cli.command.goes_through_daemon() => {
            err.extend_from_slice(b"error: the daemon runs only commands that use the store\n");
            2
        }
        Ok(cli) if matches!(cli.command, Command::Status { .. }) => {
            let Command::Status { json } = cli.command else {
                unreachable!("matched above")
            };
            match daemon.status(archive).and_then(|status| {
                super::print_status(&mut out, &status, json)?;
                Ok(())
            }) {
                Ok(()) => 0,
                Err(e) => {
                    use std::io::Write;
                    let _ = writeln!(err, "error: {e:#}");
                    2
                }
            }
        }
        Ok(mut cli) => {
            tracing::info!(command = cli.command.name(), "control request");
            cli.command.absolutize(cwd);
            let open = || Ok(Arc::clone(archive));
            let mut output = Output {
                out: &mut out,
                err: &mut err,
                interactive: false,
            };
            match run_on_archive(cli.command, data, config, &open, true, &mut output) {
                Ok(code) => code,
                Err(e) => {
                    use std::io::Write;
                    let _ = writeln!(err, "error: {e:#}");
                    2
                }
            }
        }
    };
    (code, out, err)
}

/// The machine's host name, for the SMTP greeting when none is configured.
fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The API's state: the archive, the tokens (the configured ones, or the
/// administrator token of the embedded default), the trust anchors of
/// verify, what export needs, and the daemon's status and figures.
fn api_state(
    data: &Path,
    config: &Config,
    archive: &Arc<Archive>,
    daemon: &Arc<Daemon>,
    admin: Option<mailnotary::api::auth::TokenEntry>,
) -> Result<Arc<mailnotary::api::ApiState>> {
    let mut tokens = config.http.tokens.clone();
    for token in &tokens {
        token
            .check()
            .map_err(|e| anyhow::anyhow!("[http] token: {e}"))?;
    }
    tokens.extend(admin);
    let trust = super::verify::default_trust(data, config, &[])?
        .unwrap_or_else(|| mailnotary::signing::Trust::new(Vec::new()));
    let export = mailnotary::api::ExportSetup {
        certs: mailnotary::tsa::pki::CertFiles::of(data, config.keys.as_ref()),
        tsa_anchors: super::tsa_certificates(config),
        gateway: config.gateway.name.clone(),
    };
    let status = {
        let daemon = Arc::clone(daemon);
        let archive = Arc::clone(archive);
        Box::new(move || match daemon.status(&archive) {
            Ok(mut body) => {
                body["status"] = "ok".into();
                body
            }
            Err(e) => serde_json::json!({ "status": "store error", "error": e.to_string() }),
        })
    };
    let metrics = {
        let daemon = Arc::clone(daemon);
        let archive = Arc::clone(archive);
        Box::new(move || {
            let c = &daemon.smtp.counters;
            let figures = mailnotary::api::Figures {
                smtp_sessions: c.sessions.load(Ordering::Relaxed),
                smtp_accepted: c.accepted.load(Ordering::Relaxed),
                smtp_rejected: c.rejected.load(Ordering::Relaxed),
                smtp_refusals: c.refusals(),
                imap_states: daemon
                    .imap
                    .snapshot()
                    .into_iter()
                    .map(|(name, s)| (name, s.state))
                    .collect(),
            };
            mailnotary::api::metrics_text(&archive, &figures)
                .unwrap_or_else(|e| format!("# the store could not be read: {e}\n"))
        })
    };
    Ok(Arc::new(mailnotary::api::ApiState {
        archive: Arc::clone(archive),
        tokens,
        trust: Arc::new(trust),
        export,
        status,
        metrics,
        max_upload: usize::try_from(config.http.max_upload_mib.saturating_mul(1024 * 1024))
            .unwrap_or(usize::MAX),
    }))
}

/// Serves the API until the daemon stops.
async fn http_serve(
    listener: tokio::net::TcpListener,
    state: Arc<mailnotary::api::ApiState>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let shutdown = async move {
        let _ = stopping.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, mailnotary::api::router(state))
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "the HTTP listener failed");
    }
}
