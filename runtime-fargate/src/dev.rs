//! `queue2bucket dev`: the whole pipeline in one process on a laptop, with
//! embedded backends and no cloud account: the same API router, validation
//! and worker loop as in production, over an SQLite queue and a directory as
//! the bucket.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use handlers::api;
use handlers::local::{self, DataDir, LocalArgs, LocalError};
use handlers::metrics::{self, MetricsArgs, MetricsFormat, Service, names};
use handlers::queue::sqlite::{SqliteQueue, SqliteQueueConfig};
use handlers::settings::{KeyArgs, LimitsArgs, LogArgs, seconds};
use handlers::store::{Stored, Storer};
use tokio_util::sync::CancellationToken;

use crate::server::Server;
use crate::settings::{PollArgs, ServerArgs};
use crate::worker::{self, WorkerConfig};

/// Where `dev` keeps its queue and bucket unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = ".queue2bucket";

/// The local mode's settings: the production groups, with defaults for a
/// laptop (a short poll window so that Ctrl-C is quick, readable logs, a
/// data directory in the current one).
#[derive(Debug, Clone, Args)]
#[command(
    mut_arg("poll_interval", |a| a.default_value("1")),
    mut_arg("log_format", |a| a.default_value("text")),
    mut_arg("data_dir", |a| a.default_value(DEFAULT_DATA_DIR)),
)]
pub struct DevArgs {
    #[command(flatten)]
    pub server: ServerArgs,

    /// Address to listen on; the default keeps the API on this machine.
    #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1")]
    pub host: IpAddr,

    #[command(flatten)]
    pub local: LocalArgs,

    /// Seconds a received message stays invisible before it is delivered again.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = seconds(1, 43_200))]
    pub visibility_timeout: Duration,

    /// Receives after which a message that could not be stored moves to the dead-letter table.
    #[arg(long, value_name = "N", default_value = "5", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_receives: u32,

    #[command(flatten)]
    pub poll: PollArgs,

    #[command(flatten)]
    pub keys: KeyArgs,

    #[command(flatten)]
    pub limits: LimitsArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("server: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Worker(#[from] worker::LoopPanicked),
    #[error("{0}")]
    Settings(String),
}

/// How often the local mode prints its summary line.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// Every [`SUMMARY_INTERVAL`], when anything changed, one line: emails
/// accepted and stored since the start, messages waiting, and dead letters.
/// The local mode's metrics, instead of EMF documents.
fn summarise(queue: Arc<SqliteQueue>, shutdown: CancellationToken) {
    let counts = metrics::counting(
        Service::Api,
        &MetricsArgs {
            metrics_format: MetricsFormat::Off,
            metrics_namespace: String::new(),
        },
    );
    tokio::spawn(async move {
        let mut last = None;
        let mut every = tokio::time::interval(SUMMARY_INTERVAL);
        every.tick().await;
        while tokio::select! {
            () = shutdown.cancelled() => false,
            _ = every.tick() => true,
        } {
            let now = (
                counts.total(names::EMAILS_ACCEPTED),
                counts.total(names::EMAILS_STORED),
                queue.depth().await.unwrap_or(0),
                queue.dead_letter_count().await.unwrap_or(0),
            );
            if last != Some(now) {
                let (accepted, stored, waiting, dead) = now;
                let _ = writeln!(
                    std::io::stdout(),
                    "accepted {accepted}, stored {stored} since the start; {waiting} waiting, {dead} in the dead-letter table"
                );
                last = Some(now);
            }
        }
    });
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
    let dir = match args.local.data_dir()? {
        Some(dir) => dir,
        None => DataDir::create(DEFAULT_DATA_DIR)?,
    };
    let queue = Arc::new(
        dir.queue(SqliteQueueConfig {
            visibility_timeout: args.visibility_timeout,
            max_receives: args.max_receives,
        })
        .map_err(LocalError::from)?,
    );
    let bucket = Arc::new(dir.bucket().map_err(LocalError::from)?);
    let token = args.local.token.clone().unwrap_or_else(random_token);
    let staging = local::staging(bucket.clone());
    handlers::settings::layout(&args.keys.s3_key_prefix, staging.prefix())
        .map_err(DevError::Settings)?;

    let ingest = local::ingest(
        queue.clone(),
        token.clone(),
        staging.clone(),
        args.limits.max_email_bytes as usize,
    );
    let router = api::router(ingest, (&args.limits).into());
    let addr = SocketAddr::new(args.host, args.server.listen.port);
    let server = Server::bind(addr, router, args.server.idle_limits())
        .await
        .map_err(|e| DevError::Bind(addr, e))?;
    let addr = server.local_addr().map_err(DevError::Serve)?;

    let storer = Arc::new(Storer::with_staging(
        bucket.clone(),
        args.keys.keys(),
        staging,
        args.limits.memory.max_bytes_in_flight,
    ));
    let on_stored: worker::OnStored =
        Arc::new(|stored, message| print_stored(stored, &message.body));
    let worker = tokio::spawn(worker::run(
        queue.clone(),
        storer,
        WorkerConfig::from(&args.poll),
        Some(on_stored),
        shutdown.clone(),
    ));

    summarise(queue.clone(), shutdown.clone());

    let url = format!("http://{addr}");
    let waiting = queue.depth().await.unwrap_or(0);
    println!(
        "Queue2Bucket (local mode) is running; Ctrl-C stops it, nothing accepted is lost.\n\
         \n  API     {url}\n  Token   {token}\n  Queue   {queue} ({waiting} waiting)\n  Bucket  {bucket}/\n\
         \nPost a sample email:\n\
         \n  curl -s {url}/email -H 'content-type: application/json' \\\n    \
         -d '{{\"data\":{{\"email_subject\":\"Hello\",\"email_sender\":\"alice@example.com\",\"email_timestream\":\"1732780800\",\"email_content\":\"Hi Bob\"}},\"token\":\"{token}\"}}'\n",
        queue = dir.queue_path().display(),
        bucket = dir
            .bucket_path()
            .join(args.keys.s3_key_prefix.as_str())
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

#[cfg(test)]
mod tests {
    use clap::Parser;
    use handlers::queue::sqlite::SqliteQueueConfig;

    use crate::cli::{Cli, Command};

    /// `dev`'s queue flags and the local mode's queue defaults (used where
    /// a data dir is opened without them: redrive, status, the Lambda local
    /// mode) are two spellings of one setting; they must agree.
    #[test]
    fn dev_defaults_are_the_local_queue_defaults() {
        let Command::Dev(args) = Cli::parse_from(["queue2bucket", "dev"]).command else {
            panic!("not the dev command");
        };
        let defaults = SqliteQueueConfig::default();
        assert_eq!(args.visibility_timeout, defaults.visibility_timeout);
        assert_eq!(args.max_receives, defaults.max_receives);
    }
}
