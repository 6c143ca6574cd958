//! The HTTP function: the shared API router, built once at init, served by
//! `lambda_http` behind an ALB, API Gateway (REST or HTTP API) or a Function
//! URL.
//!
//! Each request works to its invocation's deadline ([`crate::deadline`]): an
//! answer not ready by then is a 503 with `Retry-After`, which a client
//! retries, instead of Lambda's timeout, which an ALB turns into a 502.

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use handlers::api::{self, Deadline};
use handlers::aws::AwsTuning;
use handlers::metrics::{self, Service};
use handlers::startup::{aws_ingest, sdk_config};
use handlers::telemetry;

use crate::config::{self, ApiConfig};
use crate::deadline;

/// The router over AWS, or over the local mode's data directory when
/// `QUEUE2BUCKET_DATA_DIR` is set.
pub async fn router() -> Result<Router, lambda_http::Error> {
    #[cfg(feature = "local")]
    if let Some((local, dir)) = config::local()? {
        telemetry::init(local.log.log_format, "info");
        metrics::install(Service::Api, &config::LOCAL_METRICS);
        let ingest = local
            .local
            .ingest(&dir, local.limits.max_email_bytes as usize)?;
        return Ok(with_deadline(api::router(ingest, (&local.limits).into())));
    }
    let config: ApiConfig = config::from_env();
    telemetry::init(config.common.log.log_format, "info");
    metrics::install(Service::Api, &config.metrics);
    let sdk = sdk_config(&config.common, AwsTuning::API).await;
    let ingest = aws_ingest(&config.ingest, &config.limits, &sdk).await;
    Ok(with_deadline(api::router(ingest, (&config.limits).into())))
}

/// The router, each request given its invocation's deadline, and the
/// metrics written after each invocation.
fn with_deadline(router: Router) -> Router {
    router
        .layer(axum::middleware::from_fn(
            |request: Request, next: Next| async move {
                let response = next.run(request).await;
                metrics::flush_invocation();
                response
            },
        ))
        .layer(axum::middleware::map_request(
            |mut request: Request| async move {
                let context = request.extensions().get::<lambda_runtime::Context>();
                if let Some(deadline) = context.and_then(deadline::of) {
                    request.extensions_mut().insert(Deadline(deadline));
                }
                request
            },
        ))
}
