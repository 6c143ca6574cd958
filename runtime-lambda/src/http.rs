//! The HTTP function: the shared API router, built once at init, served by
//! `lambda_http` behind an ALB, API Gateway (REST or HTTP API) or a Function
//! URL.

use axum::Router;
use handlers::api;
use handlers::aws::AwsTuning;
use handlers::startup::{aws_ingest, sdk_config};
use handlers::telemetry;

use crate::config::{self, ApiConfig};

/// The router over AWS, or over the local mode's data directory when
/// `QUEUE2BUCKET_DATA_DIR` is set.
pub async fn router() -> Result<Router, lambda_http::Error> {
    #[cfg(feature = "local")]
    if let Some((local, dir)) = config::local()? {
        telemetry::init(local.log.log_format, "info");
        let ingest = local.local.ingest(&dir)?;
        return Ok(api::router(ingest, (&local.limits).into()));
    }
    let config: ApiConfig = config::from_env();
    telemetry::init(config.common.log.log_format, "info");
    let sdk = sdk_config(&config.common, AwsTuning::API).await;
    let ingest = aws_ingest(&config.ingest, &sdk);
    Ok(api::router(ingest, (&config.limits).into()))
}
