//! Builds the API and the worker from typed settings and the AWS adapters,
//! and runs them until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use axum::Router;
use axum::body::Body;
use handlers::aws::{AwsTuning, s3_client};
use handlers::bucket::s3::S3Bucket;
use handlers::ingest::Ingest;
use handlers::queue::sqs::SqsQueue;
use handlers::queue::{BatchingSender, Queue};
use handlers::secret::SecretSource;
use handlers::secret::ssm::SsmParameter;
use handlers::store::Storer;
use handlers::token::TokenChecker;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::api::{self, Limits};
use crate::config::{ApiArgs, CommonArgs, IngestArgs, StoreArgs, WorkerArgs};
use crate::worker::{self, WorkerConfig};

/// The SDK configuration for this process, region from the settings if given.
pub async fn sdk_config(common: &CommonArgs, tuning: AwsTuning) -> SdkConfig {
    let config = handlers::aws::sdk_config(tuning).await;
    match &common.aws_region {
        Some(region) => config
            .into_builder()
            .region(aws_config::Region::new(region.clone()))
            .build(),
        None => config,
    }
}

/// Validate-and-enqueue over the given queue and token store.
pub fn ingest(
    queue: Arc<dyn Queue>,
    secret: Arc<dyn SecretSource>,
    token_ttl: Duration,
    token_refresh_interval: Duration,
    sends_in_flight: usize,
) -> Arc<Ingest> {
    let tokens = TokenChecker::new(secret, token_ttl, token_refresh_interval);
    Arc::new(Ingest::new(
        tokens,
        BatchingSender::spawn(queue, sends_in_flight),
    ))
}

/// Validate-and-enqueue on SQS and SSM.
pub fn aws_ingest(args: &IngestArgs, sdk: &SdkConfig) -> Arc<Ingest> {
    let queue = Arc::new(SqsQueue::new(
        aws_sdk_sqs::Client::new(sdk),
        &args.sqs_queue_url,
        AwsTuning::API,
    ));
    let secret = Arc::new(SsmParameter::new(
        aws_sdk_ssm::Client::new(sdk),
        &args.token_param_name,
    ));
    ingest(
        queue,
        secret,
        args.token_cache_ttl,
        args.token_refresh_interval,
        usize::from(args.sqs_send_concurrency),
    )
}

/// Message-to-bucket on S3.
pub fn aws_storer(args: &StoreArgs, sdk: &SdkConfig) -> Arc<Storer> {
    let bucket = Arc::new(S3Bucket::new(s3_client(sdk), &args.s3_bucket_name));
    Arc::new(Storer::new(bucket, &args.s3_key_prefix))
}

/// An HTTP/1.1 server bound and ready to run. Unlike a plain `axum::serve`,
/// it bounds how long a client may take to send its headers, so that slow
/// or idle connections cannot pile up (request bodies are bounded by the
/// router's request timeout).
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

/// `queue2bucket api`.
pub async fn run_api(args: ApiArgs, shutdown: CancellationToken) -> std::io::Result<()> {
    let sdk = sdk_config(&args.common, AwsTuning::API).await;
    let ingest = aws_ingest(&args.ingest, &sdk);
    // Read the token early so the first request does not wait for SSM; if SSM
    // is down the API still starts, answers 503 and recovers on its own.
    let warm = ingest.clone();
    tokio::spawn(async move {
        if let Err(e) = warm.tokens().ensure_known().await {
            tracing::warn!(error = %e, "the token could not be read yet");
        }
    });
    let limits = Limits {
        max_concurrent_requests: args.server.max_concurrent_requests as usize,
        request_timeout: args.server.request_timeout,
    };
    let addr = SocketAddr::from(([0, 0, 0, 0], args.server.port));
    let server = Server::bind(
        addr,
        api::router(ingest, limits),
        args.server.header_timeout,
    )
    .await?;
    tracing::info!(addr = %server.local_addr()?, "listening");
    server.run(shutdown).await
}

/// `queue2bucket worker`.
pub async fn run_worker(
    args: WorkerArgs,
    shutdown: CancellationToken,
) -> Result<(), worker::LoopPanicked> {
    let sdk = sdk_config(&args.common, AwsTuning::WORKER).await;
    let queue = Arc::new(SqsQueue::new(
        aws_sdk_sqs::Client::new(&sdk),
        &args.sqs_queue_url,
        AwsTuning::WORKER,
    ));
    // A queue that cannot be reached now is worth a warning, not an exit: the
    // loop backs off and retries.
    match queue.check().await {
        Ok(()) => tracing::info!("queue reachable; polling"),
        Err(e) => tracing::warn!(error = %e, "queue not reachable yet; polling anyway"),
    }
    let storer = aws_storer(&args.store, &sdk);
    let config = WorkerConfig {
        poll_interval: args.poll_interval,
        concurrency: usize::from(args.worker_concurrency),
        retry_base: WorkerConfig::DEFAULT_RETRY_BASE,
    };
    worker::run(queue, storer, config, None, shutdown).await
}
