//! SQS's message-move task (StartMessageMoveTask, ListMessageMoveTasks),
//! which moto does not offer, played at the fault proxy in front of it: the
//! task moves every message of the source queue to the destination as AWS
//! does, body and message attributes kept, each a new message (new message
//! id and send time), and reports COMPLETED with the number moved. Enough to
//! run `queue2bucket redrive`'s move-task path against moto.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub struct MoveTasks {
    sqs: Client,
    tasks: Mutex<Vec<Value>>,
    started: AtomicU64,
}

impl MoveTasks {
    pub fn new(sqs: Client) -> Self {
        Self {
            sqs,
            tasks: Mutex::default(),
            started: AtomicU64::new(0),
        }
    }

    /// Move tasks started so far.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// The answer to an SQS JSON-protocol call, if it is one of the two.
    pub async fn answer(&self, target: &str, body: &Bytes) -> Option<Response> {
        let request: Value = serde_json::from_slice(body).unwrap_or_default();
        let answer = match target {
            "AmazonSQS.StartMessageMoveTask" => self.start(&request).await,
            "AmazonSQS.ListMessageMoveTasks" => Ok(self.list(&request)),
            _ => return None,
        };
        Some(match answer {
            Ok(value) => (
                StatusCode::OK,
                [("content-type", "application/x-amz-json-1.0")],
                value.to_string(),
            )
                .into_response(),
            Err(message) => (
                StatusCode::BAD_REQUEST,
                [("content-type", "application/x-amz-json-1.0")],
                json!({"__type": "com.amazonaws.sqs#InvalidParameterValue", "message": message})
                    .to_string(),
            )
                .into_response(),
        })
    }

    async fn url_of(&self, arn: &str) -> Result<String, String> {
        let name = arn.rsplit(':').next().unwrap_or_default();
        self.sqs
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| format!("no queue {arn}: {e}"))?
            .queue_url
            .ok_or_else(|| format!("no URL for {arn}"))
    }

    async fn start(&self, request: &Value) -> Result<Value, String> {
        let source_arn = request["SourceArn"].as_str().ok_or("SourceArn")?;
        let destination_arn = request["DestinationArn"].as_str().ok_or("DestinationArn")?;
        let (source, destination) = (
            self.url_of(source_arn).await?,
            self.url_of(destination_arn).await?,
        );
        self.started.fetch_add(1, Ordering::Relaxed);
        let mut moved = 0u64;
        let mut empty = 0;
        while empty < 2 {
            let messages = self
                .sqs
                .receive_message()
                .queue_url(&source)
                .max_number_of_messages(10)
                .visibility_timeout(30)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|e| e.to_string())?
                .messages
                .unwrap_or_default();
            if messages.is_empty() {
                empty += 1;
                continue;
            }
            empty = 0;
            let entries = messages
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(m.body().unwrap_or_default())
                        .set_message_attributes(m.message_attributes().cloned())
                        .build()
                        .unwrap()
                })
                .collect();
            self.sqs
                .send_message_batch()
                .queue_url(&destination)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let deletes = messages
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .build()
                        .unwrap()
                })
                .collect();
            self.sqs
                .delete_message_batch()
                .queue_url(&source)
                .set_entries(Some(deletes))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            moved += messages.len() as u64;
        }
        let handle = format!("move-task-{}", self.started());
        // As SQS lists a finished task: no handle (it names one only while
        // the task runs), the time it started.
        let started_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.tasks.lock().unwrap().push(json!({
            "Status": "COMPLETED",
            "SourceArn": source_arn,
            "DestinationArn": destination_arn,
            "ApproximateNumberOfMessagesMoved": moved,
            "ApproximateNumberOfMessagesToMove": moved,
            "StartedTimestamp": started_ms,
        }));
        Ok(json!({ "TaskHandle": handle }))
    }

    /// The source's tasks, newest first.
    fn list(&self, request: &Value) -> Value {
        let source = request["SourceArn"].as_str().unwrap_or_default();
        let results: Vec<Value> = self
            .tasks
            .lock()
            .unwrap()
            .iter()
            .rev()
            .filter(|t| t["SourceArn"] == source)
            .cloned()
            .collect();
        json!({ "Results": results })
    }
}
