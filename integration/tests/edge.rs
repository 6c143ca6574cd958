//! The API's connection handling as an ALB meets it, against the production
//! binary (`queue2bucket api` on moto) with its default settings.
//!
//! What the rig stands for: an ALB keeps idle connections to its targets for
//! its idle timeout (60 s by default) and reuses them at any moment, and it
//! does not retry a POST that a target's closing connection lost (the
//! client sees a 502). Here a raw TCP connection plays the balancer's pooled
//! connection: a request, 61 s of silence, then the next request on the same
//! socket. ECS deregisters a task from the target group before it sends
//! SIGTERM; the task must then stop accepting at once and finish what it has.

use std::time::{Duration, Instant};

use integration::{Api, DATA, Moto, Stack, StackOptions, env_of, envelope};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn post_keep_alive(body: &str) -> String {
    format!(
        "POST /email HTTP/1.1\r\nhost: api\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Reads one response (head and a `content-length` body) from a kept-alive
/// connection; answers its status, or None if the connection was closed.
async fn read_response(stream: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return head.split_whitespace().nth(1)?.parse().ok();
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(15), stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn addr(api: &Api) -> String {
    api.url.trim_start_matches("http://").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_keep_alive_connection_outlives_the_alb_idle_timeout() {
    let moto = Moto::start().await;
    let stack = Stack::create(moto.clients().await, StackOptions::default()).await;
    let api = Api::start(&env_of(&[&moto.env(), &stack.api_env()])).await;
    let request = post_keep_alive(&envelope(DATA, &stack.token));

    let mut pooled = TcpStream::connect(addr(&api)).await.unwrap();
    pooled.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut pooled).await, Some(200));
    // Longer than the ALB's default idle timeout.
    tokio::time::sleep(Duration::from_secs(61)).await;
    pooled.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(
        read_response(&mut pooled).await,
        Some(200),
        "the connection the balancer kept was closed under it"
    );

    // After a request, a head started and not finished is still cut off
    // within the header timeout (5 s), keep-alive or not.
    pooled
        .write_all(b"POST /email HTTP/1.1\r\nhost: api\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(
        read_response(&mut pooled).await,
        None,
        "a slow head is closed"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    assert_eq!(stack.depth(&stack.queue_url).await, 2);
    api.process.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let moto = Moto::start().await;
    let stack = Stack::create(moto.clients().await, StackOptions::default()).await;
    let api = Api::start(&env_of(&[&moto.env(), &stack.api_env()])).await;
    let mut silent = TcpStream::connect(addr(&api)).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread")]
async fn on_sigterm_the_listener_closes_at_once_and_requests_in_flight_finish() {
    let moto = Moto::start().await;
    let stack = Stack::create(moto.clients().await, StackOptions::default()).await;
    let mut api = Api::start(&env_of(&[&moto.env(), &stack.api_env()])).await;
    let body = envelope(DATA, &stack.token);
    let (first, rest) = body.split_at(body.len() / 2);

    // A request under way: its head and half its body sent.
    let mut in_flight = TcpStream::connect(addr(&api)).await.unwrap();
    let head = format!(
        "POST /email HTTP/1.1\r\nhost: api\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{first}",
        body.len()
    );
    in_flight.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    api.process.signal("TERM");
    // The listening socket is closed: new connections are refused.
    integration::eventually("the listener to close", Duration::from_secs(2), || {
        let addr = addr(&api);
        async move { TcpStream::connect(addr).await.is_err().then_some(()) }
    })
    .await;

    // The request under way is still answered, and its email queued.
    in_flight.write_all(rest.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut in_flight).await, Some(200));
    let status = api.process.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}");
    assert_eq!(stack.depth(&stack.queue_url).await, 1);
}
