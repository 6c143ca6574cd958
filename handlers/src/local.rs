//! The local mode's data directory: an embedded queue (`queue.sqlite3`, with
//! SQS's visibility timeout, receive counts and dead-letter table) and a
//! directory as the bucket (`bucket/`). `queue2bucket dev` runs the API and
//! the worker over it; the Lambda functions use it instead of AWS when
//! `QUEUE2BUCKET_DATA_DIR` is set, so that `cargo lambda watch` needs no
//! emulator. Both read the same two settings, defined here.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::bucket::BucketError;
use crate::bucket::dir::DirBucket;
use crate::claim::Staging;
use crate::ingest::Ingest;
use crate::keys::{KeyPrefix, Keys};
use crate::queue::QueueError;
use crate::queue::sqlite::{SqliteQueue, SqliteQueueConfig};
use crate::secret::fixed::FixedSecret;
use crate::settings::MemoryArgs;
use crate::store::Storer;

/// Where the local mode's queue and bucket are.
#[derive(Debug, Clone, Args)]
pub struct DataDirArgs {
    /// The local mode's data directory: the queue (queue.sqlite3) and the bucket (bucket/).
    #[arg(
        long,
        env = "QUEUE2BUCKET_DATA_DIR",
        value_name = "QUEUE2BUCKET_DATA_DIR"
    )]
    pub data_dir: Option<PathBuf>,
}

impl DataDirArgs {
    /// The data directory, if one is set.
    pub fn open(&self) -> Result<Option<DataDir>, LocalError> {
        self.data_dir.clone().map(DataDir::create).transpose()
    }
}

#[derive(Debug, Clone, Args)]
pub struct LocalArgs {
    #[command(flatten)]
    pub dir: DataDirArgs,

    /// The API token of the local mode.
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
    #[error("data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error("QUEUE2BUCKET_TOKEN must be set with QUEUE2BUCKET_DATA_DIR")]
    NoToken,
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Bucket(#[from] BucketError),
}

/// A data directory, created if needed.
#[derive(Debug, Clone)]
pub struct DataDir(PathBuf);

impl DataDir {
    pub fn create(path: impl Into<PathBuf>) -> Result<Self, LocalError> {
        let path = path.into();
        std::fs::create_dir_all(&path).map_err(|e| LocalError::DataDir(path.clone(), e))?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The queue's database.
    pub fn queue_path(&self) -> PathBuf {
        self.0.join("queue.sqlite3")
    }

    /// The bucket's root.
    pub fn bucket_path(&self) -> PathBuf {
        self.0.join("bucket")
    }

    pub fn queue(&self, config: SqliteQueueConfig) -> Result<SqliteQueue, QueueError> {
        SqliteQueue::open(&self.queue_path(), config)
    }

    pub fn bucket(&self) -> Result<DirBucket, BucketError> {
        DirBucket::open(self.bucket_path())
    }
}

/// Validate-and-enqueue into a local queue, against a fixed token, staging
/// large emails in the local bucket as S3 would.
pub fn ingest(
    queue: Arc<SqliteQueue>,
    token: String,
    staging: Staging,
    max_email_bytes: usize,
) -> Arc<Ingest> {
    // A fixed token never changes, and reading it costs nothing: trust it
    // for as long as the process lives, and check any other token against
    // it at once.
    let forever = Duration::from_secs(86_400 * 365);
    crate::startup::ingest(
        queue,
        Arc::new(FixedSecret::new(token)),
        Some(staging),
        crate::startup::IngestOptions {
            token_ttl: forever,
            token_refresh_interval: Duration::ZERO,
            // SQLite commits one batch at a time: more in flight only waits.
            sends_in_flight: 2,
            max_email_bytes,
        },
    )
}

/// The local bucket's staging area, under the usual prefix.
pub fn staging(bucket: Arc<DirBucket>) -> Staging {
    Staging::new(
        bucket,
        KeyPrefix::parse(crate::claim::DEFAULT_STAGING_PREFIX).expect("a valid prefix"),
    )
}

impl LocalArgs {
    /// The data directory, if one is set.
    pub fn data_dir(&self) -> Result<Option<DataDir>, LocalError> {
        self.dir.open()
    }

    /// Validate-and-enqueue into the data directory's queue, for a process
    /// that only sends (the Lambda HTTP function in the local mode).
    pub fn ingest(&self, dir: &DataDir, max_email_bytes: usize) -> Result<Arc<Ingest>, LocalError> {
        let token = self.token.clone().ok_or(LocalError::NoToken)?;
        // The queue's settings matter to receivers only.
        let queue = dir.queue(SqliteQueueConfig::default())?;
        let staging = staging(Arc::new(dir.bucket()?));
        Ok(ingest(Arc::new(queue), token, staging, max_email_bytes))
    }

    /// Message-to-bucket into the data directory's bucket, holding at most
    /// `memory` bytes of staged emails at once.
    pub fn storer(
        &self,
        dir: &DataDir,
        keys: Keys,
        memory: &MemoryArgs,
    ) -> Result<Arc<Storer>, LocalError> {
        let bucket = Arc::new(dir.bucket()?);
        Ok(Arc::new(Storer::with_staging(
            bucket.clone(),
            keys,
            staging(bucket),
            memory.max_bytes_in_flight,
        )))
    }
}
