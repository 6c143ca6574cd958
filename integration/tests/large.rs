//! Large emails on moto: inline up to the queue's message limit (moto's
//! queues take 1 MiB, as SQS queues made today do), through the claim check
//! above it, up to MAX_EMAIL_BYTES; each stored exactly once, byte for byte,
//! whatever is killed or fails in between; bodies in flight bounded by bytes.

use std::time::Duration;

use integration::fault::{FaultProxy, Faults, Service};
use integration::{
    Api, DATA, Moto, Stack, StackOptions, env_of, envelope, eventually, object_key, start_worker,
};

/// The default largest request body (MAX_EMAIL_BYTES).
const MAX_EMAIL: usize = 5 * 1024 * 1024;

/// A valid email whose content makes the whole `data` object `size` bytes.
fn email_of(size: usize) -> String {
    let filler = size - DATA.len() + "Hi Bob".len();
    DATA.replace("Hi Bob", &"e".repeat(filler))
}

fn staging_env(stack: &Stack) -> Vec<(String, String)> {
    vec![("S3_BUCKET_NAME".into(), stack.bucket.clone())]
}

/// Messages on the queue that carry a claim check, and those that do not.
async fn claims_on_queue(stack: &Stack) -> (usize, usize) {
    let received = stack
        .clients
        .sqs
        .receive_message()
        .queue_url(&stack.queue_url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .message_attribute_names("All")
        .send()
        .await
        .expect("receive");
    let claims = received
        .messages()
        .iter()
        .filter(|m| {
            m.message_attributes()
                .is_some_and(|a| a.contains_key("q2b-claim"))
        })
        .count();
    (claims, received.messages().len() - claims)
}

async fn staged_keys(stack: &Stack) -> Vec<String> {
    stack
        .keys()
        .await
        .into_iter()
        .filter(|k| k.starts_with("staging/"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn large_emails_are_stored_exactly_once_inline_or_through_the_claim_check() {
    let moto = Moto::start().await;
    let stack = Stack::create(moto.clients().await, StackOptions::default()).await;
    let api = Api::start(&env_of(&[
        &moto.env(),
        &stack.api_env(),
        &staging_env(&stack),
    ]))
    .await;
    let envelope_bytes = envelope("", &stack.token).len();
    let sizes = [
        300 * 1024,
        900 * 1024,
        3 * 1024 * 1024,
        MAX_EMAIL - envelope_bytes,
    ];
    let mut posted = Vec::new();
    for size in sizes {
        let data = email_of(size);
        let (status, id) = api.submit(&data, &stack.token).await;
        assert_eq!(status, 200, "{size} bytes");
        posted.push((id.unwrap(), data));
    }
    // One byte more than the largest email: 413, nothing staged or queued.
    let (status, _) = api
        .submit(&email_of(MAX_EMAIL - envelope_bytes + 1), &stack.token)
        .await;
    assert_eq!(status, 413);
    let (claims, inline) = eventually("the four messages", Duration::from_secs(10), || async {
        let counts = claims_on_queue(&stack).await;
        (counts.0 + counts.1 == 4).then_some(counts)
    })
    .await;
    assert_eq!(
        (claims, inline),
        (2, 2),
        "up to 1 MiB inline, above it a claim"
    );
    assert_eq!(staged_keys(&stack).await.len(), 2);

    let worker = start_worker(&env_of(&[&moto.env(), &stack.worker_env()]));
    eventually(
        "the staged emails removed",
        Duration::from_secs(60),
        || async { staged_keys(&stack).await.is_empty().then_some(()) },
    )
    .await;
    stack
        .assert_stored_exactly_once(&posted, Duration::from_secs(60))
        .await;
    worker.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_between_storing_and_removing_the_staged_email_loses_and_duplicates_nothing()
 {
    let moto = Moto::start().await;
    let stack = Stack::create(
        moto.clients().await,
        StackOptions {
            visibility_timeout_secs: 2,
            max_receive_count: 10,
        },
    )
    .await;
    let api = Api::start(&env_of(&[
        &moto.env(),
        &stack.api_env(),
        &staging_env(&stack),
    ]))
    .await;
    let data = email_of(2 * 1024 * 1024);
    let (status, id) = api.submit(&data, &stack.token).await;
    assert_eq!(status, 200);
    let id = id.unwrap();

    // Removing the staged email hangs (every S3 DELETE waits a minute at the
    // proxy): the worker stores the email, then waits on the removal, with
    // the message still in flight, and is killed there.
    let proxy = FaultProxy::start(&moto.endpoint).await;
    proxy.set(
        Service::S3,
        Faults {
            latency: Duration::from_secs(60),
            method: Some(reqwest::Method::DELETE),
            ..Faults::default()
        },
    );
    let mut worker = start_worker(&env_of(&[&moto.env(), &proxy.env(), &stack.worker_env()]));
    let key = object_key(&id);
    eventually("the email stored", Duration::from_secs(30), || {
        stack.object(&key)
    })
    .await;
    let in_flight = stack
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(&stack.queue_url)
        .attribute_names(
            aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        )
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default()
        .remove(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible);
    assert_eq!(
        in_flight.as_deref(),
        Some("1"),
        "the message is still in flight when the worker is killed"
    );
    worker.kill();
    assert_eq!(
        staged_keys(&stack).await.len(),
        1,
        "the staged email is still there"
    );

    // The message comes back to a new worker: stored already, the staged
    // email removed, the message deleted.
    proxy.clear();
    let worker = start_worker(&env_of(&[&moto.env(), &proxy.env(), &stack.worker_env()]));
    stack
        .assert_stored_exactly_once(&[(id, data)], Duration::from_secs(60))
        .await;
    eventually(
        "the staged email removed",
        Duration::from_secs(30),
        || async { staged_keys(&stack).await.is_empty().then_some(()) },
    )
    .await;
    worker.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_check_whose_message_never_made_it_is_a_503_and_a_staged_leftover() {
    let moto = Moto::start().await;
    let stack = Stack::create(moto.clients().await, StackOptions::default()).await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let api = Api::start(&env_of(&[
        &moto.env(),
        &proxy.env(),
        &stack.api_env(),
        &staging_env(&stack),
    ]))
    .await;
    proxy.set(
        Service::Sqs,
        Faults {
            blackhole: true,
            ..Faults::default()
        },
    );
    let data = email_of(2 * 1024 * 1024);
    let response = api.post_response(envelope(&data, &stack.token)).await;
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    // Staged, never queued: what the staging prefix's lifecycle rule is for.
    assert_eq!(staged_keys(&stack).await.len(), 1);
    proxy.clear();
    assert_eq!(stack.depth(&stack.queue_url).await, 0);

    // The client's retry is a new email, stored once.
    let (status, id) = api.submit(&data, &stack.token).await;
    assert_eq!(status, 200);
    let worker = start_worker(&env_of(&[&moto.env(), &stack.worker_env()]));
    let key = object_key(id.as_deref().unwrap());
    let stored = eventually("the retried email stored", Duration::from_secs(60), || {
        stack.object(&key)
    })
    .await;
    assert_eq!(stored, data.as_bytes());
    eventually(
        "only the leftover staged",
        Duration::from_secs(30),
        || async { (staged_keys(&stack).await.len() == 1).then_some(()) },
    )
    .await;
    worker.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread")]
async fn many_large_uploads_at_once_get_503_rather_than_the_tasks_memory() {
    let moto = Moto::start().await;
    let stack = Stack::create(moto.clients().await, StackOptions::default()).await;
    let budget = 8 * 1024 * 1024;
    let api = Api::start(&env_of(&[
        &moto.env(),
        &stack.api_env(),
        &staging_env(&stack),
        &[("MAX_BYTES_IN_FLIGHT".into(), budget.to_string())],
    ]))
    .await;
    let body = envelope(&email_of(3 * 1024 * 1024), &stack.token);
    let mut uploads = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (url, body) = (api.url.clone(), body.clone());
        uploads.spawn(async move {
            let answer = reqwest::Client::new()
                .post(format!("{url}/email"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("an answer");
            let retry_after = answer.headers().contains_key("retry-after");
            (answer.status().as_u16(), retry_after)
        });
    }
    let mut statuses = Vec::new();
    while let Some(answer) = uploads.join_next().await {
        let (status, retry_after) = answer.unwrap();
        assert_eq!(
            status == 503,
            retry_after,
            "{status}: Retry-After on 503s only"
        );
        statuses.push(status);
    }
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    assert!(accepted >= 1 && statuses.contains(&503), "{statuses:?}");
    api.process.assert_no_panic();
}
