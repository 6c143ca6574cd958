//! An invocation's deadline, which both functions work to: Lambda kills a
//! function still running at its timeout, and then an ALB answers 502 and an
//! SQS event source counts every record of the batch as failed. Each
//! function stops in time to give an answer of its own.

use std::time::{Duration, SystemTime};

/// Time kept back from an invocation's deadline to hand the answer to
/// Lambda.
pub const MARGIN: Duration = Duration::from_millis(500);

/// When the function must stop working on an invocation: its deadline (a
/// wall-clock time) on the runtime's clock, less [`MARGIN`]. None for a
/// deadline already past when the invocation starts, which Lambda never
/// hands out but a local emulator may (`cargo lambda watch` sets it before
/// it builds the function): that one bounds nothing.
pub fn of(context: &lambda_runtime::Context) -> Option<tokio::time::Instant> {
    let left = context.deadline().duration_since(SystemTime::now()).ok()?;
    Some(tokio::time::Instant::now() + left.saturating_sub(MARGIN))
}
