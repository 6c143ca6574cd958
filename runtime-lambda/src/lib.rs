//! Queue2Bucket as AWS Lambda functions over the shared core (`handlers`).
//! Each entrypoint (`src/bin/`) is a few lines, as in the official Rust
//! runtime's examples: settings read once from the environment, services
//! built once at init, then the runtime loop.
//!
//! - `queue2bucket-api` serves the shared axum Router through `lambda_http`
//!   ([`http`]), so the functions and the Fargate API cannot drift apart.
//! - `queue2bucket-worker` runs the shared message-to-bucket step on each
//!   record of an SQS event ([`sqs`]).
//!
//! Both work to the invocation's deadline ([`deadline`]).

pub mod config;
pub mod deadline;
pub mod http;
pub mod manifest;
pub mod sqs;
