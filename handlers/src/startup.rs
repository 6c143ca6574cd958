//! Builds the application's services from typed settings: validate-and-enqueue
//! ([`Ingest`]) and message-to-bucket ([`Storer`]) over the AWS adapters. The
//! runtimes call these once at start-up (a Fargate task) or init (a Lambda
//! function) and hand the result to their server or event loop.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;

use crate::aws::{AwsTuning, s3_client};
use crate::bucket::s3::S3Bucket;
use crate::ingest::Ingest;
use crate::queue::sqs::SqsQueue;
use crate::queue::{BatchingSender, Queue};
use crate::secret::SecretSource;
use crate::secret::ssm::SsmParameter;
use crate::settings::{CommonArgs, IngestArgs, StoreArgs};
use crate::store::Storer;
use crate::token::TokenChecker;

/// The SDK configuration for this process, region from the settings if given.
pub async fn sdk_config(common: &CommonArgs, tuning: AwsTuning) -> SdkConfig {
    let config = crate::aws::sdk_config(tuning).await;
    match &common.aws_region {
        Some(region) => config
            .into_builder()
            .region(aws_config::Region::new(region.clone()))
            .build(),
        None => config,
    }
}

/// Validate-and-enqueue over the given queue and token store.
pub fn ingest(
    queue: Arc<dyn Queue>,
    secret: Arc<dyn SecretSource>,
    token_ttl: Duration,
    token_refresh_interval: Duration,
    sends_in_flight: usize,
) -> Arc<Ingest> {
    let tokens = TokenChecker::new(secret, token_ttl, token_refresh_interval);
    Arc::new(Ingest::new(
        tokens,
        BatchingSender::spawn(queue, sends_in_flight),
    ))
}

/// Validate-and-enqueue on SQS and SSM.
pub fn aws_ingest(args: &IngestArgs, sdk: &SdkConfig) -> Arc<Ingest> {
    let queue = Arc::new(SqsQueue::new(
        aws_sdk_sqs::Client::new(sdk),
        &args.queue.sqs_queue_url,
        AwsTuning::API,
    ));
    let secret = Arc::new(SsmParameter::new(
        aws_sdk_ssm::Client::new(sdk),
        &args.token_param_name,
    ));
    ingest(
        queue,
        secret,
        args.token.token_cache_ttl,
        args.token.token_refresh_interval,
        usize::from(args.sqs_send_concurrency),
    )
}

/// Message-to-bucket on S3.
pub fn aws_storer(args: &StoreArgs, sdk: &SdkConfig) -> Arc<Storer> {
    let bucket = Arc::new(S3Bucket::new(s3_client(sdk), &args.s3_bucket_name));
    Arc::new(Storer::new(bucket, args.keys.s3_key_prefix.clone()))
}
