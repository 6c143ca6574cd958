//! The HTTP/1.1 server in front of the API router. Unlike a plain
//! `axum::serve`, it times quiet connections by what they wait for
//! ([`crate::idle`]): a request head must arrive promptly, an idle
//! keep-alive connection outlives the load balancer's idle timeout, and a
//! request body is bounded by the router's request timeout. On shutdown it
//! closes the listening socket at once, lets requests in flight finish, and
//! closes idle connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::idle::{Counted, IdleLimits, Tracker, Watched};

/// An HTTP/1.1 server bound and ready to run.
pub struct Server {
    listener: TcpListener,
    router: Router,
    limits: IdleLimits,
}

impl Server {
    pub async fn bind(
        addr: SocketAddr,
        router: Router,
        limits: IdleLimits,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            router,
            limits,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`, then lets in-flight requests finish.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let Self {
            listener,
            router,
            limits,
        } = self;
        let mut http = hyper::server::conn::http1::Builder::new();
        // Quiet connections are timed by `Watched`: hyper's own header
        // timeout would also end idle keep-alive connections.
        http.timer(TokioTimer::new())
            .header_read_timeout(None)
            .keep_alive(true);
        let graceful = GracefulShutdown::new();
        loop {
            let stream = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    // Out of file descriptors and the like: wait, don't spin.
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let tracker = Arc::new(Tracker::default());
            let service = TowerToHyperService::new(
                router
                    .clone()
                    .map_request(|r: http::Request<Incoming>| r.map(Body::new)),
            );
            let io = TokioIo::new(Watched::new(stream, tracker.clone(), limits));
            let service = Counted::new(service, tracker);
            let connection = graceful.watch(http.serve_connection(io, service));
            tokio::spawn(connection);
        }
        // New connections are refused from now on (a load balancer that
        // still tries this task fails over at once), while the requests in
        // flight finish, each within the request timeout; idle keep-alive
        // connections are closed.
        drop(listener);
        graceful.shutdown().await;
        Ok(())
    }
}
