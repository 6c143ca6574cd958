//! `queue2bucket manifest`: what the two ECS services read from the
//! environment and which AWS actions they call (see [`handlers::manifest`]),
//! plus the health check path and port the load balancer uses.

use clap::CommandFactory;
use handlers::aws::AwsTuning;
use handlers::bucket::s3::S3Bucket;
use handlers::manifest::{component, document};
use handlers::queue::sqs::SqsQueue;
use handlers::secret::ssm::SsmParameter;
use serde_json::{Value, json};

use crate::cli::Cli;

pub fn manifest() -> Value {
    let cli = Cli::command();
    let sub = |name: &str| {
        cli.find_subcommand(name)
            .cloned()
            .expect("subcommand exists")
    };
    let api_actions = [
        SqsQueue::SEND_ACTIONS,
        SsmParameter::ACTIONS,
        S3Bucket::STAGE_ACTIONS,
    ]
    .concat();
    let worker_actions = [SqsQueue::RECEIVE_ACTIONS, S3Bucket::ACTIONS].concat();
    let mut manifest = document(vec![
        ("api", component(&sub("api"), &api_actions, AwsTuning::API)),
        (
            "worker",
            component(&sub("worker"), &worker_actions, AwsTuning::WORKER),
        ),
    ]);
    manifest["health_check_path"] = json!("/");
    manifest["default_port"] = json!(crate::settings::DEFAULT_PORT);
    manifest["metrics"] = handlers::manifest::metrics();
    manifest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_names_what_each_service_reads() {
        let m = manifest();
        let api = &m["components"]["api"];
        assert_eq!(
            api["env"]["required"],
            json!(["SQS_QUEUE_URL", "TOKEN_PARAM_NAME"])
        );
        let optional = api["env"]["optional"].as_array().unwrap();
        for name in ["PORT", "MAX_CONCURRENT_REQUESTS", "TOKEN_CACHE_TTL"] {
            assert!(optional.contains(&json!(name)), "{name}");
        }
        assert_eq!(
            api["aws_actions"],
            json!([
                "s3:PutObject",
                "sqs:GetQueueAttributes",
                "sqs:SendMessage",
                "ssm:GetParameter"
            ])
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
        assert_eq!(worker["aws_call_timeout_secs"], json!(30));
    }
}
