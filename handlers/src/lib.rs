//! Queue2Bucket's shared logic, free of any HTTP server or Lambda runtime:
//! the email type ([`email`]), token checking ([`token`]), validate-and-enqueue
//! ([`ingest`]), message-to-bucket ([`store`]), and the ports with their
//! adapters ([`queue`], [`bucket`], [`secret`]).

#[cfg(feature = "aws")]
pub mod aws;
pub mod bucket;
pub mod email;
pub mod id;
pub mod ingest;
mod json;
pub mod queue;
pub mod secret;
pub mod store;
pub mod token;

/// In-memory fakes of the ports, for unit tests (here and in the runtimes).
pub mod testing;
