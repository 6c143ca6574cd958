//! Small in-memory fakes behind the ports, for unit tests only. Integration
//! tests use the real adapters against real servers.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;

use crate::bucket::{Bucket, BucketError, NewObject, PutOutcome};
use crate::queue::{OutgoingMessage, Queue, QueueError, ReceivedMessage};
use crate::secret::{SecretError, SecretSource};

struct Entry {
    message_id: String,
    body: String,
    email_id: Option<String>,
    sent_at_ms: u64,
    claim: Option<u64>,
    receive_count: u32,
    invisible_until: Option<Instant>,
    receipt: Option<String>,
}

/// A queue with SQS's visibility rules, in memory.
pub struct MemoryQueue {
    entries: Mutex<Vec<Entry>>,
    visibility: Duration,
    next: AtomicUsize,
    arrived: Notify,
    hold: watch::Sender<bool>,
    hold_next: AtomicBool,
    released: Semaphore,
    fail_sends: AtomicBool,
    fail_deletes: AtomicBool,
    send_calls: Mutex<Vec<usize>>,
    receive_calls: AtomicUsize,
    redeliveries: AtomicUsize,
    max_message_bytes: AtomicUsize,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::with_visibility(Duration::from_secs(30))
    }
}

impl MemoryQueue {
    pub fn with_visibility(visibility: Duration) -> Self {
        Self {
            entries: Mutex::default(),
            visibility,
            next: AtomicUsize::new(0),
            arrived: Notify::new(),
            hold: watch::channel(false).0,
            hold_next: AtomicBool::new(false),
            released: Semaphore::new(0),
            fail_sends: AtomicBool::new(false),
            fail_deletes: AtomicBool::new(false),
            send_calls: Mutex::default(),
            receive_calls: AtomicUsize::new(0),
            redeliveries: AtomicUsize::new(0),
            max_message_bytes: AtomicUsize::new(crate::queue::DEFAULT_MAX_MESSAGE_BYTES),
        }
    }

    /// Adds a message as another producer would: any body, no id attribute.
    pub fn push_raw(&self, body: &str) -> String {
        let message_id = format!("m-{}", self.next.fetch_add(1, Ordering::Relaxed));
        self.entries.lock().unwrap().push(Entry {
            message_id: message_id.clone(),
            body: body.into(),
            email_id: None,
            sent_at_ms: crate::id::now_millis(),
            claim: None,
            receive_count: 0,
            invisible_until: None,
            receipt: None,
        });
        self.arrived.notify_waiters();
        message_id
    }

    /// While held, sends wait; lets tests pile up concurrent callers.
    pub fn hold_sends(&self, hold: bool) {
        self.hold.send_replace(hold);
    }

    /// Makes the next send wait for [`Self::release_held_send`]; the others
    /// go through.
    pub fn hold_next_send(&self) {
        self.hold_next.store(true, Ordering::Relaxed);
    }

    pub fn release_held_send(&self) {
        self.released.add_permits(1);
    }

    pub fn fail_sends(&self, fail: bool) {
        self.fail_sends.store(fail, Ordering::Relaxed);
    }

    pub fn fail_deletes(&self, fail: bool) {
        self.fail_deletes.store(fail, Ordering::Relaxed);
    }

    /// Sizes of the batches sent so far.
    pub fn send_calls(&self) -> Vec<usize> {
        self.send_calls.lock().unwrap().clone()
    }

    pub fn receive_calls(&self) -> usize {
        self.receive_calls.load(Ordering::Relaxed)
    }

    /// Messages not yet deleted, visible or not.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The highest receive count of any message still on the queue.
    /// The message size limit the queue reports from now on.
    pub fn set_max_message_bytes(&self, limit: usize) {
        self.max_message_bytes.store(limit, Ordering::Relaxed);
    }

    /// The messages on the queue, as sent.
    pub fn messages(&self) -> Vec<(String, Option<u64>)> {
        let entries = self.entries.lock().unwrap();
        entries.iter().map(|e| (e.body.clone(), e.claim)).collect()
    }

    /// Receives of a message received before, deleted since or not.
    pub fn redeliveries(&self) -> usize {
        self.redeliveries.load(Ordering::Relaxed)
    }

    pub fn max_receive_count(&self) -> u32 {
        let entries = self.entries.lock().unwrap();
        entries.iter().map(|e| e.receive_count).max().unwrap_or(0)
    }

    /// Messages a receive would return now.
    pub fn visible_now(&self) -> usize {
        let now = Instant::now();
        let entries = self.entries.lock().unwrap();
        entries
            .iter()
            .filter(|e| e.invisible_until.is_none_or(|t| t <= now))
            .count()
    }

    pub fn bodies(&self) -> Vec<String> {
        let entries = self.entries.lock().unwrap();
        entries.iter().map(|e| e.body.clone()).collect()
    }

    fn take_visible(&self, max: usize) -> Vec<ReceivedMessage> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap();
        let mut out = Vec::new();
        for e in entries.iter_mut() {
            if out.len() == max {
                break;
            }
            if e.invisible_until.is_some_and(|t| t > now) {
                continue;
            }
            e.receive_count += 1;
            if e.receive_count > 1 {
                self.redeliveries.fetch_add(1, Ordering::Relaxed);
            }
            e.invisible_until = Some(now + self.visibility);
            let receipt = format!("r-{}", self.next.fetch_add(1, Ordering::Relaxed));
            e.receipt = Some(receipt.clone());
            out.push(ReceivedMessage {
                message_id: e.message_id.clone(),
                receipt,
                body: e.body.clone(),
                email_id: e.email_id.clone(),
                sent_at_ms: Some(e.sent_at_ms),
                receive_count: e.receive_count,
                claim: e.claim,
            });
        }
        out
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    fn max_message_bytes(&self) -> usize {
        self.max_message_bytes.load(Ordering::Relaxed)
    }

    async fn send_batch(&self, messages: &[OutgoingMessage]) -> Vec<Result<(), QueueError>> {
        let mut hold = self.hold.subscribe();
        let _ = hold.wait_for(|held| !held).await;
        if self.hold_next.swap(false, Ordering::Relaxed)
            && let Ok(permit) = self.released.acquire().await
        {
            permit.forget();
        }
        self.send_calls.lock().unwrap().push(messages.len());
        if self.fail_sends.load(Ordering::Relaxed) {
            return vec![Err(QueueError("injected send failure".into())); messages.len()];
        }
        {
            let mut entries = self.entries.lock().unwrap();
            for m in messages {
                entries.push(Entry {
                    message_id: format!("m-{}", self.next.fetch_add(1, Ordering::Relaxed)),
                    body: m.body.clone(),
                    email_id: Some(m.id.to_string()),
                    sent_at_ms: m.id.unix_millis(),
                    claim: m.claim,
                    receive_count: 0,
                    invisible_until: None,
                    receipt: None,
                });
            }
        }
        self.arrived.notify_waiters();
        vec![Ok(()); messages.len()]
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.receive_calls.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + wait;
        loop {
            let arrived = self.arrived.notified();
            let got = self.take_visible(max);
            if !got.is_empty() || Instant::now() >= deadline {
                return Ok(got);
            }
            // Wake on a new message, or poll again shortly for messages
            // becoming visible again.
            let _ = tokio::time::timeout(Duration::from_millis(20), arrived).await;
        }
    }

    async fn delete_batch(&self, receipts: &[&str]) -> Vec<Result<(), QueueError>> {
        if self.fail_deletes.load(Ordering::Relaxed) {
            return vec![Err(QueueError("injected delete failure".into())); receipts.len()];
        }
        let mut entries = self.entries.lock().unwrap();
        receipts
            .iter()
            .map(|r| {
                let before = entries.len();
                entries.retain(|e| e.receipt.as_deref() != Some(r));
                if entries.len() < before {
                    Ok(())
                } else {
                    Err(QueueError(format!("unknown receipt {r}")))
                }
            })
            .collect()
    }

    async fn retry_later(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        let mut entries = self.entries.lock().unwrap();
        let entry = entries
            .iter_mut()
            .find(|e| e.receipt.as_deref() == Some(receipt))
            .ok_or_else(|| QueueError("unknown receipt".into()))?;
        entry.invisible_until = Some(Instant::now() + delay);
        Ok(())
    }

    async fn visibility_timeout(&self) -> Result<Duration, QueueError> {
        Ok(self.visibility)
    }
}

/// A bucket in memory, with S3's conditional-write rule.
#[derive(Default)]
pub struct MemoryBucket {
    objects: Mutex<BTreeMap<String, NewObject>>,
    fail_every: AtomicUsize,
    failing: AtomicBool,
    calls: AtomicUsize,
    delay: Mutex<Duration>,
}

impl MemoryBucket {
    /// How long each put takes from now on (a slow bucket).
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    /// Fails every n-th put (0: never).
    pub fn fail_every(&self, n: usize) {
        self.fail_every.store(n, Ordering::Relaxed);
    }

    /// While set, every put fails (an outage).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }

    pub fn objects(&self) -> BTreeMap<String, NewObject> {
        self.objects.lock().unwrap().clone()
    }

    pub fn put_calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Bucket for MemoryBucket {
    async fn put_if_absent(&self, object: &NewObject) -> Result<PutOutcome, BucketError> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let every = self.fail_every.load(Ordering::Relaxed);
        if self.failing.load(Ordering::Relaxed) || (every > 0 && call.is_multiple_of(every)) {
            return Err(BucketError("injected put failure".into()));
        }
        let mut objects = self.objects.lock().unwrap();
        if objects.contains_key(&object.key) {
            return Ok(PutOutcome::AlreadyExists);
        }
        objects.insert(object.key.clone(), object.clone());
        Ok(PutOutcome::Created)
    }

    async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, BucketError> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(key)
            .map(|o| o.body.clone()))
    }

    async fn delete(&self, key: &str) -> Result<(), BucketError> {
        self.objects.lock().unwrap().remove(key);
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool, BucketError> {
        Ok(self.objects.lock().unwrap().contains_key(key))
    }
}

/// A secret store whose value can change, whose reads are counted, and
/// which can be slow to answer.
pub struct CountingSecret {
    value: Mutex<Result<String, SecretError>>,
    reads: AtomicUsize,
    delay: Mutex<Duration>,
}

impl CountingSecret {
    pub fn new(value: &str) -> Self {
        Self {
            value: Mutex::new(Ok(value.into())),
            reads: AtomicUsize::new(0),
            delay: Mutex::new(Duration::ZERO),
        }
    }

    pub fn set(&self, value: Result<&str, SecretError>) {
        *self.value.lock().unwrap() = value.map(str::to_owned);
    }

    /// How long each read takes from now on.
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl SecretSource for CountingSecret {
    async fn fetch(&self) -> Result<String, SecretError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.value.lock().unwrap().clone()
    }
}
