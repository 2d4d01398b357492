// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The `mailnotary` command line.

mod cli;

/// mimalloc rather than glibc's malloc: see the comment in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(cli::run());
}
