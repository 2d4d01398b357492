// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The IMAP folder watcher: for mailboxes mailnotary cannot sit in front
//! of, it watches folders and stores what appears in them.
//!
//! It only reads. Each folder is opened with EXAMINE (read-only) and each
//! message fetched with `BODY.PEEK[]`, so no flag changes, `\Seen`
//! included, and nothing is deleted or moved.
//!
//! Per folder a checkpoint (UIDVALIDITY, highest UID stored) lives in the
//! store, and it is written in the same durable write as the message it
//! follows, so a restart resumes exactly after the last message stored:
//! nothing is fetched twice and nothing is skipped. A large folder is
//! fetched in chunks (`fetch_chunk`), with progress in the log and in
//! `mailnotary status`. When a folder's UIDVALIDITY changes, the folder is
//! read again from its first message; what is already stored is recognized
//! by its raw digest and recorded as a sighting, not as a new message.
//!
//! After a sync the watcher waits for news: with IDLE (RFC 2177) when the
//! server offers it, on the account's first folder, ended and started
//! again after 25 minutes (servers may end it after 29), or after
//! `poll_interval` when the account has other folders to check; without
//! IDLE it checks every `poll_interval`. A lost connection, a restarted
//! server, a refused password or a TLS failure is logged with the
//! account's name and the cause, shown in `status`, and retried after a
//! wait that doubles from 1 s to 5 minutes with random jitter; one
//! account's trouble never touches another account or the SMTP listener.
//!
//! Known limits: IDLE watches one folder per connection, so new mail in an
//! account's other folders waits for the next `poll_interval`; folders that
//! appear later are picked up at the next reconnection or poll;
//! authentication is LOGIN with a password (no OAuth 2.0); a message that
//! the server deletes before it is fetched is skipped, since there is
//! nothing left to archive.

mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::config::{ImapConfig, TlsMode};

pub use watch::watch;

/// A checked account, with its password resolved.
#[derive(Clone)]
pub struct Account {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub user: String,
    password: String,
    pub folders: Vec<String>,
    pub poll_interval: Duration,
    pub idle: bool,
    pub ca_file: Option<PathBuf>,
    pub fetch_chunk: usize,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("name", &self.name)
            .field("server", &self.server())
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("folders", &self.folders)
            .finish_non_exhaustive()
    }
}

impl Account {
    /// Checks one `[[imap]]` entry and reads its password.
    pub fn from_config(c: &ImapConfig) -> Result<Account, String> {
        let what = format!("[[imap]] {:?}", c.name);
        if c.name.is_empty() || c.name.contains('\0') {
            return Err("[[imap]]: every account needs a name without NUL bytes".into());
        }
        if c.host.is_empty() || c.user.is_empty() {
            return Err(format!("{what}: host and user are required"));
        }
        if c.folders.is_empty() {
            return Err(format!(
                "{what}: folders is empty; name at least one (\"INBOX\")"
            ));
        }
        if c.tls == TlsMode::None && !crate::net::is_loopback(&c.host) {
            return Err(format!(
                "{what}: tls = \"none\" is allowed only for a loopback address \
                 (127.0.0.1, ::1, localhost), since the password would cross the network \
                 in clear; use \"implicit\" or \"starttls\""
            ));
        }
        let password = match (&c.password_file, &c.password_env, &c.password) {
            (Some(file), None, None) => std::fs::read_to_string(file)
                .map_err(|e| format!("{what}: cannot read password_file {}: {e}", file.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
            (None, Some(var), None) => std::env::var(var).map_err(|_| {
                format!("{what}: the environment variable {var} (password_env) is not set")
            })?,
            (None, None, Some(literal)) => {
                tracing::warn!(
                    account = %c.name,
                    "the IMAP password is written in the configuration file; prefer \
                     password_file or password_env"
                );
                literal.clone()
            }
            (None, None, None) => {
                return Err(format!(
                    "{what}: give the password with password_file or password_env"
                ));
            }
            _ => {
                return Err(format!(
                    "{what}: give only one of password_file, password_env and password"
                ));
            }
        };
        Ok(Account {
            name: c.name.clone(),
            host: c.host.clone(),
            port: c.port.unwrap_or(match c.tls {
                TlsMode::Implicit => 993,
                _ => 143,
            }),
            tls: c.tls,
            user: c.user.clone(),
            password,
            folders: c.folders.clone(),
            poll_interval: Duration::from_secs(c.poll_interval.max(1)),
            idle: c.idle,
            ca_file: c.ca_file.clone(),
            fetch_chunk: c.fetch_chunk.clamp(1, 10_000),
        })
    }

    /// `host:port`, as written into receipts.
    pub fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub(crate) fn password(&self) -> &str {
        &self.password
    }
}

/// What an account is doing, for `status` and `/healthz`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AccountStatus {
    /// `connecting`, `syncing`, `idle` (waiting with IDLE), `polling`
    /// (waiting for the next check), `retrying` (after an error) or
    /// `stopped`.
    pub state: String,
    pub server: String,
    /// The last error, while the account has not recovered from it.
    pub error: Option<String>,
    /// Failures in a row.
    pub failures: u32,
    /// Messages stored (new) and recognized (sightings) since start.
    pub stored: u64,
    pub sightings: u64,
    /// Per folder: the checkpoint and the sync's progress.
    pub folders: BTreeMap<String, FolderStatus>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FolderStatus {
    pub uid_validity: u32,
    pub last_uid: u32,
    /// Messages still to fetch in the current sync.
    pub to_fetch: usize,
}

/// Every account's status.
#[derive(Debug, Default)]
pub struct Board {
    accounts: Mutex<BTreeMap<String, AccountStatus>>,
}

impl Board {
    /// Changes `account`'s status.
    pub fn update(&self, account: &str, f: impl FnOnce(&mut AccountStatus)) {
        if let Ok(mut map) = self.accounts.lock() {
            f(map.entry(account.to_string()).or_default());
        }
    }

    /// A copy of every account's status.
    pub fn snapshot(&self) -> BTreeMap<String, AccountStatus> {
        self.accounts.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(tls: TlsMode, host: &str) -> ImapConfig {
        ImapConfig {
            name: "a".into(),
            host: host.into(),
            port: None,
            tls,
            user: "u".into(),
            password_file: None,
            password_env: None,
            password: Some("p".into()),
            folders: vec!["INBOX".into()],
            poll_interval: 60,
            idle: true,
            ca_file: None,
            fetch_chunk: 100,
        }
    }

    #[test]
    fn plaintext_only_on_loopback_and_ports_follow_tls() {
        assert!(Account::from_config(&config(TlsMode::None, "127.0.0.1")).is_ok());
        assert!(Account::from_config(&config(TlsMode::None, "localhost")).is_ok());
        assert!(Account::from_config(&config(TlsMode::None, "::1")).is_ok());
        let err = Account::from_config(&config(TlsMode::None, "imap.example.com")).unwrap_err();
        assert!(err.contains("loopback"), "{err}");
        assert_eq!(
            Account::from_config(&config(TlsMode::Implicit, "h"))
                .unwrap()
                .port,
            993
        );
        assert_eq!(
            Account::from_config(&config(TlsMode::Starttls, "h"))
                .unwrap()
                .port,
            143
        );
        let mut two = config(TlsMode::Implicit, "h");
        two.password_env = Some("X".into());
        assert!(Account::from_config(&two).unwrap_err().contains("only one"));
        let debug = format!(
            "{:?}",
            Account::from_config(&config(TlsMode::Implicit, "h")).unwrap()
        );
        assert!(!debug.contains("\"p\""), "{debug}");
    }
}
