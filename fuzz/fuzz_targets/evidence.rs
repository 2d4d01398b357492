// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Arbitrary bytes as an evidence record and a time-stamp token: see
//! `checks::evidence`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| checks::evidence(bytes));
