//! The dead-letter queue of an SQS queue, for `queue2bucket redrive`: found
//! from the queue's redrive policy, listed, and moved back.
//!
//! Moving uses SQS's own message-move task where the server offers it and
//! every waiting message carries the API's id attribute. Otherwise each
//! message is received from the dead-letter queue, sent to the queue with its
//! body and attributes, and deleted from the dead-letter queue only once the
//! send succeeded. A message without the id attribute (sent by another
//! producer, such as the original API) gets the id the worker would have
//! derived for it from its SQS message id and send time; a move task would
//! give it a new message id and send time, hence a new object key, and an
//! email stored before it was dead-lettered would be stored twice.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};

use super::{DeadLetter, DeadLetters, ID_ATTRIBUTE, QueueError};
use crate::aws::describe;
use crate::id::EmailId;

pub struct SqsDeadLetters {
    client: Client,
    queue_url: String,
    queue_arn: String,
    dlq_url: String,
    dlq_arn: String,
}

/// How long a message being copied stays hidden from others.
const HIDE: i32 = 30;

/// How long a message stays hidden while the dead-letter queue is scanned:
/// long enough to receive every message of a large queue once (a message
/// seen twice ends the scan as incomplete), then all are released at once.
const SCAN_HIDE: i32 = 120;

/// What a scan of the dead-letter queue found.
struct Scan {
    letters: Vec<DeadLetter>,
    /// Every message seen carries a valid email id attribute.
    stamped: bool,
    /// Every message was seen (the scan ended on an empty queue, not on a
    /// message seen twice or on the first one without an id).
    complete: bool,
}

fn error(what: &str, e: impl std::fmt::Display) -> QueueError {
    QueueError(format!("{what}: {e}"))
}

impl SqsDeadLetters {
    /// IAM actions an operator needs for `queue2bucket redrive`.
    pub const ACTIONS: &[&str] = &[
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        "sqs:StartMessageMoveTask",
        "sqs:ListMessageMoveTasks",
        "sqs:ReceiveMessage",
        "sqs:SendMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
    ];

    /// The dead-letter queue's URL.
    pub fn dlq_url(&self) -> &str {
        &self.dlq_url
    }

    /// Finds the dead-letter queue from `queue_url`'s redrive policy.
    pub async fn discover(client: Client, queue_url: &str) -> Result<Self, QueueError> {
        let attributes = client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| error("reading the queue's attributes", describe(&e)))?
            .attributes
            .unwrap_or_default();
        let queue_arn = attributes
            .get(&QueueAttributeName::QueueArn)
            .cloned()
            .ok_or_else(|| QueueError("the queue has no ARN".into()))?;
        let policy = attributes
            .get(&QueueAttributeName::RedrivePolicy)
            .ok_or_else(|| {
                QueueError("the queue has no redrive policy, hence no dead-letter queue".into())
            })?;
        let dlq_arn = serde_json::from_str::<serde_json::Value>(policy)
            .ok()
            .and_then(|p| p["deadLetterTargetArn"].as_str().map(str::to_owned))
            .ok_or_else(|| QueueError(format!("unreadable redrive policy {policy:?}")))?;
        // arn:aws:sqs:<region>:<account>:<name>
        let parts: Vec<&str> = dlq_arn.split(':').collect();
        let [_, _, _, _, account, name] = parts.as_slice() else {
            return Err(QueueError(format!(
                "unexpected dead-letter queue ARN {dlq_arn:?}"
            )));
        };
        let dlq_url = client
            .get_queue_url()
            .queue_name(*name)
            .queue_owner_aws_account_id(*account)
            .send()
            .await
            .map_err(|e| error("finding the dead-letter queue", describe(&e)))?
            .queue_url
            .ok_or_else(|| QueueError("the dead-letter queue has no URL".into()))?;
        Ok(Self {
            client,
            queue_url: queue_url.to_owned(),
            queue_arn,
            dlq_url,
            dlq_arn,
        })
    }

    async fn receive(
        &self,
        wait: i32,
        hide: i32,
    ) -> Result<Vec<aws_sdk_sqs::types::Message>, QueueError> {
        Ok(self
            .client
            .receive_message()
            .queue_url(&self.dlq_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait)
            .visibility_timeout(hide)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| error("receiving from the dead-letter queue", describe(&e)))?
            .messages
            .unwrap_or_default())
    }

    /// Makes messages visible again at once, ten per call; fails if any
    /// stays hidden (the caller would otherwise miss it for a while).
    async fn release(&self, receipts: &[String]) -> Result<(), QueueError> {
        let mut failed = 0;
        for chunk in receipts.chunks(10) {
            let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(0)
                        .build()
                        .expect("id and receipt are set")
                })
                .collect();
            match self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.dlq_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(output) => failed += output.failed().len(),
                Err(e) => {
                    tracing::warn!(error = describe(&e), "releasing dead letters failed");
                    failed += chunk.len();
                }
            }
        }
        if failed > 0 {
            return Err(QueueError(format!(
                "{failed} dead letters stay hidden for up to {SCAN_HIDE} s (sqs:ChangeMessageVisibility); run again then"
            )));
        }
        Ok(())
    }

    /// SQS's own move task; None if the server does not offer it.
    async fn move_task(&self) -> Option<Result<u64, QueueError>> {
        let asked_ms = crate::id::now_millis();
        let started = self
            .client
            .start_message_move_task()
            .source_arn(&self.dlq_arn)
            .destination_arn(&self.queue_arn)
            .send()
            .await;
        let handle = match started {
            Ok(output) => output.task_handle().unwrap_or_default().to_owned(),
            Err(e) => return self.not_started(e),
        };
        // SQS lists a queue's tasks newest first, and names a task's handle
        // only while it runs: ours is the one with our handle, or, once
        // done, the newest started since we asked (one task at a time runs
        // per queue; a minute allows for the clocks).
        let mut unlisted = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let tasks = match self
                .client
                .list_message_move_tasks()
                .source_arn(&self.dlq_arn)
                .max_results(10)
                .send()
                .await
            {
                Ok(tasks) => tasks,
                Err(e) => return Some(Err(error("following the move task", describe(&e)))),
            };
            let ours = tasks.results().iter().find(|t| {
                t.task_handle() == Some(handle.as_str())
                    || (t.task_handle().is_none()
                        && t.started_timestamp() as u64 + 60_000 >= asked_ms)
            });
            let Some(task) = ours else {
                unlisted += 1;
                if unlisted > 60 {
                    return Some(Err(QueueError(format!(
                        "the move task {handle} is not listed a minute after it started"
                    ))));
                }
                continue;
            };
            match task.status() {
                Some("COMPLETED") => {
                    return Some(Ok(task.approximate_number_of_messages_moved() as u64));
                }
                Some("FAILED") | Some("CANCELLED") => {
                    return Some(Err(QueueError(format!(
                        "the move task ended {}: {}",
                        task.status().unwrap_or_default(),
                        task.failure_reason().unwrap_or_default()
                    ))));
                }
                _ => {}
            }
        }
    }

    /// Why a move task did not start: None (copy instead) if the server
    /// offers none, else the refusal.
    fn not_started<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        e: SdkError<E, HttpResponse>,
    ) -> Option<Result<u64, QueueError>> {
        if !not_offered(&e) {
            return Some(Err(error(
                "starting SQS's message move task (sqs:StartMessageMoveTask on the dead-letter queue; one task at a time per queue)",
                describe(&e),
            )));
        }
        tracing::info!(
            reason = describe(&e),
            "no message move task; moving message by message"
        );
        None
    }

    /// The waiting messages, each once, left visible again. Ends on an
    /// empty queue (complete), on a message seen twice (the queue outlasted
    /// [`SCAN_HIDE`]), or, with `stop_at_foreign`, on the first message
    /// without a valid email id (the decision it serves is then made).
    async fn scan(&self, stop_at_foreign: bool) -> Result<Scan, QueueError> {
        let mut scan = Scan {
            letters: Vec::new(),
            stamped: true,
            complete: false,
        };
        let mut seen = HashSet::new();
        let mut receipts = Vec::new();
        let mut empty = 0;
        'receiving: while empty < 2 {
            let messages = self.receive(1, SCAN_HIDE).await?;
            if messages.is_empty() {
                empty += 1;
                continue;
            }
            empty = 0;
            for m in &messages {
                receipts.extend(m.receipt_handle().map(str::to_owned));
            }
            for m in &messages {
                let message_id = m.message_id().unwrap_or_default().to_owned();
                if !seen.insert(message_id.clone()) {
                    break 'receiving;
                }
                let stamped = m
                    .message_attributes()
                    .and_then(|a| a.get(ID_ATTRIBUTE))
                    .and_then(|v| v.string_value())
                    .and_then(EmailId::parse)
                    .is_some();
                scan.stamped &= stamped;
                scan.letters.push(DeadLetter {
                    id: id_of(m),
                    message_id,
                    sent_at_ms: sent_at_ms(m),
                    receive_count: m
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                });
                if !stamped && stop_at_foreign {
                    break 'receiving;
                }
            }
        }
        scan.complete = empty >= 2;
        // Scanning hid them; make them visible again at once.
        self.release(&receipts).await?;
        Ok(scan)
    }

    /// Receive, send, delete, until the dead-letter queue is empty.
    async fn copy(&self) -> Result<u64, QueueError> {
        // By message id: a message whose delete failed comes back and may be
        // copied and deleted again before the end.
        let mut moved = HashSet::new();
        let mut not_deleted = HashSet::new();
        let mut delete_error = String::new();
        let mut empty = 0;
        // Two empty long polls in a row: SQS may answer empty once while
        // messages remain.
        while empty < 2 {
            let messages = self.receive(1, HIDE).await?;
            if messages.is_empty() {
                empty += 1;
                continue;
            }
            empty = 0;
            let entries: Vec<SendMessageBatchRequestEntry> = messages
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(m.body().unwrap_or_default())
                        .set_message_attributes(Some(attributes_of(m)))
                        .build()
                        .expect("id and body are set")
                })
                .collect();
            let sent = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            let sent: Vec<usize> = match sent {
                Ok(output) => output
                    .successful()
                    .iter()
                    .filter_map(|s| s.id().parse().ok())
                    .collect(),
                Err(e) => {
                    let receipts: Vec<String> = messages
                        .iter()
                        .filter_map(|m| m.receipt_handle().map(str::to_owned))
                        .collect();
                    self.release(&receipts).await?;
                    return Err(error("sending to the queue", describe(&e)));
                }
            };
            let unsent: Vec<String> = messages
                .iter()
                .enumerate()
                .filter(|(i, _)| !sent.contains(i))
                .filter_map(|(_, m)| m.receipt_handle().map(str::to_owned))
                .collect();
            // Entry ids are the messages' indexes in this receive.
            let deletes: Vec<DeleteMessageBatchRequestEntry> = sent
                .iter()
                .filter_map(|&i| Some((i, messages.get(i)?.receipt_handle()?)))
                .map(|(i, receipt)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .build()
                        .expect("id and receipt are set")
                })
                .collect();
            let message_id = |entry_id: &str| {
                entry_id
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| messages.get(i)?.message_id())
                    .unwrap_or_default()
                    .to_owned()
            };
            if !deletes.is_empty() {
                // A message sent and not deleted comes back to the
                // dead-letter queue and is moved again: its copy on the
                // queue carries the same id, so it is stored once.
                let ids: Vec<String> = deletes.iter().map(|d| message_id(d.id())).collect();
                match self
                    .client
                    .delete_message_batch()
                    .queue_url(&self.dlq_url)
                    .set_entries(Some(deletes))
                    .send()
                    .await
                {
                    Ok(output) => {
                        for done in output.successful() {
                            let id = message_id(done.id());
                            not_deleted.remove(&id);
                            moved.insert(id);
                        }
                        for f in output.failed() {
                            delete_error = f.message().unwrap_or(f.code()).to_owned();
                            not_deleted.insert(message_id(f.id()));
                        }
                    }
                    Err(e) => {
                        delete_error = describe(&e);
                        not_deleted.extend(ids);
                    }
                }
            }
            if !unsent.is_empty() {
                self.release(&unsent).await?;
                return Err(QueueError(format!(
                    "{} messages could not be sent to the queue; they stay in the dead-letter queue",
                    unsent.len()
                )));
            }
        }
        if !not_deleted.is_empty() {
            return Err(QueueError(format!(
                "{} moved; {} copied to the queue but still in the dead-letter queue \
                 (deleting them failed: {delete_error}): run redrive again, their copies carry \
                 the same email id, so each email is stored once",
                moved.len(),
                not_deleted.len()
            )));
        }
        Ok(moved.len() as u64)
    }
}

/// Whether a failed StartMessageMoveTask means that the server does not
/// offer move tasks (an emulator answers an unknown action, or 500): the
/// message-by-message copy moves them as well, only slower. A refusal (no
/// permission, a task already running) is the operator's to see.
fn not_offered<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    let unknown_action = matches!(
        e.code(),
        Some(
            "InvalidAction"
                | "UnsupportedOperation"
                | "AWS.SimpleQueueService.UnsupportedOperation"
                | "NotImplemented"
        )
    );
    let server_error = e
        .raw_response()
        .is_some_and(|r| r.status().is_server_error());
    unknown_action || server_error
}

/// A dead-lettered message's attributes for the queue, its email id
/// included.
fn attributes_of(message: &aws_sdk_sqs::types::Message) -> HashMap<String, MessageAttributeValue> {
    let mut attributes = message.message_attributes().cloned().unwrap_or_default();
    if !attributes.contains_key(ID_ATTRIBUTE) {
        let id = id_of(message);
        let value = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(id.to_string())
            .build()
            .expect("data_type is set");
        attributes.insert(ID_ATTRIBUTE.to_owned(), value);
    }
    attributes
}

fn sent_at_ms(message: &aws_sdk_sqs::types::Message) -> Option<u64> {
    message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
        .and_then(|v| v.parse().ok())
}

/// The id the worker gives this message.
fn id_of(message: &aws_sdk_sqs::types::Message) -> EmailId {
    message
        .message_attributes()
        .and_then(|a| a.get(ID_ATTRIBUTE))
        .and_then(|v| v.string_value())
        .and_then(EmailId::parse)
        .unwrap_or_else(|| {
            EmailId::derived(
                message.message_id().unwrap_or_default(),
                sent_at_ms(message).unwrap_or_default(),
            )
        })
}

#[async_trait]
impl DeadLetters for SqsDeadLetters {
    fn describe(&self) -> String {
        format!("{} (dead-letter queue of {})", self.dlq_url, self.queue_url)
    }

    async fn list(&self) -> Result<Vec<DeadLetter>, QueueError> {
        Ok(self.scan(false).await?.letters)
    }

    async fn redrive(&self) -> Result<u64, QueueError> {
        let scan = self.scan(true).await?;
        if scan.letters.is_empty() && scan.complete {
            return Ok(0);
        }
        if !scan.stamped {
            tracing::info!(
                "some dead letters carry no email id (another producer's): moving message by message so that each keeps its object key"
            );
        } else if !scan.complete {
            tracing::info!(
                "the dead-letter queue is too large to check every message's id: moving message by message, which keeps every key"
            );
        } else if let Some(result) = self.move_task().await {
            return result;
        }
        self.copy().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::error::ErrorMetadata;
    use aws_sdk_sqs::operation::start_message_move_task::StartMessageMoveTaskError;
    use aws_smithy_types::body::SdkBody;

    fn failed(status: u16, code: &str) -> SdkError<StartMessageMoveTaskError, HttpResponse> {
        let error = StartMessageMoveTaskError::generic(ErrorMetadata::builder().code(code).build());
        let response = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        SdkError::service_error(error, response)
    }

    #[test]
    fn only_a_server_without_move_tasks_falls_back_to_copying() {
        for (status, code) in [
            (400, "InvalidAction"),
            (400, "UnsupportedOperation"),
            (500, ""),
        ] {
            assert!(not_offered(&failed(status, code)), "{status} {code}");
        }
        // Refusals are reported, not worked around.
        for (status, code) in [
            (403, "AccessDenied"),
            (400, "InvalidParameterValue"),
            (400, "ResourceNotFoundException"),
        ] {
            assert!(!not_offered(&failed(status, code)), "{status} {code}");
        }
    }
}
