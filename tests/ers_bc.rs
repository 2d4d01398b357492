// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Evidence records built from a hash tree and a token of the built-in TSA,
//! validated by Bouncy Castle's `org.bouncycastle.tsp.ers`; and a changed
//! data object refused by it.
// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::{bouncy_castle, bouncy_castle_missing, skip};
use mailnotary::hashtree::{Hash, HashTree};
use mailnotary::tsa::Tsa;
use mailnotary::tsa::pki::LocalPki;
use sha2::{Digest, Sha256};

fn validate(pairs: &[(PathBuf, PathBuf)]) -> Output {
    let args: Vec<&PathBuf> = pairs.iter().flat_map(|(r, d)| [r, d]).collect();
    bouncy_castle("BcEvidenceRecord.java", &args)
}

#[test]
fn bouncy_castle_validates_our_evidence_records() {
    let test = "bouncy_castle_validates_our_evidence_records";
    if let Some(why) = bouncy_castle_missing() {
        return skip(test, &why);
    }
    let dir = tempfile::tempdir().unwrap();
    let tsa = Tsa::new(LocalPki::open_or_create(dir.path(), "gw").unwrap());

    for count in [1usize, 2, 5] {
        let objects: Vec<Vec<u8>> = (0..count)
            .map(|i| format!("receipt content {i} of {count}").into_bytes())
            .collect();
        let leaves: Vec<Hash> = objects.iter().map(|o| Sha256::digest(o).into()).collect();
        let tree = HashTree::build(&leaves).unwrap();
        let token = tsa.stamp(&tree.root(), None).unwrap();

        let mut pairs = Vec::new();
        for (i, (object, leaf)) in objects.iter().zip(&leaves).enumerate() {
            let record = mailnotary::ers::build(&tree.reduced(leaf).unwrap(), &token).unwrap();
            // Our own reader gets back what was written.
            let parsed = mailnotary::ers::parse(&record).unwrap();
            let stamp = &parsed.archive_time_stamp_sequence[0][0];
            assert_eq!(stamp.reduced().unwrap(), tree.reduced(leaf).unwrap());
            assert_eq!(stamp.token().unwrap(), token);

            let record_path = dir.path().join(format!("{count}-{i}.ers"));
            let data_path = dir.path().join(format!("{count}-{i}.der"));
            std::fs::write(&record_path, record).unwrap();
            std::fs::write(&data_path, object).unwrap();
            pairs.push((record_path, data_path));
        }
        let out = validate(&pairs);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.trim() == format!("ok {count}"),
            "{count} objects: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // Bouncy Castle refuses the record for a changed object.
        let changed = dir.path().join(format!("{count}-changed.der"));
        std::fs::write(&changed, b"receipt content with another price").unwrap();
        let out = validate(&[(pairs[0].0.clone(), changed)]);
        assert!(
            !out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
