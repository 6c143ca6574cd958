//! `q2b-bench`, the benchmark helpers driven by `bench/bench.py`
//! (`scripts/bench.sh`):
//!
//! - `stub`: an AWS endpoint on loopback that answers SQS, S3 and SSM calls at
//!   once with valid responses, to measure Queue2Bucket's own cost; counts
//!   what it served (`GET /stats`); with `--backlog N` it hands out N
//!   messages in all, like a queue holding a backlog of N.
//! - `bare`: a bare axum handler returning a constant JSON body, the ceiling
//!   for the API's requests/s on this machine.
//! - `moto-send`: moto's own SendMessage rate, straight from the SDK.
//! - `moto-drain`: a trivial receive → put → delete consumer against moto.
//! - `post-to-object`: POST → object visible in S3 latency, one email at a time.
//! - `local-fill`: puts a backlog of messages on the local mode's queue.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::{Parser, Subcommand};
use integration::{Clients, DATA, envelope};
use serde_json::{Value, json};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Instant-answer AWS stub (SQS, S3, SSM) on 127.0.0.1:PORT.
    Stub {
        #[arg(long)]
        port: u16,
        /// Value of every SSM parameter.
        #[arg(long, default_value = "bench-token")]
        token: String,
        /// Hand out this many messages in all, then answer receives with
        /// none (after the long-poll wait, capped at 1 s); default: full
        /// batches forever.
        #[arg(long)]
        backlog: Option<u64>,
        /// Size of the emails the backlog holds (default: a small one).
        #[arg(long)]
        email_bytes: Option<usize>,
        /// The backlog's messages are claim checks: pointers to staged
        /// emails, which GETs of the staging prefix answer.
        #[arg(long)]
        claims: bool,
    },
    /// Bare axum handler: GET or POST anything → constant JSON.
    Bare {
        #[arg(long)]
        port: u16,
    },
    /// Sends COUNT messages to QUEUE_URL with CONCURRENCY tasks; prints JSON.
    MotoSend {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        queue_url: String,
        #[arg(long, default_value_t = 500)]
        count: usize,
        #[arg(long, default_value_t = 10)]
        concurrency: usize,
    },
    /// Drains QUEUE_URL into BUCKET (receive 10, put each, delete batch),
    /// until COUNT messages are done; prints JSON.
    MotoDrain {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        queue_url: String,
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        count: usize,
    },
    /// Posts COUNT emails to API with CONCURRENCY clients; prints JSON with
    /// the rate and the count of each status.
    PostLoad {
        #[arg(long)]
        api: String,
        #[arg(long)]
        token: String,
        #[arg(long, default_value_t = 500)]
        count: usize,
        #[arg(long, default_value_t = 10)]
        concurrency: usize,
    },
    /// Starts the Lambda function BINARY RUNS times under a local Runtime API
    /// and measures process start → first request for an invocation (init
    /// done, SDK clients built); prints JSON.
    LambdaInit {
        #[arg(long)]
        binary: std::path::PathBuf,
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// Posts SAMPLES emails one at a time to API and waits for each object in
    /// BUCKET; prints latency percentiles as JSON.
    PostToObject {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        api: String,
        #[arg(long)]
        token: String,
        #[arg(long)]
        bucket: String,
        #[arg(long, default_value_t = 50)]
        samples: usize,
    },
    /// Sends COUNT emails straight to the local mode's queue in DATA_DIR
    /// (as `queue2bucket dev --data-dir DATA_DIR` lays it out), so that a
    /// worker starts with a backlog; prints JSON.
    LocalFill {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
    },
}

#[tokio::main]
async fn main() {
    match Cli::parse().command {
        Cmd::Stub {
            port,
            token,
            backlog,
            email_bytes,
            claims,
        } => {
            let email = email_bytes.map_or_else(|| DATA.to_owned(), email_of);
            stub(port, token, backlog, email, claims).await
        }
        Cmd::Bare { port } => bare(port).await,
        Cmd::MotoSend {
            endpoint,
            queue_url,
            count,
            concurrency,
        } => moto_send(&endpoint, &queue_url, count, concurrency).await,
        Cmd::MotoDrain {
            endpoint,
            queue_url,
            bucket,
            count,
        } => moto_drain(&endpoint, &queue_url, &bucket, count).await,
        Cmd::PostLoad {
            api,
            token,
            count,
            concurrency,
        } => post_load(&api, &token, count, concurrency).await,
        Cmd::LambdaInit { binary, runs } => lambda_init(&binary, runs).await,
        Cmd::PostToObject {
            endpoint,
            api,
            token,
            bucket,
            samples,
        } => post_to_object(&endpoint, &api, &token, &bucket, samples).await,
        Cmd::LocalFill { data_dir, count } => local_fill(&data_dir, count).await,
    }
}

async fn serve(port: u16, router: Router) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    axum::serve(listener, router).await.expect("serve");
}

async fn bare(port: u16) {
    let handler = || async {
        (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"status":"queued","id":"01936a3e-0000-7000-8000-000000000000"}"#,
        )
    };
    serve(port, Router::new().fallback(handler)).await;
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    /// SendMessage and SendMessageBatch calls.
    send_calls: AtomicU64,
    received: AtomicU64,
    deleted: AtomicU64,
    put: AtomicU64,
    parameters: AtomicU64,
}

struct Stub {
    counters: Counters,
    token: String,
    started: Instant,
    backlog: Option<u64>,
    /// The email of every backlog message.
    email: String,
    /// Backlog messages are claim checks of `email`.
    claims: bool,
    /// Bytes received in PUTs.
    put_bytes: AtomicU64,
    /// Object keys written, to tell objects from overwrites.
    keys: Mutex<HashSet<String>>,
    /// Microseconds since `started` of the first receive that handed out
    /// messages and of the last delete (0: none yet).
    first_receive_us: AtomicU64,
    last_delete_us: AtomicU64,
}

/// A valid email of `size` bytes.
fn email_of(size: usize) -> String {
    DATA.replace(
        "Hi Bob",
        &"b".repeat(size.saturating_sub(DATA.len()) + "Hi Bob".len()),
    )
}

async fn stub(port: u16, token: String, backlog: Option<u64>, email: String, claims: bool) {
    let state = Arc::new(Stub {
        counters: Counters::default(),
        token,
        started: Instant::now(),
        backlog,
        email,
        claims,
        put_bytes: AtomicU64::new(0),
        keys: Mutex::default(),
        first_receive_us: AtomicU64::new(0),
        last_delete_us: AtomicU64::new(0),
    });
    let stats = state.clone();
    let router = Router::new()
        .route(
            "/stats",
            get(move || {
                let s = stats.clone();
                async move {
                    let c = &s.counters;
                    axum::Json(json!({
                        "sent": c.sent.load(Ordering::Relaxed),
                        "send_calls": c.send_calls.load(Ordering::Relaxed),
                        "received": c.received.load(Ordering::Relaxed),
                        "deleted": c.deleted.load(Ordering::Relaxed),
                        "put": c.put.load(Ordering::Relaxed),
                        "put_bytes": s.put_bytes.load(Ordering::Relaxed),
                        "parameters": c.parameters.load(Ordering::Relaxed),
                        "objects": s.keys.lock().unwrap_or_else(|e| e.into_inner()).len(),
                        "first_receive_s": s.first_receive_us.load(Ordering::Relaxed) as f64 / 1e6,
                        "last_delete_s": s.last_delete_us.load(Ordering::Relaxed) as f64 / 1e6,
                        "uptime_s": s.started.elapsed().as_secs_f64(),
                    }))
                }
            }),
        )
        .fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let s = state.clone();
                async move { s.answer(&method, &uri, &headers, &body).await }
            },
        )
        // Staged emails are PUT whole; S3 takes 5 GB in one request.
        .layer(axum::extract::DefaultBodyLimit::disable());
    serve(port, router).await;
}

impl Stub {
    fn micros(&self) -> u64 {
        (self.started.elapsed().as_micros() as u64).max(1)
    }

    /// How many of `wanted` messages a receive hands out.
    fn take(&self, wanted: u64) -> u64 {
        let Some(backlog) = self.backlog else {
            return wanted;
        };
        let handed = &self.counters.received;
        match handed.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
            (h < backlog).then(|| h + wanted.min(backlog - h))
        }) {
            Ok(before) => wanted.min(backlog - before),
            Err(_) => 0,
        }
    }

    async fn answer(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response {
        let target = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let c = &self.counters;
        let json_answer = |v: Value| {
            (
                [(header::CONTENT_TYPE, "application/x-amz-json-1.0")],
                v.to_string(),
            )
                .into_response()
        };
        let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        match target {
            "AmazonSQS.SendMessage" => {
                c.sent.fetch_add(1, Ordering::Relaxed);
                c.send_calls.fetch_add(1, Ordering::Relaxed);
                json_answer(json!({
                    "MD5OfMessageBody": "00000000000000000000000000000000",
                    "MessageId": uuid::Uuid::new_v4().to_string(),
                }))
            }
            "AmazonSQS.SendMessageBatch" => {
                let entries = request["Entries"].as_array().cloned().unwrap_or_default();
                c.sent.fetch_add(entries.len() as u64, Ordering::Relaxed);
                c.send_calls.fetch_add(1, Ordering::Relaxed);
                let ok: Vec<Value> = entries
                    .iter()
                    .map(|e| {
                        json!({
                            "Id": e["Id"],
                            "MessageId": uuid::Uuid::new_v4().to_string(),
                            "MD5OfMessageBody": "00000000000000000000000000000000",
                        })
                    })
                    .collect();
                json_answer(json!({ "Successful": ok, "Failed": [] }))
            }
            "AmazonSQS.ReceiveMessage" => {
                let wanted = request["MaxNumberOfMessages"].as_u64().unwrap_or(1).min(10);
                let n = self.take(wanted);
                if self.backlog.is_none() {
                    c.received.fetch_add(n, Ordering::Relaxed);
                }
                if n == 0 {
                    let wait = request["WaitTimeSeconds"].as_f64().unwrap_or(0.0).min(1.0);
                    tokio::time::sleep(Duration::from_secs_f64(wait)).await;
                } else {
                    let _ = self.first_receive_us.compare_exchange(
                        0,
                        self.micros(),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                let sent_at = handlers_now_ms().to_string();
                let messages: Vec<Value> = (0..n)
                    .map(|_| {
                        let id = uuid::Uuid::now_v7().to_string();
                        let mut attributes = json!({"q2b-id": {"DataType": "String", "StringValue": id}});
                        let body = if self.claims {
                            attributes["q2b-claim"] = json!({"DataType": "Number", "StringValue": self.email.len().to_string()});
                            json!({"staged": format!("staging/{id}.json")}).to_string()
                        } else {
                            self.email.clone()
                        };
                        json!({
                            "MessageId": uuid::Uuid::new_v4().to_string(),
                            "ReceiptHandle": format!("rh-{id}"),
                            "MD5OfBody": "00000000000000000000000000000000",
                            "Body": body,
                            "Attributes": {"SentTimestamp": sent_at, "ApproximateReceiveCount": "1"},
                            "MessageAttributes": attributes,
                        })
                    })
                    .collect();
                json_answer(json!({ "Messages": messages }))
            }
            "AmazonSQS.DeleteMessageBatch" => {
                let entries = request["Entries"].as_array().cloned().unwrap_or_default();
                c.deleted.fetch_add(entries.len() as u64, Ordering::Relaxed);
                self.last_delete_us
                    .fetch_max(self.micros(), Ordering::Relaxed);
                let ok: Vec<Value> = entries.iter().map(|e| json!({ "Id": e["Id"] })).collect();
                json_answer(json!({ "Successful": ok, "Failed": [] }))
            }
            "AmazonSQS.GetQueueAttributes" => json_answer(json!({ "Attributes": {
                    "VisibilityTimeout": "30", "MaximumMessageSize": "1048576",
                } })),
            "AmazonSQS.ChangeMessageVisibility" => json_answer(json!({})),
            "AmazonSSM.GetParameter" => {
                c.parameters.fetch_add(1, Ordering::Relaxed);
                (
                    [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
                    json!({ "Parameter": {
                        "Name": request["Name"], "Type": "SecureString",
                        "Value": self.token, "Version": 1,
                    }})
                    .to_string(),
                )
                    .into_response()
            }
            _ if method == Method::GET && uri.path().contains("/staging/") => {
                (StatusCode::OK, self.email.clone()).into_response()
            }
            _ if method == Method::DELETE => StatusCode::NO_CONTENT.into_response(),
            _ if method == Method::PUT => {
                c.put.fetch_add(1, Ordering::Relaxed);
                self.put_bytes
                    .fetch_add(body.len() as u64, Ordering::Relaxed);
                self.keys
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(uri.path().to_owned());
                (StatusCode::OK, [(header::ETAG, "\"stub\"")]).into_response()
            }
            _ => (StatusCode::BAD_REQUEST, "unsupported by the stub").into_response(),
        }
    }
}

fn handlers_now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

async fn moto_send(endpoint: &str, queue_url: &str, count: usize, concurrency: usize) {
    let clients = Clients::new(endpoint).await;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (sqs, next, url) = (clients.sqs.clone(), next.clone(), queue_url.to_owned());
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < count as u64 {
                sqs.send_message()
                    .queue_url(&url)
                    .message_body(DATA)
                    .send()
                    .await
                    .expect("send");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({ "messages": count, "seconds": secs, "per_second": count as f64 / secs })
    );
}

async fn moto_drain(endpoint: &str, queue_url: &str, bucket: &str, count: usize) {
    let clients = Clients::new(endpoint).await;
    let started = Instant::now();
    let mut done = 0;
    while done < count {
        let messages = clients
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default();
        let mut entries = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            clients
                .s3
                .put_object()
                .bucket(bucket)
                .key(format!(
                    "trivial/{}.json",
                    m.message_id().unwrap_or_default()
                ))
                .body(m.body().unwrap_or_default().as_bytes().to_vec().into())
                .send()
                .await
                .expect("put");
            entries.push(
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .unwrap(),
            );
        }
        if !entries.is_empty() {
            clients
                .sqs
                .delete_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("delete");
        }
        done += messages.len();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({ "messages": done, "seconds": secs, "per_second": done as f64 / secs })
    );
}

async fn lambda_init(binary: &std::path::Path, runs: usize) {
    let mut millis = Vec::with_capacity(runs);
    for _ in 0..runs {
        let runtime = integration::lambda::FakeRuntime::start().await;
        // Settings as in production; no AWS call is made at init.
        let env = integration::env_of(&[
            &runtime.env("init-time"),
            &integration::aws_env("http://127.0.0.1:1"),
            &[
                (
                    "SQS_QUEUE_URL".into(),
                    "http://127.0.0.1:1/123456789012/q".into(),
                ),
                ("TOKEN_PARAM_NAME".into(), "/queue2bucket/token".into()),
                ("S3_BUCKET_NAME".into(), "bucket".into()),
            ],
        ]);
        let started = Instant::now();
        let mut child = integration::command_at(binary, &[], &env)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the function");
        let ready = loop {
            if let Some(at) = runtime.first_poll() {
                break at;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no init within 10 s"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        millis.push(ready.duration_since(started).as_secs_f64() * 1000.0);
        let _ = child.kill();
        let _ = child.wait();
    }
    millis.sort_by(f64::total_cmp);
    let pct = |p: f64| millis[((millis.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{}",
        json!({ "runs": runs, "p50_ms": pct(0.5), "p90_ms": pct(0.9), "max_ms": pct(1.0) })
    );
}

async fn post_load(api: &str, token: &str, count: usize, concurrency: usize) {
    let http = reqwest::Client::new();
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (http, next, ok, latencies) =
            (http.clone(), next.clone(), ok.clone(), latencies.clone());
        let (url, body) = (format!("{api}/email"), envelope(DATA, token));
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < count as u64 {
                let sent = Instant::now();
                let response = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("post");
                let status = response.status();
                let _ = response.bytes().await;
                latencies
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(sent.elapsed().as_secs_f64() * 1000.0);
                if status == StatusCode::OK {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let secs = started.elapsed().as_secs_f64();
    let ok = ok.load(Ordering::Relaxed);
    let mut l = std::mem::take(&mut *latencies.lock().unwrap_or_else(|e| e.into_inner()));
    l.sort_by(f64::total_cmp);
    let pct = |q: f64| l[((l.len() as f64 * q) as usize).min(l.len() - 1)];
    println!(
        "{}",
        json!({
            "requests": count, "ok": ok, "seconds": secs, "per_second": count as f64 / secs,
            "p50_ms": pct(0.5), "p99_ms": pct(0.99), "p999_ms": pct(0.999),
        })
    );
}

async fn post_to_object(endpoint: &str, api: &str, token: &str, bucket: &str, samples: usize) {
    let clients = Clients::new(endpoint).await;
    let http = reqwest::Client::new();
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        // Let the worker go idle, so each sample starts inside a long poll.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let answer: Value = http
            .post(format!("{api}/email"))
            .header("content-type", "application/json")
            .body(envelope(DATA, token))
            .send()
            .await
            .expect("post")
            .json()
            .await
            .expect("json");
        let key = integration::object_key(answer["id"].as_str().expect("queued"));
        loop {
            let found = clients
                .s3
                .head_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await;
            if found.is_ok() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "object never appeared"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{}",
        json!({ "samples": samples, "p50_ms": pct(0.5), "p90_ms": pct(0.9), "max_ms": pct(1.0) })
    );
}

async fn local_fill(data_dir: &std::path::Path, count: usize) {
    use handlers::id::EmailId;
    use handlers::local::DataDir;
    use handlers::queue::sqlite::{SqliteQueue, SqliteQueueConfig};
    use handlers::queue::{OutgoingMessage, Queue};

    let queue = DataDir::create(data_dir)
        .expect("create the data directory")
        .queue(SqliteQueueConfig::default())
        .expect("open the local queue");
    let started = Instant::now();
    let mut left = count;
    while left > 0 {
        let n = left.min(SqliteQueue::MAX_BATCH);
        let batch: Vec<OutgoingMessage> = (0..n)
            .map(|_| OutgoingMessage::new(EmailId::new(), DATA.to_owned()))
            .collect();
        for result in queue.send_batch(&batch).await {
            result.expect("send to the local queue");
        }
        left -= n;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({ "messages": count, "seconds": secs, "depth": queue.depth().await.expect("depth") })
    );
}
