//! The `queue2bucket` command line. Every setting is also an environment
//! variable of the same name; `queue2bucket <command> --help` lists them.

use clap::{Parser, Subcommand};
use handlers::runtime::RuntimeArgs;

#[cfg(feature = "local")]
use crate::dev::DevArgs;
use crate::redrive::RedriveArgs;
use crate::settings::{ApiArgs, PortArgs, WorkerArgs};
use crate::status::StatusArgs;

#[derive(Debug, Parser)]
#[command(
    name = "queue2bucket",
    version,
    about = "Email ingestion: an HTTP API that queues emails on SQS, and a worker that stores them in S3.",
    after_help = "Every option can also be given as the environment variable shown with it."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[cfg(feature = "local")]
    /// Run the whole pipeline locally: API and worker in one process, with an embedded queue (SQLite) and a directory as the bucket; no cloud account needed.
    Dev(DevArgs),
    /// Serve the HTTP API: POST /email checks the token and queues the email.
    Api(ApiArgs),
    /// Poll the queue and store each message in the bucket.
    Worker(WorkerArgs),
    /// Show messages waiting, in flight and dead-lettered, and the oldest's age; exit 1 if the dead-letter queue holds messages.
    Status(StatusArgs),
    /// Move every message of the queue's dead-letter queue back to the queue, to be stored (--dry-run: list them).
    Redrive(RedriveArgs),
    /// Exit 0 if the API on PORT answers GET / with 200 (container health check).
    Health(PortArgs),
    /// Print, as JSON, the environment variables and AWS actions of each component.
    #[command(hide = true)]
    Manifest,
}

impl Command {
    /// The runtime settings of the command; the defaults for those without.
    pub fn runtime(&self) -> RuntimeArgs {
        match self {
            Command::Api(args) => args.runtime.clone(),
            Command::Worker(args) => args.runtime.clone(),
            _ => RuntimeArgs::default(),
        }
    }
}
