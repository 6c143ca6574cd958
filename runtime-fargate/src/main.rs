use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use handlers::telemetry;
use runtime_fargate::cli::{Cli, Command};
use runtime_fargate::{health, manifest, redrive, shutdown, startup, status};

// mimalloc, on glibc as on the image's static musl build: musl's own malloc
// cost the API 23 % more RSS, and on glibc mimalloc takes a tenth off the
// CPU per accepted email (bench, 10 connections; runtime-fargate/Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match cli.command.runtime().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("queue2bucket: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> ExitCode {
    match command {
        Command::Api(args) => {
            telemetry::init(args.common.log.log_format, "info");
            if let Err(e) = startup::run_api(args, shutdown::on_signal()).await {
                tracing::error!(error = %e, "the API server failed");
                return ExitCode::FAILURE;
            }
        }
        Command::Worker(args) => {
            telemetry::init(args.common.log.log_format, "info");
            if let Err(e) = args.store.check() {
                tracing::error!(error = e, "invalid settings");
                return ExitCode::FAILURE;
            }
            if let Err(e) = startup::run_worker(args, shutdown::on_signal()).await {
                tracing::error!(error = %e, "the worker failed");
                return ExitCode::FAILURE;
            }
        }
        #[cfg(feature = "local")]
        Command::Dev(args) => {
            telemetry::init(args.log.log_format, "warn");
            if let Err(e) = runtime_fargate::dev::run(args, shutdown::on_signal()).await {
                eprintln!("queue2bucket dev: {e}");
                return ExitCode::FAILURE;
            }
        }
        Command::Status(args) => {
            telemetry::init(args.common.log.log_format, "warn");
            match status::run(args, &mut std::io::stdout()).await {
                Ok(code) => return ExitCode::from(code),
                Err(e) => {
                    eprintln!("queue2bucket status: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        Command::Redrive(args) => {
            telemetry::init(args.common.log.log_format, "warn");
            if let Err(e) = redrive::run(args, &mut std::io::stdout()).await {
                eprintln!("queue2bucket redrive: {e}");
                return ExitCode::FAILURE;
            }
        }
        Command::Health(args) => {
            if let Err(e) = health::check(args.port).await {
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
