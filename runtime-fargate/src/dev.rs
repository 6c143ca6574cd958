//! `queue2bucket dev`: the whole pipeline in one process on a laptop, with
//! embedded backends and no cloud account: the same API router, validation
//! and worker loop as in production, over an SQLite queue and a directory as
//! the bucket.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use handlers::bucket::dir::DirBucket;
use handlers::ingest::Ingest;
use handlers::queue::sqlite::{SqliteQueue, SqliteQueueConfig};
use handlers::secret::fixed::FixedSecret;
use handlers::store::{DEFAULT_PREFIX, Stored, Storer};
use tokio_util::sync::CancellationToken;

use crate::api::{self, Limits};
use crate::config::{LogFormat, seconds};
use crate::startup::{self, Server};
use crate::worker::{self, WorkerConfig};

#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Port of the API.
    #[arg(long, env = "PORT", value_name = "PORT", default_value = "8000")]
    pub port: u16,

    /// Address to listen on; the default keeps the API on this machine.
    #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Where the queue (queue.sqlite3) and the bucket (bucket/) live.
    #[arg(
        long,
        env = "QUEUE2BUCKET_DATA_DIR",
        value_name = "DIR",
        default_value = ".queue2bucket"
    )]
    pub data_dir: PathBuf,

    /// The API token; a random one is generated and printed when unset.
    #[arg(
        long,
        env = "QUEUE2BUCKET_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Seconds a received message stays invisible before it is delivered again.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = seconds(1, 43_200))]
    pub visibility_timeout: Duration,

    /// Receives after which a message that could not be stored moves to the dead-letter table.
    #[arg(long, value_name = "N", default_value = "5", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_receives: u32,

    /// Long-poll window of the worker, in seconds (new emails wake it at once; this bounds how long Ctrl-C waits).
    #[arg(long, env = "POLL_INTERVAL", value_name = "POLL_INTERVAL", default_value = "1", value_parser = seconds(1, 20))]
    pub poll_interval: Duration,

    /// Receive loops of the worker.
    #[arg(long, env = "WORKER_CONCURRENCY", value_name = "WORKER_CONCURRENCY", default_value = "4", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub worker_concurrency: u16,

    /// Key prefix of the stored files.
    #[arg(long, env = "S3_KEY_PREFIX", value_name = "S3_KEY_PREFIX", default_value = DEFAULT_PREFIX)]
    pub key_prefix: String,

    #[command(flatten)]
    pub server: ServerTimeouts,

    /// Log format of the diagnostics (stored emails are always one readable line each).
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_name = "LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

/// The API's protections against slow clients, as in production.
#[derive(Debug, Clone, Args)]
pub struct ServerTimeouts {
    /// Seconds a request may take, body upload included, before it is answered 408.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = seconds(1, 300))]
    pub request_timeout: Duration,

    /// Seconds a client may take to send a request's headers.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = seconds(1, 300))]
    pub header_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error("{0}")]
    Queue(#[from] handlers::queue::QueueError),
    #[error("{0}")]
    Bucket(#[from] handlers::bucket::BucketError),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("server: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Worker(#[from] worker::LoopPanicked),
}

/// The queue's database in a data directory.
pub fn queue_path(data_dir: &Path) -> PathBuf {
    data_dir.join("queue.sqlite3")
}

/// The bucket's root in a data directory.
pub fn bucket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("bucket")
}

/// Validate-and-enqueue into the local queue, against a fixed token.
pub fn local_ingest(queue: Arc<SqliteQueue>, token: String) -> Arc<Ingest> {
    // A fixed token never changes: cache it for as long as the process lives.
    let forever = Duration::from_secs(86_400 * 365);
    startup::ingest(
        queue,
        Arc::new(FixedSecret::new(token)),
        forever,
        forever,
        // SQLite commits one batch at a time: more in flight only waits.
        2,
    )
}

/// A token with 244 random bits from the OS generator.
fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// One readable line per stored email.
fn print_stored(stored: &Stored, body: &str) {
    #[derive(serde::Deserialize)]
    struct Summary<'a> {
        #[serde(borrow)]
        email_sender: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        email_subject: std::borrow::Cow<'a, str>,
    }
    let summary = serde_json::from_str::<Summary>(body).ok();
    let (from, subject) = summary
        .as_ref()
        .map(|s| (s.email_sender.as_ref(), s.email_subject.as_ref()))
        .unwrap_or(("?", "?"));
    let subject: String = subject.chars().take(60).collect();
    let what = match stored.outcome {
        handlers::bucket::PutOutcome::Created => "stored",
        handlers::bucket::PutOutcome::AlreadyExists => "already stored",
    };
    // A closed stdout must not stop the worker: the line is informational.
    let _ = writeln!(
        std::io::stdout(),
        "{what} {} ({} bytes) from {from}: {subject:?}",
        stored.key,
        stored.bytes
    );
}

pub async fn run(args: DevArgs, shutdown: CancellationToken) -> Result<(), DevError> {
    let data_dir = &args.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|e| DevError::DataDir(data_dir.clone(), e))?;
    let queue_path = queue_path(data_dir);
    let bucket_path = bucket_path(data_dir);
    let queue = Arc::new(SqliteQueue::open(
        &queue_path,
        SqliteQueueConfig {
            visibility_timeout: args.visibility_timeout,
            max_receives: args.max_receives,
        },
    )?);
    let bucket = Arc::new(DirBucket::open(&bucket_path)?);
    let token = args.token.clone().unwrap_or_else(random_token);

    let ingest = local_ingest(queue.clone(), token.clone());
    let router = api::router(
        ingest,
        Limits {
            max_concurrent_requests: 1024,
            request_timeout: args.server.request_timeout,
        },
    );
    let addr = SocketAddr::new(args.host, args.port);
    let server = Server::bind(addr, router, args.server.header_timeout)
        .await
        .map_err(|e| DevError::Bind(addr, e))?;
    let addr = server.local_addr().map_err(DevError::Serve)?;

    let storer = Arc::new(Storer::new(bucket, &args.key_prefix));
    let config = WorkerConfig {
        poll_interval: args.poll_interval,
        concurrency: usize::from(args.worker_concurrency),
        retry_base: WorkerConfig::DEFAULT_RETRY_BASE,
    };
    let on_stored: worker::OnStored =
        Arc::new(|stored, message| print_stored(stored, &message.body));
    let worker = tokio::spawn(worker::run(
        queue.clone(),
        storer,
        config,
        Some(on_stored),
        shutdown.clone(),
    ));

    let url = format!("http://{addr}");
    let waiting = queue.depth().await.unwrap_or(0);
    println!(
        "Queue2Bucket (local mode) is running; Ctrl-C stops it, nothing accepted is lost.\n\
         \n  API     {url}\n  Token   {token}\n  Queue   {queue} ({waiting} waiting)\n  Bucket  {bucket}/\n\
         \nPost a sample email:\n\
         \n  curl -s {url}/email -H 'content-type: application/json' \\\n    \
         -d '{{\"data\":{{\"email_subject\":\"Hello\",\"email_sender\":\"alice@example.com\",\"email_timestream\":\"1732780800\",\"email_content\":\"Hi Bob\"}},\"token\":\"{token}\"}}'\n",
        queue = queue_path.display(),
        bucket = bucket_path
            .join(&args.key_prefix)
            .display()
            .to_string()
            .trim_end_matches('/'),
    );

    let served = server.run(shutdown.clone()).await;
    shutdown.cancel();
    let worked = worker.await.unwrap_or(Err(worker::LoopPanicked));
    served.map_err(DevError::Serve)?;
    Ok(worked?)
}
