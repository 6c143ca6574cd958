//! What an operator sees: the CloudWatch Embedded Metric Format documents
//! the binaries write (valid EMF, counts equal to what was sent), from the
//! ECS services and from the Lambda functions under the local Runtime API;
//! and `queue2bucket status` against moto and a local data directory.

use std::collections::BTreeMap;
use std::time::Duration;

use integration::lambda::{FakeRuntime, Outcome};
use integration::{
    Api, DATA, Moto, Process, Stack, StackOptions, command, env_of, envelope, eventually,
    start_worker,
};
use serde_json::{Value, json};

/// The EMF documents among a process's output lines, each checked against
/// the format: the `_aws` block with a millisecond timestamp, one directive
/// in `namespace` with the `Service` dimension, and a top-level value for
/// every metric it defines.
fn emf_documents(process: &Process, namespace: &str) -> Vec<Value> {
    let docs: Vec<Value> = process
        .json_lines()
        .into_iter()
        .filter(|l| l.get("_aws").is_some())
        .collect();
    for doc in &docs {
        let aws = &doc["_aws"];
        assert!(
            aws["Timestamp"]
                .as_u64()
                .is_some_and(|t| t > 1_600_000_000_000),
            "{doc}"
        );
        let directives = aws["CloudWatchMetrics"].as_array().expect("directives");
        assert_eq!(directives.len(), 1, "{doc}");
        let d = &directives[0];
        assert_eq!(d["Namespace"], namespace, "{doc}");
        assert_eq!(d["Dimensions"], json!([["Service"]]), "{doc}");
        assert!(doc["Service"].is_string(), "{doc}");
        let metrics = d["Metrics"].as_array().expect("metric definitions");
        assert!(!metrics.is_empty() && metrics.len() <= 100, "{doc}");
        for m in metrics {
            let name = m["Name"].as_str().expect("name");
            assert!(
                ["Count", "Milliseconds"].contains(&m["Unit"].as_str().unwrap_or_default()),
                "{doc}"
            );
            let value = &doc[name];
            let ok = value.is_u64()
                || (value["Values"].as_array().is_some_and(|v| v.len() <= 100)
                    && value["Counts"].as_array().map(Vec::len)
                        == value["Values"].as_array().map(Vec::len));
            assert!(ok, "{name} has no valid value: {doc}");
        }
    }
    docs
}

/// Counters summed over every document, by metric name.
fn totals(docs: &[Value]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for doc in docs {
        for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
        {
            let name = m["Name"].as_str().unwrap();
            if let Some(n) = doc[name].as_u64() {
                *out.entry(name.to_owned()).or_default() += n;
            }
        }
    }
    out
}

fn samples(docs: &[Value], name: &str) -> u64 {
    docs.iter().filter_map(|d| d[name]["Count"].as_u64()).sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_services_write_emf_metrics_that_count_what_happened() {
    let moto = Moto::start().await;
    let stack = Stack::create(moto.clients().await, StackOptions::default()).await;
    let namespace = vec![(
        "METRICS_NAMESPACE".to_owned(),
        "Queue2Bucket/test".to_owned(),
    )];
    let mut api = Api::start(&env_of(&[&moto.env(), &stack.api_env(), &namespace])).await;
    let mut worker = start_worker(&env_of(&[&moto.env(), &stack.worker_env(), &namespace]));
    let posted = api.submit_accepted(3, "metrics", &stack.token).await;
    for body in [
        "{",
        r#"{"data":{},"token":"x"}"#.replace('x', &stack.token).as_str(),
    ] {
        assert_eq!(api.post(body.to_owned()).await.0, 400);
    }
    assert_eq!(api.submit(DATA, "wrong-token").await.0, 401);
    stack
        .assert_stored_exactly_once(&posted, Duration::from_secs(30))
        .await;
    // Both write their last document when they stop.
    api.process.signal("TERM");
    worker.signal("TERM");
    api.process.wait_exit(Duration::from_secs(15)).await;
    worker.wait_exit(Duration::from_secs(30)).await;

    let api_docs = emf_documents(&api.process, "Queue2Bucket/test");
    assert!(api_docs.iter().all(|d| d["Service"] == "api"));
    let api_totals = totals(&api_docs);
    assert_eq!(api_totals["EmailsAccepted"], 3, "{api_totals:?}");
    assert_eq!(api_totals["RejectedInvalid"], 2, "{api_totals:?}");
    assert_eq!(api_totals["RejectedUnauthorized"], 1, "{api_totals:?}");
    assert_eq!(api_totals["UnavailableQueue"], 0, "{api_totals:?}");
    assert!(api_totals["SqsSendCalls"] >= 1);
    assert_eq!(samples(&api_docs, "ApiLatency"), 6, "one latency per POST");
    assert_eq!(
        samples(&api_docs, "SqsBatchSize"),
        api_totals["SqsSendCalls"]
    );

    let worker_docs = emf_documents(&worker, "Queue2Bucket/test");
    assert!(worker_docs.iter().all(|d| d["Service"] == "worker"));
    let worker_totals = totals(&worker_docs);
    assert_eq!(worker_totals["EmailsStored"], 3, "{worker_totals:?}");
    assert_eq!(worker_totals["MessagesReceived"], 3, "{worker_totals:?}");
    assert_eq!(worker_totals["StoreFailures"], 0, "{worker_totals:?}");
    assert_eq!(samples(&worker_docs, "EndToEndLatency"), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_functions_write_emf_metrics_after_each_invocation() {
    let moto = Moto::start().await;
    let stack = Stack::create(moto.clients().await, StackOptions::default()).await;
    let runtime = FakeRuntime::start().await;
    let api = runtime.spawn("queue2bucket-api", &[&moto.env(), &stack.api_env()]);
    let alb = |body: &str| {
        json!({
            "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/q2b/0123456789abcdef"}},
            "httpMethod": "POST", "path": "/email", "queryStringParameters": {},
            "headers": {"content-type": "application/json", "host": "api"},
            "body": body, "isBase64Encoded": false
        })
    };
    for (body, status) in [
        (envelope(DATA, &stack.token), 200),
        (envelope(DATA, &stack.token), 200),
        (envelope(DATA, "wrong"), 401),
        (
            envelope(r#"{"email_subject":"no other field"}"#, &stack.token),
            400,
        ),
    ] {
        let Outcome::Response(answer) = runtime.invoke(&alb(&body)).await else {
            panic!("the HTTP function failed");
        };
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["statusCode"], status, "{answer}");
    }
    let docs = eventually("a document per invocation", Duration::from_secs(10), || {
        let docs = emf_documents(&api, "Queue2Bucket");
        async move { (docs.len() >= 4).then_some(docs) }
    })
    .await;
    let t = totals(&docs);
    assert_eq!(
        (
            t["EmailsAccepted"],
            t["RejectedUnauthorized"],
            t["RejectedInvalid"]
        ),
        (2, 1, 1),
        "{t:?}"
    );
    assert_eq!(samples(&docs, "ApiLatency"), 4, "one latency per answer");
    assert!(t["SqsSendCalls"] >= 1, "{t:?}");
    // Per invocation only what it counted: no document lists a counter at 0.
    for doc in &docs {
        for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
        {
            let name = m["Name"].as_str().unwrap();
            assert_ne!(doc[name], 0, "{name} written at zero: {doc}");
        }
    }

    let worker_runtime = FakeRuntime::start().await;
    let worker = worker_runtime.spawn(
        "queue2bucket-worker",
        &[
            &moto.env(),
            &[("S3_BUCKET_NAME".into(), stack.bucket.clone())],
        ],
    );
    let records: Vec<Value> = ["5e9f36b4-87a3-44ab-83d2-661975830001", "5e9f36b4-87a3-44ab-83d2-661975830002"]
        .iter()
        .map(|id| {
            json!({"messageId": id, "receiptHandle": "r", "body": DATA, "md5OfBody": "",
                   "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1732780800000"},
                   "messageAttributes": {}, "eventSource": "aws:sqs",
                   "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:q", "awsRegion": "us-east-2"})
        })
        .collect();
    let Outcome::Response(_) = worker_runtime.invoke(&json!({ "Records": records })).await else {
        panic!("the SQS function failed");
    };
    let docs = eventually("the worker's document", Duration::from_secs(10), || {
        let docs = emf_documents(&worker, "Queue2Bucket");
        async move { (!docs.is_empty()).then_some(docs) }
    })
    .await;
    let t = totals(&docs);
    assert_eq!((t["MessagesReceived"], t["EmailsStored"]), (2, 2), "{t:?}");
}

fn status(args: &[&str], env: &[(String, String)]) -> (Option<i32>, String) {
    let output = command(args, env).output().expect("queue2bucket runs");
    (
        output.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

fn line_value(report: &str, label: &str) -> String {
    report
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {label:?} in {report}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn status_reports_the_queue_and_fails_on_dead_letters() {
    let moto = Moto::start().await;
    let stack = Stack::create(
        moto.clients().await,
        StackOptions {
            visibility_timeout_secs: 30,
            max_receive_count: 1,
        },
    )
    .await;
    let env = env_of(&[
        &moto.env(),
        &[("SQS_QUEUE_URL".into(), stack.queue_url.clone())],
    ]);
    for body in ["one", "two", "three"] {
        stack
            .clients
            .sqs
            .send_message()
            .queue_url(&stack.queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    // One received and kept: in flight.
    stack
        .clients
        .sqs
        .receive_message()
        .queue_url(&stack.queue_url)
        .max_number_of_messages(1)
        .send()
        .await
        .unwrap();
    let (code, report) = status(&["status"], &env);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(line_value(&report, "waiting"), "2");
    assert_eq!(line_value(&report, "in flight"), "1");
    assert_eq!(line_value(&report, "dead-letter queue"), "0");

    // Exhaust the receives of the other two: they move to the DLQ.
    eventually("two dead letters", Duration::from_secs(30), || async {
        let _ = stack
            .clients
            .sqs
            .receive_message()
            .queue_url(&stack.queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await;
        (stack.depth(&stack.dlq_url).await == 2).then_some(())
    })
    .await;
    let (code, report) = status(&["status"], &env);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(line_value(&report, "dead-letter queue"), "2");
    assert!(report.contains("redrive"), "{report}");

    let (code, report) = status(&["status"], &[]);
    assert_eq!(code, Some(2), "no queue: {report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_reports_a_local_data_directory() {
    use handlers::id::EmailId;
    use handlers::local::DataDir;
    use handlers::queue::sqlite::SqliteQueueConfig;
    use handlers::queue::{OutgoingMessage, Queue};

    let path = std::env::temp_dir().join(format!("q2b-status-{}", uuid::Uuid::new_v4().simple()));
    let queue = DataDir::create(&path)
        .unwrap()
        .queue(SqliteQueueConfig {
            visibility_timeout: Duration::from_secs(60),
            max_receives: 1,
        })
        .unwrap();
    let message =
        |i: usize| OutgoingMessage::new(EmailId::new(), DATA.replace("Hi Bob", &i.to_string()));
    for r in queue
        .send_batch(&[message(1), message(2), message(3)])
        .await
    {
        r.unwrap();
    }
    queue.receive(1, Duration::ZERO).await.unwrap();
    let dir = path.display().to_string();
    let (code, report) = status(&["status", "--data-dir", &dir], &[]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(
        (
            line_value(&report, "waiting"),
            line_value(&report, "in flight")
        ),
        ("2".into(), "1".into())
    );
    assert!(
        line_value(&report, "oldest message").ends_with(" s"),
        "{report}"
    );

    // The one in flight comes back, over its receive limit: dead-lettered.
    let dead = DataDir::create(&path)
        .unwrap()
        .queue(SqliteQueueConfig {
            visibility_timeout: Duration::ZERO,
            max_receives: 0,
        })
        .unwrap();
    dead.receive(10, Duration::ZERO).await.unwrap();
    let (code, report) = status(&["status", "--data-dir", &dir], &[]);
    assert_eq!(code, Some(1), "{report}");
    let _ = std::fs::remove_dir_all(&path);
}
