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
