//! The HTTP function: the Fargate API's router behind lambda_http.

use std::time::Duration;

use handlers::aws::AwsTuning;
use runtime_fargate::api::{self, Limits};
use runtime_fargate::config::LogFormat;
use runtime_fargate::{startup, telemetry};
use runtime_lambda::config::{ApiConfig, from_env};
use runtime_lambda::local::LocalArgs;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let ingest = match LocalArgs::from_env() {
        Some(local) => {
            telemetry::init(LogFormat::Text, "info");
            local.ingest()?
        }
        None => {
            let config: ApiConfig = from_env();
            telemetry::init(config.common.log_format, "info");
            let sdk = startup::sdk_config(&config.common, AwsTuning::API).await;
            startup::aws_ingest(&config.ingest, &sdk)
        }
    };
    let router = api::router(
        ingest,
        Limits {
            max_concurrent_requests: 256,
            // Lambda's own function timeout bounds an invocation too.
            request_timeout: Duration::from_secs(10),
        },
    );
    lambda_http::run(router).await
}
