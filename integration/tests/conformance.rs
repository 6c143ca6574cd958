//! Parity between the Fargate and Lambda targets, proven: one table of
//! requests with their expected answers, and one of queue messages with
//! their expected objects, run against every way the system can be hosted.
//!
//! - HTTP: the Fargate server (`queue2bucket api`); the HTTP function
//!   (`queue2bucket-api`) fed ALB, API Gateway REST (v1) and HTTP (v2) and
//!   Function URL events built from the samples in `runtime-lambda/events/`,
//!   with plain and base64-encoded bodies; and the HTTP function over real
//!   HTTP through `cargo lambda watch`.
//! - Messages: the SQS function (`queue2bucket-worker`) fed SQS events built
//!   from `runtime-lambda/events/sqs.json`, and the Fargate worker on a real
//!   queue, both on moto.
//!
//! Every target must give the expected status and body; and all targets must
//! give the same answer to the same request. And every function answers by
//! its invocation's deadline when AWS does not answer at all.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use handlers::id::EmailId;
use integration::fault::{FaultProxy, Faults, Service};
use integration::lambda::{FakeRuntime, Outcome};
use integration::{
    Api, DATA, Moto, Process, Stack, StackOptions, env_of, envelope, eventually, free_port,
    start_worker,
};
use serde_json::{Value, json};

/// An HTTP request of the table and what it must get.
#[derive(Clone)]
struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: String,
    status: u16,
    expect: Expect,
}

#[derive(Clone)]
enum Expect {
    /// This exact body.
    Body(&'static str),
    /// `{"status":"queued","id":"<UUIDv7>"}`.
    Queued,
    /// `{"error": …}` starting with this text.
    ErrorStarting(&'static str),
    /// Any JSON object with this member.
    Has(&'static str),
}

/// What a target answered, normalised: the queued id replaced by a
/// placeholder, so that answers of different targets can be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    body: String,
    content_type: Option<String>,
    www_authenticate: Option<String>,
}

fn json_header() -> (&'static str, String) {
    ("content-type", "application/json".into())
}

fn cases(token: &str) -> Vec<Case> {
    let json = || vec![json_header()];
    let no_token = format!(r#"{{"data":{DATA}}}"#);
    vec![
        Case {
            name: "health",
            method: "GET",
            path: "/",
            headers: vec![],
            body: String::new(),
            status: 200,
            expect: Expect::Body(r#"{"status":"ok"}"#),
        },
        Case {
            name: "openapi",
            method: "GET",
            path: "/openapi.json",
            headers: vec![],
            body: String::new(),
            status: 200,
            expect: Expect::Has("paths"),
        },
        Case {
            name: "queued, body token",
            method: "POST",
            path: "/email",
            headers: json(),
            body: envelope(DATA, token),
            status: 200,
            expect: Expect::Queued,
        },
        Case {
            name: "queued, bearer token",
            method: "POST",
            path: "/email",
            headers: vec![json_header(), ("authorization", format!("Bearer {token}"))],
            body: no_token.clone(),
            status: 200,
            expect: Expect::Queued,
        },
        Case {
            name: "wrong token",
            method: "POST",
            path: "/email",
            headers: json(),
            body: envelope(DATA, "wrong"),
            status: 401,
            expect: Expect::Body(r#"{"error":"invalid token"}"#),
        },
        Case {
            name: "no token",
            method: "POST",
            path: "/email",
            headers: json(),
            body: no_token,
            status: 401,
            expect: Expect::Body(r#"{"error":"missing token"}"#),
        },
        Case {
            name: "malformed JSON",
            method: "POST",
            path: "/email",
            headers: json(),
            body: r#"{"data":"#.into(),
            status: 400,
            expect: Expect::ErrorStarting("malformed JSON"),
        },
        Case {
            name: "missing field",
            method: "POST",
            path: "/email",
            headers: json(),
            body: envelope(
                r#"{"email_subject":"s","email_timestream":1,"email_content":"c"}"#,
                token,
            ),
            status: 400,
            expect: Expect::Body(r#"{"error":"invalid `data`: `email_sender` is missing"}"#),
        },
        Case {
            name: "conflicting tokens",
            method: "POST",
            path: "/email",
            headers: vec![json_header(), ("authorization", "Bearer other".into())],
            body: envelope(DATA, token),
            status: 400,
            expect: Expect::ErrorStarting("the token in the Authorization header differs"),
        },
        Case {
            name: "wrong content type",
            method: "POST",
            path: "/email",
            headers: vec![("content-type", "text/plain".into())],
            body: envelope(DATA, token),
            status: 415,
            expect: Expect::Body(r#"{"error":"Content-Type must be application/json"}"#),
        },
        Case {
            name: "too large",
            method: "POST",
            path: "/email",
            headers: json(),
            body: envelope(&DATA.replace("Hi Bob", &"x".repeat(5_300_000)), token),
            status: 413,
            expect: Expect::ErrorStarting("the request body exceeds"),
        },
        Case {
            name: "unknown path",
            method: "GET",
            path: "/nothing",
            headers: vec![],
            body: String::new(),
            status: 404,
            expect: Expect::Body(r#"{"error":"no such resource"}"#),
        },
        Case {
            name: "wrong method",
            method: "PUT",
            path: "/email",
            headers: json(),
            body: envelope(DATA, token),
            status: 405,
            expect: Expect::Body(r#"{"error":"method not allowed"}"#),
        },
    ]
}

fn normalise(status: u16, body: &str, headers: &BTreeMap<String, String>) -> Answer {
    let body = match serde_json::from_str::<Value>(body) {
        Ok(mut v) if v.get("status") == Some(&json!("queued")) => {
            v["id"] = json!("<id>");
            v.to_string()
        }
        _ => body.to_owned(),
    };
    Answer {
        status,
        body,
        content_type: headers.get("content-type").cloned(),
        www_authenticate: headers.get("www-authenticate").cloned(),
    }
}

/// Checks an answer against the table, before normalisation.
fn check(target: &str, case: &Case, status: u16, body: &str, headers: &BTreeMap<String, String>) {
    let at = format!("{target} / {}", case.name);
    assert_eq!(status, case.status, "{at}: status; body {body}");
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("application/json"),
        "{at}"
    );
    if status == 401 {
        assert_eq!(
            headers.get("www-authenticate").map(String::as_str),
            Some("Bearer"),
            "{at}"
        );
    }
    let value: Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("{at}: not JSON: {body}"));
    match &case.expect {
        Expect::Body(expected) => assert_eq!(body, *expected, "{at}"),
        Expect::Queued => {
            assert_eq!(value["status"], "queued", "{at}");
            let id = value["id"].as_str().unwrap_or_default();
            assert!(EmailId::parse(id).is_some(), "{at}: id {id:?}");
        }
        Expect::ErrorStarting(prefix) => {
            let error = value["error"].as_str().unwrap_or_default();
            assert!(error.starts_with(prefix), "{at}: {error:?}");
        }
        Expect::Has(member) => assert!(value.get(member).is_some(), "{at}: no {member}"),
    }
}

fn events_dir() -> PathBuf {
    integration::workspace_root().join("runtime-lambda/events")
}

fn sample(name: &str) -> Value {
    let text = std::fs::read_to_string(events_dir().join(name)).expect("event sample");
    serde_json::from_str(&text).expect("event sample is JSON")
}

#[derive(Clone, Copy, Debug)]
enum EventKind {
    Alb,
    ApiGatewayV1,
    ApiGatewayV2,
    FunctionUrl,
}

/// The sample event of `kind`, carrying the case's request.
fn http_event(kind: EventKind, case: &Case, base64: bool) -> Value {
    let (file, v2) = match kind {
        EventKind::Alb => ("alb.json", false),
        EventKind::ApiGatewayV1 => ("apigw-v1.json", false),
        EventKind::ApiGatewayV2 => ("apigw-v2.json", true),
        EventKind::FunctionUrl => ("function-url.json", true),
    };
    let mut event = sample(file);
    let mut headers = event["headers"].as_object().cloned().unwrap_or_default();
    headers.retain(|k, _| {
        !k.eq_ignore_ascii_case("content-type") && !k.eq_ignore_ascii_case("content-length")
    });
    for (k, v) in &case.headers {
        headers.insert((*k).to_owned(), json!(v));
    }
    let body = if base64 {
        B64.encode(&case.body)
    } else {
        case.body.clone()
    };
    event["body"] = if case.body.is_empty() {
        Value::Null
    } else {
        json!(body)
    };
    event["isBase64Encoded"] = json!(base64 && !case.body.is_empty());
    if v2 {
        event["rawPath"] = json!(case.path);
        event["requestContext"]["http"]["method"] = json!(case.method);
        event["requestContext"]["http"]["path"] = json!(case.path);
    } else {
        event["httpMethod"] = json!(case.method);
        event["path"] = json!(case.path);
        if matches!(kind, EventKind::ApiGatewayV1) {
            event["requestContext"]["httpMethod"] = json!(case.method);
            event["requestContext"]["path"] = json!(format!("/prod{}", case.path));
            event["pathParameters"]["proxy"] = json!(case.path.trim_start_matches('/'));
            let multi: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(k, v)| (k.clone(), json!([v])))
                .collect();
            event["multiValueHeaders"] = Value::Object(multi);
        }
    }
    event["headers"] = Value::Object(headers);
    event
}

/// Reads a Lambda HTTP response (ALB, API Gateway v1 or v2 shape).
fn http_response(outcome: Outcome) -> (u16, String, BTreeMap<String, String>) {
    let Outcome::Response(bytes) = outcome else {
        panic!("the function failed: {outcome:?}");
    };
    let v: Value = serde_json::from_slice(&bytes).expect("JSON response");
    let status = v["statusCode"].as_u64().expect("statusCode") as u16;
    let raw = v["body"].as_str().unwrap_or_default();
    let body = if v["isBase64Encoded"] == json!(true) {
        String::from_utf8(B64.decode(raw).expect("base64 body")).unwrap()
    } else {
        raw.to_owned()
    };
    let mut headers = BTreeMap::new();
    if let Some(map) = v["headers"].as_object() {
        for (k, val) in map {
            headers.insert(
                k.to_lowercase(),
                val.as_str().unwrap_or_default().to_owned(),
            );
        }
    }
    if let Some(map) = v["multiValueHeaders"].as_object() {
        for (k, vals) in map {
            if let Some(first) = vals.as_array().and_then(|a| a.first()) {
                headers.insert(
                    k.to_lowercase(),
                    first.as_str().unwrap_or_default().to_owned(),
                );
            }
        }
    }
    (status, body, headers)
}

async fn over_http(base: &str, case: &Case) -> (u16, String, BTreeMap<String, String>) {
    let http = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(case.method.as_bytes()).unwrap();
    let mut request = http.request(method, format!("{base}{}", case.path));
    for (k, v) in &case.headers {
        request = request.header(*k, v);
    }
    if !case.body.is_empty() {
        request = request.body(case.body.clone());
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    (status, response.text().await.unwrap(), headers)
}

fn lambda_api(runtime: &FakeRuntime, moto: &Moto, stack: &Stack) -> Process {
    lambda_api_with(runtime, &[&moto.env(), &stack.api_env()])
}

/// The HTTP function under `runtime`, with the environment of `env`.
fn lambda_api_with(runtime: &FakeRuntime, env: &[&[(String, String)]]) -> Process {
    let mut command = runtime.command("queue2bucket-api", env);
    command.env("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true");
    Process::spawn("queue2bucket-api", command)
}

#[tokio::test(flavor = "multi_thread")]
async fn http_answers_are_the_same_on_every_target() {
    let moto = Moto::start().await;
    let stack = Stack::create(moto.clients().await, StackOptions::default()).await;
    let table = cases(&stack.token);
    let mut answers: BTreeMap<&str, Vec<(String, Answer)>> = BTreeMap::new();

    // Fargate, over HTTP.
    let api = Api::start(&env_of(&[&moto.env(), &stack.api_env()])).await;
    for case in &table {
        let (status, body, headers) = over_http(&api.url, case).await;
        check("fargate", case, status, &body, &headers);
        answers
            .entry(case.name)
            .or_default()
            .push(("fargate".into(), normalise(status, &body, &headers)));
    }

    // The HTTP function, fed every kind of event, plain and base64.
    let runtime = FakeRuntime::start().await;
    let function = lambda_api(&runtime, &moto, &stack);
    for kind in [
        EventKind::Alb,
        EventKind::ApiGatewayV1,
        EventKind::ApiGatewayV2,
        EventKind::FunctionUrl,
    ] {
        for base64 in [false, true] {
            let target = format!("lambda {kind:?}{}", if base64 { " base64" } else { "" });
            for case in &table {
                let outcome = runtime.invoke(&http_event(kind, case, base64)).await;
                let (status, body, headers) = http_response(outcome);
                check(&target, case, status, &body, &headers);
                answers
                    .entry(case.name)
                    .or_default()
                    .push((target.clone(), normalise(status, &body, &headers)));
            }
        }
    }
    function.assert_no_panic();

    for (case, by_target) in &answers {
        let (first_target, first) = &by_target[0];
        for (target, answer) in &by_target[1..] {
            assert_eq!(
                answer, first,
                "{case}: {target} differs from {first_target}"
            );
        }
    }
    // Every queued answer put one message on the queue: 2 per target run.
    let queued_cases = table
        .iter()
        .filter(|c| matches!(c.expect, Expect::Queued))
        .count() as u64;
    assert_eq!(stack.depth(&stack.queue_url).await, queued_cases * (1 + 8));
}

/// Both functions, as `cargo lambda watch` from the repository root serves
/// them: the HTTP one through its function URL, the SQS one invoked with an
/// SQS event.
#[tokio::test(flavor = "multi_thread")]
async fn both_functions_run_under_cargo_lambda_watch() {
    let moto = Moto::start().await;
    let stack = Stack::create(moto.clients().await, StackOptions::default()).await;
    let port = free_port();
    let root = integration::workspace_root();
    let venv_bin = root.join(".venv/bin");
    let mut command = std::process::Command::new(venv_bin.join("cargo-lambda"));
    // From the repository root, as the README has a user type it.
    command
        .current_dir(&root)
        .args(["lambda", "watch", "--ignore-changes"])
        .args([
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port.to_string(),
        ])
        .env(
            "PATH",
            format!(
                "{}:{}",
                venv_bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    for (k, v) in env_of(&[&moto.env(), &stack.api_env(), &stack.worker_env()]) {
        command.env(k, v);
    }
    let watch = Process::spawn("cargo lambda watch", command);
    let base = format!("http://127.0.0.1:{port}/lambda-url/queue2bucket-api");
    // The first request builds the function, which may take minutes cold.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    eventually(
        "cargo lambda watch to serve the function",
        Duration::from_secs(900),
        || {
            let request = http.get(format!("{base}/")).send();
            async move { request.await.ok().filter(|r| r.status().is_success()) }
        },
    )
    .await;
    let table = cases(&stack.token);
    for case in &table {
        let (status, body, headers) = over_http(&base, case).await;
        check("cargo lambda watch", case, status, &body, &headers);
    }
    let queued_cases = table
        .iter()
        .filter(|c| matches!(c.expect, Expect::Queued))
        .count() as u64;
    assert_eq!(
        stack.depth(&stack.queue_url).await,
        queued_cases,
        "the emails reached the queue"
    );

    // The worker function, invoked as `cargo lambda invoke` does.
    let event = json!({"Records": [{
        "messageId": "7d2f36b4-87a3-44ab-83d2-661975830001", "receiptHandle": "r",
        "body": DATA, "md5OfBody": "",
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1732780800000"},
        "messageAttributes": {}, "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:q", "awsRegion": "us-east-2"
    }]});
    let answer: Value = http
        .post(format!(
            "http://127.0.0.1:{port}/2015-03-31/functions/queue2bucket-worker/invocations"
        ))
        .json(&event)
        .send()
        .await
        .expect("the worker function answers")
        .json()
        .await
        .expect("a JSON answer");
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
    let keys = stack.keys().await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(
        stack.object(&keys[0]).await.as_deref(),
        Some(DATA.as_bytes())
    );
    watch.assert_no_panic();
}

/// A queue message of the table: body, id attribute, and what must happen.
struct MessageCase {
    name: &'static str,
    body: String,
    email_id: Option<String>,
    stored: bool,
}

fn message_cases() -> Vec<MessageCase> {
    vec![
        MessageCase { name: "from the API", body: DATA.into(), email_id: Some(EmailId::new().to_string()), stored: true },
        MessageCase {
            name: "escapes and extras",
            body: r#"{"email_subject":"\u00e9","email_sender":"b@c.d","email_timestream":1732780800.5,"email_content":"x\ny","tags":["a"]}"#.into(),
            email_id: Some(EmailId::new().to_string()),
            stored: true,
        },
        MessageCase { name: "another producer", body: DATA.replace("Hi Bob", "foreign"), email_id: None, stored: true },
        MessageCase { name: "not JSON", body: "not json".into(), email_id: None, stored: false },
        MessageCase { name: "wrong shape", body: r#"{"email_subject":"only"}"#.into(), email_id: Some(EmailId::new().to_string()), stored: false },
    ]
}

fn sqs_event(cases: &[MessageCase], receive_count: u32) -> (Value, Vec<String>) {
    let template = sample("sqs.json")["Records"][0].clone();
    let mut ids = Vec::new();
    let records: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let mut r = template.clone();
            let message_id = format!("5e9f36b4-87a3-44ab-83d2-66197583{i:04}");
            ids.push(message_id.clone());
            r["messageId"] = json!(message_id);
            r["body"] = json!(case.body);
            r["attributes"]["ApproximateReceiveCount"] = json!(receive_count.to_string());
            r["messageAttributes"] = match &case.email_id {
                Some(id) => json!({"q2b-id": {"stringValue": id, "stringListValues": [], "binaryListValues": [], "dataType": "String"}}),
                None => json!({}),
            };
            r
        })
        .collect();
    (json!({ "Records": records }), ids)
}

fn expected_key(case: &MessageCase, message_id: &str, sent_at_ms: u64) -> String {
    let id = match &case.email_id {
        Some(id) => id.clone(),
        None => EmailId::derived(message_id, sent_at_ms).to_string(),
    };
    integration::object_key(&id)
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_become_the_same_objects_on_every_target() {
    let moto = Moto::start().await;
    let table = message_cases();

    // The SQS function, on a real SQS event sample.
    let lambda_stack = Stack::create(moto.clients().await, StackOptions::default()).await;
    let runtime = FakeRuntime::start().await;
    let function = runtime.spawn(
        "queue2bucket-worker",
        &[
            &moto.env(),
            &[("S3_BUCKET_NAME".into(), lambda_stack.bucket.clone())],
        ],
    );
    let (event, message_ids) = sqs_event(&table, 1);
    let sent_at: u64 = sample("sqs.json")["Records"][0]["attributes"]["SentTimestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let Outcome::Response(bytes) = runtime.invoke(&event).await else {
        panic!("the SQS function failed");
    };
    let response: Value = serde_json::from_slice(&bytes).unwrap();
    let mut failed: Vec<String> = response["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
        .collect();
    failed.sort();
    let mut expected_failed: Vec<String> = table
        .iter()
        .zip(&message_ids)
        .filter(|(c, _)| !c.stored)
        .map(|(_, id)| id.clone())
        .collect();
    expected_failed.sort();
    assert_eq!(
        failed, expected_failed,
        "exactly the unstorable records are reported"
    );
    for (case, message_id) in table.iter().zip(&message_ids) {
        let key = expected_key(case, message_id, sent_at);
        let object = lambda_stack.object(&key).await;
        if case.stored {
            assert_eq!(
                object.as_deref(),
                Some(case.body.as_bytes()),
                "lambda / {}",
                case.name
            );
        }
    }
    let stored = table.iter().filter(|c| c.stored).count();
    assert_eq!(lambda_stack.keys().await.len(), stored);
    // A redelivery of the whole event stores nothing twice.
    let (again, _) = sqs_event(&table, 2);
    runtime.invoke(&again).await;
    assert_eq!(lambda_stack.keys().await.len(), stored);
    function.assert_no_panic();

    // The Fargate worker, on a real queue.
    let fargate_stack = Stack::create(
        moto.clients().await,
        StackOptions {
            visibility_timeout_secs: 30,
            max_receive_count: 5,
        },
    )
    .await;
    let mut sent = Vec::new();
    for case in &table {
        let mut send = fargate_stack
            .clients
            .sqs
            .send_message()
            .queue_url(&fargate_stack.queue_url)
            .message_body(&case.body);
        if let Some(id) = &case.email_id {
            send = send.message_attributes(
                "q2b-id",
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(id)
                    .build()
                    .unwrap(),
            );
        }
        sent.push(send.send().await.unwrap().message_id.unwrap());
    }
    let worker = start_worker(&env_of(&[&moto.env(), &fargate_stack.worker_env()]));
    eventually(
        "the worker to store the storable",
        Duration::from_secs(30),
        || async { (fargate_stack.keys().await.len() == stored).then_some(()) },
    )
    .await;
    for case in table.iter().filter(|c| c.stored) {
        let key = match &case.email_id {
            // Same id, same key and body as the SQS function wrote.
            Some(id) => integration::object_key(id),
            None => continue,
        };
        let here = fargate_stack.object(&key).await;
        let there = lambda_stack.object(&key).await;
        assert_eq!(
            here, there,
            "{}: the targets stored different objects",
            case.name
        );
    }
    let foreign_case = table
        .iter()
        .find(|c| c.email_id.is_none() && c.stored)
        .unwrap();
    let foreign_objects: Vec<_> = fargate_stack
        .objects()
        .await
        .into_values()
        .filter(|b| b == foreign_case.body.as_bytes())
        .collect();
    assert_eq!(
        foreign_objects.len(),
        1,
        "the other producer's message stored once"
    );
    worker.assert_no_panic();
    let _ = sent;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_functions_run_against_the_local_mode() {
    let dir = std::env::temp_dir().join(format!(
        "q2b-lambda-local-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let local = vec![
        (
            "QUEUE2BUCKET_DATA_DIR".to_owned(),
            dir.display().to_string(),
        ),
        ("QUEUE2BUCKET_TOKEN".to_owned(), "local-token".to_owned()),
    ];
    let api_runtime = FakeRuntime::start().await;
    let api = api_runtime.spawn("queue2bucket-api", &[&local]);
    // The Function URL sample carries a base64 body with the token "local-token".
    let (status, body, _) = http_response(api_runtime.invoke(&sample("function-url.json")).await);
    assert_eq!(status, 200, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // `queue2bucket dev` on the same directory drains what the function queued.
    let dev = Process::spawn(
        "queue2bucket dev",
        integration::command(
            &[
                "dev",
                "--port",
                "0",
                "--data-dir",
                &dir.display().to_string(),
                "--token",
                "local-token",
            ],
            &[],
        ),
    );
    let file = dir.join("bucket").join(integration::object_key(&id));
    eventually("the file", Duration::from_secs(20), || {
        let found = std::fs::read(&file).ok();
        async move { found }
    })
    .await;

    let worker_runtime = FakeRuntime::start().await;
    let worker = worker_runtime.spawn("queue2bucket-worker", &[&local]);
    let Outcome::Response(answer) = worker_runtime.invoke(&sample("sqs.json")).await else {
        panic!("the SQS function failed");
    };
    assert_eq!(
        serde_json::from_slice::<Value>(&answer).unwrap(),
        json!({"batchItemFailures": []})
    );
    let first =
        sample("sqs.json")["Records"][0]["messageAttributes"]["q2b-id"]["stringValue"].clone();
    assert!(
        dir.join("bucket")
            .join(integration::object_key(first.as_str().unwrap()))
            .exists()
    );
    for p in [&api, &dev, &worker] {
        p.assert_no_panic();
    }
    drop((api, dev, worker));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Lambda's function timeout, as the local Runtime API models it: with SQS
/// and S3 blackholed (connections accepted, never answered), each function
/// still answers within its invocation's deadline: the HTTP function a 503
/// that clients retry, on every event shape, and the SQS function the
/// records it could not store. Without that, Lambda would kill them: an ALB
/// then answers 502, and an SQS event source retries every record.
#[tokio::test(flavor = "multi_thread")]
async fn the_functions_answer_within_their_deadline_when_aws_hangs() {
    let moto = Moto::start().await;
    let stack = Stack::create(moto.clients().await, StackOptions::default()).await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    for service in [Service::Sqs, Service::S3] {
        let blackhole = Faults {
            blackhole: true,
            ..Faults::default()
        };
        proxy.set(service, blackhole);
    }
    let timeout = Duration::from_secs(3);

    let runtime = FakeRuntime::start().await;
    let api = lambda_api_with(&runtime, &[&moto.env(), &proxy.env(), &stack.api_env()]);
    let post = cases(&stack.token)
        .into_iter()
        .find(|c| matches!(c.expect, Expect::Queued))
        .expect("a valid email in the table");
    for kind in [
        EventKind::Alb,
        EventKind::ApiGatewayV1,
        EventKind::ApiGatewayV2,
        EventKind::FunctionUrl,
    ] {
        let started = Instant::now();
        let outcome = runtime
            .invoke_with_timeout(&http_event(kind, &post, false), timeout)
            .await;
        assert_ne!(
            outcome,
            Outcome::TimedOut,
            "{kind:?}: killed at the deadline"
        );
        let (status, body, headers) = http_response(outcome);
        assert_eq!(status, 503, "{kind:?}: {body}");
        assert!(headers.contains_key("retry-after"), "{kind:?}");
        assert!(started.elapsed() < timeout, "{kind:?}");
    }
    api.assert_no_panic();

    let runtime = FakeRuntime::start().await;
    let worker = runtime.spawn(
        "queue2bucket-worker",
        &[
            &moto.env(),
            &proxy.env(),
            &[("S3_BUCKET_NAME".into(), stack.bucket.clone())],
        ],
    );
    let storable: Vec<MessageCase> = message_cases().into_iter().filter(|c| c.stored).collect();
    let (event, mut message_ids) = sqs_event(&storable, 1);
    let started = Instant::now();
    let outcome = runtime.invoke_with_timeout(&event, timeout).await;
    let Outcome::Response(bytes) = outcome else {
        panic!("the SQS function did not answer in time: {outcome:?}");
    };
    assert!(started.elapsed() < timeout);
    let response: Value = serde_json::from_slice(&bytes).unwrap();
    let mut failed: Vec<String> = response["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
        .collect();
    failed.sort();
    message_ids.sort();
    assert_eq!(failed, message_ids, "every record reported for a retry");
    worker.assert_no_panic();
}

/// A large email through each Lambda front door, within what that door lets
/// through: behind an ALB (1 MB) it still fits a queue message and goes
/// inline; behind API Gateway (10 MB) and a Function URL (6 MB) a 3 MiB
/// email goes through the claim check, staged byte for byte.
#[tokio::test(flavor = "multi_thread")]
async fn large_emails_pass_every_lambda_front_door_within_its_limit() {
    let moto = Moto::start().await;
    let stack = Stack::create(moto.clients().await, StackOptions::default()).await;
    let runtime = FakeRuntime::start().await;
    let function = lambda_api_with(
        &runtime,
        &[
            &moto.env(),
            &stack.api_env(),
            &[("S3_BUCKET_NAME".into(), stack.bucket.clone())],
        ],
    );
    let template = cases(&stack.token)
        .into_iter()
        .find(|c| matches!(c.expect, Expect::Queued))
        .expect("a valid email in the table");
    let mut sent = Vec::new();
    for (kind, size, claim) in [
        (EventKind::Alb, 900 * 1024, false),
        (EventKind::ApiGatewayV1, 3 * 1024 * 1024, true),
        (EventKind::ApiGatewayV2, 3 * 1024 * 1024, true),
        (EventKind::FunctionUrl, 3 * 1024 * 1024, true),
    ] {
        let data = DATA.replace("Hi Bob", &"L".repeat(size));
        let case = Case {
            body: envelope(&data, &stack.token),
            ..template.clone()
        };
        let (status, body, _) =
            http_response(runtime.invoke(&http_event(kind, &case, false)).await);
        assert_eq!(status, 200, "{kind:?}: {body}");
        let id: Value = serde_json::from_str(&body).unwrap();
        let id = id["id"].as_str().unwrap().to_owned();
        let staged = stack.object(&format!("staging/{id}.json")).await;
        if claim {
            assert_eq!(
                staged.as_deref(),
                Some(data.as_bytes()),
                "{kind:?}: staged byte for byte"
            );
        } else {
            assert!(staged.is_none(), "{kind:?}: inline, nothing staged");
        }
        sent.push((id, data));
    }
    assert_eq!(stack.depth(&stack.queue_url).await, 4);
    function.assert_no_panic();

    // The SQS function takes the queued messages, pointers included, as
    // Lambda's event source mapping hands them over.
    let mut records = Vec::new();
    while records.len() < 4 {
        let received = stack
            .clients
            .sqs
            .receive_message()
            .queue_url(&stack.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        for m in received.messages() {
            let attributes: serde_json::Map<String, Value> = m
                .message_attributes()
                .into_iter()
                .flatten()
                .map(|(name, value)| {
                    let value = json!({"stringValue": value.string_value(), "stringListValues": [],
                                       "binaryListValues": [], "dataType": value.data_type()});
                    (name.clone(), value)
                })
                .collect();
            records.push(json!({
                "messageId": m.message_id(), "receiptHandle": m.receipt_handle(),
                "body": m.body(), "md5OfBody": "",
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1732780800000"},
                "messageAttributes": attributes, "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:q", "awsRegion": "us-east-2"
            }));
        }
    }
    let worker_runtime = FakeRuntime::start().await;
    let worker = worker_runtime.spawn("queue2bucket-worker", &[&moto.env(), &stack.worker_env()]);
    let Outcome::Response(answer) = worker_runtime.invoke(&json!({ "Records": records })).await
    else {
        panic!("the SQS function failed");
    };
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
    for (id, data) in &sent {
        assert_eq!(
            stack.object(&integration::object_key(id)).await.as_deref(),
            Some(data.as_bytes()),
            "{id}: stored byte for byte"
        );
        assert!(
            stack.object(&format!("staging/{id}.json")).await.is_none(),
            "{id}: staged copy removed"
        );
    }
    worker.assert_no_panic();
}
