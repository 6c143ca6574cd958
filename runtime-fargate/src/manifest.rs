//! `queue2bucket manifest`: what each component reads from the environment
//! and which AWS actions it calls, as JSON. The infrastructure's consistency
//! test compares Terraform's task definitions and IAM policies against it, so
//! both are derived from the code: environment names from the very argument
//! definitions that read them, actions from the adapters that call them.

use clap::{Args, Command, CommandFactory};
use handlers::bucket::s3::S3Bucket;
use handlers::queue::sqs::SqsQueue;
use handlers::secret::ssm::SsmParameter;
use serde_json::{Value, json};

use crate::cli::Cli;
use crate::config::{CommonArgs, IngestArgs, StoreArgs};

/// Read by the logging set-up rather than by an argument.
const EXTRA_OPTIONAL_ENV: &[&str] = &["RUST_LOG"];

pub fn manifest() -> Value {
    let cli = Cli::command();
    let sub = |name: &str| {
        cli.find_subcommand(name)
            .cloned()
            .expect("subcommand exists")
    };
    let api_actions: Vec<&str> = [SqsQueue::SEND_ACTIONS, SsmParameter::ACTIONS].concat();
    let worker_actions: Vec<&str> = [SqsQueue::RECEIVE_ACTIONS, S3Bucket::ACTIONS].concat();
    let lambda_api = CommonArgs::augment_args(IngestArgs::augment_args(Command::new("lambda-api")));
    let lambda_worker =
        CommonArgs::augment_args(StoreArgs::augment_args(Command::new("lambda-worker")));
    json!({
        "health_check_path": "/",
        "default_port": 8000,
        "components": {
            "api": component(&sub("api"), &api_actions),
            "worker": component(&sub("worker"), &worker_actions),
            "lambda-api": component(&lambda_api, &api_actions),
            "lambda-worker": component(&lambda_worker, S3Bucket::ACTIONS),
        }
    })
}

fn component(command: &Command, actions: &[&str]) -> Value {
    let mut required = Vec::new();
    let mut optional: Vec<String> = EXTRA_OPTIONAL_ENV.iter().map(|s| s.to_string()).collect();
    for arg in command.get_arguments() {
        let Some(env) = arg.get_env() else { continue };
        let env = env.to_string_lossy().into_owned();
        if arg.is_required_set() {
            required.push(env);
        } else {
            optional.push(env);
        }
    }
    required.sort();
    optional.sort();
    let mut actions = actions.to_vec();
    actions.sort();
    json!({
        "env": { "required": required, "optional": optional },
        "aws_actions": actions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_names_what_each_component_reads() {
        let m = manifest();
        let api = &m["components"]["api"];
        assert_eq!(
            api["env"]["required"],
            json!(["SQS_QUEUE_URL", "TOKEN_PARAM_NAME"])
        );
        assert!(
            api["env"]["optional"]
                .as_array()
                .unwrap()
                .contains(&json!("PORT"))
        );
        assert_eq!(
            api["aws_actions"],
            json!(["sqs:SendMessage", "ssm:GetParameter"])
        );
        let worker = &m["components"]["worker"];
        assert_eq!(
            worker["env"]["required"],
            json!(["S3_BUCKET_NAME", "SQS_QUEUE_URL"])
        );
        assert!(
            worker["aws_actions"]
                .as_array()
                .unwrap()
                .contains(&json!("s3:PutObject"))
        );
        let lambda_worker = &m["components"]["lambda-worker"];
        assert_eq!(lambda_worker["env"]["required"], json!(["S3_BUCKET_NAME"]));
        assert_eq!(lambda_worker["aws_actions"], json!(["s3:PutObject"]));
    }
}
