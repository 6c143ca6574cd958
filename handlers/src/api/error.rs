//! The one place where errors become HTTP answers: a status and a JSON body
//! `{"error": "..."}` that says what is wrong without internals.

use crate::ingest::IngestError;
use crate::token::TokenError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Seconds a client is asked to wait after a 503.
const RETRY_AFTER_SECS: &str = "2";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// The limit, in bytes.
    #[error("the request body exceeds {0} bytes")]
    BodyTooLarge(usize),
    #[error("more than one Authorization header")]
    RepeatedAuthorization,
    #[error("unsupported Authorization header; use `Bearer <token>`")]
    BadAuthorization,
    #[error("the request body could not be read")]
    BodyUnreadable,
    #[error("the request took too long")]
    Timeout,
    /// The runtime's deadline came before the answer.
    #[error("the request could not be completed in time")]
    OutOfTime,
    #[error("too many requests in progress")]
    Overloaded,
    #[error("no such resource")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use IngestError as I;
        match self {
            Self::Ingest(e) => match e {
                I::Syntax(_)
                | I::NotAnObject
                | I::DuplicateKey(_)
                | I::TooDeep(_)
                | I::MissingData
                | I::TokenNotString
                | I::ConflictingTokens
                | I::Email(_) => StatusCode::BAD_REQUEST,
                I::Token(TokenError::Missing | TokenError::Invalid) => StatusCode::UNAUTHORIZED,
                I::Token(TokenError::Unavailable(_)) | I::Queue(_) | I::Staging(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                I::TooLarge(..) => StatusCode::PAYLOAD_TOO_LARGE,
            },
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RepeatedAuthorization | Self::BodyUnreadable => StatusCode::BAD_REQUEST,
            Self::BadAuthorization => StatusCode::UNAUTHORIZED,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::Overloaded | Self::OutOfTime => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

/// Marks a response as an error, for the request log and the metrics.
#[derive(Clone)]
pub struct ErrorKind {
    pub message: String,
    /// The counter this error counts in, if any.
    pub metric: Option<&'static str>,
}

impl ApiError {
    /// The counter of this answer (see [`crate::metrics`]); none for a path
    /// or method the API does not have.
    pub fn metric(&self) -> Option<&'static str> {
        use crate::metrics::names::*;
        use IngestError as I;
        Some(match self {
            Self::Ingest(e) => match e {
                I::Syntax(_)
                | I::NotAnObject
                | I::DuplicateKey(_)
                | I::TooDeep(_)
                | I::MissingData
                | I::TokenNotString
                | I::ConflictingTokens
                | I::Email(_) => REJECTED_INVALID,
                I::Token(TokenError::Missing | TokenError::Invalid) => REJECTED_UNAUTHORIZED,
                I::Token(TokenError::Unavailable(_)) => UNAVAILABLE_TOKEN_STORE,
                I::Queue(_) => UNAVAILABLE_QUEUE,
                I::Staging(_) => UNAVAILABLE_BUCKET,
                I::TooLarge(..) => REJECTED_TOO_LARGE,
            },
            Self::UnsupportedMediaType => REJECTED_MEDIA_TYPE,
            Self::BodyTooLarge(_) => REJECTED_TOO_LARGE,
            Self::RepeatedAuthorization | Self::BodyUnreadable => REJECTED_INVALID,
            Self::BadAuthorization => REJECTED_UNAUTHORIZED,
            Self::Timeout => REJECTED_TIMEOUT,
            Self::OutOfTime => UNAVAILABLE_DEADLINE,
            Self::Overloaded => UNAVAILABLE_OVERLOADED,
            Self::NotFound | Self::MethodNotAllowed => return None,
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let metric = self.metric();
        let message = self.to_string();
        let body = serde_json::json!({ "error": message }).to_string();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match status {
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECS),
                );
            }
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
            .extensions_mut()
            .insert(ErrorKind { message, metric });
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::EmailError;
    use crate::queue::QueueError;
    use crate::secret::SecretError;

    #[test]
    fn statuses() {
        let cases: Vec<(ApiError, u16)> = vec![
            (IngestError::Syntax("x".into()).into(), 400),
            (IngestError::Email(EmailError::BlankSender).into(), 400),
            (IngestError::ConflictingTokens.into(), 400),
            (IngestError::Token(TokenError::Missing).into(), 401),
            (IngestError::Token(TokenError::Invalid).into(), 401),
            (
                IngestError::Token(TokenError::Unavailable(SecretError("x".into()))).into(),
                503,
            ),
            (IngestError::Queue(QueueError("x".into())).into(), 503),
            (IngestError::TooLarge(2, 1).into(), 413),
            (ApiError::UnsupportedMediaType, 415),
            (ApiError::BodyTooLarge(1), 413),
            (ApiError::Timeout, 408),
            (ApiError::Overloaded, 503),
            (ApiError::OutOfTime, 503),
        ];
        for (err, status) in cases {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
        }
    }

    #[test]
    fn errors_are_json_and_hide_internals() {
        let response = ApiError::from(IngestError::Queue(QueueError(
            "dispatch failure: connection refused to 10.0.0.1".into(),
        )))
        .into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], RETRY_AFTER_SECS);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let kind = response.extensions().get::<ErrorKind>().unwrap().clone();
        assert_eq!(kind.message, "the queue is unavailable");
        assert_eq!(kind.metric, Some(crate::metrics::names::UNAVAILABLE_QUEUE));
    }
}
