//! One place for how the AWS SDK clients are built: credentials, region and
//! endpoints from the SDK's standard chain (`AWS_ENDPOINT_URL` and the
//! per-service `AWS_ENDPOINT_URL_<SERVICE>` point them at an emulator), with
//! retries and timeouts set explicitly rather than left to defaults.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_sqs::error::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Retry and timeout settings for every AWS call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsTuning {
    /// TCP + TLS connection set-up.
    pub connect_timeout: Duration,
    /// One attempt, from request to full response. Long polls extend it by
    /// their wait time.
    pub attempt_timeout: Duration,
    /// All attempts of one call, back-offs included.
    pub operation_timeout: Duration,
    /// Attempts per call, the first included ("standard" retry mode:
    /// exponential back-off with full jitter, on throttling, 5xx and
    /// connection errors).
    pub max_attempts: u32,
}

impl AwsTuning {
    /// For the API: a client is waiting, so fail over to a 503 quickly.
    pub const API: Self = Self {
        connect_timeout: Duration::from_secs(1),
        attempt_timeout: Duration::from_secs(2),
        operation_timeout: Duration::from_secs(5),
        max_attempts: 3,
    };

    /// For the worker: nobody is waiting, so give S3 and SQS more room.
    pub const WORKER: Self = Self {
        connect_timeout: Duration::from_secs(2),
        attempt_timeout: Duration::from_secs(10),
        operation_timeout: Duration::from_secs(30),
        max_attempts: 4,
    };

    pub fn timeout_config(&self, extra_wait: Duration) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.attempt_timeout + extra_wait)
            .operation_attempt_timeout(self.attempt_timeout + extra_wait)
            .operation_timeout(self.operation_timeout + extra_wait)
            .build()
    }
}

/// Loads the shared SDK configuration from the environment.
pub async fn sdk_config(tuning: AwsTuning) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        // Payloads here are at most 256 KiB: the per-request throughput
        // monitor costs more than it could ever catch; timeouts bound calls.
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(tuning.max_attempts)
                .with_initial_backoff(Duration::from_millis(100))
                .with_max_backoff(Duration::from_secs(5)),
        )
        .timeout_config(tuning.timeout_config(Duration::ZERO))
        .load()
        .await
}

/// An S3 client. Against an emulator endpoint, path-style addressing, since
/// `<bucket>.127.0.0.1` does not resolve.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let custom_endpoint =
        config.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let s3 = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(custom_endpoint)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// Describes an SDK error in one short line for logs: the service's error
/// code and message, or the kind of transport failure. Never a request body.
pub(crate) fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(e) => {
            let e = e.err();
            format!(
                "{}: {}",
                e.code().unwrap_or("unknown error"),
                e.message().unwrap_or_default()
            )
        }
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        SdkError::DispatchFailure(e) => {
            let kind = if e.is_io() {
                "connection failed"
            } else if e.is_timeout() {
                "timed out"
            } else {
                "dispatch failure"
            };
            let cause = e
                .as_connector_error()
                .and_then(|c| std::error::Error::source(c));
            match cause {
                Some(source) => format!("{kind}: {source}"),
                None => kind.to_owned(),
            }
        }
        SdkError::ResponseError(_) => "unreadable response".to_owned(),
        SdkError::ConstructionFailure(_) => "request could not be built".to_owned(),
        _ => "unknown failure".to_owned(),
    }
}
