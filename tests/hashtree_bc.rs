// SPDX-License-Identifier: Apache-2.0 OR MIT
//! RFC 4998 hash trees checked by Bouncy Castle's `org.bouncycastle.tsp.ers`:
//! the same root over the same leaves, and every reduced tree leads there.
// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::fmt::Write;

use common::{bouncy_castle, bouncy_castle_missing, skip};
use mailnotary::hashtree::{Hash, HashTree};
use sha2::{Digest, Sha256};

#[test]
fn bouncy_castle_agrees_on_roots_and_reduced_trees() {
    let test = "bouncy_castle_agrees_on_roots_and_reduced_trees";
    if let Some(why) = bouncy_castle_missing() {
        return skip(test, &why);
    }
    let dir = tempfile::tempdir().unwrap();
    // Sizes around powers of two, where odd nodes move up.
    for n in [1u32, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 100] {
        let leaves: Vec<Hash> = (0..n)
            .map(|i| Sha256::digest([n.to_be_bytes(), i.to_be_bytes()].concat()).into())
            .collect();
        let tree = HashTree::build(&leaves).unwrap();
        let mut text = format!("root {}\n", hex::encode(tree.root()));
        for leaf in &leaves {
            let lists: Vec<String> = tree
                .reduced(leaf)
                .unwrap()
                .iter()
                .map(|list| list.iter().map(hex::encode).collect::<Vec<_>>().join(","))
                .collect();
            writeln!(
                text,
                "leaf {} reduced {}",
                hex::encode(leaf),
                lists.join(";")
            )
            .unwrap();
        }
        let file = dir.path().join(format!("tree-{n}.txt"));
        std::fs::write(&file, text).unwrap();
        let out = bouncy_castle("BcHashTree.java", &[&file]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.trim() == format!("ok {n}"),
            "{n} leaves: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
