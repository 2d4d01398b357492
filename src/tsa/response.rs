// SPDX-License-Identifier: Apache-2.0 OR MIT
//! TimeStampResp encoding (RFC 3161 §2.4.2).
//!
//! ```text
//! TimeStampResp ::= SEQUENCE { status PKIStatusInfo, timeStampToken TimeStampToken OPTIONAL }
//! PKIStatusInfo ::= SEQUENCE { status PKIStatus, statusString PKIFreeText OPTIONAL,
//!                              failInfo PKIFailureInfo OPTIONAL }
//! ```

use cms::content_info::ContentInfo;
use der::asn1::{BitString, Utf8StringRef};
use der::{Decode, Encode, Sequence};

/// PKIFailureInfo bit numbers (RFC 3161 §2.4.2).
pub const BAD_ALG: u8 = 0;
pub const BAD_DATA_FORMAT: u8 = 5;
pub const TIME_NOT_AVAILABLE: u8 = 14;
pub const UNACCEPTED_POLICY: u8 = 15;
pub const UNACCEPTED_EXTENSION: u8 = 16;
pub const SYSTEM_FAILURE: u8 = 25;

const GRANTED: u8 = 0;
const REJECTION: u8 = 2;

#[derive(Sequence)]
struct StatusInfo<'a> {
    status: u8,
    #[asn1(optional = "true")]
    status_string: Option<Vec<Utf8StringRef<'a>>>,
    #[asn1(optional = "true")]
    fail_info: Option<BitString>,
}

#[derive(Sequence)]
struct TimeStampResp<'a> {
    status: StatusInfo<'a>,
    #[asn1(optional = "true")]
    time_stamp_token: Option<ContentInfo>,
}

fn encode(resp: &TimeStampResp<'_>) -> Vec<u8> {
    // Encoding these fixed shapes cannot fail; an empty answer would make
    // the client report a malformed response rather than crash the server.
    resp.to_der().unwrap_or_default()
}

/// A granted response carrying `token`.
pub fn granted(token: &[u8]) -> Vec<u8> {
    let Ok(token) = ContentInfo::from_der(token) else {
        return rejection(SYSTEM_FAILURE, "the TSA produced a malformed token");
    };
    encode(&TimeStampResp {
        status: StatusInfo {
            status: GRANTED,
            status_string: None,
            fail_info: None,
        },
        time_stamp_token: Some(token),
    })
}

/// A rejection with failInfo bit `bit` set and an explanation.
pub fn rejection(bit: u8, text: &str) -> Vec<u8> {
    // A named bit list in DER has no trailing zero bits.
    let mut bytes = vec![0u8; usize::from(bit / 8) + 1];
    bytes[usize::from(bit / 8)] = 0x80 >> (bit % 8);
    let unused = 7 - bit % 8;
    let fail_info = BitString::new(unused, bytes).ok();
    let status_string = Utf8StringRef::new(text).ok().map(|t| vec![t]);
    encode(&TimeStampResp {
        status: StatusInfo {
            status: REJECTION,
            status_string,
            fail_info,
        },
        time_stamp_token: None,
    })
}

/// A TimeStampResp as a client reads it.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// PKIStatus: 0 granted, 1 grantedWithMods, 2 rejection, 3 waiting,
    /// 4 revocationWarning, 5 revocationNotification.
    pub status: u8,
    /// The statusString texts, joined.
    pub text: String,
    /// The failInfo bits set.
    pub fail_bits: Vec<u8>,
    /// The token's bytes as received, when there is one.
    pub token: Option<Vec<u8>>,
}

/// The same shape as [`TimeStampResp`] with the token kept as raw bytes,
/// since a signature covers bytes and foreign tokens may hold what the der
/// crate refuses (fractional genTime).
#[derive(Sequence)]
struct RawResp<'a> {
    status: StatusInfo<'a>,
    #[asn1(optional = "true")]
    time_stamp_token: Option<der::Any>,
}

/// Reads a DER TimeStampResp.
pub fn parse(der: &[u8]) -> Result<Parsed, String> {
    let resp = RawResp::from_der(der).map_err(|e| format!("not a TimeStampResp: {e}"))?;
    let fail_bits = resp
        .status
        .fail_info
        .as_ref()
        .map(|bits| {
            bits.bits()
                .enumerate()
                .filter(|(_, set)| *set)
                .map(|(i, _)| i as u8)
                .collect()
        })
        .unwrap_or_default();
    let text = resp
        .status
        .status_string
        .iter()
        .flatten()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let token = resp
        .time_stamp_token
        .map(|t| t.to_der())
        .transpose()
        .map_err(|e| format!("the token: {e}"))?;
    Ok(Parsed {
        status: resp.status.status,
        text,
        fail_bits,
        token,
    })
}
