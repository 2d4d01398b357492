// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Command-line parsing and the commands' output.
//!
//! Exit codes follow one rule across commands: 0 when the command did what
//! was asked, 1 when it ran but the answer is "no" (nothing found, a check
//! failed), 2 when it could not do its work (bad arguments, unreadable
//! input, a store error). Results go to standard output; progress, warnings
//! and errors go to standard error.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use mailnotary::analysis::{Mailbox, analyze};
use mailnotary::archive::evidence::ReceiptSigner;
use mailnotary::archive::evidence::Stamper;
use mailnotary::archive::query::{Query, Selector};
use mailnotary::archive::view::{message_json, millis_rfc3339};
use mailnotary::archive::{Archive, Ingested};
use mailnotary::config::Config;
use mailnotary::config::StampingMode;
use mailnotary::envelope::{Envelope, Source, now_millis};
use mailnotary::policy::Policy;
use mailnotary::receipt::content::Issuer;
use mailnotary::source::{self, Found};
use mailnotary::store::{BackendKind, StoreOptions};
use mailnotary::tsa::Tsa;
use mailnotary::tsa::client::{HttpTsa, StamperSet};
use mailnotary::tsa::pki::LocalPki;

mod control;
mod policy;
mod serve;
mod verify;

/// Opens the archive when a command needs it: the command line's own open
/// store, or the running daemon's.
pub(crate) type Opener<'a> = dyn Fn() -> Result<Arc<Archive>> + 'a;

/// Where a command's results and messages go: the terminal, or the buffers
/// of a control-channel request inside `serve`.
pub(crate) struct Output<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    /// Whether progress bars may be drawn.
    pub interactive: bool,
}

#[derive(Parser)]
#[command(
    name = "mailnotary",
    version,
    about = "Archives business e-mail and issues evidence that anyone can check"
)]
struct Cli {
    /// Data directory (store, keys).
    #[arg(
        long,
        global = true,
        env = "MAILNOTARY_DATA",
        default_value = "mailnotary-data"
    )]
    data: PathBuf,
    /// Configuration file [default: ./mailnotary.toml when it exists].
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Store backend for a new data directory: redb (default) or sled.
    /// An existing store opens with its own engine unless this is given.
    #[arg(long, global = true)]
    store: Option<BackendKind>,
    /// Policy folder to use instead of the configuration's [policy] dir.
    #[arg(long, global = true)]
    policy_dir: Option<PathBuf>,
    /// Log more (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: the SMTP listener, the stamper, and the local
    /// control channel through which the other commands reach the store.
    Serve(serve::ServeArgs),
    /// Store .eml files, Maildir folders and mbox files.
    Ingest {
        /// Files and folders to read.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Stamp the messages still pending (after a TSA outage, say).
    Stamp {
        /// Keep trying, with waits that double up to five minutes, until
        /// every pending message is stamped; Ctrl-C stops.
        #[arg(long)]
        wait: bool,
    },
    /// Find messages and threads.
    Lookup(LookupArgs),
    /// Re-verify everything the store holds.
    Check,
    /// Check a file (.eml or attachment) against its receipt and evidence:
    /// in the archive, or given with --receipt or --bundle.
    Verify(verify::VerifyArgs),
    /// Write an evidence bundle (zip) for a thread or a message.
    Export(ExportArgs),
    /// The built-in RFC 3161 timestamp authority.
    Tsa {
        #[command(subcommand)]
        command: TsaCommand,
    },
    /// Show what the running gateway is doing: pending messages, SMTP
    /// counters, and each IMAP account's state and folder checkpoints.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Work with policies: `policy test FILE` shows which rule applies.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Delete the bytes of messages whose retention has ended, except in
    /// threads under legal hold; receipts and evidence are kept.
    Purge,
    /// Put a thread under legal hold, or release it.
    Hold(policy::HoldArgs),
    /// API tokens: `token create --name NAME --scope read` prints a new
    /// token once, and the [[http.token]] table that accepts it.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Print the audit log: purges, holds, notifications.
    Audit {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the digests of a message file without storing it.
    Digest {
        /// The message file (.eml).
        file: PathBuf,
        /// Also print the canonical form that was hashed.
        #[arg(long)]
        show_canonical: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct ExportArgs {
    /// The whole thread of this Message-ID, thread number or receipt id.
    #[arg(
        long,
        conflicts_with = "message_id",
        required_unless_present = "message_id"
    )]
    thread: Option<String>,
    /// The messages with this Message-ID.
    #[arg(long)]
    message_id: Option<String>,
    /// The zip file to write.
    #[arg(long)]
    pub(crate) out: PathBuf,
}

#[derive(Subcommand)]
enum TsaCommand {
    /// Serve timestamps over HTTP (application/timestamp-query), for other
    /// systems; keys come from the data directory's local PKI.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:3180")]
        listen: std::net::SocketAddr,
    },
}

#[derive(Args)]
#[group(id = "selector", required = true, multiple = false)]
struct SelectorArgs {
    /// The whole thread of this Message-ID (any message in it, or one it
    /// names), thread number or receipt id.
    #[arg(long, group = "selector")]
    thread: Option<String>,
    /// Messages with this Message-ID.
    #[arg(long, group = "selector")]
    message_id: Option<String>,
    /// Messages from, to or copied to this address.
    #[arg(long, group = "selector")]
    address: Option<String>,
    /// Messages whose subject contains this text.
    #[arg(long, group = "selector")]
    subject: Option<String>,
    /// Every message.
    #[arg(long, group = "selector")]
    all: bool,
}

#[derive(Args)]
struct LookupArgs {
    #[command(flatten)]
    selector: SelectorArgs,
    /// Only messages dated at or after this time (2026-03-01 or RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Only messages dated at or before this time (a bare date includes
    /// the whole day).
    #[arg(long)]
    until: Option<String>,
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
}

/// Runs the command line and returns the exit code.
pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    init_logging(cli.verbose);
    mailnotary::analysis::install_panic_filter();
    match execute(cli) {
        Ok(code) => code,
        Err(e) => {
            // A reader such as `head` closing the pipe is not an error.
            let broken_pipe = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return 0;
            }
            eprintln!("error: {e:#}");
            2
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

fn execute(cli: Cli) -> Result<i32> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path, true)?,
        None => Config::load(Path::new("mailnotary.toml"), false)?,
    };
    if let Some(dir) = &cli.policy_dir {
        config.policy.dir = Some(dir.clone());
    }
    let options = StoreOptions {
        // An explicit choice is checked against the store found; without
        // one, an existing store opens with its own engine.
        backend: cli
            .store
            .or(config.store.backend)
            .or_else(|| mailnotary::store::detect_backend(&cli.data))
            .unwrap_or_default(),
        cache_bytes: config.store.cache_mib.saturating_mul(1024 * 1024),
    };
    // While `serve` runs, it holds the store; commands that read or add to
    // it are carried out by the daemon instead.
    if cli.command.goes_through_daemon()
        && let Some(code) = control::forward(&cli.data)?
    {
        return Ok(code);
    }
    let open = || -> Result<Arc<Archive>> {
        Archive::open(&cli.data, &options)
            .map(Arc::new)
            .with_context(|| format!("cannot open the archive in {}", cli.data.display()))
    };
    match cli.command {
        Command::Serve(args) => serve::run(&cli.data, &options, &config, &args),
        Command::Stamp { wait } => {
            if control::daemon_running(&cli.data) {
                bail!(
                    "`mailnotary serve` is running on {} and stamps pending messages itself \
                     every batch window; `lookup` shows their status",
                    cli.data.display()
                );
            }
            let archive = open()?;
            let policy = policy::load_policy(&config)?;
            let notary = Notary::open(&cli.data, &config, &policy)?;
            if wait {
                stamp_until_done(&archive, &notary, config.stamping.window_ms)
            } else {
                stamp(&archive, &notary)
            }
        }
        Command::Tsa {
            command: TsaCommand::Serve { listen },
        } => tsa_serve(&cli.data, &config, listen),
        Command::Digest {
            file,
            show_canonical,
            json,
        } => digest(&file, show_canonical, json),
        Command::Token {
            command: TokenCommand::Create { name, scope },
        } => token_create(&name, &scope),
        Command::Policy {
            command: policy::PolicyCommand::Test(args),
        } => policy::test(&config, &args, &mut std::io::stdout().lock()),
        command => {
            let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
            let (mut out, mut err) = (stdout.lock(), stderr.lock());
            let mut output = Output {
                out: &mut out,
                err: &mut err,
                interactive: std::io::stderr().is_terminal(),
            };
            run_on_archive(command, &cli.data, &config, &open, false, &mut output)
        }
    }
}

impl Command {
    /// The command's name, for logs.
    fn name(&self) -> &'static str {
        match self {
            Command::Serve(_) => "serve",
            Command::Ingest { .. } => "ingest",
            Command::Stamp { .. } => "stamp",
            Command::Lookup(_) => "lookup",
            Command::Check => "check",
            Command::Verify(_) => "verify",
            Command::Export(_) => "export",
            Command::Tsa { .. } => "tsa",
            Command::Digest { .. } => "digest",
            Command::Status { .. } => "status",
            Command::Policy { .. } => "policy",
            Command::Purge => "purge",
            Command::Hold(_) => "hold",
            Command::Audit { .. } => "audit",
            Command::Token { .. } => "token",
        }
    }

    /// Whether the command uses the store, and so must go through a
    /// running daemon.
    fn goes_through_daemon(&self) -> bool {
        matches!(
            self,
            Command::Ingest { .. }
                | Command::Status { .. }
                | Command::Lookup(_)
                | Command::Check
                | Command::Verify(_)
                | Command::Export(_)
                | Command::Purge
                | Command::Hold(_)
                | Command::Audit { .. }
        )
    }

    /// Makes the command's paths absolute against `cwd`.
    fn absolutize(&mut self, cwd: &Path) {
        match self {
            Command::Ingest { paths } => paths.iter_mut().for_each(|p| *p = cwd.join(&*p)),
            Command::Verify(args) => args.absolutize(cwd),
            Command::Export(args) => args.out = cwd.join(&args.out),
            _ => {}
        }
    }
}

/// Runs a command that works on the archive, from the command line or,
/// inside `serve` (`in_daemon`), for a control-channel client. Outside the
/// daemon an ingest stamps what it stored; inside, the daemon's stamper
/// does.
fn run_on_archive(
    command: Command,
    data: &Path,
    config: &Config,
    open: &Opener<'_>,
    in_daemon: bool,
    output: &mut Output<'_>,
) -> Result<i32> {
    match command {
        Command::Ingest { paths } => {
            let archive = open()?;
            match in_daemon {
                true => ingest(&archive, None, &paths, output),
                false => {
                    let policy = policy::prepare(&archive, data, config)?;
                    let notary = Notary::open(data, config, &policy)?;
                    archive.set_receipt_signer(notary.signer.clone());
                    let code = ingest(&archive, Some(&notary), &paths, output)?;
                    // One attempt at the receipt mails of what was stamped;
                    // what fails stays queued for the daemon.
                    if let Some(notifier) = policy::notifier(data, config)? {
                        let round = notifier.round(&archive)?;
                        if round.sent + round.failed > 0 {
                            writeln!(
                                output.err,
                                "notifications: {} sent, {} queued after a failure",
                                round.sent, round.failed
                            )?;
                        }
                    }
                    Ok(code)
                }
            }
        }
        Command::Status { json } => {
            // Reached only without a daemon: say so, with what the store
            // knows by itself.
            let archive = open()?;
            let status = json!({
                "running": false,
                "data": data.display().to_string(),
                "pending": archive.pending_count()?,
                "imap_checkpoints": archive.imap_checkpoints()?,
            });
            print_status(output.out, &status, json)?;
            Ok(0)
        }
        Command::Lookup(args) => lookup(&*open()?, &args, output),
        Command::Check => check(
            &*keyed(open()?, data, config, in_daemon)?,
            data,
            config,
            output,
        ),
        Command::Export(args) => export(
            &*keyed(open()?, data, config, in_daemon)?,
            data,
            config,
            &args,
            output,
        ),
        Command::Purge => policy::purge(&*open()?, output),
        Command::Hold(args) => policy::hold(&*open()?, &args, output),
        Command::Audit { json } => policy::audit(&*open()?, json, output),
        Command::Verify(args) => verify::run(data, open, config, &args, output.out),
        _ => bail!("this command does not run on the archive"),
    }
}

/// `archive` with the archive key loaded, which the commands that read
/// stored messages need (the daemon's archive has it already).
fn keyed(
    archive: Arc<Archive>,
    data: &Path,
    config: &Config,
    in_daemon: bool,
) -> Result<Arc<Archive>> {
    if !in_daemon {
        policy::use_key(&archive, data, config)?;
    }
    Ok(archive)
}

#[derive(Default)]
struct IngestSummary {
    stored: u64,
    sightings: u64,
    with_anomalies: u64,
    failed: Vec<(PathBuf, String)>,
    skipped: Vec<(PathBuf, String)>,
}

/// The gateway's signing identity and the timestamp authorities it uses.
struct Notary {
    signer: ReceiptSigner,
    stamper: Box<dyn Stamper + Send + Sync>,
    max_batch: usize,
}

/// The configured TSAs, and the sets that policy rules chose by name.
struct Routed {
    default: Box<dyn Stamper + Send + Sync>,
    chosen: std::collections::BTreeMap<Vec<String>, Box<dyn Stamper + Send + Sync>>,
}

impl Stamper for Routed {
    fn name(&self) -> String {
        self.default.name()
    }

    fn stamp(&self, digest: &mailnotary::hashtree::Hash) -> Result<Vec<u8>, String> {
        self.default.stamp(digest)
    }

    fn stamp_all(
        &self,
        digest: &mailnotary::hashtree::Hash,
    ) -> Result<Vec<(String, Vec<u8>)>, String> {
        self.default.stamp_all(digest)
    }

    fn for_tsas(&self, tsas: &[String]) -> Option<&dyn Stamper> {
        self.chosen.get(tsas).map(|s| s.as_ref() as &dyn Stamper)
    }
}

impl Notary {
    /// The signer and the stampers of `config`, with a set for each
    /// choice of TSAs that a rule of `policy` makes.
    fn open(data: &Path, config: &Config, policy: &Policy) -> Result<Notary> {
        let pki = LocalPki::open(data, &config.gateway.name, config.keys.as_ref())
            .context("cannot prepare the gateway's keys")?;
        let signer = ReceiptSigner {
            issuer: Issuer {
                name: config.gateway.name.clone(),
                organization: config.gateway.organization.clone(),
            },
            key: pki.receipt.clone(),
        };
        let all = config.stamping.mode == StampingMode::All;
        let member =
            |tsa: &mailnotary::config::TsaConfig| -> Result<Box<dyn Stamper + Send + Sync>> {
                Ok(if tsa.url == "builtin" {
                    Box::new(Tsa::new(pki.clone()))
                } else {
                    Box::new(HttpTsa::new(tsa).map_err(anyhow::Error::msg)?)
                })
            };
        let default: Box<dyn Stamper + Send + Sync> = if config.tsa.is_empty() {
            Box::new(Tsa::new(pki.clone()))
        } else {
            if config.tsa.iter().filter(|t| t.url == "builtin").count() > 1 {
                bail!("the built-in TSA is listed twice in the configuration");
            }
            let members = config.tsa.iter().map(member).collect::<Result<Vec<_>>>()?;
            Box::new(StamperSet::new(members, all))
        };
        let mut chosen = std::collections::BTreeMap::new();
        for rule in &policy.rules {
            let names = &rule.actions.tsa;
            if names.is_empty() || chosen.contains_key(names) {
                continue;
            }
            let mut members: Vec<Box<dyn Stamper + Send + Sync>> = Vec::new();
            for name in names {
                match config.tsa.iter().find(|t| &t.name == name) {
                    Some(tsa) => members.push(member(tsa)?),
                    None if name == "builtin" => members.push(Box::new(Tsa::new(pki.clone()))),
                    None => bail!(
                        "policy rule {:?} ({}) names the TSA {name:?}, which the configuration \
                         does not list",
                        rule.name,
                        rule.location()
                    ),
                }
            }
            chosen.insert(
                names.clone(),
                Box::new(StamperSet::new(members, all)) as Box<dyn Stamper + Send + Sync>,
            );
        }
        Ok(Notary {
            signer,
            stamper: Box::new(Routed { default, chosen }),
            max_batch: config.stamping.max_batch.max(1),
        })
    }
}

/// Stamps everything pending; returns (messages, batches), or the
/// messages stamped before the TSAs failed and why they failed.
fn stamp_all(archive: &Archive, notary: &Notary) -> Result<(u64, u64, Option<String>)> {
    let (mut messages, mut batches) = (0, 0);
    loop {
        match archive.stamp_pending(&notary.signer, notary.stamper.as_ref(), notary.max_batch) {
            Ok(Some(summary)) => {
                messages += summary.batch.messages;
                batches += 1;
            }
            Ok(None) => return Ok((messages, batches, None)),
            Err(mailnotary::archive::ArchiveError::Stamp(tsa, why)) => {
                return Ok((messages, batches, Some(format!("{tsa}: {why}"))));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Prints what stamping did; returns whether everything was stamped.
fn report_stamping(
    out: &mut dyn Write,
    archive: &Archive,
    (stamped, batches, failure): (u64, u64, Option<String>),
) -> Result<bool> {
    if stamped > 0 {
        writeln!(
            out,
            "stamped {stamped} message{} in {batches} batch{} (receipts signed, evidence recorded)",
            plural(stamped),
            if batches == 1 { "" } else { "es" }
        )?;
    }
    let Some(why) = failure else {
        return Ok(true);
    };
    let pending = archive.pending_count()?;
    writeln!(
        out,
        "not stamped: {pending} message{} pending, stored and safe, because no \
         timestamp authority answered ({why}); run `mailnotary stamp` to try again",
        if pending == 1 { " stays" } else { "s stay" }
    )?;
    Ok(false)
}

/// `stamp --wait`: the running stamper until nothing is pending.
fn stamp_until_done(archive: &Archive, notary: &Notary, window_ms: u64) -> Result<i32> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static STOP: AtomicBool = AtomicBool::new(false);
    // A signal only sets the flag; the stamper stops between batches.
    std::thread::spawn(|| {
        if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            runtime.block_on(shutdown_signal());
            STOP.store(true, Ordering::Relaxed);
        }
    });
    let pacing = mailnotary::archive::stamper::Pacing {
        window: std::time::Duration::from_millis(window_ms),
        max_batch: notary.max_batch,
        until_idle: true,
        ..Default::default()
    };
    let stats = archive.run_stamper(&notary.signer, notary.stamper.as_ref(), pacing, &STOP)?;
    let pending = archive.pending_count()?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "stamped {} message{} in {} batch{} after {} failed attempt{}; {pending} pending",
        stats.messages,
        plural(stats.messages),
        stats.batches,
        if stats.batches == 1 { "" } else { "es" },
        stats.failures,
        plural(stats.failures),
    )?;
    Ok(if pending == 0 { 0 } else { 1 })
}

fn stamp(archive: &Archive, notary: &Notary) -> Result<i32> {
    let result = stamp_all(archive, notary)?;
    let nothing = result.0 == 0 && result.2.is_none();
    let mut out = std::io::stdout().lock();
    if nothing {
        writeln!(out, "nothing pending")?;
    }
    Ok(if report_stamping(&mut out, archive, result)? {
        0
    } else {
        1
    })
}

fn ingest(
    archive: &Archive,
    notary: Option<&Notary>,
    paths: &[PathBuf],
    output: &mut Output<'_>,
) -> Result<i32> {
    let bar = if output.interactive {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {pos} messages  {per_sec}  {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let summary = Mutex::new(IngestSummary::default());
    let store_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);

    // Parsing and hashing run on worker threads; the store's writer groups
    // their writes into shared commits. A worker spends much of its time
    // waiting for its commit's fsync, so there are more workers than cores:
    // the more writes wait together, the fewer fsyncs per message.
    let workers = std::thread::available_parallelism()
        .map(|n| n.get() * 4)
        .unwrap_or(8)
        .clamp(4, 32);
    let (work_tx, work_rx) =
        std::sync::mpsc::sync_channel::<(PathBuf, Option<u64>, Vec<u8>)>(workers * 4);
    let work_rx = Mutex::new(work_rx);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let item = match work_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((path, mbox_index, bytes)) = item else {
                        return;
                    };
                    let envelope = Envelope {
                        received_at: now_millis(),
                        source: Source::Import {
                            path: path.display().to_string(),
                            mbox_index,
                        },
                    };
                    // After a store error the remaining items are drained
                    // unread, so that the walker never waits on a full queue.
                    if store_error.lock().map(|e| e.is_some()).unwrap_or(true) {
                        continue;
                    }
                    let analysis = analyze(&bytes);
                    let anomalous = !analysis.anomalies.is_empty();
                    let outcome = archive.ingest_analyzed(envelope, bytes, analysis);
                    let Ok(mut s) = summary.lock() else {
                        continue;
                    };
                    match outcome {
                        Ok(Ingested::Stored(_)) => {
                            s.stored += 1;
                            s.with_anomalies += u64::from(anomalous);
                        }
                        Ok(Ingested::Sighting(_)) => s.sightings += 1,
                        Err(e) => {
                            // A store error ends the import: later writes
                            // would fail the same way.
                            if let Ok(mut slot) = store_error.lock() {
                                slot.get_or_insert(
                                    anyhow::Error::new(e)
                                        .context(format!("storing {} failed", path.display())),
                                );
                            }
                            return;
                        }
                    }
                    bar.inc(1);
                }
            });
        }
        source::walk(paths, &mut |found| match found {
            Found::Message {
                path,
                mbox_index,
                bytes,
            } => {
                bar.set_message(path.display().to_string());
                let _ = work_tx.send((path, mbox_index, bytes));
            }
            Found::Skipped { path, reason } => {
                if let Ok(mut s) = summary.lock() {
                    s.skipped.push((path, reason));
                }
            }
            Found::Failed { path, reason } => {
                if let Ok(mut s) = summary.lock() {
                    s.failed.push((path, reason));
                }
            }
        });
        drop(work_tx);
    });
    bar.finish_and_clear();

    let summary = summary
        .into_inner()
        .map_err(|_| anyhow::anyhow!("an ingest worker panicked"))?;
    if let Some(e) = store_error.into_inner().ok().flatten() {
        return Err(e);
    }
    let stamping = notary.map(|n| stamp_all(archive, n)).transpose()?;
    let out = &mut *output.out;
    writeln!(
        out,
        "ingested {} new message{}, {} already present (sighting recorded), {} failed, {} skipped",
        summary.stored,
        plural(summary.stored),
        summary.sightings,
        summary.failed.len(),
        summary.skipped.len()
    )?;
    if summary.with_anomalies > 0 {
        writeln!(
            out,
            "{} of the new messages have anomalies (malformed or unusual); they are stored \
             as received, with the anomalies recorded (see lookup --json)",
            summary.with_anomalies
        )?;
    }
    let all_stamped = match stamping {
        Some(stamping) => report_stamping(out, archive, stamping)?,
        None => {
            writeln!(
                out,
                "the running gateway stamps them within its batch window; `lookup` shows \
                 their status"
            )?;
            true
        }
    };
    for (path, reason) in &summary.skipped {
        writeln!(out, "skipped {}: {reason}", path.display())?;
    }
    for (path, reason) in &summary.failed {
        writeln!(output.err, "error: {}: {reason}", path.display())?;
    }
    Ok(if !summary.failed.is_empty() {
        2
    } else if !all_stamped {
        1
    } else {
        0
    })
}

/// Prints `status` (from the daemon or from the store alone).
pub(crate) fn print_status(
    mut out: &mut dyn Write,
    status: &serde_json::Value,
    as_json: bool,
) -> Result<()> {
    if as_json {
        serde_json::to_writer_pretty(&mut out, status)?;
        writeln!(out)?;
        return Ok(());
    }
    let data = status["data"].as_str().unwrap_or("");
    if status["running"] == true {
        writeln!(out, "mailnotary serve is running on {data}")?;
    } else {
        writeln!(out, "mailnotary serve is not running on {data}")?;
    }
    writeln!(
        out,
        "pending: {} message(s) waiting for their timestamp",
        status["pending"]
    )?;
    if let Some(smtp) = status.get("smtp") {
        writeln!(
            out,
            "smtp: {} session(s), {} message(s) accepted, {} refused by the store",
            smtp["sessions"], smtp["accepted"], smtp["rejected"]
        )?;
    }
    for (name, account) in status["imap"].as_object().into_iter().flatten() {
        writeln!(
            out,
            "imap {name} ({}): {}{}; {} stored, {} recognized as sightings",
            account["server"].as_str().unwrap_or(""),
            account["state"].as_str().unwrap_or(""),
            match account["error"].as_str() {
                Some(e) => format!(" after {} failure(s), last: {e}", account["failures"]),
                None => String::new(),
            },
            account["stored"],
            account["sightings"],
        )?;
        for (folder, f) in account["folders"].as_object().into_iter().flatten() {
            writeln!(
                out,
                "  {folder}: UIDVALIDITY {}, last UID stored {}, {} to fetch",
                f["uid_validity"], f["last_uid"], f["to_fetch"]
            )?;
        }
    }
    for c in status["imap_checkpoints"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "imap {} {}: UIDVALIDITY {}, last UID stored {}",
            c["account"].as_str().unwrap_or(""),
            c["folder"].as_str().unwrap_or(""),
            c["uid_validity"],
            c["last_uid"]
        )?;
    }
    Ok(())
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn parse_time(text: &str, end_of_day: bool) -> Result<i64> {
    mailnotary::archive::query::parse_time(text, end_of_day).map_err(anyhow::Error::msg)
}

fn lookup(archive: &Archive, args: &LookupArgs, output: &mut Output<'_>) -> Result<i32> {
    let s = &args.selector;
    let selector = if let Some(t) = &s.thread {
        Selector::Thread(t.clone())
    } else if let Some(m) = &s.message_id {
        Selector::MessageId(m.clone())
    } else if let Some(a) = &s.address {
        Selector::Address(a.clone())
    } else if let Some(t) = &s.subject {
        Selector::Subject(t.clone())
    } else {
        Selector::All
    };
    let query = Query {
        selector: selector.clone(),
        since: args
            .since
            .as_deref()
            .map(|t| parse_time(t, false))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|t| parse_time(t, true))
            .transpose()?,
    };
    let (records, thread) = archive.lookup(&query)?;

    let mut out = &mut *output.out;
    if args.json {
        let mut items = Vec::with_capacity(records.len());
        for r in &records {
            items.push(message_json(archive, r)?);
        }
        serde_json::to_writer_pretty(&mut out, &items)?;
        writeln!(out)?;
    } else {
        if let Some(view) = &thread {
            writeln!(
                out,
                "{}: {} message{}, {} gap{}",
                view.id,
                records.len(),
                plural(records.len() as u64),
                view.gaps.len(),
                plural(view.gaps.len() as u64)
            )?;
        }
        for r in &records {
            let status = if archive.is_pending(&r.id()?)? {
                "pending"
            } else {
                "stamped"
            };
            writeln!(
                out,
                "{}  {}  {}  {}  {}",
                r.metadata.date.as_deref().unwrap_or("(no date)"),
                join_mailboxes(&r.metadata.from),
                r.metadata.subject.as_deref().unwrap_or("(no subject)"),
                status,
                r.receipt_id
            )?;
        }
        for gap in thread.iter().flat_map(|v| &v.gaps) {
            writeln!(out, "gap: <{gap}> is referenced but not in the archive")?;
        }
    }
    if records.is_empty() {
        writeln!(output.err, "no message matches")?;
        return Ok(1);
    }
    Ok(0)
}

fn join_mailboxes(list: &[Mailbox]) -> String {
    list.iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a new API token.
    Create {
        /// Who will hold it (shown in the audit log).
        #[arg(long)]
        name: String,
        /// A scope: read, export, verify or admin (repeat for several).
        #[arg(long, required = true)]
        scope: Vec<String>,
    },
}

/// `mailnotary token create`: the token on standard output once, and the
/// table for the configuration, which keeps only its salted hash.
fn token_create(name: &str, scopes: &[String]) -> Result<i32> {
    use mailnotary::api::auth::{Scope, create};
    let mut parsed = Vec::new();
    for s in scopes.iter().flat_map(|s| s.split(',')) {
        let scope = Scope::parse(s.trim()).map_err(anyhow::Error::msg)?;
        if !parsed.contains(&scope) {
            parsed.push(scope);
        }
    }
    if name.trim().is_empty() || name.contains(['"', '\\', '\n']) {
        bail!("--name must be a plain name, such as \"compliance\"");
    }
    let (token, entry) = create(name, parsed).map_err(anyhow::Error::msg)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "token (shown once; give it to {name}): {token}")?;
    writeln!(out)?;
    writeln!(out, "add to the configuration, then restart serve:")?;
    writeln!(out)?;
    writeln!(out, "[[http.token]]")?;
    writeln!(out, "name = \"{}\"", entry.name)?;
    writeln!(out, "hash = \"{}\"", entry.hash)?;
    writeln!(
        out,
        "scopes = [{}]",
        entry
            .scopes
            .iter()
            .map(|s| format!("\"{}\"", s.name()))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    Ok(0)
}

/// The certificate files of the configured TSAs, which bundles carry.
fn tsa_certificates(config: &Config) -> Vec<mailnotary::bundle::TsaCertificates> {
    config
        .tsa
        .iter()
        .map(|t| mailnotary::bundle::TsaCertificates {
            name: t.name.clone(),
            ca_file: t.ca_file.clone(),
            certs_file: t.certs_file.clone(),
        })
        .collect()
}

fn check(archive: &Archive, data: &Path, config: &Config, output: &mut Output<'_>) -> Result<i32> {
    // The data directory's own CA (and the configured TSAs' CAs), when
    // there is one, let check verify every signature too.
    let trust = verify::default_trust(data, config, &[])?
        .unwrap_or_else(|| mailnotary::signing::Trust::new(Vec::new()));
    let bar = if output.interactive {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    let report = archive.check(&trust, &mut |n| bar.set_position(n))?;
    bar.finish_and_clear();
    let out = &mut *output.out;
    for p in &report.problems {
        writeln!(out, "problem: {}: {}", p.subject, p.detail)?;
    }
    writeln!(
        out,
        "checked {} message{} ({} with stored bytes hashed again) and {} batch{}: {}",
        report.messages,
        plural(report.messages),
        report.blobs,
        report.batches,
        if report.batches == 1 { "" } else { "es" },
        if report.problems.is_empty() {
            "no problems".to_string()
        } else {
            format!("{} problem(s)", report.problems.len())
        }
    )?;
    Ok(if report.problems.is_empty() { 0 } else { 1 })
}

fn digest(file: &Path, show_canonical: bool, as_json: bool) -> Result<i32> {
    let raw = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let analysis = analyze(&raw);
    let mut out = std::io::stdout().lock();
    if as_json {
        serde_json::to_writer_pretty(
            &mut out,
            &json!({
                "raw_sha256": analysis.digests.raw,
                "canonical_sha256": analysis.digests.canonical,
                "canonical_algorithm": analysis.digests.canonical_algorithm,
                "parts": analysis.digests.parts,
                "metadata": analysis.metadata,
                "anomalies": analysis.anomalies,
            }),
        )?;
        writeln!(out)?;
    } else {
        writeln!(out, "raw        {}", analysis.digests.raw)?;
        writeln!(
            out,
            "canonical  {}  ({})",
            analysis.digests.canonical, analysis.digests.canonical_algorithm
        )?;
        for p in &analysis.digests.parts {
            writeln!(
                out,
                "part {:<5} {}  {} bytes  {}{}",
                p.path,
                p.sha256,
                p.size,
                p.content_type,
                p.filename
                    .as_deref()
                    .map(|f| format!("  {f}"))
                    .unwrap_or_default()
            )?;
        }
        for a in &analysis.anomalies {
            writeln!(out, "anomaly    {}", a.name())?;
        }
    }
    if show_canonical {
        out.write_all(b"--- canonical form ---\n")?;
        out.write_all(&mailnotary::canonical::canonicalize(&raw))?;
    }
    Ok(0)
}

fn tsa_serve(data: &Path, config: &Config, listen: std::net::SocketAddr) -> Result<i32> {
    let pki = LocalPki::open(data, &config.gateway.name, config.keys.as_ref())
        .context("cannot prepare the TSA's keys")?;
    let tsa = std::sync::Arc::new(Tsa::new(pki));
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let local = listener.local_addr()?;
        println!("mailnotary TSA listening on http://{local}/");
        std::io::stdout().flush()?;
        tracing::info!(%local, "tsa serve started");
        mailnotary::tsa::serve::serve(tsa, listener, shutdown_signal()).await?;
        tracing::info!("tsa serve stopped");
        Ok(0)
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

fn export(
    archive: &Archive,
    data: &Path,
    config: &Config,
    args: &ExportArgs,
    output: &mut Output<'_>,
) -> Result<i32> {
    let selector = match (&args.thread, &args.message_id) {
        (Some(t), _) => Selector::Thread(t.clone()),
        (None, Some(m)) => Selector::MessageId(m.clone()),
        (None, None) => bail!("give --thread or --message-id"),
    };
    let records = archive.find(&Query {
        selector,
        since: None,
        until: None,
    })?;
    if records.is_empty() {
        writeln!(output.err, "no message matches; nothing exported")?;
        return Ok(1);
    }
    let tsa_anchors = tsa_certificates(config);
    let summary = mailnotary::bundle::write(
        archive,
        &records,
        &mailnotary::tsa::pki::CertFiles::of(data, config.keys.as_ref()),
        &tsa_anchors,
        &config.gateway.name,
        &args.out,
    )?;
    writeln!(
        output.out,
        "wrote {}: {} message{}, {} batch{}{}",
        args.out.display(),
        summary.messages,
        plural(summary.messages as u64),
        summary.batches,
        if summary.batches == 1 { "" } else { "es" },
        if summary.pending > 0 {
            format!(", {} still pending (no receipt yet)", summary.pending)
        } else {
            String::new()
        }
    )?;
    Ok(0)
}
