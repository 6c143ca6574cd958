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
//! - While a loop works on a message, it keeps the message hidden on the
//!   queue: its visibility is renewed, concurrently with the work, at a third
//!   of the queue's visibility timeout and then every [`HOLD_VISIBILITY`] / 3,
//!   so that however long a store takes (a slow bucket, its timeouts and
//!   retries), the message is never delivered to a second consumer meanwhile;
//!   the two thirds left cover a slow renewal call.
//! - When the bucket fails, the loop keeps the messages it holds and retries
//!   them itself, with exponential back-off and jitter, still hidden; the
//!   other loops stop receiving until it succeeds. So an outage neither spins
//!   a core nor burns receives, which would send accepted emails to the
//!   dead-letter queue. After [`MAX_HOLD`] a message is handed back to the
//!   queue (one receive used).
//! - On shutdown, loops finish the receive under way (whatever the queue
//!   handed out is processed, not left hidden), store and delete it, hand back
//!   what they could not store, and return.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use handlers::metrics::names;
use handlers::queue::{MAX_BATCH, Queue, ReceivedMessage};
use handlers::report::{self, Outcome};
use handlers::store::{Stored, Storer};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::settings::PollArgs;

/// Longest a loop holds a message it cannot store before handing it back.
pub const MAX_HOLD: Duration = Duration::from_secs(300);

/// How long a held message is hidden for at each renewal.
pub const HOLD_VISIBILITY: Duration = Duration::from_secs(60);

/// The visibility timeout assumed when the queue's cannot be read at start:
/// short, so that renewals come early rather than late.
const ASSUMED_VISIBILITY: Duration = Duration::from_secs(10);

/// Longest pause between two store attempts of a held message.
const RETRY_CAP: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    pub poll_interval: Duration,
    pub concurrency: usize,
    /// First pause before storing a failed message again; doubles each time.
    pub retry_base: Duration,
}

impl WorkerConfig {
    pub const DEFAULT_RETRY_BASE: Duration = Duration::from_millis(500);
}

impl From<&PollArgs> for WorkerConfig {
    fn from(args: &PollArgs) -> Self {
        Self {
            poll_interval: args.poll_interval,
            concurrency: usize::from(args.worker_concurrency),
            retry_base: Self::DEFAULT_RETRY_BASE,
        }
    }
}

/// Called for each stored message (the local mode prints a line per email).
pub type OnStored = Arc<dyn Fn(&Stored, &ReceivedMessage) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
#[error("a receive loop panicked")]
pub struct LoopPanicked;

/// Loops holding messages they could not store. While there is one, the
/// others do not receive.
struct Gate {
    failing: watch::Sender<usize>,
}

impl Gate {
    fn enter(&self) {
        self.failing.send_modify(|n| *n += 1);
    }

    fn leave(&self) {
        self.failing.send_modify(|n| *n = n.saturating_sub(1));
    }

    /// Waits until no loop is failing; false on shutdown.
    async fn wait_clear(&self, shutdown: &CancellationToken) -> bool {
        let mut failing = self.failing.subscribe();
        tokio::select! {
            biased;
            () = shutdown.cancelled() => false,
            r = failing.wait_for(|n| *n == 0) => r.is_ok(),
        }
    }
}

struct Context {
    queue: Arc<dyn Queue>,
    storer: Arc<Storer>,
    config: WorkerConfig,
    /// The queue's own visibility timeout, which a received message starts with.
    visibility: Duration,
    on_stored: Option<OnStored>,
    gate: Gate,
}

/// Runs until `shutdown` is cancelled and in-flight batches are done. A loop
/// that panics stops the others and makes this an error, so that the process
/// exits and is restarted rather than running on with fewer loops.
pub async fn run(
    queue: Arc<dyn Queue>,
    storer: Arc<Storer>,
    config: WorkerConfig,
    on_stored: Option<OnStored>,
    shutdown: CancellationToken,
) -> Result<(), LoopPanicked> {
    // A queue that cannot be reached now is worth a warning, not an exit: the
    // loops back off and retry.
    let visibility = match queue.visibility_timeout().await {
        Ok(visibility) => {
            tracing::info!(
                visibility_timeout_s = visibility.as_secs(),
                "queue reachable; polling"
            );
            visibility
        }
        Err(e) => {
            tracing::warn!(error = %e, "queue not reachable yet; polling anyway");
            ASSUMED_VISIBILITY
        }
    };
    let context = Arc::new(Context {
        queue,
        storer,
        config,
        visibility,
        on_stored,
        gate: Gate {
            failing: watch::channel(0).0,
        },
    });
    let mut loops = JoinSet::new();
    for _ in 0..config.concurrency.max(1) {
        loops.spawn(receive_loop(context.clone(), shutdown.clone()));
    }
    let mut result = Ok(());
    while let Some(joined) = loops.join_next().await {
        if let Err(e) = joined {
            tracing::error!(error = %e, "a receive loop failed; stopping the worker");
            shutdown.cancel();
            result = Err(LoopPanicked);
        }
    }
    tracing::info!("worker stopped");
    result
}

async fn receive_loop(context: Arc<Context>, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(20));
    while context.gate.wait_clear(&shutdown).await {
        // Not raced against shutdown: messages handed out by a cancelled
        // receive would stay hidden for the visibility timeout and use up a
        // receive. A long poll ends within the poll interval.
        match context
            .queue
            .receive(MAX_BATCH, context.config.poll_interval)
            .await
        {
            Ok(messages) if messages.is_empty() => backoff.reset(),
            Ok(messages) => {
                backoff.reset();
                metrics::counter!(names::MESSAGES_RECEIVED).increment(messages.len() as u64);
                let started = Instant::now();
                process_batch(&context, messages, &shutdown).await;
                metrics::histogram!(names::WORKER_BATCH_TIME)
                    .record(handlers::metrics::millis(started.elapsed()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "receive failed");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}

async fn store_one(context: &Context, message: &ReceivedMessage) -> Outcome {
    let started = Instant::now();
    let result = context.storer.store(message).await;
    let outcome = report::store_outcome(message, &result, started.elapsed());
    if let (Ok(stored), Some(on_stored)) = (&result, &context.on_stored) {
        on_stored(stored, message);
    }
    outcome
}

/// Stores a batch, deletes what was stored, and holds on to what met a
/// bucket failure, retrying it until it is stored, [`MAX_HOLD`] passes, or
/// shutdown; the messages not yet done are kept hidden all along.
async fn process_batch(
    context: &Context,
    messages: Vec<ReceivedMessage>,
    shutdown: &CancellationToken,
) {
    let received_at = Instant::now();
    let held: std::sync::Mutex<Vec<&ReceivedMessage>> =
        std::sync::Mutex::new(messages.iter().collect());
    let work = store_until_done(context, &held, received_at, shutdown);
    let heartbeat = keep_hidden(context, &held, received_at);
    let unstored = tokio::select! {
        unstored = work => unstored,
        () = heartbeat => Vec::new(),
    };
    hand_back(context, &unstored).await;
}

/// Renews the visibility of the messages in `held` until dropped.
async fn keep_hidden(
    context: &Context,
    held: &std::sync::Mutex<Vec<&ReceivedMessage>>,
    received_at: Instant,
) {
    let mut next = received_at + context.visibility / 3;
    loop {
        tokio::time::sleep_until(next).await;
        next = Instant::now() + HOLD_VISIBILITY / 3;
        let receipts: Vec<String> = held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|m| m.receipt.clone())
            .collect();
        // All at once: one slow renewal must not use up the others' margin.
        let renewals = receipts
            .iter()
            .map(|receipt| context.queue.retry_later(receipt, HOLD_VISIBILITY));
        for result in futures_util::future::join_all(renewals).await {
            if let Err(e) = result {
                tracing::warn!(error = %e, "could not extend the visibility of a held message");
            }
        }
    }
}

/// The store-and-delete rounds of a batch; answers what is to be handed back.
async fn store_until_done<'a>(
    context: &Context,
    held: &std::sync::Mutex<Vec<&'a ReceivedMessage>>,
    received_at: Instant,
    shutdown: &CancellationToken,
) -> Vec<&'a ReceivedMessage> {
    let set_held = |messages: Vec<&'a ReceivedMessage>| {
        *held.lock().unwrap_or_else(|e| e.into_inner()) = messages;
    };
    let mut pending = held.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut backoff = Backoff::new(context.config.retry_base, RETRY_CAP);
    let mut gate_entered = false;
    let unstored = loop {
        let attempts = join_all(pending.iter().map(|m| store_one(context, m))).await;
        let mut stored = Vec::new();
        let mut failed = Vec::new();
        for (message, attempt) in pending.into_iter().zip(attempts) {
            match attempt {
                Outcome::Stored => stored.push(message),
                Outcome::Poison => {}
                Outcome::Failed => failed.push(message),
            }
        }
        // Stored and unstorable messages are no longer held: the latter come
        // back after their visibility timeout, towards the dead-letter queue.
        set_held(failed.clone());
        let receipts: Vec<&str> = stored.iter().map(|m| m.receipt.as_str()).collect();
        delete_all(context, &receipts).await;
        if failed.is_empty() {
            break Vec::new();
        }
        if !gate_entered {
            context.gate.enter();
            gate_entered = true;
        }
        if shutdown.is_cancelled() || received_at.elapsed() >= MAX_HOLD {
            break failed;
        }
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
        pending = failed;
    };
    if gate_entered {
        context.gate.leave();
    }
    unstored
}

/// Makes held messages visible again at once, for another worker or later.
async fn hand_back(context: &Context, messages: &[&ReceivedMessage]) {
    metrics::counter!(names::MESSAGES_HANDED_BACK).increment(messages.len() as u64);
    for m in messages {
        if let Err(e) = context.queue.retry_later(&m.receipt, Duration::ZERO).await {
            tracing::warn!(error = %e, "could not hand a message back; it returns after its visibility timeout");
        }
    }
}

/// Deletes by receipt, retrying failed entries twice.
async fn delete_all(context: &Context, receipts: &[&str]) {
    let mut pending: Vec<&str> = receipts.to_vec();
    for pause in [
        Duration::ZERO,
        Duration::from_millis(100),
        Duration::from_millis(500),
    ] {
        if pending.is_empty() {
            return;
        }
        tokio::time::sleep(pause).await;
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
    use handlers::keys::KeyPrefix;

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
        worker: tokio::task::JoinHandle<Result<(), LoopPanicked>>,
    }

    fn start(queue: Arc<MemoryQueue>, bucket: Arc<MemoryBucket>, concurrency: usize) -> Fixture {
        let shutdown = CancellationToken::new();
        let storer = Arc::new(Storer::new(bucket.clone(), KeyPrefix::default()));
        let worker = tokio::spawn(run(
            queue.clone(),
            storer,
            WorkerConfig {
                poll_interval: Duration::from_secs(1),
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
                .map(|_| OutgoingMessage::new(EmailId::new(), DATA.into()))
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
        f.worker.await.unwrap().unwrap();
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
        f.worker.await.unwrap().unwrap();
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
        f.worker.await.unwrap().unwrap();
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
        f.worker.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_bucket_outage_holds_messages_without_burning_receives() {
        let queue = Arc::new(MemoryQueue::with_visibility(Duration::from_millis(100)));
        enqueue(&queue, 25).await;
        let bucket = Arc::new(MemoryBucket::default());
        bucket.set_failing(true);
        let f = start(queue, bucket, 4);
        // Well past several visibility timeouts: held messages stay hidden,
        // and the other loops stop receiving.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let receives_during = f.queue.receive_calls();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            f.queue.receive_calls(),
            receives_during,
            "no receives during the outage"
        );
        assert_eq!(
            f.queue.max_receive_count(),
            1,
            "no message was received twice"
        );
        f.bucket.set_failing(false);
        until("all stored", || f.queue.is_empty()).await;
        assert_eq!(f.bucket.objects().len(), 25);
        f.shutdown.cancel();
        f.worker.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn shutdown_during_an_outage_hands_messages_back() {
        let queue = Arc::new(MemoryQueue::with_visibility(Duration::from_secs(30)));
        enqueue(&queue, 5).await;
        let bucket = Arc::new(MemoryBucket::default());
        bucket.set_failing(true);
        let f = start(queue, bucket, 1);
        until("a failed attempt", || f.bucket.put_calls() >= 5).await;
        f.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), f.worker)
            .await
            .expect("stopped promptly")
            .unwrap()
            .unwrap();
        assert_eq!(f.queue.len(), 5, "nothing deleted");
        assert_eq!(f.queue.visible_now(), 5, "all handed back at once");
    }

    #[tokio::test]
    async fn messages_stay_hidden_while_a_slow_store_is_under_way() {
        // Each put takes three visibility timeouts.
        let queue = Arc::new(MemoryQueue::with_visibility(Duration::from_millis(300)));
        enqueue(&queue, 5).await;
        let bucket = Arc::new(MemoryBucket::default());
        bucket.set_delay(Duration::from_millis(900));
        let f = start(queue, bucket, 2);
        until("the messages to be stored", || f.queue.is_empty()).await;
        assert_eq!(f.queue.redeliveries(), 0, "received twice");
        assert_eq!(f.bucket.put_calls(), 5, "stored more than once");
        f.shutdown.cancel();
        f.worker.await.unwrap().unwrap();
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
        f.worker.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn shutdown_lets_the_receive_under_way_end_then_stops() {
        let f = start(
            Arc::new(MemoryQueue::default()),
            Arc::new(MemoryBucket::default()),
            4,
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        f.shutdown.cancel();
        // At most one poll window (1 s here) after the signal.
        tokio::time::timeout(Duration::from_secs(3), f.worker)
            .await
            .expect("stopped promptly")
            .unwrap()
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
    }
}
