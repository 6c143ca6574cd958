//! Logging, set up once per process: JSON lines (or text) on stdout, level
//! from `RUST_LOG` (default `info`; `warn` in the local mode, which prints
//! one line per stored email instead). Nothing logged carries a token or an
//! email's content: requests and messages are logged by id, outcome and
//! latency only.

use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// `default_level` applies when `RUST_LOG` is unset.
pub fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    // A second call (tests that start several apps) keeps the first set-up.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
