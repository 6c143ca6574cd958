//! The SQS function: each record of an event through the same
//! message-to-bucket step as the Fargate worker, concurrently, reporting
//! partial batch failures so that only the failed records are retried (and a
//! record that can never be stored reaches the dead-letter queue through the
//! redrive policy).

use std::collections::HashMap;
use std::sync::Arc;
use tokio::time::Instant;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::StreamExt;
use handlers::aws::AwsTuning;
use handlers::metrics::{Service, names};
use handlers::queue::{CLAIM_ATTRIBUTE, ID_ATTRIBUTE, ReceivedMessage};
use handlers::report::{self, Outcome};
use handlers::startup::{aws_storer, sdk_config};
use handlers::store::Storer;
use handlers::telemetry;

use crate::config::{self, WorkerConfig};

/// Message-to-bucket over S3, or over the local mode's data directory when
/// `QUEUE2BUCKET_DATA_DIR` is set; built once at init.
pub async fn storer() -> Result<Arc<Storer>, lambda_runtime::Error> {
    #[cfg(feature = "local")]
    if let Some((local, dir)) = config::local()? {
        telemetry::init(local.log.log_format, "info");
        handlers::metrics::install(Service::Worker, &config::LOCAL_METRICS);
        return Ok(local
            .local
            .storer(&dir, local.keys.keys(), &local.limits.memory)?);
    }
    let config: WorkerConfig = config::from_env();
    telemetry::init(config.common.log.log_format, "info");
    config.store.check()?;
    handlers::metrics::install(Service::Worker, &config.metrics);
    let sdk = sdk_config(&config.common, AwsTuning::WORKER).await;
    Ok(aws_storer(&config.store, &sdk))
}

/// An SQS record as the port's message type. None if it has no message id,
/// which SQS always sets; such a record cannot be reported on its own.
fn received(record: SqsMessage) -> Option<ReceivedMessage> {
    let number = |attributes: &HashMap<String, String>, name: &str| {
        attributes.get(name).and_then(|v| v.parse::<u64>().ok())
    };
    Some(ReceivedMessage {
        sent_at_ms: number(&record.attributes, "SentTimestamp"),
        receive_count: number(&record.attributes, "ApproximateReceiveCount").unwrap_or(1) as u32,
        email_id: record
            .message_attributes
            .get(ID_ATTRIBUTE)
            .and_then(|a| a.string_value.clone()),
        claim: record
            .message_attributes
            .get(CLAIM_ATTRIBUTE)
            .and_then(|a| a.string_value.as_deref()?.parse().ok()),
        message_id: record.message_id?,
        receipt: record.receipt_handle.unwrap_or_default(),
        body: record.body.unwrap_or_default(),
    })
}

/// Records stored at once.
const CONCURRENCY: usize = 16;

/// Stores every record it can by `deadline` (the invocation's, less the
/// time to answer); answers the ids of those that were not stored, which
/// the event source mapping makes visible again. A record is not started
/// once the deadline has come, and one under way then is given up: the
/// function answers in time, rather than being killed with every record of
/// the batch counted as failed.
pub async fn handle(
    storer: &Storer,
    event: SqsEvent,
    deadline: Option<Instant>,
) -> SqsBatchResponse {
    let mut failures = Vec::new();
    let mut messages = Vec::with_capacity(event.records.len());
    for record in event.records {
        match received(record) {
            Some(m) => messages.push(m),
            // An empty identifier makes Lambda retry the whole batch, which
            // is the only safe answer for a record it cannot name.
            None => failures.push(String::new()),
        }
    }
    metrics::counter!(names::MESSAGES_RECEIVED).increment(messages.len() as u64);
    let started = Instant::now();
    let outcomes: Vec<(&ReceivedMessage, Outcome)> = futures_util::stream::iter(&messages)
        .map(|m| async move { (m, store_by(storer, m, deadline).await) })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    metrics::histogram!(names::WORKER_BATCH_TIME)
        .record(handlers::metrics::millis(started.elapsed()));
    for (message, outcome) in outcomes {
        if outcome != Outcome::Stored {
            failures.push(message.message_id.clone());
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}

/// Stores one record unless the deadline has come, or comes first.
async fn store_by(
    storer: &Storer,
    message: &ReceivedMessage,
    deadline: Option<Instant>,
) -> Outcome {
    let started = Instant::now();
    // Without a deadline, Lambda's longest function timeout bounds it.
    let deadline = deadline.unwrap_or(started + std::time::Duration::from_secs(900));
    match tokio::time::timeout_at(deadline, storer.store(message)).await {
        Ok(result) => report::store_outcome(message, &result, started.elapsed()),
        Err(_) => {
            tracing::warn!(
                message_id = message.message_id,
                receive_count = message.receive_count,
                outcome = "not stored by the invocation's deadline; will be retried",
                "message"
            );
            Outcome::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use handlers::testing::MemoryBucket;

    use handlers::keys::KeyPrefix;

    use super::*;

    const DATA: &str =
        r#"{"email_subject":"s","email_sender":"a@b.c","email_timestream":1,"email_content":"c"}"#;

    fn event(bodies: &[&str]) -> SqsEvent {
        let records: Vec<serde_json::Value> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                serde_json::json!({
                    "messageId": format!("0000000{i}-0000-4000-8000-000000000000"),
                    "receiptHandle": format!("rh-{i}"),
                    "body": body,
                    "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1732780800000"},
                    "messageAttributes": {},
                    "md5OfBody": "",
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:emails",
                    "awsRegion": "us-east-2"
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
    }

    /// No deadline, as a local emulator may give.
    fn later() -> Option<Instant> {
        None
    }

    fn failed_ids(response: &SqsBatchResponse) -> Vec<String> {
        let mut ids: Vec<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn exactly_the_records_that_failed_are_reported() {
        let bucket = Arc::new(MemoryBucket::default());
        let storer = Storer::new(bucket.clone(), KeyPrefix::default());
        let response = handle(&storer, event(&[DATA, "not json", DATA, "[]"]), later()).await;
        assert_eq!(
            failed_ids(&response),
            vec![
                "00000001-0000-4000-8000-000000000000",
                "00000003-0000-4000-8000-000000000000"
            ]
        );
        assert_eq!(bucket.objects().len(), 2);
    }

    #[tokio::test]
    async fn bucket_failures_are_reported_and_retries_do_not_duplicate() {
        let bucket = Arc::new(MemoryBucket::default());
        bucket.fail_every(2);
        let storer = Storer::new(bucket.clone(), KeyPrefix::default());
        let first = handle(&storer, event(&[DATA, DATA, DATA, DATA]), later()).await;
        assert_eq!(first.batch_item_failures.len(), 2);
        assert_eq!(bucket.objects().len(), 2);
        bucket.fail_every(0);
        // Lambda retries the whole event's failed records, and may redeliver
        // the others too: either way, one object per message.
        let again = handle(&storer, event(&[DATA, DATA, DATA, DATA]), later()).await;
        assert!(again.batch_item_failures.is_empty());
        assert_eq!(bucket.objects().len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn records_not_stored_by_the_deadline_are_reported_in_time() {
        let bucket = Arc::new(MemoryBucket::default());
        bucket.set_delay(std::time::Duration::from_secs(20));
        let storer = Storer::new(bucket.clone(), KeyPrefix::default());
        let started = Instant::now();
        let deadline = started + std::time::Duration::from_secs(2);
        let response = handle(&storer, event(&[DATA, DATA, DATA]), Some(deadline)).await;
        assert_eq!(started.elapsed(), std::time::Duration::from_secs(2));
        assert_eq!(response.batch_item_failures.len(), 3);
    }
}
