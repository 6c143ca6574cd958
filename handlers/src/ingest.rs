//! Validate and enqueue: from a request body to a message on the queue.
//!
//! The order of checks is fixed: the body must be a JSON object with `data`
//! (400), then the token must match (401, or 503 when it cannot be checked),
//! then `data` must be a valid email (400) that fits in a queue message (413),
//! and only then is it sent (503 if the queue fails). Nothing is sent unless
//! every check passed, and a success is answered only once the queue has
//! acknowledged the message.

use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::email::{EmailError, EmailMessage};
use crate::id::EmailId;
use crate::json::{self, ObjectError};
use crate::queue::{BatchingSender, MAX_MESSAGE_BYTES, OutgoingMessage, QueueError, SendError};
use crate::token::{TokenChecker, TokenError};

/// Largest request body accepted. With the id attribute added, every accepted
/// email fits in one queue message of [`MAX_MESSAGE_BYTES`].
pub const MAX_BODY_BYTES: usize = MAX_MESSAGE_BYTES - 1024;

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
}

impl From<SendError> for IngestError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::TooLarge(n) => Self::TooLarge(n, MAX_MESSAGE_BYTES),
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
    /// Checks size, UTF-8 and the envelope's shape.
    pub fn parse(body: &'a [u8]) -> Result<Self, IngestError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(IngestError::TooLarge(body.len(), MAX_BODY_BYTES));
        }
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
    pub fn email(&self) -> Result<EmailMessage, EmailError> {
        EmailMessage::parse(self.data.get())
    }
}

pub struct Ingest {
    tokens: TokenChecker,
    sender: BatchingSender,
}

impl Ingest {
    pub fn new(tokens: TokenChecker, sender: BatchingSender) -> Self {
        Self { tokens, sender }
    }

    pub fn tokens(&self) -> &TokenChecker {
        &self.tokens
    }

    /// Validates `body` and enqueues its email. `bearer` is the token from an
    /// `Authorization: Bearer` header, if the request had one.
    pub async fn submit(&self, body: &[u8], bearer: Option<&str>) -> Result<EmailId, IngestError> {
        let submission = Submission::parse(body)?;
        self.tokens.verify(submission.token(bearer)?).await?;
        let email = submission.email()?;
        let id = EmailId::new();
        self.sender
            .send(OutgoingMessage {
                id,
                body: email.into_json(),
            })
            .await?;
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
            ingest: Ingest::new(tokens, BatchingSender::spawn(queue.clone(), 2)),
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
            .submit(body(DATA, "tok").as_bytes(), None)
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
            .submit(no_token.as_bytes(), Some("tok"))
            .await
            .unwrap();
        f.ingest
            .submit(body(DATA, "tok").as_bytes(), Some("tok"))
            .await
            .unwrap();
        assert_eq!(
            f.ingest
                .submit(body(DATA, "tok").as_bytes(), Some("other"))
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
            (body(&"x".repeat(MAX_BODY_BYTES), "tok"), None, |e| {
                matches!(e, IngestError::TooLarge(..))
            }),
        ];
        for (body, bearer, expected) in cases {
            let err = f.ingest.submit(body.as_bytes(), bearer).await.unwrap_err();
            assert!(expected(&err), "{body:.60}: {err:?}");
        }
        let invalid_utf8 = [b"{\"data\":\"".as_slice(), &[0xff, 0xfe], b"\"}"].concat();
        assert!(matches!(
            f.ingest.submit(&invalid_utf8, None).await,
            Err(IngestError::Syntax(_))
        ));
        assert_eq!(f.queue.len(), 0);
    }

    #[tokio::test]
    async fn unauthenticated_requests_learn_nothing_about_the_email() {
        let f = fixture();
        assert_eq!(
            f.ingest.submit(body("{}", "nope").as_bytes(), None).await,
            Err(IngestError::Token(TokenError::Invalid))
        );
    }

    #[tokio::test]
    async fn store_and_queue_outages_are_reported_as_such() {
        let f = fixture();
        f.secret.set(Err(SecretError("down".into())));
        assert!(matches!(
            f.ingest.submit(body(DATA, "tok").as_bytes(), None).await,
            Err(IngestError::Token(TokenError::Unavailable(_)))
        ));
        let f = fixture();
        f.queue.fail_sends(true);
        assert!(matches!(
            f.ingest.submit(body(DATA, "tok").as_bytes(), None).await,
            Err(IngestError::Queue(_))
        ));
        assert_eq!(f.queue.len(), 0);
    }
}
