//! Queue2Bucket on ECS Fargate: the axum API ([`api`]), the SQS poll loop
//! ([`worker`]), their settings ([`config`]) and wiring ([`startup`]).

pub mod api;
pub mod cli;
pub mod config;
pub mod dev;
pub mod health;
pub mod manifest;
pub mod shutdown;
pub mod startup;
pub mod telemetry;
pub mod worker;
