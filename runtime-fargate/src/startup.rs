//! `queue2bucket api` and `queue2bucket worker`: the services built from
//! typed settings over the AWS adapters ([`handlers::startup`]), run until
//! shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use handlers::api;
use std::time::Duration;

use handlers::aws::AwsTuning;
use handlers::metrics::{self, Service};
use handlers::queue::sqs::SqsQueue;
use handlers::startup::{aws_ingest, aws_storer, sdk_config};
use tokio_util::sync::CancellationToken;

use crate::server::Server;
use crate::settings::{ApiArgs, WorkerArgs};
use crate::worker::{self, WorkerConfig};

/// How often a running task writes its metrics.
const METRICS_INTERVAL: Duration = Duration::from_secs(10);

/// Writes the metrics every [`METRICS_INTERVAL`] until `shutdown`; the
/// caller flushes once more when its work is done.
fn flush_metrics(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(METRICS_INTERVAL);
        every.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => metrics::flush(),
            }
        }
    });
}

/// `queue2bucket api`.
pub async fn run_api(args: ApiArgs, shutdown: CancellationToken) -> std::io::Result<()> {
    metrics::install(Service::Api, &args.metrics);
    flush_metrics(shutdown.clone());
    let sdk = sdk_config(&args.common, AwsTuning::API).await;
    let ingest = aws_ingest(&args.ingest, &args.limits, &sdk).await;
    // Read the token early so the first request does not wait for SSM; if SSM
    // is down the API still starts, answers 503 and recovers on its own.
    let warm = ingest.clone();
    tokio::spawn(async move {
        if let Err(e) = warm.tokens().ensure_known().await {
            tracing::warn!(error = %e, "the token could not be read yet");
        }
    });
    let addr = SocketAddr::from(([0, 0, 0, 0], args.server.listen.port));
    let router = api::router(ingest, (&args.limits).into());
    let server = Server::bind(addr, router, args.server.idle_limits()).await?;
    tracing::info!(addr = %server.local_addr()?, "listening");
    let served = server.run(shutdown).await;
    metrics::flush();
    served
}

/// `queue2bucket worker`.
pub async fn run_worker(
    args: WorkerArgs,
    shutdown: CancellationToken,
) -> Result<(), worker::LoopPanicked> {
    metrics::install(Service::Worker, &args.metrics);
    flush_metrics(shutdown.clone());
    let sdk = sdk_config(&args.common, AwsTuning::WORKER).await;
    let queue = Arc::new(SqsQueue::new(
        aws_sdk_sqs::Client::new(&sdk),
        &args.queue.sqs_queue_url,
        AwsTuning::WORKER,
    ));
    let storer = aws_storer(&args.store, &sdk);
    let worked = worker::run(
        queue,
        storer,
        WorkerConfig::from(&args.poll),
        None,
        shutdown,
    )
    .await;
    metrics::flush();
    worked
}
