//! The HTTP/1.1 server in front of the API router. Unlike a plain
//! `axum::serve`, it bounds how long a client may take to send its headers,
//! so that slow or idle connections cannot pile up (request bodies are
//! bounded by the router's request timeout).

use std::net::SocketAddr;
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

/// An HTTP/1.1 server bound and ready to run.
pub struct Server {
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
}

impl Server {
    pub async fn bind(
        addr: SocketAddr,
        router: Router,
        header_timeout: Duration,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            router,
            header_timeout,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`, then lets in-flight requests finish.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .keep_alive(true);
        let graceful = GracefulShutdown::new();
        loop {
            let stream = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
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
            let service = TowerToHyperService::new(
                self.router
                    .clone()
                    .map_request(|r: http::Request<Incoming>| r.map(Body::new)),
            );
            let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(connection);
        }
        // Requests in flight finish (each within the request timeout);
        // idle keep-alive connections are closed.
        graceful.shutdown().await;
        Ok(())
    }
}
