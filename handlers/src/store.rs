//! Message to bucket: one queue message becomes one object, exactly once.
//!
//! - Key: made from the email's id by [`Keys`], so every delivery of a
//!   message maps to the same key. The id is the one the API gave the
//!   email; a message from another producer (the original API during a
//!   switch-over, say) gets one derived from its queue message id and send
//!   time.
//! - Body: the message body, which is the accepted `data` object's JSON.
//! - Metadata: `id`, `received-at` (RFC 3339, when the API accepted it) and
//!   `queue-message-id`; all derived from the message, so a redelivery would
//!   write identical metadata, though it never writes at all: the bucket's
//!   conditional put leaves an existing key untouched.

use std::sync::Arc;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use bytes::Bytes;

use tokio::sync::Semaphore;

use crate::bucket::{Bucket, BucketError, NewObject, PutOutcome};
use crate::claim::Staging;
use crate::email::{EmailError, EmailMessage};
use crate::id::EmailId;
use crate::keys::{KeyPrefix, Keys};
use crate::queue::ReceivedMessage;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The message can never be stored; left for the queue's redrive policy.
    #[error("unstorable message: {0}")]
    Poison(#[source] EmailError),
    /// Worth retrying later.
    #[error(transparent)]
    Bucket(#[from] BucketError),
    /// A claim check whose staged copy is gone while the email was never
    /// stored (removed by hand, or expired by the staging prefix's lifecycle
    /// rule under a pointer redriven past it): left for the dead-letter
    /// queue, so that an operator sees it, rather than acknowledged.
    #[error("the staged copy of email {0} is gone and the email is not stored")]
    Lost(EmailId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: EmailId,
    pub key: String,
    pub outcome: PutOutcome,
    pub bytes: usize,
}

pub struct Storer {
    bucket: Arc<dyn Bucket>,
    keys: Keys,
    staging: Staging,
    /// Bytes of staged emails held at once, in KiB.
    budget: Semaphore,
    budget_kib: u32,
}

/// Bytes of staged emails a storer holds at once unless told otherwise.
pub const DEFAULT_BYTES_IN_FLIGHT: u64 = 64 * 1024 * 1024;

impl Storer {
    pub fn new(bucket: Arc<dyn Bucket>, keys: impl Into<Keys>) -> Self {
        let staging = Staging::new(
            bucket.clone(),
            KeyPrefix::parse(crate::claim::DEFAULT_STAGING_PREFIX).expect("a valid prefix"),
        );
        Self::with_staging(bucket, keys, staging, DEFAULT_BYTES_IN_FLIGHT)
    }

    /// Claim-checked emails are read from `staging`, at most
    /// `bytes_in_flight` of them at once.
    pub fn with_staging(
        bucket: Arc<dyn Bucket>,
        keys: impl Into<Keys>,
        staging: Staging,
        bytes_in_flight: u64,
    ) -> Self {
        let budget_kib = kib(bytes_in_flight).max(1);
        Self {
            bucket,
            keys: keys.into(),
            staging,
            budget: Semaphore::new(budget_kib as usize),
            budget_kib,
        }
    }

    /// The id of a message's email: the one the API gave it, or for a
    /// message from another producer one derived from its queue message id
    /// and send time. The same on every delivery.
    pub fn id_of(message: &ReceivedMessage) -> EmailId {
        message
            .email_id
            .as_deref()
            .and_then(EmailId::parse)
            .unwrap_or_else(|| {
                EmailId::derived(&message.message_id, message.sent_at_ms.unwrap_or_default())
            })
    }

    /// The object an email becomes; pure, so it is the same on every
    /// delivery. `body` is the stored text.
    fn object(&self, id: EmailId, message: &ReceivedMessage, body: Bytes) -> NewObject {
        let received_at = DateTime::from_millis(id.unix_millis() as i64)
            .fmt(Format::DateTime)
            .unwrap_or_default();
        NewObject {
            key: self.keys.key(&id),
            body,
            metadata: vec![
                ("id", id.to_string()),
                ("received-at", received_at),
                ("queue-message-id", message.message_id.clone()),
            ],
        }
    }

    /// The object an inline message becomes.
    pub fn object_for(
        &self,
        message: &ReceivedMessage,
    ) -> Result<(EmailId, NewObject), EmailError> {
        let email = EmailMessage::parse(&message.body)?;
        let id = Self::id_of(message);
        Ok((id, self.object(id, message, Bytes::from(email.into_json()))))
    }

    pub async fn store(&self, message: &ReceivedMessage) -> Result<Stored, StoreError> {
        match message.claim {
            None => {
                let (id, object) = self.object_for(message).map_err(StoreError::Poison)?;
                self.put(id, object).await
            }
            Some(size) => self.store_staged(message, size).await,
        }
    }

    async fn put(&self, id: EmailId, object: NewObject) -> Result<Stored, StoreError> {
        let outcome = self.bucket.put_if_absent(&object).await?;
        Ok(Stored {
            id,
            bytes: object.body.len(),
            key: object.key,
            outcome,
        })
    }

    /// A claim check: the staged bytes, checked as an inline email would be,
    /// stored as they are under the email's key; then the staged object is
    /// removed. A redelivery after that finds no staged object, which means
    /// the email is stored.
    async fn store_staged(
        &self,
        message: &ReceivedMessage,
        size: u64,
    ) -> Result<Stored, StoreError> {
        let id = Self::id_of(message);
        let _held = self
            .budget
            .acquire_many(kib(size).clamp(1, self.budget_kib))
            .await
            .map_err(|_| StoreError::Bucket(BucketError("storer closed".into())))?;
        let Some(staged) = self.staging.fetch(&id).await? else {
            // Staged before the pointer was queued, and removed once stored:
            // gone means stored by an earlier delivery, which the email's own
            // key confirms.
            let key = self.keys.key(&id);
            if !self.bucket.exists(&key).await? {
                return Err(StoreError::Lost(id));
            }
            return Ok(Stored {
                id,
                key,
                outcome: PutOutcome::AlreadyExists,
                bytes: 0,
            });
        };
        let text = std::str::from_utf8(&staged)
            .map_err(|_| StoreError::Poison(EmailError::Syntax("not UTF-8".into())))?;
        EmailMessage::parse(text).map_err(StoreError::Poison)?;
        let stored = self
            .put(id, self.object(id, message, staged.clone()))
            .await?;
        if let Err(e) = self.staging.remove(&id).await {
            // The staging prefix's lifecycle rule removes it later.
            tracing::warn!(id = %id, error = %e, "could not remove a staged email");
        }
        Ok(stored)
    }
}

/// Bytes in whole KiB, rounded up, as the budget counts them.
fn kib(bytes: u64) -> u32 {
    bytes.div_ceil(1024).min(u64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryBucket;

    const DATA: &str = r#"{"email_subject":"Hi","email_sender":"a@b.c","email_timestream":1,"email_content":"x","extra":[1]}"#;

    fn message(body: &str, email_id: Option<String>) -> ReceivedMessage {
        ReceivedMessage {
            message_id: "4f1c8a2e-0000-4000-8000-000000000001".into(),
            receipt: "r".into(),
            body: body.into(),
            email_id,
            sent_at_ms: Some(1_732_780_800_000),
            receive_count: 1,
            claim: None,
        }
    }

    #[tokio::test]
    async fn a_message_becomes_its_object() {
        let bucket = Arc::new(MemoryBucket::default());
        let storer = Storer::new(bucket.clone(), KeyPrefix::default());
        let id = EmailId::new();
        let stored = storer
            .store(&message(DATA, Some(id.to_string())))
            .await
            .unwrap();
        let seconds = id.unix_millis() / 1000;
        assert_eq!(stored.key, format!("emails/{seconds}-{id}.json"));
        assert_eq!(stored.outcome, PutOutcome::Created);
        let object = &bucket.objects()[&stored.key];
        assert_eq!(object.body, DATA.as_bytes());
        assert!(object.metadata.contains(&("id", id.to_string())));
        let received_at = &object
            .metadata
            .iter()
            .find(|(k, _)| *k == "received-at")
            .unwrap()
            .1;
        assert!(
            received_at.ends_with('Z') && received_at.len() >= 20,
            "{received_at}"
        );
    }

    #[tokio::test]
    async fn redelivery_never_writes_twice() {
        let bucket = Arc::new(MemoryBucket::default());
        let storer = Storer::new(bucket.clone(), KeyPrefix::parse("p/").unwrap());
        let foreign = message(DATA, None);
        let first = storer.store(&foreign).await.unwrap();
        let again = storer.store(&foreign).await.unwrap();
        assert_eq!(first.key, again.key);
        assert!(first.key.starts_with("p/"));
        assert_eq!(again.outcome, PutOutcome::AlreadyExists);
        assert_eq!(bucket.objects().len(), 1);
    }

    #[tokio::test]
    async fn a_forged_id_attribute_cannot_shape_the_key() {
        let storer = Storer::new(Arc::new(MemoryBucket::default()), KeyPrefix::default());
        let (id, object) = storer
            .object_for(&message(DATA, Some("../../x".into())))
            .unwrap();
        assert_eq!(object.key, format!("emails/1732780800-{id}.json"));
        assert_eq!(id.unix_millis(), 1_732_780_800_000);
    }

    #[tokio::test]
    async fn unstorable_messages_are_poison_and_bucket_failures_are_not() {
        let bucket = Arc::new(MemoryBucket::default());
        let storer = Storer::new(bucket.clone(), KeyPrefix::default());
        for body in ["not json", "[]", r#"{"email_subject":"x"}"#] {
            assert!(matches!(
                storer.store(&message(body, None)).await,
                Err(StoreError::Poison(_))
            ));
        }
        bucket.fail_every(1);
        assert!(matches!(
            storer.store(&message(DATA, None)).await,
            Err(StoreError::Bucket(_))
        ));
        assert!(bucket.objects().is_empty());
    }

    /// A bucket in memory, its staging prefix, and a storer over both with
    /// a byte budget of `budget`.
    fn claim_check(budget: u64) -> (Arc<MemoryBucket>, Staging, Storer) {
        let bucket = Arc::new(MemoryBucket::default());
        let staging = Staging::new(bucket.clone(), KeyPrefix::parse("staging/").unwrap());
        let storer = Storer::with_staging(
            bucket.clone(),
            KeyPrefix::default(),
            staging.clone(),
            budget,
        );
        (bucket, staging, storer)
    }

    #[tokio::test]
    async fn a_claim_check_is_stored_from_its_staged_bytes_then_cleaned_up() {
        let (bucket, staging, storer) = claim_check(1 << 20);
        let id = EmailId::new();
        // Sent exactly so, spacing included.
        let data = r#"{ "email_subject":"Big", "email_sender":"a@b.c","email_timestream":1,"email_content":"x" }"#;
        staging
            .stage(&id, Bytes::from_static(data.as_bytes()))
            .await
            .unwrap();
        let mut pointer = message("{}", Some(id.to_string()));
        pointer.claim = Some(data.len() as u64);
        let stored = storer.store(&pointer).await.unwrap();
        assert_eq!(stored.outcome, PutOutcome::Created);
        let objects = bucket.objects();
        assert_eq!(objects[&stored.key].body, data.as_bytes(), "byte for byte");
        assert!(
            !objects.contains_key(&staging.key(&id)),
            "staged object removed"
        );
        // A redelivery finds no staged object: stored already.
        let again = storer.store(&pointer).await.unwrap();
        assert_eq!(again.outcome, PutOutcome::AlreadyExists);
        assert_eq!(bucket.objects().len(), 1);
    }

    /// A pointer whose staged copy is gone although the email was never
    /// stored is not acknowledged as stored: it is left for the dead-letter
    /// queue, where an operator sees it.
    #[tokio::test]
    async fn a_claim_check_whose_staged_copy_vanished_unstored_is_lost_not_stored() {
        let (bucket, staging, storer) = claim_check(1 << 20);
        let id = EmailId::new();
        staging
            .stage(&id, Bytes::from_static(DATA.as_bytes()))
            .await
            .unwrap();
        staging.remove(&id).await.unwrap();
        let mut pointer = message("{}", Some(id.to_string()));
        pointer.claim = Some(DATA.len() as u64);
        assert!(matches!(
            storer.store(&pointer).await,
            Err(StoreError::Lost(lost)) if lost == id
        ));
        assert!(bucket.objects().is_empty());
    }

    /// Two large emails of 600 KiB each through a slow bucket: with a 1 MiB
    /// budget the second waits for the first, with 2 MiB they overlap.
    #[tokio::test(start_paused = true)]
    async fn staged_emails_held_at_once_stay_within_the_byte_budget() {
        for (budget, serial) in [(1 << 20, true), (2 << 20, false)] {
            let (bucket, staging, storer) = claim_check(budget);
            let padding = "x".repeat(600 * 1024);
            let data = format!(
                r#"{{"email_subject":"Big","email_sender":"a@b.c","email_timestream":1,"email_content":"{padding}"}}"#
            );
            let mut pointers = Vec::new();
            for _ in 0..2 {
                let id = EmailId::new();
                staging.stage(&id, Bytes::from(data.clone())).await.unwrap();
                let mut pointer = message("{}", Some(id.to_string()));
                pointer.claim = Some(data.len() as u64);
                pointers.push(pointer);
            }
            bucket.set_delay(std::time::Duration::from_secs(10));
            let started = tokio::time::Instant::now();
            let (a, b) = tokio::join!(storer.store(&pointers[0]), storer.store(&pointers[1]));
            assert_eq!(a.unwrap().outcome, PutOutcome::Created);
            assert_eq!(b.unwrap().outcome, PutOutcome::Created);
            let took = started.elapsed();
            assert_eq!(
                took >= std::time::Duration::from_secs(20),
                serial,
                "budget {budget}: both stored in {took:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_staged_email_that_is_not_an_email_is_poison() {
        let (_, staging, storer) = claim_check(1 << 20);
        let id = EmailId::new();
        staging
            .stage(&id, Bytes::from_static(b"[1,2]"))
            .await
            .unwrap();
        let mut pointer = message("{}", Some(id.to_string()));
        pointer.claim = Some(5);
        assert!(matches!(
            storer.store(&pointer).await,
            Err(StoreError::Poison(_))
        ));
    }
}
