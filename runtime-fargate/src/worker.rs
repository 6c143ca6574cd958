//! The poll loop: queue → bucket, deleting a message only after its object is
//! stored.
//!
//! - `concurrency` receive loops run at once; each long-polls for up to 10
//!   messages and stores them concurrently. An idle loop waits inside the long
//!   poll (no sleeping, so a new message is picked up at once); a loop that
//!   got messages polls again immediately.
//! - Stored (or already stored) messages are deleted in one batch; entries
//!   that fail to delete are retried, and if they still fail the message comes
//!   back later and is recognised as already stored.
//! - A message that can never be stored is left alone: the queue's redrive
//!   policy moves it to the dead-letter queue after its maximum receives.
//! - When the bucket fails, the message is made visible again after a delay
//!   growing with its receive count, and the loop itself backs off with
//!   jitter, so an outage costs neither a busy core nor a flood of calls.
//! - On shutdown, loops stop receiving, finish their batch and return.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use handlers::bucket::PutOutcome;
use handlers::queue::{MAX_BATCH, Queue, ReceivedMessage};
use handlers::store::{StoreError, Stored, Storer};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    pub poll_interval: Duration,
    pub concurrency: usize,
    /// First delay before a message whose store failed is tried again;
    /// doubles with each receive.
    pub retry_base: Duration,
}

impl WorkerConfig {
    pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(1);
}

/// Called for each stored message (the local mode prints a line per email).
pub type OnStored = Arc<dyn Fn(&Stored, &ReceivedMessage) + Send + Sync>;

struct Context {
    queue: Arc<dyn Queue>,
    storer: Arc<Storer>,
    config: WorkerConfig,
    on_stored: Option<OnStored>,
}

/// Runs until `shutdown` is cancelled and in-flight batches are done.
pub async fn run(
    queue: Arc<dyn Queue>,
    storer: Arc<Storer>,
    config: WorkerConfig,
    on_stored: Option<OnStored>,
    shutdown: CancellationToken,
) {
    let context = Arc::new(Context {
        queue,
        storer,
        config,
        on_stored,
    });
    let mut loops = JoinSet::new();
    for _ in 0..config.concurrency.max(1) {
        loops.spawn(receive_loop(context.clone(), shutdown.clone()));
    }
    while loops.join_next().await.is_some() {}
    tracing::info!("worker stopped");
}

async fn receive_loop(context: Arc<Context>, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(20));
    loop {
        let received = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            r = context.queue.receive(MAX_BATCH, context.config.poll_interval) => r,
        };
        let failures = match received {
            Ok(messages) if messages.is_empty() => 0,
            Ok(messages) => process_batch(&context, messages, &mut backoff).await,
            Err(e) => {
                tracing::warn!(error = %e, "receive failed");
                1
            }
        };
        if failures == 0 {
            backoff.reset();
        } else {
            let pause = backoff.next_delay();
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// Stores a batch and deletes what was stored; answers how many messages met
/// a bucket failure.
async fn process_batch(
    context: &Context,
    messages: Vec<ReceivedMessage>,
    backoff: &mut Backoff,
) -> usize {
    let results = join_all(messages.iter().map(|m| async move {
        let started = Instant::now();
        (context.storer.store(m).await, started.elapsed())
    }))
    .await;
    let mut done = Vec::with_capacity(messages.len());
    let mut failures = 0;
    for (message, (result, elapsed)) in messages.iter().zip(results) {
        let latency_ms = elapsed.as_micros() as f64 / 1000.0;
        match result {
            Ok(stored) => {
                let outcome = match stored.outcome {
                    PutOutcome::Created => "stored",
                    PutOutcome::AlreadyExists => "already stored",
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
                if let Some(on_stored) = &context.on_stored {
                    on_stored(&stored, message);
                }
                done.push(message.receipt.as_str());
            }
            Err(StoreError::Poison(e)) => {
                tracing::warn!(
                    message_id = message.message_id,
                    receive_count = message.receive_count,
                    error = %e,
                    outcome = "unstorable; left for the dead-letter queue",
                    "message"
                );
            }
            Err(StoreError::Bucket(e)) => {
                failures += 1;
                let delay = retry_delay(context.config.retry_base, message.receive_count);
                tracing::warn!(
                    message_id = message.message_id,
                    receive_count = message.receive_count,
                    error = %e,
                    latency_ms,
                    retry_in_s = delay.as_secs(),
                    outcome = "store failed; will retry",
                    "message"
                );
                // If this fails too, the visibility timeout brings it back.
                if let Err(e) = context.queue.retry_later(&message.receipt, delay).await {
                    tracing::warn!(error = %e, "could not delay the retry");
                }
            }
        }
    }
    delete_all(context, &done, backoff).await;
    failures
}

/// Deletes by receipt, retrying failed entries a few times.
async fn delete_all(context: &Context, receipts: &[&str], backoff: &mut Backoff) {
    let mut pending: Vec<&str> = receipts.to_vec();
    for attempt in 0..3 {
        if pending.is_empty() {
            return;
        }
        if attempt > 0 {
            tokio::time::sleep(backoff.next_delay()).await;
        }
        let results = context.queue.delete_batch(&pending).await;
        pending = pending
            .into_iter()
            .zip(results)
            .filter_map(|(r, result)| result.err().map(|_| r))
            .collect();
    }
    if !pending.is_empty() {
        // Stored already: a redelivery will find the object and delete then.
        tracing::warn!(
            count = pending.len(),
            "delete failed; the messages will be redelivered and recognised as stored"
        );
    }
}

/// Visibility delay before a message whose store failed is tried again:
/// `base` doubled per earlier receive, capped at 5 minutes, with jitter.
fn retry_delay(base: Duration, receive_count: u32) -> Duration {
    let full =
        (base * (1u32 << receive_count.saturating_sub(1).min(16))).min(Duration::from_secs(300));
    full / 2 + (full / 2).mul_f64(fastrand::f64())
}

/// Exponential back-off with "equal jitter": half the delay fixed, half
/// random, so retries spread out but never collapse to zero.
struct Backoff {
    base: Duration,
    cap: Duration,
    current: Duration,
}

impl Backoff {
    fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            current: base,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.cap);
        let half = d / 2;
        half + half.mul_f64(fastrand::f64())
    }

    fn reset(&mut self) {
        self.current = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use handlers::id::EmailId;
    use handlers::queue::OutgoingMessage;
    use handlers::testing::{MemoryBucket, MemoryQueue};

    const DATA: &str =
        r#"{"email_subject":"s","email_sender":"a@b.c","email_timestream":1,"email_content":"c"}"#;

    struct Fixture {
        queue: Arc<MemoryQueue>,
        bucket: Arc<MemoryBucket>,
        shutdown: CancellationToken,
        worker: tokio::task::JoinHandle<()>,
    }

    fn start(queue: Arc<MemoryQueue>, bucket: Arc<MemoryBucket>, concurrency: usize) -> Fixture {
        let shutdown = CancellationToken::new();
        let storer = Arc::new(Storer::new(bucket.clone(), "emails/"));
        let worker = tokio::spawn(run(
            queue.clone(),
            storer,
            WorkerConfig {
                poll_interval: Duration::from_secs(10),
                concurrency,
                retry_base: Duration::from_millis(10),
            },
            None,
            shutdown.clone(),
        ));
        Fixture {
            queue,
            bucket,
            shutdown,
            worker,
        }
    }

    async fn enqueue(queue: &MemoryQueue, n: usize) {
        for chunk in (0..n).collect::<Vec<_>>().chunks(MAX_BATCH) {
            let batch: Vec<_> = chunk
                .iter()
                .map(|_| OutgoingMessage {
                    id: EmailId::new(),
                    body: DATA.into(),
                })
                .collect();
            queue.send_batch(&batch).await;
        }
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_backlog_is_stored_once_and_deleted() {
        let queue = Arc::new(MemoryQueue::default());
        enqueue(&queue, 95).await;
        let f = start(queue, Arc::new(MemoryBucket::default()), 3);
        until("the backlog to drain", || f.queue.is_empty()).await;
        assert_eq!(f.bucket.objects().len(), 95);
        f.shutdown.cancel();
        f.worker.await.unwrap();
    }

    #[tokio::test]
    async fn full_batches_are_followed_by_an_immediate_poll() {
        let queue = Arc::new(MemoryQueue::default());
        enqueue(&queue, 100).await;
        let f = start(queue, Arc::new(MemoryBucket::default()), 1);
        // With a 10 s poll window, draining 100 messages in well under 10 s
        // shows the loop never waited between full batches.
        tokio::time::timeout(
            Duration::from_secs(5),
            until("drain", || f.queue.is_empty()),
        )
        .await
        .expect("drained without waiting");
        assert!(f.queue.receive_calls() >= 10);
        f.shutdown.cancel();
        f.worker.await.unwrap();
    }

    #[tokio::test]
    async fn poison_messages_are_left_and_others_flow() {
        let queue = Arc::new(MemoryQueue::default());
        queue.push_raw("not json");
        queue.push_raw(r#"{"email_subject":"only"}"#);
        enqueue(&queue, 5).await;
        let f = start(queue, Arc::new(MemoryBucket::default()), 2);
        until("the good messages", || f.bucket.objects().len() == 5).await;
        until("only poison left", || f.queue.len() == 2).await;
        f.shutdown.cancel();
        f.worker.await.unwrap();
        assert_eq!(f.queue.len(), 2, "poison is never deleted");
    }

    #[tokio::test]
    async fn bucket_failures_are_retried_and_never_deleted_unstored() {
        let queue = Arc::new(MemoryQueue::with_visibility(Duration::from_millis(50)));
        enqueue(&queue, 30).await;
        let bucket = Arc::new(MemoryBucket::default());
        bucket.fail_every(3);
        let f = start(queue, bucket, 2);
        until("all stored", || f.queue.is_empty()).await;
        assert_eq!(f.bucket.objects().len(), 30);
        f.shutdown.cancel();
        f.worker.await.unwrap();
    }

    #[tokio::test]
    async fn failed_deletes_lead_to_redelivery_not_duplicates() {
        let queue = Arc::new(MemoryQueue::with_visibility(Duration::from_millis(50)));
        enqueue(&queue, 10).await;
        queue.fail_deletes(true);
        let f = start(queue, Arc::new(MemoryBucket::default()), 1);
        until("redelivered messages to be put again", || {
            f.bucket.put_calls() > 10
        })
        .await;
        f.queue.fail_deletes(false);
        until("deleted after redelivery", || f.queue.is_empty()).await;
        assert_eq!(f.bucket.objects().len(), 10, "no duplicates");
        f.shutdown.cancel();
        f.worker.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_interrupts_an_idle_long_poll() {
        let f = start(
            Arc::new(MemoryQueue::default()),
            Arc::new(MemoryBucket::default()),
            4,
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        f.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(1), f.worker)
            .await
            .expect("stopped promptly")
            .unwrap();
    }

    #[test]
    fn delays_grow_and_stay_bounded() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)));
        assert!(delays[9] >= Duration::from_secs(1));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
        let base = Duration::from_secs(1);
        let first = retry_delay(base, 1);
        assert!(
            first >= Duration::from_millis(500) && first <= base,
            "{first:?}"
        );
        let third = retry_delay(base, 3);
        assert!(third >= Duration::from_secs(2) && third <= Duration::from_secs(4));
        assert!(retry_delay(base, 100) <= Duration::from_secs(300));
    }
}
