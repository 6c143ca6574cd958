//! Builds the application's services from typed settings: validate-and-enqueue
//! ([`Ingest`]) and message-to-bucket ([`Storer`]) over the AWS adapters. The
//! runtimes call these once at start-up (a Fargate task) or init (a Lambda
//! function) and hand the result to their server or event loop.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;

use crate::aws::{AwsTuning, s3_client};
use crate::bucket::s3::S3Bucket;
use crate::claim::Staging;
use crate::ingest::Ingest;
use crate::queue::sqs::SqsQueue;
use crate::queue::{BatchingSender, Queue};
use crate::secret::SecretSource;
use crate::secret::ssm::SsmParameter;
use crate::settings::{CommonArgs, IngestArgs, LimitsArgs, StoreArgs};
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

/// How validate-and-enqueue is tuned.
pub struct IngestOptions {
    pub token_ttl: Duration,
    pub token_refresh_interval: Duration,
    pub sends_in_flight: usize,
    pub max_email_bytes: usize,
}

/// Validate-and-enqueue over the given queue, token store and staging.
pub fn ingest(
    queue: Arc<dyn Queue>,
    secret: Arc<dyn SecretSource>,
    staging: Option<Staging>,
    options: IngestOptions,
) -> Arc<Ingest> {
    let tokens = TokenChecker::new(secret, options.token_ttl, options.token_refresh_interval);
    Arc::new(Ingest::new(
        tokens,
        BatchingSender::spawn(queue, options.sends_in_flight),
        options.max_email_bytes,
        staging,
    ))
}

/// Validate-and-enqueue on SQS and SSM, staging large emails in S3 when a
/// bucket is set. Reads the queue's message size limit first.
pub async fn aws_ingest(args: &IngestArgs, limits: &LimitsArgs, sdk: &SdkConfig) -> Arc<Ingest> {
    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(sdk),
        &args.queue.sqs_queue_url,
        AwsTuning::API,
    )
    .read_limits_in_background();
    let secret = Arc::new(SsmParameter::new(
        aws_sdk_ssm::Client::new(sdk),
        &args.token_param_name,
    ));
    let staging = args.bucket.as_ref().map(|b| {
        Staging::new(
            Arc::new(S3Bucket::new(s3_client(sdk), &b.s3_bucket_name)),
            args.staging.s3_staging_prefix.clone(),
        )
    });
    ingest(
        Arc::new(queue),
        secret,
        staging,
        IngestOptions {
            token_ttl: args.token.token_cache_ttl,
            token_refresh_interval: args.token.token_refresh_interval,
            sends_in_flight: usize::from(args.sqs_send_concurrency),
            max_email_bytes: limits.max_email_bytes as usize,
        },
    )
}

/// Message-to-bucket on S3.
pub fn aws_storer(args: &StoreArgs, sdk: &SdkConfig) -> Arc<Storer> {
    let bucket = Arc::new(S3Bucket::new(s3_client(sdk), &args.bucket.s3_bucket_name));
    let staging = Staging::new(bucket.clone(), args.staging.s3_staging_prefix.clone());
    Arc::new(Storer::with_staging(
        bucket,
        args.keys.keys(),
        staging,
        args.memory.max_bytes_in_flight,
    ))
}
