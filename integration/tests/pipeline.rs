//! The whole pipeline against moto: the real API and worker binaries, the
//! real AWS SDK clients, over HTTP and the AWS protocols.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration::fault::{FaultProxy, Service};
use integration::{
    Api, DATA, Moto, Stack, StackOptions, command, env_of, envelope, eventually, free_port,
    start_worker,
};

async fn stack(moto: &Moto, options: StackOptions) -> Stack {
    Stack::create(moto.clients().await, options).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_posted_email_lands_in_the_bucket_byte_for_byte() {
    let moto = Moto::start().await;
    let stack = stack(&moto, StackOptions::default()).await;
    let api = Api::start(&env_of(&[&moto.env(), &stack.api_env()])).await;
    let worker = start_worker(&env_of(&[&moto.env(), &stack.worker_env()]));

    // Odd spacing, escapes, non-ASCII, a number timestamp, extra members.
    let data = "{ \"email_subject\" : \"Caf\u{e9} \\u2615\",\n\t\"email_sender\":\"bob@example.com\", \"email_timestream\": 1732780800, \"email_content\": \"line1\\nline2 \u{1F600}\", \"thread\": {\"id\": [1, 2.5, null]} }";
    let started = Instant::now();
    let (status, body) = api.post(envelope(data, &stack.token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "queued");
    let id = body["id"].as_str().expect("id").to_owned();
    let key = integration::object_key(&id);
    let stored = eventually("the object", Duration::from_secs(10), || stack.object(&key)).await;
    let latency = started.elapsed();
    assert_eq!(String::from_utf8(stored).unwrap(), data);
    // The worker long-polls with a 10 s window; an email is picked up as it
    // arrives, not at the end of the window.
    assert!(latency < Duration::from_secs(8), "took {latency:?}");

    let head = stack
        .clients
        .s3
        .head_object()
        .bucket(&stack.bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/json"));
    let metadata = head.metadata().unwrap();
    assert_eq!(metadata["id"], id);
    assert!(metadata["received-at"].starts_with("20"));

    // The Authorization header works as well as the body token.
    let no_token = format!(r#"{{"data":{DATA}}}"#);
    let bearer = format!("Bearer {}", stack.token);
    let (status, body) = api
        .post_with(
            no_token,
            &[
                ("content-type", "application/json"),
                ("authorization", &bearer),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let key = integration::object_key(body["id"].as_str().unwrap());
    let stored = eventually("the second object", Duration::from_secs(10), || {
        stack.object(&key)
    })
    .await;
    assert_eq!(stored, DATA.as_bytes());
    eventually("the queue to empty", Duration::from_secs(10), || async {
        (stack.depth(&stack.queue_url).await == 0).then_some(())
    })
    .await;
    api.process.assert_no_panic();
    worker.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_their_4xx_and_enqueue_nothing() {
    let moto = Moto::start().await;
    let stack = stack(&moto, StackOptions::default()).await;
    let api = Api::start(&env_of(&[&moto.env(), &stack.api_env()])).await;
    let token = stack.token.as_str();
    let without = |field: &str| {
        let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(DATA).unwrap();
        v.remove(field);
        serde_json::to_string(&v).unwrap()
    };
    let replaced = |field: &str, value: &str| {
        DATA.replace(
            &format!(r#""{field}":"#),
            &format!(r#""{field}":{value},"was":"#),
        )
    };
    let json = [("content-type", "application/json")];
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, u16);
    let cases: Vec<Case> = vec![
        ("wrong token", envelope(DATA, "wrong"), json.to_vec(), 401),
        ("empty token", envelope(DATA, ""), json.to_vec(), 401),
        (
            "no token",
            format!(r#"{{"data":{DATA}}}"#),
            json.to_vec(),
            401,
        ),
        (
            "basic auth",
            format!(r#"{{"data":{DATA}}}"#),
            vec![
                ("content-type", "application/json"),
                ("authorization", "Basic dTpw"),
            ],
            401,
        ),
        ("malformed JSON", "{\"data\":".into(), json.to_vec(), 400),
        ("not an object", "[1,2]".into(), json.to_vec(), 400),
        (
            "no data",
            format!(r#"{{"token":"{token}"}}"#),
            json.to_vec(),
            400,
        ),
        (
            "data not an object",
            envelope("\"text\"", token),
            json.to_vec(),
            400,
        ),
        (
            "missing sender",
            envelope(&without("email_sender"), token),
            json.to_vec(),
            400,
        ),
        (
            "missing subject",
            envelope(&without("email_subject"), token),
            json.to_vec(),
            400,
        ),
        (
            "missing content",
            envelope(&without("email_content"), token),
            json.to_vec(),
            400,
        ),
        (
            "missing timestream",
            envelope(&without("email_timestream"), token),
            json.to_vec(),
            400,
        ),
        (
            "number subject",
            envelope(&replaced("email_subject", "42"), token),
            json.to_vec(),
            400,
        ),
        (
            "null content",
            envelope(&replaced("email_content", "null"), token),
            json.to_vec(),
            400,
        ),
        (
            "blank sender",
            envelope(&replaced("email_sender", "\"  \""), token),
            json.to_vec(),
            400,
        ),
        (
            "bad timestream",
            envelope(&replaced("email_timestream", "\"yesterday\""), token),
            json.to_vec(),
            400,
        ),
        (
            "duplicate key",
            envelope(&DATA.replacen('{', r#"{"email_sender":"x@y.z","#, 1), token),
            json.to_vec(),
            400,
        ),
        (
            "token not a string",
            format!(r#"{{"data":{DATA},"token":7}}"#),
            json.to_vec(),
            400,
        ),
        (
            "text/plain",
            envelope(DATA, token),
            vec![("content-type", "text/plain")],
            415,
        ),
        ("no content type", envelope(DATA, token), vec![], 415),
        (
            "too large",
            envelope(
                &replaced("email_content", &format!("\"{}\"", "x".repeat(5_300_000))),
                token,
            ),
            json.to_vec(),
            413,
        ),
    ];
    for (name, body, headers, expected) in cases {
        let (status, answer) = api.post_with(body, &headers).await;
        assert_eq!(status, expected, "{name}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(!error.is_empty(), "{name}: no error message in {answer}");
        assert!(!error.contains(token), "{name}: the token is echoed");
    }
    assert_eq!(
        stack.depth(&stack.queue_url).await,
        0,
        "nothing was enqueued"
    );
    // The process is still healthy.
    let (status, _) = api.post(envelope(DATA, token)).await;
    assert_eq!(status, 200);
    assert_eq!(stack.depth(&stack.queue_url).await, 1);
    api.process.assert_no_panic();
    // No token and no email content in the logs.
    let logs = api.process.lines().join("\n");
    assert!(!logs.contains(token), "the token is logged");
    assert!(
        !logs.contains("alice@example.com"),
        "email content is logged"
    );
}

/// Token rotation as clients live it: the parameter changes while clients
/// already send the new value, just after a flood of bad tokens made the
/// API read SSM. Not one request with the new value is refused; the old
/// value keeps working until the cache expires; the flood never makes the
/// API read SSM more than once a second (reads counted at a proxy in front
/// of SSM).
#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_token_is_accepted_at_once_and_bad_tokens_cannot_flood_ssm() {
    let moto = Moto::start().await;
    let mut stack = stack(&moto, StackOptions::default()).await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let ttl = Duration::from_secs(6);
    let api = Api::start(&env_of(&[
        &moto.env(),
        &proxy.env(),
        &stack.api_env(),
        &[("TOKEN_CACHE_TTL".into(), ttl.as_secs().to_string())],
    ]))
    .await;
    let old = stack.token.clone();
    assert_eq!(api.submit(DATA, &old).await.0, 200);

    // Bad tokens, 32 clients at a time, for the whole test: the checker's
    // one read a second must serve them all and still let the new token in.
    let flooding = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut flood = tokio::task::JoinSet::new();
    for client in 0..32 {
        let (url, flooding) = (api.url.clone(), flooding.clone());
        flood.spawn(async move {
            let http = reqwest::Client::new();
            let mut answers = Vec::new();
            let mut n = 0;
            while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let response = http
                    .post(format!("{url}/email"))
                    .header("content-type", "application/json")
                    .body(envelope(DATA, &format!("guess-{client}-{n}")))
                    .send()
                    .await
                    .expect("an answer");
                answers.push(response.status().as_u16());
            }
            answers
        });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ssm_before, _) = proxy.counts(Service::Ssm);
    let flood_started = Instant::now();

    stack.rotate_token("rotated-token").await;
    let mut statuses = Vec::new();
    let rotated = Instant::now();
    while rotated.elapsed() < Duration::from_secs(3) {
        let mut wave = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (url, token) = (api.url.clone(), "rotated-token");
            wave.spawn(async move {
                let http = reqwest::Client::new();
                http.post(format!("{url}/email"))
                    .header("content-type", "application/json")
                    .body(envelope(DATA, token))
                    .send()
                    .await
                    .expect("an answer")
                    .status()
                    .as_u16()
            });
        }
        while let Some(status) = wave.join_next().await {
            statuses.push(status.unwrap());
        }
    }
    assert!(
        statuses.iter().all(|s| *s == 200),
        "the new token was refused: {statuses:?}"
    );
    // Within the cache's lifetime the old token still works...
    assert_eq!(
        api.submit(DATA, &old).await.0,
        200,
        "the old token, in the TTL"
    );

    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut bad = Vec::new();
    while let Some(answers) = flood.join_next().await {
        bad.extend(answers.unwrap());
    }
    let flood_seconds = flood_started.elapsed().as_secs_f64();
    let (ssm_after, _) = proxy.counts(Service::Ssm);
    let reads = ssm_after - ssm_before;
    // Each bad token waits for the next read (at most a second): 32
    // clients send about 32 a second.
    assert!(
        bad.len() >= 64,
        "the flood sent only {} requests",
        bad.len()
    );
    assert!(bad.iter().all(|s| *s == 401), "bad tokens: {bad:?}");
    assert!(
        reads as f64 <= flood_seconds + 2.0,
        "{reads} SSM reads in {flood_seconds:.1} s of bad tokens"
    );

    // ...and once the TTL has passed since the last read that had it, not.
    tokio::time::sleep(ttl).await;
    assert_eq!(
        api.submit(DATA, &old).await.0,
        401,
        "the old token, after the TTL"
    );
    assert_eq!(api.submit(DATA, "rotated-token").await.0, 200);
    api.process.assert_no_panic();
}

/// The README's rotation runbook: the parameter holds the old and the new
/// token, one per line, while clients move over; then only the new one.
#[tokio::test(flavor = "multi_thread")]
async fn a_parameter_of_several_tokens_accepts_each_until_one_is_removed() {
    let moto = Moto::start().await;
    let mut stack = stack(&moto, StackOptions::default()).await;
    let ttl = Duration::from_secs(3);
    let api = Api::start(&env_of(&[
        &moto.env(),
        &stack.api_env(),
        &[("TOKEN_CACHE_TTL".into(), ttl.as_secs().to_string())],
    ]))
    .await;
    let old = stack.token.clone();
    assert_eq!(api.submit(DATA, &old).await.0, 200);

    stack.rotate_token(&format!("{old}\nnew-token\n")).await;
    for token in [old.as_str(), "new-token", old.as_str(), "new-token"] {
        assert_eq!(api.submit(DATA, token).await.0, 200, "{token}");
    }
    assert_eq!(api.submit(DATA, "new").await.0, 401, "a part of a token");
    assert_eq!(
        api.submit(DATA, &format!("{old}\nnew-token")).await.0,
        401,
        "the parameter's whole value is no token"
    );

    stack.rotate_token("new-token").await;
    assert_eq!(api.submit(DATA, "new-token").await.0, 200);
    tokio::time::sleep(ttl + Duration::from_secs(1)).await;
    assert_eq!(
        api.submit(DATA, &old).await.0,
        401,
        "the old token, removed"
    );
    assert_eq!(api.submit(DATA, "new-token").await.0, 200);
    api.process.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_backlog_loses_and_duplicates_nothing() {
    let moto = Moto::start().await;
    let stack = stack(&moto, StackOptions::default()).await;
    let api = Api::start(&env_of(&[&moto.env(), &stack.api_env()])).await;
    let posted = api.submit_accepted(300, "message", &stack.token).await;
    let worker_env = env_of(&[&moto.env(), &stack.worker_env()]);
    let mut worker = start_worker(&worker_env);
    eventually(
        "the worker to store some",
        Duration::from_secs(30),
        || async { (stack.keys().await.len() >= 30).then_some(()) },
    )
    .await;
    worker.signal("TERM");
    let status = worker.wait_exit(Duration::from_secs(25)).await;
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    worker.assert_no_panic();
    let stored_before = stack.keys().await.len();
    assert!(stored_before < 300, "stopped mid-backlog ({stored_before})");

    let worker = start_worker(&worker_env);
    stack
        .assert_stored_exactly_once(&posted, Duration::from_secs(60))
        .await;
    worker.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_message_goes_to_the_dlq_and_does_not_block_others() {
    let moto = Moto::start().await;
    let stack = stack(
        &moto,
        StackOptions {
            visibility_timeout_secs: 2,
            max_receive_count: 2,
        },
    )
    .await;
    for body in ["not json at all", r#"{"email_subject":"half an email"}"#] {
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
    // A valid email from another producer, without the API's id attribute.
    let foreign = stack
        .clients
        .sqs
        .send_message()
        .queue_url(&stack.queue_url)
        .message_body(DATA)
        .send()
        .await
        .unwrap();
    let api = Api::start(&env_of(&[&moto.env(), &stack.api_env()])).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (status, id) = api.submit(DATA, &stack.token).await;
        ids.push(
            id.unwrap_or_else(|| panic!("status {status}: {}", api.process.lines().join("\n"))),
        );
    }
    let worker = start_worker(&env_of(&[
        &moto.env(),
        &stack.worker_env(),
        &[("POLL_INTERVAL".into(), "1".into())],
    ]));
    eventually("the good messages", Duration::from_secs(20), || async {
        (stack.keys().await.len() == 6).then_some(())
    })
    .await;
    let keys: HashSet<String> = stack.keys().await.into_iter().collect();
    for id in &ids {
        assert!(keys.contains(&integration::object_key(id)));
    }
    eventually(
        "both poison messages in the DLQ",
        Duration::from_secs(30),
        || async { (stack.depth(&stack.dlq_url).await == 2).then_some(()) },
    )
    .await;
    eventually(
        "the main queue to empty",
        Duration::from_secs(10),
        || async { (stack.depth(&stack.queue_url).await == 0).then_some(()) },
    )
    .await;
    assert_eq!(stack.keys().await.len(), 6, "poison was never stored");
    // The foreign message's key is derived from its message id, so it is the
    // same on every delivery; it sorts with the others by send time.
    let foreign_id = foreign.message_id().unwrap();
    let logs = worker.json_lines();
    let foreign_keys: HashSet<&str> = logs
        .iter()
        .filter(|l| l["outcome"] == "stored" || l["outcome"] == "already stored")
        .filter_map(|l| l["key"].as_str())
        .filter(|k| !ids.iter().any(|id| k.contains(id.as_str())))
        .collect();
    assert_eq!(foreign_keys.len(), 1, "{foreign_id}: {foreign_keys:?}");
    worker.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_ssm_or_sqs_means_503_with_retry_after() {
    let moto = Moto::start().await;
    let stack = stack(&moto, StackOptions::default()).await;
    // Port 1: nothing listens there, connections are refused at once.
    let closed = "http://127.0.0.1:1".to_owned();
    for service in ["SSM", "SQS"] {
        let api = Api::start(&env_of(&[
            &moto.env(),
            &stack.api_env(),
            &[(format!("AWS_ENDPOINT_URL_{service}"), closed.clone())],
        ]))
        .await;
        let response = api.post_response(envelope(DATA, &stack.token)).await;
        assert_eq!(response.status().as_u16(), 503, "{service}");
        assert!(response.headers().contains_key("retry-after"), "{service}");
        let body: serde_json::Value = response.json().await.unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(!error.contains("127.0.0.1"), "internals leaked: {error}");
        api.process.assert_no_panic();
    }
    assert_eq!(stack.depth(&stack.queue_url).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_the_openapi_document() {
    let moto = Moto::start().await;
    let stack = stack(&moto, StackOptions::default()).await;
    let api = Api::start(&env_of(&[&moto.env(), &stack.api_env()])).await;
    let get = |path: &str| api.http.get(format!("{}{path}", api.url)).send();
    let health = get("/").await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(health.text().await.unwrap(), r#"{"status":"ok"}"#);
    assert_eq!(get("/ready").await.unwrap().status().as_u16(), 200);
    let doc: serde_json::Value = get("/openapi.json").await.unwrap().json().await.unwrap();
    assert!(doc["paths"]["/email"]["post"].is_object());
    assert_eq!(get("/nothing").await.unwrap().status().as_u16(), 404);

    // The container health check subcommand agrees.
    let port = api.url.rsplit(':').next().unwrap().to_owned();
    let ok = command(&["health"], &[("PORT".into(), port)])
        .status()
        .unwrap();
    assert!(ok.success());
    let down = command(&["health"], &[("PORT".into(), free_port().to_string())])
        .output()
        .unwrap();
    assert!(!down.status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_malformed_settings_stop_startup_naming_the_variable() {
    type Case<'a> = (&'a [&'a str], Vec<(String, String)>, &'a str);
    let queue = || {
        (
            "SQS_QUEUE_URL".to_owned(),
            "http://127.0.0.1:1/123456789012/q".to_owned(),
        )
    };
    let bucket = || ("S3_BUCKET_NAME".to_owned(), "emails".to_owned());
    let cases: [Case; 7] = [
        (
            &["api"],
            vec![("TOKEN_PARAM_NAME".into(), "/t".into())],
            "SQS_QUEUE_URL",
        ),
        (&["api"], vec![queue()], "TOKEN_PARAM_NAME"),
        (&["worker"], vec![queue()], "S3_BUCKET_NAME"),
        (
            &["worker"],
            vec![queue(), bucket(), ("POLL_INTERVAL".into(), "60".into())],
            "POLL_INTERVAL",
        ),
        // Settings that would make every store fail stop the start instead.
        (
            &["worker"],
            vec![("SQS_QUEUE_URL".into(), "q".into()), bucket()],
            "SQS_QUEUE_URL",
        ),
        (
            &["worker"],
            vec![queue(), ("S3_BUCKET_NAME".into(), "My_Bucket".into())],
            "S3_BUCKET_NAME",
        ),
        (
            &["worker"],
            vec![
                queue(),
                bucket(),
                ("S3_KEY_PREFIX".into(), "/emails/".into()),
            ],
            "S3_KEY_PREFIX",
        ),
    ];
    for (args, env, variable) in cases {
        let output = command(args, &env).output().unwrap();
        assert!(
            !output.status.success(),
            "{args:?} started without {variable}"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(variable),
            "{variable} not named in: {stderr}"
        );
    }
}

/// A switch-over keeps the original's bucket, which already holds its
/// objects, `emails/<unix-seconds>-<uuid hex>.json`. New keys sort after
/// them and among themselves by arrival, so the original's habits still
/// hold: `aws s3 ls emails/ | tail -1` names the newest email.
#[tokio::test(flavor = "multi_thread")]
async fn new_keys_sort_after_the_original_ones_and_the_newest_is_last() {
    let moto = Moto::start().await;
    let stack = stack(&moto, StackOptions::default()).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut original = Vec::new();
    for (age, hex) in [(86_400, "f"), (60, "0")] {
        // As the original wrote them: time.time() seconds, uuid4().hex.
        let key = format!("emails/{}-{}.json", now - age, hex.repeat(32));
        stack
            .clients
            .s3
            .put_object()
            .bucket(&stack.bucket)
            .key(&key)
            .body(DATA.as_bytes().to_vec().into())
            .send()
            .await
            .expect("seed an object");
        original.push(key);
    }
    let api = Api::start(&env_of(&[&moto.env(), &stack.api_env()])).await;
    let worker = start_worker(&env_of(&[&moto.env(), &stack.worker_env()]));
    let mut posted = Vec::new();
    for i in 0..3 {
        posted.extend(
            api.submit_accepted(1, &format!("after the switch {i}"), &stack.token)
                .await,
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let newest = integration::object_key(&posted.last().unwrap().0);
    let mut keys = eventually("the new emails stored", Duration::from_secs(30), || async {
        let keys = stack.keys().await;
        (keys.len() == original.len() + posted.len()).then_some(keys)
    })
    .await;
    keys.sort();
    assert_eq!(
        keys.last(),
        Some(&newest),
        "ls | tail -1 names the newest email"
    );
    let new_keys: Vec<String> = posted
        .iter()
        .map(|(id, _)| integration::object_key(id))
        .collect();
    assert_eq!(
        keys[original.len()..],
        new_keys[..],
        "after the old ones, in arrival order"
    );
    worker.assert_no_panic();
}
