// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Policies: which rule applies to a message, and what it decides.
//!
//! A policy is a folder of TOML files, read in the byte order of their
//! names (files whose names do not end in `.toml`, or start with a dot, are
//! left alone). Each file holds `[[rule]]` tables; all rules of all files
//! form one list, and the first rule whose `match` table fits the message
//! decides for it. The last rule must be a catch-all (no `match` table), so
//! that every message is decided by a rule the operator wrote, and a rule
//! after a catch-all is refused because it could never apply.
//!
//! A `match` table holds conditions; a rule matches when all of them hold,
//! and a condition given as a list holds when any of its values does.
//! Values may contain `*`, which stands for any run of characters. Address
//! and domain conditions ignore letter case; IMAP account and folder names
//! do not, as IMAP itself treats folder names as case-sensitive.
//!
//! | condition | compared with |
//! |---|---|
//! | `envelope_from` | the SMTP MAIL FROM address (no other source has one) |
//! | `envelope_to` | each SMTP RCPT TO address |
//! | `from_domain` | the domain of each From header address |
//! | `to_domain` | the domain of each To and Cc header address |
//! | `source` | `smtp`, `imap` or `import` |
//! | `imap_account`, `imap_folder` | the watched account's name and folder |
//!
//! A policy error (a file that is not TOML, an unknown key, a value that is
//! not one of the allowed ones, a missing catch-all) names the file, the
//! line and the key, and `serve` and `ingest` refuse to start with it:
//! guessing what the operator meant could archive what should have been
//! kept out, or the other way round.
//!
//! Known limit: `withhold` takes header fields and attachment file names,
//! but not Message-ID, In-Reply-To or References, which build threads; the
//! SMTP envelope (MAIL FROM, RCPT TO) is always recorded, as it is the
//! archive's own witness of who sent the copy to whom.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::analysis::Metadata;
use crate::archive::Mode;
use crate::envelope::Source;

/// The shipped default policy, used when no policy folder is configured.
pub const BUILTIN_DEFAULT: &str = include_str!("../policies/default.toml");

/// An error in a policy, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The file, or the folder for errors about the policy as a whole.
    pub file: String,
    /// The line (from 1) when the error is in one place of the file.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for PolicyError {}

/// Which header fields a rule keeps out of the store and the receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Subject,
    From,
    To,
    Cc,
    Date,
    /// The file names of attachments (their digests stay).
    AttachmentNames,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::Subject => "subject",
            Field::From => "from",
            Field::To => "to",
            Field::Cc => "cc",
            Field::Date => "date",
            Field::AttachmentNames => "attachment_names",
        }
    }
}

/// Whether DKIM signatures are checked at ingest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dkim {
    #[default]
    Verify,
    Off,
}

/// How long a message's bytes are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Days(u32),
    Months(u32),
}

impl Retention {
    /// Reads `90d`, `12w`, `6m` or `7y`.
    pub fn parse(text: &str) -> Result<Retention, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let n: u32 = number
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| retention_hint(text))?;
        let retention = match unit {
            "d" => Retention::Days(n),
            "w" => Retention::Days(n.checked_mul(7).ok_or_else(|| retention_hint(text))?),
            "m" => Retention::Months(n),
            "y" => Retention::Months(n.checked_mul(12).ok_or_else(|| retention_hint(text))?),
            _ => return Err(retention_hint(text)),
        };
        Ok(retention)
    }

    /// The moment a message received at `received_at` (milliseconds since
    /// the epoch) expires, by the calendar for months and years.
    pub fn expires(self, received_at: u64) -> u64 {
        let start = chrono::DateTime::from_timestamp_millis(received_at as i64).unwrap_or_default();
        let end = match self {
            Retention::Days(d) => start.checked_add_signed(chrono::Duration::days(i64::from(d))),
            Retention::Months(m) => start.checked_add_months(chrono::Months::new(m)),
        };
        end.map_or(u64::MAX, |t| t.timestamp_millis().max(0) as u64)
    }
}

fn retention_hint(text: &str) -> String {
    format!(
        "retention {text:?} is not a duration; write a number and a unit: \"90d\" (days), \
         \"12w\" (weeks), \"6m\" (months) or \"7y\" (years), or leave retention out to keep \
         the message's bytes for ever"
    )
}

/// What a rule decides for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actions {
    pub mode: Mode,
    pub withhold: Vec<Field>,
    /// As written in the rule (`"7y"`), and parsed.
    pub retention: Option<(String, Retention)>,
    pub legal_hold: bool,
    /// Names of configured TSAs; empty for the configured default.
    pub tsa: Vec<String>,
    pub dkim: Dkim,
    pub notify: Vec<String>,
    pub statement: Option<String>,
}

/// One rule, with where it was written.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub file: String,
    pub line: usize,
    conditions: Vec<Condition>,
    pub actions: Actions,
}

impl Rule {
    /// Where the rule is written, as `file:line`.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    pub fn is_catch_all(&self) -> bool {
        self.conditions.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    EnvelopeFrom,
    EnvelopeTo,
    FromDomain,
    ToDomain,
    Source,
    ImapAccount,
    ImapFolder,
}

impl Key {
    fn name(self) -> &'static str {
        match self {
            Key::EnvelopeFrom => "envelope_from",
            Key::EnvelopeTo => "envelope_to",
            Key::FromDomain => "from_domain",
            Key::ToDomain => "to_domain",
            Key::Source => "source",
            Key::ImapAccount => "imap_account",
            Key::ImapFolder => "imap_folder",
        }
    }

    /// Whether letter case is ignored.
    fn folds_case(self) -> bool {
        !matches!(self, Key::ImapAccount | Key::ImapFolder)
    }
}

#[derive(Debug, Clone)]
struct Condition {
    key: Key,
    patterns: Vec<String>,
}

/// The facts about one message that rules look at.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub source: String,
    pub envelope_from: Option<String>,
    pub envelope_to: Vec<String>,
    pub from_domains: Vec<String>,
    pub to_domains: Vec<String>,
    pub imap_account: Option<String>,
    pub imap_folder: Option<String>,
}

impl Facts {
    /// The facts of a message from `source` with header fields `meta`.
    pub fn of(source: &Source, meta: &Metadata) -> Facts {
        let mut facts = Facts::from_headers(source.kind(), meta);
        match source {
            Source::Smtp {
                mail_from, rcpt_to, ..
            } => {
                facts.envelope_from = Some(mail_from.clone());
                facts.envelope_to = rcpt_to.clone();
            }
            Source::Imap {
                account, folder, ..
            } => {
                facts.imap_account = Some(account.clone());
                facts.imap_folder = Some(folder.clone());
            }
            Source::Import { .. } => {}
        }
        facts
    }

    /// The facts that the header fields `meta` give, for a message from
    /// a source of kind `source` (`smtp`, `imap`, `import`); the envelope
    /// and IMAP facts are left empty.
    pub fn from_headers(source: &str, meta: &Metadata) -> Facts {
        let domain = |address: &str| {
            address
                .rsplit_once('@')
                .map(|(_, d)| d.to_string())
                .unwrap_or_default()
        };
        Facts {
            source: source.to_string(),
            from_domains: meta.from.iter().map(|m| domain(&m.address)).collect(),
            to_domains: meta
                .to
                .iter()
                .chain(&meta.cc)
                .map(|m| domain(&m.address))
                .collect(),
            ..Facts::default()
        }
    }

    fn values(&self, key: Key) -> Vec<&str> {
        match key {
            Key::EnvelopeFrom => self.envelope_from.iter().map(String::as_str).collect(),
            Key::EnvelopeTo => self.envelope_to.iter().map(String::as_str).collect(),
            Key::FromDomain => self.from_domains.iter().map(String::as_str).collect(),
            Key::ToDomain => self.to_domains.iter().map(String::as_str).collect(),
            Key::Source => vec![self.source.as_str()],
            Key::ImapAccount => self.imap_account.iter().map(String::as_str).collect(),
            Key::ImapFolder => self.imap_folder.iter().map(String::as_str).collect(),
        }
    }
}

/// `*` stands for any run of characters, everything else for itself.
fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Why a condition held or did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionOutcome {
    pub key: &'static str,
    pub held: bool,
    pub detail: String,
}

impl Condition {
    fn check(&self, facts: &Facts) -> ConditionOutcome {
        let fold = |s: &str| {
            if self.key.folds_case() {
                s.to_lowercase()
            } else {
                s.to_string()
            }
        };
        let values = facts.values(self.key);
        for value in &values {
            for pattern in &self.patterns {
                if wildcard(&fold(pattern), &fold(value)) {
                    return ConditionOutcome {
                        key: self.key.name(),
                        held: true,
                        detail: format!("{pattern:?} matches {value:?}"),
                    };
                }
            }
        }
        let detail = if values.is_empty() {
            format!("the message has no {}", self.key.name())
        } else {
            format!("none of {:?} matches {:?}", self.patterns, values)
        };
        ConditionOutcome {
            key: self.key.name(),
            held: false,
            detail,
        }
    }
}

/// The rules in force.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Where the rules came from: a folder, or the built-in default.
    pub origin: String,
    pub rules: Vec<Rule>,
}

/// The decision for one message: the rule and its actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub rule: String,
    pub actions: Actions,
}

/// What the configuration allows rules to name.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// The names of the configured TSAs (`builtin` is always known).
    pub tsas: Vec<String>,
    /// Whether a smarthost for notifications is configured.
    pub notify: bool,
}

impl Policy {
    /// The built-in default policy: the shipped `policies/default.toml`.
    pub fn builtin() -> Policy {
        // The shipped file is tested to parse; should it not, refuse
        // everything rather than guess (the error names the file).
        Policy::parse_files(
            "built-in default",
            vec![(
                "policies/default.toml (built in)".into(),
                BUILTIN_DEFAULT.into(),
            )],
            &Known::default(),
        )
        .unwrap_or_else(|e| Policy {
            origin: format!("broken built-in policy: {e}"),
            rules: Vec::new(),
        })
    }

    /// Reads every `.toml` file of `dir`, in name order.
    pub fn load(dir: &Path, known: &Known) -> Result<Policy, PolicyError> {
        let folder = dir.display().to_string();
        let entries = std::fs::read_dir(dir).map_err(|e| PolicyError {
            file: folder.clone(),
            line: None,
            message: format!("cannot read the policy folder: {e}"),
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                name.is_some_and(|n| n.ends_with(".toml") && !n.starts_with('.')) && p.is_file()
            })
            .collect();
        paths.sort();
        let mut files = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|e| PolicyError {
                file: path.display().to_string(),
                line: None,
                message: format!("cannot read the file: {e}"),
            })?;
            files.push((path.display().to_string(), text));
        }
        if files.is_empty() {
            return Err(PolicyError {
                file: folder,
                line: None,
                message: "the policy folder holds no .toml file; copy policies/default.toml \
                          from the distribution into it"
                    .into(),
            });
        }
        Policy::parse_files(&folder, files, known)
    }

    /// Reads policy files given as (name, text), in the order given.
    pub fn parse_files(
        origin: &str,
        files: Vec<(String, String)>,
        known: &Known,
    ) -> Result<Policy, PolicyError> {
        let mut rules: Vec<Rule> = Vec::new();
        for (file, text) in &files {
            for rule in parse_file(file, text, known)? {
                if let Some(first) = rules.iter().find(|r| r.name == rule.name) {
                    return Err(PolicyError {
                        file: rule.file.clone(),
                        line: Some(rule.line),
                        message: format!(
                            "key name: rule {:?} is already defined at {}; give every rule its \
                             own name",
                            rule.name,
                            first.location()
                        ),
                    });
                }
                if let Some(catch_all) = rules.iter().find(|r| r.is_catch_all()) {
                    return Err(PolicyError {
                        file: rule.file.clone(),
                        line: Some(rule.line),
                        message: format!(
                            "rule {:?} can never apply: rule {:?} at {} has no match table and \
                             takes every message first; move the catch-all to the end",
                            rule.name,
                            catch_all.name,
                            catch_all.location()
                        ),
                    });
                }
                rules.push(rule);
            }
        }
        match rules.last() {
            None => Err(PolicyError {
                file: origin.into(),
                line: None,
                message: "the policy has no [[rule]]; end it with a catch-all rule (one \
                          without a match table)"
                    .into(),
            }),
            Some(last) if !last.is_catch_all() => Err(PolicyError {
                file: last.file.clone(),
                line: Some(last.line),
                message: format!(
                    "no catch-all rule: the last rule, {:?}, has a match table, so some \
                     messages would match no rule; add a last [[rule]] without a match table",
                    last.name
                ),
            }),
            Some(_) => Ok(Policy {
                origin: origin.into(),
                rules,
            }),
        }
    }

    /// The rule that applies to a message with these facts.
    pub fn decide(&self, facts: &Facts) -> Decision {
        let rule = self
            .rules
            .iter()
            .find(|r| r.conditions.iter().all(|c| c.check(facts).held));
        match rule {
            Some(rule) => Decision {
                rule: rule.name.clone(),
                actions: rule.actions.clone(),
            },
            // Only a broken built-in policy has no catch-all: keep the
            // message, which loses nothing.
            None => Decision {
                rule: "none".into(),
                actions: Actions::default(),
            },
        }
    }

    /// Every rule up to the one that applies, with the outcome of each
    /// condition: what `mailnotary policy test` prints.
    pub fn explain(&self, facts: &Facts) -> Vec<(&Rule, Vec<ConditionOutcome>)> {
        let mut out = Vec::new();
        for rule in &self.rules {
            let outcomes: Vec<_> = rule.conditions.iter().map(|c| c.check(facts)).collect();
            let matched = outcomes.iter().all(|o| o.held);
            out.push((rule, outcomes));
            if matched {
                break;
            }
        }
        out
    }
}

impl Default for Actions {
    fn default() -> Actions {
        Actions {
            mode: Mode::Archive,
            withhold: Vec::new(),
            retention: None,
            legal_hold: false,
            tsa: Vec::new(),
            dkim: Dkim::Verify,
            notify: Vec::new(),
            statement: None,
        }
    }
}

// The file format, as serde reads it.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    rule: Vec<Spanned<RuleDoc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    name: Spanned<String>,
    #[serde(rename = "match", default)]
    matcher: Option<MatchDoc>,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    withhold: Vec<Field>,
    #[serde(default)]
    retention: Option<Spanned<String>>,
    #[serde(default)]
    legal_hold: bool,
    #[serde(default)]
    tsa: Vec<Spanned<String>>,
    #[serde(default)]
    dkim: Dkim,
    #[serde(default)]
    notify: Vec<Spanned<String>>,
    #[serde(default)]
    statement: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchDoc {
    envelope_from: Option<Spanned<Strings>>,
    envelope_to: Option<Spanned<Strings>>,
    from_domain: Option<Spanned<Strings>>,
    to_domain: Option<Spanned<Strings>>,
    source: Option<Spanned<Strings>>,
    imap_account: Option<Spanned<Strings>>,
    imap_folder: Option<Spanned<Strings>>,
}

/// A string or a list of strings.
struct Strings(Vec<String>);

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Strings, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Strings;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Strings, E> {
                Ok(Strings(vec![v.to_string()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Strings, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Strings(out))
            }
        }
        d.deserialize_any(Visitor)
    }
}

fn line_of(text: &str, span: Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

fn parse_file(file: &str, text: &str, known: &Known) -> Result<Vec<Rule>, PolicyError> {
    let at = |span: Range<usize>, message: String| PolicyError {
        file: file.to_string(),
        line: Some(line_of(text, span)),
        message,
    };
    let doc: FileDoc = toml::from_str(text).map_err(|e| PolicyError {
        file: file.to_string(),
        line: e.span().map(|s| line_of(text, s)),
        // serde speaks of fields; a policy file has keys.
        message: e
            .message()
            .replace("unknown field", "unknown key")
            .replace("missing field", "missing key"),
    })?;
    let mut rules = Vec::new();
    for spanned in doc.rule {
        let span = spanned.span();
        let doc = spanned.into_inner();
        let name = doc.name.get_ref().trim().to_string();
        if name.is_empty() {
            return Err(at(doc.name.span(), "key name: a rule needs a name".into()));
        }

        let mut conditions = Vec::new();
        if let Some(m) = doc.matcher {
            for (key, value) in [
                (Key::EnvelopeFrom, m.envelope_from),
                (Key::EnvelopeTo, m.envelope_to),
                (Key::FromDomain, m.from_domain),
                (Key::ToDomain, m.to_domain),
                (Key::Source, m.source),
                (Key::ImapAccount, m.imap_account),
                (Key::ImapFolder, m.imap_folder),
            ] {
                let Some(value) = value else { continue };
                let vspan = value.span();
                let patterns = value.into_inner().0;
                if patterns.is_empty() || patterns.iter().any(|p| p.trim().is_empty()) {
                    return Err(at(
                        vspan,
                        format!(
                            "key match.{}: give at least one value, and no empty one",
                            key.name()
                        ),
                    ));
                }
                if key == Key::Source {
                    for p in &patterns {
                        if !["smtp", "imap", "import"].contains(&p.to_lowercase().as_str()) {
                            return Err(at(
                                vspan,
                                format!(
                                    "key match.source: {p:?} is not a source; use \"smtp\", \
                                     \"imap\" or \"import\""
                                ),
                            ));
                        }
                    }
                }
                conditions.push(Condition { key, patterns });
            }
        }

        let retention = match doc.retention {
            Some(r) => {
                let parsed = Retention::parse(r.get_ref())
                    .map_err(|e| at(r.span(), format!("key retention: {e}")))?;
                Some((r.get_ref().trim().to_string(), parsed))
            }
            None => None,
        };
        let mut tsa = Vec::new();
        for t in doc.tsa {
            let n = t.get_ref();
            if n != "builtin" && !known.tsas.iter().any(|k| k == n) {
                let listed = if known.tsas.is_empty() {
                    "none is configured".to_string()
                } else {
                    format!("the configured ones are {}", known.tsas.join(", "))
                };
                return Err(at(
                    t.span(),
                    format!(
                        "key tsa: {n:?} is not a [[tsa]] of the configuration ({listed}); \
                         name a configured TSA or \"builtin\""
                    ),
                ));
            }
            tsa.push(n.clone());
        }
        let mut notify = Vec::new();
        for address in doc.notify {
            let a = address.get_ref().trim();
            let valid = a.split('@').count() == 2
                && !a.starts_with('@')
                && !a.ends_with('@')
                && !a.contains(char::is_whitespace);
            if !valid {
                return Err(at(
                    address.span(),
                    format!("key notify: {a:?} is not an e-mail address"),
                ));
            }
            if !known.notify {
                return Err(at(
                    address.span(),
                    format!(
                        "key notify: rule {name:?} sends notifications, but the configuration \
                         has no [notify] smarthost to send them through"
                    ),
                ));
            }
            notify.push(a.to_string());
        }
        let mut withhold = doc.withhold;
        withhold.sort();
        withhold.dedup();

        rules.push(Rule {
            name,
            file: file.to_string(),
            line: line_of(text, span),
            conditions,
            actions: Actions {
                mode: doc.mode.unwrap_or(Mode::Archive),
                withhold,
                retention,
                legal_hold: doc.legal_hold,
                tsa,
                dkim: doc.dkim,
                notify,
                statement: doc.statement.filter(|s| !s.trim().is_empty()),
            },
        });
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(files: &[(&str, &str)]) -> Result<Policy, PolicyError> {
        Policy::parse_files(
            "test",
            files
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
            &Known {
                tsas: vec!["accredited".into()],
                notify: true,
            },
        )
    }

    fn err(files: &[(&str, &str)]) -> String {
        parse(files).unwrap_err().to_string()
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("*.example.cn", "sales.example.cn"));
        assert!(!wildcard("*.example.cn", "example.cn"));
        assert!(wildcard("*", ""));
        assert!(wildcard("a*b*c", "aXXbYc"));
        assert!(!wildcard("a*b*c", "aXXbY"));
        assert!(wildcard("sales@*", "sales@x.y"));
        assert!(wildcard("exact", "exact"));
        assert!(!wildcard("exact", "exactly"));
    }

    #[test]
    fn retention_units() {
        assert_eq!(Retention::parse("7y"), Ok(Retention::Months(84)));
        assert_eq!(Retention::parse("6m"), Ok(Retention::Months(6)));
        assert_eq!(Retention::parse("2w"), Ok(Retention::Days(14)));
        assert_eq!(Retention::parse("90d"), Ok(Retention::Days(90)));
        for bad in ["", "7", "y", "0d", "7 years", "-1d", "1.5y"] {
            assert!(Retention::parse(bad).is_err(), "{bad}");
        }
        // 2024-02-29 plus one year is 2025-02-28 by the calendar.
        let leap = chrono::DateTime::parse_from_rfc3339("2024-02-29T12:00:00Z")
            .unwrap()
            .timestamp_millis() as u64;
        let end = Retention::Months(12).expires(leap);
        let end = chrono::DateTime::from_timestamp_millis(end as i64).unwrap();
        assert_eq!(end.to_rfc3339(), "2025-02-28T12:00:00+00:00");
    }

    #[test]
    fn the_shipped_policies_parse_alone_and_together() {
        let default = Policy::builtin();
        assert_eq!(default.rules.len(), 1, "{}", default.origin);
        assert_eq!(
            default.rules[0].actions.retention.as_ref().unwrap().1,
            Retention::Months(120)
        );
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let mut files = Vec::new();
        for name in [
            "examples/10-supplier-disputes.toml",
            "examples/20-confidential-hash-only.toml",
            "default.toml",
        ] {
            files.push((
                name.to_string(),
                std::fs::read_to_string(dir.join(name)).unwrap(),
            ));
        }
        let known = Known {
            tsas: vec!["accredited-tsa".into()],
            notify: true,
        };
        let policy = Policy::parse_files("shipped", files, &known).unwrap();
        assert!(policy.rules.len() >= 3);
        assert!(policy.rules.last().unwrap().is_catch_all());
    }

    #[test]
    fn first_match_wins_and_conditions_combine() {
        let policy = parse(&[(
            "p.toml",
            r#"
[[rule]]
name = "confidential"
match = { envelope_to = ["legal-*@corp.example"], source = "smtp" }
mode = "hash-only"
withhold = ["subject", "to"]

[[rule]]
name = "suppliers"
match = { from_domain = ["*.example.cn", "supplier.example"] }
retention = "7y"
legal_hold = true
tsa = ["accredited"]

[[rule]]
name = "rest"
"#,
        )])
        .unwrap();
        let mut facts = Facts {
            source: "smtp".into(),
            envelope_to: vec!["LEGAL-EU@corp.example".into()],
            from_domains: vec!["sales.example.cn".into()],
            ..Facts::default()
        };
        let d = policy.decide(&facts);
        assert_eq!(d.rule, "confidential");
        assert_eq!(d.actions.mode, Mode::HashOnly);
        assert_eq!(d.actions.withhold, [Field::Subject, Field::To]);
        facts.source = "imap".into();
        let d = policy.decide(&facts);
        assert_eq!(d.rule, "suppliers");
        assert!(d.actions.legal_hold);
        assert_eq!(d.actions.tsa, ["accredited"]);
        facts.from_domains = vec!["example.cn".into()];
        assert_eq!(policy.decide(&facts).rule, "rest");
        let why = policy.explain(&facts);
        assert_eq!(why.len(), 3);
        assert!(!why[1].1[0].held);
        assert!(why[1].1[0].detail.contains("example.cn"), "{:?}", why[1]);
    }

    #[test]
    fn each_kind_of_error_names_file_line_and_key() {
        // Not TOML.
        let e = err(&[("a.toml", "[[rule]]\nname = \"x\"\nmode = \n")]);
        assert!(e.starts_with("a.toml:3: "), "{e}");
        // An unknown action.
        let e = err(&[("a.toml", "[[rule]]\nname = \"x\"\n\nnotfy = [\"a@b\"]\n")]);
        assert!(e.starts_with("a.toml:4: unknown key `notfy`"), "{e}");
        assert!(e.contains("`notify`"), "{e}");
        // An unknown match key.
        let e = err(&[(
            "a.toml",
            "[[rule]]\nname = \"x\"\nmatch = { from = \"a\" }\n[[rule]]\nname = \"y\"\n",
        )]);
        assert!(e.starts_with("a.toml:3: unknown key `from`"), "{e}");
        // A value that is not allowed.
        let e = err(&[("a.toml", "[[rule]]\nname = \"x\"\nmode = \"hash\"\n")]);
        assert!(
            e.starts_with("a.toml:3: ") && e.contains("`hash-only`"),
            "{e}"
        );
        let e = err(&[(
            "a.toml",
            "[[rule]]\nname = \"x\"\nwithhold = [\"message_id\"]\n",
        )]);
        assert!(
            e.starts_with("a.toml:3: ") && e.contains("`subject`"),
            "{e}"
        );
        let e = err(&[(
            "a.toml",
            "[[rule]]\nname = \"x\"\nretention = \"7 years\"\n",
        )]);
        assert!(e.starts_with("a.toml:3: key retention: "), "{e}");
        let e = err(&[("a.toml", "[[rule]]\nname = \"x\"\n\ntsa = [\"nope\"]\n")]);
        assert!(e.starts_with("a.toml:4: key tsa: \"nope\""), "{e}");
        assert!(e.contains("accredited"), "{e}");
        let e = err(&[(
            "a.toml",
            "[[rule]]\nname = \"x\"\nmatch = { source = \"smpt\" }\n[[rule]]\nname = \"y\"\n",
        )]);
        assert!(e.starts_with("a.toml:3: key match.source: \"smpt\""), "{e}");
        // No catch-all, in the last file.
        let e = err(&[
            (
                "a.toml",
                "[[rule]]\nname = \"x\"\nmatch = { source = \"smtp\" }\n",
            ),
            (
                "b.toml",
                "\n[[rule]]\nname = \"y\"\nmatch = { source = \"imap\" }\n",
            ),
        ]);
        assert!(e.starts_with("b.toml:2: no catch-all rule"), "{e}");
        // A rule after the catch-all.
        let e = err(&[
            ("a.toml", "[[rule]]\nname = \"all\"\n"),
            ("b.toml", "[[rule]]\nname = \"late\"\n"),
        ]);
        assert!(
            e.starts_with("b.toml:1: rule \"late\" can never apply"),
            "{e}"
        );
        assert!(e.contains("a.toml:1"), "{e}");
        // The same name twice.
        let e = err(&[(
            "a.toml",
            "[[rule]]\nname = \"x\"\nmatch = { source = \"smtp\" }\n[[rule]]\nname = \"x\"\n",
        )]);
        assert!(
            e.starts_with("a.toml:4: key name: rule \"x\" is already defined at a.toml:1"),
            "{e}"
        );
        // A rule without a name.
        let e = err(&[("a.toml", "[[rule]]\nmode = \"archive\"\n")]);
        assert!(e.starts_with("a.toml:1: missing key `name`"), "{e}");
        // No rule at all.
        assert!(err(&[("a.toml", "# nothing\n")]).contains("has no [[rule]]"));
        // notify without a smarthost.
        let e = Policy::parse_files(
            "t",
            vec![(
                "a.toml".into(),
                "[[rule]]\nname = \"x\"\nnotify = [\"a@b.example\"]\n".into(),
            )],
            &Known::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("a.toml:3: key notify: ") && e.contains("[notify]"),
            "{e}"
        );
    }
}
