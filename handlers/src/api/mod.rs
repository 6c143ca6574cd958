//! The HTTP API as an axum Router: the same value is served by the Fargate
//! runtime's HTTP server and by the Lambda HTTP function (behind
//! `lambda_http`), so the two cannot answer differently.
//!
//! - `GET /` → 200 `{"status":"ok"}` (load balancer health check; no I/O).
//! - `GET /ready` → 200 once the expected token could be read, else 503.
//! - `GET /openapi.json` → the OpenAPI document of this API.
//! - `POST /email` → 200 `{"status":"queued","id":"..."}` or an error from
//!   [`error::ApiError`].

pub mod error;

use std::sync::Arc;
use std::time::Duration;

use crate::id::EmailId;
use crate::ingest::Ingest;
use crate::settings::LimitsArgs;
use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;

pub use error::ApiError;
use error::ErrorKind;

use crate::metrics::names;

/// The OpenAPI document, shipped inside the binary.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Limits that keep slow, numerous or large requests from exhausting the
/// server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_concurrent_requests: usize,
    pub request_timeout: Duration,
    /// Bytes of request bodies held at once (at least the largest email).
    pub max_bytes_in_flight: u64,
}

impl From<&LimitsArgs> for Limits {
    fn from(args: &LimitsArgs) -> Self {
        Self {
            max_concurrent_requests: args.max_concurrent_requests as usize,
            request_timeout: args.request_timeout,
            max_bytes_in_flight: args.memory.max_bytes_in_flight.max(args.max_email_bytes),
        }
    }
}

#[derive(Clone)]
struct AppState {
    ingest: Arc<Ingest>,
    /// The byte budget of request bodies, in KiB.
    bodies: Arc<Semaphore>,
}

pub fn router(ingest: Arc<Ingest>, limits: Limits) -> Router {
    let email = post(post_email).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                ApiError::Overloaded
            }))
            .load_shed()
            .concurrency_limit(limits.max_concurrent_requests),
    );
    let timeout = limits.request_timeout;
    Router::new()
        .route("/", get(health))
        .route("/ready", get(ready))
        .route("/openapi.json", get(openapi))
        .route("/email", email)
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn(move |req, next| {
            log_request(req, next, timeout)
        }))
        .with_state(AppState {
            ingest,
            bodies: Arc::new(Semaphore::new(kib(limits.max_bytes_in_flight) as usize)),
        })
}

/// Bytes in whole KiB, rounded up, as the body budget counts them.
fn kib(bytes: u64) -> u32 {
    bytes.div_ceil(1024).clamp(1, u64::from(u32::MAX)) as u32
}

fn json(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

async fn health() -> Response {
    json(StatusCode::OK, r#"{"status":"ok"}"#.into())
}

async fn ready(State(state): State<AppState>) -> Result<Response, ApiError> {
    state
        .ingest
        .tokens()
        .ensure_known()
        .await
        .map_err(|e| ApiError::Ingest(e.into()))?;
    Ok(json(StatusCode::OK, r#"{"status":"ready"}"#.into()))
}

async fn openapi() -> Response {
    json(StatusCode::OK, OPENAPI.into())
}

async fn post_email(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if !is_json(&headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bearer = bearer_token(&headers)?;
    let limit = state.ingest.max_email_bytes();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        if declared.is_some_and(|n| n <= 2 * limit as u64) && !expects_continue(&headers) {
            discard(body, limit).await;
        }
        return Err(ApiError::BodyTooLarge(limit));
    }
    // Room for the body in the byte budget before reading it: as declared,
    // or, without a length, as much as it may be. Too many large bodies at
    // once get 503 rather than the task's memory.
    let _held = state
        .bodies
        .try_acquire_many(kib(declared.unwrap_or(limit as u64)))
        .map_err(|_| ApiError::Overloaded)?;
    let body = read_body(body, declared, limit).await?;
    let id = state.ingest.submit(body, bearer).await?;
    let mut response = json(
        StatusCode::OK,
        format!(r#"{{"status":"queued","id":"{id}"}}"#),
    );
    response.extensions_mut().insert(id);
    Ok(response)
}

/// Reads a body of at most `limit` bytes into one buffer, sized from the
/// declared length and filled chunk by chunk, so that a large body is held
/// once (collecting the chunks and then joining them would hold it twice). A
/// body that arrives in one chunk is taken as it is.
async fn read_body(mut body: Body, declared: Option<u64>, limit: usize) -> Result<Bytes, ApiError> {
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(chunk) = frame.map_err(|_| ApiError::BodyUnreadable)?.into_data() else {
            continue; // trailers carry no email
        };
        total += chunk.len();
        if total > limit {
            drop((first, joined, chunk));
            discard(body, limit).await;
            return Err(ApiError::BodyTooLarge(limit));
        }
        if let Some(head) = first.take() {
            let expected = declared.map_or(0, |n| n as usize).min(limit);
            joined.reserve(expected.max(head.len() + chunk.len()));
            joined.extend_from_slice(&head);
        }
        if joined.is_empty() {
            first = Some(chunk);
        } else {
            joined.extend_from_slice(&chunk);
        }
    }
    Ok(first.unwrap_or_else(|| joined.freeze()))
}

/// Reads and drops up to `max` bytes of a body refused as too large. A
/// client is still sending it when the 413 is ready; closing the connection
/// then would reset it, and most clients report the reset ("broken pipe")
/// instead of the 413. Bodies far over the limit are not read (the
/// connection closes), nor those whose client asked to be told first
/// (`Expect: 100-continue` gets the 413 before sending anything), and a
/// client that pauses for [`DISCARD_PAUSE`] (one that waits for an answer
/// before sending) gets the 413 then.
async fn discard(mut body: Body, max: usize) {
    let mut left = max;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(DISCARD_PAUSE, body.frame()).await {
        let n = frame.data_ref().map_or(0, Bytes::len);
        if n > left {
            return;
        }
        left -= n;
    }
}

/// How long a refused body may pause before the 413 is sent anyway.
const DISCARD_PAUSE: Duration = Duration::from_secs(1);

/// The client waits for `100 Continue` before sending the body.
fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// `application/json`, any case, parameters such as `charset` allowed.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::RepeatedAuthorization);
    }
    let value = value.to_str().map_err(|_| ApiError::BadAuthorization)?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(ApiError::BadAuthorization),
    }
}

/// When the runtime must have the answer: a Lambda invocation's deadline,
/// less the time it takes to hand the answer back. A runtime that has one
/// puts it in the request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub tokio::time::Instant);

/// One log line per request (method, path, status, latency, and the email id
/// or the error), and the request's time limits: the request timeout (408,
/// the client was too slow) and the runtime's deadline (503, retry).
async fn log_request(request: Request, next: Next, timeout: Duration) -> Response {
    let started = tokio::time::Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let deadline = request.extensions().get::<Deadline>().map(|d| d.0);
    let timed_out = started + timeout;
    let limit = deadline.map_or(timed_out, |d| d.min(timed_out));
    let response = match tokio::time::timeout_at(limit, next.run(request)).await {
        Ok(response) => response,
        // With a runtime deadline (Lambda) the body arrived whole before
        // the handler ran: running out of time is the backends' doing, never
        // the client's, and a 503 is what the client should retry.
        Err(_) if deadline.is_some() => ApiError::OutOfTime.into_response(),
        Err(_) => ApiError::Timeout.into_response(),
    };
    let latency_ms = started.elapsed().as_micros() as f64 / 1000.0;
    let status = response.status().as_u16();
    let id = response
        .extensions()
        .get::<EmailId>()
        .map(|id| id.to_string());
    let error = response.extensions().get::<ErrorKind>();
    if method == Method::POST && path == "/email" {
        let metric = match error {
            Some(kind) => kind.metric,
            None => Some(names::EMAILS_ACCEPTED),
        };
        if let Some(metric) = metric {
            ::metrics::counter!(metric).increment(1);
        }
        ::metrics::histogram!(names::API_LATENCY).record(latency_ms);
    }
    let error = error.map(|e| e.message.as_str());
    if status >= 500 {
        tracing::warn!(%method, path, status, latency_ms, error, "request");
    } else {
        tracing::info!(%method, path, status, latency_ms, id, error, "request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
        ] {
            assert!(is_json(&headers(&[("content-type", ok)])), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/jsonx",
            "application/x-www-form-urlencoded",
            "",
        ] {
            assert!(!is_json(&headers(&[("content-type", bad)])), "{bad}");
        }
        assert!(!is_json(&headers(&[])));
    }

    #[test]
    fn authorization_headers() {
        assert_eq!(bearer_token(&headers(&[])).unwrap(), None);
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Bearer abc")])).unwrap(),
            Some("abc")
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "bearer abc")])).unwrap(),
            Some("abc")
        );
        for bad in ["Basic YTpi", "Bearer", "Bearer ", "Bearer   "] {
            assert!(
                matches!(
                    bearer_token(&headers(&[("authorization", bad)])),
                    Err(ApiError::BadAuthorization)
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            bearer_token(&headers(&[
                ("authorization", "Bearer a"),
                ("authorization", "Bearer a")
            ])),
            Err(ApiError::RepeatedAuthorization)
        ));
    }

    /// A body arriving in chunks, counting the chunks read.
    fn chunked(parts: &[&str]) -> (Body, Arc<std::sync::atomic::AtomicUsize>) {
        let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = read.clone();
        let chunks: Vec<Result<Bytes, std::io::Error>> = parts
            .iter()
            .map(|p| Ok(Bytes::copy_from_slice(p.as_bytes())))
            .collect();
        let stream = futures_util::stream::iter(chunks).inspect(move |_| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        (Body::from_stream(stream), read)
    }

    /// A router whose one route never finishes, under the request limits.
    fn never_done(timeout: Duration) -> Router {
        Router::new()
            .route("/email", post(std::future::pending::<&'static str>))
            .layer(middleware::from_fn(move |req, next| {
                log_request(req, next, timeout)
            }))
    }

    #[tokio::test(start_paused = true)]
    async fn running_out_of_time_is_a_408_from_a_server_and_a_503_under_a_deadline() {
        use tower::ServiceExt;
        let timeout = Duration::from_secs(10);
        let request = |deadline: Option<Duration>| {
            let mut request = Request::post("/email").body(Body::empty()).unwrap();
            if let Some(after) = deadline {
                request
                    .extensions_mut()
                    .insert(Deadline(tokio::time::Instant::now() + after));
            }
            request
        };
        let status = |response: &Response| response.status().as_u16();
        // A server times the client: 408.
        let answer = never_done(timeout).oneshot(request(None)).await.unwrap();
        assert_eq!(status(&answer), 408);
        // Under a deadline the body was whole before the handler ran, so
        // whichever limit comes first, the time went to AWS: 503, retry.
        for after in [Duration::from_secs(3), Duration::from_secs(60)] {
            let answer = never_done(timeout)
                .oneshot(request(Some(after)))
                .await
                .unwrap();
            assert_eq!(status(&answer), 503, "deadline after {after:?}");
            assert!(answer.headers().contains_key(header::RETRY_AFTER));
        }
    }

    use futures_util::StreamExt;

    #[tokio::test]
    async fn a_body_in_chunks_is_joined_in_order() {
        for parts in [
            vec![],
            vec!["abc"],
            vec!["ab", "", "cd", "e"],
            vec!["", "x"],
        ] {
            let (body, _) = chunked(&parts);
            let read = read_body(body, None, 10).await.unwrap();
            assert_eq!(read, parts.concat().as_bytes(), "{parts:?}");
            let (body, _) = chunked(&parts);
            let declared = Some(parts.concat().len() as u64);
            assert_eq!(read_body(body, declared, 10).await.unwrap(), read);
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_and_the_rest_read_up_to_a_bound() {
        // 12 bytes against a limit of 10: refused, and the rest is read so
        // that the client sees the 413.
        let (body, read) = chunked(&["abcd", "efgh", "ijkl", "mn"]);
        assert!(matches!(
            read_body(body, None, 10).await,
            Err(ApiError::BodyTooLarge(10))
        ));
        assert_eq!(read.load(std::sync::atomic::Ordering::Relaxed), 4);
        // Far over: reading stops at the chunk that passes another limit's
        // worth (10 kept, 10 dropped, the 4th passes): 2 of 6 never read.
        let parts = ["0123456789"; 6];
        let (body, read) = chunked(&parts);
        assert!(read_body(body, None, 10).await.is_err());
        assert_eq!(read.load(std::sync::atomic::Ordering::Relaxed), 4);
    }
}
