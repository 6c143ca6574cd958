//! The functions against the local mode's queue and bucket instead of AWS:
//! set `QUEUE2BUCKET_DATA_DIR` (and, for the HTTP function,
//! `QUEUE2BUCKET_TOKEN`) to the values `queue2bucket dev` uses, and the
//! functions run under `cargo lambda watch` with no emulator and no account.
//! The HTTP function then queues into the SQLite queue that the `dev`
//! process's worker drains; the SQS function writes files where `dev` does.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use handlers::bucket::dir::DirBucket;
use handlers::ingest::Ingest;
use handlers::queue::sqlite::{SqliteQueue, SqliteQueueConfig};
use handlers::store::{DEFAULT_PREFIX, Storer};
use runtime_fargate::dev;

#[derive(Debug, Clone, Parser)]
#[command(name = "local mode")]
pub struct LocalArgs {
    /// The local mode's data directory; unset means AWS.
    #[arg(
        long,
        env = "QUEUE2BUCKET_DATA_DIR",
        value_name = "QUEUE2BUCKET_DATA_DIR"
    )]
    pub data_dir: Option<PathBuf>,

    /// The token the local mode's API accepts.
    #[arg(
        long,
        env = "QUEUE2BUCKET_TOKEN",
        value_name = "QUEUE2BUCKET_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("QUEUE2BUCKET_TOKEN must be set with QUEUE2BUCKET_DATA_DIR")]
    NoToken,
    #[error(transparent)]
    Queue(#[from] handlers::queue::QueueError),
    #[error(transparent)]
    Bucket(#[from] handlers::bucket::BucketError),
}

impl LocalArgs {
    /// The local settings, if `QUEUE2BUCKET_DATA_DIR` is set.
    pub fn from_env() -> Option<Self> {
        let args: Self = crate::config::from_env();
        args.data_dir.is_some().then_some(args)
    }

    fn dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_default()
    }

    pub fn ingest(&self) -> Result<Arc<Ingest>, LocalError> {
        let token = self.token.clone().ok_or(LocalError::NoToken)?;
        std::fs::create_dir_all(self.dir()).map_err(|e| {
            LocalError::Queue(handlers::queue::QueueError(format!(
                "{}: {e}",
                self.dir().display()
            )))
        })?;
        let queue = SqliteQueue::open(
            &dev::queue_path(&self.dir()),
            // Used by receivers only; this function only sends.
            SqliteQueueConfig::default(),
        )?;
        Ok(dev::local_ingest(Arc::new(queue), token))
    }

    pub fn storer(&self) -> Result<Arc<Storer>, LocalError> {
        let bucket = DirBucket::open(dev::bucket_path(&self.dir()))?;
        Ok(Arc::new(Storer::new(Arc::new(bucket), DEFAULT_PREFIX)))
    }
}
