//! `queue2bucket redrive`: moves every message of the queue's dead-letter
//! queue back to the queue, so that the worker stores the emails an outage
//! sent there; `--dry-run` lists them instead. On AWS the dead-letter queue
//! is found from the queue's redrive policy (`SQS_QUEUE_URL` and the usual
//! AWS settings are all it needs); `--data-dir` does the same for the local
//! mode's queue.

use std::io::Write;
use std::sync::Arc;

use clap::Args;
use handlers::aws::AwsTuning;
#[cfg(feature = "local")]
use handlers::local::DataDirArgs;
use handlers::queue::sqs_dead_letters::SqsDeadLetters;
use handlers::queue::{DeadLetter, DeadLetters, QueueError};
use handlers::settings::{CommonArgs, QueueArgs};
use handlers::startup::sdk_config;

#[derive(Debug, Clone, Args)]
// The queue is not needed with --data-dir: a missing one is reported by run.
#[command(mut_arg("sqs_queue_url", |a| a.required(false)))]
pub struct RedriveArgs {
    /// List the messages waiting in the dead-letter queue (email id, when sent, receives) without moving anything.
    #[arg(long)]
    pub dry_run: bool,

    #[cfg(feature = "local")]
    #[command(flatten)]
    pub local: DataDirArgs,

    #[command(flatten)]
    pub queue: Option<QueueArgs>,

    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error("set SQS_QUEUE_URL (or --data-dir for the local mode)")]
    NoQueue,
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[cfg(feature = "local")]
    #[error(transparent)]
    Local(#[from] handlers::local::LocalError),
}

async fn dead_letters(args: &RedriveArgs) -> Result<Arc<dyn DeadLetters>, RedriveError> {
    #[cfg(feature = "local")]
    if let Some(dir) = args.local.open()? {
        let queue = dir.queue(handlers::queue::sqlite::SqliteQueueConfig::default())?;
        return Ok(Arc::new(queue));
    }
    let queue = args.queue.as_ref().ok_or(RedriveError::NoQueue)?;
    let sdk = sdk_config(&args.common, AwsTuning::WORKER).await;
    let client = aws_sdk_sqs::Client::new(&sdk);
    Ok(Arc::new(
        SqsDeadLetters::discover(client, &queue.sqs_queue_url).await?,
    ))
}

/// Runs the command, writing its report to `out`.
pub async fn run(args: RedriveArgs, out: &mut impl Write) -> Result<(), RedriveError> {
    let dead = dead_letters(&args).await?;
    // A closed pipe (`| head`) is the reader's choice, not an error.
    if args.dry_run {
        let waiting = dead.list().await?;
        let _ = writeln!(
            out,
            "{} waiting in {}",
            count(waiting.len() as u64),
            dead.describe()
        );
        for letter in &waiting {
            let _ = writeln!(out, "  {}", line(letter));
        }
    } else {
        let moved = dead.redrive().await?;
        let _ = writeln!(
            out,
            "moved {} from {} back to the queue",
            count(moved),
            dead.describe()
        );
    }
    Ok(())
}

fn count(n: u64) -> String {
    match n {
        1 => "1 message".to_owned(),
        n => format!("{n} messages"),
    }
}

fn line(letter: &DeadLetter) -> String {
    let sent = letter
        .sent_at_ms
        .and_then(|ms| {
            aws_smithy_types::DateTime::from_millis(ms as i64)
                .fmt(aws_smithy_types::date_time::Format::DateTime)
                .ok()
        })
        .unwrap_or_else(|| "?".into());
    format!(
        "{}  sent {sent}  received {} times  (message {})",
        letter.id, letter.receive_count, letter.message_id
    )
}
