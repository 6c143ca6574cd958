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

/// A bucket call that failed. The text is for logs, never for clients; an
/// adapter over a service starts it with the service's error code
/// (`SlowDown: …`), which [`BucketError::cause`] reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bucket unavailable: {0}")]
pub struct BucketError(pub String);

/// Why a bucket call failed, as far as an operator acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCause {
    /// The service asks to slow down (S3's `SlowDown`, 503): too many
    /// writes on one prefix, or a burst.
    Throttled,
    /// The service refuses the caller (`AccessDenied`, bad or expired
    /// credentials, a KMS key it may not use): a permission to fix.
    Denied,
    /// Anything else: server errors, timeouts, connections.
    Other,
}

impl BucketError {
    pub fn cause(&self) -> FailureCause {
        let code = self.0.split(':').next().unwrap_or_default();
        match code {
            "SlowDown"
            | "ServiceUnavailable"
            | "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "TooManyRequests"
            | "RequestThrottled" => FailureCause::Throttled,
            "AccessDenied"
            | "AllAccessDisabled"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "InvalidToken"
            | "KMS.AccessDeniedException"
            | "KMS.DisabledException"
            | "KMS.KMSInvalidStateException" => FailureCause::Denied,
            _ => FailureCause::Other,
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_told_by_the_service_error_code_it_starts_with() {
        let cause = |text: &str| BucketError(text.into()).cause();
        assert_eq!(
            cause("SlowDown: Please reduce your request rate."),
            FailureCause::Throttled
        );
        assert_eq!(
            cause("ServiceUnavailable: try again"),
            FailureCause::Throttled
        );
        assert_eq!(cause("AccessDenied: Access Denied"), FailureCause::Denied);
        assert_eq!(
            cause("KMS.AccessDeniedException: no grant"),
            FailureCause::Denied
        );
        for other in [
            "InternalError: oops",
            "timed out",
            "connection failed: refused",
            "",
        ] {
            assert_eq!(cause(other), FailureCause::Other, "{other:?}");
        }
        // A code later in the text is not the failure's own.
        assert_eq!(cause("timed out: after AccessDenied"), FailureCause::Other);
    }
}
