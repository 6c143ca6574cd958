//! The queue port: what the API and the worker need from a message queue with
//! SQS's semantics (at-least-once delivery, visibility timeout, receipts).

mod batcher;
#[cfg(feature = "local")]
pub mod sqlite;
#[cfg(feature = "aws")]
pub mod sqs;
#[cfg(feature = "aws")]
pub mod sqs_dead_letters;

use std::time::Duration;

use async_trait::async_trait;

pub use batcher::{BatchingSender, SendError};

use crate::id::EmailId;

/// Most messages one send, receive or delete call may carry.
pub const MAX_BATCH: usize = 10;

/// The largest message SQS takes, and the largest sum of messages in one
/// batch send (1 MiB since 2025; the body and the attributes count). A queue
/// may be set to take less ([`Queue::max_message_bytes`]).
pub const SQS_MAX_BYTES: usize = 1024 * 1024;

/// What a queue is taken to accept when it cannot say: SQS's limit before
/// 2025, still what older queues (and the Terraform AWS provider 5.x's
/// default) have.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Name of the message attribute carrying the email id.
pub const ID_ATTRIBUTE: &str = "q2b-id";

/// Name of the message attribute marking a claim check: the email is staged
/// in the bucket (see [`crate::claim`]); its value is the email's size.
pub const CLAIM_ATTRIBUTE: &str = "q2b-claim";

/// A validated email on its way to the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub id: EmailId,
    /// The `data` object's JSON text, or for a claim check a short pointer.
    pub body: String,
    /// For a claim check: the staged email's size in bytes.
    pub claim: Option<u64>,
}

impl OutgoingMessage {
    /// An email carried in the message itself.
    pub fn new(id: EmailId, body: String) -> Self {
        Self {
            id,
            body,
            claim: None,
        }
    }

    /// A pointer to an email staged under `staged_key`, of `size` bytes.
    pub fn claim(id: EmailId, staged_key: &str, size: u64) -> Self {
        let body = serde_json::json!({ "staged": staged_key, "bytes": size }).to_string();
        Self {
            id,
            body,
            claim: Some(size),
        }
    }

    /// Size as SQS counts it: body, plus each attribute's name, type and value.
    pub fn size(&self) -> usize {
        let claim = self.claim.map_or(0, |size| {
            CLAIM_ATTRIBUTE.len() + "Number".len() + size.to_string().len()
        });
        Self::inline_size(self.body.len()) + claim
    }

    /// Size as SQS counts it of an inline message whose body is
    /// `body_bytes` long, known before the body is copied into one.
    pub fn inline_size(body_bytes: usize) -> usize {
        body_bytes + ID_ATTRIBUTE.len() + "String".len() + 36
    }
}

/// A message as received, not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The queue's id for the message, stable across redeliveries.
    pub message_id: String,
    /// The handle to delete it or change its visibility with; new on each
    /// receive.
    pub receipt: String,
    pub body: String,
    /// The id attribute, when the API sent the message.
    pub email_id: Option<String>,
    /// When the message was first sent, in Unix milliseconds.
    pub sent_at_ms: Option<u64>,
    /// For a claim check: the staged email's size in bytes.
    pub claim: Option<u64>,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
}

/// A queue call that failed. The text is for logs, never for clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("queue unavailable: {0}")]
pub struct QueueError(pub String);

#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Most messages one [`Queue::send_batch`] call may carry.
    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    /// The largest message (as [`OutgoingMessage::size`] counts it) the
    /// queue takes.
    fn max_message_bytes(&self) -> usize {
        DEFAULT_MAX_MESSAGE_BYTES
    }

    /// Most bytes (as [`OutgoingMessage::size`] counts them) one
    /// [`Queue::send_batch`] call may carry.
    fn max_batch_bytes(&self) -> usize {
        SQS_MAX_BYTES
    }

    /// Sends up to [`Queue::max_batch`] messages, of at most
    /// [`Queue::max_batch_bytes`] in all, and answers one result per message,
    /// in order.
    async fn send_batch(&self, messages: &[OutgoingMessage]) -> Vec<Result<(), QueueError>>;

    /// Receives up to `max` messages, waiting at most `wait` for the first.
    async fn receive(&self, max: usize, wait: Duration)
    -> Result<Vec<ReceivedMessage>, QueueError>;

    /// Deletes up to [`MAX_BATCH`] messages by receipt; one result each.
    async fn delete_batch(&self, receipts: &[&str]) -> Vec<Result<(), QueueError>>;

    /// Makes a received message visible again after `delay`.
    async fn retry_later(&self, receipt: &str, delay: Duration) -> Result<(), QueueError>;

    /// The queue's visibility timeout: how long a received message stays
    /// hidden unless its visibility is changed. Also checks that the queue
    /// exists and can be reached.
    async fn visibility_timeout(&self) -> Result<Duration, QueueError>;
}

/// A message in a dead-letter queue, as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The email's id, which it keeps when moved back (for a message from
    /// another producer, the id the worker derives for it).
    pub id: EmailId,
    pub message_id: String,
    pub sent_at_ms: Option<u64>,
    pub receive_count: u32,
}

/// A queue's dead-letter queue: the messages the worker could not store
/// within the queue's maximum receives, listed and moved back for another
/// try (`queue2bucket redrive`).
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// Where the dead letters are, for the operator.
    fn describe(&self) -> String;

    /// The messages waiting, without moving them.
    async fn list(&self) -> Result<Vec<DeadLetter>, QueueError>;

    /// Moves every message back to the queue, body, attributes and email id
    /// kept, and answers how many moved. A message leaves the dead-letter
    /// queue only once it is safely on the queue.
    async fn redrive(&self) -> Result<u64, QueueError>;
}
