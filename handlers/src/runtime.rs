//! The async runtime a process runs on, sized by `RUNTIME_THREADS`.
//!
//! Tokio's default is one thread per CPU the process sees. A Fargate task or
//! a Lambda function with less than two vCPUs can see more CPUs than its
//! share (a 0.25 vCPU Fargate task typically sees 2) while it may use a
//! fraction of one: the threads then spend that share waking each other. Measured on the instant-answer stub
//! (bench, 2 CPUs), the API spends a third less CPU per accepted email on one
//! thread than on two, for as many emails a second or more, and one thread
//! is Tokio's current-thread scheduler, a fifth less again at 10 connections.
//! Terraform sets the variable from each task's or function's vCPUs.

use clap::Args;

/// How many threads run requests and messages.
#[derive(Debug, Clone, Default, Args)]
pub struct RuntimeArgs {
    /// Threads of the async runtime that serve requests and store messages; default: one per CPU the process sees. Set it to the vCPUs of the task or function (1 below 2 vCPUs).
    #[arg(long, env = "RUNTIME_THREADS", value_name = "RUNTIME_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub runtime_threads: Option<u16>,
}

impl RuntimeArgs {
    /// A runtime with I/O and timers, of the configured size: one thread is
    /// Tokio's current-thread scheduler, with no work stealing to pay for.
    pub fn build(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = match self.runtime_threads {
            Some(1) => tokio::runtime::Builder::new_current_thread(),
            Some(threads) => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(threads.into());
                builder
            }
            None => tokio::runtime::Builder::new_multi_thread(),
        };
        builder.enable_all().build()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        runtime: RuntimeArgs,
    }

    #[test]
    fn the_runtime_has_the_configured_threads() {
        let cli = Cli::try_parse_from(["q2b", "--runtime-threads", "3"]).unwrap();
        let runtime = cli.runtime.build().unwrap();
        assert_eq!(runtime.metrics().num_workers(), 3);
    }

    #[test]
    fn one_thread_is_the_current_thread_scheduler() {
        let cli = Cli::try_parse_from(["q2b", "--runtime-threads", "1"]).unwrap();
        let runtime = cli.runtime.build().unwrap();
        assert_eq!(
            runtime.handle().runtime_flavor(),
            tokio::runtime::RuntimeFlavor::CurrentThread
        );
        // Timers and I/O are enabled: a sleep completes.
        runtime.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(1)).await });
    }

    #[test]
    fn zero_threads_is_refused_naming_the_setting() {
        let err = Cli::try_parse_from(["q2b", "--runtime-threads", "0"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("RUNTIME_THREADS"), "{err}");
    }
}
