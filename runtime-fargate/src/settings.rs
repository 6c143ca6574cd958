//! The Fargate runtime's own settings (its HTTP server and its poll loop),
//! and how each subcommand combines them with the shared groups of
//! [`handlers::settings`]. Every setting is an environment variable and the
//! same-named flag, defined once.

use std::time::Duration;

use clap::Args;
use handlers::metrics::MetricsArgs;
use handlers::runtime::RuntimeArgs;
use handlers::settings::{CommonArgs, IngestArgs, LimitsArgs, QueueArgs, StoreArgs, seconds};

use crate::idle::IdleLimits;

/// The API's port unless PORT says otherwise (the manifest hands it to the
/// Terraform checks).
pub const DEFAULT_PORT: u16 = 8000;

/// Where the API listens (and where the health check looks).
#[derive(Debug, Clone, Args)]
pub struct PortArgs {
    /// TCP port of the API; 0 picks a free one.
    #[arg(long, env = "PORT", value_name = "PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,
}

/// The HTTP server's own settings.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub listen: PortArgs,

    /// Seconds a client may take to send a request's head (from a new connection, or from a request's first byte) before the connection is closed.
    #[arg(long, env = "HEADER_TIMEOUT", value_name = "HEADER_TIMEOUT", default_value = "5", value_parser = seconds(1, 300))]
    pub header_timeout: Duration,

    /// Seconds an idle keep-alive connection stays open between requests; keep it above the load balancer's idle timeout (an ALB's is 60 s by default), or the balancer may reuse a connection as it closes and answer 502.
    #[arg(long, env = "KEEP_ALIVE_TIMEOUT", value_name = "KEEP_ALIVE_TIMEOUT", default_value = "75", value_parser = seconds(1, 4_000))]
    pub keep_alive_timeout: Duration,
}

impl ServerArgs {
    pub fn idle_limits(&self) -> IdleLimits {
        IdleLimits {
            header_timeout: self.header_timeout,
            keep_alive_timeout: self.keep_alive_timeout,
        }
    }
}

/// The poll loop's settings.
#[derive(Debug, Clone, Args)]
pub struct PollArgs {
    /// Long-poll window in seconds (1-20): an idle worker asks the queue this often; a message that arrives is picked up at once, and a backlog is drained without pause.
    #[arg(long, env = "POLL_INTERVAL", value_name = "POLL_INTERVAL", default_value = "10", value_parser = seconds(1, 20))]
    pub poll_interval: Duration,

    /// Receive loops running at once, each with up to 10 messages in flight.
    #[arg(long, env = "WORKER_CONCURRENCY", value_name = "WORKER_CONCURRENCY", default_value = "4", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub worker_concurrency: u16,
}

/// `queue2bucket api`.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub limits: LimitsArgs,
    #[command(flatten)]
    pub ingest: IngestArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `queue2bucket worker`.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub queue: QueueArgs,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub poll: PollArgs,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    #[command(flatten)]
    pub runtime: RuntimeArgs,

    #[command(flatten)]
    pub common: CommonArgs,
}
