// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The local control channel: how `lookup`, `verify`, `export`, `check`
//! and `ingest` keep working while `serve` holds the store.
//!
//! The embedded stores admit one process at a time, so while the daemon
//! runs, these commands hand their command line to it over a Unix socket,
//! `run/control.sock` in the data directory, and print what it answers.
//! The daemon runs the same code on its open store, with the client's
//! paths made absolute against the client's working directory, so the
//! output and exit code are those of the command run directly.
//!
//! Access: the socket lives in a folder of mode 0700 owned by the daemon's
//! user, so only that user (and root) can connect; the daemon reads and
//! writes files as that user. The daemon's own configuration applies;
//! `--config` and `--store` given to the client are not used.
//!
//! Known limit: the answer comes when the command is done (no progress
//! bar), and the channel is local only; the HTTP API is the remote way in.
//! Where Unix sockets do not exist, the commands need the daemon stopped.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The largest request accepted: a command line.
const MAX_REQUEST: usize = 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct Request {
    /// The command line after the program name.
    argv: Vec<String>,
    /// The client's working directory.
    cwd: PathBuf,
}

/// Runs one client's command line (arguments, working directory) and
/// returns its exit code, standard output and standard error.
pub(crate) type Runner = dyn Fn(Vec<String>, PathBuf) -> (i32, Vec<u8>, Vec<u8>) + Send + Sync;

#[derive(Serialize, Deserialize)]
struct Answer {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Where the daemon of `data` listens.
pub(crate) fn socket_path(data: &Path) -> PathBuf {
    data.join("run").join("control.sock")
}

/// Hands this process's command line to the daemon running on `data`, if
/// one is; returns its exit code, or None when no daemon answers.
#[cfg(unix)]
pub(crate) fn forward(data: &Path) -> Result<Option<i32>> {
    use std::os::unix::net::UnixStream;
    let path = socket_path(data);
    let Ok(stream) = UnixStream::connect(&path) else {
        return Ok(None);
    };
    let argv = std::env::args_os()
        .skip(1)
        .map(|a| {
            a.into_string()
                .map_err(|a| anyhow::anyhow!("the argument {a:?} is not UTF-8"))
        })
        .collect::<Result<Vec<_>>>()?;
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    let mut line = serde_json::to_vec(&Request { argv, cwd })?;
    line.push(b'\n');
    (&stream)
        .write_all(&line)
        .with_context(|| format!("cannot talk to the running daemon at {}", path.display()))?;
    let mut reply = String::new();
    BufReader::new(&stream)
        .read_line(&mut reply)
        .with_context(|| format!("the running daemon at {} did not answer", path.display()))?;
    let answer: Answer = serde_json::from_str(&reply).with_context(|| {
        format!(
            "the running daemon at {} gave an answer this release cannot read; is it \
             another version of mailnotary?",
            path.display()
        )
    })?;
    std::io::stdout().write_all(answer.stdout.as_bytes())?;
    std::io::stderr().write_all(answer.stderr.as_bytes())?;
    Ok(Some(answer.code))
}

/// Whether a daemon answers on `data`'s control socket.
pub(crate) fn daemon_running(data: &Path) -> bool {
    #[cfg(unix)]
    {
        std::os::unix::net::UnixStream::connect(socket_path(data)).is_ok()
    }
    #[cfg(not(unix))]
    {
        let _ = data;
        false
    }
}

#[cfg(not(unix))]
pub(crate) fn forward(_data: &Path) -> Result<Option<i32>> {
    Ok(None)
}

/// Creates the socket's folder (mode 0700) and binds the socket, removing
/// one left by a daemon that did not stop cleanly (the store's lock,
/// already held, proves that no other daemon runs here).
#[cfg(unix)]
pub(crate) fn bind(data: &Path) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let path = socket_path(data);
    let dir = path.parent().context("socket path has no folder")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", dir.display()))?;
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("cannot remove the old socket {}: {e}", path.display()),
    }
    tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))
}

/// Answers control requests until `stopping` turns true. `run` executes
/// one command line (already checked) and returns code, stdout, stderr.
#[cfg(unix)]
pub(crate) async fn serve(
    listener: tokio::net::UnixListener,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    run: std::sync::Arc<Runner>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopping.wait_for(|s| *s) => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "control socket: cannot accept");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let run = std::sync::Arc::clone(&run);
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST as u64));
            let answer = match reader.read_line(&mut line).await {
                Ok(_) => match serde_json::from_str::<Request>(&line) {
                    Ok(request) => {
                        let done =
                            tokio::task::spawn_blocking(move || run(request.argv, request.cwd))
                                .await;
                        match done {
                            Ok((code, out, err)) => Answer {
                                code,
                                stdout: String::from_utf8_lossy(&out).into_owned(),
                                stderr: String::from_utf8_lossy(&err).into_owned(),
                            },
                            Err(e) => Answer {
                                code: 2,
                                stdout: String::new(),
                                stderr: format!(
                                    "error: the daemon failed to run the command: {e}\n"
                                ),
                            },
                        }
                    }
                    Err(e) => Answer {
                        code: 2,
                        stdout: String::new(),
                        stderr: format!("error: the daemon cannot read the request: {e}\n"),
                    },
                },
                Err(e) => Answer {
                    code: 2,
                    stdout: String::new(),
                    stderr: format!("error: reading the request failed: {e}\n"),
                },
            };
            if let Ok(mut bytes) = serde_json::to_vec(&answer) {
                bytes.push(b'\n');
                let _ = write.write_all(&bytes).await;
            }
        });
    }
}
