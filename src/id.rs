// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Receipt identifiers.
//!
//! A receipt id is 16 bytes: the gateway clock at receipt in milliseconds
//! since the Unix epoch (48 bits, big-endian) followed by 80 random bits.
//! Keys that start with it therefore sort by arrival time, and ids made by
//! different gateways do not collide. It is written as 26 characters of
//! Crockford base32, the layout known as ULID, so that it can be read aloud
//! and typed without ambiguity (no I, L, O or U).

use std::fmt;
use std::str::FromStr;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The identifier of one stored message and of the receipt issued for it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReceiptId([u8; 16]);

impl ReceiptId {
    /// Makes a new id for a message received at `unix_millis`.
    pub fn generate(unix_millis: u64) -> Self {
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&unix_millis.to_be_bytes()[2..]);
        // The system's random source failing is not something a caller can
        // act on; fall back to the time-derived bytes rather than abort an
        // ingest, since uniqueness within one store is still checked on write.
        if getrandom::getrandom(&mut bytes[6..]).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            bytes[6..].copy_from_slice(&nanos.to_be_bytes()[6..]);
        }
        ReceiptId(bytes)
    }

    /// The id as stored in keys.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Rebuilds an id from its 16 stored bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        ReceiptId(bytes)
    }

    /// Rebuilds an id from a key slice; `None` when it is not 16 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(ReceiptId)
    }

    /// The receipt time embedded in the id, in milliseconds since the epoch.
    pub fn unix_millis(&self) -> u64 {
        let mut be = [0u8; 8];
        be[2..].copy_from_slice(&self.0[..6]);
        u64::from_be_bytes(be)
    }
}

impl fmt::Display for ReceiptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = u128::from_be_bytes(self.0);
        let mut out = [0u8; 26];
        for (i, slot) in out.iter_mut().enumerate() {
            let shift = 5 * (25 - i);
            *slot = ALPHABET[((value >> shift) & 0x1f) as usize];
        }
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for ReceiptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReceiptId({self})")
    }
}

/// Why a string is not a receipt id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a receipt id (expected 26 characters of Crockford base32, got {0:?})")]
pub struct ParseReceiptIdError(String);

impl FromStr for ReceiptId {
    type Err = ParseReceiptIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseReceiptIdError(s.to_string());
        if s.len() != 26 {
            return Err(err());
        }
        let mut value: u128 = 0;
        for (i, c) in s.bytes().enumerate() {
            let digit = match c.to_ascii_uppercase() {
                b'O' => 0,
                b'I' | b'L' => 1,
                c => ALPHABET.iter().position(|&a| a == c).ok_or_else(err)? as u128,
            };
            // The first character carries only 3 bits (26 * 5 = 130 > 128).
            if i == 0 && digit > 7 {
                return Err(err());
            }
            value = (value << 5) | digit;
        }
        Ok(ReceiptId(value.to_be_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_keeps_time_order() {
        let a = ReceiptId::generate(1_700_000_000_000);
        let b = ReceiptId::generate(1_700_000_000_001);
        assert_eq!(a.to_string().len(), 26);
        assert_eq!(a.to_string().parse::<ReceiptId>(), Ok(a));
        assert_eq!(a.unix_millis(), 1_700_000_000_000);
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
    }

    #[test]
    fn rejects_wrong_length_and_alphabet() {
        assert!("01HZ".parse::<ReceiptId>().is_err());
        assert!("8ZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<ReceiptId>().is_err());
        assert!("0000000000000000000000000U".parse::<ReceiptId>().is_err());
    }
}
