//! A fault-injecting proxy on loopback, one port per AWS service, between
//! the binaries and the AWS-compatible server. On command it adds latency,
//! answers a fraction of calls with the service's own 5xx/throttling error,
//! resets connections, or blackholes the service (accepts, never answers).
//!
//! Point a binary at it with `AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL_S3`
//! and `AWS_ENDPOINT_URL_SSM` ([`FaultProxy::env`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::move_task::MoveTasks;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Sqs,
    S3,
    Ssm,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Sqs, Service::S3, Service::Ssm];

    fn env_name(self) -> &'static str {
        match self {
            Service::Sqs => "AWS_ENDPOINT_URL_SQS",
            Service::S3 => "AWS_ENDPOINT_URL_S3",
            Service::Ssm => "AWS_ENDPOINT_URL_SSM",
        }
    }
}

/// What to do to one service's calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Added before forwarding each call.
    pub latency: Duration,
    /// Fraction (0–1) of calls answered with a retryable server error.
    pub error_rate: f64,
    /// Only calls with this HTTP method get the latency and the errors
    /// above (e.g. PUT for S3 PutObject); None: all.
    pub method: Option<Method>,
    /// New connections are reset at once.
    pub reset: bool,
    /// New connections are accepted and never answered.
    pub blackhole: bool,
}

struct Port {
    service: Service,
    faults: Mutex<Faults>,
    upstream: String,
    http: reqwest::Client,
    forwarded: AtomicU64,
    injected: AtomicU64,
    /// Bumped when the service goes down: open connections are dropped,
    /// so that pooled ones see the outage too.
    cut: watch::Sender<u64>,
    /// SQS only: move tasks played here (the server offers none).
    move_tasks: Mutex<Option<Arc<MoveTasks>>>,
}

pub struct FaultProxy {
    ports: Vec<(Arc<Port>, String)>,
}

impl FaultProxy {
    /// Starts one listener per service, forwarding to `upstream`.
    pub async fn start(upstream: &str) -> Self {
        let mut ports = Vec::new();
        for service in Service::ALL {
            let port = Arc::new(Port {
                service,
                faults: Mutex::default(),
                upstream: upstream.trim_end_matches('/').to_owned(),
                http: reqwest::Client::new(),
                forwarded: AtomicU64::new(0),
                injected: AtomicU64::new(0),
                cut: watch::channel(0).0,
                move_tasks: Mutex::default(),
            });
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let endpoint = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(accept_loop(listener, port.clone()));
            ports.push((port, endpoint));
        }
        Self { ports }
    }

    fn port(&self, service: Service) -> &Arc<Port> {
        &self
            .ports
            .iter()
            .find(|(p, _)| p.service == service)
            .unwrap()
            .0
    }

    /// Endpoint overrides sending each service through the proxy.
    pub fn env(&self) -> Vec<(String, String)> {
        self.ports
            .iter()
            .map(|(p, endpoint)| (p.service.env_name().to_owned(), endpoint.clone()))
            .collect()
    }

    pub fn set(&self, service: Service, faults: Faults) {
        let port = self.port(service);
        let down = faults.reset || faults.blackhole;
        *port.faults.lock().unwrap() = faults;
        if down {
            port.cut.send_modify(|n| *n += 1);
        }
    }

    /// From now on SQS's message-move task calls are answered here, the
    /// moves made through `sqs` (see [`MoveTasks`]).
    pub fn offer_move_tasks(&self, sqs: aws_sdk_sqs::Client) -> Arc<MoveTasks> {
        let tasks = Arc::new(MoveTasks::new(sqs));
        *self.port(Service::Sqs).move_tasks.lock().unwrap() = Some(tasks.clone());
        tasks
    }

    pub fn clear(&self) {
        for service in Service::ALL {
            self.set(service, Faults::default());
        }
    }

    /// Calls forwarded to the server, and calls answered with an injected error.
    pub fn counts(&self, service: Service) -> (u64, u64) {
        let p = self.port(service);
        (
            p.forwarded.load(Ordering::Relaxed),
            p.injected.load(Ordering::Relaxed),
        )
    }
}

async fn accept_loop(listener: TcpListener, port: Arc<Port>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let faults = port.faults.lock().unwrap().clone();
        if faults.reset {
            // RST instead of FIN: the client sees "connection reset". (A zero
            // linger never blocks on drop, which is what the deprecation
            // warns about.)
            #[allow(deprecated)]
            let _ = stream.set_linger(Some(Duration::ZERO));
            drop(stream);
            continue;
        }
        if faults.blackhole {
            tokio::spawn(hold(stream));
            continue;
        }
        let port = port.clone();
        let mut cut = port.cut.subscribe();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let port = port.clone();
                async move { Ok::<_, std::convert::Infallible>(forward(&port, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = cut.changed() => {}
            }
        });
    }
}

/// Reads and discards until the client gives up.
async fn hold(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
}

async fn forward(port: &Port, request: hyper::Request<hyper::body::Incoming>) -> Response {
    use http_body_util::BodyExt;
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let faults = port.faults.lock().unwrap().clone();
    let affected = faults.method.as_ref().is_none_or(|m| *m == parts.method);
    if affected && !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if affected && faults.error_rate > 0.0 && fastrand::f64() < faults.error_rate {
        port.injected.fetch_add(1, Ordering::Relaxed);
        return injected_error(port.service);
    }
    let move_tasks = port.move_tasks.lock().unwrap().clone();
    if let Some(tasks) = move_tasks {
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|t| t.to_str().ok())
            .unwrap_or_default();
        if let Some(answer) = tasks.answer(target, &body).await {
            return answer;
        }
    }
    port.forwarded.fetch_add(1, Ordering::Relaxed);
    upstream(port, parts.method, &parts.uri, &parts.headers, body).await
}

async fn upstream(
    port: &Port,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = port
        .http
        .request(method, format!("{}{path}", port.upstream));
    for (name, value) in headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    match request.body(body).send().await {
        Ok(answer) => {
            let mut response = Response::builder().status(answer.status().as_u16());
            for (name, value) in answer.headers() {
                if name != "content-length" && name != "transfer-encoding" {
                    response = response.header(name.as_str(), value.as_bytes());
                }
            }
            let bytes = answer.bytes().await.unwrap_or_default();
            response.body(Body::from(bytes)).unwrap()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// The service's own retryable error, as the SDKs expect it.
fn injected_error(service: Service) -> Response {
    match service {
        Service::S3 => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "application/xml")],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
        )
            .into_response(),
        Service::Sqs => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "application/x-amz-json-1.0"), ("x-amzn-query-error", "InternalFailure;Receiver")],
            r#"{"__type":"com.amazonaws.sqs#InternalFailure","message":"injected fault"}"#,
        )
            .into_response(),
        Service::Ssm => (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/x-amz-json-1.1")],
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
        )
            .into_response(),
    }
}
