// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Receipts: the gateway's signed statement about one message.
//!
//! A receipt is CMS SignedData whose eContent is the DER
//! [`content::ReceiptContent`], signed with the receipt key of the local PKI
//! (see [`crate::signing`] for the exact form). `openssl cms -verify
//! -inform DER -CAfile ca.cert.pem` accepts it and prints the content.
//!
//! The eContentType is id-data (RFC 5652 §4): registering an object
//! identifier of the project's own is still to be done, and the content
//! identifies itself by its structure and version field.

pub mod content;

use const_oid::ObjectIdentifier;

use crate::tsa::pki::KeyPair;

/// id-data (RFC 5652 §4).
pub const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");

/// Why a receipt could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    #[error("internal error encoding a receipt (please report this bug): {0}")]
    Encoding(String),
}

/// Signs the DER receipt content with the receipt key.
pub fn sign(content_der: &[u8], key: &KeyPair) -> Result<Vec<u8>, ReceiptError> {
    crate::signing::sign(ID_DATA, content_der, key, true).map_err(ReceiptError::Encoding)
}
