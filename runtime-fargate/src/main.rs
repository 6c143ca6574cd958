use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use runtime_fargate::cli::{Cli, Command};
use runtime_fargate::{dev, health, manifest, shutdown, startup, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Api(args) => {
            telemetry::init(args.common.log_format, "info");
            if let Err(e) = startup::run_api(args, shutdown::on_signal()).await {
                tracing::error!(error = %e, "the API server failed");
                return ExitCode::FAILURE;
            }
        }
        Command::Worker(args) => {
            telemetry::init(args.common.log_format, "info");
            if let Err(e) = startup::run_worker(args, shutdown::on_signal()).await {
                tracing::error!(error = %e, "the worker failed");
                return ExitCode::FAILURE;
            }
        }
        Command::Dev(args) => {
            telemetry::init(args.log_format, "warn");
            if let Err(e) = dev::run(args, shutdown::on_signal()).await {
                eprintln!("queue2bucket dev: {e}");
                return ExitCode::FAILURE;
            }
        }
        Command::Health { port } => {
            if let Err(e) = health::check(port).await {
                eprintln!("unhealthy: {e}");
                return ExitCode::FAILURE;
            }
        }
        Command::Manifest => {
            // A closed pipe (`| head`) is the reader's choice, not an error.
            let _ = writeln!(std::io::stdout(), "{:#}", manifest::manifest());
        }
    }
    ExitCode::SUCCESS
}
