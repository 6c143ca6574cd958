//! Settings: read once from the environment (or the same-named flags) at
//! start-up, checked, and failing fast with the variable's name. The argument
//! groups are shared with the Lambda entrypoints, which read the same
//! variables.

use std::time::Duration;

use clap::{Args, ValueEnum};

/// Parses whole seconds within a range.
pub(crate) fn seconds(min: u64, max: u64) -> impl Fn(&str) -> Result<Duration, String> + Clone {
    move |text: &str| {
        let n: u64 = text
            .trim()
            .parse()
            .map_err(|_| format!("expected whole seconds, got {text:?}"))?;
        if (min..=max).contains(&n) {
            Ok(Duration::from_secs(n))
        } else {
            Err(format!("must be between {min} and {max} seconds"))
        }
    }
}

/// Settings every process reads.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// AWS region; when unset, the SDK's standard chain decides (profile, instance metadata).
    #[arg(long, env = "AWS_REGION", value_name = "AWS_REGION")]
    pub aws_region: Option<String>,

    /// Log format: one JSON object per line, or human-readable text.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_name = "LOG_FORMAT",
        default_value = "json"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// What validate-and-enqueue needs: the queue and the token's parameter.
#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// URL of the SQS queue emails are sent to.
    #[arg(long, env = "SQS_QUEUE_URL", value_name = "SQS_QUEUE_URL")]
    pub sqs_queue_url: String,

    /// Name of the SSM parameter (SecureString) holding the API token.
    #[arg(long, env = "TOKEN_PARAM_NAME", value_name = "TOKEN_PARAM_NAME")]
    pub token_param_name: String,

    /// Seconds the token read from SSM is trusted before it is read again.
    #[arg(long, env = "TOKEN_CACHE_TTL", value_name = "TOKEN_CACHE_TTL", default_value = "300", value_parser = seconds(1, 86_400))]
    pub token_cache_ttl: Duration,

    /// SendMessageBatch calls in flight at once; requests arriving meanwhile share the next batches (fewer calls under load, no added latency when idle).
    #[arg(long, env = "SQS_SEND_CONCURRENCY", value_name = "SQS_SEND_CONCURRENCY", default_value = "4", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub sqs_send_concurrency: u16,

    /// Least seconds between two SSM reads caused by a token that does not match (a rotation is picked up within this time; bad tokens cannot cause more reads).
    #[arg(long, env = "TOKEN_REFRESH_INTERVAL", value_name = "TOKEN_REFRESH_INTERVAL", default_value = "5", value_parser = seconds(1, 3_600))]
    pub token_refresh_interval: Duration,
}

/// The HTTP server's own settings.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// TCP port to listen on (all interfaces); 0 picks a free one.
    #[arg(long, env = "PORT", value_name = "PORT", default_value = "8000")]
    pub port: u16,

    /// Requests to POST /email handled at once; more are refused with 503 and Retry-After.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", value_name = "MAX_CONCURRENT_REQUESTS", default_value = "256", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_concurrent_requests: u32,

    /// Seconds a client may take to send a request's headers before the connection is closed.
    #[arg(long, env = "HEADER_TIMEOUT", value_name = "HEADER_TIMEOUT", default_value = "5", value_parser = seconds(1, 300))]
    pub header_timeout: Duration,

    /// Seconds a request may take, body upload included, before it is answered 408.
    #[arg(long, env = "REQUEST_TIMEOUT", value_name = "REQUEST_TIMEOUT", default_value = "10", value_parser = seconds(1, 300))]
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub ingest: IngestArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// What message-to-bucket needs.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// S3 bucket the emails are stored in.
    #[arg(long, env = "S3_BUCKET_NAME", value_name = "S3_BUCKET_NAME")]
    pub s3_bucket_name: String,

    /// Key prefix of the stored objects: <prefix><id>.json.
    #[arg(long, env = "S3_KEY_PREFIX", value_name = "S3_KEY_PREFIX", default_value = handlers::store::DEFAULT_PREFIX)]
    pub s3_key_prefix: String,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// URL of the SQS queue to drain.
    #[arg(long, env = "SQS_QUEUE_URL", value_name = "SQS_QUEUE_URL")]
    pub sqs_queue_url: String,

    #[command(flatten)]
    pub store: StoreArgs,

    /// Long-poll window in seconds (1-20): an idle worker asks SQS this often; a message that arrives is picked up at once, and a backlog is drained without pause.
    #[arg(long, env = "POLL_INTERVAL", value_name = "POLL_INTERVAL", default_value = "10", value_parser = seconds(1, 20))]
    pub poll_interval: Duration,

    /// Receive loops running at once, each with up to 10 messages in flight.
    #[arg(long, env = "WORKER_CONCURRENCY", value_name = "WORKER_CONCURRENCY", default_value = "4", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub worker_concurrency: u16,

    #[command(flatten)]
    pub common: CommonArgs,
}
