//! The queue port on Amazon SQS.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, DeleteMessageBatchRequestEntry, MessageAttributeValue,
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};

use super::{CLAIM_ATTRIBUTE, ID_ATTRIBUTE, OutgoingMessage, Queue, QueueError, ReceivedMessage};
use crate::aws::{AwsTuning, describe};

pub struct SqsQueue {
    client: Client,
    url: String,
    tuning: AwsTuning,
    max_message_bytes: Arc<AtomicUsize>,
}

impl SqsQueue {
    /// IAM actions the sending side calls (SendMessage, SendMessageBatch,
    /// and GetQueueAttributes for the queue's message size limit).
    pub const SEND_ACTIONS: &[&str] = &["sqs:SendMessage", "sqs:GetQueueAttributes"];
    /// IAM actions the receiving side calls (ReceiveMessage,
    /// DeleteMessageBatch, ChangeMessageVisibility, GetQueueAttributes).
    pub const RECEIVE_ACTIONS: &[&str] = &[
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
    ];

    pub fn new(client: Client, url: impl Into<String>, tuning: AwsTuning) -> Self {
        Self {
            client,
            url: url.into(),
            tuning,
            max_message_bytes: Arc::new(AtomicUsize::new(super::DEFAULT_MAX_MESSAGE_BYTES)),
        }
    }

    /// The message's attributes: its email id, and the claim check's mark.
    fn attributes(message: &OutgoingMessage) -> HashMap<String, MessageAttributeValue> {
        let value = |data_type: &str, value: String| {
            MessageAttributeValue::builder()
                .data_type(data_type)
                .string_value(value)
                .build()
                .expect("data_type is set")
        };
        let mut attributes = HashMap::from([(
            ID_ATTRIBUTE.to_owned(),
            value("String", message.id.to_string()),
        )]);
        if let Some(size) = message.claim {
            attributes.insert(
                CLAIM_ATTRIBUTE.to_owned(),
                value("Number", size.to_string()),
            );
        }
        attributes
    }

    /// Reads the queue's own message size limit (`MaximumMessageSize`) in
    /// the background, so that larger emails go through the claim check
    /// rather than fail, without holding up the start. Until it is read (if
    /// SQS cannot be reached, a few tries a minute apart), SQS's old default
    /// is assumed: emails between the two limits are claim-checked meanwhile.
    pub fn read_limits_in_background(self) -> Self {
        let (client, url, limit) = (
            self.client.clone(),
            self.url.clone(),
            self.max_message_bytes.clone(),
        );
        tokio::spawn(async move {
            for pause in [0, 5, 30, 60, 300] {
                tokio::time::sleep(Duration::from_secs(pause)).await;
                let read = client
                    .get_queue_attributes()
                    .queue_url(&url)
                    .attribute_names(QueueAttributeName::MaximumMessageSize)
                    .send()
                    .await;
                let value = read.ok().and_then(|o| {
                    o.attributes?
                        .get(&QueueAttributeName::MaximumMessageSize)?
                        .parse::<usize>()
                        .ok()
                });
                if let Some(value) = value {
                    limit.store(value.min(super::SQS_MAX_BYTES), Ordering::Relaxed);
                    tracing::info!(max_message_bytes = value, "the queue's message size limit");
                    return;
                }
            }
            tracing::warn!(
                assumed = limit.load(Ordering::Relaxed),
                "the queue's message size limit could not be read"
            );
        });
        self
    }

    async fn send_one(&self, message: &OutgoingMessage) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(&message.body)
            .set_message_attributes(Some(Self::attributes(message)))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| QueueError(describe(&e)))
    }
}

#[async_trait]
impl Queue for SqsQueue {
    fn max_message_bytes(&self) -> usize {
        self.max_message_bytes.load(Ordering::Relaxed)
    }

    async fn send_batch(&self, messages: &[OutgoingMessage]) -> Vec<Result<(), QueueError>> {
        if let [message] = messages {
            return vec![self.send_one(message).await];
        }
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&m.body)
                    .set_message_attributes(Some(Self::attributes(m)))
                    .build()
                    .expect("id and body are set")
            })
            .collect();
        let output = match self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) => return vec![Err(QueueError(describe(&e))); messages.len()],
        };
        batch_results(
            messages.len(),
            output.successful().iter().map(|ok| ok.id()),
            output.failed(),
        )
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, super::MAX_BATCH) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .message_attribute_names(ID_ATTRIBUTE)
            .message_attribute_names(CLAIM_ATTRIBUTE)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .customize()
            // A long poll legitimately takes `wait` before answering.
            .config_override(
                aws_sdk_sqs::config::Builder::default()
                    .timeout_config(self.tuning.timeout_config(wait)),
            )
            .send()
            .await
            .map_err(|e| QueueError(describe(&e)))?;
        Ok(output
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let system = m.attributes.as_ref();
                let number = |name: MessageSystemAttributeName| {
                    system
                        .and_then(|a| a.get(&name))
                        .and_then(|v| v.parse::<u64>().ok())
                };
                Some(ReceivedMessage {
                    sent_at_ms: number(MessageSystemAttributeName::SentTimestamp),
                    receive_count: number(MessageSystemAttributeName::ApproximateReceiveCount)
                        .unwrap_or(1) as u32,
                    email_id: m
                        .message_attributes
                        .as_ref()
                        .and_then(|a| a.get(ID_ATTRIBUTE))
                        .and_then(|v| v.string_value.clone()),
                    claim: m
                        .message_attributes
                        .as_ref()
                        .and_then(|a| a.get(CLAIM_ATTRIBUTE))
                        .and_then(|v| v.string_value.as_deref()?.parse().ok()),
                    message_id: m.message_id?,
                    receipt: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                })
            })
            .collect())
    }

    async fn delete_batch(&self, receipts: &[&str]) -> Vec<Result<(), QueueError>> {
        let entries = receipts
            .iter()
            .enumerate()
            .map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(*r)
                    .build()
                    .expect("id and receipt are set")
            })
            .collect();
        let output = match self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) => return vec![Err(QueueError(describe(&e))); receipts.len()],
        };
        batch_results(
            receipts.len(),
            output.successful().iter().map(|ok| ok.id()),
            output.failed(),
        )
    }

    async fn retry_later(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            // Whole seconds, rounded up: 0.5 s must not become "visible now".
            .visibility_timeout(delay.as_secs_f64().ceil().min(43_200.0) as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| QueueError(describe(&e)))
    }

    async fn visibility_timeout(&self) -> Result<Duration, QueueError> {
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .send()
            .await
            .map_err(|e| QueueError(describe(&e)))?
            .attributes
            .unwrap_or_default();
        attributes
            .get(&QueueAttributeName::VisibilityTimeout)
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs)
            .ok_or_else(|| QueueError("the queue did not say its visibility timeout".into()))
    }
}

/// One result per entry of a batch call, whose entry ids are their indexes.
/// An entry is done only if SQS lists it as successful; one it does not
/// mention at all counts as failed.
fn batch_results<'a>(
    len: usize,
    successful: impl Iterator<Item = &'a str>,
    failed: &[BatchResultErrorEntry],
) -> Vec<Result<(), QueueError>> {
    let mut results = vec![Err(QueueError("not acknowledged".into())); len];
    let index = |id: &str| id.parse::<usize>().ok().filter(|&i| i < len);
    for i in successful.filter_map(index) {
        results[i] = Ok(());
    }
    for entry in failed {
        if let Some(i) = index(entry.id()) {
            results[i] = Err(QueueError(format!(
                "{}: {}",
                entry.code(),
                entry.message().unwrap_or_default()
            )));
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(id: &str, code: &str) -> BatchResultErrorEntry {
        BatchResultErrorEntry::builder()
            .id(id)
            .sender_fault(false)
            .code(code)
            .build()
            .expect("id, sender fault and code are set")
    }

    #[test]
    fn only_entries_listed_as_successful_are_done() {
        let results = batch_results(
            4,
            ["0", "2", "7", "x"].into_iter(),
            &[failed("1", "InternalError"), failed("9", "Throttled")],
        );
        assert_eq!(results.len(), 4);
        assert_eq!(results[0], Ok(()));
        assert_eq!(results[2], Ok(()));
        assert!(
            matches!(&results[1], Err(QueueError(m)) if m.starts_with("InternalError")),
            "{:?}",
            results[1]
        );
        // Not mentioned by SQS at all: not sent.
        assert_eq!(results[3], Err(QueueError("not acknowledged".into())));
    }
}
