//! A Lambda Runtime API on loopback (the protocol a function's runtime loop
//! speaks to Lambda: `GET …/invocation/next`, `POST …/{id}/response`), to run
//! the real function binaries in tests and measure their init time.
//!
//! It also stands for Lambda's deadline: each invocation is handed out with
//! its `Lambda-Runtime-Deadline-Ms`, and an answer that has not come by then
//! counts as [`Outcome::TimedOut`], which is what Lambda makes of a function
//! still running at its timeout (it kills the function; an ALB in front
//! answers 502, an SQS event source retries every record).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::sync::{mpsc, oneshot};

/// What a function answered to one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Response(Vec<u8>),
    Error(Vec<u8>),
    /// No answer by the invocation's deadline.
    TimedOut,
}

struct Invocation {
    event: Vec<u8>,
    timeout: Duration,
    answer: oneshot::Sender<Outcome>,
}

/// The deadline of an invocation unless a test sets one.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

struct Shared {
    next: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    first_poll: OnceLock<Instant>,
    init_error: Mutex<Option<String>>,
}

pub struct FakeRuntime {
    pub addr: String,
    invocations: mpsc::Sender<Invocation>,
    shared: Arc<Shared>,
}

impl FakeRuntime {
    pub async fn start() -> Self {
        let (invocations, rx) = mpsc::channel(64);
        let shared = Arc::new(Shared {
            next: tokio::sync::Mutex::new(rx),
            pending: Mutex::default(),
            first_poll: OnceLock::new(),
            init_error: Mutex::default(),
        });
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(respond),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            addr,
            invocations,
            shared,
        }
    }

    /// A function's binary (`bin_path(function)`) started under this runtime,
    /// with `env` and what Lambda adds to it.
    pub fn spawn(&self, function: &str, env: &[&[(String, String)]]) -> crate::Process {
        crate::Process::spawn(function, self.command(function, env))
    }

    /// The command that starts a function under this runtime (see [`Self::spawn`]).
    pub fn command(&self, function: &str, env: &[&[(String, String)]]) -> std::process::Command {
        let own = self.env(function);
        let mut all = env.to_vec();
        all.push(&own);
        crate::command_at(&crate::bin_path(function), &[], &crate::env_of(&all))
    }

    /// The environment Lambda gives a function, pointing at this runtime.
    pub fn env(&self, function: &str) -> Vec<(String, String)> {
        [
            ("AWS_LAMBDA_RUNTIME_API", self.addr.as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", function),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/test"),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "test"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Invokes the function with `event` and waits (up to a minute) for its
    /// answer.
    pub async fn invoke(&self, event: &serde_json::Value) -> Outcome {
        self.invoke_with_timeout(event, DEFAULT_TIMEOUT).await
    }

    /// Invokes the function with `event`, its deadline `timeout` from when
    /// the function takes the invocation, as Lambda's function timeout.
    pub async fn invoke_with_timeout(
        &self,
        event: &serde_json::Value,
        timeout: Duration,
    ) -> Outcome {
        let (answer, outcome) = oneshot::channel();
        self.invocations
            .send(Invocation {
                event: serde_json::to_vec(event).unwrap(),
                timeout,
                answer,
            })
            .await
            .expect("runtime running");
        match tokio::time::timeout(Duration::from_secs(60).max(timeout * 2), outcome).await {
            Ok(answer) => answer.expect("the function answered"),
            Err(_) => panic!(
                "no answer within 60 s (init error: {:?})",
                self.init_error()
            ),
        }
    }

    /// When the function first asked for an invocation: it was ready.
    pub fn first_poll(&self) -> Option<Instant> {
        self.shared.first_poll.get().copied()
    }

    pub fn init_error(&self) -> Option<String> {
        self.shared.init_error.lock().unwrap().clone()
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let _ = shared.first_poll.set(Instant::now());
    let Some(invocation) = shared.next.lock().await.recv().await else {
        return (StatusCode::GONE, HeaderMap::new(), Vec::new());
    };
    let id = uuid::Uuid::new_v4().to_string();
    shared
        .pending
        .lock()
        .unwrap()
        .insert(id.clone(), invocation.answer);
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + invocation.timeout.as_millis();
    // Lambda's timeout: whatever has not answered by the deadline is over.
    let expired = shared.clone();
    let expiring = id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(invocation.timeout).await;
        settle(&expired, &expiring, Outcome::TimedOut);
    });
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        headers.insert(name, HeaderValue::from_str(&value).unwrap());
    };
    set("lambda-runtime-aws-request-id", id);
    set("lambda-runtime-deadline-ms", deadline.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-2:123456789012:function:test".into(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-674832c0-2f7c2f8d3a5e6b1c0d9e8f74;Parent=1;Sampled=0".into(),
    );
    set("content-type", "application/json".into());
    (StatusCode::OK, headers, invocation.event)
}

fn settle(shared: &Shared, id: &str, outcome: Outcome) -> StatusCode {
    match shared.pending.lock().unwrap().remove(id) {
        Some(answer) => {
            let _ = answer.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn respond(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    settle(&shared, &id, Outcome::Response(body.to_vec()))
}

async fn fail(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    settle(&shared, &id, Outcome::Error(body.to_vec()))
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    *shared.init_error.lock().unwrap() = Some(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}
