//! The SQS function: message-to-bucket for each record, partial batch
//! failures reported.

use aws_lambda_events::event::sqs::SqsEvent;
use handlers::aws::AwsTuning;
use lambda_runtime::{LambdaEvent, service_fn};
use runtime_fargate::config::LogFormat;
use runtime_fargate::{startup, telemetry};
use runtime_lambda::config::{WorkerConfig, from_env};
use runtime_lambda::local::LocalArgs;
use runtime_lambda::sqs;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let storer = match LocalArgs::from_env() {
        Some(local) => {
            telemetry::init(LogFormat::Text, "info");
            local.storer()?
        }
        None => {
            let config: WorkerConfig = from_env();
            telemetry::init(config.common.log_format, "info");
            let sdk = startup::sdk_config(&config.common, AwsTuning::WORKER).await;
            startup::aws_storer(&config.store, &sdk)
        }
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let storer = storer.clone();
        async move { Ok::<_, lambda_runtime::Error>(sqs::handle(&storer, event.payload).await) }
    }))
    .await
}
