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
