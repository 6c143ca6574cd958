//! Email ids: UUIDv7, so that ids (and the object keys made from them) sort
//! by arrival time, newest last.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EmailId(Uuid);

impl EmailId {
    /// A fresh id for an email accepted now. Ids made by one process are
    /// strictly increasing, even within a millisecond.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// A stable id for a message that arrived without one (sent by another
    /// producer): the same queue message always gets the same id, and ids
    /// still sort by the time the message was sent.
    pub fn derived(queue_message_id: &str, sent_at_ms: u64) -> Self {
        let digest = Sha256::digest(queue_message_id.as_bytes());
        let mut random = [0u8; 10];
        random.copy_from_slice(&digest[..10]);
        Self(uuid::Builder::from_unix_timestamp_millis(sent_at_ms, &random).into_uuid())
    }

    /// Reads an id written by [`fmt::Display`]; only UUIDv7 in its canonical
    /// lower-case form is taken, so a foreign value can never shape a key.
    pub fn parse(text: &str) -> Option<Self> {
        let uuid = Uuid::try_parse(text).ok()?;
        (uuid.get_version_num() == 7 && uuid.hyphenated().to_string() == text).then_some(Self(uuid))
    }

    /// Milliseconds since the Unix epoch at which the id was made.
    pub fn unix_millis(&self) -> u64 {
        let (secs, nanos) = self
            .0
            .get_timestamp()
            .map(|t| t.to_unix())
            .unwrap_or((0, 0));
        secs * 1000 + u64::from(nanos) / 1_000_000
    }
}

impl Default for EmailId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EmailId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_creation() {
        let ids: Vec<String> = (0..1000).map(|_| EmailId::new().to_string()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }

    #[test]
    fn derived_ids_are_stable_distinct_and_time_ordered() {
        let a = EmailId::derived("0b9ef5c4-1c3a-4a7e-9d2b-52b7a9e3f001", 1_732_780_800_000);
        let again = EmailId::derived("0b9ef5c4-1c3a-4a7e-9d2b-52b7a9e3f001", 1_732_780_800_000);
        let other = EmailId::derived("another", 1_732_780_800_000);
        let later = EmailId::derived("0b9ef5c4-1c3a-4a7e-9d2b-52b7a9e3f001", 1_732_780_800_001);
        assert_eq!(a, again);
        assert_ne!(a, other);
        assert!(a.to_string() < later.to_string());
        assert_eq!(a.unix_millis(), 1_732_780_800_000);
    }

    #[test]
    fn parse_takes_only_canonical_v7() {
        let id = EmailId::new();
        assert_eq!(EmailId::parse(&id.to_string()), Some(id));
        assert_eq!(EmailId::parse(&id.to_string().to_uppercase()), None);
        assert_eq!(EmailId::parse("../../etc/passwd"), None);
        assert_eq!(EmailId::parse(&Uuid::new_v4().to_string()), None);
        assert_eq!(EmailId::parse(""), None);
    }
}
