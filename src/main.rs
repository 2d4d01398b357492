// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The `mailnotary` command line.

mod cli;

fn main() {
    std::process::exit(cli::run());
}
