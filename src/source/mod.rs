// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Mail read from files: single `.eml` files, Maildir folders and mbox files.
//!
//! [`walk`] turns the paths given to `mailnotary ingest` into a stream of
//! [`Found`] items. What a path is, is decided by looking at it, not at its
//! name:
//!
//! - a folder with `cur/` or `new/` below it is a Maildir: the files in
//!   `cur/` and `new/`, then every Maildir++ subfolder (`.Name`);
//! - any other folder is walked in name order, and the files in it that are
//!   not mail (a README, a JSON file) are skipped and reported as such;
//! - a file whose first line starts with `From ` is an mbox, split on those
//!   lines (`>From ` quoting is undone, as mboxrd writers expect);
//! - any other file is one message if its first line is a header field.
//!
//! A path named on the command line that cannot be read, or that is a file
//! but not mail, is a [`Found::Failed`] with the reason; the walk goes on
//! with the other paths.

use std::fs;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::canonical::{field_name_len, is_mbox_separator};

/// Files larger than this are refused by `ingest` (the SMTP listener has its
/// own, configurable limit).
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// One thing found while walking.
#[derive(Debug)]
pub enum Found {
    /// A message: its bytes, the file it came from and, inside an mbox,
    /// its position (from 1).
    Message {
        path: PathBuf,
        mbox_index: Option<u64>,
        bytes: Vec<u8>,
    },
    /// A file met while walking a folder that is not mail.
    Skipped { path: PathBuf, reason: String },
    /// A path that could not be read, or a named file that is not mail.
    Failed { path: PathBuf, reason: String },
}

/// Walks `paths` in order, calling `found` for each item.
pub fn walk(paths: &[PathBuf], found: &mut dyn FnMut(Found)) {
    for path in paths {
        walk_path(path, true, found);
    }
}

fn walk_path(path: &Path, named: bool, found: &mut dyn FnMut(Found)) {
    let failed = |reason: String| Found::Failed {
        path: path.to_path_buf(),
        reason,
    };
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) => return found(failed(io_reason(&e))),
    };
    if meta.is_dir() {
        if is_maildir(path) {
            return walk_maildir(path, found);
        }
        let mut entries = match fs::read_dir(path) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .collect::<Vec<_>>(),
            Err(e) => return found(failed(io_reason(&e))),
        };
        entries.sort();
        for entry in entries {
            walk_path(&entry, false, found);
        }
        return;
    }
    if !meta.is_file() {
        return found(failed("not a regular file or folder".into()));
    }
    if meta.len() > MAX_FILE_BYTES {
        return found(failed(format!(
            "file is {} bytes, more than the {} bytes ingest accepts",
            meta.len(),
            MAX_FILE_BYTES
        )));
    }
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return found(failed(io_reason(&e))),
    };
    let mut head = [0u8; 1024];
    let head_len = read_up_to(&mut file, &mut head);
    let first_line = head[..head_len]
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or_default();
    if is_mbox_separator(first_line) {
        return walk_mbox(path, found);
    }
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) => return found(failed(io_reason(&e))),
    };
    match not_mail_reason(&bytes) {
        None => found(Found::Message {
            path: path.to_path_buf(),
            mbox_index: None,
            bytes,
        }),
        Some(reason) if named => found(failed(reason)),
        Some(reason) => found(Found::Skipped {
            path: path.to_path_buf(),
            reason,
        }),
    }
}

fn read_up_to(file: &mut fs::File, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    filled
}

/// Why `bytes` is not an e-mail message, or `None` when it looks like one.
pub fn not_mail_reason(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() {
        return Some("the file is empty".into());
    }
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let first = &bytes[..end];
    if field_name_len(first).is_none() {
        let shown: String = String::from_utf8_lossy(&first[..first.len().min(40)])
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        return Some(format!(
            "not an e-mail message: the first line {shown:?} is not a header field \
             (expected \"Name: value\", or \"From \" for an mbox file)"
        ));
    }
    None
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or folder".into(),
        std::io::ErrorKind::PermissionDenied => {
            "permission denied: make it readable by the user running mailnotary".into()
        }
        _ => format!("cannot read: {e}"),
    }
}

fn is_maildir(path: &Path) -> bool {
    path.join("cur").is_dir() || path.join("new").is_dir()
}

fn walk_maildir(path: &Path, found: &mut dyn FnMut(Found)) {
    for sub in ["cur", "new"] {
        let dir = path.join(sub);
        let Ok(rd) = fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for file in files {
            match fs::read(&file) {
                Ok(bytes) => found(Found::Message {
                    path: file,
                    mbox_index: None,
                    bytes,
                }),
                Err(e) => found(Found::Failed {
                    reason: io_reason(&e),
                    path: file,
                }),
            }
        }
    }
    // Maildir++ subfolders are siblings of cur/ whose names start with a dot.
    let Ok(rd) = fs::read_dir(path) else {
        return;
    };
    let mut subs: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.') && n.len() > 1)
                && is_maildir(p)
        })
        .collect();
    subs.sort();
    for sub in subs {
        walk_maildir(&sub, found);
    }
}

fn walk_mbox(path: &Path, found: &mut dyn FnMut(Found)) {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            return found(Found::Failed {
                path: path.to_path_buf(),
                reason: io_reason(&e),
            });
        }
    };
    let iter = mail_parser::mailbox::mbox::MessageIterator::new(BufReader::new(file));
    for (i, message) in iter.enumerate() {
        match message {
            Ok(m) => found(Found::Message {
                path: path.to_path_buf(),
                mbox_index: Some(i as u64 + 1),
                bytes: m.unwrap_contents(),
            }),
            Err(e) => {
                return found(Found::Failed {
                    path: path.to_path_buf(),
                    reason: format!("mbox message {}: {}", i + 1, io_reason(&e)),
                });
            }
        }
    }
}
