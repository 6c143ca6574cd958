//! `queue2bucket-api manifest` and `queue2bucket-worker manifest`: what each
//! function reads from the environment and which AWS actions it calls (see
//! [`handlers::manifest`]). Lambda starts a function's `bootstrap` without
//! arguments, so the argument can never be given by accident.

use clap::CommandFactory;
use handlers::aws::AwsTuning;
use handlers::bucket::s3::S3Bucket;
use handlers::manifest::{component, document};
use handlers::queue::sqs::SqsQueue;
use handlers::secret::ssm::SsmParameter;
use serde_json::Value;

use crate::config::{ApiConfig, WorkerConfig};

/// The HTTP function.
pub fn api() -> Value {
    let actions = [
        SqsQueue::SEND_ACTIONS,
        SsmParameter::ACTIONS,
        S3Bucket::STAGE_ACTIONS,
    ]
    .concat();
    document(vec![(
        "lambda-api",
        component(&ApiConfig::command(), &actions, AwsTuning::API),
    )])
}

/// The SQS function. Its event source mapping, not the function, receives
/// and deletes the messages.
pub fn worker() -> Value {
    document(vec![(
        "lambda-worker",
        component(
            &WorkerConfig::command(),
            S3Bucket::ACTIONS,
            AwsTuning::WORKER,
        ),
    )])
}

/// Prints `manifest` and answers true if the process was started with the
/// argument `manifest`.
pub fn print_if_requested(manifest: fn() -> Value) -> bool {
    use std::io::Write;
    if std::env::args().nth(1).as_deref() != Some("manifest") {
        return false;
    }
    // A closed pipe (`| head`) is the reader's choice, not an error.
    let _ = writeln!(std::io::stdout(), "{:#}", manifest());
    true
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_function_names_what_it_reads_and_calls() {
        let api = &api()["components"]["lambda-api"];
        assert_eq!(
            api["env"]["required"],
            json!(["SQS_QUEUE_URL", "TOKEN_PARAM_NAME"])
        );
        assert!(
            api["env"]["optional"]
                .as_array()
                .unwrap()
                .contains(&json!("REQUEST_TIMEOUT"))
        );
        let worker = &worker()["components"]["lambda-worker"];
        assert_eq!(worker["env"]["required"], json!(["S3_BUCKET_NAME"]));
        assert_eq!(
            worker["aws_actions"],
            json!([
                "s3:DeleteObject",
                "s3:GetObject",
                "s3:ListBucket",
                "s3:PutObject"
            ])
        );
    }
}
