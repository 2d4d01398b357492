// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `verify` on arbitrary files (message, receipt, evidence record, each
//! after its length), against a real gateway CA: see `checks::verify`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mailnotary::signing::Trust;

static TRUST: LazyLock<Trust> = LazyLock::new(checks::fixture_trust);

fuzz_target!(|bytes: &[u8]| checks::verify(&TRUST, bytes));
