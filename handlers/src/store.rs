//! Message to bucket: one queue message becomes one object, exactly once.
//!
//! - Key: `<prefix><id>.json`. The id is the one the API gave the email; a
//!   message from another producer gets one derived from its queue message id
//!   and send time, so every delivery of it maps to the same key.
//! - Body: the message body, which is the accepted `data` object's JSON.
//! - Metadata: `id`, `received-at` (RFC 3339, when the API accepted it) and
//!   `queue-message-id`; all derived from the message, so a redelivery would
//!   write identical metadata, though it never writes at all: the bucket's
//!   conditional put leaves an existing key untouched.

use std::sync::Arc;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use bytes::Bytes;

use crate::bucket::{Bucket, BucketError, NewObject, PutOutcome};
use crate::email::{EmailError, EmailMessage};
use crate::id::EmailId;
use crate::queue::ReceivedMessage;

/// The default key prefix, as in the original service.
pub const DEFAULT_PREFIX: &str = "emails/";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The message can never be stored; left for the queue's redrive policy.
    #[error("unstorable message: {0}")]
    Poison(#[source] EmailError),
    /// Worth retrying later.
    #[error(transparent)]
    Bucket(#[from] BucketError),
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
    prefix: String,
}

impl Storer {
    pub fn new(bucket: Arc<dyn Bucket>, prefix: impl Into<String>) -> Self {
        Self {
            bucket,
            prefix: prefix.into(),
        }
    }

    /// The object a message becomes; pure, so it is the same on every
    /// delivery.
    pub fn object_for(
        &self,
        message: &ReceivedMessage,
    ) -> Result<(EmailId, NewObject), EmailError> {
        let email = EmailMessage::parse(&message.body)?;
        let id = message
            .email_id
            .as_deref()
            .and_then(EmailId::parse)
            .unwrap_or_else(|| {
                EmailId::derived(&message.message_id, message.sent_at_ms.unwrap_or_default())
            });
        let received_at = DateTime::from_millis(id.unix_millis() as i64)
            .fmt(Format::DateTime)
            .unwrap_or_default();
        let object = NewObject {
            key: format!("{}{id}.json", self.prefix),
            body: Bytes::from(email.into_json()),
            metadata: vec![
                ("id", id.to_string()),
                ("received-at", received_at),
                ("queue-message-id", message.message_id.clone()),
            ],
        };
        Ok((id, object))
    }

    pub async fn store(&self, message: &ReceivedMessage) -> Result<Stored, StoreError> {
        let (id, object) = self.object_for(message).map_err(StoreError::Poison)?;
        let outcome = self.bucket.put_if_absent(&object).await?;
        Ok(Stored {
            id,
            bytes: object.body.len(),
            key: object.key,
            outcome,
        })
    }
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
        }
    }

    #[tokio::test]
    async fn a_message_becomes_its_object() {
        let bucket = Arc::new(MemoryBucket::default());
        let storer = Storer::new(bucket.clone(), DEFAULT_PREFIX);
        let id = EmailId::new();
        let stored = storer
            .store(&message(DATA, Some(id.to_string())))
            .await
            .unwrap();
        assert_eq!(stored.key, format!("emails/{id}.json"));
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
        let storer = Storer::new(bucket.clone(), "p/");
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
        let storer = Storer::new(Arc::new(MemoryBucket::default()), DEFAULT_PREFIX);
        let (id, object) = storer
            .object_for(&message(DATA, Some("../../x".into())))
            .unwrap();
        assert_eq!(object.key, format!("emails/{id}.json"));
        assert_eq!(id.unix_millis(), 1_732_780_800_000);
    }

    #[tokio::test]
    async fn unstorable_messages_are_poison_and_bucket_failures_are_not() {
        let bucket = Arc::new(MemoryBucket::default());
        let storer = Storer::new(bucket.clone(), DEFAULT_PREFIX);
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
}
