// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The running stamper: the loop a long-lived gateway runs beside its
//! sources.
//!
//! It stamps what is pending at once, then again after every batch window,
//! in batches of at most `max_batch` with one timestamp request each. When no TSA answers it waits
//! with doubling backoff, up to a ceiling, and tries again; the messages
//! stay pending meanwhile and nothing is dropped. Stopping is cooperative:
//! the loop checks its stop flag at least every 50 ms and never in the
//! middle of a batch, which is one durable write.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::evidence::{ReceiptSigner, Stamper};
use super::{Archive, ArchiveError};

/// How the loop paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// How long messages gather before a batch.
    pub window: Duration,
    /// The most messages per batch.
    pub max_batch: usize,
    /// The first wait after a failure; it doubles with each failure in a row.
    pub first_backoff: Duration,
    /// The longest wait after failures.
    pub max_backoff: Duration,
    /// Return as soon as nothing is pending, instead of waiting for more
    /// (`mailnotary stamp --wait` after an outage).
    pub until_idle: bool,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            window: Duration::from_secs(1),
            max_batch: 10_000,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            until_idle: false,
        }
    }
}

/// What a run of the loop did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StamperStats {
    pub batches: u64,
    pub messages: u64,
    /// Stamping attempts that failed because no TSA answered.
    pub failures: u64,
}

/// Sleeps `total`, or less if `stop` is set.
fn nap(total: Duration, stop: &AtomicBool) {
    let until = Instant::now() + total;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

impl Archive {
    /// Runs the stamper until `stop` is set. A store error ends the loop
    /// with that error; a TSA failure only delays the next attempt.
    pub fn run_stamper(
        &self,
        signer: &ReceiptSigner,
        stamper: &dyn Stamper,
        pacing: Pacing,
        stop: &AtomicBool,
    ) -> Result<StamperStats, ArchiveError> {
        let mut stats = StamperStats::default();
        let mut backoff = pacing.first_backoff;
        // A round first, so that what was left pending is stamped at
        // start; then a batch window between rounds.
        while !stop.load(Ordering::Relaxed) {
            loop {
                if stop.load(Ordering::Relaxed) {
                    return Ok(stats);
                }
                match self.stamp_pending(signer, stamper, pacing.max_batch.max(1)) {
                    Ok(Some(summary)) => {
                        stats.batches += 1;
                        stats.messages += summary.batch.messages;
                        backoff = pacing.first_backoff;
                    }
                    Ok(None) if pacing.until_idle => return Ok(stats),
                    Ok(None) => break,
                    Err(ArchiveError::Stamp(tsa, why)) => {
                        stats.failures += 1;
                        tracing::warn!(%tsa, error = %why, wait_ms = backoff.as_millis() as u64,
                            "stamping failed; messages stay pending");
                        nap(backoff, stop);
                        backoff = (backoff * 2).min(pacing.max_backoff);
                    }
                    Err(other) => return Err(other),
                }
            }
            nap(pacing.window, stop);
        }
        Ok(stats)
    }
}
