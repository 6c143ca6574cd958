//! Nothing accepted is lost, nothing crashes: the binaries on moto behind a
//! fault-injecting proxy ([`integration::fault`]), through SQS and S3
//! outages, error bursts and SIGKILLs.
//!
//! The emulator-restart step of the scenario is left out: moto keeps its
//! state in memory, so a restarted moto has lost the queue, the bucket and
//! every message in them, which no client of SQS could survive.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration::fault::{FaultProxy, Faults, Service};
use integration::{
    Api, DATA, Moto, Process, Stack, StackOptions, env_of, envelope, eventually, start_worker,
};

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn outage() -> Faults {
    Faults {
        reset: true,
        ..Faults::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_answers_503_while_sqs_is_down_and_recovers_without_restart() {
    let moto = Moto::start().await;
    let stack = Stack::create(moto.clients().await, StackOptions::default()).await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let api = Api::start(&env_of(&[&moto.env(), &proxy.env(), &stack.api_env()])).await;
    let mut accepted = 0;
    assert_eq!(api.submit(DATA, &stack.token).await.0, 200);
    accepted += 1;

    for faults in [
        outage(),
        Faults {
            blackhole: true,
            ..Faults::default()
        },
        Faults {
            error_rate: 1.0,
            ..Faults::default()
        },
    ] {
        proxy.set(Service::Sqs, faults.clone());
        let started = Instant::now();
        let response = api.post_response(envelope(DATA, &stack.token)).await;
        assert_eq!(response.status().as_u16(), 503, "{faults:?}");
        assert!(response.headers().contains_key("retry-after"), "{faults:?}");
        // The SDK's timeouts bound how long a client waits.
        assert!(
            started.elapsed() < Duration::from_secs(12),
            "{faults:?}: {:?}",
            started.elapsed()
        );
        proxy.clear();
        assert_eq!(
            api.submit(DATA, &stack.token).await.0,
            200,
            "after {faults:?}"
        );
        accepted += 1;
    }
    assert_eq!(
        stack.depth(&stack.queue_url).await,
        accepted,
        "a 503 never enqueued, a 200 always did"
    );
    api.process.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_rides_out_an_s3_outage_without_deleting_or_spinning() {
    let moto = Moto::start().await;
    let stack = Stack::create(moto.clients().await, StackOptions::default()).await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let api = Api::start(&env_of(&[&moto.env(), &stack.api_env()])).await;
    let posted = api.submit_accepted(20, "outage", &stack.token).await;
    proxy.set(
        Service::S3,
        Faults {
            error_rate: 1.0,
            ..Faults::default()
        },
    );
    let worker = start_worker(&env_of(&[&moto.env(), &proxy.env(), &stack.worker_env()]));
    eventually("the worker to try S3", Duration::from_secs(20), || async {
        (proxy.counts(Service::S3).1 > 0).then_some(())
    })
    .await;
    let cpu_before = cpu_seconds(worker.pid());
    let calls_before = proxy.counts(Service::S3).1;
    let window = Duration::from_secs(6);
    tokio::time::sleep(window).await;
    let cpu = cpu_seconds(worker.pid()) - cpu_before;
    let calls = proxy.counts(Service::S3).1 - calls_before;
    // A spinning loop would take a whole core (6 s here). What is left is the
    // backed-off retries themselves: a few hundred failed calls through a
    // debug build of the SDK, 0.4-0.65 s on this machine depending on load.
    assert!(
        cpu < 0.25 * window.as_secs_f64(),
        "the worker used {cpu:.2} s of CPU in {window:?}"
    );
    // Back-off: a few rounds of retries for the batch, not a flood.
    assert!(calls < 400, "{calls} S3 calls in {window:?}");
    assert!(stack.keys().await.is_empty());
    assert_eq!(
        stack.depth(&stack.queue_url).await,
        20,
        "nothing deleted unstored"
    );
    assert_eq!(stack.depth(&stack.dlq_url).await, 0);

    proxy.clear();
    stack
        .assert_stored_exactly_once(&posted, Duration::from_secs(60))
        .await;
    assert_eq!(
        stack.depth(&stack.dlq_url).await,
        0,
        "no accepted email dead-lettered"
    );
    worker.assert_no_panic();
}

#[derive(Default)]
struct Ledger {
    /// id → data, for every 200.
    accepted: HashMap<String, String>,
    /// data of every attempt that did not get a 200.
    refused: Vec<String>,
}

/// 1,000 emails posted while, in turn: the worker is SIGKILLed (three
/// times), S3 fails 10% of PutObject calls, and SQS is unreachable for 5 s.
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_emails_through_kills_and_outages_are_each_stored_once() {
    const EMAILS: usize = 1000;
    let moto = Moto::start().await;
    let stack = Stack::create(
        moto.clients().await,
        StackOptions {
            visibility_timeout_secs: 10,
            max_receive_count: 5,
        },
    )
    .await;
    let proxy = Arc::new(FaultProxy::start(&moto.endpoint).await);
    let api = Arc::new(Api::start(&env_of(&[&moto.env(), &proxy.env(), &stack.api_env()])).await);
    let worker_env = env_of(&[
        &moto.env(),
        &proxy.env(),
        &stack.worker_env(),
        &[("POLL_INTERVAL".into(), "1".into())],
    ]);
    let mut worker = start_worker(&worker_env);
    let ledger = Arc::new(Mutex::new(Ledger::default()));

    // Clients: a steady stream, retrying nothing (a retry would be a new email).
    let mut clients = tokio::task::JoinSet::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..8 {
        let (api, ledger, next, token) = (
            api.clone(),
            ledger.clone(),
            next.clone(),
            stack.token.clone(),
        );
        clients.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= EMAILS {
                    return;
                }
                let data = DATA.replace("Hi Bob", &format!("scenario email #{i}"));
                let (status, id) = api.submit(&data, &token).await;
                {
                    let mut ledger = ledger.lock().unwrap();
                    match (status, id) {
                        (200, Some(id)) => {
                            ledger.accepted.insert(id, data);
                        }
                        _ => ledger.refused.push(data),
                    }
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        });
    }

    let posted = |n: usize| {
        let ledger = ledger.clone();
        move || {
            let done = {
                let l = ledger.lock().unwrap();
                l.accepted.len() + l.refused.len()
            };
            async move { (done >= n).then_some(()) }
        }
    };
    let mut killed_workers = Vec::new();
    for (at, step) in [
        (100, "kill"),
        (250, "s3 errors"),
        (450, "kill"),
        (550, "sqs down"),
        (700, "kill"),
    ] {
        eventually(step, Duration::from_secs(120), posted(at)).await;
        match step {
            "kill" => {
                worker.signal("KILL");
                worker.wait_exit(Duration::from_secs(10)).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                let old = std::mem::replace(&mut worker, start_worker(&worker_env));
                killed_workers.push(old);
            }
            "s3 errors" => proxy.set(
                Service::S3,
                Faults {
                    error_rate: 0.1,
                    method: Some(axum::http::Method::PUT),
                    ..Faults::default()
                },
            ),
            "sqs down" => {
                proxy.set(Service::S3, Faults::default());
                proxy.set(Service::Sqs, outage());
                tokio::time::sleep(Duration::from_secs(5)).await;
                proxy.set(Service::Sqs, Faults::default());
            }
            _ => unreachable!(),
        }
    }
    while clients.join_next().await.is_some() {}
    proxy.clear();

    let (accepted, refused) = {
        let l = ledger.lock().unwrap();
        (l.accepted.clone(), l.refused.clone())
    };
    assert!(
        accepted.len() > EMAILS / 2,
        "too few accepted: {}",
        accepted.len()
    );
    // The faults bit: a scenario that met none proves nothing.
    assert!(proxy.counts(Service::S3).1 > 0, "no S3 error was injected");
    assert!(!refused.is_empty(), "no request met the SQS outage");
    assert_eq!(killed_workers.len(), 3);
    eprintln!(
        "scenario: {} accepted, {} refused, {} S3 errors injected",
        accepted.len(),
        refused.len(),
        proxy.counts(Service::S3).1
    );
    eventually(
        "every accepted email in the bucket",
        Duration::from_secs(180),
        || async {
            let keys = stack.keys().await;
            accepted
                .keys()
                .all(|id| keys.contains(&integration::object_key(id)))
                .then_some(())
        },
    )
    .await;
    eventually("the queue to empty", Duration::from_secs(60), || async {
        (stack.depth(&stack.queue_url).await == 0).then_some(())
    })
    .await;
    let objects = stack.objects().await;
    for (id, data) in &accepted {
        assert_eq!(
            objects[&integration::object_key(id)],
            data.as_bytes(),
            "{id}"
        );
    }
    // An email refused with a 503 may still have been queued (the outcome
    // was unknown): then it is stored once, never twice.
    let mut copies: HashMap<&[u8], usize> = HashMap::new();
    for body in objects.values() {
        *copies.entry(body.as_slice()).or_default() += 1;
    }
    for data in &refused {
        assert!(
            copies.get(data.as_bytes()).copied().unwrap_or(0) <= 1,
            "{data} stored twice"
        );
    }
    assert!(copies.values().all(|&n| n == 1), "an email stored twice");
    assert_eq!(
        objects.len(),
        accepted.len()
            + refused
                .iter()
                .filter(|d| copies.contains_key(d.as_bytes()))
                .count()
    );
    assert_eq!(stack.depth(&stack.dlq_url).await, 0, "the DLQ is empty");
    api.process.assert_no_panic();
    worker.assert_no_panic();
    for w in &killed_workers {
        w.assert_no_panic();
    }
    let _: Vec<&Process> = killed_workers.iter().collect();
}

/// A slow bucket and a short visibility timeout: each PUT takes over two
/// visibility timeouts, yet no message comes back to another receive loop
/// while the first is still storing it (the worker renews its visibility as
/// it works), so each is received once and put once. (A 4 s timeout leaves a
/// renewal 2.7 s to reach moto: with 2 s, a moto stalled for 1.3 s by the
/// other suites on 2 cores once let a message reappear. The PUT's 9 s stay
/// under the worker's 10 s per attempt.)
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_bucket_never_makes_a_message_visible_while_it_is_being_stored() {
    let moto = Moto::start().await;
    let stack = Stack::create(
        moto.clients().await,
        StackOptions {
            visibility_timeout_secs: 4,
            max_receive_count: 5,
        },
    )
    .await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let api = Api::start(&env_of(&[&moto.env(), &stack.api_env()])).await;
    let posted = api.submit_accepted(5, "slow bucket", &stack.token).await;
    proxy.set(
        Service::S3,
        Faults {
            latency: Duration::from_secs(9),
            ..Faults::default()
        },
    );
    // Short long polls: the other loops ask again every second, so they
    // would see a message as soon as it became visible.
    let mut worker = start_worker(&env_of(&[
        &moto.env(),
        &proxy.env(),
        &stack.worker_env(),
        &[("POLL_INTERVAL".into(), "1".into())],
    ]));
    stack
        .assert_stored_exactly_once(&posted, Duration::from_secs(60))
        .await;
    // Let whatever is still under way finish: a second delivery's PUT
    // would be counted once it is done.
    worker.signal("TERM");
    let status = worker.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
    let (puts, _) = proxy.counts(Service::S3);
    assert_eq!(puts, 5, "each email put once");
    let received_again: Vec<_> = worker
        .json_lines()
        .into_iter()
        .filter(|l| l["message"] == "message" && l["receive_count"].as_u64() != Some(1))
        .collect();
    assert!(
        received_again.is_empty(),
        "received again: {received_again:?}"
    );
    worker.assert_no_panic();
}
