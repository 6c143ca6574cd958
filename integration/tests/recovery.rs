//! Getting dead-lettered emails back: accepted emails whose receives ran out
//! (as in a long bucket outage) sit in the dead-letter queue;
//! `queue2bucket redrive --dry-run` lists them, `queue2bucket redrive` moves
//! them back, and the worker stores each exactly once, byte for byte. On
//! moto (SQS's own move task is not offered there, so the command moves
//! message by message) and on the local mode's data directory.

use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;

use handlers::id::EmailId;
use handlers::local::DataDir;
use handlers::queue::sqlite::SqliteQueueConfig;
use handlers::queue::{OutgoingMessage, Queue};
use integration::fault::FaultProxy;
use integration::{
    Api, DATA, Moto, Process, Stack, StackOptions, command, env_of, eventually, object_file,
    object_key, start_worker,
};

/// Receives everything on the queue, again and again, without deleting,
/// until SQS's redrive policy has moved it all to the dead-letter queue:
/// the receives a failing consumer would use up.
async fn exhaust_receives(stack: &Stack, messages: u64) {
    eventually(
        "every message in the dead-letter queue",
        Duration::from_secs(60),
        || async {
            let _ = stack
                .clients
                .sqs
                .receive_message()
                .queue_url(&stack.queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(0)
                .send()
                .await;
            (stack.depth(&stack.dlq_url).await == messages).then_some(())
        },
    )
    .await;
}

fn run(args: &[&str], env: &[(String, String)]) -> (bool, String) {
    let output = command(args, env).output().expect("queue2bucket runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_lettered_emails_are_redriven_and_stored_exactly_once() {
    let moto = Moto::start().await;
    let stack = Stack::create(
        moto.clients().await,
        StackOptions {
            visibility_timeout_secs: 30,
            max_receive_count: 2,
        },
    )
    .await;
    let api = Api::start(&env_of(&[&moto.env(), &stack.api_env()])).await;
    let mut posted = api.submit_accepted(3, "dead-lettered", &stack.token).await;
    // One message from another producer, without the API's id attribute.
    let foreign = DATA.replace("Hi Bob", "from another producer");
    let (message_id, sent_at) = send_foreign(&stack, &foreign).await;
    exhaust_receives(&stack, 4).await;
    assert_eq!(stack.depth(&stack.queue_url).await, 0);

    let env = env_of(&[
        &moto.env(),
        &[("SQS_QUEUE_URL".into(), stack.queue_url.clone())],
    ]);
    let (ok, listing) = run(&["redrive", "--dry-run"], &env);
    assert!(ok, "{listing}");
    assert!(listing.contains("4 messages waiting"), "{listing}");
    for (id, _) in &posted {
        assert!(listing.contains(id.as_str()), "{id} not listed: {listing}");
    }
    assert_eq!(
        stack.depth(&stack.dlq_url).await,
        4,
        "a dry run moves nothing"
    );

    let (ok, report) = run(&["redrive"], &env);
    assert!(ok, "{report}");
    assert!(report.contains("moved 4 messages"), "{report}");
    assert_eq!(stack.depth(&stack.dlq_url).await, 0);

    // The foreign message keeps the id the worker derives from its first
    // delivery, so whichever copy is stored lands on the same key.
    let foreign_id = EmailId::derived(&message_id, sent_at).to_string();
    posted.push((foreign_id, foreign));

    let worker = start_worker(&env_of(&[&moto.env(), &stack.worker_env()]));
    stack
        .assert_stored_exactly_once(&posted, Duration::from_secs(60))
        .await;
    assert_eq!(stack.depth(&stack.dlq_url).await, 0);
    worker.assert_no_panic();
}

/// Where the service offers SQS's message-move task (played at the fault
/// proxy, which moto lacks) and every dead letter carries its email id, the
/// command uses the task; with one from another producer it does not (a
/// moved message gets a new message id, hence another derived id), and
/// copies message by message.
#[tokio::test(flavor = "multi_thread")]
async fn redrive_uses_sqs_move_task_only_when_every_email_keeps_its_id() {
    let moto = Moto::start().await;
    let stack = Stack::create(
        moto.clients().await,
        StackOptions {
            visibility_timeout_secs: 30,
            max_receive_count: 2,
        },
    )
    .await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let tasks = proxy.offer_move_tasks(stack.clients.sqs.clone());
    let api = Api::start(&env_of(&[&moto.env(), &stack.api_env()])).await;
    let posted = api
        .submit_accepted(3, "moved by a task", &stack.token)
        .await;
    exhaust_receives(&stack, 3).await;
    let env = env_of(&[
        &moto.env(),
        &proxy.env(),
        &[("SQS_QUEUE_URL".into(), stack.queue_url.clone())],
    ]);
    let (ok, report) = run(&["redrive"], &env);
    assert!(ok, "{report}");
    assert!(report.contains("moved 3 messages"), "{report}");
    assert_eq!(tasks.started(), 1, "SQS's move task was used");
    assert_eq!(stack.depth(&stack.dlq_url).await, 0);

    let worker = start_worker(&env_of(&[&moto.env(), &stack.worker_env()]));
    stack
        .assert_stored_exactly_once(&posted, Duration::from_secs(60))
        .await;
    worker.assert_no_panic();

    // Another queue's dead letters, one of them another producer's.
    let stack = Stack::create(
        moto.clients().await,
        StackOptions {
            visibility_timeout_secs: 30,
            max_receive_count: 2,
        },
    )
    .await;
    let id = EmailId::new();
    let mut posted = vec![(id.to_string(), DATA.replace("Hi Bob", "moved by copy"))];
    let foreign = DATA.replace("Hi Bob", "from another producer");
    stack
        .clients
        .sqs
        .send_message()
        .queue_url(&stack.queue_url)
        .message_body(&posted[0].1)
        .message_attributes(
            handlers::queue::ID_ATTRIBUTE,
            aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(id.to_string())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("send");
    let (message_id, sent_at) = send_foreign(&stack, &foreign).await;
    exhaust_receives(&stack, 2).await;
    let env = env_of(&[
        &moto.env(),
        &proxy.env(),
        &[("SQS_QUEUE_URL".into(), stack.queue_url.clone())],
    ]);
    let (ok, report) = run(&["redrive"], &env);
    assert!(ok, "{report}");
    assert!(report.contains("moved 2 messages"), "{report}");
    assert_eq!(tasks.started(), 1, "no move task with a foreign message");
    posted.push((EmailId::derived(&message_id, sent_at).to_string(), foreign));
    let worker = start_worker(&env_of(&[&moto.env(), &stack.worker_env()]));
    stack
        .assert_stored_exactly_once(&posted, Duration::from_secs(60))
        .await;
    worker.assert_no_panic();
}

/// Queues `body` as another producer would (no id attribute); answers its
/// SQS message id and send time, from which the worker derives its id.
async fn send_foreign(stack: &Stack, body: &str) -> (String, u64) {
    let sent = stack
        .clients
        .sqs
        .send_message()
        .queue_url(&stack.queue_url)
        .message_body(body)
        .send()
        .await
        .expect("send");
    let message_id = sent.message_id().expect("message id").to_owned();
    let sent_at = sent_timestamp(stack, &message_id).await;
    (message_id, sent_at)
}

/// The send time SQS gave a message (`SentTimestamp`), from a receive (one
/// of those the redrive policy counts).
async fn sent_timestamp(stack: &Stack, message_id: &str) -> u64 {
    eventually(
        "the message's send time",
        Duration::from_secs(10),
        || async {
            let received = stack
                .clients
                .sqs
                .receive_message()
                .queue_url(&stack.queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(0)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .send()
                .await
                .ok()?;
            received
                .messages()
                .iter()
                .find(|m| m.message_id() == Some(message_id))?
                .attributes()?
                .get(&MessageSystemAttributeName::SentTimestamp)?
                .parse()
                .ok()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_mode_redrives_its_dead_letter_table() {
    let path = std::env::temp_dir().join(format!("q2b-redrive-{}", uuid::Uuid::new_v4().simple()));
    let dir = DataDir::create(&path).unwrap();
    let queue = dir
        .queue(SqliteQueueConfig {
            visibility_timeout: Duration::from_millis(50),
            max_receives: 1,
        })
        .unwrap();
    let messages: Vec<OutgoingMessage> = (0..3)
        .map(|i| {
            OutgoingMessage::new(
                EmailId::new(),
                DATA.replace("Hi Bob", &format!("local {i}")),
            )
        })
        .collect();
    for result in queue.send_batch(&messages).await {
        result.unwrap();
    }
    // One receive each, then the next one finds them over the limit.
    for _ in 0..2 {
        queue.receive(10, Duration::ZERO).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(queue.dead_letter_count().await.unwrap(), 3);

    let dir_arg = path.display().to_string();
    let (ok, listing) = run(&["redrive", "--dry-run", "--data-dir", &dir_arg], &[]);
    assert!(ok && listing.contains("3 messages waiting"), "{listing}");
    let (ok, report) = run(&["redrive", "--data-dir", &dir_arg], &[]);
    assert!(ok && report.contains("moved 3 messages"), "{report}");
    assert_eq!(queue.dead_letter_count().await.unwrap(), 0);

    let dev = Process::spawn(
        "queue2bucket dev",
        command(
            &["dev", "--port", "0", "--data-dir", &dir_arg, "--token", "t"],
            &[],
        ),
    );
    let bucket = path.join("bucket");
    for m in &messages {
        let file = bucket.join(object_key(&m.id.to_string()));
        let stored = eventually(
            "the redriven email on disk",
            Duration::from_secs(20),
            || {
                let found = std::fs::read(&file).ok();
                async move { found }
            },
        )
        .await;
        assert_eq!(stored, m.body.as_bytes());
    }
    let files = std::fs::read_dir(bucket.join("emails")).unwrap().count();
    assert_eq!(files, 3, "{}", object_file(&messages[0].id.to_string()));
    dev.assert_no_panic();
    drop(dev);
    let _ = std::fs::remove_dir_all(&path);
}
