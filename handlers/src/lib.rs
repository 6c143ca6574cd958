//! Queue2Bucket's shared core: everything the two runtimes have in common,
//! free of any server loop or Lambda runtime.
//!
//! - The domain: the email type and its validation ([`email`]), ids
//!   ([`id`]), token checking ([`token`]), validate-and-enqueue ([`ingest`])
//!   and message-to-bucket ([`store`], its keys in [`keys`]).
//! - The ports with their adapters: [`queue`] (SQS, SQLite), [`bucket`] (S3,
//!   a directory), [`secret`] (SSM, a fixed value). The AWS adapters are the
//!   `aws` feature, the embedded ones of the local mode the `local` feature.
//! - The inbound side: the HTTP API as an axum Router ([`api`]).
//! - What a runtime needs to start: the settings groups ([`settings`]), the
//!   async runtime sized from them ([`runtime`]), the logging set-up
//!   ([`telemetry`]), building the services from settings ([`startup`], and
//!   [`local`] for the local mode's data directory), the
//!   log line per processed message ([`report`]), the metrics
//!   ([`metrics`]) and the description of a component for the
//!   infrastructure's checks ([`manifest`]).
//!
//! `runtime-fargate` serves [`api::router`] with its own HTTP server and
//! feeds [`store::Storer`] from its SQS poll loop; `runtime-lambda` hands
//! the same router to `lambda_http` and the same storer to each record of an
//! SQS event. Neither runtime depends on the other.

pub mod api;
#[cfg(feature = "aws")]
pub mod aws;
pub mod bucket;
pub mod claim;
pub mod email;
pub mod id;
pub mod ingest;
mod json;
pub mod keys;
#[cfg(feature = "local")]
pub mod local;
#[cfg(feature = "aws")]
pub mod manifest;
pub mod metrics;
pub mod queue;
pub mod report;
pub mod runtime;
pub mod secret;
pub mod settings;
#[cfg(feature = "aws")]
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod token;

/// In-memory fakes of the ports, for unit tests (here and in the runtimes).
#[cfg(any(test, feature = "testing"))]
pub mod testing;
