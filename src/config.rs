// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The configuration file, `mailnotary.toml`.
//!
//! Every setting has a built-in default, so the file is optional; when it
//! exists, unknown keys are an error (a misspelt key silently ignored is a
//! setting the operator believes is in force). `mailnotary.example.toml`
//! at the top of the repository documents each key.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::store::BackendKind;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub gateway: GatewayConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub stamping: StampingConfig,
    /// The operator's own PKI; without it, a local CA in the data directory.
    #[serde(default)]
    pub keys: Option<KeysConfig>,
    /// External timestamp authorities, in the order they are tried. Empty:
    /// the built-in TSA stamps every batch.
    #[serde(default)]
    pub tsa: Vec<TsaConfig>,
    /// The SMTP listener of `serve`.
    #[serde(default)]
    pub smtp: SmtpConfig,
    /// The local side of `serve`: its HTTP address.
    #[serde(default)]
    pub http: HttpConfig,
    /// IMAP accounts whose folders `serve` watches.
    #[serde(default)]
    pub imap: Vec<ImapConfig>,
    /// Which policy decides what is kept.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Encryption at rest and retention.
    #[serde(default)]
    pub archive: ArchiveConfig,
    /// The smarthost that receipt notifications go through.
    #[serde(default)]
    pub notify: Option<NotifyConfig>,
    /// The DNS resolver that DKIM key records are fetched from.
    #[serde(default)]
    pub dns: DnsConfig,
}

/// Where DKIM key records are looked up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Name servers as `IP` or `IP:PORT` (port 53 by default), asked in
    /// order; empty for the system's (`/etc/resolv.conf`).
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// The longest a message waits for its key records, in milliseconds;
    /// then the signatures whose key did not come are `temperror`.
    #[serde(default = "default_dns_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_dns_timeout_ms() -> u64 {
    2000
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Vec::new(),
            timeout_ms: default_dns_timeout_ms(),
        }
    }
}

/// The policy in force.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// A folder of policy files; without it, the built-in default
    /// (the shipped `policies/default.toml`). `--policy-dir` overrides.
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

/// The archive key and the purging of expired messages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// The key that seals stored messages; default `keys/archive.key` in
    /// the data directory. Created (0600) when the store has none.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// How often `serve` purges messages whose retention has ended, in
    /// seconds.
    #[serde(default = "default_purge_interval")]
    pub purge_interval_secs: u64,
}

fn default_purge_interval() -> u64 {
    3600
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            key_file: None,
            purge_interval_secs: default_purge_interval(),
        }
    }
}

/// The SMTP server that notifications are sent through.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    pub host: String,
    /// Default: 465 with implicit TLS, 587 with STARTTLS, 25 without TLS.
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (the default), `implicit`, or `none` (loopback only).
    #[serde(default = "default_notify_tls")]
    pub tls: TlsMode,
    /// The envelope and header sender of notifications.
    pub from: String,
    /// SMTP AUTH user and password (`env:NAME` reads a variable).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// CA certificates (PEM) to trust instead of the public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds to wait for the smarthost.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Seconds before the first new attempt after a failure; the wait
    /// doubles with each failure, up to an hour.
    #[serde(default = "default_retry_secs")]
    pub retry_secs: u64,
}

fn default_retry_secs() -> u64 {
    30
}

fn default_notify_tls() -> TlsMode {
    TlsMode::Starttls
}

/// The password never reaches logs.
impl std::fmt::Debug for NotifyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("from", &self.from)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .field("ca_file", &self.ca_file)
            .field("timeout_secs", &self.timeout_secs)
            .field("retry_secs", &self.retry_secs)
            .finish()
    }
}

/// One IMAP account watched by `serve`, read-only.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapConfig {
    /// A short name for logs, `status` and the receipt's source.
    pub name: String,
    pub host: String,
    /// Default: 993 with implicit TLS, 143 otherwise.
    #[serde(default)]
    pub port: Option<u16>,
    /// `implicit` (TLS from the start), `starttls`, or `none` (loopback
    /// addresses only).
    #[serde(default)]
    pub tls: TlsMode,
    pub user: String,
    /// A file holding the password (its first line).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The password itself: accepted for tests, warned about.
    #[serde(default)]
    pub password: Option<String>,
    /// Folders to watch; `*` and `%` patterns are allowed (IMAP LIST).
    #[serde(default = "default_folders")]
    pub folders: Vec<String>,
    /// Seconds between checks of a folder when IDLE is not used.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: u64,
    /// Use IDLE (RFC 2177) when the server offers it and one folder is
    /// watched.
    #[serde(default = "default_true")]
    pub idle: bool,
    /// CA certificates (PEM) to trust for this server instead of the
    /// public roots (a private CA, say).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Messages fetched per request during a sync.
    #[serde(default = "default_fetch_chunk")]
    pub fetch_chunk: usize,
}

/// How a client connection (to an IMAP server, to the notification
/// smarthost) is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    #[default]
    Implicit,
    Starttls,
    None,
}

fn default_folders() -> Vec<String> {
    vec!["INBOX".into()]
}
fn default_poll_interval() -> u64 {
    60
}
fn default_fetch_chunk() -> usize {
    100
}

/// The password never reaches logs or error messages.
impl std::fmt::Debug for ImapConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapConfig")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("password_file", &self.password_file)
            .field("password_env", &self.password_env)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .field("folders", &self.folders)
            .field("poll_interval", &self.poll_interval)
            .field("idle", &self.idle)
            .field("ca_file", &self.ca_file)
            .field("fetch_chunk", &self.fetch_chunk)
            .finish()
    }
}

/// The SMTP listener: where it listens, whom it accepts mail for, and its
/// limits. Every limit has a named default suited to an archive address
/// that receives BCC or journal copies from the company's own MTA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Address and port to listen on (`serve --smtp` overrides).
    #[serde(default = "default_smtp_listen")]
    pub listen: String,
    /// The name in the greeting and EHLO reply; default: the gateway name.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Recipients accepted: full addresses (`archive@example.com`) or whole
    /// domains (`@archive.example.com`). Everything else gets 550 5.1.1.
    #[serde(default = "default_accept")]
    pub accept: Vec<String>,
    /// Client networks allowed to connect (`10.0.0.0/8`, `::1/128`);
    /// empty: any client. Others get 554 5.7.1 and are disconnected.
    #[serde(default)]
    pub allowed_networks: Vec<String>,
    /// Largest message in bytes, announced with SIZE.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: usize,
    /// Recipients per message.
    #[serde(default = "default_max_recipients")]
    pub max_recipients: usize,
    /// Sessions at once; more get 421 4.3.2 at connect.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds to wait for a command (RFC 5321 §4.5.3.2.7: 5 minutes).
    #[serde(default = "default_command_timeout")]
    pub command_timeout_secs: u64,
    /// Seconds to wait for each read of message data (RFC 5321
    /// §4.5.3.2.5: 3 minutes).
    #[serde(default = "default_data_timeout")]
    pub data_timeout_secs: u64,
    /// Longest command line in bytes, CRLF included (RFC 5321 allows 512,
    /// extensions make them longer).
    #[serde(default = "default_max_line")]
    pub max_command_line: usize,
    /// Errors in one session before it is closed with 421.
    #[serde(default = "default_max_errors")]
    pub max_errors: u32,
    /// Seconds that sessions in progress get to finish after SIGTERM.
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
    /// Offer STARTTLS.
    #[serde(default = "default_true")]
    pub starttls: bool,
    /// Certificate chain (PEM) for STARTTLS; without it, a certificate
    /// issued by the data directory's local CA for `hostname`.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM, PKCS#8).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

fn default_smtp_listen() -> String {
    "127.0.0.1:2525".into()
}
fn default_accept() -> Vec<String> {
    vec!["archive@localhost".into()]
}
fn default_max_message_size() -> usize {
    50 * 1024 * 1024
}
fn default_max_recipients() -> usize {
    1000
}
fn default_max_connections() -> usize {
    256
}
fn default_command_timeout() -> u64 {
    300
}
fn default_data_timeout() -> u64 {
    180
}
fn default_max_line() -> usize {
    4096
}
fn default_max_errors() -> u32 {
    10
}
fn default_grace() -> u64 {
    30
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: default_smtp_listen(),
            hostname: None,
            accept: default_accept(),
            allowed_networks: Vec::new(),
            max_message_size: default_max_message_size(),
            max_recipients: default_max_recipients(),
            max_connections: default_max_connections(),
            command_timeout_secs: default_command_timeout(),
            data_timeout_secs: default_data_timeout(),
            max_command_line: default_max_line(),
            max_errors: default_max_errors(),
            shutdown_grace_secs: default_grace(),
            starttls: true,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// The daemon's HTTP side.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port of the HTTP listener (`serve --http` overrides).
    #[serde(default = "default_http_listen")]
    pub listen: String,
    /// The API's bearer tokens, by salted hash (`mailnotary token create`
    /// prints a token and its table).
    #[serde(default, rename = "token")]
    pub tokens: Vec<crate::api::auth::TokenEntry>,
    /// The largest upload to `/api/v1/verify`, in MiB; larger ones get 413
    /// before they are read.
    #[serde(default = "default_max_upload_mib")]
    pub max_upload_mib: u64,
}

fn default_max_upload_mib() -> u64 {
    50
}

fn default_http_listen() -> String {
    "127.0.0.1:8025".into()
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_http_listen(),
            tokens: Vec::new(),
            max_upload_mib: default_max_upload_mib(),
        }
    }
}

/// Key and certificate files of the operator's PKI, used instead of the
/// local CA the data directory would otherwise get. All five are needed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// The CA certificate verifiers are to trust (PEM or DER).
    pub ca_cert: PathBuf,
    /// The timestamping certificate, optionally followed by its
    /// intermediate CAs; its extendedKeyUsage must be critical and hold
    /// only timeStamping.
    pub tsa_cert: PathBuf,
    /// Its PKCS#8 P-256 private key (PEM).
    pub tsa_key: PathBuf,
    /// The receipt-signing certificate, optionally followed by its
    /// intermediate CAs.
    pub receipt_cert: PathBuf,
    /// Its PKCS#8 P-256 private key (PEM).
    pub receipt_key: PathBuf,
}

/// How pending messages are gathered into batches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StampingConfig {
    /// How long the stamper gathers messages before a batch, milliseconds.
    #[serde(default = "default_window_ms")]
    pub window_ms: u64,
    /// The most messages one batch holds.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// `first`: the first TSA in the list that answers stamps each batch
    /// (failover). `all`: every TSA listed stamps every batch, and a batch
    /// is stamped only when all of them answered.
    #[serde(default)]
    pub mode: StampingMode,
}

fn default_window_ms() -> u64 {
    1000
}

fn default_max_batch() -> usize {
    10_000
}

impl Default for StampingConfig {
    fn default() -> Self {
        StampingConfig {
            window_ms: default_window_ms(),
            max_batch: default_max_batch(),
            mode: StampingMode::default(),
        }
    }
}

/// See [`StampingConfig::mode`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StampingMode {
    #[default]
    First,
    All,
}

/// One external RFC 3161 timestamp authority.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsaConfig {
    /// A short name for logs and batch records.
    pub name: String,
    /// The TSA's HTTP or HTTPS address (`application/timestamp-query`), or
    /// `builtin` for the gateway's own TSA.
    pub url: String,
    /// The policy OID to request; none lets the TSA choose.
    #[serde(default)]
    pub policy: Option<String>,
    /// Ask for the TSA certificate inside the token (certReq). Default on.
    #[serde(default = "default_true")]
    pub cert_req: bool,
    /// Seconds to wait for one answer.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Further attempts after a failed one, with doubling waits.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// HTTP basic authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// The basic-authentication password, or the name of an environment
    /// variable holding it (`env:NAME`), which keeps it out of the file.
    #[serde(default)]
    pub password: Option<String>,
    /// A bearer token, or `env:NAME`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// CA certificates (PEM or DER) its tokens must chain to. Tokens are
    /// checked against them before a batch is accepted, and `verify` and
    /// `check` trust them.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Certificates that complete the chain without being trusted: the TSA
    /// certificate when tokens do not carry it (cert_req = false), or
    /// intermediates.
    #[serde(default)]
    pub certs_file: Option<PathBuf>,
}

fn default_true() -> bool {
    true
}

fn default_timeout_secs() -> u64 {
    10
}

fn default_retries() -> u32 {
    2
}

/// Secrets never reach logs or error messages, so Debug leaves them out.
impl std::fmt::Debug for TsaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsaConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("policy", &self.policy)
            .field("cert_req", &self.cert_req)
            .field("timeout_secs", &self.timeout_secs)
            .field("retries", &self.retries)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "(set)"))
            .field("ca_file", &self.ca_file)
            .field("certs_file", &self.certs_file)
            .finish()
    }
}

/// Who the gateway is, as written into receipts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub name: String,
    #[serde(default)]
    pub organization: Option<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            name: "mailnotary".into(),
            organization: None,
        }
    }
}

/// Which store to use and how.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The engine; when unset, an existing store's engine, else redb.
    #[serde(default)]
    pub backend: Option<BackendKind>,
    /// The engine's page cache in MiB.
    #[serde(default = "default_cache_mib")]
    pub cache_mib: usize,
}

fn default_cache_mib() -> usize {
    64
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: None,
            cache_mib: default_cache_mib(),
        }
    }
}

/// Reads `env:NAME` from the environment, or takes the value as it is;
/// `what` names the setting in the error.
pub fn secret(value: &str, what: &str) -> Result<String, String> {
    match value.strip_prefix("env:") {
        Some(name) => std::env::var(name)
            .map_err(|_| format!("{what}: the environment variable {name} is not set")),
        None => Ok(value.to_owned()),
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl Config {
    /// Loads `path`; with `explicit` false a missing file means defaults.
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Config::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped example documents the defaults: it must parse, and the
    /// values it shows must be the built-in ones.
    #[test]
    fn the_example_file_parses_and_shows_the_defaults() {
        let config: Config = toml::from_str(include_str!("../mailnotary.example.toml"))
            .unwrap_or_else(|e| panic!("mailnotary.example.toml: {e}"));
        assert_eq!(
            format!("{:?}", config.smtp),
            format!("{:?}", SmtpConfig::default())
        );
        assert_eq!(
            format!("{:?}", config.http),
            format!("{:?}", HttpConfig::default())
        );
        assert_eq!(
            format!("{:?}", config.stamping),
            format!("{:?}", StampingConfig::default())
        );
        assert_eq!(config.store.cache_mib, StoreConfig::default().cache_mib);
        assert_eq!(
            config.archive.purge_interval_secs,
            ArchiveConfig::default().purge_interval_secs
        );
        assert!(config.policy.dir.is_none() && config.notify.is_none());
        assert_eq!(
            format!("{:?}", config.dns),
            format!("{:?}", DnsConfig::default())
        );
    }

    /// The example's commented `[[imap]]` table, once uncommented (its
    /// alternatives stay commented twice), is a valid account with the
    /// defaults it states.
    #[test]
    fn the_example_imap_account_parses() {
        let config = uncommented_example("# [[imap]]");
        let imap = &config.imap[0];
        assert_eq!(imap.name, "sales-sent");
        assert_eq!(imap.tls, TlsMode::Implicit);
        assert_eq!(imap.folders, ["INBOX", "Sent*"]);
        assert_eq!(imap.poll_interval, default_poll_interval());
        assert_eq!(imap.fetch_chunk, default_fetch_chunk());
        assert!(imap.idle);
    }

    /// The example's commented table that starts at `marker`, up to the
    /// next blank line, uncommented (its alternatives, commented twice,
    /// stay out) and parsed.
    fn uncommented_example(marker: &str) -> Config {
        let example = include_str!("../mailnotary.example.toml");
        let start = example.find(marker).unwrap();
        let table: String = example[start..]
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .filter(|l| l.starts_with("# ") && !l.starts_with("# # "))
            .map(|l| &l[2..])
            .collect::<Vec<_>>()
            .join("\n");
        toml::from_str(&table).unwrap_or_else(|e| panic!("{e}\n{table}"))
    }

    /// The same for the `[notify]` smarthost.
    #[test]
    fn the_example_smarthost_parses() {
        let config = uncommented_example("# [notify]");
        let notify = config.notify.unwrap();
        assert_eq!(notify.tls, default_notify_tls());
        assert_eq!(notify.timeout_secs, default_timeout_secs());
        assert_eq!(notify.retry_secs, default_retry_secs());
        assert_eq!(notify.port, None);
    }
}
