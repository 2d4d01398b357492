// SPDX-License-Identifier: Apache-2.0 OR MIT
//! RFC 4998 hash trees: many digests under one root, and for each digest
//! the short list of hashes that leads from it to the root.
//!
//! The stamper puts every message of a batch window under one root and has
//! only the root timestamped; each message's evidence record then carries
//! its reduced hash tree (RFC 4998 §4.2, the `reducedHashtree` of an
//! ArchiveTimeStamp). This module is the arithmetic of those trees, without
//! ASN.1 and without timestamps.
//!
//! RFC 4998 §5.3 can be read two ways where a level has a node without a
//! neighbour. This module follows Bouncy Castle's `org.bouncycastle.tsp.ers`,
//! the most widely deployed validator, so that its records verify there:
//!
//! - building: the leaves are sorted in binary order; neighbours are paired,
//!   each pair is sorted, concatenated and hashed; an odd last node moves up
//!   a level unchanged, with no list for that level in the reduced trees
//!   below it;
//! - verifying: a list that holds a single hash (after adding the running
//!   hash) is carried up unchanged rather than hashed again, which is what
//!   makes the moved-up nodes above work;
//! - a tree of a single leaf has that leaf as its root and no reduced tree.

use sha2::{Digest, Sha256};

/// A SHA-256 value in a tree.
pub type Hash = [u8; 32];

/// A tree built over a set of leaves.
#[derive(Debug, Clone)]
pub struct HashTree {
    /// levels[0] are the sorted leaves; the last level holds the root.
    levels: Vec<Vec<Hash>>,
}

/// Hashes a list of hashes the RFC 4998 way: sorted in binary order,
/// concatenated, hashed. A list of one hash is that hash, unchanged.
pub fn hash_list(list: &[Hash]) -> Hash {
    if list.len() == 1 {
        return list[0];
    }
    let mut sorted = list.to_vec();
    sorted.sort_unstable();
    let mut hasher = Sha256::new();
    for h in &sorted {
        hasher.update(h);
    }
    hasher.finalize().into()
}

impl HashTree {
    /// Builds the tree over `leaves` (in any order; duplicates are kept).
    /// Returns `None` for an empty set, which has no root.
    pub fn build(leaves: &[Hash]) -> Option<HashTree> {
        if leaves.is_empty() {
            return None;
        }
        let mut level = leaves.to_vec();
        level.sort_unstable();
        let mut levels = vec![level];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let above = below
                .chunks(2)
                .map(|pair| match pair {
                    [one] => *one,
                    two => hash_list(two),
                })
                .collect();
            levels.push(above);
        }
        Some(HashTree { levels })
    }

    /// The root hash, which is what gets timestamped.
    pub fn root(&self) -> Hash {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or_default()
    }

    /// The number of leaves.
    pub fn len(&self) -> usize {
        self.levels[0].len()
    }

    /// Whether the tree is empty (never: an empty set has no tree).
    pub fn is_empty(&self) -> bool {
        self.levels[0].is_empty()
    }

    /// The reduced hash tree of `leaf`: one list per level where the path
    /// has a neighbour, the first holding the leaf and that neighbour. Empty for a
    /// single-leaf tree. `None` when `leaf` is not in the tree.
    pub fn reduced(&self, leaf: &Hash) -> Option<Vec<Vec<Hash>>> {
        let mut index = self.levels[0].binary_search(leaf).ok()?;
        let mut lists = Vec::new();
        for level in &self.levels {
            if level.len() == 1 {
                break;
            }
            let neighbour = index ^ 1;
            if let Some(n) = level.get(neighbour) {
                // Until its first neighbour the leaf moves up unchanged, so
                // the first list pairs the leaf itself with that neighbour.
                if lists.is_empty() {
                    lists.push(vec![*leaf, *n]);
                } else {
                    lists.push(vec![*n]);
                }
            }
            index /= 2;
        }
        Some(lists)
    }
}

/// Recomputes the root from a leaf and its reduced hash tree, as a
/// validator does: the first list must hold the leaf; each later list is
/// hashed together with the running hash.
pub fn root_from_reduced(leaf: &Hash, reduced: &[Vec<Hash>]) -> Option<Hash> {
    let mut running = *leaf;
    for (i, list) in reduced.iter().enumerate() {
        if i == 0 {
            if !list.contains(leaf) {
                return None;
            }
            running = hash_list(list);
        } else {
            let mut with_running = list.clone();
            with_running.push(running);
            running = hash_list(&with_running);
        }
    }
    Some(running)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(n: u32) -> Hash {
        Sha256::digest(n.to_be_bytes()).into()
    }

    #[test]
    fn a_single_leaf_is_its_own_root_with_no_reduced_tree() {
        let tree = HashTree::build(&[leaf(1)]).unwrap();
        assert_eq!(tree.root(), leaf(1));
        assert_eq!(tree.reduced(&leaf(1)), Some(vec![]));
        assert_eq!(root_from_reduced(&leaf(1), &[]), Some(leaf(1)));
    }

    #[test]
    fn two_leaves_hash_as_a_sorted_pair() {
        let (a, b) = (leaf(1), leaf(2));
        let mut sorted = [a, b];
        sorted.sort();
        let expected: Hash = Sha256::digest([sorted[0], sorted[1]].concat()).into();
        assert_eq!(HashTree::build(&[b, a]).unwrap().root(), expected);
    }

    #[test]
    fn every_leaf_leads_to_the_root_for_any_size() {
        for n in 1..=33 {
            let leaves: Vec<Hash> = (0..n).map(leaf).collect();
            let tree = HashTree::build(&leaves).unwrap();
            let mut reversed = leaves.clone();
            reversed.reverse();
            assert_eq!(
                HashTree::build(&reversed).unwrap().root(),
                tree.root(),
                "order of leaves does not matter"
            );
            for l in &leaves {
                let reduced = tree.reduced(l).unwrap();
                assert_eq!(root_from_reduced(l, &reduced), Some(tree.root()), "n={n}");
            }
        }
    }

    #[test]
    fn an_odd_node_moves_up_without_a_list() {
        // Three leaves: the third (in sorted order) has no neighbour at the
        // bottom level, so its reduced tree has one list, at the level above.
        let leaves = [leaf(1), leaf(2), leaf(3)];
        let tree = HashTree::build(&leaves).unwrap();
        let mut sorted = leaves.to_vec();
        sorted.sort();
        let reduced = tree.reduced(&sorted[2]).unwrap();
        assert_eq!(reduced.len(), 1);
        assert_eq!(reduced[0], vec![sorted[2], hash_list(&sorted[..2])]);
        assert_eq!(root_from_reduced(&sorted[2], &reduced), Some(tree.root()));
    }

    #[test]
    fn a_changed_leaf_or_path_does_not_reach_the_root() {
        let leaves: Vec<Hash> = (0..10).map(leaf).collect();
        let tree = HashTree::build(&leaves).unwrap();
        let mut reduced = tree.reduced(&leaves[4]).unwrap();
        assert_eq!(root_from_reduced(&leaf(99), &reduced), None);
        reduced[1][0][0] ^= 1;
        assert_ne!(root_from_reduced(&leaves[4], &reduced), Some(tree.root()));
        assert!(tree.reduced(&leaf(99)).is_none());
    }
}
