//! The functions' settings: the shared groups of [`handlers::settings`],
//! read from the environment only. A missing or malformed variable fails
//! init with its name.

use clap::Parser;
#[cfg(feature = "local")]
use handlers::local::{DataDir, LocalArgs, LocalError};
use handlers::metrics::MetricsArgs;
use handlers::runtime::RuntimeArgs;
use handlers::settings::{CommonArgs, IngestArgs, LimitsArgs, StoreArgs};

/// `queue2bucket-api` on AWS.
#[derive(Debug, Clone, Parser)]
#[command(name = "queue2bucket-api")]
pub struct ApiConfig {
    #[command(flatten)]
    pub ingest: IngestArgs,
    #[command(flatten)]
    pub limits: LimitsArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// Read first, by [`runtime`]; here so that the manifest and the start-up
    /// check cover it with the rest.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `queue2bucket-worker` on AWS.
#[derive(Debug, Clone, Parser)]
#[command(name = "queue2bucket-worker")]
pub struct WorkerConfig {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// Read first, by [`runtime`]; here so that the manifest and the start-up
    /// check cover it with the rest.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Either function over the local mode's data directory, when
/// `QUEUE2BUCKET_DATA_DIR` is set.
#[cfg(feature = "local")]
#[derive(Debug, Clone, Parser)]
#[command(name = "local mode", mut_arg("log_format", |a| a.default_value("text")))]
pub struct LocalConfig {
    #[command(flatten)]
    pub local: LocalArgs,
    #[command(flatten)]
    pub limits: LimitsArgs,
    #[command(flatten)]
    pub keys: handlers::settings::KeyArgs,
    #[command(flatten)]
    pub log: handlers::settings::LogArgs,
}

/// The local mode keeps its metrics to itself.
#[cfg(feature = "local")]
pub const LOCAL_METRICS: MetricsArgs = MetricsArgs {
    metrics_format: handlers::metrics::MetricsFormat::Off,
    metrics_namespace: String::new(),
};

/// The runtime settings alone, read before the runtime that reads the rest.
#[derive(Debug, Clone, Parser)]
#[command(name = "runtime")]
struct RuntimeConfig {
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// The function's async runtime, sized by `RUNTIME_THREADS`.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    from_env::<RuntimeConfig>().runtime.build()
}

/// Parses `T` from the environment, or prints which variable is missing or
/// malformed and exits, which Lambda reports as an init error.
pub fn from_env<T: Parser>() -> T {
    let name = T::command().get_name().to_owned();
    T::try_parse_from([name]).unwrap_or_else(|e| e.exit())
}

/// The local mode's settings and data directory, if `QUEUE2BUCKET_DATA_DIR`
/// is set.
#[cfg(feature = "local")]
pub fn local() -> Result<Option<(LocalConfig, DataDir)>, LocalError> {
    let config: LocalConfig = from_env();
    Ok(config.local.data_dir()?.map(|dir| (config, dir)))
}
