//! Group sending: concurrent callers' messages share SendMessageBatch calls.
//!
//! An idle sender sends a lone message at once, so latency is that of a single
//! send. Under load, messages that arrive while `max_in_flight` calls are
//! already under way wait in a channel and leave together in the next batch:
//! throughput grows up to tenfold without any timer or added delay.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

use super::{MAX_MESSAGE_BYTES, OutgoingMessage, Queue, QueueError};

/// Why a message was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("message of {0} bytes exceeds the queue's {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

struct Job {
    message: OutgoingMessage,
    reply: oneshot::Sender<Result<(), QueueError>>,
}

/// A cloneable handle; the batching task ends when the last handle is dropped,
/// after finishing the batches under way.
#[derive(Clone)]
pub struct BatchingSender {
    jobs: mpsc::Sender<Job>,
}

impl BatchingSender {
    /// Starts the batching task on the current Tokio runtime.
    pub fn spawn(queue: Arc<dyn Queue>, max_in_flight: usize) -> Self {
        // Room for every in-flight batch plus as many waiting: enough to fill
        // batches, small enough that back-pressure reaches callers quickly.
        let (jobs, rx) = mpsc::channel(max_in_flight.max(1) * queue.max_batch() * 2);
        tokio::spawn(run(queue, rx, max_in_flight.max(1)));
        Self { jobs }
    }

    /// Sends one message, sharing a batch with concurrent callers.
    pub async fn send(&self, message: OutgoingMessage) -> Result<(), SendError> {
        let size = message.size();
        if size > MAX_MESSAGE_BYTES {
            return Err(SendError::TooLarge(size));
        }
        let (reply, answer) = oneshot::channel();
        let stopped = || QueueError("sender stopped".into());
        self.jobs
            .send(Job { message, reply })
            .await
            .map_err(|_| stopped())?;
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(SendError::from)
    }
}

async fn run(queue: Arc<dyn Queue>, mut rx: mpsc::Receiver<Job>, max_in_flight: usize) {
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let (max_batch, max_bytes) = (queue.max_batch(), queue.max_batch_bytes());
    let mut in_flight = JoinSet::new();
    let mut carried: Option<Job> = None;
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let first = match carried.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => break,
            },
        };
        let mut bytes = first.message.size();
        let mut batch = vec![first];
        while batch.len() < max_batch {
            let Ok(job) = rx.try_recv() else { break };
            bytes += job.message.size();
            if bytes > max_bytes {
                carried = Some(job);
                break;
            }
            batch.push(job);
        }
        let queue = queue.clone();
        in_flight.spawn(async move {
            let (messages, replies): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|j| (j.message, j.reply)).unzip();
            let results = queue.send_batch(&messages).await;
            for (reply, result) in replies.into_iter().zip(results) {
                // The caller may have given up (client gone); nothing to do.
                let _ = reply.send(result);
            }
            drop(permit);
        });
        // Reap finished batches so the set does not grow without bound.
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::EmailId;
    use crate::queue::MAX_BATCH;
    use crate::testing::MemoryQueue;

    fn message(body_len: usize) -> OutgoingMessage {
        OutgoingMessage {
            id: EmailId::new(),
            body: "x".repeat(body_len),
        }
    }

    #[tokio::test]
    async fn a_lone_message_is_sent_alone() {
        let queue = Arc::new(MemoryQueue::default());
        let sender = BatchingSender::spawn(queue.clone(), 4);
        sender.send(message(10)).await.unwrap();
        assert_eq!(queue.send_calls(), vec![1]);
        assert_eq!(queue.len(), 1);
    }

    #[tokio::test]
    async fn concurrent_messages_share_batches() {
        let queue = Arc::new(MemoryQueue::default());
        queue.hold_sends(true);
        let sender = BatchingSender::spawn(queue.clone(), 1);
        let mut tasks = JoinSet::new();
        for _ in 0..21 {
            let sender = sender.clone();
            tasks.spawn(async move { sender.send(message(10)).await });
        }
        // Let every caller enqueue while the first batch is held.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        queue.hold_sends(false);
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
        assert_eq!(queue.len(), 21);
        let calls = queue.send_calls();
        assert_eq!(calls.iter().sum::<usize>(), 21);
        assert!(calls.iter().all(|&n| n <= MAX_BATCH), "{calls:?}");
        assert!(calls.len() <= 4, "expected batching, got {calls:?}");
    }

    #[tokio::test]
    async fn batches_never_exceed_the_byte_limit() {
        let queue = Arc::new(MemoryQueue::default());
        queue.hold_sends(true);
        let sender = BatchingSender::spawn(queue.clone(), 1);
        let mut tasks = JoinSet::new();
        for _ in 0..6 {
            let sender = sender.clone();
            tasks.spawn(async move { sender.send(message(100 * 1024)).await });
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        queue.hold_sends(false);
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
        assert!(queue.send_calls().iter().all(|&n| n <= 2));
        assert_eq!(queue.len(), 6);
    }

    #[tokio::test]
    async fn too_large_and_failed_sends_are_reported() {
        let queue = Arc::new(MemoryQueue::default());
        let sender = BatchingSender::spawn(queue.clone(), 2);
        assert!(matches!(
            sender.send(message(MAX_MESSAGE_BYTES)).await,
            Err(SendError::TooLarge(_))
        ));
        queue.fail_sends(true);
        assert!(matches!(
            sender.send(message(1)).await,
            Err(SendError::Queue(_))
        ));
        assert_eq!(queue.len(), 0);
        queue.fail_sends(false);
        sender.send(message(1)).await.unwrap();
        assert_eq!(queue.len(), 1);
    }
}
