//! How long a connection may stay quiet, by what it is waiting for.
//!
//! hyper's own header-read timeout starts as soon as a connection waits for
//! a request, so it also ends idle keep-alive connections between requests.
//! A load balancer keeps idle connections to its targets open for its own
//! idle timeout (an ALB: 60 s by default) and reuses them at any moment; a
//! target that closes one first makes the balancer answer 502 to the request
//! it was sending. The ALB does not retry a POST, so the client sees a 502
//! for an email that was never read. So here:
//!
//! - a new connection must send its first request head within the header
//!   timeout (no idle connections that never speak);
//! - between requests, a connection may stay idle for the keep-alive timeout,
//!   longer than the balancer's;
//! - once the first byte of a request arrives, its head must be complete
//!   within the header timeout (slow clients are cut off);
//! - while a request is being handled, the router's request timeout applies.
//!
//! [`Watched`] wraps the socket and times reads; [`Tracker`] tells it when a
//! request starts and ends, from the service that handles it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The two limits on a quiet connection.
#[derive(Debug, Clone, Copy)]
pub struct IdleLimits {
    /// From a connection's start, or a request's first byte, to its complete head.
    pub header_timeout: Duration,
    /// Between the end of a response and the next request's first byte.
    pub keep_alive_timeout: Duration,
}

/// Requests started and finished on one connection.
#[derive(Debug, Default)]
pub struct Tracker {
    started: AtomicU64,
    finished: AtomicU64,
}

impl Tracker {
    pub fn start(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    pub fn finish(&self) {
        self.finished.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request head.
    Head,
    /// A request is being handled.
    Busy,
    /// Between requests.
    Idle,
}

/// A connection whose reads time out by [`Phase`].
pub struct Watched<S> {
    inner: S,
    tracker: Arc<Tracker>,
    limits: IdleLimits,
    phase: Phase,
    /// Requests finished when the phase was last set.
    finished: u64,
    deadline: Pin<Box<Sleep>>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, tracker: Arc<Tracker>, limits: IdleLimits) -> Self {
        Self {
            inner,
            tracker,
            limits,
            phase: Phase::Head,
            finished: 0,
            deadline: Box::pin(tokio::time::sleep(limits.header_timeout)),
        }
    }

    fn enter(&mut self, phase: Phase, limit: Duration) {
        self.phase = phase;
        self.deadline.as_mut().reset(Instant::now() + limit);
    }

    /// Moves to the phase the request counts say, before a read.
    fn update(&mut self) {
        let started = self.tracker.started.load(Ordering::Relaxed);
        let finished = self.tracker.finished.load(Ordering::Relaxed);
        if started > finished {
            self.phase = Phase::Busy;
        } else if finished > self.finished || self.phase == Phase::Busy {
            self.finished = finished;
            self.enter(Phase::Idle, self.limits.keep_alive_timeout);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.update();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.phase == Phase::Idle && buf.filled().len() > before {
                    this.enter(Phase::Head, this.limits.header_timeout);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if this.phase == Phase::Busy => Poll::Pending,
            Poll::Pending => {
                ready!(this.deadline.as_mut().poll(cx));
                let what = match this.phase {
                    Phase::Idle => "idle keep-alive timeout",
                    _ => "request head timeout",
                };
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A connection's service, counting its requests for [`Watched`].
pub struct Counted<S> {
    inner: S,
    tracker: Arc<Tracker>,
}

impl<S> Counted<S> {
    pub fn new(inner: S, tracker: Arc<Tracker>) -> Self {
        Self { inner, tracker }
    }
}

/// Counts a request as finished when its response is ready, or when it is
/// dropped unanswered.
struct Finish(Arc<Tracker>);

impl Drop for Finish {
    fn drop(&mut self) {
        self.0.finish();
    }
}

impl<S, R> hyper::service::Service<R> for Counted<S>
where
    S: hyper::service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, request: R) -> Self::Future {
        // Called as soon as the head is parsed, before the body is read.
        self.tracker.start();
        let finish = Finish(self.tracker.clone());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            drop(finish);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    const LIMITS: IdleLimits = IdleLimits {
        header_timeout: Duration::from_secs(5),
        keep_alive_timeout: Duration::from_secs(75),
    };

    fn connection() -> (DuplexStream, Watched<DuplexStream>, Arc<Tracker>) {
        let (client, server) = tokio::io::duplex(1024);
        let tracker = Arc::new(Tracker::default());
        (
            client,
            Watched::new(server, tracker.clone(), LIMITS),
            tracker,
        )
    }

    /// Reads once; the time it took and what came of it.
    async fn read(watched: &mut Watched<DuplexStream>) -> (Duration, io::Result<usize>) {
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let result = watched.read(&mut buf).await;
        (started.elapsed(), result)
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_must_send_its_head_within_the_header_timeout() {
        let (_client, mut watched, _) = connection();
        let (waited, result) = read(&mut watched).await;
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert_eq!(waited, LIMITS.header_timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn between_requests_the_keep_alive_timeout_applies_then_the_header_timeout() {
        let (mut client, mut watched, tracker) = connection();
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(read(&mut watched).await.1.unwrap() > 0);
        // Handling a request takes as long as it takes: no timeout here.
        tracker.start();
        let reading = tokio::time::timeout(Duration::from_secs(1000), read(&mut watched)).await;
        assert!(reading.is_err(), "a busy connection was timed out");
        tracker.finish();
        // Idle: 74 s of silence are fine, then a request begins...
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(74)).await;
            client.write_all(b"POST /email HTTP/1.1\r\n").await.unwrap();
            client
        });
        let (waited, result) = read(&mut watched).await;
        assert!(result.unwrap() > 0);
        assert_eq!(waited, Duration::from_secs(74));
        let _client = writer.await.unwrap();
        // ...and its head must be complete within the header timeout.
        let (waited, result) = read(&mut watched).await;
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert_eq!(waited, LIMITS.header_timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_after_the_keep_alive_timeout() {
        let (_client, mut watched, tracker) = connection();
        tracker.start();
        tracker.finish();
        let (waited, result) = read(&mut watched).await;
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert_eq!(waited, LIMITS.keep_alive_timeout);
    }
}
