// SPDX-License-Identifier: Apache-2.0 OR MIT
//! One account's watch loop: connect, sync every folder, wait for news,
//! and start again after a failure. See the module documentation of
//! [`crate::imap`] for the rules.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::net::TcpStream;
use tokio::sync::watch::Receiver;
use tokio_rustls::rustls;

use super::{Account, Board, FolderStatus};
use crate::analysis::analyze;
use crate::archive::{Archive, Ingested, keys};
use crate::config::TlsMode;
use crate::envelope::{Envelope, Source, now_millis};

type Tls = tokio_rustls::client::TlsStream<TcpStream>;
type Session = async_imap::Session<crate::net::Stream<Tls>>;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Longest wait for a connection or one command's answer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// IDLE is ended and started again after this long (RFC 2177 allows
/// servers to drop it after 29 minutes of silence).
const IDLE_RENEW: Duration = Duration::from_secs(25 * 60);
/// About how many bytes of messages one FETCH brings in.
const CHUNK_BYTES: u64 = 32 * 1024 * 1024;

/// Completes when the daemon is stopping.
async fn stopped(stopping: &mut Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

/// `what` within [`COMMAND_TIMEOUT`], its error described.
async fn timed<T, E: std::fmt::Display>(
    what: impl FnOnce() -> String,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(COMMAND_TIMEOUT, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{}: {e}", what())),
        Err(_) => Err(format!(
            "{}: no answer within {} s",
            what(),
            COMMAND_TIMEOUT.as_secs()
        )),
    }
}

/// Runs `f` on a blocking thread (store work).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::archive::ArchiveError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("the store: {e}")),
        Err(e) => Err(format!("a store task failed: {e}")),
    }
}

/// A wait of about `base`: between half of it and all of it, so that
/// accounts failing together do not retry together.
fn jitter(base: Duration) -> Duration {
    let mut byte = [0u8; 2];
    let _ = getrandom::getrandom(&mut byte);
    let fraction = 0.5 + f64::from(u16::from_le_bytes(byte)) / f64::from(u16::MAX) / 2.0;
    base.mul_f64(fraction)
}

/// Watches `account` until `stopping` turns true.
pub async fn watch(
    account: Account,
    archive: Arc<Archive>,
    board: Arc<Board>,
    mut stopping: Receiver<bool>,
) {
    let mut backoff = FIRST_BACKOFF;
    board.update(&account.name, |s| s.server = account.server());
    while !*stopping.borrow() {
        board.update(&account.name, |s| s.state = "connecting".into());
        let mut connected = false;
        let outcome = session(&account, &archive, &board, &mut stopping, &mut connected).await;
        let Err(why) = outcome else {
            break;
        };
        if connected {
            backoff = FIRST_BACKOFF;
        }
        let wait = jitter(backoff);
        tracing::warn!(
            account = %account.name,
            server = %account.server(),
            error = %why,
            retry_in_ms = wait.as_millis() as u64,
            "IMAP account failed; retrying"
        );
        board.update(&account.name, |s| {
            s.state = "retrying".into();
            s.error = Some(why);
            s.failures += 1;
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped(&mut stopping) => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    board.update(&account.name, |s| s.state = "stopped".into());
}

/// One connection's life: log in, then sync and wait, until an error or
/// the stop.
async fn session(
    account: &Account,
    archive: &Arc<Archive>,
    board: &Board,
    stopping: &mut Receiver<bool>,
    connected: &mut bool,
) -> Result<(), String> {
    let mut imap = connect(account).await?;
    *connected = true;
    tracing::info!(account = %account.name, server = %account.server(), "IMAP account connected");
    board.update(&account.name, |s| {
        s.error = None;
        s.failures = 0;
    });
    let capabilities = timed(|| "CAPABILITY".into(), imap.capabilities()).await?;
    let can_idle = account.idle && capabilities.has_str("IDLE");
    // What the server reports between commands (EXISTS for a new message)
    // lands here; it tells whether something arrived during a sync.
    let news = imap.unsolicited_responses.clone();
    loop {
        while news.try_recv().is_ok() {}
        let folders = resolve_folders(&mut imap, &account.folders).await?;
        board.update(&account.name, |s| s.state = "syncing".into());
        for folder in &folders {
            sync_folder(&mut imap, account, folder, archive, board, stopping).await?;
            if *stopping.borrow() {
                let _ = tokio::time::timeout(Duration::from_secs(5), imap.logout()).await;
                return Ok(());
            }
        }
        if has_news(&news) {
            // A message came in while the sync ran: look again at once
            // rather than wait for the next one.
            continue;
        }
        if can_idle && !folders.is_empty() {
            // IDLE watches the selected folder. With several folders the
            // first one is watched and the wait ends after poll_interval,
            // when the others are checked.
            let limit = if folders.len() == 1 {
                IDLE_RENEW
            } else {
                let first = &folders[0];
                timed(|| format!("EXAMINE {first}"), imap.examine(first)).await?;
                account.poll_interval.min(IDLE_RENEW)
            };
            board.update(&account.name, |s| s.state = "idle".into());
            imap = idle_once(imap, &news, limit, stopping).await?;
        } else {
            board.update(&account.name, |s| s.state = "polling".into());
            tokio::select! {
                _ = tokio::time::sleep(account.poll_interval) => {}
                _ = stopped(stopping) => {}
            }
        }
        if *stopping.borrow() {
            let _ = tokio::time::timeout(Duration::from_secs(5), imap.logout()).await;
            return Ok(());
        }
    }
}

/// Whether the server reported a change of the selected folder since
/// the channel was last read (reading it empties it).
fn has_news(news: &async_channel::Receiver<async_imap::types::UnsolicitedResponse>) -> bool {
    use async_imap::types::UnsolicitedResponse as U;
    let mut any = false;
    while let Ok(response) = news.try_recv() {
        any |= matches!(response, U::Exists(_) | U::Recent(_));
    }
    any
}

fn tls_connector(account: &Account) -> Result<tokio_rustls::TlsConnector, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match &account.ca_file {
        Some(file) => {
            for cert in CertificateDer::pem_file_iter(file)
                .map_err(|e| format!("cannot read ca_file {}: {e}", file.display()))?
            {
                let cert = cert.map_err(|e| format!("ca_file {}: {e}", file.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_file {}: {e}", file.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn tls_connect(account: &Account, tcp: TcpStream) -> Result<Tls, String> {
    let name = rustls::pki_types::ServerName::try_from(account.host.clone())
        .map_err(|e| format!("{} is not a valid TLS server name: {e}", account.host))?;
    let connector = tls_connector(account)?;
    timed(
        || format!("TLS with {}", account.server()),
        connector.connect(name, tcp),
    )
    .await
}

/// Reads the server's greeting.
async fn greeting<T>(client: &mut async_imap::Client<T>, server: &str) -> Result<(), String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    match timed(|| format!("greeting of {server}"), client.read_response()).await? {
        Some(_) => Ok(()),
        None => Err(format!(
            "{server} closed the connection before its greeting"
        )),
    }
}

/// Connects, protects and logs in.
async fn connect(account: &Account) -> Result<Session, String> {
    let server = account.server();
    let tcp = timed(
        || format!("connecting to {server}"),
        TcpStream::connect((account.host.as_str(), account.port)),
    )
    .await?;
    let stream = match account.tls {
        TlsMode::None => crate::net::Stream::Plain(tcp),
        TlsMode::Implicit => crate::net::Stream::Tls(Box::new(tls_connect(account, tcp).await?)),
        TlsMode::Starttls => {
            let mut client = async_imap::Client::new(tcp);
            greeting(&mut client, &server).await?;
            timed(
                || format!("STARTTLS with {server}"),
                client.run_command_and_check_ok("STARTTLS", None),
            )
            .await?;
            crate::net::Stream::Tls(Box::new(tls_connect(account, client.into_inner()).await?))
        }
    };
    let mut client = async_imap::Client::new(stream);
    if account.tls != TlsMode::Starttls {
        greeting(&mut client, &server).await?;
    }
    match tokio::time::timeout(
        COMMAND_TIMEOUT,
        client.login(&account.user, account.password()),
    )
    .await
    {
        Ok(Ok(session)) => Ok(session),
        Ok(Err((e, _))) => Err(format!(
            "{server} refused the login of {:?} ({e}); check the user name and the password",
            account.user
        )),
        Err(_) => Err(format!("login at {server}: no answer")),
    }
}

/// The folders the patterns name: plain names as they are, patterns with
/// `*` or `%` through LIST (folders that cannot be selected left out).
async fn resolve_folders(imap: &mut Session, patterns: &[String]) -> Result<Vec<String>, String> {
    let mut folders: Vec<String> = Vec::new();
    for pattern in patterns {
        if !pattern.contains(['*', '%']) {
            if !folders.contains(pattern) {
                folders.push(pattern.clone());
            }
            continue;
        }
        let quoted = format!("\"{}\"", pattern.replace('\\', "\\\\").replace('"', "\\\""));
        let names: Vec<_> = {
            let stream = timed(
                || format!("LIST {pattern}"),
                imap.list(Some(""), Some(&quoted)),
            )
            .await?;
            stream.collect().await
        };
        for name in names {
            let name = name.map_err(|e| format!("LIST {pattern}: {e}"))?;
            let selectable = !name
                .attributes()
                .contains(&async_imap::types::NameAttribute::NoSelect);
            let folder = name.name().to_string();
            if selectable && !folders.contains(&folder) {
                folders.push(folder);
            }
        }
    }
    Ok(folders)
}

/// Stores what is new in `folder` since its checkpoint.
async fn sync_folder(
    imap: &mut Session,
    account: &Account,
    folder: &str,
    archive: &Arc<Archive>,
    board: &Board,
    stopping: &Receiver<bool>,
) -> Result<(), String> {
    let mailbox = timed(|| format!("EXAMINE {folder}"), imap.examine(folder)).await?;
    let validity = mailbox
        .uid_validity
        .ok_or_else(|| format!("{folder}: the server gives no UIDVALIDITY"))?;
    let name = account.name.clone();
    let (a, f, store) = (name.clone(), folder.to_string(), Arc::clone(archive));
    let checkpoint = blocking(move || store.imap_checkpoint(&a, &f)).await?;
    let mut last = match checkpoint {
        Some((known, uid)) if known == validity => uid,
        Some((known, _)) => {
            tracing::warn!(account = %name, folder, old = known, new = validity,
                "UIDVALIDITY changed: the folder is read again; messages already stored are \
                 recorded as sightings");
            let (a, f, store) = (name.clone(), folder.to_string(), Arc::clone(archive));
            blocking(move || store.set_imap_checkpoint(&a, &f, validity, 0)).await?;
            0
        }
        None => 0,
    };

    // The UIDs above the checkpoint, with their sizes. "N:*" always
    // returns the highest message, so anything at or below the checkpoint
    // is dropped.
    let mut uids: Vec<(u32, u64)> = Vec::new();
    {
        let range = format!("{}:*", last.saturating_add(1));
        let mut stream = timed(
            || format!("UID FETCH in {folder}"),
            imap.uid_fetch(&range, "(UID RFC822.SIZE)"),
        )
        .await?;
        while let Some(item) = stream.next().await {
            let fetch = item.map_err(|e| format!("UID FETCH in {folder}: {e}"))?;
            if let Some(uid) = fetch.uid.filter(|u| *u > last) {
                uids.push((uid, fetch.size.map_or(0, u64::from)));
            }
        }
    }
    uids.sort_unstable();
    uids.dedup_by_key(|(uid, _)| *uid);
    let total = uids.len();
    board.update(&name, |s| {
        s.folders.insert(
            folder.to_string(),
            FolderStatus {
                uid_validity: validity,
                last_uid: last,
                to_fetch: total,
            },
        );
    });
    if total == 0 {
        return Ok(());
    }
    tracing::info!(account = %name, folder, new = total, "syncing folder");

    let server = account.server();
    let mut done = 0;
    for chunk in chunks(&uids, account.fetch_chunk, CHUNK_BYTES) {
        if *stopping.borrow() {
            // The checkpoint already names the last message stored; the
            // next start goes on from there.
            tracing::info!(account = %name, folder, done, total, "sync paused for the stop");
            return Ok(());
        }
        let set = chunk
            .iter()
            .map(|(uid, _)| uid.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut fetched: Vec<(u32, Vec<u8>)> = Vec::with_capacity(chunk.len());
        {
            let mut stream = timed(
                || format!("fetching messages of {folder}"),
                imap.uid_fetch(&set, "(UID BODY.PEEK[])"),
            )
            .await?;
            loop {
                let next = tokio::time::timeout(COMMAND_TIMEOUT, stream.next())
                    .await
                    .map_err(|_| format!("fetching messages of {folder}: no answer"))?;
                let Some(item) = next else {
                    break;
                };
                let fetch = item.map_err(|e| format!("fetching messages of {folder}: {e}"))?;
                if let (Some(uid), Some(body)) = (fetch.uid, fetch.body()) {
                    fetched.push((uid, body.to_vec()));
                }
            }
        }
        fetched.sort_by_key(|(uid, _)| *uid);
        for (uid, body) in fetched {
            if uid <= last {
                continue;
            }
            let envelope = Envelope {
                received_at: now_millis(),
                source: Source::Imap {
                    server: server.clone(),
                    account: name.clone(),
                    folder: folder.to_string(),
                    uid_validity: validity,
                    uid,
                },
            };
            let entry = keys::checkpoint_entry(&name, folder, validity, uid);
            let store = Arc::clone(archive);
            let ingested = blocking(move || {
                let analysis = analyze(&body);
                store.ingest_with(envelope, body, analysis, vec![entry])
            })
            .await?;
            last = uid;
            board.update(&name, |s| match ingested {
                Ingested::Stored(_) => s.stored += 1,
                Ingested::Sighting(_) => s.sightings += 1,
            });
        }
        done += chunk.len();
        tracing::info!(account = %name, folder, done, total, "sync progress");
        board.update(&name, |s| {
            if let Some(f) = s.folders.get_mut(folder) {
                f.last_uid = last;
                f.to_fetch = total - done;
            }
        });
    }
    Ok(())
}

/// Splits the UIDs to fetch (with their sizes) into requests of at most
/// `count` messages and about `bytes` bytes, so that a folder of large
/// messages is never held in memory at once; a message larger than
/// `bytes` is fetched on its own.
fn chunks(uids: &[(u32, u64)], count: usize, bytes: u64) -> Vec<&[(u32, u64)]> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0u64);
    for (i, (_, len)) in uids.iter().enumerate() {
        if i > start && (i - start >= count || size + len > bytes) {
            out.push(&uids[start..i]);
            (start, size) = (i, 0);
        }
        size += len;
    }
    if start < uids.len() {
        out.push(&uids[start..]);
    }
    out
}

/// Waits in IDLE until the server reports news, `limit` passes, or the
/// daemon stops; returns the session after DONE.
///
/// `limit` is a wall-clock bound: the IDLE command is ended and the folder
/// looked at again even when the server keeps the connection busy with
/// keep-alive lines, so the command never outlives the 29 minutes of
/// RFC 2177 §3, and a connection that died silently is found out then.
async fn idle_once(
    imap: Session,
    news: &async_channel::Receiver<async_imap::types::UnsolicitedResponse>,
    limit: Duration,
    stopping: &mut Receiver<bool>,
) -> Result<Session, String> {
    let mut handle = imap.idle();
    timed(|| "IDLE".into(), handle.init()).await?;
    // What the server sent before it accepted IDLE was set aside: a
    // message that arrived just after the sync is reported there.
    if !has_news(news) {
        let (wait, interrupt) = handle.wait_with_timeout(limit);
        let mut interrupt = Some(interrupt);
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(wait, deadline);
        loop {
            tokio::select! {
                outcome = &mut wait => {
                    outcome.map_err(|e| format!("IDLE: {e}"))?;
                    break;
                }
                // Dropping the stop source interrupts the wait.
                _ = &mut deadline, if interrupt.is_some() => interrupt = None,
                _ = stopped(stopping), if interrupt.is_some() => interrupt = None,
            }
        }
    }
    timed(|| "ending IDLE".into(), handle.done()).await
}

#[cfg(test)]
mod tests {
    use super::chunks;

    #[test]
    fn chunks_are_bounded_by_count_and_by_size() {
        let uids: Vec<(u32, u64)> = (1..=7).map(|u| (u, 10)).collect();
        let sizes = |c: Vec<&[(u32, u64)]>| c.iter().map(|c| c.len()).collect::<Vec<_>>();
        assert_eq!(sizes(chunks(&uids, 3, 1000)), [3, 3, 1]);
        assert_eq!(sizes(chunks(&uids, 100, 25)), [2, 2, 2, 1]);
        // A message larger than the byte budget goes alone.
        let big = [(1, 5), (2, 500), (3, 5), (4, 5)];
        assert_eq!(sizes(chunks(&big, 100, 20)), [1, 1, 2]);
        assert!(chunks(&[], 10, 10).is_empty());
    }
}
