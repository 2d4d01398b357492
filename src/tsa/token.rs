// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Reading timestamp tokens, ours and other authorities'.
//!
//! Real TSAs write genTime with fractional seconds, which the der crate
//! refuses; rasn-cms reads them. [`inspect`] accepts a bare TimeStampToken
//! or a whole TimeStampResp and returns what the TSTInfo says, without
//! checking any signature: that is [`crate::signing::Trust::verify`]'s job.

use rasn_cms::tsp::{TimeStampResp, TstInfo};
use rasn_cms::{ContentInfo, SignedData};

/// What a token's TSTInfo says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// genTime, with the fraction the TSA wrote.
    pub gen_time: chrono::DateTime<chrono::FixedOffset>,
    /// The imprint's hash algorithm, dotted.
    pub hash_algorithm: String,
    /// The imprint: the digest that was stamped.
    pub imprint: Vec<u8>,
    /// The TSA's policy, dotted.
    pub policy: String,
    /// The serial number, decimal.
    pub serial: String,
    /// The nonce, decimal, when the request had one.
    pub nonce: Option<String>,
}

/// The TimeStampToken of a DER TimeStampToken or TimeStampResp, with its
/// bytes as they were received (a signature covers bytes, so nothing is
/// re-encoded).
pub fn token_bytes(der: &[u8]) -> Result<Vec<u8>, String> {
    // A TimeStampToken is a ContentInfo: SEQUENCE { OID, [0] ... }.
    let first: Option<der::Any> = der::Decode::from_der(der)
        .ok()
        .and_then(|seq: Vec<der::Any>| seq.into_iter().next());
    if first.is_some_and(|f| der::Tagged::tag(&f) == der::Tag::ObjectIdentifier) {
        return Ok(der.to_vec());
    }
    super::response::parse(der)
        .map_err(|e| format!("neither a TimeStampToken nor a TimeStampResp: {e}"))?
        .token
        .ok_or_else(|| "the response carries no token (the TSA refused the request)".into())
}

/// Reads the TSTInfo of a DER TimeStampToken or TimeStampResp.
pub fn inspect(der: &[u8]) -> Result<TokenInfo, String> {
    let token = match rasn::der::decode::<ContentInfo>(der) {
        Ok(info) => info,
        Err(_) => rasn::der::decode::<TimeStampResp>(der)
            .map_err(|e| format!("neither a TimeStampToken nor a TimeStampResp: {e}"))?
            .time_stamp_token
            .ok_or("the response carries no token (the TSA refused the request)")?,
    };
    if token.content_type != *rasn_cms::CONTENT_SIGNED_DATA {
        return Err("the token is not SignedData".into());
    }
    let signed: SignedData = rasn::der::decode(token.content.as_bytes())
        .map_err(|e| format!("the token's SignedData does not decode: {e}"))?;
    let content = signed
        .encap_content_info
        .content
        .ok_or("the token has no TSTInfo inside")?;
    let info: TstInfo =
        rasn::der::decode(&content).map_err(|e| format!("the TSTInfo does not decode: {e}"))?;
    Ok(TokenInfo {
        gen_time: info.gen_time,
        hash_algorithm: info.message_imprint.hash_algorithm.algorithm.to_string(),
        imprint: info.message_imprint.hashed_message.to_vec(),
        policy: info.policy.to_string(),
        serial: info.serial_number.to_string(),
        nonce: info.nonce.map(|n| n.to_string()),
    })
}
