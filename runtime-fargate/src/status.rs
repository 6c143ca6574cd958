//! `queue2bucket status`: where the pipeline stands, from the command line:
//! messages waiting on the queue, in flight (received by a worker, not yet
//! deleted), in the dead-letter queue, and the age of the oldest message.
//! It exits 1 when the dead-letter queue holds messages (and 2 when it
//! cannot tell), so that a cron job or a CI smoke test can act on it.

use std::io::Write;
use std::time::{Duration, SystemTime};

use aws_sdk_sqs::types::QueueAttributeName;
use clap::Args;
use handlers::aws::AwsTuning;
#[cfg(feature = "local")]
use handlers::local::DataDirArgs;
use handlers::queue::QueueError;
use handlers::queue::sqs_dead_letters::SqsDeadLetters;
use handlers::settings::{CommonArgs, QueueArgs};
use handlers::startup::sdk_config;

#[derive(Debug, Clone, Args)]
// The queue is not needed with --data-dir: a missing one is reported by run.
#[command(mut_arg("sqs_queue_url", |a| a.required(false)))]
pub struct StatusArgs {
    #[cfg(feature = "local")]
    #[command(flatten)]
    pub local: DataDirArgs,

    #[command(flatten)]
    pub queue: Option<QueueArgs>,

    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("set SQS_QUEUE_URL (or --data-dir for the local mode)")]
    NoQueue,
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[cfg(feature = "local")]
    #[error(transparent)]
    Local(#[from] handlers::local::LocalError),
}

/// Where a queue stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub queue: String,
    pub waiting: u64,
    pub in_flight: u64,
    pub dead_letters: u64,
    /// None when nobody can say (CloudWatch has no recent datapoint).
    pub oldest: Option<Duration>,
}

impl Status {
    /// The process exit code: 0 healthy, 1 dead letters waiting.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.dead_letters > 0)
    }
}

async fn status(args: &StatusArgs) -> Result<Status, StatusError> {
    #[cfg(feature = "local")]
    if let Some(dir) = args.local.open()? {
        let queue = dir.queue(handlers::queue::sqlite::SqliteQueueConfig::default())?;
        let (waiting, in_flight, oldest) = queue.status().await?;
        return Ok(Status {
            queue: dir.queue_path().display().to_string(),
            waiting,
            in_flight,
            dead_letters: queue.dead_letter_count().await?,
            oldest: oldest.map(Duration::from_millis),
        });
    }
    let queue = args.queue.as_ref().ok_or(StatusError::NoQueue)?;
    let sdk = sdk_config(&args.common, AwsTuning::API).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let counts = |url: String| {
        let sqs = sqs.clone();
        async move {
            let attributes = sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .send()
                .await
                .map_err(|e| {
                    QueueError(format!(
                        "{url}: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(e)
                    ))
                })?
                .attributes
                .unwrap_or_default();
            let number = |name| {
                attributes
                    .get(&name)
                    .and_then(|v: &String| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            Ok::<_, QueueError>((
                number(QueueAttributeName::ApproximateNumberOfMessages),
                number(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            ))
        }
    };
    let url = queue.sqs_queue_url.clone();
    let (waiting, in_flight) = counts(url.clone()).await?;
    let dead = SqsDeadLetters::discover(sqs.clone(), &url).await?;
    let (dead_visible, dead_hidden) = counts(dead.dlq_url().to_owned()).await?;
    let name = url.rsplit('/').next().unwrap_or_default().to_owned();
    Ok(Status {
        queue: url,
        waiting,
        in_flight,
        dead_letters: dead_visible + dead_hidden,
        oldest: oldest_age(&aws_sdk_cloudwatch::Client::new(&sdk), &name).await,
    })
}

/// The queue's `ApproximateAgeOfOldestMessage`, which SQS reports only to
/// CloudWatch: the latest one-minute maximum of the last ten minutes.
async fn oldest_age(cloudwatch: &aws_sdk_cloudwatch::Client, queue_name: &str) -> Option<Duration> {
    use aws_sdk_cloudwatch::types::{Dimension, Statistic};
    let now = SystemTime::now();
    let output = cloudwatch
        .get_metric_statistics()
        .namespace("AWS/SQS")
        .metric_name("ApproximateAgeOfOldestMessage")
        .dimensions(
            Dimension::builder()
                .name("QueueName")
                .value(queue_name)
                .build(),
        )
        .start_time((now - Duration::from_secs(600)).into())
        .end_time(now.into())
        .period(60)
        .statistics(Statistic::Maximum)
        .send()
        .await
        .ok()?;
    let latest = output
        .datapoints()
        .iter()
        .filter_map(|d| Some((d.timestamp()?.secs(), d.maximum()?)))
        .max_by_key(|(at, _)| *at)?;
    Some(Duration::from_secs_f64(latest.1.max(0.0)))
}

/// Prints the status; the exit code to end with.
pub async fn run(args: StatusArgs, out: &mut impl Write) -> Result<u8, StatusError> {
    let status = status(&args).await?;
    let oldest = status
        .oldest
        .map_or("unknown (no recent CloudWatch datapoint)".to_owned(), |d| {
            format!("{} s", d.as_secs())
        });
    // A closed pipe (`| head`) is the reader's choice, not an error.
    let _ = writeln!(
        out,
        "queue              {}\nwaiting            {}\nin flight          {}\ndead-letter queue  {}\noldest message     {oldest}",
        status.queue, status.waiting, status.in_flight, status.dead_letters
    );
    if status.dead_letters > 0 {
        let _ = writeln!(
            out,
            "\n{} in the dead-letter queue: see `queue2bucket redrive --dry-run`",
            status.dead_letters
        );
    }
    Ok(status.exit_code())
}
