//! Where an email is stored in the bucket: its key, a function of its id
//! alone, so that every delivery of a message maps to the same key.
//!
//! Two layouts (`S3_KEY_LAYOUT`):
//! - `time` (the default): `<prefix><unix-seconds>-<id>.json`, the original
//!   service's shape (`emails/<unix-seconds>-<uuid>.json`), with the seconds
//!   taken from the id (a UUIDv7, which carries its time). A bucket taken
//!   over from the original keeps one order: keys sort by arrival, old and
//!   new alike, and `aws s3 ls emails/ | tail -1` names the newest email.
//!   Every write goes to the newest end of one prefix, which S3 serves at
//!   about 3,500 PUT/s.
//! - `hashed`: `<prefix><2 hex digits>/<unix-seconds>-<id>.json`, the two
//!   digits the first byte of the id's SHA-256. Writes spread over 256
//!   prefixes, which S3 can serve from as many partitions; within each,
//!   keys still sort by arrival. For sustained rates from about 2,000
//!   emails/s (the README's capacity section).
//!
//! Either way the key stays below the prefix, so the worker's IAM scope
//! (`s3:PutObject` on `<prefix>*`) covers both.

use sha2::{Digest, Sha256};

use crate::id::EmailId;

/// The default key prefix, as in the original service.
pub const DEFAULT_PREFIX: &str = "emails/";

/// The part of every key before the email's own name, checked once at
/// start-up, since a prefix S3 or a directory cannot hold would make every
/// store fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// Longest prefix: S3 keys are at most 1,024 bytes, and the rest of a
    /// key, `<2 hex digits>/<10 digits>-<36-character id>.json` in the
    /// longer layout, takes 55.
    pub const MAX_LEN: usize = 1024 - 55;

    /// A prefix of printable characters, relative (no leading `/`), with no
    /// empty, `.` or `..` path segment; empty means keys at the bucket's root.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > Self::MAX_LEN {
            return Err(format!("longer than {} bytes", Self::MAX_LEN));
        }
        if text.chars().any(char::is_control) {
            return Err("contains a control character".into());
        }
        if text.starts_with('/') {
            return Err("must not start with '/'".into());
        }
        // The last segment begins the file name; those before it are
        // directories.
        let mut directories: Vec<&str> = text.split('/').collect();
        directories.pop();
        if directories
            .iter()
            .any(|d| d.is_empty() || *d == "." || *d == "..")
        {
            return Err("must not contain an empty, '.' or '..' directory".into());
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for KeyPrefix {
    fn default() -> Self {
        Self(DEFAULT_PREFIX.to_owned())
    }
}

/// How keys are laid out below the prefix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyLayout {
    /// `<prefix><unix-seconds>-<id>.json`: one time order, the original's.
    #[default]
    Time,
    /// `<prefix><2 hex digits>/<unix-seconds>-<id>.json`: writes spread
    /// over 256 prefixes.
    Hashed,
}

/// The keys of stored emails: a prefix and a layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    prefix: KeyPrefix,
    layout: KeyLayout,
}

impl Keys {
    pub fn new(prefix: KeyPrefix, layout: KeyLayout) -> Self {
        Self { prefix, layout }
    }

    /// The key of an email.
    pub fn key(&self, id: &EmailId) -> String {
        let seconds = id.unix_millis() / 1000;
        match self.layout {
            KeyLayout::Time => format!("{}{seconds}-{id}.json", self.prefix.as_str()),
            KeyLayout::Hashed => {
                let spread = Sha256::digest(id.to_string().as_bytes())[0];
                format!("{}{spread:02x}/{seconds}-{id}.json", self.prefix.as_str())
            }
        }
    }

    pub fn prefix(&self) -> &KeyPrefix {
        &self.prefix
    }
}

impl From<KeyPrefix> for Keys {
    fn from(prefix: KeyPrefix) -> Self {
        Self::new(prefix, KeyLayout::Time)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn keys_sort_after_the_original_ones_and_by_arrival() {
        let keys = Keys::default();
        // The original's newest kind of key, and ours from the same second on.
        let original = "emails/1732780800-ffffffffffffffffffffffffffffffff.json";
        let ids: Vec<EmailId> = (0..100).map(|_| EmailId::new()).collect();
        let keys: Vec<String> = ids.iter().map(|id| keys.key(id)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "in arrival order");
        assert!(keys.iter().all(|k| k.as_str() > original));
    }

    #[test]
    fn hashed_keys_spread_over_256_prefixes_and_are_stable() {
        let keys = Keys::new(KeyPrefix::default(), KeyLayout::Hashed);
        let ids: Vec<EmailId> = (0..4096).map(|_| EmailId::new()).collect();
        let mut spreads = HashSet::new();
        for id in &ids {
            let key = keys.key(id);
            assert_eq!(key, keys.key(id), "a function of the id");
            let (spread, name) = key
                .strip_prefix("emails/")
                .and_then(|rest| rest.split_once('/'))
                .unwrap_or_else(|| panic!("{key}"));
            assert!(
                spread.len() == 2 && spread.bytes().all(|b| b.is_ascii_hexdigit()),
                "{key}"
            );
            assert_eq!(
                format!("emails/{name}"),
                Keys::default().key(id),
                "the same name as the time layout's"
            );
            spreads.insert(spread.to_owned());
        }
        // 4,096 ids over 256 values: all are hit unless the spread is not
        // uniform (the chance that a fair one misses any is about 3e-5).
        assert_eq!(spreads.len(), 256);
        let longest = KeyPrefix::parse(&"p".repeat(KeyPrefix::MAX_LEN)).unwrap();
        let key = Keys::new(longest, KeyLayout::Hashed).key(&ids[0]);
        assert_eq!(key.len(), 1024, "the longest key S3 takes");
    }

    #[test]
    fn prefixes_that_no_bucket_can_hold_are_refused() {
        for good in ["emails/", "", "emails", "a/b/c-", "tenant.1/emails/", "..x"] {
            assert!(KeyPrefix::parse(good).is_ok(), "{good:?}");
        }
        for bad in [
            "/emails/",
            "a//b/",
            "../emails/",
            "a/./b/",
            "e\nmails/",
            "e\u{7f}/",
        ] {
            assert!(KeyPrefix::parse(bad).is_err(), "{bad:?}");
        }
        assert!(KeyPrefix::parse(&"x".repeat(KeyPrefix::MAX_LEN + 1)).is_err());
    }
}
