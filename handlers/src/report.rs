//! The one log line per processed message, the same from the Fargate worker,
//! the Lambda SQS function and the local mode: id, key, size, receive count,
//! latency and outcome, never the email's content; and the metrics of the
//! outcome.

use std::time::Duration;

use crate::bucket::{FailureCause, PutOutcome};
use crate::id::now_millis;
use crate::metrics::names;
use crate::queue::ReceivedMessage;
use crate::store::{StoreError, Stored};

/// What became of a message, as the caller's retry logic sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored now, or found stored by an earlier delivery: delete it.
    Stored,
    /// Can never be stored: leave it for the queue's redrive policy.
    Poison,
    /// The bucket failed: retry.
    Failed,
}

impl Outcome {
    pub fn of(result: &Result<Stored, StoreError>) -> Self {
        match result {
            Ok(_) => Self::Stored,
            Err(StoreError::Poison(_) | StoreError::Lost(_)) => Self::Poison,
            Err(StoreError::Bucket(_)) => Self::Failed,
        }
    }
}

/// Logs the outcome of storing `message`, and answers it.
pub fn store_outcome(
    message: &ReceivedMessage,
    result: &Result<Stored, StoreError>,
    latency: Duration,
) -> Outcome {
    let latency_ms = latency.as_micros() as f64 / 1000.0;
    match result {
        Ok(stored) => {
            let outcome = match stored.outcome {
                PutOutcome::Created => {
                    ::metrics::counter!(names::EMAILS_STORED).increment(1);
                    // From when the API accepted it, by the id's clock.
                    let since = now_millis().saturating_sub(stored.id.unix_millis());
                    ::metrics::histogram!(names::END_TO_END_LATENCY).record(since as f64);
                    "stored"
                }
                PutOutcome::AlreadyExists => {
                    ::metrics::counter!(names::EMAILS_ALREADY_STORED).increment(1);
                    "already stored"
                }
            };
            tracing::info!(
                id = %stored.id,
                key = stored.key,
                bytes = stored.bytes,
                receive_count = message.receive_count,
                latency_ms,
                outcome,
                "message"
            );
        }
        Err(e) => {
            let (outcome, metric) = match e {
                StoreError::Poison(_) => (
                    "unstorable; left for the dead-letter queue",
                    names::MESSAGES_UNSTORABLE,
                ),
                StoreError::Lost(_) => (
                    "staged copy lost; left for the dead-letter queue",
                    names::MESSAGES_UNSTORABLE,
                ),
                StoreError::Bucket(_) => ("store failed; will be retried", names::STORE_FAILURES),
            };
            ::metrics::counter!(metric).increment(1);
            if let StoreError::Bucket(failure) = e {
                // Of the failures, those an operator acts on differently.
                match failure.cause() {
                    FailureCause::Throttled => {
                        ::metrics::counter!(names::STORE_FAILURES_THROTTLED).increment(1);
                    }
                    FailureCause::Denied => {
                        ::metrics::counter!(names::STORE_FAILURES_DENIED).increment(1);
                    }
                    FailureCause::Other => {}
                }
            }
            tracing::warn!(
                message_id = message.message_id,
                receive_count = message.receive_count,
                error = %e,
                latency_ms,
                outcome,
                "message"
            );
        }
    }
    Outcome::of(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::BucketError;
    use crate::metrics::{Emf, MetricsArgs, MetricsFormat, Service};

    fn message() -> ReceivedMessage {
        ReceivedMessage {
            message_id: "m".into(),
            receipt: "r".into(),
            body: "{}".into(),
            email_id: None,
            sent_at_ms: None,
            receive_count: 1,
            claim: None,
        }
    }

    /// Each failed store counts once in StoreFailures, and once more under
    /// its cause when an operator acts on it differently.
    #[test]
    fn a_failed_store_is_counted_with_its_cause() {
        let emf = Emf::new(
            Service::Worker,
            &MetricsArgs {
                metrics_format: MetricsFormat::Off,
                metrics_namespace: "Test".into(),
            },
        );
        let failures = [
            "AccessDenied: Access Denied",
            "SlowDown: Please reduce your request rate.",
            "SlowDown: again",
            "timed out",
        ];
        metrics::with_local_recorder(&emf, || {
            for text in failures {
                let failed = Err(StoreError::Bucket(BucketError(text.into())));
                assert_eq!(
                    store_outcome(&message(), &failed, Duration::ZERO),
                    Outcome::Failed
                );
            }
        });
        let doc = emf.document(0);
        assert_eq!(doc[names::STORE_FAILURES], 4);
        assert_eq!(doc[names::STORE_FAILURES_THROTTLED], 2);
        assert_eq!(doc[names::STORE_FAILURES_DENIED], 1);
    }
}
