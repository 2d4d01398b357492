// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Arbitrary bytes as a receipt, checked against a real gateway CA: see
//! `checks::receipt`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mailnotary::signing::Trust;

static TRUST: LazyLock<Trust> = LazyLock::new(checks::fixture_trust);

fuzz_target!(|bytes: &[u8]| checks::receipt(&TRUST, bytes));
