//! Queue2Bucket as AWS Lambda functions. Each entrypoint (`src/bin/`) is a
//! few lines: settings read once from the same environment variables as the
//! Fargate runtime, SDK clients and caches built once at init, then the
//! runtime loop.
//!
//! - `queue2bucket-api` serves the very axum Router of the Fargate API
//!   through `lambda_http` (ALB, API Gateway REST and HTTP APIs, Function
//!   URLs), so the two cannot drift apart.
//! - `queue2bucket-worker` runs the same message-to-bucket step on each
//!   record of an SQS event ([`sqs`]).

pub mod config;
pub mod local;
pub mod sqs;
