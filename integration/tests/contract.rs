//! The ports' contract, one suite run against every backend: the AWS adapters
//! (SQS and S3 on moto) and the local ones (SQLite queue, directory bucket).
//! Whatever runs on one must run on the other.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use handlers::aws::AwsTuning;
use handlers::bucket::dir::DirBucket;
use handlers::bucket::s3::S3Bucket;
use handlers::bucket::{Bucket, NewObject, PutOutcome};
use handlers::claim::Staging;
use handlers::id::EmailId;
use handlers::keys::{KeyLayout, KeyPrefix, Keys};
use handlers::queue::sqlite::{SqliteQueue, SqliteQueueConfig};
use handlers::queue::sqs::SqsQueue;
use handlers::queue::{OutgoingMessage, Queue, ReceivedMessage};
use handlers::store::Storer;
use integration::{DATA, Moto, Stack, StackOptions, eventually};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Probe<T> = Box<dyn Fn() -> BoxFuture<T> + Send + Sync>;
type Reader = Arc<dyn Fn(String) -> BoxFuture<Option<Vec<u8>>> + Send + Sync>;

const VISIBILITY: Duration = Duration::from_secs(2);
const MAX_RECEIVES: u32 = 2;

/// A queue under test, with a way to count its dead letters.
struct QueueBackend {
    name: &'static str,
    queue: Arc<dyn Queue>,
    dead_letters: Probe<u64>,
    _keep: Box<dyn std::any::Any + Send>,
}

/// A bucket under test, with a way to read an object back.
struct BucketBackend {
    name: &'static str,
    bucket: Arc<dyn Bucket>,
    read: Reader,
    _keep: Box<dyn std::any::Any + Send>,
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("q2b-{tag}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn moto_stack() -> (Moto, Stack) {
    let moto = Moto::start().await;
    let stack = Stack::create(
        moto.clients().await,
        StackOptions {
            visibility_timeout_secs: VISIBILITY.as_secs() as u32,
            max_receive_count: MAX_RECEIVES,
        },
    )
    .await;
    (moto, stack)
}

async fn queues() -> Vec<QueueBackend> {
    let (moto, stack) = moto_stack().await;
    let sqs = Arc::new(SqsQueue::new(
        stack.clients.sqs.clone(),
        &stack.queue_url,
        AwsTuning::WORKER,
    ));
    let stack = Arc::new(stack);
    let probe_stack = stack.clone();
    let sqs_backend = QueueBackend {
        name: "sqs",
        queue: sqs,
        dead_letters: Box::new(move || {
            let s = probe_stack.clone();
            Box::pin(async move { s.depth(&s.dlq_url).await })
        }),
        _keep: Box::new((moto, stack)),
    };

    let dir = temp_dir("queue");
    let sqlite = Arc::new(
        SqliteQueue::open(
            &dir.join("queue.sqlite3"),
            SqliteQueueConfig {
                visibility_timeout: VISIBILITY,
                max_receives: MAX_RECEIVES,
            },
        )
        .unwrap(),
    );
    let probe = sqlite.clone();
    let sqlite_backend = QueueBackend {
        name: "sqlite",
        queue: sqlite,
        dead_letters: Box::new(move || {
            let q = probe.clone();
            Box::pin(async move { q.dead_letter_count().await.unwrap() })
        }),
        _keep: Box::new(dir),
    };
    vec![sqs_backend, sqlite_backend]
}

async fn buckets() -> Vec<BucketBackend> {
    let (moto, stack) = moto_stack().await;
    let s3 = Arc::new(S3Bucket::new(stack.clients.s3.clone(), &stack.bucket));
    let stack = Arc::new(stack);
    let reader = stack.clone();
    let s3_backend = BucketBackend {
        name: "s3",
        bucket: s3,
        read: Arc::new(move |key| {
            let s = reader.clone();
            Box::pin(async move { s.object(&key).await })
        }),
        _keep: Box::new((moto, stack)),
    };

    let dir = temp_dir("bucket");
    let local = Arc::new(DirBucket::open(&dir).unwrap());
    let root = dir.clone();
    let dir_backend = BucketBackend {
        name: "dir",
        bucket: local,
        read: Arc::new(move |key| {
            let path = root.join(key);
            Box::pin(async move { std::fs::read(path).ok() })
        }),
        _keep: Box::new(dir),
    };
    vec![s3_backend, dir_backend]
}

fn email(content: &str) -> OutgoingMessage {
    OutgoingMessage::new(EmailId::new(), DATA.replace("Hi Bob", content))
}

async fn receive_one(queue: &dyn Queue, within: Duration) -> handlers::queue::ReceivedMessage {
    let deadline = Instant::now() + within;
    loop {
        let mut got = queue.receive(1, Duration::from_secs(1)).await.unwrap();
        if let Some(m) = got.pop() {
            return m;
        }
        assert!(Instant::now() < deadline, "no message within {within:?}");
    }
}

async fn assert_empty(queue: &dyn Queue, name: &str) {
    let got = queue.receive(10, Duration::from_secs(1)).await.unwrap();
    assert!(got.is_empty(), "{name}: expected no message, got {got:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn send_receive_delete() {
    for b in queues().await {
        let q = b.queue.as_ref();
        let sent = email("one");
        assert_eq!(
            q.send_batch(std::slice::from_ref(&sent)).await,
            vec![Ok(())],
            "{}",
            b.name
        );
        let m = receive_one(q, Duration::from_secs(5)).await;
        assert_eq!(m.body, sent.body, "{}", b.name);
        assert_eq!(m.email_id, Some(sent.id.to_string()), "{}", b.name);
        assert_eq!(m.receive_count, 1, "{}", b.name);
        assert!(m.sent_at_ms.is_some(), "{}", b.name);
        assert_eq!(
            q.delete_batch(&[m.receipt.as_str()]).await,
            vec![Ok(())],
            "{}",
            b.name
        );
        tokio::time::sleep(VISIBILITY + Duration::from_millis(200)).await;
        assert_empty(q, b.name).await;
        assert_eq!(
            q.visibility_timeout().await.unwrap(),
            VISIBILITY,
            "{}",
            b.name
        );
    }
}

/// A claim-check pointer and an inline email near the queue's 1 MiB limit
/// travel in one batch and come back as sent: the pointer with its size, the
/// large body byte for byte, each with its id.
#[tokio::test(flavor = "multi_thread")]
async fn claim_pointers_and_large_inline_emails_round_trip() {
    for b in queues().await {
        let q = b.queue.as_ref();
        let id = EmailId::new();
        let pointer = OutgoingMessage::claim(id, &format!("staging/{id}.json"), 3 << 20);
        let large = email(&"x".repeat(1_000_000));
        assert!(large.size() < 1 << 20, "{}", b.name);
        let sent = [pointer, large];
        assert_eq!(
            q.send_batch(&sent).await,
            vec![Ok(()), Ok(())],
            "{}",
            b.name
        );
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < 2 && Instant::now() < deadline {
            got.extend(q.receive(10, Duration::from_secs(1)).await.unwrap());
        }
        assert_eq!(got.len(), 2, "{}", b.name);
        for s in &sent {
            let m = got
                .iter()
                .find(|m| m.email_id.as_deref() == Some(s.id.to_string().as_str()))
                .unwrap_or_else(|| panic!("{}: {} not received", b.name, s.id));
            assert_eq!(m.body, s.body, "{}", b.name);
            assert_eq!(m.claim, s.claim, "{}", b.name);
        }
        let receipts: Vec<&str> = got.iter().map(|m| m.receipt.as_str()).collect();
        assert_eq!(
            q.delete_batch(&receipts).await,
            vec![Ok(()), Ok(())],
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unacknowledged_message_comes_back_after_the_visibility_timeout() {
    for b in queues().await {
        let q = b.queue.as_ref();
        q.send_batch(&[email("again")]).await;
        let first = receive_one(q, Duration::from_secs(5)).await;
        // Invisible while the timeout runs.
        let during = q.receive(10, Duration::ZERO).await.unwrap();
        assert!(during.is_empty(), "{}: visible too early", b.name);
        let second = receive_one(q, Duration::from_secs(5)).await;
        assert_eq!(second.message_id, first.message_id, "{}", b.name);
        assert_eq!(second.receive_count, 2, "{}", b.name);
        assert_ne!(
            second.receipt, first.receipt,
            "{}: receipts are per receive",
            b.name
        );
        q.delete_batch(&[second.receipt.as_str()]).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_later_sets_when_a_message_returns() {
    for b in queues().await {
        let q = b.queue.as_ref();
        q.send_batch(&[email("later")]).await;
        let m = receive_one(q, Duration::from_secs(5)).await;
        q.retry_later(&m.receipt, Duration::ZERO).await.unwrap();
        // Visible again now, long before the visibility timeout would have
        // brought it back.
        let again = q.receive(1, Duration::ZERO).await.unwrap();
        assert_eq!(
            again.len(),
            1,
            "{}: not visible after retry_later(0)",
            b.name
        );
        assert_eq!(again[0].message_id, m.message_id, "{}", b.name);
        // And hidden for as long as asked.
        q.retry_later(&again[0].receipt, Duration::from_secs(30))
            .await
            .unwrap();
        tokio::time::sleep(VISIBILITY + Duration::from_millis(500)).await;
        let hidden = q.receive(1, Duration::ZERO).await.unwrap();
        assert!(hidden.is_empty(), "{}: came back before its delay", b.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_received_too_often_is_dead_lettered() {
    for b in queues().await {
        let q = b.queue.as_ref();
        q.send_batch(&[email("poison")]).await;
        for n in 1..=MAX_RECEIVES {
            let m = receive_one(q, Duration::from_secs(5)).await;
            assert_eq!(m.receive_count, n, "{}", b.name);
        }
        tokio::time::sleep(VISIBILITY + Duration::from_millis(200)).await;
        assert_empty(q, b.name).await;
        let dead = &b.dead_letters;
        eventually("the dead letter", Duration::from_secs(5), || async {
            (dead().await == 1).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_and_long_polls() {
    for b in queues().await {
        let q = b.queue.clone();
        let batch: Vec<_> = (0..10).map(|i| email(&format!("batch {i}"))).collect();
        let results = q.send_batch(&batch).await;
        assert!(results.iter().all(Result::is_ok), "{}: {results:?}", b.name);
        let mut bodies = Vec::new();
        while bodies.len() < 10 {
            let got = q.receive(10, Duration::from_secs(1)).await.unwrap();
            assert!(!got.is_empty(), "{}: lost messages", b.name);
            let receipts: Vec<&str> = got.iter().map(|m| m.receipt.as_str()).collect();
            assert!(q.delete_batch(&receipts).await.iter().all(Result::is_ok));
            bodies.extend(got.into_iter().map(|m| m.body));
        }
        bodies.sort();
        let mut expected: Vec<_> = batch.into_iter().map(|m| m.body).collect();
        expected.sort();
        assert_eq!(bodies, expected, "{}", b.name);

        // A long poll returns as soon as a message arrives.
        let sender = q.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            sender.send_batch(&[email("late")]).await;
        });
        let started = Instant::now();
        let got = q.receive(10, Duration::from_secs(10)).await.unwrap();
        assert_eq!(got.len(), 1, "{}", b.name);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{}: waited the whole window",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_are_conditional_and_never_overwrite() {
    for b in buckets().await {
        let key = format!("emails/{}.json", EmailId::new());
        let object = |body: &str| NewObject {
            key: key.clone(),
            body: Bytes::from(body.to_owned()),
            metadata: vec![("id", "x".into())],
        };
        assert_eq!(
            b.bucket.put_if_absent(&object(DATA)).await,
            Ok(PutOutcome::Created),
            "{}",
            b.name
        );
        assert_eq!(
            b.bucket.put_if_absent(&object("{\"other\":1}")).await,
            Ok(PutOutcome::AlreadyExists),
            "{}",
            b.name
        );
        assert_eq!(
            (b.read)(key.clone()).await.as_deref(),
            Some(DATA.as_bytes()),
            "{}",
            b.name
        );

        // Racing writers of one key: exactly one wins, and its body is kept.
        let key = format!("emails/{}.json", EmailId::new());
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..8 {
            let (bucket, key) = (b.bucket.clone(), key.clone());
            tasks.spawn(async move {
                let body = format!("{{\"writer\":{i}}}");
                let outcome = bucket
                    .put_if_absent(&NewObject {
                        key,
                        body: Bytes::from(body.clone()),
                        metadata: vec![],
                    })
                    .await;
                (outcome, body)
            });
        }
        let mut winners = Vec::new();
        while let Some(r) = tasks.join_next().await {
            let (outcome, body) = r.unwrap();
            // A racing write may also fail (S3's 409); it is retried by the
            // worker. It must never be a second success.
            if outcome == Ok(PutOutcome::Created) {
                winners.push(body);
            }
        }
        assert_eq!(winners.len(), 1, "{}: {winners:?}", b.name);
        assert_eq!(
            (b.read)(key).await,
            Some(winners[0].clone().into_bytes()),
            "{}",
            b.name
        );
    }
}

/// A first delivery of the API's message for `id`.
fn received(id: &EmailId, body: String, claim: Option<u64>) -> ReceivedMessage {
    ReceivedMessage {
        message_id: format!("m-{id}"),
        receipt: "r".into(),
        body,
        email_id: Some(id.to_string()),
        sent_at_ms: None,
        claim,
        receive_count: 1,
    }
}

/// Both key layouts store each email once, below the prefix (where the
/// worker's IAM scope allows writes), and every delivery finds the same key.
#[tokio::test(flavor = "multi_thread")]
async fn every_key_layout_stores_once_below_the_prefix() {
    for b in buckets().await {
        for layout in [KeyLayout::Time, KeyLayout::Hashed] {
            let prefix = KeyPrefix::parse("tenant/emails/").unwrap();
            let storer = Storer::new(b.bucket.clone(), Keys::new(prefix, layout));
            let id = EmailId::new();
            let message = received(&id, DATA.to_owned(), None);
            let stored = storer.store(&message).await.unwrap();
            let name = stored
                .key
                .strip_prefix("tenant/emails/")
                .unwrap_or_else(|| panic!("{}: {} is outside the prefix", b.name, stored.key));
            let expected_dirs = usize::from(layout == KeyLayout::Hashed);
            assert_eq!(
                name.matches('/').count(),
                expected_dirs,
                "{} {layout:?}: {name}",
                b.name
            );
            assert!(name.ends_with(&format!("-{id}.json")), "{}: {name}", b.name);
            assert_eq!(stored.outcome, PutOutcome::Created, "{}", b.name);
            assert_eq!(
                (b.read)(stored.key.clone()).await.as_deref(),
                Some(DATA.as_bytes()),
                "{} {layout:?}",
                b.name
            );
            let again = storer.store(&message).await.unwrap();
            assert_eq!(
                (again.key, again.outcome),
                (stored.key, PutOutcome::AlreadyExists),
                "{} {layout:?}: a redelivery",
                b.name
            );
        }
    }
}

/// The claim check on every bucket: staged bytes become the stored object
/// byte for byte, the staged object is then gone, a second staging keeps
/// the first copy, and a redelivery finds the email stored.
#[tokio::test(flavor = "multi_thread")]
async fn the_claim_check_stores_staged_bytes_once_and_removes_them() {
    for b in buckets().await {
        let staging = Staging::new(b.bucket.clone(), KeyPrefix::parse("staging/").unwrap());
        let storer =
            Storer::with_staging(b.bucket.clone(), Keys::default(), staging.clone(), 1 << 24);
        let id = EmailId::new();
        // Spacing and escapes as sent: stored exactly so.
        let data = DATA.replace("Hi Bob", &format!("Hi\\nBob {}", "x".repeat(300_000)));
        let data = data.replacen('{', "{ ", 1);
        let key = staging.stage(&id, Bytes::from(data.clone())).await.unwrap();
        assert_eq!(key, format!("staging/{id}.json"), "{}", b.name);
        staging.stage(&id, Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(
            staging.fetch(&id).await.unwrap().as_deref(),
            Some(data.as_bytes()),
            "{}: the first copy kept",
            b.name
        );
        let pointer = received(
            &id,
            format!(r#"{{"staged":"{key}","bytes":{}}}"#, data.len()),
            Some(data.len() as u64),
        );
        let stored = storer.store(&pointer).await.unwrap();
        assert_eq!(stored.outcome, PutOutcome::Created, "{}", b.name);
        assert_eq!(
            (b.read)(stored.key.clone()).await.as_deref(),
            Some(data.as_bytes()),
            "{}: byte for byte",
            b.name
        );
        assert_eq!(
            (b.read)(key.clone()).await,
            None,
            "{}: staged object removed",
            b.name
        );
        assert_eq!(staging.fetch(&id).await.unwrap(), None, "{}", b.name);
        let again = storer.store(&pointer).await.unwrap();
        assert_eq!(
            (again.key, again.outcome),
            (stored.key, PutOutcome::AlreadyExists),
            "{}: a redelivery",
            b.name
        );
    }
}
