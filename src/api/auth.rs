// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Bearer tokens of the HTTP API.
//!
//! A token is `mn_` followed by 43 characters of base64url: 256 random
//! bits. The gateway keeps only a salted SHA-256 of it, written as
//! `sha256$SALT$HASH` (hexadecimal), in the configuration (`[[http.token]]`)
//! or, for the administrator token made on first start, in the store. A
//! slow password hash would add nothing: the token has the full entropy
//! of its 256 bits, so no dictionary can guess it. Every presented token is
//! hashed with each entry's salt and compared in constant time.
//!
//! Scopes: `read` (queries, receipts, metrics), `export` (bundles),
//! `verify` (uploads to verify), and `admin`, which holds all of them.

use sha2::{Digest, Sha256};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Export,
    Verify,
    Admin,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Export => "export",
            Scope::Verify => "verify",
            Scope::Admin => "admin",
        }
    }

    /// Reads a scope's name.
    pub fn parse(text: &str) -> Result<Scope, String> {
        match text {
            "read" => Ok(Scope::Read),
            "export" => Ok(Scope::Export),
            "verify" => Ok(Scope::Verify),
            "admin" => Ok(Scope::Admin),
            other => Err(format!(
                "{other:?} is not a scope; use read, export, verify or admin"
            )),
        }
    }
}

/// One accepted token, by its hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TokenEntry {
    /// Who holds it, for the audit log.
    pub name: String,
    /// `sha256$SALT$HASH`.
    pub hash: String,
    pub scopes: Vec<Scope>,
}

/// Whom a request was let in for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl Caller {
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }
}

/// A new token and the entry that accepts it.
pub fn create(name: &str, scopes: Vec<Scope>) -> Result<(String, TokenEntry), String> {
    use base64ct::{Base64UrlUnpadded, Encoding};
    let mut secret = [0u8; 32];
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut secret).map_err(|e| format!("no randomness: {e}"))?;
    getrandom::getrandom(&mut salt).map_err(|e| format!("no randomness: {e}"))?;
    let token = format!("mn_{}", Base64UrlUnpadded::encode_string(&secret));
    let hash = format!(
        "sha256${}${}",
        hex::encode(salt),
        hex::encode(digest(&salt, &token))
    );
    Ok((
        token,
        TokenEntry {
            name: name.to_string(),
            hash,
            scopes,
        },
    ))
}

fn digest(salt: &[u8], token: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(salt)
        .chain_update(token.as_bytes())
        .finalize()
        .into()
}

/// Equal in time that does not depend on where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl TokenEntry {
    /// Checks the entry's form: `sha256$` with 16 to 64 bytes of salt and
    /// 32 of hash, in hexadecimal.
    pub fn check(&self) -> Result<(), String> {
        self.parts().map(|_| ())
    }

    fn parts(&self) -> Result<(Vec<u8>, Vec<u8>), String> {
        let mut fields = self.hash.split('$');
        let bad = || {
            format!(
                "token {:?}: hash must be sha256$SALT$HASH as `mailnotary token create` prints",
                self.name
            )
        };
        let (Some("sha256"), Some(salt), Some(hash), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(bad());
        };
        let salt = hex::decode(salt).map_err(|_| bad())?;
        let hash = hex::decode(hash).map_err(|_| bad())?;
        if !(16..=64).contains(&salt.len()) || hash.len() != 32 {
            return Err(bad());
        }
        if self.scopes.is_empty() {
            return Err(format!("token {:?}: give it at least one scope", self.name));
        }
        Ok((salt, hash))
    }

    fn accepts(&self, token: &str) -> bool {
        match self.parts() {
            Ok((salt, hash)) => same(&digest(&salt, token), &hash),
            Err(_) => false,
        }
    }
}

/// The caller a presented token belongs to. Every entry is tried, so the
/// time taken does not tell which one matched.
pub fn authenticate(entries: &[TokenEntry], token: &str) -> Option<Caller> {
    let mut found = None;
    for entry in entries {
        if entry.accepts(token) && found.is_none() {
            found = Some(Caller {
                name: entry.name.clone(),
                scopes: entry.scopes.clone(),
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_token_is_accepted_and_nothing_else() {
        let (token, entry) = create("compliance", vec![Scope::Read]).unwrap();
        assert!(token.starts_with("mn_") && token.len() == 46, "{token}");
        entry.check().unwrap();
        let entries = vec![entry.clone()];
        let caller = authenticate(&entries, &token).unwrap();
        assert_eq!(caller.name, "compliance");
        assert!(caller.may(Scope::Read) && !caller.may(Scope::Export));
        let mut other = token.clone();
        other.pop();
        other.push('x');
        assert!(authenticate(&entries, &other).is_none() || other == token);
        assert!(authenticate(&entries, "").is_none());
        let admin = Caller {
            name: "a".into(),
            scopes: vec![Scope::Admin],
        };
        assert!(admin.may(Scope::Export) && admin.may(Scope::Verify));
    }

    #[test]
    fn malformed_entries_are_refused() {
        for hash in [
            "",
            "md5$00$00",
            "sha256$zz$00",
            "sha256$00$00",
            "sha256$a$b$c",
        ] {
            let e = TokenEntry {
                name: "t".into(),
                hash: hash.into(),
                scopes: vec![Scope::Read],
            };
            assert!(e.check().is_err(), "{hash}");
        }
    }
}
