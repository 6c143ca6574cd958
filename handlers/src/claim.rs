//! The claim check, for emails too large for a queue message: the API
//! stores the email's exact `data` bytes in the bucket under a staging key
//! made of its id (`<staging prefix><id>.json`, a conditional write), then
//! queues a small pointer message (the id attribute, and `q2b-claim` with the
//! size). The worker reads the staged bytes, stores the email under its
//! usual key exactly as an inline one (conditional write), then removes the
//! staged object. The pattern of Amazon's SQS Extended Client libraries,
//! built in.
//!
//! Every step can be repeated safely, so no email is lost or stored twice:
//! - the API answers 503 if staging or queueing fails; a staged object whose
//!   message never made it is left for the bucket's lifecycle rule on the
//!   staging prefix;
//! - a redelivered pointer whose staged object is gone finds the email
//!   already stored under its key (the staged object is removed only after
//!   that), and is simply acknowledged;
//! - the key is derived from the id, never read from the message, so a
//!   forged message cannot make the worker read or remove other objects.

use std::sync::Arc;

use bytes::Bytes;

use crate::bucket::{Bucket, BucketError, NewObject};
use crate::id::EmailId;
use crate::keys::KeyPrefix;

/// The staging prefix unless `S3_STAGING_PREFIX` says otherwise.
pub const DEFAULT_STAGING_PREFIX: &str = "staging/";

/// Where staged emails live.
#[derive(Clone)]
pub struct Staging {
    bucket: Arc<dyn Bucket>,
    prefix: KeyPrefix,
}

impl Staging {
    pub fn new(bucket: Arc<dyn Bucket>, prefix: KeyPrefix) -> Self {
        Self { bucket, prefix }
    }

    /// The staged object of an email.
    pub fn key(&self, id: &EmailId) -> String {
        format!("{}{id}.json", self.prefix.as_str())
    }

    /// Stages an email's exact bytes; answers the key. Staging the same id
    /// twice keeps the first copy.
    pub async fn stage(&self, id: &EmailId, data: Bytes) -> Result<String, BucketError> {
        let key = self.key(id);
        let object = NewObject {
            key: key.clone(),
            body: data,
            metadata: vec![("id", id.to_string())],
        };
        self.bucket.put_if_absent(&object).await?;
        Ok(key)
    }

    /// The staged bytes of an email, if they are still there.
    pub async fn fetch(&self, id: &EmailId) -> Result<Option<Bytes>, BucketError> {
        self.bucket.get(&self.key(id)).await
    }

    /// Removes a staged email once it is stored.
    pub async fn remove(&self, id: &EmailId) -> Result<(), BucketError> {
        self.bucket.delete(&self.key(id)).await
    }

    pub fn prefix(&self) -> &KeyPrefix {
        &self.prefix
    }
}
