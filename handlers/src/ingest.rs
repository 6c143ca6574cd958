//! Validate and enqueue: from a request body to a message on the queue.
//!
//! The order of checks is fixed: the body must be at most the largest email
//! accepted (413) and a JSON object with `data` (400), then the token must
//! match (401, or 503 when it cannot be checked), then `data` must be a valid
//! email (400), and only then is it sent (503 if the queue fails): in a queue
//! message if it fits, else through the claim check ([`crate::claim`]; 503 if
//! staging fails, 413 where no bucket is configured). Nothing is sent unless
//! every check passed, and a success is answered only once the queue has
//! acknowledged the message.

use std::borrow::Cow;

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::bucket::BucketError;
use crate::claim::Staging;
use crate::email::{EmailError, EmailMessage};
use crate::id::EmailId;
use crate::json::{self, ObjectError};
use crate::queue::{BatchingSender, OutgoingMessage, QueueError, SendError};
use crate::token::{TokenChecker, TokenError};

/// The largest email accepted unless `MAX_EMAIL_BYTES` says otherwise: the
/// request body, envelope included.
pub const DEFAULT_MAX_EMAIL_BYTES: usize = 5 * 1024 * 1024;

/// Why a submission was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("malformed JSON: {0}")]
    Syntax(String),
    #[error("the request body must be a JSON object")]
    NotAnObject,
    /// A key given twice; named only if it is `data` or `token`.
    #[error("{} is given more than once", .0.map_or("a key".to_owned(), |k| format!("`{k}`")))]
    DuplicateKey(Option<&'static str>),
    #[error(transparent)]
    TooDeep(EmailError),
    #[error("`data` is missing")]
    MissingData,
    #[error("`token` must be a string")]
    TokenNotString,
    #[error("the token in the Authorization header differs from the one in the body")]
    ConflictingTokens,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("invalid `data`: {0}")]
    Email(#[from] EmailError),
    /// Size and limit, in bytes.
    #[error("{0} bytes is over the {1}-byte limit")]
    TooLarge(usize, usize),
    #[error("the queue is unavailable")]
    Queue(#[source] QueueError),
    /// The claim check could not stage the email.
    #[error("the bucket is unavailable")]
    Staging(#[source] BucketError),
}

impl From<SendError> for IngestError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::TooLarge(n, limit) => Self::TooLarge(n, limit),
            SendError::Queue(q) => Self::Queue(q),
        }
    }
}

/// A request body read as `{"data": …, "token": …}`; `data` not yet
/// validated.
pub struct Submission<'a> {
    data: &'a RawValue,
    token: Option<Cow<'a, str>>,
}

impl<'a> Submission<'a> {
    /// Checks UTF-8 and the envelope's shape.
    pub fn parse(body: &'a [u8]) -> Result<Self, IngestError> {
        let body = std::str::from_utf8(body).map_err(|e| {
            IngestError::Syntax(format!("invalid UTF-8 at byte {}", e.valid_up_to()))
        })?;
        // One level more than an email may have: the envelope's own.
        let members = json::object_members(body, json::MAX_DEPTH + 1).map_err(|e| match e {
            ObjectError::Syntax(msg) => IngestError::Syntax(msg),
            ObjectError::NotAnObject => IngestError::NotAnObject,
            ObjectError::TooDeep => IngestError::TooDeep(EmailError::TooDeep),
        })?;
        if let Some(key) = json::duplicate_key(&members) {
            let known = ["data", "token"].into_iter().find(|k| *k == key);
            return Err(IngestError::DuplicateKey(known));
        }
        let mut data = None;
        let mut token = None;
        // Other members are ignored, as the original service did.
        for member in members {
            match member.key.as_ref() {
                "data" => data = Some(member.value),
                "token" => {
                    token = Some(
                        serde_json::from_str::<Cow<'a, str>>(member.value.get())
                            .map_err(|_| IngestError::TokenNotString)?,
                    )
                }
                _ => {}
            }
        }
        Ok(Self {
            data: data.ok_or(IngestError::MissingData)?,
            token,
        })
    }

    /// The token to check: from the `Authorization: Bearer` header
    /// (`bearer`) or the body; if both are given they must be equal.
    pub fn token<'b>(&'b self, bearer: Option<&'b str>) -> Result<&'b str, IngestError> {
        match (bearer, self.token.as_deref()) {
            (Some(h), Some(b)) if h != b => Err(IngestError::ConflictingTokens),
            (Some(h), _) => Ok(h),
            (None, Some(b)) => Ok(b),
            (None, None) => Err(TokenError::Missing.into()),
        }
    }

    /// The `data` object's JSON text, as sent.
    pub fn data(&self) -> &'a str {
        self.data.get()
    }

    /// Validates `data`.
    pub fn email(&self) -> Result<EmailMessage<'a>, EmailError> {
        EmailMessage::parse(self.data.get())
    }
}

pub struct Ingest {
    tokens: TokenChecker,
    sender: BatchingSender,
    max_email_bytes: usize,
    staging: Option<Staging>,
}

impl Ingest {
    /// `staging`: where emails too large for a queue message go; without
    /// it they are refused (413).
    pub fn new(
        tokens: TokenChecker,
        sender: BatchingSender,
        max_email_bytes: usize,
        staging: Option<Staging>,
    ) -> Self {
        Self {
            tokens,
            sender,
            max_email_bytes,
            staging,
        }
    }

    /// The largest request body accepted.
    pub fn max_email_bytes(&self) -> usize {
        self.max_email_bytes
    }

    pub fn tokens(&self) -> &TokenChecker {
        &self.tokens
    }

    /// Validates `body` and enqueues its email. `bearer` is the token from an
    /// `Authorization: Bearer` header, if the request had one.
    pub async fn submit(&self, body: Bytes, bearer: Option<&str>) -> Result<EmailId, IngestError> {
        if body.len() > self.max_email_bytes {
            return Err(IngestError::TooLarge(body.len(), self.max_email_bytes));
        }
        let submission = Submission::parse(&body)?;
        self.tokens.verify(submission.token(bearer)?).await?;
        let email = submission.email()?;
        let id = EmailId::new();
        let message = match &self.staging {
            Some(staging)
                if OutgoingMessage::inline_size(email.as_json().len())
                    > self.sender.max_message_bytes() =>
            {
                // S3 carries any text: the staged email is the bytes sent,
                // a view of the request body rather than a copy of it.
                let data = body.slice_ref(submission.data().as_bytes());
                let size = data.len() as u64;
                let key = staging
                    .stage(&id, data)
                    .await
                    .map_err(IngestError::Staging)?;
                OutgoingMessage::claim(id, &key, size)
            }
            _ => OutgoingMessage::new(id, email.into_json()),
        };
        self.sender.send(message).await?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::secret::SecretError;
    use crate::testing::{CountingSecret, MemoryQueue};

    const DATA: &str = r#"{"email_subject":"Hi","email_sender":"a@b.c","email_timestream":"1732780800","email_content":"Hello"}"#;

    const MAX_EMAIL: usize = 1024 * 1024;

    struct Fixture {
        ingest: Ingest,
        queue: Arc<MemoryQueue>,
        secret: Arc<CountingSecret>,
    }

    fn fixture() -> Fixture {
        let queue = Arc::new(MemoryQueue::default());
        let secret = Arc::new(CountingSecret::new("tok"));
        let tokens = TokenChecker::new(
            secret.clone(),
            Duration::from_secs(60),
            Duration::from_secs(5),
        );
        Fixture {
            ingest: Ingest::new(
                tokens,
                BatchingSender::spawn(queue.clone(), 2),
                MAX_EMAIL,
                None,
            ),
            queue,
            secret,
        }
    }

    fn body(data: &str, token: &str) -> String {
        format!(r#"{{"data": {data}, "token": "{token}"}}"#)
    }

    #[tokio::test]
    async fn a_valid_email_is_queued_verbatim() {
        let f = fixture();
        let id = f
            .ingest
            .submit(Bytes::from(body(DATA, "tok")), None)
            .await
            .unwrap();
        assert_eq!(f.queue.bodies(), vec![DATA.to_owned()]);
        assert!(EmailId::parse(&id.to_string()).is_some());
    }

    #[tokio::test]
    async fn the_token_may_come_from_the_header() {
        let f = fixture();
        let no_token = format!(r#"{{"data": {DATA}}}"#);
        f.ingest
            .submit(Bytes::from(no_token), Some("tok"))
            .await
            .unwrap();
        f.ingest
            .submit(Bytes::from(body(DATA, "tok")), Some("tok"))
            .await
            .unwrap();
        assert_eq!(
            f.ingest
                .submit(Bytes::from(body(DATA, "tok")), Some("other"))
                .await,
            Err(IngestError::ConflictingTokens)
        );
        assert_eq!(f.queue.len(), 2);
    }

    #[tokio::test]
    async fn every_refusal_leaves_the_queue_untouched() {
        let f = fixture();
        type Expect = fn(&IngestError) -> bool;
        let cases: Vec<(String, Option<&str>, Expect)> = vec![
            ("{".into(), None, |e| matches!(e, IngestError::Syntax(_))),
            ("[]".into(), None, |e| matches!(e, IngestError::NotAnObject)),
            (r#"{"token":"tok"}"#.into(), None, |e| {
                matches!(e, IngestError::MissingData)
            }),
            (format!(r#"{{"data":{DATA},"token":1}}"#), None, |e| {
                matches!(e, IngestError::TokenNotString)
            }),
            (
                format!(r#"{{"data":{DATA},"data":{DATA},"token":"tok"}}"#),
                None,
                |e| matches!(e, IngestError::DuplicateKey(Some("data"))),
            ),
            (format!(r#"{{"data":{DATA}}}"#), None, |e| {
                matches!(e, IngestError::Token(TokenError::Missing))
            }),
            (body(DATA, "nope"), None, |e| {
                matches!(e, IngestError::Token(TokenError::Invalid))
            }),
            (body("{}", "tok"), None, |e| {
                matches!(e, IngestError::Email(EmailError::MissingField(_)))
            }),
            (body(&"x".repeat(MAX_EMAIL), "tok"), None, |e| {
                matches!(e, IngestError::TooLarge(..))
            }),
        ];
        for (body, bearer, expected) in cases {
            let err = f
                .ingest
                .submit(Bytes::from(body.clone()), bearer)
                .await
                .unwrap_err();
            assert!(expected(&err), "{body:.60}: {err:?}");
        }
        let invalid_utf8 = [b"{\"data\":\"".as_slice(), &[0xff, 0xfe], b"\"}"].concat();
        assert!(matches!(
            f.ingest.submit(Bytes::from(invalid_utf8), None).await,
            Err(IngestError::Syntax(_))
        ));
        assert_eq!(f.queue.len(), 0);
    }

    #[tokio::test]
    async fn unauthenticated_requests_learn_nothing_about_the_email() {
        let f = fixture();
        assert_eq!(
            f.ingest.submit(Bytes::from(body("{}", "nope")), None).await,
            Err(IngestError::Token(TokenError::Invalid))
        );
    }

    #[tokio::test]
    async fn store_and_queue_outages_are_reported_as_such() {
        let f = fixture();
        f.secret.set(Err(SecretError("down".into())));
        assert!(matches!(
            f.ingest.submit(Bytes::from(body(DATA, "tok")), None).await,
            Err(IngestError::Token(TokenError::Unavailable(_)))
        ));
        let f = fixture();
        f.queue.fail_sends(true);
        assert!(matches!(
            f.ingest.submit(Bytes::from(body(DATA, "tok")), None).await,
            Err(IngestError::Queue(_))
        ));
        assert_eq!(f.queue.len(), 0);
    }

    #[tokio::test]
    async fn emails_too_large_for_a_message_go_through_the_bucket() {
        use crate::claim::Staging;
        use crate::keys::KeyPrefix;
        use crate::testing::MemoryBucket;

        let queue = Arc::new(MemoryQueue::default());
        queue.set_max_message_bytes(1024);
        let bucket = Arc::new(MemoryBucket::default());
        let staging = Staging::new(bucket.clone(), KeyPrefix::parse("staging/").unwrap());
        let tokens = TokenChecker::new(
            Arc::new(CountingSecret::new("tok")),
            Duration::from_secs(60),
            Duration::from_secs(5),
        );
        let ingest = Ingest::new(
            tokens,
            BatchingSender::spawn(queue.clone(), 2),
            MAX_EMAIL,
            Some(staging),
        );
        let small = ingest
            .submit(Bytes::from(body(DATA, "tok")), None)
            .await
            .unwrap();
        let large_data = DATA.replace("Hello", &"\\u00e9 big ".repeat(400));
        let large = ingest
            .submit(Bytes::from(body(&large_data, "tok")), None)
            .await
            .unwrap();
        let messages = queue.messages();
        assert_eq!(messages[0], (DATA.to_owned(), None), "the small one inline");
        assert_eq!(
            messages[1].1,
            Some(large_data.len() as u64),
            "the large one a claim"
        );
        assert!(messages[1].0.len() < 200, "a pointer, not the email");
        let staged = bucket.objects();
        assert_eq!(staged.len(), 1);
        let object = &staged[&format!("staging/{large}.json")];
        assert_eq!(object.body, large_data.as_bytes(), "staged byte for byte");
        assert!(!staged.contains_key(&format!("staging/{small}.json")));

        // Above the largest email: 413, and nothing staged or queued.
        let huge = DATA.replace("Hello", &"x".repeat(MAX_EMAIL));
        assert!(matches!(
            ingest.submit(Bytes::from(body(&huge, "tok")), None).await,
            Err(IngestError::TooLarge(..))
        ));
        assert_eq!((queue.len(), bucket.objects().len()), (2, 1));
    }

    #[tokio::test]
    async fn without_a_bucket_emails_too_large_for_a_message_are_refused() {
        let queue = Arc::new(MemoryQueue::default());
        queue.set_max_message_bytes(1024);
        let tokens = TokenChecker::new(
            Arc::new(CountingSecret::new("tok")),
            Duration::from_secs(60),
            Duration::from_secs(5),
        );
        let sender = BatchingSender::spawn(queue.clone(), 2);
        let ingest = Ingest::new(tokens, sender, MAX_EMAIL, None);
        let large_data = DATA.replace("Hello", &"y".repeat(2000));
        assert!(matches!(
            ingest
                .submit(Bytes::from(body(&large_data, "tok")), None)
                .await,
            Err(IngestError::TooLarge(..))
        ));
        assert_eq!(queue.len(), 0);
    }

    #[tokio::test]
    async fn a_failed_staging_is_unavailable_and_queues_nothing() {
        use crate::claim::Staging;
        use crate::keys::KeyPrefix;
        use crate::testing::MemoryBucket;

        let queue = Arc::new(MemoryQueue::default());
        queue.set_max_message_bytes(1024);
        let bucket = Arc::new(MemoryBucket::default());
        bucket.set_failing(true);
        let staging = Staging::new(bucket, KeyPrefix::parse("staging/").unwrap());
        let tokens = TokenChecker::new(
            Arc::new(CountingSecret::new("tok")),
            Duration::from_secs(60),
            Duration::from_secs(5),
        );
        let ingest = Ingest::new(
            tokens,
            BatchingSender::spawn(queue.clone(), 2),
            MAX_EMAIL,
            Some(staging),
        );
        let large_data = DATA.replace("Hello", &"z".repeat(2000));
        assert!(matches!(
            ingest
                .submit(Bytes::from(body(&large_data, "tok")), None)
                .await,
            Err(IngestError::Staging(_))
        ));
        assert_eq!(queue.len(), 0);
    }
}
