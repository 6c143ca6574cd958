//! The bucket port on Amazon S3, with conditional writes (`If-None-Match: *`)
//! so that a redelivered message can never create or overwrite an object.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use bytes::{Bytes, BytesMut};

use super::{Bucket, BucketError, NewObject, PutOutcome};
use crate::aws::describe;

pub struct S3Bucket {
    client: Client,
    name: String,
}

impl S3Bucket {
    /// IAM actions the worker calls: it writes emails under their key prefix,
    /// and reads and removes staged (claim-checked) ones. Reading a key that
    /// is gone answers 404 only to a caller that may list the bucket (403
    /// otherwise), hence `s3:ListBucket`, limited to the staging prefix and
    /// the key prefix (where it looks for an email whose staged copy is
    /// gone).
    pub const ACTIONS: &[&str] = &[
        "s3:PutObject",
        "s3:GetObject",
        "s3:DeleteObject",
        "s3:ListBucket",
    ];

    /// IAM actions the API calls: it stages emails too large for a queue
    /// message.
    pub const STAGE_ACTIONS: &[&str] = &["s3:PutObject"];

    pub fn new(client: Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
        }
    }
}

#[async_trait]
impl Bucket for S3Bucket {
    async fn put_if_absent(&self, object: &NewObject) -> Result<PutOutcome, BucketError> {
        let mut put = self
            .client
            .put_object()
            .bucket(&self.name)
            .key(&object.key)
            .content_type("application/json")
            .if_none_match("*")
            .body(ByteStream::from(object.body.clone()));
        for (name, value) in &object.metadata {
            put = put.metadata(*name, value);
        }
        match put.send().await {
            Ok(_) => Ok(PutOutcome::Created),
            // 412: the key exists. (409 ConditionalRequestConflict, a racing
            // write of the same key, is retried by the caller like any error.)
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
                Ok(PutOutcome::AlreadyExists)
            }
            Err(e) => Err(BucketError(describe(&e))),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, BucketError> {
        match self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
        {
            Ok(mut output) => {
                // One buffer sized from the declared length, filled chunk by
                // chunk: a collected body joined afterwards would hold a
                // large email twice. (Reserved up to a bound: the length is
                // the server's word; past it the buffer grows as bytes come.)
                let declared = output.content_length().unwrap_or(0).clamp(0, 64 << 20) as usize;
                let mut body = BytesMut::with_capacity(declared);
                while let Some(chunk) = output.body.next().await {
                    let chunk = chunk.map_err(|e| BucketError(format!("reading {key}: {e}")))?;
                    body.extend_from_slice(&chunk);
                }
                Ok(Some(body.freeze()))
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(e) => Err(BucketError(describe(&e))),
        }
    }

    /// A listing of the key itself as prefix, not a HEAD: the worker may
    /// list names below its prefixes but never read a stored email.
    async fn exists(&self, key: &str) -> Result<bool, BucketError> {
        let listed = self
            .client
            .list_objects_v2()
            .bucket(&self.name)
            .prefix(key)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| BucketError(describe(&e)))?;
        Ok(listed.contents().iter().any(|o| o.key() == Some(key)))
    }

    async fn delete(&self, key: &str) -> Result<(), BucketError> {
        self.client
            .delete_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| BucketError(describe(&e)))
    }
}
