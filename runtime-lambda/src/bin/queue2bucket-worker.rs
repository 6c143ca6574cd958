//! The SQS function: message-to-bucket for each record, partial batch
//! failures reported.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use runtime_lambda::{config, deadline, manifest, sqs};

fn main() -> Result<(), lambda_runtime::Error> {
    if manifest::print_if_requested(manifest::worker) {
        return Ok(());
    }
    config::runtime()?.block_on(async {
        let storer = sqs::storer().await?;
        lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
            let storer = storer.clone();
            let deadline = deadline::of(&event.context);
            async move {
                let response = sqs::handle(&storer, event.payload, deadline).await;
                handlers::metrics::flush_invocation();
                Ok::<_, lambda_runtime::Error>(response)
            }
        }))
        .await
    })
}
