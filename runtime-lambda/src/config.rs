//! The functions' settings: the Fargate runtime's argument groups, read from
//! the environment only. A missing or malformed variable fails init with its
//! name.

use clap::Parser;
use runtime_fargate::config::{CommonArgs, IngestArgs, StoreArgs};

#[derive(Debug, Clone, Parser)]
#[command(name = "queue2bucket-api")]
pub struct ApiConfig {
    #[command(flatten)]
    pub ingest: IngestArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Clone, Parser)]
#[command(name = "queue2bucket-worker")]
pub struct WorkerConfig {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Parses `T` from the environment, or prints which variable is missing or
/// malformed and exits, which Lambda reports as an init error.
pub fn from_env<T: Parser>() -> T {
    let name = T::command().get_name().to_owned();
    T::try_parse_from([name]).unwrap_or_else(|e| e.exit())
}
