//! The SQS function: each record of an event through the same
//! message-to-bucket step as the Fargate worker, concurrently, reporting
//! partial batch failures so that only the failed records are retried (and a
//! record that can never be stored reaches the dead-letter queue through the
//! redrive policy).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::future::join_all;
use handlers::aws::AwsTuning;
use handlers::queue::{ID_ATTRIBUTE, ReceivedMessage};
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
        return Ok(local.local.storer(&dir, &local.keys.s3_key_prefix)?);
    }
    let config: WorkerConfig = config::from_env();
    telemetry::init(config.common.log.log_format, "info");
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
        message_id: record.message_id?,
        receipt: record.receipt_handle.unwrap_or_default(),
        body: record.body.unwrap_or_default(),
    })
}

/// Stores every record; answers the ids of those that were not stored.
pub async fn handle(storer: &Storer, event: SqsEvent) -> SqsBatchResponse {
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
    let results = join_all(messages.iter().map(|m| async move {
        let started = Instant::now();
        let result = storer.store(m).await;
        report::store_outcome(m, &result, started.elapsed())
    }))
    .await;
    for (message, outcome) in messages.iter().zip(results) {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use handlers::testing::MemoryBucket;

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
        let storer = Storer::new(bucket.clone(), "emails/");
        let response = handle(&storer, event(&[DATA, "not json", DATA, "[]"])).await;
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
        let storer = Storer::new(bucket.clone(), "emails/");
        let first = handle(&storer, event(&[DATA, DATA, DATA, DATA])).await;
        assert_eq!(first.batch_item_failures.len(), 2);
        assert_eq!(bucket.objects().len(), 2);
        bucket.fail_every(0);
        // Lambda retries the whole event's failed records, and may redeliver
        // the others too: either way, one object per message.
        let again = handle(&storer, event(&[DATA, DATA, DATA, DATA])).await;
        assert!(again.batch_item_failures.is_empty());
        assert_eq!(bucket.objects().len(), 4);
    }
}
