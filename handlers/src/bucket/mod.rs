//! The bucket port: write-once storage of email objects, S3's way.

#[cfg(feature = "local")]
pub mod dir;
#[cfg(feature = "aws")]
pub mod s3;

use async_trait::async_trait;
use bytes::Bytes;

/// An object to store. Metadata names are lower-case and without S3's
/// `x-amz-meta-` prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewObject {
    pub key: String,
    pub body: Bytes,
    pub metadata: Vec<(&'static str, String)>,
}

/// What a conditional write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object is new.
    Created,
    /// An object with this key was already there and was left untouched: a
    /// redelivered message, stored before.
    AlreadyExists,
}

/// A bucket call that failed. The text is for logs, never for clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bucket unavailable: {0}")]
pub struct BucketError(pub String);

#[async_trait]
pub trait Bucket: Send + Sync + 'static {
    /// Stores the object unless its key exists; never overwrites.
    async fn put_if_absent(&self, object: &NewObject) -> Result<PutOutcome, BucketError>;

    /// An object's body; None if there is no such key.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, BucketError>;

    /// Removes an object; a key that is not there is not an error.
    async fn delete(&self, key: &str) -> Result<(), BucketError>;

    /// Whether an object is stored under `key`, without reading it.
    async fn exists(&self, key: &str) -> Result<bool, BucketError>;
}
