//! Queue2Bucket on ECS Fargate: the `queue2bucket` command line ([`cli`]),
//! the HTTP server in front of the shared API router ([`server`],
//! with its connection timeouts in [`idle`]), the SQS
//! poll loop ([`worker`]), their start-up ([`startup`]) and shutdown
//! ([`shutdown`]), the container health check ([`health`]), the operator's
//! commands ([`status`], [`redrive`]) and the local mode ([`dev`]). The shared core is the `handlers` crate.

pub mod cli;
#[cfg(feature = "local")]
pub mod dev;
pub mod health;
pub mod idle;
pub mod manifest;
pub mod redrive;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod startup;
pub mod status;
pub mod worker;
