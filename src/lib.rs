// SPDX-License-Identifier: Apache-2.0 OR MIT
//! mailnotary turns business e-mail into evidence that anyone can check.
//!
//! The crate is organised along the path a message takes:
//!
//! - [`envelope`] describes where a message came from (an SMTP session, an
//!   IMAP folder, a file on disk). Sources fill it in; nothing downstream
//!   knows their protocol.
//! - [`canonical`] and [`analysis`] form the evidence core: raw bytes in,
//!   metadata, anomalies and the three kinds of digest out (raw, canonical,
//!   one per MIME leaf part). They know nothing about storage or protocols.
//! - [`store`] owns the ordered key-value interface and its two embedded
//!   backends (redb, the default, and sled), with one writer thread that
//!   groups concurrent writes into one durable commit.
//! - [`archive`] is the pipeline on top of the store: it deduplicates by raw
//!   digest, records sightings, keeps the indexes and the threads, answers
//!   lookups and re-checks what it holds.
//! - [`hashtree`] is the arithmetic of RFC 4998 hash trees, which the
//!   stamper will use to put a batch of messages under one timestamp.
//! - [`tsa`] is the built-in RFC 3161 timestamp authority and the local
//!   PKI (CA and timestamping certificate) of the embedded defaults.
//! - [`ers`] encodes RFC 4998 evidence records: a reduced hash tree and the
//!   timestamp token over its root.
//! - [`receipt`] defines the receipt content (DER, with rasn) and signs it
//!   as CMS through [`signing`], which the TSA shares.
//! - [`bundle`] writes evidence bundles (zip) that a stranger checks with
//!   OpenSSL and an RFC 4998 validator.
//! - [`source`] reads mail from files on disk (`.eml`, Maildir, mbox) for the
//!   `ingest` command.
//!
//! `docs/architecture.md` walks through the same layout with a message's
//! journey, and `docs/formats.md` specifies every byte layout that is
//! hashed or stored.

pub mod analysis;
pub mod api;
pub mod archive;
pub mod bundle;
pub mod canonical;
pub mod config;
pub mod dkim;
pub mod envelope;
pub mod ers;
pub mod hashtree;
pub mod id;
pub mod imap;
pub mod net;
pub mod notify;
pub mod policy;
pub mod receipt;
pub mod signing;
pub mod smtp;
pub mod source;
pub mod store;
pub mod tsa;
